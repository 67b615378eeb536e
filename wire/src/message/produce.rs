//! Produce: append batches to one or more partitions.

use super::ack_level::AckLevel;
use crate::with::AlignedBytes;

wire_type! {
    /// Append batches. Each partition's `batches` holds one or more record batches back to
    /// back, starting 16-byte aligned inside the body.
    pub struct ProduceRequest {
        /// When to answer.
        pub ack: AckLevel,
        /// Give up waiting for the acks after this long (0: no limit); the appends may still
        /// happen. The partitions the shard that read the request owns wait against one
        /// deadline from when their batches were stored; one forwarded to its owning shard
        /// waits this long there.
        pub timeout_ms: u32,
        /// Batches per topic.
        pub topics: Vec<ProduceTopic>,
    }
}
message!(ProduceRequest, Produce, |m| m
    .topics
    .iter()
    .flat_map(|t| &t.partitions)
    .map(|p| p.batches.len() + 64)
    .sum::<usize>());

wire_type! {
    /// Batches for the partitions of one topic.
    pub struct ProduceTopic {
        /// Topic name.
        pub name: String,
        /// Batches per partition.
        pub partitions: Vec<ProducePartition>,
    }
}

wire_type! {
    /// A condition on where a partition's batches land (optimistic concurrency: append only
    /// if nobody wrote in between). Checked atomically with the append; a mismatch is
    /// `CONDITION_FAILED` with the actual position in `current_offset`.
    pub enum ExpectedPosition {
        /// No condition.
        #[default]
        Any,
        /// The partition's next offset (its end, counting appends not yet acked) is this.
        NextOffset(u64),
        /// Every record of the partition's batches has one key (an aggregate, an entity),
        /// and the last offset written for that key is this.
        KeyLastOffset(u64),
        /// As `KeyLastOffset`, and the key was never written.
        KeyNeverWritten,
    }
}

wire_type! {
    /// Batches for one partition.
    pub struct ProducePartition {
        /// Partition number.
        pub partition: u32,
        /// Record batches, back to back.
        #[rkyv(with = AlignedBytes)]
        pub batches: Vec<u8>,
        /// Append only if the partition (or the records' key) is where the producer expects.
        pub expect: ExpectedPosition,
    }
}

wire_type! {
    /// Per-partition results, in request order.
    pub struct ProduceResponse {
        /// Results per topic.
        pub topics: Vec<ProduceTopicResult>,
    }
}
message!(ProduceResponse, Produce);

wire_type! {
    /// Results for one topic.
    pub struct ProduceTopicResult {
        /// Topic name.
        pub name: String,
        /// Results per partition.
        pub partitions: Vec<ProducePartitionResult>,
    }
}

wire_type! {
    /// Result for one partition.
    pub struct ProducePartitionResult {
        /// Partition number.
        pub partition: u32,
        /// Error code (0 = appended).
        pub error: u16,
        /// Offset of the first appended record; -1 with ack level `none` or on error.
        pub base_offset: i64,
        /// Offset of the last appended record; -1 with ack level `none` or on error.
        pub last_offset: i64,
        /// Broker time stamped on the batches; -1 if unknown.
        pub log_append_time_ms: i64,
        /// With `CONDITION_FAILED`: the actual position (the partition's next offset, or the
        /// key's last offset, -1 if the key was never written); otherwise -1.
        pub current_offset: i64,
    }
}
