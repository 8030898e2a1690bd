//! Proving a stored file: its MD5 (or the record's, when the record's fingerprint vouches
//! for the bytes), and the evidence a version token carries so that the next write of
//! the file can keep its leading bytes without reading and hashing them again.
//!
//! The evidence is the file's identity (device, inode, size, modification and change
//! times) and MD5 checkpoints along it; for small files also the bytes read. A write that
//! names the token checks the identity against the file it is about to replace: the same
//! identity means the same bytes, so the checkpoints hold for them. Any other identity is
//! a version conflict, never a file built from bytes that are no longer there.

use std::fs::{File, Metadata};
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use barvault_ports::{BadBlock, FileMetadata, Fingerprint, Version};

use crate::digest::{BLOCK, Checkpoint, FingerprintCheck, Md5Stream};

/// Bytes read at a time while proving a file.
pub(crate) const CHUNK: usize = 256 * 1024;

/// Checkpoints noted per file while proving it: a resumed hash re-reads at most 1/64 of it.
const CHECKPOINTS_PER_FILE: u64 = 64;

/// Bytes between two checkpoints noted while proving a `len`-byte file: a 64th of it, at
/// least 4 KiB (a checkpoint costs a copy of the hasher) and at most [`CHUNK`]. A nightly
/// update keeps all but the last few rows, so the checkpoint just before them saves
/// hashing the whole file again: for a 250 KB daily series, 4 KiB instead of 250 KB.
fn checkpoint_step(len: u64) -> u64 {
    (len / CHECKPOINTS_PER_FILE).clamp(4096, CHUNK as u64) / BLOCK * BLOCK
}

/// Files up to this size keep the bytes their proof read in the evidence, so that a
/// write keeping their leading bytes copies them from memory instead of reading the file
/// again. 512 KiB covers 20 years of daily bars (5,000 rows: about 265 KB of CSV without
/// extras since integral floats carry `.0` and timestamps a `Z`, 300 KB with an
/// `adj_close`).
pub(crate) const KEPT_BYTES: u64 = 2 * CHUNK as u64;

/// What identifies the content of a file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileId {
    pub(crate) len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    unix: (u64, u64, i64, i64),
}

impl FileId {
    pub(crate) fn of(meta: &Metadata) -> Self {
        #[cfg(unix)]
        let unix = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
        };
        FileId {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            unix,
        }
    }

    /// The version tag: the same for the same identity, different after any change.
    pub(crate) fn tag(&self) -> String {
        let mtime =
            self.modified.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        #[cfg(unix)]
        {
            let (dev, ino, ctime, ctime_ns) = self.unix;
            format!("{dev:x}.{ino:x}.{}.{mtime}.{ctime}.{ctime_ns}", self.len)
        }
        #[cfg(not(unix))]
        format!("{}.{mtime}", self.len)
    }
}

/// What a file store's version token vouches for: the file at `path` with identity `id`,
/// MD5 checkpoints along its bytes (from offset 0), and for small files the bytes.
#[derive(Debug, Clone)]
pub(crate) struct Evidence {
    pub(crate) path: PathBuf,
    pub(crate) id: FileId,
    /// Ascending, starting with [`Checkpoint::START`].
    pub(crate) checkpoints: Vec<Checkpoint>,
    pub(crate) bytes: Option<Arc<Vec<u8>>>,
    /// How many leading bytes of the file the evidence vouches for: its length, or the
    /// committed length of its record when an interrupted append left bytes after it
    /// (those are never read, and the next version is made of the committed bytes only).
    pub(crate) committed: u64,
}

impl Evidence {
    /// Evidence of identity only (a file not read): a write keeping its bytes hashes them
    /// from the start.
    pub(crate) fn identity(path: &Path, meta: &Metadata) -> Self {
        let id = FileId::of(meta);
        Evidence { path: path.to_path_buf(), committed: id.len, id, checkpoints: vec![Checkpoint::START], bytes: None }
    }

    /// The version token carrying this evidence.
    pub(crate) fn into_version(self) -> Version {
        Version::with_evidence(self.id.tag(), self)
    }
}

