"""gomap on a Redis Cluster: three masters on loopback, a worker and a client that detect it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import gomap

from ._cluster import Cluster
from .conftest import Worker


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    with Cluster(masters=3) as cluster:
        yield cluster.url


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
