//! Client errors: what happened and where, in words a person can act on.

use std::net::SocketAddr;

use wire::ErrorCode;

/// Everything the client can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The broker could not be reached.
    #[error("cannot reach broker at {addr}: {message}")]
    Connect {
        /// Address tried.
        addr: SocketAddr,
        /// Why.
        message: String,
    },
    /// The connection closed while a request waited.
    #[error("connection to {addr} closed")]
    Closed {
        /// The broker address.
        addr: SocketAddr,
    },
    /// No answer in time.
    #[error("{api} request to {addr} timed out")]
    Timeout {
        /// The broker address.
        addr: SocketAddr,
        /// Which api.
        api: &'static str,
    },
    /// The broker answered with an error.
    #[error("broker {addr} answered {code}: {message}")]
    Broker {
        /// The code.
        code: ErrorCode,
        /// Detail.
        message: String,
        /// The broker address.
        addr: SocketAddr,
    },
    /// A per-partition error.
    #[error("{topic}/{partition}: {code}")]
    Partition {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// The code.
        code: ErrorCode,
    },
    /// A consumer group refused the request.
    #[error("group: {code}: {message}")]
    Group {
        /// The code.
        code: ErrorCode,
        /// Detail.
        message: String,
    },
    /// A conditional append found the partition (or key) elsewhere than expected.
    #[error("{topic}/{partition}: condition failed; the current position is {current_offset}")]
    ConditionFailed {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// The partition's next offset, or the key's last offset (-1: never written).
        current_offset: i64,
    },
    /// The topic does not exist.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// A record could not be encoded.
    #[error("cannot encode record: {0}")]
    Record(String),
    /// A subscription filter that does not parse (`wire::filter`).
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    /// The broker sent something this client cannot decode.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// TLS could not be set up (files, names) or the handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The producer or consumer was closed.
    #[error("closed")]
    Shutdown,
}

impl ClientError {
    /// Whether retrying (after a metadata refresh) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::Closed { .. }
            | ClientError::Timeout { .. } => true,
            ClientError::Broker { code, .. }
            | ClientError::Partition { code, .. }
            | ClientError::Group { code, .. } => code.is_retriable(),
            _ => false,
        }
    }
}
