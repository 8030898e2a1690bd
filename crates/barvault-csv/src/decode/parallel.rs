//! The pieces of an input decoded on worker threads, each straight into its own region of
//! the final columns (or into columns of its own), and taken back in file order.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, mpsc};

use barvault_domain::TimeRange;
use barvault_ports::CodecError;

use super::header::Layout;
use super::scan::{decode_piece, record_bound, shift_line};
use super::sink::{Columns, Free, Region};
use super::source::{Source, source_error};

/// Where a piece's rows go: a region of the final columns, or columns of its own.
#[derive(Debug)]
pub(super) enum Dest<'a> {
    Region(Region<'a>),
    Own(Columns),
}

/// Where a decoded piece's rows are: `rows` rows of the final columns from row `start`, or
/// columns of its own.
#[derive(Debug)]
pub(super) enum Part {
    Region { start: usize, rows: usize },
    Own(Columns),
}

/// A decoded piece: its sequence number, its bytes (for reuse), its rows and its line
/// ends, `None` when it holds a `"`.
pub(super) type Done<C> = (u64, C, Part, PieceResult);

/// What decoding a piece gives: its line ends, `None` when it holds a `"`.
pub(super) type PieceResult = Result<Option<u64>, CodecError>;

/// The parts of the pieces decoded, in order, and the pieces from the first one holding a
/// `"` on, undecoded.
pub(super) type Decoded<C> = (Vec<Part>, Option<Vec<C>>);

/// Decodes one piece on a worker thread into its destination.
pub(super) fn decode_into(layout: &Layout, range: TimeRange, text: &[u8], dest: Dest<'_>) -> (Part, PieceResult) {
    match dest {
        Dest::Region(mut region) => {
            let result = decode_piece(layout, range, text, &mut region);
            if !region.overflow {
                return (Part::Region { start: region.start, rows: region.len }, result);
            }
            // More rows than `record_bound` allows: not expected, but then the piece
            // decodes into columns of its own.
            let mut own = Columns::with_capacity(region.len, layout.extras.len());
            let result = decode_piece(layout, range, text, &mut own);
            (Part::Own(own), result)
        }
        Dest::Own(mut columns) => {
            columns.clear();
            let result = decode_piece(layout, range, text, &mut columns);
            (Part::Own(columns), result)
        }
    }
}

/// The rest of `src` decoded on `workers` threads while this one reads the pieces and
/// collects the decoded ones in order. Returns, undecoded and in order, the pieces from the
/// first one holding a `"` on.
///
/// With `total_rows` (an estimate of the rows of the whole input, 0 when there is none),
/// `out` becomes columns of that many rows (zeroed pages, which cost nothing until written),
/// and each piece is decoded straight into its own region of them, sized by
/// [`record_bound`]; once the pieces are decoded, the regions are moved together (nothing
/// moves when every record is a row) and `out` is cut to the rows decoded. A piece for which
/// no room is left, or with no estimate every piece, is decoded into columns of its own and
/// appended (after a region, at the end: those are the rows past the estimate, which has 5%
/// to spare, so holding them until then costs little).
pub(super) fn decode_parallel<S: Source>(
    src: &mut S,
    layout: &Layout,
    range: TimeRange,
    out: &mut Columns,
    total_rows: usize,
    lines_before: &mut u64,
    workers: usize,
) -> Result<Option<Vec<S::Chunk>>, CodecError> {
    let head = out.len();
    let regions = total_rows > head;
    if regions {
        *out = out.zero_extended(total_rows);
    }
    let (parts, quoted) = decode_pieces(src, layout, range, out, regions.then_some(head), lines_before, workers)?;
    if regions {
        join_parts(out, head, parts)?;
    }
    Ok(quoted)
}

