//! Standard output and error that fail: a write to stderr or stdout that returns EIO (a
//! terminal that went away; injected with `strace`) or EPIPE (a reader that closed its end)
//! never makes the binary panic. It ends with the command's own exit code (1 for a failed
//! command, 0 for one that succeeded and only lost its report) and no backtrace; `export`
//! to a failing standard output is a failed command (exit 1), to a closed pipe a finished one.
//!
//! The EPIPE cases need nothing; the EIO cases run the debug binary under `strace -P FILE
//! -e inject=write:error=EIO`, which fails only the writes to the file that stands for the
//! stream (`-P` filters by the path an fd resolves to; strace 6.1 has no filter by fd), and
//! skip with a printed reason where strace is missing or ptrace is not allowed.

#[path = "reliability_common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{cmd, code, ok, row, write_batch};

/// Runs `c` with its stderr (`fd == 2`) or stdout (`fd == 1`) a pipe whose reader is gone.
fn with_closed_pipe(mut c: Command, fd: u8) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    if fd == 2 {
        c.stderr(writer).stdout(Stdio::piped());
    } else {
        c.stdout(writer).stderr(Stdio::piped());
    }
    common::retry_exec(|| c.output())
}

fn store_with_a_series(dir: &Path) -> std::path::PathBuf {
    let store = dir.join("store");
    let input = dir.join("ONE.csv");
    write_batch(&input, &(0..20).map(|m| (m, row(1, m))).collect::<Vec<_>>());
    ok(common::bv(&store, &["import", "--type", "stock", "--period", "1m", input.to_str().unwrap()]));
    store
}

/// The commands exercised, with the exit code each has when its streams work.
fn cases(dir: &Path) -> Vec<(Vec<String>, i32)> {
    let missing = dir.join("missing.csv").display().to_string();
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
    vec![
        (s(&["import", "--type", "stock", "--period", "1m", &missing]), 1),
        (s(&["import", "--type", "stock", "--period", "1m", "--symbol", "ONE", &missing, &missing]), 1),
        (s(&["info", "--type", "stock", "--symbol", "NOPE", "--period", "1m"]), 1),
        (s(&["health"]), 0),
        (s(&["list"]), 0),
        (s(&["verify", "--all"]), 0),
        (s(&["-v", "verify", "--all"]), 0),
        (s(&["--log-format", "json", "-vv", "list"]), 0),
        (s(&["export", "--type", "stock", "--symbol", "ONE", "--period", "1m"]), 0),
    ]
}

fn assert_no_panic(o: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace") && code(o) != 101,
        "{what}: exit {} stderr {stderr}",
        code(o)
    );
}

#[test]
fn a_closed_pipe_on_stderr_or_stdout_never_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_a_series(dir.path());
    let mut runs = 0;
    for (args, expected) in cases(dir.path()) {
        for fd in [1u8, 2] {
            let mut c = cmd(&store);
            c.args(&args);
            let o = with_closed_pipe(c, fd);
            let what = format!("{args:?} with fd {fd} a closed pipe");
            assert_no_panic(&o, &what);
            assert_eq!(code(&o), expected, "{what}");
            runs += 1;
        }
    }
    eprintln!("closed pipes: {runs} runs, no panic, every exit code the command's own");
}

/// `strace` that can trace here, or the reason it cannot.
pub fn strace() -> Result<&'static str, String> {
    const STRACE: &str = "strace";
    match Command::new(STRACE).args(["-f", "-o", "/dev/null", "true"]).output() {
        Ok(o) if o.status.success() => Ok(STRACE),
        Ok(o) => Err(format!("strace cannot trace here: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("strace is not installed ({e})")),
    }
}

#[test]
fn an_eio_on_stderr_or_stdout_never_panics() {
    let strace = match strace() {
        Ok(s) => s,
        Err(why) => {
            eprintln!("SKIPPED an_eio_on_stderr_or_stdout_never_panics: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_a_series(dir.path());
    let mut runs = 0;
    for (args, expected) in cases(dir.path()) {
        let export = args[0] == "export";
        for fd in [1u8, 2] {
            // Every write failing, and only the second one (the rest of the line after `error: `).
            for when in ["1+", "2"] {
                let stream = dir.path().join(format!("stream-{fd}"));
                let file = std::fs::File::create(&stream).expect("stream file");
                let trace = dir.path().join("trace");
                let inject = format!("write:error=EIO:when={when}");
                let mut c = Command::new(strace);
                c.args(["-f", "-qq", "-o"]).arg(&trace).arg("-P").arg(&stream);
                c.args(["-e", "trace=write", "-e", &format!("inject={inject}"), "--"]);
                c.arg(common::BIN).arg("--data-dir").arg(&store).args(&args).current_dir(dir.path());
                c.env_remove("RUST_BACKTRACE");
                let mut other = tempfile::tempfile().expect("other stream");
                let o = if fd == 2 {
                    c.stderr(file).stdout(other.try_clone().expect("dup")).output()
                } else {
                    c.stdout(file).stderr(other.try_clone().expect("dup")).output()
                }
                .expect("run strace");
                let mut text = String::new();
                std::io::Seek::rewind(&mut other).expect("rewind");
                std::io::Read::read_to_string(&mut other, &mut text).expect("read other stream");
                let written = std::fs::read_to_string(&stream).unwrap_or_default();
                let what = format!("{args:?} with EIO on fd {fd} ({when}): other stream {text} stream {written}");
                assert!(!text.contains("panicked") && !written.contains("panicked"), "{what}");
                let injected = std::fs::read_to_string(&trace).unwrap_or_default().contains("INJECTED");
                // Stdout of a data export that cannot be written is a failed export.
                let want = if export && fd == 1 && injected { 1 } else { expected };
                assert_eq!(o.status.code(), Some(want), "{what}");
                if export && fd == 1 && injected {
                    assert!(text.contains("error: ") && text.contains("<stdout>"), "{what}");
                }
                runs += 1;
            }
        }
    }
    eprintln!("EIO on standard streams: {runs} runs under strace, no panic, every exit code the command's own");
}
