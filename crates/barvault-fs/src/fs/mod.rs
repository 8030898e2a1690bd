//! The filesystem seam: every call a write path makes goes through [`Fs`], so that a
//! [`FaultyFs`] can make any one of them fail and tests can prove that no failure loses data.

use std::fmt::{self, Debug};
use std::fs::{File, Metadata};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

mod faulty;
mod real;

pub use faulty::{CallHook, Fault, FaultyFs};
pub use real::RealFs;

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
    /// Cuts the file to `len` bytes (`ftruncate`); only appends use it, to cut what a
    /// crashed append left after the committed length.
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let _ = len;
        Err(io::ErrorKind::Unsupported.into())
    }
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

    /// [`Fs::open_in_place`] of a data file an append writes to: refuses anything but a
    /// regular file with one name, opened without following a symbolic link, so that an
    /// append never writes through a link or into a `.backup` that shares the inode
    /// ([`FsOp::OpenInPlace`]). The default refuses, and appends then rewrite the file.
    fn open_sole_in_place(&self, path: &Path) -> io::Result<Box<dyn FsInPlace>> {
        let _ = path;
        Err(io::ErrorKind::Unsupported.into())
    }

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
