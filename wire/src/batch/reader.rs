//! Zero-copy batch validation and record iteration.
//!
//! [`BatchView::validate`] checks everything about a batch that came from outside the process
//! (its envelope — length relations, version, reserved bytes, CRC32C, record count — then the
//! rkyv archive via bytecheck, dense offset deltas, timestamps) and never reads out of bounds, panics or allocates
//! on the success path. Records are then read in place: keys, values and headers borrow from
//! the batch bytes.

use rkyv::rancor;
use rkyv::vec::ArchivedVec;

use super::envelope::{BatchEnvelope, Envelopes};
use super::header::BatchHeader;
use super::record::{ArchivedHeader, ArchivedRecord};
use crate::constants::{
    ATTR_COMPACTED, ATTR_NULL_HEADER_VALUES, BATCH_HEADER_BYTES, NULL_MAP_HEADER_KEY,
};
use crate::error::BatchError;

/// A validated batch.
#[derive(Clone, Copy)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
    records: &'a ArchivedVec<ArchivedRecord>,
}

impl std::fmt::Debug for BatchView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = self.header();
        f.debug_struct("BatchView")
            .field("base_offset", &h.base_offset())
            .field("record_count", &h.record_count())
            .field("batch_len", &h.batch_len())
            .finish()
    }
}

impl<'a> BatchView<'a> {
    /// Validates the batch at the front of `bytes` (which may hold more after it) and returns
    /// a view of exactly `batch_len` bytes: its envelope ([`BatchEnvelope::validate`]) and its
    /// records. A compressed batch is refused with [`BatchError::Compressed`]; read it through
    /// [`BatchEnvelope::open`].
    pub fn validate(bytes: &'a [u8]) -> Result<Self, BatchError> {
        let envelope = BatchEnvelope::validate(bytes)?;
        if envelope.is_compressed() {
            return Err(BatchError::Compressed { codec: envelope.compression().bits() });
        }
        Self::check_records(envelope.bytes(), envelope.header())
    }

    /// Checks the records of a batch whose envelope is valid and which is not compressed.
    pub(crate) fn check_records(
        bytes: &'a [u8],
        header: BatchHeader<'a>,
    ) -> Result<Self, BatchError> {
        let inconsistent = |what| Err(BatchError::Inconsistent { what });
        let records_end = BATCH_HEADER_BYTES + header.records_len() as usize;
        let count = header.record_count();
        let records = rkyv::access::<ArchivedVec<ArchivedRecord>, rancor::Error>(
            &bytes[BATCH_HEADER_BYTES..records_end],
        )
        .map_err(|e| BatchError::Records { reason: e.to_string() })?;
        if records.len() != count as usize {
            return inconsistent("record_count differs from the records archive");
        }
        let first = header.first_timestamp_ms();
        let compacted = header.attributes() & ATTR_COMPACTED != 0;
        let null_maps = header.attributes() & ATTR_NULL_HEADER_VALUES != 0;
        let mut max_ts = i64::MIN;
        let mut previous: Option<u32> = None;
        for (i, r) in records.iter().enumerate() {
            let delta = r.offset_delta.to_native();
            if compacted {
                // Increasing with gaps, within the batch's offset span.
                if previous.is_some_and(|p| delta <= p) || delta > header.last_offset_delta() {
                    return inconsistent("compacted offset deltas do not increase within the span");
                }
                previous = Some(delta);
            } else if delta as usize != i {
                return inconsistent("offset deltas are not 0, 1, 2, ...");
            }
            max_ts = max_ts.max(first.saturating_add(i64::from(r.timestamp_delta_ms.to_native())));
            if null_maps {
                check_null_map(r)?;
            }
        }
        if records.is_empty() && compacted {
            return Ok(BatchView { bytes, records });
        }
        if records.first().map(|r| r.timestamp_delta_ms.to_native()) != Some(0) {
            return inconsistent("first record's timestamp delta is not 0");
        }
        // A compacted batch keeps the removed records' largest timestamp (the time index and
        // retention saw it).
        let max_ok = if compacted {
            max_ts <= header.max_timestamp_ms()
        } else {
            max_ts == header.max_timestamp_ms()
        };
        if !max_ok {
            return inconsistent("max_timestamp_ms differs from the records");
        }
        Ok(BatchView { bytes, records })
    }

    /// The batch's header.
    pub fn header(&self) -> BatchHeader<'a> {
        BatchHeader::new(self.bytes).expect("validated batch has a header")
    }

    /// The batch's bytes, exactly `batch_len` long.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch holds no record (only a compacted batch can: see
    /// [`crate::constants::ATTR_COMPACTED`]).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records, in offset order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = RecordView<'a>> + 'a {
        let header = self.header();
        let base_offset = header.base_offset();
        let first_timestamp_ms = header.first_timestamp_ms();
        let null_maps = header.attributes() & ATTR_NULL_HEADER_VALUES != 0;
        self.records.iter().map(move |record| RecordView {
            base_offset,
            first_timestamp_ms,
            null_maps,
            record,
        })
    }
}

