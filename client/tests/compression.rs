//! Compressed batches against the real broker: a producer compresses with lz4 or zstd, the
//! broker validates, stores and serves the compressed bytes (through a restart), consumers
//! read the records transparently, key conditions and timestamp lookups see inside them, and
//! a damaged compressed batch is refused without storing anything.

mod cli;

use cli::brokerctl;

use std::collections::BTreeMap;
use std::time::Duration;

use client::consumer::{Consumer, CREDIT_WINDOW_BYTES_DEFAULT};
use client::{Client, ClientError, Producer, ProducerConfig};
use integration_tests::{create_topic, produce, Broker};
use wire::batch::header::covered_crc;
use wire::constants::{ATTR_COMPRESSION_MASK, BATCH_HEADER_BYTES};
use wire::{
    AckLevel, AlignedVec, BatchBuilder, BatchEnvelope, Compression, Envelopes, ErrorCode,
    ExpectedPosition, OffsetSpec, StartPosition, TopicConfig,
};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A ~1 KB order event, compressible as real JSON is.
fn order(i: u64) -> Vec<u8> {
    let items: Vec<String> = (0..8)
        .map(|j| {
            format!(
                r#"{{"sku":"SKU-{:05}","qty":{},"price_cents":{}}}"#,
                (i * 7 + j) % 5000,
                j % 4 + 1,
                199 + (i + j) % 9000
            )
        })
        .collect();
    format!(
        r#"{{"order_id":{i},"customer":"cust-{}","status":"paid","currency":"EUR","items":[{}],"shipping":{{"country":"DE","city":"Berlin","street":"Hauptstrasse {}"}}}}"#,
        i % 1000,
        items.join(","),
        i % 200
    )
    .into_bytes()
}

/// Every record of `topic`/`partition` as (offset → key, value, headers), fetched with the
/// client, plus the stored batches' codecs and their bytes (as stored and served).
async fn read_back(
    client: &Client,
    topic: &str,
    partition: u32,
) -> (BTreeMap<u64, (Vec<u8>, Vec<u8>, Vec<(String, Vec<u8>)>)>, Vec<u16>, usize) {
    let end = client.list_offsets(topic, OffsetSpec::Latest).await.unwrap();
    let end = end.iter().find(|e| e.0 == partition).unwrap().1;
    let (mut records, mut codecs, mut stored) = (BTreeMap::new(), Vec::new(), 0);
    let mut offset = 0;
    while offset < end {
        let r = client.fetch(topic, partition, offset, 1 << 20, 0).await.unwrap();
        let raw = wire::to_aligned(&r.batches);
        for e in Envelopes::new(&raw) {
            let e = e.unwrap();
            codecs.push(e.header().attributes() & ATTR_COMPRESSION_MASK);
            stored += e.bytes().len();
        }
        let plain = client::consumer::readable(&r.batches).unwrap();
        for b in wire::Batches::new(&plain) {
            let b = b.unwrap();
            for rec in b.records() {
                let headers =
                    rec.headers().map(|h| (h.key().to_owned(), h.value().to_vec())).collect();
                records.insert(
                    rec.offset(),
                    (rec.key().unwrap().to_vec(), rec.value().unwrap().to_vec(), headers),
                );
            }
            offset = b.header().next_offset();
        }
    }
    (records, codecs, stored)
}

