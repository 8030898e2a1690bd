//! A store directory someone else can write into: a symbolic link planted at a data file,
//! a `.backup`, a spare or temp file name, a lock file or a metadata record, pointing at a
//! file outside the store, is never read or written through. `verify` and `health` name
//! it; an import either replaces it (a data file or record: renamed over, the target never
//! touched, no backup kept of it) or refuses at once with an error naming the link; the
//! committed bars are served all along and, once `recover` ran (and a person removed the
//! links barvault leaves alone), `verify` is clean. A layout directory replaced by a link
//! is named by `health` and `verify` and refuses writes. Files and directories the store
//! creates honour the umask and are never writable by others.

#[path = "reliability_common/mod.rs"]
mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Model, bv, code, err, export, merge_into, ok, out, row, write_batch};

const SECRET: &str = "outside the store: never read, never written\n";

fn batch(dir: &Path, n: u32) -> (PathBuf, Vec<(i64, common::Row)>) {
    let rows: Vec<(i64, common::Row)> = (i64::from(n) * 10..i64::from(n) * 10 + 30).map(|m| (m, row(n, m))).collect();
    let path = dir.join(format!("batch{n}.csv"));
    write_batch(&path, &rows);
    (path, rows)
}

fn import(store: &Path, file: &Path) -> std::process::Output {
    bv(store, &["import", "--type", "stock", "--symbol", "SYM", "--period", "1m", file.to_str().unwrap()])
}

/// A store with two versions of `stock:SYM@1m` (so backups and spares exist), and its model.
fn two_versions(dir: &Path) -> (PathBuf, Model) {
    let store = dir.join("store");
    let mut model = Model::new();
    for n in [1, 2] {
        let (file, rows) = batch(dir, n);
        ok(import(&store, &file));
        merge_into(&mut model, &rows);
    }
    (store, model)
}

/// Every problem path `verify --all --json` and `health --json` report, with their exit codes.
fn reported(store: &Path) -> (i32, Vec<String>, i32, String) {
    let v = bv(store, &["verify", "--all", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out(&v)).unwrap_or_else(|e| panic!("{e}: {}", out(&v)));
    let paths = json["issues"]
        .as_array()
        .map(|a| a.iter().map(|i| i["path"].as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default();
    let h = bv(store, &["health"]);
    (code(&v), paths, code(&h), out(&h))
}

fn plant(link: &Path, target: &Path) {
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(link).expect("remove the real file");
    }
    std::fs::create_dir_all(link.parent().expect("parent")).expect("dirs");
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

fn is_link(p: &Path) -> bool {
    p.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink())
}

#[test]
fn planted_symlinks_are_named_and_never_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = dir.path().join("outside.txt");
    let victims = [
        "stocks/1m/SYM.csv",
        "stocks/1m/SYM.parquet",
        "stocks/1m/SYM.csv.backup",
        "stocks/1m/SYM.parquet.backup",
        "stocks/1m/.SYM.csv.spare",
        "stocks/1m/.SYM.parquet.spare",
        "stocks/1m/.SYM.csv.tmp.4242.0123456789abcdef",
        "stocks/1m/.SYM.lock",
        ".barvault/meta/stocks/1m/SYM.csv.meta",
        ".barvault/meta/stocks/1m/SYM.parquet.meta",
    ];
    let mut replaced = 0;
    let mut refused = 0;
    for (i, victim) in victims.iter().enumerate() {
        let case = dir.path().join(format!("case{i}"));
        std::fs::create_dir_all(&case).expect("case dir");
        let (store, mut model) = two_versions(&case);
        std::fs::write(&outside, SECRET).expect("outside file");
        let before = std::fs::metadata(&outside).expect("stat outside");
        let link = store.join(victim);
        plant(&link, &outside);
        let link_text = link.display().to_string();

        let (vcode, paths, hcode, health) = reported(&store);
        assert_eq!(vcode, 1, "{victim}: verify must report the link: {paths:?}");
        assert!(paths.contains(&link_text), "{victim}: verify names {paths:?}");
        assert_ne!(hcode, 0, "{victim}: health: {health}");
        assert!(health.contains(&link_text), "{victim}: health names it: {health}");
        assert_eq!(export(&store, "stock", "SYM", "1m").as_ref(), Ok(&model), "{victim}: export serves the bars");

        let (file, rows) = batch(&case, 3);
        let started = Instant::now();
        let o = import(&store, &file);
        assert!(started.elapsed() < Duration::from_secs(10), "{victim}: import took {:?}", started.elapsed());
        if code(&o) == 0 {
            merge_into(&mut model, &rows);
            replaced += 1;
        } else {
            assert_eq!(code(&o), 1, "{victim}: {}", err(&o));
            assert!(err(&o).contains(&link_text) && err(&o).contains("symbolic link"), "{victim}: {}", err(&o));
            refused += 1;
        }
        assert_eq!(std::fs::read_to_string(&outside).expect("outside"), SECRET, "{victim}: written through");
        let after = std::fs::metadata(&outside).expect("stat outside");
        assert_eq!((before.mtime(), before.mtime_nsec()), (after.mtime(), after.mtime_nsec()), "{victim}");
        assert!(!is_link(&store.join("stocks/1m/SYM.csv.backup")) || *victim == "stocks/1m/SYM.csv.backup");
        assert!(!is_link(&store.join("stocks/1m/SYM.parquet.backup")) || *victim == "stocks/1m/SYM.parquet.backup");

        ok(bv(&store, &["recover", "--all"]));
        if is_link(&link) {
            // Left for a person to look at; once removed, recover finishes the job.
            std::fs::remove_file(&link).expect("remove the link");
            ok(bv(&store, &["recover", "--all"]));
        }
        let (vcode, paths, _, _) = reported(&store);
        assert_eq!((vcode, paths.clone()), (0, Vec::new()), "{victim}: verify after recover");
        ok(bv(&store, &["verify", "--all", "--deep"]));
        assert_eq!(export(&store, "stock", "SYM", "1m").as_ref(), Ok(&model), "{victim}: bars after recover");
        assert_eq!(std::fs::read_to_string(&outside).expect("outside"), SECRET, "{victim}");
    }
    eprintln!("{} planted links: {replaced} replaced by an import, {refused} refused; none followed", victims.len());
}

/// Both the series lock and a lock file of the old per-format layout planted as links to
/// one outside file: the import fails at once naming the link, not after the lock timeout.
#[test]
fn planted_lock_links_fail_at_once_naming_the_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, model) = two_versions(dir.path());
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, SECRET).expect("outside file");
    for name in [".SYM.lock", ".SYM.csv.lock"] {
        plant(&store.join("stocks/1m").join(name), &outside);
    }
    let (file, _) = batch(dir.path(), 3);
    let started = Instant::now();
    let o = import(&store, &file);
    let took = started.elapsed();
    assert_eq!(code(&o), 1, "{}", err(&o));
    assert!(took < Duration::from_secs(5), "took {took:?}: {}", err(&o));
    assert!(err(&o).contains(".SYM.lock") && err(&o).contains("symbolic link"), "{}", err(&o));
    assert!(!err(&o).contains("locked by another writer"), "{}", err(&o));
    assert_eq!(std::fs::read_to_string(&outside).expect("outside"), SECRET);
    assert_eq!(export(&store, "stock", "SYM", "1m"), Ok(model));
    eprintln!("planted lock links refused in {took:?}");
}

