"""The pandas accessors against the real Go worker: shapes, index, dtypes, NaN, errors."""

from __future__ import annotations

import datetime
from pathlib import Path

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
    # NaN travels as null, which sampleadd refuses: see test_errors_name_the_label_column_and_value.
    with pytest.raises(gomap.TaskError, match="column 'x' is NaN at index 20"):
        df.gomap.apply("sampleadd", client=client, progress=False)
    got = df.gomap.apply("sampleadd", errors="return", client=client, progress=False)
    assert got.dtype == np.float64 and got[10] == 1.5 and np.isnan(got[20]) and got[30] == 3.0
    assert df.gomap.errors.loc[20, "kind"] == "arguments"
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
    # A column with NaN for the failed rows, never an object column mixing TaskErrors with values.
    pd.testing.assert_series_equal(got, pd.Series([2.0, np.nan, 4.0, np.nan], index=df.index))
    errors = df.gomap.errors
    assert list(errors.columns) == ["function", "kind", "error", "column"]
    assert errors.index.tolist() == ["q", "s"]
    assert errors.to_dict("list") == {
        "function": ["samplediv"] * 2,
        "kind": ["error"] * 2,
        "error": ["division by zero"] * 2,
        "column": [None, None],
    }


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
    df = pd.DataFrame({"text": ["a b", 5]}, index=["ok", "bad"])
    failed = df.gomap.apply("samplewords", result_type="expand", errors="return", client=client, progress=False)
    # A failed row is all NaN; its error is in df.gomap.errors, not in the result's attrs.
    assert list(failed.columns) == ["text", "words", "chars", "upper"]
    assert failed.loc["ok", "words"] == 2 and failed.loc["bad"].isna().all()
    assert failed.attrs == {} and df.attrs == {}
    assert df.gomap.errors.loc["bad"].to_dict() == {
        "function": "samplewords",
        "kind": "arguments",
        "error": df.gomap.errors.loc["bad", "error"],
        "column": "text",
    }


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
    with pytest.raises(gomap.EncodeError, match=r"column 'span' \(timedelta64\[\w+\]\) has no JSON rule.*gomap types"):
        df.gomap.apply("sampleecho", client=client, progress=False)
    df = pd.DataFrame({"ok": [1, 2], "bad": [{1}, "fine"]}, index=["first", "second"])
    with pytest.raises(gomap.EncodeError, match=r"column 'bad' at index 'first' \(position 0\): \{1\} \(set\)") as info:
        df.gomap.apply("sampleecho", client=client, progress=False)
    assert str(info.value).endswith("(see `gomap types`)") and info.value.index == 0
    assert info.value.__cause__ is None and info.value.__suppress_context__  # raised from None
    # Infinity as pandas shows it; under na_action="ignore" the position is the frame's, not the batch's.
    df = pd.DataFrame({"x": [np.nan, 1.0, np.inf]}, index=list("abc"))
    with pytest.raises(gomap.EncodeError, match=r"column 'x' at index 'c' \(position 2\): inf \(float\)") as info:
        df.gomap.apply("sampleecho", na_action="ignore", client=client, progress=False)
    assert info.value.index == 2
    s = pd.Series([np.inf], index=["z"], name="v")
    with pytest.raises(gomap.EncodeError, match=r"column 'v' at index 'z' \(position 0\): inf"):
        s.gomap.map("sampleecho", client=client, progress=False)


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


# na_action="ignore", as Series.map's.


