//! The gateway's errors: every failure is a native [`ErrorCode`] with a message, sent as JSON
//! `{"error": {"code": 7, "name": "UNKNOWN_TOPIC", "message": "..."}}` with an HTTP status
//! chosen from the code ([`ApiError::status`]). A client sees the same numbers and names on
//! HTTP as on the native protocol.

use hyper::StatusCode;
use wire::ErrorCode;

/// A native error code with a message for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.name())]
pub struct ApiError {
    /// The native code.
    pub code: ErrorCode,
    /// Detail.
    pub message: String,
    /// A status other than the code's own (404 for an unknown path, 405, 408).
    pub status: Option<StatusCode>,
    /// `Retry-After` seconds, for a refusal that passes (no room in the budget now).
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    /// An error with the code's own status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), status: None, retry_after_s: None }
    }

    /// `INVALID_REQUEST` (400): a malformed body or query.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidRequest, message)
    }

    /// The same error with a `Retry-After` of `seconds`.
    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    /// The same error with another HTTP status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// The native code of a per-partition or per-topic result (`error` field), as an error.
    pub fn check(code: u16, context: impl FnOnce() -> String) -> Result<(), ApiError> {
        match ErrorCode::from_u16(code) {
            Some(ErrorCode::None) => Ok(()),
            Some(c) => Err(ApiError::new(c, context())),
            None => Err(ApiError::new(ErrorCode::UnknownServerError, format!("error {code}"))),
        }
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        if let Some(s) = self.status {
            return s;
        }
        use ErrorCode as E;
        match self.code {
            E::UnknownTopic | E::UnknownPartition | E::UnknownGroup | E::UnknownSubscription => {
                StatusCode::NOT_FOUND
            }
            E::TopicAlreadyExists
            | E::ConditionFailed
            | E::GroupNotEmpty
            | E::GroupSubscribedToTopic
            | E::PolicyViolation => StatusCode::CONFLICT,
            E::FrameTooLarge | E::BatchTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            E::OffsetOutOfRange => StatusCode::RANGE_NOT_SATISFIABLE,
            E::Timeout => StatusCode::GATEWAY_TIMEOUT,
            E::ResourceLimit | E::RoomShort => StatusCode::TOO_MANY_REQUESTS,
            E::NotOwner | E::ShuttingDown | E::DiskFull | E::StorageIo | E::Loading => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            E::InternalTopic | E::AuthorizationFailed => StatusCode::FORBIDDEN,
            E::AuthenticationRequired | E::AuthenticationFailed => StatusCode::UNAUTHORIZED,
            E::UnknownUser => StatusCode::NOT_FOUND,
            E::UnknownServerError | E::CorruptStoredData => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "code": self.code.as_u16(),
                "name": self.code.name(),
                "message": self.message,
            }
        })
    }
}
