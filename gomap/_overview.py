"""What a Client or a LocalCluster shows of itself: its Redis, its pool and what the pool is doing.

``Client.overview()`` and ``LocalCluster.overview()`` read it from Redis within a short deadline;
their ``repr`` prints it and their ``_repr_html_`` (Jupyter) shows it as small tables. A Redis that
cannot be read is said in it, never raised: a repr must not fail.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._client import OutOfTime, WorkerInfo, _scrub, redact
from ._exceptions import ConnectError, GomapError

if TYPE_CHECKING:
    from ._client import Client
    from ._inspect import Queue
    from ._local import LocalCluster

BATCHES_SHOWN = 20
"""Most batches listed (the newest of those found first); the rest are counted."""

BATCHES_COUNTED = 10_000
"""Most batch keys a SCAN counts before it stops: past it, the overview says "at least"."""

QUEUES_READ = 100
"""Most queues whose length is read (by name); the rest are counted."""

QUEUES_SHOWN = 20
"""Most queues listed (the longest first)."""

FUNCTIONS_SHOWN = 40
"""Most function names listed; the rest are counted."""


@dataclass(frozen=True)
class LocalInfo:
    """A LocalCluster's own processes and files."""

    running: bool
    cores: int
    pid: int  # the worker process
    redis_pid: int
    keeper_pid: int  # the gomap-worker -redis-only that runs redis-server
    binary: str  # the worker binary it runs
    log_dir: str  # its logs and its socket

    @staticmethod
    def of(cluster: LocalCluster) -> LocalInfo:
        return LocalInfo(
            running=cluster.running,
            cores=cluster.cores,
            pid=cluster.pid,
            redis_pid=cluster.redis_pid,
            keeper_pid=cluster.keeper_pid,
            binary=cluster.binary,
            log_dir=cluster.log_dir,
        )


@dataclass(frozen=True)
class BatchInfo:
    """A gomap batch whose keys are in Redis: running, or left by a client that died (they expire)."""

    id: str
    function: str
    items: int  # -1: unknown (a generator)
    created: float  # Unix time, 0: unknown
    client: str  # the language of the client that submitted it ("python", "go")
    submitted: int  # chunks submitted so far, -1: unknown
    done: int = 0  # items with an outcome so far (finished chunks, and items done in running ones)
    failed: int = 0  # of them, failed

    def age(self, now: float | None = None) -> str:
        if not self.created:
            return ""
        seconds = max(0.0, (time.time() if now is None else now) - self.created)
        if seconds < 120:
            return f"{seconds:.0f} s ago"
        if seconds < 7200:
            return f"{seconds / 60:.0f} min ago"
        return f"{seconds / 3600:.0f} h ago"


