//! A timestamp lookup on behalf of a client's request, within its response's room: what the
//! lookup reads and opens (`PartitionLog::offset_for_timestamp_within`) is taken from the
//! room before it reads and given back after, so pipelined lookups over large batches wait
//! for the connection's budget instead of reading all at once.

use wire::ErrorCode;

use crate::budget::EntryRoom;
use crate::storage::{DmaDisk, PartitionLog, StorageError, TimestampLookup};

/// Why a lookup found nothing.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// Reading failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The room was lent by the shard that forwarded the request and is too small for it.
    #[error("the room lent for the answer is too small")]
    Short,
}

impl LookupError {
    /// The wire error code (`ROOM_SHORT` for a lent room too small: the lender asks again
    /// with more).
    pub fn code(&self) -> ErrorCode {
        match self {
            LookupError::Storage(e) => e.code(),
            LookupError::Short => ErrorCode::RoomShort,
        }
    }
}

/// What a lookup may read at first (twice over: batches read and records opened): the
/// default read-ahead window. A larger batch on the way asks for its own size.
const FIRST_BYTES_MAX: usize = 256 << 10;

/// The room a lookup's first try takes.
pub const LOOKUP_FIRST_BYTES: usize = 2 * FIRST_BYTES_MAX;

/// The first offset whose record has a timestamp at or after `timestamp_ms`, with that
/// timestamp; `None` if every stored record is older. Takes room in `room` for twice what
/// the lookup may hold before each attempt (waiting for it holding nothing it read), and
/// gives it back after; [`LookupError::Short`] if the room was lent and is too small.
pub async fn offset_for_timestamp(
    log: &PartitionLog<DmaDisk>,
    timestamp_ms: i64,
    room: &mut EntryRoom<'_>,
) -> Result<Option<(u64, i64)>, LookupError> {
    let mut bytes_max = FIRST_BYTES_MAX;
    loop {
        let need_bytes = 2 * bytes_max; // LOOKUP_FIRST_BYTES at first
        if !room.admit(need_bytes) {
            if !room.wait(need_bytes).await {
                return Err(LookupError::Short);
            }
            let granted = room.admit(need_bytes);
            debug_assert!(granted, "the wait granted it");
        }
        let found = log.offset_for_timestamp_within(timestamp_ms, bytes_max).await;
        room.give_back(need_bytes);
        match found? {
            TimestampLookup::Found(offset, ts) => return Ok(Some((offset, ts))),
            TimestampLookup::Older => return Ok(None),
            TimestampLookup::NeedsBytes(bytes) => {
                // The log asks for more only when a batch needs more than it was given.
                debug_assert!(bytes > bytes_max, "asked again for {bytes} of {bytes_max}");
                bytes_max = bytes.max(bytes_max + 1);
            }
        }
    }
}
