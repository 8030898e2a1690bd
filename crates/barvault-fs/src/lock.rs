//! Cross-process series locks on lock files beside the data.
//!
//! They are OS advisory locks (`flock` via `File::lock`), so a holder that dies —
//! even by SIGKILL — releases its lock with its file descriptors and can never block
//! others. Each open of the lock file is its own lock owner, so tasks of one process
//! exclude each other too. After acquiring, the holder checks that the path still names
//! the inode it locked: a lock file unlinked by a cleanup and recreated by another
//! process could otherwise give two holders at once.

use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use barvault_domain::SeriesKey;
use barvault_ports::{IoStep, OpContext, SeriesGuard, SeriesLocks, StorageError};

use crate::atomic::create_dir_durable;
use crate::fs::Fs;
use crate::layout::series_lock_path;

/// Cross-process [`SeriesLocks`] on one lock file per series, `.{SYMBOL}.lock` beside its
/// data, shared by every format of the series.
#[derive(Debug, Clone)]
pub struct FileLocks {
    fs: Arc<dyn Fs>,
    base: PathBuf,
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct FileLockGuard {
    file: File,
    path: PathBuf,
    fs: Arc<dyn Fs>,
}

impl FileLockGuard {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLockGuard {
    fn drop(&mut self) {
        // Closing the descriptor releases the lock anyway; unlocking first makes it prompt
        // even if the file were shared.
        if let Err(e) = self.file.unlock() {
            tracing::warn!(path = %self.path.display(), error = %e, "unlock failed; the lock ends when the file closes");
        }
    }
}

impl SeriesGuard for FileLockGuard {
    /// Removes the lock file (durably) while still holding it, then releases: a waiter that
    /// opened the file finds it no longer named and locks a new one (`lock_file`).
    fn release_removed(self: Box<Self>) -> Result<(), StorageError> {
        crate::atomic::remove_durable(self.fs.as_ref(), &self.path)?;
        Ok(())
    }
}

fn same_inode(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

impl FileLocks {
    /// Locks of the store under `base`.
    pub fn new(fs: Arc<dyn Fs>, base: impl Into<PathBuf>) -> Self {
        Self { fs, base: base.into() }
    }

    /// The lock file of `series`.
    pub fn path_of(&self, series: &SeriesKey) -> PathBuf {
        series_lock_path(&self.base, series)
    }

    /// Whether `file` (locked) is still the file `path` names; if not, a cleanup removed
    /// it and the lock protects nothing.
    fn still_named(&self, file: &File, path: &Path) -> Result<bool, StorageError> {
        let lock_err = |e: io::Error| StorageError::io(IoStep::Lock, path, e);
        let held = file.metadata().map_err(lock_err)?;
        match self.fs.metadata(path) {
            Ok(named) => Ok(same_inode(&held, &named)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(lock_err(e)),
        }
    }

    /// Blocks in `flock` on a helper thread for at most `wait`. The kernel wakes a blocked
    /// waiter on release, so a process that re-locks in a tight loop cannot starve it (as
    /// it could a poller). On timeout the helper stays blocked; if it later gets the lock
    /// it finds nobody waiting and releases it at once.
    fn wait_for(&self, file: File, path: &Path, wait: Duration) -> Result<Option<File>, StorageError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<File>>(1);
        std::thread::Builder::new()
            .name("barvault-lock-wait".into())
            .spawn(move || {
                let locked = file.lock().map(|()| file);
                // A refused send drops the file, which releases the lock.
                let _unwanted = tx.send(locked);
            })
            .map_err(|e| StorageError::io(IoStep::Lock, path, e))?;
        match rx.recv_timeout(wait) {
            Ok(Ok(file)) => Ok(Some(file)),
            Ok(Err(e)) => Err(StorageError::io(IoStep::Lock, path, e)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err(StorageError::io(IoStep::Lock, path, io::Error::other("lock wait thread ended")))
            }
        }
    }

    /// Waits (blocking this thread) at most `timeout`.
    pub fn lock_blocking(&self, series: &SeriesKey, timeout: Duration) -> Result<FileLockGuard, StorageError> {
        self.lock_file(series, &self.path_of(series), timeout)
    }

    /// Locks the lock file at `path` (of `series`), creating it if needed.
    fn lock_file(&self, series: &SeriesKey, path: &Path, timeout: Duration) -> Result<FileLockGuard, StorageError> {
        if let Some(dir) = path.parent() {
            let linked = crate::nofollow::linked_dir_below(self.fs.as_ref(), &self.base, dir)
                .map_err(|e| StorageError::io(IoStep::Stat, dir, e))?;
            if let Some(link) = linked {
                let what = format!("the store directory {}", link.display());
                return Err(StorageError::io(IoStep::Lock, &link, crate::nofollow::symlink_refused(&what)));
            }
            create_dir_durable(self.fs.as_ref(), dir)?;
        }
        let start = Instant::now();
        loop {
            let file = self.fs.open_lock(path).map_err(|e| StorageError::io(IoStep::Lock, path, e))?;
            let locked = match file.try_lock() {
                Ok(()) => Some(file),
                Err(TryLockError::WouldBlock) => {
                    let remaining = timeout.saturating_sub(start.elapsed());
                    if remaining.is_zero() { None } else { self.wait_for(file, path, remaining)? }
                }
                Err(TryLockError::Error(e)) => return Err(StorageError::io(IoStep::Lock, path, e)),
            };
            let Some(file) = locked else {
                return Err(StorageError::Locked {
                    series: series.clone(),
                    path: path.to_path_buf(),
                    waited: start.elapsed(),
                });
            };
            if self.still_named(&file, path)? {
                tracing::debug!(path = %path.display(), waited_ms = start.elapsed().as_millis() as u64, "lock acquired");
                return Ok(FileLockGuard { file, path: path.to_path_buf(), fs: Arc::clone(&self.fs) });
            }
            // The file we locked was removed (and maybe recreated): lock the current one.
        }
    }

    /// Deletes the lock file of `series` while holding its lock, so no holder can be
    /// bypassed; waits at most `timeout` for the lock. Returns whether a file was removed.
    pub fn remove_stale_lock_blocking(&self, series: &SeriesKey, timeout: Duration) -> Result<bool, StorageError> {
        self.remove_lock_file(series, &self.path_of(series), timeout)
    }

    /// Deletes the lock file at `path` of `series` (also a per-format lock file of an
    /// earlier version) while holding it.
    pub fn remove_lock_file(&self, series: &SeriesKey, path: &Path, timeout: Duration) -> Result<bool, StorageError> {
        match self.fs.symlink_metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(StorageError::io(
                    IoStep::Lock,
                    path,
                    io::Error::other("not a regular file (a symbolic link?); left for a person to look at"),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StorageError::io(IoStep::Stat, path, e)),
        }
        let guard = self.lock_file(series, path, timeout)?;
        // Waiters that opened this inode re-check the path after we release and retry.
        let removed = crate::atomic::remove_durable(self.fs.as_ref(), path)?;
        drop(guard);
        Ok(removed)
    }
}

#[async_trait]
impl SeriesLocks for FileLocks {
    async fn lock(
        &self,
        series: &SeriesKey,
        timeout: Duration,
        ctx: &OpContext,
    ) -> Result<Box<dyn SeriesGuard>, StorageError> {
        let span = ctx.span("lock", Some(series));
        let (me, key) = (self.clone(), series.clone());
        let path = self.path_of(series);
        let guard = tokio::task::spawn_blocking(move || span.in_scope(|| me.lock_blocking(&key, timeout)))
            .await
            .map_err(|e| StorageError::io(IoStep::Lock, path, io::Error::other(e.to_string())))??;
        Ok(Box::new(guard))
    }
}
