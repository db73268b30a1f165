"""gomap._procs: redis-server and gomap-worker processes started, made ready, faulted and stopped by PID."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import gomap
from gomap import _procs

from .conftest import RedisServer, Worker, pid_alive


def live_children() -> set[int]:
    """The PIDs of this process's children that have not exited."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.add(int(entry))
    return found


def once(**kwargs) -> redis.Redis:
    """A redis-py client that does not retry (redis-py 8 retries even a refused password for seconds)."""
    return redis.Redis(retry=Retry(NoBackoff(), 0), **kwargs)


def script(tmp_path: Path, body: str) -> str:
    """An executable shell script standing in for a worker binary (it ignores the flags it gets),
    named after the test, so that the temporary logs of its processes can be told apart."""
    path = tmp_path / f"fake-worker-{tmp_path.name}"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def temporary_logs(program: str) -> list[str]:
    """The temporary logs of processes of program that are left."""
    return glob.glob(os.path.join(tempfile.gettempdir(), f"gomap-{os.path.basename(program)}-*.log"))


def test_a_restarted_redis_has_the_same_address_and_no_data(fresh_redis: RedisServer):
    url, old_pid = fresh_redis.url, fresh_redis.pid
    fresh_redis.redis.set("k", "v")
    fresh_redis.restart()
    assert fresh_redis.url == url and fresh_redis.pid != old_pid and not pid_alive(old_pid)
    assert fresh_redis.redis.get("k") is None  # the client reconnects; the data is gone
    fresh_redis.redis.set("k", "w")
    fresh_redis.kill()
    assert not pid_alive(fresh_redis.pid) and not fresh_redis.answers()
    fresh_redis.restart()
    assert fresh_redis.answers() and fresh_redis.redis.dbsize() == 0


def test_a_paused_redis_answers_nothing_until_resumed(fresh_redis: RedisServer):
    fresh_redis.pause()
    try:
        slow = once(unix_socket_path=fresh_redis.sock, socket_timeout=0.2)
        with pytest.raises(redis.TimeoutError):
            slow.ping()
        slow.close()
    finally:
        fresh_redis.resume()
    assert fresh_redis.redis.ping()


def test_stop_ends_a_paused_redis_gracefully():
    server = RedisServer()
    server.pause()
    t0 = time.monotonic()
    server.stop()
    # SIGTERM alone would wait for the whole stop timeout and end in SIGKILL (-9).
    assert server.process.popen is not None and server.process.popen.returncode == 0
    assert time.monotonic() - t0 < 5 and not os.path.exists(server.dir)


def test_tcp_redis_with_a_password_serves_a_worker():
    with RedisServer(tcp=True, password="p@ss:w/rd") as server:
        assert server.url == f"redis://:p%40ss%3Aw%2Frd@127.0.0.1:{server.port}/"
        assert server.address == f"127.0.0.1:{server.port}"
        with pytest.raises(redis.AuthenticationError):
            once(host="127.0.0.1", port=server.port).ping()
        w = Worker(server.url)
        try:
            with gomap.Client(server.url) as client:
                assert gomap.map("sampleadd", [(1, 2)], client=client, progress=False) == [3]
                assert [x.id for x in client.workers()] == [w.id]
        finally:
            w.stop()


def test_tls_redis_on_a_loopback_port(tmp_path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not on PATH")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    args = ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
            "--tls-auth-clients", "no"]  # fmt: skip
    with RedisServer(tls=True, args=args) as server:
        assert server.url == f"rediss://127.0.0.1:{server.port}/"
        assert redis.Redis.from_url(server.url, ssl_ca_certs=str(cert)).ping()
        with pytest.raises(redis.ConnectionError):
            once(host="127.0.0.1", port=server.port, socket_timeout=2).ping()  # plain text is refused


def test_a_cluster_node():
    with RedisServer(cluster=True) as server:
        assert server.redis.info("cluster")["cluster_enabled"] == 1
        assert server.url == f"redis://127.0.0.1:{server.port}/"


