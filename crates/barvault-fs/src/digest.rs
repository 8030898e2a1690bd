//! MD5 whose state can be written down and resumed — a checkpoint — and the fingerprint
//! recorded with it.
//!
//! A nightly update rewrites a file that differs from its previous version only in its
//! last rows, yet its MD5 covers every byte. With the state after a leading part of the
//! old file on record, the new file's MD5 resumes from there: only the bytes after it are
//! hashed. `md-5` keeps its hasher's state private, so this is a thin streaming layer over
//! its block function, with the state exposed at block boundaries.

use barvault_ports::{BadBlock, ByteSpan, Fingerprint, Md5Checkpoint};

/// MD5 processes the input in blocks of this many bytes; states are only resumable at
/// multiples of it.
pub(crate) const BLOCK: u64 = 64;

const INIT: [u32; 4] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476];

/// Offsets at which a writer notes the MD5 state, before [`thin_checkpoints`] thins them out.
pub(crate) const WRITE_CHECKPOINT_STEP: u64 = 4096;

/// The MD5 state after the first `offset` bytes of some input (`offset % BLOCK == 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) offset: u64,
    pub(crate) state: [u32; 4],
}

impl Checkpoint {
    pub(crate) const START: Checkpoint = Checkpoint { offset: 0, state: INIT };

    /// The recorded form: the four words little-endian, as hex.
    pub(crate) fn to_recorded(self) -> Md5Checkpoint {
        Md5Checkpoint { offset: self.offset, state: hex(self.state.iter().flat_map(|w| w.to_le_bytes())) }
    }

    /// Reads a recorded state; `None` if it is malformed (then nothing resumes from it).
    pub(crate) fn from_recorded(r: &Md5Checkpoint) -> Option<Checkpoint> {
        if !r.offset.is_multiple_of(BLOCK) || r.state.len() != 32 || !r.state.is_ascii() {
            return None;
        }
        let mut state = [0u32; 4];
        for (i, word) in state.iter_mut().enumerate() {
            let mut bytes = [0u8; 4];
            for (j, b) in bytes.iter_mut().enumerate() {
                let at = 8 * i + 2 * j;
                *b = u8::from_str_radix(&r.state[at..at + 2], 16).ok()?;
            }
            *word = u32::from_le_bytes(bytes);
        }
        Some(Checkpoint { offset: r.offset, state })
    }
}

/// Lower-case hex of `bytes`.
fn hex(bytes: impl IntoIterator<Item = u8>) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes.into_iter().flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]]).map(char::from).collect()
}

/// Streaming MD5 that can start from a [`Checkpoint`] and report one at block boundaries.
#[derive(Debug, Clone)]
pub(crate) struct Md5Stream {
    state: [u32; 4],
    /// Bytes hashed so far, counted from the start of the input (not of this stream).
    offset: u64,
    buf: [u8; 64],
    pending: usize,
}

impl Default for Md5Stream {
    fn default() -> Self {
        Self::resume(Checkpoint::START)
    }
}

