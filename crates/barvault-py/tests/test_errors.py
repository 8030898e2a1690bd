"""Every exception class with a hostile input, refused persists that change no byte, and no
Rust panic reaching Python on any input."""

from __future__ import annotations

import datetime as dt
import fcntl
import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from conftest import DAY_NS, frame, store_bytes

import barvault

EXCEPTIONS = [
    barvault.ValidationError,
    barvault.InvalidInputError,
    barvault.LockedError,
    barvault.CorruptError,
    barvault.ConfigError,
    barvault.StorageError,
]


def test_every_exception_is_a_barvault_error():
    for exc in EXCEPTIONS:
        assert issubclass(exc, barvault.BarvaultError) and exc is not barvault.BarvaultError
        assert exc.__module__ == "barvault" and exc.__doc__
    assert issubclass(barvault.BarvaultError, Exception)


@pytest.fixture
def stored(vault, tmp_path):
    """A store with one series, and its bytes."""
    vault.persist(frame(30, adj_close=True), "stock", "KEEP", "1m")
    return vault, tmp_path / "store"


def test_validation_error_names_rows_and_rules_and_changes_nothing(stored):
    vault, root = stored
    before = store_bytes(root)
    bad = frame(30, seed=5)
    bad.iloc[3, bad.columns.get_loc("high")] = bad["low"].iloc[3] - 1.0
    bad.iloc[7, bad.columns.get_loc("volume")] = -5.0
    with pytest.raises(barvault.ValidationError) as err:
        vault.persist(bad, "stock", "KEEP", "1m")
    message = str(err.value)
    # Bars are counted from 1 in time order, and named by their timestamp too.
    assert "2 row(s) break validation rules" in message and "bar 4 at" in message and "high < low" in message
    assert "bar 8 at" in message and "volume" in message
    assert store_bytes(root) == before


def test_nan_prices_are_for_validation_to_judge(stored):
    vault, root = stored
    before = store_bytes(root)
    bad = frame(3)
    bad.iloc[1, 0] = np.nan
    with pytest.raises(barvault.ValidationError, match="prices must be finite"):
        vault.persist(bad, "stock", "KEEP", "1m")
    assert store_bytes(root) == before


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda v: v.persist(frame(2), "stock", "../x", "1d"), "invalid symbol"),
        (lambda v: v.persist(frame(2), "stock", "A/B", "1d"), "invalid symbol"),
        (lambda v: v.persist(frame(2), "stock", "", "1d"), "invalid symbol"),
        (lambda v: v.persist(frame(2), "bond", "X", "1d"), "unknown instrument type"),
        (lambda v: v.persist(frame(2), "stock", "X", "7m"), "unknown period"),
        (lambda v: v.persist(frame(2), "stock", "X", "1d", on_invalid="maybe"), "on_invalid"),
        (lambda v: v.persist(frame(2).reset_index(drop=True), "stock", "X", "1d"), "no timestamp column"),
        (lambda v: v.persist(frame(2).drop(columns="close"), "stock", "X", "1d"), '"close" is missing'),
        (lambda v: v.persist(frame(2).assign(open=["a", "b"]), "stock", "X", "1d"), '"open" has type'),
        (lambda v: v.persist(frame(2).assign(open=[1.0, "b"]), "stock", "X", "1d"), "column \"open\" cannot be read"),
        (lambda v: v.persist(frame(2).assign(flag=[True, False]), "stock", "X", "1d"), '"flag" has type Boolean'),
        (lambda v: v.persist(frame(2).assign(**{"?": 1.0}), "stock", "X", "1d"), "invalid column name"),
        (lambda v: v.persist(frame(2).assign(Open=1.0), "stock", "X", "1d"), "both the open column"),
        (lambda v: v.persist(frame(2).assign(timestamp=pd.Timestamp("2024-01-01", tz="UTC")), "stock", "X", "1d"),
         "time index and a time column"),
        (lambda v: v.persist(frame(2).set_axis([0, 1, 2, 3, 4], axis=1), "stock", "X", "1d"), "column label 0 is not a string"),
        (lambda v: v.persist([1, 2, 3], "stock", "X", "1d"), "cannot persist a list"),
        (lambda v: v.persist(pd.Series([1.0]), "stock", "X", "1d"), "cannot persist a pandas Series"),
        (lambda v: v.persist(pa.table({"timestamp": [1, 2], "open": [1.0, 2.0], "high": [1.0, 2.0], "low": [1.0, 2.0],
                                       "close": [1.0, 2.0]}), "stock", "X", "1d"), "\"timestamp\" has type Int64"),
        (lambda v: v.persist(pl.DataFrame({"date": ["2024-01-01", "nope"], "open": [1.0, 1.0], "high": [1.0, 1.0],
                                           "low": [1.0, 1.0], "close": [1.0, 1.0]}), "stock", "X", "1d"), "\"nope\" is not a timestamp"),
        (lambda v: v.load("stock", "X", "1d", start="yesterday"), "start: \"yesterday\" is not a time"),
        (lambda v: v.load("stock", "X", "1d", start="2024-02-01", end="2024-01-01"), "invalid time range"),
        (lambda v: v.load("stock", "X", "1d", start=pd.NaT), "NaT is not a time"),
        (lambda v: v.load("stock", "X", "1d", end=17), "expected a str, datetime"),
        (lambda v: v.load_arrow("stock", "X", "1d", end="3000-01-01"), "1677 to 2262"),
        (lambda v: v.exists("stock", "..", "1d"), "invalid symbol"),
        (lambda v: v.file_info("forex", "EURUS", "1d"), "invalid symbol"),
    ],
)
def test_invalid_input_is_refused_and_changes_nothing(stored, call, match):
    vault, root = stored
    before = store_bytes(root)
    with pytest.raises(barvault.InvalidInputError, match=match):
        call(vault)
    assert store_bytes(root) == before
    assert not (root.parent / "x.csv").exists()


