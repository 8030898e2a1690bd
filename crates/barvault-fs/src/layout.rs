//! Where each series lives on disk. Paths are built only from validated [`SeriesKey`]s
//! (whose symbols can never hold a separator, `..` or a leading dot) and a checked
//! extension, and parsing a path back accepts only names that building would produce, so
//! a stray or hostile file in the tree is ignored rather than misread.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use barvault_domain::{Instrument, InstrumentKind, Period, SeriesKey};
use barvault_ports::{IoStep, StorageError};

use crate::fs::Fs;

const BACKUP_SUFFIX: &str = ".backup";
const LOCK_SUFFIX: &str = ".lock";
const TEMP_MARK: &str = ".tmp.";
const SPARE_SUFFIX: &str = ".spare";

/// The directory tree of one file format under a base directory:
/// `{base}/{stocks|futures|forex}/{period}/{SYMBOL}.{ext}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    base: PathBuf,
    ext: String,
}

/// A data file or backup found by [`Layout::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    pub series: SeriesKey,
    /// The format extension (`csv`, `parquet`).
    pub ext: String,
    pub path: PathBuf,
    pub size: u64,
    pub modified: Option<SystemTime>,
}

/// A temp file left by an interrupted write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempFile {
    pub path: PathBuf,
    /// The series whose file the write was replacing, when its name says.
    pub series: Option<SeriesKey>,
    /// The file the write was replacing (`AAPL.csv`, or `AAPL.csv.backup`).
    pub target_name: String,
    /// The writing process.
    pub pid: Option<u32>,
    /// Time since the last modification (zero if the clock went backwards).
    pub age: Duration,
}

/// A lock file; `ext` is `None` for a series-wide lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockFile {
    pub series: SeriesKey,
    pub ext: Option<String>,
    pub path: PathBuf,
}

/// An entry that is not what its name says it is: a symbolic link (or anything but a
/// regular file) under a name of the layout, or a layout directory that is a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignEntry {
    pub path: PathBuf,
    /// The series its name belongs to, if any.
    pub series: Option<SeriesKey>,
    pub why: String,
}

/// Everything [`Layout::scan`] recognised, each list sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    pub data: Vec<DataFile>,
    pub backups: Vec<DataFile>,
    pub temps: Vec<TempFile>,
    pub locks: Vec<LockFile>,
    pub foreign: Vec<ForeignEntry>,
}

/// Suffixes the layout itself uses, so never a format's extension.
const RESERVED_EXTS: [&str; 4] = ["backup", "lock", "spare", "tmp"];

/// Extensions are `[a-z][a-z0-9]{0,15}` (lower case, so never confused with a symbol)
/// and not one of the layout's own suffixes.
pub fn is_valid_ext(ext: &str) -> bool {
    (1..=16).contains(&ext.len())
        && !RESERVED_EXTS.contains(&ext)
        && ext.starts_with(|c: char| c.is_ascii_lowercase())
        && ext.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// `.{name}.tmp.{pid}.{random}` in `dir`: unique per process and call, hidden, and
/// recognisable by [`parse_temp_name`].
pub fn temp_path_in(dir: &Path, name: &str) -> PathBuf {
    let random = uuid::Uuid::new_v4().simple().to_string();
    let path = dir.join(format!(".{name}{TEMP_MARK}{}.{}", std::process::id(), &random[..16]));
    // Until it is renamed or removed, a signal handler may remove it (see `inflight`).
    crate::inflight::register(&path);
    path
}

/// `(target name, pid)` of a temp file name made by [`temp_path_in`].
pub fn parse_temp_name(file_name: &str) -> Option<(String, Option<u32>)> {
    let rest = file_name.strip_prefix('.')?;
    let mark = rest.rfind(TEMP_MARK)?;
    let (target, tail) = (&rest[..mark], &rest[mark + TEMP_MARK.len()..]);
    let (pid, random) = tail.split_once('.')?;
    if target.is_empty() || random.is_empty() || !random.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some((target.to_string(), pid.parse().ok()))
}

/// `.{name}.spare` in `dir`: the empty file the next write of `name` fills instead of
/// creating one (see `atomic`). Hidden, and never a data file: its stem starts with a dot.
pub fn spare_path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}{SPARE_SUFFIX}"))
}

/// `{base}/{kind dir}/{period}/.{SYMBOL}.lock`: the one lock file of a series.
pub fn series_lock_path(base: &Path, series: &SeriesKey) -> PathBuf {
    base.join(series.instrument.kind().dir_name())
        .join(series.period.as_str())
        .join(format!(".{}{LOCK_SUFFIX}", series.instrument.symbol()))
}

