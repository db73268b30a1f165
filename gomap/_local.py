"""LocalCluster: the embedded default, a private Redis and Go workers on this machine."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import warnings
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _compile, _defaults
from ._binary import redis_server, worker_binary
from ._exceptions import ConfigError, GomapError, LocalClusterError
from ._frontend import step
from ._procs import WorkerProcess

if TYPE_CHECKING:
    from ._client import Client
    from ._overview import Overview


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
    """A private redis-server and a Go worker process, started here and stopped at exit (like
    Dask's LocalCluster). It is what gomap uses when no Redis URL is configured: the embedded default.

    ``cores`` is how many cores the worker process uses (its GOMAXPROCS; default: every core) and
    how many chunks it runs at once (its slots, at least 2). The items of a chunk run in parallel
    goroutines on all cores inside the one process, so more processes would only add Redis
    connections and memory (benchmarks/local_cluster.py measures the two). A second process, the
    keeper, runs redis-server on a unix socket, so the worker process can be swapped while Redis
    stays up: after ``gomap.compile`` the cluster runs a binary with every function compiled in
    this Python process. Everything ends when Python ends, however it ends: each process watches a
    pipe from Python (its "lifeline"), and Redis receives the parent-death signal from the keeper.

    Starting says so on one line (and building the worker first, on its first use); ``quiet=True``
    silences that. Its repr (a table in Jupyter) shows its processes and the pool's state.

        with gomap.LocalCluster(cores=4) as cluster:
            client = gomap.Client(cluster.url)
            gomap.map("sampleadd", pairs, client=client)
    """

    def __init__(
        self,
        cores: int | None = None,
        *,
        namespace: str = _defaults.NAMESPACE,
        redis_server: str | None = None,
        worker_binary: str | None = None,
        quiet: bool = False,
        workers: int | None = None,
    ) -> None:
        if workers is not None:
            warnings.warn(
                "LocalCluster(workers=N) is deprecated: use LocalCluster(cores=N). It always meant cores: "
                "the one Go worker process runs each chunk's items on that many cores.",
                DeprecationWarning,
                stacklevel=2,
            )
            if cores is not None:
                raise ConfigError("pass cores= only (workers= is its old, deprecated name)")
            cores = workers
        if cores is not None and (isinstance(cores, bool) or not isinstance(cores, int) or cores < 1):
            raise ConfigError(f"cores must be a positive int (how many cores the Go worker uses), not {cores!r}")
        self.cores = cores or os.cpu_count() or 1
        self.namespace = namespace
        self.url = ""
        self.pid = 0  # the worker process
        self.redis_pid = 0
        self.keeper_pid = 0  # the process that runs redis-server
        self.binary = ""  # the worker binary it runs
        self.embedded = False  # whether gomap started it as the embedded default (a Client without a URL)
        self._redis_server = redis_server
        self._worker_binary = worker_binary
        self._quiet = quiet
        self._procs: _Processes | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._swap_lock = threading.Lock()
        self._client: Client | None = None  # for its repr, opened on first use

    @classmethod
    def _embedded_default(cls, namespace: str) -> LocalCluster:
        """The embedded default, started: what a Client without a URL runs."""
        cluster = cls(namespace=namespace)
        cluster.embedded = True
        return cluster.start()

    @property
    def workers(self) -> int:
        """Deprecated: ``cores``."""
        warnings.warn("LocalCluster.workers is deprecated: use .cores", DeprecationWarning, stacklevel=2)
        return self.cores

    @property
    def log_dir(self) -> str:
        """The directory of its logs (redis-server's, the keeper's and the worker process's) and
        its socket, while it runs ("" otherwise)."""
        return self._procs.directory if self._procs is not None and self.running else ""

    def overview(self, timeout: float = 2.0) -> Overview:
        """What it runs and what its pool is doing (gomap.Client.overview), read within ``timeout``
        seconds; a Redis that cannot be read is said in it, not raised."""
        from ._client import Client
        from ._overview import LocalInfo, Overview, read

        local = LocalInfo.of(self)
        if not self.running:
            why = "not read: the local cluster is stopped" if self.url else "not read: the local cluster is not started"
            return Overview(self.url or "(none yet)", self.namespace, self.embedded, local, error=why)
        try:
            if self._client is None:
                self._client = Client(self.url, namespace=self.namespace)
            client = self._client
        except GomapError as e:
            return Overview(self.url, self.namespace, self.embedded, local, error=str(e))
        return read(client, timeout, embedded=self.embedded, local=local)

    def __repr__(self) -> str:
        # Cheap, and never waits on Redis: a repr shows up in tracebacks, logs and debuggers.
        from ._overview import LocalInfo, Overview

        overview = Overview(self.url or "(none yet)", self.namespace, self.embedded, LocalInfo.of(self))
        return overview.text("gomap.LocalCluster", pool=False)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.overview(timeout=1.0).text("gomap.LocalCluster"))  # IPython's display: the pool too

    def _repr_html_(self) -> str:
        return self.overview(timeout=1.0).html("gomap.LocalCluster")

    @property
    def running(self) -> bool:
        return self._finalizer is not None and self._finalizer.alive

    def start(self) -> LocalCluster:
        """Start Redis and the worker process; return once it takes jobs."""
        if self.running:
            return self
        follows = self._worker_binary is None and not os.environ.get("GOMAP_WORKER_BINARY")
        compiled = _compile.SESSION.binary() if follows else None
        binary = str(compiled) if compiled is not None else worker_binary(self._worker_binary, quiet=self._quiet)
        server = redis_server(self._redis_server)
        first = (
            "gomap: no Redis configured, starting a local cluster"
            if self.embedded
            else "gomap: starting a local cluster"
        )
        with step(first, quiet=self._quiet) as starting:
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
            cores = f"{self.cores} core{'s' if self.cores > 1 else ''}"
            ends = (
                "it stops when Python exits (details: gomap.default_client())"
                if self.embedded
                else "it stops on close() or when Python exits"
            )
            starting.done(f"ready in {{elapsed}}: Redis and a Go worker on {cores}; {ends}")
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
            "-concurrency", str(max(2, self.cores)), "-connections", str(max(4, 2 * self.cores)),
            "-shutdown-timeout", "5s", "-log-level", "warn",
        ]  # fmt: skip
        env = {**os.environ, "GOMAXPROCS": str(self.cores)}
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
        """Stop the worker process (running chunks finish or go back) and Redis, and remove their files."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
