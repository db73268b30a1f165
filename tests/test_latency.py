"""A small call's round trips: submit, wait and collect go in one, on the client's own connection
(docs/protocol.md, "The client's side")."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

import gomap

from .conftest import RedisServer


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[list[bytes]]:
    """Every write a redis-py connection makes, as the command names it carries (one per round trip)."""
    seen: list[list[bytes]] = []
    real = redis.connection.AbstractConnection.send_packed_command

    def send(self: Any, command: Any, check_health: bool = True) -> None:
        data = b"".join(command) if isinstance(command, list) else command
        seen.append([part.split(b"\r\n")[2].upper() for part in data.split(b"\r\n*")])
        real(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", send)
    return seen


def test_a_one_item_call_is_two_round_trips(client: gomap.Client, redis_server: RedisServer, sends):
    add = gomap.function("sampleadd", client=client)
    assert add(1, 2) == 3  # the live workers are read (and cached) here
    sends.clear()
    assert add(20, 22) == 42
    # Submit, block and collect in one round trip; then the finish, one DEL of the batch's keys.
    assert sends == [[b"EVAL", b"BLMOVE", b"EVAL"], [b"DEL"]]
    assert not redis_server.redis.keys("goworker:gomap:{*")


def test_a_submit_whose_reply_came_is_not_sent_again(fresh_redis: RedisServer, start_worker):
    """The round trip of submit, wait and collect breaks after the submit's reply came (Redis
    restarted without persistence while the wait blocked): the call must not bring the batch
    back on the new Redis by sending the submit again, but say it was lost."""
    start_worker(fresh_redis.url)
    client = gomap.Client(fresh_redis.url)
    try:
        line = client._line
        assert line is not None
        real = line.run

        def run(commands: list[tuple[Any, ...]], out: list[Any] | None = None) -> list[Any]:
            if commands[0][0] == "EVAL" and len(commands) == 3:  # the first: submit, BLMOVE, collect
                got = out if out is not None else []
                real(commands[:1], got)  # the submit ran and its reply came…
                fresh_redis.redis.flushall()  # …then Redis lost everything
                raise redis.exceptions.ConnectionError("the connection dropped while the wait blocked")
            return real(commands, out)

        line.run = run  # type: ignore[method-assign]
        with pytest.raises(gomap.BatchLost):
            gomap.map("samplesleep", [0.5], client=client, progress=False, timeout=10)
        assert not fresh_redis.redis.keys("goworker:gomap:{*")
        assert fresh_redis.redis.llen("goworker:queue:samplesleep") == 0
    finally:
        client.close()


def test_batches_of_many_threads_share_the_line_or_the_pool(client: gomap.Client):
    """One batch at a time has the client's own connection; the others use the pool, at the same time."""
    results: dict[int, list[int]] = {}

    def run(k: int) -> None:
        results[k] = gomap.map("sampleadd", [(k, i) for i in range(50)], chunksize=5, client=client, progress=False)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {k: [k + i for i in range(50)] for k in range(6)}
