"""``gomap dashboard``: one page that shows a pool and steers it, plus Prometheus ``/metrics``.

The web stack is Starlette (routing, requests, responses, TrustedHostMiddleware) served by
uvicorn: both small, maintained, typed, and already what most Python web tooling builds on; no
template engine and no front-end build, the page is one static file (``_dashboard.html``) whose
vanilla JS polls ``/api/status``. Everything it shows or does goes through the inspector
(gomap._inspect); nothing here touches Redis keys.

Security (docs: README "Operating the pool"): it binds 127.0.0.1 by default and, unless
``--no-token`` (refused off loopback), every route needs a token: the page via ``?token=``, the
API and ``/metrics`` via ``Authorization: Bearer``. Actions are POSTs with a JSON body, which a
page of another origin cannot send without a CORS preflight (no CORS headers are sent), and the
Host header must name this server (against DNS rebinding).

The extra ``gomap[dashboard]`` brings Starlette, uvicorn and prometheus-client; this module
imports them only when it serves, so that the CLI can say what to install.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import json
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ._exceptions import ConfigError, ConnectError, GomapError
from ._inspect import FAILED_PAGE, FailedFilter, Inspector, failed_to_json

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from ._client import Client

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8790
TOKEN_ENV = "GOMAP_DASHBOARD_TOKEN"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
PAGE = Path(__file__).with_name("_dashboard.html")
FAILED_LIMIT = 500
"""Most failed entries one /api/failed request returns."""

TOKEN_REQUIRED = "token required: open the URL gomap dashboard printed (it ends in ?token=…)"
INSTALL = 'the dashboard needs the "dashboard" extra: pip install "gomap[dashboard]"'

# The page's only script and style are inline, tagged with a nonce per response; it talks only to
# this server and cannot be framed.
CSP = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def missing_extra() -> str | None:
    """What to install for the dashboard, or None when Starlette, uvicorn and prometheus-client are there."""
    try:
        import prometheus_client  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return INSTALL
    return None


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, extra: Sequence[str] = ()) -> list[str]:
    """Host header values the server answers: the bind host, the loopback names and ``extra``."""
    hosts = [h.strip("[]").lower() for h in (host, *LOOPBACK_NAMES, *extra) if h]
    # An IPv6 literal comes in the Host header in brackets ("[::1]:8790").
    return list(dict.fromkeys(form for h in hosts for form in ((h, f"[{h}]") if ":" in h else (h,))))


def _error(status: int, message: str) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})


def _status_of(e: GomapError) -> int:
    if isinstance(e, ConnectError):
        return 503  # Redis cannot be reached: the page shows it in its banner and keeps polling
    if isinstance(e, ConfigError):
        return 404 if "no failed job at index" in str(e) or "no batch" in str(e) else 400
    return 409  # Redis refused (no permission, out of memory, …): retrying will not help until that changes


def _int(value: str | None, default: int, name: str) -> int:
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None


def _filter(data: Any) -> FailedFilter:
    if not isinstance(data, dict):
        raise ConfigError('a filter is a JSON object such as {"class": "samplediv", "queue": "samplediv"}')
    unknown = set(data) - {"class", "queue", "exception", "grep"}
    if unknown:
        raise ConfigError(f"unknown filter fields {sorted(unknown)}: use class, queue, exception, grep")

    def text(name: str) -> str | None:
        v = data.get(name)
        return None if v in (None, "") else str(v)

    return FailedFilter(class_=text("class"), queue=text("queue"), exception=text("exception"), grep=text("grep"))


class Dashboard:
    """The dashboard's routes over one Inspector; ``app()`` is the Starlette application."""

    def __init__(
        self,
        inspector: Inspector,
        *,
        token: str | None,
        host: str = DEFAULT_HOST,
        allow_hosts: Sequence[str] = (),
    ) -> None:
        self.inspector = inspector
        self.token = token
        self.host = host
        self.allow_hosts = allowed_hosts(host, allow_hosts)

    # --- auth --------------------------------------------------------------------------------

    def _authorized(self, request: Request, *, query: bool) -> bool:
        if self.token is None:
            return True
        given = ""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            given = value.strip()
        elif query:
            given = request.query_params.get("token", "")
        return hmac.compare_digest(given.encode(), self.token.encode())

    # --- routes ------------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        from starlette.responses import HTMLResponse

        # Without the token the page still loads (it holds no data): its script meets a 401 from
        # the API and says where the token is. The status says it too.
        status = 200 if self._authorized(request, query=True) else 401
        nonce = secrets.token_urlsafe(16)
        body = PAGE.read_text(encoding="utf-8").replace("{{nonce}}", nonce)
        headers = {
            "Content-Security-Policy": CSP.format(nonce=nonce),
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
        }
        return HTMLResponse(body, status_code=status, headers=headers)

    async def _api(self, request: Request, op: Callable[[Any], Any], *, action: bool = False) -> Response:
        """Check the token (and for an action, its JSON body), run ``op(body)`` in the threadpool
        (the inspector blocks on Redis), and answer JSON; typed errors become a 4xx/503 JSON."""
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        if not self._authorized(request, query=False):
            return _error(401, TOKEN_REQUIRED)
        body: Any = None
        if action:
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                return _error(415, "actions take a JSON body: send Content-Type: application/json")
            raw = await request.body()
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                return _error(400, "the body is not JSON")
        try:
            result = await run_in_threadpool(op, body)
        except GomapError as e:
            return _error(_status_of(e), str(e))
        except Exception as e:  # a bug or an unforeseen Redis reply: JSON, never a traceback page
            return _error(500, f"the dashboard failed: {type(e).__name__}: {e}")
        return JSONResponse(result, headers={"Cache-Control": "no-store"})

    def status_json(self) -> dict[str, Any]:
        ins = self.inspector
        st = ins.status(batches=True)
        out = json.loads(json.dumps(st.to_json(), default=str))
        for slot, rec in zip(st.slots, out["slots"], strict=True):
            rec["stale"] = slot.stale
        out["failed_jobs"] = failed_to_json(ins.failed(0, FAILED_PAGE))
        out["failed_count"] = ins.failed_count()
        out["failed_page"] = FAILED_PAGE
        return out

    async def api_status(self, request: Request) -> Response:
        return await self._api(request, lambda _: self.status_json())

    async def api_failed(self, request: Request) -> Response:
        q = request.query_params

        def op(_: Any) -> dict[str, Any]:
            offset = _int(q.get("offset"), 0, "offset")
            limit = min(_int(q.get("limit"), FAILED_PAGE, "limit"), FAILED_LIMIT)
            where = _filter({k: q[k] for k in ("class", "queue", "exception", "grep") if k in q})
            entries = self.inspector.failed(offset, limit, where)
            return {"failed_jobs": failed_to_json(entries), "failed_count": self.inspector.failed_count()}

        return await self._api(request, op)

    async def retry_one(self, request: Request) -> Response:
        return await self._on_failed(request, "retried", self.inspector.retry)

    async def remove_one(self, request: Request) -> Response:
        return await self._on_failed(request, "removed", self.inspector.remove)

    async def _on_failed(self, request: Request, did: str, act: Callable[[int], Any]) -> Response:
        """An action on the failed entry at the path's index; the reply names it."""
        index = request.path_params["index"]

        def op(_: Any) -> dict[str, Any]:
            e = act(index)
            return {did: 1, "index": e.index, "class": e.class_, "queue": e.queue}

        return await self._api(request, op, action=True)

    async def retry_many(self, request: Request) -> Response:
        return await self._api(
            request, lambda body: {"retried": self.inspector.retry_where(_filter(body))}, action=True
        )

    async def clear(self, request: Request) -> Response:
        return await self._api(request, lambda _: {"cleared": self.inspector.clear()}, action=True)

    async def cancel_batch(self, request: Request) -> Response:
        batch = request.path_params["batch"]

        def op(_: Any) -> dict[str, Any]:
            return {"cancelled": batch, "chunks_removed": self.inspector.cancel_batch(batch)}

        return await self._api(request, op, action=True)

    async def pause(self, request: Request) -> Response:
        name = request.path_params["queue"]
        return await self._api(request, lambda _: self._pause(name, True), action=True)

    async def resume(self, request: Request) -> Response:
        name = request.path_params["queue"]
        return await self._api(request, lambda _: self._pause(name, False), action=True)

    def _pause(self, queue: str, paused: bool) -> dict[str, Any]:
        did = (self.inspector.pause if paused else self.inspector.resume)(queue)
        done = {"paused" if paused else "resumed": queue, "text": did.text()}
        return done | {"heard": did.heard, "serving": did.serving}

    async def metrics(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import Response

        if not self._authorized(request, query=True):
            return _error(401, TOKEN_REQUIRED)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(PoolCollector(self.inspector))  # type: ignore[arg-type]
        text = await run_in_threadpool(generate_latest, registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

    def app(self) -> Starlette:
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.middleware.trustedhost import TrustedHostMiddleware
        from starlette.routing import Route

        post = ["POST"]
        routes = [
            Route("/", self.page),
            Route("/api/status", self.api_status),
            Route("/api/failed", self.api_failed),
            Route("/api/failed/retry", self.retry_many, methods=post),
            Route("/api/failed/clear", self.clear, methods=post),
            Route("/api/failed/{index:int}/retry", self.retry_one, methods=post),
            Route("/api/failed/{index:int}/remove", self.remove_one, methods=post),
            Route("/api/batches/{batch}/cancel", self.cancel_batch, methods=post),
            Route("/api/queues/{queue:path}/pause", self.pause, methods=post),
            Route("/api/queues/{queue:path}/resume", self.resume, methods=post),
            Route("/metrics", self.metrics),
        ]
        middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=self.allow_hosts, www_redirect=False)]
        return Starlette(routes=routes, middleware=middleware)


