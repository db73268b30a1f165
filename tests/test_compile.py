"""Your own Go functions: gomap.compile, the embedded default that follows it, gomap build, discovery."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gomap
from gomap import _compile

from .conftest import ROOT, RedisServer, Worker, pid_alive, wait_until

GEO = textwrap.dedent(
    """\
    import "math"

    // Haversine is the great-circle distance in km between two points given in degrees.
    func Haversine(lat1, lon1, lat2, lon2 float64) float64 {
        rad := func(d float64) float64 { return d * math.Pi / 180 }
        dlat, dlon := rad(lat2-lat1), rad(lon2-lon1)
        s1, s2 := math.Sin(dlat/2), math.Sin(dlon/2)
        a := s1*s1 + math.Cos(rad(lat1))*math.Cos(rad(lat2))*s2*s2
        return 2 * earthRadius * math.Asin(math.Sqrt(a))
    }

    const earthRadius = 6371.0

    type Point struct {
        Lat float64 `json:"lat"`
        Lon float64 `json:"lon"`
    }

    // Midpoint is the point halfway between a and b (flat-earth, for the test).
    func Midpoint(a, b Point) Point { return Point{(a.Lat + b.Lat) / 2, (a.Lon + b.Lon) / 2} }

    type meters float64

    func (m meters) Km() float64 { return float64(m) / 1000 }

    func helper() int { return 1 }
    """
)


DOUBLE = "func Double(x int) int { return 2 * x }\n"


@pytest.fixture
def session(monkeypatch):
    """A fresh compile session, so this test's functions do not follow other tests' clusters."""
    fresh = _compile.Session()
    monkeypatch.setattr(_compile, "SESSION", fresh)
    return fresh


@pytest.fixture
def cluster(session):
    with gomap.LocalCluster(cores=2, quiet=True) as c, gomap.Client(c.url) as client:
        yield c, client


def test_compile_registers_every_exported_function(cluster):
    local, client = cluster
    geo = gomap.compile(GEO)
    assert sorted(geo) == ["Haversine", "Midpoint"]  # not the method, not the unexported helper
    hav = geo["Haversine"]
    assert geo.Haversine is hav
    assert repr(hav) == "<gomap.Function Haversine(lat1, lon1, lat2, lon2 float64) float64>"
    assert "great-circle distance" in hav.__doc__
    assert list(inspect.signature(hav).parameters) == ["lat1", "lon1", "lat2", "lon2", "timeout"]
    # The embedded default now runs a binary holding them, beside the samples.
    assert local.binary == str(geo.binary)
    km = gomap.map(hav, [(52.52, 13.405, 48.8566, 2.3522), (0, 0, 0, 0)], client=client, progress=False)
    assert round(km[0]) == 877 and km[1] == 0.0
    mid = gomap.map("Midpoint", [({"lat": 0, "lon": 0}, {"lat": 2, "lon": 4})], client=client, progress=False)
    assert mid == [{"lat": 1.0, "lon": 2.0}]
    assert gomap.map("sampleadd", [(1, 2)], client=client, progress=False) == [3]


def test_compile_error_shows_the_users_lines(session):
    src = "func Double(x int) int {\n\treturn x * factor\n}\n"
    with pytest.raises(gomap.CompileError) as info:
        gomap.compile(src, name="cell")
    (msg,) = info.value.messages
    assert (msg.file, msg.line, msg.column) == ("cell", 2, 13)
    assert "undefined: factor" in msg.message
    text = str(info.value)
    assert "cell, line 2, column 13: undefined: factor" in text
    assert "return x * factor" in text and "gomapuser" not in text and "source.go" not in text
    assert isinstance(info.value, gomap.WorkerBinaryError) and info.value._render_traceback_()[0].startswith(
        "CompileError: Go could not compile"
    )


def test_no_exported_function_is_a_clear_error(session):
    with pytest.raises(gomap.CompileError, match="capital letter"):
        gomap.compile("func double(x int) int { return 2 * x }\n")


def test_an_edited_source_replaces_its_previous_version(cluster):
    local, client = cluster
    gomap.compile("func Scale(x int) int { return 2 * x }\n")
    gomap.compile("func Shift(x int) int { return x + 100 }\n")
    first_pid, redis_pid = local.pid, local.redis_pid
    gomap.compile("func Shift(x int) int { return x + 100 }\n")  # run again unchanged: nothing restarts
    assert local.pid == first_pid
    gomap.compile("func Scale(x int) int { return 3 * x }\n")  # the edited cell
    assert gomap.map("Scale", [1, 2], client=client, progress=False) == [3, 6]
    assert gomap.map("Shift", [1], client=client, progress=False) == [101]  # the other unit stays
    assert local.pid != first_pid and local.redis_pid == redis_pid  # new workers, same Redis
    wait_until(lambda: not pid_alive(first_pid), what="the old worker process exits")


def test_a_batch_running_during_the_swap_loses_nothing(cluster):
    local, client = cluster
    redis_pid, old_pid = local.redis_pid, local.pid
    src = "func Triple(x int) int { return 3 * x }\n"
    _compile.build([src])  # built ahead, so the swap happens while the batch runs
    batch = gomap.submit("samplesleep", [0.2] * 20, chunksize=1, client=client)
    assert client.queue_length("samplesleep") > 0  # chunks wait and run in the old workers
    gomap.compile(src)
    assert local.pid != old_pid and not pid_alive(old_pid)
    assert batch.result(timeout=60) == [0.2] * 20
    assert local.redis_pid == redis_pid and pid_alive(redis_pid)
    assert gomap.map("Triple", [5], client=client, progress=False) == [15]


def test_a_cache_hit_runs_no_go(tmp_path, monkeypatch, session):
    real_go = shutil.which("go")
    assert real_go is not None
    goroot = Path(os.path.realpath(real_go)).parent.parent
    fake = tmp_path / "toolchain"
    (fake / "bin").mkdir(parents=True)
    (fake / "VERSION").write_text((goroot / "VERSION").read_text())
    calls = tmp_path / "go-calls"
    (fake / "bin" / "go").write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {real_go} "$@"\n')
    (fake / "bin" / "go").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("GOMAP_CACHE_DIR", str(tmp_path / "cache"))
    src = "func Cube(x int) int { return x * x * x }\n"
    first = gomap.compile(src)
    assert calls.read_text().count("build") >= 1
    calls.unlink()
    again = gomap.compile(src)
    assert again.binary == first.binary and not calls.exists(), "a cache hit called the Go toolchain"


def test_compiles_offline_with_an_empty_module_cache(tmp_path, monkeypatch, session):
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "modcache"))
    monkeypatch.setenv("GOPROXY", "off")
    monkeypatch.setenv("GOFLAGS", "-mod=vendor")
    monkeypatch.setenv("GOMAP_CACHE_DIR", str(tmp_path / "cache"))
    built = gomap.compile("func Neg(x int) int { return -x }\n")
    assert built.binary.is_file()
    assert not any((tmp_path / "modcache").rglob("*.go")), "the build downloaded modules"


def test_unknown_function_fails_at_once_with_the_closest_name(client, monkeypatch, redis_server: RedisServer):
    monkeypatch.setattr(gomap._defaults, "NO_WORKERS_AFTER", 3600.0)  # a wait for workers would time out
    with pytest.raises(gomap.UnknownFunctionError) as info:
        gomap.map("sampleadx", [(1, 2)], client=client, progress=False, timeout=30)
    msg = str(info.value)
    assert "Did you mean 'sampleadd'?" in msg and "countprimes" in msg and "gomap.compile" in msg
    assert isinstance(info.value, gomap.NoWorkersError) and "sampleadd" in info.value.offered
    assert redis_server.redis.llen("goworker:queue:sampleadx") == 0  # nothing was submitted


def test_a_worker_without_the_function_says_what_it_has(client, redis_server: RedisServer):
    """A live worker offers the function, but the chunk lands on a queue served by one that lacks it."""
    other = Worker(redis_server.url, "-queues", "elsewhere", binary=str(_compile.build([DOUBLE]).binary))
    try:
        with pytest.raises(gomap.TaskError) as info:
            gomap.map("Double", [1], queue="sampleadd", client=client, progress=False)
    finally:
        other.stop()
    assert info.value.kind == "unknown_function"
    assert "sampleadd" in info.value.error and "countprimes" in info.value.error


def test_functions_lists_what_the_pool_runs(client, worker, monkeypatch):
    listed = gomap.functions(client=client)
    add = next(f for f in listed if f.name == "sampleadd")
    assert add.workers == 1 and add.signature == "func sampleadd(a, b number) (number, error)"
    cp = next(f for f in listed if f.name == "countprimes")
    assert cp.params == (gomap.Param("n", "int64"),) and cp.returns_error
    assert "<table>" in listed._repr_html_() and "sampleadd" in repr(listed)
    monkeypatch.setitem(gomap._map._default, "client", client)
    assert "countprimes" in dir(gomap.fn) and gomap.fn.sampleadd(2, 3) == 5
    assert repr(gomap.fn.sampleadd).startswith("<gomap.Function sampleadd(")


def test_cli_build_writes_a_worker_for_a_remote_pool(tmp_path, fresh_redis: RedisServer):
    (tmp_path / "geo.go").write_text("package geo\n\n" + GEO)
    out = tmp_path / "gomap-worker-geo"
    run = subprocess.run(
        [sys.executable, "-m", "gomap", "build", "--functions", str(tmp_path / "geo.go"), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert run.stdout.strip() == str(out) and "func Haversine(lat1, lon1, lat2, lon2 float64) float64" in run.stderr
    w = Worker(fresh_redis.url, binary=str(out))
    try:
        with gomap.Client(fresh_redis.url) as client:
            km = gomap.map("Haversine", [(52.52, 13.405, 48.8566, 2.3522)], client=client, progress=False)
            assert round(km[0]) == 877
    finally:
        w.stop()


@pytest.mark.parametrize(
    ("goos", "goarch", "magic"),
    [("darwin", "arm64", b"\xcf\xfa\xed\xfe"), ("windows", "amd64", b"MZ"), ("linux", "arm64", b"\x7fELF")],
)
def test_cli_build_cross_compiles(tmp_path, goos, goarch, magic):
    out = tmp_path / "w"
    cmd = [sys.executable, "-m", "gomap", "build", "--functions", str(ROOT / "tests" / "data" / "geo"), "-o", str(out)]
    subprocess.run([*cmd, "--goos", goos, "--goarch", goarch], capture_output=True, timeout=600, check=True)
    assert out.read_bytes()[: len(magic)] == magic


def test_from_gomap_import_gomap_is_the_whole_package():
    from gomap import gomap as g

    assert g is sys.modules["gomap"]
    assert all(getattr(g, name) is getattr(gomap, name) for name in gomap.__all__)
    assert g.TaskError is gomap.TaskError and callable(g)


MAGIC = r"""
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
shell.run_cell("%load_ext gomap").raise_error()
shell.run_cell("%%gomap\nfunc Bump(x int) int { return x + 1 }\n").raise_error()
shell.run_cell("print(Bump(1))").raise_error()
shell.run_cell("%%gomap\n// edited\nfunc Bump(x int) int { return x + 2 }\n").raise_error()
shell.run_cell("print(Bump(1))").raise_error()
bad = shell.run_cell("%%gomap\nfunc Bump(x int) int {\n\treturn y\n}\n").error_in_exec
print(type(bad).__name__, bad.messages[0].file, bad.messages[0].line)
"""


def test_the_cell_magic_binds_and_rebinds_an_edited_cell():
    pytest.importorskip("IPython")
    env = {k: v for k, v in os.environ.items() if k not in ("GOMAP_REDIS_URL", "REDIS_URL", "REDIS_PROVIDER")}
    out = subprocess.run(
        [sys.executable, "-c", MAGIC], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == ["compiled func Bump(x int) int", "2"] and lines[3] == "3"
    # IPython shows the compiler's message at the cell's own line (the %%gomap line is line 1), no traceback.
    shown = "\n".join(lines[4:])
    assert shown.startswith("CompileError: Go could not compile the source:\ncell, line 3, column 9: undefined: y")
    assert "\n     3 |     return y\n       |            ^\n" in shown  # the caret under the y
    assert "Traceback" not in out.stdout + out.stderr
    assert lines[-1] == "CompileError cell 3"
