//! The filesystem seam: every call a write path makes goes through [`Fs`], so that a
//! [`FaultyFs`] can make any one of them fail and tests can prove that no failure loses data.

use std::collections::HashMap;
use std::fmt::Debug;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use std::fmt;

/// One kind of call through the [`Fs`] seam: what a [`Fault`] names and [`FaultyFs`]
/// counts. Named after the step of a write or read each call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FsOp {
    /// `create_dir_all`.
    CreateDir,
    /// `create_new` (a temp file).
    CreateTemp,
    /// A write to a file made by `create_new` or `reuse_spare`.
    WriteTemp,
    /// `sync_all` of such a file.
    FsyncTemp,
    /// `rename`.
    Rename,
    /// `sync_dir`.
    FsyncDir,
    /// `hard_link` and `copy` (keeping a backup).
    BackupLink,
    /// `remove_file`.
    Remove,
    /// `open_read`, and reads of a file opened in place.
    Read,
    /// `metadata` and `symlink_metadata`.
    Stat,
    /// `read_dir`.
    List,
    /// `open_lock`.
    Lock,
    /// `open_in_place`.
    OpenInPlace,
    /// `write_all_at` of a file opened in place (a torn write under [`FaultyFs`]).
    WriteInPlace,
    /// `sync_data` of a file opened in place.
    SyncInPlace,
    /// `exchange`, `recycle`, `reuse_spare` and `make_spare` (spare inodes).
    Recycle,
    /// `capacity`.
    Space,
}

impl fmt::Display for FsOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsOp::CreateDir => "create directory",
            FsOp::CreateTemp => "create temp file",
            FsOp::WriteTemp => "write temp file",
            FsOp::FsyncTemp => "fsync temp file",
            FsOp::Rename => "rename",
            FsOp::FsyncDir => "fsync directory",
            FsOp::BackupLink => "keep backup",
            FsOp::Remove => "remove",
            FsOp::Read => "read",
            FsOp::Stat => "stat",
            FsOp::List => "list directory",
            FsOp::Lock => "open lock file",
            FsOp::OpenInPlace => "open for update in place",
            FsOp::WriteInPlace => "write in place",
            FsOp::SyncInPlace => "fdatasync in place",
            FsOp::Recycle => "recycle spare file",
            FsOp::Space => "read free space",
        })
    }
}

impl FsOp {
    /// The step an error names when a call of this kind fails.
    pub fn step(self) -> barvault_ports::IoStep {
        use barvault_ports::IoStep;
        match self {
            FsOp::CreateDir => IoStep::CreateDir,
            FsOp::CreateTemp => IoStep::CreateTemp,
            FsOp::WriteTemp => IoStep::WriteTemp,
            FsOp::FsyncTemp => IoStep::FsyncTemp,
            FsOp::Rename => IoStep::Rename,
            FsOp::FsyncDir => IoStep::FsyncDir,
            FsOp::BackupLink | FsOp::Recycle => IoStep::BackupLink,
            FsOp::Remove => IoStep::Remove,
            FsOp::Read => IoStep::Read,
            FsOp::Stat | FsOp::Space => IoStep::Stat,
            FsOp::List => IoStep::List,
            FsOp::Lock => IoStep::Lock,
            FsOp::OpenInPlace | FsOp::WriteInPlace | FsOp::SyncInPlace => IoStep::WriteMetadata,
        }
    }
}

/// Space on the filesystem holding a path, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    pub total: u64,
    /// Free for unprivileged writers.
    pub available: u64,
    /// Free in all.
    pub free: u64,
}

/// An open, new file being written; `sync_all` makes its bytes durable.
pub trait FsFile: Write + Send + Debug {
    fn sync_all(&mut self) -> io::Result<()>;
}

