//! `client`: the Rust client for the broker, on tokio.
//!
//! - [`Client`]: one bootstrap address, handshake, a metadata cache refreshed on routing
//!   errors, one pipelined [`connection::Connection`] per shard (each partition's requests go
//!   to its owner), retries with backoff for retriable errors only; admin calls.
//! - [`Producer`]: per-partition batching with linger, key-hash / sticky partitioning, a
//!   bounded send buffer, ordered pipelined sends.
//! - [`Consumer`]: a push subscription with automatic credit; records borrow from the
//!   received batch.
//! - [`GroupConsumer`]: a member of a consumer group: the broker assigns partitions, the
//!   member reads them all and commits its positions (automatically or on demand).
//! - [`Client::table_get`] / [`Client::table_scan`]: a table topic's latest value per key.
//!
//! ```no_run
//! # async fn demo() -> Result<(), client::ClientError> {
//! let client = client::Client::connect("127.0.0.1:9400").await?;
//! let producer = client::Producer::new(client.clone(), Default::default());
//! let (partition, offset) = producer.send("orders", Some(b"user-1"), Some(b"hello"), &[]).await?.await?;
//! let mut consumer = client::Consumer::subscribe(&client, "orders", partition, wire::StartPosition::Offset(offset), 1 << 20).await?;
//! if let Some(batch) = consumer.next_batch().await? {
//!     for r in batch.records() {
//!         println!("{} {:?}", r.offset(), r.value());
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod auth;
pub mod client;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod group;
pub mod group_consumer;
pub mod producer;
pub mod table;
pub mod tls;

pub use auth::Credentials;
pub use client::{Client, ClientConfig};
pub use consumer::{Consumer, ConsumerBatch};
pub use error::ClientError;
pub use group_consumer::{AssignmentChange, GroupBatch, GroupConfig, GroupConsumer};
pub use producer::{Producer, ProducerConfig, ProducerStage, ProducerStages};
pub use table::{KeyRange, StateEntry, StateScan, TableChanges, TableScan, TableValue};