class PoolCollector:
    """A prometheus_client collector that reads the pool through the inspector at each scrape.

    A Redis that cannot be read gives ``gomap_scrape_error 1`` and no other series; batches that
    cannot be listed (SCAN refused) give ``gomap_batches_readable 0`` and no batch series."""

    def __init__(self, inspector: Inspector) -> None:
        self.inspector = inspector

    def describe(self) -> list[Metric]:
        return []  # nothing at registration: a scrape reads Redis, registering must not

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        try:
            st = self.inspector.status(batches=True)
            failed_jobs = self.inspector.failed_count()
        except GomapError:
            yield GaugeMetricFamily("gomap_scrape_error", "1 when the last scrape could not read Redis", value=1)
            return

        queue_jobs = GaugeMetricFamily("gomap_queue_jobs", "Jobs waiting on a queue", labels=["queue"])
        paused = GaugeMetricFamily("gomap_queue_paused", "1 when the queue is paused", labels=["queue"])
        for q in st.queues:
            queue_jobs.add_metric([q.name], q.length)
            paused.add_metric([q.name], 1 if q.paused else 0)
        yield queue_jobs
        yield paused

        procs = GaugeMetricFamily("gomap_worker_processes", "gomap worker processes", labels=["state"])
        procs.add_metric(["live"], sum(1 for p in st.processes if p.alive))
        procs.add_metric(["dead"], sum(1 for p in st.processes if not p.alive))
        yield procs

        resque = GaugeMetricFamily(
            "gomap_resque_workers", "Resque worker ids (gomap slots and other Resque workers)", labels=["kind", "state"]
        )
        for kind in ("gomap", "other"):
            for state in ("live", "stale"):
                n = sum(1 for s in st.slots if s.gomap == (kind == "gomap") and s.stale == (state == "stale"))
                resque.add_metric([kind, state], n)
        yield resque

        yield CounterMetricFamily("gomap_jobs_processed_total", "Resque's processed counter", value=st.processed)
        yield CounterMetricFamily("gomap_jobs_failed_total", "Resque's failed counter", value=st.failed)
        yield GaugeMetricFamily("gomap_failed_jobs", "Entries in Resque's failed list", value=failed_jobs)
        yield CounterMetricFamily("gomap_requeued_total", "Jobs the reaper put back on their queues", value=st.requeued)
        yield CounterMetricFamily("gomap_pruned_total", "Dead Resque worker ids pruned", value=st.pruned)

        readable = not st.batches_error
        yield GaugeMetricFamily(
            "gomap_batches_readable", "1 when the batches could be listed (they need SCAN)", value=1 if readable else 0
        )
        if readable:
            items = GaugeMetricFamily("gomap_batch_items", "Items of a running batch", labels=["batch", "function"])
            done = GaugeMetricFamily(
                "gomap_batch_items_done", "Items of a running batch with an outcome", labels=["batch", "function"]
            )
            failed = GaugeMetricFamily(
                "gomap_batch_items_failed", "Items of a running batch that failed", labels=["batch", "function"]
            )
            age = GaugeMetricFamily(
                "gomap_batch_age_seconds", "Seconds since a running batch was created", labels=["batch", "function"]
            )
            now = time.time()
            for b in st.batches:
                labels = [b.id, b.function]
                if b.items >= 0:
                    items.add_metric(labels, b.items)
                done.add_metric(labels, b.done)
                failed.add_metric(labels, b.failed)
                if b.created:
                    age.add_metric(labels, max(0.0, now - b.created))
            yield items
            yield done
            yield failed
            yield age
        yield GaugeMetricFamily("gomap_scrape_error", "1 when the last scrape could not read Redis", value=0)


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (0: any free port)."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"cannot resolve --host {host!r}: {e}") from None
    last: OSError | None = None
    for family, kind, proto, _, addr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(128)
        except OSError as e:
            sock.close()
            last = e
            continue
        return sock
    raise ConfigError(f"cannot listen on {host}:{port}: {last} (pick another --port, or --port 0 for any free one)")