/// Makes `out` the first `head` rows of `out` followed by the rows of `parts` in order, where
/// region parts are rows of `out` at or after the rows of the parts before them end. Regions
/// are moved down to close the gaps (moving nothing when every record was a row); from the
/// first part with columns of its own on, the rest is copied out and appended.
pub(super) fn join_parts(out: &mut Columns, head: usize, parts: Vec<Part>) -> Result<(), CodecError> {
    let mut rows = head;
    let mut after: Vec<Columns> = Vec::new();
    for part in parts {
        match part {
            Part::Region { start, rows: n } if after.is_empty() => {
                out.move_rows(start, n, rows)?;
                rows += n;
            }
            Part::Region { start, rows: n } => after.push(out.copy_rows(start, n)?),
            Part::Own(columns) => after.push(columns),
        }
    }
    out.truncate(rows);
    for mut columns in after {
        out.append(&mut columns);
    }
    Ok(())
}

/// The loop of [`decode_parallel`]: with `regions_from`, pieces are decoded into regions of
/// `out` from that row on and their parts returned in order; without, into columns of their
/// own that are appended to `out` in order, and no part is returned.
pub(super) fn decode_pieces<S: Source>(
    src: &mut S,
    layout: &Layout,
    range: TimeRange,
    out: &mut Columns,
    regions_from: Option<usize>,
    lines_before: &mut u64,
    workers: usize,
) -> Result<Decoded<S::Chunk>, CodecError> {
    std::thread::scope(|scope| {
        // Both channels live in this closure: however it returns, dropping the job sender
        // and the result receiver makes every worker stop, so the scope's join cannot hang.
        let (job_tx, job_rx) = mpsc::channel::<(u64, S::Chunk, Dest<'_>)>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<Done<S::Chunk>>();
        for _ in 0..workers {
            let (job_rx, done_tx) = (Arc::clone(&job_rx), done_tx.clone());
            scope.spawn(move || worker(layout, range, &job_rx, &done_tx));
        }
        drop(done_tx);
        // Either `out` is handed out in regions, or pieces are appended to it.
        let (free, append) = match regions_from {
            Some(from) => (Some(Free::new(out, from)), None),
            None => (None, Some(out)),
        };
        let mut run = Run {
            src,
            free,
            append,
            lines_before,
            max_in_flight: 2 * workers as u64,
            // Rows of a piece, generously (lines are rarely under 24 bytes): the columns of a
            // piece are sized once and reused, never regrown.
            piece_rows: 0,
            extras: layout.extras.len(),
            spare: Vec::new(),
            parts: Vec::new(),
            pending: BTreeMap::new(),
            sent: 0,
            next: 0,
            end_of_input: false,
            read_error: None,
        };
        run.piece_rows = run.src.chunk_size() / 24 + 64;
        let quoted = run.decode(&job_tx, &done_rx)?;
        drop(job_tx);
        run.finish(quoted, &done_rx)
    })
}

/// A worker thread: decodes the pieces it is sent until the sender or the receiver is gone.
fn worker<C: AsRef<[u8]>>(
    layout: &Layout,
    range: TimeRange,
    jobs: &Mutex<mpsc::Receiver<(u64, C, Dest<'_>)>>,
    done: &mpsc::Sender<Done<C>>,
) {
    loop {
        // The lock is held only while waiting for the next piece.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => break,
        };
        let Ok((seq, chunk, dest)) = job else { break };
        let (part, result) = decode_into(layout, range, chunk.as_ref(), dest);
        if done.send((seq, chunk, part, result)).is_err() {
            break;
        }
    }
}

fn stopped() -> CodecError {
    CodecError::Io(io::Error::other("CSV decoding thread stopped"))
}

/// The state of one parallel decode on the reading thread.
struct Run<'s, 'o, S: Source> {
    src: &'s mut S,
    free: Option<Free<'o>>,
    append: Option<&'o mut Columns>,
    lines_before: &'s mut u64,
    max_in_flight: u64,
    piece_rows: usize,
    extras: usize,
    spare: Vec<Columns>,
    parts: Vec<Part>,
    pending: BTreeMap<u64, (S::Chunk, Part, PieceResult)>,
    /// Pieces sent, and the next one to take in order.
    sent: u64,
    next: u64,
    end_of_input: bool,
    read_error: Option<io::Error>,
}

impl<'s, 'o, S: Source> Run<'s, 'o, S> {
    /// Keeps `max_in_flight` pieces with the workers and takes the decoded ones in order;
    /// returns the first piece holding a `"`, undecoded, with its sequence number.
    fn decode(
        &mut self,
        jobs: &mpsc::Sender<(u64, S::Chunk, Dest<'o>)>,
        done: &mpsc::Receiver<Done<S::Chunk>>,
    ) -> Result<Option<(u64, S::Chunk)>, CodecError> {
        loop {
            self.send_more(jobs)?;
            if self.next == self.sent {
                return Ok(None);
            }
            let (seq, chunk, part, result) = done.recv().map_err(|_| stopped())?;
            self.pending.insert(seq, (chunk, part, result));
            if let Some(quoted) = self.take_in_order()? {
                return Ok(Some(quoted));
            }
        }
    }

    /// Reads and sends pieces until `max_in_flight` are with the workers or the input ends.
    fn send_more(&mut self, jobs: &mpsc::Sender<(u64, S::Chunk, Dest<'o>)>) -> Result<(), CodecError> {
        while !self.end_of_input && self.sent - self.next < self.max_in_flight {
            match self.src.next_chunk() {
                Ok(Some(chunk)) => {
                    let region = self.free.as_mut().and_then(|f| f.take(record_bound(chunk.as_ref())));
                    let dest = match region {
                        Some(region) => Dest::Region(region),
                        None => Dest::Own(
                            self.spare.pop().unwrap_or_else(|| Columns::with_capacity(self.piece_rows, self.extras)),
                        ),
                    };
                    jobs.send((self.sent, chunk, dest)).map_err(|_| stopped())?;
                    self.sent += 1;
                }
                Ok(None) => self.end_of_input = true,
                Err(e) => {
                    self.read_error = Some(e);
                    self.end_of_input = true;
                }
            }
        }
        Ok(())
    }

    /// Takes the decoded pieces that are next in file order: the first error stops the
    /// decode, a piece holding a `"` is returned undecoded.
    fn take_in_order(&mut self) -> Result<Option<(u64, S::Chunk)>, CodecError> {
        while let Some((chunk, part, result)) = self.pending.remove(&self.next) {
            let Some(newlines) = result.map_err(|e| shift_line(e, *self.lines_before))? else {
                return Ok(Some((self.next, chunk)));
            };
            match (&mut self.append, part) {
                (Some(out), Part::Own(mut columns)) => {
                    out.append(&mut columns);
                    self.spare.push(columns);
                }
                (_, part) => self.parts.push(part),
            }
            *self.lines_before += newlines;
            self.src.recycle(chunk);
            self.next += 1;
        }
        Ok(None)
    }

    /// The parts decoded, and, after a quoted piece, it and everything read after it in
    /// order (it all goes to csv's reader).
    fn finish(
        mut self,
        quoted: Option<(u64, S::Chunk)>,
        done: &mpsc::Receiver<Done<S::Chunk>>,
    ) -> Result<Decoded<S::Chunk>, CodecError> {
        let Some((first, chunk)) = quoted else {
            return match self.read_error {
                Some(e) => Err(source_error(e, *self.lines_before)),
                None => Ok((self.parts, None)),
            };
        };
        while (self.pending.len() as u64) < self.sent - first - 1 {
            let (seq, chunk, part, result) = done.recv().map_err(|_| stopped())?;
            self.pending.insert(seq, (chunk, part, result));
        }
        let mut chunks = vec![chunk];
        chunks.extend(std::mem::take(&mut self.pending).into_values().map(|(chunk, _, _)| chunk));
        if let Some(e) = self.read_error {
            // The read failed after these pieces, whose lines are not counted yet.
            let undecoded: usize = chunks.iter().map(|c| memchr::memchr_iter(b'\n', c.as_ref()).count()).sum();
            return Err(source_error(e, *self.lines_before + undecoded as u64));
        }
        Ok((self.parts, Some(chunks)))
    }
}
