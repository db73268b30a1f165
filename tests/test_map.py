"""gomap.map / imap / submit against a real Redis and the real Go worker binary."""

from __future__ import annotations

import io
import math
import os
import signal
import threading

import pytest
import tqdm

import gomap
from gomap import TaskError

from .conftest import RedisServer, wait_until


def pairs(n: int) -> list[tuple[int, int]]:
    return [(i, 2 * i) for i in range(n)]


@pytest.mark.parametrize(("n", "chunksize"), [(0, None), (1, None), (10, 3), (1000, 7), (5000, None), (257, 256)])
def test_map_returns_results_in_input_order(client, n, chunksize):
    assert gomap.map("sampleadd", pairs(n), chunksize=chunksize, client=client, progress=False) == [
        3 * i for i in range(n)
    ]


def test_the_card(client):
    """The README's first screen, on this test's client."""
    from gomap import gomap as gm

    assert gm("sampleadd", [(1, 2), (3, 4)], client=client, progress=False) == [3, 7]
    sampleadd = gm.function("sampleadd", client=client)
    assert gm(sampleadd, [(1, 2), (3, 4)], progress=False) == [3, 7]
    assert sampleadd(1, 2) == 3
    assert gm.function("countprimes", client=client)(200000) == 17984


def test_items_rules(client):
    echo = gomap.function("sampleecho", client=client)
    # A tuple or list is the positional arguments; anything else is the one argument.
    assert echo.map([(1, "a"), [2, None], 3, "s", {"k": [1]}, ([1, 2],)], progress=False) == [
        [1, "a"],
        [2, None],
        [3],
        ["s"],
        [{"k": [1]}],
        [[1, 2]],
    ]


def test_generator_input_and_unknown_length(client):
    gen = ((i, i) for i in range(2500))
    assert gomap.map("sampleadd", gen, client=client, progress=False) == [2 * i for i in range(2500)]


def test_records_and_strings(client):
    out = gomap.map("samplewords", ["hello big world", "é"], client=client, progress=False)
    assert out == [
        {"text": "hello big world", "words": 3, "chars": 15, "upper": "HELLO BIG WORLD"},
        {"text": "é", "words": 1, "chars": 1, "upper": "É"},
    ]
    assert gomap.map("sampleupper", ["abc"], client=client, progress=False) == ["ABC"]


def test_floats_stay_floats_and_ints_stay_ints(client):
    out = gomap.map("sampleadd", [(1, 2), (1.0, 2), (0.5, 0.25), (2**62, 2**62 - 1)], client=client, progress=False)
    assert out == [3, 3.0, 0.75, 2**63 - 1]
    assert [type(x) for x in out] == [int, float, float, int]


def test_imap_ordered_and_unordered(client):
    items = pairs(3000)
    assert list(gomap.imap("sampleadd", items, chunksize=100, client=client, progress=False)) == [
        3 * i for i in range(3000)
    ]
    unordered = list(gomap.imap("sampleadd", items, chunksize=100, ordered=False, client=client, progress=False))
    assert sorted(unordered) == [3 * i for i in range(3000)]


def test_imap_keeps_memory_bounded(client, redis_server: RedisServer):
    """A long generator streams through: the input is read at most a window ahead of the output,
    and Redis never holds more than a window of chunks."""
    chunksize, window = 50, 4
    pulled = [0]

    def items():
        for i in range(20_000):
            pulled[0] += 1
            yield (i, 1)

    queue_key = "goworker:queue:sampleadd"
    most_ahead = most_queued = 0
    for yielded, value in enumerate(
        gomap.imap("sampleadd", items(), chunksize=chunksize, window=window, client=client, progress=False), 1
    ):
        assert value == yielded
        ahead = pulled[0] - yielded  # items read from the generator but not yet yielded
        most_ahead = max(most_ahead, ahead)
        if yielded % 500 == 0:
            most_queued = max(most_queued, redis_server.redis.llen(queue_key))
    assert most_ahead <= window * chunksize + chunksize + 1
    assert most_queued <= window


def test_imap_stopped_early_cancels_the_rest(client, redis_server: RedisServer):
    it = gomap.imap("sampleadd", pairs(100_000), chunksize=10, window=8, client=client, progress=False)
    assert next(it) == 0
    it.close()
    assert redis_server.redis.llen("goworker:queue:sampleadd") == 0


