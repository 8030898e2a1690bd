#!/usr/bin/env python3
"""barvault's own benchmark runner: whole-process timings of the release binary on fixed
workloads, and side-by-side comparisons of two binaries in alternating runs.

  python3 scripts/bench.py run [--bin target/release/barvault] [--runs 7] [--only P1,P4]
  python3 scripts/bench.py ab --a OLD_BIN --b NEW_BIN [--pairs 7] [--only P1,P4]

Every figure is wall seconds, CPU seconds (user + system) and peak RSS of the whole
process: wall from a monotonic clock, CPU and peak RSS from the child's rusage (wait4).
`ab` runs A B A B ... (at least 7 pairs), and reports the
medians of each and the median of the pair-by-pair ratios B/A for wall and CPU time: on a
shared, noisy machine, pairs run back to back see the same load, so their ratio is stable
where the raw times are not. The load average is printed at the start and the end.

Workloads (data generated once, deterministically, under $BENCH_DIR, default
/tmp/barvault-bench-own; stores a workload starts from are prepared once per binary and
copied before each run):
  P1  import 1M one-minute bars into an empty store
  P2  merge 100k bars (half overlapping) into a stored 1M-bar series
  P3  export a 1M-bar series to CSV
  P4  nightly update of 300 daily series (two revised bars and one new, each)
  P5  verify a store of 300 daily series
  P8  append to one series: 1 bar to 1M bars (P8a), 1 bar to 100 bars (P8b), 100 bars to 1M
      bars (P8c); the issue's bound is P8a <= 2x P8b, and P8a, P8c <= 10 ms
  P9  one import of 500 one-bar files into 500 stored 1m series of 20,000 bars each
  P10 range load: one day of 1m bars exported (--from/--to, to a CSV file) out of a 10M-bar
      series (P10a) and the same command on a 1,440-bar series holding only that day (P10b),
      run alternately (a b a b ...); reported: the median of each and of the pair-by-pair
      ratios a/b (the issue's bound: <= 3x). Run only when named (--only P10): it needs
      the 10M data (made on first use)
  P1-10M, P2-10M  P1 and P2 ten times larger: 10M bars imported into an empty store, and 1M
      bars (half overlapping) merged into a stored 10M-bar series (the scale target: time
      and peak memory grow at most linearly from P1 and P2; data made on first use, 600 MB)
"""
import argparse
import hashlib
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

W = Path(os.environ.get("BENCH_DIR", "/tmp/barvault-bench-own"))


def bars_csv(path, rows, start, step, seed, price=100.0, vol=0.001, revise_from=None):
    """A deterministic random walk of `rows` bars as barvault-style CSV."""
    rng = random.Random(seed)
    t = start
    close = price
    lines = ["timestamp,open,high,low,close,volume"]
    for i in range(rows):
        open_ = close
        close = open_ * math.exp(rng.gauss(0, vol))
        spread = abs(rng.gauss(0, vol * 0.7)) * close
        high, low = max(open_, close) + spread, min(open_, close) - spread
        volume = rng.randrange(100, 100_000) + (1 if revise_from is not None and i >= revise_from else 0)
        lines.append(f"{t:%Y-%m-%d %H:%M:%S},{open_:.2f},{high:.2f},{low:.2f},{close:.2f},{volume}")
        t += step
    Path(path).write_text("\n".join(lines) + "\n")


def data():
    d = W / "data"
    if not (d / "done").exists():
        base_data(d)
    if not (d / "done-p8").exists():
        append_data(d)
    return d


