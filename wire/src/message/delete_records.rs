//! Record deletion: every record of a partition before an offset goes (Kafka's
//! DeleteRecords). The partition's log start moves there; reads below it fail with
//! `OFFSET_OUT_OF_RANGE`; whole segments below it free their space. Durable once answered.

wire_type! {
    /// Where the records to delete end.
    pub enum DeleteBefore {
        /// Every record readers can see now (the high watermark).
        #[default]
        HighWatermark,
        /// The records before this offset; at most the high watermark.
        Offset(u64),
    }
}

wire_type! {
    /// Delete records.
    pub struct DeleteRecordsRequest {
        /// Per topic.
        pub topics: Vec<DeleteRecordsTopic>,
    }
}
message!(DeleteRecordsRequest, DeleteRecords);

wire_type! {
    /// Deletions in one topic.
    pub struct DeleteRecordsTopic {
        /// Topic name.
        pub name: String,
        /// Per partition.
        pub partitions: Vec<DeleteRecordsPartition>,
    }
}

wire_type! {
    /// One partition's deletion.
    pub struct DeleteRecordsPartition {
        /// Partition number.
        pub partition: u32,
        /// The records before this go.
        pub before: DeleteBefore,
    }
}

wire_type! {
    /// What was deleted.
    pub struct DeleteRecordsResponse {
        /// Per topic.
        pub topics: Vec<DeleteRecordsTopicResult>,
    }
}
message!(DeleteRecordsResponse, DeleteRecords);

wire_type! {
    /// Results for one topic.
    pub struct DeleteRecordsTopicResult {
        /// Topic name.
        pub name: String,
        /// Per partition.
        pub partitions: Vec<DeleteRecordsPartitionResult>,
    }
}

wire_type! {
    /// One partition's result.
    pub struct DeleteRecordsPartitionResult {
        /// Partition number.
        pub partition: u32,
        /// Error code: `OFFSET_OUT_OF_RANGE` for an offset past the high watermark,
        /// `POLICY_VIOLATION` on a compacted topic without retention.
        pub error: u16,
        /// The partition's log start offset after the deletion (its first offset kept).
        pub log_start_offset: u64,
    }
}
