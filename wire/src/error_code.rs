//! Wire error codes: stable numbers that travel in responses.
//!
//! A number, once given, is never reused or renumbered (a test pins every one). New codes
//! take the next free number; retired codes stay in the enum, marked deprecated.

macro_rules! error_codes {
    ($( $(#[$meta:meta])* $name:ident = $num:literal, $wire_name:literal, $retriable:literal, $msg:literal; )*) => {
        /// A stable, numbered error that the broker reports to a client.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum ErrorCode {
            $( $(#[$meta])* $name = $num, )*
        }

        impl ErrorCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The code for a wire number, or `None` for a number this version does not know.
            pub fn from_u16(n: u16) -> Option<Self> {
                match n {
                    $( $num => Some(ErrorCode::$name), )*
                    _ => None,
                }
            }

            /// The stable wire number.
            pub const fn as_u16(self) -> u16 {
                self as u16
            }

            /// The stable name, as shown by tools (`UNKNOWN_TOPIC`).
            pub const fn name(self) -> &'static str {
                match self {
                    $( ErrorCode::$name => $wire_name, )*
                }
            }

            /// A sentence for a person.
            pub const fn message(self) -> &'static str {
                match self {
                    $( ErrorCode::$name => $msg, )*
                }
            }

            /// Whether a client may retry the same request (after refreshing metadata).
            pub const fn is_retriable(self) -> bool {
                match self {
                    $( ErrorCode::$name => $retriable, )*
                }
            }
        }
    };
}

