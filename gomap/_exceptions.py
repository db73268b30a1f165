"""gomap's exceptions: one tree, rooted at GomapError.

GomapError
├── ConfigError             bad or conflicting configuration
├── ConnectError            Redis cannot be reached (the URL, without its password, is in the message)
├── RedisCommandError       Redis refused a command (out of memory, no permission, …), not a connection fault
├── NoWorkersError          no live worker takes the batch's queue
│   └── UnknownFunctionError    live workers run, but none offers the function
├── TaskError               an item failed in its Go function (index, function, kind, error, stack)
├── Timeout                 the call ran past its timeout= (also a builtin TimeoutError)
├── BatchCancelled          the batch was cancelled before it finished
├── BatchLost               Redis lost the batch's keys (a restart without persistence, a flush, …)
├── EncodeError             an item cannot be sent as JSON (also a TypeError and a ValueError)
├── PayloadTooLarge         a chunk is bigger than the workers accept (also a ValueError)
├── WorkerBinaryError       the Go worker binary can be neither found nor built
│   └── CompileError            Go could not compile the user's source (messages mapped to its lines)
└── LocalClusterError       the embedded Redis and workers did not start
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BatchCancelled",
    "BatchLost",
    "CompileError",
    "CompileMessage",
    "ConfigError",
    "ConnectError",
    "EncodeError",
    "GomapError",
    "LocalClusterError",
    "NoWorkersError",
    "PayloadTooLarge",
    "RedisCommandError",
    "TaskError",
    "Timeout",
    "UnknownFunctionError",
    "WorkerBinaryError",
]


class GomapError(Exception):
    """Base class of every error gomap raises."""


class ConfigError(GomapError):
    """The configuration is invalid or contradicts itself."""


class ConnectError(GomapError):
    """Redis could not be reached or failed; the message names the URL without its password."""


class RedisCommandError(GomapError):
    """Redis answered a command with an error that is not about the connection: out of memory
    (``OOM``), no permission (``NOPERM``), a read-only replica, a script error. The message names
    the URL without its password and Redis' own words; retrying will not help until that changes."""


class NoWorkersError(GomapError):
    """No live worker takes the batch's queue. The message says how to start one."""

    def __init__(self, message: str, *, queue: str, namespace: str) -> None:
        super().__init__(message)
        self.queue = queue
        self.namespace = namespace


class UnknownFunctionError(NoWorkersError, LookupError):
    """Live workers serve this Redis, but none offers the function. The message lists the names
    they offer and the closest one ("did you mean …?"); ``offered`` holds them all."""

    def __init__(self, message: str, *, function: str, offered: Sequence[str], queue: str, namespace: str) -> None:
        super().__init__(message, queue=queue, namespace=namespace)
        self.function = function
        self.offered = tuple(offered)


class TaskError(GomapError):
    """One item of a batch failed in its Go function.

    Attributes:
        index: the item's position in the input.
        function: the registered function's name.
        kind: ``error`` (the function returned an error), ``panic`` (it panicked; ``stack``
            has the Go stack), ``arguments`` (the item does not fit the function),
            ``unknown_function`` (no worker knows the function), ``result`` (the result has
            no JSON form), ``timeout`` (the item ran past its time limit: ``item_timeout=``, the
            worker's ``-item-timeout`` or the function's own), ``requeue_limit`` (its chunk was
            put back on the queue too often, by workers that died or stopped while running it) or
            ``chunk_too_large`` (its chunk had more items than the worker's ``-max-chunk-items``).
        error: the Go error text.
        stack: the Go stack of a panic, else ``""``.
        batch: the batch id.
        argument: for kind ``arguments``, the position (from 0) of the argument that did not fit;
            ``None`` when the error is not about one argument (the argument count, another kind)
            or the worker is older than this field.

    ``message`` replaces the default text (the pandas accessor names the row's index label and
    column in it); the attributes stay as they are.
    """

    def __init__(
        self,
        *,
        index: int,
        function: str,
        kind: str,
        error: str,
        stack: str = "",
        batch: str = "",
        argument: int | None = None,
        message: str | None = None,
    ) -> None:
        if message is None:
            message = f"{function}: item {index} failed ({kind}): {error}"
            if kind == "arguments":
                message += " (see `gomap types`)"
        super().__init__(message)
        self.index = index
        self.function = function
        self.kind = kind
        self.error = error
        self.stack = stack
        self.batch = batch
        self.argument = argument
        self._message = message

    def _fields(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "function": self.function,
            "kind": self.kind,
            "error": self.error,
            "stack": self.stack,
            "batch": self.batch,
            "argument": self.argument,
            "message": self._message,
        }

    def _restated(self, message: str, index: int) -> TaskError:
        """The same failure told in other words, at ``index`` (the pandas accessor's row position)."""
        return TaskError(**{**self._fields(), "message": message, "index": index})

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_task_error, (self._fields(),))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskError):
            return NotImplemented
        return (self.index, self.function, self.kind, self.error) == (
            other.index,
            other.function,
            other.kind,
            other.error,
        )

    def __hash__(self) -> int:
        return hash((self.index, self.function, self.kind, self.error))


