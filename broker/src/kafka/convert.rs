//! Record batches: Kafka's v2 batches (produce requests, fetch responses) <-> native batches.
//!
//! Ingress ([`to_native`]): each Kafka batch's header is checked by the codec crate (CRC-32C,
//! magic 2, attributes; the record count within the native `BATCH_RECORDS_MAX`), its records
//! are decompressed (gzip, snappy, lz4, zstd: the codecs clients use) into at most
//! `UNCOMPRESSED_RECORDS_BYTES_MAX` bytes, parsed by [`super::records`] (not the crate's
//! `Record`, which keeps headers in a map) and rebuilt as native batches with the same
//! producer id, epoch and base sequence, record timestamps, keys (null stays null), values
//! (null = tombstone) and headers in order: repeated keys all kept, a null header value kept
//! null (a native batch with [`wire::constants::ATTR_NULL_HEADER_VALUES`]), distinct from an
//! empty one. A Kafka batch too large for one native batch becomes several, the later ones
//! with the base sequence advanced by the records before them, so idempotence still lines up
//! record for record.
//!
//! Egress ([`to_kafka`]): each stored native batch (decompressed if it is compressed) becomes
//! one uncompressed Kafka batch, written here byte by byte, with the stored offsets,
//! timestamps, producer fields and headers (null ones null). A compacted batch whose last
//! records are gone is followed by an empty batch over them.
//!
//! Kafka features with no native equivalent are refused at ingress: transactional and
//! control batches, legacy message sets (v0/v1).

use std::borrow::Cow;
use std::io::Read;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use wire::batch::compression::UNCOMPRESSED_RECORDS_BYTES_MAX;
use wire::constants::BATCH_RECORDS_MAX;
use wire::{AlignedVec, BatchBuilder, BuildError};

use super::error::KafkaError;
use super::records::{self, Records};

/// A Kafka v2 batch header's size: the records start here.
const BATCH_HEADER_BYTES: usize = 61;
/// Where the header's fields sit (Kafka's `DefaultRecordBatch`).
const OFF_BATCH_LENGTH: usize = 8;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_RECORD_COUNT: usize = 57;
/// `batch_length` counts the bytes after it.
const BATCH_LENGTH_END: usize = OFF_BATCH_LENGTH + 4;

/// What one Kafka records field became.
#[derive(Debug, Default)]
pub struct Converted {
    /// Native batches back to back (16-byte aligned lengths).
    pub batches: AlignedVec,
    /// Records converted.
    pub records: u64,
}

/// Converts the Kafka record batches in `records` (a produce request's partition data) into
/// native batches of at most `batch_bytes_max` bytes each.
pub fn to_native(records: &Bytes, batch_bytes_max: usize) -> Result<Converted, KafkaError> {
    to_native_within(records, batch_bytes_max, usize::MAX, &mut |_| None)
        .map(|c| c.expect("no limit"))
}

