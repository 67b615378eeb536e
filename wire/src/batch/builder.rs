//! Producer-side batch builder.
//!
//! Records are copied once into a reusable byte arena; `finish` serializes them straight from
//! the arena into the output buffer (rkyv, no per-record allocation), fills the header and
//! computes the CRC32C. After `finish` the builder is empty and keeps its capacity, so a
//! producer reuses one builder per partition forever.
//!
//! ```
//! use wire::BatchBuilder;
//! let mut builder = BatchBuilder::new(1 << 20);
//! builder.append(1_700_000_000_000, Some(b"user-42"), Some(b"logged in"), &[("trace", b"abc")]).unwrap();
//! builder.append(1_700_000_000_005, Some(b"user-42"), None, &[]).unwrap(); // tombstone
//! let batch = builder.finish().unwrap();
//! let view = wire::BatchView::validate(&batch).unwrap();
//! assert_eq!(view.records().count(), 2);
//! ```

use std::ops::Range;

use rkyv::rancor;
use rkyv::ser::allocator::Arena;
use rkyv::util::AlignedVec;

use super::header::*;
use super::record::{HeaderSpan, RecordList, RecordSpan, Span};
use crate::constants::{
    align_up, ATTR_COMPACTED, ATTR_NULL_HEADER_VALUES, BATCH_BYTES_MAX, BATCH_FORMAT_VERSION,
    BATCH_HEADER_BYTES, BATCH_RECORDS_MAX, BODY_ALIGN, HEADER_KEY_BYTES_MAX, NO_TIMESTAMP,
};
use crate::error::BuildError;

/// Archived bytes of one record besides its key and value (see `ArchivedRecord`), plus
/// worst-case alignment padding.
const RECORD_OVERHEAD_BYTES: usize = 40 + 8;
/// Archived bytes of one header besides its key and value, plus worst-case padding.
const HEADER_OVERHEAD_BYTES: usize = 16 + 4;
/// Header, the archive root and final padding.
const BATCH_OVERHEAD_BYTES: usize = BATCH_HEADER_BYTES + 8 + 2 * BODY_ALIGN;

/// What a compacted batch keeps of the batch it was cut from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CompactedSpan {
    pub(crate) last_offset_delta: u32,
    pub(crate) max_timestamp_ms: i64,
}

/// Builds one record batch at a time; see the module docs.
pub struct BatchBuilder {
    arena: Vec<u8>,
    records: Vec<RecordSpan>,
    headers: Vec<HeaderSpan>,
    first_timestamp_ms: i64,
    max_timestamp_ms: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    attributes: u16,
    /// Some record has a null header value: every record gets a null map
    /// ([`ATTR_NULL_HEADER_VALUES`]).
    null_header_values: bool,
    batch_bytes_max: usize,
    estimated_bytes: usize,
    scratch: Arena,
}

impl std::fmt::Debug for BatchBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchBuilder")
            .field("records", &self.records.len())
            .field("estimated_bytes", &self.estimated_bytes)
            .field("batch_bytes_max", &self.batch_bytes_max)
            .finish()
    }
}

impl BatchBuilder {
    /// A builder whose batches stay within `batch_bytes_max` (capped at [`BATCH_BYTES_MAX`]).
    pub fn new(batch_bytes_max: usize) -> Self {
        BatchBuilder {
            arena: Vec::new(),
            records: Vec::new(),
            headers: Vec::new(),
            first_timestamp_ms: NO_TIMESTAMP,
            max_timestamp_ms: NO_TIMESTAMP,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            attributes: 0,
            null_header_values: false,
            batch_bytes_max: batch_bytes_max.min(BATCH_BYTES_MAX as usize),
            estimated_bytes: BATCH_OVERHEAD_BYTES,
            scratch: Arena::new(),
        }
    }

    /// Sets the idempotent-producer fields of the next batch.
    pub fn set_producer(&mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
    }

    /// Records appended since the last `finish`.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record was appended since the last `finish`.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// An upper bound on the size of the batch `finish` would produce now.
    pub fn estimated_bytes(&self) -> usize {
        self.estimated_bytes
    }

