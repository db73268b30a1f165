"""Client: one Redis deployment that gomap's Go workers serve, and what can be done with it."""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from . import _codec, _defaults
from ._exceptions import ConfigError, ConnectError, GomapError, RedisCommandError
from ._functions import FunctionList, from_records
from ._protocol import Keys, check_queue, normalize_namespace, shard_names

if TYPE_CHECKING:
    from ._local import LocalCluster
    from ._overview import Overview

MIN_REDIS = (6, 2)

T = TypeVar("T")


_MASK = "xxxxx"


def redact(url: str) -> str:
    """The URL with its password masked as ``xxxxx``, for messages: the password of the user
    information, and the value of every query parameter whose name holds "pass", "secret" or
    "token" (``?password=``). The URL need not parse, so a typo cannot make a message show the
    password; where the URL is ambiguous, more is masked rather than less. The Go side
    (rconn.Redacted) masks the same way."""
    start, end, query = _secret_spans(url)
    out = url if start < 0 else url[:start] + _MASK + url[end:]
    if query < 0:
        return out
    return out[: query + len(out) - len(url)] + _redact_query(url[query:])


def _secret_spans(url: str) -> tuple[int, int, int]:
    """Where the password is (start, end; -1, -1 for none) and where the query starts (-1 for
    none), without parsing url: the user information runs from "://" to the last "@", the
    password from its first ":", the query from the first "?" after the user information."""
    begin = url.find("://")
    begin = 0 if begin < 0 else begin + 3
    start = end = -1
    host = begin
    at = url.rfind("@", begin)
    if at >= 0:
        host = at + 1
        colon = url.find(":", begin, at)
        if colon >= 0:
            start, end = colon + 1, at
    q = url.find("?", host)
    return start, end, (q + 1 if q >= 0 else -1)


def _secret_key(key: str) -> bool:
    k = urllib.parse.unquote_plus(key).lower()
    return "pass" in k or "secret" in k or "token" in k


def _redact_query(query: str) -> str:
    query, hash_, fragment = query.partition("#")
    params = []
    for kv in query.split("&"):
        k, eq, _ = kv.partition("=")
        params.append(k + eq + _MASK if eq and _secret_key(k) else kv)
    return "&".join(params) + hash_ + fragment


def _secrets(url: str) -> list[str]:
    """The strings of url that no message may show: the password and secret query values, as
    written and percent-decoded."""
    found: list[str] = []
    start, end, query = _secret_spans(url)
    raw = [url[start:end]] if start >= 0 else []
    if query >= 0:
        for kv in url[query:].partition("#")[0].split("&"):
            k, eq, v = kv.partition("=")
            if eq and _secret_key(k):
                raw.append(v)
    for s in raw:
        for form in (s, urllib.parse.unquote(s), urllib.parse.unquote_plus(s)):
            if form and form not in found:
                found.append(form)
    return found


def _scrub(text: str, url: str) -> str:
    """text with url redacted and every secret of url masked."""
    text = text.replace(url, redact(url)) if url else text
    for s in _secrets(url):
        text = text.replace(s, _MASK)
    return text


TRANSIENT: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,  # refused, reset, closed; BusyLoadingError (a restart loading its data)
    redis.exceptions.TimeoutError,  # a stalled server
    redis.exceptions.TryAgainError,  # Redis Cluster: a slot is migrating
    redis.exceptions.ClusterDownError,  # Redis Cluster: a failover is under way (MasterDownError too)
    redis.exceptions.ReadOnlyError,  # a connection to a master that just became a replica
)
"""Failures a retry can cure: the connection, or a server that is restarting or failing over."""

PERMANENT: tuple[type[Exception], ...] = (
    redis.exceptions.AuthenticationError,
    redis.exceptions.AuthorizationError,
)
"""Connection errors no retry cures (they are ConnectionErrors in redis-py)."""


