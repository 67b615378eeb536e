//! Api keys: which request a frame carries, and the versions of each this crate speaks.

use crate::constants::{PROTOCOL_VERSION, PROTOCOL_VERSION_MIN};

macro_rules! api_keys {
    ($( $(#[$m:meta])* $name:ident = $num:literal; )*) => {
        /// The kind of a frame's body. Numbers are stable and never reused.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum ApiKey {
            $( $(#[$m])* $name = $num, )*
        }

        impl ApiKey {
            /// Every api key, in numeric order.
            pub const ALL: &'static [ApiKey] = &[$(ApiKey::$name,)*];

            /// The key for a wire number, or `None` if this version does not know it (the
            /// receiver answers with `UNKNOWN_API_KEY`).
            pub fn from_u16(n: u16) -> Option<Self> {
                match n {
                    $( $num => Some(ApiKey::$name), )*
                    _ => None,
                }
            }

            /// Name for logs and tools.
            pub const fn name(self) -> &'static str {
                match self {
                    $( ApiKey::$name => stringify!($name), )*
                }
            }
        }
    };
}

api_keys! {
    /// Agree on a protocol version; learn the broker's limits.
    Handshake = 0;
    /// Shards, their addresses, topics and partition → shard.
    Metadata = 1;
    /// Create a topic.
    CreateTopic = 2;
    /// Delete a topic and its data.
    DeleteTopic = 3;
    /// List topic names.
    ListTopics = 4;
    /// Describe one topic: config and per-partition offsets and sizes.
    DescribeTopic = 5;
    /// Append batches to partitions.
    Produce = 6;
    /// Read batches from partitions (long-poll).
    Fetch = 7;
    /// Start a push subscription on one partition.
    Subscribe = 8;
    /// Grant a subscription more byte credit.
    GrantCredit = 9;
    /// End a subscription.
    Unsubscribe = 10;
    /// Pushed by the broker: batches for a subscription.
    SubscriptionData = 11;
    /// Earliest, latest or by-timestamp offsets.
    ListOffsets = 12;
    /// Per-shard counters.
    Stats = 13;
    /// Join a consumer group.
    JoinGroup = 14;
    /// Keep a group membership alive; learn the assignment.
    Heartbeat = 15;
    /// Leave a consumer group.
    LeaveGroup = 16;
    /// Commit a group's offsets.
    CommitOffsets = 17;
    /// Fetch a group's committed offsets.
    FetchOffsets = 18;
    /// List consumer groups.
    ListGroups = 19;
    /// Describe a consumer group.
    DescribeGroup = 20;
    /// Get an idempotent producer id.
    InitProducerId = 21;
    /// Read a table: a key's latest value, or a range of keys.
    TableRead = 22;
    /// Records of one key in a time range.
    KeyQuery = 23;
    /// Create a state table over an existing topic.
    CreateTable = 24;
    /// Delete a state table.
    DeleteTable = 25;
    /// Choose a SASL mechanism for this connection.
    SaslHandshake = 26;
    /// One SASL message (SCRAM, PLAIN).
    SaslAuthenticate = 27;
    /// Create a user or replace its credentials.
    UpsertUser = 28;
    /// Delete a user.
    DeleteUser = 29;
    /// List users.
    ListUsers = 30;
    /// Add an ACL.
    CreateAcl = 31;
    /// Remove an ACL.
    DeleteAcl = 32;
    /// List ACLs.
    ListAcls = 33;
    /// Create an HTTP bearer token for a user.
    CreateToken = 34;
    /// Delete a bearer token.
    DeleteToken = 35;
    /// List bearer tokens.
    ListTokens = 36;
    /// Forget a consumer group's committed offsets: all (delete the group) or some.
    DeleteGroupOffsets = 37;
    /// Grow a topic to more partitions (existing ones and their data stay as they are).
    CreatePartitions = 38;
    /// Change settings of an existing topic (retention, rolling, default ack).
    AlterTopicConfig = 39;
    /// Delete a partition's records before an offset (its log start moves there).
    DeleteRecords = 40;
    /// Add and remove ACLs in one change.
    ChangeAcls = 41;
    /// Store and remove users' SCRAM credentials one mechanism at a time.
    ChangeCredentials = 42;
}

impl ApiKey {
    /// The wire number.
    pub const fn as_u16(self) -> u16 {
        self as u16
    }

    /// Oldest and newest version of this api that this crate speaks.
    pub const fn versions(self) -> (u16, u16) {
        (PROTOCOL_VERSION_MIN, PROTOCOL_VERSION)
    }

    /// Whether `version` of this api is spoken here.
    pub const fn supports(self, version: u16) -> bool {
        let (min, max) = self.versions();
        version >= min && version <= max
    }
}

impl std::fmt::Display for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name(), self.as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::ApiKey;

    #[test]
    fn numbers_are_pinned() {
        let names: Vec<(u16, &str)> = ApiKey::ALL.iter().map(|k| (k.as_u16(), k.name())).collect();
        assert_eq!(
            names,
            [
                (0, "Handshake"),
                (1, "Metadata"),
                (2, "CreateTopic"),
                (3, "DeleteTopic"),
                (4, "ListTopics"),
                (5, "DescribeTopic"),
                (6, "Produce"),
                (7, "Fetch"),
                (8, "Subscribe"),
                (9, "GrantCredit"),
                (10, "Unsubscribe"),
                (11, "SubscriptionData"),
                (12, "ListOffsets"),
                (13, "Stats"),
                (14, "JoinGroup"),
                (15, "Heartbeat"),
                (16, "LeaveGroup"),
                (17, "CommitOffsets"),
                (18, "FetchOffsets"),
                (19, "ListGroups"),
                (20, "DescribeGroup"),
                (21, "InitProducerId"),
                (22, "TableRead"),
                (23, "KeyQuery"),
                (24, "CreateTable"),
                (25, "DeleteTable"),
                (26, "SaslHandshake"),
                (27, "SaslAuthenticate"),
                (28, "UpsertUser"),
                (29, "DeleteUser"),
                (30, "ListUsers"),
                (31, "CreateAcl"),
                (32, "DeleteAcl"),
                (33, "ListAcls"),
                (34, "CreateToken"),
                (35, "DeleteToken"),
                (36, "ListTokens"),
                (37, "DeleteGroupOffsets"),
                (38, "CreatePartitions"),
                (39, "AlterTopicConfig"),
                (40, "DeleteRecords"),
                (41, "ChangeAcls"),
                (42, "ChangeCredentials"),
            ]
        );
        assert_eq!(ApiKey::from_u16(43), None);
        assert_eq!(ApiKey::from_u16(u16::MAX), None);
    }
}
