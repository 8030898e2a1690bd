//! Bounded answers to unbounded inputs (issue 17): a CSV of one line without a line end
//! (300 MB, 2 GB with `BARVAULT_SLOW_TESTS=1`, and 300 MB gzip-compressed), a CSV whose
//! header has 10^7 columns, one whose first data line has 10^7 fields, and a `.parquet` file
//! whose footer claims 2^40 rows, each imported into an existing series, are refused with
//! exit 1 and one short `error:` line naming the file and the line, within seconds and under
//! 200 MiB of peak RSS of the child (`wait4`), and the store is byte-identical afterwards.

#[path = "reliability_common/mod.rs"]
mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The bounds every refusal here must keep.
const MAX_RSS_MIB: i64 = 200;
const MAX_TIME: Duration = Duration::from_secs(10);

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

/// `input` written by `fill` in pieces through a buffer.
fn write_input(path: &Path, fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("input"));
    fill(&mut f).expect("write the input");
    f.flush().expect("flush the input");
}

/// A store holding the series `stock:SYM@1d` for each symbol, 20 rows each.
fn store_with(dir: &Path, symbols: &[&str]) -> std::path::PathBuf {
    let store = dir.join("store");
    for sym in symbols {
        let seed = dir.join(format!("{sym}.csv"));
        let rows: Vec<(i64, common::Row)> = (0..20).map(|m| (m * 1440, common::row(1, m))).collect();
        common::write_batch(&seed, &rows);
        common::ok(common::bv(&store, &["import", "--type", "stock", "--period", "1d", seed.to_str().unwrap()]));
        std::fs::remove_file(&seed).expect("remove the seed");
    }
    store
}

/// Imports `input` into its existing series and checks the refusal: exit 1, one `error:`
/// line naming the file and `line`, under the time and memory bounds, the store unchanged.
/// Returns the figures printed.
fn assert_refused_in_bounds(store: &Path, input: &Path, line: Option<u64>, reason: &str) -> String {
    let before = common::snapshot(store);
    let size = std::fs::metadata(input).expect("input").len();
    let started = Instant::now();
    let mut c = common::cmd(store);
    c.args(["import", "--type", "stock", "--period", "1d"]).arg(input);
    let (code, stderr, rss_kib) = run_measured(&mut c);
    let took = started.elapsed();
    let shown = &stderr[..stderr.len().min(2000)];
    assert_eq!(code, 1, "{shown}");
    assert!(stderr.len() < 1024, "an error of {} bytes: {shown}", stderr.len());
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    let name = input.file_name().unwrap().to_str().unwrap();
    let at = match line {
        Some(n) => format!("{name}:{n}"),
        None => name.to_string(),
    };
    assert!(errors[0].contains(&at) && errors[0].contains(reason), "{stderr}");
    assert!(took < MAX_TIME, "{name}: took {took:?}");
    assert!(rss_kib < MAX_RSS_MIB * 1024, "{name}: peak RSS {} MiB", rss_kib / 1024);
    assert_eq!(common::snapshot(store), before, "{name}: the store changed");
    let figures = format!(
        "{name} ({:.1} MB): refused in {took:.2?}, peak RSS {:.1} MiB; {}",
        size as f64 / 1e6,
        rss_kib as f64 / 1024.0,
        errors[0]
    );
    eprintln!("{figures}");
    figures
}

const LINE_CAP: &str = "a line may have at most 1048576 bytes (1 MiB)";

#[test]
fn a_single_line_csv_is_refused_at_the_line_bound() {
    let mib: usize = if common::slow() { 2048 } else { 300 };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with(dir.path(), &["ONE"]);
    let input = dir.path().join("ONE.csv");
    write_input(&input, |f| {
        let chunk = vec![b'x'; 1 << 20];
        (0..mib).try_for_each(|_| f.write_all(&chunk))
    });
    assert_refused_in_bounds(&store, &input, Some(1), LINE_CAP);
    // 300 MB of the same line through gzip (a 3 MB file, in both modes: compressing 2 GB in a
    // debug test costs minutes): the decompressed stream is read in pieces too.
    std::fs::remove_file(&input).expect("remove the input");
    let store = store_with(dir.path(), &["ONEGZ"]);
    let input = dir.path().join("ONEGZ.csv.gz");
    write_input(&input, |f| {
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        let chunk = vec![b'x'; 1 << 20];
        (0..300).try_for_each(|_| gz.write_all(&chunk))?;
        gz.finish().map(drop)
    });
    assert_refused_in_bounds(&store, &input, Some(1), LINE_CAP);
}

#[test]
fn ten_million_columns_are_refused_at_the_line_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with(dir.path(), &["WIDE", "WIDEROW"]);
    // A header of 10^7 short names (`c0` … `c9999999`, 79 MB), then one row.
    let input = dir.path().join("WIDE.csv");
    write_input(&input, |f| {
        f.write_all(b"timestamp,open,high,low,close,volume")?;
        (6..10_000_000).try_for_each(|i| write!(f, ",c{i}"))?;
        f.write_all(b"\n2024-01-01 00:00:00,10,11,9,10.5,100\n")
    });
    assert_refused_in_bounds(&store, &input, Some(1), LINE_CAP);
    // A normal header, then a data line of 10^7 fields (20 MB).
    let input = dir.path().join("WIDEROW.csv");
    write_input(&input, |f| {
        f.write_all(b"timestamp,open,high,low,close,volume\n2024-01-01 00:00:00,10,11,9,10.5,100\n")?;
        f.write_all(b"2024-01-02 00:00:00")?;
        (1..10_000_000).try_for_each(|_| f.write_all(b",1"))?;
        f.write_all(b"\n")
    });
    assert_refused_in_bounds(&store, &input, Some(3), LINE_CAP);
}

/// The series' Parquet copy with its footer rewritten to claim `rows` rows, in its one row
/// group and in the file, by the parquet crate's own metadata writer.
fn parquet_claiming(store: &Path, sym: &str, rows: i64) -> Vec<u8> {
    use parquet::file::metadata::{FileMetaData, ParquetMetaData, ParquetMetaDataWriter};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let path = store.join(format!("stocks/1d/{sym}.parquet"));
    let bytes = std::fs::read(&path).expect("the Parquet copy");
    let meta =
        SerializedFileReader::new(std::fs::File::open(&path).expect("open")).expect("parquet").metadata().clone();
    let file = meta.file_metadata();
    let file = FileMetaData::new(
        file.version(),
        rows,
        file.created_by().map(str::to_string),
        file.key_value_metadata().cloned(),
        file.schema_descr_ptr(),
        file.column_orders().cloned(),
    );
    let groups =
        meta.row_groups().iter().map(|g| g.clone().into_builder().set_num_rows(rows).build().unwrap()).collect();
    let footer_len = u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap()) as usize;
    let mut out = bytes[..bytes.len() - 8 - footer_len].to_vec();
    ParquetMetaDataWriter::new(&mut out, &ParquetMetaData::new(file, groups)).finish().expect("footer");
    out
}

#[test]
fn a_parquet_input_claiming_two_to_the_forty_rows_is_refused_in_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with(dir.path(), &["HUGE"]);
    let input = dir.path().join("HUGE.parquet");
    std::fs::write(&input, parquet_claiming(&store, "HUGE", 1 << 40)).expect("input");
    assert_refused_in_bounds(&store, &input, None, "row group 1");
}
