#!/usr/bin/env python3
"""Side-by-side timings of the Python package (a benchmark, not a test).

    python crates/barvault-py/bench/bench_python.py [--pairs 9] [--rows 1000000] [--bin target/release/barvault]
                                                    [--load-only]

Run from the repository root with a Python that has barvault (pip install ./crates/barvault-py),
pandas and pyarrow installed, after `cargo build --release -p barvault-cli`. Workloads are made
by ../shared/bench/gen_bars.py (1-minute bars) under $BENCH_DIR (default /tmp/barvault-pybench).

L  vault.load of the whole series into pandas, against
   L-pa  pyarrow.parquet.read_table(barvault's Parquet copy).to_pandas()  (target: L within 1.5x)
   L-csv the seed's pd.read_csv(the same bars as the seed stored them, index_col='timestamp',
         parse_dates=True): the generated CSV, in the seed's format ("2015-01-02 00:00:00",
         no zone suffix). barvault's own CSV copy writes "...00Z" and "100.0" (issue 19), which
         pandas 3.1 parses about 8x slower; timing read_csv on it would flatter the ratio.
         (target: L at least 20x faster)
W  vault.persist of the frame into an empty store, against
   W-cli `barvault import` of the same bars from CSV, whole process  (target: W within 1.3x)
M  peak memory of one W in a fresh process, sampled from /proc: target <= frame size + 100 MB

Runs alternate (A B A B ...); each pair gives a ratio and the figure quoted is the median of
those ratios, with the median wall and CPU seconds of each side and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
GEN = REPO.parent / "shared" / "bench" / "gen_bars.py"


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed_call(fn):
    """(wall s, CPU s of this process, result) of fn()."""
    c0, t0 = cpu_self(), time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, cpu_self() - c0, result


def timed_process(cmd):
    """(wall s, CPU s) of a whole child process."""
    c0, t0 = cpu_children(), time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0, cpu_children() - c0


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def summary(name: str, walls, cpus) -> dict:
    return {"name": name, "wall": statistics.median(walls), "cpu": statistics.median(cpus), "runs": len(walls)}


def compare(label: str, a: dict, b: dict, ratios: list[float], cpu_ratios: list[float], target: str) -> dict:
    ratio, cpu_ratio = statistics.median(ratios), statistics.median(cpu_ratios)
    print(
        f"{label:44} {a['name']:>6} {a['wall']:7.3f} s wall {a['cpu']:7.3f} s CPU | "
        f"{b['name']:>6} {b['wall']:7.3f} s wall {b['cpu']:7.3f} s CPU | median ratio {ratio:6.2f} wall, "
        f"{cpu_ratio:6.2f} CPU  ({target})"
    )
    return {"label": label, "a": a, "b": b, "median_ratio": ratio, "ratios": ratios,
            "median_cpu_ratio": cpu_ratio, "cpu_ratios": cpu_ratios, "target": target}


def memory_probe(store: str, csv: str, rows: int) -> None:
    """In a fresh process: the RSS before the frame, with it, and the peak during one persist."""
    import pandas as pd

    import barvault

    baseline = rss_mb()
    df = pd.read_csv(csv, index_col="timestamp", parse_dates=True)
    frame_mb = df.memory_usage(deep=True, index=True).sum() / 2**20
    vault = barvault.open(store)
    with_frame = rss_mb()
    peak = [with_frame]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    receipt = vault.persist(df, "stock", "AAPL", "1m")
    done.set()
    sampler.join()
    peak[0] = max(peak[0], rss_mb())
    assert receipt.rows_stored == rows, receipt
    print(json.dumps({"baseline_mb": baseline, "frame_mb": frame_mb, "with_frame_mb": with_frame, "peak_mb": peak[0]}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=9)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--bin", default=str(REPO / "target" / "release" / "barvault"))
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--load-only", action="store_true",
                    help="only the load figures (L, A); the store is then written by the package when --bin is absent")
    ap.add_argument("--memory-probe", nargs=3, metavar=("STORE", "CSV", "ROWS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.memory_probe:
        memory_probe(a.memory_probe[0], a.memory_probe[1], int(a.memory_probe[2]))
        return

    import pandas as pd
    import pyarrow.parquet as pq

    import barvault

    work = Path(os.environ.get("BENCH_DIR", "/tmp/barvault-pybench"))
    work.mkdir(parents=True, exist_ok=True)
    csv = work / f"m1-{a.rows}.csv"
    if not csv.exists():
        subprocess.run([sys.executable, str(GEN), str(csv), str(a.rows)], check=True)
    store = work / "store"
    if not (store / "stocks" / "1m" / "AAPL.parquet").exists():
        shutil.rmtree(store, ignore_errors=True)
        if a.load_only and not Path(a.bin).exists():
            frame = pd.read_csv(csv, index_col="timestamp", parse_dates=True)
            barvault.open(store).persist(frame, "stock", "AAPL", "1m")
            del frame
        else:
            subprocess.run([a.bin, "--data-dir", str(store), "import", "--type", "stock", "--symbol", "AAPL",
                            "--period", "1m", str(csv)], check=True, stdout=subprocess.DEVNULL)
    parquet = store / "stocks" / "1m" / "AAPL.parquet"
    stored_csv = store / "stocks" / "1m" / "AAPL.csv"
    vault = barvault.open(store)
    load1, load2 = os.getloadavg()[:2], None
    print(f"barvault {barvault.__version__}, {a.rows} rows, {a.pairs} pairs, load average {load1[0]:.2f} {load1[1]:.2f}, "
          f"{os.cpu_count()} CPUs")

    # Warm the page cache and check that the three loads agree.
    ours = vault.load("stock", "AAPL", "1m")
    floor = pq.read_table(parquet).to_pandas()
    seed = pd.read_csv(csv, index_col="timestamp", parse_dates=True)
    assert len(pd.read_csv(stored_csv, usecols=["timestamp"])) == a.rows
    assert len(ours) == len(floor) == len(seed) == a.rows
    assert (ours["close"].to_numpy() == floor["close"].to_numpy()).all()
    del ours, floor, seed

    results = []
    runs = {k: ([], []) for k in ["L", "L-pa", "L-csv", "A", "A-pl", "A-pd", "W", "W-cli"]}
    r_pa, r_csv, c_pa, c_csv = [], [], [], []
    for i in range(a.pairs):
        order = [("L", lambda: vault.load("stock", "AAPL", "1m")),
                 ("L-pa", lambda: pq.read_table(parquet).to_pandas()),
                 ("L-csv", lambda: pd.read_csv(csv, index_col="timestamp", parse_dates=True))]
        if i % 2:
            order.reverse()
        got, cpus = {}, {}
        for name, fn in order:
            wall, cpu, frame = timed_call(fn)
            del frame
            runs[name][0].append(wall)
            runs[name][1].append(cpu)
            got[name], cpus[name] = wall, cpu
        r_pa.append(got["L"] / got["L-pa"])
        r_csv.append(got["L-csv"] / got["L"])
        c_pa.append(cpus["L"] / cpus["L-pa"])
        c_csv.append(cpus["L-csv"] / cpus["L"])
        for name, fn in [("A", lambda: vault.load_arrow("stock", "AAPL", "1m")),
                         ("A-pl", lambda: vault.load_polars("stock", "AAPL", "1m")),
                         # the frame as vault.load built it before it skipped pyarrow: the
                         # Arrow table's to_pandas (one consolidated block) and set_index
                         ("A-pd", lambda: vault.load_arrow("stock", "AAPL", "1m")
                          .to_pandas(self_destruct=True).set_index("timestamp"))]:
            wall, cpu, out = timed_call(fn)
            del out
            runs[name][0].append(wall)
            runs[name][1].append(cpu)
    s = {k: summary(k, *v) for k, v in runs.items() if v[0]}
    results.append(compare("load 1M bars into pandas vs pyarrow floor", s["L"], s["L-pa"], r_pa, c_pa, "target <= 1.5"))
    results.append(compare("seed read_csv vs load (speed-up)", s["L-csv"], s["L"], r_csv, c_csv, "target >= 20"))
    print(f"{'(load_arrow / load_polars, for reference)':44} {s['A']['wall']:7.3f} s / {s['A-pl']['wall']:.3f} s wall")
    print(f"{'(load_arrow().to_pandas().set_index, ref.)':44} {s['A-pd']['wall']:7.3f} s wall {s['A-pd']['cpu']:7.3f} s CPU")

    if a.load_only:
        load2 = os.getloadavg()[:2]
        print(f"load average at the end {load2[0]:.2f} {load2[1]:.2f}")
        if a.json:
            Path(a.json).write_text(json.dumps({"results": results, "load": [load1, load2]}, indent=1))
        return

    frame = pd.read_csv(csv, index_col="timestamp", parse_dates=True)
    empty = work / "persist-store"
    r_w, c_w = [], []
    for i in range(a.pairs):
        got, cpus = {}, {}
        sides = [("W", None), ("W-cli", None)]
        if i % 2:
            sides.reverse()
        for name, _ in sides:
            shutil.rmtree(empty, ignore_errors=True)
            if name == "W":
                target = barvault.open(empty)
                wall, cpu, receipt = timed_call(lambda: target.persist(frame, "stock", "AAPL", "1m"))
                assert receipt.rows_stored == a.rows
            else:
                wall, cpu = timed_process([a.bin, "--data-dir", str(empty), "import", "--type", "stock", "--symbol",
                                           "AAPL", "--period", "1m", str(csv)])
            runs[name][0].append(wall)
            runs[name][1].append(cpu)
            got[name], cpus[name] = wall, cpu
        r_w.append(got["W"] / got["W-cli"])
        c_w.append(cpus["W"] / cpus["W-cli"])
    s = {k: summary(k, *v) for k, v in runs.items() if v[0]}
    results.append(compare("persist 1M-bar frame vs CLI import (whole)", s["W"], s["W-cli"], r_w, c_w, "target <= 1.3"))

    shutil.rmtree(empty, ignore_errors=True)
    probe = subprocess.run([sys.executable, __file__, "--memory-probe", str(empty), str(csv), str(a.rows)],
                           check=True, capture_output=True, text=True)
    mem = json.loads(probe.stdout.strip().splitlines()[-1])
    extra = mem["peak_mb"] - mem["baseline_mb"]
    print(f"{'peak memory of one persist (fresh process)':44} frame {mem['frame_mb']:.1f} MB, RSS before the frame "
          f"{mem['baseline_mb']:.1f} MB, with it {mem['with_frame_mb']:.1f} MB, peak {mem['peak_mb']:.1f} MB: "
          f"{extra:.1f} MB over the start (target <= frame + 100 = {mem['frame_mb'] + 100:.1f} MB)")
    load2 = os.getloadavg()[:2]
    print(f"load average at the end {load2[0]:.2f} {load2[1]:.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"results": results, "memory": mem, "load": [load1, load2]}, indent=1))


if __name__ == "__main__":
    main()
