"""Shared helpers of the benchmarks: a private redis-server and gomap-worker processes on a unix
socket (all traffic stays on this machine), stopped by PID at the end."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence

import redis

from gomap import _binary


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server on a unix socket; yields its URL."""
    binary = _binary.redis_server()
    d = tempfile.mkdtemp(prefix="gomap-bench-")
    sock = os.path.join(d, "redis.sock")
    proc = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--dir", d,
         "--logfile", os.path.join(d, "redis.log")]
    )  # fmt: skip
    r = redis.Redis(unix_socket_path=sock)
    deadline = time.monotonic() + 10
    while True:
        try:
            r.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    try:
        yield f"unix://{sock}"
    finally:
        r.close()
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def workers(
    url: str, processes: int, *, concurrency: int, gomaxprocs: int, extra: Sequence[str] = ()
) -> Iterator[list[int]]:
    """Start gomap-worker processes on url and wait until each takes jobs; yields their PIDs."""
    binary = _binary.worker_binary()
    procs = []
    try:
        for i in range(processes):
            p = subprocess.Popen(
                [binary, "-uri", url, "-hostname", f"bench{i}", "-lifeline", "-concurrency", str(concurrency),
                 "-connections", str(max(4, 2 * concurrency)), "-log-level", "warn", *extra],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                env={**os.environ, "GOMAXPROCS": str(gomaxprocs)},
            )  # fmt: skip
            procs.append(p)
            ready, _, _ = select.select([p.stdout], [], [], 30)
            if not ready or json.loads(p.stdout.readline())["event"] != "ready":  # type: ignore[union-attr]
                raise RuntimeError("gomap-worker did not start")
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(xs: Sequence[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]
