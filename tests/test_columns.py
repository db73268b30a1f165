"""Columnar frames: df.gomap.apply sends numeric, bool and time columns as columnar chunks
(docs/protocol.md, "Columnar chunks"), and every other frame, or a pool with an older worker, by
rows. Both paths must give the same arguments, results, dtypes and errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

import gomap
from gomap import _pandas

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")


@pytest.fixture
def spy(monkeypatch):
    """Counts the columnar chunks encoded, and can force the row path."""

    class Spy:
        chunks = 0

        def rows_only(self) -> None:
            monkeypatch.setattr(_pandas, "_reads_columns", lambda fn, options: False)

    s = Spy()
    encode = _pandas._ColumnChunk.gomap_columns

    def counting(self: Any) -> bytes:
        s.chunks += 1
        return encode(self)

    monkeypatch.setattr(_pandas._ColumnChunk, "gomap_columns", counting)
    return s


def both_paths(spy, monkeypatch, call):
    """call() on the columnar path, then on the row path: both results, and the chunks sent by columns."""
    columnar = call()
    chunks = spy.chunks
    with monkeypatch.context() as m:
        m.setattr(_pandas, "_reads_columns", lambda fn, options: False)
        rows = call()
    assert spy.chunks == chunks, "the row path sent a columnar chunk"
    return columnar, rows, chunks


COLUMNAR = {
    "int64": pd.Series([1, -(2**62), 2**62, 0], dtype="int64"),
    "int32": pd.Series([1, -5, 2**31 - 1, 0], dtype="int32"),
    "int8": pd.Series([1, -5, 127, 0], dtype="int8"),
    "uint64": pd.Series([1, 2**63, 2**64 - 1, 0], dtype="uint64"),
    "float64": pd.Series([0.1, np.nan, 1e16, -0.0]),
    "float64 tiny and huge": pd.Series([1.5e-05, 1e20, -2.5e300, 5e-324]),
    "float32": pd.Series([0.1, np.nan, 3.5, 1e-3], dtype="float32"),
    "bool": pd.Series([True, False, True, True]),
    "datetime s": pd.to_datetime(
        format="ISO8601", arg=["2024-01-02 03:04:05", None, "2024-01-02 00:00:00", "1970-01-01 00:00:00"]
    ),
    "datetime ns": pd.to_datetime(
        format="ISO8601", arg=["2024-01-02 03:04:05.123456789", None, "2024-01-02 00:00:00", "1970-01-01 00:00:00"]
    ),
    "datetime tz": pd.to_datetime(
        format="ISO8601", arg=["2024-01-02 03:04:05", None, "2024-06-01 00:00:00", "2024-12-31 00:00:00"]
    ).tz_localize("Europe/Paris"),
}

ROWS = {
    "object": pd.Series(["x", None, 1, [1, 2]], dtype=object),
    "str": pd.Series(["a", "é", "", "d"], dtype="str"),
    "Int64": pd.Series([1, None, 3, 4], dtype="Int64"),
    "boolean": pd.Series([True, None, False, True], dtype="boolean"),
    "category": pd.Categorical(["lo", "hi", "lo", None]),
    "float with infinity": pd.Series([1.0, np.inf, 2.0, 3.0]),
}


def expected(col: Any) -> list[list[Any]]:
    """What sampleecho returns for the rows of (col, 0…3): the column's values by the rules of
    docs/types.md (column_values), a missing value as None."""
    values = [None if _pandas._is_missing(v) else v for v in _pandas.column_values(col)]
    return [[v, n] for n, v in enumerate(values)]


@pytest.mark.parametrize("name", list(COLUMNAR))
def test_every_columnar_dtype_arrives_as_the_row_path_sends_it(client, spy, monkeypatch, name):
    df = pd.DataFrame({"x": COLUMNAR[name], "n": np.arange(4)}).set_axis(list("pqrs"))
    columnar, rows, chunks = both_paths(
        spy, monkeypatch, lambda: df.gomap.apply("sampleecho", client=client, progress=False)
    )
    assert chunks > 0
    pd.testing.assert_series_equal(columnar, rows)
    # And both are what docs/types.md says: the column's values by column_values' rules.
    assert rows.tolist() == expected(df["x"])


@pytest.mark.parametrize("name", list(ROWS))
def test_other_columns_take_the_row_path(client, spy, name):
    df = pd.DataFrame({"x": ROWS[name], "n": np.arange(4)})
    if name == "float with infinity":
        with pytest.raises(gomap.EncodeError, match=r"column 'x' at index 1 \(position 1\): inf \(float\)"):
            df.gomap.apply("sampleecho", client=client, progress=False)
    else:
        got = df.gomap.apply("sampleecho", client=client, progress=False)
        assert got.tolist() == expected(df["x"])
    assert spy.chunks == 0


def test_a_numeric_series_travels_as_one_column(client, spy, monkeypatch):
    s = pd.Series([10, 100, 1000, 7], index=list("abcd"), name="n")
    columnar, rows, chunks = both_paths(spy, monkeypatch, lambda: s.gomap.map("countprimes", client=client))
    assert chunks > 0
    pd.testing.assert_series_equal(columnar, rows)
    assert columnar.tolist() == [4, 25, 168, 4] and columnar.name == "n"
    floats = pd.Series([0.5, np.nan], index=["p", "q"], name="v")
    with pytest.raises(gomap.TaskError, match=r"column 'v' is NaN at index 'q' \(position 1\)"):
        floats.gomap.map("samplesleep", client=client, progress=False)
    ignored = floats.gomap.map("sampleecho", na_action="ignore", client=client, progress=False)
    assert ignored.tolist()[0] == [0.5] and pd.isna(ignored["q"])


def test_many_chunks_keep_the_order_and_the_index(client, spy, monkeypatch):
    n = 1000
    i = np.arange(n)
    df = pd.DataFrame({"a": i, "b": (i * 7919) % 1000003}, index=pd.Index(i * 3 + 1, name="k"))
    columnar, rows, chunks = both_paths(
        spy, monkeypatch, lambda: df.gomap.apply("sampleadd", chunksize=37, client=client, progress=False)
    )
    assert chunks == -(-n // 37)
    pd.testing.assert_series_equal(columnar, df["a"] + df["b"], check_names=False)
    pd.testing.assert_series_equal(columnar, rows)
    assert columnar.dtype == np.int64 and columnar.index.equals(df.index)


def test_result_dtypes_match_the_row_path(client, spy, monkeypatch):
    df = pd.DataFrame({"x": [1.5, 2.0, 0.25], "y": [2.0, 1.0, 0.5], "i": [7, 9, -4], "j": [2, 3, 1]})
    for fn, cols in (("sampleadd", ["x", "y"]), ("samplediv", ["i", "j"]), ("sampleecho", ["x"])):
        columnar, rows, _ = both_paths(
            spy, monkeypatch, lambda fn=fn, cols=cols: df.gomap.apply(fn, columns=cols, client=client, progress=False)
        )
        pd.testing.assert_series_equal(columnar, rows)
        assert spy.chunks > 0


def test_missing_values_and_errors_name_index_and_column(client, spy, monkeypatch):
    df = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0], "b": [1.0, 2.0, 0.0, np.nan]}, index=["w", "x", "y", "z"])
    with pytest.raises(gomap.TaskError, match=r"sampleadd: column 'a' is NaN at index 'x' \(position 1\)") as info:
        df.head(3).gomap.apply("sampleadd", client=client, progress=False)
    assert info.value.index == 1 and info.value.argument == 0
    ints = pd.DataFrame({"a": [4, 5, 6], "b": [2, 0, 1]}, index=["p", "q", "r"])
    with pytest.raises(gomap.TaskError, match=r"samplediv failed \(error\) on the row at index 'q' \(position 1\)"):
        ints.gomap.apply("samplediv", client=client, progress=False)
    assert spy.chunks > 0

    def returned():
        got = df.gomap.apply("sampleadd", errors="return", chunksize=1, client=client, progress=False)
        return got, df.gomap.errors

    (got_c, errors_c), (got_r, errors_r), _ = both_paths(spy, monkeypatch, returned)
    pd.testing.assert_series_equal(got_c, got_r)
    pd.testing.assert_frame_equal(errors_c, errors_r)
    assert got_c.isna().tolist() == [False, True, False, True]
    assert errors_c["column"].tolist() == ["a", "b"] and errors_c.index.tolist() == ["x", "z"]

    ignored_c, ignored_r, _ = both_paths(
        spy, monkeypatch, lambda: df.gomap.apply("sampleadd", na_action="ignore", client=client, progress=False)
    )
    pd.testing.assert_series_equal(ignored_c, ignored_r)
    assert ignored_c.tolist()[0] == 2.0 and ignored_c.tolist()[2] == 3.0 and ignored_c.isna().sum() == 2


def test_expand_and_empty_frames(client, spy, monkeypatch):
    df = pd.DataFrame({"a": [1, 2], "b": [True, False]}, index=[5, 6])
    expand_c, expand_r, chunks = both_paths(
        spy, monkeypatch, lambda: df.gomap.apply("sampleecho", result_type="expand", client=client, progress=False)
    )
    pd.testing.assert_frame_equal(expand_c, expand_r)
    assert chunks > 0
    empty = pd.DataFrame({"a": pd.Series([], dtype="int64"), "b": pd.Series([], dtype="int64")})
    empty_c, empty_r, _ = both_paths(spy, monkeypatch, lambda: empty.gomap.apply("sampleadd", client=client))
    pd.testing.assert_series_equal(empty_c, empty_r)


@pytest.mark.parametrize(
    "values",
    [
        [1, 2, 3],
        [1.5, 2.0],
        [1, 2.5],
        [True, False],
        [True, 2],
        [1, None],
        [2**63, 1],
        [2**70],
        ["a", 1],
        [[1], [2]],
        [1.0, None],
    ],
)
def test_numeric_results_get_the_dtype_pandas_infers(values):
    index = pd.RangeIndex(len(values))
    pd.testing.assert_series_equal(_pandas._result(values, index, None), pd.Series(values, index=index))


@pytest.mark.parametrize(
    "chunks",
    [
        [[1, 2], [3]],
        [[1, 2], [3.5]],
        [[1.5], [2.5, 3.0]],
        [[True], [False, True]],
        [[True], [2]],
        [[1], [None]],
        [[1], ["a"]],
        [[2**62], [1.5]],
        [[1], [2**64 - 1]],
        [],
    ],
)
def test_chunks_join_into_the_dtype_pandas_infers(chunks):
    # Each chunk's results become an array as they arrive; joined, they give what the Series
    # constructor gives for all the values at once.
    parts = [a if (a := _pandas._numeric(values)) is not None else values for values in chunks]
    everything = [v for values in chunks for v in values]
    index = pd.RangeIndex(len(everything))
    got = _pandas._result(_pandas._joined(parts), index, None)
    pd.testing.assert_series_equal(got, _pandas._result(everything, index, None))
    if everything:
        pd.testing.assert_series_equal(got, pd.Series(everything, index=index))


def test_options_pass_through_the_columnar_path(client, spy):
    df = pd.DataFrame({"a": np.arange(50), "b": np.arange(50)})
    got = df.gomap.apply("sampleadd", chunksize=7, timeout=30, item_timeout=5, queue="sampleadd", client=client)
    assert got.tolist() == list(range(0, 100, 2)) and spy.chunks == 8
    with pytest.raises(TypeError, match="bogus"):
        df.gomap.apply("sampleadd", bogus=1, client=client, progress=False)
    slow = pd.DataFrame({"s": np.full(4, 5.0)})
    with pytest.raises(gomap.Timeout):
        slow.gomap.apply("samplesleep", chunksize=1, timeout=0.3, client=client, progress=False)


def test_a_pool_with_an_older_worker_gets_rows(fresh_redis, start_worker, spy):
    start_worker(fresh_redis.url)
    with gomap.Client(fresh_redis.url) as client:
        df = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
        assert df.gomap.apply("sampleadd", client=client, progress=False).tolist() == [4, 6]
        sent = spy.chunks
        assert sent > 0
        # A worker of protocol version 1 reads no columns: one in the pool sends every frame by rows.
        r = fresh_redis.redis
        proc = "old-host:1"
        r.hset("goworker:gomap:workers", proc, json.dumps({"id": proc, "queues": ["other"], "version": 1}))
        assert df.gomap.apply("sampleadd", client=client, progress=False).tolist() == [4, 6]
        assert spy.chunks == sent
        r.hdel("goworker:gomap:workers", proc)
        assert df.gomap.apply("sampleadd", client=client, progress=False).tolist() == [4, 6]
        assert spy.chunks > sent


def test_list_batches_still_send_row_chunks(client, spy):
    # gomap.map's chunks are "items" chunks of protocol version 1, served as before.
    assert gomap.map("sampleadd", [(1, 2), (3, 4)], client=client, progress=False) == [3, 7]
    assert spy.chunks == 0