#[test]
fn compressed_batches_are_stored_served_and_read_back_transparently() {
    let mut broker = Broker::start(2);
    let addr = broker.public.to_string();
    const RECORDS: u64 = 3_000;
    for (topic, compression) in
        [("plain", Compression::None), ("lz4", Compression::Lz4), ("zstd", Compression::ZSTD)]
    {
        rt().block_on(async {
            let client = Client::connect(&addr).await.unwrap();
            let config = TopicConfig { partition_count: 1, ..Default::default() };
            client.create_topic(topic, config).await.unwrap();
            let producer = Producer::new(
                client.clone(),
                ProducerConfig {
                    compression,
                    linger: Duration::from_millis(5),
                    ..Default::default()
                },
            );
            let mut acks = Vec::new();
            for i in 0..RECORDS {
                let key = format!("order-{i}");
                let f = producer
                    .send(topic, Some(key.as_bytes()), Some(&order(i)), &[("n", &i.to_le_bytes())])
                    .await
                    .unwrap();
                acks.push(f);
            }
            for (i, f) in acks.into_iter().enumerate() {
                assert_eq!(f.await.unwrap().1, i as u64);
            }
            // A subscription gets the same records, decompressed by the client.
            let mut consumer = Consumer::subscribe(
                &client,
                topic,
                0,
                StartPosition::Offset(0),
                CREDIT_WINDOW_BYTES_DEFAULT,
            )
            .await
            .unwrap();
            let mut next = 0u64;
            while next < RECORDS {
                let batch = consumer.next_batch().await.unwrap().unwrap();
                for r in batch.records() {
                    assert_eq!(r.offset(), next);
                    assert_eq!(r.value().unwrap(), order(next).as_slice());
                    next += 1;
                }
            }
        });
    }

    // Through a kill and restart: recovery reads the compressed segments.
    broker.kill();
    broker.restart();
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let (want, codecs, plain_bytes) = read_back(&client, "plain", 0).await;
        assert_eq!(want.len() as u64, RECORDS);
        assert!(codecs.iter().all(|&c| c == 0));
        for (topic, codec) in [("lz4", 1u16), ("zstd", 2)] {
            let (got, codecs, stored) = read_back(&client, topic, 0).await;
            assert!(stored * 2 < plain_bytes, "{topic}: {stored} bytes stored vs {plain_bytes}");
            assert_eq!(got, want, "{topic}: every record, byte for byte");
            assert!(codecs.iter().all(|&c| c == codec), "{topic} stored as sent: {codecs:?}");
            // A timestamp lookup looks inside compressed batches.
            let at = client.list_offsets(topic, OffsetSpec::Timestamp(0)).await.unwrap();
            assert_eq!(at[0].1, 0);
        }
    });
}

fn batch_of(key: &str, values: &[&[u8]], compression: Compression) -> AlignedVec {
    let mut b = BatchBuilder::new(1 << 20);
    for v in values {
        b.append(1_700_000_000_000, Some(key.as_bytes()), Some(v), &[]).unwrap();
    }
    let plain = b.finish().unwrap();
    let mut out = AlignedVec::new();
    BatchEnvelope::validate(&plain).unwrap().compress_into(compression, &mut out).unwrap();
    out
}

fn forge_crc(batch: &mut [u8]) {
    let crc = covered_crc(batch);
    batch[4..8].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn damaged_compressed_batches_are_refused_and_store_nothing() {
    let broker = Broker::start(1);
    let mut conn = broker.connect();
    create_topic(&mut conn, "t", 1);
    let value = order(1);
    let good = batch_of("k", &[&value, &value, &value], Compression::ZSTD);
    let records_len = u32::from_le_bytes(good[68..72].try_into().unwrap()) as usize;

    let mut garbage = good.clone();
    garbage[BATCH_HEADER_BYTES + records_len / 2] ^= 0xff;
    forge_crc(&mut garbage);
    let mut short = good.clone();
    let ulen = u32::from_le_bytes(short[72..76].try_into().unwrap());
    short[72..76].copy_from_slice(&(ulen - 16).to_le_bytes());
    forge_crc(&mut short);
    let mut huge = good.clone();
    huge[72..76].copy_from_slice(&u32::MAX.to_le_bytes());
    forge_crc(&mut huge);
    let mut unknown = good.clone();
    unknown[26..28].copy_from_slice(&5u16.to_le_bytes());
    forge_crc(&mut unknown);
    let mut torn_crc = good.clone();
    torn_crc[BATCH_HEADER_BYTES] ^= 1;

    for (name, bad, code) in [
        ("garbage records", &garbage, ErrorCode::InvalidBatch),
        ("uncompressed_len a lie", &short, ErrorCode::InvalidBatch),
        ("uncompressed_len over the maximum", &huge, ErrorCode::InvalidBatch),
        ("unknown codec", &unknown, ErrorCode::InvalidBatch),
        ("bad CRC", &torn_crc, ErrorCode::CorruptBatch),
    ] {
        // A good batch first in the same request: the partition's request is all or nothing.
        let mut both = good.clone();
        both.extend_from_slice(bad);
        let r = produce(&mut conn, "t", 0, &both, AckLevel::Durable);
        assert_eq!(r.error, code.as_u16(), "{name}");
    }
    let r = produce(&mut conn, "t", 0, &good, AckLevel::Durable);
    assert_eq!((r.error, r.base_offset), (0, 0), "nothing was stored before");
}

#[test]
fn key_conditions_see_inside_compressed_batches() {
    let broker = Broker::start(1);
    let addr = broker.public.to_string();
    rt().block_on(async move {
        let client = Client::connect(&addr).await.unwrap();
        let config = TopicConfig { partition_count: 1, ..Default::default() };
        client.create_topic("accounts", config).await.unwrap();
        let v = order(7);
        let first = batch_of("acct-1", &[&v, &v], Compression::Lz4);
        let r = client
            .produce_expecting(
                "accounts",
                0,
                &first,
                AckLevel::Durable,
                ExpectedPosition::KeyNeverWritten,
            )
            .await
            .unwrap();
        assert_eq!(r.last_offset, 1);
        let again = batch_of("acct-1", &[&v], Compression::ZSTD);
        let e = client
            .produce_expecting(
                "accounts",
                0,
                &again,
                AckLevel::Durable,
                ExpectedPosition::KeyNeverWritten,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::ConditionFailed { current_offset: 1, .. }), "{e}");
        let r = client
            .produce_expecting(
                "accounts",
                0,
                &again,
                AckLevel::Durable,
                ExpectedPosition::KeyLastOffset(1),
            )
            .await
            .unwrap();
        assert_eq!(r.base_offset, 2);
    });
}

