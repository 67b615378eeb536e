//! The producer: per-partition batching with linger, a bounded send buffer, and ordered
//! pipelined sends to each partition's owner.
//!
//! Batching happens while a partition has a request outstanding: a record for an idle
//! partition ships at once, records arriving meanwhile gather into the next batch, which
//! ships when nearly full, when its linger expires, or as soon as the outstanding requests
//! are answered (so light load pays no linger and heavy load gets full batches).
//!
//! `send` puts a record into a bounded queue (it waits when the queue is full: backpressure
//! instead of growth; the queue stops draining while `buffer_bytes_max` of shipped batches
//! await their answers) and returns a future of `(partition, offset)`. A background task
//! appends records to one `BatchBuilder` per partition and ships a batch when it is full or
//! its linger expired. Each partition has a sender that keeps up to
//! `in_flight_per_partition_max` requests on the wire, sent in batch order; a retriable error
//! resends the batch (with more than one request in flight a retry can reorder batches of a
//! partition: set the limit to 1 for strict order under failures).
//!
//! Partitioner: records with a key go to `hash(key) % partitions` (FNV-1a, stable across
//! runs and clients); records without a key stick to one partition until its batch ships.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify};
use wire::{
    AckLevel, BatchBuilder, ErrorCode, ProducePartition, ProduceRequest, ProduceResponse,
    ProduceTopic,
};

use crate::client::Client;
use crate::error::ClientError;

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Ack level of every request.
    pub ack: AckLevel,
    /// How long a batch may wait for more records.
    pub linger: Duration,
    /// Largest batch.
    pub batch_bytes_max: usize,
    /// Records queued in the producer before `send` waits.
    pub buffer_records_max: usize,
    /// Bytes of batches shipped but not yet answered; at this limit the producer stops taking
    /// records and `send` waits (backpressure instead of an unbounded queue).
    pub buffer_bytes_max: usize,
    /// Requests in flight per partition.
    pub in_flight_per_partition_max: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            ack: AckLevel::Durable,
            linger: Duration::from_micros(500),
            batch_bytes_max: 256 << 10,
            buffer_records_max: 16_384,
            buffer_bytes_max: 32 << 20,
            in_flight_per_partition_max: 5,
        }
    }
}

type Reply = oneshot::Sender<Result<(u32, u64), ClientError>>;

enum Cmd {
    Record {
        topic: String,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<(String, Vec<u8>)>,
        timestamp_ms: i64,
        reply: Reply,
    },
    Flush(oneshot::Sender<()>),
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Producer {
    tx: mpsc::Sender<Cmd>,
}

/// Resolves to where a record landed.
#[derive(Debug)]
pub struct SendFuture(oneshot::Receiver<Result<(u32, u64), ClientError>>);

impl std::future::Future for SendFuture {
    type Output = Result<(u32, u64), ClientError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|r| r.unwrap_or(Err(ClientError::Shutdown)))
    }
}

/// FNV-1a 64-bit: the key partitioner's hash.
pub fn key_hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Producer {
    /// A producer on `client`.
    pub fn new(client: Client, config: ProducerConfig) -> Producer {
        let (tx, rx) = mpsc::channel(config.buffer_records_max.max(1));
        tokio::spawn(run(client, config, rx));
        Producer { tx }
    }

    /// A producer whose background task runs on `rt` (for callers outside a runtime).
    pub fn new_in(
        rt: &tokio::runtime::Runtime,
        client: Client,
        config: ProducerConfig,
    ) -> Producer {
        let _guard = rt.enter();
        Producer::new(client, config)
    }

    /// Queues a record (waiting while the buffer is full) and returns a future of its
    /// `(partition, offset)`.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> Result<SendFuture, ClientError> {
        let (reply, rx) = oneshot::channel();
        let timestamp_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let cmd = Cmd::Record {
            topic: topic.into(),
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: headers.iter().map(|(k, v)| ((*k).to_owned(), v.to_vec())).collect(),
            timestamp_ms,
            reply,
        };
        self.tx.send(cmd).await.map_err(|_| ClientError::Shutdown)?;
        Ok(SendFuture(rx))
    }

    /// Ships every pending batch now and waits until all were answered.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Cmd::Flush(tx)).await.map_err(|_| ClientError::Shutdown)?;
        rx.await.map_err(|_| ClientError::Shutdown)
    }
}

struct Acc {
    builder: BatchBuilder,
    replies: Vec<Reply>,
    deadline: Instant,
}

type Shipment = (wire::AlignedVec, Vec<Reply>);

/// Bytes shipped and not yet answered, against `buffer_bytes_max`.
#[derive(Debug)]
struct Budget {
    bytes: AtomicUsize,
    freed: Notify,
    max: usize,
}

impl Budget {
    /// Waits until the shipped-but-unanswered bytes are below the limit.
    async fn wait_for_room(&self) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.bytes.load(Ordering::Acquire) < self.max {
                return;
            }
            freed.await;
        }
    }

    fn take(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::AcqRel);
    }

    fn give(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::AcqRel);
        self.freed.notify_waiters();
    }
}

