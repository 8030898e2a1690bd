//! Hostile Parquet footers (issue 17): a small valid file written by the codec, its footer
//! rewritten with the parquet crate's own metadata writer (or its bytes patched) to claim an
//! absurd row-group count, chunk offsets and sizes outside the file, a footer longer than
//! the file, or 10^9 and 2^40 rows in a row group. Each is refused quickly as `Corrupt`
//! naming what is wrong; the peak memory of a decode (`VmHWM`) is measured in a child process
//! (this test binary run again on one case), so it is the decode's own.

use std::time::{Duration, Instant};

use barvault_domain::{Bars, ExtraColumn, Instrument, Period, SeriesKey};
use barvault_parquet::ParquetCodec;
use barvault_ports::{BarCodec, CodecError, CodecInput};
use bytes::Bytes;
use parquet::file::metadata::{
    ColumnChunkMetaData, ParquetMetaData, ParquetMetaDataBuilder, ParquetMetaDataWriter, RowGroupMetaData,
};
use parquet::file::reader::{FileReader, SerializedFileReader};

/// 3,000 one-minute bars with an extra column, in row groups of 1,024 rows.
fn valid() -> Vec<u8> {
    let n = 3000;
    let ts: Vec<i64> = (0..n as i64).map(|i| 1_700_000_000_000_000_000 + i * 60_000_000_000).collect();
    let base: Vec<f64> = (0..n).map(|i| 100.0 + (i as f64) * 0.01).collect();
    let hi = base.iter().map(|v| v + 0.5).collect();
    let lo = base.iter().map(|v| v - 0.5).collect();
    let vol = (0..n).map(|i| (i % 1000) as f64).collect();
    let adj = ExtraColumn::new("adj_close", base.iter().map(|v| Some(v * 0.98)).collect()).unwrap();
    let bars = Bars::new(ts, base.clone(), hi, lo, base, vol, vec![adj]).unwrap();
    let series = SeriesKey::new(Instrument::stock("HOST").unwrap(), Period::M1);
    let mut out = Vec::new();
    ParquetCodec::default().with_row_group_rows(1024).encode(&bars, &series, &mut out).unwrap();
    out
}

fn footer_len(bytes: &[u8]) -> usize {
    u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap()) as usize
}

fn metadata(bytes: &[u8]) -> ParquetMetaData {
    SerializedFileReader::new(Bytes::from(bytes.to_vec())).unwrap().metadata().clone()
}

/// `bytes` with its footer replaced by `meta`, written by the parquet crate.
fn with_footer(bytes: &[u8], meta: &ParquetMetaData) -> Vec<u8> {
    let mut out = bytes[..bytes.len() - 8 - footer_len(bytes)].to_vec();
    ParquetMetaDataWriter::new(&mut out, meta).finish().unwrap();
    out
}

/// The file with its row groups changed by `f` (given each group and its index).
fn rewritten(bytes: &[u8], f: impl Fn(usize, RowGroupMetaData) -> RowGroupMetaData) -> Vec<u8> {
    let meta = metadata(bytes);
    let groups = meta.row_groups().iter().cloned().enumerate().map(|(i, g)| f(i, g)).collect();
    with_footer(bytes, &ParquetMetaDataBuilder::new_from_metadata(meta).set_row_groups(groups).build())
}

fn rows(n: i64) -> impl Fn(usize, RowGroupMetaData) -> RowGroupMetaData {
    move |i, g| if i == 0 { g.into_builder().set_num_rows(n).build().unwrap() } else { g }
}

/// Every chunk of the first row group changed by `f`.
fn chunks(
    f: impl Fn(ColumnChunkMetaData) -> ColumnChunkMetaData,
) -> impl Fn(usize, RowGroupMetaData) -> RowGroupMetaData {
    move |i, g| {
        if i > 0 {
            return g;
        }
        let columns = g.columns().iter().cloned().map(&f).collect();
        g.into_builder().set_column_metadata(columns).build().unwrap()
    }
}

