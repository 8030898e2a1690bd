//! The in-flight temp file registry a signal handler drains (one test: draining it is for a
//! process about to exit, so it must run in a process of its own).

use std::sync::mpsc;
use std::time::Duration;

use barvault_fs::{RealFs, in_flight_count, remove_in_flight, stage_atomic, write_atomic};

fn temps(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(".tmp."))
        .collect();
    names.sort();
    names
}

#[test]
fn draining_removes_staged_temp_files_and_stops_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("a.csv");
    write_atomic(&RealFs, &target, true, |w| Ok(w.write_all(b"old\n")?)).unwrap();
    assert_eq!(in_flight_count(), 0, "a committed write leaves nothing registered");
    let failed = write_atomic(&RealFs, &dir.path().join("b.csv"), false, |_| Err(std::io::Error::other("no").into()));
    assert!(failed.is_err());
    assert_eq!(in_flight_count(), 0, "a failed write forgets its temp file");

    // A write interrupted between staging and publishing: its temp file is on disk.
    let staged = stage_atomic(&RealFs, &target, |w| Ok(w.write_all(b"new\n")?)).unwrap();
    assert_eq!(temps(dir.path()).len(), 1);
    assert_eq!(in_flight_count(), 1);
    let removed = remove_in_flight();
    assert_eq!(removed.len(), 1);
    assert!(temps(dir.path()).is_empty(), "{:?}", temps(dir.path()));
    assert_eq!(std::fs::read(&target).unwrap(), b"old\n", "the target is untouched");
    // Publishing it now fails cleanly instead of putting a missing file in place.
    assert!(staged.commit(&RealFs, true).is_err());
    assert_eq!(std::fs::read(&target).unwrap(), b"old\n");

    // A write that starts after the drain waits for the exit instead of creating a file.
    let (tx, rx) = mpsc::channel();
    let late = dir.path().join("c.csv");
    std::thread::spawn(move || {
        let r = write_atomic(&RealFs, &late, false, |w| Ok(w.write_all(b"late\n")?));
        let _ = tx.send(r.is_ok());
    });
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "the late write must not run");
    assert!(temps(dir.path()).is_empty());
    assert!(!dir.path().join("c.csv").exists());
}
