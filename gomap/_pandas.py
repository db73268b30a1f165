"""pandas accessors: ``df.gomap.apply`` and ``series.gomap.map``, a drop-in for ``apply(axis=1)``.

Columns of numbers, bools and times travel as columns: each chunk is a columnar chunk
(docs/protocol.md), one JSON array per column written by one orjson call from the frame's own
numpy arrays, with no Python object per row or cell. Other columns (object, string, categorical,
nullable), and workers too old to read columns, take the row path: one ``tolist`` per column and a
``zip`` into one tuple per row. Both give the same JSON values by the rules of docs/types.md
(``gomap types`` prints it). Numeric results are read into one numpy array, not a Series built
from a list of Python values, with the dtype pandas would infer from those values.

Errors are told in pandas' words: the row's index label, the column, the value as pandas shows
it (NaN, None, <NA>, NaT). The failed rows of the last call on a frame or Series are in its
``.gomap.errors``; they are kept on the pandas object itself, as pandas 3 makes a new accessor
object on each ``df.gomap`` (pandas 2 cached one per object).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import _codec, _map
from ._exceptions import EncodeError, GomapError, TaskError
from ._map import Function, default_client
from ._map import map as gomap_map
from ._protocol import COLUMNS_VERSION

_registered = False

SEE_TYPES = "(see `gomap types`)"
ERROR_COLUMNS = ("function", "kind", "error", "column")
_ERRORS_KEY = "_gomap_errors"  # where a frame or Series keeps the failed rows of its last call


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
        f"column {col.name!r} ({dtype}) has no JSON rule; convert it first, "
        f"e.g. a timedelta with .dt.total_seconds() {SEE_TYPES}",
        index=None,
    )


def _timestamps(col: pd.Series) -> list[Any]:
    """RFC 3339 strings, which Go's time.Time reads; naive times are taken as UTC."""
    if getattr(col.dt, "tz", None) is not None:
        return [None if pd.isna(t) else t.isoformat() for t in col]
    times = col.to_numpy(dtype="datetime64[ns]")
    missing = col.isna().to_numpy()
    # One unit for the column, the coarsest that loses nothing, and never coarser than seconds:
    # unit="auto" picks one per value, and "2024-01-02" or "2024-01-02T03:00" is not RFC 3339.
    ns = times.view("i8")[~missing]
    unit = next((u for u, per in (("s", 10**9), ("ms", 10**6), ("us", 10**3)) if not (ns % per).any()), "ns")
    text = np.datetime_as_string(times, unit=unit).tolist()
    return [None if na else s + "+00:00" for s, na in zip(text, missing.tolist(), strict=True)]


def wire_column(col: pd.Series) -> np.ndarray | list[Any] | None:
    """The column as a columnar chunk carries it: a numpy array orjson writes as the same JSON
    that ``column_values`` gives, or (times) that list of strings; None when the column takes the
    row path (an object, string, categorical or nullable column; a float column with infinity,
    whose EncodeError the row path words)."""
    dtype = col.dtype
    if _codec.orjson is None:
        return None
    if isinstance(dtype, pd.DatetimeTZDtype):
        return _timestamps(col)
    if not isinstance(dtype, np.dtype):
        return None
    if dtype.kind in "iub":
        return np.ascontiguousarray(col.to_numpy())
    if dtype.kind == "f":
        # float64, as tolist() gives: orjson writes a float32 by its own shortest digits.
        values = np.ascontiguousarray(col.to_numpy(dtype=np.float64))
        return None if np.isinf(values).any() else values
    if dtype.kind == "M":
        return _timestamps(col)
    return None


