//! Bounded answers to unbounded inputs: a CSV of one line without a line end (20 MB, 200 MB
//! with `BARVAULT_SLOW_TESTS=1`), whose header is then one huge "column name", is refused
//! with exit 1 and one short error line (the name cut after 80 characters, its length
//! given), within a bounded time. The peak memory of the child is measured and printed
//! (`wait4`); it is not yet bounded (RELIABILITY.md, Known limits).

#[path = "reliability_common/mod.rs"]
mod common;

use std::io::Write;
use std::time::{Duration, Instant};

/// Runs `c` to the end; its exit code, stderr and peak RSS in KiB. The child is reaped by
/// `wait4` (which `Child::wait` cannot replace: it gives no rusage).
#[allow(clippy::zombie_processes)]
fn run_measured(c: &mut std::process::Command) -> (i32, String, i64) {
    let child =
        common::retry_exec(|| c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn());
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr.expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value; wait4 writes into the two locals only.
    #[allow(unsafe_code)]
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::wait4(pid, &mut status, 0, &mut usage), pid, "wait4");
        usage
    };
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    (code, reader.join().expect("reader"), usage.ru_maxrss)
}

#[test]
fn a_single_line_csv_is_refused_with_a_short_message_in_bounded_time() {
    let mib = if common::slow() { 200 } else { 20 };
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("ONE.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).expect("input"));
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..mib {
            f.write_all(&chunk).expect("write");
        }
    }
    let store = dir.path().join("store");
    let started = Instant::now();
    let mut c = common::cmd(&store);
    c.args(["import", "--type", "stock", "--period", "1d"]).arg(&input);
    let (code, stderr, rss_kib) = run_measured(&mut c);
    let took = started.elapsed();
    std::fs::remove_file(&input).expect("remove the input");
    assert_eq!(code, 1, "{}", &stderr[..stderr.len().min(2000)]);
    assert!(stderr.len() < 2048, "an error of {} bytes", stderr.len());
    assert!(stderr.contains("ONE.csv:1") && stderr.contains(&format!("({} bytes)", mib << 20)), "{stderr}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(!store.join("stocks").exists(), "nothing may be stored");
    eprintln!(
        "{mib} MB single-line CSV: refused in {took:.1?}, {} bytes of stderr, peak RSS {} MiB",
        stderr.len(),
        rss_kib / 1024
    );
}
