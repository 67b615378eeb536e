//! Committed offsets of consumer groups: commit and fetch per (group, topic, partition).
//!
//! A commit is stored durably (an append to the broker's internal offsets log, acked at
//! `durable`) before it is answered. A member commits only partitions it owns in the current
//! generation; with an empty member id and generation 0 a commit is an administrative one
//! (resetting offsets), accepted only while the group has no members.

wire_type! {
    /// One partition's committed position.
    pub struct CommittedOffset {
        /// Partition number.
        pub partition: u32,
        /// The next offset to read.
        pub offset: u64,
        /// Free text stored with the offset.
        pub metadata: String,
    }
}

wire_type! {
    /// Offsets of one topic.
    pub struct CommitTopic {
        /// Topic name.
        pub name: String,
        /// Per partition.
        pub partitions: Vec<CommittedOffset>,
    }
}

wire_type! {
    /// Commit offsets for a group.
    pub struct CommitOffsetsRequest {
        /// Group id.
        pub group: String,
        /// Member id (empty for an administrative commit to a group with no members).
        pub member_id: String,
        /// The generation the member last heard (0 for an administrative commit).
        pub generation: u32,
        /// What to commit.
        pub topics: Vec<CommitTopic>,
    }
}
message!(CommitOffsetsRequest, CommitOffsets);

wire_type! {
    /// Result for one partition.
    pub struct PartitionError {
        /// Partition number.
        pub partition: u32,
        /// Error code (0 = stored).
        pub error: u16,
    }
}

wire_type! {
    /// Results for one topic.
    pub struct CommitTopicResult {
        /// Topic name.
        pub name: String,
        /// Per partition.
        pub partitions: Vec<PartitionError>,
    }
}

wire_type! {
    /// Commit results.
    pub struct CommitOffsetsResponse {
        /// Error for the whole request (unknown member, stale generation, ...).
        pub error: u16,
        /// Detail when `error != 0`.
        pub message: String,
        /// Per topic (empty when `error != 0`).
        pub topics: Vec<CommitTopicResult>,
    }
}
message!(CommitOffsetsResponse, CommitOffsets);

wire_type! {
    /// Fetch a group's committed offsets.
    pub struct FetchOffsetsRequest {
        /// Group id.
        pub group: String,
        /// Topics to look up (empty = every topic the group has offsets for).
        pub topics: Vec<String>,
    }
}
message!(FetchOffsetsRequest, FetchOffsets);

wire_type! {
    /// Committed offsets.
    pub struct FetchOffsetsResponse {
        /// Error code.
        pub error: u16,
        /// Detail when `error != 0`.
        pub message: String,
        /// Per topic: only partitions with a committed offset.
        pub topics: Vec<CommitTopic>,
    }
}
message!(FetchOffsetsResponse, FetchOffsets);