/// A partition's ordered sender task, its queue, and how many of its batches are shipped but
/// not yet answered.
struct Sender {
    tx: mpsc::UnboundedSender<Shipment>,
    task: tokio::task::JoinHandle<()>,
    outstanding: Arc<AtomicUsize>,
}

type PartitionKey = (String, u32);

/// The producer task's state: one open batch per partition, the partition senders, the byte
/// budget.
struct Batcher {
    client: Client,
    config: ProducerConfig,
    budget: Arc<Budget>,
    accs: HashMap<PartitionKey, Acc>,
    sticky: HashMap<String, u32>,
    senders: HashMap<PartitionKey, Sender>,
    /// Partition senders report here when their last outstanding batch was answered.
    idle_tx: mpsc::UnboundedSender<PartitionKey>,
}

async fn run(client: Client, config: ProducerConfig, mut rx: mpsc::Receiver<Cmd>) {
    let (idle_tx, mut idle_rx) = mpsc::unbounded_channel();
    let mut b = Batcher {
        budget: Arc::new(Budget {
            bytes: AtomicUsize::new(0),
            freed: Notify::new(),
            max: config.buffer_bytes_max.max(1),
        }),
        client,
        config,
        accs: HashMap::new(),
        sticky: HashMap::new(),
        senders: HashMap::new(),
        idle_tx,
    };
    loop {
        // Backpressure: take no more records while the shipped batches fill the budget.
        b.budget.wait_for_room().await;
        let next = b.accs.values().map(|a| a.deadline).min();
        let linger = async {
            match next {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None => break,
                Some(Cmd::Flush(done)) => {
                    b.flush().await;
                    let _ = done.send(());
                }
                Some(Cmd::Record { topic, key, value, headers, timestamp_ms, reply }) => {
                    b.record(topic, key, value, headers, timestamp_ms, reply).await;
                }
            },
            Some(k) = idle_rx.recv() => {
                // The partition's pipeline emptied: ship what gathered meanwhile rather than
                // wait for the linger timer.
                if b.outstanding(&k) == 0 {
                    b.ship(k);
                }
            }
            _ = linger => {
                let now = Instant::now();
                let due: Vec<_> =
                    b.accs.iter().filter(|(_, a)| a.deadline <= now).map(|(k, _)| k.clone()).collect();
                for k in due {
                    b.ship(k);
                }
            }
        }
    }
    b.flush().await;
}

impl Batcher {
    /// Batches shipped to `k` and not yet answered.
    fn outstanding(&self, k: &PartitionKey) -> usize {
        self.senders.get(k).map_or(0, |s| s.outstanding.load(Ordering::Acquire))
    }

