//! Tests of the Kafka <-> native batch conversion (`kafka/convert.rs`).
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
    RecordBatchDecoder::decode_all(&mut Bytes::copy_from_slice(batches)).expect("valid batches");
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
            let converted =
                to_native(&kafka, 1 << 20).unwrap_or_else(|e| panic!("seed {seed} {codec:?}: {e}"));
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
    assert_eq!(got[0].1.headers, vec![h("h", Some(b"1")), h("h", Some(b"")), h("h", Some(b"3"))]);
    assert_eq!((got[1].0, got[1].1.key.as_deref(), got[1].1.value.as_deref()), (501, None, None));
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
    RecordBatchEncoder::encode(&mut buf, records, &RecordEncodeOptions { version: 2, compression })
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
    let (mut scratch, mut builder) = (wire::AlignedVec::new(), wire::BatchBuilder::new(1 << 20));
    let mut out = wire::AlignedVec::new();
    // Offsets 101 and 103 stay; 100, 102 and 104 were superseded.
    let kept = |r: &wire::RecordView<'_>| r.offset() == 101 || r.offset() == 103;
    wire::batch::compact::retain_into(&env, &mut scratch, &mut builder, &mut out, kept).unwrap();
    let mut back = BytesMut::new();
    to_kafka(&out, &mut back).unwrap();
    let mut bytes = back.freeze();
    let sets = RecordBatchDecoder::decode_all(&mut bytes).unwrap();
    let offsets: Vec<i64> = sets.iter().flat_map(|s| s.records.iter().map(|r| r.offset)).collect();
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
        // MESSAGE_TOO_LARGE (a Java producer splits the batch), not CORRUPT_MESSAGE (retried
        // as it is until the delivery timeout).
        assert_eq!(err.code(), kafka_protocol::ResponseError::MessageTooLarge.code(), "{codec:?}");
    }
}

/// A Kafka batch may hold records years apart (backfills, replays); a native batch keeps
/// timestamps as 32-bit deltas from its first: a record past that begins the next native
/// batch (refused CORRUPT_MESSAGE before, which clients retry until they give up).
#[test]
fn records_further_apart_than_a_native_batch_spans_split_it() {
    let day_ms = 86_400_000i64;
    let at = [0, 30 * day_ms, 31 * day_ms, 400 * day_ms, 5 * day_ms];
    let records: Vec<Record> = at
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let mut r = record(i as i64, Some(b"k"), Some(b"v"));
            r.timestamp = 1_600_000_000_000 + t;
            r
        })
        .collect();
    let converted = to_native(&kafka_batch(&records, Compression::None), 1 << 20).unwrap();
    let mut sequence = 40;
    let mut got = Vec::new();
    for view in wire::Batches::new(&converted.batches) {
        let view = view.unwrap();
        assert_eq!(view.header().base_sequence(), sequence);
        sequence += view.header().record_count() as i32;
        got.extend(view.records().map(|r| r.timestamp_ms() - 1_600_000_000_000));
    }
    assert_eq!(got, at, "every record, its own timestamp, in order");
    assert_eq!(converted.records, at.len() as u64);
}

/// The sequences of a split batch go on at 0 past `i32::MAX`, as Kafka's (they went negative,
/// and the negative part was refused after the first part was stored).
#[test]
fn a_split_batch_wraps_its_sequences_at_i32_max() {
    let value = vec![1u8; 1000];
    let mut records: Vec<Record> = (0..100).map(|i| record(i, Some(b"k"), Some(&value))).collect();
    for r in &mut records {
        r.sequence = wire::batch::sequence_after(i32::MAX - 10, r.offset as u32);
    }
    let converted = to_native(&kafka_batch(&records, Compression::None), 16 << 10).unwrap();
    let mut expected = i32::MAX - 10;
    for view in wire::Batches::new(&converted.batches) {
        let view = view.unwrap();
        assert_eq!(view.header().base_sequence(), expected);
        assert!(view.header().base_sequence() >= 0);
        expected = wire::batch::sequence_after(expected, view.header().record_count());
    }
    assert_eq!(expected, 89, "100 records from i32::MAX - 10");
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
    assert_eq!(set.records[49].value.as_deref(), Some(&b"value 49 value value value value"[..]));
}

#[test]
fn corrupt_and_transactional_batches_are_refused() {
    let mut bytes = kafka_batch(&[record(0, Some(b"k"), Some(b"v"))], Compression::None).to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    assert!(to_native(&Bytes::from(bytes), 1 << 20).is_err(), "CRC mismatch");
    let mut txn = record(0, Some(b"k"), Some(b"v"));
    txn.transactional = true;
    assert!(to_native(&kafka_batch(&[txn], Compression::None), 1 << 20).is_err());
}

/// Room for the native batches grows as compressed records convert, without converting again
/// from the start (it restarted ×4 each time: two or three conversions of an lz4 producer's
/// batches); the result is the unlimited conversion's, and a stop leaves `Ok(None)`.
#[test]
fn room_grows_as_records_convert_without_starting_again() {
    let records = many(7, 2_000);
    let batch = raw_batch(&records, Compression::Lz4, (-1, -1, -1));
    let whole = to_native(&batch, 1 << 20).unwrap();
    let mut asked = Vec::new();
    let mut more = |needed: usize| {
        asked.push(needed);
        Some(needed * 2)
    };
    let grown = to_native_within(&batch, 1 << 20, 4096, &mut more).unwrap().expect("room given");
    assert_eq!(grown.batches[..], whole.batches[..]);
    assert_eq!(grown.records, 2_000);
    assert!(asked.len() > 1 && asked.windows(2).all(|w| w[0] < w[1]), "{asked:?}");
    let stopped = to_native_within(&batch, 1 << 20, 4096, &mut |_| None).unwrap();
    assert!(stopped.is_none());
}
