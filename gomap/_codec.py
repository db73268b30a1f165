"""JSON on the wire: orjson when installed (one C call per chunk), the standard library otherwise.

The rules, the same on both paths (docs/types.md has the full table):

- tuples (namedtuples too) and lists become arrays, dicts objects, numpy scalars and arrays their
  values, datetimes RFC 3339 strings (naive ones taken as UTC), dataclasses objects of their public
  fields, enums their values, UUIDs strings, ``None``/``pandas.NA``/``NaT`` ``null``;
- dict keys: a str as it is, an int as its decimal digits, a finite float as Python writes it
  (``"1.5"``); any other key, and two keys that would be the same string, is an ``EncodeError``;
- NaN becomes ``null`` (JSON has no NaN; it is the missing value), ±infinity is an ``EncodeError``;
- integers travel exactly, however large (a Go ``int64`` parameter rejects what does not fit), and
  come back exactly;
- a value may nest lists, tuples and dicts at most ``MAX_DEPTH`` deep;
- anything else is an ``EncodeError`` naming the item's index and type.

The fast path is one orjson call per chunk. When its JSON holds a ``null``, the items are scanned
for infinity (orjson writes it as ``null``). When orjson refuses the chunk, its dicts get str keys by
the key rules and orjson tries again; when that fails too, each item takes the checked path: it is
turned into plain JSON data by ``_Plain``, which applies the rules above and names what breaks them.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import numbers
import uuid
from collections.abc import Sequence
from typing import Any

from ._exceptions import EncodeError

try:
    import orjson
except ImportError:  # pragma: no cover - exercised by forcing the fallback in tests
    orjson = None  # type: ignore[assignment]

# How deep an item, or a plain job's argument list, may nest lists, tuples and dicts: [[1]] is 2.
# orjson writes at most 254 levels of JSON and a chunk's own array is one of them.
MAX_DEPTH = 253

# No OPT_NON_STR_KEYS: orjson would write an infinite key as "null". A dict with keys that are not
# str takes the checked path, which applies the key rules.
_ORJSON_OPTIONS = 0 if orjson is None else orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NAIVE_UTC

_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1  # the ints orjson writes and reads exactly
_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_RUN = b"0" * 19
_INF = math.inf
_NO_INFINITY = "infinity has no JSON form (NaN travels as null; infinity does not)"


def _default(obj: Any) -> Any:
    """Values neither encoder knows natively, and those only orjson knows (so both agree)."""
    if isinstance(obj, tuple):
        return list(obj)  # namedtuples and other tuple subclasses are arrays, as tuples are
    if isinstance(obj, float):
        return float(obj)  # a float subclass
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
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # orjson's rule: the fields in their order, without those whose name starts with "_".
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if not f.name.startswith("_")}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, uuid.UUID):
        return str(obj)
    raise TypeError(
        f"{_describe(obj)} has no JSON form: convert it first (a number with float() or int(), anything with str(), "
        "a record with a dict); `gomap types` lists what travels"
    )


def _describe(item: Any) -> str:
    t = type(item)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _clip(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 60 else r[:57] + "..."


class _Refused(Exception):
    """Why a value has no JSON form; the caller adds which item or argument it is."""


class _Plain:
    """Turns a value into plain JSON data (dict with str keys, list, str, int, float, bool, None),
    applying the rules of this module. ``big`` says whether an int is beyond what orjson writes."""

    __slots__ = ("big", "nan_is_null")

    def __init__(self, *, nan_is_null: bool) -> None:
        self.big = False
        self.nan_is_null = nan_is_null

    def value(self, obj: Any, depth: int) -> Any:
        t = type(obj)
        if t is str or t is bool or obj is None:
            return obj
        if t is int:
            if not _INT_MIN <= obj <= _UINT_MAX:
                self.big = True
            return obj
        if t is float:
            if math.isfinite(obj):
                return obj
            if math.isinf(obj):
                raise _Refused(_NO_INFINITY)
            if self.nan_is_null:
                return None
            raise _Refused("NaN has no JSON form here; pass None")
        if isinstance(obj, (list, tuple)):
            self._enter(depth)
            return [self.value(x, depth + 1) for x in obj]
        if isinstance(obj, dict):
            self._enter(depth)
            out = {self.key(k): self.value(v, depth + 1) for k, v in obj.items()}
            if len(out) != len(obj):
                self._collision(obj)
            return out
        if isinstance(obj, str):
            return str(obj)
        if isinstance(obj, int):  # an int subclass: IntEnum, IntFlag
            return self.value(int(obj), depth)
        try:
            return self.value(_default(obj), depth)
        except TypeError as e:
            raise _Refused(str(e)) from None

    @staticmethod
    def _enter(depth: int) -> None:
        if depth >= MAX_DEPTH:
            raise _Refused(
                f"it nests lists, tuples and dicts more than {MAX_DEPTH} levels deep, counting the item itself "
                "or a plain job's list of arguments (orjson writes at most 254 levels of JSON, and a chunk's "
                "array is one of them); flatten it or send it as a string"
            )

    @staticmethod
    def key(k: Any) -> str:
        if type(k) is str:
            return k
        if type(k) is int:
            return str(k)
        if isinstance(k, str):
            return str(k)
        if not isinstance(k, bool) and isinstance(k, numbers.Integral):
            return str(int(k))
        if isinstance(k, float) or (isinstance(k, numbers.Real) and type(k).__module__ == "numpy"):
            f = float(k)
            if math.isfinite(f):
                return repr(f)
            raise _Refused(f"dict key {f!r} is not finite: keys must be str, int or finite float")
        raise _Refused(
            f"dict key {_clip(k)} ({_describe(k)}) has no JSON form: keys must be str, int or finite float; "
            "convert it to str"
        )

    def _collision(self, obj: dict[Any, Any]) -> None:
        seen: dict[str, Any] = {}
        for k in obj:
            s = self.key(k)
            if s in seen:
                raise _Refused(f"dict keys {_clip(seen[s])} and {_clip(k)} are both the JSON key {s!r}")
            seen[s] = k


def _stdlib_dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default).encode()


def _checked(obj: Any, *, depth: int, nan_is_null: bool) -> bytes:
    """Encode obj by the checked path: plain data first, then orjson (or the standard library for
    ints orjson cannot write, and when orjson is missing). Raises _Refused."""
    p = _Plain(nan_is_null=nan_is_null)
    plain = p.value(obj, depth)
    try:
        if orjson is not None and not p.big:
            return orjson.dumps(plain)
        return _stdlib_dumps(plain)
    except (TypeError, ValueError) as e:  # a str with a lone surrogate, an int of more than 4300 digits
        raise _Refused(str(e)) from None


def _orjson(obj: Any) -> bytes | None:
    """obj's JSON by one orjson call, or None when orjson refuses it (or is missing)."""
    if orjson is None:
        return None
    try:
        return orjson.dumps(obj, default=_default, option=_ORJSON_OPTIONS)
    except TypeError:
        return None


