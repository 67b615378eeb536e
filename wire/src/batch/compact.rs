//! Log compaction's rewrite of one stored batch: the records a cleaner keeps, in a batch that
//! keeps the original's offset span.
//!
//! A compacted batch ([`ATTR_COMPACTED`](crate::constants::ATTR_COMPACTED)) has the same base
//! offset, `last_offset_delta`, producer fields, log-append time and largest timestamp as the
//! batch it was cut from, so batches stay back to back in a segment (no offset gap between
//! them, which the log's recovery and readers rely on) and a consumer's next offset is the
//! same `next_offset()` as before. Only its records differ: a subset, each with its original
//! offset delta. A batch whose records were all removed becomes an empty compacted batch
//! ([`empty_into`]); a run of those can be covered by one ([`empty_into`] over the run's span).
//! The codec of the original is kept.

use std::ops::Range;

use rkyv::util::AlignedVec;

use super::builder::{BatchBuilder, CompactedSpan};
use super::envelope::BatchEnvelope;
use super::header::assign;
use super::reader::RecordView;
use crate::constants::BATCH_BYTES_MAX;
use crate::error::{BatchError, BuildError};

/// What [`retain_into`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retained {
    /// Every record is kept: store the original bytes unchanged.
    All,
    /// The rewritten batch (possibly with no record) landed at this range of `out`, with
    /// how many records it keeps.
    Rewritten {
        /// Where in `out`.
        range: Range<usize>,
        /// Records kept.
        records: u32,
    },
}

/// Why a batch could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// The stored batch is not valid.
    #[error("stored batch: {0}")]
    Batch(#[from] BatchError),
    /// The kept records do not fit a batch (cannot happen for a valid original).
    #[error("rewritten batch: {0}")]
    Build(#[from] BuildError),
}

/// Appends to `out` (length a multiple of 16) the batch `envelope` with only the records
/// `keep` accepts, or answers [`Retained::All`] when it accepts every one. `scratch` holds a
/// compressed batch's records while they are read; `builder` is reused between calls.
pub fn retain_into(
    envelope: &BatchEnvelope<'_>,
    scratch: &mut AlignedVec,
    builder: &mut BatchBuilder,
    out: &mut AlignedVec,
    mut keep: impl FnMut(&RecordView<'_>) -> bool,
) -> Result<Retained, CompactError> {
    let view = envelope.open(scratch)?;
    let kept: Vec<bool> = view.records().map(|r| keep(&r)).collect();
    if kept.iter().all(|&k| k) {
        return Ok(Retained::All);
    }
    let h = envelope.header();
    builder.clear();
    builder.set_producer(h.producer_id(), h.producer_epoch(), h.base_sequence());
    let mut headers: Vec<(&str, Option<&[u8]>)> = Vec::new();
    let mut records = 0u32;
    for (record, _) in view.records().zip(&kept).filter(|(_, &k)| k) {
        headers.clear();
        headers.extend(record.headers().map(|h| (h.key(), h.nullable_value())));
        builder.append_nullable(record.timestamp_ms(), record.key(), record.value(), &headers)?;
        builder.set_last_offset_delta((record.offset() - h.base_offset()) as u32);
        records += 1;
    }
    let span = CompactedSpan {
        last_offset_delta: h.last_offset_delta(),
        max_timestamp_ms: h.max_timestamp_ms(),
    };
    let range = finish(builder, out, span, h.base_offset(), h.log_append_time_ms(), envelope)?;
    Ok(Retained::Rewritten { range, records })
}

/// Appends to `out` (length a multiple of 16) an empty compacted batch covering offsets
/// `[base_offset, next_offset)` (at most 2^32 of them), with `max_timestamp_ms` and
/// `log_append_time_ms` of the records it replaces.
pub fn empty_into(
    builder: &mut BatchBuilder,
    out: &mut AlignedVec,
    base_offset: u64,
    next_offset: u64,
    max_timestamp_ms: i64,
    log_append_time_ms: i64,
) -> Result<Range<usize>, BuildError> {
    assert!(
        next_offset > base_offset && next_offset - base_offset <= 1 << 32,
        "empty batch over [{base_offset}, {next_offset})"
    );
    builder.clear();
    let span = CompactedSpan {
        last_offset_delta: (next_offset - base_offset - 1) as u32,
        max_timestamp_ms,
    };
    let range = builder.finish_compacted_into(out, span)?;
    assign(&mut out[range.clone()], base_offset, log_append_time_ms);
    Ok(range)
}

fn finish(
    builder: &mut BatchBuilder,
    out: &mut AlignedVec,
    span: CompactedSpan,
    base_offset: u64,
    log_append_time_ms: i64,
    original: &BatchEnvelope<'_>,
) -> Result<Range<usize>, CompactError> {
    let range = builder.finish_compacted_into(out, span)?;
    assign(&mut out[range.clone()], base_offset, log_append_time_ms);
    if !original.is_compressed() {
        return Ok(range);
    }
    // Keep the producer's codec: compress the rewritten batch in place of the plain one.
    let mut compressed = AlignedVec::new();
    let shrunk = BatchEnvelope::validate(&out[range.clone()])?
        .compress_into(original.compression(), &mut compressed);
    match shrunk {
        Some(c) => {
            out.resize(range.start, 0);
            out.extend_from_slice(&compressed[c]);
            debug_assert!(out.len() - range.start <= BATCH_BYTES_MAX as usize);
            Ok(range.start..out.len())
        }
        None => Ok(range), // it no longer shrinks: store it plain
    }
}
