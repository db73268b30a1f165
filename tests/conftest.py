"""Fixtures: a real redis-server and real gomap-worker processes, each stopped by its PID."""

from __future__ import annotations

import functools
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import gomap
from gomap import _binary, _procs
from gomap._procs import pid_alive as pid_alive  # for the tests

ROOT = Path(__file__).resolve().parent.parent


def wait_until(cond: Callable[[], object], timeout: float = 10.0, what: str = "the condition") -> None:
    """Wait on a condition with a deadline: check cond() every 5 ms, fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(0.005)


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Stop a process started by a test: sig, SIGKILL after timeout, reaped."""
    _procs.stop_popen(proc, sig, timeout)


class RedisServer(_procs.RedisServer):
    """A redis-server on a unix socket in a temporary directory (gomap._procs.RedisServer: pass
    tcp, tls, password, args… for others), with a redis-py client of it, ``redis``."""

    def __init__(self, **kwargs: Any) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not on PATH (apt-get install redis-server; .ci/run does)")
        super().__init__(**kwargs)
        self.redis = self.client()

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.process.popen

    def stop(self) -> None:
        self.redis.close()
        super().stop()


class Worker(_procs.WorkerProcess):
    """A gomap-worker process (the real binary) with fast heartbeats, ready when constructed."""

    def __init__(
        self, url: str, *args: str, host: str = "pytest", namespace: str = "goworker:", binary: str | None = None
    ) -> None:
        flags = [
            "-uri", url, "-hostname", host, "-namespace", namespace,
            "-heartbeat", "200ms", "-dead-after", "1s", "-shutdown-timeout", "2s", "-log-level", "debug",
            "-concurrency", "4", "-connections", "8", *args,
        ]  # fmt: skip
        super().__init__(binary or worker_binary(), flags, name=f"gomap-worker {host}")

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.popen

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        return super().stop(sig, timeout)


@functools.cache
def worker_binary() -> str:
    """The gomap-worker built from this checkout's worker/ (cached by gomap across runs)."""
    return _binary.worker_binary()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def worker(redis_server: RedisServer) -> Iterator[Worker]:
    w = Worker(redis_server.url)
    yield w
    w.stop()


@pytest.fixture
def client(redis_server: RedisServer, worker: Worker) -> Iterator[gomap.Client]:
    c = gomap.Client(redis_server.url)
    yield c
    left = [k.decode() for k in redis_server.redis.keys("goworker:gomap:{*")]
    c.close()
    assert not left, f"batch keys left behind: {left}"


@pytest.fixture
def start_worker() -> Iterator[Callable[..., Worker]]:
    """Worker(url, *args, …) for a test that starts several; each is stopped when the test ends."""
    started: list[Worker] = []

    def start(url: str, *args: str, **kwargs: Any) -> Worker:
        started.append(Worker(url, *args, **kwargs))
        return started[-1]

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def fresh_redis() -> Iterator[RedisServer]:
    """A Redis of the test's own, for tests that start and kill workers."""
    server = RedisServer()
    yield server
    server.stop()
