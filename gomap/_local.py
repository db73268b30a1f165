"""LocalCluster: the embedded default, a private Redis and Go workers on this machine."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

from . import _compile, _defaults
from ._binary import redis_server, worker_binary
from ._exceptions import LocalClusterError
from ._procs import WorkerProcess


class _Processes:
    """The processes of one LocalCluster: the keeper (it runs redis-server) and the current worker
    process, each with its lifeline (its standard input) and its log. The finalizer stops them."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.keeper: WorkerProcess | None = None
        self.worker: WorkerProcess | None = None
        self._count = 0

    def start(self, role: str, name: str, binary: str, args: list[str], env: dict[str, str]) -> WorkerProcess:
        """Start binary with args and a lifeline; return it once it has written its ready line."""
        self._count += 1
        return WorkerProcess(
            binary,
            args,
            log=Path(self.directory) / f"{role}-{self._count}.log",
            env=env,
            new_session=True,  # Ctrl-C in a terminal goes to Python, which cancels its batch
            name=name,
        )

    def stop(self) -> None:
        """Stop the worker first (its jobs go back while Redis is up), then the keeper, which
        waits for the workers to unregister and stops Redis. Each is killed if it lingers."""
        for proc in (self.worker, self.keeper):
            if proc is not None:
                proc.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class LocalCluster:
    """A private redis-server and Go workers, started here and stopped at exit (like Dask's
    LocalCluster). It is what gomap uses when no Redis URL is configured.

    ``workers`` is how many jobs run at once and how many cores the workers use (default: every
    core). The workers are goroutines in one Go process: the items of a chunk already run in
    parallel on all cores inside it, so more processes would only add Redis connections and memory
    (benchmarks/local_cluster.py measures the two). A second process, the keeper, runs
    redis-server on a unix socket, so the worker process can be swapped while Redis stays up:
    after ``gomap.compile`` the cluster runs a binary with every function compiled in this Python
    process. Everything ends when Python ends, however it ends: each process watches a pipe from
    Python (its "lifeline"), and Redis receives the parent-death signal from the keeper.

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
        self.pid = 0  # the worker process
        self.redis_pid = 0
        self.keeper_pid = 0  # the process that runs redis-server
        self.binary = ""  # the worker binary it runs
        self._redis_server = redis_server
        self._worker_binary = worker_binary
        self._quiet = quiet
        self._procs: _Processes | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._swap_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<gomap.LocalCluster workers={self.workers} {self.url or 'not started'}>"

    @property
    def running(self) -> bool:
        return self._finalizer is not None and self._finalizer.alive

    def start(self) -> LocalCluster:
        """Start Redis and the workers; return once the workers take jobs."""
        if self.running:
            return self
        follows = self._worker_binary is None and not os.environ.get("GOMAP_WORKER_BINARY")
        compiled = _compile.SESSION.binary() if follows else None
        binary = str(compiled) if compiled is not None else worker_binary(self._worker_binary)
        server = redis_server(self._redis_server)
        procs = self._procs = _Processes(tempfile.mkdtemp(prefix="gomap-"))
        self._finalizer = weakref.finalize(self, procs.stop)
        try:
            self._start_keeper(binary, server)
            self._start_worker(binary)
        except BaseException:
            self._finalizer()
            raise
        if follows:
            _compile.SESSION.follow(self)
        if not self._quiet:
            print(
                f"gomap: started a local cluster: redis-server and Go workers on {self.workers} "
                f"core{'s' if self.workers > 1 else ''} (pid {self.pid}, {self.url}); they stop when Python exits",
                file=sys.stderr,
            )
        return self

    def _start_keeper(self, binary: str, server: str) -> None:
        assert self._procs is not None
        args = [
            "-redis-server", server, "-redis-dir", self._procs.directory, "-redis-only",
            "-namespace", self.namespace, "-shutdown-timeout", "5s", "-log-level", "warn",
        ]  # fmt: skip
        name = "the local redis-server (run by gomap-worker -redis-only)"
        keeper = self._procs.keeper = self._procs.start("keeper", name, binary, args, dict(os.environ))
        self.keeper_pid, self.url, self.redis_pid = keeper.pid, keeper.url, keeper.redis_pid

    def _start_worker(self, binary: str) -> None:
        assert self._procs is not None
        args = [
            "-uri", self.url, "-namespace", self.namespace,
            "-concurrency", str(max(2, self.workers)), "-connections", str(max(4, 2 * self.workers)),
            "-shutdown-timeout", "5s", "-log-level", "warn",
        ]  # fmt: skip
        env = {**os.environ, "GOMAXPROCS": str(self.workers)}
        proc = self._procs.start("worker", "the local gomap worker", binary, args, env)
        self._procs.worker, self.pid, self.binary = proc, proc.pid, binary

    def swap(self, binary: str) -> None:
        """Run the worker ``binary`` instead of the current one, while Redis stays up.

        The new worker process takes jobs before the old one stops; the old one stops as on
        SIGTERM: running chunks finish (or go back to their queue after 5 s), nothing is lost.
        """
        with self._swap_lock:
            if self._procs is None or not self.running:
                raise LocalClusterError("the local cluster is not running")
            if binary == self.binary:
                return  # already running it: a recompile of unchanged source restarts nothing
            old = self._procs.worker
            self._start_worker(binary)
            if old is not None:
                old.stop()

    def close(self) -> None:
        """Stop the workers (running chunks finish or go back) and Redis, and remove their files."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
