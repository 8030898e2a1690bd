"""barvault: a durable store of OHLCV market bars for pandas, polars and pyarrow.

Every series is kept as a CSV primary copy and a Parquet backup copy, each with a
checksummed metadata record; every write is atomic and durable under a cross-process
series lock; new bars merge into stored ones keep-last by timestamp.

    vault = barvault.open("store")
    vault.persist(df, "stock", "AAPL", "1d")
    df = vault.load("stock", "AAPL", "1d", start="2024-01-01")
"""

import datetime
import os
from typing import Any, Literal, Optional, Union

import pandas
import polars
import pyarrow

__version__: str
__all__: list[str]

Kind = Literal["stock", "future", "forex"]
Period = Literal["1m", "2m", "5m", "10m", "15m", "20m", "30m", "1h", "4h", "1d", "1W", "1M", "3M"]
TimeBound = Union[str, datetime.datetime, datetime.date, "pandas.Timestamp", None]
Frame = Union["pandas.DataFrame", "polars.DataFrame", "pyarrow.Table", "pyarrow.RecordBatch"]

def open(
    path: Union[str, "os.PathLike[str]"],
    *,
    backup_enabled: Optional[bool] = None,
    compression: Optional[Literal["lz4", "snappy", "zstd", "gzip", "none"]] = None,
    validation: Optional[Literal["strict", "drop", "off"]] = None,
    config: Union[str, "os.PathLike[str]", None] = None,
) -> Vault:
    """Opens (creating if needed) the store at `path`.

    The configuration is layered as the CLI layers it: defaults < `config` (a barvault.toml;
    without it ./barvault.toml is read when present) < `BARVAULT_*` environment variables <
    the arguments given here. `backup_enabled` (default True) keeps the Parquet copy;
    `compression` is its codec ("lz4" by default); `validation` is "strict" (default),
    "drop" or "off". Raises ConfigError for an invalid value, StorageError when the
    directory cannot be created.
    """

class Vault:
    """A barvault store. Made by `barvault.open(path)`.

    Safe to use from several threads at once; every call releases the GIL while it reads,
    merges or writes files. The series lock also excludes other processes (a CLI import).
    """

    @property
    def path(self) -> str:
        """The store's base directory."""
    @property
    def backup_enabled(self) -> bool:
        """Whether the Parquet copy is kept."""
    def persist(
        self,
        data: Frame,
        kind: Kind,
        symbol: str,
        period: Period,
        *,
        replace: bool = False,
        on_invalid: Optional[Literal["reject", "drop"]] = None,
        correlation_id: Optional[str] = None,
    ) -> Receipt:
        """Merges the bars of `data` into the series and writes both copies under the lock.

        `data` is a pandas DataFrame (a DatetimeIndex, naive meaning UTC, or a `timestamp`
        column), a polars DataFrame or a pyarrow Table with columns open, high, low, close,
        volume (0 when absent) and any extra numeric columns. Column names are normalized as
        CSV headers are (`Adj Close` is `adj_close`). Rows may be unsorted; a repeated
        timestamp keeps its last row; stored rows at the same timestamps are replaced
        (keep-last). `replace=True` makes the series exactly these bars. `on_invalid` is
        "reject" (refuse the frame, naming the rows and rules: ValidationError) or "drop"
        (leave invalid rows out); by default the store's `validation` setting. Timestamps
        must sit on the period's grid (intraday: multiples of the period; daily and longer:
        one bar per calendar day at the series' time of day); off-grid bars are invalid rows,
        stored as given only with `validation="off"`. In a pandas
        frame NaN in an extra column is a missing value. A refused persist changes no file.
        """
    def load(
        self, kind: Kind, symbol: str, period: Period, *, start: TimeBound = None, end: TimeBound = None
    ) -> Optional["pandas.DataFrame"]:
        """The stored bars as a pandas DataFrame, or None when the series is not stored.

        Index: a DatetimeIndex named `timestamp`, UTC, nanoseconds. Columns: open, high, low,
        close, volume, then the extra columns in name order, float64, NaN where missing.
        `start` / `end` bound the rows, both inclusive (naive means UTC; a bare date as
        `end` means the end of that day).
        """
    def load_polars(
        self, kind: Kind, symbol: str, period: Period, *, start: TimeBound = None, end: TimeBound = None
    ) -> Optional["polars.DataFrame"]:
        """The stored bars as a polars DataFrame (`timestamp` as Datetime(ns, "UTC")), or None."""
    def load_arrow(
        self, kind: Kind, symbol: str, period: Period, *, start: TimeBound = None, end: TimeBound = None
    ) -> Optional["pyarrow.Table"]:
        """The stored bars as a pyarrow Table over barvault's own buffers, or None."""
    def exists(self, kind: Kind, symbol: str, period: Period) -> bool:
        """Whether the series is stored (in either copy)."""
    def file_info(self, kind: Kind, symbol: str, period: Period) -> Optional[FileInfo]:
        """The stored file of the series, or None when it is not stored."""
    def list(self) -> list[SeriesEntry]:
        """Every stored series."""
    def verify(self, *, deep: bool = False) -> VerifyReport:
        """Checks every file against its checksummed record (`deep`: parses and compares all)."""
    def recover(self) -> list[str]:
        """Repairs what verify reports; one line per repair ("path: what was done").

        Raises CorruptError, with the attributes `repaired` and `unrecoverable` (tuples of
        str), when a series cannot be repaired.
        """
    def health(self) -> dict[str, Any]:
        """The store's health, the same content as `barvault health --json`."""

