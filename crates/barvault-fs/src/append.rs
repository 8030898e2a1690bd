//! Appends in place: the new rows' bytes written after the committed end of a stored file.
//!
//! A minute bar appended to a series of a million rewrote 52 MB of CSV before. When every
//! new row comes after the last stored one and the codec continues the stored file as it
//! is ([`BarCodec::append_after`]: for CSV, the header and the last line re-encode
//! identically), the store instead opens the file it holds (a regular file with one name,
//! never through a link, never a `.backup` sharing its inode), writes the new bytes at the
//! committed length its record names, and `fdatasync`s them. The new version's MD5 and
//! CRC-32 resume from the record (the last recorded MD5 state, a few KiB before the end,
//! and the CRC-32 of the committed bytes), so no stored byte is hashed again but those few
//! KiB. The caller records the new version only after this returns: until then the record
//! still names the committed length, and every barvault reader reads only that far.

use std::borrow::Cow;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use barvault_domain::{Bars, SeriesKey};
use barvault_ports::{BarCodec, FileMetadata, Fingerprint, IoStep, Persisted, StorageError, StoredBytes};

use crate::digest::{Checkpoint, Md5Stream, WRITE_CHECKPOINT_STEP, thin_checkpoints};
use crate::fs::{Fs, FsInPlace};
use crate::proof::{Evidence, FileId};
use crate::store::Inner;

/// An append re-hashes at most this many stored bytes (from the last recorded MD5 state to
/// the committed end); a record whose last state is further back makes the file be
/// written whole, which records states near its end again.
const MAX_REHASHED: u64 = 1 << 20;

/// The committed bytes of the file being appended to, for the codec's checks.
struct Committed {
    file: Mutex<Box<dyn FsInPlace>>,
    len: u64,
}

impl StoredBytes for Committed {
    fn len(&self) -> u64 {
        self.len
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        if offset.checked_add(len as u64).is_none_or(|end| end > self.len) {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "past the committed length"));
        }
        let mut buf = vec![0u8; len];
        self.file.lock().map_err(|_| io::Error::other("file lock poisoned"))?.read_exact_at(offset, &mut buf)?;
        Ok(Cow::Owned(buf))
    }
}

/// The recorded MD5 states of `fp` at or before `committed`, ascending; `None` if any is
/// malformed or out of order (then nothing resumes from them).
fn recorded_states(fp: &Fingerprint, committed: u64) -> Option<Vec<Checkpoint>> {
    let mut states = Vec::with_capacity(fp.checkpoints.len());
    for r in &fp.checkpoints {
        let c = Checkpoint::from_recorded(r)?;
        if c.offset == 0 || c.offset > committed || states.last().is_some_and(|p: &Checkpoint| p.offset >= c.offset) {
            return None;
        }
        states.push(c);
    }
    Some(states)
}

/// [`BarStore::append`](barvault_ports::BarStore::append) of a file store (blocking).
pub(crate) fn append<C: BarCodec + 'static>(
    inner: &Arc<Inner<C>>,
    series: &SeriesKey,
    bars: &Bars,
    record: &FileMetadata,
) -> Result<Option<Persisted>, StorageError> {
    let start = Instant::now();
    let path = inner.layout.data_path(series);
    let Some(fp) = record.fingerprint.as_ref().filter(|_| !bars.is_empty() && record.checksum.len() == 32) else {
        return Ok(None);
    };
    let committed = record.file_size;
    let Some(states) = recorded_states(fp, committed) else { return Ok(None) };
    let resume = states.last().copied().unwrap_or(Checkpoint::START);
    if committed - resume.offset > MAX_REHASHED {
        return Ok(None);
    }
    let _guard = match &inner.commit_lock {
        Some((locks, timeout)) => Some(locks.lock_blocking(series, *timeout)?),
        None => None,
    };
    let err = |e: io::Error| StorageError::io(IoStep::Append, &path, e);
    let mut file = match inner.fs.open_sole_in_place(&path) {
        Ok(f) => f,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
            ) =>
        {
            tracing::debug!(path = %path.display(), error = %e, "not appended in place");
            return Ok(None);
        }
        Err(e) => return Err(err(e)),
    };
    let size = file.size().map_err(err)?;
    if size < committed {
        // Shorter than recorded: damaged. A whole write proves the file and repairs it.
        return Ok(None);
    }
    let mut rehashed = vec![0u8; usize::try_from(committed - resume.offset).map_err(|e| err(io::Error::other(e)))?];
    file.read_exact_at(resume.offset, &mut rehashed).map_err(err)?;
    let view = Committed { file: Mutex::new(file), len: committed };
    let tail = match inner.codec.append_after(&view, bars) {
        Ok(Some(tail)) => tail,
        Ok(None) => return Ok(None),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "not appended in place");
            return Ok(None);
        }
    };
    let mut file = view.file.into_inner().map_err(|_| err(io::Error::other("file lock poisoned")))?;
    if size > committed {
        tracing::warn!(path = %path.display(), committed, uncommitted = size - committed, "cutting the bytes an interrupted append left");
        match file.set_len(committed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Unsupported => return Ok(None),
            Err(e) => return Err(err(e)),
        }
    }
    let (md5, fingerprint) = continued(fp, states, resume, &rehashed, &tail, committed);
    if let Err(e) = file.write_all_at(committed, &tail).and_then(|()| file.sync_data()) {
        // Nothing is recorded, so readers keep reading the committed length; cutting the
        // partial bytes is a courtesy to outside readers (the next write cuts them anyway).
        if let Err(cut) = file.set_len(committed) {
            tracing::warn!(path = %path.display(), error = %cut, "could not cut a failed append's bytes");
        }
        return Err(err(e));
    }
    drop(file);
    let meta = inner.fs.metadata(&path).map_err(|e| StorageError::io(IoStep::Stat, &path, e))?;
    let info = inner.file_info(&path, &meta, Evidence::identity(&path, &meta));
    let rows = usize::try_from(record.row_count).unwrap_or(usize::MAX).saturating_add(bars.len());
    let persisted = Persisted {
        info,
        rows,
        checksum: Some(md5),
        fingerprint: Some(fingerprint),
        backup_created: false,
        duration: start.elapsed(),
    };
    tracing::info!(
        path = %path.display(),
        rows = bars.len(),
        bytes = tail.len(),
        size = persisted.info.size,
        duration_ms = u64::try_from(persisted.duration.as_millis()).unwrap_or(u64::MAX),
        "appended in place"
    );
    Ok(Some(persisted))
}