def test_a_worker_restarts_and_is_killed(fresh_redis: RedisServer):
    w = Worker(fresh_redis.url)
    try:
        assert w.url == fresh_redis.url and w.pid == w.ready["pid"] and w.redis_pid == 0
        old_pid, old_id = w.pid, w.id
        w.restart()
        assert w.pid != old_pid and w.id != old_id and not pid_alive(old_pid)
        with gomap.Client(fresh_redis.url) as client:
            assert [x.id for x in client.workers()] == [w.id]  # the old one unregistered
            assert gomap.map("sampleadd", [(2, 2)], client=client, progress=False) == [4]
        w.kill()
        assert not pid_alive(w.pid) and not w.running
    finally:
        w.stop()
    assert not w.log.exists()  # a temporary log goes with stop()


def test_stop_is_graceful_every_time(fresh_redis: RedisServer):
    # A worker stopped right after its start: a lifeline closed alongside SIGTERM made it exit
    # at once (status 1, still registered) about every other time.
    r = fresh_redis.redis
    for _ in range(10):
        w = Worker(fresh_redis.url)
        assert w.stop() == 0
        assert not r.hlen("goworker:gomap:workers"), "the worker did not unregister"


def test_a_paused_worker_stops_gracefully(fresh_redis: RedisServer):
    w = Worker(fresh_redis.url)
    w.pause()
    t0 = time.monotonic()
    assert w.stop() == 0  # SIGCONT after SIGTERM: it shuts down, not killed after the timeout
    assert time.monotonic() - t0 < 5


def test_a_worker_that_exits_at_start_shows_its_log(fresh_redis: RedisServer):
    before = live_children()
    with pytest.raises(gomap.LocalClusterError) as info:
        Worker(fresh_redis.url, "-no-such-flag")
    message = str(info.value)
    assert "exited with status 2 before it was ready" in message
    assert "flag provided but not defined: -no-such-flag" in message
    assert live_children() <= before


def test_no_ready_line_within_the_deadline_kills_the_process(tmp_path):
    before = live_children()
    program = script(tmp_path, "echo starting >&2; exec sleep 60")
    t0 = time.monotonic()
    with pytest.raises(
        gomap.LocalClusterError, match=r"fake-worker-\S+ wrote no ready line within 0.5s; its log:\nstarting"
    ):
        _procs.WorkerProcess(program, [], timeout=0.5)
    assert time.monotonic() - t0 < 5
    assert live_children() <= before
    assert not temporary_logs(program)


def test_output_that_is_not_a_ready_line_is_an_error(tmp_path):
    before = live_children()
    program = script(tmp_path, "echo hello; exec sleep 60")
    with pytest.raises(gomap.LocalClusterError, match=r"wrote b'hello' where its ready line should be"):
        _procs.WorkerProcess(program, [])
    assert live_children() <= before
    assert not temporary_logs(program)


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path):
    body = """trap '' TERM
echo '{"event": "ready", "id": "fake"}'
exec sleep 60"""
    w = _procs.WorkerProcess(script(tmp_path, body), [])
    assert w.id == "fake" and w.running
    t0 = time.monotonic()
    assert w.stop(timeout=0.5) == -signal.SIGKILL
    assert time.monotonic() - t0 < 5 and not pid_alive(w.pid)


def test_a_missing_program_is_a_clear_error(tmp_path):
    with pytest.raises(gomap.LocalClusterError, match="cannot run nope"):
        _procs.Process([str(tmp_path / "nope")]).start()
    assert not temporary_logs("nope")
    with pytest.raises(gomap.LocalClusterError, match="redis-server exited with status"):
        RedisServer(args=["--no-such-option", "x"])


def test_the_local_cluster_shows_the_log_of_a_keeper_that_failed():
    false = shutil.which("false") or "/bin/false"
    with pytest.raises(gomap.LocalClusterError) as info:
        gomap.LocalCluster(redis_server=false, quiet=True).start()
    message = str(info.value)
    assert "the local redis-server (run by gomap-worker -redis-only) exited with status 1" in message
    assert "redis-server exited at start" in message  # from the keeper's log