class _Columns:
    """A frame's argument columns as a batch's input: ``gomap_chunks`` cuts them into columnar
    chunks (gomap/_batch.py encodes each as the window needs it, so a frame of any length costs
    a window of chunks of JSON). Indexing gives a row's cells, for error messages."""

    def __init__(self, arrays: list[np.ndarray | list[Any]], length: int) -> None:
        self.arrays = arrays
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        return tuple(a[i] for a in self.arrays)

    def take(self, positions: list[int]) -> _Columns:
        """The rows at positions, in order."""
        picked = [a[positions] if isinstance(a, np.ndarray) else [a[p] for p in positions] for a in self.arrays]
        return _Columns(picked, len(positions))

    def gomap_chunks(self, size: int) -> Any:
        for lo in range(0, self.length, size):
            yield lo, _ColumnChunk(self.arrays, lo, min(lo + size, self.length))


class _ColumnChunk:
    """Rows lo to hi of the columns: ``gomap_columns`` is their JSON, one array per column."""

    __slots__ = ("arrays", "hi", "lo")

    def __init__(self, arrays: list[np.ndarray | list[Any]], lo: int, hi: int) -> None:
        self.arrays, self.lo, self.hi = arrays, lo, hi

    def __len__(self) -> int:
        return self.hi - self.lo

    def gomap_columns(self) -> bytes:
        assert _codec.orjson is not None  # wire_column sends no column without it
        part = [a[self.lo : self.hi] for a in self.arrays]
        return _codec.orjson.dumps(part, option=_codec.orjson.OPT_SERIALIZE_NUMPY)


def _reads_columns(fn: str | Function, options: Mapping[str, Any]) -> bool:
    """Whether every worker process of the pool reads columnar chunks (protocol version 2): a
    chunk of columns would look empty to an older one. Any doubt answers no: the row path. One
    try: while Redis cannot be reached, the batch's own round trips wait for it, within its timeout."""
    client = options.get("client") or (fn.client if isinstance(fn, Function) else None) or default_client()
    try:
        records = client.call(lambda: client.redis.hvals(client.keys.processes()), tolerance=0)
    except GomapError:
        return False
    versions = []
    for raw in records:
        try:
            versions.append(int(_codec.loads(raw).get("version") or 0))
        except (ValueError, TypeError, AttributeError):
            return False
    return bool(versions) and min(versions) >= COLUMNS_VERSION


def _by_columns(columns: list[pd.Series], fn: str | Function, options: Mapping[str, Any]) -> _Columns | None:
    """The columns as a columnar batch input, or None when any column or worker needs the row path."""
    arrays = []
    for col in columns:
        a = wire_column(col)
        if a is None:
            return None
        arrays.append(a)
    if not _reads_columns(fn, options):
        return None
    return _Columns(arrays, len(columns[0]))


def _columns(df: pd.DataFrame, columns: Sequence[Hashable] | None) -> list[Hashable]:
    cols = list(df.columns) if columns is None else list(columns)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"columns not in the frame: {missing}")
    if not cols:
        raise ValueError("no columns to pass as arguments")
    return cols


def show(value: Any) -> str:
    """A cell as pandas shows it: NaN, None, <NA>, NaT for the missing values, else its repr."""
    if value is None:
        return "None"
    if value is pd.NA:
        return "<NA>"
    if value is pd.NaT or (isinstance(value, (np.datetime64, np.timedelta64)) and np.isnat(value)):
        return "NaT"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or show(value) in ("NaN", "NaT")


