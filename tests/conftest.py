"""Fixtures: a real redis-server and real gomap-worker processes, each stopped by its PID."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

import gomap
from gomap import _binary

ROOT = Path(__file__).resolve().parent.parent


def wait_until(cond: Callable[[], object], timeout: float = 10.0, what: str = "the condition") -> None:
    """Wait on a condition with a deadline: check cond() every 5 ms, fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(0.005)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    return False


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RedisServer:
    """A redis-server on a unix socket in a temporary directory."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not on PATH (apt-get install redis-server; .ci/run does)")
        self.dir = tempfile.mkdtemp(prefix="gomap-test-")
        self.sock = os.path.join(self.dir, "redis.sock")
        self.url = f"unix://{self.sock}"
        self.proc = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", self.sock, "--unixsocketperm", "700", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log")],
        )  # fmt: skip
        self.redis = redis.Redis(unix_socket_path=self.sock)

        def ping() -> bool:
            try:
                return bool(self.redis.ping())
            except redis.ConnectionError:
                return False

        wait_until(ping, what="redis-server answers")

    def stop(self) -> None:
        self.redis.close()
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class Worker:
    """A gomap-worker process (the real binary) with fast heartbeats."""

    def __init__(
        self, url: str, *args: str, host: str = "pytest", namespace: str = "goworker:", binary: str | None = None
    ) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="gomap-worker-", suffix=".log", delete=False)  # noqa: SIM115
        cmd = [
            binary or worker_binary(), "-uri", url, "-hostname", host, "-namespace", namespace, "-lifeline",
            "-heartbeat", "200ms", "-dead-after", "1s", "-shutdown-timeout", "2s", "-log-level", "debug",
            "-concurrency", "4", "-connections", "8", *args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if readable else b""
        if not line:
            stop_process(self.proc, signal.SIGKILL)
            raise AssertionError(f"gomap-worker did not start: {Path(self.log.name).read_text()}")
        self.id = json.loads(line)["id"]
        self.pid = self.proc.pid

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)
        if self.proc.stdin:
            self.proc.stdin.close()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()
        os.unlink(self.log.name)


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
def fresh_redis() -> Iterator[RedisServer]:
    """A Redis of the test's own, for tests that start and kill workers."""
    server = RedisServer()
    yield server
    server.stop()