class Receipt:
    """What `Vault.persist` did."""

    file_path: str
    """The primary (CSV) file of the series."""
    series: str
    """The series, as `kind:SYMBOL@period`."""
    rows_read: int
    """Rows given (before repeats were folded and invalid rows dropped)."""
    rows_stored: int
    """Rows in the series afterwards."""
    added: int
    """Timestamps that were not stored before."""
    replaced: int
    """Stored rows whose values changed."""
    unchanged: int
    """Rows that were already stored with the same values."""
    duplicates: int
    """Rows whose timestamp an earlier row of the frame already had (folded into it, keep-last)."""
    dropped_invalid: int
    """Rows left out by on_invalid="drop"."""
    written: bool
    """Whether any file was written (False when the frame changed nothing)."""
    backup_created: bool
    """Whether the previous version of the CSV file was kept as `.backup`."""
    warning: Optional[str]
    """Set when the Parquet copy could not be written (recover() rebuilds it)."""
    correlation_id: str
    """The correlation id on every log line of this call."""

class FileInfo:
    """The stored file of one series."""

    path: str
    format: str
    size: int
    modified: Optional[datetime.datetime]
    rows: int
    first: Optional[datetime.datetime]
    """First timestamp (UTC, to the microsecond); exact in `first_ns`."""
    last: Optional[datetime.datetime]
    """Last timestamp (UTC, to the microsecond); exact in `last_ns`."""
    first_ns: Optional[int]
    last_ns: Optional[int]
    columns: list[str]

class SeriesEntry:
    """One stored series, as `barvault list` shows it."""

    kind: str
    symbol: str
    period: str
    rows: int
    first: Optional[datetime.datetime]
    last: Optional[datetime.datetime]
    first_ns: Optional[int]
    last_ns: Optional[int]
    formats: list[str]
    generation: int

class VerifyReport:
    """What `Vault.verify` found."""

    clean: bool
    """True when no problem was found."""
    problems: list[str]
    """One line per problem: "kind: path: detail"."""
    notes: list[str]
    """Not problems, in the same form: a Parquet copy lagging behind appends to the CSV."""
    series_checked: int
    files_checked: int
    bytes_checked: int

class BarvaultError(Exception):
    """Base class of every error barvault raises."""

class ValidationError(BarvaultError):
    """Bars broke the validation rules (the message names the rows and rules). Nothing was stored."""

class InvalidInputError(BarvaultError):
    """An argument cannot be used (bad symbol, kind, period, frame, value, time bound). Nothing was stored."""

class LockedError(BarvaultError):
    """Another writer held the series lock for longer than the lock timeout."""

class CorruptError(BarvaultError):
    """A stored file is damaged and no sound copy could serve the call; run recover()."""

    repaired: tuple[str, ...]
    """From recover(): what it repaired before giving up (empty otherwise)."""
    unrecoverable: tuple[str, ...]
    """From recover(): each series it could not repair, with the reason (empty otherwise)."""

class ConfigError(BarvaultError):
    """The configuration is invalid."""

class StorageError(BarvaultError):
    """An operating-system call failed, or something required does not exist."""
