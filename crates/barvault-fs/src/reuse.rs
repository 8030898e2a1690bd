//! Keeping the stored bytes of a series' unchanged leading rows.
//!
//! A nightly update rewrites years of history to change its last few rows, and encoding
//! and hashing the unchanged rows again was most of that work. Before a write replaces a
//! file, the caller proves the file sound (its MD5 against the record), so that a damaged
//! file never becomes the `.backup`. That proof now also records MD5 states along the
//! way. When the new version starts with rows the caller knows to be unchanged, the staged
//! write copies their stored bytes, resumes the MD5 from the recorded state and encodes only
//! the rest.
//!
//! For a record-per-line codec (CSV), three things must all hold, or the write encodes
//! everything as before:
//! - the file is the very one proven: same inode, size, mtime and ctime;
//! - it starts with the header the codec writes for the new bars;
//! - the line that ends where the reused bytes end is byte for byte the codec's encoding
//!   of the last reused row. Timestamps are unique, so this pins the row count too, and it
//!   also catches a change of the timestamps' shared fraction width, which changes every
//!   line.
//!
//! For a codec of independent blocks (Parquet row groups), the file must be the very one
//! proven, and the codec itself picks the blocks that hold only unchanged rows and checks
//! their layout ([`BarCodec::keepable`]). Proofs come from `prove` and, for files read
//! whole to be decoded, from `prove_bytes`.
//!
//! The caller vouches that those rows are value for value the stored ones. The file is
//! the proven record of that version, so the copied bytes decode to exactly those values.

use std::collections::VecDeque;
use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use barvault_domain::Bars;
use barvault_ports::{BarCodec, FileMetadata, Fingerprint, KeptPrefix, StageHint};

use crate::digest::{BLOCK, FingerprintCheck, Md5Stream, Point};
use crate::fs::Fs;

/// Bytes read at a time while proving a file, and the most `newline_from_end` reads at once.
const CHUNK: usize = 256 * 1024;

/// Recorded MD5 states per file: a resumed hash re-reads at most 1/64 of the file.
const MARKS_PER_FILE: u64 = 64;

/// Bytes between two recorded MD5 states of a `len`-byte file: a 64th of it, at least
/// 4 KiB (a state costs a copy of the hasher) and at most [`CHUNK`]. A nightly update
/// keeps all but the last few rows, so the state just before them saves hashing the whole
/// file again: for a 250 KB daily series, 4 KiB instead of 250 KB.
fn mark_step(len: u64) -> u64 {
    (len / MARKS_PER_FILE).clamp(4096, CHUNK as u64) / BLOCK * BLOCK
}

/// Proofs kept for a later write: one per series being written at a time is enough.
const KEPT_PROOFS: usize = 64;

/// Files up to this size keep the bytes their proof read, so that a write keeping their
/// leading bytes copies them from memory instead of reading the file again (at most
/// [`KEPT_PROOFS`] × this much memory: 32 MiB). 512 KiB covers 20 years of daily bars
/// (5,000 rows: about 265 KB of CSV without extras since integral floats carry `.0` and
/// timestamps a `Z`, 300 KB with an `adj_close`).
const KEPT_BYTES: u64 = 2 * CHUNK as u64;

/// What identifies the content of a file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileId {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    unix: (u64, u64, i64, i64),
}

impl FileId {
    fn of(meta: &Metadata) -> Self {
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
}

/// A file's MD5 and the hash states at offsets along it.
#[derive(Debug, Clone)]
pub(crate) struct Proof {
    path: PathBuf,
    id: FileId,
    /// MD5 states along the file, offsets ascending from 0 ([`Point::START`]).
    marks: Vec<Point>,
    /// The bytes proven, for files of at most [`KEPT_BYTES`].
    bytes: Option<Arc<Vec<u8>>>,
}

/// The most recent proofs, by path.
#[derive(Debug, Default)]
pub(crate) struct Proofs(Mutex<VecDeque<Proof>>);

impl Proofs {
    pub(crate) fn put(&self, proof: Proof) {
        if let Ok(mut kept) = self.0.lock() {
            kept.retain(|p| p.path != proof.path);
            kept.push_back(proof);
            if kept.len() > KEPT_PROOFS {
                kept.pop_front();
            }
        }
    }

