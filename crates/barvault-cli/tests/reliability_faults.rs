//! I/O faults through the application: `StorageFactory::open_with_fs` over a `FaultyFs`
//! that fails one step of a persist with ENOSPC, EIO or EACCES: on the CSV or the Parquet
//! file create temp, write temp, fsync temp, keep backup, rename, fsync directory; on a
//! metadata record (updated in place) open, write of its slot (torn half-way), fdatasync.
//! After each fault: the previous version is what `load` serves, no
//! temp file is left, the error names the step, the path and the OS error (a Parquet-side
//! fault instead leaves the call successful with the secondary `Failed`, and `verify`
//! reports the inconsistency), and `recover` or the next persist makes `verify` clean.
//! The light variant covers every step once (one errno each, rotating); with
//! `BARVAULT_SLOW_TESTS=1` every step × every errno, plus persistent faults.

#[path = "reliability_common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use barvault::FsOp;
use barvault::SecondaryStatus;
use barvault::ports::{BarCodec, CodecInput};
use barvault::{
    Bars, CsvCodec, Fault, FaultyFs, Instrument, MergePolicy, OpContext, Period, PersistOptions, Scope, SeriesKey,
    StorageConfig, StorageFactory, ValidationPolicy, Vault,
};
use common::{Row, row, slow, temp_files};

const ENOSPC: i32 = 28;
const EIO: i32 = 5;
const EACCES: i32 = 13;

fn bars(tag: u32) -> Bars {
    let rows: Vec<(i64, Row)> = (i64::from(tag) * 50..i64::from(tag) * 50 + 200).map(|m| (m, row(tag, m))).collect();
    let mut s = String::from("timestamp,open,high,low,close,volume\n");
    for (m, r) in &rows {
        s.push_str(&format!("{},{},{},{},{},{}\n", common::ts(*m), r[0], r[1], r[2], r[3], r[4]));
    }
    let raw = CsvCodec.decode(CodecInput::Bytes(s.as_bytes()), barvault::ports::Rows::All).map(|d| d.raw).unwrap();
    raw.into_bars(MergePolicy::KeepLast).unwrap().0
}

fn series() -> SeriesKey {
    SeriesKey::new(Instrument::stock("FAULT").unwrap(), "1m".parse::<Period>().unwrap())
}

/// Which file a fault targets.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Csv,
    Parquet,
    /// The metadata record of the CSV copy (written right after the CSV file).
    CsvRecord,
    /// The metadata record of the Parquet copy.
    ParquetRecord,
}

impl Target {
    fn is_secondary(self) -> bool {
        matches!(self, Target::Parquet | Target::ParquetRecord)
    }
}

/// The fault that fails `step` of the write of `target`, or `None` if that write has no such
/// step (metadata records keep no backup).
fn fault_for(target: Target, step: FsOp, errno: i32, base: &Path) -> Option<Fault> {
    let data_dir = base.join("stocks/1m").display().to_string();
    let record_step = matches!(step, FsOp::OpenInPlace | FsOp::WriteInPlace | FsOp::SyncInPlace);
    let (fragment, nth) = match (target, step) {
        // Records exist from the first write on and are then updated in place (FORMAT.md);
        // data files are always replaced through a temp file.
        (Target::CsvRecord | Target::ParquetRecord, _) if !record_step => return None,
        (Target::Csv | Target::Parquet, _) if record_step => return None,
        // The data directory is fsynced once per data file: CSV first, then Parquet.
        (Target::Csv, FsOp::FsyncDir) => (data_dir, 1),
        (Target::Parquet, FsOp::FsyncDir) => (data_dir, 2),
        // The third version swaps the second out of `.backup` (RENAME_EXCHANGE, a `Recycle`
        // step), so a data file's one rename is its temp file's, over the data file.
        (Target::Csv, _) => (".csv".to_string(), 1),
        (Target::Parquet, _) => (".parquet".to_string(), 1),
        (Target::CsvRecord, _) => (".barvault/meta".to_string(), 1),
        (Target::ParquetRecord, _) => (".barvault/meta".to_string(), 2),
    };
    Some(Fault::once(step, nth, errno).on_paths_containing(fragment))
}

struct Store {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    fs: FaultyFs,
    vault: Vault,
}

async fn store_with_two_versions() -> Store {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("store");
    let fs = FaultyFs::real();
    let vault =
        StorageFactory::open_with_fs(&StorageConfig::with_output_directory(&base), Arc::new(fs.clone())).unwrap();
    for tag in [1, 2] {
        persist(&vault, tag).await.unwrap();
    }
    Store { _tmp: tmp, base, fs, vault }
}

