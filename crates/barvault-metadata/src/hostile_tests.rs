//! Hostile record files (issue 17): huge numbers, deep nesting, a 100 MB (and a sparse
//! 64 GiB) record, invalid UTF-8 and path fields pointing outside the store, each as a
//! legacy `.json` record and as a slotted `.meta` one whose slot checksum is right (a
//! hostile writer can compute MD5 too). Every one is refused quickly as `Corrupt` naming
//! the record file, listed as unreadable under the series its location names, never
//! trusted to address a file, and replaced by the next write of the record.

use std::time::{Duration, Instant};

use super::*;
use barvault_domain::Instrument;
use barvault_ports::conformance::sample_metadata;

fn aapl() -> SeriesKey {
    SeriesKey::new(Instrument::stock("AAPL").unwrap(), Period::D1)
}

/// The JSON of a sound record of AAPL, with `from` replaced by `to` (exactly once).
fn patched(from: &str, to: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec_pretty(&sample_metadata(&aapl(), "csv", 1)).unwrap();
    let at = json.windows(from.len()).position(|w| w == from.as_bytes()).unwrap_or_else(|| panic!("{from}"));
    [&json[..at], to, &json[at + from.len()..]].concat()
}

/// A record with an unknown field (skipped by serde, but parsed) opening `depth` arrays.
fn nested(depth: usize) -> Vec<u8> {
    patched("\"columns\": [", &[b"\"skipped\": ".as_slice(), &vec![b'['; depth], b"\"columns\": ["].concat())
}

/// `payload` in a slotted record file with a correct slot checksum.
fn slotted(payload: &[u8]) -> Vec<u8> {
    let size = slots::slot_size_for(payload.len());
    let mut file = slots::encode(1, payload, size);
    file.resize(2 * size, 0);
    file
}

/// The hostile payloads, by name, and a word their refusal must contain.
fn hostile() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let two_70 = (1u128 << 70).to_string();
    vec![
        (
            "row count 2^70",
            patched("\"row_count\": 101", format!("\"row_count\": {two_70}").as_bytes()),
            "expected u64",
        ),
        ("file size 1e400", patched("\"file_size\": 4097", b"\"file_size\": 1e400"), "number out of range"),
        ("generation -1", patched("\"generation\": 1", b"\"generation\": -1"), "expected u64"),
        ("generation 2^64", patched("\"generation\": 1", b"\"generation\": 18446744073709551616"), "expected u64"),
        ("100,000 [", vec![b'['; 100_000], "not valid JSON metadata"),
        ("100,000 [ in a skipped field", nested(100_000), "not valid JSON metadata"),
        (
            "invalid UTF-8",
            patched("\"file_path\": \"stocks/1d/AAPL.csv\"", b"\"file_path\": \"stocks/1d/AA\xff\xfePL.csv\""),
            "unicode",
        ),
        (
            "path outside",
            patched("\"file_path\": \"stocks/1d/AAPL.csv\"", b"\"file_path\": \"../../outside.csv\""),
            "../../outside.csv",
        ),
        (
            "absolute path",
            patched("\"file_path\": \"stocks/1d/AAPL.csv\"", b"\"file_path\": \"/etc/passwd\""),
            "/etc/passwd",
        ),
        ("another series", patched("\"AAPL\"", b"\"MSFT\""), "stored as"),
        ("symbol climbing out", patched("\"AAPL\"", b"\"A/../../x\""), "not allowed"),
    ]
}

/// Reads `path` as the store would, checks it is refused as `Corrupt` naming the file and
/// `word`, within `limit`; then checks `scan` lists it under AAPL and that the next write
/// replaces it.
async fn refused_then_replaced(
    store: &FileMetadataStore,
    path: &Path,
    what: &str,
    word: &str,
    limit: Duration,
) -> Duration {
    let ctx = OpContext::new();
    let started = Instant::now();
    let err = store.get(&aapl(), "csv", &ctx).await.expect_err(what);
    let took = started.elapsed();
    assert!(took < limit, "{what}: refused in {took:?}");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{what}: {err}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()) && text.contains(word), "{what}: {text}");
    assert!(text.len() < 600, "{what}: the error repeats the record ({} bytes)", text.len());
    let list = store.scan().unwrap();
    assert!(list.records.is_empty(), "{what}: {:?}", list.records);
    assert_eq!(list.unreadable.len(), 1, "{what}");
    assert_eq!(list.unreadable[0].location, path, "{what}");
    assert_eq!(list.unreadable[0].series.as_ref(), Some(&aapl()), "{what}: the location names the series");
    store.record(&sample_metadata(&aapl(), "csv", 9), &ctx).await.unwrap();
    assert_eq!(store.get(&aapl(), "csv", &ctx).await.unwrap().unwrap().generation, 9, "{what}");
    let list = store.scan().unwrap();
    assert_eq!((list.records.len(), list.unreadable.len()), (1, 0), "{what}");
    took
}

