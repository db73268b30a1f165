"""Child processes of gomap: redis-server and gomap-worker, started here, stopped by their PID.

LocalCluster runs its worker and its keeper (the gomap-worker that holds redis-server) with
WorkerProcess; the tests and the benchmarks start their own redis-server with RedisServer and
their workers with WorkerProcess. It is the Python twin of worker/internal/redistest and
worker/internal/workertest.

Every wait here has a deadline. A failed start raises LocalClusterError with the process's log
(its start and its end), and leaves no process and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis

from . import _binary, _defaults
from ._client import redact
from ._exceptions import LocalClusterError

LOG_HEAD, LOG_TAIL = 500, 2000
"""Characters of the start and of the end of a process's log shown when it fails to start (the
start often says what went wrong, as in a usage error; the end, what happened last)."""

READY_LINE_MAX = 64 * 1024
"""Most bytes read from a worker's standard output while looking for its ready line."""

POLL = 0.005
"""Seconds between two checks of a condition that gives no signal (redis-server answering)."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists and has not exited (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    return False


def stop_popen(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = _defaults.LOCAL_STOP_TIMEOUT
) -> int:
    """Stop proc: send sig (then SIGCONT, so a paused process acts on it), wait up to timeout, then
    SIGKILL. Reap it, close its pipes, and return its exit status (negative: the signal that ended it).

    A gomap-worker's lifeline (its standard input) is closed only once it has exited: a worker
    shuts down when the first of a signal and the end of its lifeline comes, and exits at once,
    without putting its jobs back or unregistering, when the other one follows."""
    if proc.poll() is None:
        proc.send_signal(sig)
        if sig != signal.SIGKILL:
            proc.send_signal(signal.SIGCONT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired as e:
            raise LocalClusterError(f"pid {proc.pid} ({proc.args!r}) did not exit within {timeout}s of SIGKILL") from e
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()
    return proc.returncode


def free_port(*, bus: bool = False) -> int:
    """A free TCP port on 127.0.0.1; with bus, one whose Redis Cluster bus port (+10000) is free too."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if not bus:
                return port
            if port + 10000 < 65536:
                with socket.socket() as b:
                    try:
                        b.bind(("127.0.0.1", port + 10000))
                    except OSError:
                        continue
                    return port
    raise LocalClusterError("found no free pair of loopback ports for a Redis Cluster node in 100 tries")


