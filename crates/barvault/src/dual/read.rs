//! The read side of the dual manager: each stored copy classified against its metadata
//! record, the stored state a persist merges onto, and loads that fall back from a
//! damaged copy to the other.

use std::sync::Arc;

use barvault_domain::{Bars, SeriesKey, TimeRange};
use barvault_ports::{BarStore, Checksum, FileMetadata, LoadOptions, Loaded, OpContext, Rows, StorageError, Version};
use tracing::Instrument;

use super::{DualStorageManager, NoLock};

/// A warning when the copies are looked at under the series lock (what it finds is how
/// the last writer left them), a debug line for the first read without it, where a write
/// in progress looks the same as damage.
macro_rules! note {
    ($look:expr, $($arg:tt)*) => {
        match $look {
            Look::Locked => tracing::warn!($($arg)*),
            Look::First => tracing::debug!($($arg)*),
        }
    };
}

/// Which of [`DualStorageManager::load_with_fallback`]'s reads a [`DualStorageManager::load_once`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    /// The first read, without the lock: a write in progress may look like damage.
    First,
    /// The read again under the series lock: what it finds is how the last writer left it.
    Locked,
}

/// How one stored copy looked when read.
#[derive(Debug)]
pub(super) enum Copy {
    /// Nothing stored and nothing recorded.
    Absent,
    /// Parsed, and its checksum agrees with metadata (or metadata has none).
    Good(Bars),
    /// Parsed, but its checksum disagrees with metadata (e.g. a metadata write was interrupted).
    Mismatch(Bars, String),
    /// Missing although recorded, or unparsable.
    Bad(String),
}

impl Copy {
    pub(super) fn reason(&self) -> Option<&str> {
        match self {
            Copy::Absent | Copy::Good(_) => None,
            Copy::Mismatch(_, r) | Copy::Bad(r) => Some(r),
        }
    }
}

/// One copy as read: how it looked, the version read (when it was read at all), and for
/// a read of the last rows how many rows came before them.
#[derive(Debug)]
pub(super) struct Read {
    pub(super) copy: Copy,
    /// Its bytes were proven against its record (or the store holds no bytes to prove).
    pub(super) proven: bool,
    pub(super) version: Option<Version>,
    pub(super) skipped: usize,
    pub(super) first: Option<i64>,
}

/// What a write of one copy knows about it.
#[derive(Debug, Clone, Default)]
pub(super) struct CopyState {
    /// Sound: no repair needed (proven against its record, or nothing stored and nothing
    /// recorded, or of the same generation as a sound primary).
    pub(super) ok: bool,
    /// Its bytes were proven against its record in this read, so a write may keep them.
    pub(super) proven: bool,
    /// The version read, to write against.
    pub(super) version: Option<Version>,
    pub(super) meta: Option<FileMetadata>,
}

/// What is stored of a series, as a persist found it under the lock.
#[derive(Debug)]
pub(super) struct StoredState {
    /// The stored bars, or only their last rows: `skipped` rows before them, the first
    /// at `first`.
    pub(super) bars: Option<Bars>,
    pub(super) skipped: usize,
    pub(super) first: Option<i64>,
    pub(super) primary: CopyState,
    pub(super) secondary: CopyState,
    /// The highest generation recorded for any copy.
    pub(super) generation: u64,
}

impl StoredState {
    pub(super) fn primary_generation(&self) -> Option<u64> {
        self.primary.meta.as_ref().map(|m| m.generation)
    }
}

impl CopyState {
    /// Sound without having been proven: nothing stored, or a store that was not read.
    fn ok(version: Option<Version>) -> Self {
        CopyState { ok: true, proven: false, version, meta: None }
    }
}

/// The records of both copies of a series, as a read found them.
struct Records {
    pmeta: Option<FileMetadata>,
    smeta: Option<FileMetadata>,
    /// The highest generation recorded for any copy.
    generation: u64,
}

