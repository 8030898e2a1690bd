//! Where the pieces of an input come from: a slice in memory, or a reader read a piece at
//! a time, each piece cut at a line end. No line may be longer than [`MAX_LINE`]: a longer
//! one is refused as soon as it is seen, without reading the rest of the input.

use std::io::{self, Read};

use barvault_ports::CodecError;

/// The longest line an input may have, in bytes (its line end not counted): 16 times the
/// longest line barvault can need, a header of 1,024 names of 64 characters (DECISIONS.md,
/// "The longest line of a CSV input"). A piece is never cut after more bytes than this, so
/// only a line that starts in one read and ends in a later one can be longer.
pub(crate) const MAX_LINE: usize = 1 << 20;

/// A line longer than [`MAX_LINE`], carried as the source of an `io::Error` from
/// [`Source::next_chunk`] or [`Source::rest`] and turned into a parse error naming its line
/// by [`source_error`].
#[derive(Debug)]
pub(super) struct LineTooLong {
    /// Line ends before the line, from the start of the piece (or of the rest).
    pub(super) newlines_before: u64,
    /// Its length, or the bytes of it read so far when `ended` is false.
    pub(super) length: usize,
    pub(super) ended: bool,
}

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ended {
            write!(f, "line of {} bytes", self.length)?;
        } else {
            write!(f, "line of at least {} bytes (read so far without a line end; the rest is not read)", self.length)?;
        }
        write!(f, ": a line may have at most {MAX_LINE} bytes (1 MiB)")
    }
}

impl std::error::Error for LineTooLong {}

fn too_long(newlines_before: u64, length: usize, ended: bool) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, LineTooLong { newlines_before, length, ended })
}

/// An error of a [`Source`] read after `lines_before` line ends of the input: a line too
/// long becomes a parse error naming its line and length, anything else an I/O error.
pub(super) fn source_error(e: io::Error, lines_before: u64) -> CodecError {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<LineTooLong>()) {
        Some(long) => CodecError::parse(Some(lines_before + long.newlines_before + 1), None, None, long.to_string()),
        None => CodecError::Io(e),
    }
}

/// Refuses the first line of `text` longer than [`MAX_LINE`]; the last line counts as
/// ended only when `complete`.
fn check_lines(text: &[u8], complete: bool) -> io::Result<()> {
    let mut start = 0;
    for (newlines, end) in memchr::memchr_iter(b'\n', text).chain(std::iter::once(text.len())).enumerate() {
        if end - start > MAX_LINE {
            return Err(too_long(newlines as u64, end - start, complete || end < text.len()));
        }
        start = end + 1;
    }
    Ok(())
}

/// Refuses a piece whose first line (from `buf[0]`, with no line end before `searched`) is
/// longer than [`MAX_LINE`]. Every other line of a piece lies within one read of at most
/// [`MAX_LINE`] bytes. `ended` says whether the input ends after `buf`.
fn check_first_line(buf: &[u8], searched: usize, ended: bool) -> io::Result<()> {
    if buf.len() <= MAX_LINE {
        return Ok(());
    }
    let new = buf.get(searched..).unwrap_or_default();
    match memchr::memchr(b'\n', new) {
        Some(i) if searched + i <= MAX_LINE => Ok(()),
        Some(i) => Err(too_long(0, searched + i, true)),
        None => Err(too_long(0, buf.len(), ended)),
    }
}

/// Where the pieces of the input come from: a slice in memory or a reader.
pub(super) trait Source {
    type Chunk: AsRef<[u8]> + Send;
    /// The next piece, ending at a `\n` (or at the end of the input); `None` at the end.
    fn next_chunk(&mut self) -> io::Result<Option<Self::Chunk>>;
    /// `chunks` (the last pieces returned, in order) followed by everything not read yet.
    fn rest(&mut self, chunks: Vec<Self::Chunk>) -> io::Result<Self::Chunk>;
    /// Hands a piece back once decoded, for its buffer to be reused.
    fn recycle(&mut self, _chunk: Self::Chunk) {}
    /// The size of the whole input in bytes, as far as known.
    fn size_hint(&self) -> usize;
    /// The bytes a piece is cut after.
    fn chunk_size(&self) -> usize;
}

#[derive(Debug)]
pub(super) struct SliceSource<'a> {
    pub(super) input: &'a [u8],
    pub(super) pos: usize,
    pub(super) chunk: usize,
}

impl<'a> Source for SliceSource<'a> {
    type Chunk = &'a [u8];

