"""Shared helpers of the benchmarks: a private redis-server and gomap-worker processes on a unix
socket (all traffic stays on this machine), stopped by PID at the end."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

from gomap import _binary, _procs


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server on a unix socket; yields its URL."""
    with _procs.RedisServer() as server:
        yield server.url


@contextlib.contextmanager
def workers(
    url: str, processes: int, *, concurrency: int, gomaxprocs: int, extra: Sequence[str] = ()
) -> Iterator[list[int]]:
    """Start gomap-worker processes on url and wait until each takes jobs; yields their PIDs."""
    binary = _binary.worker_binary()
    env = {**os.environ, "GOMAXPROCS": str(gomaxprocs)}
    procs: list[_procs.WorkerProcess] = []
    try:
        for i in range(processes):
            args = ["-uri", url, "-hostname", f"bench{i}", "-concurrency", str(concurrency),
                    "-connections", str(max(4, 2 * concurrency)), "-log-level", "warn", *extra]  # fmt: skip
            procs.append(_procs.WorkerProcess(binary, args, env=env))
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.stop(timeout=30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(xs: Sequence[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def rss_bytes(pid: int | None = None) -> int:
    """A process's resident set size now (this process by default), from /proc."""
    with open(f"/proc/{pid or 'self'}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
