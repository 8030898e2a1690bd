//! Keeping a stored file's leading bytes in its next version.
//!
//! A nightly update rewrites years of history to change its last rows, and encoding and
//! hashing the unchanged rows again was most of that work. When an update names the
//! version it replaces (a token with [`Evidence`]) and the caller vouches that the new
//! version starts with rows of it ([`Keep`]), the store opens the file, checks it is the
//! very file the token names, and asks the codec which leading bytes can stay
//! ([`BarCodec::keepable`]). The staged write copies those bytes, resumes the MD5 from the
//! token's checkpoints and lets the codec write the rest ([`BarCodec::encode_after`]).
//!
//! The store moves bytes and proves identity; it knows nothing of lines or row groups.
//! The codec checks its own layout (a CSV boundary line, Parquet column chunks) against
//! the new rows, so a caller's wrong claim keeps nothing rather than a wrong file.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::sync::{Arc, OnceLock};

use barvault_ports::{BarCodec, Continuation, Keep, KeptPrefix, StoredBytes, read_slice};

use crate::digest::{Checkpoint, Md5Stream};
use crate::proof::{Evidence, md5_at};

/// The bytes of a stored file whose identity was just checked against a token.
#[derive(Debug)]
pub(crate) enum Source {
    /// The bytes the token's proof read (small files).
    Memory(Arc<Vec<u8>>),
    /// The file itself, open; read whole at most once.
    File { file: File, len: u64, whole: OnceLock<Arc<Vec<u8>>> },
}

impl Source {
    pub(crate) fn file(file: File, len: u64) -> Self {
        Source::File { file, len, whole: OnceLock::new() }
    }

    fn pread(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            file.read_exact_at(buf, offset)
        }
        #[cfg(not(unix))]
        {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = file.try_clone()?;
            f.seek(SeekFrom::Start(offset))?;
            f.read_exact(buf)
        }
    }
}

impl StoredBytes for Source {
    fn len(&self) -> u64 {
        match self {
            Source::Memory(bytes) => bytes.len() as u64,
            Source::File { len, .. } => *len,
        }
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        match self {
            Source::Memory(bytes) => read_slice(bytes, offset, len),
            Source::File { file, whole, .. } => {
                if let Some(all) = whole.get() {
                    return read_slice(all, offset, len);
                }
                let mut buf = vec![0u8; len];
                Self::pread(file, offset, &mut buf)?;
                Ok(Cow::Owned(buf))
            }
        }
    }

    fn all(&self) -> io::Result<Cow<'_, [u8]>> {
        match self {
            Source::Memory(bytes) => Ok(Cow::Borrowed(bytes.as_slice())),
            Source::File { file, len, whole } => {
                if whole.get().is_none() {
                    let mut buf = vec![0u8; usize::try_from(*len).map_err(io::Error::other)?];
                    Self::pread(file, 0, &mut buf)?;
                    let _ = whole.set(Arc::new(buf));
                }
                let all = whole.get().ok_or_else(|| io::Error::other("stored bytes not read"))?;
                Ok(Cow::Borrowed(all.as_slice()))
            }
        }
    }
}

/// The leading bytes of a stored file that start its next version, ready to be copied.
#[derive(Debug)]
pub(crate) struct Prefix {
    pub(crate) source: Arc<Source>,
    pub(crate) len: u64,
    /// MD5 state after the first `len` bytes.
    pub(crate) md5: Md5Stream,
    /// The token's checkpoints within those bytes, which hold for the new file too.
    pub(crate) checkpoints: Vec<Checkpoint>,
}

/// What the codec lets the next version keep of `source` (the file `evidence` names), as
/// a prefix to copy; `None` when nothing can be kept. A codec error counts as nothing
/// kept: the version is then encoded whole, which is never wrong.
pub(crate) fn plan(
    codec: &dyn BarCodec,
    evidence: &Evidence,
    source: &Arc<Source>,
    next: Continuation<'_>,
    keep: Keep,
) -> io::Result<Option<(Prefix, KeptPrefix)>> {
    let valid = keep.unchanged > 0
        && keep.unchanged <= keep.stored_rows
        && keep.unchanged <= next.skipped.saturating_add(next.bars.len());
    if !valid {
        return Ok(None);
    }
    let kept = match codec.keepable(source.as_ref(), next, keep) {
        Ok(Some(kept)) => kept,
        Ok(None) => return Ok(None),
        Err(e) => {
            tracing::debug!(path = %evidence.path.display(), error = %e, "stored bytes not kept");
            return Ok(None);
        }
    };
    if kept.rows > keep.unchanged || kept.rows < next.skipped || kept.bytes > source.len() || kept.bytes == 0 {
        return Ok(None);
    }
    let gap = |from: u64, len: usize| source.read(from, len).map(Cow::into_owned);
    let Some((md5, checkpoints)) = md5_at(evidence, kept.bytes, gap)? else { return Ok(None) };
    Ok(Some((Prefix { source: Arc::clone(source), len: kept.bytes, md5, checkpoints }, kept)))
}
