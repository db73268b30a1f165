"""The pandas accessors against the real Go worker: shapes, index, dtypes, NaN, errors."""

from __future__ import annotations

import datetime

import pytest

import gomap

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")


@pytest.fixture
def frame():
    return pd.DataFrame({"a": [1, 2, 3, 4], "b": [10, 20, 30, 40]}, index=["w", "x", "y", "z"])


def test_apply_is_df_apply_axis_1(client, frame):
    got = frame.gomap.apply("sampleadd", columns=["a", "b"], client=client, progress=False)
    want = frame.apply(lambda r: r["a"] + r["b"], axis=1)
    pd.testing.assert_series_equal(got, want)
    assert got.dtype == np.int64
    # All columns, in order, by default.
    pd.testing.assert_series_equal(frame.gomap.apply("sampleadd", client=client, progress=False), want)
    # Column order is argument order.
    div = frame.gomap.apply("samplediv", columns=["b", "a"], client=client, progress=False)
    assert div.tolist() == [10, 10, 10, 10]


@pytest.mark.parametrize(
    "index",
    [
        pd.Index([5, 5, 7, 9]),  # duplicated
        pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1), ("b", 2)]),
        pd.date_range("2024-01-01", periods=4),
    ],
)
def test_index_is_preserved(client, frame, index):
    frame.index = index
    got = frame.gomap.apply("sampleadd", client=client, progress=False)
    assert got.index.equals(index)
    assert got.tolist() == [11, 22, 33, 44]


def test_empty_frame_gives_an_empty_series_like_pandas(client):
    empty = pd.DataFrame({"a": pd.Series([], dtype="int64"), "b": pd.Series([], dtype="int64")})
    got = empty.gomap.apply("sampleadd", client=client, progress=False)
    pd.testing.assert_series_equal(got, empty.apply(lambda r: r["a"] + r["b"], axis=1))


def test_float_dtypes_and_nan(client):
    df = pd.DataFrame({"x": [0.5, np.nan, 2.0], "y": [1.0, 1.0, 1.0]}, index=[10, 20, 30])
    # NaN travels as null: a float64 parameter refuses it, naming the argument.
    with pytest.raises(gomap.TaskError, match="want a number, got null") as info:
        df.gomap.apply("sampleadd", client=client, progress=False)
    assert info.value.index == 1
    got = df.gomap.apply("sampleadd", errors="return", client=client, progress=False)
    assert got[10] == 1.5 and got[30] == 3.0
    assert isinstance(got[20], gomap.TaskError) and got[20].kind == "arguments"
    assert df.gomap.apply("sampleecho", columns=["x"], client=client, progress=False).tolist() == [
        [0.5],
        [None],
        [2.0],
    ]
    clean = df.dropna()
    assert clean.gomap.apply("sampleadd", client=client, progress=False).dtype == np.float64


def test_errors_return_lands_on_the_right_rows(client):
    df = pd.DataFrame({"a": [6, 1, 8, 9], "b": [3, 0, 2, 0]}, index=["p", "q", "r", "s"])
    got = df.gomap.apply("samplediv", errors="return", chunksize=1, client=client, progress=False)
    assert got["p"] == 2 and got["r"] == 4
    assert [got[k].index for k in ("q", "s")] == [1, 3]
    assert all(got[k].error == "division by zero" for k in ("q", "s"))


def test_expand_records_and_lists(client):
    df = pd.DataFrame({"text": ["hello big world", "é", "a b"]}, index=[7, 8, 9])
    out = df.gomap.apply("samplewords", result_type="expand", client=client, progress=False)
    assert list(out.columns) == ["text", "words", "chars", "upper"]
    assert out.index.tolist() == [7, 8, 9]
    assert out["words"].tolist() == [3, 1, 2] and out["words"].dtype == np.int64
    lists = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).gomap.apply(
        "sampleecho", result_type="expand", client=client, progress=False
    )
    assert lists.to_dict("list") == {0: [1, 2], 1: ["x", "y"]}
    failed = pd.DataFrame({"a": [4, 1], "b": [2, 0]}).gomap.apply(
        "samplediv", result_type="expand", errors="return", client=client, progress=False
    )
    assert failed.attrs["gomap_errors"][1].error == "division by zero"


