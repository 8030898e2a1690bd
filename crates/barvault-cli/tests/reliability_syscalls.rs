//! Faults the kernel returns to the built binary (the debug build `cargo test` makes), no
//! seam: `strace -f -e inject=SYSCALL:error=ERRNO:when=N` during one import into a series
//! that has both copies, its backups, spares and records. Every `openat`, `rename`,
//! `renameat2`, `linkat`, `fsync`, `fdatasync` and `write` that touches a file of the
//! series' store paths (data files, backups, spares, lock, records, their directories) is
//! failed in turn, for every N the clean run counts, with EIO, ENOSPC, EDQUOT (and EINTR on
//! `write`, which the binary retries). After each: exit 0 with the new bars served, or exit
//! 1 with one `error:` line naming the step and a store path and the previous bars served;
//! never a panic or a hang; `verify` clean, or `recover` making it clean without changing
//! what is served; no temp file left after `recover`.
//!
//! `strace -P PATH` restricts both tracing and injection to calls on those paths (strace
//! 6.1 cannot select by fd). Temp files have random names, so the writes and fsyncs of a
//! temp file are not reached here (they are by `reliability_faults.rs` through the `Fs`
//! seam and by the full-disk test); and the calls are counted per thread by strace, so
//! `when=N` fails the N-th matching call of every thread (sometimes two faults in a run).
//! Light: one errno per point (rotating); `BARVAULT_SLOW_TESTS=1`: every errno.

#[path = "reliability_common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Model, bv, code, err, export, merge_into, ok, row, slow, temp_files, write_batch};

const SYSCALLS: [&str; 7] = ["openat", "rename", "renameat2", "linkat", "fsync", "fdatasync", "write"];

fn strace() -> Result<(), String> {
    match Command::new("strace").args(["-f", "-o", "/dev/null", "true"]).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("strace cannot trace here: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("strace is not installed ({e})")),
    }
}

fn batch(dir: &Path, n: u32) -> (PathBuf, Vec<(i64, common::Row)>) {
    let rows: Vec<(i64, common::Row)> = (i64::from(n) * 40..i64::from(n) * 40 + 120).map(|m| (m, row(n, m))).collect();
    let path = dir.join(format!("batch{n}.csv"));
    write_batch(&path, &rows);
    (path, rows)
}

/// The paths of `stock:SYM@1m` in `store` that strace watches.
fn watched(store: &Path) -> Vec<PathBuf> {
    let dir = store.join("stocks/1m");
    let meta = store.join(".barvault/meta/stocks/1m");
    let mut paths = vec![dir.clone(), meta.clone(), dir.join(".SYM.lock")];
    for ext in ["csv", "parquet"] {
        for name in [format!("SYM.{ext}"), format!("SYM.{ext}.backup"), format!(".SYM.{ext}.spare")] {
            paths.push(dir.join(name));
        }
        paths.push(meta.join(format!("SYM.{ext}.meta")));
    }
    paths
}

/// `barvault import` of `input` into `store` under strace with `extra` arguments; the
/// output of the binary and the trace.
fn traced_import(
    store: &Path,
    input: &Path,
    trace: &Path,
    paths: &[PathBuf],
    extra: &[String],
) -> (std::process::Output, String) {
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-y", "-o"]).arg(trace);
    for p in paths {
        c.arg("-P").arg(p);
    }
    c.args(extra).arg("--").arg(common::BIN).arg("--data-dir").arg(store);
    c.args(["import", "--type", "stock", "--symbol", "SYM", "--period", "1m"]).arg(input);
    c.current_dir(store.parent().expect("parent")).env_remove("RUST_BACKTRACE");
    for (k, _) in std::env::vars() {
        if k.starts_with("BARVAULT_") {
            c.env_remove(k);
        }
    }
    let o = common::retry_exec(|| c.output());
    (o, std::fs::read_to_string(trace).unwrap_or_default())
}