/// Reads until `buf` is full or the input ends; the count read.
fn read_full(file: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads the first `len` bytes of `file` (its length when opened), passing each piece to
/// `each`; returns the bytes if they were read in one piece of at most [`KEPT_BYTES`].
/// Bytes a writer appends after the open are never read: what is proven is the file as
/// it was when opened, whose identity the evidence names (an append in place grows the
/// file under a reader that holds no lock).
fn read_chunks(file: &mut File, len: u64, mut each: impl FnMut(&[u8])) -> io::Result<Option<Arc<Vec<u8>>>> {
    let mut file = file.take(len);
    // The first piece goes into a buffer sized to the file, and is kept if it is the whole
    // file (also if the file shrank since `len`).
    let mut first = Vec::with_capacity(usize::try_from(len.min(KEPT_BYTES) + 1).unwrap_or(CHUNK));
    file.by_ref().take(KEPT_BYTES + 1).read_to_end(&mut first)?;
    each(&first);
    if first.len() as u64 <= KEPT_BYTES {
        return Ok(Some(Arc::new(first)));
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = read_full(&mut file, &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        each(&buf[..n]);
    }
}

/// The MD5 (lower-case hex) of the open `file` at `path`, streamed, with its evidence.
pub(crate) fn prove(path: &Path, mut file: File, meta: &Metadata) -> io::Result<(String, Evidence)> {
    let id = FileId::of(meta);
    let mut md5 = Md5Stream::new();
    let step = checkpoint_step(id.len);
    let mut checkpoints = vec![Checkpoint::START];
    let bytes = read_chunks(&mut file, id.len, |chunk| md5.update_checkpointing_every(chunk, step, &mut checkpoints))?;
    Ok((md5.finish_hex(), Evidence { path: path.to_path_buf(), committed: id.len, id, checkpoints, bytes }))
}

/// What [`audit`] found: the MD5, whether the fingerprint describes the file, the recorded
/// blocks that do not have their CRC-32.
pub(crate) type Audited = (String, bool, Vec<BadBlock>);

/// The MD5 of the open `file` and whether `fingerprint` describes it (same CRC-32,
/// checkpoints and block CRC-32s), in one pass, with identity evidence.
pub(crate) fn audit(
    path: &Path,
    mut file: File,
    meta: &Metadata,
    fingerprint: &Fingerprint,
) -> io::Result<(Audited, Evidence)> {
    let mut check = FingerprintCheck::new(fingerprint);
    read_chunks(&mut file, meta.len(), |chunk| check.update(chunk))?;
    Ok((check.finish_with_blocks(), Evidence::identity(path, meta)))
}

/// [`audit`] of a file already read whole into `bytes` (`meta` taken from the open file
/// before reading it), as [`prove_bytes`] is [`prove`] of one: a deep audit that also
/// decodes the rows checks the very bytes it hands the codec, read once.
pub(crate) fn audit_bytes(
    path: &Path,
    meta: &Metadata,
    bytes: &[u8],
    fingerprint: &Fingerprint,
) -> (Audited, Evidence) {
    let mut check = FingerprintCheck::new(fingerprint);
    check.update(bytes);
    (check.finish_with_blocks(), Evidence::identity(path, meta))
}

/// [`prove`], given the metadata record of the file: when the record's fingerprint vouches
/// for the file (same size and CRC-32), the record's MD5 and evidence made of the recorded
/// checkpoints, without hashing the file; otherwise exactly what [`prove`] returns.
pub(crate) fn prove_against(
    path: &Path,
    mut file: File,
    meta: &Metadata,
    record: &FileMetadata,
) -> io::Result<(String, Evidence)> {
    if record.fingerprint.is_some() && meta.len() == record.file_size {
        let mut crc = crc32fast::Hasher::new();
        let bytes = read_chunks(&mut file, meta.len(), |chunk| crc.update(chunk))?;
        if let Some(found) = vouched(path, FileId::of(meta), crc.finalize(), record, bytes) {
            return Ok(found);
        }
        // Read the same open file again from the start, now hashing (a second open by
        // path could meet another file renamed into place meanwhile).
        file.seek(io::SeekFrom::Start(0))?;
        return prove(path, file, meta);
    }
    prove(path, file, meta)
}

/// The record's MD5 and evidence from its checkpoints, if its fingerprint matches the file
/// of identity `id` and CRC-32 `crc` (and its checkpoints are well formed).
fn vouched(
    path: &Path,
    id: FileId,
    crc: u32,
    record: &FileMetadata,
    bytes: Option<Arc<Vec<u8>>>,
) -> Option<(String, Evidence)> {
    let fp = record.fingerprint.as_ref()?;
    if fp.crc32 != crc || id.len != record.file_size || record.checksum.len() != 32 {
        return None;
    }
    let mut checkpoints = vec![Checkpoint::START];
    for recorded in &fp.checkpoints {
        let c = Checkpoint::from_recorded(recorded)?;
        if c.offset <= checkpoints.last()?.offset || c.offset > id.len {
            return None;
        }
        checkpoints.push(c);
    }
    Some((record.checksum.clone(), Evidence { path: path.to_path_buf(), committed: id.len, id, checkpoints, bytes }))
}

/// [`prove`] of a file already read whole into `bytes` (`meta` taken from the open file
/// before reading it), against `record` when there is one, as [`prove_against`].
pub(crate) fn prove_bytes(
    path: &Path,
    meta: &Metadata,
    bytes: &Arc<Vec<u8>>,
    record: Option<&FileMetadata>,
) -> (String, Evidence) {
    let kept = (bytes.len() as u64 <= KEPT_BYTES).then(|| Arc::clone(bytes));
    if let Some(record) = record.filter(|r| r.fingerprint.is_some())
        && let Some(found) = vouched(path, FileId::of(meta), crc32fast::hash(bytes), record, kept.clone())
    {
        return found;
    }
    hashed(path, meta, bytes, kept)
}

/// The MD5 of `bytes`, the first bytes of the file `meta` describes (all of it, or its
/// committed length), with evidence vouching for exactly those bytes.
fn hashed(path: &Path, meta: &Metadata, bytes: &[u8], kept: Option<Arc<Vec<u8>>>) -> (String, Evidence) {
    let id = FileId::of(meta);
    let mut md5 = Md5Stream::new();
    let mut checkpoints = vec![Checkpoint::START];
    md5.update_checkpointing_every(bytes, checkpoint_step(bytes.len() as u64), &mut checkpoints);
    let committed = bytes.len() as u64;
    (md5.finish_hex(), Evidence { path: path.to_path_buf(), id, checkpoints, bytes: kept, committed })
}

/// The MD5 of the first `committed` bytes of the open `file` (longer than that: an append
/// was interrupted after writing bytes but before recording them), always computed, with
/// evidence for those bytes only; also the bytes.
pub(crate) fn prove_committed(
    path: &Path,
    file: File,
    meta: &Metadata,
    committed: u64,
) -> io::Result<(String, Evidence, Arc<Vec<u8>>)> {
    let mut bytes = Vec::with_capacity(usize::try_from(committed).unwrap_or(0));
    file.take(committed).read_to_end(&mut bytes)?;
    if (bytes.len() as u64) < committed {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file ended before its committed length"));
    }
    let bytes = Arc::new(bytes);
    let kept = (committed <= KEPT_BYTES).then(|| Arc::clone(&bytes));
    let (md5, evidence) = hashed(path, meta, &bytes, kept);
    Ok((md5, evidence, bytes))
}

/// The MD5 of the bytes the evidence's file holds before `offset`: the last checkpoint at
/// or before it, advanced over `gap(from, len)`, the `len` bytes from there on. Also the
/// checkpoints within those bytes, which hold for any file starting with them.
pub(crate) fn md5_at(
    evidence: &Evidence,
    offset: u64,
    gap: impl FnOnce(u64, usize) -> io::Result<Vec<u8>>,
) -> io::Result<Option<(Md5Stream, Vec<Checkpoint>)>> {
    let i = evidence.checkpoints.partition_point(|c| c.offset <= offset).saturating_sub(1);
    let Some(from) = evidence.checkpoints.get(i) else { return Ok(None) };
    let mut md5 = Md5Stream::resume(*from);
    md5.update(&gap(from.offset, usize::try_from(offset - from.offset).map_err(io::Error::other)?)?);
    Ok(Some((md5, evidence.checkpoints[1..=i].to_vec())))
}

#[cfg(test)]
mod tests {
    use md5::{Digest, Md5};

    use super::{CHUNK, checkpoint_step, prove};
    use crate::digest::{Checkpoint, Md5Stream};

    #[test]
    fn checkpoint_steps_are_a_64th_of_the_file_within_bounds_and_whole_blocks() {
        assert_eq!(checkpoint_step(0), 4096);
        assert_eq!(checkpoint_step(250_000), 4096);
        assert_eq!(checkpoint_step(64 * 10_000), 9984);
        assert_eq!(checkpoint_step(49_000_000), CHUNK as u64);
    }

    /// Every checkpoint is the MD5 state of exactly the bytes before it, and the
    /// checkpoints are no further apart than the step.
    #[test]
    fn every_checkpoint_is_the_state_of_the_bytes_before_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        for len in [0usize, 1, 4095, 4097, 300_000, 3 * CHUNK + 17] {
            let bytes: Vec<u8> = (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, &bytes).expect("write");
            let file = std::fs::File::open(&path).expect("open");
            let meta = file.metadata().expect("stat");
            let (hex, evidence) = prove(&path, file, &meta).expect("read");
            let expected: String = Md5::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, expected, "len {len}");
            let step = checkpoint_step(len as u64);
            let checkpoints = &evidence.checkpoints;
            assert_eq!(checkpoints.first(), Some(&Checkpoint::START));
            assert!(len as u64 - checkpoints.last().map_or(0, |c| c.offset) < step, "len {len}");
            for pair in checkpoints.windows(2) {
                assert!(pair[1].offset > pair[0].offset && pair[1].offset - pair[0].offset <= step, "len {len}");
            }
            for c in checkpoints {
                let mut resumed = Md5Stream::resume(*c);
                resumed.update(&bytes[c.offset as usize..]);
                assert_eq!(resumed.finish_hex(), expected, "len {len} offset {}", c.offset);
            }
            assert_eq!(evidence.bytes.is_some(), len as u64 <= super::KEPT_BYTES, "len {len}");
        }
    }
}
