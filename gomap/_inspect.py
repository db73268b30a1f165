"""The inspector: typed queries and actions on a pool, read from Resque's keys and gomap's.

The CLI (``gomap status``, ``gomap failed …``, ``gomap workers`` …) and the notebook view
(``gomap.status()``) use it; neither touches Redis keys itself. It reads what any Resque worker
writes (``workers``, ``worker:<id>``, ``workers:heartbeat``, ``failed``, ``stat:*``), so Ruby or
Node workers sharing the Redis show up beside gomap's worker processes. Every Redis round trip
goes through ``Client.call`` with a deadline.
"""

from __future__ import annotations

import html
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from ._exceptions import ConfigError, RedisCommandError
from ._overview import BatchInfo, _read_batches, _table, _text
from ._protocol import MARK_RETRIED_SCRIPT, REMOVE_FAILED_SCRIPT, shard_names

if TYPE_CHECKING:
    from ._client import Client

T = TypeVar("T")

TIMEOUT = 5.0
"""Seconds one query or action may take, retries included."""

FAILED_PAGE = 50
"""Failed entries one page holds by default."""

FAILED_SCAN = 100_000
"""Most failed entries a filter reads (in pages); past it, the filter says so."""

STALE_AFTER = 300.0
"""Seconds without a heartbeat after which a Resque worker counts as dead (Resque's PRUNE_INTERVAL)."""


def resque_time(t: float | None = None) -> str:
    """Ruby's ``Time#strftime("%Y/%m/%d %H:%M:%S %Z")`` in UTC, as Resque writes failed_at and retried_at."""
    return datetime.fromtimestamp(time.time() if t is None else t, timezone.utc).strftime("%Y/%m/%d %H:%M:%S UTC")


@dataclass(frozen=True)
class Queue:
    """A Resque queue and how many jobs wait on it."""

    name: str
    length: int
    paused: bool = False  # gomap workers take no new job from it (Inspector.pause)


@dataclass(frozen=True)
class Paused:
    """What a pause or resume of a queue did: of the live gomap worker processes that serve
    ``queue``, how many have taken note (``heard``) out of ``serving``. A worker takes note at its
    next heartbeat; jobs it reserved before that still run. Resque workers of other languages do
    not know gomap's pause."""

    queue: str
    paused: bool
    heard: int
    serving: int

    @property
    def complete(self) -> bool:
        return self.heard == self.serving

    def text(self) -> str:
        did = "paused" if self.paused else "resumed"
        if not self.serving:
            return f"queue {self.queue} {did}; no live gomap worker process serves it now"
        verb = "stopped taking jobs from it" if self.paused else "taking jobs from it again"
        line = f"queue {self.queue} {did}: {self.heard} of {self.serving} worker processes serving it {verb}"
        if not self.complete:
            line += " (the others take note at their next heartbeat)"
        return line


@dataclass(frozen=True)
class Slot:
    """One Resque worker id (a gomap slot, or a Ruby/Node worker) as Resque's registry shows it."""

    id: str
    host: str
    pid: str
    queues: tuple[str, ...]
    heartbeat: str  # ISO 8601 of the last heartbeat, "" when none
    heartbeat_age: float | None  # seconds, None when unknown
    job: dict[str, Any] | None  # the worker:<id> record: {"queue", "run_at", "payload"}; None when idle
    gomap: bool  # a slot of a live gomap worker process

    @property
    def stale(self) -> bool:
        """No heartbeat for longer than Resque's prune interval: a dead worker Resque would prune."""
        return self.heartbeat_age is not None and self.heartbeat_age > STALE_AFTER


@dataclass(frozen=True)
class Process:
    """A gomap worker process, from its record in ``gomap:workers``."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    functions: tuple[str, ...]
    slots: int
    cores: int
    alive: bool  # its alive key exists: it sent a heartbeat within dead_after
    paused: tuple[str, ...] = ()  # the paused queues it has stopped taking jobs from
    shards: int = 1  # shards of each queue it serves (docs/protocol.md, "Sharded queues")


@dataclass(frozen=True)
class Failed:
    """One entry of Resque's ``failed`` list, at ``index``."""

    index: int
    failed_at: str
    queue: str
    class_: str
    args: list[Any]
    exception: str
    error: str
    backtrace: list[str]
    worker: str
    retried_at: str
    raw: dict[str, Any] = field(repr=False)
    stored: bytes = field(repr=False, default=b"")  # the entry as it is in the list

    def matches(self, f: FailedFilter) -> bool:
        return (
            (f.class_ is None or self.class_ == f.class_)
            and (f.queue is None or self.queue == f.queue)
            and (f.exception is None or self.exception == f.exception)
            and (f.grep is None or f.grep in self.error)
        )