    async fn record(
        &mut self,
        topic: String,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<(String, Vec<u8>)>,
        timestamp_ms: i64,
        reply: Reply,
    ) {
        let partitions = match self.client.partition_count(&topic).await {
            Ok(n) => n,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let partition = match &key {
            Some(k) => (key_hash(k) % u64::from(partitions)) as u32,
            None => *self.sticky.entry(topic.clone()).or_insert(0) % partitions,
        };
        let k = (topic, partition);
        let hs: Vec<(&str, &[u8])> =
            headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        for round in 0..2 {
            let batch_bytes_max = self.config.batch_bytes_max;
            let linger = self.config.linger;
            let acc = self.accs.entry(k.clone()).or_insert_with(|| Acc {
                builder: BatchBuilder::new(batch_bytes_max),
                replies: Vec::new(),
                deadline: Instant::now() + linger,
            });
            match acc.builder.append(timestamp_ms, key.as_deref(), value.as_deref(), &hs) {
                Ok(()) => {
                    acc.replies.push(reply);
                    let nearly_full = acc.builder.estimated_bytes() * 10 >= batch_bytes_max * 9;
                    // Ship at once when nearly full, or when nothing of this partition is on
                    // the wire: batching only happens while a request is outstanding, so a
                    // lightly loaded producer adds no linger to its latency.
                    if nearly_full || self.outstanding(&k) == 0 {
                        self.ship(k);
                    }
                    return;
                }
                Err(wire::BuildError::Full { .. }) if round == 0 => self.ship(k.clone()),
                Err(e) => {
                    let _ = reply.send(Err(ClientError::Record(e.to_string())));
                    return;
                }
            }
        }
    }

    /// Ships every open batch and waits until every partition sender has drained; new
    /// senders start on demand.
    async fn flush(&mut self) {
        let keys: Vec<_> = self.accs.keys().cloned().collect();
        for k in keys {
            self.ship(k);
        }
        let drained: Vec<_> = self
            .senders
            .drain()
            .map(|(_, s)| {
                drop(s.tx);
                s.task
            })
            .collect();
        for task in drained {
            let _ = task.await;
        }
    }

    /// Finishes a partition's batch and hands it to that partition's sender.
    fn ship(&mut self, key: PartitionKey) {
        let Some(mut acc) = self.accs.remove(&key) else { return };
        if acc.builder.is_empty() {
            return;
        }
        if let Some(s) = self.sticky.get_mut(&key.0) {
            if *s == key.1 {
                *s = s.wrapping_add(1); // the next unkeyed records go to the next partition
            }
        }
        let batch = match acc.builder.finish() {
            Ok(b) => b,
            Err(e) => {
                for r in acc.replies {
                    let _ = r.send(Err(ClientError::Record(e.to_string())));
                }
                return;
            }
        };
        let sender = self.senders.entry(key.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let outstanding = Arc::new(AtomicUsize::new(0));
            let task = tokio::spawn(partition_sender(
                self.client.clone(),
                self.config.clone(),
                Arc::clone(&self.budget),
                Arc::clone(&outstanding),
                self.idle_tx.clone(),
                key.clone(),
                rx,
            ));
            Sender { tx, task, outstanding }
        });
        self.budget.take(batch.len());
        sender.outstanding.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::error::SendError((batch, _))) = sender.tx.send((batch, acc.replies)) {
            self.budget.give(batch.len());
            sender.outstanding.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Sends one partition's batches in order, keeping up to `in_flight_per_partition_max` on
/// the wire.
async fn partition_sender(
    client: Client,
    config: ProducerConfig,
    budget: Arc<Budget>,
    outstanding: Arc<AtomicUsize>,
    idle: mpsc::UnboundedSender<PartitionKey>,
    key: PartitionKey,
    mut rx: mpsc::UnboundedReceiver<Shipment>,
) {
    let (topic, partition) = (key.0.as_str(), key.1);
    let mut in_flight: VecDeque<(Shipment, Option<crate::connection::PendingResponse>)> =
        VecDeque::new();
    let mut open = true;
    let finished = |n: usize| {
        if outstanding.fetch_sub(n, Ordering::AcqRel) == n {
            let _ = idle.send(key.clone());
        }
    };
    while open || !in_flight.is_empty() {
        if open && in_flight.len() < config.in_flight_per_partition_max.max(1) {
            let next = if in_flight.is_empty() {
                rx.recv().await
            } else {
                match rx.try_recv() {
                    Ok(s) => Some(s),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        finish_one(&client, &config, &budget, topic, partition, &mut in_flight)
                            .await;
                        finished(1);
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                }
            };
            match next {
                Some(shipment) => {
                    let pending = send_batch(&client, &config, topic, partition, &shipment.0).await;
                    in_flight.push_back((shipment, pending));
                }
                None => open = false,
            }
            continue;
        }
        finish_one(&client, &config, &budget, topic, partition, &mut in_flight).await;
        finished(1);
    }
}

async fn send_batch(
    client: &Client,
    config: &ProducerConfig,
    topic: &str,
    partition: u32,
    batch: &[u8],
) -> Option<crate::connection::PendingResponse> {
    let conn = client.owner_conn(topic, partition).await.ok()?;
    conn.send(&ProduceRequest {
        ack: config.ack,
        timeout_ms: client.config().request_timeout.as_millis() as u32,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition { partition, batches: batch.to_vec() }],
        }],
    })
    .ok()
}

/// Waits for the oldest request; answers its records (retrying via the client on a
/// retriable failure).
async fn finish_one(
    client: &Client,
    config: &ProducerConfig,
    budget: &Budget,
    topic: &str,
    partition: u32,
    in_flight: &mut VecDeque<(Shipment, Option<crate::connection::PendingResponse>)>,
) {
    let Some(((batch, replies), pending)) = in_flight.pop_front() else { return };
    let first = match pending {
        Some(p) => match p.wait().await {
            Ok(frame) => decode(&frame, topic, partition),
            Err(e) => Err(e),
        },
        None => Err(ClientError::Closed { addr: "0.0.0.0:0".parse().expect("addr") }),
    };
    let result = match first {
        Err(e) if e.is_retriable() => client
            .produce_batches(topic, partition, &batch, config.ack)
            .await
            .map(|r| r.base_offset),
        other => other,
    };
    budget.give(batch.len());
    match result {
        Ok(base) => {
            for (i, r) in replies.into_iter().enumerate() {
                let _ = r.send(Ok((partition, base as u64 + i as u64)));
            }
        }
        Err(e) => {
            for r in replies {
                let _ = r.send(Err(e.clone()));
            }
        }
    }
}

fn decode(
    frame: &crate::connection::Frame,
    topic: &str,
    partition: u32,
) -> Result<i64, ClientError> {
    if frame.header.has_flag(wire::constants::FLAG_ERROR) {
        let e: wire::ErrorBody =
            wire::decode_body(frame.body()).map_err(|e| ClientError::Protocol(e.to_string()))?;
        return Err(ClientError::Partition {
            topic: topic.into(),
            partition,
            code: ErrorCode::from_u16(e.code).unwrap_or(ErrorCode::UnknownServerError),
        });
    }
    let resp: ProduceResponse =
        wire::decode_body(frame.body()).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let r = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| ClientError::Protocol("empty produce response".into()))?;
    match ErrorCode::from_u16(r.error) {
        Some(ErrorCode::None) => Ok(r.base_offset),
        code => Err(ClientError::Partition {
            topic: topic.into(),
            partition,
            code: code.unwrap_or(ErrorCode::UnknownServerError),
        }),
    }
}
