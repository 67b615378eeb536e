//! A loopback stand-in for the broker that answers handshake, metadata (one topic `sink`, one
//! partition), producer ids and produce, discarding the records. Produce answers can be held back to
//! inject a broker that stops answering. Shared by the producer benchmark and tests; the real
//! broker is tested elsewhere.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use wire::constants::FRAME_HEADER_BYTES;
use wire::*;

/// A running sink.
pub struct Sink {
    pub addr: std::net::SocketAddr,
    /// Produce requests received.
    pub produces: Arc<AtomicU64>,
    /// The largest produce request body received.
    pub largest_produce_bytes: Arc<AtomicU64>,
    answer: watch::Sender<bool>,
}

impl Sink {
    /// Starts a sink on the current runtime; `answering` says whether produce is answered.
    pub async fn start(answering: bool) -> Sink {
        Sink::start_with(answering, 0).await
    }

    /// A sink whose handshake says it reads request bodies of at most
    /// `frame_body_bytes_max` (0: says nothing).
    pub async fn start_with(answering: bool, frame_body_bytes_max: u32) -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let produces = Arc::new(AtomicU64::new(0));
        let largest = Arc::new(AtomicU64::new(0));
        let (answer, answer_rx) = watch::channel(answering);
        let counters = (produces.clone(), largest.clone());
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                s.set_nodelay(true).unwrap();
                let (produces, largest) = counters.clone();
                let limits = (frame_body_bytes_max, largest);
                tokio::spawn(serve(s, addr, produces, limits, answer_rx.clone()));
            }
        });
        Sink { addr, produces, largest_produce_bytes: largest, answer }
    }

    /// Starts (or stops) answering produce requests; held ones are answered at once.
    pub fn set_answering(&self, on: bool) {
        self.answer.send_replace(on);
    }
}

async fn serve(
    s: tokio::net::TcpStream,
    addr: std::net::SocketAddr,
    produces: Arc<AtomicU64>,
    (frame_body_bytes_max, largest): (u32, Arc<AtomicU64>),
    mut answering: watch::Receiver<bool>,
) {
    // Requests are read (and counted) as they come; answers go out in order, produce
    // answers only while answering is on.
    let (mut rd, mut wr) = s.into_split();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(bool, AlignedVec)>();
    tokio::spawn(async move {
        while let Some((is_produce, reply)) = rx.recv().await {
            if is_produce && answering.wait_for(|on| *on).await.is_err() {
                return;
            }
            if wr.write_all(&reply).await.is_err() {
                return;
            }
        }
    });
    let mut head = [0u8; FRAME_HEADER_BYTES];
    let mut body: AlignedVec = AlignedVec::new();
    loop {
        if rd.read_exact(&mut head).await.is_err() {
            return;
        }
        let h = FrameHeader::decode(&head, u32::MAX).unwrap();
        body.clear();
        body.resize(h.body_padded_len(), 0);
        if rd.read_exact(&mut body).await.is_err() {
            return;
        }
        let (is_produce, reply) = match ApiKey::from_u16(h.api_key).unwrap() {
            ApiKey::Handshake => (
                false,
                encode_response(
                    h.correlation_id,
                    &HandshakeResponse {
                        protocol_version: 1,
                        frame_body_bytes_max,
                        ..Default::default()
                    },
                ),
            ),
            ApiKey::Metadata => (
                false,
                encode_response(
                    h.correlation_id,
                    &MetadataResponse {
                        shard_count: 1,
                        shards: vec![ShardAddress {
                            shard_id: 0,
                            host: addr.ip().to_string(),
                            port: addr.port(),
                        }],
                        tables: Vec::new(),
                        topics: vec![TopicMetadata {
                            name: "sink".into(),
                            error: 0,
                            config: TopicConfig { partition_count: 1, ..Default::default() },
                            partitions: vec![PartitionMetadata { partition: 0, shard: 0 }],
                        }],
                    },
                ),
            ),
            ApiKey::InitProducerId => (
                false,
                encode_response(
                    h.correlation_id,
                    &InitProducerIdResponse { producer_id: 1, ..Default::default() },
                ),
            ),
            _ => {
                let n = produces.fetch_add(1, Ordering::Relaxed);
                largest.fetch_max(u64::from(h.body_len), Ordering::Relaxed);
                // One result per batch entry of the request (a producer's coalescer may send
                // several for the partition): the n-th request's i-th at n * 1,000,000 + i * 1,000.
                let entries = decode_body::<ProduceRequest>(&body)
                    .map_or(1, |r| r.topics.iter().map(|t| t.partitions.len()).sum::<usize>());
                let partitions = (0..entries)
                    .map(|i| ProducePartitionResult {
                        partition: 0,
                        error: 0,
                        base_offset: n as i64 * 1_000_000 + i as i64 * 1_000,
                        last_offset: 0,
                        log_append_time_ms: 0,
                        current_offset: -1,
                    })
                    .collect();
                (
                    true,
                    encode_response(
                        h.correlation_id,
                        &ProduceResponse {
                            topics: vec![ProduceTopicResult { name: "sink".into(), partitions }],
                        },
                    ),
                )
            }
        };
        if tx.send((is_produce, reply.unwrap())).is_err() {
            return;
        }
    }
}