@dataclass(frozen=True)
class FailedFilter:
    """Which failed entries: every given field must match (``grep``: a substring of the error)."""

    class_: str | None = None
    queue: str | None = None
    exception: str | None = None
    grep: str | None = None

    @property
    def empty(self) -> bool:
        return all(v is None for v in (self.class_, self.queue, self.exception, self.grep))


@dataclass(frozen=True)
class Status:
    """A pool at one moment: queues, Resque's workers, gomap's processes, batches, counters."""

    url: str
    namespace: str
    queues: tuple[Queue, ...]
    slots: tuple[Slot, ...]
    processes: tuple[Process, ...]
    batches: tuple[BatchInfo, ...]
    processed: int
    failed: int
    requeued: int  # jobs the reaper put back on their queues after their worker died (gomap:stat:requeued)
    pruned: int = 0  # Resque worker ids the reaper removed because their heartbeat stopped (gomap:stat:pruned)
    unserved: tuple[str, ...] = ()  # queues with jobs that no live worker serves (gomap's or another Resque's)
    batches_error: str = ""  # why the batches could not be read ("" when they could)
    read_at: float = field(default_factory=time.time)

    @property
    def dead(self) -> tuple[Process, ...]:
        """gomap worker processes whose alive key expired (not yet pruned by a reaper)."""
        return tuple(p for p in self.processes if not p.alive)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        live = [p for p in self.processes if p.alive]
        lines = [f"Redis {self.url}, namespace {self.namespace!r}"]
        lines.append(f"{len(live)} live worker process{'es' if len(live) != 1 else ''}")
        lines += [f"  {p.id}: {p.slots} slots, {p.cores or '?'} cores, queues {', '.join(p.queues)}" for p in live]
        if self.dead:
            lines.append(f"{len(self.dead)} dead worker process{'es' if len(self.dead) != 1 else ''} (no heartbeat)")
            lines += [f"  {p.id}: dead, its jobs go back to their queues" for p in self.dead]
        foreign = [s for s in self.slots if not s.gomap]
        if foreign:
            lines.append(f"{len(foreign)} other Resque worker{'s' if len(foreign) != 1 else ''}")
            lines += [f"  {_slot_line(s)}" for s in foreign]
        stale = [s for s in self.slots if s.stale]
        if stale:
            lines.append(
                f"{len(stale)} dead Resque worker{'s' if len(stale) != 1 else ''} (heartbeat stale; "
                "the reaper prunes them)"
            )
        busy = [s for s in self.slots if s.gomap and s.job]
        lines.append(f"{len(busy)} gomap slot{'s' if len(busy) != 1 else ''} busy")
        for q in self.queues:
            note = " (paused)" if q.paused else " (no live worker serves it)" if q.name in self.unserved else ""
            lines.append(f"  queue {q.name}: {q.length} waiting{note}")
        if self.batches_error:
            lines.append(f"  batches {self.batches_error}")
        for b in self.batches:
            lines.append(f"  batch {b.id}: {b.function}, {_progress(b)}")
        lines.append(
            f"processed {self.processed}, failed {self.failed}, requeued {self.requeued}, pruned {self.pruned}"
        )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        parts = [f"<div><strong>gomap status</strong> <code>{html.escape(self.url)}</code>"]
        parts.append(
            f"<p>processed {self.processed:,}, failed {self.failed:,}, requeued {self.requeued:,}, "
            f"pruned {self.pruned:,}; "
            f"{len(self.dead)} dead worker processes</p>"
        )
        parts.append(
            _table(
                ["worker process", "host", "pid", "slots", "cores", "queues", "alive"],
                [
                    [
                        p.id,
                        p.host,
                        str(p.pid),
                        str(p.slots),
                        str(p.cores),
                        ", ".join(p.queues),
                        "yes" if p.alive else "dead",
                    ]
                    for p in self.processes
                ],
            )
        )
        parts.append(
            _table(
                ["Resque worker", "queues", "job", "heartbeat age"],
                [
                    [
                        s.id,
                        ", ".join(s.queues),
                        str((s.job or {}).get("payload", {}).get("class", "")) if s.job else "idle",
                        "" if s.heartbeat_age is None else f"{s.heartbeat_age:.0f} s",
                    ]
                    for s in self.slots
                ],
            )
        )
        parts.append(
            _table(
                ["queue", "jobs waiting", "paused"],
                [[q.name, f"{q.length:,}", "paused" if q.paused else ""] for q in self.queues],
            )
        )
        parts.append(
            _table(
                ["batch", "function", "items", "progress"],
                [[b.id, b.function, str(b.items), _progress(b)] for b in self.batches],
            )
        )
        parts.append("</div>")
        return "".join(parts)

    def __repr__(self) -> str:
        return "<gomap status\n" + self.text() + ">"


