//! Table reads: the latest value of a key, or of every key in a range, of a topic declared a
//! table (`TopicConfig::table`). Each partition keeps its own table on its owning shard
//! (keys are partitioned like produced records: `key_hash`), so a point read names the key's
//! partition and a scan asks every partition and merges by key.
//!
//! A result carries `offset`: the table reflects every record before it (and none after).
//! `min_offset` asks the broker to wait (up to the request's `wait_ms`) until the table
//! reflects the records before that offset — read-your-writes for a producer that got offset
//! `o` acked asks for `o + 1`. A key whose latest record is a tombstone (no value) is absent.
//!
//! State tables are declared with their topic (`TopicConfig::aggregate`) or over an
//! existing topic under their own name (`CreateTableRequest`); a table read names either.

use super::topic_config::AggregateSpec;

wire_type! {
    /// Whether a partition read is for one key or a range of keys.
    pub enum TableReadKind {
        /// The latest value of `start_key` only.
        #[default]
        Get,
        /// Keys from `start_key` (inclusive) to `end_key` (exclusive; none: to the end), in
        /// byte order, at most `limit` of them.
        Scan,
        /// A projection table's changes at or after offset `min_offset`, in offset order, at
        /// most `limit` (waiting up to `wait_ms` for the first): each entry is the record that
        /// changed its key, with `previous_offset` (the key's record before it) and
        /// `tombstone` set when it removed the key. The broker remembers the recent changes
        /// of each table; older ones answer `OFFSET_OUT_OF_RANGE` (scan the table, then
        /// watch from the scan's offset).
        Changes,
    }
}

wire_type! {
    /// Read tables.
    pub struct TableReadRequest {
        /// How long a partition read may wait for its `min_offset` (ms; capped by the broker).
        pub wait_ms: u32,
        /// Per topic.
        pub topics: Vec<TableReadTopic>,
    }
}
message!(TableReadRequest, TableRead);

wire_type! {
    /// Reads of one table.
    pub struct TableReadTopic {
        /// Topic name (the table).
        pub name: String,
        /// Per partition.
        pub partitions: Vec<TableReadPartition>,
    }
}

wire_type! {
    /// One partition's read.
    pub struct TableReadPartition {
        /// Partition number.
        pub partition: u32,
        /// Get or scan.
        pub kind: TableReadKind,
        /// The key (get) or the first key (scan); unused for changes.
        pub start_key: Vec<u8>,
        /// Scan: the key to stop before; `None` scans to the last key.
        pub end_key: Option<Vec<u8>>,
        /// Scan: most entries to return (the broker caps it and the response's bytes).
        pub limit: u32,
        /// Get, scan: wait until the table reflects every record before this offset (0: do
        /// not wait). Changes: the first offset wanted.
        pub min_offset: u64,
    }
}

wire_type! {
    /// Tables read.
    pub struct TableReadResponse {
        /// Per topic.
        #[cfg_attr(test, proptest(strategy = "proptest::collection::vec(proptest::arbitrary::any::<TableReadTopicResult>(), 0..4)"))]
        pub topics: Vec<TableReadTopicResult>,
    }
}
message!(TableReadResponse, TableRead, |m| m
    .topics
    .iter()
    .flat_map(|t| &t.partitions)
    .flat_map(|p| &p.entries)
    .map(TableEntry::bytes_hint)
    .sum::<usize>());

wire_type! {
    /// One table's results.
    pub struct TableReadTopicResult {
        /// Topic name.
        pub name: String,
        /// Per partition.
        #[cfg_attr(test, proptest(strategy = "proptest::collection::vec(proptest::arbitrary::any::<TableReadPartitionResult>(), 0..8)"))]
        pub partitions: Vec<TableReadPartitionResult>,
    }
}

