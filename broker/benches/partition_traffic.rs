//! What counting a produced batch per partition (`partition_traffic.rs`) costs the produce
//! path: one hash lookup by topic name and an index by partition. Criterion, in process.
//!
//! Cases: `count_in_1_topic` (one topic, 16 partitions), `count_in_100_topics` (100 topics
//! of 100 partitions, round robin: a cold-ish map), and for scale `validate_16k_batch`
//! (`BatchView::validate` of a 16 KiB batch, which every produce pays anyway).
//!
//! Run: `cargo bench -p broker --bench partition_traffic`.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;

use broker::partition_traffic::PartitionTraffic;
use criterion::{criterion_group, criterion_main, Criterion};
use wire::BatchBuilder;

fn bench(c: &mut Criterion) {
    let t = PartitionTraffic::default();
    let mut p = 0u32;
    c.bench_function("count_in_1_topic", |b| {
        b.iter(|| {
            p = (p + 1) % 16;
            t.count_in(black_box("orders"), p, 100, 16_384);
        })
    });
    let many = PartitionTraffic::default();
    let topics: Vec<String> = (0..100).map(|i| format!("topic-{i:03}")).collect();
    let mut i = 0usize;
    c.bench_function("count_in_100_topics", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            many.count_in(black_box(&topics[i % 100]), (i / 100 % 100) as u32, 100, 16_384);
        })
    });
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