impl Md5Stream {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The stream that has hashed the first `checkpoint.offset` bytes of an input.
    pub(crate) fn resume(checkpoint: Checkpoint) -> Self {
        Md5Stream { state: checkpoint.state, offset: checkpoint.offset, buf: [0; 64], pending: 0 }
    }

    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The state now, if the bytes hashed so far end on a block boundary.
    pub(crate) fn checkpoint(&self) -> Option<Checkpoint> {
        (self.pending == 0).then_some(Checkpoint { offset: self.offset, state: self.state })
    }

    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.offset += data.len() as u64;
        if self.pending > 0 {
            let take = (64 - self.pending).min(data.len());
            self.buf[self.pending..self.pending + take].copy_from_slice(&data[..take]);
            self.pending += take;
            data = &data[take..];
            if self.pending < 64 {
                return;
            }
            md5::block_api::compress(&mut self.state, std::slice::from_ref(&self.buf));
            self.pending = 0;
        }
        let (blocks, rest) = data.as_chunks::<64>();
        md5::block_api::compress(&mut self.state, blocks);
        self.buf[..rest.len()].copy_from_slice(rest);
        self.pending = rest.len();
    }

    /// [`Md5Stream::update`], pushing a checkpoint at every multiple of `step` (itself a
    /// multiple of [`BLOCK`]) the bytes reach.
    pub(crate) fn update_checkpointing_every(&mut self, data: &[u8], step: u64, checkpoints: &mut Vec<Checkpoint>) {
        debug_assert!(step > 0 && step.is_multiple_of(BLOCK));
        self.update_stopping(data, |o| Some((o / step + 1) * step), checkpoints);
    }

    /// [`Md5Stream::update`], pushing a checkpoint at each of `at` (ascending offsets, each a
    /// multiple of [`BLOCK`]) the bytes reach; offsets already behind are skipped.
    pub(crate) fn update_checkpointing_at(&mut self, data: &[u8], at: &[u64], checkpoints: &mut Vec<Checkpoint>) {
        self.update_stopping(data, |o| at.get(at.partition_point(|&a| a <= o)).copied(), checkpoints);
    }

    /// Hashes `data`, stopping at each offset `next_stop` names (the first one after the
    /// offset it is given) to push the state there.
    fn update_stopping(
        &mut self,
        mut data: &[u8],
        next_stop: impl Fn(u64) -> Option<u64>,
        checkpoints: &mut Vec<Checkpoint>,
    ) {
        while !data.is_empty() {
            let stop = next_stop(self.offset);
            let take =
                stop.map_or(data.len(), |s| usize::try_from(s - self.offset).unwrap_or(usize::MAX).min(data.len()));
            self.update(&data[..take]);
            data = &data[take..];
            if stop == Some(self.offset)
                && let Some(p) = self.checkpoint()
            {
                checkpoints.push(p);
            }
        }
    }

    /// The digest, lower-case hex.
    pub(crate) fn finish_hex(self) -> String {
        hex(self.finish())
    }

    pub(crate) fn finish(mut self) -> [u8; 16] {
        let bits = self.offset.wrapping_mul(8);
        let mut last = self.buf;
        last[self.pending] = 0x80;
        last[self.pending + 1..].fill(0);
        if self.pending >= 56 {
            md5::block_api::compress(&mut self.state, std::slice::from_ref(&last));
            last = [0; 64];
        }
        last[56..].copy_from_slice(&bits.to_le_bytes());
        md5::block_api::compress(&mut self.state, std::slice::from_ref(&last));
        let mut out = [0u8; 16];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out
    }
}

/// MD5 and CRC-32 of the bytes written, with the checkpoints to record for a next version.
#[derive(Debug, Clone)]
pub(crate) struct FileHashes {
    pub(crate) md5: Md5Stream,
    pub(crate) crc: crc32fast::Hasher,
    /// Checkpoints so far, ascending (may start with checkpoints carried over from the
    /// previous version of the file, for the bytes both share).
    pub(crate) checkpoints: Vec<Checkpoint>,
}

impl FileHashes {
    pub(crate) fn new() -> Self {
        FileHashes { md5: Md5Stream::new(), crc: crc32fast::Hasher::new(), checkpoints: Vec::new() }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.md5.update_checkpointing_every(bytes, WRITE_CHECKPOINT_STEP, &mut self.checkpoints);
        self.crc.update(bytes);
    }

    /// The MD5 (hex) and the fingerprint to record with it.
    pub(crate) fn finish(self) -> (String, Fingerprint) {
        let len = self.md5.offset();
        let checkpoints = thin_checkpoints(&self.checkpoints, len).into_iter().map(Checkpoint::to_recorded).collect();
        (self.md5.finish_hex(), Fingerprint::new(self.crc.finalize(), checkpoints))
    }
}

/// The MD5 (lower-case hex) of `bytes` and the fingerprint a file store records for a file
/// of exactly these bytes: the same a durable write of them returns, so a store that keeps
/// bytes elsewhere (object storage) records what a file store would.
pub fn fingerprint_bytes(bytes: &[u8]) -> (String, Fingerprint) {
    let mut hashes = FileHashes::new();
    hashes.update(bytes);
    hashes.finish()
}

/// The MD5 (lower-case hex) of `bytes` and whether `fingerprint` (CRC-32 and MD5
/// checkpoints) describes them.
pub fn audit_bytes(bytes: &[u8], fingerprint: &Fingerprint) -> (String, bool) {
    let mut check = FingerprintCheck::new(fingerprint);
    check.update(bytes);
    check.finish()
}

/// Streams a file's bytes and tells whether a recorded fingerprint describes them: the
/// same CRC-32 and, at every recorded offset, the same MD5 state. Also yields the MD5.
#[derive(Debug)]
pub(crate) struct FingerprintCheck<'a> {
    fingerprint: &'a Fingerprint,
    offsets: Vec<u64>,
    md5: Md5Stream,
    crc: crc32fast::Hasher,
    checkpoints: Vec<Checkpoint>,
    blocks: BlockCheck,
}

