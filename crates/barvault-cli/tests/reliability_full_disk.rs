//! A disk that is really full: a `tmpfs` of 1 MiB mounted by the test (skipped, with the
//! reason printed, where mounting is not allowed), holding a store of two series, then
//! filled to the last block by a filler file. Imports (a new series, a merge into an
//! existing one), `recover` and `cleanup` into it each fail with one `error:` line naming a
//! file of the store and the OS error (or have nothing to do), the previous version of
//! every series is served and verifies clean, no temp file is left, and once the filler is
//! removed the next import succeeds.

#[path = "reliability_common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Model, bv, code, err, export, merge_into, ok, row, temp_files, write_batch};

/// A mounted tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !o.status.success() {
            return Err(format!("mount failed: {}", String::from_utf8_lossy(&o.stderr).trim()));
        }
        Ok(Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn batch(dir: &Path, n: u32, len: i64) -> (PathBuf, Vec<(i64, common::Row)>) {
    let rows: Vec<(i64, common::Row)> = (i64::from(n) * 50..i64::from(n) * 50 + len).map(|m| (m, row(n, m))).collect();
    let path = dir.join(format!("batch{n}-{len}.csv"));
    write_batch(&path, &rows);
    (path, rows)
}

fn import(store: &Path, symbol: &str, file: &Path) -> std::process::Output {
    bv(store, &["import", "--type", "stock", "--symbol", symbol, "--period", "1m", file.to_str().unwrap()])
}

/// Writes into `filler` until the filesystem refuses a single byte more.
fn fill(filler: &Path) -> u64 {
    let mut f = std::fs::File::create(filler).expect("filler");
    let mut total = 0u64;
    for chunk in [65536usize, 4096, 512, 1] {
        let buf = vec![0x5au8; chunk];
        while f.write_all(&buf).is_ok() {
            total += chunk as u64;
        }
    }
    let _ = f.sync_all();
    total
}

#[test]
fn a_really_full_disk_fails_cleanly_and_recovers_once_freed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("mnt");
    let _fs = match Tmpfs::mount(&mnt, "1m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED a_really_full_disk_fails_cleanly_and_recovers_once_freed: {why}");
            return;
        }
    };
    let store = mnt.join("store");
    let mut models = [Model::new(), Model::new()];
    for (i, symbol) in ["AAA", "BBB"].iter().enumerate() {
        for n in [1, 2] {
            let (file, rows) = batch(dir.path(), n, 200);
            ok(import(&store, symbol, &file));
            merge_into(&mut models[i], &rows);
        }
    }
    let filler = mnt.join("filler");
    let filled = fill(&filler);
    let mut failures = Vec::new();
    let (big, _) = batch(dir.path(), 3, 4000);
    let (new_series, _) = batch(dir.path(), 4, 4000);
    type Run<'a> = (&'static str, Box<dyn Fn() -> std::process::Output + 'a>);
    let runs: Vec<Run<'_>> = vec![
        ("merge into AAA", Box::new(|| import(&store, "AAA", &big))),
        ("new series CCC", Box::new(|| import(&store, "CCC", &new_series))),
        ("recover", Box::new(|| bv(&store, &["recover", "--all"]))),
        // Last: a cleanup that succeeds removes the (old) bars, which changes the models.
        (
            "cleanup",
            Box::new(|| {
                common::retry_exec(|| {
                    common::cmd(&store)
                        .env("BARVAULT_RETENTION_DAYS", "1")
                        .args(["cleanup", "--force", "--confirm-removal"])
                        .output()
                })
            }),
        ),
    ];
    for (what, run) in &runs {
        let o = &run();
        let stderr = err(o);
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        if what.starts_with("merge") || what.starts_with("new") {
            assert_eq!(code(o), 1, "{what}: a full disk must fail the import: {stderr}");
        }
        if code(o) != 0 {
            let line = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default().to_string();
            assert!(line.contains(&store.display().to_string()), "{what}: the error names no store file: {stderr}");
            assert!(line.contains("No space left on device") || line.contains("os error 28"), "{what}: {stderr}");
            failures.push(format!("{what}: {line}"));
        }
        assert!(temp_files(&store).is_empty(), "{what}: temp files left: {:?}", temp_files(&store));
        if *what == "cleanup" && code(o) == 0 {
            eprintln!("  cleanup succeeded on the full disk (it only removes)");
            continue;
        }
        for (i, symbol) in ["AAA", "BBB"].iter().enumerate() {
            assert_eq!(export(&store, "stock", symbol, "1m").as_ref(), Ok(&models[i]), "{what}: {symbol}");
        }
    }
    let v = bv(&store, &["verify", "--all"]);
    assert_eq!(code(&v), 0, "verify on the full disk: {}{}", common::out(&v), err(&v));
    std::fs::remove_file(&filler).expect("free the space");
    ok(import(&store, "AAA", &big));
    ok(bv(&store, &["verify", "--all", "--deep"]));
    for f in &failures {
        eprintln!("  {f}");
    }
    eprintln!(
        "full tmpfs ({filled} filler bytes): {} command(s) failed cleanly, the next import succeeded",
        failures.len()
    );
}