error_codes! {
    /// Success.
    None = 0, "NONE", false, "no error";
    /// The broker hit an unexpected condition; its log says more.
    UnknownServerError = 1, "UNKNOWN_SERVER_ERROR", false, "unexpected server error";
    /// The frame header is malformed (magic, reserved bits, header checksum).
    CorruptFrame = 2, "CORRUPT_FRAME", false, "malformed frame header";
    /// The peer speaks a protocol version this broker does not.
    UnsupportedVersion = 3, "UNSUPPORTED_VERSION", false, "unsupported protocol version";
    /// The api key is not one this broker knows.
    UnknownApiKey = 4, "UNKNOWN_API_KEY", false, "unknown api key";
    /// The request body failed validation (not a well-formed archive of the expected type).
    InvalidRequest = 5, "INVALID_REQUEST", false, "invalid request body";
    /// The frame body is longer than the configured maximum.
    FrameTooLarge = 6, "FRAME_TOO_LARGE", false, "frame body exceeds the configured maximum";
    /// No topic by that name.
    UnknownTopic = 7, "UNKNOWN_TOPIC", true, "unknown topic";
    /// The topic has no partition with that number.
    UnknownPartition = 8, "UNKNOWN_PARTITION", true, "unknown partition";
    /// A topic by that name already exists.
    TopicAlreadyExists = 9, "TOPIC_ALREADY_EXISTS", false, "topic already exists";
    /// Topic configuration out of range.
    InvalidTopicConfig = 10, "INVALID_TOPIC_CONFIG", false, "invalid topic configuration";
    /// A batch's CRC32C does not match its bytes.
    CorruptBatch = 11, "CORRUPT_BATCH", false, "record batch checksum mismatch";
    /// A batch is structurally invalid (lengths, version, records archive).
    InvalidBatch = 12, "INVALID_BATCH", false, "invalid record batch";
    /// A batch is larger than the topic or format allows.
    BatchTooLarge = 13, "BATCH_TOO_LARGE", false, "record batch too large";
    /// The broker's disk is full; reads still work, retry later.
    DiskFull = 14, "DISK_FULL", true, "disk full";
    /// A storage I/O error on the broker.
    StorageIo = 15, "STORAGE_IO", true, "storage I/O error";
    /// The requested offset is outside the partition's range.
    OffsetOutOfRange = 16, "OFFSET_OUT_OF_RANGE", false, "offset out of range";
    /// The request reached a shard that does not own the partition and could not be forwarded.
    NotOwner = 17, "NOT_OWNER", true, "shard does not own the partition; refresh metadata";
    /// The request did not complete in time.
    Timeout = 18, "TIMEOUT", true, "request timed out";
    /// No subscription with that id on this connection.
    UnknownSubscription = 19, "UNKNOWN_SUBSCRIPTION", false, "unknown subscription";
    /// A connection, subscription or in-flight limit was reached.
    ResourceLimit = 20, "RESOURCE_LIMIT", true, "resource limit reached";
    /// The broker is shutting down.
    ShuttingDown = 21, "SHUTTING_DOWN", true, "broker is shutting down";
    /// Topic names are 1..=249 bytes of `[A-Za-z0-9._-]`.
    InvalidTopicName = 22, "INVALID_TOPIC_NAME", false, "invalid topic name";
    /// Stored data failed its checksum on read; it is never returned as records.
    CorruptStoredData = 23, "CORRUPT_STORED_DATA", false, "stored data is corrupt";
    /// A subscription with that id already exists on this connection.
    DuplicateSubscription = 24, "DUPLICATE_SUBSCRIPTION", false, "duplicate subscription id";
    /// The requested ack level is not one of none, written, durable.
    InvalidAckLevel = 25, "INVALID_ACK_LEVEL", false, "invalid ack level";
    /// Group ids are 1..=249 bytes without control characters.
    InvalidGroupId = 26, "INVALID_GROUP_ID", false, "invalid group id";
    /// The group does not know this member id (it timed out or left): join again.
    UnknownMember = 27, "UNKNOWN_MEMBER", false, "unknown group member; join again";
    /// The request carries an older generation than the member's current one.
    StaleGeneration = 28, "STALE_GENERATION", false, "stale group generation";
    /// Another incarnation took this static instance id.
    FencedInstance = 29, "FENCED_INSTANCE", false, "fenced by a newer instance with this id";
    /// The member does not own the partition in the current generation.
    NotAssigned = 30, "NOT_ASSIGNED", false, "partition not assigned to this member";
    /// The member asks for another assignor than the group uses.
    InconsistentAssignor = 31, "INCONSISTENT_ASSIGNOR", false, "assignor differs from the group's";
    /// The group has members, so its offsets cannot be reset.
    GroupNotEmpty = 32, "GROUP_NOT_EMPTY", false, "group has active members";
    /// No group by that id (no members, no committed offsets).
    UnknownGroup = 33, "UNKNOWN_GROUP", false, "unknown group";
    /// The topic is the broker's own (committed offsets): only the broker writes or deletes it.
    InternalTopic = 34, "INTERNAL_TOPIC", false, "internal topic: written only by the broker";
    /// A producer's batch skips sequence numbers: an earlier batch has not arrived (yet).
    OutOfOrderSequence = 35, "OUT_OF_ORDER_SEQUENCE", true, "out of order sequence number";
    /// A newer epoch of this producer id exists; this incarnation may not write.
    ProducerFenced = 36, "PRODUCER_FENCED", false, "producer fenced by a newer epoch";
    /// A producer sent a batch again that is older than the last batches the partition
    /// remembers: it is stored, but its offsets are no longer known.
    DuplicateSequence = 37, "DUPLICATE_SEQUENCE", false, "duplicate of an old batch (stored)";
    /// A conditional append found the partition (or the key) elsewhere than expected.
    ConditionFailed = 38, "CONDITION_FAILED", false, "expected position does not match";
    /// A table read named a topic that is not declared a table.
    NotATable = 39, "NOT_A_TABLE", false, "topic is not a table";
    /// The broker requires authentication (SaslHandshake + SaslAuthenticate) first.
    AuthenticationRequired = 40, "AUTHENTICATION_REQUIRED", false, "authenticate first";
    /// Wrong user or password, a revoked user, or too many failed attempts.
    AuthenticationFailed = 41, "AUTHENTICATION_FAILED", false, "authentication failed";
    /// The principal may not do this operation on this resource (ACLs).
    AuthorizationFailed = 42, "AUTHORIZATION_FAILED", false, "not authorized";
    /// The SASL mechanism is not offered (PLAIN needs TLS).
    UnsupportedSaslMechanism = 43, "UNSUPPORTED_SASL_MECHANISM", false, "unsupported SASL mechanism";
    /// No user by that name.
    UnknownUser = 44, "UNKNOWN_USER", false, "unknown user";
    /// A member of the group reads the topic, so the group's offsets of it stay.
    GroupSubscribedToTopic = 45, "GROUP_SUBSCRIBED_TO_TOPIC", false, "a group member reads this topic";
    /// Between shards: the room the asking shard lent for a forwarded answer was too small
    /// for its first entry; the asking shard asks again with more (clients get
    /// `RESOURCE_LIMIT` if it cannot).
    RoomShort = 46, "ROOM_SHORT", true, "room lent for the answer too small";
    /// The topic's settings do not allow this (deleting records of a compacted topic
    /// without retention: the cleaner keeps each key's latest record).
    PolicyViolation = 47, "POLICY_VIOLATION", false, "the topic's settings do not allow this";
    /// State the request needs is being loaded (a key-conditional append forwarded between
    /// shards while its partition's key index is built): retry shortly.
    Loading = 48, "LOADING", true, "partition state is being loaded; retry shortly";
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.as_u16(), self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    /// Pins every number. If this test fails, a code was renumbered: put it back. Codes are
    /// only ever appended.
    #[test]
    fn numbers_are_pinned() {
        let expected: &[(u16, &str)] = &[
            (0, "NONE"),
            (1, "UNKNOWN_SERVER_ERROR"),
            (2, "CORRUPT_FRAME"),
            (3, "UNSUPPORTED_VERSION"),
            (4, "UNKNOWN_API_KEY"),
            (5, "INVALID_REQUEST"),
            (6, "FRAME_TOO_LARGE"),
            (7, "UNKNOWN_TOPIC"),
            (8, "UNKNOWN_PARTITION"),
            (9, "TOPIC_ALREADY_EXISTS"),
            (10, "INVALID_TOPIC_CONFIG"),
            (11, "CORRUPT_BATCH"),
            (12, "INVALID_BATCH"),
            (13, "BATCH_TOO_LARGE"),
            (14, "DISK_FULL"),
            (15, "STORAGE_IO"),
            (16, "OFFSET_OUT_OF_RANGE"),
            (17, "NOT_OWNER"),
            (18, "TIMEOUT"),
            (19, "UNKNOWN_SUBSCRIPTION"),
            (20, "RESOURCE_LIMIT"),
            (21, "SHUTTING_DOWN"),
            (22, "INVALID_TOPIC_NAME"),
            (23, "CORRUPT_STORED_DATA"),
            (24, "DUPLICATE_SUBSCRIPTION"),
            (25, "INVALID_ACK_LEVEL"),
            (26, "INVALID_GROUP_ID"),
            (27, "UNKNOWN_MEMBER"),
            (28, "STALE_GENERATION"),
            (29, "FENCED_INSTANCE"),
            (30, "NOT_ASSIGNED"),
            (31, "INCONSISTENT_ASSIGNOR"),
            (32, "GROUP_NOT_EMPTY"),
            (33, "UNKNOWN_GROUP"),
            (34, "INTERNAL_TOPIC"),
            (35, "OUT_OF_ORDER_SEQUENCE"),
            (36, "PRODUCER_FENCED"),
            (37, "DUPLICATE_SEQUENCE"),
            (38, "CONDITION_FAILED"),
            (39, "NOT_A_TABLE"),
            (40, "AUTHENTICATION_REQUIRED"),
            (41, "AUTHENTICATION_FAILED"),
            (42, "AUTHORIZATION_FAILED"),
            (43, "UNSUPPORTED_SASL_MECHANISM"),
            (44, "UNKNOWN_USER"),
            (45, "GROUP_SUBSCRIBED_TO_TOPIC"),
            (46, "ROOM_SHORT"),
            (47, "POLICY_VIOLATION"),
            (48, "LOADING"),
        ];
        assert_eq!(ErrorCode::ALL.len(), expected.len(), "a code was added: pin it here");
        for (code, (num, name)) in ErrorCode::ALL.iter().zip(expected) {
            assert_eq!(code.as_u16(), *num, "{name} renumbered");
            assert_eq!(code.name(), *name);
            assert_eq!(ErrorCode::from_u16(*num), Some(*code));
        }
        assert_eq!(ErrorCode::from_u16(expected.len() as u16), None);
    }

    #[test]
    fn every_code_has_a_message() {
        for code in ErrorCode::ALL {
            assert!(!code.message().is_empty());
            assert!(code.to_string().contains(code.name()));
        }
    }
}
