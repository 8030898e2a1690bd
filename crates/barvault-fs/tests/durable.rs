//! write_atomic under injected failures at every step, backups as hard links, and layout
//! path safety.

// StorageError is the ports' type; see the note in the crate root.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use barvault_domain::{Instrument, InstrumentKind, Period, SeriesKey};
use barvault_fs::FsOp;
use barvault_fs::{Fault, FaultyFs, Fs, Layout, RealFs, WriteOutcome, parse_temp_name, remove_durable, write_atomic};
use barvault_ports::{CodecError, IoStep, StorageError};
use md5::{Digest, Md5};

/// The MD5 of `bytes` by `md-5` itself, lower-case hex.
fn md5_of(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

const ERRNOS: [i32; 3] = [libc::ENOSPC, libc::EIO, libc::EACCES];

/// Steps a write can make, in the order write_atomic makes them.
const STEPS: [FsOp; 8] = [
    FsOp::Stat,
    FsOp::CreateDir,
    FsOp::CreateTemp,
    FsOp::WriteTemp,
    FsOp::FsyncTemp,
    FsOp::BackupLink,
    FsOp::Rename,
    FsOp::FsyncDir,
];

/// `size` bytes that name their version on every line.
fn version_bytes(version: u32, size: usize) -> Vec<u8> {
    let line = format!("version {version:04}\n");
    line.as_bytes().iter().copied().cycle().take(size.max(line.len())).collect()
}

fn put(fs: &dyn Fs, target: &Path, keep: bool, bytes: &[u8]) -> Result<WriteOutcome, StorageError> {
    // Small chunks, as a codec writes, so the buffered writer flushes several times.
    write_atomic(fs, target, keep, |w| bytes.chunks(1000).try_for_each(|c| w.write_all(c)).map_err(CodecError::Io))
}

fn temps_in(dir: &Path) -> Vec<String> {
    common::names_in(dir).into_iter().filter(|n| parse_temp_name(n).is_some()).collect()
}

fn read(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

fn backup_of(target: &Path) -> PathBuf {
    barvault_fs::backup_path_of(target)
}

/// Which step the error must name when call `nth` of `step` fails.
fn expected_step(step: FsOp, nth: u64, backup_rename_first: bool) -> IoStep {
    match step {
        FsOp::Rename if backup_rename_first && nth == 1 => IoStep::BackupLink,
        s => s.step(),
    }
}

/// A clean run of the scenario, counting calls per step.
fn count_calls(setup: &dyn Fn(&Path) -> PathBuf, keep: bool, new: &[u8]) -> Vec<(FsOp, u64)> {
    count_calls_on(FaultyFs::real(), setup, keep, new)
}

fn count_calls_on(faulty: FaultyFs, setup: &dyn Fn(&Path) -> PathBuf, keep: bool, new: &[u8]) -> Vec<(FsOp, u64)> {
    let dir = tempfile::tempdir().unwrap();
    let target = setup(dir.path());
    put(&faulty, &target, keep, new).expect("clean run");
    STEPS.iter().map(|&s| (s, faulty.calls(s))).collect()
}

/// A filesystem on which every recycling step fails as unsupported (no `RENAME_EXCHANGE`,
/// no spares): writes then take the path without spares.
fn without_recycling() -> FaultyFs {
    FaultyFs::real().with_fault(Fault::from_nth(FsOp::Recycle, 1, libc::EOPNOTSUPP))
}

#[test]
fn every_failing_step_keeps_the_previous_version() {
    let v0 = version_bytes(0, 1000);
    let v1 = version_bytes(1, 3000);
    let v2 = version_bytes(2, 300_000); // several buffered writes
    let existing = |dir: &Path| {
        let target = dir.join("stocks/1d/AAPL.bvt");
        put(&RealFs, &target, true, &v0).unwrap();
        put(&RealFs, &target, true, &v1).unwrap();
        target
    };
    let mut cases = 0;
    // With recycling, the existing backup is swapped out by RENAME_EXCHANGE (a `Recycle`
    // step) and the only rename is the target's; without it, the backup is renamed over.
    for (keep, recycling) in [(true, true), (true, false), (false, true)] {
        let fs = || if recycling { FaultyFs::real() } else { without_recycling() };
        let counts = count_calls_on(fs(), &existing, keep, &v2);
        assert!(counts.iter().any(|&(s, n)| s == FsOp::WriteTemp && n >= 3), "{counts:?}");
        for &(step, calls) in &counts {
            for nth in 1..=calls {
                for errno in ERRNOS {
                    cases += 1;
                    let dir = tempfile::tempdir().unwrap();
                    let target = existing(dir.path());
                    let series_dir = target.parent().unwrap().to_path_buf();
                    let faulty = fs().with_fault(Fault::once(step, nth, errno));
                    let label = format!("{step:?} #{nth} errno {errno} keep_backup={keep} recycling={recycling}");
                    let err = put(&faulty, &target, keep, &v2).expect_err(&label);
                    let unsupported = if recycling { 0 } else { faulty.calls(FsOp::Recycle) };
                    assert_eq!(faulty.injected() - unsupported, 1, "{label}");
                    let StorageError::Io { step: named, path, source } = &err else {
                        panic!("{label}: not an Io error: {err:?}");
                    };
                    assert_eq!(source.raw_os_error(), Some(errno), "{label}: {err}");
                    assert_eq!(*named, expected_step(step, nth, keep && !recycling), "{label}: {err}");
                    match named {
                        IoStep::CreateTemp | IoStep::WriteTemp | IoStep::FsyncTemp => {
                            let name = path.file_name().unwrap().to_str().unwrap();
                            assert_eq!(parse_temp_name(name).map(|t| t.0), Some("AAPL.bvt".into()), "{label}");
                            assert_eq!(path.parent(), Some(series_dir.as_path()), "{label}");
                        }
                        IoStep::Rename => assert_eq!(path, &target, "{label}"),
                        IoStep::BackupLink => assert_eq!(path, &backup_of(&target), "{label}"),
                        IoStep::FsyncDir => assert_eq!(path, &series_dir, "{label}"),
                        // The directory, or the target examined for a planted link before its backup.
                        IoStep::Stat => assert!(path == &series_dir || path == &target, "{label}"),
                        other => panic!("{label}: unexpected step {other:?}"),
                    }
                    assert!(err.to_string().contains(&path.display().to_string()), "{label}: message lacks path");
                    assert!(temps_in(&series_dir).is_empty(), "{label}: temp left: {:?}", temps_in(&series_dir));
                    let backup = read(&backup_of(&target));
                    if *named == IoStep::FsyncDir {
                        // The rename happened; only its durability is in doubt. The new version
                        // is in place and the previous one is the backup.
                        assert_eq!(read(&target), Some(v2.clone()), "{label}");
                        let prev = if keep { &v1 } else { &v0 };
                        assert_eq!(backup.as_ref(), Some(prev), "{label}");
                    } else {
                        assert_eq!(read(&target), Some(v1.clone()), "{label}: target changed");
                        assert!(backup == Some(v0.clone()) || (keep && backup == Some(v1.clone())), "{label}");
                    }
                }
            }
        }
    }
    assert!(cases >= 3 * 7 * 3, "only {cases} cases ran");
}

#[test]
fn failures_creating_a_new_series_leave_nothing() {
    let new = version_bytes(7, 100_000);
    let fresh = |dir: &Path| dir.join("base/forex/5m/EURUSD.bvt");
    let counts = count_calls(&fresh, true, &new);
    assert!(counts.iter().any(|&(s, n)| s == FsOp::CreateDir && n == 1), "{counts:?}");
    for (step, calls) in counts {
        for nth in 1..=calls {
            for errno in ERRNOS {
                let dir = tempfile::tempdir().unwrap();
                let target = fresh(dir.path());
                let faulty = FaultyFs::real().with_fault(Fault::once(step, nth, errno));
                let err = put(&faulty, &target, true, &new).expect_err("fault must fail the write");
                let label = format!("{step:?} #{nth} errno {errno}: {err}");
                assert!(
                    matches!(&err, StorageError::Io { source, .. } if source.raw_os_error() == Some(errno)),
                    "{label}"
                );
                if step == FsOp::FsyncDir && nth == calls {
                    assert_eq!(read(&target), Some(new.clone()), "{label}");
                } else {
                    assert_eq!(read(&target), None, "{label}");
                }
                assert_eq!(read(&backup_of(&target)), None, "{label}");
                if let Some(parent) = target.parent() {
                    assert!(temps_in(parent).is_empty(), "{label}");
                }
            }
        }
    }
}

#[test]
fn backup_is_a_hard_link_to_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("stocks/1d/MSFT.bvt");
    let first = put(&RealFs, &target, true, b"first\n").unwrap();
    assert!(!first.backup_created);
    let old_inode = std::fs::metadata(&target).unwrap().ino();
    let second = put(&RealFs, &target, true, b"second\n").unwrap();
    assert!(second.backup_created);
    let backup = std::fs::metadata(backup_of(&target)).unwrap();
    assert_eq!(backup.ino(), old_inode, "backup is not the old inode");
    assert_ne!(std::fs::metadata(&target).unwrap().ino(), old_inode);
    assert_eq!(read(&backup_of(&target)).unwrap(), b"first\n");
    assert_eq!(read(&target).unwrap(), b"second\n");
    // Without keep_backup the backup is left alone.
    let third = put(&RealFs, &target, false, b"third\n").unwrap();
    assert!(!third.backup_created);
    assert_eq!(read(&backup_of(&target)).unwrap(), b"first\n");
    assert!(temps_in(target.parent().unwrap()).is_empty());
}

#[test]
fn outcome_reports_size_and_md5_of_the_bytes_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("a/B.bvt");
    let bytes = version_bytes(3, 200_001);
    let out = put(&RealFs, &target, true, &bytes).unwrap();
    let on_disk = std::fs::read(&target).unwrap();
    assert_eq!(out.size, on_disk.len() as u64);
    assert_eq!(out.md5_hex, md5_of(&on_disk));
    assert_eq!(out.md5_hex.len(), 32);
}