wire_type! {
    /// One partition's result.
    pub struct TableReadPartitionResult {
        /// Partition number.
        pub partition: u32,
        /// Error code (`NOT_A_TABLE` for a topic not declared a table; `TIMEOUT` when the
        /// table did not reach `min_offset` within `wait_ms`).
        pub error: u16,
        /// The table reflects every record of the partition before this offset. Changes:
        /// where the next read of changes starts (after the last one returned); with
        /// `OFFSET_OUT_OF_RANGE`, the oldest offset whose changes are remembered.
        pub offset: u64,
        /// The entries found, in key order (a get: none or one).
        #[cfg_attr(test, proptest(strategy = "proptest::collection::vec(proptest::arbitrary::any::<TableEntry>(), 0..4)"))]
        pub entries: Vec<TableEntry>,
        /// A scan stopped early (limit or response size): continue from this key.
        pub next_key: Option<Vec<u8>>,
    }
}

wire_type! {
    /// A key's latest record.
    pub struct TableEntry {
        /// The key.
        pub key: Vec<u8>,
        /// Its latest value.
        pub value: Vec<u8>,
        /// The offset of the record that set it.
        pub offset: u64,
        /// That record's timestamp.
        pub timestamp_ms: i64,
        /// Changes: the offset of the key's record before this one (none: the key is new).
        pub previous_offset: Option<u64>,
        /// Changes: the record removed the key (a tombstone; `value` is empty).
        pub tombstone: bool,
        /// That record's headers, in order.
        #[cfg_attr(test, proptest(strategy = "proptest::collection::vec(proptest::arbitrary::any::<TableEntryHeader>(), 0..3)"))]
        pub headers: Vec<TableEntryHeader>,
    }
}

wire_type! {
    /// One header of a table entry's record.
    pub struct TableEntryHeader {
        /// UTF-8 key.
        pub key: String,
        /// Opaque value (empty when `null`).
        pub value: Vec<u8>,
        /// The value is null (as a Kafka header's may be), not empty.
        pub null: bool,
    }
}

impl TableEntry {
    /// About the bytes this entry takes in a response.
    pub fn bytes_hint(&self) -> usize {
        64 + self.key.len()
            + self.value.len()
            + self.headers.iter().map(|h| 16 + h.key.len() + h.value.len()).sum::<usize>()
    }
}

wire_type! {
    /// Create a state table over an existing topic: the topic's partitions' owners keep
    /// the aggregates from the topic's first stored record on (and from every record
    /// appended after).
    pub struct CreateTableRequest {
        /// Name: the rules of topic names; no topic or table may have it already.
        pub name: String,
        /// The topic it aggregates.
        pub topic: String,
        /// What it keeps.
        pub aggregate: AggregateSpec,
    }
}
message!(CreateTableRequest, CreateTable);

wire_type! {
    /// Table created (or not).
    pub struct CreateTableResponse {
        /// Error code (`UNKNOWN_TOPIC`, `TOPIC_ALREADY_EXISTS` for a name in use,
        /// `INVALID_TOPIC_CONFIG` for a bad declaration).
        pub error: u16,
        /// Detail when `error != 0`.
        pub message: String,
    }
}
message!(CreateTableResponse, CreateTable);

wire_type! {
    /// Delete a state table (its topic stays).
    pub struct DeleteTableRequest {
        /// The table's name.
        pub name: String,
    }
}
message!(DeleteTableRequest, DeleteTable);

wire_type! {
    /// Table deleted (or not).
    pub struct DeleteTableResponse {
        /// Error code (`UNKNOWN_TOPIC` for no such table).
        pub error: u16,
        /// Detail when `error != 0`.
        pub message: String,
    }
}
message!(DeleteTableResponse, DeleteTable);

wire_type! {
    /// A state table over a topic, as metadata lists it.
    pub struct TableMetadata {
        /// Its name (read it with `TableRead` under this name).
        pub name: String,
        /// The topic it aggregates (its partitions are the table's).
        pub topic: String,
        /// What it keeps.
        pub aggregate: AggregateSpec,
    }
}

/// The first key after `key` (`key` and a zero byte): `key..key_after(key)` holds `key` alone.
pub fn key_after(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

/// The first key after every key that starts with `prefix` (`None`: no such key, scan to
/// the end): a prefix scan is the range `prefix..prefix_end(prefix)`.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"user/"), Some(b"user0".to_vec()));
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
