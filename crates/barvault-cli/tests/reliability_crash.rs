//! Crash safety of the whole import path (read → merge → CSV → Parquet → metadata) through
//! the real binary: `barvault import` is SIGKILLed at random moments while it writes, and
//! after every kill the store must hold exactly the batches committed before it, or those
//! plus the killed one — never a mix, never fewer — every data file must parse, and
//! `verify --all` must be clean or made clean by `recover --all` without losing a batch.
//!
//! The second loop does the same to a series that only grows: every batch after the first
//! is bars after the stored ones, which go in place (the CSV appended after its committed
//! length, the Parquet copy lagging and written again every 4,096 rows), so kills land
//! between an append's bytes and its record too.
//!
//! 20 kills by default, 200 with `BARVAULT_SLOW_TESTS=1`, in each loop.
//! `BARVAULT_RELIABILITY_SEED` replays a run.

#[path = "reliability_common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    Model, Rng, bv, cmd, code, err, export, merge_into, ok, out, retry_exec, row, slow, temp_files, verify_kinds,
    write_batch,
};

/// New timestamps per batch, and the timestamps each batch spans (so each batch rewrites
/// `WIDTH - STEP` rows of the previous ones with its own values and adds `STEP` new ones).
const STEP: i64 = 100;
const WIDTH: i64 = 2000;

fn batch(k: u32) -> Vec<(i64, common::Row)> {
    let start = i64::from(k) * STEP;
    (start..start + WIDTH).map(|m| (m, row(k + 1, m))).collect()
}

/// Appends: a first batch of 5,000 bars, then 1 to 60 bars after the last stored one.
fn append_batch(k: u32) -> Vec<(i64, common::Row)> {
    let end = |k: u32| if k == 0 { 0 } else { 5000 + (1..k).map(|j| 1 + i64::from(j * 37 % 60)).sum::<i64>() };
    (end(k)..end(k + 1)).map(|m| (m, row(k + 1, m))).collect()
}

fn import_args(symbol: &str, file: &Path) -> Vec<String> {
    ["import", "--type", "stock", "--symbol", symbol, "--period", "1m"]
        .iter()
        .map(|s| s.to_string())
        .chain([file.display().to_string()])
        .collect()
}

/// Rows stored, from the per-file line `... (N rows stored)`.
fn rows_stored(stdout: &str) -> Option<usize> {
    let line = stdout.lines().find(|l| l.contains("rows stored"))?;
    let open = line.rfind('(')?;
    line[open + 1..].split_whitespace().next()?.parse().ok()
}

/// What `export` serves; a series that was never committed is served as empty (export
/// says "not found"), which the comparisons then accept only while nothing is committed.
fn served(store: &Path, symbol: &str) -> Result<Model, String> {
    if !store.exists() {
        return Ok(Model::new());
    }
    match export(store, "stock", symbol, "1m") {
        Err(e) if e.contains("not found") => Ok(Model::new()),
        other => other,
    }
}

#[derive(Debug, Default)]
struct Figures {
    kills: u32,
    mid_write: u32,
    showed_new_batch: u32,
    finished_before_kill: u32,
    verify_unclean: u32,
    recovered: u32,
    repaired_by_next_import: u32,
}

#[test]
fn sigkill_during_import_never_loses_or_mixes_a_batch() {
    kill_loop("CRASH", batch, false);
}

#[test]
fn sigkill_during_appends_never_loses_or_mixes_a_batch() {
    kill_loop("APPEND", append_batch, true);
}

