//! How fast one producer task turns 1 KiB records into produce requests on the wire: the
//! broker is replaced by a discarding sink on loopback that answers every produce at once,
//! so the figure is the client's own cost (batching, encoding, framing, the socket).
//!
//! Run: `cargo bench -p client --bench producer`. Target: >= 1 GB/s of record values.
//!
//! `stages_per_batch`: what the producer's stage latency (`producer/stages.rs`) costs one
//! batch: five histogram records under the mutex (clock reads are taken by the tasks anyway).

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use client::{Client, Producer, ProducerConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wire::AckLevel;

#[path = "../tests/sink/mod.rs"]
#[allow(dead_code)] // the bench uses only the always-answering sink
mod sink;

fn producer_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sink = rt.block_on(sink::Sink::start(true));
    let addr = sink.addr;
    let client = rt.block_on(Client::connect(&addr.to_string())).unwrap();
    let producer = {
        let _g = rt.enter();
        Producer::new(
            client,
            ProducerConfig {
                ack: AckLevel::Written,
                linger: Duration::from_micros(200),
                batch_bytes_max: 1 << 20,
                ..Default::default()
            },
        )
    };
    let value = vec![0x61u8; 1024];
    let records = 20_000u64;
    let mut group = c.benchmark_group("producer");
    group.throughput(Throughput::Bytes(records * value.len() as u64));
    group.sample_size(10);
    group.bench_function("1KiB_records_to_discarding_sink", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                rt.block_on(async {
                    let mut last = None;
                    for i in 0..records {
                        last = Some(
                            producer
                                .send("sink", Some(&i.to_le_bytes()), Some(&value), &[])
                                .await
                                .unwrap(),
                        );
                    }
                    producer.flush().await.unwrap();
                    last.unwrap().await.unwrap();
                });
            }
            start.elapsed()
        });
    });
    group.finish();
}

fn stages_per_batch(c: &mut Criterion) {
    let stages = client::ProducerStages::default();
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_micros(420);
    c.bench_function("stages_per_batch", |b| {
        b.iter(|| {
            for stage in client::ProducerStage::ALL {
                stages.record_between(std::hint::black_box(stage), t0, t1);
            }
        })
    });
}

criterion_group!(benches, producer_throughput, stages_per_batch);
criterion_main!(benches);
