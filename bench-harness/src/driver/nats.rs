//! NATS JetStream through `async-nats`: each topic is a file-backed stream whose partitions
//! are the subjects `<topic>.<partition>`; a producer publishes with acks (many in flight),
//! a consumer is an ephemeral pull consumer of one subject from the start, without acks.
//!
//! Durability: JetStream acknowledges a publish once the message is in its file store, but
//! by default fsyncs only every 2 minutes. For `durable` workloads a spawned server runs with
//! `sync_interval: always` (nats-server 2.10+; see `spawn.rs`, which notes in the result when
//! the server is older and cannot); against a server you started yourself, set that in its
//! configuration or the comparison is against weaker durability than this broker's.

use std::future::Future;
use std::pin::Pin;

use async_nats::jetstream::consumer::pull::{self, Stream as PullStream};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, Context};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};

use super::{partition_of_key, ConsumerDriver, Driver, ProducerDriver, ProducerSettings};
use crate::error::HarnessError;

const NAME: &str = "nats";

/// Publishes whose acks may be outstanding per producer (the send waits beyond this).
const ACKS_IN_FLIGHT_MAX: usize = 16_384;
/// Messages a pull consumer asks for per request.
const PULL_BATCH_MESSAGES: usize = 1000;

fn err(e: impl std::fmt::Display) -> HarnessError {
    HarnessError::driver(NAME, e)
}

/// See the module docs.
#[derive(Debug)]
pub struct NatsDriver {
    url: String,
    client: async_nats::Client,
    js: Context,
}

impl NatsDriver {
    /// Connects to the server at `url` (`nats://HOST:PORT`).
    pub async fn connect(url: &str) -> Result<NatsDriver, HarnessError> {
        let client = async_nats::connect(url)
            .await
            .map_err(|e| err(format!("cannot reach NATS at {url}: {e}")))?;
        if !client.server_info().jetstream {
            return Err(err(format!(
                "the server at {url} has JetStream disabled (start it with -js)"
            )));
        }
        let js = jetstream::new(client.clone());
        Ok(NatsDriver { url: url.into(), client, js })
    }
}

impl Driver for NatsDriver {
    type Producer = NatsProducer;
    type Consumer = NatsConsumer;

    fn name(&self) -> &'static str {
        NAME
    }

    fn server_version(&self) -> String {
        format!("nats-server {}", self.client.server_info().version)
    }

    async fn create_topic(&self, topic: &str, _partitions: u32) -> Result<(), HarnessError> {
        self.js
            .create_stream(StreamConfig {
                name: topic.into(),
                subjects: vec![format!("{topic}.>")],
                storage: StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), HarnessError> {
        self.js.delete_stream(topic).await.map_err(err)?;
        Ok(())
    }

    async fn producer(
        &self,
        topic: &str,
        settings: &ProducerSettings,
    ) -> Result<NatsProducer, HarnessError> {
        // Each producer gets its own connection, as each broker producer does.
        let client = async_nats::connect(&self.url).await.map_err(err)?;
        let js =
            jetstream::ContextBuilder::new().max_ack_inflight(ACKS_IN_FLIGHT_MAX).build(client);
        Ok(NatsProducer {
            js,
            subjects: (0..settings.partitions).map(|p| format!("{topic}.{p}")).collect(),
            next: 0,
        })
    }

    async fn group_consumer(
        &self,
        _topic: &str,
        _group: &str,
    ) -> Result<NatsConsumer, HarnessError> {
        Err(err("consumer groups are not supported by this driver"))
    }

    async fn consumer(&self, topic: &str, partition: u32) -> Result<NatsConsumer, HarnessError> {
        let stream = self.js.get_stream(topic).await.map_err(err)?;
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject: format!("{topic}.{partition}"),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                ..Default::default()
            })
            .await
            .map_err(err)?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(PULL_BATCH_MESSAGES)
            .messages()
            .await
            .map_err(err)?;
        Ok(NatsConsumer { messages })
    }
}

/// Publishes to a stream's subjects.
pub struct NatsProducer {
    js: Context,
    subjects: Vec<String>,
    next: u32,
}

impl std::fmt::Debug for NatsProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsProducer").field("subjects", &self.subjects.len()).finish()
    }
}

/// A JetStream publish ack.
pub type NatsAck = Pin<Box<dyn Future<Output = Result<(), HarnessError>> + Send>>;

impl ProducerDriver for NatsProducer {
    type Ack = NatsAck;

    async fn send(&mut self, key: Option<&[u8]>, payload: &[u8]) -> Result<NatsAck, HarnessError> {
        let partitions = self.subjects.len() as u32;
        let p = match key {
            Some(k) => partition_of_key(k, partitions),
            None => {
                self.next = self.next.wrapping_add(1);
                self.next % partitions
            }
        };
        let ack = self
            .js
            .publish(self.subjects[p as usize].clone(), Bytes::copy_from_slice(payload))
            .await
            .map_err(err)?;
        // The ack holds the connection: a producer dropped at the end of the run must not
        // close it under acks still on their way.
        let js = self.js.clone();
        Ok(Box::pin(async move {
            let r = ack.await.map(|_| ()).map_err(err);
            drop(js);
            r
        }))
    }

    async fn flush(&mut self) -> Result<(), HarnessError> {
        self.js.client().flush().await.map_err(err)
    }
}

/// An ephemeral pull consumer of one subject.
pub struct NatsConsumer {
    messages: PullStream,
}

impl std::fmt::Debug for NatsConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConsumer").finish()
    }
}

impl ConsumerDriver for NatsConsumer {
    async fn receive(
        &mut self,
        on_message: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<bool, HarnessError> {
        let Some(first) = self.messages.next().await else { return Ok(false) };
        on_message(&first.map_err(err)?.payload);
        // Take whatever else is already buffered without waiting.
        while let Some(Some(m)) = self.messages.next().now_or_never() {
            on_message(&m.map_err(err)?.payload);
        }
        Ok(true)
    }
}
