"""gomap: Go background workers tasked from Python over the Resque protocol on Redis.

    from gomap import gomap
    gomap("sampleadd", [(1, 2), (3, 4)])          # -> [3, 7], in order, with a progress bar

``gomap(fn, items)`` is ``gomap.map``; ``gomap.imap`` streams, ``gomap.submit`` returns a Batch at
once. ``import gomap; gomap(...)`` works too: the module itself is callable.
"""

import sys as _sys
import types as _types
from importlib import metadata as _metadata
from typing import Any as _Any

from ._batch import Batch
from ._client import Client, WorkerInfo
from ._exceptions import (
    BatchCancelled,
    ConfigError,
    ConnectError,
    EncodeError,
    GomapError,
    LocalClusterError,
    NoWorkersError,
    TaskError,
    Timeout,
    WorkerBinaryError,
)
from ._local import LocalCluster
from ._map import Function, configure, default_client, enqueue, function, imap, map, submit, to_frame

try:
    __version__ = _metadata.version("gomap")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0+unknown"

__all__ = [
    "Batch",
    "BatchCancelled",
    "Client",
    "ConfigError",
    "ConnectError",
    "EncodeError",
    "Function",
    "GomapError",
    "LocalCluster",
    "LocalClusterError",
    "NoWorkersError",
    "TaskError",
    "Timeout",
    "WorkerBinaryError",
    "WorkerInfo",
    "__version__",
    "configure",
    "default_client",
    "enqueue",
    "function",
    "gomap",
    "imap",
    "map",
    "submit",
    "to_frame",
]


class _Gomap:
    """``gomap(fn, iterable, **options)`` runs ``gomap.map``; the other calls hang off it."""

    map = staticmethod(map)
    imap = staticmethod(imap)
    submit = staticmethod(submit)
    to_frame = staticmethod(to_frame)
    function = staticmethod(function)
    enqueue = staticmethod(enqueue)
    configure = staticmethod(configure)
    default_client = staticmethod(default_client)
    Function = Function
    Batch = Batch
    Client = Client
    LocalCluster = LocalCluster

    def __call__(self, fn: str | Function, iterable: _Any, **options: _Any) -> list[_Any]:
        return map(fn, iterable, **options)

    def __repr__(self) -> str:
        return "<gomap: gomap(fn, iterable) runs fn on Go workers; see help(gomap.map)>"


gomap = _Gomap()


class _CallableModule(_types.ModuleType):
    def __call__(self, fn: str | Function, iterable: _Any, **options: _Any) -> list[_Any]:
        return map(fn, iterable, **options)


_sys.modules[__name__].__class__ = _CallableModule

from . import _pandas_hook  # noqa: E402 - registers the pandas accessors once pandas is imported

_pandas_hook.install()
