"""gomap on a Redis Cluster: three masters on loopback, a worker and a client that detect it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator

import pytest
import redis

import gomap

from .conftest import Worker, stop_process, wait_until


def cluster_port() -> int:
    """A free port p whose cluster bus port p+10000 is free too (Redis 6.2 cannot choose the bus port)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if port + 10000 < 65536:
                with socket.socket() as bus:
                    try:
                        bus.bind(("127.0.0.1", port + 10000))
                    except OSError:
                        continue
                    return port
    raise AssertionError("no free port pair for a cluster node")


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.skip("redis-server and redis-cli are not on PATH (apt-get install redis-server)")
    procs, dirs, addrs = [], [], []
    try:
        for _ in range(3):
            port = cluster_port()
            d = tempfile.mkdtemp(prefix="gomap-cluster-")
            dirs.append(d)
            args = [
                server, "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-config-file", os.path.join(d, "nodes.conf"),
                "--save", "", "--appendonly", "no", "--dir", d, "--logfile", os.path.join(d, "redis.log"),
            ]  # fmt: skip
            procs.append(subprocess.Popen(args))
            addrs.append(f"127.0.0.1:{port}")
        nodes = [redis.Redis(host="127.0.0.1", port=int(a.split(":")[1])) for a in addrs]

        def up() -> bool:
            try:
                return all(n.ping() for n in nodes)
            except redis.ConnectionError:
                return False

        wait_until(up, what="the cluster nodes answer")
        subprocess.run([cli, "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
        wait_until(lambda: all(n.cluster("info")["cluster_state"] == "ok" for n in nodes), timeout=30,
                   what="the cluster is ok")  # fmt: skip
        for n in nodes:
            n.close()
        yield f"redis://{addrs[0]}/0"
    finally:
        for p in procs:
            stop_process(p)
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def test_map_on_a_redis_cluster(cluster_url):
    w = Worker(cluster_url, host="clusterw")
    try:
        with gomap.Client(cluster_url) as client:
            assert client.cluster
            # Batch keys and queues live on different nodes: many small batches make a race
            # between them (the meta key against the first chunk) likely to show.
            for _ in range(50):
                assert gomap.map(
                    "sampleadd", [(i, 1) for i in range(50)], chunksize=5, client=client, progress=False
                ) == [i + 1 for i in range(50)]
            assert gomap.map(
                "sampleadd", [(i, i) for i in range(2000)], chunksize=50, client=client, progress=False
            ) == [2 * i for i in range(2000)]
            assert list(gomap.imap("sampleupper", ["a", "b", "c"], chunksize=1, client=client, progress=False)) == [
                "A",
                "B",
                "C",
            ]
            with pytest.raises(gomap.TaskError):
                gomap.map("samplediv", [(1, 1)] * 20 + [(1, 0)], chunksize=3, client=client, progress=False)
            client.enqueue("sampleupper", "plain job")
            assert [x.id for x in client.workers("sampleadd")] == [w.id]
            assert not client.redis.keys("goworker:gomap:{*")
    finally:
        w.stop()
