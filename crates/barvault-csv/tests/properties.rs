//! Property tests: exact round trips for any bars, and no panic for any bytes.

use barvault_csv::{CsvCodec, encode_to_vec, format_timestamp_csv, parse_f64, parse_timestamp, write_f64};
use barvault_domain::{Bars, ExtraColumn, MergePolicy};
use barvault_ports::{BarCodec, CodecInput};
use proptest::prelude::*;

/// Any finite f64, from its bits, so subnormals, -0.0 and extreme exponents all occur.
fn finite() -> impl Strategy<Value = f64> {
    any::<u64>().prop_map(f64::from_bits).prop_filter("finite", |v| v.is_finite())
}

/// Finite values, infinities, NaN and the small integers volumes and prices often are.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => finite(),
        2 => (-1_000_000i64..1_000_000).prop_map(|i| i as f64 / 4.0),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(f64::NAN),
        1 => Just(-0.0),
    ]
}

fn bars() -> impl Strategy<Value = Bars> {
    let extra_names = proptest::sample::subsequence(vec!["adj_close", "open_interest", "z9_x"], 0..=3);
    (proptest::collection::btree_set(any::<i64>(), 0..40), extra_names).prop_flat_map(|(ts, names)| {
        let ts: Vec<i64> = ts.into_iter().collect();
        let n = ts.len();
        let col = move || proptest::collection::vec(value(), n);
        let extras = names
            .into_iter()
            .map(move |name| {
                proptest::collection::vec(proptest::option::of(value()), n)
                    .prop_map(move |v| ExtraColumn::new(name, v).unwrap())
            })
            .collect::<Vec<_>>();
        (Just(ts), col(), col(), col(), col(), col(), extras)
            .prop_map(|(ts, o, h, l, c, v, extras)| Bars::new(ts, o, h, l, c, v, extras).unwrap())
    })
}

fn decode(bytes: &[u8]) -> Bars {
    let raw = CsvCodec.decode(CodecInput::Bytes(bytes), barvault_ports::Rows::All).map(|d| d.raw).unwrap();
    raw.into_bars(MergePolicy::ErrorOnConflict).unwrap().0
}

/// A valid file in a user dialect (split date/time rows, CRLF, extras, missing cells) to mutate.
const SEED_FILE: &[u8] = b"Date,Open,High,Low,Close,Volume,OpenInterest\r\n\
2006-01-02,09:01:00,3602.00,3603.00,3597.00,3599.00,5699,0\r\n\
2006-01-02,09:02:00,3600.00,3601.00,3598.00,3599.00,894,\r\n\
2006-01-03,09:03:00.5,1e300,-0,8.71e-6,NaN,883,\"7\"\r\n";

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop_oneof![
        Just(b','),
        Just(b'\n'),
        Just(b'\r'),
        Just(b'"'),
        Just(b'-'),
        Just(b':'),
        Just(b'.'),
        Just(b'9'),
        Just(b'T'),
        Just(b'+'),
        Just(0xff),
        any::<u8>()
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<usize>(), byte).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Replace(i, b) => {
                if let Some(slot) = bytes.get_mut(i % len) {
                    *slot = b;
                }
            }
            Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Mutation::Delete(i) => {
                if !bytes.is_empty() {
                    bytes.remove(i % len);
                }
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn encode_decode_round_trips_exactly(bars in bars()) {
        let encoded = encode_to_vec(&bars);
        let back = decode(&encoded);
        prop_assert_eq!(encode_to_vec(&back), encoded.clone(), "encode(decode(encode(x))) == encode(x)");
        // One timestamp shape per file (pandas infers a single format from the first row).
        let widths: std::collections::BTreeSet<usize> = encoded
            .split(|&b| b == b'\n')
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| l.iter().position(|&b| b == b',').unwrap_or(l.len()))
            .collect();
        prop_assert!(widths.len() <= 1, "timestamp widths {:?}", widths);
        // The strategies only produce the canonical NaN, which is what `NaN` reads back as.
        prop_assert_eq!(back, bars);
    }

    #[test]
    fn every_finite_f64_survives_text(v in finite()) {
        let mut out = Vec::new();
        write_f64(v, &mut out);
        prop_assert_eq!(parse_f64(&out).map(f64::to_bits), Some(v.to_bits()));
        prop_assert!(!out.contains(&b','));
    }

    #[test]
    fn every_i64_timestamp_survives_text(ts in any::<i64>()) {
        let mut out = Vec::new();
        format_timestamp_csv(ts, &mut out);
        prop_assert_eq!(parse_timestamp(&out), Ok(ts));
        // Nanoseconds appear only when there is a sub-second part.
        prop_assert_eq!(out.contains(&b'.'), ts.rem_euclid(1_000_000_000) != 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = CsvCodec.decode(CodecInput::Bytes(&bytes), barvault_ports::Rows::All).map(|d| d.raw);
        let mut with_header = b"timestamp,open,high,low,close,volume,x\n".to_vec();
        with_header.extend_from_slice(&bytes);
        let _ = CsvCodec.decode(CodecInput::Bytes(&with_header), barvault_ports::Rows::All).map(|d| d.raw);
    }

    #[test]
    fn mutated_files_never_panic(mutations in proptest::collection::vec(mutation(), 1..8)) {
        let mutated = apply(SEED_FILE.to_vec(), &mutations);
        if let Ok(raw) = CsvCodec.decode(CodecInput::Bytes(&mutated), barvault_ports::Rows::All).map(|d| d.raw) {
            prop_assert!(raw.ts.len() <= 4);
            let _ = raw.into_bars(MergePolicy::KeepLast);
        }
        let own = encode_to_vec(&decode(SEED_FILE));
        let _ = CsvCodec.decode(CodecInput::Bytes(&apply(own, &mutations)), barvault_ports::Rows::All).map(|d| d.raw);
    }
}

#[test]
fn seed_file_is_valid() {
    let bars = decode(SEED_FILE);
    assert_eq!(bars.len(), 3);
    assert_eq!(bars.extra("open_interest").unwrap().values(), &[Some(0.0), None, Some(7.0)]);
}
