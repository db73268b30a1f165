"""pandas accessors: ``df.gomap.apply`` and ``series.gomap.map``, a drop-in for ``apply(axis=1)``.

Rows are read column-wise from the frame's arrays (one ``tolist`` per column and a ``zip``; no
Series per row), sent as JSON, and the results come back aligned to the frame's index. The rule
for each dtype is in docs/types.md.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import _codec
from ._exceptions import EncodeError, TaskError
from ._map import Function
from ._map import map as gomap_map

_registered = False


def register() -> None:
    """Register the accessors with pandas (once)."""
    global _registered
    if _registered:
        return
    pd.api.extensions.register_dataframe_accessor("gomap")(DataFrameAccessor)
    pd.api.extensions.register_series_accessor("gomap")(SeriesAccessor)
    _registered = True


def column_values(col: pd.Series) -> list[Any]:
    """The column's values as Python objects JSON can carry, by the rules of docs/types.md."""
    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return col.astype(object).tolist()  # the category values themselves
    kind = getattr(dtype, "kind", "O")
    if kind == "M":
        return _timestamps(col)
    if kind in "iufbOU" or isinstance(dtype, pd.StringDtype):
        return col.tolist()  # numpy scalars become int/float/bool; NaN, None and pd.NA travel as null
    raise EncodeError(
        f"column {col.name!r} ({dtype}) has no JSON rule (docs/types.md); convert it first, "
        "e.g. a timedelta with .dt.total_seconds()",
        index=None,
    )


def _timestamps(col: pd.Series) -> list[Any]:
    """RFC 3339 strings, which Go's time.Time reads; naive times are taken as UTC."""
    if getattr(col.dt, "tz", None) is not None:
        return [None if pd.isna(t) else t.isoformat() for t in col]
    text = np.datetime_as_string(col.to_numpy(dtype="datetime64[ns]"), unit="auto").tolist()
    missing = col.isna().to_numpy().tolist()
    return [None if na else s + "+00:00" for s, na in zip(text, missing, strict=True)]


def _columns(df: pd.DataFrame, columns: Sequence[Hashable] | None) -> list[Hashable]:
    cols = list(df.columns) if columns is None else list(columns)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"columns not in the frame: {missing}")
    if not cols:
        raise ValueError("no columns to pass as arguments")
    return cols


def _name_the_cell(e: EncodeError, df: pd.DataFrame, cols: list[Hashable], rows: list[tuple[Any, ...]]) -> EncodeError:
    """An EncodeError that names the row and the column of the value JSON cannot carry."""
    if e.index is None:
        return e
    for c, cell in zip(cols, rows[e.index], strict=True):
        try:
            _codec.dumps_items([cell], 0)
        except EncodeError as cell_error:
            reason = str(cell_error).split("cannot be sent as JSON: ", 1)[-1]
            return EncodeError(
                f"row {e.index} (index {df.index[e.index]!r}), column {c!r}: "
                f"{cell!r} ({type(cell).__name__}) cannot be sent as JSON: {reason}",
                index=e.index,
            )
    return e


def _result(values: list[Any], index: pd.Index, result_type: str | None, name: Hashable = None) -> Any:
    if result_type not in (None, "reduce", "expand"):
        raise ValueError(f"result_type must be None, 'reduce' or 'expand', not {result_type!r}")
    if result_type == "expand":
        return _expand(values, index)
    if not values:
        return pd.Series([], index=index, dtype="float64", name=name)  # as df.apply on an empty frame
    return pd.Series(values, index=index, name=name)


def _expand(values: list[Any], index: pd.Index) -> pd.DataFrame:
    """Records become columns by field, lists columns 0…n-1. A failed row (``errors="return"``)
    is all NaN; its TaskError is kept in ``frame.attrs["gomap_errors"]`` by row position."""
    errors = {i: v for i, v in enumerate(values) if isinstance(v, TaskError)}
    rows = [None if isinstance(v, TaskError) else v for v in values]
    if any(isinstance(r, Mapping) for r in rows):
        frame = pd.DataFrame.from_records([r if isinstance(r, Mapping) else {} for r in rows], index=index)
    else:
        frame = pd.DataFrame([[] if r is None else r for r in rows], index=index)
    if errors:
        frame.attrs["gomap_errors"] = errors
    return frame


class DataFrameAccessor:
    """``df.gomap``: run Go functions over a frame's rows."""

    def __init__(self, df: pd.DataFrame) -> None:
        self._df = df

    def apply(
        self,
        fn: str | Function,
        columns: Sequence[Hashable] | None = None,
        *,
        result_type: str | None = None,
        **options: Any,
    ) -> Any:
        """Run ``fn`` once per row, with the row's ``columns`` (default: all, in order) as its
        positional arguments, and return a Series aligned to the frame's index, as
        ``df.apply(f, axis=1)`` does. ``result_type="expand"`` turns record (dict) or list
        results into a DataFrame on the same index. The other options are ``gomap.map``'s
        (``errors``, ``chunksize``, ``timeout``, ``progress``, ``client``, …).
        """
        cols = _columns(self._df, columns)
        rows = list(zip(*(column_values(self._df[c]) for c in cols), strict=True))
        try:
            values = gomap_map(fn, rows, **options)
        except EncodeError as e:
            raise _name_the_cell(e, self._df, cols, rows) from e
        return _result(values, self._df.index, result_type)


class SeriesAccessor:
    """``series.gomap``: run Go functions over a Series' values."""

    def __init__(self, series: pd.Series) -> None:
        self._s = series

    def map(self, fn: str | Function, *, result_type: str | None = None, **options: Any) -> Any:
        """Run ``fn`` once per value, the value being its one argument (as ``Series.map``), and
        return a Series aligned to the index (a DataFrame with ``result_type="expand"``)."""
        values = column_values(self._s)
        # A list or tuple value is one argument, not several: wrap the values that could be read so.
        items = [(v,) if isinstance(v, (list, tuple)) else v for v in values] if self._s.dtype == object else values
        try:
            out = gomap_map(fn, items, **options)
        except EncodeError as e:
            if e.index is None:
                raise
            raise EncodeError(f"index {self._s.index[e.index]!r}: {e}", index=e.index) from e
        return _result(out, self._s.index, result_type, name=self._s.name)


def to_frame(results: Sequence[Any], *, index: Any = None, name: str = "result") -> pd.DataFrame:
    """A DataFrame from ``gomap.map`` results: a column per field of record results, else one
    column called ``name``."""
    if any(isinstance(r, Mapping) for r in results):
        return pd.DataFrame.from_records([r if isinstance(r, Mapping) else {} for r in results], index=index)
    return pd.DataFrame({name: list(results)}, index=index)


register()  # importing this module imported pandas: the accessors exist from here on
