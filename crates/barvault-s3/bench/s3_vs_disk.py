#!/usr/bin/env python3
"""P1 and P4 of ../shared/bench/run_peers.py, on disk and on a local S3 server, side by side.

  P1  import 1M one-minute bars into an empty store
  P4  daily update of 300 symbols (the last two stored days revised, one new day)

Runs alternate disk, bucket, disk, bucket, ... (PAIRS pairs); each pair's ratio is bucket
wall / disk wall, and the report gives the median ratio with the medians of wall and CPU
seconds (user + system of the barvault process; moto's own CPU beside it) and the load
average before and after. The bucket is moto's threaded `moto_server` on 127.0.0.1 (a fresh
server per run, so its memory does not grow), reached over HTTP exactly as S3 would be.

Usage (from the project root, after `cargo build --release -p barvault-cli`):
  python3 crates/barvault-s3/bench/s3_vs_disk.py [--bin target/release/barvault] [--pairs 7] [--only P1,P4]
Needs a Python with pandas and numpy (for ../shared/bench/gen_bars.py) and moto[server]:
BARVAULT_MOTO_SERVER names moto_server (default target/ci-venv/bin/moto_server) and the
workloads are generated once under $BENCH_DIR (default /tmp/barvault-s3-bench).
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
GEN = ROOT.parent / "shared" / "bench" / "gen_bars.py"
ap = argparse.ArgumentParser()
ap.add_argument("--bin", default=str(ROOT / "target/release/barvault"))
ap.add_argument("--pairs", type=int, default=7)
ap.add_argument("--only", default="P1,P4")
a = ap.parse_args()
MOTO = os.environ.get("BARVAULT_MOTO_SERVER", str(ROOT / "target/ci-venv/bin/moto_server"))
PY = Path(MOTO).parent / "python"
W = Path(os.environ.get("BENCH_DIR", "/tmp/barvault-s3-bench"))
W.mkdir(parents=True, exist_ok=True)


def data():
    d = W / "data"
    if not (d / "done").exists():
        d.mkdir(exist_ok=True)
        subprocess.run([str(PY), str(GEN), str(d / "m1.csv"), "1000000"], check=True)
        subprocess.run([str(PY), str(GEN), "--universe", str(d)], check=True)
        (d / "done").write_text("ok")
    return d


D = data()


class Moto:
    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        import urllib.request
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{self.port}/bench", method="PUT"))

    def env(self):
        e = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BARVAULT_"))}
        e.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{self.port}", AWS_ALLOW_HTTP="true", AWS_REGION="us-east-1",
                 AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret")
        return e

    def cpu(self):
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def run(args, env=None, timed=True):
    if not timed:
        subprocess.run([a.bin] + args, check=True, stdout=subprocess.DEVNULL, env=env)
        return None
    r = subprocess.run(["/usr/bin/time", "-f", "%e %U %S"] + [a.bin] + args, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(args[:6])}\n{r.stderr[-2000:]}")
    wall, user, system = r.stderr.strip().splitlines()[-1].split()
    return float(wall), float(user) + float(system)


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BARVAULT_"))}


def fresh(p):
    shutil.rmtree(p, ignore_errors=True)
    return str(p)


P1 = ["import", "--type", "stock", "--symbol", "AAPL", "--period", "1m", str(D / "m1.csv")]
HIST = ["import", "--type", "stock", "--period", "1d"] + sorted(str(p) for p in (D / "hist").glob("*.csv"))
NEW = ["import", "--type", "stock", "--period", "1d"] + sorted(str(p) for p in (D / "new").glob("*.csv"))


def disk(work):
    if work == "P1":
        return run(["--data-dir", fresh(W / "disk-p1")] + P1, clean_env()) + (0.0,)
    prep = W / "disk-p4-prep"
    if not (prep / ".ready").exists():
        run(["--data-dir", fresh(prep)] + HIST, clean_env(), timed=False)
        (prep / ".ready").write_text("")
    fresh(W / "disk-p4")
    shutil.copytree(prep, W / "disk-p4", symlinks=True)
    return run(["--data-dir", str(W / "disk-p4")] + NEW, clean_env()) + (0.0,)


def bucket(work, n):
    moto = Moto()
    try:
        env = moto.env()
        url = f"s3://bench/{work.lower()}-{n}"
        if work == "P4":
            run(["--data-dir", url] + HIST, env, timed=False)
        before = moto.cpu()
        wall, cpu = run(["--data-dir", url] + (P1 if work == "P1" else NEW), env)
        return wall, cpu, moto.cpu() - before
    finally:
        moto.stop()


def load():
    return Path("/proc/loadavg").read_text().split()[0]


for work in [w.strip() for w in a.only.split(",") if w.strip()]:
    pairs = []
    start_load = load()
    for n in range(a.pairs):
        d = disk(work)
        b = bucket(work, n)
        pairs.append((d, b))
        print(f"{work} pair {n}: disk {d[0]:.3f} s (cpu {d[1]:.2f}), bucket {b[0]:.3f} s (cpu {b[1]:.2f}, "
              f"moto cpu {b[2]:.2f}), ratio {b[0] / d[0]:.2f}", flush=True)
    med = lambda xs: statistics.median(xs)  # noqa: E731
    print(f"{work}: median ratio bucket/disk {med(b[0] / d[0] for d, b in pairs):.2f}; "
          f"disk wall {med(d[0] for d, _ in pairs):.3f} s cpu {med(d[1] for d, _ in pairs):.2f} s; "
          f"bucket wall {med(b[0] for _, b in pairs):.3f} s cpu {med(b[1] for _, b in pairs):.2f} s "
          f"(moto cpu {med(b[2] for _, b in pairs):.2f} s); load {start_load} -> {load()}", flush=True)
