//! Errors of the Kafka listener and the mapping of native error codes to Kafka's.

use kafka_protocol::ResponseError as K;
use wire::ErrorCode;

/// What went wrong translating a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KafkaError {
    /// A request (header, body or record batch) did not decode.
    #[error("cannot decode {0}")]
    Decode(String),
    /// A response did not encode.
    #[error("cannot encode {0}")]
    Encode(String),
    /// The native handler answered with an error for the whole request.
    #[error("{code}: {message}")]
    Native {
        /// The native code.
        code: ErrorCode,
        /// Its detail.
        message: String,
    },
}

impl KafkaError {
    /// The Kafka error code for this error on a produce, fetch or list-offsets partition
    /// ([`kafka_data_code_raw`]).
    pub fn data_code(&self) -> i16 {
        match self {
            KafkaError::Native { code, .. } => kafka_data_code_raw(code.as_u16()),
            e => e.code(),
        }
    }

    /// The Kafka error code for this error.
    pub fn code(&self) -> i16 {
        match self {
            KafkaError::Decode(_) => K::CorruptMessage.code(),
            KafkaError::Encode(_) => K::UnknownServerError.code(),
            KafkaError::Native { code, .. } => kafka_code(*code),
        }
    }
}

/// The Kafka error code for a native one (Kafka's numbers: `kafka_protocol::ResponseError`).
pub fn kafka_code(code: ErrorCode) -> i16 {
    let k = match code {
        ErrorCode::None => return 0,
        ErrorCode::UnknownTopic | ErrorCode::UnknownPartition => K::UnknownTopicOrPartition,
        ErrorCode::TopicAlreadyExists => K::TopicAlreadyExists,
        ErrorCode::InvalidTopicConfig => K::InvalidConfig,
        ErrorCode::InvalidTopicName => K::InvalidTopicException,
        ErrorCode::CorruptBatch | ErrorCode::InvalidBatch => K::CorruptMessage,
        ErrorCode::BatchTooLarge | ErrorCode::FrameTooLarge => K::MessageTooLarge,
        ErrorCode::DiskFull | ErrorCode::StorageIo | ErrorCode::CorruptStoredData => {
            K::KafkaStorageError
        }
        ErrorCode::OffsetOutOfRange => K::OffsetOutOfRange,
        ErrorCode::NotOwner => K::NotLeaderOrFollower,
        ErrorCode::Timeout => K::RequestTimedOut,
        ErrorCode::ResourceLimit | ErrorCode::RoomShort => K::PolicyViolation,
        ErrorCode::PolicyViolation => K::PolicyViolation,
        ErrorCode::Loading => K::CoordinatorLoadInProgress,
        ErrorCode::ShuttingDown => K::NotLeaderOrFollower,
        ErrorCode::UnsupportedVersion | ErrorCode::UnknownApiKey => K::UnsupportedVersion,
        ErrorCode::InvalidRequest | ErrorCode::CorruptFrame | ErrorCode::InvalidAckLevel => {
            K::InvalidRequest
        }
        ErrorCode::InvalidGroupId => K::InvalidGroupId,
        ErrorCode::UnknownMember => K::UnknownMemberId,
        ErrorCode::StaleGeneration => K::IllegalGeneration,
        ErrorCode::FencedInstance => K::FencedInstanceId,
        ErrorCode::NotAssigned => K::UnknownMemberId,
        ErrorCode::InconsistentAssignor => K::InconsistentGroupProtocol,
        ErrorCode::GroupNotEmpty => K::NonEmptyGroup,
        ErrorCode::UnknownGroup => K::GroupIdNotFound,
        ErrorCode::GroupSubscribedToTopic => K::GroupSubscribedToTopic,
        ErrorCode::InternalTopic => K::TopicAuthorizationFailed,
        ErrorCode::OutOfOrderSequence => K::OutOfOrderSequenceNumber,
        ErrorCode::ProducerFenced => K::InvalidProducerEpoch,
        ErrorCode::DuplicateSequence => K::DuplicateSequenceNumber,
        ErrorCode::ConditionFailed | ErrorCode::NotATable => K::InvalidRequest,
        ErrorCode::UnknownSubscription | ErrorCode::DuplicateSubscription => K::InvalidRequest,
        ErrorCode::UnknownServerError => K::UnknownServerError,
        ErrorCode::AuthenticationRequired | ErrorCode::AuthenticationFailed => {
            K::SaslAuthenticationFailed
        }
        ErrorCode::AuthorizationFailed => K::TopicAuthorizationFailed,
        ErrorCode::UnsupportedSaslMechanism => K::UnsupportedSaslMechanism,
        ErrorCode::UnknownUser => K::ResourceNotFound,
    };
    k.code()
}

/// [`kafka_code`] of a raw native code (unknown numbers are Kafka's UNKNOWN_SERVER_ERROR).
pub fn kafka_code_raw(code: u16) -> i16 {
    ErrorCode::from_u16(code).map_or(K::UnknownServerError.code(), kafka_code)
}

/// [`kafka_code_raw`] for a partition of a produce, fetch or list-offsets: a limit reached
/// for now (RESOURCE_LIMIT: a descriptor or memory budget; ROOM_SHORT) is
/// KAFKA_STORAGE_ERROR, which Kafka producers and consumers retry after a metadata refresh.
/// (POLICY_VIOLATION, the mapping elsewhere, failed a producer's batch for good, and Java's
/// consumer throws on an error code its fetch does not expect.)
pub fn kafka_data_code_raw(code: u16) -> i16 {
    match ErrorCode::from_u16(code) {
        Some(ErrorCode::ResourceLimit | ErrorCode::RoomShort) => K::KafkaStorageError.code(),
        _ => kafka_code_raw(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limit a produce or fetch meets for now is one Kafka clients retry; elsewhere (a
    /// topic over the partition limit) it stays a policy refusal.
    #[test]
    fn a_data_path_limit_is_retriable_in_kafkas_eyes() {
        for code in [ErrorCode::ResourceLimit, ErrorCode::RoomShort] {
            assert_eq!(kafka_data_code_raw(code.as_u16()), K::KafkaStorageError.code());
            assert!(K::KafkaStorageError.is_retriable());
            assert_eq!(kafka_code(code), K::PolicyViolation.code());
            let e = KafkaError::Native { code, message: String::new() };
            assert_eq!(e.data_code(), K::KafkaStorageError.code());
        }
        assert_eq!(
            kafka_data_code_raw(ErrorCode::OffsetOutOfRange.as_u16()),
            K::OffsetOutOfRange.code()
        );
        assert_eq!(KafkaError::Decode(String::new()).data_code(), K::CorruptMessage.code());
    }
}
