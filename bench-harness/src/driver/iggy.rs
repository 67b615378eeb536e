//! Apache Iggy through its published `iggy` SDK (TCP), against a server the user points at:
//! each harness topic is an Iggy stream holding one topic with the workload's partitions.
//!
//! Iggy's `send_messages` acknowledges a whole batch, so the producer batches like this
//! broker's client does (per partition, up to `batch_bytes_max`, shipped when full or when
//! `linger_us` passed) in a background task, and resolves each message's ack when its batch
//! is answered. Consumers poll their partition by offset (Iggy has no push delivery over
//! TCP); an empty poll waits 1 ms before the next. Durability is the server's setting
//! (`enforce_fsync` in its config): set it to match the workload's ack level.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iggy::prelude::{
    Client as _, Consumer, Identifier, IggyClient, IggyClientBuilder, IggyMessage,
    MessageClient as _, Partitioning, PollingStrategy, StreamClient as _, SystemClient as _,
    TopicClient as _, TopicCreateOptions, UserClient as _,
};
use tokio::sync::{mpsc, oneshot};

use super::{partition_of_key, ConsumerDriver, Driver, ProducerDriver, ProducerSettings};
use crate::error::HarnessError;

const NAME: &str = "iggy";
/// The topic inside each stream.
const TOPIC: &str = "t";
/// Messages per poll.
const POLL_MESSAGES: u32 = 1000;

fn err(e: impl std::fmt::Display) -> HarnessError {
    HarnessError::driver(NAME, e)
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct IggySettings {
    /// Server TCP address `HOST:PORT`.
    pub address: String,
    /// User.
    pub username: String,
    /// Password.
    pub password: String,
}

/// See the module docs.
pub struct IggyDriver {
    settings: IggySettings,
    admin: IggyClient,
    version: String,
}

impl std::fmt::Debug for IggyDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IggyDriver").field("address", &self.settings.address).finish()
    }
}

async fn connect(settings: &IggySettings) -> Result<IggyClient, HarnessError> {
    let client = IggyClientBuilder::new()
        .with_tcp()
        .with_server_address(settings.address.clone())
        // The SDK retries a refused connection forever by default; fail instead.
        .with_reconnection_max_retries(Some(0))
        .with_no_delay()
        .build()
        .map_err(err)?;
    client
        .connect()
        .await
        .map_err(|e| err(format!("cannot reach Iggy at {}: {e}", settings.address)))?;
    client.login_user(&settings.username, &settings.password).await.map_err(err)?;
    Ok(client)
}

fn id(name: &str) -> Result<Identifier, HarnessError> {
    Identifier::named(name).map_err(err)
}

impl IggyDriver {
    /// Connects and logs in.
    pub async fn connect(settings: &IggySettings) -> Result<IggyDriver, HarnessError> {
        let admin = connect(settings).await?;
        let version = admin
            .get_stats()
            .await
            .map(|s| format!("iggy-server {}", s.iggy_server_version))
            .unwrap_or_else(|_| "iggy-server (unknown version)".into());
        Ok(IggyDriver { settings: settings.clone(), admin, version })
    }
}

impl Driver for IggyDriver {
    type Producer = IggyProducer;
    type Consumer = IggyConsumer;

    fn name(&self) -> &'static str {
        NAME
    }

    fn server_version(&self) -> String {
        self.version.clone()
    }

    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), HarnessError> {
        self.admin.create_stream(topic).await.map_err(err)?;
        self.admin
            .create_topic(
                &id(topic)?,
                TOPIC,
                &TopicCreateOptions { partitions_count: Some(partitions), ..Default::default() },
            )
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), HarnessError> {
        self.admin.delete_stream(&id(topic)?).await.map_err(err)
    }

    async fn producer(
        &self,
        topic: &str,
        settings: &ProducerSettings,
    ) -> Result<IggyProducer, HarnessError> {
        let client = Arc::new(connect(&self.settings).await?);
        let (tx, rx) = mpsc::channel(16_384);
        tokio::spawn(ship(client, id(topic)?, id(TOPIC)?, settings.clone(), rx));
        Ok(IggyProducer { tx, partitions: settings.partitions, next: 0 })
    }

    async fn group_consumer(
        &self,
        _topic: &str,
        _group: &str,
    ) -> Result<IggyConsumer, HarnessError> {
        Err(err("consumer groups are not supported by this driver"))
    }

    async fn consumer(&self, topic: &str, partition: u32) -> Result<IggyConsumer, HarnessError> {
        Ok(IggyConsumer {
            client: connect(&self.settings).await?,
            stream: id(topic)?,
            topic: id(TOPIC)?,
            partition,
            offset: 0,
            consumer: Consumer::new(Identifier::numeric(1).map_err(err)?),
        })
    }
}

