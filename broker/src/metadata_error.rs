//! Why a change of the topic metadata (`metadata.rs`) or of a topic's settings
//! (`topic_settings.rs`) was refused.

/// Why a metadata change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// Bad name.
    #[error("invalid topic name {0:?}: use 1..=249 bytes of [A-Za-z0-9._-], not . or ..")]
    InvalidName(String),
    /// Exists.
    #[error("a topic or table named {0:?} already exists")]
    Exists(String),
    /// Missing.
    #[error("unknown topic {0:?}")]
    Unknown(String),
    /// No such table.
    #[error(
        "unknown table {0:?} (tables declared over a topic; a table topic is deleted as a topic)"
    )]
    UnknownTable(String),
    /// A setting outside what the field allows.
    #[error("invalid topic config: {field} = {value}; allowed: {allowed}")]
    InvalidConfig {
        /// The `wire::TopicConfig` field.
        field: &'static str,
        /// What was asked for.
        value: String,
        /// What the field accepts.
        allowed: String,
    },
}

impl MetadataError {
    /// Wire code.
    pub fn code(&self) -> wire::ErrorCode {
        match self {
            MetadataError::InvalidName(_) => wire::ErrorCode::InvalidTopicName,
            MetadataError::Exists(_) => wire::ErrorCode::TopicAlreadyExists,
            MetadataError::Unknown(_) | MetadataError::UnknownTable(_) => {
                wire::ErrorCode::UnknownTopic
            }
            MetadataError::InvalidConfig { .. } => wire::ErrorCode::InvalidTopicConfig,
        }
    }
}
