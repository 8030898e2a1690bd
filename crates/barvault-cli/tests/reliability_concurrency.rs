//! Concurrent writers through the real binary: 8 `barvault import` processes start at once,
//! each merging one batch into a shared series (every batch rewrites the same overlapping
//! timestamps with its own values and adds one brand-new timestamp) and one batch into a
//! series of its own. The shared series must end as the keep-last merge of the batches in
//! the order they committed — reconstructed from each import's `rows stored`, which a lost
//! update would repeat — no lock may be left held, nothing may deadlock, and
//! `verify --all` must be clean. One round by default, 4 with `BARVAULT_SLOW_TESTS=1`.

#[path = "reliability_common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Model, Row, bv, cmd, code, err, export, merge_into, ok, out, retry_exec, row, slow, write_batch};

const PROCS: u32 = 8;
/// Timestamps every shared batch rewrites (enough rows that the writes take a while).
const OVERLAP: i64 = 3000;
/// New timestamps of round `r`, process `p`: `UNIQUE + r * PROCS + p`.
const UNIQUE: i64 = 100_000;

fn shared_batch(round: u32, p: u32) -> Vec<(i64, Row)> {
    let tag = round * PROCS + p + 1;
    let mut rows: Vec<(i64, Row)> = (0..OVERLAP).map(|m| (m, row(tag, m))).collect();
    let m = UNIQUE + i64::from(tag - 1);
    rows.push((m, row(tag, m)));
    rows
}

fn own_batch(round: u32, p: u32) -> Vec<(i64, Row)> {
    let tag = round * PROCS + p + 1;
    let start = i64::from(round) * 500;
    (start..start + 1000).map(|m| (m, row(tag, m))).collect()
}

/// `(file name, rows stored)` of every per-file line of an import's output.
fn stored(stdout: &str) -> BTreeMap<String, usize> {
    stdout
        .lines()
        .filter(|l| l.contains("rows stored"))
        .filter_map(|l| {
            let file = l.split(": ").next()?;
            let name = std::path::Path::new(file).file_name()?.to_str()?.to_string();
            let n = l[l.rfind('(')? + 1..].split_whitespace().next()?.parse().ok()?;
            Some((name, n))
        })
        .collect()
}

fn wait_all(children: Vec<(u32, Child)>, deadline: Instant) -> Vec<(u32, std::process::Output)> {
    let mut done = Vec::new();
    for (p, mut child) in children {
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("process {p} still running at the deadline: deadlock or starvation");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        done.push((p, child.wait_with_output().unwrap()));
    }
    done
}

#[test]
fn eight_concurrent_imports_lose_no_batch_and_leave_no_lock() {
    let rounds = if slow() { 4 } else { 1 };
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let started = Instant::now();
    let mut shared = Model::new();
    let mut own: BTreeMap<u32, Model> = BTreeMap::new();
    let mut commits = 0;
    for round in 0..rounds {
        let mut children = Vec::new();
        for p in 0..PROCS {
            let dir = tmp.path().join(format!("r{round}p{p}"));
            std::fs::create_dir_all(&dir).unwrap();
            write_batch(&dir.join("SHARED.csv"), &shared_batch(round, p));
            write_batch(&dir.join(format!("OWN{p}.csv")), &own_batch(round, p));
            // Shared first for even processes, own series first for odd ones.
            let mut files = vec![dir.join("SHARED.csv"), dir.join(format!("OWN{p}.csv"))];
            if p % 2 == 1 {
                files.reverse();
            }
            let child = retry_exec(|| {
                cmd(&store)
                    .env("BARVAULT_LOCK_TIMEOUT_SECS", "120")
                    .args(["import", "--type", "stock", "--period", "1m"])
                    .args(&files)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
            });
            children.push((p, child));
        }
        let outputs = wait_all(children, Instant::now() + Duration::from_secs(180));

        // Commit order of the shared series from `rows stored`: each commit adds exactly one
        // new timestamp, so the j-th commit of this round reports base + j rows.
        let base = shared.len().max(OVERLAP as usize);
        let mut order: BTreeMap<usize, u32> = BTreeMap::new();
        for (p, o) in &outputs {
            assert_eq!(code(o), 0, "process {p}: {}{}", out(o), err(o));
            let s = stored(&out(o));
            let n = s["SHARED.csv"];
            if let Some(q) = order.insert(n, *p) {
                panic!("processes {q} and {p} both report {n} rows stored: one merge lost the other's batch");
            }
            assert_eq!(s[&format!("OWN{p}.csv")], {
                let mut m = own.get(p).cloned().unwrap_or_default();
                merge_into(&mut m, &own_batch(round, *p));
                m.len()
            });
        }
        let counts: Vec<usize> = order.keys().copied().collect();
        let expected_counts: Vec<usize> = (1..=PROCS as usize).map(|j| base + j).collect();
        assert_eq!(counts, expected_counts, "rows stored after each commit");
        for p in order.values() {
            merge_into(&mut shared, &shared_batch(round, *p));
            commits += 1;
        }
        for p in 0..PROCS {
            merge_into(own.entry(p).or_default(), &own_batch(round, p));
        }
        assert!(
            export(&store, "stock", "SHARED", "1m").unwrap() == shared,
            "round {round}: shared series differs from the keep-last merge in commit order"
        );
        for (p, m) in &own {
            assert!(export(&store, "stock", &format!("OWN{p}"), "1m").unwrap() == *m, "round {round}: OWN{p} differs");
        }
    }
    // No lock is left held: a fresh import that may not wait at all succeeds at once.
    let again = tmp.path().join("again.csv");
    write_batch(&again, &shared_batch(rounds, 0));
    let t = Instant::now();
    let o = cmd(&store)
        .env("BARVAULT_LOCK_TIMEOUT_SECS", "0")
        .args(["import", "--type", "stock", "--symbol", "SHARED", "--period", "1m"])
        .arg(&again)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(t.elapsed() < Duration::from_secs(10));
    let v = bv(&store, &["verify", "--all"]);
    assert_eq!(code(&v), 0, "{}", out(&v));
    ok(bv(&store, &["verify", "--all", "--deep"]));
    println!(
        "reliability_concurrency: {rounds} round(s) of {PROCS} concurrent imports, {commits} commits into one series + {} into {PROCS} others, no lost update, no lock held, verify clean, in {:.1?}",
        rounds * PROCS,
        started.elapsed()
    );
}