def url_of(sock: socket.socket, host: str, token: str | None) -> str:
    bound = sock.getsockname()
    shown = host.strip("[]")
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{bound[1]}/" + (f"?token={token}" if token else "")


def resolve_token(token: str | None, no_token: bool, host: str, environ: dict[str, str]) -> str | None:
    """The token the server checks: ``token``, else $GOMAP_DASHBOARD_TOKEN, else a random one;
    None with ``no_token``, which only a loopback host may have."""
    if no_token:
        if token:
            raise ConfigError("--token and --no-token contradict each other: pass one")
        if not is_loopback(host):
            raise ConfigError(
                f"--no-token is refused on --host {host}: anyone who can reach that address could retry, remove "
                "and clear failed jobs and cancel batches. Keep the token (the default), or bind 127.0.0.1"
            )
        return None
    token = token or environ.get(TOKEN_ENV) or secrets.token_urlsafe(24)
    if len(token) < 16:
        raise ConfigError("the dashboard token is too short: use 16 characters or more (the default is random)")
    return token


def serve(
    inspector: Inspector,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None,
    allow_hosts: Sequence[str] = (),
    out: TextIO = sys.stdout,
) -> None:
    """Serve the dashboard until interrupted; prints its URL (with the token) as its first line."""
    missing = missing_extra()
    if missing:
        raise ConfigError(missing)
    import uvicorn

    app = Dashboard(inspector, token=token, host=host, allow_hosts=allow_hosts).app()
    sock = _bind(host, port)
    try:
        print(f"gomap dashboard: {url_of(sock, host, token)}", file=out, flush=True)
        config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


