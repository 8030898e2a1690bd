//! What recording one series' metadata costs as the store grows: barvault's per-file
//! records against the seed's design, which rewrites one central JSON index of every file
//! on each write. The seed's index goes through barvault's durable write (temp, fsync,
//! rename, fsync dir); barvault's record is overwritten in place in one of its two slots
//! (`fdatasync`), so both are durable when the call returns.
//!
//! Run with `cargo bench -p barvault-metadata --bench record_scaling`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use barvault_domain::{Instrument, Period, SeriesKey};
use barvault_fs::{RealFs, write_atomic};
use barvault_metadata::FileMetadataStore;
use barvault_ports::conformance::sample_metadata;
use barvault_ports::{FileMetadata, MetadataStore, OpContext};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const SIZES: [usize; 2] = [1, 10_000];

fn series(i: usize) -> SeriesKey {
    SeriesKey::new(Instrument::stock(&format!("S{i:05}")).expect("valid symbol"), Period::D1)
}

/// A store already holding `n` records (written directly, as the single-document records
/// of earlier versions that barvault still reads: setup is not what is measured).
fn populated(dir: &Path, n: usize) -> FileMetadataStore {
    let store = FileMetadataStore::new(dir);
    for i in 0..n {
        let meta = sample_metadata(&series(i), "csv", 1);
        let path = store.legacy_record_path(&meta.series(), "csv");
        std::fs::create_dir_all(path.parent().expect("record has a directory")).expect("mkdir");
        std::fs::write(&path, serde_json::to_vec_pretty(&meta).expect("json")).expect("write record");
    }
    store
}

/// The seed's central index: every record in one map, rewritten whole on each write.
fn central_index(n: usize) -> BTreeMap<String, FileMetadata> {
    (0..n).map(|i| sample_metadata(&series(i), "csv", 1)).map(|m| (m.file_path.clone(), m)).collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let ctx = OpContext::new();
    let mut group = c.benchmark_group("metadata/record_one");
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    for n in SIZES {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = populated(dir.path(), n);
        let target = series(n + 1);
        let mut generation = 1;
        group.bench_with_input(BenchmarkId::new("per_file_records", n), &n, |b, _| {
            b.iter(|| {
                generation += 1;
                let meta = sample_metadata(&target, "csv", generation);
                rt.block_on(store.record(black_box(&meta), &ctx)).expect("record");
            })
        });

        let dir = tempfile::tempdir().expect("tempdir");
        let mut index = central_index(n);
        let path = dir.path().join("index.json");
        group.bench_with_input(BenchmarkId::new("seed_central_json", n), &n, |b, _| {
            b.iter(|| {
                generation += 1;
                let meta = sample_metadata(&target, "csv", generation);
                index.insert(meta.file_path.clone(), meta);
                let json = serde_json::to_vec_pretty(&index).expect("json");
                write_atomic(&RealFs, &path, false, |w| w.write_all(&json).map_err(Into::into)).expect("write");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