def gomap_error(e: redis.exceptions.RedisError, url: str) -> GomapError:
    """gomap's error for a redis-py one: ConnectError for the connection (naming the URL without
    its password), RedisCommandError for a command Redis refused."""
    if isinstance(e, PERMANENT):
        return ConnectError(
            f"Redis at {redact(url)} refused the connection's credentials: {e} (check the user and password "
            "in the URL: redis://user:password@host:port/db)"
        )
    if isinstance(e, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return ConnectError(f"cannot reach Redis at {redact(url)}: {e}")
    return RedisCommandError(f"Redis at {redact(url)} refused a command: {e}")


@contextlib.contextmanager
def redis_errors(url: str) -> Iterator[None]:
    """Raise redis-py's errors as gomap's (gomap_error)."""
    try:
        yield
    except redis.exceptions.RedisError as e:
        raise gomap_error(e, url) from e


class OutOfTime(Exception):
    """Internal: the caller's deadline passed while Redis could not be reached (``last`` says how)."""

    def __init__(self, last: BaseException) -> None:
        super().__init__(str(last))
        self.last = last


@dataclass(frozen=True)
class WorkerInfo:
    """A live gomap worker process, as it registers itself."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    functions: tuple[str, ...]
    concurrency: int  # slots: the jobs (chunks) it runs at once
    cores: int = 0  # GOMAXPROCS: the goroutines one chunk's items run on (0: it does not say)
    max_payload: int = 0  # the largest payload it accepts, in bytes (0: it does not say)
    max_chunk_items: int = 0  # the most items it takes in a chunk (0: it does not say)
    paused: tuple[str, ...] = ()  # paused queues it takes no job from (`gomap queues pause`)
    shards: int = 1  # shards of each queue it serves (docs/protocol.md, "Sharded queues")


def resolve_url(environ: Mapping[str, str]) -> str | None:
    """The Redis URL the environment names (GOMAP_REDIS_URL, then REDIS_URL), if any."""
    for name in _defaults.URL_ENV:
        if environ.get(name):
            return environ[name]
    return None


def _socket_options() -> dict[str, Any]:
    """Socket settings that bound every round trip, whatever redis-py's defaults are: no single
    read waits longer than a wait slice plus READ_MARGIN, so a stalled Redis cannot hold a call
    past its deadline; and no retries inside redis-py, since Client.call retries within it."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {
        "socket_timeout": _defaults.WAIT_SLICE + _defaults.READ_MARGIN,
        "socket_connect_timeout": _defaults.CONNECT_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
    }


def _connect(url: str, tls: Mapping[str, Any] | None = None) -> redis.Redis:
    """A redis-py client of url: a cluster client when the server runs in cluster mode. tls are
    redis-py's ssl_* options (given ones only), for a rediss:// URL."""
    tls = dict(tls or {})
    if tls and not url.startswith("rediss://"):
        raise ConfigError(f"{', '.join(sorted(tls))} need a rediss:// URL, not {redact(url)}")
    if tls.get("ssl_cert_reqs") == "none":
        tls.setdefault("ssl_check_hostname", False)
    try:
        r = redis.Redis.from_url(url, **_socket_options(), **tls)
    except ValueError as e:
        # Not "from e": a parser's message may quote the URL, and a traceback would show it.
        raise ConfigError(f"bad Redis URL {redact(url)}: {_scrub(str(e), url)}") from None
    with redis_errors(url):
        info = r.info("server")
        version = tuple(int(p) for p in str(info.get("redis_version", "99")).split(".")[:2])
        if version < MIN_REDIS:
            raise ConfigError(f"Redis {info['redis_version']} at {redact(url)} is too old: gomap needs 6.2 or newer")
        if r.info("cluster").get("cluster_enabled"):
            r.close()
            from redis.cluster import RedisCluster

            return RedisCluster.from_url(url, **_socket_options(), **tls)  # type: ignore[return-value]
    return r


