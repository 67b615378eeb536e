//! `broker`: the shard-per-core event-streaming server.
//!
//! - [`server`]: startup (sockets, pinned executors, channel mesh), signals, shutdown.
//! - [`shard`]: one executor's state — partitions, cache, counters, mesh plumbing.
//! - [`connection`]: one client connection — framing, pipelining, subscriptions.
//! - [`api`]: request handlers, with forwarding to the owning shard.
//! - [`metadata`]: topics and partition → shard, persisted and broadcast.
//! - [`storage`]: the partition log on direct I/O behind an I/O seam with a simulator.
//! - [`config`], [`check`]: configuration and the host preflight.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod api;
pub mod check;
pub mod config;
pub mod connection;
pub mod in_process;
pub mod metadata;
pub mod server;
pub mod shard;
pub mod storage;
pub mod subscription;
pub mod trash;
pub mod watermark;
