//! Store files are never reached through a symbolic link somebody planted in the store:
//! a data file, backup, metadata record or layout directory that is a link to a file
//! elsewhere is refused with an error naming the link, never read or written through.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::fs::Fs;

/// Why a store path was not followed (the inner error of [`symlink_refused`]).
#[derive(Debug)]
struct SymlinkRefused(String);

impl std::fmt::Display for SymlinkRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SymlinkRefused {}

/// The error of a store path that is a symbolic link.
pub fn symlink_refused(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        SymlinkRefused(format!(
            "{what} is a symbolic link, not created by barvault; refusing to follow it (remove the link)"
        )),
    )
}

/// Whether `e` is a [`symlink_refused`] error.
pub fn is_symlink_refused(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<SymlinkRefused>())
}

/// Opens the store file at `path` for reading, refusing a symbolic link: the path is
/// examined without following it, and the file opened must be that very inode. A file
/// replaced by a concurrent write between the two (a rename, not a link) is simply
/// examined and opened again.
pub fn open_read_no_follow(fs: &dyn Fs, path: &Path, what: &str) -> io::Result<File> {
    const TRIES: usize = 16;
    for _ in 0..TRIES {
        let named = fs.symlink_metadata(path)?;
        if named.file_type().is_symlink() {
            return Err(symlink_refused(what));
        }
        let file = fs.open_read(path)?;
        let opened = file.metadata()?;
        if opened.dev() == named.dev() && opened.ino() == named.ino() {
            return Ok(file);
        }
    }
    Err(io::Error::other(format!("{} was replaced {TRIES} times while being opened", path.display())))
}

/// The first of the directories from `base` (excluded) down to `dir` (included) that is a
/// symbolic link, if any: writing into `dir` would then write outside the store.
pub fn linked_dir_below(fs: &dyn Fs, base: &Path, dir: &Path) -> io::Result<Option<std::path::PathBuf>> {
    let Ok(rest) = dir.strip_prefix(base) else { return Ok(None) };
    let mut at = base.to_path_buf();
    for part in rest.iter() {
        at.push(part);
        match fs.symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return Ok(Some(at)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}