@dataclass(frozen=True)
class Overview:
    """A Client's or a LocalCluster's state, as read at one moment.

    ``error`` says why Redis could not be read ("" when it could); ``queues_error`` and
    ``batches_error`` say why one part could not (a Redis user without the permission to list
    keys, for instance). ``batches_more`` counts the batches not listed; when ``batches_complete``
    is False the count stopped early, so there are at least that many.
    """

    url: str  # masked: the password never shows
    namespace: str
    embedded: bool  # the embedded default: a LocalCluster gomap started because no Redis URL was configured
    local: LocalInfo | None = None
    error: str = ""
    workers: tuple[WorkerInfo, ...] = ()
    functions: tuple[str, ...] = ()
    queues: tuple[Queue, ...] = ()  # the longest first
    queues_more: int = 0
    queues_error: str = ""
    batches: tuple[BatchInfo, ...] = ()
    batches_more: int = 0
    batches_complete: bool = True
    batches_error: str = ""
    read_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", redact(self.url))

    @property
    def processes(self) -> int:
        """Live worker processes."""
        return len(self.workers)

    @property
    def slots(self) -> int:
        """Chunks the pool runs at once: the slots of every live worker process."""
        return sum(w.concurrency for w in self.workers)

    @property
    def cores(self) -> int | None:
        """Cores of every live worker process; None when one of them does not say (an older worker)."""
        if any(w.cores <= 0 for w in self.workers):
            return None
        return sum(w.cores for w in self.workers)

    @property
    def hosts(self) -> int:
        return len({w.host for w in self.workers})

    @property
    def waiting(self) -> int:
        """Jobs waiting on the queues read."""
        return sum(q.length for q in self.queues)

    # --- the rows both forms show ------------------------------------------------------------

    def _rows(self, pool: bool = True) -> list[tuple[str, str]]:
        """(label, text) pairs of the summary; the same in the repr and the HTML. Without
        ``pool``, only what is known without asking Redis."""
        rows = [("Redis", self.url), ("namespace", self.namespace)]
        if self.embedded:
            rows.append(("embedded default", "yes: gomap started this local cluster as no Redis URL is configured"))
        else:
            rows.append(("embedded default", "no"))
        if self.local is not None:
            rows += _local_rows(self.local)
        if not pool:
            rows.append(("pool", "not read by repr(): overview() reads it, as IPython and Jupyter do to show it"))
            return rows
        if self.error:
            rows.append(("pool", self.error))
            return rows
        rows.append(("worker processes", self._pool()))
        rows.append(("functions", _names(self.functions) or "none"))
        if self.queues_error:
            rows.append(("queued jobs", self.queues_error))
        elif not self.waiting:
            rows.append(("queued jobs", "none"))
        if self.batches_error:
            rows.append(("running batches", self.batches_error))
        elif not self.batches:
            rows.append(("running batches", "none"))
        return rows

    def _pool(self) -> str:
        if not self.workers:
            return "none live"
        cores = self.cores
        on = f" on {self.hosts} hosts" if self.hosts > 1 else ""
        return (
            f"{self.processes}{on}: {self.slots} slot{_s(self.slots)} (chunks at once), "
            f"{'?' if cores is None else cores} core{_s(cores or 0)}"
        )

    def _queue_rows(self) -> list[Queue]:
        return [q for q in self.queues if q.length][:QUEUES_SHOWN]

    def _queues_note(self) -> str:
        with_jobs = [q for q in self.queues if q.length]
        notes = []
        if len(with_jobs) > QUEUES_SHOWN:
            notes.append(f"{len(with_jobs) - QUEUES_SHOWN} more with jobs")
        if len(self.queues) > len(with_jobs):
            notes.append(f"{len(self.queues) - len(with_jobs)} empty")
        if self.queues_more:
            notes.append(f"{self.queues_more} not read")
        return ", ".join(notes)

    def _batches_note(self) -> str:
        if not self.batches_more and self.batches_complete:
            return ""
        more = f"{'at least ' if not self.batches_complete else ''}{self.batches_more:,}"
        return f"{more} more not listed"

    # --- text --------------------------------------------------------------------------------

    def text(self, title: str, *, pool: bool = True) -> str:
        """The multi-line text form: a summary, then the queues with jobs and the batches
        (without ``pool``: only what is known without asking Redis, for a plain ``repr``)."""
        rows = self._rows(pool)
        width = max(len(label) for label, _ in rows)
        lines = [f"<{title}"] + [f"  {label + ':':<{width + 1}} {value}" for label, value in rows]
        if pool and not self.error:
            if not self.queues_error and self.waiting:
                note = self._queues_note()
                lines.append(f"  queued jobs{f' ({note})' if note else ''}:")
                lines += [f"    {q.name}: {q.length:,}{' (paused)' if q.paused else ''}" for q in self._queue_rows()]
            if not self.batches_error and self.batches:
                note = self._batches_note()
                lines.append(f"  running batches{f' ({note})' if note else ''}:")
                lines += [f"    {_batch_line(b, self.read_at)}" for b in self.batches]
        return "\n".join(lines) + ">"

    # --- HTML --------------------------------------------------------------------------------

    def html(self, title: str) -> str:
        """Small tables, in the style of gomap.functions(): the summary, the queues with jobs and
        the batches."""
        parts = [f"<div><strong>{html.escape(title)}</strong>", _kv_table(self._rows())]
        if not self.error:
            if not self.queues_error and self.waiting:
                note = self._queues_note()
                parts.append(_caption("queued jobs", note))
                parts.append(
                    _table(
                        ["queue", "jobs waiting", "paused"],
                        [[q.name, f"{q.length:,}", "paused" if q.paused else ""] for q in self._queue_rows()],
                    )
                )
            if not self.batches_error and self.batches:
                parts.append(_caption("running batches", self._batches_note()))
                parts.append(
                    _table(
                        ["batch", "function", "items", "done", "chunks submitted", "created", "client"],
                        [_batch_cells(b, self.read_at) for b in self.batches],
                    )
                )
        parts.append("</div>")
        return "".join(parts)


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:FUNCTIONS_SHOWN])
    more = len(names) - FUNCTIONS_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def _local_rows(local: LocalInfo) -> list[tuple[str, str]]:
    if not local.running:
        return [("local cluster", f"not running (on {local.cores} core{_s(local.cores)} when it runs)")]
    return [
        (
            "local cluster",
            f"a Go worker process on {local.cores} core{_s(local.cores)} (pid {local.pid}), "
            f"redis-server (pid {local.redis_pid}, run by pid {local.keeper_pid})",
        ),
        ("worker binary", local.binary),
        ("logs", local.log_dir),
    ]


def _batch_cells(b: BatchInfo, now: float) -> list[str]:
    return [
        b.id,
        b.function,
        "?" if b.items < 0 else f"{b.items:,}",
        f"{b.done:,}" + (f" ({b.failed:,} failed)" if b.failed else ""),
        "?" if b.submitted < 0 else f"{b.submitted:,}",
        b.age(now),
        b.client,
    ]


def _batch_line(b: BatchInfo, now: float) -> str:
    items = "? items" if b.items < 0 else f"{b.items:,} item{_s(b.items)}"
    items += f" ({b.done:,} done{f', {b.failed:,} failed' if b.failed else ''})"
    chunks = "" if b.submitted < 0 else f", {b.submitted:,} chunk{_s(b.submitted)} submitted"
    created = f", created {b.age(now)}" if b.created else ""
    by = f" by a {b.client} client" if b.client else ""
    return f"{b.id}: {b.function}, {items}{chunks}{created}{by}"


