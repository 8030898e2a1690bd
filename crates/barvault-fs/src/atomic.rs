//! The one way barvault replaces a file: write a uniquely named temp file beside it,
//! fsync it, keep the old version as a hard-linked `.backup`, rename over the target and
//! fsync the directory. A reader or a crash therefore sees the old file or the new one,
//! never a mix, and a failed write leaves the old file exactly as it was.
//!
//! Files that keep a backup also keep a spare inode. Creating a file is the costliest
//! step of a small write: the directory is locked while the filesystem looks for a free
//! inode, and ext4 without a journal walks past every inode freed in the last seconds
//! (a nightly update frees one per file, its old backup). So the old backup is not freed:
//! it is swapped out of the `.backup` name atomically (`RENAME_EXCHANGE`), emptied and
//! kept as `.{name}.spare`, and the next write renames the spare to its temp name instead
//! of creating one. A series' first write leaves an empty spare, so that its first update
//! creates nothing either. Every step of this is optional: without a spare the temp file
//! is created, and where the exchange is not supported the backup is renamed over.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use barvault_ports::{CodecError, Fingerprint, IoStep, StorageError, StoredBytes};

use crate::digest::{FileHashes, Md5Stream};
use crate::fs::{Fs, FsFile};
use crate::keep::Prefix;
use crate::layout::{backup_path_of, spare_path_in, temp_path_in};

const BUFFER: usize = 64 * 1024;

/// What a successful [`write_atomic`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Bytes in the new file.
    pub size: u64,
    /// MD5 of those bytes, lower-case hex, computed while writing.
    pub md5_hex: String,
    /// CRC-32 and MD5 states of those bytes, to record with the MD5 (see [`Fingerprint`]).
    pub fingerprint: Fingerprint,
    /// Whether the previous version now lives at `{target}.backup`.
    pub backup_created: bool,
}

/// Counts and hashes exactly the bytes the layer below accepted, and remembers the first
/// I/O error so that it is reported as such even if a codec wraps it in its own error.
struct HashingWriter<W: Write> {
    inner: W,
    /// `None` for files that are not recorded (exports): their bytes are only counted.
    hashes: Option<FileHashes>,
    size: u64,
    failure: Option<io::Error>,
}

impl<W: Write> HashingWriter<W> {
    fn remember<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r
            && self.failure.is_none()
        {
            self.failure = Some(copy_error(e));
        }
        r
    }
}

fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        let n = self.remember(r)?;
        let accepted = &buf[..n.min(buf.len())];
        if let Some(hashes) = &mut self.hashes {
            hashes.update(accepted);
        }
        self.size += accepted.len() as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.remember(r)
    }
}

/// Removes a leftover temp file, logging (not returning) a failure: the write already
/// failed and its error is the one that matters; `scan` reports the leftover later.
fn discard(fs: &dyn Fs, temp: &Path) {
    if let Err(e) = fs.remove_file(temp)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %temp.display(), error = %e, "could not remove temp file");
    }
    crate::inflight::forget(temp);
}

/// Creates `dir` and any missing ancestors, fsyncing the parent of each directory it
/// created so the new entries survive a crash.
pub fn create_dir_durable(fs: &dyn Fs, dir: &Path) -> Result<(), StorageError> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur.filter(|d| !d.as_os_str().is_empty()) {
        match fs.metadata(d) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(StorageError::io(IoStep::CreateDir, d, io::Error::other("exists and is not a directory")));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(d),
            Err(e) => return Err(StorageError::io(IoStep::Stat, d, e)),
        }
        cur = d.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(dir).map_err(|e| StorageError::io(IoStep::CreateDir, dir, e))?;
    for d in missing.iter().rev() {
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent).map_err(|e| StorageError::io(IoStep::FsyncDir, parent, e))?;
        }
    }
    Ok(())
}

fn split_target(target: &Path) -> Result<(&Path, String), StorageError> {
    let name = target.file_name().and_then(|n| n.to_str()).filter(|n| !n.starts_with('.'));
    // A bare file name (`out.csv`) lives in the current directory.
    let dir = target.parent().map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d });
    match (dir, name) {
        (Some(dir), Some(name)) => Ok((dir, name.to_string())),
        _ => Err(StorageError::invalid(format!(
            "{}: a write target needs a directory and a UTF-8 file name not starting with '.'",
            target.display()
        ))),
    }
}

