//! Consumer groups: membership (join, heartbeat, leave).
//!
//! The broker assigns: a member says which topics it reads, the group's coordinator (the
//! shard that owns the group's offsets partition) computes the assignment with the group's
//! [`Assignor`], and every heartbeat answers with the partitions the member may own now.
//! Rebalancing is incremental: a member keeps the partitions it still owns, and a partition
//! that moves is granted to its new owner only after the old one has reported giving it up
//! (so no two live members ever own one partition). Each change of the group's target
//! assignment is a new generation.

wire_type! {
    /// How a group's partitions are spread over its members.
    pub enum Assignor {
        /// Members keep what they own; the rest is spread so counts differ by at most one
        /// (the fewest moves; the default).
        #[default]
        Sticky,
        /// Per topic, contiguous ranges of partitions in member order.
        Range,
        /// All subscribed partitions dealt out in turn over the members.
        RoundRobin,
    }
}

wire_type! {
    /// Partitions of one topic.
    pub struct TopicPartitions {
        /// Topic name.
        pub topic: String,
        /// Partition numbers, ascending.
        pub partitions: Vec<u32>,
    }
}

impl TopicPartitions {
    /// Groups `(topic, partition)` pairs sorted by topic into one entry per topic.
    pub fn group<'a>(tps: impl IntoIterator<Item = (&'a str, u32)>) -> Vec<TopicPartitions> {
        let mut out: Vec<TopicPartitions> = Vec::new();
        for (topic, p) in tps {
            match out.last_mut() {
                Some(last) if last.topic == topic => last.partitions.push(p),
                _ => out.push(TopicPartitions { topic: topic.to_owned(), partitions: vec![p] }),
            }
        }
        out
    }

    /// Every `(topic, partition)` pair of `tps`.
    pub fn flatten(tps: &[TopicPartitions]) -> impl Iterator<Item = (String, u32)> + '_ {
        tps.iter().flat_map(|t| t.partitions.iter().map(move |&p| (t.topic.clone(), p)))
    }
}

wire_type! {
    /// Join a group (or rejoin with the member id it gave before).
    pub struct JoinGroupRequest {
        /// Group id.
        pub group: String,
        /// Empty on the first join; the id the broker gave, on a rejoin.
        pub member_id: String,
        /// Static membership: a stable name for this instance (empty = dynamic). A member
        /// that restarts with the same name within the session timeout takes back its
        /// partitions without a rebalance, and fences the incarnation it replaces.
        pub instance_id: String,
        /// A member that sends no heartbeat for this long is removed.
        pub session_timeout_ms: u32,
        /// Topics this member reads.
        pub topics: Vec<String>,
        /// The assignor this member asks for; every member of a group must ask for the same.
        pub assignor: Assignor,
        /// Partitions this member owns now (on a rejoin), so they stay with it.
        pub owned: Vec<TopicPartitions>,
        /// The client's name for itself (shown by DescribeGroup).
        pub client_id: String,
        /// The address the member connects from (shown by DescribeGroup). Set by the broker
        /// from the connection the request came in on: what a client sends is replaced.
        pub client_host: String,
    }
}
message!(JoinGroupRequest, JoinGroup);

wire_type! {
    /// Membership state for one member: the answer to join and heartbeat.
    pub struct GroupMemberState {
        /// Error code (0 = a member; UNKNOWN_MEMBER: join again; FENCED_INSTANCE: another
        /// incarnation took this instance id).
        pub error: u16,
        /// Detail when `error != 0`.
        pub message: String,
        /// The member's id (send it with every later request).
        pub member_id: String,
        /// The group's generation (send it with commits).
        pub generation: u32,
        /// Send the next heartbeat within this many milliseconds (short while partitions
        /// are moving; 0 after a held heartbeat: send the next one now).
        pub heartbeat_interval_ms: u32,
        /// The partitions this member may own now: start reading those that are new, stop
        /// reading (and commit) those that are gone, then heartbeat at once.
        pub assignment: Vec<TopicPartitions>,
        /// Partitions the group means this member to have that another member still owns;
        /// they come in a later heartbeat.
        pub pending: u32,
    }
}
message!(GroupMemberState, JoinGroup);

wire_type! {
    /// Keep a membership alive and learn the current assignment.
    pub struct HeartbeatRequest {
        /// Group id.
        pub group: String,
        /// Member id from the join.
        pub member_id: String,
        /// Static instance id given at join (empty = dynamic).
        pub instance_id: String,
        /// The generation the member last heard.
        pub generation: u32,
        /// Partitions the member owns now (after applying the last assignment).
        pub owned: Vec<TopicPartitions>,
        /// When the member has nothing to apply, the coordinator may hold the heartbeat up
        /// to this long and answer as soon as the member's assignment changes (then a
        /// member learns of a rebalance at once, not at its next heartbeat). 0 = answer now.
        pub wait_ms: u32,
    }
}
message!(HeartbeatRequest, Heartbeat);

wire_type! {
    /// Membership state after a heartbeat (the same shape as a join's answer).
    pub struct HeartbeatResponse {
        /// The member's state.
        pub state: GroupMemberState,
    }
}
message!(HeartbeatResponse, Heartbeat);

wire_type! {
    /// Leave a group: its partitions go to the others at once.
    pub struct LeaveGroupRequest {
        /// Group id.
        pub group: String,
        /// Member id from the join.
        pub member_id: String,
    }
}
message!(LeaveGroupRequest, LeaveGroup);

wire_type! {
    /// Left (or not).
    pub struct LeaveGroupResponse {
        /// Error code.
        pub error: u16,
        /// Detail when `error != 0`.
        pub message: String,
    }
}
message!(LeaveGroupResponse, LeaveGroup);
