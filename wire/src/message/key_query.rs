//! Query by key and time: every record of one key whose timestamp lies in a range, read from
//! the stored stream of one partition (the key's: `key_hash`), in offset order. The broker
//! starts at the time index's first offset at or after `from_timestamp_ms`, stops where the
//! time index puts `to_timestamp_ms` (or the key's last offset, when the partition's key
//! index is built), and scans at most a bounded number of bytes per request: a partial
//! answer carries `next_offset` to continue from.

use super::table::TableEntry;

wire_type! {
    /// Query records by key and time range.
    pub struct KeyQueryRequest {
        /// Per topic.
        pub topics: Vec<KeyQueryTopic>,
    }
}
message!(KeyQueryRequest, KeyQuery);

wire_type! {
    /// Queries of one topic.
    pub struct KeyQueryTopic {
        /// Topic name.
        pub name: String,
        /// Per partition.
        pub partitions: Vec<KeyQueryPartition>,
    }
}

wire_type! {
    /// One partition's query.
    pub struct KeyQueryPartition {
        /// Partition number (the key's).
        pub partition: u32,
        /// The key.
        pub key: Vec<u8>,
        /// Records with a timestamp at or after this (ms).
        pub from_timestamp_ms: i64,
        /// And at or before this (ms).
        pub to_timestamp_ms: i64,
        /// Continue from this offset (a previous answer's `next_offset`); 0: from the time
        /// index.
        pub start_offset: u64,
        /// Most records to return (the broker caps it and the response's bytes).
        pub limit: u32,
    }
}

wire_type! {
    /// Records found.
    pub struct KeyQueryResponse {
        /// Per topic.
        #[cfg_attr(test, proptest(strategy = "proptest::collection::vec(proptest::arbitrary::any::<KeyQueryTopicResult>(), 0..4)"))]
        pub topics: Vec<KeyQueryTopicResult>,
    }
}
message!(KeyQueryResponse, KeyQuery, |m| m
    .topics
    .iter()
    .flat_map(|t| &t.partitions)
    .flat_map(|p| &p.records)
    .map(TableEntry::bytes_hint)
    .sum::<usize>());

wire_type! {
    /// Records of one topic.
    pub struct KeyQueryTopicResult {
        /// Topic name.
        pub name: String,
        /// Per partition.
        #[cfg_attr(test, proptest(strategy = "proptest::collection::vec(proptest::arbitrary::any::<KeyQueryPartitionResult>(), 0..8)"))]
        pub partitions: Vec<KeyQueryPartitionResult>,
    }
}

wire_type! {
    /// One partition's records.
    pub struct KeyQueryPartitionResult {
        /// Partition number.
        pub partition: u32,
        /// Error code.
        pub error: u16,
        /// The key's records in the range, in offset order.
        #[cfg_attr(test, proptest(strategy = "proptest::collection::vec(proptest::arbitrary::any::<TableEntry>(), 0..4)"))]
        pub records: Vec<TableEntry>,
        /// The query stopped early (limit, response size or scan budget): continue from
        /// this offset.
        pub next_offset: Option<u64>,
    }
}
