#!/usr/bin/env python3
"""barvault against the seed design (pandas) and the polars peer, pair by pair.

`../shared/bench/run_peers.py` reports the median of each system's runs; on a shared,
noisy machine that compares runs made under different loads. This runner alternates the
three systems inside each round (barvault, seed, polars, then the next round) and reports,
per workload, the median of the round-by-round ratios seed/barvault and polars/barvault,
for wall time and for CPU time (user + system of the process and its children, from
`wait4`), beside each system's median wall, CPU and peak RSS and the load average at the
start and end of the workload.

Usage (from the project root, after `cargo build --release -p barvault-cli`):
  python3 scripts/peers.py --peers ../shared/bench [--bin target/release/barvault] \
      [--rounds 7] [--only P1,P2,P3,P4] [--json out.json]
The peers' scripts (seed_reference.py, polars_peer.py, gen_bars.py) and their data come
from the shared bench directory: run `run_peers.py --runs 1` once first, it creates the
virtualenv and the workloads under $BENCH_DIR (default /tmp/barvault-bench).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the timing of one process, shared with scripts/bench.py)

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--peers", required=True, help="directory of seed_reference.py and polars_peer.py")
ap.add_argument("--bin", default="target/release/barvault")
ap.add_argument("--rounds", type=int, default=7)
ap.add_argument("--only", default="P1,P2,P3,P4")
ap.add_argument("--json", help="also write the figures to this file")
a = ap.parse_args()

W = Path(os.environ.get("BENCH_DIR", "/tmp/barvault-bench"))
D = W / "data"
PY = W / "venv/bin/python"
if not (D / "done").exists() or not PY.exists():
    raise SystemExit(f"no workloads under {W}: run {a.peers}/run_peers.py --runs 1 first")
PEERS = Path(a.peers).resolve()
BIN = str(Path(a.bin).resolve())


def peer(script):
    base = [str(PY), str(PEERS / script)]
    return {
        "import": lambda st, f, sym, per: base + [st, "import", "stock", sym, per, f],
        "many": lambda st, dirp, per: base + [st, "update-many", "stock", per, dirp],
        "export": lambda st, sym, per, out: base + [st, "export", "stock", sym, per, out],
    }


SYS = {
    "barvault": {
        "import": lambda st, f, sym, per: [BIN, "--data-dir", st, "import", "--type", "stock", "--symbol", sym,
                                           "--period", per, f],
        "many": lambda st, dirp, per: [BIN, "--data-dir", st, "import", "--type", "stock", "--period", per]
        + sorted(str(p) for p in Path(dirp).glob("*.csv")),
        "export": lambda st, sym, per, out: [BIN, "--data-dir", st, "export", "--type", "stock", "--symbol", sym,
                                             "--period", per, "--format", "csv", "-o", out],
    },
    "seed": peer("seed_reference.py"),
    "polars": peer("polars_peer.py"),
}


def timed(cmd):
    """Wall seconds, CPU seconds and peak RSS (MB) of one process run to its end."""
    r = bench.timed(cmd)
    return r["wall"], r["cpu"], r["rss_mb"]


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    return str(path)


def prepared(s, kind):
    """A store built once per system (untimed), copied before each timed run."""
    p = W / f"pairs-prep-{s}-{kind}"
    if not (p / ".ready").exists():
        fresh(p)
        c = SYS[s]
        cmd = c["import"](str(p), str(D / "m1.csv"), "AAPL", "1m") if kind == "1m" else c["many"](str(p), str(D / "hist"), "1d")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        (p / ".ready").write_text("")
    return p


def copy_of(src, s):
    dst = W / f"pairs-run-{s}"
    fresh(dst)
    shutil.copytree(src, dst, symlinks=True)
    subprocess.run(["sync"], check=True)
    return str(dst)


WORK = {
    "P1": ("import 1M bars, empty store",
           lambda s, c: timed(c["import"](fresh(W / f"pairs-run-{s}"), str(D / "m1.csv"), "AAPL", "1m"))),
    "P2": ("merge 100k (50% overlap) into 1M",
           lambda s, c: timed(c["import"](copy_of(prepared(s, "1m"), s), str(D / "m1_new.csv"), "AAPL", "1m"))),
    "P3": ("export 1M bars to CSV",
           lambda s, c: timed(c["export"](str(prepared(s, "1m")), "AAPL", "1m", str(W / f"pairs-out-{s}.csv")))),
    "P4": ("daily update, 300 symbols",
           lambda s, c: timed(c["many"](copy_of(prepared(s, "1d"), s), str(D / "new"), "1d"))),
}

report = {}
for key in [k.strip() for k in a.only.split(",") if k.strip()]:
    name, fn = WORK[key]
    for s in SYS:  # prepared stores outside the timed rounds
        if key in ("P2", "P3"):
            prepared(s, "1m")
        if key == "P4":
            prepared(s, "1d")
    load0 = os.getloadavg()
    runs = {s: [] for s in SYS}
    for _ in range(a.rounds):
        for s, c in SYS.items():
            runs[s].append(fn(s, c))
    load1 = os.getloadavg()
    fig = {"workload": name, "rounds": a.rounds, "load_start": load0, "load_end": load1}
    for s, v in runs.items():
        fig[s] = {"wall_s": statistics.median(x[0] for x in v), "cpu_s": statistics.median(x[1] for x in v),
                  "peak_mb": max(x[2] for x in v)}
    for peer_name in ("seed", "polars"):
        for i, what in ((0, "wall"), (1, "cpu")):
            ratios = [p[i] / b[i] for p, b in zip(runs[peer_name], runs["barvault"])]
            fig[f"{peer_name}_over_barvault_{what}"] = statistics.median(ratios)
    report[key] = fig
    b, sd, po = fig["barvault"], fig["seed"], fig["polars"]
    print(f"{key} {name}: barvault {b['wall_s']:.3f} s wall / {b['cpu_s']:.3f} s CPU ({b['peak_mb']:.0f} MB), "
          f"seed {sd['wall_s']:.2f} / {sd['cpu_s']:.2f}, polars {po['wall_s']:.2f} / {po['cpu_s']:.2f}; "
          f"pair ratios seed {fig['seed_over_barvault_wall']:.1f}x wall {fig['seed_over_barvault_cpu']:.1f}x CPU, "
          f"polars {fig['polars_over_barvault_wall']:.1f}x wall {fig['polars_over_barvault_cpu']:.1f}x CPU; "
          f"load {load0[0]:.2f} -> {load1[0]:.2f}", flush=True)
if a.json:
    Path(a.json).write_text(json.dumps(report, indent=2))
