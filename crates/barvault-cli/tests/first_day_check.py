"""What a new user does next: open barvault's exports in pandas and polars.

usage: first_day_check.py EXPORT.csv EXPORT.parquet

Both files hold the same bars. Checks that pandas reads the CSV with a UTC index and
float64 columns (whole numbers included), that it joins with the Parquet file (which
fails with "Cannot join tz-naive with tz-aware" when the CSV is naive), that every value
of the two agrees, and that polars types the CSV the same way. Prints every problem and
exits 1 when there is one.
"""

import sys

import pandas as pd
import polars as pl


def main() -> int:
    csv_path, parquet_path = sys.argv[1], sys.argv[2]
    errors = []
    csv = pd.read_csv(csv_path, index_col="timestamp", parse_dates=True)
    pq = pd.read_parquet(parquet_path)
    if "timestamp" in pq.columns:
        pq = pq.set_index("timestamp")
    if str(getattr(csv.index, "tz", None)) != "UTC":
        errors.append(f"pandas: CSV index is {csv.index.dtype}, not UTC")
    for name, dtype in csv.dtypes.items():
        if str(dtype) != "float64":
            errors.append(f"pandas: CSV column {name} is {dtype}, not float64")
    try:
        joined = csv.join(pq.add_suffix("_pq"), how="inner")
        if len(joined) != len(csv):
            errors.append(f"pandas: join kept {len(joined)} of {len(csv)} rows")
        for name in csv.columns:
            a, b = joined[name], joined[name + "_pq"]
            if not ((a == b) | (a.isna() & b.isna())).all():
                errors.append(f"pandas: column {name} differs between CSV and Parquet")
    except Exception as e:  # noqa: BLE001 - the message is the finding
        errors.append(f"pandas: CSV and Parquet cannot be joined: {e}")
    frame = pl.read_csv(csv_path, try_parse_dates=True)
    ts = frame.schema["timestamp"]
    if getattr(ts, "time_zone", None) != "UTC":
        errors.append(f"polars: timestamp is {ts}, not UTC")
    for name, dtype in frame.schema.items():
        if name != "timestamp" and dtype != pl.Float64:
            errors.append(f"polars: column {name} is {dtype}, not Float64")
    for e in errors:
        print(e)
    print(f"pandas {pd.__version__}, polars {pl.__version__}: {'FAILED' if errors else 'ok'} ({len(csv)} rows)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