def test_errors_raise_after_cancelling(client, redis_server: RedisServer):
    items = [(6, 3)] * 50 + [(1, 0)] + [(8, 2)] * 50
    with pytest.raises(TaskError) as info:
        gomap.map("samplediv", items, chunksize=10, client=client, progress=False)
    e = info.value
    assert (e.index, e.function, e.kind, e.error) == (50, "samplediv", "error", "division by zero")
    assert "item 50" in str(e)
    assert redis_server.redis.llen("goworker:queue:samplediv") == 0


def test_errors_return_puts_them_in_place(client):
    out = gomap.map("samplediv", [(6, 3), (1, 0), (8, 2), ("x", 1)], errors="return", client=client, progress=False)
    assert out[0] == 2 and out[2] == 4
    assert isinstance(out[1], TaskError) and out[1].index == 1 and out[1].kind == "error"
    assert isinstance(out[3], TaskError) and out[3].kind == "arguments" and "want int64" in out[3].error


def test_panics_come_back_with_their_go_stack(client):
    with pytest.raises(TaskError) as info:
        gomap.function("samplepanic", client=client)("boom")
    assert info.value.kind == "panic" and info.value.error == "boom"
    assert "samples.Panic" in info.value.stack and "samples.go:" in info.value.stack


def test_no_workers_error_says_how_to_start_one(client, monkeypatch, redis_server: RedisServer):
    monkeypatch.setattr(gomap._defaults, "NO_WORKERS_AFTER", 0.3)
    with pytest.raises(gomap.NoWorkersError) as info:
        gomap.map("sampleadd", pairs(5), queue="nobody", client=client, progress=False)
    msg = str(info.value)
    assert "no worker takes queue 'nobody'" in msg and "gomap worker -queues nobody" in msg
    assert redis_server.redis.llen("goworker:queue:nobody") == 0


def test_timeout_cancels_and_raises(client, redis_server: RedisServer):
    with pytest.raises(gomap.Timeout) as info:
        gomap.map("samplesleep", [30.0] * 8, chunksize=1, timeout=0.5, client=client, progress=False)
    assert isinstance(info.value, TimeoutError)
    assert redis_server.redis.llen("goworker:queue:samplesleep") == 0
    # The worker drops the cancelled chunks it holds within a second or so: it is free again.
    assert gomap.map("sampleadd", [(1, 1)], client=client, progress=False, timeout=10) == [2]


def test_ctrl_c_cancels_the_batch(client, redis_server: RedisServer):
    r = redis_server.redis

    def interrupt_once_running():
        wait_until(lambda: r.keys("goworker:gomap:{*}:meta"), what="the batch starts")
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=interrupt_once_running)
    t.start()
    with pytest.raises(KeyboardInterrupt):
        gomap.map("samplesleep", [30.0] * 20, chunksize=1, client=client, progress=False)
    t.join()
    assert r.llen("goworker:queue:samplesleep") == 0
    assert not r.keys("goworker:gomap:{*")
    assert gomap.map("sampleadd", [(2, 2)], client=client, progress=False, timeout=10) == [4]


def test_progress_bar_counts_items(client):
    buf = io.StringIO()
    gomap.map(
        "sampleadd",
        pairs(1234),
        chunksize=100,
        client=client,
        progress=True,
        tqdm_class=tqdm.tqdm,
        tqdm_kwargs={"file": buf, "mininterval": 0},
    )
    out = buf.getvalue()
    assert "sampleadd" in out and "1,234/1,234" in out and "100%" in out  # items, not chunks


def test_progress_is_quiet_when_not_a_terminal(client, capsys):
    gomap.map("sampleadd", pairs(10), client=client)
    assert capsys.readouterr().err == ""


def test_submit_returns_a_batch_at_once(client, redis_server: RedisServer):
    batch = gomap.submit("sampleadd", pairs(500), chunksize=50, client=client)
    assert len(batch.id) == 32 and batch.total == 500 and not batch.done
    assert batch.wait(timeout=30)
    assert batch.done and batch.completed == 500
    assert batch.result() == [3 * i for i in range(500)]

    slow = gomap.submit("samplesleep", [30.0] * 6, chunksize=1, client=client)
    assert not slow.wait(timeout=0.2)
    slow.cancel()
    assert slow.done and redis_server.redis.llen("goworker:queue:samplesleep") == 0
    with pytest.raises(gomap.BatchCancelled):
        slow.result()

    failing = gomap.submit("samplediv", [(1, 0), (4, 2)], chunksize=1, errors="return", client=client)
    res = failing.result(timeout=30)
    assert isinstance(res[0], TaskError) and res[1] == 2 and set(failing.failed) == {0}


