"""The JSON rules of items and plain job arguments (gomap/_codec.py, docs/types.md): each rule by a
real encoder call, with orjson and with the standard-library fallback, then the ones that cross the
wire against the real worker."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest

import gomap
from gomap import TaskError, _codec


@pytest.fixture(params=["orjson", "stdlib"])
def codec(request, monkeypatch):
    """Run a test with orjson and with the standard-library fallback."""
    if request.param == "stdlib":
        monkeypatch.setattr(_codec, "orjson", None)
    return request.param


def on_both_paths(fn: Callable[[], Any]) -> Any:
    """fn's answer with orjson, checked to be the standard-library fallback's too."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(_codec, "orjson", None)
        fallback = fn()
    assert fn() == fallback
    return fallback


def nested(depth: int) -> Any:
    """depth lists, one inside the other, around 1: nested(2) is [[1]]."""
    x: Any = 1
    for _ in range(depth):
        x = [x]
    return x


class Point(NamedTuple):
    x: int
    y: int


@dataclasses.dataclass
class Record:
    name: str
    score: float
    _cache: int = 0


class Colour(enum.Enum):
    RED = "red"


def test_deep_nesting_is_an_encode_error_naming_the_item(codec):
    items = [(1, 2)] * 5 + [nested(100_000)]
    with pytest.raises(gomap.EncodeError, match=r"item 15 \(list\).*more than 253 levels deep") as info:
        _codec.dumps_items(items, 10)
    assert info.value.index == 15
    # The limit is the same on both paths and in every chunk: 253 levels, the item's own list counted.
    assert _codec.dumps_items([nested(253)], 0) == b"[" * 254 + b"1" + b"]" * 254
    with pytest.raises(gomap.EncodeError, match=r"item 3 \(list\).*253"):
        _codec.dumps_items([1, 2, 3, nested(254)], 0)
    with pytest.raises(gomap.EncodeError, match=r"item 0 .*253"):  # with another reason to leave the fast path
        _codec.dumps_items([nested(254), 2**70], 0)
    with pytest.raises(gomap.EncodeError, match="253"):
        _codec.dumps(nested(254))


def test_deep_plain_job_arguments_are_an_encode_error():
    with pytest.raises(gomap.EncodeError, match=r"argument 2 of Store \(list\).*more than 253 levels deep") as info:
        _codec.dumps_resque("Store", [1, nested(100_000)])
    assert info.value.index is None
    # The list of arguments is the first level, as an item's tuple is.
    assert _codec.dumps_resque("Store", [nested(252)]).startswith(b'{"class":"Store","args":' + b"[" * 253 + b"1]")
    with pytest.raises(gomap.EncodeError, match="253"):
        _codec.dumps_resque("Store", [nested(253)])


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (math.inf, "dict key inf is not finite"),
        (-math.inf, "dict key -inf is not finite"),
        (math.nan, "dict key nan is not finite"),
        (np.float64(math.inf), "dict key inf is not finite"),
        (None, r"dict key None \(NoneType\) has no JSON form: keys must be str, int or finite float"),
        (True, r"dict key True \(bool\) has no JSON form"),
        (datetime.date(2024, 1, 2), r"dict key datetime.date\(2024, 1, 2\) \(datetime.date\) has no JSON form"),
        ((1, 2), r"dict key \(1, 2\) \(tuple\) has no JSON form"),
    ],
)
def test_dict_keys_other_than_str_int_and_finite_float_are_refused(codec, key, reason):
    with pytest.raises(gomap.EncodeError, match=r"item 7 \(tuple\) cannot be sent as JSON: " + reason) as info:
        _codec.dumps_items([(1,), ("a", {"ok": 1, key: 2})], 6)
    assert info.value.index == 7
    with pytest.raises(gomap.EncodeError, match=r"argument 1 of Job \(dict\) cannot be sent as JSON: " + reason):
        _codec.dumps_resque("Job", [{key: 1}])


def test_dict_keys_that_become_one_string_are_refused(codec):
    with pytest.raises(gomap.EncodeError, match=r"item 0 \(dict\).*dict keys 1 and '1' are both the JSON key '1'"):
        _codec.dumps_items([{1: "a", "1": "b"}], 0)
    with pytest.raises(gomap.EncodeError, match=r"item 1 \(list\).*keys 2.5 and '2.5'"):
        _codec.dumps_items([{}, [{2.5: 1, "2.5": 2}]], 0)


