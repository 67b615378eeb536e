//! Typed errors for everything that can go wrong while encoding or decoding.
//!
//! Each maps onto a stable wire [`ErrorCode`] with `code()`, so a server can answer a bad
//! input with the precise reason.

use crate::error_code::ErrorCode;

/// A frame header that can never become valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first four bytes are not `EVBK`.
    #[error("bad frame magic {found:#010x}; is the peer speaking this protocol?")]
    BadMagic {
        /// What arrived instead.
        found: u32,
    },
    /// The header checksum does not match.
    #[error("frame header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderChecksum {
        /// Checksum in the header.
        stored: u32,
        /// Checksum of the bytes received.
        computed: u32,
    },
    /// Reserved header bytes are not zero.
    #[error("reserved frame header bytes are not zero")]
    ReservedNotZero,
    /// Flag bits this version does not define.
    #[error("unknown frame flags {flags:#06x}")]
    UnknownFlags {
        /// The flags received.
        flags: u16,
    },
    /// The body is longer than the configured maximum.
    #[error("frame body of {body_len} bytes exceeds the maximum of {body_bytes_max}")]
    BodyTooLarge {
        /// Length announced by the peer.
        body_len: u32,
        /// The configured maximum.
        body_bytes_max: u32,
    },
    /// Padding after the body is not zero.
    #[error("frame padding bytes are not zero")]
    PaddingNotZero,
}

impl FrameError {
    /// The wire code that reports this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::BodyTooLarge { .. } => ErrorCode::FrameTooLarge,
            _ => ErrorCode::CorruptFrame,
        }
    }
}

/// A frame body that is not a valid archive of the expected message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body does not start 16-byte aligned in memory.
    #[error("frame body is not 16-byte aligned in memory (address % 16 = {misalignment})")]
    Misaligned {
        /// Address modulo 16.
        misalignment: usize,
    },
    /// rkyv validation failed.
    #[error("invalid {message} body: {reason}")]
    Invalid {
        /// The message type that was expected.
        message: &'static str,
        /// What bytecheck found.
        reason: String,
    },
    /// Serialization failed (a string or vector too long for the archive format).
    #[error("cannot encode {message}: {reason}")]
    Encode {
        /// The message being encoded.
        message: &'static str,
        /// Why.
        reason: String,
    },
    /// The encoded body would exceed the format limit.
    #[error("encoded body of {body_len} bytes exceeds the format limit")]
    TooLarge {
        /// Encoded length.
        body_len: usize,
    },
}

impl BodyError {
    /// The wire code that reports this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            BodyError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            _ => ErrorCode::InvalidRequest,
        }
    }
}

/// A record batch that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the batch header, or than the length the header announces.
    #[error("truncated batch: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the batch needs.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// The announced length is not a multiple of 16, too small, or over the maximum.
    #[error("bad batch length {batch_len}")]
    BadLength {
        /// The announced length.
        batch_len: u32,
    },
    /// Batch bytes do not start 16-byte aligned in memory.
    #[error("batch is not 16-byte aligned in memory (address % 16 = {misalignment})")]
    Misaligned {
        /// Address modulo 16.
        misalignment: usize,
    },
    /// The format version byte is not one this crate reads.
    #[error("unsupported batch format version {version}")]
    UnsupportedVersion {
        /// The version found.
        version: u8,
    },
    /// CRC32C mismatch: the bytes were damaged.
    #[error("batch checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// Checksum in the header.
        stored: u32,
        /// Checksum of the bytes.
        computed: u32,
    },
    /// A header field is inconsistent with the others or with the records.
    #[error("inconsistent batch header: {what}")]
    Inconsistent {
        /// Which relation failed.
        what: &'static str,
    },
    /// The records archive failed rkyv validation.
    #[error("invalid records archive: {reason}")]
    Records {
        /// What bytecheck found.
        reason: String,
    },
    /// The codec bits name no codec this version knows.
    #[error("unsupported compression codec {codec}")]
    UnsupportedCompression {
        /// Codec bits.
        codec: u16,
    },
    /// A compressed batch where records are read in place: open it through
    /// `BatchEnvelope::open` (or `batch::decompressed`) first.
    #[error("batch is compressed (codec {codec}); decompress it before reading records")]
    Compressed {
        /// Codec bits.
        codec: u16,
    },
    /// The compressed records did not decompress to the announced length.
    #[error("compressed records (codec {codec}) do not decompress: {reason}")]
    Decompress {
        /// Codec bits.
        codec: u16,
        /// What the codec reported.
        reason: String,
    },
}

impl BatchError {
    /// The wire code that reports this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            BatchError::Checksum { .. } => ErrorCode::CorruptBatch,
            BatchError::BadLength { batch_len }
                if *batch_len > crate::constants::BATCH_BYTES_MAX =>
            {
                ErrorCode::BatchTooLarge
            }
            _ => ErrorCode::InvalidBatch,
        }
    }
}

/// Why a record could not be added to a batch being built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The batch would exceed its byte budget; finish this batch and start another.
    #[error("batch full: {batch_bytes} bytes would exceed the maximum of {batch_bytes_max}")]
    Full {
        /// Estimated size with the record added.
        batch_bytes: usize,
        /// The builder's maximum.
        batch_bytes_max: usize,
    },
    /// The record alone exceeds the batch byte budget; it can never be sent in this batch size.
    #[error("record of {record_bytes} bytes exceeds the batch maximum of {batch_bytes_max}")]
    RecordTooLarge {
        /// Estimated archived size of the record.
        record_bytes: usize,
        /// The builder's maximum.
        batch_bytes_max: usize,
    },
    /// The batch already holds the maximum number of records.
    #[error("batch holds the maximum of {records_max} records")]
    TooManyRecords {
        /// The limit.
        records_max: u32,
    },
    /// The record's timestamp is too far from the batch's first timestamp (±24 days).
    #[error("timestamp {timestamp_ms} is more than i32::MAX ms from the batch's first timestamp {first_timestamp_ms}")]
    TimestampOutOfRange {
        /// The record's timestamp.
        timestamp_ms: i64,
        /// The batch's first timestamp.
        first_timestamp_ms: i64,
    },
    /// A header key longer than the limit.
    #[error("header key of {key_bytes} bytes exceeds the limit")]
    HeaderKeyTooLong {
        /// Its length.
        key_bytes: usize,
    },
    /// `finish` on a builder with no records.
    #[error("cannot finish an empty batch")]
    Empty,
    /// rkyv serialization failed.
    #[error("cannot serialize records: {reason}")]
    Serialize {
        /// Why.
        reason: String,
    },
}
