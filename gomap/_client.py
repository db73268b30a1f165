"""Client: one Redis deployment that gomap's Go workers serve, and what can be done with it."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from . import _codec, _defaults
from ._exceptions import ConfigError, ConnectError
from ._functions import FunctionList, from_records
from ._protocol import Keys, check_queue, normalize_namespace

if TYPE_CHECKING:
    from ._local import LocalCluster

MIN_REDIS = (6, 2)


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        u = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if u.password is None:
        return url
    netloc = u.netloc.replace(":" + u.password + "@", ":xxxxx@", 1)
    return urllib.parse.urlunsplit(u._replace(netloc=netloc))


@contextlib.contextmanager
def redis_errors(url: str) -> Iterator[None]:
    """Turn redis-py's connection failures into ConnectError naming the (redacted) URL."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
        raise ConnectError(f"cannot reach Redis at {redact(url)}: {e}") from e
    except redis.exceptions.ResponseError as e:
        raise ConnectError(f"Redis at {redact(url)} failed a command: {e}") from e


@dataclass(frozen=True)
class WorkerInfo:
    """A live gomap worker process, as it registers itself."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    functions: tuple[str, ...]
    concurrency: int


def resolve_url(environ: Mapping[str, str]) -> str | None:
    """The Redis URL the environment names (GOMAP_REDIS_URL, then REDIS_URL), if any."""
    for name in _defaults.URL_ENV:
        if environ.get(name):
            return environ[name]
    return None


def _connect(url: str) -> redis.Redis:
    """A redis-py client of url: a cluster client when the server runs in cluster mode."""
    try:
        r = redis.Redis.from_url(url, socket_connect_timeout=10)
    except ValueError as e:
        raise ConfigError(f"bad Redis URL {redact(url)}: {e}") from e
    with redis_errors(url):
        info = r.info("server")
        version = tuple(int(p) for p in str(info.get("redis_version", "99")).split(".")[:2])
        if version < MIN_REDIS:
            raise ConfigError(f"Redis {info['redis_version']} at {redact(url)} is too old: gomap needs 6.2 or newer")
        if r.info("cluster").get("cluster_enabled"):
            r.close()
            from redis.cluster import RedisCluster

            return RedisCluster.from_url(url, socket_connect_timeout=10)  # type: ignore[return-value]
    return r


class Client:
    """A connection to the Redis that gomap's Go workers serve.

    ``url`` is ``redis://``, ``rediss://`` or ``unix://`` (a Redis Cluster is detected). Without a
    URL, the environment's ``GOMAP_REDIS_URL`` or ``REDIS_URL`` is used, and without those the
    embedded default: a private Redis and Go workers started on first use (LocalCluster).
    ``namespace`` defaults to ``$GOMAP_NAMESPACE``, else ``goworker:``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.namespace = normalize_namespace(namespace or env.get(_defaults.NAMESPACE_ENV) or _defaults.NAMESPACE)
        self.keys = Keys(self.namespace)
        self.local: LocalCluster | None = None
        url = url or resolve_url(env)
        if url is None:
            from ._local import LocalCluster

            self.local = LocalCluster(namespace=self.namespace).start()
            url = self.local.url
        self.url = url
        self.redis = _connect(url)
        self.cluster = type(self.redis).__name__ == "RedisCluster"
        self._workers_cache: tuple[float, list[tuple[WorkerInfo, dict[str, Any]]]] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<gomap.Client {redact(self.url)} namespace={self.namespace!r}>"

    def close(self) -> None:
        """Close the connection (and stop the embedded cluster this client started)."""
        self.redis.close()
        if self.local is not None:
            self.local.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def enqueue(self, class_: str, *args: Any, queue: str | None = None) -> None:
        """Push a plain Resque job, byte for byte what Ruby's ``Resque.enqueue`` pushes.

        It runs ``class_`` with ``args`` on a worker; nothing comes back (use ``map`` for results).
        The queue defaults to the class name.
        """
        if not class_ or not isinstance(class_, str):
            raise ConfigError("enqueue needs the class (function) name as a string")
        q = check_queue(queue or class_)
        # The standard library's encoder writes floats as Ruby does (2.5e-05, where orjson writes
        # 0.000025); plain jobs are not the hot path.
        payload = _codec.dumps_resque(class_, list(args))
        with redis_errors(self.url):
            pipe = self.redis.pipeline(transaction=False)
            pipe.sadd(self.keys.queues(), q)
            pipe.rpush(self.keys.queue(q), payload)
            pipe.execute()

    def queue_length(self, queue: str) -> int:
        """How many jobs wait on ``queue``."""
        with redis_errors(self.url):
            return int(self.redis.llen(self.keys.queue(check_queue(queue))))

    def workers(self, queue: str | None = None, *, max_age: float = 0.0) -> list[WorkerInfo]:
        """The live gomap worker processes (those that take ``queue``, if given).

        With ``max_age``, an answer at most that many seconds old may be reused.
        """
        return [info for info, _ in self._live(max_age) if queue is None or queue in info.queues]

    def functions(self) -> FunctionList:
        """The functions the live workers offer, with their Go signatures and how many workers
        offer each (``gomap.functions()``)."""
        return from_records(record for _, record in self._live(0.0))

    def _live(self, max_age: float) -> list[tuple[WorkerInfo, dict[str, Any]]]:
        """The records of the live worker processes, as they registered themselves."""
        with self._lock:
            cached = self._workers_cache
        if cached and time.monotonic() - cached[0] <= max_age:
            return cached[1]
        with redis_errors(self.url):
            found = []
            for raw in self.redis.hgetall(self.keys.processes()).values():
                try:
                    r = _codec.loads(raw)
                    found.append((_worker_info(r), r))
                except (ValueError, KeyError, TypeError):
                    continue
            if found:
                pipe = self.redis.pipeline(transaction=False)
                for info, _ in found:
                    pipe.exists(self.keys.alive(info.id))
                found = [rec for rec, alive in zip(found, pipe.execute(), strict=True) if alive]
        with self._lock:
            self._workers_cache = (time.monotonic(), found)
        return found


def _worker_info(r: dict[str, Any]) -> WorkerInfo:
    return WorkerInfo(
        id=r["id"],
        host=r.get("host", ""),
        pid=int(r.get("pid", 0)),
        queues=tuple(r.get("queues") or ()),
        functions=tuple(r.get("functions") or ()),
        concurrency=int(r.get("concurrency", 0)),
    )