/// The file with the varint count of its footer's row-group list set to `count`: the list
/// header (`0x19`, field 4 a list; `0xfc`, a list of structs longer than 14) is found once.
fn row_group_count(bytes: &[u8], count: u64) -> Vec<u8> {
    let footer_at = bytes.len() - 8 - footer_len(bytes);
    let footer = &bytes[footer_at..bytes.len() - 8];
    let groups = metadata(bytes).num_row_groups();
    assert!((15..128).contains(&groups), "{groups} row groups: one varint byte");
    let header = [0x19, 0xfc, groups as u8];
    let hits: Vec<usize> = footer.windows(3).enumerate().filter(|(_, w)| *w == header).map(|(i, _)| i).collect();
    assert_eq!(hits.len(), 1, "the row-group list header {header:02x?} in the footer");
    let mut varint = Vec::new();
    let mut v = count;
    while v >= 0x80 {
        varint.push((v as u8) | 0x80);
        v >>= 7;
    }
    varint.push(v as u8);
    let mut new_footer = [&footer[..hits[0] + 2], &varint, &footer[hits[0] + 3..]].concat();
    let len = u32::try_from(new_footer.len()).unwrap().to_le_bytes();
    new_footer.extend_from_slice(&len);
    [&bytes[..footer_at], &new_footer, b"PAR1"].concat()
}

/// Many row groups (so the list count takes a byte of its own): 20 groups of 150 rows.
fn many_groups() -> Vec<u8> {
    let bytes = valid();
    let meta = metadata(&bytes);
    let groups: Vec<RowGroupMetaData> = (0..20).map(|i| meta.row_group(i % meta.num_row_groups()).clone()).collect();
    with_footer(&bytes, &ParquetMetaDataBuilder::new_from_metadata(meta).set_row_groups(groups).build())
}

/// The hostile files: name, bytes, and words the refusal must contain.
fn cases() -> Vec<(&'static str, Vec<u8>, Vec<&'static str>)> {
    let v = valid();
    let len = v.len() as i64;
    let mut footer_past = v.clone();
    let at = v.len() - 8;
    footer_past[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut footer_just_past = v.clone();
    footer_just_past[at..at + 4].copy_from_slice(&u32::try_from(v.len() - 7).unwrap().to_le_bytes());
    vec![
        ("footer length 4 GiB", footer_past, vec!["Parquet"]),
        ("footer length one past the file", footer_just_past, vec!["Parquet"]),
        ("row-group count 2^31 - 1", row_group_count(&many_groups(), (1 << 31) - 1), vec!["Parquet"]),
        ("row-group count 2^62", row_group_count(&many_groups(), 1 << 62), vec!["Parquet"]),
        ("10^9 rows in a row group", rewritten(&v, rows(1_000_000_000)), vec!["row group 1"]),
        ("2^40 rows in a row group", rewritten(&v, rows(1 << 40)), vec!["row group 1"]),
        ("2^62 rows in a row group", rewritten(&v, rows(1 << 62)), vec!["row group 1"]),
        (
            "10^9 rows and values in a row group",
            rewritten(&v, |i, g| {
                let claim = |g: RowGroupMetaData| g.into_builder().set_num_rows(1_000_000_000).build().unwrap();
                if i > 0 {
                    g
                } else {
                    claim(chunks(|c| c.into_builder().set_num_values(1_000_000_000).build().unwrap())(i, g))
                }
            }),
            vec!["declares 1000001976 rows", "pages hold 3000"],
        ),
        ("-5 rows in a row group", rewritten(&v, rows(-5)), vec!["row group 1", "-5 rows"]),
        (
            "data page past the file",
            rewritten(
                &v,
                chunks(|c| {
                    c.into_builder().set_dictionary_page_offset(None).set_data_page_offset(len + 1000).build().unwrap()
                }),
            ),
            vec!["row group 1", "outside"],
        ),
        (
            "negative page offset",
            rewritten(&v, chunks(|c| c.into_builder().set_dictionary_page_offset(Some(-4096)).build().unwrap())),
            vec!["row group 1", "outside"],
        ),
        (
            "chunk of 2^60 bytes",
            rewritten(&v, chunks(|c| c.into_builder().set_total_compressed_size(1 << 60).build().unwrap())),
            vec!["row group 1", "outside"],
        ),
        (
            "every group the first one's bytes",
            {
                let meta = metadata(&v);
                let groups = (0..meta.num_row_groups()).map(|_| meta.row_group(0).clone()).collect();
                with_footer(&v, &ParquetMetaDataBuilder::new_from_metadata(meta).set_row_groups(groups).build())
            },
            vec!["row group 2", "overlaps the chunk of row group 1"],
        ),
    ]
}

fn decode(bytes: &[u8]) -> Result<usize, CodecError> {
    ParquetCodec::default().decode_with_stats(CodecInput::Bytes(bytes), None).map(|(raw, _)| raw.ts.len())
}

#[test]
fn the_valid_file_and_its_rewritten_footer_decode() {
    let v = valid();
    assert_eq!(metadata(&v).num_row_groups(), 3);
    assert_eq!(decode(&v).unwrap(), 3000);
    let same = rewritten(&v, |_, g| g);
    assert_eq!(decode(&same).unwrap(), 3000, "the footer writer alone changes nothing");
    assert_eq!(metadata(&many_groups()).num_row_groups(), 20);
}

#[test]
fn hostile_footers_are_refused_quickly_naming_what_is_wrong() {
    for (what, bytes, words) in cases() {
        let started = Instant::now();
        let e = decode(&bytes).expect_err(what);
        let took = started.elapsed();
        assert!(matches!(e, CodecError::Corrupt(_)), "{what}: {e:?}");
        let text = e.to_string();
        assert!(words.iter().all(|w| text.contains(w)), "{what}: {text}");
        assert!(took < Duration::from_millis(500), "{what}: {took:?}");
        eprintln!("{what}: refused in {took:?}: {text}");
    }
}

/// Peak RSS and peak virtual size (KiB) of this test binary run again on one case alone.
fn child_peak_kib(case: usize) -> (u64, u64) {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "hostile_footer_child", "--nocapture", "--test-threads", "1"])
        .env("HOSTILE_FOOTER_CASE", case.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "case {case}: {text}");
    let value = |key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.split_once(key).filter(|(before, _)| !before.ends_with("virtual_")).map(|(_, v)| v))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("case {case}: {key}: {text}"))
    };
    (value("peak_kib="), value("virtual_peak_kib="))
}