/// Replaces `target` with the bytes `write` produces, durably and atomically.
///
/// On success the new file is in place and its directory entry is fsynced; with
/// `keep_backup` the previous version (if any) is kept as `{target}.backup`, a hard link
/// to the old inode (a copy only where links are impossible). On failure the temp files
/// are removed and the error names the step and path; `target` is untouched unless the
/// failing step is the final directory fsync (then the new version is in place and the
/// old one is in the backup, but the rename may not survive a power loss).
pub fn write_atomic(
    fs: &dyn Fs,
    target: &Path,
    keep_backup: bool,
    write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(), CodecError>,
) -> Result<WriteOutcome, StorageError> {
    stage(fs, target, true, keep_backup, None, write)?.commit(fs, keep_backup)
}

/// The first half of [`write_atomic`]: the new bytes are written and fsynced to a temp
/// file beside `target`, which is untouched. [`Staged::commit`] publishes them,
/// [`Staged::discard`] removes them; a staged file that is neither is a leftover temp
/// file, which `recover` and `cleanup` remove.
pub fn stage_atomic(
    fs: &dyn Fs,
    target: &Path,
    write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(), CodecError>,
) -> Result<Staged, StorageError> {
    stage(fs, target, true, true, None, write)
}

/// [`stage_atomic`] of a file that starts with the bytes of `prefix` (copied from the
/// old file, not hashed again: the MD5 resumes from the state `prefix` carries), followed
/// by what `write` produces.
pub(crate) fn stage_atomic_after(
    fs: &dyn Fs,
    target: &Path,
    prefix: Prefix,
    write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(), CodecError>,
) -> Result<Staged, StorageError> {
    stage(fs, target, true, true, Some(prefix), write)
}

/// [`write_atomic`] without the MD5 and without a `.backup`, for files barvault writes but
/// does not record (exports): just as durable and atomic, one core lighter. Returns the
/// size written.
pub fn write_atomic_unrecorded(
    fs: &dyn Fs,
    target: &Path,
    write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(), CodecError>,
) -> Result<u64, StorageError> {
    Ok(stage(fs, target, false, false, None, write)?.commit(fs, false)?.size)
}

/// Writes the temp file of `target`: the spare file of `target` if `spare` and there is
/// one, else a new file.
fn stage(
    fs: &dyn Fs,
    target: &Path,
    hash: bool,
    spare: bool,
    prefix: Option<Prefix>,
    write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(), CodecError>,
) -> Result<Staged, StorageError> {
    let (dir, name) = split_target(target)?;
    create_dir_durable(fs, dir)?;
    let temp = temp_path_in(dir, &name);
    let file = match spare.then(|| take_spare(fs, dir, &name, &temp)).flatten() {
        Some(file) => file,
        None => fs.create_new(&temp).map_err(|e| StorageError::io(IoStep::CreateTemp, &temp, e))?,
    };
    match fill(file, &temp, target, hash, prefix, write) {
        Ok((size, md5_hex, fingerprint)) => {
            Ok(Staged { temp, target: target.to_path_buf(), name, size, md5_hex, fingerprint })
        }
        Err(e) => {
            discard(fs, &temp);
            Err(e)
        }
    }
}

/// The spare file of `name`, renamed to `temp` and emptied; `None` if there is none or it
/// cannot be used (then the caller creates `temp`, as without spares).
fn take_spare(fs: &dyn Fs, dir: &Path, name: &str, temp: &Path) -> Option<Box<dyn FsFile>> {
    let spare = spare_path_in(dir, name);
    match fs.reuse_spare(&spare, temp) {
        Ok(file) => Some(file),
        Err(e) => {
            if !matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::Unsupported) {
                tracing::debug!(path = %spare.display(), error = %e, "spare file not reused; creating the temp file");
            }
            None
        }
    }
}

/// Leaves an empty spare file for the next write of `name` (best effort: without it, that
/// write creates its temp file).
fn leave_spare(fs: &dyn Fs, dir: &Path, name: &str) {
    let spare = spare_path_in(dir, name);
    if let Err(e) = fs.make_spare(&spare)
        && !matches!(e.kind(), io::ErrorKind::AlreadyExists | io::ErrorKind::Unsupported)
    {
        tracing::debug!(path = %spare.display(), error = %e, "no spare file left");
    }
}

