"""The fault suite: a real Redis and real workers, broken on purpose while batches run.

Each test injects one fault an operator meets (a reply lost on the network, Redis flushed,
restarted or frozen, workers killed or restarted) and checks the promise of docs/reliability.md:
the call returns the right results, or raises a typed error that says what happened, within a
bounded time, and leaves nothing behind in Redis.
"""

from __future__ import annotations

import itertools
import math
import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

import gomap
from gomap import _defaults

from ._proxy import ReplyDropper, Rule
from .conftest import RedisServer, Worker, wait_until

pytestmark = pytest.mark.faults


def pairs(n: int) -> list[tuple[int, int]]:
    return [(i, 2 * i) for i in range(n)]


def in_thread(call: Callable[[], list[object]]) -> tuple[threading.Thread, list[object], list[BaseException]]:
    """Start call in a thread; the lists fill with its results, or with what it raised."""
    results: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.extend(call())
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t, results, errors


def no_batch_keys(server: RedisServer) -> list[bytes]:
    return server.redis.keys("goworker:gomap:{*")


@pytest.fixture
def proxy(redis_server: RedisServer, worker: Worker):
    p = ReplyDropper(redis_server.sock)
    yield p
    p.close()


def nth(pred: Callable[[list[bytes]], bool], n: int = 0) -> Rule:
    """A rule that drops the reply to the n-th command (from 0) that pred matches."""
    seen = itertools.count()
    return lambda args, _: pred(args) and next(seen) == n


def script(marker: bytes) -> Callable[[list[bytes]], bool]:
    """Matches an EVAL of the script whose text holds marker."""
    return lambda args: args[0].upper() == b"EVAL" and marker in args[1]


def command(name: bytes) -> Callable[[list[bytes]], bool]:
    return lambda args: args[0].upper() == name


# The round trips of one batch, by the command whose reply is lost.
DROPS: dict[str, Callable[[], Rule]] = {
    "submit": lambda: nth(script(b"'submitted'")),
    "second submit": lambda: nth(script(b"'submitted'"), 1),
    "first collect": lambda: nth(script(b"acked")),
    "third collect": lambda: nth(script(b"acked"), 2),
    "finish": lambda: nth(command(b"DEL")),
    "worker list": lambda: nth(command(b"HGETALL")),
}


@pytest.mark.parametrize("where", DROPS)
def test_a_lost_reply_loses_nothing(proxy: ReplyDropper, redis_server: RedisServer, where: str):
    client = gomap.Client(proxy.url)
    try:
        proxy.drop(DROPS[where]())
        got = gomap.map("sampleadd", pairs(2000), chunksize=50, client=client, progress=False, timeout=30)
        assert got == [3 * i for i in range(2000)]
        assert not proxy.armed, f"the {where} reply was never dropped: the test did not test it"
    finally:
        client.close()
    assert not no_batch_keys(redis_server)


def test_a_lost_reply_of_imap_and_submit_loses_nothing(proxy: ReplyDropper, redis_server: RedisServer):
    client = gomap.Client(proxy.url)
    try:
        proxy.drop(DROPS["third collect"]())
        assert list(gomap.imap("sampleadd", iter(pairs(500)), chunksize=10, client=client)) == [
            3 * i for i in range(500)
        ]
        proxy.drop(DROPS["first collect"]())
        batch = gomap.submit("sampleadd", pairs(300), chunksize=7, client=client)
        assert batch.result(timeout=30) == [3 * i for i in range(300)]
        assert not proxy.armed
    finally:
        client.close()
    assert not no_batch_keys(redis_server)


def test_a_push_sent_again_queues_each_chunk_once(fresh_redis: RedisServer):
    proxy = ReplyDropper(fresh_redis.sock)
    client = gomap.Client(proxy.url)
    w = None
    try:
        proxy.drop(DROPS["submit"]())
        batch = gomap.submit("sampleadd", pairs(300), chunksize=7, client=client)
        assert not proxy.armed
        # No worker runs yet, so the queue shows what the push and its retry left: each chunk once.
        assert fresh_redis.redis.llen("goworker:queue:sampleadd") == math.ceil(300 / 7)
        w = Worker(fresh_redis.url)
        assert batch.result(timeout=30) == [3 * i for i in range(300)]
    finally:
        client.close()
        proxy.close()
        if w is not None:
            w.stop()
    assert not no_batch_keys(fresh_redis)