def base_data(d):
    d.mkdir(parents=True, exist_ok=True)
    minute = timedelta(minutes=1)
    bars_csv(d / "m1.csv", 1_000_000, datetime(2015, 1, 2), minute, 1)
    # 100k bars from 50k bars before the end of m1.csv: half overlap, half new.
    bars_csv(d / "m1_new.csv", 100_000, datetime(2015, 1, 2) + 950_000 * minute, minute, 2)
    (d / "hist").mkdir(exist_ok=True)
    (d / "new").mkdir(exist_ok=True)
    day = timedelta(days=1)
    for i in range(300):
        # 5,000 stored days; the update revises the last two (their volumes) and adds one.
        bars_csv(d / "hist" / f"S{i:04d}.csv", 5000, datetime(2006, 1, 2), day, 100 + i, price=50.0, vol=0.01)
        full = d / "new" / f"S{i:04d}.csv"
        bars_csv(full, 5001, datetime(2006, 1, 2), day, 100 + i, price=50.0, vol=0.01, revise_from=4998)
        lines = full.read_text().splitlines()
        full.write_text("\n".join([lines[0]] + lines[-3:]) + "\n")
    (d / "done").write_text("ok")


def append_data(d):
    minute = timedelta(minutes=1)
    # P8: the bars after the end of m1.csv (1M minutes from its start), a 100-bar series.
    end = datetime(2015, 1, 2) + 1_000_000 * minute
    bars_csv(d / "a1.csv", 1, end, minute, 3)
    bars_csv(d / "a100.csv", 100, end, minute, 4)
    bars_csv(d / "s100.csv", 100, datetime(2015, 1, 2), minute, 5)
    bars_csv(d / "s100_a1.csv", 1, datetime(2015, 1, 2) + 100 * minute, minute, 6)
    # P9: 500 series of 20,000 minute bars (one file, linked 500 times) and one new bar each.
    (d / "p9hist").mkdir(exist_ok=True)
    (d / "p9new").mkdir(exist_ok=True)
    bars_csv(d / "p9.csv", 20_000, datetime(2024, 1, 2), minute, 7)
    for i in range(500):
        link = d / "p9hist" / f"M{i:04d}.csv"
        if not link.exists():
            os.link(d / "p9.csv", link)
        bars_csv(d / "p9new" / f"M{i:04d}.csv", 1, datetime(2024, 1, 2) + 20_000 * minute, minute, 1000 + i)
    (d / "done-p8").write_text("ok")


def scale_data(d):
    """The 10M-bar files of the scale cases, made on first use (a minute and 600 MB)."""
    if not (d / "done-10m").exists():
        minute = timedelta(minutes=1)
        bars_csv(d / "m10.csv", 10_000_000, datetime(2005, 1, 3), minute, 11)
        bars_csv(d / "m10_new.csv", 1_000_000, datetime(2005, 1, 3) + 9_500_000 * minute, minute, 12)
        (d / "done-10m").write_text("ok")
    return d


# P10's day: inside the 10M-bar series (which runs from 2005-01-03 for 19 years).
P10_DAY = "2015-06-15"


def day_data(d):
    """The 1,440 bars of P10's day, as the whole of a second series."""
    if not (d / "done-d1440").exists():
        bars_csv(d / "d1440.csv", 1440, datetime.fromisoformat(P10_DAY), timedelta(minutes=1), 13)
        (d / "done-d1440").write_text("ok")
    return d


def timed(cmd):
    """Wall seconds (perf_counter), CPU seconds and peak RSS of the child (wait4's rusage),
    to the microsecond: appends take milliseconds, below /usr/bin/time's resolution."""
    t = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t
    stderr = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"failed ({code}): {' '.join(cmd)}\n{stderr[-2000:]}")
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024}


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    return path


def tag(binary):
    return hashlib.sha1(str(Path(binary).resolve()).encode()).hexdigest()[:8]