def test_series_map(client):
    s = pd.Series([10, 100, 1000], index=list("abc"), name="n")
    got = s.gomap.map("countprimes", client=client, progress=False)
    pd.testing.assert_series_equal(got, pd.Series([4, 25, 168], index=list("abc"), name="n"))
    # A list value is one argument, as with Series.map.
    lists = pd.Series([[1, 2], (3,), "s"])
    assert lists.gomap.map("sampleecho", client=client, progress=False).tolist() == [[[1, 2]], [[3]], ["s"]]
    words = pd.Series(["a b", "c"]).gomap.map("samplewords", result_type="expand", client=client, progress=False)
    assert words["words"].tolist() == [2, 1]


def test_types_across_the_wire(client):
    """Every row of the table in docs/types.md, as sampleecho sees it."""
    df = pd.DataFrame(
        {
            "int": pd.Series([1, 2**62], dtype="int64"),
            "uint": pd.Series([1, 2**63], dtype="uint64"),
            "float": [0.1, 1e16],
            "bool": [True, False],
            "str": pd.Series(["a", "é"], dtype="str"),
            "object": ["x", None],
            "nullable": pd.Series([1, None], dtype="Int64"),
            "category": pd.Categorical(["lo", "hi"]),
            "time": pd.to_datetime(["2024-01-02 03:04:05", None]),
            "tz": pd.to_datetime(["2024-01-02 03:04:05", "2024-06-01 00:00:00"]).tz_localize("Europe/Paris"),
        }
    )
    got = df.gomap.apply("sampleecho", client=client, progress=False).tolist()
    assert got == [
        [1, 1, 0.1, True, "a", "x", 1, "lo", "2024-01-02T03:04:05+00:00", "2024-01-02T03:04:05+01:00"],
        [2**62, 2**63, 1e16, False, "é", None, None, "hi", None, "2024-06-01T00:00:00+02:00"],
    ]


def test_values_without_a_rule_name_their_column(client):
    df = pd.DataFrame({"ok": [1, 2], "span": pd.to_timedelta([1, 2], unit="s")})
    with pytest.raises(gomap.EncodeError, match=r"column 'span' \(timedelta64\[\w+\]\) has no JSON rule"):
        df.gomap.apply("sampleecho", client=client, progress=False)
    df = pd.DataFrame({"ok": [1, 2], "bad": [{1}, "fine"]}, index=["first", "second"])
    with pytest.raises(gomap.EncodeError, match=r"row 0 \(index 'first'\), column 'bad': \{1\} \(set\)"):
        df.gomap.apply("sampleecho", client=client, progress=False)


def test_rows_are_read_column_wise_not_row_by_row(client, frame, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("rows must not be built one by one")

    for method in ("iterrows", "itertuples", "apply"):
        monkeypatch.setattr(pd.DataFrame, method, refuse)
    monkeypatch.setattr(pd.DataFrame, "iloc", property(refuse))
    assert frame.gomap.apply("sampleadd", client=client, progress=False).tolist() == [11, 22, 33, 44]


def test_as_frame_and_to_frame(client):
    recs = gomap.map("samplewords", ["a b", "c"], as_frame=True, client=client, progress=False)
    assert list(recs.columns) == ["text", "words", "chars", "upper"] and recs["words"].tolist() == [2, 1]
    sums = gomap.map("sampleadd", [(1, 2)], as_frame=True, client=client, progress=False)
    assert sums.to_dict("list") == {"sampleadd": [3]}
    assert gomap.map("sampleadd", [(1, 2)], client=client, progress=False) == [3]  # lists stay lists
    assert gomap.to_frame([{"x": 1}, {"x": 2}])["x"].tolist() == [1, 2]


def test_naive_datetimes_are_utc_everywhere(client):
    echo = gomap.function("sampleecho", client=client)
    assert echo(datetime.datetime(2024, 1, 2, 3, 4, 5)) == ["2024-01-02T03:04:05+00:00"]
    assert echo(pd.Timestamp("2024-01-02 03:04:05")) == ["2024-01-02T03:04:05+00:00"]


@pytest.mark.parametrize(
    "code",
    [
        "import pandas as pd, gomap",  # pandas first
        "import gomap, pandas as pd",  # gomap first: registered once pandas is imported
        "import gomap; gomap.to_frame([{'a': 1}]); import pandas as pd",  # pandas first imported by gomap
    ],
)
def test_accessors_exist_whatever_the_import_order(code):
    import subprocess
    import sys

    check = code + "; assert hasattr(pd.DataFrame, 'gomap') and hasattr(pd.Series, 'gomap')"
    subprocess.run([sys.executable, "-c", check], check=True, timeout=120)
