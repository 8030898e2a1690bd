"""The package and the CLI share one store: what Python writes verifies clean with the CLI
and exports identically, and what the CLI imports loads in Python."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from conftest import DAY_NS, REPO, assert_frame_equal, frame, run_cli

import barvault

DAILY = REPO / "tests" / "data" / "daily"


def test_python_files_verify_clean_with_the_cli(vault, tmp_path, cli):
    store = tmp_path / "store"
    vault.persist(frame(3000, adj_close=True, open_interest=True), "future", "ES", "1m")
    vault.persist(frame(500, "2024-02-01", seed=4), "future", "ES", "1m")
    vault.persist(frame(100, step_ns=86_400 * 10**9), "stock", "SPY", "1d")
    done = run_cli(cli, store, "verify", "--all", "--deep")
    assert "clean" in done.stdout and "3 series" not in done.stdout, done.stdout
    report = json.loads(run_cli(cli, store, "verify", "--all", "--json").stdout)
    assert report["issues"] == [] and report["series_checked"] == 2


def test_the_cli_exports_exactly_what_python_stored(vault, tmp_path, cli):
    store = tmp_path / "store"
    df = frame(1000, adj_close=True)
    df.iloc[5, 0] = 8.71e-06
    df.iloc[5, 2] = -37.63
    df.iloc[6, 1] = 1e300
    vault.persist(df, "stock", "EXP", "1m")
    out = tmp_path / "export.csv"
    run_cli(cli, store, "export", "--type", "stock", "--symbol", "EXP", "--period", "1m", "--output", str(out))
    exported = pd.read_csv(out, index_col="timestamp", parse_dates=True).astype("float64")
    # The CSV copy carries the UTC marker (`Z`), so pandas parses it as aware.
    exported.index = pd.to_datetime(exported.index, utc=True).as_unit("ns")
    assert_frame_equal(exported, df)


def test_cli_imports_load_in_python(tmp_path, cli):
    store = tmp_path / "store"
    run_cli(cli, store, "import", "--type", "stock", "--period", "1d", str(DAILY))
    vault = barvault.open(store)
    assert {(e.symbol, e.rows) for e in vault.list()} == {("NVDA", 4012), ("ORCL", 5036)}
    nvda = vault.load("stock", "NVDA", "1d")
    source = pd.read_csv(DAILY / "NVDA.csv", index_col="Date", parse_dates=True)
    assert len(nvda) == len(source) == 4012
    assert list(nvda.columns) == ["open", "high", "low", "close", "volume", "adj_close"]
    np.testing.assert_array_equal(nvda["close"].to_numpy(), source["Close"].to_numpy())
    np.testing.assert_array_equal(nvda["adj_close"].to_numpy(), source["Adj Close"].to_numpy())
    np.testing.assert_array_equal(nvda["volume"].to_numpy(), source["Volume"].to_numpy(dtype="float64"))
    assert (nvda.index.tz_localize(None) == source.index.as_unit("ns")).all()
    tail = vault.load("stock", "NVDA", "1d", start="2014-12-29")
    assert tail["close"].tolist() == [20.559999, 20.370001, 20.049999]
    # A Python merge into the CLI's series, then the CLI is still content.
    more = nvda.iloc[-3:].copy()
    more.index = more.index + pd.Timedelta(days=5)
    receipt = vault.persist(more, "stock", "NVDA", "1d")
    assert (receipt.added, receipt.rows_stored) == (3, 4015)
    run_cli(cli, store, "verify", "--all")
    info = json.loads(
        run_cli(cli, store, "info", "--type", "stock", "--symbol", "NVDA", "--period", "1d", "--json").stdout
    )
    assert info["rows"] == 4015


def test_health_matches_the_cli_json(vault, tmp_path, cli):
    vault.persist(frame(10, step_ns=DAY_NS), "stock", "HLT", "1d")
    ours = vault.health()
    theirs = json.loads(run_cli(cli, tmp_path / "store", "health", "--json").stdout)
    assert set(ours) == set(theirs)
    for key in ["overall_status", "issues", "series", "total_files", "csv_files", "parquet_files", "backup_status",
                "write_permission", "consistency_issues", "large_files", "stale_temp_files", "max_file_size_mb"]:
        assert ours[key] == theirs[key], key