def prepared(binary, kind, d):
    """A store built once per binary (untimed), copied before each timed run."""
    p = W / f"prep-{tag(binary)}-{kind}"
    if not (p / ".ready").exists():
        fresh(p)
        if kind in ("1m", "s100", "10m", "d1440"):
            src = d / {"1m": "m1.csv", "s100": "s100.csv", "10m": "m10.csv", "d1440": "d1440.csv"}[kind]
            subprocess.run([binary, "--data-dir", str(p), "import", "--type", "stock", "--symbol", "AAPL",
                            "--period", "1m", str(src)], check=True, stdout=subprocess.DEVNULL)
        elif kind == "p9":
            files = sorted(str(f) for f in (d / "p9hist").glob("*.csv"))
            subprocess.run([binary, "--data-dir", str(p), "import", "--type", "stock", "--period", "1m"] + files,
                           check=True, stdout=subprocess.DEVNULL)
        else:
            files = sorted(str(f) for f in (d / "hist").glob("*.csv"))
            subprocess.run([binary, "--data-dir", str(p), "import", "--type", "stock", "--period", "1d"] + files,
                           check=True, stdout=subprocess.DEVNULL)
        (p / ".ready").write_text("")
    return p


def run_dir(binary):
    return W / f"run-{tag(binary)}"


def copy_of(src, dst):
    fresh(dst)
    shutil.copytree(src, dst, symlinks=True)
    # Untimed: the copy's dirty pages would otherwise be written by the run's first fsync
    # of each file (an append's fdatasync of a 52 MB CSV would write all of it).
    os.sync()
    return dst


def p1(b, d):
    return timed([b, "--data-dir", str(fresh(run_dir(b))), "import", "--type", "stock", "--symbol", "AAPL",
                  "--period", "1m", str(d / "m1.csv")])


def p2(b, d):
    st = copy_of(prepared(b, "1m", d), run_dir(b))
    return timed([b, "--data-dir", str(st), "import", "--type", "stock", "--symbol", "AAPL", "--period", "1m",
                  str(d / "m1_new.csv")])


def p3(b, d):
    out = W / f"out-{tag(b)}.csv"
    return timed([b, "--data-dir", str(prepared(b, "1m", d)), "export", "--type", "stock", "--symbol", "AAPL",
                  "--period", "1m", "--format", "csv", "-o", str(out)])


def p4(b, d):
    st = copy_of(prepared(b, "1d", d), run_dir(b))
    files = sorted(str(f) for f in (d / "new").glob("*.csv"))
    return timed([b, "--data-dir", str(st), "import", "--type", "stock", "--period", "1d"] + files)


def p5(b, d):
    return timed([b, "--data-dir", str(prepared(b, "1d", d)), "verify", "--all"])


def append_to(kind, new):
    def run(b, d):
        st = copy_of(prepared(b, kind, d), run_dir(b))
        return timed([b, "--data-dir", str(st), "import", "--type", "stock", "--symbol", "AAPL", "--period", "1m",
                      str(d / new)])
    return run


def p1_10m(b, d):
    return timed([b, "--data-dir", str(fresh(run_dir(b))), "import", "--type", "stock", "--symbol", "AAPL",
                  "--period", "1m", str(scale_data(d) / "m10.csv")])


def p2_10m(b, d):
    st = copy_of(prepared(b, "10m", scale_data(d)), run_dir(b))
    return timed([b, "--data-dir", str(st), "import", "--type", "stock", "--symbol", "AAPL", "--period", "1m",
                  str(d / "m10_new.csv")])


def p9(b, d):
    st = copy_of(prepared(b, "p9", d), run_dir(b))
    files = sorted(str(f) for f in (d / "p9new").glob("*.csv"))
    return timed([b, "--data-dir", str(st), "import", "--type", "stock", "--period", "1m"] + files)


def export_day(kind):
    def run(b, d):
        data = scale_data(d) if kind == "10m" else day_data(d)
        out = W / f"out-{tag(b)}-day.csv"
        return timed([b, "--data-dir", str(prepared(b, kind, data)), "export", "--type", "stock", "--symbol", "AAPL",
                      "--period", "1m", "--from", P10_DAY, "--to", P10_DAY, "--format", "csv", "-o", str(out)])
    return run


# Workloads measured as a ratio of two commands of one binary, run alternately.
PAIRED = {"P10": (export_day("10m"), export_day("d1440"))}

