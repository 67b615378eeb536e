//! This broker, through the `client` crate: each harness producer is a `client::Producer` on
//! its own `Client` (its own connections), each consumer a push subscription from the
//! earliest offset, or a `client::GroupConsumer` (its own `Client`) for group workloads.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use client::producer::SendFuture;
use client::{
    Client, ClientConfig, Consumer, GroupConfig, GroupConsumer, Producer, ProducerConfig,
};
use wire::{AckLevel, StartPosition, TopicConfig};

use super::{ConsumerDriver, Driver, ProducerDriver, ProducerSettings};
use crate::error::HarnessError;
use crate::workload::Ack;

const NAME: &str = "broker";

/// Bytes the broker may push to one subscription ahead of what the harness took.
const CREDIT_WINDOW_BYTES: u64 = 8 << 20;

fn err(e: impl std::fmt::Display) -> HarnessError {
    HarnessError::driver(NAME, e)
}

/// See the module docs.
#[derive(Debug)]
pub struct BrokerDriver {
    address: String,
    admin: Client,
    config: ClientConfig,
    /// The stage histograms of every producer made (`client_stage_latency`).
    producer_stages: std::sync::Mutex<Vec<std::sync::Arc<client::ProducerStages>>>,
}

impl BrokerDriver {
    /// Connects to the broker at `address` (`HOST:PORT`); over TLS when `tls_ca` is given
    /// (the CA that signs the broker's certificate; its name must be `address`'s host or
    /// `tls_server_name`).
    pub async fn connect(
        address: &str,
        tls_ca: Option<PathBuf>,
        tls_server_name: Option<String>,
    ) -> Result<BrokerDriver, HarnessError> {
        let config = ClientConfig { tls_ca, tls_server_name, ..client_config() };
        let admin = Client::connect_with(address, config.clone()).await.map_err(err)?;
        Ok(BrokerDriver {
            address: address.into(),
            admin,
            config,
            producer_stages: Default::default(),
        })
    }
}

/// Credentials, when the broker requires authentication, as brokerctl takes them:
/// `BROKER_USER` and `BROKER_PASSWORD` (every connection authenticates with SCRAM-SHA-512).
fn client_config() -> ClientConfig {
    let credentials = match (std::env::var("BROKER_USER"), std::env::var("BROKER_PASSWORD")) {
        (Ok(user), Ok(password)) => Some(client::Credentials::new(user, password)),
        _ => None,
    };
    ClientConfig { client_id: "bench-harness".into(), credentials, ..ClientConfig::default() }
}

impl Driver for BrokerDriver {
    type Producer = BrokerProducer;
    type Consumer = BrokerConsumer;

