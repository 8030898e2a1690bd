"""persist → load through pandas, polars and pyarrow: exact values, ranges, merges, extras."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from conftest import DAY_NS, HOUR_NS, MINUTE_NS, assert_frame_equal, frame

import barvault

EXACT = [8.71e-06, -37.63, 1e300, -0.0, 5e-324, 123456789.123456789, 0.1 + 0.2]


def exact_frame() -> pd.DataFrame:
    """The values the store promises to keep bit for bit, at nanosecond timestamps before
    and after the epoch, with an extra column of NaNs."""
    ts = pd.DatetimeIndex(
        np.array(
            [-1, 1, 1_700_000_000_123_456_789, 1_700_000_000_123_456_790, 1_700_000_060_000_000_000,
             1_800_000_000_000_000_001, 4_102_444_800_999_999_999],
            dtype="int64",
        ),
        tz="UTC",
        name="timestamp",
    ).as_unit("ns")
    prices = np.array(EXACT)
    return pd.DataFrame(
        {
            "open": prices,
            "high": prices,
            "low": prices,
            "close": prices,
            "volume": np.array([0.0, 1.0, 2.5, 1e15, 3.0, 9007199254740993.0, 7.0]),
            "adj_close": [np.nan, 1.5, np.nan, 2.25, np.nan, np.nan, -37.63],
            "open_interest": [1.0, np.nan, 3.0, np.nan, np.nan, np.nan, np.nan],
        },
        index=ts,
    )


def bits(values) -> list[int]:
    return np.asarray(values, dtype="float64").view("int64").tolist()


def test_pandas_round_trip_is_exact(loose_vault):
    vault = loose_vault
    df = exact_frame()
    receipt = vault.persist(df, "future", "CL", "1m")
    assert (receipt.added, receipt.rows_stored, receipt.written) == (7, 7, True)
    loaded = vault.load("future", "CL", "1m")
    assert_frame_equal(loaded, df)
    assert str(loaded.index.dtype) == "datetime64[ns, UTC]" and loaded.index.name == "timestamp"
    assert loaded.index.asi8.tolist() == df.index.asi8.tolist()
    for column in ["open", "high", "low", "close", "volume"]:
        assert bits(loaded[column]) == bits(df[column]), column
    assert list(loaded.columns) == ["open", "high", "low", "close", "volume", "adj_close", "open_interest"]
    assert all(str(t) == "float64" for t in loaded.dtypes)


def test_arrow_round_trip_is_exact_and_typed(loose_vault):
    vault = loose_vault
    df = exact_frame()
    table = pa.Table.from_pandas(df.reset_index(), preserve_index=False)
    vault.persist(table, "future", "CL", "1m")
    loaded = vault.load_arrow("future", "CL", "1m")
    assert isinstance(loaded, pa.Table)
    assert loaded.schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    assert [f.name for f in loaded.schema] == ["timestamp", "open", "high", "low", "close", "volume", "adj_close", "open_interest"]
    assert loaded.column("adj_close").null_count == 4, "NaN from pandas became a missing value"
    assert loaded.column("timestamp").cast(pa.int64()).to_pylist() == df.index.asi8.tolist()
    assert bits(loaded.column("close").to_numpy()) == bits(EXACT)


def test_polars_round_trip_is_exact(loose_vault):
    vault = loose_vault
    df = exact_frame()
    pdf = pl.from_pandas(df.reset_index())
    vault.persist(pdf, "future", "CL", "1m")
    loaded = vault.load_polars("future", "CL", "1m")
    assert isinstance(loaded, pl.DataFrame)
    assert loaded.schema["timestamp"] == pl.Datetime("ns", "UTC")
    assert loaded["timestamp"].dt.epoch("ns").to_list() == df.index.asi8.tolist()
    assert bits(loaded["low"].to_numpy()) == bits(EXACT)
    # polars keeps NaN and null apart: the NaNs from pandas were stored as missing.
    assert loaded["adj_close"].null_count() == 4
    # And the pandas view of the same store is the original frame.
    assert_frame_equal(vault.load("future", "CL", "1m"), df)


def test_every_frame_type_loads_as_every_frame_type(vault):
    df = frame(500, adj_close=True)
    kinds = {
        "pandas": df,
        "pyarrow": pa.Table.from_pandas(df.reset_index(), preserve_index=False),
        "polars": pl.from_pandas(df.reset_index()),
        "record_batch": pa.RecordBatch.from_pandas(df.reset_index(), preserve_index=False),
    }
    for i, (name, data) in enumerate(kinds.items()):
        symbol = f"S{i}"
        vault.persist(data, "stock", symbol, "1m")
        assert_frame_equal(vault.load("stock", symbol, "1m"), df, obj=name)
        table = vault.load_arrow("stock", symbol, "1m")
        assert table.num_rows == 500
        pl_frame = vault.load_polars("stock", symbol, "1m")
        assert pl_frame.height == 500 and pl_frame.columns == table.column_names


def test_timestamp_column_naive_index_and_any_unit_are_utc(vault):
    df = frame(10)
    naive = df.copy()
    naive.index = naive.index.tz_localize(None)
    vault.persist(naive, "stock", "NAIVE", "1m")
    assert_frame_equal(vault.load("stock", "NAIVE", "1m"), df)

    column = df.reset_index()
    column["timestamp"] = column["timestamp"].dt.tz_localize(None).astype("datetime64[s]")
    vault.persist(column, "stock", "COL", "1m")
    assert_frame_equal(vault.load("stock", "COL", "1m"), df)

    # polars' default microseconds, in another zone: stored as the same UTC instants.
    pdf = pl.from_pandas(df.reset_index()).with_columns(
        pl.col("timestamp").dt.cast_time_unit("us").dt.convert_time_zone("America/New_York")
    )
    vault.persist(pdf, "stock", "NY", "1m")
    assert_frame_equal(vault.load("stock", "NY", "1m"), df)


def test_yahoo_style_names_are_normalized(vault):
    df = frame(5, step_ns=DAY_NS)
    yahoo = df.rename(columns=str.title)
    yahoo["Adj Close"] = yahoo["Close"] * 0.5
    yahoo.index.name = "Date"
    receipt = vault.persist(yahoo, "stock", "yhoo", "1d")
    assert receipt.series == "stock:YHOO@1d"
    loaded = vault.load("stock", "YHOO", "1d")
    assert list(loaded.columns) == ["open", "high", "low", "close", "volume", "adj_close"]
    np.testing.assert_array_equal(loaded["adj_close"].to_numpy(), df["close"].to_numpy() * 0.5)


def test_volume_may_be_absent_and_integers_convert(vault):
    df = frame(4)
    ints = df.drop(columns="volume")
    ints["trades"] = np.arange(4, dtype="int64")
    ints["half"] = df["open"].astype("float32")
    ints["small"] = np.arange(4, dtype="uint8")
    vault.persist(ints, "forex", "EURUSD", "1m")
    loaded = vault.load("forex", "EURUSD", "1m")
    assert loaded["volume"].tolist() == [0.0] * 4
    assert loaded["trades"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert loaded["small"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert loaded["half"].tolist() == df["open"].astype("float32").astype("float64").tolist()


def test_merge_keeps_the_last_value_across_two_persists(vault):
    first = frame(100, adj_close=True)
    vault.persist(first, "stock", "MRG", "1m")
    second = frame(100, "2024-01-02 10:20", seed=1, adj_close=True)  # overlaps the last 50 rows
    receipt = vault.persist(second, "stock", "MRG", "1m")
    assert (receipt.added, receipt.replaced, receipt.unchanged, receipt.rows_stored) == (50, 50, 0, 150)
    assert receipt.backup_created
    expected = pd.concat([first.iloc[:50], second])
    # The merge cell rule: a value the new row lacks comes from the stored row.
    lacking = second["adj_close"].isna() & second.index.isin(first.index)
    expected.loc[second.index[lacking], "adj_close"] = first.loc[second.index[lacking], "adj_close"]
    assert_frame_equal(vault.load("stock", "MRG", "1m"), expected)

    again = vault.persist(second, "stock", "MRG", "1m")
    assert (again.written, again.unchanged, again.added, again.replaced) == (False, 100, 0, 0)


def test_repeats_and_disorder_inside_one_frame_keep_the_last_row(vault):
    df = frame(6)
    shuffled = pd.concat([df.iloc[3:], df.iloc[:3], df.iloc[[1]].assign(close=df["close"].iloc[1] + 0.5, high=1e6)])
    receipt = vault.persist(shuffled, "stock", "DUP", "1m")
    assert (receipt.rows_read, receipt.added, receipt.unchanged, receipt.duplicates) == (7, 6, 0, 1)
    loaded = vault.load("stock", "DUP", "1m")
    assert loaded.index.is_monotonic_increasing and len(loaded) == 6
    assert loaded["close"].iloc[1] == df["close"].iloc[1] + 0.5


def test_replace_makes_the_series_exactly_the_frame(vault):
    vault.persist(frame(50), "stock", "REP", "1m")
    new = frame(10, "2025-01-01", seed=3)
    receipt = vault.persist(new, "stock", "REP", "1m", replace=True)
    assert receipt.rows_stored == 10
    assert_frame_equal(vault.load("stock", "REP", "1m"), new)


def test_drop_leaves_invalid_rows_out(vault):
    df = frame(5)
    df.iloc[2, df.columns.get_loc("high")] = df["low"].iloc[2] - 1
    df.iloc[4, df.columns.get_loc("close")] = np.nan
    receipt = vault.persist(df, "stock", "DRP", "1m", on_invalid="drop")
    assert (receipt.dropped_invalid, receipt.rows_stored) == (2, 3)
    assert_frame_equal(vault.load("stock", "DRP", "1m"), df.iloc[[0, 1, 3]])


@pytest.mark.parametrize(
    "start,end,rows",
    [
        ("2024-01-02 09:31", "2024-01-02 09:33", [1, 2, 3]),  # both ends inclusive
        ("2024-01-02T09:31:00Z", None, list(range(1, 10))),
        (None, "2024-01-02", list(range(10))),  # a bare end date is the whole day
        ("2024-01-03", None, []),
        (dt.datetime(2024, 1, 2, 9, 35), dt.datetime(2024, 1, 2, 9, 36), [5, 6]),  # naive is UTC
        (dt.datetime(2024, 1, 2, 10, 35, tzinfo=dt.timezone(dt.timedelta(hours=1))), None, [5, 6, 7, 8, 9]),
        (pd.Timestamp("2024-01-02 09:38"), pd.Timestamp("2024-01-02 04:39", tz="America/New_York"), [8, 9]),
        (np.datetime64("2024-01-02T09:39"), None, [9]),
        (dt.date(2024, 1, 2), dt.date(2024, 1, 2), list(range(10))),
    ],
)
def test_range_loads(vault, start, end, rows):
    df = frame(10)
    vault.persist(df, "stock", "RNG", "1m")
    expected = df.iloc[rows]
    assert_frame_equal(vault.load("stock", "RNG", "1m", start=start, end=end), expected)
    assert vault.load_arrow("stock", "RNG", "1m", start=start, end=end).num_rows == len(rows)
    assert vault.load_polars("stock", "RNG", "1m", start=start, end=end).height == len(rows)


def test_range_bounds_are_exact_to_the_nanosecond(loose_vault):
    vault = loose_vault
    df = frame(3, step_ns=1)
    vault.persist(df, "stock", "NS", "1m")
    middle = df.index[1]
    loaded = vault.load("stock", "NS", "1m", start=middle, end=middle)
    assert loaded.index.asi8.tolist() == [middle.value]


def test_missing_series_load_none_and_do_not_exist(vault):
    assert vault.load("stock", "NONE", "1d") is None
    assert vault.load_arrow("stock", "NONE", "1d") is None
    assert vault.load_polars("stock", "NONE", "1d") is None
    assert vault.exists("stock", "NONE", "1d") is False
    assert vault.file_info("stock", "NONE", "1d") is None


def test_exists_file_info_and_list(vault, tmp_path):
    df = frame(20, adj_close=True)
    vault.persist(df, "stock", "aapl", "1m")
    vault.persist(frame(3, "2024-03-01", step_ns=HOUR_NS), "forex", "EUR/USD", "1h")
    assert vault.exists("stock", "AAPL", "1m")
    info = vault.file_info("stock", "AAPL", "1m")
    assert info.path == str(tmp_path / "store" / "stocks" / "1m" / "AAPL.csv")
    assert info.format == "csv" and info.rows == 20 and info.size > 0
    assert info.first_ns == df.index[0].value and info.last_ns == df.index[-1].value
    assert info.first == df.index[0].to_pydatetime() and info.last.tzinfo is not None
    assert isinstance(info.modified, dt.datetime)
    assert info.columns == ["timestamp", "open", "high", "low", "close", "volume", "adj_close"]
    entries = {(e.kind, e.symbol, e.period): e for e in vault.list()}
    assert set(entries) == {("stock", "AAPL", "1m"), ("forex", "EURUSD", "1h")}
    aapl = entries[("stock", "AAPL", "1m")]
    assert (aapl.rows, aapl.first_ns, aapl.last_ns) == (20, df.index[0].value, df.index[-1].value)
    assert sorted(aapl.formats) == ["csv", "parquet"] and aapl.generation == 1


def test_backup_disabled_keeps_csv_only(tmp_path):
    vault = barvault.open(tmp_path / "csv-only", backup_enabled=False, compression="zstd")
    assert vault.backup_enabled is False
    vault.persist(frame(5, step_ns=DAY_NS), "stock", "ONE", "1d")
    assert not (tmp_path / "csv-only" / "stocks" / "1d" / "ONE.parquet").exists()
    assert_frame_equal(vault.load("stock", "ONE", "1d"), frame(5, step_ns=DAY_NS))


def test_empty_frame_into_a_missing_series_writes_nothing(vault, tmp_path):
    receipt = vault.persist(frame(0), "stock", "EMPTY", "1d")
    assert (receipt.written, receipt.rows_stored) == (False, 0)
    assert not vault.exists("stock", "EMPTY", "1d")


def test_correlation_id_is_on_the_receipt(vault):
    receipt = vault.persist(frame(2, step_ns=DAY_NS), "stock", "CID", "1d", correlation_id="nightly-42")
    assert receipt.correlation_id == "nightly-42"
    assert len(vault.persist(frame(2, step_ns=DAY_NS, seed=9), "stock", "CID", "1d").correlation_id) == 36


def test_verify_and_recover_from_python(vault, tmp_path):
    vault.persist(frame(200), "stock", "VR", "1m")
    assert vault.verify().clean and vault.verify(deep=True).clean
    csv = tmp_path / "store" / "stocks" / "1m" / "VR.csv"
    data = bytearray(csv.read_bytes())
    data[200] ^= 0x01
    csv.write_bytes(bytes(data))
    report = vault.verify()
    assert not report.clean and any("VR.csv" in p for p in report.problems), report.problems
    # Reads are served from the sound Parquet copy meanwhile.
    assert_frame_equal(vault.load("stock", "VR", "1m"), frame(200))
    actions = vault.recover()
    assert any("VR.csv" in a for a in actions), actions
    assert vault.verify().clean
    assert vault.recover() == []


def test_health_is_a_dict(vault):
    vault.persist(frame(3, step_ns=DAY_NS), "stock", "H", "1d")
    health = vault.health()
    assert health["overall_status"] == "healthy"
    assert health["series"] == 1 and health["csv_files"] == 1 and health["parquet_files"] == 1
    assert health["write_permission"] is True
    assert health["issues"] == []


def test_health_warns_under_the_free_space_threshold(tmp_path, monkeypatch):
    monkeypatch.delenv("BARVAULT_MIN_FREE_SPACE_GB")
    config = tmp_path / "barvault.toml"
    config.write_text("min_free_space_gb = 1000000\n")
    vault = barvault.open(tmp_path / "store", config=config)
    vault.persist(frame(3, step_ns=DAY_NS), "stock", "H", "1d")
    health = vault.health()
    assert health["overall_status"] == "warning", health
    assert len(health["issues"]) == 1 and "(min_free_space_gb = 1000000)" in health["issues"][0], health


def test_load_is_a_new_frame_each_time(vault):
    vault.persist(frame(3, step_ns=DAY_NS), "stock", "MUT", "1d")
    a = vault.load("stock", "MUT", "1d")
    a.iloc[0, 0] = -1.0
    b = vault.load("stock", "MUT", "1d")
    assert b.iloc[0, 0] != -1.0
    assert MINUTE_NS == 60 * 10**9


def test_an_append_is_clean_and_its_lagging_parquet_copy_is_a_note(vault, tmp_path):
    df = frame(200)
    vault.persist(df.iloc[:150], "stock", "APP", "1m")
    parquet = tmp_path / "store" / "stocks" / "1m" / "APP.parquet"
    before = parquet.read_bytes()
    receipt = vault.persist(df.iloc[150:], "stock", "APP", "1m")
    assert (receipt.added, receipt.rows_stored) == (50, 200)
    assert parquet.read_bytes() == before, "an append leaves the Parquet copy as it was"
    report = vault.verify()
    assert report.clean, report.problems
    assert len(report.notes) == 1 and report.notes[0].startswith("lagging: "), report.notes
    assert_frame_equal(vault.load("stock", "APP", "1m"), df)


def test_loaded_frame_owns_writable_buffers_that_outlive_the_vault(tmp_path):
    """The pandas frame of a load is built over the loaded buffers: each column is a
    writable float64 array of its own (no column shares memory with another or with the
    index), the index a tz-aware nanosecond DatetimeIndex over int64 instants, and the
    buffers stay valid after the vault and every other reference are gone."""
    import gc

    vault = barvault.open(tmp_path / "store")
    df = frame(500, adj_close=True)
    vault.persist(df, "stock", "OWN", "1m")
    loaded = vault.load("stock", "OWN", "1m")
    del vault
    gc.collect()
    assert list(loaded.columns) == ["open", "high", "low", "close", "volume", "adj_close"]
    assert all(str(t) == "float64" for t in loaded.dtypes)
    assert isinstance(loaded.index, pd.DatetimeIndex) and str(loaded.index.dtype) == "datetime64[ns, UTC]"
    assert loaded.index.name == "timestamp"
    arrays = [loaded[c].to_numpy() for c in loaded.columns]
    for i, a in enumerate(arrays):
        assert a.dtype == np.float64 and a.flags.c_contiguous
        assert not np.shares_memory(a, loaded.index.asi8)
        for b in arrays[i + 1:]:
            assert not np.shares_memory(a, b)
    assert np.isnan(loaded["adj_close"].to_numpy()[::7]).all()
    loaded.loc[loaded.index[3], "close"] = 1234.5
    loaded["volume"] *= 2
    assert loaded["close"].iloc[3] == 1234.5
    assert loaded["volume"].tolist() == (df["volume"] * 2).tolist()
    expected = df.copy()
    expected.loc[expected.index[3], "close"] = 1234.5
    expected["volume"] *= 2
    assert_frame_equal(loaded, expected)
    again = barvault.open(tmp_path / "store").load("stock", "OWN", "1m")
    assert_frame_equal(again, df)
    empty = barvault.open(tmp_path / "store").load("stock", "OWN", "1m", start="2030-01-01")
    assert empty is None or (len(empty) == 0 and list(empty.columns) == list(loaded.columns))


def test_frames_of_many_loads_never_share_memory_as_buffers_are_reused(tmp_path):
    """Column buffers above 256 KiB come from memory earlier loads freed (the extension's
    allocator, `barvault-alloc`): frames alive at once never share a buffer, a frame freed
    and loaded again is exact, and loads on four threads at once each get their own."""
    import gc
    from concurrent.futures import ThreadPoolExecutor

    vault = barvault.open(tmp_path / "store")
    frames = {s: frame(60_000 + 1_000 * i, adj_close=True) for i, s in enumerate(["RA", "RB", "RC"])}
    for s, df in frames.items():
        vault.persist(df, "stock", s, "1m")
    for _ in range(3):
        alive = [vault.load("stock", s, "1m") for s in frames]
        arrays = [d[c].to_numpy() for d in alive for c in d.columns] + [d.index.asi8 for d in alive]
        for i, a in enumerate(arrays):
            for b in arrays[i + 1:]:
                assert not np.shares_memory(a, b)
        for d in alive:
            d["close"] = -1.0  # a write into one frame shows in no other, nor in the next load
        del arrays, alive
        gc.collect()
    for s, df in frames.items():
        assert_frame_equal(vault.load("stock", s, "1m"), df)

    def load_and_check(i):
        s = list(frames)[i % 3]
        d = vault.load("stock", s, "1m")
        assert_frame_equal(d, frames[s])
        d["open"] = float(i)  # scribble before the buffers go back
        return len(d)

    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(load_and_check, range(24))) == sum(len(frames[list(frames)[i % 3]]) for i in range(24))