def test_missing_values_in_core_columns_are_refused_with_the_row(stored):
    vault, root = stored
    before = store_bytes(root)
    df = frame(4).astype({"close": "Float64"})
    df.iloc[2, df.columns.get_loc("close")] = pd.NA
    with pytest.raises(barvault.InvalidInputError, match='"close" row 2: missing value'):
        vault.persist(df, "stock", "KEEP", "1m")
    nat = frame(3)
    nat.index = pd.DatetimeIndex([nat.index[0], pd.NaT, nat.index[2]], name="timestamp")
    with pytest.raises(barvault.InvalidInputError, match="row 1: missing value"):
        vault.persist(nat, "stock", "KEEP", "1m")
    assert store_bytes(root) == before


def test_conflicting_repeats_under_error_on_conflict_are_a_validation_error(tmp_path):
    config = tmp_path / "barvault.toml"
    config.write_text('merge_policy = "error_on_conflict"\n')
    vault = barvault.open(tmp_path / "store", config=config)
    df = frame(3)
    twice = pd.concat([df, df.iloc[[1]].assign(close=df["close"].iloc[1] + 0.01)])
    with pytest.raises(barvault.ValidationError, match="conflict"):
        vault.persist(twice, "stock", "CONF", "1d")
    assert not vault.exists("stock", "CONF", "1d")


def test_locked_error_when_another_holder_keeps_the_series_lock(tmp_path):
    config = tmp_path / "barvault.toml"
    config.write_text("lock_timeout_secs = 0.3\n")
    vault = barvault.open(tmp_path / "store", config=config)
    vault.persist(frame(5), "stock", "LCK", "1m")
    before = store_bytes(tmp_path / "store")
    lock = tmp_path / "store" / "stocks" / "1m" / ".LCK.lock"
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another process's writer would
        with pytest.raises(barvault.LockedError, match="locked by another writer"):
            vault.persist(frame(5, seed=2), "stock", "LCK", "1m")
    finally:
        os.close(fd)
    assert store_bytes(tmp_path / "store") == before
    vault.persist(frame(5, seed=2), "stock", "LCK", "1m")  # free again


def test_corrupt_error_when_no_copy_is_readable(stored):
    vault, root = stored
    for name in ["KEEP.csv", "KEEP.parquet"]:
        path = root / "stocks" / "1m" / name
        path.write_bytes(b"garbage" + path.read_bytes()[40:])
    with pytest.raises(barvault.CorruptError, match="no readable copy"):
        vault.load("stock", "KEEP", "1m")
    with pytest.raises(barvault.CorruptError):
        vault.persist(frame(3, "2025-01-01"), "stock", "KEEP", "1m")
    assert not vault.verify().clean