/// An existing file opened to be updated in place: positioned reads and writes of whole
/// ranges, and `fdatasync`. Only metadata records are written this way (FORMAT.md), in
/// slots that a torn write can damage but never make look valid.
pub trait FsInPlace: Send + Debug {
    /// The file's length in bytes.
    fn size(&mut self) -> io::Result<u64>;
    /// Fills `buf` from `offset` (an error if the file ends first).
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `bytes` at `offset`.
    fn write_all_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Makes the written bytes durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// The filesystem calls of barvault: every write, read, lock, scan and space query of the
/// store, and the reads and writes of the user's own input and output files.
///
/// Each method is one [`FsOp`] (see [`FaultyFs`]), named in its docs.
///
/// The last four keep an inode per data file for the next write (see `atomic`). Each is
/// optional: the defaults report `Unsupported`, and the write path then does what it did
/// without them (rename over the backup, create the temp file).
pub trait Fs: Send + Sync + Debug {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Creates `path`, failing if it exists (`O_CREAT | O_EXCL`).
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Atomically replaces `to` with `from` (POSIX `rename`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()>;
    /// Copies `from` to the new file `to` and makes the copy durable.
    fn copy(&self, from: &Path, to: &Path) -> io::Result<u64>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn open_read(&self, path: &Path) -> io::Result<File>;
    /// `stat` (follows symlinks).
    fn metadata(&self, path: &Path) -> io::Result<Metadata>;
    /// `lstat`: the entry itself, a symbolic link not followed.
    fn symlink_metadata(&self, path: &Path) -> io::Result<Metadata>;
    /// Space on the filesystem holding `path` ([`FsOp::Space`]).
    fn capacity(&self, path: &Path) -> io::Result<FsSpace>;
    /// The entries of `dir` as full paths, in no particular order.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Opens (creating if needed, never truncating) a lock file read-write.
    fn open_lock(&self, path: &Path) -> io::Result<File>;
    /// Opens an existing file read-write to update it in place; never creates or truncates.
    fn open_in_place(&self, path: &Path) -> io::Result<Box<dyn FsInPlace>>;

    /// Atomically swaps the names `a` and `b`, both of which must exist
    /// (`renameat2(RENAME_EXCHANGE)`).
    fn exchange(&self, a: &Path, b: &Path) -> io::Result<()> {
        let _ = (a, b);
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Empties the file at `path` and renames it to `spare`. Refuses anything but a regular
    /// file with one name (a hard link or a symbolic link): emptying it would empty
    /// another file too.
    fn recycle(&self, path: &Path, spare: &Path) -> io::Result<()> {
        let _ = (path, spare);
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Renames `spare` to `to` and opens it for writing, emptied, as [`Fs::create_new`]
    /// would have created it. Refuses anything but a regular file with one name; on any
    /// error nothing is left at `to`.
    fn reuse_spare(&self, spare: &Path, to: &Path) -> io::Result<Box<dyn FsFile>> {
        let _ = (spare, to);
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Creates the empty file `spare` (failing if it exists).
    fn make_spare(&self, spare: &Path) -> io::Result<()> {
        let _ = spare;
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Opens `path` for writing only if it is a regular file with exactly one name: a spare or
/// an old backup that is a symbolic link, or that shares its inode with another file, must
/// never be emptied or written (that would empty or write the other file).
#[cfg(unix)]
fn open_sole(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.nlink() != 1 {
        let why = format!("not a regular file with one name ({} names); not recycled", meta.nlink());
        return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    }
    Ok(file)
}

#[cfg(not(unix))]
fn open_sole(_path: &Path) -> io::Result<File> {
    Err(io::ErrorKind::Unsupported.into())
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
        std::fs::create_dir_all(dir)
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(Box::new(RealFile::new(OpenOptions::new().write(true).create_new(true).open(path)?)))
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
        let mut dst = OpenOptions::new().write(true).create_new(true).open(to)?;
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
            options.custom_flags(libc::O_NOFOLLOW).mode(0o644);
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
        Ok(Box::new(RealInPlace(OpenOptions::new().read(true).write(true).open(path)?)))
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
        OpenOptions::new().write(true).create_new(true).open(spare).map(drop)
    }
}

/// One failure to inject: the `nth` (from 1) call of `step` whose path contains
/// `path_contains` (any path if `None`) fails with OS error `errno`; if `persistent`,
/// every later matching call fails too (a disk that stays full).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub step: FsOp,
    pub nth: u64,
    pub errno: i32,
    pub persistent: bool,
    pub path_contains: Option<String>,
}

impl Fault {
    /// Fails only the `nth` matching call.
    pub fn once(step: FsOp, nth: u64, errno: i32) -> Self {
        Self { step, nth, errno, persistent: false, path_contains: None }
    }

    /// Fails the `nth` matching call and every one after it.
    pub fn from_nth(step: FsOp, nth: u64, errno: i32) -> Self {
        Self { step, nth, errno, persistent: true, path_contains: None }
    }

    /// Only calls on paths containing `fragment` count (e.g. a metadata file name).
    pub fn on_paths_containing(mut self, fragment: impl Into<String>) -> Self {
        self.path_contains = Some(fragment.into());
        self
    }
}

/// Something to do right after a call succeeds (see [`FaultyFs::after_call`]).
pub type CallHook = Arc<dyn Fn(&Path) + Send + Sync>;

#[derive(Default)]
struct FaultState {
    /// Each fault with how many matching calls it has seen.
    faults: Vec<(Fault, u64)>,
    /// Each hook with its call, the matching call it runs after, and the calls seen.
    hooks: Vec<(FsOp, u64, u64, CallHook)>,
    calls: HashMap<FsOp, u64>,
    injected: u64,
}

impl fmt::Debug for FaultState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultState")
            .field("faults", &self.faults)
            .field("hooks", &self.hooks.len())
            .field("calls", &self.calls)
            .field("injected", &self.injected)
            .finish()
    }
}

impl FaultState {
    fn check(&mut self, step: FsOp, path: &Path) -> io::Result<()> {
        *self.calls.entry(step).or_default() += 1;
        let shown = path.to_string_lossy();
        let mut errno = None;
        for (fault, seen) in &mut self.faults {
            if fault.step != step || fault.path_contains.as_deref().is_some_and(|f| !shown.contains(f)) {
                continue;
            }
            *seen += 1;
            let hit = if fault.persistent { *seen >= fault.nth } else { *seen == fault.nth };
            if hit && errno.is_none() {
                errno = Some(fault.errno);
            }
        }
        match errno {
            Some(code) => {
                self.injected += 1;
                tracing::debug!(%step, path = %shown, errno = code, "injected I/O fault");
                Err(io::Error::from_raw_os_error(code))
            }
            None => Ok(()),
        }
    }
}

/// A wrapper around any [`Fs`] that fails chosen calls with a chosen OS error and counts
/// every call per [`FsOp`]. It is a real adapter (all calls not failed reach the wrapped
/// filesystem), so stores and applications run unchanged on top of it.
#[derive(Debug, Clone)]
pub struct FaultyFs {
    inner: Arc<dyn Fs>,
    state: Arc<Mutex<FaultState>>,
}

impl FaultyFs {
    pub fn new(inner: Arc<dyn Fs>) -> Self {
        Self { inner, state: Arc::default() }
    }

    /// Wraps the real filesystem.
    pub fn real() -> Self {
        Self::new(Arc::new(RealFs))
    }

    pub fn with_fault(self, fault: Fault) -> Self {
        self.inject(fault);
        self
    }

    /// Adds a fault; its call count starts now.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push((fault, 0));
    }

    /// Removes every fault (counts are kept).
    pub fn clear(&self) {
        self.state().faults.clear();
    }

    /// How many calls of `step` were made (failed ones included).
    pub fn calls(&self, step: FsOp) -> u64 {
        self.state().calls.get(&step).copied().unwrap_or(0)
    }

    pub fn reset_counts(&self) {
        self.state().calls.clear();
    }

    /// How many calls were failed on purpose.
    pub fn injected(&self) -> u64 {
        self.state().injected
    }

    fn state(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check(&self, step: FsOp, path: &Path) -> io::Result<()> {
        self.state().check(step, path)
    }

    /// Runs `hook` right after the `nth` (from 1) successful call of `step` from now, with
    /// the call's path: a race another process would cause at exactly that point (a lock
    /// file unlinked between its open and its lock, a file replaced after it was read).
    pub fn after_call(&self, step: FsOp, nth: u64, hook: CallHook) {
        self.state().hooks.push((step, nth, 0, hook));
    }

    fn after(&self, step: FsOp, path: &Path) {
        let due: Vec<CallHook> = {
            let mut state = self.state();
            state
                .hooks
                .iter_mut()
                .filter(|(s, ..)| *s == step)
                .filter_map(|(_, nth, seen, hook)| {
                    *seen += 1;
                    (*seen == *nth).then(|| Arc::clone(hook))
                })
                .collect()
        };
        for hook in due {
            hook(path);
        }
    }

    fn watch(&self, path: &Path) -> Watched {
        Watched { path: path.to_path_buf(), state: Arc::clone(&self.state) }
    }
}

/// An open file of a [`FaultyFs`]: its path and the shared fault state its calls check.
#[derive(Debug)]
struct Watched {
    path: PathBuf,
    state: Arc<Mutex<FaultState>>,
}

impl Watched {
    fn check(&self, step: FsOp) -> io::Result<()> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).check(step, &self.path)
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: Box<dyn FsFile>,
    watched: Watched,
}

impl Write for FaultyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.watched.check(FsOp::WriteTemp)?;
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl FsFile for FaultyFile {
    fn sync_all(&mut self) -> io::Result<()> {
        self.watched.check(FsOp::FsyncTemp)?;
        self.inner.sync_all()
    }
}

impl Fs for FaultyFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.check(FsOp::CreateDir, dir)?;
        self.inner.create_dir_all(dir)?;
        self.after(FsOp::CreateDir, dir);
        Ok(())
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.check(FsOp::CreateTemp, path)?;
        let inner = self.inner.create_new(path)?;
        Ok(Box::new(FaultyFile { inner, watched: self.watch(path) }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(FsOp::Rename, to)?;
        self.inner.rename(from, to)?;
        self.after(FsOp::Rename, to);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check(FsOp::FsyncDir, dir)?;
        self.inner.sync_dir(dir)?;
        self.after(FsOp::FsyncDir, dir);
        Ok(())
    }

    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        self.check(FsOp::BackupLink, link)?;
        self.inner.hard_link(original, link)?;
        self.after(FsOp::BackupLink, link);
        Ok(())
    }

