//! The operating system's filesystem behind the [`Fs`] seam.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Fs, FsFile, FsInPlace, FsSpace};

/// Opens `path` for writing only if it is a regular file with exactly one name: a spare or
/// an old backup that is a symbolic link, or that shares its inode with another file, must
/// never be emptied or written (that would empty or write the other file).
#[cfg(unix)]
fn open_sole(path: &Path) -> io::Result<File> {
    open_sole_with(path, false)
}

/// `path` opened for writing (and reading, with `read`) without following a symbolic
/// link, if it is a regular file with exactly one name.
#[cfg(unix)]
fn open_sole_with(path: &Path, read: bool) -> io::Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = OpenOptions::new().read(read).write(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.nlink() != 1 {
        let why = format!("not a regular file with one name ({} names); not written", meta.nlink());
        return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    }
    Ok(file)
}

#[cfg(not(unix))]
fn open_sole(_path: &Path) -> io::Result<File> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(not(unix))]
fn open_sole_with(_path: &Path, _read: bool) -> io::Result<File> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Permissions of the files the store creates, before the umask: never writable by others,
/// whatever the umask (a umask of 0 gives `rw-rw-r--`); a stricter umask is honoured.
const FILE_MODE: u32 = 0o664;
/// Permissions of the directories the store creates, before the umask.
const DIR_MODE: u32 = 0o775;

/// Creates `path`, which must not exist (not even as a symbolic link: `O_EXCL` never
/// follows one), for writing, with [`FILE_MODE`].
fn create_new_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    options.open(path)
}

/// [`FsInPlace`] over a real file.
#[derive(Debug)]
struct RealInPlace(File);

impl FsInPlace for RealInPlace {
    fn size(&mut self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.seek(SeekFrom::Start(offset))?;
        self.0.read_exact(buf)
    }

    fn write_all_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.0.seek(SeekFrom::Start(offset))?;
        self.0.write_all(bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

/// The operating system's filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

/// A new file, with early writeback: every [`WRITEBACK_STEP`] bytes, the kernel is asked
/// to start writing what has accumulated (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which
/// does not wait). The disk then works while the rest of the file is being produced, and
/// the closing `fsync` has only the tail left to write — for a 50 MB file that fsync went
/// from about 33 ms to a few. The hint changes no guarantee: durability still comes from
/// `sync_all` alone, and an error of the hint is ignored because `fsync` reports it too.
#[derive(Debug)]
struct RealFile {
    file: File,
    written: u64,
    flushed_to: u64,
}

/// Bytes between two writeback hints: large enough that the hint is rare (six calls for a
/// 50 MB file), small enough that most of a large file is on its way before `fsync`.
const WRITEBACK_STEP: u64 = 8 << 20;

impl RealFile {
    fn new(file: File) -> Self {
        Self { file, written: 0, flushed_to: 0 }
    }

    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)] // the one FFI call: the standard library has no sync_file_range
    fn start_writeback(&mut self) {
        use std::os::fd::AsRawFd;
        let (from, len) = (self.flushed_to, self.written - self.flushed_to);
        // SAFETY: a plain syscall on a file descriptor this struct owns; no memory is passed.
        let _ = unsafe {
            libc::sync_file_range(self.file.as_raw_fd(), from as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE)
        };
        self.flushed_to = self.written;
    }

    #[cfg(not(target_os = "linux"))]
    fn start_writeback(&mut self) {
        self.flushed_to = self.written;
    }
}