def test_na_action_ignore_leaves_missing_rows_nan_without_sending_them(client):
    df = pd.DataFrame(
        {
            "x": [0.5, np.nan, 2.0, 4.0, 1.0, 1.0],
            "obj": ["a", "b", None, "d", "e", "f"],
            "nullable": pd.array([1, 2, 3, pd.NA, 5, 6], dtype="Int64"),
            "time": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", None, "2024-01-06"]),
        },
        index=list("uvwxyz"),
    )
    # NaN, None, <NA> and NaT rows would each reach sampleecho as null and come back as a list: they are not sent.
    got = df.gomap.apply("sampleecho", na_action="ignore", client=client, progress=False)
    assert got.index.tolist() == list("uvwxyz")
    assert [v is None or (isinstance(v, float) and np.isnan(v)) for v in got] == [False, True, True, True, True, False]
    assert got["u"] == [0.5, "a", 1, "2024-01-01T00:00:00+00:00"]
    # Numbers: the result is float64 with NaN, as df.apply gives for NaN + 1.
    sums = df.gomap.apply("sampleadd", columns=["x", "nullable"], na_action="ignore", client=client, progress=False)
    want = pd.Series([1.5, np.nan, 5.0, np.nan, 6.0, 7.0], index=df.index)
    pd.testing.assert_series_equal(sums, want)
    # Series.map's own na_action, on a Series.
    s = pd.Series([10, None, 1000], index=["a", "b", "c"], dtype="Int64", name="n")
    got = s.gomap.map("countprimes", na_action="ignore", client=client, progress=False)
    pd.testing.assert_series_equal(got, pd.Series([4.0, np.nan, 168.0], index=["a", "b", "c"], name="n"))
    # With expand, a missing row is an all-NaN row.
    words = pd.Series(["a b", None, "c"]).gomap.map(
        "samplewords", na_action="ignore", result_type="expand", client=client, progress=False
    )
    assert words["words"].tolist()[0::2] == [2, 1] and words.loc[1].isna().all()
    # Without it (the default) missing values are sent, as before.
    with pytest.raises(gomap.TaskError):
        s.gomap.map("countprimes", client=client, progress=False)


def test_na_action_ignore_on_an_all_missing_frame_sends_nothing(client, monkeypatch):
    import gomap._pandas

    def refuse(*args, **kwargs):
        raise AssertionError("no batch may be started when every row has a missing argument")

    monkeypatch.setattr(gomap._pandas, "gomap_map", refuse)
    df = pd.DataFrame({"a": [np.nan, 1.0], "b": [2.0, None]}, index=[3, 4])
    got = df.gomap.apply("sampleadd", na_action="ignore", client=client, progress=False)
    pd.testing.assert_series_equal(got, pd.Series([np.nan, np.nan], index=[3, 4]))
    assert df.gomap.errors.empty
    expanded = df.gomap.apply("samplewords", na_action="ignore", result_type="expand", client=client)
    assert expanded.index.tolist() == [3, 4] and expanded.isna().all().all()
    s = pd.Series([None, pd.NA], dtype="Int64")
    assert s.gomap.map("countprimes", na_action="ignore", client=client).isna().all()


def test_na_action_must_be_none_or_ignore(client, monkeypatch):
    import gomap._pandas

    monkeypatch.setattr(gomap._pandas, "gomap_map", lambda *a, **k: pytest.fail("sent despite a bad na_action"))
    df = pd.DataFrame({"a": [1]})
    for bad in ("drop", True, "IGNORE"):
        with pytest.raises(ValueError, match=r"na_action must be None or 'ignore'"):
            df.gomap.apply("sampleadd", na_action=bad, client=client)
        with pytest.raises(ValueError, match=r"na_action must be None or 'ignore'"):
            df["a"].gomap.map("countprimes", na_action=bad, client=client)


def test_na_action_ignore_keeps_frame_positions_in_errors(client):
    df = pd.DataFrame({"a": pd.array([pd.NA, 6, 1], dtype="Int64"), "b": [1, 3, 0]}, index=["skip", "ok", "zero"])
    with pytest.raises(gomap.TaskError, match=r"samplediv failed \(error\) on the row at index 'zero'") as info:
        df.gomap.apply("samplediv", na_action="ignore", client=client, progress=False)
    assert info.value.index == 2  # the row's position in the frame, not in what was sent
    got = df.gomap.apply("samplediv", na_action="ignore", errors="return", client=client, progress=False)
    assert np.isnan(got["skip"]) and got["ok"] == 2 and np.isnan(got["zero"])
    assert df.gomap.errors.index.tolist() == ["zero"]  # the skipped row is not an error


# Errors in pandas' words.


