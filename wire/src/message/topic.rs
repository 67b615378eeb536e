//! Topic administration: create, delete, list, describe.

use super::metadata::TopicMetadata;
// Old paths `message::topic::{AckLevel, TopicConfig, ..}` keep working: both moved out to
// their own files to break the topic <-> metadata import loop.
pub use super::ack_level::{AckLevel, AckLevelResolver, ArchivedAckLevel};
pub use super::topic_config::{ArchivedTopicConfig, TopicConfig, TopicConfigResolver};

wire_type! {
    /// Create a topic.
    pub struct CreateTopicRequest {
        /// Name: 1..=249 bytes of `[A-Za-z0-9._-]`, not `.` or `..` (Kafka's rule).
        pub name: String,
        /// Settings.
        pub config: TopicConfig,
    }
}
message!(CreateTopicRequest, CreateTopic);

wire_type! {
    /// Result of a create.
    pub struct CreateTopicResponse {
        /// Error code (0 = created).
        pub error: u16,
        /// Detail when `error != 0`.
        pub message: String,
        /// The new topic's layout.
        pub topic: Option<TopicMetadata>,
    }
}
message!(CreateTopicResponse, CreateTopic);

wire_type! {
    /// Grow a topic to `partition_count` partitions: the new ones are placed on the least
    /// loaded shards; existing partitions, their data and owners stay. A key's partition
    /// (`crc32c(key) % count`) changes with the count, as in Kafka.
    pub struct CreatePartitionsRequest {
        /// Topic name.
        pub name: String,
        /// The new total, larger than the current count.
        pub partition_count: u32,
    }
}
message!(CreatePartitionsRequest, CreatePartitions);

wire_type! {
    /// Result of growing a topic.
    pub struct CreatePartitionsResponse {
        /// Error code (0 = grown).
        pub error: u16,
        /// Detail when `error != 0`.
        pub message: String,
        /// The topic's layout now.
        pub topic: Option<TopicMetadata>,
    }
}
message!(CreatePartitionsResponse, CreatePartitions);

wire_type! {
    /// One setting of a topic to change.
    pub struct TopicSettingChange {
        /// A `TopicConfig` field that may change on an existing topic: `retention_ms`,
        /// `retention_bytes`, `segment_bytes_max`, `segment_ms`, `delete_retention_ms`,
        /// `default_ack`.
        pub name: String,
        /// Its new value as text (a number; `none`, `written` or `durable`); empty sets it
        /// back to the broker default.
        pub value: String,
    }
}

wire_type! {
    /// Change settings of an existing topic. Its partitions take the change while open:
    /// retention and rolling from their next pass or append. The others (partitions: see
    /// `CreatePartitionsRequest`; table, aggregate, compaction, batch limit) are fixed at
    /// creation. All changes are checked first: one refused, none is made.
    pub struct AlterTopicConfigRequest {
        /// Topic name.
        pub name: String,
        /// What to change, in order (a setting named twice takes the last value).
        pub changes: Vec<TopicSettingChange>,
        /// Check the changes and answer as if made, changing nothing.
        pub validate_only: bool,
    }
}
message!(AlterTopicConfigRequest, AlterTopicConfig);

wire_type! {
    /// Result of changing a topic's settings.
    pub struct AlterTopicConfigResponse {
        /// Error code (0 = changed).
        pub error: u16,
        /// Detail when `error != 0`.
        pub message: String,
        /// The topic's layout and settings now (with `validate_only`: as they would be).
        pub topic: Option<TopicMetadata>,
    }
}
message!(AlterTopicConfigResponse, AlterTopicConfig);

wire_type! {
    /// Delete a topic and all its data.
    pub struct DeleteTopicRequest {
        /// Topic name.
        pub name: String,
    }
}
message!(DeleteTopicRequest, DeleteTopic);

wire_type! {
    /// Result of a delete.
    pub struct DeleteTopicResponse {
        /// Error code (0 = deleted).
        pub error: u16,
        /// Detail when `error != 0`.
        pub message: String,
    }
}
message!(DeleteTopicResponse, DeleteTopic);

wire_type! {
    /// List topics whose names start with a prefix (empty = all).
    pub struct ListTopicsRequest {
        /// Name prefix filter (empty: every topic except the broker's internal ones, which a
        /// prefix such as `__` lists).
        pub name_prefix: String,
    }
}
message!(ListTopicsRequest, ListTopics);

wire_type! {
    /// Topic names and partition counts, sorted by name.
    pub struct ListTopicsResponse {
        /// The topics.
        pub topics: Vec<TopicSummary>,
    }
}
message!(ListTopicsResponse, ListTopics);

wire_type! {
    /// One line of a topic list.
    pub struct TopicSummary {
        /// Topic name.
        pub name: String,
        /// Number of partitions.
        pub partition_count: u32,
    }
}

wire_type! {
    /// Describe one topic.
    pub struct DescribeTopicRequest {
        /// Topic name.
        pub name: String,
    }
}
message!(DescribeTopicRequest, DescribeTopic);

wire_type! {
    /// A topic's config, layout and per-partition state.
    pub struct DescribeTopicResponse {
        /// Error code (0 = found).
        pub error: u16,
        /// Detail when `error != 0`.
        pub message: String,
        /// Config and partition → shard.
        pub topic: Option<TopicMetadata>,
        /// State of each partition.
        pub partitions: Vec<PartitionDescription>,
    }
}
message!(DescribeTopicResponse, DescribeTopic);

wire_type! {
    /// State of one partition.
    pub struct PartitionDescription {
        /// Partition number.
        pub partition: u32,
        /// Owning shard.
        pub shard: u32,
        /// First offset still stored.
        pub log_start_offset: u64,
        /// Offset the next append will get.
        pub high_watermark: u64,
        /// Bytes stored.
        pub size_bytes: u64,
        /// Segment files.
        pub segment_count: u32,
    }
}