_LEFT = ' style="text-align:left"'


def _kv_table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(
        f"<tr><th{_LEFT}>{html.escape(label)}</th><td{_LEFT}><code>{html.escape(value)}</code></td></tr>"
        if label in ("Redis", "namespace", "worker binary", "logs")
        else f"<tr><th{_LEFT}>{html.escape(label)}</th><td{_LEFT}>{html.escape(value)}</td></tr>"
        for label, value in rows
    )
    return f"<table><tbody>{cells}</tbody></table>"


def _caption(title: str, note: str) -> str:
    return f"<p>{html.escape(title)}{f' ({html.escape(note)})' if note else ''}</p>"


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th{_LEFT}>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td{_LEFT}>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


# --- reading it ------------------------------------------------------------------------------


def _glob_escape(s: str) -> str:
    """s as a literal in a Redis glob pattern (SCAN MATCH)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", s)


def _text(b: Any) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else str(b)


def _int(b: Any, default: int) -> int:
    try:
        return int(_text(b))
    except (TypeError, ValueError):
        return default


def read(client: Client, timeout: float, *, embedded: bool, local: LocalInfo | None) -> Overview:
    """Read the overview of client's Redis: every round trip through Client.call, all of them
    within ``timeout`` seconds. Redis out of reach ends the reading with ``error`` set; a part
    that Redis refuses (NOPERM) is said in that part."""
    deadline = time.monotonic() + timeout
    base = {"url": client.url, "namespace": client.namespace, "embedded": embedded, "local": local}

    def why(e: Exception) -> str:
        if isinstance(e, OutOfTime):
            text = f"cannot reach Redis at {redact(client.url)} within {timeout:.1f} s: {e.last}"
        else:
            text = str(e)
        return _scrub(text, client.url)

    try:
        live = client._live(0.0, deadline)
    except (GomapError, OutOfTime) as e:
        return Overview(**base, error=why(e))
    workers = tuple(sorted((info for info, _ in live), key=lambda w: (w.host, w.pid, w.id)))
    functions = tuple(sorted({name for w in workers for name in w.functions}))
    parts: dict[str, Any] = {"workers": workers, "functions": functions}

    try:
        from ._inspect import read_queues

        queues, more = client.call(lambda: read_queues(client, QUEUES_READ), deadline=deadline)
        parts.update(queues=tuple(sorted(queues, key=lambda q: (-q.length, q.name))), queues_more=more)
    except (OutOfTime, ConnectError) as e:  # out of reach: the batches would wait for nothing
        return Overview(**base, **parts, queues_error=why(e), batches_error="not read: Redis did not answer")
    except GomapError as e:
        parts["queues_error"] = why(e)

    try:
        batches, more, complete = _read_batches(client, deadline)
        parts.update(batches=batches, batches_more=more, batches_complete=complete)
    except (GomapError, OutOfTime) as e:
        parts["batches_error"] = why(e)
    return Overview(**base, **parts)


def _read_batches(client: Client, deadline: float) -> tuple[tuple[BatchInfo, ...], int, bool]:
    """The newest BATCHES_SHOWN batches of a SCAN for meta keys, how many more it found, and
    whether it finished (it stops at BATCHES_COUNTED keys or at the deadline)."""
    r, keys = client.redis, client.keys
    prefix, suffix = keys.batch_meta("\0").split("\0")
    pattern = _glob_escape(prefix) + "*" + _glob_escape(suffix)

    def scan() -> tuple[list[str], bool]:
        found: set[str] = set()
        for key in r.scan_iter(match=pattern, count=1000):
            found.add(_text(key))
            if len(found) >= BATCHES_COUNTED or time.monotonic() > deadline:
                return sorted(found), False
        return sorted(found), True

    names, complete = client.call(scan, deadline=deadline)
    if not names:
        return (), 0, complete
    listed = names[: BATCHES_SHOWN * 5]  # read a few more than shown, to show the newest of them

    def metas() -> list[Any]:
        pipe = r.pipeline(transaction=False)
        for key in listed:
            pipe.hgetall(key)
        return pipe.execute()

    found = []
    for key, meta in zip(listed, client.call(metas, deadline=deadline), strict=True):
        if not meta:
            continue  # it finished between the SCAN and now
        m = {_text(k): v for k, v in meta.items()}
        running = sum(_int(v, 0) for k, v in m.items() if k.startswith("running:"))
        found.append(
            BatchInfo(
                id=key[len(prefix) : len(key) - len(suffix)],
                function=_text(m.get("function", b"")),
                items=_int(m.get("items"), -1),
                created=float(_int(m.get("created"), 0)),
                client=_text(m.get("client", b"")),
                submitted=_int(m.get("submitted"), -1),
                done=_int(m.get("done"), 0) + running,
                failed=_int(m.get("failed"), 0),
            )
        )
    found.sort(key=lambda b: (-b.created, b.id))
    shown = tuple(found[:BATCHES_SHOWN])
    return shown, len(found) - len(shown) + len(names) - len(listed), complete
