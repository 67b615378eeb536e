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
    to_native_within(records, batch_bytes_max, usize::MAX).map(|c| c.expect("no limit"))
}

/// [`to_native`], stopping with `Ok(None)` once the native batches would pass `bytes_max`:
/// compressed records decompress to many times their size (up to a native batch's records
/// each), so the caller makes room first and tries again with more, or refuses.
pub fn to_native_within(
    records: &Bytes,
    batch_bytes_max: usize,
    bytes_max: usize,
) -> Result<Option<Converted>, KafkaError> {
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
        let plain =
            decompress(raw, info.compression).map_err(|e| decode(format!("record batch: {e}")))?;
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
                Ok(()) if out.batches.len() + builder.estimated_bytes() > bytes_max => {
                    return Ok(None);
                }
                Ok(()) => {}
                Err(BuildError::Full { .. }) => {
                    let n = builder.len() as i32;
                    finish(&mut builder, &mut out.batches)?;
                    if sequence >= 0 {
                        sequence = sequence.wrapping_add(n);
                    }
                    builder.set_producer(info.producer_id, info.producer_epoch, sequence);
                    append(&mut builder).map_err(build_error)?;
                }
                Err(e) => return Err(build_error(e)),
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
        return Err(anyhow::anyhow!("{codec:?} records decompress to more than {limit} bytes"));
    }
    Ok(Cow::Owned(out))
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
            anyhow::bail!("snappy records decompress to more than {limit} bytes");
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
    let corrupt =
        |e: wire::BatchError| KafkaError::Native { code: e.code(), message: e.to_string() };
    let plain = wire::batch::decompressed(batches).map_err(corrupt)?;
    let bytes = plain.as_deref().unwrap_or(batches);
    for view in wire::Batches::new(bytes) {
        let view = view.map_err(corrupt)?;
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
mod tests {
    use std::io::Write;

    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    use super::*;

    /// A record as a Kafka client may send it: headers in order, keys repeating, values null.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct In {
        timestamp_ms: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<(String, Option<Vec<u8>>)>,
    }

    /// A Kafka v2 batch of `records` at base offset 0, written byte by byte (the crate's
    /// encoder would fold repeated header keys), its records compressed with `codec`.
    fn raw_batch(records: &[In], codec: Compression, producer: (i64, i16, i32)) -> Bytes {
        let first = records[0].timestamp_ms;
        let mut plain = BytesMut::new();
        for (i, r) in records.iter().enumerate() {
            let record = records::Record {
                timestamp_delta_ms: r.timestamp_ms - first,
                offset_delta: i as i32,
                key: r.key.as_deref(),
                value: r.value.as_deref(),
            };
            let headers = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref()));
            records::put_record(&mut plain, &record, headers);
        }
        let compressed: Vec<u8> = match codec {
            Compression::None => plain.to_vec(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&plain).unwrap();
                e.finish().unwrap()
            }
            Compression::Snappy => snap::raw::Encoder::new().compress_vec(&plain).unwrap(),
            Compression::Lz4 => {
                let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
                e.write_all(&plain).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(&plain[..], 1).unwrap(),
        };
        let attributes: i16 = match codec {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        };
        let mut out = BytesMut::new();
        out.put_i64(0);
        out.put_i32((BATCH_HEADER_BYTES - BATCH_LENGTH_END + compressed.len()) as i32);
        out.put_i32(-1);
        out.put_i8(2);
        out.put_u32(0);
        out.put_i16(attributes);
        out.put_i32(records.len() as i32 - 1);
        out.put_i64(first);
        out.put_i64(records.iter().map(|r| r.timestamp_ms).max().unwrap());
        out.put_i64(producer.0);
        out.put_i16(producer.1);
        out.put_i32(producer.2);
        out.put_i32(records.len() as i32);
        out.put_slice(&compressed);
        let crc = crc32c::crc32c(&out[OFF_ATTRIBUTES..]);
        out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        out.freeze()
    }

    /// The records of Kafka batches, parsed back with [`Records`] (offsets, timestamps,
    /// headers with repeats and nulls), each batch's CRC checked by the crate on the way.
    fn read_back(batches: &[u8]) -> Vec<(i64, In)> {
        RecordBatchDecoder::decode_all(&mut Bytes::copy_from_slice(batches))
            .expect("valid batches");
        let mut got = Vec::new();
        let mut rest = batches;
        while !rest.is_empty() {
            let length = i32::from_be_bytes(rest[8..12].try_into().unwrap()) as usize;
            let (batch, tail) = rest.split_at(BATCH_LENGTH_END + length);
            rest = tail;
            let base_offset = i64::from_be_bytes(batch[..8].try_into().unwrap());
            let first = i64::from_be_bytes(batch[27..35].try_into().unwrap());
            let mut records = Records::new(&batch[BATCH_HEADER_BYTES..]);
            let mut headers = Vec::new();
            while let Some(r) = records.next_record(&mut headers).unwrap() {
                got.push((
                    base_offset + i64::from(r.offset_delta),
                    In {
                        timestamp_ms: first + r.timestamp_delta_ms,
                        key: r.key.map(<[u8]>::to_vec),
                        value: r.value.map(<[u8]>::to_vec),
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
                            .collect(),
                    },
                ));
            }
        }
        got
    }

    fn native_records(batches: &[u8]) -> Vec<In> {
        wire::Batches::new(batches)
            .flat_map(|b| b.unwrap().records().collect::<Vec<_>>())
            .map(|r| In {
                timestamp_ms: r.timestamp_ms(),
                key: r.key().map(<[u8]>::to_vec),
                value: r.value().map(<[u8]>::to_vec),
                headers: r
                    .headers()
                    .map(|h| (h.key().to_owned(), h.nullable_value().map(<[u8]>::to_vec)))
                    .collect(),
            })
            .collect()
    }

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn h(key: &str, value: Option<&[u8]>) -> (String, Option<Vec<u8>>) {
        (key.to_owned(), value.map(<[u8]>::to_vec))
    }

    /// The table: repeated keys, null and empty header values, null key, empty key,
    /// tombstone, no headers, an empty header key.
    fn table() -> Vec<In> {
        let r = |ts: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers| In {
            timestamp_ms: 1_700_000_000_000 + ts,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers,
        };
        vec![
            r(0, Some(b"k"), Some(b"v"), vec![h("a", Some(b"1")), h("a", Some(b"2"))]),
            r(5, None, Some(b"null key"), vec![h("n", None), h("e", Some(b"")), h("n", None)]),
            r(-3, Some(b"tomb"), None, vec![h("why", Some(b"deleted"))]),
            r(7, Some(b""), Some(b""), vec![]),
            r(9, None, None, vec![h("", None), h("", Some(b"")), h("a", None)]),
            r(
                9,
                Some(b"nine"),
                Some(b"headers"),
                (0..9).map(|i| h("x", (i % 2 == 0).then_some(&[i as u8][..]))).collect(),
            ),
        ]
    }

    /// A deterministic mix of records (xorshift from `seed`).
    fn many(seed: u64, n: usize) -> Vec<In> {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let bytes = |len: u64, next: &mut dyn FnMut() -> u64| -> Option<Vec<u8>> {
            let r = next();
            (r % 5 != 0).then(|| (0..r % len).map(|i| (i as u8) ^ (r as u8)).collect())
        };
        (0..n)
            .map(|i| {
                let headers = (0..next() % 4)
                    .map(|_| {
                        let k = ["a", "b", "a", ""][(next() % 4) as usize].to_owned();
                        (k, bytes(8, &mut next))
                    })
                    .collect();
                In {
                    timestamp_ms: 1_700_000_000_000 + i as i64 * 3 - (next() % 100) as i64,
                    key: bytes(16, &mut next),
                    value: bytes(200, &mut next),
                    headers,
                }
            })
            .collect()
    }

    #[test]
    fn headers_keys_values_and_timestamps_round_trip_with_every_codec() {
        for (seed, records) in [(0, table()), (1, many(1, 1_000)), (2, many(2, 5_000))] {
            for codec in CODECS {
                let kafka = raw_batch(&records, codec, (7, 2, 40));
                let converted = to_native(&kafka, 1 << 20)
                    .unwrap_or_else(|e| panic!("seed {seed} {codec:?}: {e}"));
                assert_eq!(converted.records, records.len() as u64);
                assert_eq!(native_records(&converted.batches), records, "seed {seed} {codec:?}");
                let mut back = BytesMut::new();
                to_kafka(&converted.batches, &mut back).unwrap();
                let got = read_back(&back);
                let offsets: Vec<i64> = got.iter().map(|(o, _)| *o).collect();
                assert_eq!(offsets, (0..records.len() as i64).collect::<Vec<_>>());
                let got: Vec<In> = got.into_iter().map(|(_, r)| r).collect();
                assert_eq!(got, records, "seed {seed} {codec:?}");
                if codec == Compression::None && converted.batches.len() < 1 << 20 {
                    // One native batch: Kafka -> native -> Kafka is the same bytes.
                    assert_eq!(&back[..], &kafka[..], "seed {seed}: byte for byte");
                }
            }
        }
    }

    #[test]
    fn native_headers_reach_kafka_in_order_with_repeats() {
        let mut b = BatchBuilder::new(1 << 20);
        b.append(1_000, Some(b"k"), Some(b"v"), &[("h", b"1"), ("h", b""), ("h", b"3")]).unwrap();
        b.append_nullable(1_001, None, None, &[("h", None), ("g", Some(b"x"))]).unwrap();
        let mut native = b.finish().unwrap();
        wire::batch::header::assign(&mut native, 500, -1);
        let mut back = BytesMut::new();
        to_kafka(&native, &mut back).unwrap();
        let got = read_back(&back);
        assert_eq!(got[0].0, 500);
        assert_eq!(
            got[0].1.headers,
            vec![h("h", Some(b"1")), h("h", Some(b"")), h("h", Some(b"3"))]
        );
        assert_eq!(
            (got[1].0, got[1].1.key.as_deref(), got[1].1.value.as_deref()),
            (501, None, None)
        );
        assert_eq!(got[1].1.headers, vec![h("h", None), h("g", Some(b"x"))]);
    }

    #[test]
    fn damaged_records_under_a_valid_crc_never_panic() {
        // The CRC keeps a fuzzer out of the records; here every damage gets a fresh CRC.
        let records = table();
        let good = raw_batch(&records, Compression::None, (3, 0, 0)).to_vec();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut bad = good.clone();
            for k in 0..1 + x % 3 {
                let at = BATCH_HEADER_BYTES + (x >> (8 + 16 * k)) as usize % (bad.len() - 61);
                bad[at] = (x >> (4 * k)) as u8;
            }
            if round % 7 == 0 {
                bad.truncate(bad.len() - (x % 20) as usize); // and a batch length that lies
            }
            let crc = crc32c::crc32c(&bad[OFF_ATTRIBUTES..]);
            bad[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
            if let Ok(converted) = to_native(&Bytes::from(bad), 1 << 20) {
                to_kafka(&converted.batches, &mut BytesMut::new()).expect("converted reads back");
            }
        }
    }

    #[test]
    fn malformed_records_inside_a_valid_batch_are_refused() {
        let records = table();
        let good = raw_batch(&records, Compression::None, (-1, -1, -1));
        // Claim one more record than there is, and one fewer (bytes left over).
        for count in [records.len() as i32 + 1, records.len() as i32 - 1] {
            let mut bad = good.to_vec();
            bad[OFF_RECORD_COUNT..OFF_RECORD_COUNT + 4].copy_from_slice(&count.to_be_bytes());
            let crc = crc32c::crc32c(&bad[OFF_ATTRIBUTES..]);
            bad[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
            let err = to_native(&Bytes::from(bad), 1 << 20).unwrap_err();
            assert!(matches!(err, KafkaError::Decode(_)), "{count}: {err}");
        }
        // Trailing bytes that are not a v2 batch (a legacy message set).
        let mut legacy = good.to_vec();
        legacy.extend_from_slice(&[0u8; 8]);
        legacy.extend_from_slice(&14i32.to_be_bytes());
        legacy.extend_from_slice(&[0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        let err = to_native(&Bytes::from(legacy), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("not a v2"), "{err}");
    }

    fn record(offset: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Record {
        let mut headers = IndexMap::new();
        headers.insert(StrBytes::from_static_str("trace"), Some(Bytes::from_static(b"\x00\x01")));
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: 7,
            producer_epoch: 2,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: 40 + offset as i32,
            timestamp: 1_700_000_000_000 + offset,
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
            headers,
        }
    }

    fn kafka_batch(records: &[Record], compression: Compression) -> Bytes {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records,
            &RecordEncodeOptions { version: 2, compression },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn every_codec_round_trips_through_the_native_format() {
        let records = vec![
            record(0, Some(b"k0"), Some(b"v0")),
            record(1, None, None),
            record(2, Some(b""), Some(b"v2")),
        ];
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let converted = to_native(&kafka_batch(&records, codec), 1 << 20).unwrap();
            assert_eq!(converted.records, 3, "{codec:?}");
            let view = wire::BatchView::validate(&converted.batches).unwrap();
            let h = view.header();
            assert_eq!((h.producer_id(), h.producer_epoch(), h.base_sequence()), (7, 2, 40));
            let mut back = BytesMut::new();
            to_kafka(&converted.batches, &mut back).unwrap();
            let set = RecordBatchDecoder::decode(&mut back.freeze()).unwrap();
            assert_eq!(set.records.len(), 3);
            for (a, b) in set.records.iter().zip(&records) {
                assert_eq!(
                    (&a.key, &a.value, a.timestamp),
                    (&b.key, &b.value, b.timestamp),
                    "{codec:?}"
                );
                assert_eq!((a.producer_id, a.producer_epoch, a.sequence), (7, 2, b.sequence));
                assert_eq!(a.headers, b.headers);
            }
        }
    }

    #[test]
    fn a_compacted_batch_keeps_its_offsets_and_an_empty_batch_covers_the_removed_tail() {
        let mut b = wire::BatchBuilder::new(1 << 20);
        for i in 0..5u8 {
            b.append(1_000 + i64::from(i), Some(&[i]), Some(&[i; 3]), &[]).unwrap();
        }
        let mut original = b.finish().unwrap();
        wire::batch::header::assign(&mut original, 100, 5);
        let env = wire::BatchEnvelope::validate(&original).unwrap();
        let (mut scratch, mut builder) =
            (wire::AlignedVec::new(), wire::BatchBuilder::new(1 << 20));
        let mut out = wire::AlignedVec::new();
        // Offsets 101 and 103 stay; 100, 102 and 104 were superseded.
        let kept = |r: &wire::RecordView<'_>| r.offset() == 101 || r.offset() == 103;
        wire::batch::compact::retain_into(&env, &mut scratch, &mut builder, &mut out, kept)
            .unwrap();
        let mut back = BytesMut::new();
        to_kafka(&out, &mut back).unwrap();
        let mut bytes = back.freeze();
        let sets = RecordBatchDecoder::decode_all(&mut bytes).unwrap();
        let offsets: Vec<i64> =
            sets.iter().flat_map(|s| s.records.iter().map(|r| r.offset)).collect();
        assert_eq!(offsets, vec![101, 103]);
        assert_eq!(sets.len(), 2, "the kept records, then an empty batch");
        assert!(sets[1].records.is_empty());

        // Every record removed: one empty batch over the whole span.
        let mut out = wire::AlignedVec::new();
        wire::batch::compact::retain_into(&env, &mut scratch, &mut builder, &mut out, |_| false)
            .unwrap();
        let mut back = BytesMut::new();
        to_kafka(&out, &mut back).unwrap();
        let raw = back.freeze();
        assert_eq!(&raw[..8], &100i64.to_be_bytes(), "base offset");
        assert_eq!(&raw[23..27], &4i32.to_be_bytes(), "last offset delta: 100..=104");
        let mut bytes = raw.clone();
        let sets = RecordBatchDecoder::decode_all(&mut bytes).unwrap();
        assert!(sets.iter().all(|s| s.records.is_empty()));
    }

    #[test]
    fn a_batch_larger_than_a_native_batch_splits_with_sequences_advanced() {
        let value = vec![1u8; 1000];
        let records: Vec<Record> = (0..100).map(|i| record(i, Some(b"k"), Some(&value))).collect();
        let converted = to_native(&kafka_batch(&records, Compression::None), 16 << 10).unwrap();
        let mut sequence = 40;
        let mut n = 0;
        for view in wire::Batches::new(&converted.batches) {
            let view = view.unwrap();
            assert_eq!(view.header().base_sequence(), sequence);
            sequence += view.header().record_count() as i32;
            n += 1;
        }
        assert!(n > 1, "split into {n} batches");
        assert_eq!(sequence, 140);
    }

    #[test]
    fn a_compressed_bomb_is_refused_before_it_is_inflated() {
        let bomb = vec![0u8; UNCOMPRESSED_RECORDS_BYTES_MAX as usize + 1024];
        for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd, Compression::Snappy] {
            let batch = kafka_batch(&[record(0, None, Some(&bomb))], codec);
            assert!(batch.len() < bomb.len() / 4, "{codec:?} compresses");
            let err = to_native(&batch, 1 << 20).unwrap_err();
            assert!(err.to_string().contains("more than"), "{codec:?}: {err}");
        }
    }

    #[test]
    fn compressed_native_batches_reach_kafka_clients_uncompressed() {
        let mut builder = BatchBuilder::new(1 << 20);
        for i in 0..50u32 {
            let value = format!("value {i} value value value value");
            builder.append(1_700_000_000_000, Some(b"k"), Some(value.as_bytes()), &[]).unwrap();
        }
        let plain = builder.finish().unwrap();
        let mut compressed = AlignedVec::new();
        wire::BatchEnvelope::validate(&plain)
            .unwrap()
            .compress_into(wire::Compression::ZSTD, &mut compressed)
            .expect("compresses");
        let mut out = BytesMut::new();
        to_kafka(&compressed, &mut out).unwrap();
        let set = RecordBatchDecoder::decode(&mut out.freeze()).unwrap();
        assert_eq!(set.records.len(), 50);
        assert_eq!(
            set.records[49].value.as_deref(),
            Some(&b"value 49 value value value value"[..])
        );
    }

    #[test]
    fn corrupt_and_transactional_batches_are_refused() {
        let mut bytes =
            kafka_batch(&[record(0, Some(b"k"), Some(b"v"))], Compression::None).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert!(to_native(&Bytes::from(bytes), 1 << 20).is_err(), "CRC mismatch");
        let mut txn = record(0, Some(b"k"), Some(b"v"));
        txn.transactional = true;
        assert!(to_native(&kafka_batch(&[txn], Compression::None), 1 << 20).is_err());
    }
}