#[test]
fn codec_errors_abort_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("stocks/1d/IBM.bvt");
    put(&RealFs, &target, true, b"kept\n").unwrap();
    let err = write_atomic(&RealFs, &target, true, |w| {
        w.write_all(&[b'x'; 100_000]).map_err(CodecError::Io)?;
        Err(CodecError::Corrupt("cannot encode".into()))
    })
    .unwrap_err();
    assert!(matches!(&err, StorageError::Corrupt { path, .. } if path == &target), "{err:?}");
    assert_eq!(read(&target).unwrap(), b"kept\n");
    assert!(temps_in(target.parent().unwrap()).is_empty());
}

#[test]
fn a_codec_that_swallows_a_write_error_still_fails() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("X.bvt");
    put(&RealFs, &target, true, b"kept\n").unwrap();
    let faulty = FaultyFs::real().with_fault(Fault::once(FsOp::WriteTemp, 1, libc::ENOSPC));
    let err = write_atomic(&faulty, &target, true, |w| {
        let _ignored = w.write_all(&[b'y'; 200_000]);
        Ok(())
    })
    .unwrap_err();
    assert!(matches!(&err, StorageError::Io { step: IoStep::WriteTemp, .. }), "{err:?}");
    assert_eq!(read(&target).unwrap(), b"kept\n");
}