class _Call:
    """One ``df.gomap.apply`` or ``series.gomap.map``: which rows go, and errors in pandas' words."""

    def __init__(self, owner: pd.DataFrame | pd.Series, cols: list[Hashable], na_action: str | None) -> None:
        if na_action not in (None, "ignore"):
            raise ValueError(f"na_action must be None or 'ignore' (as in Series.map), not {na_action!r}")
        self.owner = owner
        self.cols = cols
        self.frame = isinstance(owner, pd.DataFrame)
        self.what = "df" if self.frame else "series"
        self.sent: list[int] | None = None  # positions of the rows sent; None: all of them
        if na_action == "ignore":
            missing = np.zeros(len(owner), dtype=bool)
            for col in self._series():
                missing |= col.isna().to_numpy(dtype=bool)
            if missing.any():
                self.sent = np.flatnonzero(~missing).tolist()

    def _series(self) -> list[pd.Series]:
        if isinstance(self.owner, pd.DataFrame):
            return [self.owner[c] for c in self.cols]
        return [self.owner]

    def items(self, items: Any) -> Any:
        """The items to send: those of rows with no missing argument under na_action='ignore'."""
        if self.sent is None:
            return items
        if isinstance(items, _Columns):
            return items.take(self.sent)
        return [items[p] for p in self.sent]

    def position(self, sent_index: int) -> int:
        """The row position (in the frame) of the sent item at sent_index."""
        return sent_index if self.sent is None else self.sent[sent_index]

    def run(self, fn: str | Function, items: Any, options: dict[str, Any]) -> list[Any] | np.ndarray:
        """Send the items; return one value per row (None for rows not sent and failed rows): a
        list, or a numpy array when every row was sent and every result is a number (or a bool)."""
        errors = options.get("errors", "raise")
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', not {errors!r}")
        self.owner.__dict__.pop(_ERRORS_KEY, None)
        to_send = self.items(items)
        failed: list[tuple[int, TaskError]] = []
        if to_send or self.sent is None:
            try:
                if (
                    isinstance(to_send, _Columns)
                    and self.sent is None
                    and errors == "raise"
                    and options.keys() <= _OPTIONS
                ):
                    array = _map_numeric(fn, to_send, options)
                    if isinstance(array, np.ndarray):
                        self._keep_errors([])
                        return array
                    out = array
                else:
                    out = gomap_map(fn, to_send, **options)
            except TaskError as e:
                named = self.task_error(e, to_send)
                self._keep_errors([(named.index, named)])
                raise named from None
            except EncodeError as e:
                raise self.encode_error(e, to_send) from None
        else:
            out = []  # every row has a missing argument: nothing to send, no batch
        values: list[Any] = out if self.sent is None else [None] * len(self.owner)
        if errors == "return":  # failed items are TaskErrors in out
            for i, v in enumerate(out):
                if isinstance(v, TaskError):
                    pos = self.position(i)
                    failed.append((pos, v))
                    v = None
                values[self.position(i)] = v
        elif self.sent is not None:
            for p, v in zip(self.sent, out, strict=True):
                values[p] = v
        self._keep_errors(failed)
        return values

    # Errors in pandas' words.

    def _label(self, pos: int) -> str:
        label = self.owner.index[pos]
        if isinstance(label, tuple):
            label = tuple(x.item() if isinstance(x, np.generic) else x for x in label)
        elif isinstance(label, np.generic):
            label = label.item()
        return f"index {label!r} (position {pos})"

    def _names_a_column(self, argument: int | None) -> bool:
        return argument is not None and 0 <= argument < len(self.cols)

    def _column(self, argument: int | None) -> Hashable | None:
        """The column of argument (the Series' name for a Series), None when unknown."""
        return self.cols[argument] if argument is not None and self._names_a_column(argument) else None

    def _cell(self, pos: int, argument: int) -> Any:
        col = self.owner[self.cols[argument]] if self.frame else self.owner
        return col.array[pos]

    def _where(self, argument: int) -> str:
        if self.frame or self.cols[argument] is not None:
            return f"column {self.cols[argument]!r}"
        return "the Series"

    def _row(self, pos: int) -> str:
        """The row's arguments, for an error that is not about one of them: `a=1, b=0`."""
        if not self.frame:
            return show(self._cell(pos, 0))
        cells = [f"{c}={show(self._cell(pos, k))}" for k, c in enumerate(self.cols[:6])]
        if len(self.cols) > 6:
            cells.append("…")
        return ", ".join(cells)

    def task_error(self, e: TaskError, sent: Any) -> TaskError:
        """The TaskError again, with the row's position for index and a message that names the
        row's index label, the column and its value, and says what to do."""
        pos = self.position(e.index) if 0 <= e.index < len(sent) else e.index
        where = self._label(pos)
        row = "row" if self.frame else "value"
        name, fill = e.function, f"{self.what}.fillna(...)"
        if e.kind == "arguments" and e.argument is not None and self._names_a_column(e.argument):
            value = self._cell(pos, e.argument)
            if _is_missing(value):
                text = (
                    f"{name}: {self._where(e.argument)} is {show(value)} at {where}, and the Go function cannot "
                    f"take a missing value there. Pass na_action='ignore' to leave such rows NaN, or fill them "
                    f"first: {fill} {SEE_TYPES}"
                )
            else:
                detail = e.error.split(": ", 1)[1] if e.error.startswith("argument ") else e.error
                todo = "Convert the column to the type the function takes"
                if isinstance(value, (float, np.floating)) and float(value).is_integer() and "int" in detail:
                    todo = (
                        "pandas keeps integers with missing values as float64: convert the column with "
                        ".astype('Int64') (missing values stay <NA>; add na_action='ignore' to skip them)"
                    )
                text = (
                    f"{name}: {self._where(e.argument)} is {show(value)} at {where}, which the Go function "
                    f"cannot take: {detail}. {todo} {SEE_TYPES}"
                )
        elif e.kind == "arguments":
            how = (
                "pass columns=[...], one column per parameter, in order"
                if self.frame
                else "series.gomap.map passes each value as the one argument"
            )
            text = (
                f"{name}: the {row} at {where} does not fit the function: {e.error}. "
                f"gomap.functions() shows its parameters; {how} {SEE_TYPES}"
            )
        else:
            text = (
                f"{name} failed ({e.kind}) on the {row} at {where} ({self._row(pos)}): {e.error}. "
                f"Pass errors='return' to get NaN for such rows and the failures in {self.what}.gomap.errors"
            )
        return e._restated(text, pos)

    def encode_error(self, e: EncodeError, sent: Any) -> EncodeError:
        """An EncodeError that names the row's index label, the column and the value."""
        if e.index is None or not 0 <= e.index < len(sent):
            return e
        pos = self.position(e.index)
        item = sent[e.index]
        cells = item if self.frame else (item,)
        for k, cell in enumerate(cells):
            try:
                _codec.dumps_items([cell], 0)
            except EncodeError as cell_error:
                reason = str(cell_error).split("cannot be sent as JSON: ", 1)[-1]
                return EncodeError(
                    f"{self._where(k)} at {self._label(pos)}: {show(self._cell(pos, k))} "
                    f"({type(cell).__name__}) cannot be sent as JSON: {reason}. Convert or drop it first "
                    f"{SEE_TYPES}",
                    index=pos,
                )
        return EncodeError(f"the row at {self._label(pos)}: {e}", index=pos)

    def _keep_errors(self, failed: list[tuple[int, TaskError]]) -> None:
        """Keep the failed rows on the pandas object: ``.gomap.errors`` reads them."""
        positions = [p for p, _ in failed]
        table = pd.DataFrame(
            {
                "function": pd.Series([e.function for _, e in failed], dtype=object),
                "kind": pd.Series([e.kind for _, e in failed], dtype=object),
                "error": pd.Series([e.error for _, e in failed], dtype=object),
                "column": pd.Series([self._column(e.argument) for _, e in failed], dtype=object),
            }
        )
        table.index = self.owner.index.take(positions)
        object.__setattr__(self.owner, _ERRORS_KEY, table)  # not .attrs: pandas copies those into every result


