//! The producer: per-partition batching with linger, a bounded send buffer, and ordered
//! pipelined sends to each partition's owner.
//!
//! `send` appends the record straight into its partition's open batch (one copy of key and
//! value, under a short mutex; no task hand-off per record) and returns a future that
//! resolves when that batch is answered. All records of a batch share one completion cell, so
//! a record costs no channel and no allocation of its own.
//!
//! Batching happens while requests are outstanding: a record with nothing on the wire ahead
//! of it ships at once, records arriving meanwhile gather into the next batch, which ships
//! when nearly full, when its linger expires, or as soon as the outstanding requests are
//! answered (so light load pays no linger and heavy load gets full batches). "Ahead of it"
//! is its partition's requests for a keyed record and its topic's for an unkeyed one, which
//! may go to any partition. Linger deadlines are checked by every `send` (sub-millisecond
//! under load) and by a timer task (the runtime's millisecond resolution) when sends stop.
//!
//! Backpressure: `send` waits while the bytes of records accepted and not yet answered reach
//! `buffer_bytes_max`, instead of letting a queue grow. Each partition has a sender task that
//! keeps up to `in_flight_per_partition_max` requests on the wire, sent in batch order and
//! along one connection (a switch, e.g. from the public port to the owner's shard port, waits
//! for the requests in flight, since a forwarded request can land after a later direct one); a
//! retriable error resends the batch once every batch shipped before it in its partition was
//! answered, so resends go out in batch order (batches lost together with a connection are
//! not retried at once in any order).
//! Dropping the last handle ships what is open; the sender tasks finish in the background.
//!
//! Idempotence (on by default): the first `send` gets a producer id from the broker; every
//! batch carries it and the sequence number of its first record in its partition, so the
//! broker stores a resent batch once and answers it with the original offsets, and refuses a
//! batch that would skip one still on its way (`OUT_OF_ORDER_SEQUENCE`, retried). Concurrent
//! first sends share one InitProducerId. A batch that fails for good after taking its
//! sequence (refused, or out of retries) leaves a gap the broker would wait for: the producer
//! then takes a new identity at the next send (another producer id; with a transactional id
//! the next epoch) and every partition starts again at sequence 0; batches already in flight
//! under the old identity may fail too.
//!
//! Partitioner: records with a key go to `hash(key) % partitions` (FNV-1a, stable across
//! runs and clients); records without a key stick to one partition until its batch ships.
//!
//! This file is the handle: [`Producer`] accepts records, waits on the send buffer, hands
//! them to the accumulator, and `flush`es. The pieces behind it:
//! - `completion`: the per-batch completion cell and [`SendFuture`];
//! - `budget`: the send buffer's byte count against `buffer_bytes_max`;
//! - `accumulator`: open batches per partition, when they ship, the linger timer, and
//!   shipping what is open when the last handle drops;
//! - `partitioner`: [`key_hash`] and which partition a record goes to;
//! - `sender`: one task per partition putting its batches on the wire;
//! - `stages`: the producer's own latency by stage of a batch's life ([`Producer::stages`]).

mod accumulator;
mod budget;
mod coalescer;
mod completion;
mod partitioner;
mod sender;
mod stages;

use std::sync::Arc;
use std::time::Duration;

use wire::{AckLevel, Compression};

use crate::client::Client;
use crate::error::ClientError;

