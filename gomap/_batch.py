"""Batch: one map call on the wire (docs/protocol.md, "gomap batches").

The engine submits a window of chunks, blocks on the batch's done list, collects outcomes with
one script call per wake-up, tops the window up, and cancels the batch on any way out that is not
success: an error, a timeout, Ctrl-C, or the consumer walking away.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import redis

from . import _codec, _defaults
from ._client import Client, WorkerInfo, redact, redis_errors
from ._exceptions import BatchCancelled, GomapError, NoWorkersError, TaskError, Timeout, UnknownFunctionError
from ._functions import closest
from ._protocol import COLLECT_SCRIPT, check_queue, chunk_payload

Completed = tuple[int, list[Any], list[TaskError]]
"""A completed chunk: its start index, its values (None where an item failed), its errors."""


class _Source:
    """Cuts the input into chunks, lazily: a list or tuple by slicing, anything else by islice."""

    def __init__(self, iterable: Iterable[Any], chunksize: int) -> None:
        self._seq = iterable if isinstance(iterable, (list, tuple)) else None
        self._it = None if self._seq is not None else iter(iterable)
        self._size = chunksize
        self._next = 0
        self.exhausted = False

    def next(self) -> tuple[int, Sequence[Any]] | None:
        if self.exhausted:
            return None
        start = self._next
        if self._seq is not None:
            items: Sequence[Any] = self._seq[start : start + self._size]
        else:
            items = list(itertools.islice(self._it, self._size))  # type: ignore[arg-type]
        if len(items) < self._size:
            self.exhausted = True
        if not items:
            return None
        self._next += len(items)
        return start, items


class _Chunk:
    __slots__ = ("payload", "size", "start")

    def __init__(self, start: int, size: int, payload: bytes) -> None:
        self.start, self.size, self.payload = start, size, payload


def auto_chunksize(total: int | None, workers: int) -> int:
    """About CHUNKS_PER_WORKER chunks per worker process, at most MAX_CHUNKSIZE items each."""
    if total is None:
        return _defaults.UNKNOWN_LENGTH_CHUNKSIZE
    per = _defaults.CHUNKS_PER_WORKER * max(workers, 1)
    return max(1, min(math.ceil(total / per), _defaults.MAX_CHUNKSIZE))


class Batch:
    """A batch of calls of one Go function, running on the workers.

    ``gomap.submit`` returns one at once; ``gomap.map`` and ``gomap.imap`` drive one for you.
    Attributes: ``id``, ``function``, ``queue``, ``total`` (None if unknown), ``completed`` (items
    done so far), ``failed`` (index → TaskError, for ``errors="return"``), ``done``.
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
    ) -> None:
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', not {errors!r}")
        if chunksize is not None and (not isinstance(chunksize, int) or chunksize < 1):
            raise ValueError(f"chunksize must be a positive int, not {chunksize!r}")
        self.id = uuid.uuid4().hex
        self.function = function
        self.queue = check_queue(queue or function)
        self.total = total
        self.errors = errors
        self.completed = 0
        self.failed: dict[int, TaskError] = {}
        self._client = client
        self._r = client.redis
        k = client.keys
        self._meta, self._results = k.batch_meta(self.id), k.batch_results(self.id)
        self._done, self._taken = k.batch_done(self.id), k.batch_taken(self.id)
        self._queue_key, self._queues_key = k.queue(self.queue), k.queues()
        self._check_function()
        if chunksize is None:
            chunksize = auto_chunksize(total, len(client.workers(self.queue, max_age=_defaults.WORKERS_CACHE)))
        self.chunksize = chunksize
        self._source = _Source(items, chunksize)
        self._window = window or _defaults.WINDOW_CHUNKS
        self._ttl_ms = max(1000, int(ttl * 1000))
        self._in_flight: dict[int, _Chunk] = {}
        self.held = 0  # completed chunks a consumer holds back (imap's reorder buffer)
        self._stored: dict[int, list[Any]] = {}  # submit's results, by chunk start
        self._started = False
        self._state = "running"
        self._fn_json, self._id_json = _codec.dumps(function), _codec.dumps(self.id)
        self._keys_gone = False  # the collect script deleted the batch's keys as the last chunk came back
        self._last_progress = time.monotonic()

    def __repr__(self) -> str:
        return f"<gomap.Batch {self.function} {self.id} {self.completed}/{self.total or '?'} {self._state}>"

    @property
    def done(self) -> bool:
        """Whether the batch has finished or was cancelled."""
        return self._state != "running"

    # -- submission ---------------------------------------------------------------------------

    def _fill(self) -> None:
        """Encode and submit chunks until the window is full or the input is exhausted."""
        new: list[_Chunk] = []
        while len(self._in_flight) + self.held + len(new) < self._window:
            nxt = self._source.next()
            if nxt is None:
                break
            start, items = nxt
            data = _codec.dumps_items(items, start)
            new.append(_Chunk(start, len(items), chunk_payload(self._fn_json, self._id_json, start, data)))
        if not new:
            return
        # Record the chunks before sending them: if this is interrupted (Ctrl-C while the reply is
        # read), cancel must still find and remove whatever reached Redis.
        first = not self._started
        self._started = True
        for c in new:
            self._in_flight[c.start] = c
        with redis_errors(self._client.url):
            # Workers skip a chunk whose batch has no meta key, so meta must exist before the first
            # chunk. One connection runs a pipeline in order; a cluster pipeline runs on several
            # nodes at once, so there meta goes first, on its own.
            pipe = self._r.pipeline(transaction=False)
            if first:
                self._write_meta(pipe)
                if self._client.cluster:
                    pipe.execute()
            pipe.sadd(self._queues_key, self.queue)
            pipe.rpush(self._queue_key, *(c.payload for c in new))
            pipe.execute()

    def _write_meta(self, pipe: Any) -> None:
        meta = {
            "function": self.function,
            "queue": self.queue,
            "items": -1 if self.total is None else self.total,
            "created": int(time.time()),
            "client": "python",
        }
        pipe.hset(self._meta, mapping=meta)
        pipe.pexpire(self._meta, self._ttl_ms)

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
        one round trip: a BLMOVE off the done list with the collect script pipelined behind it.
        When the input is exhausted, the script also learns the starts still awaited, so the
        call that brings the last chunks deletes the batch's keys too (docs/protocol.md)."""
        args: list[Any] = [_defaults.COLLECT_MAX, self._ttl_ms]
        if self._source.exhausted and len(self._in_flight) <= _defaults.FINISH_MAX:
            args.extend(self._in_flight)
        keys = (self._done, self._results, self._meta, self._taken)
        with redis_errors(self._client.url):
            pipe = self._r.pipeline(transaction=False)
            pipe.blmove(self._done, self._taken, block, "LEFT", "RIGHT")
            # execute_command, not pipe.eval: redis-py's cluster pipeline routes EVAL only this way.
            pipe.execute_command("EVAL", COLLECT_SCRIPT, len(keys), *keys, *args)
            flat = pipe.execute()[1]
        if len(flat) % 2:  # ends with "finished"
            flat.pop()
            self._keys_gone = True
        return [(int(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2)]

    def _absorb(self, start: int, raw: bytes | None) -> Completed | None:
        chunk = self._in_flight.pop(start, None)
        if chunk is None or raw is None:
            return None  # a chunk that ran twice
        out = _codec.loads(raw)
        values = out["values"]
        if len(values) != chunk.size:
            raise GomapError(
                f"batch {self.id}: chunk {start} came back with {len(values)} results for {chunk.size} items"
            )
        errs = [
            TaskError(
                index=e["index"],
                function=self.function,
                kind=e.get("kind", "error"),
                error=e.get("error", ""),
                stack=e.get("stack", ""),
                batch=self.id,
            )
            for e in out.get("errors") or ()
        ]
        self.completed += chunk.size
        return start, values, errs

    def chunks(self, timeout: float | None = None, *, cancel_on_timeout: bool = True) -> Iterator[Completed]:
        """Run the batch, yielding each chunk as it completes.

        Any way out of the loop other than completion (an exception, the consumer closing the
        generator, Ctrl-C) cancels the batch. A timeout raises Timeout; with
        ``cancel_on_timeout=False`` it only stops the iteration and the batch keeps running.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            if self._state == "cancelled":
                raise BatchCancelled(f"batch {self.id} was cancelled")
            self._fill()
            while self._in_flight:
                block = _defaults.WAIT_SLICE
                if deadline is not None:
                    block = min(block, deadline - time.monotonic())
                    if block <= 0:
                        if not cancel_on_timeout:
                            return
                        raise Timeout(
                            f"{self.function}: {self.completed} of {self.total or '?'} items done after "
                            f"{timeout}s; the batch was cancelled"
                        )
                progressed = False
                for start, raw in self._wait(max(block, 0.001)):
                    done = self._absorb(start, raw)
                    if done is not None:
                        progressed = True
                        yield done
                now = time.monotonic()
                if progressed:
                    self._last_progress = now
                    self._fill()
                elif now - self._last_progress > _defaults.NO_WORKERS_AFTER:
                    self._check_workers()
                    self._last_progress = now
            if self._state == "running":
                self._finish()
        except BaseException:
            self._cancel_quietly()
            raise

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
        if self._client.workers(self.queue):
            return
        others = sorted({q for w in self._client.workers() for q in w.queues})
        url = redact(self._client.url)
        hint = f" (live workers take: {', '.join(others)})" if others else ""
        raise NoWorkersError(
            f"no worker takes queue {self.queue!r} in namespace {self._client.namespace!r} at {url}{hint}. "
            f"Start one with: gomap worker -queues {self.queue} -uri {url}",
            queue=self.queue,
            namespace=self._client.namespace,
        )

    # -- ending ---------------------------------------------------------------------------------

    def _finish(self) -> None:
        if self._started and not self._keys_gone:  # interrupted here, the batch still runs: it gets cancelled
            with redis_errors(self._client.url):
                self._r.delete(self._meta, self._results, self._done, self._taken)
        self._state = "finished"

    def cancel(self) -> None:
        """Cancel the batch: queued chunks are removed, workers skip or stop the rest, keys go."""
        if self._state != "running":
            return
        self._state = "cancelled"
        if not self._started:
            return
        with redis_errors(self._client.url):
            pipe = self._r.pipeline(transaction=False)
            for key in (self._meta, self._results, self._done, self._taken):  # one per DEL, as cluster pipelines need
                pipe.delete(key)
            for c in self._in_flight.values():
                pipe.lrem(self._queue_key, 1, c.payload)
            pipe.execute()

    def _cancel_quietly(self) -> None:
        """Cancel on the way out of an error, without hiding it if Redis is gone too."""
        try:
            self.cancel()
        except (GomapError, redis.exceptions.RedisError) as e:
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