impl Records {
    fn state(&self, bars: Option<Bars>, primary: CopyState, secondary: CopyState) -> StoredState {
        StoredState {
            bars,
            skipped: 0,
            first: None,
            primary: CopyState { meta: self.pmeta.clone(), ..primary },
            secondary: CopyState { meta: self.smeta.clone(), ..secondary },
            generation: self.generation,
        }
    }
}

/// Both copies unusable: the error naming both causes.
fn unreadable(series: &SeriesKey, p: &Copy, s: &Copy) -> StorageError {
    StorageError::Unreadable {
        series: series.clone(),
        causes: format!("primary: {}; secondary: {}", p.reason().unwrap_or("missing"), s.reason().unwrap_or("missing")),
    }
}

/// The checksum a read of a copy with `record` computes: none without a record (there is
/// nothing to compare it with), else the record's when its fingerprint vouches for the bytes.
fn checksum_for(record: Option<&FileMetadata>) -> Checksum {
    match record {
        Some(r) => Checksum::Record(Box::new(r.clone())),
        None => Checksum::Skip,
    }
}

/// Classifies a read copy against its metadata record.
fn classify(meta: Option<&FileMetadata>, read: Result<Option<Loaded>, StorageError>) -> Result<Read, StorageError> {
    let read = match read {
        Ok(read) => read,
        Err(e) if e.is_data_error() => {
            return Ok(Read { copy: Copy::Bad(e.to_string()), proven: false, version: None, skipped: 0, first: None });
        }
        Err(e) => return Err(e),
    };
    let Some(loaded) = read else {
        let copy = match meta {
            None => Copy::Absent,
            Some(m) => Copy::Bad(format!("{} is recorded in metadata but missing", m.file_path)),
        };
        return Ok(Read { copy, proven: false, version: None, skipped: 0, first: None });
    };
    let (version, skipped, first) = (Some(loaded.info.version.clone()), loaded.skipped, loaded.first);
    let bars = loaded.bars.unwrap_or_default();
    let proven = match (meta, &loaded.checksum) {
        (Some(m), Some(sum)) => !m.checksum.is_empty() && m.checksum == *sum,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let copy = match (meta, loaded.checksum) {
        (Some(m), Some(sum)) if !m.checksum.is_empty() && m.checksum != sum => {
            Copy::Mismatch(bars, format!("{}: checksum {} differs from metadata {}", m.file_path, sum, m.checksum))
        }
        _ => Copy::Good(bars),
    };
    Ok(Read { copy, proven, version, skipped, first })
}

impl DualStorageManager {
    /// Reads one copy (`rows` of it) and classifies it against its metadata record.
    pub(super) async fn read_copy(
        store: &dyn BarStore,
        meta: Option<&FileMetadata>,
        series: &SeriesKey,
        rows: Rows,
        ctx: &OpContext,
    ) -> Result<Read, StorageError> {
        let options = LoadOptions { rows, checksum: checksum_for(meta), ..LoadOptions::default() };
        classify(meta, store.load(series, &options, ctx).await)
    }

    /// Proves one copy against its record without decoding it: whether it is sound, and
    /// the version read.
    async fn prove_copy(
        store: &dyn BarStore,
        meta: Option<&FileMetadata>,
        series: &SeriesKey,
        ctx: &OpContext,
    ) -> Result<(bool, Option<Version>), StorageError> {
        let options = LoadOptions { rows: Rows::Nothing, checksum: checksum_for(meta), ..LoadOptions::default() };
        match store.load(series, &options, ctx).await {
            Ok(Some(loaded)) => {
                let sound = match (meta, &loaded.checksum) {
                    (Some(m), Some(sum)) => m.checksum.is_empty() || m.checksum == *sum,
                    // A store without bytes has nothing to disagree with; a file without a
                    // record is not proven.
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                Ok((sound, Some(loaded.info.version)))
            }
            Ok(None) => Ok((false, None)),
            Err(e) if e.is_data_error() => Ok((false, None)),
            Err(e) => Err(e),
        }
    }

    /// The secondary store, when reads should prefer it: enabled, and both records exist
    /// with the same generation and a known checksum.
    fn same_generation_secondary(
        &self,
        pmeta: Option<&FileMetadata>,
        smeta: Option<&FileMetadata>,
    ) -> Option<&Arc<dyn BarStore>> {
        if !self.settings.prefer_secondary_reads {
            return None;
        }
        match (pmeta, smeta) {
            (Some(p), Some(s)) if p.generation == s.generation && !s.checksum.is_empty() => self.secondary.as_ref(),
            _ => None,
        }
    }

    /// What is stored, each copy classified against its record. With `from`, the preferred
    /// secondary copy may be read from about `from` on only (see [`Rows::From`]).
    pub(super) async fn read_state(
        &self,
        series: &SeriesKey,
        from: Option<i64>,
        ctx: &OpContext,
    ) -> Result<StoredState, StorageError> {
        // Both records at once: on object storage each is a round trip.
        let (pmeta, smeta) = tokio::join!(self.metadata.get(series, self.primary.name(), ctx), async {
            match &self.secondary {
                Some(s) => self.metadata.get(series, s.name(), ctx).await,
                None => Ok(None),
            }
        });
        let (pmeta, smeta) = (pmeta?, smeta?);
        let records = Records {
            generation: pmeta.iter().chain(smeta.iter()).map(|m| m.generation).max().unwrap_or(0),
            pmeta,
            smeta,
        };
        // Without locks, equal generations prove nothing (two racing writers may record the
        // same one for different contents): the primary is read (see `concurrent.rs`).
        if let Some(sec) = self.same_generation_secondary(records.pmeta.as_ref(), records.smeta.as_ref())
            && !self.settings.lock_free
            && let Some(state) = self.read_secondary_first(sec.as_ref(), &records, series, from, ctx).await?
        {
            return Ok(state);
        }
        self.read_primary_first(&records, series, ctx).await
    }

    /// Reads the preferred secondary (by its tail with `from`) while the primary's checksum
    /// is proved in parallel, so a damaged primary is rewritten and never kept as the
    /// `.backup`; `None` when the secondary is unusable (then the primary is read).
    async fn read_secondary_first(
        &self,
        sec: &dyn BarStore,
        records: &Records,
        series: &SeriesKey,
        from: Option<i64>,
        ctx: &OpContext,
    ) -> Result<Option<StoredState>, StorageError> {
        let rows = from.map_or(Rows::All, Rows::From);
        let (read, proof) = tokio::join!(
            Self::read_copy(sec, records.smeta.as_ref(), series, rows, ctx),
            Self::prove_copy(self.primary.as_ref(), records.pmeta.as_ref(), series, ctx)
        );
        let read = read?;
        let Copy::Good(bars) = read.copy else {
            tracing::warn!(reason = ?read.copy.reason(), "preferred secondary copy unusable; reading the primary");
            return Ok(None);
        };
        let (sound, pversion) = proof?;
        let primary = CopyState { ok: sound, proven: sound, version: pversion, meta: None };
        let secondary = CopyState { ok: true, proven: read.proven, version: read.version, meta: None };
        Ok(Some(StoredState {
            skipped: read.skipped,
            first: read.first,
            ..records.state(Some(bars), primary, secondary)
        }))
    }

    /// Reads the primary whole, and the secondary only when the primary is unusable.
    async fn read_primary_first(
        &self,
        records: &Records,
        series: &SeriesKey,
        ctx: &OpContext,
    ) -> Result<StoredState, StorageError> {
        let (pmeta, smeta) = (records.pmeta.as_ref(), records.smeta.as_ref());
        let primary = self.read_one(self.primary.as_ref(), pmeta, series, Rows::All, ctx).await?;
        let proven_primary =
            CopyState { ok: true, proven: primary.proven, version: primary.version.clone(), meta: None };
        let bad_primary = CopyState { ok: false, proven: false, version: primary.version.clone(), meta: None };
        if let Copy::Good(bars) = primary.copy {
            let secondary = match &self.secondary {
                None => CopyState::ok(None),
                Some(s) => {
                    let same_generation = matches!((pmeta, smeta), (Some(p), Some(s)) if p.generation == s.generation)
                        || (pmeta.is_none() && smeta.is_none());
                    let version = s.file_info(series, ctx).await?.map(|i| i.version);
                    // Not read, so not proven: its bytes are never kept.
                    let ok = same_generation && (version.is_some() || smeta.is_none());
                    CopyState { ok, proven: false, version, meta: None }
                }
            };
            return Ok(records.state(Some(bars), proven_primary, secondary));
        }
        let Some(sec) = &self.secondary else {
            return match primary.copy {
                Copy::Absent => Ok(records.state(None, CopyState::ok(None), CopyState::ok(None))),
                Copy::Mismatch(bars, why) => {
                    // Without a second copy the parsed file is the best evidence there is.
                    tracing::warn!(reason = %why, "checksum mismatch with no second copy; using the file as stored");
                    Ok(records.state(Some(bars), bad_primary, CopyState::ok(None)))
                }
                Copy::Bad(why) => Err(StorageError::Unreadable { series: series.clone(), causes: why }),
                Copy::Good(bars) => Ok(records.state(Some(bars), proven_primary, CopyState::ok(None))),
            };
        };
        let secondary = self.read_one(sec.as_ref(), smeta, series, Rows::All, ctx).await?;
        let bad_secondary = CopyState { ok: false, proven: false, version: secondary.version.clone(), meta: None };
        match (primary.copy, secondary.copy) {
            (Copy::Absent, Copy::Absent) => Ok(records.state(None, CopyState::ok(None), CopyState::ok(None))),
            (p, Copy::Good(bars)) => {
                tracing::warn!(primary = ?p.reason(), "primary copy unusable; merging onto the secondary copy");
                let good = CopyState { ok: true, proven: secondary.proven, version: secondary.version, meta: None };
                Ok(records.state(Some(bars), bad_primary, good))
            }
            (Copy::Mismatch(a, why_a), Copy::Mismatch(b, why_b)) if a == b => {
                tracing::warn!(primary = %why_a, secondary = %why_b, "both copies agree but metadata is stale; rewriting");
                Ok(records.state(Some(a), bad_primary, bad_secondary))
            }
            (Copy::Mismatch(a, why), Copy::Absent) => {
                tracing::warn!(reason = %why, "checksum mismatch and no second copy; using the file as stored");
                Ok(records.state(Some(a), bad_primary, bad_secondary))
            }
            (p, s) => Err(unreadable(series, &p, &s)),
        }
    }

    /// Loads from the primary copy, falling back to the secondary when the primary is
    /// missing, unparsable or disagrees with its checksum; the reason is logged.
    ///
    /// A load takes no lock, so it may meet a writer between its commit and its record
    /// (a primary newer than the record read): what looks like damage then is a write in
    /// progress. Serving the secondary in that moment could serve a copy that lags by the
    /// rows appended in place, and both copies can look bad at once; so a load that would
    /// fall back (or finds no usable copy) reads again under the series lock, where every
    /// copy is as its last writer left it, and only what that read finds is served. When
    /// the lock cannot be had (a read-only store, a writer holding it past the timeout)
    /// the first read's answer stands.
    pub async fn load_with_fallback(
        &self,
        series: &SeriesKey,
        range: Option<TimeRange>,
        ctx: &OpContext,
    ) -> Result<Option<Bars>, StorageError> {
        let span = ctx.span("load", Some(series));
        let rows = range.map_or(Rows::All, Rows::Range);
        async {
            let first = self.load_once(series, rows, Look::First, ctx).await;
            let settled = match &first {
                Ok((_, fell_back)) => !fell_back,
                Err(e) => !(e.is_data_error() || matches!(e, StorageError::Unreadable { .. })),
            };
            if settled || self.settings.lock_free {
                return first.map(|(bars, _)| bars);
            }
            let again = self.with_series_lock(series, ctx, || {
                tracing::debug!("the primary copy looked unusable; reading again under the series lock");
                self.load_once(series, rows, Look::Locked, ctx)
            });
            match again.await {
                Ok(again) => again.map(|(bars, _)| bars),
                Err(NoLock(e)) => {
                    tracing::warn!(error = %e, "could not take the series lock to read again; serving the first read");
                    first.map(|(bars, _)| bars)
                }
            }
        }
        .instrument(span)
        .await
    }

    /// One read of a load as [`Self::load_with_fallback`] describes it, either its first
    /// read without the lock or its read again under the series lock (`look`, which only
    /// chooses how loudly what it finds is logged): the bars, and whether they come from a
    /// fallback (the primary was not usable).
    async fn load_once(
        &self,
        series: &SeriesKey,
        rows: Rows,
        look: Look,
        ctx: &OpContext,
    ) -> Result<(Option<Bars>, bool), StorageError> {
        // An unreadable primary record (damaged, or a planted link) leaves the primary
        // unproven: it is then read like a copy without a record, and the secondary,
        // proven by its own record, is what serves the load if it is sound.
        let pmeta = match self.metadata.get(series, self.primary.name(), ctx).await {
            Ok(m) => m,
            Err(e) if e.is_data_error() && self.secondary.is_some() => {
                note!(look, error = %e, "primary metadata record unreadable; proving the copies without it");
                None
            }
            Err(e) => return Err(e),
        };
        if self.settings.prefer_secondary_reads
            && !self.settings.lock_free
            && let Some(sec) = &self.secondary
        {
            // An unreadable secondary record only means the secondary is not preferred:
            // the primary below may well be sound.
            let smeta = match self.metadata.get(series, sec.name(), ctx).await {
                Ok(m) => m,
                Err(e) if e.is_data_error() => None,
                Err(e) => return Err(e),
            };
            if let Some(sec) = self.same_generation_secondary(pmeta.as_ref(), smeta.as_ref()) {
                match Self::read_copy(sec.as_ref(), smeta.as_ref(), series, rows, ctx).await?.copy {
                    Copy::Good(bars) => {
                        tracing::debug!(rows = bars.len(), "loaded from the secondary copy");
                        return Ok((Some(bars), false));
                    }
                    other => {
                        note!(look, reason = ?other.reason(), "preferred secondary copy unusable; reading the primary")
                    }
                }
            }
        }
        let primary = self.read_one(self.primary.as_ref(), pmeta.as_ref(), series, rows, ctx).await?.copy;
        let primary = match primary {
            Copy::Good(bars) => {
                tracing::debug!(rows = bars.len(), "loaded from primary");
                return Ok((Some(bars), false));
            }
            other => other,
        };
        let Some(sec) = &self.secondary else {
            return match primary {
                Copy::Absent => Ok((None, false)),
                Copy::Mismatch(bars, why) => {
                    note!(look, reason = %why, "checksum mismatch with no second copy; serving the file as stored");
                    Ok((Some(bars), true))
                }
                other => Err(StorageError::Unreadable {
                    series: series.clone(),
                    causes: other.reason().unwrap_or("missing").to_string(),
                }),
            };
        };
        if let Some(why) = primary.reason() {
            note!(look, reason = %why, fallback = sec.name(), "primary copy unusable; falling back");
        }
        let smeta = self.metadata.get(series, sec.name(), ctx).await?;
        let secondary = self.read_one(sec.as_ref(), smeta.as_ref(), series, rows, ctx).await?.copy;
        match (primary, secondary) {
            (Copy::Absent, Copy::Absent) => Ok((None, false)),
            (_, Copy::Good(bars)) => Ok((Some(bars), true)),
            (Copy::Mismatch(a, _), Copy::Mismatch(b, _)) if a == b => {
                note!(look, "both copies agree but their metadata is stale; serving them");
                Ok((Some(a), true))
            }
            (Copy::Mismatch(a, why), Copy::Absent) => {
                note!(look, reason = %why, "checksum mismatch and no second copy; serving the file as stored");
                Ok((Some(a), true))
            }
            (p, s) => Err(unreadable(series, &p, &s)),
        }
    }
}