#[test]
fn persistent_faults_and_path_filters() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = FaultyFs::new(Arc::new(RealFs))
        .with_fault(Fault::from_nth(FsOp::CreateTemp, 2, libc::ENOSPC).on_paths_containing("meta"));
    for i in 0..3 {
        put(&faulty, &dir.path().join(format!("data{i}.bvt")), true, b"d").unwrap();
    }
    // Without a backup, so without a spare: every write of meta.json creates its temp file.
    put(&faulty, &dir.path().join("meta.json"), false, b"m").unwrap();
    for _ in 0..2 {
        let err = put(&faulty, &dir.path().join("meta.json"), false, b"m2").unwrap_err();
        assert!(matches!(err, StorageError::Io { step: IoStep::CreateTemp, .. }));
    }
    assert_eq!(faulty.injected(), 2);
    faulty.clear();
    put(&faulty, &dir.path().join("meta.json"), false, b"m3").unwrap();
    assert_eq!(read(&dir.path().join("meta.json")).unwrap(), b"m3");
}

#[test]
fn remove_durable_reports_existence() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("Q.bvt");
    put(&RealFs, &target, false, b"q").unwrap();
    assert!(remove_durable(&RealFs, &target).unwrap());
    assert!(!target.exists());
    assert!(!remove_durable(&RealFs, &target).unwrap());
    put(&RealFs, &target, false, b"q").unwrap();
    let faulty = FaultyFs::real().with_fault(Fault::once(FsOp::Remove, 1, libc::EACCES));
    assert!(matches!(remove_durable(&faulty, &target), Err(StorageError::Io { step: IoStep::Remove, .. })));
    assert!(target.exists());
}