/// [`to_native`] within room the caller takes before the batches are built: `bytes` at
/// first; when the native batches would pass what it has, `more(needed)` is asked for room
/// for at least `needed` bytes in all and answers how much it has now, or `None` to stop
/// (`Ok(None)`). Compressed records decompress to many times their size (up to a native
/// batch's records each), so the room grows as they are converted, never restarting.
pub fn to_native_within(
    records: &Bytes,
    batch_bytes_max: usize,
    bytes: usize,
    more: &mut dyn FnMut(usize) -> Option<usize>,
) -> Result<Option<Converted>, KafkaError> {
    let mut bytes_max = bytes;
    // Headers first, without decompressing: the record counts are checked before anything.
    let infos = RecordBatchDecoder::decode_batch_info(&mut records.clone())
        .map_err(|e| KafkaError::Decode(format!("record batch header: {e}")))?;
    for info in &infos {
        if info.version != 2 {
            return Err(KafkaError::Decode(format!(
                "record batch version {}: only v2 batches are accepted",
                info.version
            )));
        }
        if info.record_count < 0 || info.record_count as u32 > BATCH_RECORDS_MAX {
            return Err(KafkaError::Decode(format!(
                "record batch of {} records; at most {BATCH_RECORDS_MAX}",
                info.record_count
            )));
        }
        if info.transactional || info.control {
            return Err(KafkaError::Decode(
                "transactional and control batches are not supported".into(),
            ));
        }
    }
    let decode = |what: String| KafkaError::Decode(what);
    let mut rest: &[u8] = records;
    let mut out = Converted::default();
    let mut builder = BatchBuilder::new(batch_bytes_max);
    for info in &infos {
        // The crate walked these bytes already; slice them again without trusting that.
        let length = rest
            .get(OFF_BATCH_LENGTH..BATCH_LENGTH_END)
            .map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| decode("record batch length".into()))?;
        let (batch, tail) = rest
            .split_at_checked(BATCH_LENGTH_END + length)
            .ok_or_else(|| decode("record batch: truncated".into()))?;
        rest = tail;
        let raw = batch
            .get(BATCH_HEADER_BYTES..)
            .ok_or_else(|| decode("record batch: shorter than its header".into()))?;
        let plain = decompress(raw, info.compression).map_err(|e| match e.downcast_ref() {
            // MESSAGE_TOO_LARGE: a Java producer splits the batch and sends it again.
            Some(InflatesTooFar { .. }) => KafkaError::Native {
                code: wire::ErrorCode::BatchTooLarge,
                message: format!("record batch: {e}"),
            },
            None => decode(format!("record batch: {e}")),
        })?;
        let mut parsed = Records::new(&plain);
        let mut headers = Vec::new();
        let mut sequence = info.base_sequence;
        builder.set_producer(info.producer_id, info.producer_epoch, sequence);
        for _ in 0..info.record_count {
            let record = parsed
                .next_record(&mut headers)
                .map_err(|e| decode(e.to_string()))?
                .ok_or_else(|| {
                    decode(format!("record batch: fewer than its {} records", info.record_count))
                })?;
            let timestamp_ms =
                info.min_timestamp.checked_add(record.timestamp_delta_ms).ok_or_else(|| {
                    decode(format!("record timestamp delta {}", record.timestamp_delta_ms))
                })?;
            let append = |b: &mut BatchBuilder| {
                b.append_nullable(timestamp_ms, record.key, record.value, &headers)
            };
            match append(&mut builder) {
                Ok(()) => {}
                // A record that does not fit the native batch begins the next: a full batch,
                // or a timestamp more than ~24.8 days from the batch's first (a native batch
                // keeps them as 32-bit deltas; a Kafka batch may span years: backfills,
                // replays).
                Err(
                    BuildError::Full { .. }
                    | BuildError::TooManyRecords { .. }
                    | BuildError::TimestampOutOfRange { .. },
                ) if !builder.is_empty() => {
                    let n = builder.len() as u32;
                    finish(&mut builder, &mut out.batches)?;
                    if sequence >= 0 {
                        // Past i32::MAX a producer's sequence goes on at 0, as Kafka's.
                        sequence = wire::batch::sequence_after(sequence, n);
                    }
                    builder.set_producer(info.producer_id, info.producer_epoch, sequence);
                    append(&mut builder).map_err(build_error)?;
                }
                Err(e) => return Err(build_error(e)),
            }
            // Within the room, also after a full builder was finished and the record began
            // the next.
            let needed = out.batches.len() + builder.estimated_bytes();
            if needed > bytes_max {
                match more(needed) {
                    Some(now) => bytes_max = now,
                    None => return Ok(None),
                }
            }
            out.records += 1;
        }
        if parsed.remaining() != 0 {
            return Err(decode(format!(
                "record batch: {} bytes after its {} records",
                parsed.remaining(),
                info.record_count
            )));
        }
        if !builder.is_empty() {
            finish(&mut builder, &mut out.batches)?;
        }
    }
    if !rest.is_empty() {
        // The crate stops at the first batch that is not v2.
        return Err(decode(format!(
            "{} bytes that are not a v2 record batch (legacy message sets are not accepted)",
            rest.len()
        )));
    }
    Ok(Some(out))
}

fn finish(builder: &mut BatchBuilder, out: &mut AlignedVec) -> Result<(), KafkaError> {
    builder.finish_into(out).map(|_| ()).map_err(build_error)
}