/// Runs in the child: decodes one case (or the valid file, case `usize::MAX`) and prints
/// the process's peak RSS. Does nothing in a normal test run.
#[test]
fn hostile_footer_child() {
    let Some(case) = std::env::var("HOSTILE_FOOTER_CASE").ok().and_then(|c| c.parse::<usize>().ok()) else { return };
    let bytes = if case == usize::MAX { valid() } else { cases().swap_remove(case).1 };
    let result = decode(&bytes);
    assert_eq!(result.is_ok(), case == usize::MAX, "{result:?}");
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        let v = status.lines().find_map(|l| l.strip_prefix(name)).unwrap();
        v.trim().trim_end_matches("kB").trim().to_string()
    };
    println!("peak_kib={}", field("VmHWM:"));
    println!("virtual_peak_kib={}", field("VmPeak:"));
}

#[test]
fn hostile_footers_cost_no_more_memory_than_a_valid_file() {
    let (base, base_virtual) = child_peak_kib(usize::MAX);
    let mut worst = (0, 0, "");
    for (i, (what, _, _)) in cases().into_iter().enumerate() {
        let (peak, virt) = child_peak_kib(i);
        eprintln!("{what}: peak RSS {peak} KiB, virtual {virt} KiB (valid file {base} KiB, {base_virtual} KiB)");
        assert!(peak < base + 16 * 1024, "{what}: peak RSS {peak} KiB, a valid file {base} KiB");
        assert!(virt < base_virtual + 100 * 1024, "{what}: peak virtual {virt} KiB, a valid file {base_virtual} KiB");
        worst = worst.max((peak, virt, what));
    }
    eprintln!(
        "worst: {} KiB RSS, {} KiB virtual ({}); valid file {base} KiB, {base_virtual} KiB",
        worst.0, worst.1, worst.2
    );
}
