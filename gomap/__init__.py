"""gomap: Go background workers tasked from Python over the Resque protocol on Redis.

    from gomap import gomap
    gomap("sampleadd", [(1, 2), (3, 4)])          # -> [3, 7], in order, with a progress bar

``gomap(fn, items)`` is ``gomap.map``; ``gomap.imap`` streams, ``gomap.submit`` returns a Batch at
once, ``gomap.compile`` adds Go functions of your own. ``from gomap import gomap`` and ``import
gomap`` give the same object: the package, which is callable.
"""

import sys as _sys
import types as _types
from importlib import metadata as _metadata
from typing import Any as _Any

from ._batch import Batch
from ._client import Client, WorkerInfo
from ._compile import Compiled, compile
from ._dashboard import dashboard
from ._exceptions import (
    BatchCancelled,
    BatchLost,
    CompileError,
    CompileMessage,
    ConfigError,
    ConnectError,
    EncodeError,
    GomapError,
    LocalClusterError,
    NoWorkersError,
    PayloadTooLarge,
    RedisCommandError,
    TaskError,
    Timeout,
    UnknownFunctionError,
    WorkerBinaryError,
)
from ._functions import FunctionInfo, FunctionList, Param
from ._inspect import Failed, FailedFilter, Inspector, Paused, Status, status
from ._local import LocalCluster
from ._magic import load_ipython_extension
from ._map import (
    Function,
    FunctionNamespace,
    configure,
    default_client,
    enqueue,
    function,
    functions,
    imap,
    map,
    submit,
    to_frame,
)

try:
    __version__ = _metadata.version("gomap")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0+unknown"

fn = FunctionNamespace()
"""The live pool's functions as attributes: ``gomap.fn.sampleadd(1, 2)``; ``gomap.fn.<TAB>`` completes."""

__all__ = [
    "Batch",
    "BatchCancelled",
    "BatchLost",
    "Client",
    "CompileError",
    "CompileMessage",
    "Compiled",
    "ConfigError",
    "ConnectError",
    "EncodeError",
    "Failed",
    "FailedFilter",
    "Function",
    "FunctionInfo",
    "FunctionList",
    "FunctionNamespace",
    "GomapError",
    "Inspector",
    "LocalCluster",
    "LocalClusterError",
    "NoWorkersError",
    "Param",
    "Paused",
    "PayloadTooLarge",
    "RedisCommandError",
    "Status",
    "TaskError",
    "Timeout",
    "UnknownFunctionError",
    "WorkerBinaryError",
    "WorkerInfo",
    "__version__",
    "compile",
    "configure",
    "dashboard",
    "default_client",
    "enqueue",
    "fn",
    "function",
    "functions",
    "gomap",
    "imap",
    "load_ipython_extension",
    "map",
    "status",
    "submit",
    "to_frame",
]


class _CallableModule(_types.ModuleType):
    """The package's own type: ``gomap(fn, iterable, **options)`` runs ``gomap.map``."""

    def __call__(self, fn: "str | Function", iterable: _Any, **options: _Any) -> list[_Any]:
        return map(fn, iterable, **options)

    def __repr__(self) -> str:
        return "<module 'gomap': gomap(fn, iterable) runs fn on Go workers; see help(gomap.map)>"


_sys.modules[__name__].__class__ = _CallableModule

gomap = _sys.modules[__name__]
"""The package itself, so ``from gomap import gomap`` gives all of it: ``gomap(...)``, ``gomap.TaskError``, …"""

from . import _pandas_hook  # noqa: E402 - registers the pandas accessors once pandas is imported

_pandas_hook.install()
