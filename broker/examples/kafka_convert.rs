//! The Kafka listener's batch conversion cost, in process: `kafka::convert::to_native`
//! (ingress) and `to_kafka` (egress) over ~1 MiB Kafka batches of 1 KiB values with two
//! headers each, next to the codec crate's own record decode/encode (the path convert.rs took
//! before it parsed and wrote the records itself, for headers byte for byte).
//!
//! `cargo run --release -p broker --example kafka_convert -- [RECORDS_PER_BATCH] [ROUNDS]`
//! (defaults 1000 and 50). Prints MB/s of values and ns per record for each path, the best
//! of 7 repeats.

use std::time::Instant;

use broker::kafka::convert::{to_kafka, to_native};
use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// The broker's allocator (`broker/src/main.rs`), so allocation costs are the shipped ones.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const VALUE_BYTES: usize = 1024;

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let mut headers = IndexMap::new();
            headers.insert(
                StrBytes::from_static_str("trace"),
                Some(Bytes::from_static(b"0af7651916cd43dd")),
            );
            headers.insert(StrBytes::from_static_str("source"), Some(Bytes::from_static(b"bench")));
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: 7,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32,
                timestamp: 1_700_000_000_000 + i as i64,
                key: Some(Bytes::from(format!("key-{i:012}"))),
                value: Some(Bytes::from(vec![(i % 251) as u8; VALUE_BYTES])),
                headers,
            }
        })
        .collect()
}

/// The crate's decode + a native build: what ingress did before (headers through a map).
fn crate_to_native(kafka: &Bytes) -> wire::AlignedVec {
    let set = RecordBatchDecoder::decode(&mut kafka.clone()).expect("decodes");
    let mut builder = wire::BatchBuilder::new(wire::constants::BATCH_BYTES_MAX as usize);
    builder.set_producer(7, 0, 0);
    let mut headers: Vec<(&str, &[u8])> = Vec::new();
    for r in &set.records {
        headers.clear();
        headers.extend(r.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref().unwrap_or(&[]))));
        builder.append(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers).unwrap();
    }
    builder.finish().unwrap()
}

/// Native records into the crate's `Record`s and its encoder: what egress did before.
fn crate_to_kafka(native: &[u8], out: &mut BytesMut) {
    for view in wire::Batches::new(native) {
        let view = view.unwrap();
        let h = view.header();
        let records: Vec<Record> = view
            .records()
            .map(|r| {
                let mut headers = IndexMap::with_capacity(r.headers().len());
                for hv in r.headers() {
                    headers.insert(
                        StrBytes::from_string(hv.key().to_owned()),
                        Some(Bytes::copy_from_slice(hv.value())),
                    );
                }
                let delta = (r.offset() - h.base_offset()) as i32;
                Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: -1,
                    producer_id: h.producer_id(),
                    producer_epoch: h.producer_epoch(),
                    timestamp_type: TimestampType::Creation,
                    offset: r.offset() as i64,
                    sequence: h.base_sequence().wrapping_add(delta),
                    timestamp: r.timestamp_ms(),
                    key: r.key().map(Bytes::copy_from_slice),
                    value: r.value().map(Bytes::copy_from_slice),
                    headers,
                }
            })
            .collect();
        let options = RecordEncodeOptions { version: 2, compression: Compression::None };
        RecordBatchEncoder::encode(out, &records, &options).unwrap();
    }
}

/// Runs `f` `rounds` times, `repeats` times over, and keeps the fastest repeat (the
/// machine is shared: the best run is the one least disturbed).
fn best(rounds: usize, repeats: usize, mut f: impl FnMut()) -> f64 {
    (0..repeats)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..rounds {
                f();
            }
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn report(name: &str, rounds: usize, n: usize, seconds: f64) {
    let records = (rounds * n) as f64;
    println!(
        "{name:<34} {:>8.0} MB/s of values  {:>6.0} ns/record",
        records * VALUE_BYTES as f64 / seconds / 1e6,
        seconds * 1e9 / records
    );
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, &records(n), &options).unwrap();
    let kafka = buf.freeze();
    let native = to_native(&kafka, wire::constants::BATCH_BYTES_MAX as usize).unwrap().batches;
    println!("{n} records of {VALUE_BYTES} B per batch ({} B Kafka), {rounds} rounds", kafka.len());

    let max = wire::constants::BATCH_BYTES_MAX as usize;
    let repeats = 7;
    let mut out = BytesMut::with_capacity(kafka.len() * 2);
    let t = best(rounds, repeats, || {
        std::hint::black_box(to_native(&kafka, max).unwrap());
    });
    report("ingress  to_native (records.rs)", rounds, n, t);
    let t = best(rounds, repeats, || {
        std::hint::black_box(crate_to_native(&kafka));
    });
    report("ingress  crate decode + build", rounds, n, t);
    let t = best(rounds, repeats, || {
        out.clear();
        to_kafka(&native, &mut out).unwrap();
        std::hint::black_box(&out);
    });
    report("egress   to_kafka (records.rs)", rounds, n, t);
    let t = best(rounds, repeats, || {
        out.clear();
        crate_to_kafka(&native, &mut out);
        std::hint::black_box(&out);
    });
    report("egress   crate Records + encode", rounds, n, t);
}