def test_a_flushed_batch_is_lost_loudly(client: gomap.Client, redis_server: RedisServer):
    it = gomap.imap("samplesleep", [0.05] * 40, chunksize=1, client=client)
    next(it)
    redis_server.redis.flushall()
    start = time.monotonic()
    with pytest.raises(gomap.BatchLost, match=r"lost batch .* its keys are gone") as info:
        list(it)
    assert time.monotonic() - start < 3
    assert info.value.batch

    batch = gomap.submit("samplesleep", [0.05] * 40, chunksize=1, client=client)
    redis_server.redis.flushall()
    with pytest.raises(gomap.BatchLost):
        batch.result()  # no timeout: it must still end


def test_a_redis_restart_without_persistence_is_a_lost_batch(fresh_redis: RedisServer):
    w = Worker(fresh_redis.url, "-concurrency", "2")
    client = gomap.Client(fresh_redis.url)
    try:
        it = gomap.imap("samplesleep", [0.1] * 100, chunksize=1, client=client)
        next(it)
        fresh_redis.restart()
        with pytest.raises(gomap.BatchLost):
            list(it)
        # The worker rode the restart out, and the client's next batch works.
        assert gomap.map("sampleadd", pairs(10), client=client, progress=False, timeout=20) == [
            3 * i for i in range(10)
        ]
    finally:
        client.close()
        w.stop()


def _stall(server: RedisServer, seconds: float) -> threading.Thread:
    """Freeze redis-server (SIGSTOP) for ``seconds``: the fault's length, not a synchronisation."""
    os.kill(server.proc.pid, signal.SIGSTOP)

    def thaw() -> None:
        time.sleep(seconds)
        os.kill(server.proc.pid, signal.SIGCONT)

    t = threading.Thread(target=thaw)
    t.start()
    return t


@pytest.mark.parametrize("timeout", [None, 30.0])
def test_a_redis_stall_is_ridden_out(fresh_redis: RedisServer, timeout: float | None):
    """A stall shorter than the call's timeout (or, without one, than the stall tolerance)."""
    w = Worker(fresh_redis.url)
    client = gomap.Client(fresh_redis.url)
    try:
        it = gomap.imap("samplesleep", [0.02] * 200, chunksize=5, client=client, timeout=timeout)
        first = next(it)
        thaw = _stall(fresh_redis, 4.0)
        rest = list(it)
        thaw.join()
        assert [first, *rest] == [0.02] * 200
        assert not no_batch_keys(fresh_redis)
    finally:
        client.close()
        w.stop()


def test_timeout_is_a_bound_while_redis_stalls(fresh_redis: RedisServer):
    w = Worker(fresh_redis.url)
    client = gomap.Client(fresh_redis.url)
    try:
        it = gomap.imap("samplesleep", [0.05] * 400, chunksize=2, client=client, timeout=2.0)
        start = time.monotonic()
        next(it)
        thaw = _stall(fresh_redis, 5.0)
        with pytest.raises(gomap.Timeout, match="did not answer"):
            list(it)
        elapsed = time.monotonic() - start
        assert elapsed < 2.0 + _defaults.WAIT_SLICE + _defaults.READ_MARGIN + 0.3, elapsed
        thaw.join()
        # The cancel that could not reach Redis goes on in the background: once Redis is back,
        # the batch's keys and its queued chunks go.
        wait_until(lambda: not no_batch_keys(fresh_redis), timeout=15, what="the cancel reaches Redis")
        wait_until(lambda: fresh_redis.redis.llen("goworker:queue:samplesleep") == 0, timeout=15)
    finally:
        client.close()
        w.stop()


def test_redis_unreachable_past_the_tolerance_is_a_connect_error(fresh_redis: RedisServer):
    w = Worker(fresh_redis.url)
    client = gomap.Client(fresh_redis.url, stall_tolerance=1.0)
    try:
        it = gomap.imap("samplesleep", [0.05] * 400, chunksize=2, client=client)
        next(it)
        thaw = _stall(fresh_redis, 4.0)
        start = time.monotonic()
        with pytest.raises(gomap.ConnectError, match="failing for"):
            list(it)
        assert time.monotonic() - start < 1.0 + 2 * (_defaults.WAIT_SLICE + _defaults.READ_MARGIN) + 0.5
        thaw.join()
        wait_until(lambda: not no_batch_keys(fresh_redis), timeout=15, what="the cancel reaches Redis")
    finally:
        client.close()
        w.stop()