def test_bad_items_fail_before_anything_is_left_in_redis(client, redis_server: RedisServer):
    r = redis_server.redis
    items: list[object] = [(i, i) for i in range(5000)]
    items[4321] = ({1, 2}, 3)
    with pytest.raises(gomap.EncodeError) as info:
        gomap.map("sampleadd", items, chunksize=100, client=client, progress=False)
    assert isinstance(info.value, TypeError)
    assert info.value.index == 4321 and "item 4321 (tuple)" in str(info.value) and "set" in str(info.value)
    assert r.llen("goworker:queue:sampleadd") == 0 and not r.keys("goworker:gomap:{*")

    with pytest.raises(gomap.EncodeError, match=r"item 2 \(tuple\).*infinity"):
        gomap.map("sampleadd", [(1, 2), (3, 4), (math.inf, 1)], client=client, progress=False)
    with pytest.raises(gomap.EncodeError, match=r"item 0 .*object"):
        gomap.map("sampleadd", [object()], client=client, progress=False)


def test_big_ints_travel_exactly_or_fail_clearly(client):
    echo = gomap.function("sampleecho", client=client)
    assert echo(2**53 + 1, -(2**63), 2**64 - 1) == [2**53 + 1, -(2**63), 2**64 - 1]
    # Beyond 64 bits the JSON is still exact; a Go int64 parameter refuses it by name.
    with pytest.raises(TaskError, match="out of range for int64"):
        gomap.function("samplediv", client=client)(2**70, 1)


def test_nan_travels_as_null(client):
    assert gomap.function("sampleecho", client=client)(float("nan"), None) == [None, None]
    with pytest.raises(TaskError, match="argument 1: want a number, got null"):
        gomap.function("sampleadd", client=client)(float("nan"), 1)


def test_bad_options_are_errors(client):
    with pytest.raises(gomap.ConfigError, match="must name a Go function"):
        gomap.map(len, [1], client=client)
    with pytest.raises(ValueError, match="errors must be"):
        gomap.map("sampleadd", [(1, 1)], errors="ignore", client=client)
    with pytest.raises(ValueError, match="chunksize"):
        gomap.map("sampleadd", [(1, 1)], chunksize=0, client=client)
    with pytest.raises(gomap.ConfigError, match="braces"):
        gomap.map("sampleadd", [(1, 1)], queue="a{b}", client=client)


class Hinted:
    """An iterator that knows roughly how long it is (operator.length_hint), as map objects do."""

    def __init__(self, n: int) -> None:
        self._it = iter([(i, i) for i in range(n)])
        self._n = n

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)

    def __length_hint__(self) -> int:
        return self._n


def test_automatic_chunk_size_follows_length_and_live_workers(client, worker):
    from gomap._batch import Batch

    # One live worker process with 4 slots (-concurrency 4): about four chunks per slot, at most
    # 10,000 items each.
    assert [(w.id, w.concurrency) for w in client.workers("sampleadd")] == [(worker.id, 4)]
    assert Batch(client, "sampleadd", pairs(5000), total=5000).chunksize == 313  # ceil(5000 / 16)
    assert Batch(client, "sampleadd", pairs(1_000_000), total=1_000_000).chunksize == 10_000
    assert Batch(client, "sampleadd", Hinted(400), total=400).chunksize == 25
    assert Batch(client, "sampleadd", ((i, i) for i in range(10))).chunksize == 1000  # length unknown
    # With no worker on the queue there is nobody to divide by: one slot is assumed.
    assert Batch(client, "sampleadd", pairs(5000), total=5000, queue="nobody").chunksize == 1250


def test_bar_total_comes_from_len_or_length_hint(client):
    for items, want in ((pairs(300), [3 * i for i in range(300)]), (Hinted(300), [2 * i for i in range(300)])):
        buf = io.StringIO()
        out = gomap.map(
            "sampleadd",
            items,
            client=client,
            progress=True,
            tqdm_class=tqdm.tqdm,
            tqdm_kwargs={"file": buf, "mininterval": 0},
        )
        assert out == want
        assert "300/300" in buf.getvalue()
