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
