//! Metadata: shards, their addresses, and which shard owns each partition.

use super::topic_config::TopicConfig;

wire_type! {
    /// Ask for metadata of some topics (empty = all).
    pub struct MetadataRequest {
        /// Topic names; empty means every topic.
        pub topics: Vec<String>,
    }
}
message!(MetadataRequest, Metadata);

wire_type! {
    /// Cluster layout: send each partition's requests to its owning shard's address.
    pub struct MetadataResponse {
        /// Number of shards (executors, one per core).
        pub shard_count: u32,
        /// Each shard's own address.
        pub shards: Vec<ShardAddress>,
        /// The topics asked for.
        pub topics: Vec<TopicMetadata>,
        /// Every state table declared over a topic (`CreateTableRequest`).
        pub tables: Vec<super::table::TableMetadata>,
    }
}
message!(MetadataResponse, Metadata);

wire_type! {
    /// Where one shard listens.
    pub struct ShardAddress {
        /// Shard number, 0-based.
        pub shard_id: u32,
        /// Host or IP.
        pub host: String,
        /// The shard's own port.
        pub port: u16,
    }
}

wire_type! {
    /// One topic's layout.
    pub struct TopicMetadata {
        /// Topic name.
        pub name: String,
        /// Error code for this topic (`UNKNOWN_TOPIC` when asked for by name and missing).
        pub error: u16,
        /// Its configuration.
        pub config: TopicConfig,
        /// Partition → owning shard.
        pub partitions: Vec<PartitionMetadata>,
    }
}

wire_type! {
    /// One partition's owner.
    pub struct PartitionMetadata {
        /// Partition number.
        pub partition: u32,
        /// Owning shard.
        pub shard: u32,
    }
}
