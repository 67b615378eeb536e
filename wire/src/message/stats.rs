//! Stats: per-shard counters, so tests and benchmarks can see what the broker did.

wire_type! {
    /// Ask for counters of some shards (empty = all).
    pub struct StatsRequest {
        /// Shard ids; empty means all.
        pub shards: Vec<u32>,
        /// Also report every consumer group's committed offset, high watermark and lag per
        /// partition (`ShardStats::group_lag`, on the group's coordinator shard).
        pub group_lag: bool,
        /// Also report the shard's per-stage latency (`ShardStats::latency`).
        pub latency: bool,
        /// Start the per-stage latency histograms afresh after reading them.
        pub reset_latency: bool,
    }
}
message!(StatsRequest, Stats);

wire_type! {
    /// Counters per shard.
    pub struct StatsResponse {
        /// One entry per shard asked for.
        pub shards: Vec<ShardStats>,
    }
}
message!(StatsResponse, Stats);

wire_type! {
    /// Counters of one shard since it started.
    pub struct ShardStats {
        /// Shard id.
        pub shard_id: u32,
        /// CPU the shard is pinned to.
        pub cpu: u32,
        /// Partitions owned.
        pub partitions: u32,
        /// Batch bytes appended.
        pub bytes_in: u64,
        /// Batch bytes sent to consumers (fetch and push).
        pub bytes_out: u64,
        /// Batches appended.
        pub batches_in: u64,
        /// Batches sent to consumers.
        pub batches_out: u64,
        /// Requests handled.
        pub requests: u64,
        /// Connections open now.
        pub connections: u64,
        /// Connections accepted since start.
        pub connections_total: u64,
        /// Requests this shard forwarded to the partition's owner.
        pub forwards_out: u64,
        /// Requests other shards forwarded to this one.
        pub forwards_in: u64,
        /// Subscriptions open now.
        pub subscriptions: u64,
        /// fdatasync calls issued.
        pub syncs: u64,
        /// Consumer-group lag of the groups this shard coordinates (only when asked for,
        /// at most `GROUP_LAG_ENTRIES_MAX` entries per shard).
        pub group_lag: Vec<GroupPartitionLag>,
        /// Per-stage latency since start or the last reset (only when asked for).
        pub latency: Vec<StageLatency>,
    }
}

wire_type! {
    /// The latency of one stage of request handling on one shard, in microseconds.
    pub struct StageLatency {
        /// Stage name (see the broker's `stage_latency.rs`).
        pub stage: String,
        /// Samples.
        pub count: u64,
        /// Median.
        pub p50_us: u64,
        /// 90th percentile.
        pub p90_us: u64,
        /// 99th percentile.
        pub p99_us: u64,
        /// 99.9th percentile.
        pub p999_us: u64,
        /// Largest.
        pub max_us: u64,
    }
}

/// Most group-lag entries one shard reports.
pub const GROUP_LAG_ENTRIES_MAX: usize = 10_000;

wire_type! {
    /// One group's position on one partition.
    pub struct GroupPartitionLag {
        /// Group id.
        pub group: String,
        /// Topic.
        pub topic: String,
        /// Partition.
        pub partition: u32,
        /// Committed offset.
        pub committed: u64,
        /// The partition's high watermark.
        pub high_watermark: u64,
        /// Records from the committed offset to the high watermark.
        pub lag: u64,
    }
}
