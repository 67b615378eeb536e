//! How fast one producer task turns 1 KiB records into produce requests on the wire: the
//! broker is replaced by a discarding sink on loopback that answers every produce at once,
//! so the figure is the client's own cost (batching, encoding, framing, the socket).
//!
//! Run: `cargo bench -p client --bench producer`. Target: >= 1 GB/s of record values.

use std::time::{Duration, Instant};

use client::{Client, Producer, ProducerConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wire::constants::FRAME_HEADER_BYTES;
use wire::*;

/// A loopback server that answers handshake, metadata and produce, discarding the records.
async fn sink() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut head = [0u8; FRAME_HEADER_BYTES];
                let mut body: AlignedVec = AlignedVec::new();
                loop {
                    if s.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let h = FrameHeader::decode(&head, u32::MAX).unwrap();
                    body.clear();
                    body.resize(h.body_padded_len(), 0);
                    s.read_exact(&mut body).await.unwrap();
                    let reply = match ApiKey::from_u16(h.api_key).unwrap() {
                        ApiKey::Handshake => encode_response(
                            h.correlation_id,
                            &HandshakeResponse { protocol_version: 1, ..Default::default() },
                        ),
                        ApiKey::Metadata => encode_response(
                            h.correlation_id,
                            &MetadataResponse {
                                shard_count: 1,
                                shards: vec![ShardAddress {
                                    shard_id: 0,
                                    host: addr.ip().to_string(),
                                    port: addr.port(),
                                }],
                                topics: vec![TopicMetadata {
                                    name: "sink".into(),
                                    error: 0,
                                    config: TopicConfig {
                                        partition_count: 1,
                                        ..Default::default()
                                    },
                                    partitions: vec![PartitionMetadata { partition: 0, shard: 0 }],
                                }],
                            },
                        ),
                        _ => encode_response(
                            h.correlation_id,
                            &ProduceResponse {
                                topics: vec![ProduceTopicResult {
                                    name: "sink".into(),
                                    partitions: vec![ProducePartitionResult {
                                        partition: 0,
                                        error: 0,
                                        base_offset: 0,
                                        last_offset: 0,
                                        log_append_time_ms: 0,
                                    }],
                                }],
                            },
                        ),
                    };
                    s.write_all(&reply.unwrap()).await.unwrap();
                }
            });
        }
    });
    addr
}

fn producer_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let addr = rt.block_on(sink());
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

criterion_group!(benches, producer_throughput);
criterion_main!(benches);