/// Checks a record's null map (a batch with [`ATTR_NULL_HEADER_VALUES`]): it is there, last,
/// no longer than its headers need, marks no header past the last, and every header it marks
/// null is stored empty.
fn check_null_map(record: &ArchivedRecord) -> Result<(), BatchError> {
    let inconsistent = |what| Err(BatchError::Inconsistent { what });
    let Some((map, headers)) = record.headers.as_slice().split_last() else {
        return inconsistent("a record of a batch with null header values has no null map");
    };
    if map.key.as_str() != NULL_MAP_HEADER_KEY {
        return inconsistent("a null map's key is not empty");
    }
    let map = map.value.as_slice();
    if map.len() > headers.len().div_ceil(8) {
        return inconsistent("a null map is longer than its headers need");
    }
    for (i, &byte) in map.iter().enumerate() {
        for bit in (0..8).filter(|bit| byte & (1 << bit) != 0) {
            match headers.get(i * 8 + bit) {
                None => return inconsistent("a null map marks a header past the last"),
                Some(h) if !h.value.is_empty() => {
                    return inconsistent("a header marked null has a value")
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// One record, borrowed from its batch.
#[derive(Clone, Copy)]
pub struct RecordView<'a> {
    base_offset: u64,
    first_timestamp_ms: i64,
    /// The record's headers end with a null map ([`ATTR_NULL_HEADER_VALUES`]).
    null_maps: bool,
    record: &'a ArchivedRecord,
}

impl std::fmt::Debug for RecordView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordView")
            .field("offset", &self.offset())
            .field("timestamp_ms", &self.timestamp_ms())
            .field("key", &self.key())
            .field("value_len", &self.value().map(<[u8]>::len))
            .finish()
    }
}

impl<'a> RecordView<'a> {
    /// Absolute offset (base offset + delta).
    #[inline]
    pub fn offset(&self) -> u64 {
        self.base_offset + u64::from(self.record.offset_delta.to_native())
    }

    /// Producer timestamp in ms.
    #[inline]
    pub fn timestamp_ms(&self) -> i64 {
        self.first_timestamp_ms + i64::from(self.record.timestamp_delta_ms.to_native())
    }

    /// The key, if any.
    #[inline]
    pub fn key(&self) -> Option<&'a [u8]> {
        self.record.key.as_ref().map(|k| k.as_slice())
    }

    /// The value; `None` is a tombstone.
    #[inline]
    pub fn value(&self) -> Option<&'a [u8]> {
        self.record.value.as_ref().map(|v| v.as_slice())
    }

    /// The headers, in order; keys may repeat. A batch's null maps
    /// ([`ATTR_NULL_HEADER_VALUES`]) are not among them: they tell which are null.
    #[inline]
    pub fn headers(&self) -> impl ExactSizeIterator<Item = HeaderView<'a>> + Clone + 'a {
        let all = self.record.headers.as_slice();
        let (headers, null_map): (&[ArchivedHeader], &[u8]) = match all.split_last() {
            Some((map, headers)) if self.null_maps => (headers, map.value.as_slice()),
            _ => (all, &[]),
        };
        headers.iter().enumerate().map(move |(i, header)| HeaderView {
            header,
            null: null_map.get(i / 8).is_some_and(|byte| byte & (1 << (i % 8)) != 0),
        })
    }
}

/// One record header, borrowed from its batch.
#[derive(Debug, Clone, Copy)]
pub struct HeaderView<'a> {
    header: &'a ArchivedHeader,
    null: bool,
}

impl<'a> HeaderView<'a> {
    /// The header's key.
    #[inline]
    pub fn key(&self) -> &'a str {
        self.header.key.as_str()
    }

    /// The header's value; empty for a null one (see [`HeaderView::nullable_value`]).
    #[inline]
    pub fn value(&self) -> &'a [u8] {
        self.header.value.as_slice()
    }

    /// The header's value, `None` when it is null (a Kafka producer's null header value).
    #[inline]
    pub fn nullable_value(&self) -> Option<&'a [u8]> {
        (!self.null).then(|| self.header.value.as_slice())
    }

    /// Whether the value is null (stored empty; [`ATTR_NULL_HEADER_VALUES`]).
    #[inline]
    pub fn is_null(&self) -> bool {
        self.null
    }
}

/// Iterates and validates batches stored back to back (a fetch response, a segment read):
/// each one's envelope ([`Envelopes`]), then its records ([`BatchView::validate`]; a
/// compressed batch is an error here, see [`crate::batch::decompressed`]).
///
/// Stops after the first error; a trailing partial batch is reported as `Truncated`.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    envelopes: Envelopes<'a>,
    failed: bool,
}

impl<'a> Batches<'a> {
    /// Batches in `bytes`, which must start 16-byte aligned.
    pub fn new(bytes: &'a [u8]) -> Self {
        Batches { envelopes: Envelopes::new(bytes), failed: false }
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<BatchView<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let checked = self.envelopes.next()?.and_then(|envelope| {
            if envelope.is_compressed() {
                return Err(BatchError::Compressed { codec: envelope.compression().bits() });
            }
            BatchView::check_records(envelope.bytes(), envelope.header())
        });
        self.failed = checked.is_err();
        Some(checked)
    }
}