    fn take(&self, path: &Path) -> Option<Proof> {
        let mut kept = self.0.lock().ok()?;
        let i = kept.iter().position(|p| p.path == path)?;
        kept.remove(i)
    }
}

/// Reads until `buf` is full or the input ends; the count read.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
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

/// The MD5 (lower-case hex) of the file at `path`, streamed, with the proof to resume it
/// from; `None` if there is no file.
pub(crate) fn prove(fs: &dyn Fs, path: &Path) -> io::Result<Option<(String, Proof)>> {
    let Some((mut file, id)) = open_if_any(fs, path)? else { return Ok(None) };
    let mut md5 = Md5Stream::new();
    let step = mark_step(id.len);
    let mut marks = vec![Point::START];
    let bytes = read_chunks(&mut file, id.len, |chunk| md5.update_marking(chunk, step, &mut marks))?;
    Ok(Some((md5.finish_hex(), Proof { path: path.to_path_buf(), id, marks, bytes })))
}

/// Reads `file` (of `len` bytes when opened) to its end, passing each piece to `each`;
/// returns the bytes if they were read in one piece of at most [`KEPT_BYTES`].
fn read_chunks(file: &mut File, len: u64, mut each: impl FnMut(&[u8])) -> io::Result<Option<Arc<Vec<u8>>>> {
    // The first piece goes into a buffer that is not cleared first, sized to the file, and
    // is kept if it is the whole file (also if the file changed size since `len`).
    let mut first = Vec::with_capacity(usize::try_from(len.min(KEPT_BYTES) + 1).unwrap_or(CHUNK));
    file.by_ref().take(KEPT_BYTES + 1).read_to_end(&mut first)?;
    each(&first);
    if first.len() as u64 <= KEPT_BYTES {
        return Ok(Some(Arc::new(first)));
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = read_full(file, &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        each(&buf[..n]);
    }
}

/// The MD5 (lower-case hex) of the file at `path`, and whether `fingerprint` describes
/// it (same CRC-32 and MD5 states), in one pass; `None` if there is no file.
pub(crate) fn check_fingerprint(
    fs: &dyn Fs,
    path: &Path,
    fingerprint: &Fingerprint,
) -> io::Result<Option<(String, bool)>> {
    let Some((mut file, id)) = open_if_any(fs, path)? else { return Ok(None) };
    let mut check = FingerprintCheck::new(fingerprint);
    read_chunks(&mut file, id.len, |chunk| check.update(chunk))?;
    Ok(Some(check.finish()))
}

fn open_if_any(fs: &dyn Fs, path: &Path) -> io::Result<Option<(File, FileId)>> {
    let file = match fs.open_read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let id = FileId::of(&file.metadata()?);
    Ok(Some((file, id)))
}

/// [`prove`], given the metadata record of the file: when the record's fingerprint
/// vouches for the file (same size and CRC-32), the record's MD5 and a proof made of the
/// recorded states, without hashing the file; otherwise exactly what [`prove`] returns.
pub(crate) fn prove_against(
    fs: &dyn Fs,
    path: &Path,
    record: Option<&FileMetadata>,
) -> io::Result<Option<(String, Proof)>> {
    if let Some(record) = record.filter(|r| r.fingerprint.is_some()) {
        let Some((mut file, id)) = open_if_any(fs, path)? else { return Ok(None) };
        if id.len == record.file_size {
            let mut crc = crc32fast::Hasher::new();
            let bytes = read_chunks(&mut file, id.len, |chunk| crc.update(chunk))?;
            if let Some(found) = vouched(path, id, crc.finalize(), record, bytes) {
                return Ok(Some(found));
            }
        }
    }
    prove(fs, path)
}

/// The record's MD5 and a proof from its states, if its fingerprint matches the file of
/// identity `id` and CRC-32 `crc` (and its states are well formed).
fn vouched(
    path: &Path,
    id: FileId,
    crc: u32,
    record: &FileMetadata,
    bytes: Option<Arc<Vec<u8>>>,
) -> Option<(String, Proof)> {
    let fp = record.fingerprint.as_ref()?;
    if fp.crc32 != crc || id.len != record.file_size || record.checksum.len() != 32 {
        return None;
    }
    let mut marks = vec![Point::START];
    for state in &fp.md5_states {
        let p = Point::from_record(state)?;
        if p.offset <= marks.last()?.offset || p.offset > id.len {
            return None;
        }
        marks.push(p);
    }
    Some((record.checksum.clone(), Proof { path: path.to_path_buf(), id, marks, bytes }))
}

/// [`prove_bytes`], given the metadata record of the file, as [`prove_against`].
pub(crate) fn prove_bytes_against(
    path: &Path,
    meta: &Metadata,
    bytes: &Arc<Vec<u8>>,
    record: Option<&FileMetadata>,
) -> (String, Proof) {
    if let Some(record) = record.filter(|r| r.fingerprint.is_some())
        && let Some(found) = vouched(path, FileId::of(meta), crc32fast::hash(bytes), record, kept(bytes))
    {
        return found;
    }
    prove_bytes(path, meta, bytes)
}

/// The bytes a proof keeps of a file read whole (see [`KEPT_BYTES`]).
fn kept(bytes: &Arc<Vec<u8>>) -> Option<Arc<Vec<u8>>> {
    (bytes.len() as u64 <= KEPT_BYTES).then(|| Arc::clone(bytes))
}

/// [`prove`] of a file already read whole into `bytes` (`meta` taken from the open file
/// before reading it): the MD5 of `bytes` and the proof to resume it from.
pub(crate) fn prove_bytes(path: &Path, meta: &Metadata, bytes: &Arc<Vec<u8>>) -> (String, Proof) {
    let id = FileId::of(meta);
    let mut md5 = Md5Stream::new();
    let mut marks = vec![Point::START];
    md5.update_marking(bytes, mark_step(bytes.len() as u64), &mut marks);
    (md5.finish_hex(), Proof { path: path.to_path_buf(), id, marks, bytes: kept(bytes) })
}

/// Where a write reads the stored bytes it keeps.
#[derive(Debug)]
pub(crate) enum Stored {
    /// The bytes the proof read (small files).
    Memory(Arc<Vec<u8>>),
    /// The proven file itself.
    File(File),
}

impl Stored {
    fn read_at(&mut self, at: u64, len: usize) -> io::Result<Vec<u8>> {
        match self {
            Stored::Memory(bytes) => {
                let from = usize::try_from(at).map_err(io::Error::other)?;
                from.checked_add(len)
                    .and_then(|to| bytes.get(from..to))
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the proven bytes"))
            }
            Stored::File(file) => {
                let mut buf = vec![0u8; len];
                file.seek(SeekFrom::Start(at))?;
                file.read_exact(&mut buf)?;
                Ok(buf)
            }
        }
    }

    /// The whole stored file (of `len` bytes).
    fn whole(&mut self, len: u64) -> io::Result<Arc<Vec<u8>>> {
        match self {
            Stored::Memory(bytes) if bytes.len() as u64 == len => Ok(Arc::clone(bytes)),
            _ => Ok(Arc::new(self.read_at(0, usize::try_from(len).map_err(io::Error::other)?)?)),
        }
    }
}

/// The unchanged leading bytes of a file, ready to be copied into its next version.
#[derive(Debug)]
pub(crate) struct Prefix {
    /// The stored bytes (a file positioned at its start).
    pub(crate) source: Stored,
    pub(crate) len: u64,
    /// MD5 state after the first `len` bytes.
    pub(crate) md5: Md5Stream,
    /// The proof's states within those bytes, which hold for the new file too.
    pub(crate) points: Vec<Point>,
    /// Rows of the new bars those bytes hold.
    pub(crate) rows: usize,
}

/// The hint's unchanged rows, if there are any and they fit the stored and the new rows.
fn unchanged_rows(hint: StageHint, rows: usize) -> Option<usize> {
    let k = hint.unchanged_prefix;
    (k > 0 && k <= hint.stored_rows && k <= rows).then_some(k)
}

/// How a staged write may start with the stored bytes of the file it replaces.
#[derive(Debug)]
pub(crate) enum Reuse {
    /// Record-per-line formats (CSV): the stored lines of the unchanged rows; the codec
    /// encodes the rest with [`BarCodec::encode_part`].
    Lines(Prefix),
    /// Formats of independent blocks (Parquet row groups): the stored blocks that hold
    /// only unchanged rows; the codec writes the rest with [`BarCodec::encode_after`],
    /// reading the kept blocks' layout from `stored`, the stored file.
    Blocks { prefix: Prefix, stored: Arc<Vec<u8>>, kept: KeptPrefix },
}

/// The stored bytes of the file at `path` that may start the encoding of the new version,
/// if the hint checks out against the proof taken of that file (see the module docs). The
/// new version's rows from `skipped` on are `bars` (its first `skipped` rows are the
/// stored ones); the reused bytes must cover those first rows.
pub(crate) fn reuse(
    fs: &dyn Fs,
    codec: &dyn BarCodec,
    proofs: &Proofs,
    path: &Path,
    (bars, skipped): (&Bars, usize),
    hint: StageHint,
) -> Option<Reuse> {
    let k = unchanged_rows(hint, skipped.saturating_add(bars.len()))?;
    let mut head = Vec::new();
    let lines = match codec.encode_part(bars, 0..0, true, &mut head) {
        Some(Ok(())) => true,
        Some(Err(_)) => return None,
        None => false,
    };
    let proof = proofs.take(path)?;
    let found = (|| {
        let Some(file) = open_proven(fs, &proof)? else { return Ok(None) };
        let stored = match &proof.bytes {
            Some(bytes) => Stored::Memory(Arc::clone(bytes)),
            None => Stored::File(file),
        };
        if lines {
            Ok(locate(stored, codec, &proof, (bars, skipped), hint, &head)?.map(Reuse::Lines))
        } else {
            blocks(stored, codec, &proof, (bars, skipped), k)
        }
    })();
    match found {
        Ok(found) => {
            if found.is_none() {
                tracing::debug!(path = %path.display(), "stored bytes do not match the hint; encoding every row");
            }
            found
        }
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "stored bytes unreadable; encoding every row");
            None
        }
    }
}