/// New bytes fsynced in a temp file, waiting to replace their target; see [`stage_atomic`].
#[derive(Debug)]
#[must_use = "a staged file is published by commit or removed by discard"]
pub struct Staged {
    temp: PathBuf,
    target: PathBuf,
    name: String,
    size: u64,
    md5_hex: String,
    fingerprint: Fingerprint,
}

impl Staged {
    /// Bytes in the staged file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// MD5 of the staged bytes, lower-case hex.
    pub fn md5_hex(&self) -> &str {
        &self.md5_hex
    }

    /// The temp file holding the staged bytes.
    pub fn temp(&self) -> &Path {
        &self.temp
    }

    /// The file the staged bytes will replace.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Keeps the previous version as `.backup` (with `keep_backup`), renames the temp
    /// file over the target and fsyncs the directory; see [`write_atomic`] for what a
    /// failure leaves behind.
    pub fn commit(self, fs: &dyn Fs, keep_backup: bool) -> Result<WriteOutcome, StorageError> {
        let Staged { temp, target, name, size, md5_hex, fingerprint } = self;
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let backup_created = if keep_backup {
            match keep_previous(fs, dir, &name, &target) {
                Ok(created) => created,
                Err(e) => {
                    discard(fs, &temp);
                    return Err(e);
                }
            }
        } else {
            false
        };
        if let Err(e) = fs.rename(&temp, &target) {
            discard(fs, &temp);
            return Err(StorageError::io(IoStep::Rename, &target, e));
        }
        crate::inflight::forget(&temp);
        if keep_backup && !backup_created {
            // A new file: its first update will find an inode waiting.
            leave_spare(fs, dir, &name);
        }
        fs.sync_dir(dir).map_err(|e| StorageError::io(IoStep::FsyncDir, dir, e))?;
        Ok(WriteOutcome { size, md5_hex, fingerprint, backup_created })
    }

    /// Removes the staged temp file; the target is untouched.
    pub fn discard(self, fs: &dyn Fs) {
        discard(fs, &self.temp);
    }
}

/// Writes, flushes and fsyncs the temp file; returns its size, MD5 and fingerprint
/// (empty strings and a default fingerprint without `hash`).
fn fill(
    file: Box<dyn FsFile>,
    temp: &Path,
    target: &Path,
    hash: bool,
    prefix: Option<Prefix>,
    write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(), CodecError>,
) -> Result<(u64, String, Fingerprint), StorageError> {
    let hashes = hash.then(FileHashes::new);
    let mut w = HashingWriter { inner: BufWriter::with_capacity(BUFFER, file), hashes, size: 0, failure: None };
    if let Some(Prefix { source, len, md5, checkpoints }) = prefix {
        // The copied bytes are not hashed again: the MD5 resumes from the prefix's state.
        // The CRC-32 is computed over them, at a small fraction of an MD5's cost.
        let mut crc = crc32fast::Hasher::new();
        copy_prefix(source.as_ref(), len, &mut w.inner, &mut crc, temp, target)?;
        w.hashes = hash.then_some(FileHashes { md5, crc, checkpoints });
        w.size = len;
    }
    let mut written = write(&mut w).and_then(|()| w.flush().map_err(CodecError::Io));
    if written.is_ok()
        && let Some(swallowed) = w.failure.take()
    {
        written = Err(CodecError::Io(swallowed));
    }
    if let Err(e) = written {
        return Err(match (w.failure.take(), e) {
            (Some(io), _) | (None, CodecError::Io(io)) => StorageError::io(IoStep::WriteTemp, temp, io),
            (None, other) => other.at(target),
        });
    }
    let HashingWriter { inner, hashes, size, .. } = w;
    let mut file = inner.into_inner().map_err(|e| StorageError::io(IoStep::WriteTemp, temp, e.into_error()))?;
    file.sync_all().map_err(|e| StorageError::io(IoStep::FsyncTemp, temp, e))?;
    let (md5_hex, fingerprint) = match hashes {
        Some(h) => h.finish(),
        None => (String::new(), Fingerprint::new(0, Vec::new())),
    };
    Ok((size, md5_hex, fingerprint))
}