    fn copy(&self, from: &Path, to: &Path) -> io::Result<u64> {
        self.check(FsOp::BackupLink, to)?;
        let out = self.inner.copy(from, to)?;
        self.after(FsOp::BackupLink, to);
        Ok(out)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check(FsOp::Remove, path)?;
        self.inner.remove_file(path)?;
        self.after(FsOp::Remove, path);
        Ok(())
    }

    fn open_read(&self, path: &Path) -> io::Result<File> {
        self.check(FsOp::Read, path)?;
        let out = self.inner.open_read(path)?;
        self.after(FsOp::Read, path);
        Ok(out)
    }

    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        self.check(FsOp::Stat, path)?;
        let out = self.inner.metadata(path)?;
        self.after(FsOp::Stat, path);
        Ok(out)
    }

    fn symlink_metadata(&self, path: &Path) -> io::Result<Metadata> {
        self.check(FsOp::Stat, path)?;
        let out = self.inner.symlink_metadata(path)?;
        self.after(FsOp::Stat, path);
        Ok(out)
    }

    fn capacity(&self, path: &Path) -> io::Result<FsSpace> {
        self.check(FsOp::Space, path)?;
        let out = self.inner.capacity(path)?;
        self.after(FsOp::Space, path);
        Ok(out)
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.check(FsOp::List, dir)?;
        let out = self.inner.read_dir(dir)?;
        self.after(FsOp::List, dir);
        Ok(out)
    }

