//! A topic's settings ([`TopicConfig`]): partition count, retention, segment rolling, default
//! ack level and batch size limit. Sent when a topic is created and returned in its metadata;
//! a zero field means "use the broker default". A create with a value outside a field's
//! range (below) is refused with `INVALID_TOPIC_CONFIG`, naming the field and its range.

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
    }
}