/// Copies the first `len` bytes of `from` (the old version of `target`) to `to`, adding
/// them to `crc`.
fn copy_prefix(
    from: &dyn StoredBytes,
    len: u64,
    to: &mut impl Write,
    crc: &mut crc32fast::Hasher,
    temp: &Path,
    target: &Path,
) -> Result<(), StorageError> {
    const PIECE: u64 = 1 << 20;
    let mut at = 0;
    while at < len {
        let n = (len - at).min(PIECE) as usize;
        let piece = from.read(at, n).map_err(|e| StorageError::io(IoStep::Read, target, e))?;
        to.write_all(&piece).map_err(|e| StorageError::io(IoStep::WriteTemp, temp, e))?;
        crc.update(&piece);
        at += n as u64;
    }
    Ok(())
}

/// Whether a failed hard link means "this filesystem cannot link" (then copy instead).
fn link_impossible(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EXDEV | libc::EMLINK | libc::EOPNOTSUPP | libc::ENOSYS))
}

/// Makes `{target}.backup` name the current `target`, atomically; false if there is no target.
fn keep_previous(fs: &dyn Fs, dir: &Path, name: &str, target: &Path) -> Result<bool, StorageError> {
    let backup = backup_path_of(target);
    match fs.symlink_metadata(target) {
        Ok(m) if m.file_type().is_symlink() => {
            // A planted link is no previous version: it is replaced, never kept or followed.
            tracing::warn!(path = %target.display(), "replacing a symbolic link at a data file; no backup kept of it");
            return Ok(false);
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StorageError::io(IoStep::Stat, target, e)),
    }
    // Without a backup yet (a series' first update), linking the current version straight
    // to `.backup` is one step: a link never replaces a name, so it fails (and the path
    // below runs) if a backup exists.
    match fs.hard_link(target, &backup) {
        Ok(()) => return Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists || link_impossible(&e) => {}
        Err(e) => return Err(StorageError::io(IoStep::BackupLink, backup, e)),
    }
    let backup_name = format!("{name}.backup");
    let staged = temp_path_in(dir, &backup_name);
    let linked = match fs.hard_link(target, &staged) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) if link_impossible(&e) => {
            tracing::debug!(path = %target.display(), error = %e, "hard link impossible, copying backup");
            match fs.copy(target, &staged) {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    discard(fs, &staged);
                    return Ok(false);
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    if let Err(e) = linked {
        discard(fs, &staged);
        return Err(StorageError::io(IoStep::BackupLink, backup, e));
    }
    // `staged` names the current version. Swapped with `.backup`, it names the previous
    // backup, whose inode becomes the spare. Without an old backup, or where names cannot
    // be swapped (or the swap fails), the rename below replaces the old backup instead.
    if fs.exchange(&staged, &backup).is_ok() {
        let spare = spare_path_in(dir, name);
        if let Err(e) = fs.recycle(&staged, &spare) {
            // Also the case of a backup that already named the target's inode (see below):
            // that inode has other names, so it is refused, and `staged` is just unlinked.
            tracing::debug!(path = %staged.display(), error = %e, "old backup not recycled");
            discard(fs, &staged);
        }
        crate::inflight::forget(&staged);
        return Ok(true);
    }
    if let Err(e) = fs.rename(&staged, &backup) {
        discard(fs, &staged);
        return Err(StorageError::io(IoStep::BackupLink, backup, e));
    }
    // When `backup` already names the target's inode (a write killed after keeping its
    // backup but before its rename leaves them linked), POSIX rename of one hard link over
    // another is a successful no-op and `staged` stays behind: remove it (NotFound, the
    // usual case, is ignored).
    discard(fs, &staged);
    Ok(true)
}

/// Removes `path` durably (unlink, then fsync its directory); false if it did not exist.
pub fn remove_durable(fs: &dyn Fs, path: &Path) -> Result<bool, StorageError> {
    match fs.remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StorageError::io(IoStep::Remove, path, e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs.sync_dir(dir).map_err(|e| StorageError::io(IoStep::FsyncDir, dir, e))?;
    }
    Ok(true)
}

/// MD5 of `bytes`, lower-case hex (the checksum format of metadata records).
pub fn md5_hex(bytes: &[u8]) -> String {
    let mut md5 = Md5Stream::new();
    md5.update(bytes);
    md5.finish_hex()
}