def test_a_rolling_restart_does_not_fail_the_batch(fresh_redis: RedisServer):
    old = Worker(fresh_redis.url, "-concurrency", "2")
    client = gomap.Client(fresh_redis.url)
    t, results, errors = in_thread(
        lambda: gomap.map("samplesleep", [0.1] * 60, chunksize=1, client=client, progress=False)
    )
    new = None
    try:
        wait_until(lambda: int(fresh_redis.redis.get("goworker:stat:processed") or 0) >= 5, what="progress")
        old.stop()  # SIGTERM: running chunks go back to the queue
        # Longer than NO_WORKERS_AFTER with no worker at all: the length of the restart, not a sync.
        time.sleep(_defaults.NO_WORKERS_AFTER + 1.5)
        assert t.is_alive() and not errors, errors
        new = Worker(fresh_redis.url, "-concurrency", "2")
        t.join(60)
        assert not t.is_alive()
        assert not errors, errors
        assert results == [0.1] * 60
        assert not no_batch_keys(fresh_redis)
    finally:
        t.join(60)
        client.close()
        if new is not None:
            new.stop()


def test_workers_gone_past_the_grace_fail_the_batch(fresh_redis: RedisServer, monkeypatch):
    monkeypatch.setattr(_defaults, "NO_WORKERS_AFTER", 0.3)
    w = Worker(fresh_redis.url, "-concurrency", "1")
    client = gomap.Client(fresh_redis.url)
    try:
        it = gomap.imap("samplesleep", [0.1] * 50, chunksize=1, client=client, wait_for_workers=1.0)
        next(it)
        w.stop()
        start = time.monotonic()
        with pytest.raises(gomap.NoWorkersError, match=r"no worker takes queue 'samplesleep'.* for \d+s"):
            list(it)
        assert time.monotonic() - start < 5
        assert fresh_redis.redis.llen("goworker:queue:samplesleep") == 0
        assert not no_batch_keys(fresh_redis)
    finally:
        client.close()


def test_a_worker_killed_again_and_again_loses_nothing(fresh_redis: RedisServer):
    steady = Worker(fresh_redis.url, "-concurrency", "2")
    client = gomap.Client(fresh_redis.url)
    n = 20_000
    victims = []
    t, results, errors = in_thread(
        lambda: gomap.map("sampleadd", pairs(n), chunksize=200, client=client, progress=False, timeout=120)
    )
    try:
        for _ in range(5):
            v = Worker(fresh_redis.url, "-concurrency", "2")
            victims.append(v)
            done = int(fresh_redis.redis.get("goworker:stat:processed") or 0)
            wait_until(
                lambda d=done: int(fresh_redis.redis.get("goworker:stat:processed") or 0) > d or not t.is_alive(),
                what="more chunks done",
            )
            v.stop(signal.SIGKILL)
        t.join(120)
        assert not errors, errors
        assert results == [3 * i for i in range(n)]
        assert not no_batch_keys(fresh_redis)
    finally:
        t.join(120)
        client.close()
        steady.stop()
        for v in victims:
            v.stop(signal.SIGKILL)


def test_a_refused_command_is_not_a_connection_error(fresh_redis: RedisServer):
    w = Worker(fresh_redis.url)
    client = gomap.Client(fresh_redis.url)
    try:
        fresh_redis.redis.config_set("maxmemory", "1")
        with pytest.raises(gomap.RedisCommandError, match="maxmemory") as info:
            gomap.map("sampleadd", pairs(10), client=client, progress=False, timeout=10)
        assert not isinstance(info.value, gomap.ConnectError)
    finally:
        fresh_redis.redis.config_set("maxmemory", "0")
        client.close()
        w.stop()


