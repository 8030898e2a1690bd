"""Reads a barvault CSV the way a pandas user would and checks every value exactly.

usage: pandas_check.py FILE EXPECTED.json

EXPECTED.json: {"columns": [names after timestamp], "index_ns": [int, ...],
                "values": {column: [u64 bit pattern as a decimal string, or null for missing]}}
Exits 1 and lists every mismatch when any value differs in its bits.
"""

import json
import math
import struct
import sys

import pandas as pd


def bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def from_bits(b: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", b))[0]


def main() -> int:
    path, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path) as f:
        expected = json.load(f)
    df = pd.read_csv(path, index_col="timestamp", parse_dates=True)
    errors = []

    if not pd.api.types.is_datetime64_any_dtype(df.index.dtype):
        errors.append(f"index was not parsed as datetimes: dtype {df.index.dtype}")
    elif expected.get("utc", True) and str(df.index.tz) != "UTC":
        # The Parquet copy reads as UTC: the CSV must too, or the two cannot be joined.
        errors.append(f"index is not UTC-aware: dtype {df.index.dtype}")
    else:
        got = [int(v) for v in df.index.as_unit("ns").asi8]
        if got != expected["index_ns"]:
            errors.append(f"index: expected {expected['index_ns']}, got {got}")

    if list(df.columns) != expected["columns"]:
        errors.append(f"columns: expected {expected['columns']}, got {list(df.columns)}")

    for name, want_col in expected["values"].items():
        if name not in df.columns:
            continue
        if str(df[name].dtype) != "float64":
            # Parquet holds float64; whole numbers written as `3602` would read as int64.
            errors.append(f"{name}: dtype {df[name].dtype}, expected float64")
        got_col = df[name].tolist()
        if len(got_col) != len(want_col):
            errors.append(f"{name}: expected {len(want_col)} rows, got {len(got_col)}")
            continue
        for row, (want, got) in enumerate(zip(want_col, got_col)):
            if want is None:
                if not pd.isna(got):
                    errors.append(f"{name}[{row}]: expected missing, got {got!r}")
                continue
            w = from_bits(int(want))
            g = float(got)
            if math.isnan(w):
                ok = math.isnan(g)
            else:
                ok = bits(g) == bits(w)
            if not ok:
                errors.append(f"{name}[{row}]: expected {w!r} (bits {int(want):#x}), got {g!r} (bits {bits(g):#x})")

    for e in errors:
        print(e)
    print(f"pandas {pd.__version__}: {'FAILED' if errors else 'ok'} ({len(df)} rows)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