class _Line:
    """A connection of the client's own for the round trips of a batch, one at a time.

    Its round trips skip redis-py's pipeline machinery, most of a small call's time on the client.
    A thread that finds the line busy (another batch blocked on it) uses the connection pool.
    """

    def __init__(self, r: redis.Redis) -> None:
        self._pool = r.connection_pool
        self._conn: Any = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Whether the line is free; if so it is this thread's until ``give``."""
        if self._pid != os.getpid():  # a forked child: leave the parent's socket alone
            self._pid, self._conn = os.getpid(), None
        return self._lock.acquire(blocking=False)

    def give(self) -> None:
        self._lock.release()

    def run(self, commands: list[tuple[Any, ...]], out: list[Any] | None = None) -> list[Any]:
        """Send ``commands`` in one round trip and return their replies, a refused command's as
        its ResponseError (the caller raises it). The replies are appended to ``out`` as they are
        read, so a caller whose round trip broke knows which commands ran."""
        conn = self._conn
        if conn is None:
            conn = self._conn = self._pool.connection_class(**self._pool.connection_kwargs)
        out = [] if out is None else out
        try:
            conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            for _ in commands:
                try:
                    out.append(conn.read_response())
                except redis.exceptions.ResponseError as e:
                    out.append(e)
            return out
        except BaseException:
            conn.disconnect()  # what it sent and read is unknown: the next round trip reconnects
            raise

    def close(self) -> None:
        if self._pid == os.getpid() and self._conn is not None and self._lock.acquire(timeout=1.0):
            try:
                self._conn.disconnect()
                self._conn = None
            finally:
                self._lock.release()


