"""Fixtures of the barvault Python tests: a fresh store per test, frames to persist, and the
`barvault` CLI binary for the tests that run it beside the package."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import barvault

# No free-space threshold for `health`, in this process and the CLI processes it starts: a
# test's verdict must not depend on how full the test machine's disk is (a CI run with
# 0.4 GB left failed `health` here). test_health_warns_under_the_free_space_threshold
# sets a threshold of its own.
os.environ["BARVAULT_MIN_FREE_SPACE_GB"] = "0"

REPO = Path(__file__).resolve().parents[3]
MINUTE_NS = 60_000_000_000
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS


@pytest.fixture
def vault(tmp_path: Path) -> barvault.Vault:
    return barvault.open(tmp_path / "store")


@pytest.fixture
def loose_vault(tmp_path: Path) -> barvault.Vault:
    """A store with validation off: timestamps off every period's grid (nanoseconds apart)
    are stored as given, for the tests of exact round trips."""
    return barvault.open(tmp_path / "store", validation="off")


def frame(n: int, start: str = "2024-01-02 09:30", *, step_ns: int = MINUTE_NS, seed: int = 0, **extras) -> pd.DataFrame:
    """`n` valid bars from `start`, `step_ns` apart, with float extra columns given as
    name=True (random values, every 7th missing) or name=array."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start, tz="UTC").as_unit("ns").value
    ts = pd.DatetimeIndex(t0 + np.arange(n, dtype=np.int64) * step_ns, tz="UTC", name="timestamp").as_unit("ns")
    open_ = rng.uniform(10, 200, n).round(4)
    close = (open_ + rng.normal(0, 1, n)).round(4)
    high = np.maximum(open_, close) + rng.uniform(0, 1, n).round(4)
    low = np.minimum(open_, close) - rng.uniform(0, 1, n).round(4)
    volume = rng.integers(0, 1_000_000, n).astype("float64")
    df = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=ts)
    for name, values in sorted(extras.items()):
        if values is True:
            values = rng.uniform(0, 100, n)
            values[::7] = np.nan
        df[name] = np.asarray(values, dtype="float64")
    return df


def assert_frame_equal(left: pd.DataFrame, right: pd.DataFrame, **kwargs) -> None:
    """pandas' frame comparison with exact float comparison (its default allows a relative
    error of 1e-5) and exact index and column types."""
    pd.testing.assert_frame_equal(left, right, check_exact=True, **kwargs)


def store_bytes(root: Path) -> dict[str, bytes]:
    """Every file under `root` (lock files included) and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def cli_binary() -> Path | None:
    """The CLI binary: $BARVAULT_BIN, else the workspace's release or debug build."""
    env = os.environ.get("BARVAULT_BIN")
    if env:
        return Path(env)
    for profile in ("release", "debug"):
        candidate = REPO / "target" / profile / "barvault"
        if candidate.is_file():
            return candidate
    found = shutil.which("barvault")
    return Path(found) if found else None


@pytest.fixture(scope="session")
def cli() -> Path:
    binary = cli_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("no barvault binary: CI must build it (cargo build -p barvault-cli) or set BARVAULT_BIN")
        pytest.skip("no barvault binary: build it with `cargo build -p barvault-cli` or set BARVAULT_BIN")
    return binary


def run_cli(binary: Path, store: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(binary), "--data-dir", str(store), *args], capture_output=True, text=True, timeout=300
    )
    if check and done.returncode != 0:
        raise AssertionError(f"barvault {' '.join(args)} exited {done.returncode}: {done.stderr}{done.stdout}")
    return done
