"""map, imap and submit: the parallel map over Go workers."""

from __future__ import annotations

import contextlib
import inspect
import operator
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from typing import Any

from . import _defaults
from ._batch import Batch, Completed
from ._client import Client
from ._exceptions import ConfigError, GomapError
from ._functions import FunctionInfo, FunctionList
from ._progress import make_progress


class Function:
    """A handle on a registered Go function: ``sampleadd = gomap.function("sampleadd")``.

    Pass it wherever a function name goes (``gomap(sampleadd, pairs)``), or call it once:
    ``sampleadd(1, 2)`` runs on a worker and returns 3. A handle from ``gomap.compile``,
    ``gomap.fn`` or ``gomap.functions()`` knows its Go signature: ``repr`` and ``help`` show it.
    """

    def __init__(
        self, name: str, *, queue: str | None = None, client: Client | None = None, info: FunctionInfo | None = None
    ) -> None:
        if not name or not isinstance(name, str):
            raise ConfigError(f"a function is named by a non-empty string, not {name!r}")
        self.name = name
        self.queue = queue
        self.client = client
        self.info = info
        if info is not None and info.known:
            self.__doc__ = info.signature + ("\n\n" + info.doc if info.doc else "")
            self.__signature__ = _python_signature(info)

    def __repr__(self) -> str:
        if self.info is not None and self.info.known:
            return f"<gomap.Function {self.info.signature[len('func ') :]}>"
        return f"gomap.function({self.name!r})"

    def __call__(self, *args: Any, timeout: float | None = None) -> Any:
        """Run the function once on ``args`` and return its result."""
        return map(self, [args], chunksize=1, progress=False, timeout=timeout)[0]

    def map(self, iterable: Iterable[Any], **options: Any) -> list[Any]:
        """``gomap.map(self, iterable, **options)``."""
        return map(self, iterable, **options)

    def imap(self, iterable: Iterable[Any], **options: Any) -> Iterator[Any]:
        """``gomap.imap(self, iterable, **options)``."""
        return imap(self, iterable, **options)

    def submit(self, iterable: Iterable[Any], **options: Any) -> Batch:
        """``gomap.submit(self, iterable, **options)``."""
        return submit(self, iterable, **options)


def _python_signature(info: FunctionInfo) -> inspect.Signature:
    """The call's Python signature: the Go parameters, positional, then ``timeout``."""
    params = []
    for i, p in enumerate(info.params):
        name = p.name if p.name.isidentifier() and p.name != "timeout" else f"arg{i}"
        kind = inspect.Parameter.VAR_POSITIONAL if info.variadic and i == len(info.params) - 1 else _POSITIONAL
        params.append(inspect.Parameter(name, kind, annotation=p.type))
    params.append(inspect.Parameter("timeout", inspect.Parameter.KEYWORD_ONLY, default=None))
    return inspect.Signature(params, return_annotation=info.result or None)


_POSITIONAL = inspect.Parameter.POSITIONAL_ONLY


def function(name: str, *, queue: str | None = None, client: Client | None = None) -> Function:
    """A handle on the Go function registered as ``name`` (its queue defaults to its name)."""
    return Function(name, queue=queue, client=client)


def functions(*, client: Client | None = None) -> FunctionList:
    """The functions the live pool can run: name, Go signature, how many worker processes offer
    each. In Jupyter it shows as a table."""
    return (client or default_client()).functions()


class FunctionNamespace:
    """``gomap.fn``: the live pool's functions as attributes, so ``gomap.fn.<TAB>`` completes them
    and ``gomap.fn.sampleadd(1, 2)`` calls one. ``gomap.fn["name"]`` works for any name."""

    def __getattr__(self, name: str) -> Function:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> Function:
        for info in functions():
            if info.name == name:
                return Function(name, info=info)
        return Function(name)

    def __dir__(self) -> list[str]:
        return [n for n in functions().names() if n.isidentifier()]

    def __repr__(self) -> str:
        return "gomap.fn: the live pool's functions as attributes (gomap.functions() lists them)"


_default: dict[str, Client] = {}
_default_lock = threading.Lock()


def configure(
    url: str | None = None,
    *,
    namespace: str | None = None,
    ssl_ca_certs: str | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    ssl_cert_reqs: str | None = None,
) -> Client:
    """Set the client that calls without ``client=`` use, and return it.

    ``configure()`` with no URL resolves as the first call does: ``$GOMAP_REDIS_URL``, else
    ``$REDIS_URL``, else the embedded default (a private Redis and Go workers). The ``ssl_*``
    options are Client's, for ``rediss://`` (a CA file, a client certificate and its key).
    """
    client = Client(
        url,
        namespace=namespace,
        ssl_ca_certs=ssl_ca_certs,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        ssl_cert_reqs=ssl_cert_reqs,
    )
    with _default_lock:
        old = _default.pop("client", None)
        _default["client"] = client
    if old is not None:
        old.close()
    return client


