//! What recording a stage's latency (`stage_latency.rs`) costs: one `Instant::now()` and an
//! HDR histogram increment in a thread-local, a few times per request. Criterion, in process.
//!
//! Cases: `record_since` (what every stage pays: the clock read and the record),
//! `instant_now` (the clock read alone, for scale), and `validate_16k_batch`
//! (`BatchView::validate` of a 16 KiB batch, which every produce pays anyway).
//!
//! Run: `cargo bench -p broker --bench stage_latency`.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use broker::stage_latency::{self, Stage};
use criterion::{criterion_group, criterion_main, Criterion};
use wire::BatchBuilder;

fn bench(c: &mut Criterion) {
    let start = Instant::now();
    c.bench_function("record_since", |b| {
        b.iter(|| stage_latency::record_since(black_box(Stage::Produce), black_box(start)))
    });
    c.bench_function("instant_now", |b| b.iter(|| black_box(Instant::now())));
    let mut builder = BatchBuilder::new(1 << 20);
    for r in 0..100i64 {
        builder.append(r, Some(b"key"), Some(&[7u8; 160]), &[]).unwrap();
    }
    let batch = builder.finish().unwrap();
    c.bench_function("validate_16k_batch", |b| {
        b.iter(|| black_box(wire::BatchView::validate(black_box(&batch)).is_ok()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
