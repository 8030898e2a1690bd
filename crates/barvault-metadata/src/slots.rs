//! The two-slot record file: why a record can be overwritten in place without a temp file,
//! a rename or a directory fsync, and still never be lost or read half-written.
//!
//! A record file holds two slots of equal size (a multiple of 4 KiB). Each slot is a
//! header with a sequence number, the payload length and an MD5 over header and payload,
//! then the payload, then zero bytes up to the slot's end. A write goes to the slot that
//! does *not* hold the newest valid record, with a sequence number one higher, and is made
//! durable with `fdatasync`. A write torn by a crash can only damage the slot it was
//! writing — whose checksum then fails — so the reader falls back to the other slot, which
//! holds the previous record: exactly what a reader of a temp-and-rename write would have
//! seen had the rename not happened.

/// Smallest slot, and the unit slots grow by: one page, so the two slots never share a
/// filesystem block and a torn write of one cannot reach the other.
pub const SLOT_UNIT: usize = 4096;

/// Largest slot a reader accepts (a record is ~600 bytes; this bounds what a damaged file
/// can make a reader allocate).
pub const MAX_SLOT: usize = 1 << 20;

const MAGIC: &[u8; 8] = b"BVMETA1 ";
/// `BVMETA1 {seq:020} {len:010} {md5:32}\n`
pub const HEADER_LEN: usize = 8 + 20 + 1 + 10 + 1 + 32 + 1;
/// Header bytes covered by the checksum: everything before the MD5 field.
const SIGNED_LEN: usize = 8 + 20 + 1 + 10 + 1;

/// The slot size that holds a payload of `len` bytes.
pub fn slot_size_for(len: usize) -> usize {
    (HEADER_LEN + len).div_ceil(SLOT_UNIT).max(1) * SLOT_UNIT
}

/// One slot's bytes: header, payload, zero padding to `slot_size`.
///
/// `slot_size` must be at least [`slot_size_for`]`(payload.len())`.
pub fn encode(seq: u64, payload: &[u8], slot_size: usize) -> Vec<u8> {
    debug_assert!(slot_size >= slot_size_for(payload.len()));
    let mut out = Vec::with_capacity(slot_size);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(format!("{seq:020} {:010} ", payload.len()).as_bytes());
    let digest = signature(&out[..SIGNED_LEN], payload);
    out.extend_from_slice(digest.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload);
    out.resize(slot_size, 0);
    out
}

fn signature(signed_header: &[u8], payload: &[u8]) -> String {
    barvault_fs::md5_hex(&[signed_header, payload].concat())
}

/// What one slot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot<'a> {
    /// Never written (all zero).
    Empty,
    /// A complete record.
    Valid { seq: u64, payload: &'a [u8] },
    /// Anything else: a torn or damaged write; the reason says what failed.
    Invalid(String),
}

/// Reads one slot.
pub fn parse(slot: &[u8]) -> Slot<'_> {
    if slot.iter().all(|&b| b == 0) {
        return Slot::Empty;
    }
    if slot.len() < HEADER_LEN || &slot[..MAGIC.len()] != MAGIC {
        return Slot::Invalid("no slot header".into());
    }
    let field = |from: usize, len: usize| std::str::from_utf8(&slot[from..from + len]).ok();
    let number = |from: usize, len: usize| {
        field(from, len).filter(|s| s.bytes().all(|b| b.is_ascii_digit())).and_then(|s| s.parse::<u64>().ok())
    };
    let (Some(seq), Some(len)) = (number(8, 20), number(29, 10)) else {
        return Slot::Invalid("unreadable slot header".into());
    };
    if slot[28] != b' ' || slot[39] != b' ' || slot[HEADER_LEN - 1] != b'\n' {
        return Slot::Invalid("unreadable slot header".into());
    }
    let Some(end) = usize::try_from(len).ok().and_then(|l| HEADER_LEN.checked_add(l)).filter(|&e| e <= slot.len())
    else {
        return Slot::Invalid(format!("payload length {len} exceeds the slot"));
    };
    let payload = &slot[HEADER_LEN..end];
    let stored = field(SIGNED_LEN, 32).unwrap_or("");
    if signature(&slot[..SIGNED_LEN], payload) != stored {
        return Slot::Invalid(format!("slot {seq} fails its checksum (torn or damaged write)"));
    }
    if slot[end..].iter().any(|&b| b != 0) {
        return Slot::Invalid(format!("slot {seq} has bytes after its payload"));
    }
    Slot::Valid { seq, payload }
}

/// The two slots of a record file, and which one holds the newest valid record.
#[derive(Debug)]
pub struct Slots<'a> {
    pub slot_size: usize,
    pub slots: [Slot<'a>; 2],
}

impl<'a> Slots<'a> {
    /// Splits a whole record file; `Err` names what is wrong with its length.
    pub fn split(file: &'a [u8]) -> Result<Self, String> {
        let len = file.len();
        if len == 0 || !len.is_multiple_of(2 * SLOT_UNIT) || len / 2 > MAX_SLOT {
            return Err(format!("record file is {len} bytes, not two slots of a multiple of {SLOT_UNIT} bytes"));
        }
        let (a, b) = file.split_at(len / 2);
        Ok(Self { slot_size: len / 2, slots: [parse(a), parse(b)] })
    }

