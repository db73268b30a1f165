"""The ``%%gomap`` cell magic: ``%load_ext gomap``, then a cell of Go functions becomes callable.

    %%gomap
    import "math"

    // Haversine is the great-circle distance in km between two points given in degrees.
    func Haversine(lat1, lon1, lat2, lon2 float64) float64 { … }

binds ``Haversine`` (a gomap.Function) in the notebook, so the next cell can run
``df.gomap.apply(Haversine, columns=[…])``. Re-running an edited cell rebuilds and swaps the
workers of the embedded default.
"""

from __future__ import annotations

import sys
from typing import Any


def gomap_cell(line: str, cell: str) -> None:
    """%%gomap: compile the cell's Go functions into the workers and bind their handles."""
    from IPython import get_ipython

    from ._compile import compile_unit, snippet_unit

    compiled = compile_unit(snippet_unit(cell, "cell", header=f"%%gomap {line}".rstrip()))
    shell = get_ipython()
    if shell is not None:
        shell.user_ns.update(compiled)
    print(f"{compiled!r}", file=sys.stdout)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext gomap``: register the ``%%gomap`` cell magic."""
    ipython.register_magic_function(gomap_cell, magic_kind="cell", magic_name="gomap")