START_TIMEOUT = 10.0
"""Seconds a background dashboard may take to start answering."""


class Running:
    """A dashboard served from a background thread of this process (``gomap.dashboard()``).

    ``url`` carries the token; a notebook shows it as a link. ``stop()`` ends it (so does the
    end of the process). It serves the pool of the client it was given: the embedded default when
    no Redis URL is configured."""

    def __init__(self, server: Any, thread: threading.Thread, sock: socket.socket, url: str) -> None:
        self._server, self._thread, self._sock = server, thread, sock
        self.url = url

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving; returns once the server thread ended (or after ``timeout`` seconds)."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<gomap dashboard {self.url}{'' if self.running else ' (stopped)'}>"

    def _repr_html_(self) -> str:
        link = html.escape(self.url, quote=True)
        state = "" if self.running else " (stopped)"
        return f'<p>gomap dashboard: <a href="{link}" target="_blank" rel="noopener">{link}</a>{state}</p>'


def start(
    inspector: Inspector, *, host: str = DEFAULT_HOST, port: int = 0, token: str | None, allow_hosts: Sequence[str] = ()
) -> Running:
    """Serve the dashboard from a daemon thread; returns once it answers (within START_TIMEOUT)."""
    missing = missing_extra()
    if missing:
        raise ConfigError(missing)
    import uvicorn

    app = Dashboard(inspector, token=token, host=host, allow_hosts=allow_hosts).app()
    sock = _bind(host, port)
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="gomap-dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise ConfigError(f"the dashboard did not start within {START_TIMEOUT:.0f} s on {host}:{port}")
        time.sleep(0.01)  # the server thread sets started once it listens
    return Running(server, thread, sock, url_of(sock, host, token))


def dashboard(
    client: Client | None = None, *, host: str = DEFAULT_HOST, port: int = 0, token: str | None = None
) -> Running:
    """Serve the dashboard page of a pool from this process, in the background, and return it
    (a notebook shows its URL as a link; ``.stop()`` ends it). Without ``client``, the default
    client's pool: the embedded default when no Redis URL is configured. ``port=0`` picks a free
    port; the token is random unless given (see ``gomap dashboard`` for what it guards)."""
    import os

    if client is None:
        from ._map import default_client

        client = default_client()
    token = resolve_token(token, False, host, dict(os.environ))
    return start(Inspector(client), host=host, port=port, token=token)