fn build_error(e: BuildError) -> KafkaError {
    let code = match e {
        BuildError::RecordTooLarge { .. } | BuildError::Full { .. } => {
            wire::ErrorCode::BatchTooLarge
        }
        _ => wire::ErrorCode::InvalidBatch,
    };
    KafkaError::Native { code, message: e.to_string() }
}

/// Decompresses one Kafka batch's records, refusing more than a native batch can hold (a
/// small compressed batch must not make the broker allocate gigabytes).
fn decompress(data: &[u8], codec: Compression) -> anyhow::Result<Cow<'_, [u8]>> {
    let limit = u64::from(UNCOMPRESSED_RECORDS_BYTES_MAX);
    let mut out = Vec::new();
    let read = match codec {
        Compression::None => return Ok(Cow::Borrowed(data)),
        Compression::Gzip => {
            flate2::read::GzDecoder::new(data).take(limit + 1).read_to_end(&mut out)
        }
        Compression::Snappy => {
            // Kafka's snappy is the xerial framing (Java clients) or raw snappy (librdkafka).
            return snappy(data, limit as usize).map(Cow::Owned);
        }
        Compression::Lz4 => {
            lz4_flex::frame::FrameDecoder::new(data).take(limit + 1).read_to_end(&mut out)
        }
        Compression::Zstd => zstd::stream::read::Decoder::new(data)
            .and_then(|d| d.take(limit + 1).read_to_end(&mut out)),
    };
    read.map_err(|e| anyhow::anyhow!("{codec:?} records: {e}"))?;
    if out.len() as u64 > limit {
        return Err(InflatesTooFar { codec: format!("{codec:?}"), limit }.into());
    }
    Ok(Cow::Owned(out))
}

/// A compressed batch whose records open to more than a native batch holds.
#[derive(Debug, thiserror::Error)]
#[error("{codec} records decompress to more than {limit} bytes")]
struct InflatesTooFar {
    codec: String,
    limit: u64,
}
/// The xerial framing header the Java snappy stream starts with (magic, version 1,
/// compatible version 1).
const SNAPPY_XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// Kafka's snappy: xerial-framed blocks (`[u32 BE length][raw snappy block]...`) after the
/// header, or one raw snappy block without it. Each block's decompressed length is read
/// from its preamble and checked against what is left of `limit` before decompressing.
fn snappy(data: &[u8], limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let block = |raw: &[u8], out: &mut Vec<u8>| -> anyhow::Result<()> {
        let n = snap::raw::decompress_len(raw)?;
        if out.len() + n > limit {
            return Err(InflatesTooFar { codec: "Snappy".into(), limit: limit as u64 }.into());
        }
        let start = out.len();
        out.resize(start + n, 0);
        snap::raw::Decoder::new().decompress(raw, &mut out[start..])?;
        Ok(())
    };
    match data.strip_prefix(&SNAPPY_XERIAL_HEADER[..]) {
        None => block(data, &mut out)?,
        Some(mut rest) => {
            while !rest.is_empty() {
                let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                    anyhow::bail!("truncated snappy block length");
                };
                let len = u32::from_be_bytes(*len) as usize;
                let Some((raw, tail)) = tail.split_at_checked(len) else {
                    anyhow::bail!("snappy block of {len} bytes, {} left", tail.len());
                };
                block(raw, &mut out)?;
                rest = tail;
            }
        }
    }
    Ok(out)
}

/// Converts stored native batches (a fetch result, back to back, 16-byte aligned) into Kafka
/// v2 record batches appended to `out`.
pub fn to_kafka(batches: &[u8], out: &mut BytesMut) -> Result<(), KafkaError> {
    to_kafka_within(batches, out, usize::MAX)
}