def default_client() -> Client:
    """The client that calls without ``client=`` use, created on first use."""
    with _default_lock:
        client = _default.get("client")
        if client is None:
            client = _default["client"] = Client()
        return client


def _resolve(fn: str | Function, client: Client | None, queue: str | None) -> tuple[Client, str, str | None]:
    if isinstance(fn, Function):
        if client is not None and fn.client is not None and client is not fn.client:
            raise ConfigError(f"{fn!r} has its own client; do not pass another")
        return client or fn.client or default_client(), fn.name, queue or fn.queue
    if isinstance(fn, str) and fn:
        return client or default_client(), fn, queue
    raise ConfigError(
        f"fn must name a Go function registered on the workers (a string or gomap.function(...)), not {fn!r}"
    )


def _length(iterable: Iterable[Any]) -> int | None:
    if isinstance(iterable, Sized):
        return len(iterable)
    hint = operator.length_hint(iterable, -1)
    return hint if hint >= 0 else None


def _start(
    fn: str | Function,
    iterable: Iterable[Any],
    client: Client | None,
    queue: str | None,
    chunksize: int | None,
    errors: str,
    item_timeout: float | None,
    wait_for_workers: float | None,
    window: int | None = None,
) -> Batch:
    """The Batch of a map, imap or submit call, from the options they share (in their order)."""
    client, name, queue = _resolve(fn, client, queue)
    return Batch(
        client,
        name,
        iterable,
        queue=queue,
        chunksize=chunksize,
        errors=errors,
        total=_length(iterable),
        window=window,
        item_timeout=item_timeout,
        wait_for_workers=_defaults.WAIT_FOR_WORKERS if wait_for_workers is None else wait_for_workers,
    )


def map(
    fn: str | Function,
    iterable: Iterable[Any],
    *,
    chunksize: int | None = None,
    errors: str = "raise",
    timeout: float | None = None,
    progress: bool | str | None = None,
    tqdm_class: Any = None,
    tqdm_kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    client: Client | None = None,
    as_frame: bool = False,
    item_timeout: float | None = None,
    wait_for_workers: float | None = None,
) -> Any:
    """Run the Go function ``fn`` on every item of ``iterable`` and return the results in order.

    Each item is one call's arguments: a tuple or list is the positional arguments, anything else
    the one argument (wrap a list meant as one argument: ``([1, 2],)``).

    Args:
        fn: the function's registered name, or ``gomap.function(name)``.
        iterable: the items; consumed lazily, a window of chunks at a time.
        chunksize: items per chunk (one Resque job); by default about four chunks per slot of the
            live pool, at most 10,000 (1,000 when the input's length is unknown).
        errors: ``"raise"`` (default) raises the first failed item's TaskError after cancelling
            the rest; ``"return"`` puts the TaskError in the result list instead.
        timeout: seconds for the whole call; past it the batch is cancelled and Timeout raised.
            It holds whatever Redis does: a call returns within about half a second of it even
            while Redis stalls. Without it, Redis may be unreachable for 60 s in a row (a
            restart, a failover) before ConnectError.
        item_timeout: seconds one item may run on a worker; past it the item fails with a
            TaskError of kind ``timeout`` (the workers' own limits still apply).
        wait_for_workers: seconds the batch waits while no live worker takes its queue after one
            did (a rolling restart), before NoWorkersError; default 60.
        progress: ``None`` shows a bar in a notebook (a widget) and on a terminal (text), not when
            output goes to a file or a pipe; ``True`` always, ``False`` never; ``"text"`` or
            ``"widget"`` choose the kind. ``$GOMAP_PROGRESS`` (auto, on, off, text, widget) sets
            what ``None`` means. ``tqdm_class``/``tqdm_kwargs`` pass through to tqdm.
        queue: the queue to use (default: the function's name).
        client: the Client to use (default: ``gomap.configure``'s, else the environment's, else
            the embedded default).
        as_frame: return a pandas DataFrame (``gomap.to_frame``): a column per field of record
            results, else one column named after the function.
    """
    batch: Batch | None = None
    try:
        batch = _start(fn, iterable, client, queue, chunksize, errors, item_timeout, wait_for_workers)
        total = batch.total
        results: list[Any] = [None] * total if total is not None else []
        parts: dict[int, list[Any]] = {}
        with _collecting(batch, timeout, progress, tqdm_class, tqdm_kwargs) as chunks:
            for start, values, errs in chunks:
                batch.apply_errors(start, values, errs)
                if total is not None:
                    results[start : start + len(values)] = values
                else:
                    parts[start] = values
    except KeyboardInterrupt:
        raise _interrupted(batch) from None
    except GomapError as e:
        raise e.with_traceback(None) from None  # the message says it all: no internal frames or chains
    if total is None:
        results = [v for start in sorted(parts) for v in parts[start]]
    elif len(results) != total:  # the iterable's length changed while it was consumed
        del results[batch.completed :]
    return to_frame(results, name=batch.function) if as_frame else results