/// The proven file, open, if it is still the very file proven (see the module docs).
fn open_proven(fs: &dyn Fs, proof: &Proof) -> io::Result<Option<File>> {
    let file = fs.open_read(&proof.path)?;
    Ok((FileId::of(&file.metadata()?) == proof.id).then_some(file))
}

/// The MD5 state after the first `off` bytes of the proven file: the last recorded state
/// at or before `off`, advanced over `gap(mark, len)`, the `len` bytes from `mark` on.
fn state_at(
    proof: &Proof,
    off: u64,
    gap: impl FnOnce(u64, usize) -> io::Result<Vec<u8>>,
) -> io::Result<Option<(Md5Stream, Vec<Point>)>> {
    let i = proof.marks.partition_point(|p| p.offset <= off).saturating_sub(1);
    let Some(mark) = proof.marks.get(i) else { return Ok(None) };
    let mut md5 = Md5Stream::resume(*mark);
    md5.update(&gap(mark.offset, usize::try_from(off - mark.offset).map_err(io::Error::other)?)?);
    Ok(Some((md5, proof.marks[1..=i].to_vec())))
}

fn locate(
    mut file: Stored,
    codec: &dyn BarCodec,
    proof: &Proof,
    (bars, skipped): (&Bars, usize),
    hint: StageHint,
    head: &[u8],
) -> io::Result<Option<Prefix>> {
    let k = hint.unchanged_prefix;
    // The last reused row is checked against its stored line, so it must be in `bars`.
    let Some(last) = (k - 1).checked_sub(skipped) else { return Ok(None) };
    let len = proof.id.len;
    if len < head.len() as u64 + 1 || file.read_at(0, head.len())? != head {
        return Ok(None);
    }
    if file.read_at(len - 1, 1)? != b"\n" {
        return Ok(None);
    }
    // One line per stored row after row k - 1, so its line ends at the newline that many
    // (plus one) from the end.
    let Some(end) = newline_from_end(&mut file, len, hint.stored_rows - k + 1)? else {
        return Ok(None);
    };
    let mut line = Vec::new();
    match codec.encode_part(bars, last..last + 1, false, &mut line) {
        Some(Ok(())) => {}
        _ => return Ok(None),
    }
    let off = end + 1;
    let Some(start) = off.checked_sub(line.len() as u64 + 1).filter(|&s| s + 1 >= head.len() as u64) else {
        return Ok(None);
    };
    let found = file.read_at(start, line.len() + 1)?;
    if found[0] != b'\n' || found[1..] != line[..] {
        return Ok(None);
    }
    let Some((md5, points)) = state_at(proof, off, |mark, n| file.read_at(mark, n))? else { return Ok(None) };
    if let Stored::File(f) = &mut file {
        f.seek(SeekFrom::Start(0))?;
    }
    Ok(Some(Prefix { source: file, len: off, md5, points, rows: k }))
}

