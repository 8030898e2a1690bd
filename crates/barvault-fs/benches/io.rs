//! The filesystem adapter's fixed costs: MD5 of file bytes (every write and verified read)
//! and one durable atomic replace of a file (temp file, fsync, rename, directory fsync).
//!
//! Run with `cargo bench -p barvault-fs --bench io`. The write bench really fsyncs, into
//! a temp directory under Cargo's target directory (`CARGO_TARGET_TMPDIR`), so its figure
//! depends on the disk and on what else is writing to it.

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use barvault_fs::{RealFs, md5_hex, write_atomic};
use barvault_ports::CodecError;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const MD5_BYTES: usize = 64 << 20;
const WRITE_BYTES: usize = 10 << 20;

/// Bytes that do not compress or repeat (MD5's speed does not depend on them, a disk's might).
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn bench_md5(c: &mut Criterion) {
    let bytes = noise(MD5_BYTES);
    let mut group = c.benchmark_group("fs/md5_hex");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(MD5_BYTES as u64));
    group.bench_function("64MiB", |b| b.iter(|| md5_hex(black_box(&bytes))));
    group.finish();
}

/// The CRC-32 a write computes besides the MD5, and a fingerprint check computes instead of it.
fn bench_crc32(c: &mut Criterion) {
    let bytes = noise(MD5_BYTES);
    let mut group = c.benchmark_group("fs/crc32");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(MD5_BYTES as u64));
    group.bench_function("64MiB", |b| b.iter(|| crc32fast::hash(black_box(&bytes))));
    group.finish();
}

/// Replaces the same 10 MiB file again and again, without and with the hard-linked
/// `.backup` of the previous version that the store keeps by default.
fn bench_write_atomic(c: &mut Criterion) {
    let bytes = noise(WRITE_BYTES);
    let dir = tempfile::Builder::new()
        .prefix("barvault-bench-fs-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir under the target directory");
    let target = dir.path().join("series").join("bars.bin");
    let mut group = c.benchmark_group("fs/write_atomic_fsync");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(WRITE_BYTES as u64));
    for (name, keep_backup) in [("10MiB", false), ("10MiB_with_backup", true)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let outcome = write_atomic(&RealFs, &target, keep_backup, |w: &mut (dyn Write + Send)| {
                    w.write_all(black_box(&bytes)).map_err(CodecError::Io)
                })
                .expect("write_atomic");
                assert_eq!(outcome.size, WRITE_BYTES as u64);
                outcome
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_md5, bench_crc32, bench_write_atomic);
criterion_main!(benches);
