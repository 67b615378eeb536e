//! Record batches: Kafka's v2 batches (produce requests, fetch responses) <-> native batches.
//!
//! Ingress ([`to_native`]): each Kafka batch is checked (CRC-32C, record count within the
//! native `BATCH_RECORDS_MAX` before anything is sized by it), decompressed (gzip, snappy,
//! lz4, zstd: the codecs clients use) into at most `UNCOMPRESSED_RECORDS_BYTES_MAX` bytes, and
//! rebuilt as native batches with the same producer id, epoch and base sequence, record
//! timestamps, keys (null stays null), values (null = tombstone) and headers. A Kafka batch
//! too large for one native batch becomes several, the later ones with the base sequence
//! advanced by the records before them, so idempotence still lines up record for record.
//!
//! Egress ([`to_kafka`]): each stored native batch (decompressed if it is compressed) becomes
//! one uncompressed Kafka batch with the stored offsets, timestamps and producer fields.
//!
//! Kafka features with no native equivalent are refused at ingress: transactional and
//! control batches, legacy message sets (v0/v1). A Kafka header with a null value is stored
//! with an empty value; repeated header keys keep only the last one (the codec crate keeps
//! headers in a map).

use std::io::Read;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use wire::batch::compression::UNCOMPRESSED_RECORDS_BYTES_MAX;
use wire::constants::BATCH_RECORDS_MAX;
use wire::{AlignedVec, BatchBuilder, BuildError};

use super::error::KafkaError;

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
    // Headers first, without decompressing: the record count sizes the decoder's vector.
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
    let mut buf = records.clone();
    let mut out = Converted::default();
    let mut builder = BatchBuilder::new(batch_bytes_max);
    for info in &infos {
        let set = RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(decompress))
            .map_err(|e| KafkaError::Decode(format!("record batch: {e}")))?;
        let mut sequence = info.base_sequence;
        builder.set_producer(info.producer_id, info.producer_epoch, sequence);
        for record in &set.records {
            let headers: Vec<(&str, &[u8])> = record
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref().unwrap_or(&[])))
                .collect();
            let append = |b: &mut BatchBuilder| {
                b.append(record.timestamp, record.key.as_deref(), record.value.as_deref(), &headers)
            };
            match append(&mut builder) {
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
        if !builder.is_empty() {
            finish(&mut builder, &mut out.batches)?;
        }
    }
    Ok(out)
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
fn decompress(input: &mut Bytes, codec: Compression) -> anyhow::Result<Bytes> {
    let limit = u64::from(UNCOMPRESSED_RECORDS_BYTES_MAX);
    let mut out = Vec::new();
    let data: &[u8] = input;
    let read = match codec {
        Compression::None => return Ok(input.clone()),
        Compression::Gzip => {
            flate2::read::GzDecoder::new(data).take(limit + 1).read_to_end(&mut out)
        }
        Compression::Snappy => {
            // Kafka's snappy is the xerial framing (Java clients) or raw snappy (librdkafka).
            return snappy(data, limit as usize);
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
    Ok(Bytes::from(out))
}

/// The xerial framing header the Java snappy stream starts with (magic, version 1,
/// compatible version 1).
const SNAPPY_XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// Kafka's snappy: xerial-framed blocks (`[u32 BE length][raw snappy block]...`) after the
/// header, or one raw snappy block without it. Each block's decompressed length is read
/// from its preamble and checked against what is left of `limit` before decompressing.
fn snappy(data: &[u8], limit: usize) -> anyhow::Result<Bytes> {
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
    Ok(Bytes::from(out))
}

/// Converts stored native batches (a fetch result, back to back, 16-byte aligned) into Kafka
/// v2 record batches appended to `out`.
pub fn to_kafka(batches: &[u8], out: &mut BytesMut) -> Result<(), KafkaError> {
    let corrupt =
        |e: wire::BatchError| KafkaError::Native { code: e.code(), message: e.to_string() };
    let plain = wire::batch::decompressed(batches).map_err(corrupt)?;
    let bytes = plain.as_deref().unwrap_or(batches);
    let mut records = Vec::new();
    for view in wire::Batches::new(bytes) {
        let view = view.map_err(corrupt)?;
        let h = view.header();
        let base_offset = h.base_offset();
        // A batch without a producer still needs `offset - sequence` constant for the
        // encoder to keep it one batch: sequence -1 + delta.
        records.clear();
        for r in view.records() {
            let delta = (r.offset() - base_offset) as i32;
            let mut headers = IndexMap::with_capacity(r.headers().len());
            for hv in r.headers() {
                headers.insert(
                    StrBytes::from_string(hv.key().to_owned()),
                    Some(Bytes::copy_from_slice(hv.value())),
                );
            }
            records.push(Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: h.producer_id(),
                producer_epoch: h.producer_epoch(),
                timestamp_type: TimestampType::Creation,
                offset: r.offset() as i64,
                sequence: h.base_sequence().wrapping_add(delta),
                timestamp: r.timestamp_ms(),
                key: r.key().map(Bytes::copy_from_slice),
                value: r.value().map(Bytes::copy_from_slice),
                headers,
            });
        }
        let options = RecordEncodeOptions { version: 2, compression: Compression::None };
        RecordBatchEncoder::encode(out, &records, &options)
            .map_err(|e| KafkaError::Encode(format!("record batch: {e}")))?;
        // A compacted batch may end with offsets whose records are gone: an empty batch over
        // them moves the consumer's position past them (as Kafka's own cleaner leaves).
        let covered = records.last().map_or(base_offset, |r| r.offset as u64 + 1);
        if covered < h.next_offset() {
            empty_batch(out, covered, h.next_offset(), h.max_timestamp_ms());
        }
    }
    Ok(())
}

/// Appends an empty Kafka v2 record batch over offsets `[base_offset, next_offset)` (fewer
/// than 2^31 of them: a native batch's span).
fn empty_batch(out: &mut BytesMut, base_offset: u64, next_offset: u64, timestamp_ms: i64) {
    use bytes::BufMut;
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
    use super::*;

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
