"""Failover: a 3-master / 3-replica Redis Cluster whose master is killed (SIGKILL) under a running
batch (issue 13, item 5; the times and logs observed are in docs/scaling.md).

Each test kills one master: the one holding the batch's keys (its ``{batch id}`` slot), or the one
holding the function's base queue shard (and its in-flight lists, which share the queue's slot).
With cluster-node-timeout 1000 ms its replica is promoted about 2 s later. Clients and workers are
given a replica's URL (replicas outlive the kill); the cluster clients learn every node from it.

With the replica in sync (as it is within a millisecond on loopback), the batch completes with every
item right, the workers do not exit and stay registered, and a new batch works on the new topology.
Replication is asynchronous, though: with the replicas cut off while the batch starts, the replica
promoted lacks what its master took since. Batch keys lost make the client raise BatchLost about a
second after the promotion. Chunks lost from a queue are noticed by no one in Redis; the client's
backup chunks (docs/reliability.md, "A slow or frozen worker") push them again once no chunk has
completed for a while, so the batch completes, right.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

import gomap

from ._cluster import Cluster
from .conftest import RedisServer, Worker, pid_alive, wait_until
from .test_faults import in_thread

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

BATCH_TIMEOUT = 30.0


def sleeps() -> list[float]:
    """samplesleep's items: all run at once (a chunk of it frees its slot while it waits), and
    they end one by one over 5 s; distinct, so a result out of place shows."""
    return [1.0 + i / 10 for i in range(40)]


PRIMES_UP_TO = 1_500_000  # countprimes(n) keeps a core busy ~0.25 s: 40 of them on 2 cores take ~5 s


def primes(up_to: int = PRIMES_UP_TO) -> list[int]:
    """countprimes' items: its chunks hold their slot, so the queue backs up."""
    return [up_to + 1000 * i for i in range(40)]