class Process:
    """A child process known by its PID. Its standard error (and its output, unless read here) goes
    to a log file, kept across restarts. With a lifeline, its standard input is a pipe only this
    process holds: a gomap-worker started with -lifeline stops when that pipe closes, which
    happens when this Python process ends, however it ends.

    Without a log path, the log is a temporary file removed by stop().
    """

    def __init__(
        self,
        cmd: Sequence[str],
        *,
        log: Path | None = None,
        env: Mapping[str, str] | None = None,
        lifeline: bool = False,
        read_stdout: bool = False,
        new_session: bool = False,
        name: str | None = None,
    ) -> None:
        self.cmd = list(cmd)
        self.name = name or os.path.basename(self.cmd[0])
        self._own_log = log is None
        if log is None:
            fd, path = tempfile.mkstemp(prefix=f"gomap-{os.path.basename(self.cmd[0])}-", suffix=".log")
            os.close(fd)
            log = Path(path)
        self.log = log
        self.env = dict(env) if env is not None else None
        self.lifeline = lifeline
        self.read_stdout = read_stdout
        self.new_session = new_session
        self.popen: subprocess.Popen[bytes] | None = None
        self.pid = 0

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.name} pid {self.pid} {state}>"

    @property
    def running(self) -> bool:
        """Started and not exited (a paused process is running)."""
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        """Start the command (again, after stop or kill), appending to the same log."""
        if self.running:
            raise LocalClusterError(f"{self.name} is running already (pid {self.pid})")
        with open(self.log, "ab") as log:  # the child keeps its own descriptor of it
            try:
                self.popen = subprocess.Popen(
                    self.cmd,
                    stdin=subprocess.PIPE if self.lifeline else subprocess.DEVNULL,
                    stdout=subprocess.PIPE if self.read_stdout else log,
                    stderr=log,
                    env=self.env,
                    start_new_session=self.new_session,
                )
            except OSError as e:
                self._remove_log()
                raise LocalClusterError(f"cannot run {self.name} ({self.cmd[0]}): {e}") from e
        self.pid = self.popen.pid

    def log_excerpt(self) -> str:
        """The process's log, without its middle when it is long."""
        try:
            text = self.log.read_text(errors="replace").strip()
        except FileNotFoundError:
            return ""
        if len(text) <= LOG_HEAD + LOG_TAIL:
            return text
        return f"{text[:LOG_HEAD]}\n[… {len(text) - LOG_HEAD - LOG_TAIL} characters left out …]\n{text[-LOG_TAIL:]}"

    def failed(self, reason: str) -> LocalClusterError:
        """An error that says the process failed to start, with its log."""
        log = self.log_excerpt()
        return LocalClusterError(f"{self.name} {reason}; its log:\n{log}" if log else f"{self.name} {reason}")

    def exited(self) -> LocalClusterError:
        """The error for a process that exited before it was ready (reaped)."""
        assert self.popen is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(_defaults.LOCAL_STOP_TIMEOUT)  # its output ended: it is exiting
        status = stop_popen(self.popen, signal.SIGKILL)
        return self.failed(f"exited with status {status} before it was ready")

    def send(self, sig: int) -> None:
        """Send sig to the process, if it runs."""
        if self.popen is not None:
            self.popen.send_signal(sig)

    def pause(self) -> None:
        """Freeze the process (SIGSTOP), as a stalled machine would."""
        self.send(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused process go on (SIGCONT)."""
        self.send(signal.SIGCONT)

    def halt(self, sig: int = signal.SIGTERM, timeout: float = _defaults.LOCAL_STOP_TIMEOUT) -> int | None:
        """End the process (see stop_popen) and return its exit status; keep the log for a restart."""
        if self.popen is None:
            return None
        return stop_popen(self.popen, sig, timeout)

    def kill(self) -> None:
        """End the process at once (SIGKILL), as a crash would, and reap it. restart() starts it again."""
        self.halt(signal.SIGKILL)

    def restart(self, sig: int = signal.SIGTERM) -> None:
        """End the process by sig (if it runs) and start it again."""
        self.halt(sig)
        self.start()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = _defaults.LOCAL_STOP_TIMEOUT) -> int | None:
        """End the process: sig, then SIGKILL after timeout. Remove its log if it is a temporary one."""
        try:
            return self.halt(sig, timeout)
        finally:
            self._remove_log()

    def _remove_log(self) -> None:
        if self._own_log:
            self.log.unlink(missing_ok=True)


class WorkerProcess(Process):
    """A gomap-worker (or another binary built with workercmd) started with -lifeline, and ready:
    it has written its ready line, so it takes jobs (or, with -redis-only, its Redis answers).

    ``ready`` is that line: ``id`` (not for -redis-only), ``uri``, ``pid`` and, when the process
    runs redis-server itself, ``redis_pid``.
    """

    def __init__(
        self,
        binary: str,
        args: Sequence[str],
        *,
        log: Path | None = None,
        env: Mapping[str, str] | None = None,
        new_session: bool = False,
        name: str | None = None,
        timeout: float = _defaults.LOCAL_START_TIMEOUT,
    ) -> None:
        super().__init__(
            [binary, "-lifeline", *args],
            log=log,
            env=env,
            lifeline=True,
            read_stdout=True,
            new_session=new_session,
            name=name,
        )
        self.timeout = timeout
        self.ready: dict[str, Any] = {}
        self.start()

    @property
    def id(self) -> str:
        """The worker's ID, as in Redis (empty for a -redis-only keeper)."""
        return str(self.ready.get("id", ""))

    @property
    def url(self) -> str:
        """The Redis URL the process serves or holds, as its ready line says (a password masked)."""
        return str(self.ready.get("uri", ""))

    @property
    def redis_pid(self) -> int:
        """The PID of the redis-server this process runs (with -redis-server), else 0."""
        return int(self.ready.get("redis_pid", 0))

    def start(self) -> None:
        """Start the process and return once it has written its ready line, within self.timeout."""
        super().start()
        try:
            self.ready = self._read_ready()
        except BaseException:
            self.stop(signal.SIGKILL)  # the error holds what the log said
            raise

    def _read_ready(self) -> dict[str, Any]:
        """Read the ready line, a JSON object on standard output, within self.timeout."""
        assert self.popen is not None
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        out = b""
        while b"\n" not in out:
            remaining = deadline - time.monotonic()
            readable = select.select([fd], [], [], max(remaining, 0))[0] if remaining > 0 else []
            if not readable:
                raise self.failed(f"wrote no ready line within {self.timeout:g}s")
            data = os.read(fd, 4096)
            if not data:  # end of output: the process is exiting
                raise self.exited()
            out += data
            if len(out) > READY_LINE_MAX:
                raise self.failed(f"wrote {len(out)} bytes without a ready line")
        line = out.split(b"\n", 1)[0]
        try:
            ready = json.loads(line)
        except ValueError:
            ready = None
        if not isinstance(ready, dict) or ready.get("event") != "ready":
            raise self.failed(f"wrote {line[:200]!r} where its ready line should be")
        return ready


class RedisServer:
    """A redis-server in a temporary directory of its own, without persistence: on a unix socket,
    or with tcp on a free 127.0.0.1 port (served with TLS when tls is set; a Redis Cluster node
    with cluster). ``args`` are more configuration lines, as ``--name value`` arguments
    (TLS certificates, ACL rules…); ``password`` sets ``requirepass`` and goes in the URL.

    The unix socket ``sock`` is there in every case, without TLS: readiness is checked on it.
    stop() ends the server and removes its directory; kill() and restart() keep the address,
    and a restarted server is empty.
    """

    def __init__(
        self,
        *,
        binary: str | None = None,
        tcp: bool = False,
        tls: bool = False,
        cluster: bool = False,
        password: str | None = None,
        args: Sequence[str] = (),
        timeout: float = _defaults.LOCAL_START_TIMEOUT,
    ) -> None:
        program = _binary.redis_server(binary)
        self.dir = tempfile.mkdtemp(prefix="gomap-redis-")
        self.sock = os.path.join(self.dir, "redis.sock")
        self.password = password
        self.timeout = timeout
        self.port = free_port(bus=cluster) if tcp or tls or cluster else 0
        cmd = [program, "--unixsocket", self.sock, "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
               "--dir", self.dir]  # fmt: skip
        auth = f":{urllib.parse.quote(password, safe='')}@" if password is not None else ""
        if not self.port:
            cmd += ["--port", "0"]
            self.url = f"unix://{auth}{self.sock}"
        elif tls:
            cmd += ["--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1"]
            self.url = f"rediss://{auth}127.0.0.1:{self.port}/"
        else:
            cmd += ["--port", str(self.port), "--bind", "127.0.0.1"]
            self.url = f"redis://{auth}127.0.0.1:{self.port}/"
        if cluster:
            cmd += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"]
        if password is not None:
            cmd += ["--requirepass", password]
        cmd += args
        self.process = Process(cmd, log=Path(self.dir) / "redis.log", name="redis-server")
        try:
            self.start()
        except BaseException:
            self._remove()
            raise

    def __repr__(self) -> str:
        return f"<RedisServer {redact(self.url)} pid {self.pid}>"

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def address(self) -> str:
        """Where clients connect: 127.0.0.1:port, or the socket's path."""
        return f"127.0.0.1:{self.port}" if self.port else self.sock

    def client(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client on the unix socket (with the password)."""
        return redis.Redis(unix_socket_path=self.sock, password=self.password, **kwargs)

    def answers(self) -> bool:
        """Whether the server replies to PING on its unix socket (an error reply, such as NOAUTH, counts)."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1.0)
                s.connect(self.sock)
                s.sendall(b"PING\r\n")
                return s.recv(1) in (b"+", b"-")
        except OSError:
            return False

    def start(self) -> None:
        """Start the server and return once it answers, within self.timeout."""
        self.process.start()
        wait_for(self.answers, self.timeout, self.process, "answered no PING")

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing is answered."""
        self.process.pause()

    def resume(self) -> None:
        self.process.resume()

    def kill(self) -> None:
        """End the server at once (SIGKILL), as a crash would. restart() starts it again."""
        self.process.kill()

    def restart(self, sig: int = signal.SIGTERM) -> None:
        """End the server by sig (if it runs; SIGKILL for a crash) and start it again on the same
        address. It has no persistence: what it held is gone."""
        self.process.halt(sig)
        self.start()

    def stop(self) -> None:
        """End the server and remove its directory."""
        self._remove()

    def _remove(self) -> None:
        try:
            self.process.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def wait_for(cond: Callable[[], bool], timeout: float, proc: Process, what: str) -> None:
    """Check cond every POLL seconds until it holds; raise (after a SIGKILL of proc) if proc exits
    or timeout passes first. For conditions that give no signal to wait on."""
    deadline = time.monotonic() + timeout
    while not cond():
        if not proc.running:
            raise proc.exited()
        if time.monotonic() > deadline:
            proc.halt(signal.SIGKILL)
            raise proc.failed(f"{what} within {timeout:g}s")
        time.sleep(POLL)
