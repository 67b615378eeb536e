//! Looking at consumer groups: list them, describe one (members, assignment, offsets, lag),
//! delete one or some of its committed offsets.

use crate::message::committed_offsets::{CommitTopic, CommitTopicResult};
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
        /// The client's name for itself, as it joined.
        pub client_id: String,
        /// The address it joined from (IP, no port).
        pub client_host: String,
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

wire_type! {
    /// Forget committed offsets of a group. With no `topics`, all of them: the group is
    /// deleted (refused with `GROUP_NOT_EMPTY` while it has members; `UNKNOWN_GROUP` if it has
    /// neither members nor offsets). Otherwise only the listed topics' (every partition of a
    /// topic whose `partitions` is empty); a topic a member reads is refused per partition
    /// with `GROUP_SUBSCRIBED_TO_TOPIC`. The topics need not exist any more.
    pub struct DeleteGroupOffsetsRequest {
        /// Group id.
        pub group: String,
        /// What to forget (empty: everything).
        pub topics: Vec<TopicPartitions>,
    }
}
message!(DeleteGroupOffsetsRequest, DeleteGroupOffsets);

wire_type! {
    /// What was forgotten: once answered without error, durably (a restart does not bring
    /// the offsets back).
    pub struct DeleteGroupOffsetsResponse {
        /// Error code for the whole request (0: see the per-partition codes).
        pub error: u16,
        /// Detail when `error != 0`.
        pub message: String,
        /// Every partition whose offset was forgotten or refused, per topic: for a whole
        /// topic or group, the partitions that had an offset.
        pub topics: Vec<CommitTopicResult>,
    }
}
message!(DeleteGroupOffsetsResponse, DeleteGroupOffsets);