def prime_counts(ns: list[int]) -> list[int]:
    """How many primes are at most each n (a sieve: the answer countprimes must give)."""
    top = max(ns)
    sieve = bytearray([1]) * (top + 1)
    sieve[0:2] = b"\x00\x00"
    for p in range(2, int(top**0.5) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytes(len(range(p * p, top + 1, p)))
    counts, total, upto = [], 0, 0
    for n in sorted(ns):
        total += sum(sieve[upto + 1 : n + 1]) if upto else sum(sieve[: n + 1])
        upto = n
        counts.append(total)
    by_n = dict(zip(sorted(ns), counts, strict=True))
    return [by_n[n] for n in ns]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with Cluster(masters=3, replicas=1, node_timeout_ms=1000) as c:
        yield c


@pytest.fixture
def pool(cluster: Cluster) -> Iterator[tuple[str, list[Worker]]]:
    """Two worker processes of 2 slots and the URL they (and the test's clients) are seeded with:
    a replica's."""
    replica = next(s for s in cluster.servers if s.redis.info("replication")["role"] == "slave")
    workers: list[Worker] = []
    try:
        for host in ("failover-a", "failover-b"):
            workers.append(Worker(replica.url, "-concurrency", "2", host=host))
        yield replica.url, workers
    finally:
        for w in workers:
            w.stop()


def check_pool_after(client: gomap.Client, workers: list[Worker]) -> None:
    """The workers did not exit, they are registered and alive again on the new topology, and a
    new batch runs."""
    for w in workers:
        assert w.proc is not None and w.proc.poll() is None and pid_alive(w.pid), f"{w.id} exited:\n{w.log_excerpt()}"
    ids = sorted(w.id for w in workers)
    wait_until(lambda: sorted(x.id for x in client.workers()) == ids, timeout=10, what=f"{ids} are registered")
    for w in workers:
        assert client.redis.exists(client.keys.alive(w.id)), w.id
    new = [(i, i) for i in range(200)]
    assert gomap.map("sampleadd", new, chunksize=10, client=client, progress=False, timeout=20) == [
        2 * i for i in range(200)
    ]
    assert not client.redis.keys("goworker:gomap:{*")  # no batch left behind, on any master


def report(what: str, killed_at: float, promoted_at: float, done_at: float, workers: list[Worker]) -> None:
    """What the failover looked like, for docs/scaling.md (pytest -s shows it): the times, and
    the warnings and errors the workers logged, counted by message."""
    print(f"\n{what}: replica promoted {promoted_at - killed_at:.2f}s after the kill, batch done after "
          f"{done_at - killed_at:.2f}s")  # fmt: skip
    for w in workers:
        seen: Counter[str] = Counter()
        for ln in w.log.read_text(errors="replace").splitlines():
            if "level=WARN" in ln or "level=ERROR" in ln:
                msg = re.search(r'msg="([^"]*)"', ln)
                err = re.search(r'err=("(?:[^"\\]|\\.)*"|\S+)', ln)
                kind = re.sub(r"127\.0\.0\.1:\d+", "ADDR", err.group(1))[:90] if err else ""
                seen[f"{msg.group(1) if msg else ln[:60]}: {kind}"] += 1
        print(f"  {w.id}: " + ("; ".join(f"{n} x {k}" for k, n in seen.most_common(6)) or "nothing above info"))


def fail_over(cluster: Cluster, master: RedisServer, key: str, batch: threading.Thread) -> tuple[float, float, float]:
    """Kill master (of key's slot), wait for its replica's promotion, then for the batch's thread:
    returns when the master was killed, when the promotion was seen and when the batch ended."""
    killed_at = cluster.kill(master)
    cluster.wait_promoted(cluster.keyslot(key), master)
    promoted_at = time.monotonic()
    batch.join(BATCH_TIMEOUT + 5)
    assert not batch.is_alive()
    return killed_at, promoted_at, time.monotonic()


def test_killing_the_master_of_a_batchs_keys(cluster: Cluster, pool: tuple[str, list[Worker]]) -> None:
    url, workers = pool
    with gomap.Client(url) as client:
        assert client.cluster
        batch = gomap.submit("samplesleep", sleeps(), chunksize=1, client=client)
        meta = client.keys.batch_meta(batch.id)
        thread, results, errors = in_thread(lambda: batch.result(timeout=BATCH_TIMEOUT))
        wait_until(lambda: batch.completed >= 8, timeout=15, what="8 items are collected")
        master = cluster.master_of(meta)
        same_as_queue = master is cluster.master_of(client.keys.queue("samplesleep"))
        killed_at, promoted_at, done_at = fail_over(cluster, master, meta, thread)
        report(f"batch keys' master killed (the base queue's too: {same_as_queue}): {errors or 'completed'}",
               killed_at, promoted_at, done_at, workers)  # fmt: skip
        assert not errors, errors
        assert results == sleeps()
        check_pool_after(client, workers)


def test_killing_the_master_of_the_queue(cluster: Cluster, pool: tuple[str, list[Worker]]) -> None:
    url, workers = pool
    with gomap.Client(url) as client:
        queue = client.keys.queue("countprimes")  # the base queue, one of the batch's shards
        master = cluster.master_of(queue)
        replica = cluster.replicas_of(master)[0]
        batch = gomap.submit("countprimes", primes(), chunksize=1, client=client)
        thread, results, errors = in_thread(lambda: batch.result(timeout=BATCH_TIMEOUT))
        # Mid-batch: chunks run on every slot and more wait on the queue, as the replica has it.
        wait_until(lambda: batch.completed >= 8, timeout=15, what="8 items are collected")
        waiting = int(cluster.read(replica, "LLEN", queue))
        assert waiting > 0
        killed_at, promoted_at, done_at = fail_over(cluster, master, queue, thread)
        report(f"queue's master killed ({waiting} jobs waiting on it): {errors or 'completed'}",
               killed_at, promoted_at, done_at, workers)  # fmt: skip
        assert not errors, errors
        assert results == prime_counts(primes())
        check_pool_after(client, workers)


def test_a_batch_the_promoted_replica_never_had_is_lost(cluster: Cluster, pool: tuple[str, list[Worker]]) -> None:
    """Replication is asynchronous: with the replicas frozen (SIGSTOP) and cut off from their
    masters while the batch starts, the replica promoted has none of its keys. The client must
    say so (BatchLost) soon after the promotion, not wait for its timeout."""
    url, workers = pool
    with gomap.Client(url) as client:
        replicas = cluster.replica_servers()
        masters = [s for s in cluster.alive if s not in replicas]
        for r in replicas:
            cluster.pause(r)
        for m in masters:  # what the kernel holds for a frozen replica would still reach it: cut the links
            assert m.redis.execute_command("CLIENT", "KILL", "TYPE", "replica") == 1
        batch = gomap.submit("samplesleep", sleeps(), chunksize=1, client=client)
        meta = client.keys.batch_meta(batch.id)
        thread, results, errors = in_thread(lambda: batch.result(timeout=BATCH_TIMEOUT))
        wait_until(lambda: batch.completed >= 8, timeout=15, what="8 items are collected")
        master = cluster.master_of(meta)
        killed_at = cluster.kill(master)
        for r in replicas:
            cluster.resume(r)
        cluster.wait_promoted(cluster.keyslot(meta), master)
        promoted_at = time.monotonic()
        thread.join(BATCH_TIMEOUT + 5)
        assert not thread.is_alive()
        done_at = time.monotonic()
        report(f"batch keys' master killed, its replica behind: {errors or 'completed'}",
               killed_at, promoted_at, done_at, workers)  # fmt: skip
        assert not results
        assert len(errors) == 1 and isinstance(errors[0], gomap.BatchLost), errors
        assert batch.id in str(errors[0]) and "Run the batch again" in str(errors[0])
        assert done_at - promoted_at < 5.0  # noticed, not waited out
        check_pool_after(client, workers)


def test_chunks_the_promoted_replica_never_had_are_pushed_again(
    cluster: Cluster, pool: tuple[str, list[Worker]]
) -> None:
    """The same for the queue: chunks pushed while the replicas were cut off are gone after the
    failover. Nothing in Redis says which chunks vanished from a queue; the client pushes its
    outstanding chunks again once none has completed for 3 times the median chunk time (backup
    chunks), and the batch completes, right, within its timeout (BatchLost if the batch's keys were
    on that master too)."""
    url, workers = pool
    with gomap.Client(url) as client:
        queue = client.keys.queue("countprimes")
        replicas = cluster.replica_servers()
        masters = [s for s in cluster.alive if s not in replicas]
        for r in replicas:
            cluster.pause(r)
        for m in masters:
            assert m.redis.execute_command("CLIENT", "KILL", "TYPE", "replica") == 1
        timeout = 20.0  # the chunks not lost are done by then, even on a busy machine
        items = primes(1_000_000)  # ~0.15 s each: 3 s of work on 2 cores
        batch = gomap.submit("countprimes", items, chunksize=1, client=client)
        started = time.monotonic()
        thread, results, errors = in_thread(lambda: batch.result(timeout=timeout))
        wait_until(lambda: batch.completed >= 4, timeout=15, what="4 items are collected")
        master = cluster.master_of(queue)
        waiting = int(master.redis.llen(queue))
        assert waiting > 0
        same_as_meta = master is cluster.master_of(client.keys.batch_meta(batch.id))
        killed_at = cluster.kill(master)
        for r in replicas:
            cluster.resume(r)
        cluster.wait_promoted(cluster.keyslot(queue), master)
        promoted_at = time.monotonic()
        thread.join(timeout + 5)
        assert not thread.is_alive()
        done_at = time.monotonic()
        report(f"queue's master killed, its replica behind ({waiting} jobs waiting on it; batch keys there too: "
               f"{same_as_meta}): {errors or 'completed'}", killed_at, promoted_at, done_at, workers)  # fmt: skip
        assert done_at - started < timeout + 3.0
        if same_as_meta:
            assert not results
            assert len(errors) == 1 and isinstance(errors[0], gomap.BatchLost), errors
        else:
            assert not errors, errors
            assert results == prime_counts(items)
            assert batch._backups, "the lost chunks came back as backup chunks"
        check_pool_after(client, workers)
