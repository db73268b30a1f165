"""gomap on a Redis Cluster: three masters on loopback, a worker and a client that detect it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

import gomap

from .conftest import RedisServer, Worker, wait_until


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not on PATH (apt-get install redis-server)")
    servers: list[RedisServer] = []
    try:
        for _ in range(3):
            servers.append(RedisServer(cluster=True))
        addrs = [s.address for s in servers]
        subprocess.run([cli, "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
        wait_until(lambda: all(s.redis.cluster("info")["cluster_state"] == "ok" for s in servers), timeout=30,
                   what="the cluster is ok")  # fmt: skip
        yield servers[0].url
    finally:
        for s in servers:
            s.stop()


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