WORK = {"P1": p1, "P2": p2, "P3": p3, "P4": p4, "P5": p5, "P8a": append_to("1m", "a1.csv"),
        "P8b": append_to("s100", "s100_a1.csv"), "P8c": append_to("1m", "a100.csv"), "P9": p9,
        "P1-10M": p1_10m, "P2-10M": p2_10m}
# Run only when asked for by name (--only): each takes tens of seconds and 1.5 GB of disk.
ON_REQUEST = {"P1-10M", "P2-10M"}


def summary(pairs, x, y, over):
    """Medians of both sides of `pairs` and the median of the pair-by-pair ratios
    side over[0] / side over[1], for wall and CPU time, and both peaks."""
    med = lambda side, k: statistics.median(p[side][k] for p in pairs)
    num, den = over
    ratio = lambda k: statistics.median(p[num][k] / p[den][k] for p in pairs if p[den][k] > 0)
    names = (x, y)
    return (f"{x} wall {med(0, 'wall'):.4f} s cpu {med(0, 'cpu'):.4f} s | {y} wall {med(1, 'wall'):.4f} s "
            f"cpu {med(1, 'cpu'):.4f} s | {names[num]}/{names[den]} wall {ratio('wall'):.3f} cpu {ratio('cpu'):.3f} "
            f"({len(pairs)} pairs; peak {x} {max(p[0]['rss_mb'] for p in pairs):.0f} MB, "
            f"{y} {max(p[1]['rss_mb'] for p in pairs):.0f} MB)")


def loadavg():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("run")
    r.add_argument("--bin", default="target/release/barvault")
    r.add_argument("--runs", type=int, default=7)
    r.add_argument("--only", default="")
    c = sub.add_parser("ab")
    c.add_argument("--a", required=True)
    c.add_argument("--b", required=True)
    c.add_argument("--pairs", type=int, default=7)
    c.add_argument("--only", default="")
    a = ap.parse_args()
    only = [o.strip() for o in a.only.split(",") if o.strip()]
    d = data()
    print(f"load average at start: {loadavg()}", flush=True)
    for name, (fa, fb) in PAIRED.items():
        if name not in only:  # on request only, like the 10M cases
            continue
        bins = [a.bin] if a.mode == "run" else [a.a, a.b]
        for binary in bins:
            b = str(Path(binary).resolve())
            fa(b, d), fb(b, d)  # untimed: prepares both stores and warms the page cache
            n = a.runs if a.mode == "run" else a.pairs
            pairs = [(fa(b, d), fb(b, d)) for _ in range(n)]
            print(f"{name} ({binary}): {summary(pairs, 'a', 'b', over=(0, 1))}", flush=True)
            for i, (x, y) in enumerate(pairs):
                print(f"  pair {i + 1}: a {x['wall']:.4f} s / {x['cpu']:.4f} cpu-s, b {y['wall']:.4f} s / "
                      f"{y['cpu']:.4f} cpu-s, a/b wall {x['wall'] / y['wall']:.3f}", flush=True)
    for name, fn in WORK.items():
        if only and name not in only and name.rstrip("abc") not in only:
            continue
        if not only and name in ON_REQUEST:
            continue
        if a.mode == "run":
            b = str(Path(a.bin).resolve())
            res = [fn(b, d) for _ in range(a.runs)]
            med = {k: statistics.median(x[k] for x in res) for k in ("wall", "cpu")}
            print(f"{name}: wall {med['wall']:.4f} s, cpu {med['cpu']:.4f} s, peak {max(x['rss_mb'] for x in res):.0f} MB"
                  f" (median of {a.runs})", flush=True)
        else:
            ba, bb = str(Path(a.a).resolve()), str(Path(a.b).resolve())
            pairs = []
            for _ in range(a.pairs):
                pairs.append((fn(ba, d), fn(bb, d)))
            print(f"{name}: {summary(pairs, 'A', 'B', over=(1, 0))}", flush=True)
    print(f"load average at end: {loadavg()}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
