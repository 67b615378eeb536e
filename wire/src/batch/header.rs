//! Fixed-offset accessors for the 80-byte batch header (layout in [`crate::batch`]).
//!
//! Reading a field never validates the batch; call [`crate::BatchView::validate`] first for
//! untrusted bytes. Writing is limited to the broker-assigned fields outside the CRC.

use crate::constants::{BATCH_CRC_START, BATCH_HEADER_BYTES};

pub(crate) const OFF_BATCH_LEN: usize = 0;
pub(crate) const OFF_CRC: usize = 4;
pub(crate) const OFF_BASE_OFFSET: usize = 8;
pub(crate) const OFF_LOG_APPEND_TIME: usize = 16;
pub(crate) const OFF_VERSION: usize = 24;
pub(crate) const OFF_RESERVED_A: usize = 25;
pub(crate) const OFF_ATTRIBUTES: usize = 26;
pub(crate) const OFF_LAST_OFFSET_DELTA: usize = 28;
pub(crate) const OFF_FIRST_TIMESTAMP: usize = 32;
pub(crate) const OFF_MAX_TIMESTAMP: usize = 40;
pub(crate) const OFF_PRODUCER_ID: usize = 48;
pub(crate) const OFF_PRODUCER_EPOCH: usize = 56;
pub(crate) const OFF_RESERVED_B: usize = 58;
pub(crate) const OFF_BASE_SEQUENCE: usize = 60;
pub(crate) const OFF_RECORD_COUNT: usize = 64;
pub(crate) const OFF_RECORDS_LEN: usize = 68;
pub(crate) const OFF_UNCOMPRESSED_LEN: usize = 72;
pub(crate) const OFF_RESERVED_C: usize = 76;

const _: () = assert!(OFF_VERSION == BATCH_CRC_START);
const _: () = assert!(OFF_RESERVED_C + 4 == BATCH_HEADER_BYTES);

/// A read-only view of a batch header.
#[derive(Debug, Clone, Copy)]
pub struct BatchHeader<'a> {
    bytes: &'a [u8; BATCH_HEADER_BYTES],
}

macro_rules! field {
    ($(#[$m:meta])* $name:ident, $ty:ty, $off:expr) => {
        $(#[$m])*
        #[inline]
        pub fn $name(&self) -> $ty {
            const N: usize = std::mem::size_of::<$ty>();
            <$ty>::from_le_bytes(self.bytes[$off..$off + N].try_into().expect("fixed width"))
        }
    };
}

impl<'a> BatchHeader<'a> {
    /// The header at the front of `bytes`, or `None` if fewer than 80 bytes.
    #[inline]
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        bytes.first_chunk::<BATCH_HEADER_BYTES>().map(|bytes| BatchHeader { bytes })
    }

    field!(/// Total bytes of the batch: header, records archive, padding.
        batch_len, u32, OFF_BATCH_LEN);
    field!(/// CRC32C of bytes `[24, batch_len)`.
        crc, u32, OFF_CRC);
    field!(/// Offset of the first record; assigned by the broker.
        base_offset, u64, OFF_BASE_OFFSET);
    field!(/// Broker time at append, or -1 before the broker assigned it.
        log_append_time_ms, i64, OFF_LOG_APPEND_TIME);
    field!(/// Format version (1).
        version, u8, OFF_VERSION);
    field!(/// Attribute bits.
        attributes, u16, OFF_ATTRIBUTES);
    field!(/// `record_count - 1`: the last record's offset is `base_offset + last_offset_delta`.
        last_offset_delta, u32, OFF_LAST_OFFSET_DELTA);
    field!(/// Timestamp of the first record; record timestamps are deltas from it.
        first_timestamp_ms, i64, OFF_FIRST_TIMESTAMP);
    field!(/// Largest record timestamp in the batch.
        max_timestamp_ms, i64, OFF_MAX_TIMESTAMP);
    field!(/// Idempotent producer id, or -1.
        producer_id, i64, OFF_PRODUCER_ID);
    field!(/// Producer epoch, or -1.
        producer_epoch, i16, OFF_PRODUCER_EPOCH);
    field!(/// Sequence number of the first record, or -1.
        base_sequence, i32, OFF_BASE_SEQUENCE);
    field!(/// Number of records.
        record_count, u32, OFF_RECORD_COUNT);
    field!(/// Bytes of the rkyv records archive.
        records_len, u32, OFF_RECORDS_LEN);
    field!(/// Bytes of the records archive before compression; 0 for an uncompressed batch.
        uncompressed_len, u32, OFF_UNCOMPRESSED_LEN);

    /// Offset of the last record.
    #[inline]
    pub fn last_offset(&self) -> u64 {
        self.base_offset() + u64::from(self.last_offset_delta())
    }

    /// Offset one past the last record.
    #[inline]
    pub fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }

    pub(crate) fn reserved_is_zero(&self) -> bool {
        self.bytes[OFF_RESERVED_A] == 0
            && self.bytes[OFF_RESERVED_B..OFF_RESERVED_B + 2] == [0, 0]
            && self.bytes[OFF_RESERVED_C..OFF_RESERVED_C + 4] == [0; 4]
    }
}

/// Assigns the broker-owned fields in place: the base offset and the log-append time.
///
/// Both lie before the CRC-covered range, so the CRC stays valid and is not recomputed.
/// `batch` must be at least a header long (it is, once validated).
#[inline]
pub fn assign(batch: &mut [u8], base_offset: u64, log_append_time_ms: i64) {
    assert!(batch.len() >= BATCH_HEADER_BYTES, "assign on {} bytes, not a batch", batch.len());
    batch[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_le_bytes());
    batch[OFF_LOG_APPEND_TIME..OFF_LOG_APPEND_TIME + 8]
        .copy_from_slice(&log_append_time_ms.to_le_bytes());
}

/// The announced length of the batch at the front of `bytes`, if a length field is present.
/// Storage recovery uses this to step from batch to batch before validating each.
#[inline]
pub fn peek_batch_len(bytes: &[u8]) -> Option<u32> {
    bytes.first_chunk::<4>().map(|b| u32::from_le_bytes(*b))
}

/// The CRC32C a batch's header must carry: over bytes `[24, batch.len())`.
#[inline]
pub fn covered_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[BATCH_CRC_START.min(batch.len())..])
}

/// Headers of batches stored back to back that were validated before (read back from the
/// broker's own log or cache): steps by `batch_len` without re-checking CRCs. Stops at the
/// first length that does not fit. Untrusted bytes go through [`crate::Batches`] instead.
pub fn trusted_headers(bytes: &[u8]) -> impl Iterator<Item = BatchHeader<'_>> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let header = BatchHeader::new(rest)?;
        let len = header.batch_len() as usize;
        if len < BATCH_HEADER_BYTES || len > rest.len() {
            return None;
        }
        rest = &rest[len..];
        Some(header)
    })
}
