//! What the harness needs from a system under test: create and delete topics with partitions,
//! producers whose `send` hands back an ack future, and per-partition consumers that read
//! from the beginning.
//!
//! Drivers: [`broker::BrokerDriver`] (this broker through the `client` crate),
//! [`nats::NatsDriver`] (NATS JetStream: a file-backed stream per topic, one subject per
//! partition) and `iggy::IggyDriver` (an Apache Iggy server the user points at; built with
//! `--features iggy`).

use std::future::Future;

use crate::error::HarnessError;
use crate::workload::Ack;

pub mod broker;
#[cfg(feature = "iggy")]
pub mod iggy;
pub mod nats;

/// Producer settings taken from the workload.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// Partitions of the topic.
    pub partitions: u32,
    /// Ack level.
    pub ack: Ack,
    /// Largest batch.
    pub batch_bytes_max: usize,
    /// Batch linger.
    pub linger_us: u64,
    /// Requests in flight per partition.
    pub in_flight_per_partition_max: usize,
    /// Produce requests on the wire per connection (this broker's client).
    pub requests_in_flight_per_connection_max: usize,
    /// Idempotent producer (where the driver has one).
    pub idempotence: bool,
    /// Batch compression (where the driver has it; checked by `Workload::check`).
    pub compression: String,
}

/// A system under test.
pub trait Driver: Send + Sync + 'static {
    /// Its producer.
    type Producer: ProducerDriver;
    /// Its consumer of one partition.
    type Consumer: ConsumerDriver;

    /// Short name for reports ("broker", "nats", "iggy").
    fn name(&self) -> &'static str;

    /// Version of the server (as reported by it when it can).
    fn server_version(&self) -> String;

    /// Creates a topic with `partitions` partitions.
    fn create_topic(
        &self,
        topic: &str,
        partitions: u32,
    ) -> impl Future<Output = Result<(), HarnessError>> + Send;

    /// Deletes a topic created by [`Driver::create_topic`].
    fn delete_topic(&self, topic: &str) -> impl Future<Output = Result<(), HarnessError>> + Send;

    /// The server's per-stage latency, starting it afresh after the read when `reset`;
    /// empty where the server does not report one.
    fn stage_latency(
        &self,
        reset: bool,
    ) -> impl Future<Output = Vec<crate::result::StageRow>> + Send {
        let _ = reset;
        async { Vec::new() }
    }

    /// The client's own per-stage latency over every producer this driver made, starting it
    /// afresh after the read when `reset`; empty where the client does not record one.
    fn client_stage_latency(&self, reset: bool) -> Vec<crate::result::StageRow> {
        let _ = reset;
        Vec::new()
    }

    /// A producer for `topic`.
    fn producer(
        &self,
        topic: &str,
        settings: &ProducerSettings,
    ) -> impl Future<Output = Result<Self::Producer, HarnessError>> + Send;

    /// A consumer of `topic`/`partition` from its first message.
    fn consumer(
        &self,
        topic: &str,
        partition: u32,
    ) -> impl Future<Output = Result<Self::Consumer, HarnessError>> + Send;

    /// A member of consumer group `group` reading `topic` (from the first message where the
    /// group has committed nothing), receiving whatever partitions the server assigns.
    fn group_consumer(
        &self,
        topic: &str,
        group: &str,
    ) -> impl Future<Output = Result<Self::Consumer, HarnessError>> + Send;
}

/// Sends messages; each send resolves (first) when the message is queued and (then, through
/// the returned ack) when the server acknowledged it at the workload's level.
pub trait ProducerDriver: Send + 'static {
    /// Resolves when the message is acknowledged.
    type Ack: Future<Output = Result<(), HarnessError>> + Send + 'static;

    /// Queues one message; waits while the producer's buffer is full (backpressure).
    fn send(
        &mut self,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> impl Future<Output = Result<Self::Ack, HarnessError>> + Send;

    /// Ships everything queued.
    fn flush(&mut self) -> impl Future<Output = Result<(), HarnessError>> + Send;
}

/// Receives the messages of one partition.
pub trait ConsumerDriver: Send + 'static {
    /// Waits for the next messages and hands each payload to `on_message`; `Ok(false)` when
    /// the subscription ended.
    fn receive(
        &mut self,
        on_message: &mut (dyn FnMut(&[u8]) + Send),
    ) -> impl Future<Output = Result<bool, HarnessError>> + Send;
}

/// The partition a keyed message goes to in drivers whose server does not partition by key
/// itself (the same FNV-1a hash as this broker's client, so keyed workloads spread alike).
pub fn partition_of_key(key: &[u8], partitions: u32) -> u32 {
    (client::producer::key_hash(key) % u64::from(partitions.max(1))) as u32
}
