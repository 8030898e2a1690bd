"""Checks that barvault Parquet files read exactly in pandas, pyarrow and polars.

Usage: python_check.py FILE EXPECTED.json [FILE EXPECTED.json ...]

EXPECTED.json holds `columns` (names in file order), `timestamp_ns` (int list),
`values` (column -> list of IEEE-754 bit patterns as unsigned ints, null for missing)
and `metadata` (key-value pairs the footer must carry). Floats are compared by bits,
so -0.0, subnormals and NaN payloads must survive. Exits non-zero on any mismatch.
"""

import json
import math
import struct
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

try:
    import polars as pl
except ImportError:  # optional reader
    pl = None


def bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


class Checker:
    def __init__(self):
        self.errors = []

    def eq(self, what, got, want):
        if got != want:
            self.errors.append(f"{what}: got {got!r}, want {want!r}")

    def floats(self, what, got, want, nulls_as_nan=False):
        """got: python floats or None; want: bit patterns or None."""
        if len(got) != len(want):
            self.errors.append(f"{what}: {len(got)} values, want {len(want)}")
            return
        for i, (g, w) in enumerate(zip(got, want)):
            if w is None:
                ok = g is None or (nulls_as_nan and isinstance(g, float) and math.isnan(g))
            else:
                ok = g is not None and bits(g) == w
            if not ok:
                shown = None if g is None else f"{g!r} (bits {bits(g):#018x})"
                want_shown = None if w is None else f"bits {w:#018x}"
                self.errors.append(f"{what}[{i}]: got {shown}, want {want_shown}")
                return


def check_pyarrow(c, path, exp):
    meta = pq.read_metadata(path).metadata or {}
    kv = {k.decode(): v.decode() for k, v in meta.items()}
    for k, v in exp["metadata"].items():
        c.eq(f"pyarrow metadata {k}", kv.get(k), v)
    c.eq("pyarrow: no pandas metadata", "pandas" in kv, False)

    table = pq.read_table(path)
    c.eq("pyarrow columns", table.column_names, exp["columns"])
    c.eq("pyarrow timestamp type", table.schema.field("timestamp").type, pa.timestamp("ns", tz="UTC"))
    c.eq("pyarrow timestamp nullable", table.schema.field("timestamp").nullable, False)
    c.eq("pyarrow timestamps", table.column("timestamp").cast(pa.int64()).to_pylist(), exp["timestamp_ns"])
    for name, want in exp["values"].items():
        c.eq(f"pyarrow {name} type", table.schema.field(name).type, pa.float64())
        c.floats(f"pyarrow {name}", table.column(name).to_pylist(), want)


def check_pandas(c, path, exp):
    df = pd.read_parquet(path)
    c.eq("pandas index", isinstance(df.index, pd.RangeIndex), True)
    c.eq("pandas columns", list(df.columns), exp["columns"])
    ts = df["timestamp"]
    c.eq("pandas timestamp tz-aware UTC", str(getattr(ts.dt, "tz", None)), "UTC")
    c.eq("pandas timestamp unit", ts.dt.unit, "ns")
    c.eq("pandas timestamps", ts.array.asi8.tolist(), exp["timestamp_ns"])
    for name, want in exp["values"].items():
        c.eq(f"pandas {name} dtype", str(df[name].dtype), "float64")
        c.floats(f"pandas {name}", df[name].to_numpy().tolist(), want, nulls_as_nan=True)


def check_polars(c, path, exp):
    df = pl.read_parquet(path)
    c.eq("polars columns", df.columns, exp["columns"])
    c.eq("polars timestamp dtype", df.schema["timestamp"], pl.Datetime("ns", "UTC"))
    c.eq("polars timestamps", df["timestamp"].dt.epoch("ns").to_list(), exp["timestamp_ns"])
    for name, want in exp["values"].items():
        c.eq(f"polars {name} dtype", df.schema[name], pl.Float64)
        c.floats(f"polars {name}", df[name].to_list(), want)


def main(argv):
    if len(argv) < 2 or len(argv) % 2:
        print(__doc__, file=sys.stderr)
        return 2
    readers = [("pyarrow", check_pyarrow), ("pandas", check_pandas)]
    if pl is not None:
        readers.append(("polars", check_polars))
    else:
        print("polars not importable: skipped", file=sys.stderr)
    c = Checker()
    for path, expected in zip(argv[0::2], argv[1::2]):
        with open(expected) as f:
            exp = json.load(f)
        for name, check in readers:
            before = len(c.errors)
            try:
                check(c, path, exp)
            except Exception as e:  # a reader failing to open the file is a finding too
                c.errors.append(f"{name} failed on {path}: {type(e).__name__}: {e}")
            status = "ok" if len(c.errors) == before else "MISMATCH"
            print(f"{path}: {name} {status}")
    versions = f"pandas {pd.__version__}, pyarrow {pa.__version__}" + (f", polars {pl.__version__}" if pl else "")
    print(versions)
    for e in c.errors[:50]:
        print("  " + e, file=sys.stderr)
    return 1 if c.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
