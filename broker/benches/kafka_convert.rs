//! What converting a Kafka producer's compressed batch into native batches costs, with the
//! room for the result grown as the records convert (`kafka/data.rs` `ConvertRoom`, today)
//! next to the earlier way: guess, and on overrun convert again from the start with four
//! times the room. Criterion, in process, no I/O.
//!
//! The batch: 1,000 JSON order events of ~850 bytes, lz4 and zstd (as Java and librdkafka
//! producers send with `compression.type`); the first guess is twice the size as sent plus
//! 64 KiB, as `ConvertRoom` takes it (the sizes are printed: more than about 2× compression
//! made the earlier way convert again), and 1,000 repetitive ~850-byte log lines in zstd
//! (~100× smaller as sent).
//!
//! Run: `cargo bench -p broker --bench kafka_convert`.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;

use broker::kafka::convert::to_native_within;
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

fn batch(compression: Compression, repetitive: bool) -> Bytes {
    let records: Vec<Record> = (0..1_000i64)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: -1,
            timestamp: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("order-{i}"))),
            value: Some(Bytes::from(if repetitive {
                format!("{i:08} {}", "heartbeat ok; ".repeat(60))
            } else {
                format!(
                r#"{{"order_id":{i},"customer":"cust-{}","status":"paid","currency":"EUR","items":[{}],"shipping":{{"country":"DE","city":"Berlin","street":"Hauptstrasse {}"}},"client":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36","source":"checkout-service","region":"eu-central-1","schema":"orders.v3"}}"#,
                i % 1000,
                (0..8)
                    .map(|j| format!(
                        r#"{{"sku":"SKU-{:05}","qty":{},"price_cents":{}}}"#,
                        (i * 7 + j) % 5000,
                        j % 4 + 1,
                        199 + (i + j) % 9000
                    ))
                    .collect::<Vec<_>>()
                    .join(","),
                i % 200
            )
            })),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let _ = StrBytes::from_static_str("");
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.freeze()
}

fn bench(c: &mut Criterion) {
    let cases = [
        ("lz4_orders", Compression::Lz4, false),
        ("zstd_orders", Compression::Zstd, false),
        ("zstd_repetitive", Compression::Zstd, true),
    ];
    for (name, compression, repetitive) in cases {
        let records = batch(compression, repetitive);
        let first = records.len() * 2 + (64 << 10);
        let plain = to_native_within(&records, 1 << 20, usize::MAX, &mut |_| None).unwrap();
        let native = plain.expect("no limit").batches.len();
        eprintln!("{name}: {} bytes as sent, {native} native, first guess {first}", records.len());
        let batch_bytes_max = 1 << 20;
        let mut group = c.benchmark_group(format!("kafka_convert_{name}_1000"));
        group.bench_function("grow_as_converted", |b| {
            b.iter(|| {
                let mut room = first;
                let mut more = |needed: usize| {
                    room = needed.max(room * 4);
                    Some(room)
                };
                black_box(to_native_within(&records, batch_bytes_max, first, &mut more).unwrap())
            })
        });
        group.bench_function("restart_x4_on_overrun", |b| {
            b.iter(|| {
                let mut room = first;
                loop {
                    let converted =
                        to_native_within(&records, batch_bytes_max, room, &mut |_| None).unwrap();
                    match converted {
                        Some(c) => break black_box(c),
                        None => room *= 4,
                    }
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