/// A layout directory (the kind's or the period's) moved elsewhere and replaced by a link.
#[test]
fn a_layout_directory_replaced_by_a_link_is_named_and_not_written_through() {
    for layer in ["stocks", "stocks/1m"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = two_versions(dir.path());
        let elsewhere = dir.path().join("elsewhere");
        std::fs::rename(store.join(layer), &elsewhere).expect("move the directory away");
        std::os::unix::fs::symlink(&elsewhere, store.join(layer)).expect("symlink");
        let before = common::snapshot(&elsewhere);
        let link_text = store.join(layer).display().to_string();
        let (vcode, paths, hcode, health) = reported(&store);
        assert_eq!(vcode, 1, "{layer}: {paths:?}");
        assert!(paths.contains(&link_text), "{layer}: {paths:?}");
        assert_ne!(hcode, 0, "{layer}: {health}");
        assert!(health.contains(&link_text), "{layer}: {health}");
        let (file, _) = batch(dir.path(), 3);
        let o = import(&store, &file);
        assert_eq!(code(&o), 1, "{layer}: {}", err(&o));
        assert!(err(&o).contains(&link_text) && err(&o).contains("symbolic link"), "{layer}: {}", err(&o));
        assert_eq!(common::snapshot(&elsewhere), before, "{layer}: written through the link");
    }
}

/// Runs `barvault` with the umask `mask`.
fn with_umask(store: &Path, mask: libc::mode_t, args: &[&str]) -> std::process::Output {
    let mut c = common::cmd(store);
    c.args(args);
    // SAFETY: umask is async-signal-safe and touches no memory.
    #[allow(unsafe_code)]
    unsafe {
        c.pre_exec(move || {
            libc::umask(mask);
            Ok(())
        });
    }
    common::retry_exec(|| c.output())
}

fn modes(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let m = e.path().symlink_metadata().expect("stat");
            if m.is_dir() {
                stack.push(e.path());
            }
            found.push((e.path(), m.permissions().mode() & 0o777));
        }
    }
    found
}