async fn persist(vault: &Vault, tag: u32) -> Result<barvault::PersistOutcome, barvault::StorageError> {
    vault
        .manager()
        .persist_with_backup(
            &bars(tag),
            &series(),
            PersistOptions::default(),
            ValidationPolicy::Strict,
            &OpContext::new(),
        )
        .await
}

async fn load(vault: &Vault) -> Bars {
    vault.manager().load_with_fallback(&series(), None, &OpContext::new()).await.unwrap().unwrap()
}

fn merged(tags: &[u32]) -> Bars {
    let mut acc = Bars::empty();
    for t in tags {
        acc = barvault::domain::merge(&acc, &bars(*t), MergePolicy::KeepLast).unwrap().0;
    }
    acc
}

fn file_bars(path: &Path) -> Bars {
    let file = std::fs::File::open(path).unwrap();
    let raw = if path.extension().is_some_and(|e| e == "parquet") {
        barvault::ParquetCodec::default().decode(CodecInput::File(file), barvault::ports::Rows::All).map(|d| d.raw)
    } else {
        CsvCodec.decode(CodecInput::File(file), barvault::ports::Rows::All).map(|d| d.raw)
    };
    raw.unwrap().into_bars(MergePolicy::KeepLast).unwrap().0
}

const STEPS: [FsOp; 9] = [
    FsOp::CreateTemp,
    FsOp::WriteTemp,
    FsOp::FsyncTemp,
    FsOp::BackupLink,
    FsOp::Rename,
    FsOp::FsyncDir,
    FsOp::OpenInPlace,
    FsOp::WriteInPlace,
    FsOp::SyncInPlace,
];