#[tokio::test]
async fn hostile_record_contents_are_refused_quickly_and_replaced() {
    let (mut cases, mut slowest) = (0, Duration::ZERO);
    for (what, payload, word) in hostile() {
        for legacy in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let store = FileMetadataStore::new(dir.path());
            let path =
                if legacy { store.legacy_record_path(&aapl(), "csv") } else { store.record_path(&aapl(), "csv") };
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, if legacy { payload.clone() } else { slotted(&payload) }).unwrap();
            let what = format!("{what} ({})", if legacy { "json" } else { "slotted" });
            slowest = slowest.max(refused_then_replaced(&store, &path, &what, word, Duration::from_millis(500)).await);
            cases += 1;
        }
    }
    eprintln!("{cases} hostile records refused and replaced; slowest refusal {slowest:?}");
}

/// A record file of 100 MB (written) and one of 64 GiB (sparse) is refused from its size,
/// before any byte is read, so it costs neither memory nor time; `decode_record_file` (the
/// object store's reader) refuses 100 MB of bytes without parsing them.
#[tokio::test]
async fn huge_record_files_are_refused_unread() {
    for (legacy, len, sparse) in [(true, 100 << 20, false), (false, 100 << 20, false), (false, 64u64 << 30, true)] {
        let dir = tempfile::tempdir().unwrap();
        let store = FileMetadataStore::new(dir.path());
        let path = if legacy { store.legacy_record_path(&aapl(), "csv") } else { store.record_path(&aapl(), "csv") };
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = std::fs::File::create(&path).unwrap();
        if sparse {
            if let Err(e) = file.set_len(len) {
                eprintln!("skipped the sparse {len}-byte record: {e}");
                continue;
            }
        } else {
            // A string field of 100 MB: valid JSON if it were read.
            let mut w = std::io::BufWriter::new(file);
            std::io::Write::write_all(&mut w, b"{\"file_path\": \"").unwrap();
            let chunk = vec![b'A'; 1 << 20];
            for _ in 0..(len >> 20) - 1 {
                std::io::Write::write_all(&mut w, &chunk).unwrap();
            }
            std::io::Write::write_all(&mut w, b"\"}").unwrap();
            std::io::Write::flush(&mut w).unwrap();
        }
        let size = std::fs::metadata(&path).unwrap().len();
        let what = format!("{size}-byte record");
        let took =
            refused_then_replaced(&store, &path, &what, &format!("{size} bytes"), Duration::from_millis(500)).await;
        eprintln!("{what}: refused in {took:?}");
    }
    let bytes = vec![b'['; 100 << 20];
    let started = Instant::now();
    let err = decode_record_file(&bytes, true).unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_millis(100), "{:?}", started.elapsed());
    assert!(err.contains("104857600 bytes, more than any record"), "{err}");
}

/// Deep nesting cannot exhaust the stack: the typed reader goes no deeper than the record's
/// own structure (a typed field refuses a `[` as the wrong type), a field serde skips is
/// skipped without recursion (100,000 levels refused on this 2 MiB test thread), and any
/// untyped parse stops at serde_json's default recursion limit of 128.
#[test]
fn deep_nesting_never_recurses_past_serde_jsons_limit() {
    let started = Instant::now();
    let skipped = serde_json::from_slice::<FileMetadata>(&nested(100_000)).unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_millis(200), "{:?}", started.elapsed());
    assert!(skipped.contains("line 8"), "{skipped}");
    let typed = patched("\"columns\": [", &[b"\"columns\": ".as_slice(), &[b'['; 100_000]].concat());
    let typed = serde_json::from_slice::<FileMetadata>(&typed).unwrap_err().to_string();
    assert!(typed.contains("invalid type: sequence, expected a string"), "{typed}");
    let value = |depth: usize| [vec![b'['; depth], vec![b']'; depth]].concat();
    assert!(serde_json::from_slice::<serde_json::Value>(&value(127)).is_ok());
    let deep = serde_json::from_slice::<serde_json::Value>(&value(129)).unwrap_err().to_string();
    assert!(deep.contains("recursion limit exceeded"), "{deep}");
}