#[test]
fn hostile_symbols_never_reach_the_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    std::fs::create_dir(&base).unwrap();
    let store = common::store(&base);
    for bad in ["../x", "a/b", "..", ".", "a\0b", "/etc/passwd", "..\\x", ".hidden", "", "a b"] {
        for kind in InstrumentKind::ALL {
            match Instrument::new(kind, bad) {
                // A forex pair drops '.' and '/' ("EUR/USD"): what remains must be six letters.
                Ok(i) if kind == InstrumentKind::Forex => {
                    let sym = i.symbol().as_str();
                    assert!(sym.len() == 6 && sym.bytes().all(|b| b.is_ascii_uppercase()), "{bad:?} -> {sym}");
                }
                Ok(i) => panic!("{kind} {bad:?} accepted as {i}"),
                Err(_) => {}
            }
        }
        let json = serde_json::json!({"instrument": {"kind": "stock", "symbol": bad}, "period": "1d"});
        assert!(serde_json::from_value::<SeriesKey>(json).is_err(), "{bad:?} deserialized");
    }
    // Every path the store derives stays under the base.
    let ok = SeriesKey::new(Instrument::stock("BRK.B").unwrap(), Period::D1);
    assert!(store.path_of(&ok).starts_with(&base));
    assert_eq!(common::names_in(&base), Vec::<String>::new(), "base dir was touched");
}

#[test]
fn layout_builds_and_parses_only_canonical_paths() {
    let layout = Layout::new("/data", "bvt").unwrap();
    let s = SeriesKey::new(Instrument::stock("brk.b").unwrap(), Period::Mo1);
    assert_eq!(layout.data_path(&s), Path::new("/data/stocks/1M/BRK.B.bvt"));
    assert_eq!(layout.backup_path(&s), Path::new("/data/stocks/1M/BRK.B.bvt.backup"));
    assert_eq!(layout.series_lock_path(&s), Path::new("/data/stocks/1M/.BRK.B.lock"));
    assert_eq!(layout.relative_path(&s), "stocks/1M/BRK.B.bvt");
    assert_eq!(layout.parse(Path::new("stocks/1M/BRK.B.bvt")), Some((s.clone(), "bvt".into())));
    assert_eq!(layout.parse(Path::new("stocks/1M/BRK.B.csv")), Some((s, "csv".into())));
    let fx = layout.parse(Path::new("forex/5m/EURUSD.parquet")).unwrap();
    assert_eq!(fx.0.instrument.kind(), InstrumentKind::Forex);
    for bad in [
        "stocks/1M/brk.b.bvt",
        "stocks/1D/AAPL.bvt",
        "stock/1d/AAPL.bvt",
        "stocks/1d/../AAPL.bvt",
        "stocks/1d/.AAPL.bvt",
        "stocks/1d/AAPL",
        "stocks/1d/AAPL.BVT",
        "stocks/1d/AAPL.bvt.backup",
        "stocks/1d/x/AAPL.bvt",
        "forex/1d/EUR.bvt",
        "stocks/1d",
    ] {
        assert_eq!(layout.parse(Path::new(bad)), None, "{bad}");
    }
    for ext in ["", "CSV", "1csv", "c/v", "a.b", "toolongextension17"] {
        assert!(Layout::new("/data", ext).is_err(), "{ext:?}");
    }
}

