"""Threads and processes at once: four Python threads into four series, the GIL released
while a call waits, and a Python persist racing a CLI import into the same series."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from conftest import MINUTE_NS, assert_frame_equal, frame, run_cli

import barvault


def test_four_threads_persist_four_series_at_once(vault):
    frames = {f"T{i}": frame(20_000, seed=i, adj_close=True) for i in range(4)}
    barrier = threading.Barrier(4)

    def work(symbol: str):
        barrier.wait()
        receipts = []
        for part in range(4):  # four merges each, in overlapping slices
            chunk = frames[symbol].iloc[part * 4000 : part * 4000 + 8000]
            receipts.append(vault.persist(chunk, "stock", symbol, "1m"))
        return receipts

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(frames, pool.map(work, frames)))
    for symbol, df in frames.items():
        assert results[symbol][-1].rows_stored == 20_000
        assert_frame_equal(vault.load("stock", symbol, "1m"), df)
    assert vault.verify().clean


def test_one_series_from_many_threads_loses_no_update(vault):
    """Eight threads each persist their own minutes of one series; the series lock
    serializes the merges, so every minute is stored."""
    base = frame(8 * 50)

    def work(i: int):
        return vault.persist(base.iloc[i::8], "stock", "SAME", "1m")

    with ThreadPoolExecutor(max_workers=8) as pool:
        receipts = list(pool.map(work, range(8)))
    assert sum(r.added for r in receipts) == 400
    assert_frame_equal(vault.load("stock", "SAME", "1m"), base)


def test_the_gil_is_released_while_a_persist_waits_for_the_lock(tmp_path):
    """A persist blocked on the series lock must not hold the GIL: this thread can only
    release the lock (letting the persist finish) if it gets to run meanwhile."""
    config = tmp_path / "barvault.toml"
    config.write_text("lock_timeout_secs = 20\n")
    vault = barvault.open(tmp_path / "store", config=config)
    vault.persist(frame(5), "stock", "GIL", "1m")
    fd = os.open(tmp_path / "store" / "stocks" / "1m" / ".GIL.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    result = {}
    started = threading.Event()

    def writer():
        started.set()
        result["receipt"] = vault.persist(frame(5, "2024-02-01"), "stock", "GIL", "1m")

    thread = threading.Thread(target=writer)
    thread.start()
    started.wait()
    ticks = 0
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # Python work while the writer waits in Rust
        ticks += 1
    os.close(fd)  # releases the flock
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert result["receipt"].rows_stored == 10
    assert ticks > 1000


def test_the_gil_is_released_during_a_load(vault):
    """With a long switch interval a thread waiting for the GIL runs only when the holder
    releases it: the spinner advances during the load only if the load released the GIL."""
    vault.persist(frame(200_000), "stock", "BIG", "1m")
    stop = threading.Event()
    ticks = [0]

    def spin():
        while not stop.is_set():
            ticks[0] += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.5)
    spinner = threading.Thread(target=spin)
    spinner.start()
    advanced = []
    try:
        for _ in range(3):
            time.sleep(0.01)  # let the spinner take the GIL, then take it back
            before = ticks[0]
            vault.load_arrow("stock", "BIG", "1m")
            advanced.append(ticks[0] - before)
    finally:
        stop.set()
        spinner.join()
        sys.setswitchinterval(interval)
    # Holding the GIL, a load would leave the spinner at 0 every time (a C call is never
    # interrupted by the switch interval); on a busy machine it may miss one slot.
    assert any(a > 0 for a in advanced), f"the spinning thread never ran during a load: {advanced}"


def cli_csv(path, df: pd.DataFrame) -> None:
    out = df.reset_index()
    out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    out.to_csv(path, index=False)


def test_python_persist_and_cli_import_into_one_series_lose_no_update(vault, tmp_path, cli):
    """A CLI import and Python persists run at the same time into one series, many rounds;
    the cross-process series lock serializes them, so every row of both is stored."""
    store = tmp_path / "store"
    rounds = 6
    python_rows, cli_rows = [], []
    for r in range(rounds):
        # Disjoint minutes: the CLI's rows on even minutes, Python's on odd ones.
        start = pd.Timestamp("2024-03-01", tz="UTC") + pd.Timedelta(minutes=r * 4000)
        cli_part = frame(2000, str(start.tz_localize(None)), step_ns=2 * MINUTE_NS, seed=r)
        py_part = frame(2000, str((start + pd.Timedelta(minutes=1)).tz_localize(None)), step_ns=2 * MINUTE_NS, seed=100 + r)
        path = tmp_path / f"cli{r}.csv"
        cli_csv(path, cli_part)
        proc = subprocess.Popen(
            [str(cli), "--data-dir", str(store), "import", "--type", "stock", "--symbol", "RACE", "--period", "1m", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for piece in range(4):
            vault.persist(py_part.iloc[piece::4], "stock", "RACE", "1m")
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err + out
        cli_rows.append(cli_part)
        python_rows.append(py_part)
    expected = pd.concat(cli_rows + python_rows).sort_index()
    loaded = vault.load("stock", "RACE", "1m")
    assert len(loaded) == 2 * rounds * 2000
    assert_frame_equal(loaded, expected)
    run_cli(cli, store, "verify", "--all")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_can_use_the_store(vault):
    vault.persist(frame(10), "stock", "FORK", "1m")
    pid = os.fork()
    if pid == 0:  # child: the parent's runtime threads do not exist here
        try:
            ok = len(vault.load("stock", "FORK", "1m")) == 10
            vault.persist(frame(5, "2024-05-01"), "stock", "FORK", "1m")
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert len(vault.load("stock", "FORK", "1m")) == 15