def _errors_of(owner: pd.DataFrame | pd.Series, call: str) -> pd.DataFrame:
    table = owner.__dict__.get(_ERRORS_KEY)
    if table is None:
        raise AttributeError(
            f"no {call} has finished on this object yet: .gomap.errors holds the failed rows of the last call "
            f"on the same object. Keep it in a variable: a new selection (df[cols], df['a']) is a new object; "
            f"df.gomap.apply(fn, columns=[...]) picks the columns without one"
        )
    return table


def _result(values: list[Any] | np.ndarray, index: pd.Index, result_type: str | None, name: Hashable = None) -> Any:
    if isinstance(values, np.ndarray):
        if result_type == "expand":
            values = values.tolist()  # numbers expand to nothing, as a list of them does
        else:
            return pd.Series(values, index=index, name=name, copy=False)
    if result_type == "expand":
        return _expand(values, index)
    if not values or all(v is None for v in values):
        # As df.apply on an empty frame, and Series.map(na_action="ignore") on an all-NaN one.
        return pd.Series(np.nan, index=index, dtype="float64", name=name)
    array = _numeric(values)
    if array is not None:
        return pd.Series(array, index=index, name=name, copy=False)
    return pd.Series(values, index=index, name=name)


_NUMERIC = {"integer": np.int64, "floating": np.float64, "mixed-integer-float": np.float64, "boolean": np.bool_}


