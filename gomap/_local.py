"""LocalCluster: the embedded default, a private Redis and Go workers on this machine."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import IO, Any

from . import _defaults
from ._binary import redis_server, worker_binary
from ._exceptions import LocalClusterError


def _stop(proc: subprocess.Popen[bytes], directory: str, log: IO[bytes]) -> None:
    """Close the lifeline (the worker shuts down and stops its Redis), kill if it lingers."""
    if proc.poll() is None:
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(_defaults.LOCAL_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    log.close()
    shutil.rmtree(directory, ignore_errors=True)


class LocalCluster:
    """A private redis-server and Go workers, started here and stopped at exit (like Dask's
    LocalCluster). It is what gomap uses when no Redis URL is configured.

    ``workers`` is how many jobs run at once and how many cores the workers use (default: every
    core). The workers are goroutines in one Go process: the items of a chunk already run in
    parallel on all cores inside it, so more processes would only add Redis connections and memory
    (benchmarks/local_cluster.py measures the two). That process runs redis-server as its child on
    a unix socket, and both end when Python ends, however it ends: the worker watches a pipe from
    Python (the "lifeline") and Redis receives the parent-death signal from the worker.

        with gomap.LocalCluster(workers=4) as cluster:
            client = gomap.Client(cluster.url)
            gomap.map("sampleadd", pairs, client=client)
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        namespace: str = _defaults.NAMESPACE,
        redis_server: str | None = None,
        worker_binary: str | None = None,
        quiet: bool = False,
    ) -> None:
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be a positive int, not {workers!r}")
        self.workers = workers or os.cpu_count() or 1
        self.namespace = namespace
        self.url = ""
        self.pid = 0
        self._redis_server = redis_server
        self._worker_binary = worker_binary
        self._quiet = quiet
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def __repr__(self) -> str:
        return f"<gomap.LocalCluster workers={self.workers} {self.url or 'not started'}>"

    def start(self) -> LocalCluster:
        """Start Redis and the workers; return once the workers take jobs."""
        if self._finalizer is not None and self._finalizer.alive:
            return self
        binary = worker_binary(self._worker_binary)
        server = redis_server(self._redis_server)
        directory = tempfile.mkdtemp(prefix="gomap-")
        log = open(os.path.join(directory, "worker.log"), "wb")  # noqa: SIM115 - closed by _stop
        cmd = [
            binary,
            "-redis-server", server, "-redis-dir", directory, "-lifeline",
            "-namespace", self.namespace,
            "-concurrency", str(max(2, self.workers)),
            "-connections", str(max(4, 2 * self.workers)),
            "-shutdown-timeout", "5s",
            "-log-level", "warn",
        ]  # fmt: skip
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,  # Ctrl-C in a terminal goes to Python, which cancels its batch
            env={**os.environ, "GOMAXPROCS": str(self.workers)},
        )
        self._finalizer = weakref.finalize(self, _stop, proc, directory, log)
        try:
            ready = self._wait_ready(proc, Path(directory) / "worker.log")
        except BaseException:
            self._finalizer()
            raise
        self.url, self.pid = ready["uri"], proc.pid
        if not self._quiet:
            print(
                f"gomap: started a local cluster: redis-server and Go workers on {self.workers} "
                f"core{'s' if self.workers > 1 else ''} (pid {proc.pid}, {self.url}); they stop when Python exits",
                file=sys.stderr,
            )
        return self

    @staticmethod
    def _wait_ready(proc: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
        assert proc.stdout is not None
        deadline = time.monotonic() + _defaults.LOCAL_START_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select([proc.stdout], [], [], max(remaining, 0))
            if readable:
                line = proc.stdout.readline()
                if line:
                    return dict(json.loads(line))
                proc.wait(_defaults.LOCAL_STOP_TIMEOUT)  # end of output: the worker is exiting
            if proc.poll() is not None or not readable:
                reason = (
                    "exited"
                    if proc.poll() is not None
                    else f"did not start within {_defaults.LOCAL_START_TIMEOUT:.0f}s"
                )
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise LocalClusterError(f"the local gomap worker {reason}; its log:\n{tail}")

    def close(self) -> None:
        """Stop the workers (running chunks finish or go back) and Redis, and remove their files."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