    fn next_chunk(&mut self) -> io::Result<Option<&'a [u8]>> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(None);
        }
        let chunk = self.chunk.clamp(1, MAX_LINE);
        let len = match rest.get(chunk..) {
            Some(tail) => chunk + slice_cut(rest, chunk, tail)?,
            None => rest.len(),
        };
        self.pos += len;
        Ok(rest.get(..len))
    }

    fn rest(&mut self, chunks: Vec<&'a [u8]>) -> io::Result<&'a [u8]> {
        let start = match chunks.first() {
            Some(first) => first.as_ptr().addr().saturating_sub(self.input.as_ptr().addr()),
            None => self.pos,
        };
        self.pos = self.input.len();
        let rest = self.input.get(start..).unwrap_or_default();
        check_lines(rest, true)?;
        Ok(rest)
    }

    fn size_hint(&self) -> usize {
        self.input.len()
    }

    fn chunk_size(&self) -> usize {
        self.chunk
    }
}

/// Where a piece of a slice ends after its first `chunk` bytes of `rest`: the bytes of
/// `tail` (what follows them) up to and with the line end of the line they cut, refused when
/// that line is longer than [`MAX_LINE`] (found by looking no further than the bound).
fn slice_cut(rest: &[u8], chunk: usize, tail: &[u8]) -> io::Result<usize> {
    let head = rest.get(..chunk).unwrap_or_default();
    let start = memchr::memrchr(b'\n', head).map_or(0, |i| i + 1);
    let before = chunk - start;
    let window = tail.get(..(MAX_LINE + 1).saturating_sub(before)).unwrap_or(tail);
    match memchr::memchr(b'\n', window) {
        Some(j) if before + j <= MAX_LINE => Ok(j + 1),
        None if before + window.len() <= MAX_LINE => Ok(tail.len()),
        found => {
            let newlines = memchr::memchr_iter(b'\n', head.get(..start).unwrap_or_default()).count() as u64;
            let length = before + found.unwrap_or(window.len());
            Err(too_long(newlines, length, found.is_some() || window.len() == tail.len()))
        }
    }
}

#[derive(Debug)]
pub(super) struct ReadSource<R> {
    pub(super) reader: R,
    /// The bytes read after the last line end of the previous piece.
    pub(super) carry: Vec<u8>,
    pub(super) done: bool,
    pub(super) chunk: usize,
    pub(super) size: usize,
    pub(super) spare: Vec<Vec<u8>>,
}

impl<R: Read> ReadSource<R> {
    pub(super) fn new(reader: R, size: usize, chunk: usize) -> Self {
        ReadSource { reader, carry: Vec::new(), done: false, chunk: chunk.clamp(1, MAX_LINE), size, spare: Vec::new() }
    }
}

impl<R: Read> Source for ReadSource<R> {
    type Chunk = Vec<u8>;

    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.append(&mut self.carry);
        // The carried bytes hold no line end.
        let mut searched = buf.len();
        loop {
            if !self.done {
                let want = self.chunk;
                buf.reserve(want);
                let got = (&mut self.reader).take(want as u64).read_to_end(&mut buf)?;
                self.done = got < want;
            }
            check_first_line(&buf, searched, self.done)?;
            if self.done {
                return Ok((!buf.is_empty()).then_some(buf));
            }
            let new = buf.get(searched..).unwrap_or_default();
            match new.iter().rposition(|&b| b == b'\n') {
                Some(i) => {
                    let end = searched + i + 1;
                    self.carry.extend_from_slice(buf.get(end..).unwrap_or_default());
                    buf.truncate(end);
                    return Ok(Some(buf));
                }
                // A line longer than a piece: read on.
                None => searched = buf.len(),
            }
        }
    }

    fn rest(&mut self, chunks: Vec<Vec<u8>>) -> io::Result<Vec<u8>> {
        let mut chunks = chunks.into_iter();
        let mut all = chunks.next().unwrap_or_default();
        for chunk in chunks {
            all.extend_from_slice(&chunk);
        }
        all.append(&mut self.carry);
        // Read in blocks of at most `MAX_LINE`, so that a line without an end stops the read
        // once it is too long.
        let mut run_from = memchr::memrchr(b'\n', &all).map_or(0, |i| i + 1);
        while !self.done {
            let read_from = all.len();
            let got = (&mut self.reader).take(MAX_LINE as u64).read_to_end(&mut all)?;
            self.done = got < MAX_LINE;
            if let Some(i) = memchr::memrchr(b'\n', all.get(read_from..).unwrap_or_default()) {
                run_from = read_from + i + 1;
            } else if all.len() - run_from > MAX_LINE {
                check_lines(&all, false)?;
            }
        }
        check_lines(&all, true)?;
        Ok(all)
    }

    fn recycle(&mut self, chunk: Vec<u8>) {
        if self.spare.len() < 8 {
            self.spare.push(chunk);
        }
    }

    fn size_hint(&self) -> usize {
        self.size
    }

    fn chunk_size(&self) -> usize {
        self.chunk
    }
}
