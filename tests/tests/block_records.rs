//! A Parquet record whose block checksums (issue 18, P10) do not describe its file while
//! its MD5 does: the file is sound, the record is wrong. A range load does not trust the
//! wrong blocks (it serves the exact bars from the other copy), a shallow `verify` names
//! the bad block, and `recover` re-records the copy without the wrong checksums (as it does
//! for a wrong fingerprint: the next write of the series records fresh ones), after which
//! `verify --deep` is clean and the range is served exact.

mod common;

use barvault::{Bars, Instrument, IssueKind, Period, PersistOptions, Scope, SeriesKey, TimeRange};
use common::{ctx, vault};

const MINUTE: i64 = 60_000_000_000;
const START: i64 = 1_704_186_000_000_000_000; // 2024-01-02 09:00 UTC

fn series() -> SeriesKey {
    SeriesKey::new(Instrument::stock("BLKS").unwrap(), Period::M1)
}

fn minutes(n: usize) -> Bars {
    let ts: Vec<i64> = (0..n).map(|i| START + i as i64 * MINUTE).collect();
    let px: Vec<f64> = (0..n).map(|i| 100.0 + (i * 37 % 1000) as f64 * 0.01).collect();
    let vol: Vec<f64> = (0..n).map(|i| (i * 13 % 5000) as f64).collect();
    Bars::new(ts, px.clone(), px.clone(), px.clone(), px, vol, vec![]).unwrap()
}

#[tokio::test]
async fn wrong_block_checksums_in_a_record_are_named_never_trusted_and_re_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path());
    // Three row groups of 131,072 rows at most.
    let bars = minutes(300_000);
    v.manager().persist(&bars, &series(), PersistOptions::default(), &ctx()).await.unwrap();
    let meta = v.manager().metadata();
    let mut record = meta.get(&series(), "parquet", &ctx()).await.unwrap().expect("a parquet record");
    let blocks = record.fingerprint.as_ref().and_then(|f| f.blocks.as_ref()).expect("block checksums recorded");
    assert_eq!(blocks.groups.len(), 3, "{blocks:?}");
    let wrong = blocks.groups[2].crc32 ^ 1;
    // The day in the last group, and that group's recorded CRC-32 made wrong.
    let range = TimeRange { start: Some(START + 280_000 * MINUTE), end: Some(START + 281_439 * MINUTE) };
    let day = bars.slice(&range);
    let fp = record.fingerprint.as_mut().unwrap();
    fp.blocks.as_mut().unwrap().groups[2].crc32 = wrong;
    meta.record(&record, &ctx()).await.unwrap();

    let served = v.manager().load_with_fallback(&series(), Some(range), &ctx()).await.unwrap().expect("bars");
    assert_eq!(served, day, "the range is served exact (from the CSV copy), the wrong blocks never trusted");

    let report = v.verify(Scope::All, false).await.unwrap();
    let bad: Vec<_> = report.issues.iter().filter(|i| i.kind == IssueKind::BadBlock).collect();
    assert_eq!(bad.len(), 1, "a shallow verify names the one bad block: {:?}", report.issues);
    assert!(bad[0].detail.contains("row group 2"), "{}", bad[0].detail);
    assert!(bad[0].path.ends_with("stocks/1m/BLKS.parquet"), "{}", bad[0].path.display());

    let recovered = v.recover(Scope::All).await.unwrap();
    assert!(!recovered.actions.is_empty(), "recover had nothing to do: {recovered:?}");
    assert!(recovered.unrecoverable.is_empty(), "{recovered:?}");
    let after = v.verify(Scope::All, true).await.unwrap();
    assert!(after.is_clean(), "{:?}", after.issues);
    let record = meta.get(&series(), "parquet", &ctx()).await.unwrap().expect("a parquet record");
    let ok = record.fingerprint.as_ref().and_then(|f| f.blocks.as_ref()).map(|b| b.groups[2].crc32);
    assert_ne!(ok, Some(wrong), "recover kept the wrong block checksum");
    assert_eq!(v.manager().load_with_fallback(&series(), Some(range), &ctx()).await.unwrap(), Some(day));
}
