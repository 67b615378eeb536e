//! `broker`: the shard-per-core event-streaming server.
//!
//! - [`storage`]: the partition log on direct I/O (segments, group commit, indexes,
//!   recovery, retention) behind an I/O seam with a fault-injecting simulator.
//! - [`watermark`]: the waitable counter behind long-poll and acks.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod storage;
pub mod watermark;