#[test]
fn scan_classifies_data_backups_temps_and_locks() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path(), "bvt").unwrap();
    let a = SeriesKey::new(Instrument::stock("AAPL").unwrap(), Period::D1);
    let g = SeriesKey::new(Instrument::future("GC", None).unwrap(), Period::H1);
    put(&RealFs, &layout.data_path(&a), true, b"1").unwrap();
    put(&RealFs, &layout.data_path(&a), true, b"2").unwrap();
    put(&RealFs, &layout.data_path(&g), true, b"3").unwrap();
    let d = layout.series_dir(&a);
    std::fs::write(d.join(".AAPL.bvt.tmp.4242.0123456789abcdef"), b"partial").unwrap();
    std::fs::write(layout.series_dir(&a).join(".AAPL.bvt.lock"), b"").unwrap();
    std::fs::write(layout.series_lock_path(&a), b"").unwrap();
    std::fs::write(d.join("notes.txt"), b"").unwrap();
    std::fs::write(d.join("aapl.bvt"), b"").unwrap();
    std::fs::create_dir_all(dir.path().join("bonds/1d")).unwrap();
    std::fs::write(dir.path().join("bonds/1d/X.bvt"), b"").unwrap();
    let scan = layout.scan(&RealFs).unwrap();
    let data: Vec<_> = scan.data.iter().map(|f| (f.series.clone(), f.ext.as_str(), f.size)).collect();
    assert_eq!(data, vec![(g.clone(), "bvt", 1), (a.clone(), "bvt", 1)]);
    assert_eq!(scan.backups.len(), 1);
    assert_eq!(scan.backups[0].series, a);
    assert_eq!(scan.temps.len(), 1);
    assert_eq!((scan.temps[0].target_name.as_str(), scan.temps[0].pid), ("AAPL.bvt", Some(4242)));
    let locks: Vec<_> = scan.locks.iter().map(|l| (l.series.clone(), l.ext.clone())).collect();
    assert_eq!(locks, vec![(a.clone(), Some("bvt".into())), (a, None)]);
    let empty = Layout::new(dir.path().join("missing"), "bvt").unwrap().scan(&RealFs).unwrap();
    assert_eq!(empty, barvault_fs::Scan::default());
}

/// `stage_atomic` leaves the target untouched with one fsynced temp file beside it;
/// `discard` removes it; `commit` publishes it exactly as `write_atomic` would; a commit
/// that fails at the rename keeps the previous version and removes the temp file.
#[test]
fn staged_files_are_invisible_until_commit() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("stocks/1d/AAPL.bvt");
    let (v0, v1) = (version_bytes(0, 2000), version_bytes(1, 5000));
    put(&RealFs, &target, true, &v0).unwrap();
    let stage = |fs: &dyn Fs, bytes: &[u8]| {
        barvault_fs::stage_atomic(fs, &target, |w| w.write_all(bytes).map_err(CodecError::Io)).unwrap()
    };
    let parent = target.parent().unwrap();

    let staged = stage(&RealFs, &v1);
    assert_eq!(read(&target), Some(v0.clone()), "staging touched the target");
    assert_eq!(temps_in(parent).len(), 1, "one temp file while staged");
    assert_eq!(staged.size(), v1.len() as u64);
    assert_eq!(staged.md5_hex(), md5_of(&v1));
    staged.discard(&RealFs);
    assert_eq!(temps_in(parent), Vec::<String>::new(), "discard left a temp file");
    assert_eq!(read(&target), Some(v0.clone()));

    let faulty = FaultyFs::real();
    let staged = stage(&faulty, &v1);
    // No backup yet: it is linked straight to `.backup`, and the only rename publishes.
    faulty.inject(Fault::once(FsOp::Rename, 1, libc::EIO));
    let err = staged.commit(&faulty, true).unwrap_err();
    assert!(matches!(err, StorageError::Io { step: IoStep::Rename, .. }), "{err:?}");
    assert_eq!(read(&target), Some(v0.clone()), "a failed commit changed the target");
    assert_eq!(temps_in(parent), Vec::<String>::new(), "a failed commit left its temp file");

    let staged = stage(&RealFs, &v1);
    let md5 = staged.md5_hex().to_string();
    let outcome = staged.commit(&RealFs, true).unwrap();
    let WriteOutcome { size, md5_hex, fingerprint, backup_created } = outcome;
    assert_eq!((size, md5_hex, backup_created), (v1.len() as u64, md5, true));
    assert_eq!(fingerprint.crc32, crc32fast::hash(&v1), "the fingerprint is the CRC-32 of the bytes written");
    assert_eq!(read(&target), Some(v1));
    assert_eq!(read(&backup_of(&target)), Some(v0));
    assert_eq!(temps_in(parent), Vec::<String>::new());
}