use accumulator::{Appended, Inner};
pub use completion::SendFuture;
pub use partitioner::key_hash;
pub use stages::{ProducerStage, ProducerStages};

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Ack level of every request.
    pub ack: AckLevel,
    /// How long a batch may wait for more records.
    pub linger: Duration,
    /// Largest batch (at most what fits one request within the broker's
    /// `frame_body_bytes_max`, less an eighth: a larger setting is lowered to that).
    pub batch_bytes_max: usize,
    /// Bytes of records accepted but not yet answered (open batches and batches on the
    /// wire); at this limit `send` waits (backpressure instead of an unbounded queue).
    pub buffer_bytes_max: usize,
    /// Requests in flight per partition (at most 5 with idempotence: the broker remembers
    /// a producer's last 5 batches per partition).
    pub in_flight_per_partition_max: usize,
    /// Produce requests on the wire per connection (shard); while they are all out, the
    /// batches of every partition of that shard wait and go in the next one together, so
    /// a producer writing to many partitions sends about one request per round trip per
    /// shard instead of one per batch. Default 4: with 2, at 100 MB/s over 16 partitions a
    /// batch waited ~210 µs (p99) for a slot; with 4, many small partitions send about twice
    /// the requests, at about the same broker CPU (`perf/results/2026-12-06-journal-in-flight`).
    pub requests_in_flight_per_connection_max: usize,
    /// Idempotence: the producer gets an id from the broker and numbers its records per
    /// partition, so a batch sent again after a lost answer (a broker crash, a timeout) is
    /// stored once, and a partition's batches are stored in the order they were sent.
    pub idempotence: bool,
    /// A stable name for this producer (implies idempotence): a new producer with the same
    /// name fences this one; its batches are then refused with `PRODUCER_FENCED`.
    pub transactional_id: Option<String>,
    /// Codec for the records of every batch (`none`, `lz4`, `zstd`): batches are compressed
    /// once, by the partition's sender task, and stored and served compressed; consumers
    /// decompress them transparently. A batch that would not shrink is sent as built.
    pub compression: Compression,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            ack: AckLevel::Durable,
            linger: Duration::from_micros(500),
            batch_bytes_max: 256 << 10,
            buffer_bytes_max: 32 << 20,
            in_flight_per_partition_max: 5,
            requests_in_flight_per_connection_max: 4,
            idempotence: true,
            transactional_id: None,
            compression: Compression::None,
        }
    }
}

/// See the module docs. Cheap to clone; clones share the batches.
#[derive(Debug, Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

impl Producer {
    /// The producer's latency by stage of a batch's life (linger, send queue, in flight,
    /// completion), shared by its clones: see `stages.rs`.
    pub fn stages(&self) -> Arc<ProducerStages> {
        self.inner.pipeline.stages.clone()
    }

    /// A producer on `client`; its background tasks run on the current tokio runtime.
    pub fn new(client: Client, config: ProducerConfig) -> Producer {
        Producer { inner: Inner::new(client, config) }
    }

    /// A producer whose background tasks run on `rt` (for callers outside a runtime).
    pub fn new_in(
        rt: &tokio::runtime::Runtime,
        client: Client,
        config: ProducerConfig,
    ) -> Producer {
        let _guard = rt.enter();
        Producer::new(client, config)
    }

    /// Appends a record to its partition's batch (waiting while the send buffer is full) and
    /// returns a future of its `(partition, offset)`. Fails at once for an unknown topic or a
    /// record that cannot fit in a batch.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> Result<SendFuture, ClientError> {
        let inner = &self.inner;
        inner.pipeline.budget.wait_for_room().await;
        let timestamp_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        inner.follow_growth();
        loop {
            // (Again after a reset cleared it between the ask and the append.)
            inner.ensure_identity().await?;
            match inner.try_append(topic, timestamp_ms, key, value, headers) {
                Appended::Sent(sent) => return sent,
                Appended::NoIdentity => continue,
                Appended::UnknownTopic => {
                    let partitions = inner.client.partition_count(topic).await?;
                    inner.add_topic(topic, partitions);
                }
            }
        }
    }

    /// Ships every open batch now and waits until every batch shipped before it returns was
    /// answered (records sent meanwhile by other tasks are not waited for). Their outcomes
    /// are their futures'.
    pub async fn flush(&self) -> Result<(), ClientError> {
        self.inner.ship_all();
        let pipeline = &self.inner.pipeline;
        let upto = pipeline.tickets.lock().expect("tickets lock").next;
        loop {
            let answered = pipeline.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            if pipeline.tickets.lock().expect("tickets lock").answered_below(upto) {
                return Ok(());
            }
            answered.await;
        }
    }
}