@contextlib.contextmanager
def _collecting(
    batch: Batch, timeout: float | None, progress: bool | str | None, tqdm_class: Any, tqdm_kwargs: Any
) -> Iterator[Iterator[Completed]]:
    """The batch's completed chunks (Batch.chunks), with its bar: told the counts at every wake-up
    of the collect loop, closed with the final counts however the collecting ends."""
    total, desc = batch.total, batch.function
    bar = make_progress(progress, total=total, desc=desc, tqdm_class=tqdm_class, tqdm_kwargs=tqdm_kwargs)
    batch.on_wake = lambda: bar.advance(batch.completed + batch.running, len(batch.failed))
    try:
        with contextlib.closing(batch.chunks(timeout)) as chunks:
            yield chunks
    finally:
        bar.close(batch.completed, len(batch.failed))


def _interrupted(batch: Batch | None) -> BaseException:
    """Ctrl-C (or a notebook's interrupt) during a call: one line saying what became of the batch.
    The batch was cancelled on the way out of its collect loop; one that never started is
    cancelled here, which sends nothing."""
    if batch is None:
        return KeyboardInterrupt("gomap: interrupted before anything was submitted")
    with contextlib.suppress(GomapError):
        batch.cancel()
    return KeyboardInterrupt(f"gomap: interrupted; {batch.cancel_report()}")


def to_frame(results: Sequence[Any], *, index: Any = None, name: str = "result") -> Any:
    """A pandas DataFrame from ``map`` results: a column per field of record (dict) results, else
    one column called ``name``. (``map`` itself returns lists; this needs pandas.)"""
    from ._pandas import to_frame as frame

    return frame(results, index=index, name=name)


def imap(
    fn: str | Function,
    iterable: Iterable[Any],
    *,
    ordered: bool = True,
    chunksize: int | None = None,
    errors: str = "raise",
    timeout: float | None = None,
    progress: bool | str | None = None,
    tqdm_class: Any = None,
    tqdm_kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    client: Client | None = None,
    window: int | None = None,
    item_timeout: float | None = None,
    wait_for_workers: float | None = None,
) -> Iterator[Any]:
    """Like ``map``, but yield results as chunks complete, with bounded memory.

    The input is consumed lazily and at most ``window`` chunks (default 16) are submitted and not
    yet yielded, so a generator of any length streams through in constant memory, in Python and in
    Redis. ``ordered=False`` yields each chunk's results as soon as it completes. Stopping the
    iteration early (``break``, an exception) cancels the rest of the batch. The other options are
    ``map``'s.
    """
    batch: Batch | None = None
    try:
        batch = _start(fn, iterable, client, queue, chunksize, errors, item_timeout, wait_for_workers, window)
        with _collecting(batch, timeout, progress, tqdm_class, tqdm_kwargs) as chunks:
            if not ordered:
                for start, values, errs in chunks:
                    batch.apply_errors(start, values, errs)
                    yield from values
                return
            waiting: dict[int, list[Any]] = {}
            nxt = 0
            for start, values, errs in chunks:
                batch.apply_errors(start, values, errs)
                waiting[start] = values
                while nxt in waiting:
                    vals = waiting.pop(nxt)
                    batch.held = len(waiting)
                    nxt += len(vals)
                    yield from vals
                batch.held = len(waiting)
    except KeyboardInterrupt:
        raise _interrupted(batch) from None
    except GomapError as e:
        raise e.with_traceback(None) from None


def submit(
    fn: str | Function,
    iterable: Iterable[Any],
    *,
    chunksize: int | None = None,
    errors: str = "raise",
    queue: str | None = None,
    client: Client | None = None,
    item_timeout: float | None = None,
    wait_for_workers: float | None = None,
) -> Batch:
    """Submit every item now and return the Batch at once.

    The workers start on it while you do other things; ``batch.wait()``, ``batch.result()``,
    ``batch.completed``, ``batch.cancel()`` follow it up. Results wait in Redis until collected
    (for an input too large for that, use ``imap``). The options are ``map``'s.
    """
    try:
        batch = _start(fn, iterable, client, queue, chunksize, errors, item_timeout, wait_for_workers)
        batch.submit_all()
    except GomapError as e:
        raise e.with_traceback(None) from None
    return batch


def enqueue(
    class_: str, *args: Any, queue: str | None = None, spread: bool = False, client: Client | None = None
) -> None:
    """Push a plain Resque job (fire and forget), byte for byte as Ruby's ``Resque.enqueue`` does;
    ``spread=True`` spreads a busy queue over a Redis Cluster's masters (``Client.enqueue``)."""
    (client or default_client()).enqueue(class_, *args, queue=queue, spread=spread)
