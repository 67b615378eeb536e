//! Every magic number, format version and hard limit of the protocol, in one place, with the
//! relations between them checked at compile time.

/// First four bytes of every frame: `EVBK` read as a little-endian `u32`.
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"EVBK");

/// The protocol version this crate speaks. A peer that asks for another version gets an
/// `UnsupportedVersion` error response, never a dropped connection.
pub const PROTOCOL_VERSION: u16 = 1;
/// Oldest protocol version this crate can still decode.
pub const PROTOCOL_VERSION_MIN: u16 = 1;

/// Bytes in a frame header. The body follows immediately and must start 16-byte aligned.
pub const FRAME_HEADER_BYTES: usize = 32;
/// Alignment of every frame body and of every record batch inside a buffer.
pub const BODY_ALIGN: usize = 16;

/// The largest frame body the format can describe at all. Deployments configure a lower
/// maximum (`frame_body_bytes_max`), checked before any allocation.
pub const FRAME_BODY_BYTES_LIMIT: u32 = 1 << 30;
/// Default for the configured maximum frame body.
pub const FRAME_BODY_BYTES_MAX_DEFAULT: u32 = 64 << 20;

/// Record batch format version written into byte 24 of every batch.
pub const BATCH_FORMAT_VERSION: u8 = 1;
/// Bytes in a record batch header; the rkyv records archive starts right after it.
pub const BATCH_HEADER_BYTES: usize = 80;
/// The largest record batch the format accepts (header, records and padding).
pub const BATCH_BYTES_MAX: u32 = 16 << 20;
/// The CRC32C of a batch covers bytes `[BATCH_CRC_START, batch_len)`: everything after the
/// fields the broker assigns (base offset, log-append time), so assigning them never
/// recomputes the CRC.
pub const BATCH_CRC_START: usize = 24;
/// Marks a timestamp that was not set (log-append time before the broker assigned it).
pub const NO_TIMESTAMP: i64 = -1;
/// Most records in one batch. Bounds `record_count` before anything is sized by it.
pub const BATCH_RECORDS_MAX: u32 = 1 << 20;
/// Longest header key in bytes.
pub const HEADER_KEY_BYTES_MAX: usize = 1 << 10;

/// Attribute bits 0..=2: compression codec of the records archive.
pub const ATTR_COMPRESSION_MASK: u16 = 0b0000_0111;
/// Attribute bit 3: a control batch (transaction markers, later).
pub const ATTR_CONTROL: u16 = 1 << 3;
/// Attribute bit 4: part of a transaction (later).
pub const ATTR_TRANSACTIONAL: u16 = 1 << 4;
/// Attribute bit 5: rewritten by log compaction (set by the broker only, never by a producer):
/// the batch keeps its offset span (`last_offset_delta`) while records were removed, so
/// `record_count <= last_offset_delta + 1` (0 when every record was removed) and the records'
/// offset deltas increase with gaps.
pub const ATTR_COMPACTED: u16 = 1 << 5;
/// Attribute bit 6: some header value in the batch is null (Kafka headers may have a null
/// value; native ones cannot). Every record of such a batch ends its header list with one
/// null map: a header with key [`NULL_MAP_HEADER_KEY`] whose value is a bitmap over the
/// record's other headers (bit `i % 8` of byte `i / 8` set = header `i` is null and stored
/// empty; at most `ceil(headers / 8)` bytes, no bit past the last header; empty when none is
/// null). Readers hide the null map ([`crate::RecordView::headers`]). Batches without the bit
/// are read as before, so stored data keeps its meaning.
pub const ATTR_NULL_HEADER_VALUES: u16 = 1 << 6;
/// The key of the null map header that ends each record's headers in a batch with
/// [`ATTR_NULL_HEADER_VALUES`] (told apart by its place, last, not by its key).
pub const NULL_MAP_HEADER_KEY: &str = "";
/// Attribute bits this version understands; the others must be zero.
pub const ATTR_KNOWN_MASK: u16 = ATTR_COMPRESSION_MASK
    | ATTR_CONTROL
    | ATTR_TRANSACTIONAL
    | ATTR_COMPACTED
    | ATTR_NULL_HEADER_VALUES;

/// Frame flag bit 0: the frame is a response to the request with the same correlation id.
pub const FLAG_RESPONSE: u16 = 1 << 0;
/// Frame flag bit 1: the body is an [`crate::ErrorBody`] instead of the api's response.
pub const FLAG_ERROR: u16 = 1 << 1;
/// Frame flag bit 2: the frame was pushed by the broker (subscription data), not requested.
pub const FLAG_PUSH: u16 = 1 << 2;
/// Flag bits this version understands; the others must be zero.
pub const FLAG_KNOWN_MASK: u16 = FLAG_RESPONSE | FLAG_ERROR | FLAG_PUSH;

const _: () = assert!(FRAME_HEADER_BYTES % BODY_ALIGN == 0);
const _: () = assert!(BATCH_HEADER_BYTES % BODY_ALIGN == 0);
const _: () = assert!(BATCH_BYTES_MAX as usize % BODY_ALIGN == 0);
const _: () = assert!(BATCH_CRC_START < BATCH_HEADER_BYTES);
const _: () = assert!(FRAME_BODY_BYTES_MAX_DEFAULT <= FRAME_BODY_BYTES_LIMIT);
const _: () = assert!(FRAME_BODY_BYTES_LIMIT as usize % BODY_ALIGN == 0);
// A produce request must be able to carry at least one maximum-size batch.
const _: () = assert!(BATCH_BYTES_MAX < FRAME_BODY_BYTES_MAX_DEFAULT);
const _: () = assert!(BODY_ALIGN.is_power_of_two());

/// Rounds `n` up to the next multiple of [`BODY_ALIGN`].
#[inline]
pub const fn align_up(n: usize) -> usize {
    (n + (BODY_ALIGN - 1)) & !(BODY_ALIGN - 1)
}
