//! Mixed operations at once (issue 17): worker threads run `import`, `export`, `verify`,
//! `recover`, `cleanup` and `info` processes of the real binary against one series in random
//! interleavings for a bounded time (about 25 s, 60 s with `BARVAULT_SLOW_TESTS=1`).
//!
//! Every import batch `k` rewrites the same recent timestamps with values that encode `k`
//! and adds one timestamp of its own, so any export is checkable without knowing the commit
//! order: the overlap must come from one batch whose own timestamp is served, every batch
//! that committed before the export started must be served, none that had not started before
//! it ended. A seed set of very old bars is the only thing `cleanup` (retention 30 days) may
//! remove, all of them or none. `verify` must always exit 0, as nothing is damaged; `recover`,
//! `cleanup` and `info` must exit 0. At the end: a last cleanup, then the export must be the
//! keep-last merge of every batch with the last committer's overlap, `verify --all --deep`
//! clean, no lock held and no temp file left.

#[path = "reliability_common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Model, Rng, Row, bv, cmd, code, err, out, parse_export, retry_exec, row, slow, temp_files, write_batch};

/// 2026-12-01 00:00 in minutes after 2024-01-01: newer than any 30-day cutoff of the run.
const NEW: i64 = (366 + 365 + 334) * 1440;
/// Timestamps every batch rewrites.
const OVERLAP: i64 = 400;
/// Old bars (2024-01-01), removed by cleanup.
const OLD: i64 = 200;

fn batch(tag: u32) -> Vec<(i64, Row)> {
    let mut rows: Vec<(i64, Row)> = (NEW..NEW + OVERLAP).map(|m| (m, row(tag, m))).collect();
    let m = own_ts(tag);
    rows.push((m, row(tag, m)));
    rows
}

fn own_ts(tag: u32) -> i64 {
    NEW + 100_000 + i64::from(tag)
}

#[derive(Debug, Clone, Copy)]
struct Import {
    tag: u32,
    started: Instant,
    ended: Option<Instant>,
}

/// Checks one served state; returns the tag whose overlap is served.
fn check_state(
    m: &Model,
    imports: &[Import],
    export_start: Instant,
    export_end: Instant,
) -> Result<Option<u32>, String> {
    let old: Vec<i64> = m.keys().copied().filter(|t| *t < NEW).collect();
    if !(old.is_empty() || old.len() == OLD as usize) {
        return Err(format!("{} of {OLD} old bars served: cleanup left a mix", old.len()));
    }
    for t in &old {
        if m[t] != row(0, *t) {
            return Err(format!("old bar {t} has other values"));
        }
    }
    let served: BTreeSet<u32> =
        imports.iter().filter(|i| m.get(&own_ts(i.tag)) == Some(&row(i.tag, own_ts(i.tag)))).map(|i| i.tag).collect();
    let extra = m.keys().filter(|t| **t >= NEW + OVERLAP).count();
    if extra != served.len() {
        return Err(format!("{extra} own timestamps served but only {} recognised", served.len()));
    }
    for i in imports {
        if i.ended.is_some_and(|e| e < export_start) && !served.contains(&i.tag) {
            return Err(format!("batch {} committed before the export started but is not served", i.tag));
        }
        if i.started > export_end && served.contains(&i.tag) {
            return Err(format!("batch {} served before it started", i.tag));
        }
    }
    let overlap: Vec<(i64, Row)> = m.range(NEW..NEW + OVERLAP).map(|(t, r)| (*t, *r)).collect();
    if overlap.is_empty() && served.is_empty() {
        return Ok(None);
    }
    if overlap.len() != OVERLAP as usize {
        return Err(format!("{} of {OVERLAP} overlap bars served", overlap.len()));
    }
    let tag = served.iter().copied().find(|t| overlap.iter().all(|(ts, r)| *r == row(*t, *ts)));
    match tag {
        Some(t) => Ok(Some(t)),
        None => Err("the overlap is not one served batch's (torn or lost)".into()),
    }
}

/// The series is not stored (a cleanup removed it before the first batch committed).
fn not_found(o: &std::process::Output) -> bool {
    code(o) != 0 && err(o).contains("not found")
}