/// The CRC-32 of each recorded block (footer and row groups), computed as the bytes pass.
#[derive(Debug, Default)]
pub(crate) struct BlockCheck {
    /// (group or `None` for the footer, span, CRC of its bytes seen so far, bytes seen),
    /// ascending by offset.
    spans: Vec<(Option<usize>, ByteSpan, crc32fast::Hasher, u64)>,
    offset: u64,
}

impl BlockCheck {
    pub(crate) fn new(fingerprint: &Fingerprint) -> Self {
        let Some(blocks) = &fingerprint.blocks else { return Self::default() };
        let mut spans: Vec<_> = blocks
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (Some(i), g.span()))
            .chain(std::iter::once((None, blocks.footer)))
            .map(|(g, span)| (g, span, crc32fast::Hasher::new(), 0))
            .collect();
        spans.sort_by_key(|(_, span, _, _)| span.offset);
        BlockCheck { spans, offset: 0 }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        let (from, to) = (self.offset, self.offset + bytes.len() as u64);
        for (_, span, crc, seen) in &mut self.spans {
            let (a, b) = (span.offset.max(from), span.end().min(to));
            if a < b {
                crc.update(&bytes[(a - from) as usize..(b - from) as usize]);
                *seen += b - a;
            }
        }
        self.offset = to;
    }

    /// The blocks whose bytes do not have their recorded CRC-32 (or that the bytes ended before).
    pub(crate) fn finish(self) -> Vec<BadBlock> {
        let mut bad: Vec<BadBlock> = self
            .spans
            .into_iter()
            .filter_map(|(group, span, crc, seen)| {
                let found = (seen == span.len).then(|| crc.finalize());
                (found != Some(span.crc32)).then_some(BadBlock {
                    group,
                    offset: span.offset,
                    len: span.len,
                    found,
                    recorded: span.crc32,
                })
            })
            .collect();
        bad.sort_by_key(|b| (b.group.is_none(), b.group));
        bad
    }
}

impl<'a> FingerprintCheck<'a> {
    pub(crate) fn new(fingerprint: &'a Fingerprint) -> Self {
        let mut offsets: Vec<u64> = fingerprint.checkpoints.iter().map(|s| s.offset).collect();
        offsets.sort_unstable();
        FingerprintCheck {
            fingerprint,
            offsets,
            md5: Md5Stream::new(),
            crc: crc32fast::Hasher::new(),
            checkpoints: Vec::new(),
            blocks: BlockCheck::new(fingerprint),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.md5.update_checkpointing_at(bytes, &self.offsets, &mut self.checkpoints);
        self.crc.update(bytes);
        self.blocks.update(bytes);
    }

    /// The MD5 (hex) of the bytes, and whether the fingerprint describes them.
    pub(crate) fn finish(self) -> (String, bool) {
        let (md5, agrees, _) = self.finish_with_blocks();
        (md5, agrees)
    }

    /// [`Self::finish`], and the recorded blocks whose bytes do not have their CRC-32 (a
    /// bad block also makes the fingerprint disagree).
    pub(crate) fn finish_with_blocks(self) -> (String, bool, Vec<BadBlock>) {
        let bad = self.blocks.finish();
        let agrees = bad.is_empty()
            && self.crc.finalize() == self.fingerprint.crc32
            && self.fingerprint.checkpoints.iter().all(|recorded| {
                Checkpoint::from_recorded(recorded).is_some_and(|want| self.checkpoints.contains(&want))
            });
        (self.md5.finish_hex(), agrees, bad)
    }
}

/// The checkpoints worth recording of a `len`-byte file: for each distance 4 KiB, 8 KiB,
/// 16 KiB, … from its end, the last checkpoint at least that far from it. A next version that
/// first differs `d` bytes before the end then hashes at most about `2d + 4 KiB` of the
/// bytes it keeps, and a record holds about `log2(len / 4 KiB)` checkpoints.
pub(crate) fn thin_checkpoints(checkpoints: &[Checkpoint], len: u64) -> Vec<Checkpoint> {
    let mut kept: Vec<Checkpoint> = Vec::new();
    let mut distance = WRITE_CHECKPOINT_STEP;
    while distance < len {
        let limit = len - distance;
        let i = checkpoints.partition_point(|p| p.offset <= limit);
        if let Some(p) = i.checked_sub(1).and_then(|i| checkpoints.get(i))
            && p.offset > 0
            && kept.last().is_none_or(|k| k.offset != p.offset)
        {
            kept.push(*p);
        }
        distance = distance.saturating_mul(2);
    }
    kept.reverse();
    kept
}

#[cfg(test)]
mod tests {
    use md5::{Digest, Md5};