    /// Appends a record. `value: None` is a tombstone; `key: None` differs from an empty key.
    ///
    /// Fails with [`BuildError::Full`] when the record would push a non-empty batch over its
    /// byte budget (finish it and retry on a fresh batch), and with
    /// [`BuildError::RecordTooLarge`] when the record alone exceeds the budget.
    pub fn append(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> Result<(), BuildError> {
        self.append_with(timestamp_ms, key, value, headers.iter().map(|&(k, v)| (k, Some(v))))
    }

    /// [`BatchBuilder::append`] with header values that may be null (`None`, as Kafka's may
    /// be), kept distinct from empty ones: see [`ATTR_NULL_HEADER_VALUES`].
    pub fn append_nullable(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> Result<(), BuildError> {
        self.append_with(timestamp_ms, key, value, headers.iter().copied())
    }

    fn append_with<'h>(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl ExactSizeIterator<Item = (&'h str, Option<&'h [u8]>)> + Clone,
    ) -> Result<(), BuildError> {
        if self.records.len() >= BATCH_RECORDS_MAX as usize {
            return Err(BuildError::TooManyRecords { records_max: BATCH_RECORDS_MAX });
        }
        let mut record_bytes =
            RECORD_OVERHEAD_BYTES + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len);
        let mut nulls = false;
        for (k, v) in headers.clone() {
            if k.len() > HEADER_KEY_BYTES_MAX {
                return Err(BuildError::HeaderKeyTooLong { key_bytes: k.len() });
            }
            record_bytes += HEADER_OVERHEAD_BYTES + k.len() + v.map_or(0, <[u8]>::len);
            nulls |= v.is_none();
        }
        let null_map_bytes = if nulls { headers.len().div_ceil(8) } else { 0 };
        if self.null_header_values || nulls {
            record_bytes += HEADER_OVERHEAD_BYTES + null_map_bytes;
        }
        let mut batch_bytes = self.estimated_bytes.saturating_add(record_bytes);
        if nulls && !self.null_header_values {
            // The records before this one get an (empty) null map too.
            batch_bytes = batch_bytes.saturating_add(self.records.len() * HEADER_OVERHEAD_BYTES);
        }
        if batch_bytes > self.batch_bytes_max {
            return Err(if self.records.is_empty() {
                BuildError::RecordTooLarge { record_bytes, batch_bytes_max: self.batch_bytes_max }
            } else {
                BuildError::Full { batch_bytes, batch_bytes_max: self.batch_bytes_max }
            });
        }
        let first_timestamp_ms =
            if self.records.is_empty() { timestamp_ms } else { self.first_timestamp_ms };
        let timestamp_delta_ms = timestamp_ms
            .checked_sub(first_timestamp_ms)
            .and_then(|d| i32::try_from(d).ok())
            .ok_or(BuildError::TimestampOutOfRange { timestamp_ms, first_timestamp_ms })?;

        // Nothing can fail from here on.
        if self.records.is_empty() {
            self.first_timestamp_ms = timestamp_ms;
            self.max_timestamp_ms = timestamp_ms;
        }
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp_ms);
        let key = key.map(|k| self.push_bytes(k));
        let value = value.map(|v| self.push_bytes(v));
        let headers_start = self.headers.len() as u32;
        let headers_len = headers.len() as u32;
        let mut null_map = Span { start: self.arena.len() as u32, len: 0 };
        if nulls {
            // Bit i % 8 of byte i / 8: header i is null.
            let start = self.arena.len();
            self.arena.resize(start + null_map_bytes, 0);
            for (i, (_, v)) in headers.clone().enumerate() {
                if v.is_none() {
                    self.arena[start + i / 8] |= 1 << (i % 8);
                }
            }
            null_map.len = null_map_bytes as u32;
            self.null_header_values = true;
        }
        for (k, v) in headers {
            let key = self.push_bytes(k.as_bytes());
            let value = self.push_bytes(v.unwrap_or_default());
            self.headers.push(HeaderSpan { key, value });
        }
        self.records.push(RecordSpan {
            offset_delta: self.records.len() as u32,
            timestamp_delta_ms,
            key,
            value,
            headers_start,
            headers_len,
            null_map,
        });
        self.estimated_bytes = batch_bytes;
        Ok(())
    }

    fn push_bytes(&mut self, bytes: &[u8]) -> Span {
        // The arena never outgrows `batch_bytes_max` <= 16 MiB, so u32 spans suffice.
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        Span { start: start as u32, len: bytes.len() as u32 }
    }

    /// Serializes the batch onto the end of `out` (whose length must be a multiple of 16) and
    /// returns where it landed. The builder is left empty, keeping its capacity.
    pub fn finish_into(&mut self, out: &mut AlignedVec) -> Result<Range<usize>, BuildError> {
        self.finish_with(out, None)
    }

    /// Gives the record appended last the offset delta `offset_delta` (compaction keeps a
    /// record's offset; see [`crate::batch::compact`]).
    pub(crate) fn set_last_offset_delta(&mut self, offset_delta: u32) {
        if let Some(r) = self.records.last_mut() {
            r.offset_delta = offset_delta;
        }
    }

    /// [`BatchBuilder::finish_into`] for a compacted batch: [`ATTR_COMPACTED`] set, the
    /// offset span and largest timestamp of the original batch kept, no record required.
    pub(crate) fn finish_compacted_into(
        &mut self,
        out: &mut AlignedVec,
        span: CompactedSpan,
    ) -> Result<Range<usize>, BuildError> {
        self.finish_with(out, Some(span))
    }

    fn finish_with(
        &mut self,
        out: &mut AlignedVec,
        compacted: Option<CompactedSpan>,
    ) -> Result<Range<usize>, BuildError> {
        assert!(out.len() % BODY_ALIGN == 0, "finish_into at unaligned length {}", out.len());
        if self.records.is_empty() && compacted.is_none() {
            return Err(BuildError::Empty);
        }
        let (attributes, last_offset_delta) = match compacted {
            Some(span) => {
                if self.records.is_empty() {
                    self.first_timestamp_ms = span.max_timestamp_ms;
                }
                self.max_timestamp_ms = span.max_timestamp_ms;
                (self.attributes | ATTR_COMPACTED, span.last_offset_delta)
            }
            None => (self.attributes, self.records.len() as u32 - 1),
        };
        let attributes =
            if self.null_header_values { attributes | ATTR_NULL_HEADER_VALUES } else { attributes };
        let start = out.len();
        out.reserve(self.estimated_bytes);
        out.resize(start + BATCH_HEADER_BYTES, 0);
        let list = RecordList {
            arena: &self.arena,
            records: &self.records,
            headers: &self.headers,
            null_maps: self.null_header_values,
        };
        let serialized = rkyv::api::high::to_bytes_in_with_alloc::<_, _, rancor::Error>(
            &list,
            &mut *out,
            self.scratch.acquire(),
        );
        if let Err(e) = serialized {
            out.resize(start, 0);
            return Err(BuildError::Serialize { reason: e.to_string() });
        }
        let records_len = out.len() - start - BATCH_HEADER_BYTES;
        let end = start + align_up(out.len() - start);
        out.resize(end, 0);
        let batch_len = end - start;
        assert!(
            batch_len <= self.estimated_bytes,
            "batch of {batch_len} bytes exceeds its estimate {}",
            self.estimated_bytes
        );

        let b = &mut out[start..end];
        let put = |b: &mut [u8], off: usize, bytes: &[u8]| {
            b[off..off + bytes.len()].copy_from_slice(bytes)
        };
        put(b, OFF_BATCH_LEN, &(batch_len as u32).to_le_bytes());
        put(b, OFF_BASE_OFFSET, &0u64.to_le_bytes());
        put(b, OFF_LOG_APPEND_TIME, &NO_TIMESTAMP.to_le_bytes());
        b[OFF_VERSION] = BATCH_FORMAT_VERSION;
        put(b, OFF_ATTRIBUTES, &attributes.to_le_bytes());
        put(b, OFF_LAST_OFFSET_DELTA, &last_offset_delta.to_le_bytes());
        put(b, OFF_FIRST_TIMESTAMP, &self.first_timestamp_ms.to_le_bytes());
        put(b, OFF_MAX_TIMESTAMP, &self.max_timestamp_ms.to_le_bytes());
        put(b, OFF_PRODUCER_ID, &self.producer_id.to_le_bytes());
        put(b, OFF_PRODUCER_EPOCH, &self.producer_epoch.to_le_bytes());
        put(b, OFF_BASE_SEQUENCE, &self.base_sequence.to_le_bytes());
        put(b, OFF_RECORD_COUNT, &(self.records.len() as u32).to_le_bytes());
        put(b, OFF_RECORDS_LEN, &(records_len as u32).to_le_bytes());
        let crc = crc32c::crc32c(&b[OFF_VERSION..]);
        put(b, OFF_CRC, &crc.to_le_bytes());

        self.clear();
        Ok(start..end)
    }

    /// Serializes the batch into a fresh buffer; see [`BatchBuilder::finish_into`].
    pub fn finish(&mut self) -> Result<AlignedVec, BuildError> {
        let mut out = AlignedVec::with_capacity(self.estimated_bytes);
        self.finish_into(&mut out)?;
        Ok(out)
    }

    /// Drops the records appended so far, keeping capacity.
    pub fn clear(&mut self) {
        self.arena.clear();
        self.records.clear();
        self.headers.clear();
        self.first_timestamp_ms = NO_TIMESTAMP;
        self.max_timestamp_ms = NO_TIMESTAMP;
        self.producer_id = -1;
        self.producer_epoch = -1;
        self.base_sequence = -1;
        self.null_header_values = false;
        self.estimated_bytes = BATCH_OVERHEAD_BYTES;
    }
}