    /// Index, sequence number and payload of the newest valid slot.
    pub fn newest(&self) -> Option<(usize, u64, &'a [u8])> {
        let valid = |i: usize| match self.slots[i] {
            Slot::Valid { seq, payload } => Some((i, seq, payload)),
            _ => None,
        };
        match (valid(0), valid(1)) {
            (Some(a), Some(b)) => Some(if b.1 > a.1 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// Why no slot is valid.
    pub fn reasons(&self) -> String {
        let say = |s: &Slot<'_>| match s {
            Slot::Empty => "empty".to_string(),
            Slot::Valid { seq, .. } => format!("valid ({seq})"),
            Slot::Invalid(r) => r.clone(),
        };
        format!("no valid slot: first {}; second {}", say(&self.slots[0]), say(&self.slots[1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(a: &[u8], b: &[u8]) -> Vec<u8> {
        [a, b].concat()
    }

    #[test]
    fn the_newest_valid_slot_wins_and_an_empty_one_is_not_an_error() {
        let n = SLOT_UNIT;
        let one = encode(1, b"{\"a\":1}\n", n);
        let two = encode(2, b"{\"a\":2}\n", n);
        let empty = vec![0u8; n];
        assert_eq!(Slots::split(&file(&one, &empty)).unwrap().newest(), Some((0, 1, &b"{\"a\":1}\n"[..])));
        assert_eq!(Slots::split(&file(&one, &two)).unwrap().newest(), Some((1, 2, &b"{\"a\":2}\n"[..])));
        assert_eq!(Slots::split(&file(&two, &one)).unwrap().newest(), Some((0, 2, &b"{\"a\":2}\n"[..])));
        let both_empty = file(&empty, &empty);
        let none = Slots::split(&both_empty).unwrap();
        assert_eq!(none.newest(), None);
        assert!(none.reasons().contains("empty"), "{}", none.reasons());
    }

    /// Every way a write of slot 1 (seq 3 over seq 1) can be torn — any prefix of the new
    /// bytes over the old ones, at any byte — leaves either the old or the new record as
    /// the newest, never anything else; slot 0 (seq 2) is never affected.
    #[test]
    fn a_torn_write_never_yields_a_record_that_was_not_written() {
        let n = SLOT_UNIT;
        let other = encode(2, b"{\"record\":\"two\"}\n", n);
        let old = encode(1, b"{\"record\":\"one, a bit longer than the others\"}\n", n);
        let new = encode(3, b"{\"record\":\"three\"}\n", n);
        for cut in 0..=n {
            let mut slot = old.clone();
            slot[..cut].copy_from_slice(&new[..cut]);
            let bytes = file(&other, &slot);
            let slots = Slots::split(&bytes).unwrap();
            let (_, seq, payload) = slots.newest().unwrap();
            match seq {
                2 => assert_eq!(payload, b"{\"record\":\"two\"}\n", "cut {cut}"),
                3 => assert_eq!(payload, b"{\"record\":\"three\"}\n", "cut {cut}"),
                other => panic!("cut {cut}: newest is {other}"),
            }
            // Before the header and payload are whole the new slot is not valid.
            if cut < HEADER_LEN + 19 {
                assert_eq!(seq, 2, "cut {cut}");
            }
        }
        // Torn the other way round (the tail written first, as a disk may reorder sectors).
        for cut in (0..n).step_by(97) {
            let mut slot = old.clone();
            slot[cut..].copy_from_slice(&new[cut..]);
            let bytes = file(&other, &slot);
            let seq = Slots::split(&bytes).unwrap().newest().unwrap().1;
            assert!(seq == 2 || (seq == 3 && cut == 0), "cut {cut}: {seq}");
        }
    }

    #[test]
    fn damaged_headers_lengths_and_padding_are_invalid() {
        let n = SLOT_UNIT;
        let good = encode(7, b"payload", n);
        assert!(matches!(parse(&good), Slot::Valid { seq: 7, payload } if payload == b"payload"));
        let mut flip = good.clone();
        flip[HEADER_LEN + 2] ^= 1;
        assert!(matches!(parse(&flip), Slot::Invalid(r) if r.contains("checksum")));
        let mut seq = good.clone();
        seq[27] = b'8';
        assert!(matches!(parse(&seq), Slot::Invalid(r) if r.contains("checksum")));
        let mut len = good.clone();
        len[29..39].copy_from_slice(b"9999999999");
        assert!(matches!(parse(&len), Slot::Invalid(r) if r.contains("exceeds")));
        let mut pad = good.clone();
        pad[n - 1] = b'x';
        assert!(matches!(parse(&pad), Slot::Invalid(r) if r.contains("after its payload")));
        let mut magic = good;
        magic[0] = b'{';
        assert!(matches!(parse(&magic), Slot::Invalid(r) if r.contains("header")));
        for bad_len in [0, 100, n, 3 * n] {
            assert!(Slots::split(&vec![0; bad_len]).is_err(), "{bad_len}");
        }
    }

    #[test]
    fn slots_grow_in_pages_to_fit_the_payload() {
        assert_eq!(slot_size_for(0), SLOT_UNIT);
        assert_eq!(slot_size_for(SLOT_UNIT - HEADER_LEN), SLOT_UNIT);
        assert_eq!(slot_size_for(SLOT_UNIT - HEADER_LEN + 1), 2 * SLOT_UNIT);
        let big = vec![b'x'; 5000];
        let size = slot_size_for(big.len());
        let bytes = file(&encode(1, &big, size), &vec![0; size]);
        assert_eq!(Slots::split(&bytes).unwrap().newest().unwrap().2, &big[..]);
    }
}