/// `{path}.backup`.
pub fn backup_path_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(BACKUP_SUFFIX);
    PathBuf::from(s)
}

fn instrument_of(kind: InstrumentKind, symbol: &str) -> Option<Instrument> {
    let instrument = Instrument::new(kind, symbol).ok()?;
    // Only the canonical spelling maps back: `aapl.csv` is not the file of AAPL.
    (instrument.symbol().as_str() == symbol).then_some(instrument)
}

impl Layout {
    /// The layout of format `ext` under `base`; refuses an extension that is not `[a-z][a-z0-9]*`.
    pub fn new(base: impl Into<PathBuf>, ext: &str) -> Result<Self, StorageError> {
        if !is_valid_ext(ext) {
            return Err(StorageError::Config {
                field: "format".into(),
                message: format!("{ext:?} is not a valid file extension (expected [a-z][a-z0-9]{{0,15}})"),
            });
        }
        Ok(Self { base: base.into(), ext: ext.to_string() })
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    pub fn ext(&self) -> &str {
        &self.ext
    }

    /// `{base}/{kind dir}/{period}`.
    pub fn series_dir(&self, series: &SeriesKey) -> PathBuf {
        self.base.join(series.instrument.kind().dir_name()).join(series.period.as_str())
    }

    /// `{kind dir}/{period}/{SYMBOL}.{ext}`, `/`-separated, as metadata records it.
    pub fn relative_path(&self, series: &SeriesKey) -> String {
        format!("{}.{}", series.relative_stem(), self.ext)
    }

    /// `{base}/{kind dir}/{period}/{SYMBOL}.{ext}`.
    pub fn data_path(&self, series: &SeriesKey) -> PathBuf {
        self.series_dir(series).join(format!("{}.{}", series.instrument.symbol(), self.ext))
    }

    /// The data file or the backup of `series`.
    pub fn path_for(&self, series: &SeriesKey, which: barvault_ports::Which) -> PathBuf {
        match which {
            barvault_ports::Which::Current => self.data_path(series),
            barvault_ports::Which::Backup => self.backup_path(series),
        }
    }

    /// `{data path}.backup`.
    pub fn backup_path(&self, series: &SeriesKey) -> PathBuf {
        backup_path_of(&self.data_path(series))
    }

    /// `.{SYMBOL}.{ext}.spare` beside the data.
    pub fn spare_path(&self, series: &SeriesKey) -> PathBuf {
        spare_path_in(&self.series_dir(series), &format!("{}.{}", series.instrument.symbol(), self.ext))
    }

    /// `.{SYMBOL}.lock` beside the data: the one lock of the series, for every format.
    pub fn series_lock_path(&self, series: &SeriesKey) -> PathBuf {
        series_lock_path(&self.base, series)
    }

    /// The series and extension of a data file path relative to the base
    /// (`stocks/1d/AAPL.csv`), of any format; `None` for anything else.
    pub fn parse(&self, relative: &Path) -> Option<(SeriesKey, String)> {
        let mut parts = relative.iter().map(|p| p.to_str());
        let (kind, period, file) = (parts.next()??, parts.next()??, parts.next()??);
        if parts.next().is_some() {
            return None;
        }
        let kind = InstrumentKind::from_dir_name(kind)?;
        let period: Period = period.parse().ok()?;
        let (symbol, ext) = file.rsplit_once('.')?;
        if !is_valid_ext(ext) {
            return None;
        }
        Some((SeriesKey::new(instrument_of(kind, symbol)?, period), ext.to_string()))
    }

    /// Lists the data files, backups, temp files and lock files of every format under the
    /// base, and the foreign entries among them (never followed). Unknown names are
    /// skipped; a missing base is an empty scan.
    pub fn scan(&self, fs: &dyn Fs) -> Result<Scan, StorageError> {
        let mut scan = Scan::default();
        let now = SystemTime::now();
        for kind in InstrumentKind::ALL {
            let kind_dir = self.base.join(kind.dir_name());
            if fs.symlink_metadata(&kind_dir).is_ok_and(|m| m.file_type().is_symlink()) {
                scan.foreign.push(ForeignEntry {
                    path: kind_dir,
                    series: None,
                    why: "a layout directory that is a symbolic link; not followed".into(),
                });
                continue;
            }
            for period in Period::ALL {
                let dir = self.base.join(kind.dir_name()).join(period.as_str());
                match fs.symlink_metadata(&dir) {
                    Ok(m) if m.file_type().is_symlink() => {
                        scan.foreign.push(ForeignEntry {
                            path: dir,
                            series: None,
                            why: "a layout directory that is a symbolic link; not followed".into(),
                        });
                        continue;
                    }
                    Ok(m) if !m.is_dir() => {
                        scan.foreign.push(ForeignEntry {
                            path: dir,
                            series: None,
                            why: "a layout directory that is not a directory".into(),
                        });
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StorageError::io(IoStep::Stat, dir, e)),
                }
                let entries = match fs.read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => continue,
                    Err(e) => return Err(StorageError::io(IoStep::List, dir, e)),
                };
                for path in entries {
                    self.classify(fs, kind, period, path, now, &mut scan)?;
                }
            }
        }
        scan.data.sort_by(|a, b| a.path.cmp(&b.path));
        scan.backups.sort_by(|a, b| a.path.cmp(&b.path));
        scan.temps.sort_by(|a, b| a.path.cmp(&b.path));
        scan.locks.sort_by(|a, b| a.path.cmp(&b.path));
        scan.foreign.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(scan)
    }