    use super::*;

    fn reference(bytes: &[u8]) -> [u8; 16] {
        Md5::digest(bytes).into()
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
    }

    #[test]
    fn digests_equal_md5_for_every_length_around_the_padding_edges() {
        for len in (0..300).chain([4095, 4096, 4097, 100_000]) {
            let bytes = sample(len);
            let mut s = Md5Stream::new();
            s.update(&bytes);
            assert_eq!(s.finish(), reference(&bytes), "len {len}");
        }
    }

    #[test]
    fn split_updates_and_resumed_points_give_the_same_digest() {
        let bytes = sample(20_000);
        for cut in [0usize, 1, 63, 64, 65, 4096, 19_999] {
            let mut s = Md5Stream::new();
            s.update(&bytes[..cut]);
            s.update(&bytes[cut..]);
            assert_eq!(s.finish(), reference(&bytes), "cut {cut}");
        }
        let mut checkpoints = Vec::new();
        let mut s = Md5Stream::new();
        for piece in bytes.chunks(777) {
            s.update_checkpointing_every(piece, WRITE_CHECKPOINT_STEP, &mut checkpoints);
        }
        assert_eq!(checkpoints.iter().map(|p| p.offset).collect::<Vec<_>>(), vec![4096, 8192, 12288, 16384]);
        for p in checkpoints {
            let back = Checkpoint::from_recorded(&p.to_recorded()).expect("round trip");
            assert_eq!(back, p);
            let mut r = Md5Stream::resume(back);
            r.update(&bytes[p.offset as usize..]);
            assert_eq!(r.finish(), reference(&bytes), "resumed at {}", p.offset);
        }
    }

    #[test]
    fn a_fingerprint_check_accepts_exactly_the_recorded_bytes() {
        let bytes = sample(50_000);
        let mut hashes = FileHashes::new();
        for piece in bytes.chunks(1000) {
            hashes.update(piece);
        }
        let (md5, fp) = hashes.finish();
        assert!(fp.checkpoints.len() >= 3, "{fp:?}");
        let check = |fp: &Fingerprint, bytes: &[u8]| {
            let mut c = FingerprintCheck::new(fp);
            for piece in bytes.chunks(777) {
                c.update(piece);
            }
            c.finish()
        };
        assert_eq!(check(&fp, &bytes), (md5.clone(), true));
        let mut damaged = bytes.clone();
        damaged[100] ^= 1;
        assert!(!check(&fp, &damaged).1, "another byte");
        let mut wrong_state = fp.clone();
        wrong_state.checkpoints[1].state = "00".repeat(16);
        assert_eq!(check(&wrong_state, &bytes), (md5.clone(), false), "a wrong state");
        let mut past_end = fp.clone();
        past_end.checkpoints.push(Md5Checkpoint { offset: 1 << 20, state: "00".repeat(16) });
        assert!(!check(&past_end, &bytes).1, "a state past the end");
        let wrong_crc = Fingerprint { crc32: fp.crc32 ^ 4, ..fp };
        assert!(!check(&wrong_crc, &bytes).1, "a wrong CRC");
    }

    #[test]
    fn malformed_records_are_refused() {
        let good = Checkpoint { offset: 128, state: [1, 2, 3, 4] }.to_recorded();
        assert!(Checkpoint::from_recorded(&good).is_some());
        for bad in [
            Md5Checkpoint { offset: 100, ..good.clone() },
            Md5Checkpoint { state: "zz".repeat(16), ..good.clone() },
            Md5Checkpoint { state: "00".repeat(15), ..good.clone() },
            Md5Checkpoint { state: "é".repeat(16), ..good.clone() },
        ] {
            assert_eq!(Checkpoint::from_recorded(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn kept_points_thin_out_geometrically_from_the_end() {
        let checkpoints: Vec<Checkpoint> =
            (1..=100u64).map(|i| Checkpoint { offset: i * WRITE_CHECKPOINT_STEP, state: [i as u32; 4] }).collect();
        let len = 100 * WRITE_CHECKPOINT_STEP + 10;
        let kept: Vec<u64> =
            thin_checkpoints(&checkpoints, len).iter().map(|p| p.offset / WRITE_CHECKPOINT_STEP).collect();
        // len − 4 KiB … len − 256 KiB, each rounded down to a noted state.
        assert_eq!(kept, vec![36, 68, 84, 92, 96, 98, 99]);
        assert!(thin_checkpoints(&checkpoints, 100).is_empty());
        assert!(thin_checkpoints(&[], len).is_empty());
    }
}