def test_dict_keys_str_int_and_finite_float(codec):
    item = {"s": 1, 7: 2, -(2**70): 3, np.int64(8): 4, 1.5: 5, 1e-7: 6, np.float32(0.25): 7}
    want = b'[{"s":1,"7":2,"-1180591620717411303424":3,"8":4,"1.5":5,"1e-07":6,"0.25":7}]'
    assert _codec.dumps_items([item], 0) == want
    assert _codec.dumps_resque("Job", [item]) == b'{"class":"Job","args":' + want + b"}"


def test_ints_travel_exactly_both_ways():
    values = [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 2**200, -(2**200)]
    data = on_both_paths(lambda: _codec.dumps_items(values, 0))
    assert data == ("[" + ",".join(str(v) for v in values) + "]").encode()
    back = on_both_paths(lambda: _codec.loads(data))
    assert back == values and all(type(v) is int for v in back)
    assert _codec.loads(b'{"values":[18446744073709551616,1.5,"x"],"errors":[]}')["values"][0] == 2**64
    assert _codec.loads("[-9223372036854775809, 0.000123456789012345678]") == [-(2**63) - 1, 0.000123456789012345678]


def test_only_a_long_integer_takes_the_exact_decoder():
    """orjson reads everything that cannot be a big int; the standard library reads the rest."""
    may = _codec._may_hold_a_big_int
    assert may(b"[18446744073709551616]") and may(b"[-9223372036854775809]") and may(b'["98765432109876543210"]')
    assert not may(b"[18446744073709551615, -9223372036854775808, 1234567890123456789, 1]")
    assert not may(b"[0.00012345678901234567, 1.2345678901234567e+300, 12345678901234567.5]")


def test_a_namedtuple_is_an_array():
    assert on_both_paths(lambda: _codec.dumps_items([Point(1, 2), (3, 4)], 0)) == b"[[1,2],[3,4]]"
    assert on_both_paths(lambda: _codec.dumps_items([[Point(1, 2)], {"p": Point(3, 4)}], 0)) == b'[[[1,2]],{"p":[3,4]}]'
    assert on_both_paths(lambda: _codec.dumps(Point(1, 2))) == b"[1,2]"
    assert _codec.dumps_resque("Job", [Point(1, 2)]) == b'{"class":"Job","args":[[1,2]]}'


def test_dataclasses_enums_and_uuids_are_the_same_on_both_paths():
    items = [Record("a", 0.5), Colour.RED, uuid.UUID(int=1), datetime.time(3, 4, 5)]
    assert on_both_paths(lambda: _codec.dumps_items(items, 0)) == (
        b'[{"name":"a","score":0.5},"red","00000000-0000-0000-0000-000000000001","03:04:05"]'
    )


def test_infinity_anywhere_is_refused(codec):
    for item in [Record("a", math.inf), (1, math.inf), {"k": [-math.inf]}, {3: math.inf}, np.array([1.0, np.inf])]:
        with pytest.raises(gomap.EncodeError, match=r"item 4 .*infinity has no JSON form") as info:
            _codec.dumps_items([(1, None), (math.nan,), item], 2)
        assert info.value.index == 4


def test_nan_and_none_stay_null(codec):
    assert _codec.dumps_items([(1, None, math.nan), {2: math.nan}], 0) == b'[[1,null,null],{"2":null}]'
    with pytest.raises(gomap.EncodeError, match=r"argument 1 of Job \(float\).*NaN"):
        _codec.dumps_resque("Job", [math.nan])


# -- across the wire, against the real worker ------------------------------------------------


def test_namedtuple_items_are_positional_arguments(client):
    assert gomap.map("sampleadd", [Point(1, 2), Point(x=3, y=4)], client=client, progress=False) == [3, 7]
    echo = gomap.function("sampleecho", client=client)
    assert echo.map([Point(1, 2), [Point(3, 4)]], progress=False) == [[1, 2], [[3, 4]]]


def test_big_ints_round_trip_exactly(client):
    echo = gomap.function("sampleecho", client=client)
    values = [2**63, 2**64 - 1, 2**64, -(2**63) - 1, 2**200]
    assert echo.map([(v,) for v in values], progress=False) == [[v] for v in values]
    assert echo(*values) == values
    # sampleadd adds int64s; an integer beyond int64 is an arguments error, not a float.
    with pytest.raises(TaskError, match=r"argument 1: the integer 9223372036854775808 is beyond int64") as info:
        gomap.function("sampleadd", client=client)(2**63, 0)
    assert info.value.kind == "arguments"
    with pytest.raises(TaskError, match=r"argument 2: the integer -9223372036854775809 is beyond int64"):
        gomap.function("sampleadd", client=client)(0, -(2**63) - 1)
