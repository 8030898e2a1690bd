//! Range exports proven by the Parquet copy's block checksums (issue 18, P10), through the
//! real binary: a series of three row groups (300,000 one-minute bars), one day exported
//! from the third. A flipped byte in the first group leaves that export served (its bytes
//! are never read) and `verify --deep` names the group and its byte range as a
//! `bad_block`; a flipped byte in the third group makes the export fall back to the CSV
//! copy, still exact.

#[path = "reliability_common/mod.rs"]
mod common;

use std::path::Path;

use common::{Model, bv, code, err, ok, out, parse_export, row, write_batch};
use parquet::file::reader::{FileReader, SerializedFileReader};

const ROWS: i64 = 300_000;
/// 2024-07-10, a day inside the third row group (rows from 262,144 on).
const DAY: &str = "2024-07-10";
const DAY_FIRST_MINUTE: i64 = 191 * 1440;

/// The byte range of each row group of the Parquet file at `path`.
fn groups(path: &Path) -> Vec<(u64, u64)> {
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .metadata()
        .row_groups()
        .iter()
        .map(|g| {
            let start = g.columns().iter().map(|c| c.byte_range().0).min().unwrap();
            let end = g.columns().iter().map(|c| c.byte_range().0 + c.byte_range().1).max().unwrap();
            (start, end)
        })
        .collect()
}

fn flip_byte(path: &Path, at: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[at as usize] ^= 0x5a;
    std::fs::write(path, b).unwrap();
}

fn export_day(store: &Path) -> Model {
    let o = bv(store, &["export", "--type", "stock", "--symbol", "GOOD", "--period", "1m", "--from", DAY, "--to", DAY]);
    assert_eq!(code(&o), 0, "export: {}", err(&o));
    parse_export(&out(&o))
}

#[test]
fn a_day_export_reads_only_its_row_group_and_verify_names_a_bad_one() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let rows: Vec<_> = (0..ROWS).map(|m| (m, row(1, m))).collect();
    let input = tmp.path().join("good.csv");
    write_batch(&input, &rows);
    ok(bv(&store, &["import", "--type", "stock", "--symbol", "GOOD", "--period", "1m", input.to_str().unwrap()]));
    let day: Model = rows[DAY_FIRST_MINUTE as usize..DAY_FIRST_MINUTE as usize + 1440].iter().copied().collect();
    assert_eq!(export_day(&store), day, "undamaged");

    let parquet = store.join("stocks/1m/GOOD.parquet");
    let g = groups(&parquet);
    assert_eq!(g.len(), 3, "three row groups: {g:?}");
    flip_byte(&parquet, (g[0].0 + g[0].1) / 2);
    assert_eq!(export_day(&store), day, "damage in a group the day does not touch");

    let v = bv(&store, &["verify", "--all", "--deep", "--json"]);
    assert_eq!(code(&v), 1, "verify finds the damage: {}", out(&v));
    let report: serde_json::Value = serde_json::from_str(&out(&v)).unwrap();
    let named = format!("row group 0 (bytes {}..{})", g[0].0, g[0].1);
    let bad: Vec<&serde_json::Value> =
        report["issues"].as_array().unwrap().iter().filter(|i| i["kind"] == "bad_block").collect();
    assert_eq!(bad.len(), 1, "{}", out(&v));
    assert!(bad[0]["path"].as_str().unwrap().ends_with("GOOD.parquet"), "{}", out(&v));
    assert!(bad[0]["detail"].as_str().unwrap().contains(&named), "{} not in {}", named, out(&v));

    flip_byte(&parquet, (g[2].0 + g[2].1) / 2);
    assert_eq!(export_day(&store), day, "damage in the day's group: served from the CSV copy");

    let r = bv(&store, &["recover", "--all"]);
    assert_eq!(code(&r), 0, "recover: {}", out(&r));
    ok(bv(&store, &["verify", "--all", "--deep"]));
    assert_eq!(export_day(&store), day, "after recover");
}
