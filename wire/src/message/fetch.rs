//! Fetch: read stored batches from an offset, waiting up to `max_wait_ms` for new data.

use crate::with::AlignedBytes;

wire_type! {
    /// Read batches from one or more partitions.
    pub struct FetchRequest {
        /// Long-poll: wait up to this long for `min_bytes` to be available.
        pub max_wait_ms: u32,
        /// Answer as soon as this many bytes are available across partitions; 0 answers at
        /// once, without waiting (as Kafka's `min_bytes` 0 does).
        pub min_bytes: u32,
        /// Batch bytes across all partitions in the response, filled in request order (the
        /// broker caps it at its `fetch_response_bytes_max`). The first partition that has
        /// data returns its first batch even if it is larger than this or its own
        /// `max_bytes`, so a consumer always gets past a large batch (Kafka's KIP-74).
        pub max_bytes: u32,
        /// What to read. Naming one (topic, partition) twice is refused (`INVALID_REQUEST`).
        pub topics: Vec<FetchTopic>,
    }
}
message!(FetchRequest, Fetch);

wire_type! {
    /// Partitions of one topic to read.
    pub struct FetchTopic {
        /// Topic name.
        pub name: String,
        /// Partitions and positions.
        pub partitions: Vec<FetchPartition>,
    }
}

wire_type! {
    /// One partition to read.
    pub struct FetchPartition {
        /// Partition number.
        pub partition: u32,
        /// First offset wanted. The batch containing it is returned whole, so a reader skips
        /// records below this offset.
        pub offset: u64,
        /// Batch bytes from this partition (whole batches; see [`FetchRequest::max_bytes`]).
        pub max_bytes: u32,
    }
}

wire_type! {
    /// Stored batches, byte for byte.
    pub struct FetchResponse {
        /// Results per topic.
        pub topics: Vec<FetchTopicResult>,
    }
}
message!(FetchResponse, Fetch, |m| m
    .topics
    .iter()
    .flat_map(|t| &t.partitions)
    .map(|p| p.batches.len() + 64)
    .sum::<usize>());

wire_type! {
    /// Results for one topic.
    pub struct FetchTopicResult {
        /// Topic name.
        pub name: String,
        /// Results per partition.
        pub partitions: Vec<FetchPartitionResult>,
    }
}

wire_type! {
    /// Batches of one partition.
    pub struct FetchPartitionResult {
        /// Partition number.
        pub partition: u32,
        /// Error code (0 = ok).
        pub error: u16,
        /// Offset the next append will get.
        pub high_watermark: u64,
        /// First offset still stored.
        pub log_start_offset: u64,
        /// Record batches exactly as stored, back to back.
        #[rkyv(with = AlignedBytes)]
        pub batches: Vec<u8>,
    }
}
