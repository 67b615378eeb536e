//! The Kafka wire-protocol listener: existing Kafka clients and tools (librdkafka,
//! kafka-python, kcat) produce to and consume from the broker.
//!
//! ```text
//!  Kafka client ──TCP──▶ any shard (SO_REUSEPORT on `kafka_listen`)
//!     │  codec.rs: size-prefixed frame, checked against frame_body_bytes_max before allocating;
//!     │            header + body decoded by the kafka-protocol crate
//!     ▼
//!  handler (admin.rs, data.rs, group.rs): Kafka request ─▶ native wire::message body
//!     │  native.rs: the body framed and run through api::start, as a native client's would
//!     │  (routing to the owning shard over the mesh, acks, idempotence, offsets log)
//!     ▼
//!  native response ─▶ Kafka response (convert.rs: record batch v2 <-> native batch)
//! ```
//!
//! Contract:
//! - The broker advertises itself as a single-node Kafka cluster (node 0 at the listener's
//!   address) leading every partition. Any shard accepts; a partition owned by another shard
//!   is reached through the same forwarding the native protocol uses.
//! - Kafka record batches are converted to native batches at ingress (producer id, epoch and
//!   base sequence kept, so idempotence is the native one) and back at fetch. Compressed
//!   Kafka batches (gzip, snappy, lz4, zstd) are decompressed at ingress, within the batch
//!   size limit. Headers keep their order, repeated keys and null values (records.rs parses
//!   the records by hand; a null value is stored with `wire`'s null map).
//! - ListGroups/DescribeGroups/DeleteGroups/OffsetDelete (group_admin.rs) answer from the
//!   Kafka group table and the native coordinators.
//! - DescribeAcls, CreateAcls and DeleteAcls (acls.rs) change the shared ACLs;
//!   DescribeLogDirs (log_dirs.rs) reports partition sizes from the native DescribeTopic;
//!   Describe/AlterUserScramCredentials (scram_credentials.rs) read and change users'
//!   SCRAM credentials (the native `ChangeCredentials`); DescribeClientQuotas
//!   (client_quotas.rs) answers that none are configured.
//! - DeleteRecords (delete_records.rs) runs the native record deletion: the log start it
//!   answers is persisted.
//! - A Kafka request counts once in the shard's `requests` counter (native.rs).
//! - Responses leave in request order (Kafka clients require it); at most
//!   `inflight_per_connection_max` requests are outstanding per connection.
//! - Kafka consumer groups (client-side assignment: JoinGroup/SyncGroup) are kept by
//!   [`group::Groups`], one table for the whole process; their committed offsets are the
//!   native ones (the offsets log), committed administratively after the Kafka group checked
//!   the member and generation.
//! - An api or version the listener does not speak gets UNSUPPORTED_VERSION; the connection
//!   stays open.

pub mod acls;
pub mod admin;
pub mod client_quotas;
pub mod codec;
pub mod configs;
pub mod connection;
pub mod convert;
pub mod data;
pub mod delete_records;
pub mod error;
pub mod group;
pub mod group_admin;
pub mod group_offsets;
pub mod log_dirs;
pub mod native;
pub mod records;
pub mod sasl;
pub mod scram_credentials;

use std::net::SocketAddr;
use std::sync::Arc;

/// What every shard's Kafka listener shares.
#[derive(Debug)]
pub struct Kafka {
    /// The Kafka consumer groups (process-wide).
    pub groups: group::Groups,
    /// The listener's bound address (advertised in Metadata unless its IP is unspecified).
    pub listen: SocketAddr,
}

impl Kafka {
    /// The shared state of a listener bound at `listen`.
    pub fn new(listen: SocketAddr, members_max: usize, bytes_max: usize) -> Arc<Kafka> {
        Arc::new(Kafka { groups: group::Groups::new(members_max, bytes_max), listen })
    }
}
