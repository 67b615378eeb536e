//! Build, validate and iterate record batches of 1,000 records (1 KiB and 100 B values).
//!
//! Run: `cargo bench -p wire --bench batch`. Targets on the 2-vCPU dev machine: validate +
//! iterate <= 50 ns per record, build <= 150 ns per record. Results: `perf/results/`.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use wire::{BatchBuilder, BatchView};

const RECORDS: usize = 1_000;

fn build(builder: &mut BatchBuilder, keys: &[[u8; 16]], value: &[u8]) -> wire::AlignedVec {
    for (i, key) in keys.iter().enumerate() {
        builder
            .append(1_700_000_000_000 + i as i64, Some(key), Some(value), &[("source", b"bench")])
            .unwrap();
    }
    builder.finish().unwrap()
}

fn bench_size(c: &mut Criterion, value_bytes: usize, label: &str) {
    let keys: Vec<[u8; 16]> = (0..RECORDS).map(|i| (i as u128).to_le_bytes()).collect();
    let value = vec![0x5Au8; value_bytes];
    let mut builder = BatchBuilder::new(wire::constants::BATCH_BYTES_MAX as usize);
    let batch = build(&mut builder, &keys, &value);

    let mut group = c.benchmark_group(format!("batch_{label}"));
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("build", |b| {
        b.iter(|| black_box(build(&mut builder, &keys, &value)));
    });
    // Building into a reused output buffer: what a producer does per partition.
    let mut out = wire::AlignedVec::with_capacity(batch.len());
    group.bench_function("build_into_reused", |b| {
        b.iter_batched_ref(
            || (),
            |_| {
                out.clear();
                for (i, key) in keys.iter().enumerate() {
                    builder
                        .append(i as i64, Some(key), Some(&value), &[("source", b"bench")])
                        .unwrap();
                }
                black_box(builder.finish_into(&mut out).unwrap());
            },
            BatchSize::SmallInput,
        );
    });
    // The floor of validation: one CRC32C pass over the covered bytes.
    group.bench_function("crc32c_only", |b| {
        b.iter(|| black_box(wire::batch::header::covered_crc(black_box(&batch))));
    });
    group.bench_function("validate", |b| {
        b.iter(|| black_box(BatchView::validate(black_box(&batch)).unwrap()));
    });
    group.bench_function("validate_and_iterate", |b| {
        b.iter(|| {
            let view = BatchView::validate(black_box(&batch)).unwrap();
            let mut sum = 0usize;
            for r in view.records() {
                sum += r.key().map_or(0, <[u8]>::len)
                    + r.value().map_or(0, <[u8]>::len)
                    + r.offset() as usize;
                for h in r.headers() {
                    sum += h.value().len();
                }
            }
            black_box(sum)
        });
    });
    group.finish();
}

fn batches(c: &mut Criterion) {
    bench_size(c, 1024, "1000x1KiB");
    bench_size(c, 100, "1000x100B");
}

criterion_group!(benches, batches);
criterion_main!(benches);