#[test]
fn brokerctl_produces_compressed_and_consumes_plain() {
    let broker = Broker::start(1);
    let run = |args: &[&str], stdin: Option<&str>| brokerctl(&broker, args, stdin);
    let (ok, _, err) = run(&["topic", "create", "events", "--partitions", "1"], None);
    assert!(ok, "{err}");
    let lines: String =
        (0..200).map(|i| format!("{}\n", String::from_utf8(order(i)).unwrap())).collect();
    let (ok, _, err) = run(&["produce", "events", "--compression", "zstd"], Some(&lines));
    assert!(ok, "{err}");
    let (ok, out, err) = run(&["consume", "events", "--count", "200"], None);
    assert!(ok, "{err}");
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), 200, "{out}");
    assert!(got[199].contains(r#""order_id":199"#), "{}", got[199]);
    let (ok, _, err) = run(&["produce", "events", "--compression", "gzip"], Some("x\n"));
    assert!(!ok && err.contains("unknown compression"), "{err}");
}

/// A push of many compressed batches is handed out one batch at a time, each opened alone
/// (records still read in place): the consumer decompressed a whole push at once, so 12
/// stored batches of 15 MiB zeros (a few hundred bytes each as sent) made one `next_batch`
/// allocate 180 MiB in every consumer of the topic (a 4 MiB credit window holds thousands).
#[test]
fn a_consumer_opens_one_pushed_batch_at_a_time() {
    let broker = Broker::start(1);
    let addr = broker.public.to_string();
    rt().block_on(async move {
        let client = Client::connect(&addr).await.unwrap();
        let config = TopicConfig { partition_count: 1, ..Default::default() };
        client.create_topic("bombs", config).await.unwrap();
        let one = integration_tests::zeros_batch_compressed(15 << 20);
        let many: Vec<u8> = (0..12).flat_map(|_| one.iter().copied()).collect();
        let many = wire::to_aligned(&many);
        client.produce_batches("bombs", 0, &many, AckLevel::Durable).await.unwrap();
        let mut consumer =
            Consumer::subscribe(&client, "bombs", 0, StartPosition::Earliest, 4 << 20)
                .await
                .unwrap();
        let (mut records, mut received) = (0u64, 0usize);
        while records < 12 {
            let next = tokio::time::timeout(Duration::from_secs(60), consumer.next_batch());
            let batch = next.await.expect("a batch within 60 s").unwrap().expect("subscribed");
            assert!(batch.bytes().len() <= 16 << 20, "{} bytes open at once", batch.bytes().len());
            received += batch.received_bytes();
            for r in batch.records() {
                assert_eq!((r.offset(), r.value().map(<[u8]>::len)), (records, Some(15 << 20)));
                records += 1;
            }
            assert_eq!(consumer.position(), records);
        }
        assert_eq!(received, many.len(), "every batch handed out once, as sent");
        consumer.close().await.unwrap();
    });
}
