"""Batch: one map call on the wire (docs/protocol.md, "gomap batches").

The engine submits a window of chunks, blocks on the batch's done list, collects outcomes with
one script call per wake-up (acknowledging the previous reply's, so a lost reply loses nothing),
tops the window up, and cancels the batch on any way out that is not success: an error, a
timeout, Ctrl-C, or the consumer walking away. Every round trip is retried while Redis cannot be
reached, within the call's deadline (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import statistics
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import redis

from . import _codec, _defaults
from ._client import TRANSIENT, Client, OutOfTime, WorkerInfo, redact
from ._exceptions import (
    BatchCancelled,
    BatchLost,
    ConfigError,
    ConnectError,
    GomapError,
    NoWorkersError,
    PayloadTooLarge,
    RedisCommandError,
    TaskError,
    Timeout,
    UnknownFunctionError,
)
from ._functions import closest
from ._protocol import COLLECT_SCRIPT, SUBMIT_SCRIPT, check_queue, chunk_payload, columns_payload, shard_names

Completed = tuple[int, list[Any], list[TaskError]]
"""A completed chunk: its start index, its values (None where an item failed), its errors."""


class _Chunk:
    __slots__ = ("backups", "payload", "pushed", "queue_key", "size", "start")

    def __init__(self, start: int, size: int, payload: bytes) -> None:
        self.start, self.size, self.payload = start, size, payload
        self.queue_key = ""  # the queue (shard) key it was pushed to; "" until then
        self.pushed = 0.0  # time.monotonic() when it was submitted, or last pushed again (_speculate)
        self.backups = 0  # times it was pushed again (_speculate)


class _Source:
    """Cuts the input into encoded chunks.

    A list or tuple is encoded whole when the batch is made, so a bad item or an oversize chunk is
    refused before any chunk runs. Anything else is consumed lazily, a chunk at a time: a bad item
    then ends the batch after the chunks before it were submitted (and may have run).
    """

    def __init__(self, iterable: Iterable[Any], chunksize: int, encode: Callable[[int, Sequence[Any]], _Chunk]) -> None:
        chunked = getattr(iterable, "gomap_chunks", None)  # a frame's columns, cut by _pandas: encoded lazily
        if chunked is not None:
            self._chunks = (encode(lo, part) for lo, part in chunked(chunksize))
        elif isinstance(iterable, (list, tuple)):
            ready = deque(encode(lo, iterable[lo : lo + chunksize]) for lo in range(0, len(iterable), chunksize))
            self._chunks = _drain(ready)
        else:
            self._chunks = _encoded(iter(iterable), chunksize, encode)

    def next(self) -> _Chunk | None:
        return next(self._chunks, None)


def _drain(ready: deque[_Chunk]) -> Iterator[_Chunk]:
    while ready:  # popped, so a chunk's bytes go once it is submitted
        yield ready.popleft()


def _encoded(it: Iterator[Any], size: int, encode: Callable[[int, Sequence[Any]], _Chunk]) -> Iterator[_Chunk]:
    start = 0
    while items := list(itertools.islice(it, size)):
        yield encode(start, items)
        start += len(items)
        if len(items) < size:
            return  # the input ended: do not ask it again


def auto_chunksize(total: int | None, slots: int) -> int:
    """About CHUNKS_PER_SLOT chunks per slot of the live pool, at most MAX_CHUNKSIZE items each."""
    if total is None:
        return _defaults.UNKNOWN_LENGTH_CHUNKSIZE
    per = _defaults.CHUNKS_PER_SLOT * max(slots, 1)
    return max(1, min(math.ceil(total / per), _defaults.MAX_CHUNKSIZE))


class Batch:
    """A batch of calls of one Go function, running on the workers.

    ``gomap.submit`` returns one at once; ``gomap.map`` and ``gomap.imap`` drive one for you.
    Attributes: ``id``, ``function``, ``queue``, ``total`` (None if unknown), ``completed`` (items
    of the chunks collected so far), ``running`` (items done inside chunks still running, as the
    workers last reported them), ``failed`` (index → TaskError, for ``errors="return"``), ``done``.
    """

    def __init__(
        self,
        client: Client,
        function: str,
        items: Iterable[Any],
        *,
        queue: str | None = None,
        chunksize: int | None = None,
        window: int | None = None,
        total: int | None = None,
        errors: str = "raise",
        ttl: float = _defaults.BATCH_TTL,
        item_timeout: float | None = None,
        wait_for_workers: float = _defaults.WAIT_FOR_WORKERS,
    ) -> None:
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', not {errors!r}")
        if chunksize is not None and (not isinstance(chunksize, int) or chunksize < 1):
            raise ValueError(f"chunksize must be a positive int, not {chunksize!r}")
        if item_timeout is not None and not item_timeout > 0:
            raise ValueError(f"item_timeout must be a positive number of seconds, not {item_timeout!r}")
        self.id = uuid.uuid4().hex
        self.function = function
        self.queue = check_queue(queue or function)
        self.total = total
        self.errors = errors
        self.completed = 0
        self.running = 0
        self.failed: dict[int, TaskError] = {}
        # Called after each wake-up of the collect loop (the progress bar); it may ask, in seconds,
        # to be called again sooner than the next block would end (a redraw it had to put off).
        self.on_wake: Callable[[], float | None] | None = None
        self._wake_in: float | None = None
        self._client = client
        self._r = client.redis
        k = client.keys
        self._meta, self._results = k.batch_meta(self.id), k.batch_results(self.id)
        self._done, self._taken = k.batch_done(self.id), k.batch_taken(self.id)
        self._queue_key, self._queues_key = k.queue(self.queue), k.queues()
        self._check_function()
        live = client.workers(self.queue, max_age=_defaults.WORKERS_CACHE)
        if live and all(self.queue in w.paused for w in live):
            warnings.warn(
                f"gomap: queue {self.queue!r} is paused: no worker takes the batch's chunks until it is resumed "
                f"(`gomap queues resume {self.queue}`, or Inspector.resume)",
                UserWarning,
                stacklevel=4,
            )
        if chunksize is None:
            chunksize = auto_chunksize(total, sum(max(w.concurrency, 1) for w in live))
        self.chunksize = chunksize
        most = [w for w in live if 0 < w.max_chunk_items < min(chunksize, total or chunksize)]
        if most:
            w = min(most, key=lambda w: w.max_chunk_items)
            raise ConfigError(
                f"chunksize={chunksize} is more items than worker {w.id} takes in a chunk (its -max-chunk-items is "
                f"{w.max_chunk_items}): pass chunksize={w.max_chunk_items} or less"
            )
        # On a Redis Cluster, chunks go round the shards every live worker serves (docs/protocol.md,
        # "Sharded queues"), so that the masters share a hot function's traffic.
        shards = min((w.shards for w in live), default=1) if client.cluster else 1
        self._shard_names = shard_names(k, self.queue, shards)
        self._shard_keys = [k.queue(q) for q in self._shard_names]
        limits = [w.max_payload for w in live if w.max_payload > 0]
        self._max_payload = min(limits) if limits else _defaults.MAX_PAYLOAD
        self._limit_ms = None if item_timeout is None else math.ceil(item_timeout * 1000)
        self._fn_json, self._id_json = _codec.dumps(function), _codec.dumps(self.id)
        self._source = _Source(items, chunksize, self._encode)
        self._window = window or _defaults.WINDOW_CHUNKS
        self._ttl_ms = max(1000, int(ttl * 1000))
        self._in_flight: dict[int, _Chunk] = {}
        self._exhausted = False  # every chunk of the input is submitted
        self._took: list[float] = []  # seconds from submit to outcome of each chunk collected
        self._backups: list[_Chunk] = []  # chunks pushed a second time (_speculate)
        self._last_completed = time.monotonic()  # when a chunk last completed
        self._spec_checked = 0.0  # when _speculate last looked
        self._speculating = True  # False once Redis refused a backup chunk
        self.held = 0  # completed chunks a consumer holds back (imap's reorder buffer)
        self._stored: dict[int, list[Any]] = {}  # submit's results, by chunk start
        self._started = False
        self._submitted = 0  # chunks pushed to the queue so far
        self._grouped = 0  # chunks in submit script calls so far, sent or not
        self._unsent: list[tuple[Any, ...]] = []  # submit script calls that go out with the next wait
        self._state = "running"
        self._acks: list[bytes] = []  # the starts the last collect reply brought: acknowledged by the next
        self._deadline: float | None = None  # of the call driving the batch now (monotonic)
        self._last_progress = time.monotonic()
        self._wait_for_workers = wait_for_workers
        self._seen_worker = bool(live)  # a live worker took the queue at some point
        self._absent_since: float | None = None
        self.removed: int | None = None  # queued chunks a cancel took off the queue (None: not known)
        self.in_background = False  # the cancel or finish goes on in the background (Redis unreachable)

    def __repr__(self) -> str:
        return f"<gomap.Batch {self.function} {self.id} {self.completed}/{self.total or '?'} {self._state}>"

    @property
    def done(self) -> bool:
        """Whether the batch has finished or was cancelled."""
        return self._state != "running"

    # -- submission ---------------------------------------------------------------------------

    def _encode(self, start: int, items: Sequence[Any]) -> _Chunk:
        columns = getattr(items, "gomap_columns", None)  # a columnar chunk (_pandas): its JSON "columns"
        if columns is not None:
            payload = columns_payload(self._fn_json, self._id_json, start, columns(), self._limit_ms)
        else:
            data = _codec.dumps_items(items, start)
            payload = chunk_payload(self._fn_json, self._id_json, start, data, self._limit_ms)
        if len(payload) > self._max_payload:
            raise PayloadTooLarge(
                f"{self.function}: the chunk of items {start} to {start + len(items) - 1} is {len(payload):,} bytes, "
                f"more than the workers accept ({self._max_payload:,} bytes). Pass a smaller chunksize= "
                f"(now {self.chunksize}), or send smaller items "
                "(a path or a key instead of the data).",
                size=len(payload),
                limit=self._max_payload,
                start=start,
            )
        return _Chunk(start, len(items), payload)

    def _fill(self, *, now: bool = True) -> None:
        """Submit chunks until the window is full or the input is exhausted. With ``now=False``
        (on a single Redis) the submit goes out in the next wait's round trip (_wait)."""
        new: list[_Chunk] = []
        while len(self._in_flight) + self.held + len(new) < self._window:
            chunk = self._source.next()
            if chunk is None:
                self._exhausted = True
                break
            new.append(chunk)
        if not new:
            return
        pushed = time.monotonic()
        for c in new:
            c.pushed = pushed
        # Record the chunks before sending them: if this is interrupted (Ctrl-C while the reply is
        # read), cancel must still find and remove whatever reached Redis.
        first = not self._started
        self._started = True
        for c in new:
            self._in_flight[c.start] = c
        if self._client.cluster:
            self._push_cluster(new, first)
            return
        self._group(new)
        if now:
            self._push()

    def _group(self, new: list[_Chunk]) -> None:
        """Cut new chunks into calls of the submit script (which also creates meta), for _push or
        the next wait. The script counts the chunks pushed, so a call sent again after its reply
        was lost pushes nothing twice (docs/protocol.md)."""
        keys = (self._meta, self._queues_key, self._queue_key)
        items = -1 if self.total is None else self.total
        lo = 0
        while lo < len(new):
            hi, size = lo, 0
            while hi < len(new) and hi - lo < _defaults.SUBMIT_GROUP_CHUNKS:
                size += len(new[hi].payload)
                if hi > lo and size > _defaults.SUBMIT_GROUP_BYTES:
                    break
                hi += 1
            args = (self._ttl_ms, self.function, self.queue, items, int(time.time()), self._grouped, "python")
            self._unsent.append(("EVAL", SUBMIT_SCRIPT, len(keys), *keys, *args, *(c.payload for c in new[lo:hi])))
            self._grouped += hi - lo
            lo = hi

    def _push(self) -> None:
        """Send the submit script calls not sent yet, one round trip each."""
        while self._unsent:
            self._check_submitted(self._call(lambda c=self._unsent[0]: self._r.execute_command(*c)))
            del self._unsent[0]

    def _check_submitted(self, reply: Any) -> None:
        if reply == b"lost":
            raise self._lost()
        self._submitted = int(reply)

    def _push_cluster(self, new: list[_Chunk], first: bool) -> None:
        """On a Redis Cluster, meta and the queue live on different nodes, and a pipeline runs on
        them at once: meta goes first, on its own (workers skip a chunk whose batch has no meta).
        A push sent again after its reply was lost may queue a chunk twice; it then runs twice,
        which its outcome's start index makes harmless."""
        if first:
            self._call(lambda: self._write_meta(self._r.pipeline(transaction=False)).execute())

        n = len(self._shard_keys)
        for i, c in enumerate(new):
            c.queue_key = self._shard_keys[(self._submitted + i) % n]

        def push() -> None:
            pipe = self._r.pipeline(transaction=False)
            pipe.sadd(self._queues_key, *self._shard_names)
            for key in dict.fromkeys(c.queue_key for c in new):
                pipe.rpush(key, *(c.payload for c in new if c.queue_key == key))
            pipe.execute()

        self._call(push)
        self._submitted += len(new)

    def _write_meta(self, pipe: Any) -> Any:
        meta = {
            "function": self.function,
            "queue": self.queue,
            "items": -1 if self.total is None else self.total,
            "created": int(time.time()),
            "client": "python",
            "shards": len(self._shard_keys),
        }
        pipe.hset(self._meta, mapping=meta)
        pipe.pexpire(self._meta, self._ttl_ms)
        return pipe

    def _call(self, op: Callable[[], Any]) -> Any:
        """One round trip, retried while Redis is unreachable, within the driving call's deadline."""
        return self._client.call(op, deadline=self._deadline)

    def submit_all(self) -> None:
        """Submit every chunk now (``gomap.submit``): results then wait in Redis until collected."""
        self._window = math.inf  # type: ignore[assignment]
        try:
            self._fill()
        except BaseException:
            self._cancel_quietly()
            raise
        if not self._in_flight:
            self._finish()

    # -- collection -----------------------------------------------------------------------------

    def _wait(self, block: float) -> list[tuple[int, bytes | None]]:
        """Block until a chunk completes (or ``block`` seconds pass) and take what completed, in
        one round trip: the submit script calls not sent yet, then a BLMOVE off the done list with
        the collect script pipelined behind it. The script is told the starts of the previous
        reply, which it may now delete; a reply lost on the way is sent again (docs/protocol.md)."""
        args: list[Any] = [_defaults.COLLECT_MAX, self._ttl_ms, *self._acks]
        keys = (self._done, self._results, self._meta, self._taken)
        wait = [
            ("BLMOVE", self._done, self._taken, "LEFT", "RIGHT", block),
            ("EVAL", COLLECT_SCRIPT, len(keys), *keys, *args),
        ]

        def collect() -> list[Any]:
            commands = [*self._unsent, *wait]
            line = self._client._line
            if line is not None and line.take():
                got: list[Any] = []
                try:
                    replies = line.run(commands, got)
                except redis.exceptions.RedisError:
                    # The submits whose replies came ran: sent again after a restart of Redis
                    # without persistence, they would bring a lost batch back (it is lost).
                    ran = 0
                    for reply in got[: len(self._unsent)]:
                        if isinstance(reply, Exception):
                            break
                        self._check_submitted(reply)
                        ran += 1
                    del self._unsent[:ran]
                    raise
                finally:
                    line.give()
            else:
                pipe = self._r.pipeline(transaction=False)
                for c in commands:
                    # execute_command, not pipe.eval: redis-py's cluster pipeline routes EVAL only this way.
                    pipe.execute_command(*c)
                replies = pipe.execute(raise_on_error=False)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply  # here, so Client.call retries it or says what Redis refused
            return replies  # type: ignore[no-any-return]

        replies = self._call(collect)
        for reply in replies[: len(self._unsent)]:
            self._check_submitted(reply)
        self._unsent.clear()
        flat = replies[-1]
        if flat == [b"lost"]:
            raise self._lost()
        self.running = flat[0]
        self._acks = flat[1::2]
        return [(int(flat[i]), flat[i + 1]) for i in range(1, len(flat), 2)]

    def _lost(self) -> BatchLost:
        return BatchLost(
            f"Redis at {redact(self._client.url)} lost batch {self.id} ({self.function}, {self.completed} of "
            f"{self.total or '?'} items collected): its keys are gone. Redis may have restarted without "
            "persistence, been flushed, or failed over to a replica that did not have them yet; or the "
            f"batch went {self._ttl_ms // 1000}s without a client waiting on it. Run the batch again.",
            batch=self.id,
        )

    def _absorb(self, start: int, raw: bytes | None) -> Completed | None:
        chunk = self._in_flight.pop(start, None)
        if chunk is None or raw is None:
            return None  # a chunk that ran twice
        self._took.append(time.monotonic() - chunk.pushed)
        out = _codec.loads(raw)
        values = out["values"]
        if values is None:  # every item failed, in the compact form: an error with a count stands for many
            values = [None] * chunk.size
        if len(values) != chunk.size:
            raise GomapError(
                f"batch {self.id}: chunk {start} came back with {len(values)} results for {chunk.size} items"
            )
        errs = [
            TaskError(
                index=e["index"] + k,
                function=self.function,
                kind=e.get("kind", "error"),
                error=e.get("error", ""),
                stack=e.get("stack", ""),
                batch=self.id,
                argument=e.get("arg"),
            )
            for e in out.get("errors") or ()
            for k in range(e.get("count") or 1)
        ]
        self.completed += chunk.size
        return start, values, errs

    def chunks(self, timeout: float | None = None, *, cancel_on_timeout: bool = True) -> Iterator[Completed]:
        """Run the batch, yielding each chunk as it completes.

        Any way out of the loop other than completion (an exception, the consumer closing the
        generator, Ctrl-C) cancels the batch. A timeout raises Timeout; with
        ``cancel_on_timeout=False`` it only stops the iteration and the batch keeps running.
        """
        self._deadline = None if timeout is None else time.monotonic() + timeout
        unreachable = False  # the call gave up because Redis could not be reached
        try:
            if self._state == "cancelled":
                raise BatchCancelled(f"batch {self.id} was cancelled")
            try:
                yield from self._run()
            except OutOfTime as e:
                unreachable = True
                if not cancel_on_timeout:
                    return
                raise Timeout(
                    f"{self.function}: {self.completed} of {self.total or '?'} items done after {timeout}s, "
                    f"while Redis at {redact(self._client.url)} did not answer ({e.last}); the batch was cancelled"
                ) from None
            if self._deadline is not None and self._in_flight:
                if not cancel_on_timeout:
                    return
                raise Timeout(
                    f"{self.function}: {self.completed} of {self.total or '?'} items done after {timeout}s; "
                    "the batch was cancelled"
                )
            if self._state == "running":
                self._finish()
        except BaseException as e:
            # When Redis is what failed, the cancel goes straight to the background, so the
            # call's error comes out now, not after more attempts at a Redis that is not there.
            self._cancel_quietly(now=not (unreachable or isinstance(e, ConnectError)))
            raise
        finally:
            self._deadline = None

    def _run(self) -> Iterator[Completed]:
        """Collect until every chunk is in, or the deadline passes (chunks() tells which)."""
        self._fill(now=False)
        while self._in_flight:
            block = _defaults.WAIT_SLICE if self._wake_in is None else min(_defaults.WAIT_SLICE, self._wake_in)
            if self._deadline is not None:
                block = min(block, self._deadline - time.monotonic())
                if block <= 0:
                    self._push()  # what was filled is on the queue, as a batch that goes on expects
                    return
            progressed = False
            for start, raw in self._wait(max(block, 0.001)):
                done = self._absorb(start, raw)
                if done is not None:
                    progressed = True
                    yield done
            if self.on_wake is not None:
                self._wake_in = self.on_wake()
            now = time.monotonic()
            if progressed:
                self._last_completed = now
                self._last_progress = now
                self._seen_worker = True
                self._absent_since = None
                self._fill(now=False)
            elif now - self._last_progress > _defaults.NO_WORKERS_AFTER:
                self._check_workers()
                self._last_progress = now
            self._speculate(now)

    def _speculate(self, now: float) -> None:
        """Push again, to the head of its queue, each chunk that keeps the batch waiting: the rule
        is _defaults.SPECULATE_* (a worker that froze, or runs far slower than the rest, holds its
        chunk until it is declared dead, 30 s by default). A copy may be taken by the very worker
        that froze (its wait was armed in Redis before it froze), so a chunk may be pushed again up
        to SPECULATE_MAX times, each after twice the wait of the one before. A chunk still on its
        queue (no worker took it yet, or none runs) is not pushed again. Outcomes are keyed by
        start, so whichever run ends later changes nothing; copies left on the queue are removed at
        the end, or skipped by the worker that takes them (their batch is gone)."""
        if not self._speculating or not self._exhausted or not self._in_flight or not self._took:
            return
        if now - self._spec_checked < 0.25:
            return
        self._spec_checked = now  # a look costs a pass over the chunks in flight: at most 4 a second
        if now - min(c.pushed for c in self._in_flight.values()) <= _defaults.SPECULATE_MIN:
            return  # (cheaper than the median below)
        after = max(_defaults.SPECULATE_MIN, _defaults.SPECULATE_FACTOR * statistics.median(self._took))
        tail = len(self._took) >= _defaults.SPECULATE_DONE * (len(self._took) + len(self._in_flight))
        if not tail and now - self._last_completed <= after:
            return  # neither the batch's tail nor a stall
        late = [
            c
            for c in self._in_flight.values()
            if c.backups < _defaults.SPECULATE_MAX and now - c.pushed > after * 2**c.backups
        ]
        if not late:
            return

        def push() -> list[_Chunk]:
            # Only a chunk no longer queued is held (or lost): one still waiting for a worker (all
            # of them while no worker runs) would only be queued twice.
            pipe = self._r.pipeline(transaction=False)
            for c in late:
                pipe.lpos(c.queue_key or self._queue_key, c.payload)
            held = [c for c, at in zip(late, pipe.execute(), strict=True) if at is None]
            if held:
                pipe = self._r.pipeline(transaction=False)
                for c in held:
                    pipe.lpush(c.queue_key or self._queue_key, c.payload)
                pipe.execute()
            return held

        try:
            held = self._call(push)
        except RedisCommandError as e:  # e.g. a Redis user without +lpos (docs/security.md)
            warnings.warn(f"batch {self.id}: no backup chunks, Redis refused them: {e}", RuntimeWarning, stacklevel=1)
            self._speculating = False
            return
        for c in late:
            c.pushed = now  # a chunk still queued is looked at again after the same wait
        for c in held:
            c.backups += 1
        self._backups += held

    def _check_function(self) -> None:
        """Fail at once when live workers run but none offers the function: a typo, or a function
        not compiled into the pool. (With no live worker at all, wait for one: see _check_workers.)"""
        live: list[WorkerInfo] = []
        for max_age in (_defaults.WORKERS_CACHE, 0.0):  # a fresh look before failing
            live = self._client.workers(max_age=max_age)
            if not live or any(self.function in w.functions for w in live):
                return
        offered = sorted({f for w in live for f in w.functions})
        guess = closest(self.function, offered)
        raise UnknownFunctionError(
            f"no live worker offers the function {self.function!r} (at {redact(self._client.url)}, namespace "
            f"{self._client.namespace!r}).{f' Did you mean {guess!r}?' if guess else ''} "
            f"The workers offer: {', '.join(offered)}. To add a function of your own: gomap.compile(source) "
            "(or %%gomap in a notebook) on the embedded default; for a pool, run a worker built with "
            "'gomap build --functions FILE'.",
            function=self.function,
            offered=offered,
            queue=self.queue,
            namespace=self._client.namespace,
        )

    def _check_workers(self) -> None:
        """After a while without progress: is a live worker taking the queue? A batch that never
        saw one fails now; one that did waits ``wait_for_workers`` seconds for one to come back
        (a rolling restart puts the chunks it held back on the queue)."""
        if self._client.workers(self.queue, deadline=self._deadline):
            self._seen_worker = True
            self._absent_since = None
            return
        now = time.monotonic()
        if self._seen_worker:
            if self._absent_since is None:
                self._absent_since = now
            if now - self._absent_since < self._wait_for_workers:
                return
        others = sorted({q for w in self._client.workers(deadline=self._deadline) for q in w.queues})
        url = redact(self._client.url)
        hint = f" (live workers take: {', '.join(others)})" if others else ""
        gone = f" for {now - self._absent_since:.0f}s" if self._absent_since is not None else ""
        raise NoWorkersError(
            f"no worker takes queue {self.queue!r} in namespace {self._client.namespace!r} at {url}{gone}{hint}. "
            f"Start one with: gomap worker -queues {self.queue} -uri {url}",
            queue=self.queue,
            namespace=self._client.namespace,
        )

    # -- ending ---------------------------------------------------------------------------------

    def _finish(self) -> None:
        """Every chunk is in: delete the batch's keys (this also acknowledges the last reply)."""
        self._state = "finished"
        if self._started:
            self._clean_up(self._keys_op(self._backups), "finish")  # copies still queued go too

    def cancel(self, *, now: bool = True) -> None:
        """Cancel the batch: queued chunks are removed, workers skip or stop the rest, keys go.

        If Redis cannot be reached, the cancel goes on in the background until it can (at most
        60 s); ``now=False`` sends it there at once."""
        if self._state != "running":
            return
        self._state = "cancelled"
        if self._started:
            self._clean_up(self._keys_op(list(self._in_flight.values())), "cancel", now=now)

    def _keys_op(self, queued: list[_Chunk]) -> Callable[[], Any]:
        keys = (self._meta, self._results, self._done, self._taken)

        def op() -> None:
            line = self._client._line
            if not queued and line is not None and line.take():  # a finish: one DEL (the keys share a slot)
                try:
                    reply = line.run([("DEL", *keys)])[0]
                finally:
                    line.give()
                if isinstance(reply, Exception):
                    raise reply
                return
            pipe = self._r.pipeline(transaction=False)
            for key in keys:  # one per DEL, as cluster pipelines need
                pipe.delete(key)
            for c in queued:  # every copy: a retried push may have queued two
                pipe.lrem(c.queue_key or self._queue_key, 0, c.payload)
            removed = pipe.execute()[len(keys) :]
            if queued:
                self.removed = sum(1 for n in removed if n)

        return op

    def cancel_report(self) -> str:
        """What the cancel did, in one sentence (for the interrupt's message)."""
        done = f"{self.completed:,} of {self.total:,}" if self.total is not None else f"{self.completed:,}"
        if self.in_background:
            gone = "Redis did not answer; the cancel goes on in the background"
        elif self.removed is None:
            gone = "nothing was left to remove"
        else:
            running = len(self._in_flight) - self.removed
            gone = f"{self.removed} queued chunk{'s' * (self.removed != 1)} removed" + (
                f", {running} running chunk{'s' * (running != 1)} stopping" if running > 0 else ""
            )
        return f"batch {self.id[:8]} of {self.function} cancelled with {done} items done: {gone}"

    def _clean_up(self, op: Callable[[], Any], what: str, *, now: bool = True) -> None:
        """Run a finish or cancel now (``now=False``: skip that); if Redis cannot be reached for
        CLEANUP_NOW seconds, keep retrying in the background for CANCEL_RETRY seconds so the keys
        and queued chunks go as soon as Redis is back. Deleting and LREM are idempotent, so
        retries are safe."""
        if now:
            try:
                self._client.call(op, tolerance=_defaults.CLEANUP_NOW)
                return
            except GomapError as e:
                if not isinstance(e.__cause__, TRANSIENT):
                    raise
        self.in_background = True
        self._client.in_background(op, f"gomap-{what}-{self.id[:8]}", functools.partial(self._gave_up, what))

    def _gave_up(self, what: str, e: GomapError) -> None:
        warnings.warn(
            f"could not {what} batch {self.id}: {e}; its keys expire within {self._ttl_ms // 1000}s",
            RuntimeWarning,
            stacklevel=1,
        )

    def _cancel_quietly(self, *, now: bool = True) -> None:
        """Cancel on the way out of an error, without hiding it if Redis is gone too."""
        try:
            self.cancel(now=now)
        except GomapError as e:
            warnings.warn(
                f"could not cancel batch {self.id}: {e}; its keys expire within {self._ttl_ms // 1000}s",
                RuntimeWarning,
                stacklevel=3,
            )

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    # -- results of a submitted batch -------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Collect until the batch is done or ``timeout`` seconds pass; return whether it is done."""
        with contextlib.closing(self.chunks(timeout, cancel_on_timeout=False)) as chunks:
            for start, values, errs in chunks:
                self._store(start, values, errs)
        return self.done

    def result(self, timeout: float | None = None) -> list[Any]:
        """The results in input order, waiting up to ``timeout`` seconds (the batch keeps running
        on a timeout). With ``errors="raise"`` the first failed item raises its TaskError."""
        if not self.wait(timeout):
            raise Timeout(f"{self.function}: {self.completed} of {self.total or '?'} items done after {timeout}s")
        if self._state == "cancelled":
            raise BatchCancelled(f"batch {self.id} was cancelled")
        return [v for start in sorted(self._stored) for v in self._stored[start]]

    def apply_errors(self, start: int, values: list[Any], errs: list[TaskError]) -> None:
        """Record a chunk's failed items: with ``errors="raise"`` raise the first, else put each
        TaskError in ``values`` where its result would be."""
        for e in errs:
            self.failed[e.index] = e
            if self.errors == "raise":
                raise e
            values[e.index - start] = e

    def _store(self, start: int, values: list[Any], errs: list[TaskError]) -> None:
        self.apply_errors(start, values, errs)
        self._stored[start] = values
