//! [`FaultyFs`]: any [`Fs`] with chosen calls failed (or followed by a hook), every call
//! counted by its [`FsOp`].

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Fs, FsFile, FsInPlace, FsOp, FsSpace, RealFs};

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

    fn open_sole_in_place(&self, path: &Path) -> io::Result<Box<dyn FsInPlace>> {
        self.check(FsOp::OpenInPlace, path)?;
        let inner = self.inner.open_sole_in_place(path)?;
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

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.watched.check(FsOp::WriteInPlace)?;
        self.inner.set_len(len)
    }
}