def dumps(obj: Any) -> bytes:
    """Encode one value (a single item, a batch's function or id) by the rules of an item."""
    data = _orjson([obj])  # inside an array, so the depth limit is an item's
    if data is not None and (b"null" not in data or not _infinite(obj)):
        return data[1:-1]
    try:
        return _checked(obj, depth=0, nan_is_null=True)
    except _Refused as e:
        raise EncodeError(f"{_describe(obj)} cannot be sent as JSON: {e}", index=None) from None


def dumps_resque(class_: str, args: list[Any]) -> bytes:
    """A Resque payload, byte for byte what Ruby's Resque.enqueue writes for the same arguments.

    The arguments follow the rules of an item's, except that NaN is refused (Ruby writes none)."""
    p = _Plain(nan_is_null=False)
    plain = []
    for i, arg in enumerate(args):
        try:
            plain.append(p.value(arg, 1))  # the list of arguments is the first level, as an item's tuple
        except _Refused as e:
            raise EncodeError(
                f"argument {i + 1} of {class_} ({_describe(arg)}) cannot be sent as JSON: {e}", index=None
            ) from None
    try:
        return _stdlib_dumps({"class": class_, "args": plain})
    except (TypeError, ValueError) as e:
        raise EncodeError(f"the arguments of {class_} cannot be sent as JSON: {e}", index=None) from e