def test_recover_raises_corrupt_error_naming_what_it_could_not_repair(stored):
    vault, root = stored
    directory = root / "stocks" / "1m"
    for name in ["KEEP.csv", "KEEP.parquet", "KEEP.csv.backup", "KEEP.parquet.backup"]:
        if (directory / name).exists():
            (directory / name).write_bytes(b"\x00" * 64)
    with pytest.raises(barvault.CorruptError) as err:
        vault.recover()
    assert err.value.unrecoverable and "KEEP" in err.value.unrecoverable[0]
    assert isinstance(err.value.repaired, tuple)
    assert barvault.CorruptError("x").unrecoverable == ()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"compression": "rar"}, "snappy, zstd"),
        ({"validation": "lenient"}, "unknown validation policy"),
    ],
)
def test_config_error_for_invalid_values(tmp_path, kwargs, match):
    with pytest.raises(barvault.ConfigError, match=match):
        barvault.open(tmp_path / "store", **kwargs)
    assert not (tmp_path / "store").exists()


def test_config_error_for_bad_config_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("backup_enable = true\n")
    with pytest.raises(barvault.ConfigError, match="backup_enable"):
        barvault.open(tmp_path / "store", config=bad)
    with pytest.raises(barvault.ConfigError, match="no such file"):
        barvault.open(tmp_path / "store", config=tmp_path / "missing.toml")
    good = tmp_path / "good.toml"
    good.write_text('backup_enabled = false\ncompression = "zstd"\n')
    assert barvault.open(tmp_path / "store", config=good).backup_enabled is False
    assert barvault.open(tmp_path / "store2", config=good, backup_enabled=True).backup_enabled is True


def test_storage_error_when_the_store_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(barvault.StorageError, match="Not a directory"):
        barvault.open(blocker / "store")


def test_storage_error_when_a_series_directory_is_a_file(tmp_path):
    vault = barvault.open(tmp_path / "store")
    (tmp_path / "store" / "stocks").write_text("in the way")
    with pytest.raises(barvault.StorageError):
        vault.persist(frame(2), "stock", "X", "1d")