# gomap.map's options, which _map_numeric passes on as map does (any other: gomap.map says so).
_OPTIONS = frozenset(
    {"chunksize", "errors", "timeout", "progress", "tqdm_class", "tqdm_kwargs", "queue", "client", "item_timeout",
     "wait_for_workers"}
)  # fmt: skip


def _map_numeric(fn: str | Function, items: _Columns, options: Mapping[str, Any]) -> np.ndarray | list[Any]:
    """gomap.map with errors="raise" (the same batch, bar, timeout, Ctrl-C and errors), keeping
    each chunk's results as a numpy array as it arrives, when they are numbers: the frame's result
    column then never exists as one Python object per row. The arrays joined, when their dtypes
    join as pandas would infer them from the values (int64 with int64, int64 or float64 with
    float64, bool with bool); else the values as a list, for the Series constructor to infer."""
    o = dict(options)
    batch = None
    parts: dict[int, np.ndarray | list[Any]] = {}
    try:
        batch = _map._start(
            fn, items, o.get("client"), o.get("queue"), o.get("chunksize"), "raise", o.get("item_timeout"),
            o.get("wait_for_workers"),
        )  # fmt: skip
        with _map._collecting(
            batch, o.get("timeout"), o.get("progress"), o.get("tqdm_class"), o.get("tqdm_kwargs")
        ) as chunks:
            for start, values, errs in chunks:
                batch.apply_errors(start, values, errs)  # raises the first failed item's TaskError
                array = _numeric(values)
                parts[start] = values if array is None else array
    except KeyboardInterrupt:
        raise _map._interrupted(batch) from None
    except GomapError as e:
        raise e.with_traceback(None) from None
    return _joined([parts.pop(start) for start in sorted(parts)])


def _joined(parts: list[np.ndarray | list[Any]]) -> np.ndarray | list[Any]:
    """Consecutive chunks' results as one array, when their dtypes join as pandas infers the dtype
    of all their values together (int64 with int64, int64 or float64 with float64, bool with bool);
    else as one list (an array's tolist() gives back the very values it was made of)."""
    kinds = {p.dtype.kind if isinstance(p, np.ndarray) else "O" for p in parts}
    if parts and kinds in ({"i"}, {"f"}, {"i", "f"}, {"b"}):
        return np.concatenate(parts)  # type: ignore[arg-type]
    return [v for p in parts for v in (p.tolist() if isinstance(p, np.ndarray) else p)]


def _numeric(values: list[Any]) -> np.ndarray | None:
    """The values as one numpy array of the dtype pandas infers for them (int64, float64, bool),
    read by numpy in one pass instead of by pandas' Series constructor; None for any other mix
    (None among them, strings, ints beyond int64), which the Series constructor then infers."""
    dtype = _NUMERIC.get(pd.api.types.infer_dtype(values, skipna=False))
    if dtype is None:
        return None
    try:
        return np.array(values, dtype=dtype)
    except (OverflowError, TypeError, ValueError):
        return None


def _check_result_type(result_type: str | None) -> None:
    if result_type not in (None, "reduce", "expand"):
        raise ValueError(f"result_type must be None, 'reduce' or 'expand', not {result_type!r}")