    fn name(&self) -> &'static str {
        NAME
    }

    fn server_version(&self) -> String {
        self.admin.broker_version().to_owned()
    }

    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), HarnessError> {
        // Benchmark topics keep everything for the run (the backlog phase reads it all back);
        // they are deleted afterwards.
        let config = TopicConfig {
            partition_count: partitions,
            retention_ms: -1,
            retention_bytes: -1,
            ..TopicConfig::default()
        };
        self.admin.create_topic(topic, config).await.map_err(err)?;
        Ok(())
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), HarnessError> {
        self.admin.delete_topic(topic).await.map_err(err)
    }

    async fn stage_latency(&self, reset: bool) -> Vec<crate::result::StageRow> {
        let Ok(shards) = self.admin.stats_with_latency(reset).await else { return Vec::new() };
        shards
            .iter()
            .flat_map(|s| {
                s.latency.iter().map(|l| crate::result::StageRow {
                    shard: s.shard_id,
                    stage: l.stage.clone(),
                    count: l.count,
                    p50_us: l.p50_us,
                    p99_us: l.p99_us,
                    p999_us: l.p999_us,
                    max_us: l.max_us,
                })
            })
            .collect()
    }

    fn client_stage_latency(&self, reset: bool) -> Vec<crate::result::StageRow> {
        let mut merged: Vec<(client::ProducerStage, hdrhistogram::Histogram<u64>)> = Vec::new();
        for stages in self.producer_stages.lock().expect("not poisoned").iter() {
            for (stage, h) in stages.histograms(reset) {
                match merged.iter_mut().find(|(s, _)| *s == stage) {
                    Some((_, m)) => {
                        let _ = m.add(&h);
                    }
                    None => merged.push((stage, h)),
                }
            }
        }
        merged
            .into_iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|(stage, h)| crate::result::StageRow::from_histogram(stage.name(), &h, 1_000))
            .collect()
    }

    async fn producer(
        &self,
        topic: &str,
        settings: &ProducerSettings,
    ) -> Result<BrokerProducer, HarnessError> {
        let client = Client::connect_with(&self.address, self.config.clone()).await.map_err(err)?;
        let config = ProducerConfig {
            ack: match settings.ack {
                Ack::None => AckLevel::None,
                Ack::Written => AckLevel::Written,
                Ack::Durable => AckLevel::Durable,
            },
            linger: Duration::from_micros(settings.linger_us),
            batch_bytes_max: settings.batch_bytes_max,
            in_flight_per_partition_max: settings.in_flight_per_partition_max,
            requests_in_flight_per_connection_max: settings.requests_in_flight_per_connection_max,
            idempotence: settings.idempotence,
            compression: settings
                .compression
                .parse()
                .map_err(|e| HarnessError::Workload(format!("{e}")))?,
            ..ProducerConfig::default()
        };
        let producer = Producer::new(client, config);
        self.producer_stages.lock().expect("not poisoned").push(producer.stages());
        Ok(BrokerProducer { topic: topic.into(), producer })
    }

    async fn consumer(&self, topic: &str, partition: u32) -> Result<BrokerConsumer, HarnessError> {
        let consumer = Consumer::subscribe(
            &self.admin,
            topic,
            partition,
            StartPosition::Earliest,
            CREDIT_WINDOW_BYTES,
        )
        .await
        .map_err(err)?;
        Ok(BrokerConsumer::Partition(consumer))
    }

    async fn group_consumer(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<BrokerConsumer, HarnessError> {
        let client = Client::connect_with(&self.address, self.config.clone()).await.map_err(err)?;
        let config = GroupConfig {
            reset: StartPosition::Earliest,
            credit_window_bytes: CREDIT_WINDOW_BYTES,
            ..GroupConfig::new(group, &[topic])
        };
        let member = GroupConsumer::join(&client, config).await.map_err(err)?;
        Ok(BrokerConsumer::Group(Box::new(member)))
    }
}

/// A `client::Producer` for one topic.
#[derive(Debug)]
pub struct BrokerProducer {
    topic: String,
    producer: Producer,
}

/// The broker's ack of one message.
#[derive(Debug)]
pub struct BrokerAck(SendFuture);

impl Future for BrokerAck {
    type Output = Result<(), HarnessError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| r.map(|_| ()).map_err(err))
    }
}

impl ProducerDriver for BrokerProducer {
    type Ack = BrokerAck;

    async fn send(
        &mut self,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<BrokerAck, HarnessError> {
        let ack = self.producer.send(&self.topic, key, Some(payload), &[]).await.map_err(err)?;
        Ok(BrokerAck(ack))
    }

    async fn flush(&mut self) -> Result<(), HarnessError> {
        self.producer.flush().await.map_err(err)
    }
}

/// A push subscription to one partition, or a consumer group member.
#[derive(Debug)]
pub enum BrokerConsumer {
    /// One partition.
    Partition(Consumer),
    /// A group member (its own client and connections).
    Group(Box<GroupConsumer>),
}

impl ConsumerDriver for BrokerConsumer {
    async fn receive(
        &mut self,
        on_message: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<bool, HarnessError> {
        let batch = match self {
            BrokerConsumer::Partition(c) => match c.next_batch().await.map_err(err)? {
                Some(batch) => batch,
                None => return Ok(false),
            },
            BrokerConsumer::Group(g) => g.next().await.map_err(err)?.batch,
        };
        for record in batch.records() {
            on_message(record.value().unwrap_or_default());
        }
        Ok(true)
    }
}