class Client:
    """A connection to the Redis that gomap's Go workers serve.

    ``url`` is ``redis://``, ``rediss://`` or ``unix://`` (a Redis Cluster is detected). Without a
    URL, the environment's ``GOMAP_REDIS_URL`` or ``REDIS_URL`` is used, and without those the
    embedded default: a private Redis and Go workers started on first use (LocalCluster).
    ``namespace`` defaults to ``$GOMAP_NAMESPACE``, else ``goworker:``.

    For ``rediss://``, ``ssl_ca_certs`` is a PEM file of CAs to trust, ``ssl_certfile`` and
    ``ssl_keyfile`` a client certificate and its key to present (for ``tls-auth-clients yes``),
    and ``ssl_cert_reqs="none"`` skips verifying the server. redis-py also reads these from the
    URL's query (``rediss://host:6379/0?ssl_certfile=…``). See docs/security.md.

    Every round trip is retried while Redis cannot be reached (a restart, a stall, a failover):
    until the call's ``timeout=``, or for ``stall_tolerance`` seconds (default 60) in a row when
    the call has none. See docs/reliability.md.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str | None = None,
        environ: Mapping[str, str] | None = None,
        stall_tolerance: float | None = None,
        ssl_ca_certs: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        ssl_cert_reqs: str | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.namespace = normalize_namespace(namespace or env.get(_defaults.NAMESPACE_ENV) or _defaults.NAMESPACE)
        self.keys = Keys(self.namespace)
        self.local: LocalCluster | None = None
        url = url or resolve_url(env)
        if url is None:
            from ._local import LocalCluster

            self.local = LocalCluster._embedded_default(self.namespace)
            url = self.local.url
        self.url = url
        self.stall_tolerance = _defaults.STALL_TOLERANCE if stall_tolerance is None else float(stall_tolerance)
        tls = {
            "ssl_ca_certs": ssl_ca_certs,
            "ssl_certfile": ssl_certfile,
            "ssl_keyfile": ssl_keyfile,
            "ssl_cert_reqs": ssl_cert_reqs,
        }
        self.redis = _connect(url, {k: v for k, v in tls.items() if v is not None})
        self.cluster = type(self.redis).__name__ == "RedisCluster"
        self._line = None if self.cluster else _Line(self.redis)  # batches' round trips (_Line)
        self._workers_cache: tuple[float, list[tuple[WorkerInfo, dict[str, Any]]]] | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._background: list[threading.Thread] = []  # clean-ups retried while Redis is unreachable

    def overview(self, timeout: float = 2.0) -> Overview:
        """What this client talks to, read from Redis within ``timeout`` seconds: the URL (masked),
        the namespace, the local cluster when it is the embedded default, the live worker
        processes with their slots and cores, the functions they offer, the jobs waiting on each
        queue and the batches in Redis. A Redis that cannot be read is said in it, not raised."""
        from ._overview import LocalInfo, Overview, read

        local = LocalInfo.of(self.local) if self.local is not None else None
        if self._closed.is_set():
            return Overview(self.url, self.namespace, self.local is not None, local, error="the client is closed")
        return read(self, timeout, embedded=self.local is not None, local=local)

    def __repr__(self) -> str:
        # Cheap, and never waits on Redis: a repr shows up in tracebacks, logs and debuggers.
        from ._overview import LocalInfo, Overview

        local = LocalInfo.of(self.local) if self.local is not None else None
        return Overview(self.url, self.namespace, self.local is not None, local).text("gomap.Client", pool=False)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.overview(timeout=1.0).text("gomap.Client"))  # IPython's display: the pool too

    def _repr_html_(self) -> str:
        return self.overview(timeout=1.0).html("gomap.Client")

    def close(self) -> None:
        """Close the connection (and stop the embedded cluster this client started). Clean-ups
        still retried in the background (a cancel while Redis was unreachable) get one more
        second, then stop."""
        self._closed.set()
        with self._lock:
            background, self._background = self._background, []
        end = time.monotonic() + _defaults.WAIT_SLICE + _defaults.READ_MARGIN
        for t in background:
            t.join(max(0.0, end - time.monotonic()))
        if self._line is not None:
            self._line.close()
        self.redis.close()
        if self.local is not None:
            self.local.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def in_background(self, op: Callable[[], Any], name: str, failed: Callable[[GomapError], None]) -> None:
        """Run ``op`` in a daemon thread, retried for CANCEL_RETRY seconds while Redis cannot be
        reached (or until the client is closed); ``failed`` hears if it never succeeds."""

        def run() -> None:
            try:
                self.call(op, tolerance=_defaults.CANCEL_RETRY)
            except GomapError as e:
                failed(e)
            except Exception as e:  # the connection closed under it: the client is being closed
                failed(ConnectError(f"gave up: {e}"))

        t = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._background = [b for b in self._background if b.is_alive()] + [t]
        t.start()

    def call(self, op: Callable[[], T], *, deadline: float | None = None, tolerance: float | None = None) -> T:
        """Run ``op`` (one round trip to Redis), retrying failures a retry can cure.

        Retries back off from RETRY_FIRST to RETRY_MAX, with jitter. They go on until ``deadline``
        (a ``time.monotonic()`` value; past it OutOfTime is raised), or, without one, until Redis
        has failed for ``tolerance`` seconds in a row (default: the client's ``stall_tolerance``);
        then ConnectError. ``op`` must be safe to run twice: a failure may come after Redis ran it.
        """
        tolerance = self.stall_tolerance if tolerance is None else tolerance
        first_failure: float | None = None
        pause = _defaults.RETRY_FIRST
        while True:
            try:
                return op()
            except redis.exceptions.RedisError as e:
                if isinstance(e, PERMANENT) or not isinstance(e, TRANSIENT):
                    raise gomap_error(e, self.url) from e
                now = time.monotonic()
                if first_failure is None:
                    first_failure = now
                if self._closed.is_set():
                    raise ConnectError(f"the client was closed while {gomap_error(e, self.url)}") from e
                end = deadline if deadline is not None else first_failure + tolerance
                if now < end:
                    time.sleep(min(pause * random.uniform(0.5, 1.0), end - now))
                    pause = min(pause * 2, _defaults.RETRY_MAX)
                if time.monotonic() < end:
                    continue
                if deadline is not None:
                    raise OutOfTime(e) from e
                waited = f"failing for {time.monotonic() - first_failure:.1f}s, retried with backoff"
                raise ConnectError(f"{gomap_error(e, self.url)} ({waited})") from e

    def enqueue(self, class_: str, *args: Any, queue: str | None = None, spread: bool = False) -> None:
        """Push a plain Resque job, byte for byte what Ruby's ``Resque.enqueue`` pushes.

        It runs ``class_`` with ``args`` on a worker; nothing comes back (use ``map`` for results).
        The queue defaults to the class name. With ``spread=True``, on a Redis Cluster the job goes
        to a random shard of the queue among those every live gomap worker serves, so that a busy
        plain queue uses every master (docs/protocol.md, "Sharded queues"); only gomap workers
        serve the other shards.
        """
        if not class_ or not isinstance(class_, str):
            raise ConfigError("enqueue needs the class (function) name as a string")
        q = check_queue(queue or class_)
        if spread and self.cluster:
            n = min((w.shards for w in self.workers(q, max_age=_defaults.WORKERS_CACHE)), default=1)
            q = random.choice(shard_names(self.keys, q, n))
        # The standard library's encoder writes floats as Ruby does (2.5e-05, where orjson writes
        # 0.000025); plain jobs are not the hot path.
        payload = _codec.dumps_resque(class_, list(args))

        def push() -> None:
            pipe = self.redis.pipeline(transaction=False)
            pipe.sadd(self.keys.queues(), q)
            pipe.rpush(self.keys.queue(q), payload)
            pipe.execute()

        # At least once: if Redis ran the push but its reply was lost, the retry pushes it again.
        self.call(push)

    def queue_length(self, queue: str) -> int:
        """How many jobs wait on ``queue``."""
        key = self.keys.queue(check_queue(queue))
        return int(self.call(lambda: self.redis.llen(key)))

    def workers(
        self, queue: str | None = None, *, max_age: float = 0.0, deadline: float | None = None
    ) -> list[WorkerInfo]:
        """The live gomap worker processes (those that take ``queue``, if given).

        With ``max_age``, an answer at most that many seconds old may be reused. ``deadline`` (a
        ``time.monotonic()`` value) bounds the retries while Redis cannot be reached.
        """
        return [info for info, _ in self._live(max_age, deadline) if queue is None or queue in info.queues]

    def functions(self) -> FunctionList:
        """The functions the live workers offer, with their Go signatures and how many workers
        offer each (``gomap.functions()``)."""
        return from_records(record for _, record in self._live(0.0))

    def forget_workers(self) -> None:
        """Drop the cached list of live workers: the next batch reads it afresh (after a pause)."""
        with self._lock:
            self._workers_cache = None

    def _live(self, max_age: float, deadline: float | None = None) -> list[tuple[WorkerInfo, dict[str, Any]]]:
        """The records of the live worker processes, as they registered themselves."""
        with self._lock:
            cached = self._workers_cache
        if cached and time.monotonic() - cached[0] <= max_age:
            return cached[1]
        found = self.call(lambda: _read_live_records(self.redis, self.keys), deadline=deadline)
        with self._lock:
            self._workers_cache = (time.monotonic(), found)
        return found


def _read_live_records(r: Any, keys: Keys) -> list[tuple[WorkerInfo, dict[str, Any]]]:
    found = []
    for raw in r.hgetall(keys.processes()).values():
        try:
            rec = _codec.loads(raw)
            found.append((_worker_info(rec), rec))
        except (ValueError, KeyError, TypeError):
            continue
    if found:
        pipe = r.pipeline(transaction=False)
        for info, _ in found:
            pipe.exists(keys.alive(info.id))
        found = [rec for rec, alive in zip(found, pipe.execute(), strict=True) if alive]
    return found


def _worker_info(r: dict[str, Any]) -> WorkerInfo:
    return WorkerInfo(
        id=r["id"],
        host=r.get("host", ""),
        pid=int(r.get("pid", 0)),
        queues=tuple(r.get("queues") or ()),
        functions=tuple(r.get("functions") or ()),
        concurrency=int(r.get("concurrency", 0)),
        cores=int(r.get("cores", 0) or 0),
        max_payload=int(r.get("max_payload", 0) or 0),
        max_chunk_items=int(r.get("max_chunk_items", 0) or 0),
        paused=tuple(r.get("paused") or ()),
        shards=int(r.get("shards", 1) or 1),
    )
