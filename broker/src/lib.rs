//! `broker`: the shard-per-core event-streaming server.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod storage;
pub mod watermark;