def hostile_frames():
    """Frames of every awkward shape and type: each must raise a BarvaultError (never a
    PanicException, which is not an Exception) or be stored."""
    base = frame(4, step_ns=DAY_NS, adj_close=True)
    yield base.iloc[:0]
    yield base.assign(adj_close=np.inf)
    yield base.assign(volume=np.nan)
    yield base.assign(open=np.array([1, 2, 3, 4], dtype="int8"))
    yield base.assign(open=pd.Categorical(["a", "b", "a", "b"]))
    yield base.assign(open=[b"x", b"y", b"z", b"w"])
    yield base.assign(open=[dt.date(2024, 1, 1)] * 4)
    yield base.assign(open=pd.array([1, None, 3, 4], dtype="Int64"))
    yield base.assign(extra=pd.array([1.5, None, 3, 4], dtype="Float64"))
    yield base.assign(extra=[None, None, None, None])
    yield base.assign(extra=[object(), 1, 2, 3])
    yield base.assign(extra=pd.to_timedelta([1, 2, 3, 4], unit="s"))
    yield base.assign(extra=[1 + 2j] * 4)
    yield base.set_axis(pd.MultiIndex.from_tuples([(c, "x") for c in base.columns]), axis=1)
    yield base.set_axis(["open"] * 6, axis=1)
    yield base.reset_index().set_index(["timestamp", "open"])
    yield base.set_axis(pd.Index([np.datetime64("2262-04-11T23:47:16.854775807")] * 4).as_unit("ns"), axis=0)
    yield base.set_axis(pd.DatetimeIndex(["1677-09-21", "2024-01-01", "2024-01-02", "2262-04-11"]).as_unit("s"), axis=0)
    yield base.set_axis(pd.date_range("2024-01-01", periods=4, freq="D").date, axis=0).rename_axis("date")
    yield base.set_axis(["2024-01-01", "2024-01-02", "x", ""], axis=0).rename_axis("timestamp")
    yield base.set_axis(pd.period_range("2024-01", periods=4, freq="M"), axis=0).rename_axis("timestamp")
    yield pd.concat([base, pd.DataFrame(1.0, index=base.index, columns=[f"c{i}" for i in range(1100)])], axis=1)
    yield base.assign(**{"a" * 65: 1.0})
    yield pd.DataFrame()
    yield pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC"))
    yield pa.table({})
    yield pa.table({"timestamp": pa.array([None, None], pa.timestamp("ns"))})
    yield pa.table({"timestamp": pa.array([1, 2], pa.timestamp("s")), "open": pa.array([None, None], pa.null()),
                    "high": [1.0, 1.0], "low": [1.0, 1.0], "close": [1.0, 1.0]})
    yield pa.table({"timestamp": pa.array([1], pa.time64("ns"))})
    yield pa.table({"timestamp": pa.array([1], pa.date32()), "open": pa.array([1], pa.decimal128(5, 2)),
                    "high": [1.0], "low": [1.0], "close": [1.0]})
    yield pa.table({"timestamp": pa.array([1], pa.date64()), "open": pa.array([[1.0]]), "high": [1.0],
                    "low": [1.0], "close": [1.0]})
    yield pa.table({"timestamp": pa.array([2**62], pa.timestamp("ms")), "open": [1.0], "high": [1.0], "low": [1.0],
                    "close": [1.0]})
    yield pa.table({"timestamp": pa.array(["2024-01-01"], pa.large_string()), "open": pa.array([1.0], pa.float16()),
                    "high": [1.0], "low": [1.0], "close": [1.0]})
    yield pa.table({"timestamp": pa.array(["2024-01-01"]).dictionary_encode(), "open": [1.0], "high": [1.0],
                    "low": [1.0], "close": [1.0]})
    yield pl.DataFrame({"timestamp": [1, 2]})
    yield pl.DataFrame({"timestamp": ["2024-01-01"], "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0]}).lazy()
    yield None
    yield 42
    yield "timestamp,open\n1,2\n"
    yield {"timestamp": [1], "open": [1.0]}


def test_no_input_panics_into_python(vault):
    stored = 0
    for i, data in enumerate(hostile_frames()):
        try:
            vault.persist(data, "stock", f"H{i}", "1d")
            stored += 1
        except barvault.BarvaultError:
            pass
        # A PanicException (a BaseException) or any other exception fails the test here.
    assert stored > 0, "some of these are valid frames and must be stored"
    bounds = [None, "", "2024", "2024-13-45", "9999-01-01", dt.datetime.max, dt.datetime.min, dt.date.max,
              pd.Timestamp.max, pd.Timestamp.min, np.datetime64("NaT"), np.datetime64(10**18, "s"), 1.5, b"2024",
              object(), pd.Timestamp("2024-01-01", tz="Asia/Kolkata")]
    for start, end in itertools.product(bounds, repeat=2):
        try:
            vault.load("stock", "H0", "1d", start=start, end=end)
        except barvault.BarvaultError:
            pass
    for kind, symbol, period in itertools.product(
        ["stock", "future", "forex", "", "STOCK", "x" * 1000], ["A", "", "\x00", "é", "ES", "ESZ24", ".", "a" * 65],
        ["1d", "1M", "1m", "", "60m", "1D"],
    ):
        try:
            vault.exists(kind, symbol, period)
            vault.load_arrow(kind, symbol, period)
        except barvault.BarvaultError:
            pass
    assert vault.verify().clean


def test_a_path_like_store(tmp_path):
    class Where(os.PathLike):
        def __fspath__(self):
            return str(tmp_path / "pl-store")

    vault = barvault.open(Where())
    assert Path(vault.path) == tmp_path / "pl-store"


def test_bars_off_the_period_grid_are_refused_or_dropped(vault):
    minutes = frame(3)  # 09:30, 09:31, 09:32: three bars on one day of a daily series
    with pytest.raises(barvault.ValidationError, match=r"2 bar\(s\) off the series' time grid.*bar 2 at 2024-01-02T09:31:00Z"):
        vault.persist(minutes, "stock", "GRID", "1d")
    assert not vault.exists("stock", "GRID", "1d")
    receipt = vault.persist(minutes, "stock", "GRID", "1d", on_invalid="drop")
    assert (receipt.rows_stored, receipt.dropped_invalid) == (1, 2)
    assert vault.load("stock", "GRID", "1d").index.tolist() == [minutes.index[0]]