/// An unrecorded write (an export) replaces the file just as atomically, keeps no
/// `.backup` and leaves no temp file, even when its rename fails.
#[test]
fn unrecorded_writes_replace_atomically_without_backup() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.csv");
    let (v0, v1) = (version_bytes(0, 1500), version_bytes(1, 70_000));
    let write = |fs: &dyn Fs, bytes: &[u8]| {
        barvault_fs::write_atomic_unrecorded(fs, &target, |w| w.write_all(bytes).map_err(CodecError::Io))
    };
    assert_eq!(write(&RealFs, &v0).unwrap(), v0.len() as u64);
    let faulty = FaultyFs::real().with_fault(Fault::once(FsOp::Rename, 1, libc::EIO));
    assert!(matches!(write(&faulty, &v1), Err(StorageError::Io { step: IoStep::Rename, .. })));
    assert_eq!(read(&target), Some(v0));
    assert_eq!(write(&RealFs, &v1).unwrap(), v1.len() as u64);
    assert_eq!(read(&target), Some(v1));
    assert_eq!(read(&backup_of(&target)), None, "an export keeps no backup");
    assert_eq!(temps_in(dir.path()), Vec::<String>::new());
}

fn spare_of(target: &Path) -> PathBuf {
    barvault_fs::spare_path_in(target.parent().unwrap(), target.file_name().unwrap().to_str().unwrap())
}

fn ino(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// Updates allocate no inode: a series' first write leaves an empty spare, the next write
/// fills it, and from then on each write's old backup is emptied into the spare that the
/// following write fills. Every version is where it belongs at every step.
#[test]
fn writes_recycle_the_old_backup_as_the_next_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("stocks/1d/SPR.bvt");
    let spare = spare_of(&target);
    let v: Vec<Vec<u8>> = (0..4).map(|i| version_bytes(i, 5000 + 1000 * i as usize)).collect();

    put(&RealFs, &target, true, &v[0]).unwrap();
    let a = ino(&target);
    assert_eq!(std::fs::metadata(&spare).unwrap().len(), 0, "the first write leaves an empty spare");
    let s = ino(&spare);

    put(&RealFs, &target, true, &v[1]).unwrap();
    assert_eq!((ino(&target), ino(&backup_of(&target))), (s, a), "the spare became the new version");
    assert!(!spare.exists(), "no old backup to recycle yet");

    put(&RealFs, &target, true, &v[2]).unwrap();
    let t = ino(&target);
    assert_eq!((ino(&backup_of(&target)), ino(&spare)), (s, a), "the old backup's inode is the spare");
    assert_eq!(std::fs::metadata(&spare).unwrap().len(), 0, "a recycled backup is emptied");

    put(&RealFs, &target, true, &v[3]).unwrap();
    assert_eq!((ino(&target), ino(&backup_of(&target)), ino(&spare)), (a, t, s));
    assert_eq!(read(&target), Some(v[3].clone()));
    assert_eq!(read(&backup_of(&target)), Some(v[2].clone()));
    assert_eq!(std::fs::metadata(&spare).unwrap().len(), 0);
    assert!(temps_in(target.parent().unwrap()).is_empty());
}

