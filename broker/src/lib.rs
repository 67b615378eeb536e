//! `broker`: the shard-per-core event-streaming server.
//!
//! Layers, top to bottom (each uses only those below it; see docs/ARCHITECTURE.md's map):
//! - [`server`] / [`in_process`]: startup (sockets, pinned executors, channel mesh), signals,
//!   shutdown; a socket-free harness.
//! - [`tls`] (rustls server configs, handshake, SIGHUP reload), [`exposure`] (secure by
//!   default) and [`connection_info`] (peer, TLS, mTLS principal): what the accept loops do
//!   before a protocol's serve function runs.
//! - [`connection`] (a client's frames in, responses and pushes out; [`frame_reader`]) and
//!   [`peer`] (the mesh inbox: another shard's messages in).
//! - [`api`]: request handlers — where each api is served ([`api::placement`]), forwarding
//!   to the owning shard ([`api::forward`]), subscriptions ([`api::subscribe`]).
//! - [`shard`] (the registry: metadata, partitions, cache, counters, mesh end) and
//!   [`subscription`] (push loops).
//! - [`mesh`]: the shard-to-shard transport.
//! - [`partition`], [`metadata`], [`layout`], [`config`], [`request`]: a partition this shard
//!   owns; topics and partition → shard, persisted and broadcast; where the data directory
//!   keeps what (topics under `topics~/`); configuration; a checked request.
//! - [`storage`]: the partition log on direct I/O behind an I/O seam with a simulator.
//! - [`trash`] (uses metadata, storage) and [`check`] (uses config): deleted data and the
//!   host preflight.
//! - [`metrics`]: the Prometheus endpoint (shard 0 gathers every shard's counters at scrape
//!   time; uses api, shard, counters).
//! - [`counters`] (with [`partition_traffic`]), [`watermark`], [`clock`], [`budget`]: leaves.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod accepted;
pub mod aggregate;
pub mod api;
pub mod auth;
pub mod budget;
pub mod check;
pub mod clock;
pub mod config;
pub mod connection;
pub mod connection_info;
pub mod counters;
pub mod descriptors;
pub mod durable_file;
pub mod exposure;
pub mod filter;
pub mod frame_pool;
pub mod frame_reader;
pub mod group;
pub mod http;
pub mod huge_pages;
pub mod in_process;
pub mod kafka;
pub mod key_index;
pub mod layout;
pub mod mesh;
pub mod metadata;
pub mod metadata_error;
pub mod metrics;
pub mod out_frame;
pub mod partition;
pub mod partition_traffic;
pub mod peer;
pub mod producer_state;
pub mod request;
pub mod server;
pub mod shard;
pub mod stage_latency;
pub mod startup_metadata;
pub mod state_snapshot;
pub mod storage;
pub mod stream_halves;
pub mod subscription;
pub mod table;
pub mod time_slice;
pub mod timeout;
pub mod tls;
pub mod topic_settings;
pub mod trash;
pub mod watched;
pub mod watermark;