def dumps_items(items: Sequence[Any], start: int) -> bytes:
    """Encode a chunk's items as one JSON array.

    ``start`` is the index of the first item in the batch, so an error names the right item.
    """
    sent: Sequence[Any] = items
    data = _orjson(items)
    if data is None:
        # Dicts with keys that are not str, too deep, an unknown type, an int beyond 64 bits:
        # first try the keys made str, then each item on its own.
        try:
            sent = _str_keys(items, -1)
        except _Refused:
            return _dumps_each(items, start)
        data = _orjson(sent)
        if data is None:
            return _dumps_each(items, start)
    if b"null" in data:  # None, NaN, or an infinity orjson wrote as null
        for i, item in enumerate(sent):
            if _infinite(item):
                raise EncodeError(
                    f"item {start + i} ({_describe(items[i])}) cannot be sent as JSON: {_NO_INFINITY}",
                    index=start + i,
                )
    return data


def _dumps_each(items: Sequence[Any], start: int) -> bytes:
    """The slow path: each item by the checked path, which names what breaks the rules."""
    parts = []
    for i, item in enumerate(items):
        try:
            parts.append(_checked(item, depth=0, nan_is_null=True))
        except _Refused as e:
            raise EncodeError(
                f"item {start + i} ({_describe(item)}) cannot be sent as JSON: {e}", index=start + i
            ) from None
    return b"[" + b",".join(parts) + b"]"


_SCALARS = frozenset({int, str, bool, type(None)})


def _str_keys(obj: Any, depth: int) -> Any:
    """obj with lists and tuples as lists and every dict's keys as str, by the key rules; other
    values are left to orjson. Raises _Refused for a bad key or past MAX_DEPTH."""
    t = type(obj)
    if t in _SCALARS or t is float:
        return obj
    if isinstance(obj, (list, tuple)):
        if depth >= MAX_DEPTH:
            raise _Refused("too deep")
        return [x if type(x) in _SCALARS else _str_keys(x, depth + 1) for x in obj]
    if isinstance(obj, dict):
        if depth >= MAX_DEPTH:
            raise _Refused("too deep")
        out = {
            (k if type(k) is str else str(k) if type(k) is int else _Plain.key(k)): (
                v if type(v) in _SCALARS else _str_keys(v, depth + 1)
            )
            for k, v in obj.items()
        }
        if len(out) != len(obj):
            raise _Refused("two keys are one")
        return out
    return obj


def _infinite(obj: Any) -> bool:
    """Whether obj, which orjson wrote, holds ±infinity anywhere (orjson writes it as null)."""
    t = type(obj)
    if t is float:
        return obj == _INF or obj == -_INF
    if t in _SCALARS:
        return False
    if t is tuple or t is list or t is dict or isinstance(obj, (list, tuple, dict)):
        for x in obj.values() if isinstance(obj, dict) else obj:
            tx = type(x)
            if tx is float:
                if x == _INF or x == -_INF:
                    return True
            elif tx not in _SCALARS and _infinite(x):
                return True
        return False
    if isinstance(obj, float):
        return math.isinf(obj)
    if type(obj).__module__ == "numpy":
        kind = getattr(getattr(obj, "dtype", None), "kind", "")
        if kind == "f":
            import numpy

            return bool(numpy.isinf(obj).any())
        return kind == "O" and _infinite(obj.tolist())
    try:
        return _infinite(_default(obj))  # a dataclass's fields, an enum's value
    except TypeError:
        return False


def loads(data: bytes | str) -> Any:
    """Decode JSON from Redis. Integers come back exactly, however large."""
    if orjson is None:
        return json.loads(data)
    if isinstance(data, str):
        data = data.encode()
    if _may_hold_a_big_int(data):
        return json.loads(data)  # orjson reads an int beyond 64 bits as a float
    return orjson.loads(data)


def _may_hold_a_big_int(data: bytes) -> bool:
    """Whether data may hold an integer orjson would read as a float: one beyond 2**64 - 1 or
    below -2**63, so at least 19 digits in a row, not part of a float. Such a run inside a string
    also answers yes; the standard library then reads the data, exactly but slower."""
    zeros = data.translate(_ZERO_DIGITS)
    i = zeros.find(_RUN)
    while i >= 0:
        end = i + len(_RUN)
        while end < len(zeros) and zeros[end] == 0x30:
            end += 1
        before, after = data[i - 1 : i], data[end : end + 1]
        if before != b"." and after not in (b".", b"e", b"E"):
            digits = data[i:end]  # equal lengths compare as numbers
            if before == b"-":
                if len(digits) > 19 or digits > b"9223372036854775808":
                    return True
            elif len(digits) > 20 or (len(digits) == 20 and digits > b"18446744073709551615"):
                return True
        i = zeros.find(_RUN, end)
    return False