#[test]
fn created_files_honour_the_umask_and_are_never_world_writable() {
    for (mask, forbidden) in [(0o000, 0o002), (0o022, 0o022), (0o077, 0o077)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store");
        for n in [1, 2, 3] {
            let (file, _) = batch(dir.path(), n);
            let o = with_umask(
                &store,
                mask,
                &["import", "--type", "stock", "--symbol", "SYM", "--period", "1m", file.to_str().unwrap()],
            );
            ok(o);
        }
        ok(with_umask(&store, mask, &["recover", "--all"]));
        let out_file = dir.path().join("store-export.csv");
        ok(with_umask(
            &store,
            mask,
            &["export", "--type", "stock", "--symbol", "SYM", "--period", "1m", "-o", out_file.to_str().unwrap()],
        ));
        let mut all = modes(&store);
        all.push((out_file.clone(), std::fs::metadata(&out_file).expect("export").permissions().mode() & 0o777));
        assert!(all.len() > 8, "{all:?}");
        for (path, mode) in &all {
            assert_eq!(mode & forbidden, 0, "umask {mask:03o}: {} has mode {mode:03o}", path.display());
        }
        eprintln!("umask {mask:03o}: {} entries, none with {forbidden:03o} bits", all.len());
    }
}

/// A store this process may not write: owned by root and run as `nobody` (65534) when the
/// test runs as root, else made read-only (dirs 0555, files 0444) for the test's own user.
/// An import fails with one `error:` line naming the permission and a path of the store,
/// never a panic, and leaves the store byte-identical with no temp file; reads (`export`,
/// `verify`) still work. Lock files carry nothing: they are empty, so they cannot leak a
/// secret, a path or a host name.
#[test]
fn a_store_owned_by_another_user_fails_cleanly_and_lock_files_carry_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, model) = two_versions(dir.path());
    let locks: Vec<_> = modes(&store).into_iter().filter(|(p, _)| p.to_string_lossy().ends_with(".lock")).collect();
    assert!(!locks.is_empty(), "the imports left no lock file to look at");
    for (p, _) in &locks {
        assert_eq!(std::fs::metadata(p).expect("lock").len(), 0, "{} carries bytes", p.display());
    }
    let (file, _) = batch(dir.path(), 3);
    let before = common::snapshot(&store);
    let as_root = effective_uid() == 0;
    // `nobody` must reach the binary, the input and the store: a copy of the binary in the
    // test's own directory, opened to others for reading and traversal only.
    let bin = dir.path().join("barvault");
    std::fs::copy(common::BIN, &bin).expect("copy the binary");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let read_only = |mode_dir: u32, mode_file: u32| {
        for (p, _) in modes(&store) {
            let m = if p.is_dir() { mode_dir } else { mode_file };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).expect("chmod");
        }
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(mode_dir)).expect("chmod");
    };
    if !as_root {
        read_only(0o555, 0o444);
    }
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(&bin);
        for (k, _) in std::env::vars() {
            if k.starts_with("BARVAULT_") {
                c.env_remove(k);
            }
        }
        c.arg("--data-dir").arg(&store).args(args).env("BARVAULT_LOCK_TIMEOUT_SECS", "2");
        if as_root {
            c.uid(65534).gid(65534);
        }
        common::retry_exec(|| c.output())
    };
    let o = run(&["import", "--type", "stock", "--symbol", "SYM", "--period", "1m", file.to_str().unwrap()]);
    let e = err(&o);
    assert_eq!(code(&o), 1, "import into a store of another user: {e}");
    let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{e}");
    assert!(lines[0].contains("ermission denied") && lines[0].contains(store.to_str().unwrap()), "{e}");
    assert!(!e.contains("panicked") && !e.contains("RUST_BACKTRACE"), "{e}");
    let exported = run(&["export", "--type", "stock", "--symbol", "SYM", "--period", "1m"]);
    assert_eq!(code(&exported), 0, "a read-only store still serves its bars: {}", err(&exported));
    assert!(common::parse_export(&out(&exported)) == model, "export of the read-only store");
    let v = run(&["verify", "--all"]);
    assert_eq!(code(&v), 0, "verify of a sound read-only store: {}{}", out(&v), err(&v));
    if !as_root {
        read_only(0o755, 0o644);
    }
    assert!(common::snapshot(&store) == before, "the refused import changed the store");
    assert!(common::temp_files(&store).is_empty(), "temp files left: {:?}", common::temp_files(&store));
    eprintln!("another user ({}): import refused with `{}`", if as_root { "uid 65534" } else { "read-only" }, lines[0]);
}

/// The effective user id of this process (the owner of `/proc/self`), without `unsafe`
/// libc; `u32::MAX` when it cannot be read.
fn effective_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}