/// A spare or an old backup that shares its inode with another name (a user's hard link,
/// or a backup left naming the target by a killed write), or that is a symbolic link, is
/// never emptied or written: the write creates its temp file instead (or unlinks the old
/// backup's name), and every other file keeps its bytes.
#[test]
fn inodes_with_other_names_are_never_recycled() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("stocks/1d/LNK.bvt");
    let (spare, backup) = (spare_of(&target), backup_of(&target));
    let precious = dir.path().join("precious");
    let v: Vec<Vec<u8>> = (0..4).map(|i| version_bytes(i, 3000)).collect();

    // A spare hard-linked elsewhere.
    put(&RealFs, &target, true, &v[0]).unwrap();
    std::fs::write(&precious, b"keep me\n").unwrap();
    std::fs::remove_file(&spare).unwrap();
    std::fs::hard_link(&precious, &spare).unwrap();
    put(&RealFs, &target, true, &v[1]).unwrap();
    assert_eq!(read(&precious).unwrap(), b"keep me\n");
    assert_ne!(ino(&target), ino(&precious));
    assert_eq!((read(&target), read(&backup)), (Some(v[1].clone()), Some(v[0].clone())));

    // An old backup hard-linked elsewhere.
    std::fs::remove_file(&precious).unwrap();
    std::fs::hard_link(&backup, &precious).unwrap();
    put(&RealFs, &target, true, &v[2]).unwrap();
    assert_eq!(read(&precious), Some(v[0].clone()), "the old backup's other name was emptied");
    assert_eq!((read(&target), read(&backup)), (Some(v[2].clone()), Some(v[1].clone())));

    // A spare, then an old backup, that is a symbolic link to another file.
    std::fs::remove_file(&precious).unwrap();
    std::fs::write(&precious, b"keep me too\n").unwrap();
    std::os::unix::fs::symlink(&precious, &spare).unwrap();
    put(&RealFs, &target, true, &v[0]).unwrap();
    assert_eq!(read(&precious).unwrap(), b"keep me too\n", "a symlinked spare was followed");
    assert_eq!((read(&target), read(&backup)), (Some(v[0].clone()), Some(v[2].clone())));
    std::fs::remove_file(&backup).unwrap();
    std::os::unix::fs::symlink(&precious, &backup).unwrap();
    put(&RealFs, &target, true, &v[2]).unwrap();
    assert_eq!(read(&precious).unwrap(), b"keep me too\n", "a symlinked backup was followed");
    assert!(!std::fs::symlink_metadata(&spare).is_ok_and(|m| m.file_type().is_symlink()), "a symlink became the spare");
    assert_eq!((read(&target), read(&backup)), (Some(v[2].clone()), Some(v[0].clone())));

    // A backup that names the target's own inode.
    std::fs::remove_file(&backup).unwrap();
    std::fs::hard_link(&target, &backup).unwrap();
    put(&RealFs, &target, true, &v[3]).unwrap();
    assert_eq!((read(&target), read(&backup)), (Some(v[3].clone()), Some(v[2].clone())));
    assert_eq!(read(&precious).unwrap(), b"keep me too\n");
    assert!(temps_in(target.parent().unwrap()).is_empty());
}

/// A failed recycling step never fails a write or loses a version: without a spare the
/// write creates its temp file, and without the exchange it renames over the backup.
#[test]
fn recycling_failures_never_fail_a_write() {
    let v: Vec<Vec<u8>> = (0..5).map(|i| version_bytes(i, 4000)).collect();
    let run = |fs: &FaultyFs, target: &Path| {
        for bytes in &v {
            put(fs, target, true, bytes).expect("a recycling fault failed a write");
        }
    };
    let clean = FaultyFs::real();
    let dir = tempfile::tempdir().unwrap();
    run(&clean, &dir.path().join("C.bvt"));
    let calls = clean.calls(FsOp::Recycle);
    assert!(calls >= 8, "only {calls} recycling calls");
    let mut cases = 0;
    for nth in 1..=calls {
        for errno in ERRNOS {
            for persistent in [false, true] {
                let fault = if persistent { Fault::from_nth } else { Fault::once }(FsOp::Recycle, nth, errno);
                let faulty = FaultyFs::real().with_fault(fault);
                let dir = tempfile::tempdir().unwrap();
                let target = dir.path().join("stocks/1d/C.bvt");
                run(&faulty, &target);
                assert!(faulty.injected() >= 1, "#{nth} never reached");
                assert_eq!(read(&target), Some(v[4].clone()), "#{nth} errno {errno}");
                assert_eq!(read(&backup_of(&target)), Some(v[3].clone()), "#{nth} errno {errno}");
                assert!(temps_in(target.parent().unwrap()).is_empty(), "#{nth} errno {errno}");
                cases += 1;
            }
        }
    }
    assert!(cases >= 8 * 3 * 2);
}
