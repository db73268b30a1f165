"""JSON on the wire: orjson when installed (one C call per chunk), the standard library otherwise.

The rules, the same on both paths (docs/types.md has the full table):

- tuples and lists become arrays, dicts objects (non-string keys become strings), numpy scalars and
  arrays their values, datetimes RFC 3339 strings (naive ones taken as UTC),
  ``None``/``pandas.NA``/``NaT`` ``null``;
- NaN becomes ``null`` (JSON has no NaN; it is the missing value), ±infinity is an ``EncodeError``;
- integers travel exactly, however large (a Go ``int64`` parameter rejects what does not fit);
- anything else is an ``EncodeError`` naming the item's index and type.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Sequence
from typing import Any

from ._exceptions import EncodeError

try:
    import orjson
except ImportError:  # pragma: no cover - exercised by forcing the fallback in tests
    orjson = None  # type: ignore[assignment]

_ORJSON_OPTIONS = 0 if orjson is None else orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC


def _default(obj: Any) -> Any:
    """Values neither encoder knows natively."""
    name = type(obj).__name__
    if name in ("NAType", "NaTType"):
        return None
    if isinstance(obj, datetime.datetime) and obj.tzinfo is None:
        return obj.isoformat() + "+00:00"  # naive times are taken as UTC, as orjson's OPT_NAIVE_UTC does
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if hasattr(obj, "tolist") and type(obj).__module__ == "numpy":
        return obj.tolist()
    if hasattr(obj, "item") and type(obj).__module__ == "numpy":
        return obj.item()
    raise TypeError(f"{type(obj).__module__}.{type(obj).__qualname__} has no JSON form")


def _stdlib_dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default).encode()


def _describe(item: Any) -> str:
    t = type(item)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def dumps(obj: Any) -> bytes:
    """Encode one value (a Resque payload, a single item)."""
    if orjson is not None:
        try:
            return orjson.dumps(obj, default=_default, option=_ORJSON_OPTIONS)
        except TypeError as e:
            if "64-bit" not in str(e):
                raise
    return _stdlib_dumps(obj)


def dumps_resque(class_: str, args: list[Any]) -> bytes:
    """A Resque payload, byte for byte what Ruby's Resque.enqueue writes for the same arguments."""
    try:
        return _stdlib_dumps({"class": class_, "args": args})
    except (TypeError, ValueError) as e:
        raise EncodeError(f"the arguments of {class_} cannot be sent as JSON: {e}", index=None) from e


def dumps_items(items: Sequence[Any], start: int) -> bytes:
    """Encode a chunk's items as one JSON array.

    ``start`` is the index of the first item in the batch, so an error names the right item.
    """
    try:
        data = dumps(items)
    except (TypeError, ValueError):
        return _dumps_each(items, start)
    if b"null" in data and _has_infinity(items):
        return _dumps_each(items, start)
    return data


def _dumps_each(items: Sequence[Any], start: int) -> bytes:
    """The slow path, taken only when the fast one failed: find the bad item, or mend NaNs."""
    parts = []
    for i, item in enumerate(items):
        try:
            if _has_infinity(item):
                raise ValueError("infinity has no JSON form (NaN travels as null; infinity does not)")
            try:
                parts.append(dumps(item))
            except ValueError:  # the standard library refuses NaN: make it null, as orjson does
                parts.append(_stdlib_dumps(_nan_to_none(item)))
        except (TypeError, ValueError) as e:
            raise EncodeError(
                f"item {start + i} ({_describe(item)}) cannot be sent as JSON: {e}", index=start + i
            ) from e
    return b"[" + b",".join(parts) + b"]"


def _has_infinity(obj: Any) -> bool:
    """Whether obj holds ±infinity anywhere (lists, tuples, dict values, numpy floats and arrays)."""
    if isinstance(obj, float):
        return math.isinf(obj)
    if isinstance(obj, (list, tuple)):
        return any(_has_infinity(x) for x in obj)
    if isinstance(obj, dict):
        return any(_has_infinity(x) for x in obj.values())
    if type(obj).__module__ == "numpy" and getattr(getattr(obj, "dtype", None), "kind", "") == "f":
        import numpy

        return bool(numpy.isinf(obj).any())
    return False


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if type(obj).__module__ == "numpy" and hasattr(obj, "tolist"):
        return _nan_to_none(obj.tolist())
    return obj


def loads(data: bytes | str) -> Any:
    """Decode JSON from Redis."""
    if orjson is not None:
        return orjson.loads(data)
    return json.loads(data)
