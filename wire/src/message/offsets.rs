//! List offsets: earliest, latest, or the first offset at or after a timestamp.

wire_type! {
    /// Which offset to look up.
    pub enum OffsetSpec {
        /// First offset still stored.
        #[default]
        Earliest,
        /// Offset the next append will get (the high watermark).
        Latest,
        /// First record with timestamp >= this (ms); the high watermark if none.
        Timestamp(i64),
    }
}

wire_type! {
    /// Look up offsets.
    pub struct ListOffsetsRequest {
        /// Per topic.
        pub topics: Vec<ListOffsetsTopic>,
    }
}
message!(ListOffsetsRequest, ListOffsets);

wire_type! {
    /// Lookups for one topic.
    pub struct ListOffsetsTopic {
        /// Topic name.
        pub name: String,
        /// Per partition.
        pub partitions: Vec<ListOffsetsPartition>,
    }
}

wire_type! {
    /// One lookup.
    pub struct ListOffsetsPartition {
        /// Partition number.
        pub partition: u32,
        /// What to look up.
        pub spec: OffsetSpec,
    }
}

wire_type! {
    /// Offsets found.
    pub struct ListOffsetsResponse {
        /// Per topic.
        pub topics: Vec<ListOffsetsTopicResult>,
    }
}
message!(ListOffsetsResponse, ListOffsets);

wire_type! {
    /// Offsets for one topic.
    pub struct ListOffsetsTopicResult {
        /// Topic name.
        pub name: String,
        /// Per partition.
        pub partitions: Vec<ListOffsetsPartitionResult>,
    }
}

wire_type! {
    /// One offset.
    pub struct ListOffsetsPartitionResult {
        /// Partition number.
        pub partition: u32,
        /// Error code.
        pub error: u16,
        /// The offset.
        pub offset: u64,
        /// Timestamp of the record at `offset` for timestamp lookups; -1 otherwise.
        pub timestamp_ms: i64,
    }
}