impl Write for RealFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.flushed_to >= WRITEBACK_STEP {
            self.start_writeback();
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl FsFile for RealFile {
    fn sync_all(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}

impl Fs for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
        builder.create(dir)
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(Box::new(RealFile::new(create_new_file(path)?)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        std::fs::hard_link(original, link)
    }

    fn copy(&self, from: &Path, to: &Path) -> io::Result<u64> {
        let mut src = File::open(from)?;
        let mut dst = create_new_file(to)?;
        let n = io::copy(&mut src, &mut dst)?;
        dst.sync_all()?;
        Ok(n)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn open_read(&self, path: &Path) -> io::Result<File> {
        File::open(path)
    }

    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        std::fs::metadata(path)
    }

    fn symlink_metadata(&self, path: &Path) -> io::Result<Metadata> {
        std::fs::symlink_metadata(path)
    }

    fn capacity(&self, path: &Path) -> io::Result<FsSpace> {
        Ok(FsSpace {
            total: fs4::total_space(path)?,
            available: fs4::available_space(path)?,
            free: fs4::free_space(path)?,
        })
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect()
    }

    /// Never follows a symbolic link: a lock file planted as a link to a file elsewhere
    /// is refused (`ELOOP`), so locking never opens, creates or writes anything outside
    /// the store.
    fn open_lock(&self, path: &Path) -> io::Result<File> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_NOFOLLOW).mode(FILE_MODE & 0o644);
        }
        options.open(path).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(e.kind(), format!("{e}: the lock file is a symbolic link; refusing to follow it"))
            } else {
                e
            }
        })
    }

    fn open_in_place(&self, path: &Path) -> io::Result<Box<dyn FsInPlace>> {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_NOFOLLOW);
        }
        Ok(Box::new(RealInPlace(options.open(path)?)))
    }

    fn open_sole_in_place(&self, path: &Path) -> io::Result<Box<dyn FsInPlace>> {
        Ok(Box::new(RealInPlace(open_sole_with(path, true)?)))
    }

    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)] // the standard library has no renameat2
    fn exchange(&self, a: &Path, b: &Path) -> io::Result<()> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
        };
        let (a, b) = (c(a)?, c(b)?);
        // SAFETY: two NUL-terminated paths that outlive the call; no other memory is passed.
        let r =
            unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        // A filesystem (or kernel) without RENAME_EXCHANGE says EINVAL or ENOSYS.
        Err(match e.raw_os_error() {
            Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => io::Error::new(io::ErrorKind::Unsupported, e),
            _ => e,
        })
    }

    fn recycle(&self, path: &Path, spare: &Path) -> io::Result<()> {
        open_sole(path)?.set_len(0)?;
        std::fs::rename(path, spare)
    }

    fn reuse_spare(&self, spare: &Path, to: &Path) -> io::Result<Box<dyn FsFile>> {
        std::fs::rename(spare, to)?;
        let opened = open_sole(to).and_then(|file| {
            file.set_len(0)?;
            Ok(file)
        });
        match opened {
            Ok(file) => Ok(Box::new(RealFile::new(file))),
            Err(e) => {
                // Unlinks one name; a file with others keeps them.
                let _ = std::fs::remove_file(to);
                Err(e)
            }
        }
    }

    fn make_spare(&self, spare: &Path) -> io::Result<()> {
        create_new_file(spare).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::{RealFile, WRITEBACK_STEP};

    /// The writeback hint is issued every `WRITEBACK_STEP` bytes and changes nothing in
    /// what is written, whatever the sizes of the writes.
    #[test]
    fn early_writeback_keeps_every_byte() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("big");
        let mut file = RealFile::new(std::fs::File::create_new(&path).expect("create"));
        let mut expected = Vec::new();
        let mut piece = 1usize;
        while (expected.len() as u64) < 2 * WRITEBACK_STEP + 12_345 {
            let bytes: Vec<u8> = (0..piece).map(|i| (i * 31 + expected.len()) as u8).collect();
            file.write_all(&bytes).expect("write");
            expected.extend_from_slice(&bytes);
            piece = piece * 3 % 1_000_003 + 1;
        }
        assert_eq!(file.written, expected.len() as u64);
        assert!(file.flushed_to >= 2 * WRITEBACK_STEP, "two hints issued, flushed to {}", file.flushed_to);
        assert!(file.written - file.flushed_to < WRITEBACK_STEP);
        super::FsFile::sync_all(&mut file).expect("fsync");
        drop(file);
        assert!(std::fs::read(&path).expect("read back") == expected, "content changed");
    }
}