/// For each syscall and watched path, the most calls one thread made on that path (strace
/// counts `when=N` per thread): the injection points.
fn per_thread_counts(trace: &str, paths: &[PathBuf]) -> BTreeMap<(&'static str, PathBuf), u32> {
    let mut by: BTreeMap<(&'static str, PathBuf, String), u32> = BTreeMap::new();
    for line in trace.lines() {
        let Some((tid, rest)) = line.split_once(' ') else { continue };
        let rest = rest.trim_start();
        let Some(syscall) = SYSCALLS.iter().find(|s| rest.starts_with(&format!("{s}("))) else { continue };
        for p in paths {
            let p_text = p.display().to_string();
            if rest.contains(&format!("\"{p_text}\"")) || rest.contains(&format!("<{p_text}>")) {
                *by.entry((syscall, p.clone(), tid.to_string())).or_default() += 1;
            }
        }
    }
    let mut max = BTreeMap::new();
    for ((s, p, _), n) in by {
        let m = max.entry((s, p)).or_insert(0);
        *m = (*m).max(n);
    }
    max
}

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().expect("cp");
    assert!(st.success());
}

#[test]
fn every_injected_syscall_fault_keeps_the_previous_version_or_commits() {
    if let Err(why) = strace() {
        eprintln!("SKIPPED every_injected_syscall_fault_keeps_the_previous_version_or_commits: {why}");
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let template = dir.path().join("template");
    let mut before = Model::new();
    for n in [1, 2] {
        let (file, rows) = batch(dir.path(), n);
        ok(bv(&template, &["import", "--type", "stock", "--symbol", "SYM", "--period", "1m", file.to_str().unwrap()]));
        merge_into(&mut before, &rows);
    }
    let (input, rows) = batch(dir.path(), 3);
    let mut after = before.clone();
    merge_into(&mut after, &rows);

    // The clean run: how many calls of each syscall one thread makes on the watched paths.
    let store = dir.path().join("count");
    copy_dir(&template, &store);
    let syscalls = SYSCALLS.join(",");
    let paths = watched(&store);
    let (o, trace) = traced_import(&store, &input, &dir.path().join("trace"), &paths, &[format!("--trace={syscalls}")]);
    ok(o);
    let counts = per_thread_counts(&trace, &paths);
    let points: u32 = counts.values().sum();
    for s in ["fdatasync", "fsync", "linkat", "rename", "openat", "write"] {
        assert!(counts.keys().any(|(c, _)| *c == s), "no {s} seen: {counts:?}\n{trace}");
    }
    let relative = |p: &Path| p.strip_prefix(&store).unwrap_or(p).display().to_string();
    let listed: Vec<String> = counts.iter().map(|((s, p), n)| format!("{s} {} x{n}", relative(p))).collect();
    eprintln!("{points} injection points (syscall, path, n): {listed:?}");

    let errnos: &[&str] = &["EIO", "ENOSPC", "EDQUOT"];
    let (mut runs, mut failed, mut committed, mut recovered, mut injected_total) = (0u32, 0u32, 0u32, 0u32, 0u32);
    for ((syscall, path), &max) in &counts {
        let (syscall, rel) = (*syscall, path.strip_prefix(dir.path().join("count")).expect("watched path"));
        for n in 1..=max {
            let mut these: Vec<&str> =
                if slow() { errnos.to_vec() } else { vec![errnos[(runs as usize) % errnos.len()]] };
            if syscall == "write" && (slow() || n == 1) {
                these.push("EINTR");
            }
            for errno in these {
                runs += 1;
                let store = dir.path().join(format!("run{runs}"));
                copy_dir(&template, &store);
                let label = format!("{syscall} #{n} on {} {errno}", rel.display());
                let inject = format!("inject={syscall}:error={errno}:when={n}");
                let t0 = Instant::now();
                let (o, trace) = traced_import(
                    &store,
                    &input,
                    &dir.path().join("trace"),
                    &[store.join(rel)],
                    &[format!("--trace={syscall}"), format!("--{inject}")],
                );
                assert!(t0.elapsed() < Duration::from_secs(60), "{label}: took {:?}", t0.elapsed());
                let injected = trace.lines().filter(|l| l.contains("(INJECTED)")).count();
                injected_total += injected as u32;
                let stderr = err(&o);
                assert!(!stderr.contains("panicked"), "{label}: {stderr}");
                let served = export(&store, "stock", "SYM", "1m").unwrap_or_else(|e| panic!("{label}: {e}"));
                match code(&o) {
                    0 => {
                        committed += 1;
                        assert_eq!(served, after, "{label}: exit 0 but the new bars are not served");
                    }
                    1 => {
                        failed += 1;
                        assert!(injected > 0, "{label}: failed without a fault: {stderr}");
                        let line = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
                        assert!(
                            line.contains("failed for ") && line.contains(&store.display().to_string()),
                            "{label}: the error names no step and store path: {stderr}"
                        );
                        assert_eq!(served, before, "{label}: failed, yet the served bars changed");
                    }
                    other => panic!("{label}: exit {other}: {stderr}"),
                }
                let (vcode, kinds, _) = common::verify_kinds(&store);
                if vcode != 0 {
                    recovered += 1;
                    ok(bv(&store, &["recover", "--all"]));
                    let (vcode, kinds2, text) = common::verify_kinds(&store);
                    assert_eq!(vcode, 0, "{label}: verify after recover ({kinds:?}): {text}");
                    assert!(kinds2.is_empty());
                    let again = export(&store, "stock", "SYM", "1m").unwrap_or_else(|e| panic!("{label}: {e}"));
                    assert_eq!(again, served, "{label}: recover changed what is served");
                }
                assert!(temp_files(&store).is_empty(), "{label}: temp files left: {:?}", temp_files(&store));
                std::fs::remove_dir_all(&store).expect("remove run store");
            }
        }
    }
    assert!(injected_total >= runs - runs / 4, "most runs must inject: {injected_total} of {runs}");
    eprintln!(
        "strace injection: {runs} runs over {points} points ({injected_total} faults injected): {committed} \
         committed, {failed} failed cleanly, {recovered} needed recover; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// fsyncgate: after a failed `fsync` of the series directory (right after the CSV's rename)
/// or a failed `fdatasync` of the CSV's record, the import fails and its bars are never
/// served; the next import does not trust the file the failed fsync left (its bytes are not
/// the recorded ones) but proves it, so what is stored afterwards is exactly the previous
/// version merged with the next batch, without the batch whose fsync failed.
#[test]
fn a_failed_fsync_is_never_committed_nor_trusted_later() {
    if let Err(why) = strace() {
        eprintln!("SKIPPED a_failed_fsync_is_never_committed_nor_trusted_later: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cases = 0;
    for (syscall, rel) in [("fsync", "stocks/1m"), ("fdatasync", ".barvault/meta/stocks/1m/SYM.csv.meta")] {
        let store = dir.path().join(format!("store-{syscall}"));
        let mut model = Model::new();
        for n in [1, 2] {
            let (file, rows) = batch(dir.path(), n);
            ok(bv(&store, &["import", "--type", "stock", "--symbol", "SYM", "--period", "1m", file.to_str().unwrap()]));
            merge_into(&mut model, &rows);
        }
        let (failing, _) = batch(dir.path(), 3);
        let (o, trace) = traced_import(
            &store,
            &failing,
            &dir.path().join("trace"),
            &[store.join(rel)],
            &[format!("--trace={syscall}"), format!("--inject={syscall}:error=EIO:when=1")],
        );
        assert!(trace.contains("(INJECTED)"), "{syscall}: nothing injected: {trace}");
        assert_eq!(code(&o), 1, "{syscall}: {}", err(&o));
        assert!(err(&o).contains("EIO") || err(&o).contains("Input/output error"), "{}", err(&o));
        assert_eq!(export(&store, "stock", "SYM", "1m").as_ref(), Ok(&model), "{syscall}: failed batch served");
        let (next, rows) = batch(dir.path(), 4);
        ok(bv(&store, &["import", "--type", "stock", "--symbol", "SYM", "--period", "1m", next.to_str().unwrap()]));
        merge_into(&mut model, &rows);
        assert_eq!(export(&store, "stock", "SYM", "1m").as_ref(), Ok(&model), "{syscall}: after the next import");
        ok(bv(&store, &["verify", "--all", "--deep"]));
        cases += 1;
    }
    eprintln!("fsyncgate: {cases} failed fsyncs, none committed or trusted afterwards");
}
