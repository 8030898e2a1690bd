//! Loads of a [`FileStore`](crate::FileStore): one open of the file, its identity taken
//! from that open file, the checksum and the rows from the same read.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use barvault_domain::{Bars, DomainError, ExtraColumn, MergePolicy, RawBars, TimeRange};
use barvault_ports::{
    BarCodec, Checksum, CodecError, CodecInput, Decoded, IoStep, LoadOptions, Loaded, Rows, StorageError,
};

use crate::proof::{Evidence, audit, audit_bytes, prove, prove_against, prove_bytes, prove_committed};
use crate::store::Inner;

/// Keeps only the rows of `raw` inside `range` (codecs may return more).
fn trim_raw(raw: RawBars, range: &TimeRange) -> Result<RawBars, DomainError> {
    if raw.ts.iter().all(|&t| range.contains(t)) {
        return Ok(raw);
    }
    let keep: Vec<bool> = raw.ts.iter().map(|&t| range.contains(t)).collect();
    fn pick<T: Copy>(v: &[T], keep: &[bool]) -> Vec<T> {
        v.iter().zip(keep).filter(|(_, k)| **k).map(|(x, _)| *x).collect()
    }
    let extras = raw
        .extras
        .iter()
        .map(|e| ExtraColumn::new(e.name(), pick(e.values(), &keep)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RawBars {
        ts: pick(&raw.ts, &keep),
        open: pick(&raw.open, &keep),
        high: pick(&raw.high, &keep),
        low: pick(&raw.low, &keep),
        close: pick(&raw.close, &keep),
        volume: pick(&raw.volume, &keep),
        extras,
    })
}

/// What a decode gave, as bars: the rows (trimmed to the range asked for, sorted and
/// unique), the rows skipped before them, the first timestamp. Shared by every store that
/// decodes through a [`BarCodec`], so that they all read a file the same way.
pub fn into_bars(decoded: Decoded, rows: Rows, path: &Path) -> Result<(Bars, usize, Option<i64>), StorageError> {
    let domain = |e: DomainError| CodecError::Domain(e).at(path);
    let Decoded { skipped, first, raw } = decoded;
    let raw = match rows {
        Rows::Range(r) => trim_raw(raw, &r).map_err(domain)?,
        _ => raw,
    };
    let (bars, _) = raw.into_bars(MergePolicy::KeepLast).map_err(domain)?;
    let first = if skipped == 0 { bars.first_timestamp() } else { first };
    Ok((bars, skipped, first))
}

/// The bytes of an open file up to its length when opened (`meta`): an append in place
/// that grows the file meanwhile is not read, so the bytes hashed and decoded are one
/// version of the file, the one the evidence names.
fn read_opened_length(file: File, meta: &Metadata) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(meta.len()).read_to_end(&mut bytes)?;
    Ok(bytes)
}