def test_an_oversize_chunk_is_refused_before_anything_runs(client: gomap.Client, redis_server: RedisServer):
    big = "x" * (1 << 20)
    with pytest.raises(gomap.PayloadTooLarge, match="chunksize=") as info:
        gomap.map("sampleecho", [(big,)] * 40, chunksize=40, client=client, progress=False)
    assert info.value.size > info.value.limit and info.value.start == 0
    assert isinstance(info.value, ValueError)
    assert redis_server.redis.llen("goworker:queue:sampleecho") == 0


def test_a_bad_item_late_in_a_list_fails_before_any_chunk_runs(client: gomap.Client, redis_server: RedisServer):
    r = redis_server.redis
    before = int(r.get("goworker:stat:processed") or 0)
    items: list[object] = pairs(200_001)
    items[150_000] = ({1, 2}, 1)
    items[200_000] = (math.inf, 1)
    with pytest.raises(gomap.EncodeError, match=r"item 150000 \(tuple\).*set") as info:
        gomap.map("sampleadd", items, chunksize=1000, client=client, progress=False)
    assert info.value.index == 150_000
    assert int(r.get("goworker:stat:processed") or 0) == before
    assert r.llen("goworker:queue:sampleadd") == 0


def test_a_frozen_worker_does_not_hold_the_batch_hostage(fresh_redis: RedisServer):
    """A worker frozen (SIGSTOP) with a chunk in flight would hold it until it is declared dead
    (-dead-after 30 s here). The client pushes that chunk again once the rest are done
    (_defaults.SPECULATE_*): the batch completes in seconds, right. Thawed, the frozen worker's late
    run changes nothing and leaves nothing behind."""
    slow = ["-dead-after", "30s"]
    a = Worker(fresh_redis.url, *slow, host="fast")
    b = Worker(fresh_redis.url, *slow, host="frozen")
    r = fresh_redis.redis
    frozen = False
    try:
        with gomap.Client(fresh_redis.url) as client:
            items = [0.2 + i / 1000 for i in range(16)]
            batch = gomap.submit("samplesleep", items, chunksize=1, client=client)
            key = f"goworker:gomap:inflight:{{goworker:queue:samplesleep}}:{b.id}"
            wait_until(lambda: r.llen(key) > 0, timeout=10, what="the worker to freeze runs a chunk")
            os.kill(b.proc.pid, signal.SIGSTOP)
            frozen = True
            t0 = time.monotonic()
            assert batch.result(timeout=20) == items
            assert time.monotonic() - t0 < 10, "the batch waited for the frozen worker"
            os.kill(b.proc.pid, signal.SIGCONT)
            frozen = False
            wait_until(lambda: r.llen(key) == 0, timeout=15, what="the thawed worker lets go of its chunk")
            wait_until(lambda: not r.keys("goworker:gomap:{*"), timeout=10, what="no batch keys are left")
            assert r.llen("goworker:queue:samplesleep") == 0
            assert gomap.map("samplesleep", [0.01] * 8, chunksize=1, client=client, progress=False) == [0.01] * 8
    finally:
        if frozen:
            os.kill(b.proc.pid, signal.SIGCONT)
        b.stop()
        a.stop()


def test_backup_chunks_refused_by_redis_warn_and_change_nothing_else():
    """A Redis user without +lpos (an ACL written before backup chunks): the client warns once
    and goes on without them; the batch fails only by its own timeout, with no other error."""
    server = RedisServer(tcp=True)
    w = None
    try:
        server.redis.execute_command("ACL", "SETUSER", "nolpos", "on", ">pw", "~*", "&*", "+@all", "-lpos")
        url = f"redis://nolpos:pw@127.0.0.1:{server.port}/"
        w = Worker(server.url)
        with gomap.Client(url) as client:
            inspector = gomap.Inspector(client)
            assert inspector.pause("sampleadd", wait=10).complete
            with pytest.warns(UserWarning, match="is paused"):
                batch = gomap.submit("sampleadd", [(i, 1) for i in range(4)], chunksize=1, client=client)
            server.redis.rpop("goworker:queue:sampleadd")  # a chunk a worker took and never gave back
            inspector.resume("sampleadd", wait=10)
            with pytest.warns(RuntimeWarning, match="no backup chunks"), pytest.raises(gomap.Timeout):
                batch.result(timeout=4)
    finally:
        if w is not None:
            w.stop()
        server.stop()