@pytest.mark.parametrize(
    ("column", "shown"),
    [
        (pd.Series([1.0, np.nan, 3.0]), "NaN"),
        (pd.Series(["a", None, "c"], dtype=object), "None"),
        (pd.Series([1, None, 3], dtype="Int64"), "<NA>"),
        (pd.to_datetime(pd.Series(["2024-01-01", None, "2024-01-03"])), "NaT"),
    ],
)
def test_errors_name_the_label_column_and_value(client, column, shown):
    df = pd.DataFrame({"k": [1, 2, 3], "v": column.set_axis(["p", "q", "r"])}, index=["p", "q", "r"])
    assert df["v"].dtype == column.dtype
    fn, columns = {"NaN": ("sampleadd", ["v", "k"]), "<NA>": ("countprimes", ["v"])}.get(shown, ("sampleupper", ["v"]))
    with pytest.raises(gomap.TaskError) as info:
        df.gomap.apply(fn, columns=columns, client=client, progress=False)
    e = info.value
    text = str(e)
    assert f"column 'v' is {shown} at index 'q' (position 1)" in text, text
    assert "na_action='ignore'" in text and "df.fillna(" in text and text.endswith("(see `gomap types`)")
    assert "null" not in text.split(".")[0]  # JSON's word stays out of the sentence that says what happened
    # The original fields stay: index is the row's position; argument the parameter's, from 0.
    assert (e.index, e.function, e.kind, e.argument) == (1, fn, "arguments", 0)
    assert e.error.startswith("argument 1: ") and e.batch
    assert e.__cause__ is None and e.__suppress_context__  # raised from None: no chained traceback
    assert df.gomap.errors.to_dict("index") == {
        "q": {"function": fn, "kind": "arguments", "error": e.error, "column": "v"}
    }


def test_errors_name_the_second_column_and_other_kinds(client):
    df = pd.DataFrame({"a": [6.0, 1.0], "b": [3.0, np.nan]}, index=pd.Index([7, 8], name="id"))
    with pytest.raises(gomap.TaskError, match=r"sampleadd: column 'b' is NaN at index 8 \(position 1\)") as info:
        df.gomap.apply("sampleadd", client=client, progress=False)
    assert info.value.argument == 1
    # A value of the wrong type: the Go detail, without its 1-based "argument N".
    df = pd.DataFrame({"text": ["ok", 5]}, index=["x", "y"])
    with pytest.raises(gomap.TaskError, match=r"samplewords: column 'text' is 5 at index 'y' \(position 1\), which"):
        df.gomap.apply("samplewords", client=client, progress=False)
    # An int column that became float64 through a missing value: how to get ints back.
    df = pd.DataFrame({"n": [10.0, np.nan]}, index=["a", "b"])
    with pytest.raises(gomap.TaskError, match=r"column 'n' is 10.0 at index 'a' .*want int64.*\.astype\('Int64'\)"):
        df.gomap.apply("countprimes", chunksize=2, client=client, progress=False)  # one chunk: row 'a' first
    ints = df.astype("Int64").gomap.apply("countprimes", na_action="ignore", client=client, progress=False)
    assert ints["a"] == 4 and np.isnan(ints["b"])
    # The argument count: no column to name.
    df = pd.DataFrame({"a": [1], "b": [2], "c": [3]}, index=["only"])
    with pytest.raises(gomap.TaskError, match=r"the row at index 'only' \(position 0\) does not fit") as info:
        df.gomap.apply("sampleadd", client=client, progress=False)
    assert info.value.argument is None and "columns=[...]" in str(info.value)
    # The function's own error: the row's values, and errors="return" as the way out.
    df = pd.DataFrame({"a": [6, 1], "b": [3, 0]}, index=["p", "q"])
    with pytest.raises(gomap.TaskError) as info:
        df.gomap.apply("samplediv", client=client, progress=False)
    assert str(info.value) == (
        "samplediv failed (error) on the row at index 'q' (position 1) (a=1, b=0): division by zero. "
        "Pass errors='return' to get NaN for such rows and the failures in df.gomap.errors"
    )
    assert (info.value.index, info.value.argument, info.value.kind) == (1, None, "error")
    assert df.gomap.errors.loc["q", "column"] is None
    # The message and the new field survive pickling (errors cross processes).
    import pickle

    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value) and again.argument is None and again == info.value


def test_series_errors_name_the_series(client):
    s = pd.Series([10, None], index=["a", "b"], name="n", dtype="Int64")
    with pytest.raises(gomap.TaskError, match=r"countprimes: column 'n' is <NA> at index 'b' \(position 1\)") as info:
        s.gomap.map("countprimes", client=client, progress=False)
    assert "series.fillna(" in str(info.value) and info.value.__suppress_context__
    got = s.gomap.map("countprimes", errors="return", client=client, progress=False)
    pd.testing.assert_series_equal(got, pd.Series([4.0, np.nan], index=["a", "b"], name="n"))
    assert s.gomap.errors.index.tolist() == ["b"] and s.gomap.errors.loc["b", "column"] == "n"
    unnamed = pd.Series(["x", 3], index=[0, 1])
    with pytest.raises(gomap.TaskError, match=r"sampleupper: the Series is 3 at index 1 \(position 1\)"):
        unnamed.gomap.map("sampleupper", client=client, progress=False)


