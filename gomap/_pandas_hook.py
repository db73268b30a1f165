"""Register gomap's pandas accessors (``df.gomap``, ``series.gomap``) without importing pandas.

Importing pandas costs most of a second, which a script that never touches pandas should not
pay. So: if pandas is already imported, register now; otherwise a finder waits on the import
system and registers right after pandas itself is imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType


def _register() -> None:
    importing = sys.modules.get(__package__ + "._pandas")
    if importing is not None and not hasattr(importing, "register"):
        return  # gomap._pandas is importing pandas right now; it registers once it is done
    from . import _pandas

    _pandas.register()


class _AfterPandas(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "pandas":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            _register()

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Register now if pandas is loaded, else once it is."""
    if "pandas" in sys.modules:
        _register()
    elif not any(isinstance(f, _AfterPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterPandas())