/// Runs one fault case; returns the faults injected.
async fn case(target: Target, step: FsOp, errno: i32, repair_by_recover: bool) -> Option<u64> {
    let s = store_with_two_versions().await;
    let fault = fault_for(target, step, errno, &s.base)?;
    let what = format!("{target:?} {step:?} errno {errno}");
    let previous = merged(&[1, 2]);
    let next = merged(&[1, 2, 3]);
    assert!(load(&s.vault).await == previous);
    let before = s.fs.injected();
    s.fs.inject(fault);
    let result = persist(&s.vault, 3).await;
    s.fs.clear();
    let injected = s.fs.injected() - before;
    assert_eq!(injected, 1, "{what}: the fault was never reached");
    let step_name = if target.is_secondary() || target == Target::CsvRecord { None } else { Some(step.to_string()) };
    let os = format!("os error {errno}");
    assert!(temp_files(&s.base).is_empty(), "{what}: temp files left: {:?}", temp_files(&s.base));
    common::assert_every_data_file_parses(&s.base);
    let parquet = s.base.join("stocks/1m/FAULT.parquet");
    match target {
        Target::Csv | Target::CsvRecord => {
            let e = result.expect_err(&what).to_string();
            if let Some(step_name) = step_name {
                assert!(e.contains(&step_name), "{what}: error does not name the step: {e}");
            } else {
                assert!(e.contains("write metadata"), "{what}: {e}");
            }
            assert!(e.contains(&os), "{what}: error does not name the OS error: {e}");
            let path_part = if target == Target::Csv {
                if step == FsOp::FsyncDir { "stocks/1m".to_string() } else { "FAULT.csv".to_string() }
            } else {
                ".barvault/meta".to_string()
            };
            assert!(e.contains(&path_part), "{what}: error does not name the path: {e}");
            // An error means "not stored": the previous version is what is served, and the
            // Parquet copy was not touched. (A record's slot that failed to be written or
            // synced is put back as it was, so this holds for record faults too.)
            let served = load(&s.vault).await;
            assert!(served == previous, "{what}: load no longer serves the previous version");
            assert!(file_bars(&parquet) == previous, "{what}: the Parquet copy changed");
        }
        Target::Parquet | Target::ParquetRecord => {
            let outcome = result.unwrap_or_else(|e| panic!("{what}: a secondary fault failed the call: {e}"));
            match &outcome.receipt.secondary {
                Some(SecondaryStatus::Failed { error, .. }) => {
                    assert!(error.contains(&os), "{what}: {error}");
                    if target == Target::Parquet {
                        assert!(error.contains(&step.to_string()), "{what}: error does not name the step: {error}");
                    }
                }
                other => panic!("{what}: secondary status {other:?}"),
            }
            // The primary committed the new version; the Parquet file holds the previous one
            // unless the failed step came after its rename.
            assert!(load(&s.vault).await == next, "{what}: load does not serve the committed version");
            let after_rename = matches!(step, FsOp::FsyncDir) || target == Target::ParquetRecord;
            let expect = if after_rename { &next } else { &previous };
            assert!(file_bars(&parquet) == *expect, "{what}: unexpected Parquet content");
            // The copies now disagree and `verify` says so.
            let report = s.vault.verify(Scope::All, false).await.unwrap();
            assert!(!report.is_clean(), "{what}: verify does not see the failed secondary");
        }
    }
    // Repair: `recover` (which must keep serving what was served), or the next persist.
    let served = load(&s.vault).await;
    let expected_after = if repair_by_recover {
        let r = s.vault.recover(Scope::All).await.unwrap();
        assert!(r.unrecoverable.is_empty(), "{what}: {:?}", r.unrecoverable);
        served
    } else {
        persist(&s.vault, 3).await.unwrap_or_else(|e| panic!("{what}: next persist: {e}"));
        next.clone()
    };
    let report = s.vault.verify(Scope::All, true).await.unwrap();
    assert!(report.is_clean(), "{what}: after repair: {:?}", report.issues);
    assert!(load(&s.vault).await == expected_after, "{what}: after repair the content is wrong");
    assert!(file_bars(&parquet) == expected_after, "{what}: after repair the Parquet copy is wrong");
    Some(injected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_step_of_a_persist_keeps_the_previous_version() {
    let errnos = [ENOSPC, EIO, EACCES];
    let mut injected = 0;
    let mut cases = 0;
    for (ti, target) in [Target::Csv, Target::Parquet, Target::CsvRecord, Target::ParquetRecord].into_iter().enumerate()
    {
        for (si, step) in STEPS.into_iter().enumerate() {
            let chosen: Vec<i32> = if slow() { errnos.to_vec() } else { vec![errnos[(ti + si) % 3]] };
            for (ei, errno) in chosen.into_iter().enumerate() {
                if let Some(n) = case(target, step, errno, (si + ei) % 2 == 0).await {
                    injected += n;
                    cases += 1;
                }
            }
        }
    }
    println!(
        "reliability_faults: {cases} fault cases, {injected} faults injected, previous version intact in every one"
    );
    assert!(cases >= 18);
}

/// Recycling (swapping the old backup out, emptying it into the spare, reusing the spare)
/// is an optimisation: when any of its steps fails, persists still succeed, both copies
/// hold every version, and `verify` is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_recycling_never_fails_a_persist() {
    let mut injected = 0;
    for errno in [ENOSPC, EIO, EACCES] {
        for persistent in [false, true] {
            let s = store_with_two_versions().await;
            for nth in 1..=3 {
                let fault = if persistent { Fault::from_nth } else { Fault::once }(FsOp::Recycle, nth, errno);
                s.fs.inject(fault);
                for tag in [3, 4] {
                    persist(&s.vault, tag).await.unwrap_or_else(|e| panic!("#{nth} errno {errno}: {e}"));
                }
                s.fs.clear();
                assert!(load(&s.vault).await == merged(&[1, 2, 3, 4]));
                let report = s.vault.verify(Scope::All, true).await.unwrap();
                assert!(report.is_clean(), "#{nth} errno {errno}: {:?}", report.issues);
                assert!(temp_files(&s.base).is_empty(), "{:?}", temp_files(&s.base));
            }
            assert!(s.fs.injected() >= 3, "recycling faults never reached");
            injected += s.fs.injected();
        }
    }
    println!("reliability_faults: recycling: {injected} faults injected, every persist succeeded, verify clean");
}

/// A disk that stays full: every write fails until space is freed, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_stays_full_loses_nothing() {
    let s = store_with_two_versions().await;
    let previous = merged(&[1, 2]);
    let rounds = if slow() { 20 } else { 3 };
    for step in [FsOp::WriteTemp, FsOp::CreateTemp, FsOp::FsyncTemp] {
        s.fs.inject(Fault::from_nth(step, 1, ENOSPC));
        for _ in 0..rounds {
            let e = persist(&s.vault, 3).await.expect_err("a full disk must fail the write").to_string();
            assert!(e.contains("os error 28"), "{e}");
            assert!(load(&s.vault).await == previous);
            assert!(temp_files(&s.base).is_empty(), "{:?}", temp_files(&s.base));
        }
        s.fs.clear();
        assert!(s.vault.verify(Scope::All, true).await.unwrap().is_clean());
    }
    println!("reliability_faults: persistent ENOSPC: {} faults injected, nothing lost", s.fs.injected());
    persist(&s.vault, 3).await.unwrap();
    assert!(load(&s.vault).await == merged(&[1, 2, 3]));
    assert!(s.vault.verify(Scope::All, true).await.unwrap().is_clean());
}