    fn open_lock(&self, path: &Path) -> io::Result<File> {
        self.check(FsOp::Lock, path)?;
        let out = self.inner.open_lock(path)?;
        self.after(FsOp::Lock, path);
        Ok(out)
    }

    fn open_in_place(&self, path: &Path) -> io::Result<Box<dyn FsInPlace>> {
        self.check(FsOp::OpenInPlace, path)?;
        let inner = self.inner.open_in_place(path)?;
        Ok(Box::new(FaultyInPlace { inner, watched: self.watch(path) }))
    }

    fn exchange(&self, a: &Path, b: &Path) -> io::Result<()> {
        self.check(FsOp::Recycle, b)?;
        self.inner.exchange(a, b)?;
        self.after(FsOp::Recycle, b);
        Ok(())
    }

    fn recycle(&self, path: &Path, spare: &Path) -> io::Result<()> {
        self.check(FsOp::Recycle, spare)?;
        self.inner.recycle(path, spare)?;
        self.after(FsOp::Recycle, spare);
        Ok(())
    }

    fn reuse_spare(&self, spare: &Path, to: &Path) -> io::Result<Box<dyn FsFile>> {
        self.check(FsOp::Recycle, spare)?;
        let inner = self.inner.reuse_spare(spare, to)?;
        Ok(Box::new(FaultyFile { inner, watched: self.watch(to) }))
    }

    fn make_spare(&self, spare: &Path) -> io::Result<()> {
        self.check(FsOp::Recycle, spare)?;
        self.inner.make_spare(spare)?;
        self.after(FsOp::Recycle, spare);
        Ok(())
    }
}

/// A file updated in place through [`FaultyFs`]. A failed `write_all_at` is a torn write:
/// the first half of the bytes reach the file before the error, as when a machine loses
/// power in the middle of a write.
#[derive(Debug)]
struct FaultyInPlace {
    inner: Box<dyn FsInPlace>,
    watched: Watched,
}

impl FsInPlace for FaultyInPlace {
    fn size(&mut self) -> io::Result<u64> {
        self.inner.size()
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.watched.check(FsOp::Read)?;
        self.inner.read_exact_at(offset, buf)
    }

    fn write_all_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        if let Err(e) = self.watched.check(FsOp::WriteInPlace) {
            self.inner.write_all_at(offset, &bytes[..bytes.len() / 2])?;
            return Err(e);
        }
        self.inner.write_all_at(offset, bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.watched.check(FsOp::SyncInPlace)?;
        self.inner.sync_data()
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