/// Cuts the file at `path`, still the file of identity `id`, to its `committed` length
/// (what an interrupted append left after it goes), durably; its identity afterwards.
/// The caller holds the series lock.
pub(crate) fn cut_uncommitted(fs: &dyn Fs, path: &Path, id: &FileId, committed: u64) -> Result<FileId, StorageError> {
    let err = |e: io::Error| StorageError::io(IoStep::Append, path, e);
    let mut file = fs.open_sole_in_place(path).map_err(err)?;
    let now = fs.metadata(path).map_err(|e| StorageError::io(IoStep::Stat, path, e))?;
    if FileId::of(&now) != *id {
        return Err(StorageError::version_conflict(path, "the file was replaced or changed since it was read"));
    }
    file.set_len(committed).and_then(|()| file.sync_data()).map_err(err)?;
    drop(file);
    tracing::warn!(path = %path.display(), committed, cut = id.len - committed, "cut the bytes an interrupted append left");
    let meta = fs.metadata(path).map_err(|e| StorageError::io(IoStep::Stat, path, e))?;
    Ok(FileId::of(&meta))
}

/// The MD5 and fingerprint of the committed bytes followed by `tail`: MD5 resumed from
/// `resume` over the `rehashed` bytes up to the committed end and then `tail`, CRC-32
/// resumed from the recorded one, states thinned from the recorded ones and those noted on
/// the way.
fn continued(
    fp: &Fingerprint,
    mut states: Vec<Checkpoint>,
    resume: Checkpoint,
    rehashed: &[u8],
    tail: &[u8],
    committed: u64,
) -> (String, Fingerprint) {
    let mut md5 = Md5Stream::resume(resume);
    md5.update_checkpointing_every(rehashed, WRITE_CHECKPOINT_STEP, &mut states);
    md5.update_checkpointing_every(tail, WRITE_CHECKPOINT_STEP, &mut states);
    let mut crc = crc32fast::Hasher::new_with_initial_len(fp.crc32, committed);
    crc.update(tail);
    let len = committed + tail.len() as u64;
    let checkpoints = thin_checkpoints(&states, len).into_iter().map(Checkpoint::to_recorded).collect();
    (md5.finish_hex(), Fingerprint::new(crc.finalize(), checkpoints))
}

#[cfg(test)]
mod tests {
    use super::{continued, recorded_states};
    use crate::digest::{Checkpoint, Md5Stream, fingerprint_bytes};

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
    }

    /// Resumed hashes are exactly those of the whole file, for files shorter than one
    /// recorded state and for longer ones, over many appends in a row.
    #[test]
    fn resumed_checksums_are_those_of_the_whole_file() {
        for (len, step) in [(0usize, 61usize), (100, 1), (5000, 70), (70_000, 4097), (300_000, 333)] {
            let mut bytes = sample(len);
            let (_, mut fp) = fingerprint_bytes(&bytes);
            for round in 0..20 {
                let committed = bytes.len() as u64;
                let states = recorded_states(&fp, committed).expect("well-formed states");
                let resume = states.last().copied().unwrap_or(Checkpoint::START);
                let tail: Vec<u8> = sample(step + round).into_iter().rev().collect();
                let (md5, next) = continued(&fp, states, resume, &bytes[resume.offset as usize..], &tail, committed);
                bytes.extend_from_slice(&tail);
                let (want_md5, want_fp) = fingerprint_bytes(&bytes);
                assert_eq!(md5, want_md5, "len {len} round {round}");
                assert_eq!(next.crc32, want_fp.crc32, "len {len} round {round}");
                // Every state is the MD5 state of the bytes before it, and the last is as
                // near the end as a whole write's.
                let resumed = recorded_states(&next, bytes.len() as u64).expect("well-formed states");
                for c in &resumed {
                    let mut again = Md5Stream::resume(*c);
                    again.update(&bytes[c.offset as usize..]);
                    assert_eq!(again.finish_hex(), want_md5, "len {len} round {round} offset {}", c.offset);
                }
                assert_eq!(next.checkpoints.last(), want_fp.checkpoints.last(), "len {len} round {round}");
                fp = next;
            }
        }
    }
}