type Reply = oneshot::Sender<Result<(), HarnessError>>;

/// Queues messages for the background batcher.
#[derive(Debug)]
pub struct IggyProducer {
    tx: mpsc::Sender<(u32, Bytes, Reply)>,
    partitions: u32,
    next: u32,
}

/// Resolves when the message's batch was acknowledged.
pub type IggyAck = Pin<Box<dyn Future<Output = Result<(), HarnessError>> + Send>>;

impl ProducerDriver for IggyProducer {
    type Ack = IggyAck;

    async fn send(&mut self, key: Option<&[u8]>, payload: &[u8]) -> Result<IggyAck, HarnessError> {
        let partition = match key {
            Some(k) => partition_of_key(k, self.partitions),
            None => {
                self.next = self.next.wrapping_add(1);
                self.next % self.partitions
            }
        };
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((partition, Bytes::copy_from_slice(payload), reply))
            .await
            .map_err(|_| err("producer task ended"))?;
        Ok(Box::pin(async move { rx.await.unwrap_or_else(|_| Err(err("producer task ended"))) }))
    }

    async fn flush(&mut self) -> Result<(), HarnessError> {
        // Every queued message ships once the channel is drained; acks report completion.
        Ok(())
    }
}

/// One partition's batch being filled.
#[derive(Default)]
struct Pending {
    messages: Vec<IggyMessage>,
    replies: Vec<Reply>,
    bytes: usize,
}

/// The batcher: ships a partition's batch when it is full, or every partition's when the
/// linger passed with nothing new arriving.
async fn ship(
    client: Arc<IggyClient>,
    stream: Identifier,
    topic: Identifier,
    settings: ProducerSettings,
    mut rx: mpsc::Receiver<(u32, Bytes, Reply)>,
) {
    let linger = Duration::from_micros(settings.linger_us.max(1));
    let mut pending: HashMap<u32, Pending> = HashMap::new();
    // When the oldest queued message must ship.
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut open = true;
    while open || !pending.is_empty() {
        let item = match (open, deadline) {
            (false, _) => None,
            (true, None) => {
                let item = rx.recv().await;
                open = item.is_some();
                item
            }
            (true, Some(d)) => match tokio::time::timeout_at(d, rx.recv()).await {
                Ok(item) => {
                    open = item.is_some();
                    item
                }
                Err(_) => None,
            },
        };
        let Some((partition, payload, reply)) = item else {
            for (p, batch) in std::mem::take(&mut pending) {
                send_batch(&client, &stream, &topic, p, batch).await;
            }
            deadline = None;
            continue;
        };
        deadline.get_or_insert_with(|| tokio::time::Instant::now() + linger);
        let len = payload.len();
        match IggyMessage::builder().payload(payload).build() {
            Ok(m) => {
                let batch = pending.entry(partition).or_default();
                batch.messages.push(m);
                batch.replies.push(reply);
                batch.bytes += len;
                if batch.bytes >= settings.batch_bytes_max {
                    let batch = pending.remove(&partition).unwrap_or_default();
                    send_batch(&client, &stream, &topic, partition, batch).await;
                }
            }
            Err(e) => {
                let _ = reply.send(Err(err(e)));
            }
        }
    }
}

async fn send_batch(
    client: &IggyClient,
    stream: &Identifier,
    topic: &Identifier,
    partition: u32,
    mut batch: Pending,
) {
    let r = client
        .send_messages(stream, topic, &Partitioning::partition_id(partition), &mut batch.messages)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    for reply in batch.replies {
        let _ = reply.send(r.clone().map_err(err));
    }
}

/// Polls one partition by offset.
pub struct IggyConsumer {
    client: IggyClient,
    stream: Identifier,
    topic: Identifier,
    partition: u32,
    offset: u64,
    consumer: Consumer,
}

impl std::fmt::Debug for IggyConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IggyConsumer").field("partition", &self.partition).finish()
    }
}

impl ConsumerDriver for IggyConsumer {
    async fn receive(
        &mut self,
        on_message: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<bool, HarnessError> {
        loop {
            let polled = self
                .client
                .poll_messages(
                    &self.stream,
                    &self.topic,
                    Some(self.partition),
                    &self.consumer,
                    &PollingStrategy::offset(self.offset),
                    POLL_MESSAGES,
                    false,
                )
                .await
                .map_err(err)?;
            if polled.messages.is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            for m in &polled.messages {
                on_message(&m.payload);
                self.offset = m.header.offset + 1;
            }
            return Ok(true);
        }
    }
}