def _alive(p: Process) -> str:
    return "yes" if p.alive else "dead"


def _progress(b: BatchInfo) -> str:
    failed = f", {b.failed:,} failed" if b.failed else ""
    if b.items <= 0:
        return f"{b.done:,} items done{failed}, {max(b.submitted, 0)} chunks submitted"
    return f"{min(b.done, b.items):,}/{b.items:,} items done{failed}, {max(b.submitted, 0)} chunks submitted"


def _slot_line(s: Slot) -> str:
    age = "no heartbeat" if s.heartbeat_age is None else f"heartbeat {s.heartbeat_age:.0f} s ago"
    if s.stale:
        age += " (dead)"
    job = f"working on {s.job.get('payload', {}).get('class', '?')}" if s.job else "idle"
    return f"{s.id}: queues {', '.join(s.queues)}, {job}, {age}"


def _parse_iso(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _json(raw: Any) -> Any:
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return None


class Inspector:
    """Queries and actions on the pool a Client talks to (docs: README "Operating the pool")."""

    def __init__(self, client: Client, timeout: float = TIMEOUT) -> None:
        self.client = client
        self.timeout = timeout

    def _call(self, op: Callable[[], T]) -> T:
        from ._client import OutOfTime, redact

        try:
            return self.client.call(op, deadline=time.monotonic() + self.timeout)
        except OutOfTime as e:  # also from an op that makes its own bounded calls (batches)
            from ._exceptions import ConnectError

            raise ConnectError(
                f"cannot reach Redis at {redact(self.client.url)} within {self.timeout:.0f} s: {e.last}"
            ) from e

    # --- queries -----------------------------------------------------------------------------

    def queues(self) -> list[Queue]:
        """Every known queue (Resque's ``queues`` set) by name, with its length and pause."""
        return self._call(lambda: read_queues(self.client)[0])

    def processes(self) -> list[Process]:
        r, k = self.client.redis, self.client.keys

        def read() -> list[Process]:
            recs = [rec for rec in (_json(v) for v in r.hgetall(k.processes()).values()) if isinstance(rec, dict)]
            recs = [rec for rec in recs if "id" in rec]
            pipe = r.pipeline(transaction=False)
            for rec in recs:
                pipe.exists(k.alive(rec["id"]))
            alive = pipe.execute() if recs else []
            return sorted(
                (
                    Process(
                        id=rec["id"],
                        host=str(rec.get("host", "")),
                        pid=int(rec.get("pid", 0) or 0),
                        queues=tuple(rec.get("queues") or ()),
                        functions=tuple(rec.get("functions") or ()),
                        slots=int(rec.get("concurrency", rec.get("slots", 0)) or 0),
                        cores=int(rec.get("cores", 0) or 0),
                        alive=bool(a),
                        paused=tuple(rec.get("paused") or ()),
                        shards=int(rec.get("shards", 1) or 1),
                    )
                    for rec, a in zip(recs, alive, strict=True)
                ),
                key=lambda p: (p.host, p.pid, p.id),
            )

        return self._call(read)

    def workers(self, processes: Sequence[Process] | None = None) -> list[Slot]:
        """Every Resque worker id in ``<ns>workers``: gomap's slots and any other Resque worker.
        ``processes`` (as ``processes()`` returns them, when read already) tell gomap's apart."""
        r, k = self.client.redis, self.client.keys
        live = {(p.host, str(p.pid)) for p in (self.processes() if processes is None else processes) if p.alive}

        def read() -> tuple[list[str], list[Any], dict[Any, Any], Any]:
            ids = sorted(_text(w) for w in r.smembers(k.workers()))
            pipe = r.pipeline(transaction=False)
            for w in ids:
                pipe.get(k.worker(w))
            jobs = pipe.execute() if ids else []
            return ids, jobs, r.hgetall(k.heartbeat())

        ids, jobs, beats = self._call(read)
        # Heartbeats carry Redis' clock; ages use this machine's (the least-privilege client
        # user of docs/security.md may not run TIME). A skew of seconds is far below STALE_AFTER.
        server_now = time.time()
        beats = {_text(a): _text(b) for a, b in beats.items()}
        slots = []
        for w, job in zip(ids, jobs, strict=True):
            host, pid, queues = [*w.split(":", 2), "", ""][:3]
            beat = beats.get(w, "")
            at = _parse_iso(beat) if beat else None
            rec = _json(job) if job else None
            slots.append(
                Slot(
                    id=w,
                    host=host,
                    pid=pid,
                    queues=tuple(q for q in queues.split(",") if q),
                    heartbeat=beat,
                    heartbeat_age=None if at is None else max(0.0, server_now - at),
                    job=rec if isinstance(rec, dict) else None,
                    gomap=(host, pid.split("-", 1)[0]) in live,
                )
            )
        return slots

    def batches(self) -> list[BatchInfo]:
        """The running batches (the newest, at most _overview.BATCHES_SHOWN)."""
        shown, _, _ = self._call(lambda: _read_batches(self.client, time.monotonic() + self.timeout))
        return list(shown)

    def stats(self) -> tuple[int, int]:
        r, k = self.client.redis, self.client.keys

        def read() -> list[Any]:  # GETs, not MGET: the least-privilege client user (docs/security.md) has GET
            pipe = r.pipeline(transaction=False)
            pipe.get(k.stat("processed"))
            pipe.get(k.stat("failed"))
            return pipe.execute()

        processed, failed = self._call(read)
        return int(processed or 0), int(failed or 0)

    def counters(self) -> tuple[int, int]:
        """The reaper's counters: jobs it put back on their queues after their worker died, and
        Resque worker ids it pruned because their heartbeat stopped."""
        r, k = self.client.redis, self.client.keys

        def read() -> list[Any]:
            pipe = r.pipeline(transaction=False)
            pipe.get(k.counter("requeued"))
            pipe.get(k.counter("pruned"))
            return pipe.execute()

        requeued, pruned = self._call(read)
        return int(requeued or 0), int(pruned or 0)

    def status(self, *, batches: bool = True) -> Status:
        """Everything at once. The batches need SCAN, which the least-privilege client user of
        docs/security.md does not have: ``batches=False`` skips them; a refused SCAN is said in
        ``batches_error``, not raised."""
        processed, failed = self.stats()
        found: list[BatchInfo] = []
        batches_error = "" if batches else "not read (gomap status --batches reads them; it needs SCAN)"
        try:
            found = self.batches() if batches else []
        except RedisCommandError as e:
            batches_error = f"not read: {e}"
        requeued, pruned = self.counters()
        queues, processes = self.queues(), self.processes()
        slots = self.workers(processes)
        k = self.client.keys
        served = {s for p in processes if p.alive for q in p.queues for s in shard_names(k, q, p.shards)}
        served |= {q for s in slots if not s.gomap and not s.stale for q in s.queues}  # Ruby's, Node's
        everything = "*" in served  # a Resque worker on every queue
        return Status(
            url=_redacted(self.client.url),
            namespace=self.client.namespace,
            queues=tuple(queues),
            slots=tuple(slots),
            processes=tuple(processes),
            unserved=tuple(q.name for q in queues if q.length and q.name not in served and not everything),
            batches=tuple(found),
            batches_error=batches_error,
            processed=processed,
            failed=failed,
            requeued=requeued,
            pruned=pruned,
        )

    # --- pausing ---------------------------------------------------------------------------

    def pause(self, queue: str, wait: float = 0.0) -> Paused:
        """Pause ``queue``: gomap workers take no new job from it (jobs already taken finish; the
        queue keeps its jobs and still takes new ones). Each worker process takes note at its next
        heartbeat; with ``wait`` > 0, wait up to that many seconds until every live one serving the
        queue has."""
        return self._set_paused(queue, True, wait)

    def resume(self, queue: str, wait: float = 0.0) -> Paused:
        """Undo ``pause``: gomap workers take jobs from ``queue`` again (see pause for ``wait``)."""
        return self._set_paused(queue, False, wait)

    def _set_paused(self, queue: str, paused: bool, wait: float) -> Paused:
        from ._protocol import check_queue

        check_queue(queue)
        r, k = self.client.redis, self.client.keys
        at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

        def op() -> None:
            pipe = r.pipeline(transaction=False)
            if paused:
                pipe.set(k.paused(queue), at)
                pipe.sadd(k.queues(), queue)
            else:
                pipe.delete(k.paused(queue))
            pipe.execute()

        self._call(op)
        deadline = time.monotonic() + wait
        while True:
            serving = [p for p in self.processes() if p.alive and queue in p.queues]
            heard = sum((queue in p.paused) == paused for p in serving)
            if heard == len(serving) or time.monotonic() >= deadline:
                self.client.forget_workers()  # its next batch sees the pause (and warns)
                return Paused(queue, paused, heard, len(serving))
            time.sleep(0.05)  # polling the worker records until the deadline

    def paused(self) -> list[str]:
        """The paused queues among the known ones."""
        return [q.name for q in self.queues() if q.paused]

    # --- failed jobs -------------------------------------------------------------------------

    def failed_count(self) -> int:
        r, k = self.client.redis, self.client.keys
        return int(self._call(lambda: r.llen(k.failed())))

    def failed(self, offset: int = 0, limit: int = FAILED_PAGE, where: FailedFilter | None = None) -> list[Failed]:
        """Failed entries from ``offset`` (a list index), at most ``limit`` of them; with
        ``where``, only those that match (read in pages of the list)."""
        if offset < 0 or limit < 0:
            raise ConfigError("offset and limit must be 0 or more")
        where = where or FailedFilter()
        found: list[Failed] = []
        start = offset
        page = max(1, min(limit, 1000)) if where.empty else 1000
        while len(found) < limit and start - offset < FAILED_SCAN:
            entries = self._page(start, page)
            found += [e for e in entries if e.matches(where)]
            if len(entries) < page:
                break
            start += page
        return found[:limit]

    def failed_one(self, index: int) -> Failed:
        got = self._page(index, 1) if index >= 0 else []
        if not got:
            raise ConfigError(f"no failed job at index {index}: `gomap failed ls` lists them with their indexes")
        return got[0]

    def _page(self, start: int, n: int) -> list[Failed]:
        r, k = self.client.redis, self.client.keys
        raws = self._call(lambda: r.lrange(k.failed(), start, start + n - 1))
        return [_failed(start + i, raw) for i, raw in enumerate(raws)]

    def retry(self, index: int) -> Failed:
        """Re-enqueue failed entry ``index`` on its queue, as resque-web does, and set its
        ``retried_at`` (the entry stays in the list)."""
        entry = self.failed_one(index)
        self._retry(entry)
        return entry

    def retry_where(self, where: FailedFilter) -> int:
        """Re-enqueue every failed entry that matches (all of them with an empty filter)."""
        n = 0
        for entry in self.failed(0, FAILED_SCAN, where):
            self._retry(entry)
            n += 1
        return n

    def _retry(self, entry: Failed) -> None:
        payload = entry.raw.get("payload")
        if not isinstance(payload, dict) or not entry.queue or not entry.class_:
            raise ConfigError(f"failed job {entry.index} has no payload and queue to retry")
        r, k = self.client.redis, self.client.keys
        updated = dict(entry.raw, retried_at=resque_time())
        job = json.dumps(payload, separators=(",", ":"))
        key = k.failed()

        def op() -> None:
            # retried_at is set only if the entry is still the one read (the list may have moved).
            pipe = r.pipeline(transaction=False)
            rewritten = json.dumps(updated, separators=(",", ":"))
            pipe.eval(MARK_RETRIED_SCRIPT, 1, key, entry.index, entry.stored, rewritten)
            pipe.sadd(k.queues(), entry.queue)
            pipe.rpush(k.queue(entry.queue), job)
            pipe.execute()

        self._call(op)

    def remove(self, index: int) -> Failed:
        """Remove failed entry ``index``, as Resque does: LSET to a sentinel, then LREM it."""
        entry = self.failed_one(index)
        r, key = self.client.redis, self.client.keys.failed()
        sentinel = f"gomap-removing-{uuid.uuid4().hex}"
        removed = self._call(lambda: r.eval(REMOVE_FAILED_SCRIPT, 1, key, index, entry.stored, sentinel))
        if not removed:
            raise ConfigError(f"failed job {index} changed while it was being removed: list them again and retry")
        return entry

    def clear(self) -> int:
        """Delete every failed entry; returns how many there were."""
        r, key = self.client.redis, self.client.keys.failed()

        def op() -> int:
            pipe = r.pipeline(transaction=False)
            pipe.llen(key)
            pipe.delete(key)
            return int(pipe.execute()[0])

        return self._call(op)

    # --- batches -----------------------------------------------------------------------------

    def cancel_batch(self, batch: str) -> int:
        """Cancel a batch by id: its keys go (workers skip its chunks) and its queued chunks are
        removed; returns how many queued chunks were removed."""
        r, k = self.client.redis, self.client.keys
        meta = self._call(lambda: r.hgetall(k.batch_meta(batch)))
        if not meta:
            raise ConfigError(f"no batch {batch!r} in Redis: `gomap batches` lists the running ones")
        queue = _text(meta.get(b"queue", meta.get(b"function", b"")))
        shards = int(_text(meta.get(b"shards", b"1")) or 1)
        marker = json.dumps(batch)

        def op() -> int:
            for key in (k.batch_meta(batch), k.batch_results(batch), k.batch_done(batch), k.batch_taken(batch)):
                r.delete(key)
            removed = 0
            for qkey in (k.queue(q) for q in shard_names(k, queue, shards)):
                for job in r.lrange(qkey, 0, -1):
                    rec = _json(job)
                    chunk = rec.get("gomap") if isinstance(rec, dict) else None
                    if isinstance(chunk, dict) and json.dumps(chunk.get("batch")) == marker:
                        removed += int(r.lrem(qkey, 0, job))
            return removed

        return self._call(op)


def read_queues(client: Client, limit: int | None = None) -> tuple[list[Queue], int]:
    """The queues of Resque's ``queues`` set, by name: the first ``limit`` of them (all with
    None) with their lengths and pauses, and how many more there are. One round trip after the
    SMEMBERS; the caller bounds it (Client.call)."""
    r, k = client.redis, client.keys
    names = sorted(_text(q) for q in r.smembers(k.queues()))
    read = names if limit is None else names[:limit]
    if not read:
        return [], len(names)
    pipe = r.pipeline(transaction=False)
    for q in read:
        pipe.llen(k.queue(q))
        pipe.exists(k.paused(q))
    got = pipe.execute()
    return [Queue(q, int(got[2 * i]), bool(got[2 * i + 1])) for i, q in enumerate(read)], len(names) - len(read)


def _redacted(url: str) -> str:
    from ._client import redact

    return redact(url)


def _failed(index: int, raw: Any) -> Failed:
    rec = _json(raw)
    if not isinstance(rec, dict):
        rec = {"error": _text(raw)}
    payload = rec.get("payload") if isinstance(rec.get("payload"), dict) else {}
    args = payload.get("args")
    return Failed(
        index=index,
        failed_at=str(rec.get("failed_at", "")),
        queue=str(rec.get("queue", "")),
        class_=str(payload.get("class", "")),
        args=list(args) if isinstance(args, list) else [],
        exception=str(rec.get("exception", "")),
        error=str(rec.get("error", "")),
        backtrace=[str(b) for b in rec.get("backtrace") or []],
        worker=str(rec.get("worker", "")),
        retried_at=str(rec.get("retried_at", "") or ""),
        raw=rec,
        stored=raw if isinstance(raw, bytes) else str(raw).encode(),
    )


def failed_to_json(entries: Sequence[Failed]) -> list[dict[str, Any]]:
    return [{k: v for k, v in asdict(e).items() if k not in ("raw", "stored")} for e in entries]


def status(client: Client | None = None) -> Status:
    """The pool's state now (``gomap.status()``): queues, workers (gomap's and any other Resque
    worker, dead ones marked), running batches and counters; a notebook shows it as tables.
    Without ``client``, the default client's pool (the embedded default when no URL is set)."""
    if client is None:
        from ._map import default_client

        client = default_client()
    return Inspector(client).status()
