//! Damaged stores through the real binary: a truncated CSV, a flipped byte in either copy,
//! a truncated or deleted Parquet, a deleted or garbled metadata record, a damaged slot of
//! a metadata record, a stale temp file
//! and a stale lock file. `verify` must name each (kind and path, exit 1), `export` must keep
//! serving the right bars meanwhile wherever a good copy exists, and `recover` must repair
//! each so that `verify` (also `--deep`) exits 0 with the same bars served.

#[path = "reliability_common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use common::{Model, bv, code, export, merge_into, ok, out, row, verify_kinds, write_batch};

/// A store holding GOOD@1m written twice (so backups exist), and the bars it serves.
fn store(tmp: &Path) -> (PathBuf, Model) {
    let store = tmp.join("store");
    let mut model = Model::new();
    for tag in [1u32, 2] {
        let rows: Vec<_> = (i64::from(tag) * 100..i64::from(tag) * 100 + 400).map(|m| (m, row(tag, m))).collect();
        let f = tmp.join(format!("b{tag}.csv"));
        write_batch(&f, &rows);
        merge_into(&mut model, &rows);
        ok(bv(&store, &["import", "--type", "stock", "--symbol", "GOOD", "--period", "1m", f.to_str().unwrap()]));
    }
    (store, model)
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    let i = at.min(b.len() - 1);
    b[i] ^= 0x5a;
    std::fs::write(path, b).unwrap();
}

fn truncate(path: &Path) {
    let b = std::fs::read(path).unwrap();
    std::fs::write(path, &b[..b.len() / 2]).unwrap();
}

struct Case {
    name: &'static str,
    damage: fn(&Path),
    /// Issue kinds of which `verify` must report at least one, at a path ending like this.
    kinds: &'static [&'static str],
    path_suffix: &'static str,
    /// Whether a good copy remains, so `export` must keep serving the bars.
    served: bool,
}

const DATA: &str = "stocks/1m/GOOD";
const META: &str = ".barvault/meta/stocks/1m/GOOD";

const CASES: &[Case] = &[
    Case {
        name: "truncated CSV",
        damage: |s| truncate(&s.join(format!("{DATA}.csv"))),
        kinds: &["checksum_mismatch", "unparsable"],
        path_suffix: "GOOD.csv",
        served: true,
    },
    Case {
        name: "flipped byte in the CSV",
        damage: |s| flip_byte(&s.join(format!("{DATA}.csv")), 120),
        kinds: &["checksum_mismatch", "unparsable"],
        path_suffix: "GOOD.csv",
        served: true,
    },
    Case {
        name: "flipped byte in the Parquet",
        damage: |s| flip_byte(&s.join(format!("{DATA}.parquet")), 300),
        kinds: &["checksum_mismatch", "unparsable"],
        path_suffix: "GOOD.parquet",
        served: true,
    },
    Case {
        name: "truncated Parquet",
        damage: |s| truncate(&s.join(format!("{DATA}.parquet"))),
        kinds: &["checksum_mismatch", "unparsable"],
        path_suffix: "GOOD.parquet",
        served: true,
    },
    Case {
        name: "deleted Parquet",
        damage: |s| std::fs::remove_file(s.join(format!("{DATA}.parquet"))).unwrap(),
        kinds: &["missing_file"],
        path_suffix: "GOOD.parquet",
        served: true,
    },
    Case {
        name: "deleted CSV metadata record",
        damage: |s| std::fs::remove_file(s.join(format!("{META}.csv.meta"))).unwrap(),
        kinds: &["missing_metadata"],
        path_suffix: "GOOD.csv",
        served: true,
    },
    Case {
        name: "garbled Parquet metadata record",
        damage: |s| std::fs::write(s.join(format!("{META}.parquet.meta")), b"{\"file_path\": 12").unwrap(),
        kinds: &["bad_metadata"],
        path_suffix: "GOOD.parquet.meta",
        served: true,
    },
    Case {
        // Written twice, the record's second slot is its newest: damaged, the first slot
        // (the record of the previous write) is read, and it does not match the CSV.
        name: "damaged newest slot of the CSV metadata record",
        damage: |s| flip_byte(&s.join(format!("{META}.csv.meta")), 4096 + 200),
        kinds: &["checksum_mismatch"],
        path_suffix: "GOOD.csv",
        served: true,
    },
    Case {
        name: "stale temp file",
        damage: |s| {
            std::fs::write(s.join("stocks/1m/.GOOD.csv.tmp.999999999.0123456789abcdef"), b"half a wri").unwrap()
        },
        kinds: &["stale_temp"],
        path_suffix: ".GOOD.csv.tmp.999999999.0123456789abcdef",
        served: true,
    },
    Case {
        name: "stale lock file",
        damage: |s| std::fs::write(s.join("stocks/1m/.GHOST.lock"), b"").unwrap(),
        kinds: &["stale_lock"],
        path_suffix: ".GHOST.lock",
        served: true,
    },
];

#[test]
fn verify_names_each_damage_export_keeps_serving_and_recover_repairs_it() {
    let mut repaired = 0;
    for case in CASES {
        let tmp = tempfile::tempdir().unwrap();
        let (store, model) = store(tmp.path());
        ok(bv(&store, &["verify", "--all", "--deep"]));
        (case.damage)(&store);
        let (vcode, kinds, text) = verify_kinds(&store);
        assert_eq!(vcode, 1, "{}: verify exit {vcode}: {text}", case.name);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let named = v["issues"].as_array().unwrap().iter().any(|i| {
            case.kinds.contains(&i["kind"].as_str().unwrap_or_default())
                && i["path"].as_str().unwrap_or_default().ends_with(case.path_suffix)
        });
        assert!(
            named,
            "{}: verify does not name {:?} at …{}: {kinds:?}\n{text}",
            case.name, case.kinds, case.path_suffix
        );
        if case.served {
            let served = export(&store, "stock", "GOOD", "1m").unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert!(
                served == model,
                "{}: export serves {} rows, not the {} stored",
                case.name,
                served.len(),
                model.len()
            );
        }
        let r = bv(&store, &["recover", "--all"]);
        assert_eq!(code(&r), 0, "{}: recover: {}", case.name, out(&r));
        let (vcode, kinds, text) = verify_kinds(&store);
        assert_eq!(vcode, 0, "{}: after recover verify finds {kinds:?}: {text}", case.name);
        let deep = bv(&store, &["verify", "--all", "--deep", "--json"]);
        assert_eq!(code(&deep), 0, "{}: after recover deep verify: {}", case.name, out(&deep));
        assert!(export(&store, "stock", "GOOD", "1m").unwrap() == model, "{}: recover lost bars", case.name);
        repaired += 1;
    }
    println!(
        "reliability_corruption: {repaired} kinds of damage named by verify and repaired by recover, rows lost: 0"
    );
}

/// `export -o` with a bare file name writes into the working directory (atomically).
#[test]
fn export_to_a_bare_file_name_works() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, model) = store(tmp.path());
    let o = common::cmd(&store)
        .args(["export", "--type", "stock", "--symbol", "GOOD", "--period", "1m", "-o", "out.csv"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", common::err(&o));
    let written = std::fs::read_to_string(tmp.path().join("out.csv")).unwrap();
    assert!(common::parse_export(&written) == model);
    assert!(common::temp_files(tmp.path()).is_empty());
}