def _rebuild_task_error(fields: dict[str, Any]) -> TaskError:
    return TaskError(**fields)


class Timeout(GomapError, TimeoutError):
    """The call ran past its ``timeout=``; the batch was cancelled."""


class BatchCancelled(GomapError):
    """The batch was cancelled before it finished."""


class BatchLost(GomapError):
    """The batch's keys vanished from Redis while it ran: Redis restarted without persistence, was
    flushed, failed over to a replica that did not have them yet, or the batch's TTL passed while
    nobody waited on it. Results not yet collected are gone; run the batch again."""

    def __init__(self, message: str, *, batch: str) -> None:
        super().__init__(message)
        self.batch = batch


class PayloadTooLarge(GomapError, ValueError):
    """A chunk's payload is bigger than the workers accept (their ``max_payload``).

    Attributes: ``size`` and ``limit`` in bytes, ``start`` (the index of the chunk's first item).
    The fix is a smaller ``chunksize=`` (or smaller items).
    """

    def __init__(self, message: str, *, size: int, limit: int, start: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit
        self.start = start


class EncodeError(GomapError, TypeError, ValueError):
    """An item cannot be sent as JSON; the message names its index and type.

    It is a TypeError (a type JSON cannot carry) and a ValueError (a value it cannot carry, such
    as infinity or an int beyond 64 bits), so either ``except`` catches it.
    """

    def __init__(self, message: str, *, index: int | None) -> None:
        super().__init__(message)
        self.index = index  # the item's index in the input (None for a plain job's arguments)


class WorkerBinaryError(GomapError):
    """The Go worker binary can be neither found nor built."""


@dataclass(frozen=True)
class CompileMessage:
    """One message of the Go compiler, at a position in the user's source."""

    file: str  # the user's file, or the label of a snippet (a notebook cell is "cell")
    line: int
    column: int  # 0 when the compiler gave none
    message: str
    source_lines: Sequence[str] = ()

    def render(self) -> str:
        """The message, then the source line it points at and a caret under the column."""
        where = f"{self.file}, line {self.line}" + (f", column {self.column}" if self.column else "")
        out = [f"{where}: {self.message}"]
        if 0 < self.line <= len(self.source_lines):
            text = self.source_lines[self.line - 1].expandtabs(4)
            raw = self.source_lines[self.line - 1]
            out.append(f"  {self.line:4} | {text}")
            if self.column:
                caret = len(raw[: self.column - 1].expandtabs(4))
                out.append(f"  {'':4} | {' ' * caret}^")
        return "\n".join(out)


class CompileError(WorkerBinaryError):
    """Go could not compile the source given to ``gomap.compile`` (or ``%%gomap``).

    The message shows each compiler message at its line of the user's source (not of generated
    files); ``messages`` holds them as CompileMessage values.
    """

    def __init__(self, message: str, messages: Sequence[CompileMessage]) -> None:
        super().__init__(message)
        self.messages = tuple(messages)

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: the compiler's lines are what matter.
        return [f"CompileError: {self}"]


class LocalClusterError(GomapError):
    """The embedded Redis server and Go workers did not start."""