    fn classify(
        &self,
        fs: &dyn Fs,
        kind: InstrumentKind,
        period: Period,
        path: PathBuf,
        now: SystemTime,
        scan: &mut Scan,
    ) -> Result<(), StorageError> {
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            return Ok(());
        };
        let stat = |path: &Path| match fs.symlink_metadata(path) {
            Ok(m) => Ok(Some(m)),
            // Removed between listing and stat (a concurrent write finished): not there.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io(IoStep::Stat, path, e)),
        };
        let foreign = |scan: &mut Scan, path: PathBuf, series: Option<SeriesKey>, what: &str| {
            scan.foreign.push(ForeignEntry {
                path,
                series,
                why: format!("{what} that is not a regular file (a symbolic link?); never followed"),
            });
        };
        if let Some((target_name, pid)) = parse_temp_name(&name) {
            if let Some(m) = stat(&path)? {
                if !m.is_file() {
                    foreign(scan, path, None, "a temp file name");
                    return Ok(());
                }
                let age = m.modified().ok().and_then(|t| now.duration_since(t).ok()).unwrap_or_default();
                let file = target_name.strip_suffix(BACKUP_SUFFIX).unwrap_or(&target_name);
                let series = file
                    .rsplit_once('.')
                    .and_then(|(symbol, _)| instrument_of(kind, symbol))
                    .map(|i| SeriesKey::new(i, period));
                scan.temps.push(TempFile { path, series, target_name, pid, age });
            }
            return Ok(());
        }
        if name.starts_with('.') && name.ends_with(SPARE_SUFFIX) {
            if stat(&path)?.is_some_and(|m| !m.is_file()) {
                foreign(scan, path, None, "a spare file name");
            }
            return Ok(());
        }
        if let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(LOCK_SUFFIX)) {
            let (symbol, ext) = match stem.rsplit_once('.') {
                Some((symbol, ext)) if is_valid_ext(ext) => (symbol, Some(ext.to_string())),
                _ => (stem, None),
            };
            if let Some(instrument) = instrument_of(kind, symbol) {
                let series = SeriesKey::new(instrument, period);
                match stat(&path)? {
                    Some(m) if !m.is_file() => foreign(scan, path, Some(series), "a lock file"),
                    Some(_) => scan.locks.push(LockFile { series, ext, path }),
                    None => {}
                }
            }
            return Ok(());
        }
        let (file, is_backup) = match name.strip_suffix(BACKUP_SUFFIX) {
            Some(file) => (file, true),
            None => (name.as_str(), false),
        };
        let Some((symbol, ext)) = file.rsplit_once('.').filter(|(_, ext)| is_valid_ext(ext)) else {
            return Ok(());
        };
        let Some(instrument) = instrument_of(kind, symbol) else {
            return Ok(());
        };
        let series = SeriesKey::new(instrument, period);
        let Some(m) = stat(&path)? else { return Ok(()) };
        if !m.is_file() {
            foreign(scan, path, Some(series), if is_backup { "a backup" } else { "a data file" });
            return Ok(());
        }
        let found = DataFile { series, ext: ext.to_string(), path, size: m.len(), modified: m.modified().ok() };
        if is_backup {
            scan.backups.push(found)
        } else {
            scan.data.push(found)
        }
        Ok(())
    }
}
