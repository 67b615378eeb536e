//! Looking at consumer groups: list them, describe one (members, assignment, offsets, lag).

use crate::message::committed_offsets::CommitTopic;
use crate::message::group::{Assignor, TopicPartitions};

wire_type! {
    /// List the groups every coordinator knows.
    pub struct ListGroupsRequest {
        /// Only groups whose id starts with this.
        pub prefix: String,
    }
}
message!(ListGroupsRequest, ListGroups);

wire_type! {
    /// One group in a listing.
    pub struct GroupSummary {
        /// Group id.
        pub group: String,
        /// Members now.
        pub members: u32,
        /// Generation now.
        pub generation: u32,
    }
}

wire_type! {
    /// Groups, sorted by id.
    pub struct ListGroupsResponse {
        /// Every group with members or committed offsets.
        pub groups: Vec<GroupSummary>,
    }
}
message!(ListGroupsResponse, ListGroups);

wire_type! {
    /// Describe one group.
    pub struct DescribeGroupRequest {
        /// Group id.
        pub group: String,
    }
}
message!(DescribeGroupRequest, DescribeGroup);

wire_type! {
    /// One member of a group.
    pub struct GroupMemberDescription {
        /// Member id.
        pub member_id: String,
        /// Static instance id (empty = dynamic).
        pub instance_id: String,
        /// Topics it reads.
        pub topics: Vec<String>,
        /// Partitions it owns now.
        pub assignment: Vec<TopicPartitions>,
        /// Milliseconds since its last heartbeat.
        pub since_heartbeat_ms: u64,
    }
}

wire_type! {
    /// A group's state.
    pub struct DescribeGroupResponse {
        /// Error code.
        pub error: u16,
        /// Detail when `error != 0`.
        pub message: String,
        /// Group id.
        pub group: String,
        /// Generation now.
        pub generation: u32,
        /// The group's assignor.
        pub assignor: Assignor,
        /// Whether some partition is waiting to move to its new owner.
        pub rebalancing: bool,
        /// Members, sorted by id.
        pub members: Vec<GroupMemberDescription>,
        /// Committed offsets.
        pub offsets: Vec<CommitTopic>,
    }
}
message!(DescribeGroupResponse, DescribeGroup);
