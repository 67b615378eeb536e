//! A topic's settings ([`TopicConfig`]): partition count, retention, segment rolling, default
//! ack level, batch size limit, and whether the topic is a table. Sent when a topic is
//! created and returned in its metadata; a zero field means "use the broker default". A
//! create with a value outside a field's range (below) is refused with
//! `INVALID_TOPIC_CONFIG`, naming the field and its range.

use super::ack_level::AckLevel;

wire_type! {
    /// A topic's settings.
    pub struct TopicConfig {
        /// Number of partitions (fixed at creation for now): 1..=100,000.
        pub partition_count: u32,
        /// Delete closed segments older than this; -1 keeps forever; 0 = broker default.
        pub retention_ms: i64,
        /// Delete oldest closed segments while a partition is larger than this; -1 = no
        /// limit; 0 = broker default.
        pub retention_bytes: i64,
        /// Roll the active segment at this size: 4096..=2^32 (what a segment's index
        /// addresses); 0 = broker default.
        pub segment_bytes_max: u64,
        /// Roll the active segment at this age; -1 = never by age; 0 = broker default.
        pub segment_ms: i64,
        /// Ack level used when a produce request asks for the topic default.
        pub default_ack: AckLevel,
        /// Largest batch accepted: 96..=`BATCH_BYTES_MAX` (16 MiB); 0 = broker default.
        pub batch_bytes_max: u32,
        /// A table: the owning shards keep each key's latest value, read with `TableRead`
        /// (see `table.rs`).
        pub table: bool,
        /// With `table`: a state table instead — the owning shards keep aggregates of the
        /// topic's records per group (and per time window) rather than latest values.
        pub aggregate: Option<AggregateSpec>,
        /// Compaction (Kafka's `cleanup.policy = compact`): closed segments are rewritten
        /// keeping each key's latest record; offsets never change. With `retention_ms` and
        /// `retention_bytes` left at 0 nothing is deleted by age or size (`compact`); set
        /// them for `compact,delete`.
        pub compact: bool,
        /// With `compact`: a tombstone (null value) that is its key's latest record is
        /// removed once this old; 0 = broker default (1 day), -1 = never.
        pub delete_retention_ms: i64,
    }
}

wire_type! {
    /// What a state table aggregates: every group's record count, and the sum, minimum,
    /// maximum and last value of a numeric field, over the whole stream or tumbling windows
    /// of the records' timestamps. Read with `TableRead` like a projection table; an entry's
    /// value is the JSON object `{"count":..,"values":..,"sum":..,"min":..,"max":..,
    /// "last":..}` and its `timestamp_ms` the window's start (0 without windows).
    pub struct AggregateSpec {
        /// Group by this header's value; `None` groups by the record key.
        pub group_by_header: Option<String>,
        /// The numeric field: a JSON path into the value (`$.amount`, `$.items.0.price`).
        pub field_json_path: Option<String>,
        /// Or the numeric field is this header's value (decimal text).
        pub field_header: Option<String>,
        /// Tumbling windows of this many milliseconds of record time; 0: the whole stream.
        pub window_ms: u64,
        /// With windows: keep each group's newest this many windows (older ones are
        /// dropped as newer ones open); 0 keeps every window.
        pub windows_kept: u32,
    }
}