/// The stored blocks a codec that keeps whole blocks may start the new file with, given
/// that the first `k` rows are unchanged.
fn blocks(
    mut file: Stored,
    codec: &dyn BarCodec,
    proof: &Proof,
    (bars, skipped): (&Bars, usize),
    k: usize,
) -> io::Result<Option<Reuse>> {
    let stored = file.whole(proof.id.len)?;
    let fits = |kept: &KeptPrefix| kept.rows <= k && kept.rows >= skipped && kept.bytes <= proof.id.len;
    let Some(kept) = codec.keepable(&stored, bars, k).filter(fits) else {
        return Ok(None);
    };
    let slice = |mark: u64, n: usize| {
        let from = usize::try_from(mark).map_err(io::Error::other)?;
        Ok(stored[from..from + n].to_vec())
    };
    let Some((md5, points)) = state_at(proof, kept.bytes, slice)? else { return Ok(None) };
    if let Stored::File(f) = &mut file {
        f.seek(SeekFrom::Start(0))?;
    }
    let prefix = Prefix { source: file, len: kept.bytes, md5, points, rows: kept.rows };
    Ok(Some(Reuse::Blocks { prefix, stored, kept }))
}

/// The offset of the `n`-th `\n` (`n >= 1`) counted back from the end of a `len`-byte file.
fn newline_from_end(file: &mut Stored, len: u64, n: usize) -> io::Result<Option<u64>> {
    let mut remaining = n;
    if let Stored::Memory(bytes) = file {
        let Some(bytes) = bytes.get(..usize::try_from(len).map_err(io::Error::other)?) else { return Ok(None) };
        return Ok(memchr::memrchr_iter(b'\n', bytes).nth(n.saturating_sub(1)).map(|pos| pos as u64));
    }
    let Stored::File(file) = file else { return Ok(None) };
    // Usually only the last few lines are wanted: start small, double up to the mark size.
    let mut buf = vec![0u8; 4096];
    let mut hi = len;
    while hi > 0 && remaining > 0 {
        if buf.len() < CHUNK && hi < len {
            buf.resize(buf.len() * 2, 0);
        }
        let lo = hi.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..usize::try_from(hi - lo).map_err(io::Error::other)?];
        file.seek(SeekFrom::Start(lo))?;
        file.read_exact(chunk)?;
        for pos in memchr::memrchr_iter(b'\n', chunk) {
            remaining -= 1;
            if remaining == 0 {
                return Ok(Some(lo + pos as u64));
            }
        }
        hi = lo;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use md5::{Digest, Md5};

    use super::{CHUNK, mark_step, prove};
    use crate::digest::{Md5Stream, Point};
    use crate::fs::RealFs;

    #[test]
    fn mark_steps_are_a_64th_of_the_file_within_bounds_and_whole_blocks() {
        assert_eq!(mark_step(0), 4096);
        assert_eq!(mark_step(250_000), 4096);
        assert_eq!(mark_step(64 * 10_000), 9984);
        assert_eq!(mark_step(49_000_000), CHUNK as u64);
    }

    /// Every recorded state is the MD5 state of exactly the bytes before its offset, and
    /// the states are no further apart than the step.
    #[test]
    fn every_mark_is_the_state_of_the_bytes_before_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        for len in [0usize, 1, 4095, 4097, 300_000, 3 * CHUNK + 17] {
            let bytes: Vec<u8> = (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, &bytes).expect("write");
            let (hex, proof) = prove(&RealFs, &path).expect("read").expect("exists");
            let expected: String = Md5::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, expected, "len {len}");
            let step = mark_step(len as u64);
            assert_eq!(proof.marks.first(), Some(&Point::START));
            assert!(len as u64 - proof.marks.last().map_or(0, |m| m.offset) < step, "len {len}");
            for pair in proof.marks.windows(2) {
                assert!(
                    pair[1].offset > pair[0].offset && pair[1].offset - pair[0].offset <= step,
                    "len {len}: {} → {}",
                    pair[0].offset,
                    pair[1].offset
                );
            }
            for point in &proof.marks {
                let mut resumed = Md5Stream::resume(*point);
                resumed.update(&bytes[point.offset as usize..]);
                assert_eq!(resumed.finish_hex(), expected, "len {len} offset {}", point.offset);
            }
        }
    }
}
