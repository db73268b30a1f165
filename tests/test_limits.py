"""Time limits and runaway items, against a real redis-server and the real worker binary."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import gomap
from gomap import TaskError, Timeout

from .conftest import RedisServer, Worker

# countprimes of this runs for hours, and never looks at its context.
RUNAWAY = 10**13


@pytest.fixture
def small_worker(fresh_redis: RedisServer) -> Iterator[Worker]:
    """A worker of two slots, of the test's own: its runaway items end with its process."""
    w = Worker(fresh_redis.url, "-concurrency", "2", "-max-runaways", "-1")
    yield w
    w.stop()


@pytest.fixture
def small_client(fresh_redis: RedisServer, small_worker: Worker) -> Iterator[gomap.Client]:
    c = gomap.Client(fresh_redis.url)
    yield c
    c.close()


def test_cancelled_runaway_batches_free_their_slots(small_client):
    # Each call times out and cancels its batch; the worker abandons the running item.
    for _ in range(2):
        with pytest.raises(Timeout):
            gomap.map("countprimes", [RUNAWAY], timeout=1, client=small_client, progress=False)
    # Both slots are free again, though both items still run.
    assert gomap.map("sampleadd", [(1, 2)], timeout=5, client=small_client, progress=False) == [3]


def test_item_timeout_fails_the_runaway_item_and_the_others_succeed(small_client):
    out = gomap.map(
        "countprimes",
        [10, RUNAWAY, 100],
        item_timeout=0.3,
        errors="return",
        chunksize=3,
        timeout=10,
        client=small_client,
        progress=False,
    )
    assert out[0] == 4
    assert out[2] == 25
    err = out[1]
    assert isinstance(err, TaskError)
    assert (err.index, err.kind) == (1, "timeout")
    assert "exceeded the 300ms limit (the batch's limit_ms)" in err.error


def test_a_chunk_over_the_workers_item_limit(fresh_redis: RedisServer):
    pairs = [(i, i) for i in range(20)]
    client = gomap.Client(fresh_redis.url)
    # Submitted before any worker runs, so the client cannot know the limit: the worker answers
    # with one error for the whole chunk, which the client spreads over its items.
    early = gomap.submit("sampleadd", pairs, chunksize=10, errors="return", client=client)
    w = Worker(fresh_redis.url, "-max-chunk-items", "5")
    try:
        got = early.result(timeout=30)
        assert all(isinstance(e, TaskError) and e.kind == "chunk_too_large" for e in got)
        assert [e.index for e in got] == list(range(20))
        assert "-max-chunk-items 5" in got[0].error
        # Once the worker is live, its record says the limit: a client that reads it (a new one:
        # this one cached "no workers" for a few seconds) refuses the chunk size before anything
        # is queued.
        client.close()
        client = gomap.Client(fresh_redis.url)
        with pytest.raises(gomap.ConfigError, match=r"-max-chunk-items is 5\): pass chunksize=5"):
            gomap.map("sampleadd", pairs, chunksize=10, client=client, progress=False)
        assert fresh_redis.redis.llen("goworker:queue:sampleadd") == 0
        assert gomap.map("sampleadd", pairs, chunksize=5, client=client, progress=False) == [2 * i for i in range(20)]
    finally:
        client.close()
        w.stop()