impl<C: BarCodec + 'static> Inner<C> {
    /// Opens the file at `path`: the file and its metadata, from the same open; `None` if
    /// there is none.
    pub(crate) fn open(&self, path: &Path) -> Result<Option<(File, Metadata)>, StorageError> {
        let file = match crate::nofollow::open_read_no_follow(self.fs.as_ref(), path, "the file") {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            // A planted link is a damaged copy (served from the other one, replaced by recover).
            Err(e) if crate::nofollow::is_symlink_refused(&e) => {
                return Err(StorageError::Corrupt { path: path.to_path_buf(), reason: e.to_string() });
            }
            Err(e) => return Err(StorageError::io(IoStep::Read, path, e)),
        };
        let meta = file.metadata().map_err(|e| StorageError::io(IoStep::Stat, path, e))?;
        if !meta.is_file() {
            return Err(StorageError::io(IoStep::Read, path, io::Error::other("not a regular file")));
        }
        Ok(Some((file, meta)))
    }

    fn decode(
        &self,
        input: CodecInput<'_>,
        rows: Rows,
        path: &Path,
    ) -> Result<(Bars, usize, Option<i64>), StorageError> {
        let decoded = self.codec.decode(input, rows).map_err(|e| e.at(path))?;
        into_bars(decoded, rows, path)
    }

    /// [`BarStore::load`](barvault_ports::BarStore::load) of the file at `path`.
    pub(crate) fn load(&self, path: &Path, options: &LoadOptions) -> Result<Option<Loaded>, StorageError> {
        let Some((file, meta)) = self.open(path)? else { return Ok(None) };
        let read_err = |e: io::Error| StorageError::io(IoStep::Read, path, e);
        if let Checksum::Record(record) = &options.checksum
            && meta.len() > record.file_size
        {
            return self.load_committed(path, file, &meta, record.file_size, options.rows).map(Some);
        }
        if let (Checksum::Record(record), Rows::Range(range)) = (&options.checksum, options.rows)
            && let Some(blocks) = record.fingerprint.as_ref().and_then(|f| f.blocks.as_ref())
            && meta.len() == record.file_size
        {
            let (bars, skipped, first) = self.load_blocks(path, file, &meta, record, blocks, range)?;
            let info = self.file_info(path, &meta, Evidence::identity(path, &meta));
            // Every byte read was proven against the record, which stands for them.
            let checksum = Some(record.checksum.clone());
            let bars = Some(bars);
            return Ok(Some(Loaded {
                info,
                bars,
                skipped,
                first,
                checksum,
                fingerprint_ok: None,
                bad_blocks: Vec::new(),
            }));
        }
        let mut fingerprint_ok = None;
        let mut bad_blocks = Vec::new();
        let (evidence, checksum, decoded) = match (&options.checksum, options.rows) {
            (Checksum::Skip, Rows::Nothing) => (Evidence::identity(path, &meta), None, None),
            (Checksum::Skip, rows) => {
                let evidence = Evidence::identity(path, &meta);
                (evidence, None, Some(self.decode(CodecInput::File(file), rows, path)?))
            }
            (Checksum::Compute, Rows::Nothing) => {
                let (md5, evidence) = prove(path, file, &meta).map_err(read_err)?;
                (evidence, Some(md5), None)
            }
            (Checksum::Record(record), Rows::Nothing) => {
                let (md5, evidence) = prove_against(path, file, &meta, record).map_err(read_err)?;
                (evidence, Some(md5), None)
            }
            (Checksum::Audit(fp), Rows::Nothing) => {
                // Streamed a chunk at a time: nothing is decoded, so nothing is held.
                let ((md5, ok, bad), evidence) = audit(path, file, &meta, fp).map_err(read_err)?;
                fingerprint_ok = Some(ok);
                bad_blocks = bad;
                (evidence, Some(md5), None)
            }
            (Checksum::Audit(fp), rows) => {
                // As for a proof below: one read of the open file, up to its length when
                // opened, gives the bytes to audit and to decode (the decode holds them
                // whole in any case), so the rows are the very bytes audited.
                let bytes = Arc::new(read_opened_length(file, &meta).map_err(read_err)?);
                let ((md5, ok, bad), evidence) = audit_bytes(path, &meta, &bytes, fp);
                fingerprint_ok = Some(ok);
                bad_blocks = bad;
                let decoded = self.decode(CodecInput::Shared(bytes), rows, path)?;
                (evidence, Some(md5), Some(decoded))
            }
            (checksum, rows) => {
                // One read gives the bytes to hash and to decode.
                let bytes = Arc::new(read_opened_length(file, &meta).map_err(read_err)?);
                let record = match checksum {
                    Checksum::Record(r) => Some(r.as_ref()),
                    _ => None,
                };
                let (md5, evidence) = prove_bytes(path, &meta, &bytes, record);
                // The buffer goes to the codec without a copy (Parquet decodes from owned bytes).
                let decoded = self.decode(CodecInput::Shared(Arc::clone(&bytes)), rows, path)?;
                (evidence, Some(md5), Some(decoded))
            }
        };
        let info = self.file_info(path, &meta, evidence);
        let (bars, skipped, first) = match decoded {
            Some((bars, skipped, first)) => (Some(bars), skipped, first),
            None => (None, 0, None),
        };
        tracing::debug!(
            path = %path.display(),
            rows = bars.as_ref().map_or(0, Bars::len),
            skipped,
            checked = checksum.is_some(),
            "loaded"
        );
        Ok(Some(Loaded { info, bars, skipped, first, checksum, fingerprint_ok, bad_blocks }))
    }

    /// A load of a file longer than its record's `committed` length: an append wrote bytes
    /// after it and was interrupted before recording them. Only the committed bytes are
    /// hashed (always: the fingerprint describes them, not the file) and decoded; the rest
    /// is never read, and the next write or `recover` cuts it.
    fn load_committed(
        &self,
        path: &Path,
        file: File,
        meta: &Metadata,
        committed: u64,
        rows: Rows,
    ) -> Result<Loaded, StorageError> {
        let (md5, evidence, bytes) =
            prove_committed(path, file, meta, committed).map_err(|e| StorageError::io(IoStep::Read, path, e))?;
        tracing::warn!(
            path = %path.display(),
            committed,
            uncommitted = meta.len() - committed,
            "bytes after the committed length (an interrupted append) ignored"
        );
        let decoded = match rows {
            Rows::Nothing => None,
            rows => Some(self.decode(CodecInput::Bytes(&bytes), rows, path)?),
        };
        let info = self.file_info(path, meta, evidence);
        let (bars, skipped, first) = match decoded {
            Some((bars, skipped, first)) => (Some(bars), skipped, first),
            None => (None, 0, None),
        };
        Ok(Loaded { info, bars, skipped, first, checksum: Some(md5), fingerprint_ok: None, bad_blocks: Vec::new() })
    }
}