#[test]
fn mixed_operations_at_once_keep_every_commit_and_report_no_false_damage() {
    let secs = if slow() { 60 } else { 25 };
    let workers = 4;
    let mut rng = Rng::from_env();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let seed = tmp.path().join("old.csv");
    write_batch(&seed, &(0..OLD).map(|m| (m, row(0, m))).collect::<Vec<_>>());
    let o = bv(&store, &["import", "--type", "stock", "--symbol", "MIX", "--period", "1m", seed.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", err(&o));

    let imports: Arc<Mutex<Vec<Import>>> = Arc::default();
    let counts: Arc<Mutex<[u32; 6]>> = Arc::default();
    let next_tag = Arc::new(Mutex::new(1u32));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut handles = Vec::new();
    for w in 0..workers {
        let mut rng = rng.fork();
        let (store, dir) = (store.clone(), tmp.path().join(format!("w{w}")));
        let (imports, counts, next_tag, failures) =
            (imports.clone(), counts.clone(), next_tag.clone(), failures.clone());
        std::fs::create_dir_all(&dir).unwrap();
        handles.push(std::thread::spawn(move || {
            while Instant::now() < end && failures.lock().unwrap().is_empty() {
                let kind = (rng.next() % 6) as usize;
                let fail = |s: String| failures.lock().unwrap().push(s);
                let run = |args: &[&str]| {
                    retry_exec(|| {
                        cmd(&store)
                            .env("BARVAULT_LOCK_TIMEOUT_SECS", "120")
                            .env("BARVAULT_RETENTION_DAYS", "30")
                            .args(args)
                            .output()
                    })
                };
                match kind {
                    0 => {
                        let tag = {
                            let mut t = next_tag.lock().unwrap();
                            *t += 1;
                            *t - 1
                        };
                        let file = dir.join("MIX.csv");
                        write_batch(&file, &batch(tag));
                        let idx = {
                            let mut v = imports.lock().unwrap();
                            v.push(Import { tag, started: Instant::now(), ended: None });
                            v.len() - 1
                        };
                        let o = run(&["import", "--type", "stock", "--period", "1m", file.to_str().unwrap()]);
                        if code(&o) != 0 {
                            fail(format!("import {tag} exit {}: {}{}", code(&o), out(&o), err(&o)));
                        }
                        imports.lock().unwrap()[idx].ended = Some(Instant::now());
                    }
                    1 => {
                        let s = Instant::now();
                        let o = run(&["export", "--type", "stock", "--symbol", "MIX", "--period", "1m"]);
                        let e = Instant::now();
                        // A cleanup before the first commit removes the series (every seed
                        // bar is old): "not found" is then a served state without bars,
                        // which `check_state` refuses once any batch has committed.
                        let m = match code(&o) {
                            0 => Some(parse_export(&out(&o))),
                            _ if not_found(&o) => Some(Model::new()),
                            _ => None,
                        };
                        match m {
                            None => fail(format!("export exit {}: {}", code(&o), err(&o))),
                            Some(m) => {
                                let snapshot = imports.lock().unwrap().clone();
                                if let Err(x) = check_state(&m, &snapshot, s, e) {
                                    fail(format!("export: {x}"));
                                }
                            }
                        }
                    }
                    2 => {
                        let o = run(&["verify", "--all"]);
                        if code(&o) != 0 {
                            fail(format!(
                                "verify reported damage that is not there: exit {}: {}{}",
                                code(&o),
                                out(&o),
                                err(&o)
                            ));
                        }
                    }
                    3 => {
                        let o = run(&["recover", "--all"]);
                        if code(&o) != 0 {
                            fail(format!("recover exit {}: {}{}", code(&o), out(&o), err(&o)));
                        }
                    }
                    4 => {
                        let o = run(&["cleanup", "--force", "--confirm-removal"]);
                        if code(&o) != 0 {
                            fail(format!("cleanup exit {}: {}{}", code(&o), out(&o), err(&o)));
                        }
                    }
                    _ => {
                        let s = Instant::now();
                        let o = run(&["info", "--type", "stock", "--symbol", "MIX", "--period", "1m"]);
                        let committed = imports.lock().unwrap().iter().any(|i| i.ended.is_some_and(|e| e < s));
                        if code(&o) != 0 && (committed || !not_found(&o)) {
                            fail(format!("info exit {}: {}{}", code(&o), out(&o), err(&o)));
                        }
                    }
                }
                counts.lock().unwrap()[kind] += 1;
            }
        }));
    }
    let hard = end + Duration::from_secs(300);
    for h in handles {
        while !h.is_finished() {
            assert!(Instant::now() < hard, "a worker is still running 300 s after the end: deadlock");
            std::thread::sleep(Duration::from_millis(50));
        }
        h.join().unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "BARVAULT_RELIABILITY_SEED replay; failures:\n{}", failures.join("\n"));

    // Final state: no lock held (a cleanup that may not wait succeeds), then the merge.
    let o = cmd(&store)
        .env("BARVAULT_LOCK_TIMEOUT_SECS", "0")
        .env("BARVAULT_RETENTION_DAYS", "30")
        .args(["cleanup", "--force", "--confirm-removal"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "a lock is left held: {}", err(&o));
    let imports = imports.lock().unwrap().clone();
    let now = Instant::now();
    let m = common::export(&store, "stock", "MIX", "1m").unwrap();
    let last = check_state(&m, &imports, now, now).unwrap_or_else(|e| panic!("final state: {e}"));
    let mut expected = Model::new();
    for i in imports.iter().filter(|i| Some(i.tag) != last) {
        common::merge_into(&mut expected, &batch(i.tag));
    }
    if let Some(t) = last {
        common::merge_into(&mut expected, &batch(t));
    }
    assert!(m == expected, "final export differs from the keep-last merge in commit order");
    let v = bv(&store, &["verify", "--all", "--deep"]);
    assert_eq!(code(&v), 0, "{}{}", out(&v), err(&v));
    assert!(temp_files(&store).is_empty(), "temp files left: {:?}", temp_files(&store));
    let c = *counts.lock().unwrap();
    println!(
        "reliability_mixed: {workers} workers for {secs} s: import {} export {} verify {} recover {} cleanup {} info {}; {} commits, in {:.1?}",
        c[0],
        c[1],
        c[2],
        c[3],
        c[4],
        c[5],
        imports.len(),
        started.elapsed()
    );
}
