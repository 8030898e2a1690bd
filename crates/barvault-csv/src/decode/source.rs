//! Where the pieces of an input come from: a slice in memory, or a reader read a piece at
//! a time, each piece cut at a line end.

use std::io::{self, Read};

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
        let chunk = self.chunk.max(1);
        let len = match rest.get(chunk..) {
            Some(tail) => tail.iter().position(|&b| b == b'\n').map_or(rest.len(), |i| chunk + i + 1),
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
        Ok(self.input.get(start..).unwrap_or_default())
    }

    fn size_hint(&self) -> usize {
        self.input.len()
    }

    fn chunk_size(&self) -> usize {
        self.chunk
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
        ReadSource { reader, carry: Vec::new(), done: false, chunk: chunk.max(1), size, spare: Vec::new() }
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
        if !self.done {
            self.reader.read_to_end(&mut all)?;
            self.done = true;
        }
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