def test_argument_errors_point_to_gomap_types(client):
    with pytest.raises(gomap.TaskError) as info:
        gomap.map("samplewords", [5], client=client, progress=False)
    assert info.value.argument == 0 and str(info.value).endswith("(see `gomap types`)")
    with pytest.raises(gomap.TaskError) as info:
        gomap.map("samplediv", [(1, 0)], client=client, progress=False)
    assert info.value.argument is None and "gomap types" not in str(info.value)


# df.gomap.errors


def test_errors_is_kept_on_the_frame_whatever_the_accessor_object(client):
    from gomap._pandas import DataFrameAccessor, SeriesAccessor

    df = pd.DataFrame({"a": [6, 1], "b": [3, 0]}, index=["p", "q"])
    with pytest.raises(AttributeError, match=r"no df.gomap.apply has finished on this object yet"):
        _ = df.gomap.errors
    df.gomap.apply("samplediv", errors="return", client=client, progress=False)
    # pandas 2 caches one accessor object per frame; pandas 3 makes a new one on each access.
    # Either way the errors are the frame's: a brand-new accessor object reads them.
    assert DataFrameAccessor(df).errors.index.tolist() == ["q"]
    assert df.gomap.errors.index.tolist() == ["q"]
    # Another frame (a selection is a new object) has none; a new call replaces them.
    with pytest.raises(AttributeError, match="Keep it in a variable"):
        _ = df[["a", "b"]].gomap.errors
    df.gomap.apply("sampleadd", client=client, progress=False)
    empty = df.gomap.errors
    assert empty.empty and list(empty.columns) == ["function", "kind", "error", "column"]
    # errors="raise" leaves the row that raised.
    with pytest.raises(gomap.TaskError):
        df.gomap.apply("samplediv", client=client, progress=False)
    assert df.gomap.errors.index.tolist() == ["q"]
    s = pd.Series([10, 100], name="n")
    with pytest.raises(AttributeError, match=r"no series.gomap.map has finished"):
        _ = s.gomap.errors
    s.gomap.map("countprimes", client=client, progress=False)
    assert SeriesAccessor(s).errors.empty
    # Nothing lands in .attrs, which pandas copies into every derived object.
    assert df.attrs == {} and s.attrs == {}


# docs/types.md ships in the package.


def test_gomap_types_prints_docs_types(capsys):
    from gomap import _cli

    assert _cli.main(["types"]) == 0
    out = capsys.readouterr().out
    assert out == (Path(__file__).resolve().parent.parent / "docs" / "types.md").read_text(encoding="utf-8")


def test_wheel_ships_types_md(tmp_path):
    """The built wheel has docs/types.md as gomap/types.md (pip builds it in about two seconds)."""
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parent.parent
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if run.returncode != 0 and "hatchling" in run.stderr and "No matching distribution" in run.stderr:
        pytest.skip("pip cannot fetch the build backend (hatchling) here: " + run.stderr[-200:])
    assert run.returncode == 0, run.stderr
    (wheel,) = tmp_path.glob("gomap-*.whl")
    with zipfile.ZipFile(wheel) as z:
        shipped = z.read("gomap/types.md").decode("utf-8")
    assert shipped == (root / "docs" / "types.md").read_text(encoding="utf-8")


def test_datetime_columns_are_rfc3339_whatever_their_precision(client):
    # numpy's unit="auto" would write "2024-01-02" and "2024-01-01T03:00", which time.Time refuses.
    times = pd.Series(
        pd.to_datetime(["2024-01-01 03:00", "2024-01-02", None, "2024-01-03 04:05:06.5"], format="ISO8601")
    )
    got = pd.DataFrame({"t": times}).gomap.apply("sampleecho", client=client, progress=False).tolist()
    assert got == [
        ["2024-01-01T03:00:00.000+00:00"],
        ["2024-01-02T00:00:00.000+00:00"],
        [None],
        ["2024-01-03T04:05:06.500+00:00"],
    ]