def _expand(values: list[Any], index: pd.Index) -> pd.DataFrame:
    """Records become columns by field, lists columns 0…n-1. A row without a result (it failed
    under ``errors="return"``, or had a missing argument under ``na_action="ignore"``) is all NaN."""
    if any(isinstance(r, Mapping) for r in values):
        return pd.DataFrame.from_records([r if isinstance(r, Mapping) else {} for r in values], index=index)
    return pd.DataFrame([[] if r is None else r for r in values], index=index)


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
        na_action: str | None = None,
        **options: Any,
    ) -> Any:
        """Run ``fn`` once per row, with the row's ``columns`` (default: all, in order) as its
        positional arguments, and return a Series aligned to the frame's index, as
        ``df.apply(f, axis=1)`` does. ``result_type="expand"`` turns record (dict) or list
        results into a DataFrame on the same index.

        ``na_action="ignore"`` (as ``Series.map``) does not send the rows where any of those
        columns is missing (NaN, None, <NA>, NaT): their result is NaN. With ``errors="return"``
        a failed row's result is NaN too, and ``df.gomap.errors`` lists the failed rows. A
        failure raises a TaskError naming the row's index label and the column.

        The other options are ``gomap.map``'s (``errors``, ``chunksize``, ``timeout``,
        ``progress``, ``client``, …).
        """
        _check_result_type(result_type)
        cols = _columns(self._df, columns)
        call = _Call(self._df, cols, na_action)
        items: Any = _by_columns([self._df[c] for c in cols], fn, options)
        if items is None:  # the row path: one tuple per row
            items = list(zip(*(column_values(self._df[c]) for c in cols), strict=True))
        return _result(call.run(fn, items, options), self._df.index, result_type)

    @property
    def errors(self) -> pd.DataFrame:
        """The failed rows of the last ``df.gomap.apply`` on this frame: a DataFrame on their
        index labels with columns ``function``, ``kind``, ``error`` and ``column`` (the column
        whose value did not fit, else None); empty when none failed. With ``errors="raise"`` it
        holds the row that raised. AttributeError before any call on this frame object."""
        return _errors_of(self._df, "df.gomap.apply")


class SeriesAccessor:
    """``series.gomap``: run Go functions over a Series' values."""

    def __init__(self, series: pd.Series) -> None:
        self._s = series

    def map(
        self, fn: str | Function, *, result_type: str | None = None, na_action: str | None = None, **options: Any
    ) -> Any:
        """Run ``fn`` once per value, the value being its one argument (as ``Series.map``), and
        return a Series aligned to the index (a DataFrame with ``result_type="expand"``).
        ``na_action="ignore"`` leaves missing values NaN without sending them; with
        ``errors="return"`` failed values give NaN and ``series.gomap.errors`` lists them."""
        _check_result_type(result_type)
        call = _Call(self._s, [self._s.name], na_action)
        items: Any = _by_columns([self._s], fn, options)
        if items is None:
            values = column_values(self._s)
            # A list or tuple value is one argument, not several: wrap the values that could be read so.
            items = [(v,) if isinstance(v, (list, tuple)) else v for v in values] if self._s.dtype == object else values
        return _result(call.run(fn, items, options), self._s.index, result_type, name=self._s.name)

    @property
    def errors(self) -> pd.DataFrame:
        """The failed values of the last ``series.gomap.map`` on this Series, as
        ``DataFrameAccessor.errors`` (``column`` is the Series' name)."""
        return _errors_of(self._s, "series.gomap.map")


def to_frame(results: Sequence[Any], *, index: Any = None, name: str = "result") -> pd.DataFrame:
    """A DataFrame from ``gomap.map`` results: a column per field of record results, else one
    column called ``name``."""
    if any(isinstance(r, Mapping) for r in results):
        return pd.DataFrame.from_records([r if isinstance(r, Mapping) else {} for r in results], index=index)
    return pd.DataFrame({name: list(results)}, index=index)


register()  # importing this module imported pandas: the accessors exist from here on
