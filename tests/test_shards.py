"""Sharded queues on a Redis Cluster (docs/protocol.md, "Sharded queues"): a worker serves each
queue as one shard per master, and a batch's chunks go round the shards, so that the masters share
one hot function's traffic. Shard 0 is the queue itself, which Resque tools still see."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import gomap
from gomap import _protocol
from gomap._inspect import Inspector

from ._cluster import Cluster
from .conftest import Worker, wait_until


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster(masters=3) as c:
        yield c


def test_a_batch_goes_round_the_shards_one_per_master(cluster):
    w = Worker(cluster.url, host="shardw")
    try:
        with gomap.Client(cluster.url) as client:
            [info] = client.workers("samplesleep")
            assert info.shards == 3
            shards = _protocol.shard_names(client.keys, "samplesleep", 3)
            assert "samplesleep" in shards
            assert len({cluster.master_of(client.keys.queue(q)).port for q in shards}) == 3

            inspector = Inspector(client)
            assert inspector.pause("samplesleep", wait=10).complete
            with pytest.warns(UserWarning, match="is paused"):
                batch = gomap.submit("samplesleep", [0.01] * 9, chunksize=1, client=client)
            lengths = {q: client.redis.llen(client.keys.queue(q)) for q in shards}
            assert lengths == dict.fromkeys(shards, 3), lengths
            assert {q.name for q in inspector.queues()} >= set(shards)  # Resque tools see every shard

            # The shards are served: resumed, the batch completes in order.
            assert inspector.resume("samplesleep", wait=10).complete
            assert batch.result(timeout=30) == [0.01] * 9
            assert gomap.map("sampleadd", [(i, 1) for i in range(3000)], client=client, progress=False) == [
                i + 1 for i in range(3000)
            ]

            # Plain jobs, opted in, spread over the shards too; the workers run them all.
            processed = int(client.redis.get("goworker:stat:processed") or 0)
            inspector.pause("sampleadd", wait=10)
            for i in range(30):
                client.enqueue("sampleadd", i, 1, spread=True)
            spread = [
                client.redis.llen(client.keys.queue(q)) for q in _protocol.shard_names(client.keys, "sampleadd", 3)
            ]
            assert sum(spread) == 30 and all(spread), spread
            inspector.resume("sampleadd", wait=10)
            wait_until(
                lambda: int(client.redis.get("goworker:stat:processed") or 0) >= processed + 30,
                timeout=15,
                what="the 30 spread plain jobs ran",
            )

            # A shard no worker serves (left by workers with another -shards) is pointed out.
            client.enqueue("samplesleep", 0.01, queue="samplesleep~99")
            assert "queue samplesleep~99: 1 waiting (no live worker serves it)" in inspector.status().text()
            client.redis.delete(client.keys.queue("samplesleep~99"))

            # Cancelling a batch removes its chunks from every shard.
            inspector.pause("samplesleep", wait=10)
            with pytest.warns(UserWarning, match="is paused"):
                parked = gomap.submit("samplesleep", [0.01] * 6, chunksize=1, client=client)
            assert inspector.cancel_batch(parked.id) == 6
            assert all(client.redis.llen(client.keys.queue(q)) == 0 for q in shards)
            inspector.resume("samplesleep", wait=10)
            wait_until(lambda: not client.redis.keys("goworker:gomap:{*"), what="no batch keys are left")
    finally:
        w.stop()
