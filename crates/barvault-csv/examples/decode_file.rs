//! Decodes one CSV file the way the store and `import` do (`CodecInput::File`), a few times,
//! and prints the first (fresh process, as in an import), median and best times; a target
//! for `perf record`.
//! Run: `cargo run --release -p barvault-csv --example decode_file -- FILE [RUNS] [bytes]`
//! (`bytes`: read the file into memory first and time `CodecInput::Bytes` instead).

use std::time::Instant;

use barvault_csv::CsvCodec;
use barvault_ports::{BarCodec, CodecInput};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: decode_file FILE [RUNS]")?;
    let runs: usize = args.next().map_or(Ok(5), |r| r.parse())?;
    let in_memory = args.next().is_some_and(|a| a == "bytes");
    let bytes = if in_memory { std::fs::read(&path)? } else { Vec::new() };
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..runs.max(1) {
        let file = std::fs::File::open(&path)?;
        let t = Instant::now();
        let input = if in_memory { CodecInput::Bytes(&bytes) } else { CodecInput::File(file) };
        let raw = CsvCodec.decode(input, barvault_ports::Rows::All)?.raw;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        rows = raw.len();
    }
    let first = times.first().copied().unwrap_or_default();
    times.sort_by(f64::total_cmp);
    let (best, median) =
        (times.first().copied().unwrap_or_default(), times.get(times.len() / 2).copied().unwrap_or_default());
    println!(
        "{path}: {rows} rows, {} runs: first {first:.1} ms, median {median:.1} ms, best {best:.1} ms",
        times.len()
    );
    Ok(())
}