/// What an outside reader of an appended CSV sees: every line up to the last line end parses
/// (a kill between an append's bytes and its record may leave a partial last line after
/// the committed length, which barvault never reads; docs/DECISIONS.md, "Appends in place").
fn assert_complete_lines_parse(dir: &Path) {
    use barvault::ports::{BarCodec, CodecInput, Rows};
    for entry in walk(dir) {
        let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if name.starts_with('.') || !name.ends_with(".csv") || entry.components().any(|c| c.as_os_str() == ".barvault")
        {
            continue;
        }
        let bytes = std::fs::read(&entry).unwrap();
        let lines = &bytes[..bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)];
        if let Err(e) = barvault::CsvCodec.decode(CodecInput::Bytes(lines), Rows::All) {
            panic!("{}: its complete lines do not parse: {e}", entry.display());
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

fn kill_loop(symbol: &str, batch: fn(u32) -> Vec<(i64, common::Row)>, appends: bool) {
    let target = if slow() { 200 } else { 20 };
    let mut rng = Rng::from_env();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let batches = tmp.path().join("batches");
    std::fs::create_dir_all(&batches).unwrap();

    let mut committed = Model::new();
    let mut f = Figures::default();
    // How long the last complete import took; kills land in [0.25, 1.05] of it, where the
    // reading and merging are over and the writes happen.
    let mut typical = Duration::from_millis(60);
    let started = Instant::now();
    let mut k: u32 = 0;
    while f.kills < target {
        let rows = batch(k);
        let file = batches.join(format!("batch_{k}.csv"));
        write_batch(&file, &rows);
        let mut next = committed.clone();
        merge_into(&mut next, &rows);
        let args = import_args(symbol, &file);

        // The first batch creates the series; kill it too, but most kills hit a merge.
        let kills_here = 1 + (rng.next() % 2) as u32;
        let mut skipped_recover = false;
        for _ in 0..kills_here {
            let delay = typical.mul_f64(0.25 + 0.8 * rng.unit());
            let mut child = retry_exec(|| cmd(&store).args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn());
            let pid = child.id();
            std::thread::sleep(delay);
            child.kill().unwrap();
            let status = child.wait().unwrap();
            if status.success() {
                // It finished before the signal: not a kill, but still checked below.
                f.finished_before_kill += 1;
            } else {
                f.kills += 1;
            }
            // Mid-write: the killed process left one of its own temp files behind.
            let own_temp = format!(".tmp.{pid}.");
            if temp_files(&store).iter().any(|p| p.to_string_lossy().contains(&own_temp)) {
                f.mid_write += 1;
            }
            // Every data file (and backup) present parses.
            if store.exists() && appends {
                assert_complete_lines_parse(&store);
            } else if store.exists() {
                common::assert_every_data_file_parses(&store);
            }

            // Never a mix, never fewer: the k committed batches, or those plus this one.
            let seen = served(&store, symbol)
                .unwrap_or_else(|e| panic!("after kill {} (batch {k}, delay {delay:?}): {e}", f.kills));
            let is_next = seen == next;
            assert!(
                seen == committed || is_next,
                "after kill {} (batch {k}, delay {delay:?}) export holds {} rows, neither the {} committed nor the {} expected",
                f.kills,
                seen.len(),
                committed.len(),
                next.len()
            );
            if is_next && seen != committed {
                f.showed_new_batch += 1;
            }

            if !store.exists() {
                continue;
            }
            let (vcode, kinds, text) = verify_kinds(&store);
            if vcode == 0 {
                continue;
            }
            f.verify_unclean += 1;
            // Every third kill leaves the repair to the next import instead of `recover`.
            if f.kills.is_multiple_of(3) {
                skipped_recover = true;
                continue;
            }
            let r = bv(&store, &["recover", "--all"]);
            assert_eq!(code(&r), 0, "recover after kill {} ({kinds:?}): {}{}\n{text}", f.kills, out(&r), err(&r));
            f.recovered += 1;
            let (vcode, kinds, text) = verify_kinds(&store);
            assert_eq!(
                vcode,
                0,
                "verify after recover (pid {pid}) still finds {kinds:?}: {text}\nrecover said: {}",
                out(&r)
            );
            let after = served(&store, symbol).unwrap();
            assert!(after == seen, "recover changed the served content from {} to {} rows", seen.len(), after.len());
        }

        // Re-run the batch to completion: the store then holds exactly k + 1 batches.
        let t = Instant::now();
        let o = ok(retry_exec(|| cmd(&store).args(&args).output()));
        typical = t.elapsed();
        assert_eq!(rows_stored(&out(&o)), Some(next.len()), "{}", out(&o));
        let seen = export(&store, "stock", symbol, "1m").unwrap();
        assert!(seen == next, "batch {k}: export has {} rows, expected {}", seen.len(), next.len());
        if skipped_recover || k.is_multiple_of(10) {
            // The import repaired any copy the kill left behind; only temp files of the
            // killed process may remain, and `recover` removes them.
            let (vcode, kinds, text) = verify_kinds(&store);
            if vcode != 0 {
                assert!(kinds.iter().all(|k| k == "stale_temp"), "after a completed import: {text}");
                ok(bv(&store, &["recover", "--all"]));
                let (vcode, _, text) = verify_kinds(&store);
                assert_eq!(vcode, 0, "{text}");
            }
            if skipped_recover {
                f.repaired_by_next_import += 1;
            }
        }
        committed = next;
        k += 1;
    }
    // The final store is clean, deep.
    let o = bv(&store, &["recover", "--all"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    let deep = bv(&store, &["verify", "--all", "--deep", "--json"]);
    assert_eq!(code(&deep), 0, "deep verify after the last recover: {}", out(&deep));
    assert_eq!(export(&store, "stock", symbol, "1m").unwrap(), committed);
    println!(
        "reliability_crash ({symbol}): {} kills survived over {k} batches in {:.0?} ({} left a temp file of their own = killed mid-write, \
         {} already showed the killed batch, {} finished before the kill); verify unclean after {}, recover run {}, \
         repaired by the next import {}; rows lost: 0 ({} rows stored)",
        f.kills,
        started.elapsed(),
        f.mid_write,
        f.showed_new_batch,
        f.finished_before_kill,
        f.verify_unclean,
        f.recovered,
        f.repaired_by_next_import,
        committed.len()
    );
    // The kills must actually have hit writes, or the test proves nothing. An append leaves
    // no temp file, and its window between bytes and record is short: there, a kill that
    // came after the killed batch was served counts too.
    let hit = f.mid_write > 0 || f.verify_unclean > 0 || (appends && f.showed_new_batch > 0);
    assert!(hit, "no kill landed during a write: {f:?}");
}