/// [`to_kafka`], one stored batch at a time (a compressed one opened into one scratch buffer
/// reused for the next), stopping before a batch once `out` grew by `bytes_max` (at least
/// one batch): Kafka batches are written uncompressed, and stored compressed batches can
/// open to many times what was read. The consumer fetches the rest from where it ends.
pub fn to_kafka_within(
    batches: &[u8],
    out: &mut BytesMut,
    bytes_max: usize,
) -> Result<(), KafkaError> {
    let corrupt =
        |e: wire::BatchError| KafkaError::Native { code: e.code(), message: e.to_string() };
    let mut scratch = AlignedVec::new();
    let began = out.len();
    for envelope in wire::Envelopes::new(batches) {
        if out.len() > began && out.len() - began >= bytes_max {
            break;
        }
        let envelope = envelope.map_err(corrupt)?;
        let view = envelope.open(&mut scratch).map_err(corrupt)?;
        let h = view.header();
        let base_offset = h.base_offset();
        let Some(first) = view.records().next() else {
            // Compaction removed every record: an empty batch keeps the offsets moving.
            empty_batch(out, base_offset, h.next_offset(), h.max_timestamp_ms());
            continue;
        };
        let first_timestamp_ms = first.timestamp_ms();
        let start = out.len();
        out.put_i64(base_offset as i64);
        out.put_i32(0); // batch length, below
        out.put_i32(-1); // partition leader epoch
        out.put_i8(2); // magic
        out.put_u32(0); // CRC, below
        out.put_i16(0); // attributes: no codec, create time, not transactional, not control
        out.put_i32(0); // last offset delta, below
        out.put_i64(first_timestamp_ms);
        out.put_i64(0); // max timestamp, below
        out.put_i64(h.producer_id());
        out.put_i16(h.producer_epoch());
        out.put_i32(h.base_sequence());
        out.put_i32(view.len() as i32);
        debug_assert_eq!(out.len() - start, BATCH_HEADER_BYTES);
        let (mut last_delta, mut max_timestamp_ms) = (0, first_timestamp_ms);
        for r in view.records() {
            // Within a native batch's span (< 2^32 offsets; Kafka's are i32 like the
            // native record count).
            let offset_delta = (r.offset() - base_offset) as i32;
            let record = records::Record {
                timestamp_delta_ms: r.timestamp_ms() - first_timestamp_ms,
                offset_delta,
                key: r.key(),
                value: r.value(),
            };
            records::put_record(out, &record, r.headers().map(|h| (h.key(), h.nullable_value())));
            last_delta = offset_delta;
            max_timestamp_ms = max_timestamp_ms.max(r.timestamp_ms());
        }
        let batch = &mut out[start..];
        let length = (batch.len() - BATCH_LENGTH_END) as i32;
        batch[OFF_BATCH_LENGTH..BATCH_LENGTH_END].copy_from_slice(&length.to_be_bytes());
        batch[OFF_LAST_OFFSET_DELTA..OFF_LAST_OFFSET_DELTA + 4]
            .copy_from_slice(&last_delta.to_be_bytes());
        batch[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8]
            .copy_from_slice(&max_timestamp_ms.to_be_bytes());
        debug_assert_eq!(
            &batch[OFF_RECORD_COUNT..OFF_RECORD_COUNT + 4],
            &(view.len() as i32).to_be_bytes()
        );
        let crc = crc32c::crc32c(&batch[OFF_ATTRIBUTES..]);
        batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        // A compacted batch may end with offsets whose records are gone: an empty batch over
        // them moves the consumer's position past them (as Kafka's own cleaner leaves).
        let covered = base_offset + last_delta as u64 + 1;
        if covered < h.next_offset() {
            empty_batch(out, covered, h.next_offset(), h.max_timestamp_ms());
        }
    }
    Ok(())
}

/// Appends an empty Kafka v2 record batch over offsets `[base_offset, next_offset)` (fewer
/// than 2^31 of them: a native batch's span).
fn empty_batch(out: &mut BytesMut, base_offset: u64, next_offset: u64, timestamp_ms: i64) {
    const AFTER_LENGTH_BYTES: i32 = 49;
    out.put_i64(base_offset as i64);
    out.put_i32(AFTER_LENGTH_BYTES);
    out.put_i32(-1); // partition leader epoch
    out.put_i8(2); // magic
    let crc_at = out.len();
    out.put_u32(0);
    let covered_from = out.len();
    out.put_i16(0); // attributes: no codec, not transactional, not control
    out.put_i32((next_offset - base_offset - 1) as i32);
    out.put_i64(timestamp_ms);
    out.put_i64(timestamp_ms);
    out.put_i64(-1); // producer id
    out.put_i16(-1); // producer epoch
    out.put_i32(-1); // base sequence
    out.put_i32(0); // records
    let crc = crc32c::crc32c(&out[covered_from..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests;
