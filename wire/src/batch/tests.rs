//! Round trips, corruption and limits for record batches.

use proptest::prelude::*;
use rkyv::util::AlignedVec;

use super::header::{assign, peek_batch_len};
use super::*;
use crate::constants::*;
use crate::error::{BatchError, BuildError};

type Hdrs = Vec<(String, Vec<u8>)>;

#[derive(Debug, Clone)]
struct In {
    ts: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Hdrs,
}

fn build(records: &[In]) -> AlignedVec {
    let mut b = BatchBuilder::new(BATCH_BYTES_MAX as usize);
    for r in records {
        let hs: Vec<(&str, &[u8])> =
            r.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        b.append(r.ts, r.key.as_deref(), r.value.as_deref(), &hs).unwrap();
    }
    b.finish().unwrap()
}

fn check_same(view: &BatchView<'_>, records: &[In], base_offset: u64) {
    assert_eq!(view.len(), records.len());
    for (i, (got, want)) in view.records().zip(records).enumerate() {
        assert_eq!(got.offset(), base_offset + i as u64);
        assert_eq!(got.timestamp_ms(), want.ts);
        assert_eq!(got.key(), want.key.as_deref());
        assert_eq!(got.value(), want.value.as_deref());
        let hs: Hdrs = got.headers().map(|h| (h.key().to_owned(), h.value().to_vec())).collect();
        assert_eq!(hs, want.headers);
    }
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn record(value_max: usize) -> impl Strategy<Value = In> {
    (
        -1_000_000i64..1_000_000,
        proptest::option::of(bytes(64)),
        proptest::option::of(bytes(value_max)),
        proptest::collection::vec((".{0,20}", bytes(32)), 0..4),
    )
        .prop_map(|(ts, key, value, headers)| In {
            ts: 1_700_000_000_000 + ts,
            key,
            value,
            headers,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn round_trip_many_small(records in proptest::collection::vec(record(200), 1..200)) {
        let batch = build(&records);
        prop_assert_eq!(batch.len() % BODY_ALIGN, 0);
        let view = BatchView::validate(&batch).unwrap();
        check_same(&view, &records, 0);
        prop_assert_eq!(view.header().max_timestamp_ms(), records.iter().map(|r| r.ts).max().unwrap());
    }

    #[test]
    fn round_trip_few_huge(records in proptest::collection::vec(record(300_000), 1..4)) {
        let batch = build(&records);
        check_same(&BatchView::validate(&batch).unwrap(), &records, 0);
    }

    #[test]
    fn assign_keeps_crc_valid(records in proptest::collection::vec(record(100), 1..20), base in any::<u64>().prop_map(|b| b >> 2), t in any::<i64>()) {
        let mut batch = build(&records);
        assign(&mut batch, base, t);
        let view = BatchView::validate(&batch).unwrap();
        prop_assert_eq!(view.header().base_offset(), base);
        prop_assert_eq!(view.header().log_append_time_ms(), t);
        check_same(&view, &records, base);
    }

    /// Flipping any bit of the length, the CRC, or anything the CRC covers is caught. The
    /// broker-assigned fields (bytes 8..24) are outside the CRC by design; storage checks that
    /// base offsets are dense.
    #[test]
    fn every_covered_bit_flip_is_caught(records in proptest::collection::vec(record(50), 1..5), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let batch = build(&records);
        let mut pos = pos.index(batch.len());
        if (8..24).contains(&pos) { pos += 16; }
        let mut bad = batch.clone();
        bad[pos] ^= 1 << bit;
        prop_assert!(BatchView::validate(&bad).is_err(), "flip at {} bit {} accepted", pos, bit);
    }

    #[test]
    fn truncation_anywhere_is_an_error(records in proptest::collection::vec(record(50), 1..5), cut in any::<prop::sample::Index>()) {
        let batch = build(&records);
        let cut = cut.index(batch.len());
        let err = BatchView::validate(&batch[..cut]).unwrap_err();
        let is_truncated = matches!(err, BatchError::Truncated { .. });
        prop_assert!(is_truncated, "{:?}", err);
    }

    /// Arbitrary bytes never panic the validator.
    #[test]
    fn garbage_never_panics(mut garbage in bytes(4096), len in any::<u32>()) {
        if garbage.len() >= 4 { garbage[0..4].copy_from_slice(&(len % 8192).to_le_bytes()); }
        let aligned = crate::to_aligned(&garbage);
        let _ = BatchView::validate(&aligned);
        for b in Batches::new(&aligned) { let _ = b; }
    }

    /// A batch whose CRC is recomputed after corruption (a malicious producer) still cannot
    /// make the reader read out of bounds: bytecheck and the header relations catch it.
    #[test]
    fn recrc_after_corruption_never_panics(records in proptest::collection::vec(record(50), 1..5), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut batch = build(&records);
        let pos = BATCH_CRC_START + pos.index(batch.len() - BATCH_CRC_START);
        batch[pos] = byte;
        let crc = crc32c::crc32c(&batch[BATCH_CRC_START..]);
        batch[4..8].copy_from_slice(&crc.to_le_bytes());
        if let Ok(view) = BatchView::validate(&batch) {
            for r in view.records() {
                let _ = (r.key(), r.value(), r.headers().count());
            }
        }
    }
}

#[test]
fn empty_and_absent_values_differ() {
    let records = vec![
        In { ts: 5, key: None, value: None, headers: vec![] },
        In { ts: 6, key: Some(vec![]), value: Some(vec![]), headers: vec![] },
        In { ts: 4, key: Some(b"k".to_vec()), value: None, headers: vec![("".into(), vec![])] },
    ];
    let batch = build(&records);
    let view = BatchView::validate(&batch).unwrap();
    check_same(&view, &records, 0);
    let rs: Vec<_> = view.records().collect();
    assert_eq!(rs[0].value(), None);
    assert_eq!(rs[1].value(), Some(&[][..]));
    assert_eq!(view.header().first_timestamp_ms(), 5);
    assert_eq!(view.header().max_timestamp_ms(), 6);
}

#[test]
fn owned_records_deserialize_equal() {
    let records = vec![In {
        ts: 10,
        key: Some(b"a".to_vec()),
        value: Some(b"b".to_vec()),
        headers: vec![("h".into(), b"v".to_vec())],
    }];
    let batch = build(&records);
    let archive = &batch[BATCH_HEADER_BYTES
        ..BATCH_HEADER_BYTES + BatchHeader::new(&batch).unwrap().records_len() as usize];
    let owned: Vec<Record> = rkyv::from_bytes::<Vec<Record>, rkyv::rancor::Error>(archive).unwrap();
    assert_eq!(
        owned,
        vec![Record {
            offset_delta: 0,
            timestamp_delta_ms: 0,
            key: Some(b"a".to_vec()),
            value: Some(b"b".to_vec()),
            headers: vec![Header { key: "h".into(), value: b"v".to_vec() }]
        }]
    );
}

#[test]
fn builder_is_reusable_and_clears() {
    let mut b = BatchBuilder::new(1 << 16);
    for round in 0..3u8 {
        for i in 0..10u8 {
            b.append(i64::from(i), Some(&[round]), Some(&[i; 100]), &[]).unwrap();
        }
        let batch = b.finish().unwrap();
        assert!(b.is_empty());
        let view = BatchView::validate(&batch).unwrap();
        assert_eq!(view.len(), 10);
        assert!(view.records().all(|r| r.key() == Some(&[round][..])));
    }
    assert_eq!(b.finish().unwrap_err(), BuildError::Empty);
}

#[test]
fn builder_respects_its_byte_budget() {
    let max = 64 << 10;
    let mut b = BatchBuilder::new(max);
    let value = [7u8; 1000];
    let mut n = 0;
    loop {
        match b.append(0, None, Some(&value), &[]) {
            Ok(()) => n += 1,
            Err(BuildError::Full { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let batch = b.finish().unwrap();
    assert!(batch.len() <= max, "{} > {max}", batch.len());
    assert!(batch.len() > max * 9 / 10, "budget badly underused: {} of {max}", batch.len());
    assert_eq!(BatchView::validate(&batch).unwrap().len(), n);
    let huge = vec![0u8; max];
    assert!(matches!(b.append(0, None, Some(&huge), &[]), Err(BuildError::RecordTooLarge { .. })));
}

#[test]
fn maximum_size_batch_round_trips() {
    let mut b = BatchBuilder::new(BATCH_BYTES_MAX as usize);
    let value = vec![0xA5u8; (BATCH_BYTES_MAX as usize) - 1024];
    b.append(1, Some(b"k"), Some(&value), &[]).unwrap();
    let batch = b.finish().unwrap();
    assert!(batch.len() <= BATCH_BYTES_MAX as usize);
    let view = BatchView::validate(&batch).unwrap();
    assert_eq!(view.records().next().unwrap().value(), Some(&value[..]));
    // One byte over the format maximum is refused by length, before the CRC is computed.
    let mut over = batch.clone();
    over[0..4].copy_from_slice(&(BATCH_BYTES_MAX + 16).to_le_bytes());
    assert_eq!(BatchView::validate(&over).unwrap_err().code(), crate::ErrorCode::BatchTooLarge);
}

#[test]
fn timestamp_delta_out_of_range_is_refused() {
    let mut b = BatchBuilder::new(1 << 20);
    b.append(0, None, Some(b"x"), &[]).unwrap();
    assert!(matches!(
        b.append(i64::from(i32::MAX) + 1, None, None, &[]),
        Err(BuildError::TimestampOutOfRange { .. })
    ));
    b.append(i64::from(i32::MIN), None, None, &[]).unwrap();
    assert_eq!(BatchView::validate(&b.finish().unwrap()).unwrap().len(), 2);
}

#[test]
fn misaligned_input_is_refused() {
    let batch = build(&[In { ts: 1, key: None, value: Some(vec![1]), headers: vec![] }]);
    let mut shifted: AlignedVec = AlignedVec::new();
    shifted.push(0);
    shifted.extend_from_slice(&batch);
    assert!(matches!(
        BatchView::validate(&shifted[1..]),
        Err(BatchError::Misaligned { misalignment: 1 })
    ));
}

#[test]
fn back_to_back_batches_iterate_and_a_torn_tail_is_reported() {
    let mut out: AlignedVec = AlignedVec::new();
    let mut b = BatchBuilder::new(1 << 20);
    for i in 0..5u64 {
        for j in 0..3 {
            b.append(0, None, Some(format!("{i}-{j}").as_bytes()), &[]).unwrap();
        }
        let range = b.finish_into(&mut out).unwrap();
        assign(&mut out[range], i * 3, 0);
    }
    let offsets: Vec<u64> = Batches::new(&out)
        .flat_map(|b| b.unwrap().records().map(|r| r.offset()).collect::<Vec<_>>())
        .collect();
    assert_eq!(offsets, (0..15).collect::<Vec<_>>());
    let total = out.len();
    let torn = &out[..total - 8];
    let results: Vec<_> = Batches::new(torn).collect();
    assert_eq!(results.len(), 5);
    assert!(results[..4].iter().all(Result::is_ok));
    assert!(matches!(results[4], Err(BatchError::Truncated { .. })));
    assert_eq!(peek_batch_len(&out).unwrap() as usize, total / 5);
}

#[test]
fn unknown_attributes_and_codecs_are_refused() {
    let batch = build(&[In { ts: 1, key: None, value: Some(vec![1]), headers: vec![] }]);
    for (attrs, want_compression) in [(3u16, true), (7, true), (1 << 9, false)] {
        let mut bad = batch.clone();
        bad[26..28].copy_from_slice(&attrs.to_le_bytes());
        let crc = crc32c::crc32c(&bad[BATCH_CRC_START..]);
        bad[4..8].copy_from_slice(&crc.to_le_bytes());
        let err = BatchView::validate(&bad).unwrap_err();
        assert_eq!(
            matches!(err, BatchError::UnsupportedCompression { .. }),
            want_compression,
            "{err:?}"
        );
    }
}

/// The format defines the control and transactional bits, so a batch carrying them is valid
/// bytes (a broker will store such batches); refusing them from producers is the broker's
/// rule (`broker/src/api/produce.rs` `check_producible`), not the codec's.
#[test]
fn control_and_transactional_bits_are_valid_format() {
    let batch = build(&[In { ts: 1, key: None, value: Some(vec![1]), headers: vec![] }]);
    for attrs in [ATTR_CONTROL, ATTR_TRANSACTIONAL, ATTR_CONTROL | ATTR_TRANSACTIONAL] {
        let mut marked = batch.clone();
        marked[26..28].copy_from_slice(&attrs.to_le_bytes());
        let crc = crc32c::crc32c(&marked[BATCH_CRC_START..]);
        marked[4..8].copy_from_slice(&crc.to_le_bytes());
        let view = BatchView::validate(&marked).expect("defined bits validate");
        assert_eq!(view.header().attributes(), attrs);
    }
}

#[test]
fn trusted_headers_walk_what_batches_validates() {
    let mut out: AlignedVec = AlignedVec::new();
    let mut b = BatchBuilder::new(1 << 20);
    for i in 0..4u64 {
        b.append(0, None, Some(&[i as u8; 300]), &[]).unwrap();
        b.append(0, None, None, &[]).unwrap();
        let range = b.finish_into(&mut out).unwrap();
        assign(&mut out[range], i * 2, 0);
    }
    let walked: Vec<u64> = super::header::trusted_headers(&out).map(|h| h.base_offset()).collect();
    let checked: Vec<u64> = Batches::new(&out).map(|b| b.unwrap().header().base_offset()).collect();
    assert_eq!(walked, checked);
    // A cut tail ends the walk instead of reading past the end.
    assert_eq!(super::header::trusted_headers(&out[..out.len() - 1]).count(), 3);
}

fn json_like(i: usize) -> Vec<u8> {
    format!(
        r#"{{"order_id":{i},"customer":"cust-{}","items":[{{"sku":"SKU-{:05}","qty":{},"price_cents":1999}}],"status":"paid"}}"#,
        i % 97,
        i % 1013,
        i % 5 + 1
    )
    .into_bytes()
}

/// The batch of `records` compressed, or as built when it would not shrink.
fn compressed_batch(compression: Compression, records: &[In]) -> AlignedVec {
    let plain = build(records);
    let envelope = BatchEnvelope::validate(&plain).unwrap();
    let mut out = AlignedVec::new();
    match envelope.compress_into(compression, &mut out) {
        Some(range) => assert_eq!(range, 0..out.len()),
        None => return plain,
    }
    let again =
        BatchEnvelope::validate(&out).unwrap().compress_into(compression, &mut plain.clone());
    assert!(again.is_none(), "compressed twice");
    out
}

fn json_records(n: usize) -> Vec<In> {
    (0..n)
        .map(|i| In {
            ts: 1_700_000_000_000 + i as i64,
            key: Some(format!("order-{i}").into_bytes()),
            value: (i % 7 != 3).then(|| json_like(i)),
            headers: vec![("trace".into(), vec![i as u8; 8])],
        })
        .collect()
}

#[test]
fn compressed_batches_round_trip_through_open_and_shrink() {
    let records = json_records(200);
    let plain = build(&records);
    for compression in [Compression::Lz4, Compression::ZSTD, Compression::Zstd { level: 9 }] {
        let mut batch = compressed_batch(compression, &records);
        assign(&mut batch, 1000, 77);
        assert!(batch.len() * 2 < plain.len(), "{compression}: {} vs {}", batch.len(), plain.len());
        let envelope = BatchEnvelope::validate(&batch).unwrap();
        assert_eq!(envelope.compression().bits(), compression.bits());
        assert!(matches!(BatchView::validate(&batch), Err(BatchError::Compressed { .. })));
        let mut scratch = AlignedVec::new();
        let view = envelope.open(&mut scratch).unwrap();
        check_same(&view, &records, 1000);
        assert_eq!(view.header().log_append_time_ms(), 77);
        assert_eq!(view.header().attributes() & ATTR_COMPRESSION_MASK, 0);
        // The decompressed equivalent is a batch in its own right: CRC and all.
        let again = BatchView::validate(view.bytes()).unwrap();
        check_same(&again, &records, 1000);
    }
}

#[test]
fn incompressible_records_are_stored_uncompressed() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..4000)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng as u8
        })
        .collect();
    let records = vec![In { ts: 5, key: None, value: Some(noise), headers: vec![] }];
    for compression in [Compression::Lz4, Compression::ZSTD] {
        let batch = compressed_batch(compression, &records);
        let view = BatchView::validate(&batch).expect("stored plain");
        check_same(&view, &records, 0);
        assert_eq!(view.header().uncompressed_len(), 0);
    }
}

#[test]
fn decompressed_rewrites_only_the_compressed_batches() {
    let mut out: AlignedVec = AlignedVec::new();
    let mut want = Vec::new();
    let mut base = 0u64;
    for (i, compression) in
        [Compression::None, Compression::Lz4, Compression::None, Compression::ZSTD]
            .iter()
            .enumerate()
    {
        let records = json_records(10 + i);
        let batch = compressed_batch(*compression, &records);
        let start = out.len();
        out.extend_from_slice(&batch);
        assign(&mut out[start..], base, 0);
        want.push((base, records.clone()));
        base += records.len() as u64;
    }
    let plain = decompressed(&out).unwrap().expect("two batches were compressed");
    let views: Vec<_> = Batches::new(&plain).collect::<Result<_, _>>().unwrap();
    assert_eq!(views.len(), 4);
    for (view, (base, records)) in views.iter().zip(&want) {
        check_same(view, records, *base);
    }
    // Nothing compressed: nothing to rewrite.
    let only_plain = build(&json_records(3));
    assert!(decompressed(&only_plain).unwrap().is_none());
}

#[test]
fn damaged_compressed_records_fail_cleanly() {
    let records = json_records(50);
    for compression in [Compression::Lz4, Compression::ZSTD] {
        let batch = compressed_batch(compression, &records);
        let records_len = u32::from_le_bytes(batch[68..72].try_into().unwrap()) as usize;
        // Garbage in the compressed bytes (CRC forged so the codec sees it).
        for at in [0usize, records_len / 2, records_len - 1] {
            let mut bad = batch.clone();
            bad[BATCH_HEADER_BYTES + at] ^= 0x5a;
            let crc = crc32c::crc32c(&bad[BATCH_CRC_START..]);
            bad[4..8].copy_from_slice(&crc.to_le_bytes());
            let envelope = BatchEnvelope::validate(&bad).unwrap();
            let mut scratch = AlignedVec::new();
            // Either the codec notices or the archive check does; never a panic.
            if let Ok(view) = envelope.open(&mut scratch) {
                let _ = view.records().count();
            }
        }
        // An announced length that is a lie, either way.
        let ulen = u32::from_le_bytes(batch[72..76].try_into().unwrap());
        for lie in [ulen - 1, ulen + 1, 1] {
            let mut bad = batch.clone();
            bad[72..76].copy_from_slice(&lie.to_le_bytes());
            let crc = crc32c::crc32c(&bad[BATCH_CRC_START..]);
            bad[4..8].copy_from_slice(&crc.to_le_bytes());
            let envelope = BatchEnvelope::validate(&bad).unwrap();
            let err = envelope.open(&mut AlignedVec::new()).unwrap_err();
            assert!(matches!(err, BatchError::Decompress { .. }), "{compression} {lie}: {err:?}");
        }
        // Over the maximum is refused before anything is allocated.
        let mut bad = batch.clone();
        bad[72..76].copy_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32c::crc32c(&bad[BATCH_CRC_START..]);
        bad[4..8].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(BatchEnvelope::validate(&bad), Err(BatchError::Inconsistent { .. })));
    }
    // An uncompressed batch may not announce an uncompressed length.
    let mut bad = build(&records);
    bad[72..76].copy_from_slice(&5u32.to_le_bytes());
    let crc = crc32c::crc32c(&bad[BATCH_CRC_START..]);
    bad[4..8].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(BatchView::validate(&bad), Err(BatchError::Inconsistent { .. })));
}

#[test]
fn compression_names_parse_and_print() {
    for (name, want) in [
        ("none", Compression::None),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::ZSTD),
        ("ZSTD:7", Compression::Zstd { level: 7 }),
    ] {
        let got: Compression = name.parse().unwrap();
        assert_eq!(got, want);
        assert_eq!(got.to_string().parse::<Compression>().unwrap(), want);
    }
    for bad in ["gzip", "zstd:0", "zstd:23", "zstd:x", "snappy"] {
        assert!(bad.parse::<Compression>().is_err(), "{bad}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_records_round_trip_compressed(
        records in proptest::collection::vec(record(300), 1..40),
        codec in 0usize..2,
    ) {
        let compression = [Compression::Lz4, Compression::ZSTD][codec];
        let batch = compressed_batch(compression, &records);
        let envelope = BatchEnvelope::validate(&batch).unwrap();
        let mut scratch = AlignedVec::new();
        let view = envelope.open(&mut scratch).unwrap();
        check_same(&view, &records, 0);
    }
}

/// `batch` with `attributes` set and its CRC recomputed.
fn with_attributes(batch: &[u8], attributes: u16) -> AlignedVec {
    let mut forged = AlignedVec::new();
    forged.extend_from_slice(batch);
    forged[26..28].copy_from_slice(&attributes.to_le_bytes());
    let crc = crc32c::crc32c(&forged[BATCH_CRC_START..]);
    forged[4..8].copy_from_slice(&crc.to_le_bytes());
    forged
}

type Nullable<'a> = Vec<(&'a str, Option<&'a [u8]>)>;

fn nullable_headers(record: &RecordView<'_>) -> Vec<(String, Option<Vec<u8>>)> {
    record.headers().map(|h| (h.key().to_owned(), h.nullable_value().map(<[u8]>::to_vec))).collect()
}

#[test]
fn null_header_values_round_trip_distinct_from_empty_ones() {
    // Nine headers: the null map spans two bytes. Repeated keys, null and empty values.
    let many: Nullable<'_> = (0..9)
        .map(|i| {
            (
                "k",
                if i % 3 == 0 {
                    None
                } else if i % 3 == 1 {
                    Some(&b""[..])
                } else {
                    Some(&b"v"[..])
                },
            )
        })
        .collect();
    let records: Vec<(Option<&[u8]>, Nullable<'_>)> = vec![
        (Some(b"before"), vec![("a", Some(b"1"))]), // appended before the batch has a null
        (Some(b"many"), many),
        (None, vec![]),
        (Some(b"only-null"), vec![("", None)]),
        (Some(b"plain"), vec![("a", Some(b"")), ("a", Some(b"2"))]),
    ];
    let mut b = BatchBuilder::new(1 << 16);
    for (i, (key, headers)) in records.iter().enumerate() {
        b.append_nullable(1_000 + i as i64, *key, Some(b"value"), headers).unwrap();
    }
    let batch = b.finish().unwrap();
    let view = BatchView::validate(&batch).unwrap();
    assert_eq!(view.header().attributes() & ATTR_NULL_HEADER_VALUES, ATTR_NULL_HEADER_VALUES);
    for (got, (key, want)) in view.records().zip(&records) {
        assert_eq!(got.key(), *key);
        let want: Vec<_> =
            want.iter().map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec))).collect();
        assert_eq!(nullable_headers(&got), want, "record {}", got.offset());
        assert_eq!(got.headers().len(), want.len(), "the null map is hidden");
        for h in got.headers() {
            assert_eq!(h.is_null(), h.nullable_value().is_none());
            assert!(!h.is_null() || h.value().is_empty());
        }
    }

    // Without a null value the batch is exactly what `append` builds: no bit, no null maps.
    let mut a = BatchBuilder::new(1 << 16);
    let mut n = BatchBuilder::new(1 << 16);
    a.append(5, Some(b"k"), None, &[("h", b"v"), ("h", b"")]).unwrap();
    n.append_nullable(5, Some(b"k"), None, &[("h", Some(b"v")), ("h", Some(b""))]).unwrap();
    let (a, n) = (a.finish().unwrap(), n.finish().unwrap());
    assert_eq!(&a[..], &n[..]);
    assert_eq!(BatchView::validate(&a).unwrap().header().attributes(), 0);
}

#[test]
fn null_maps_stay_within_the_builders_estimate() {
    // The first null value arrives after many records without one: their (empty) null maps
    // must be in the estimate too (`finish` asserts the batch fits it).
    for budget in [2_000usize, 10_000, 100_000] {
        let mut b = BatchBuilder::new(budget);
        let mut i = 0;
        loop {
            let headers: Nullable<'_> =
                if i > 30 { vec![("x", None), ("y", Some(b"1"))] } else { vec![] };
            match b.append_nullable(i, None, Some(b"v"), &headers) {
                Ok(()) => i += 1,
                Err(BuildError::Full { .. }) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let batch = b.finish().unwrap();
        assert!(batch.len() <= budget, "{} > {budget}", batch.len());
        BatchView::validate(&batch).unwrap();
    }
}

#[test]
fn forged_null_maps_are_refused() {
    let forge = |headers: &[(&str, &[u8])]| {
        let mut b = BatchBuilder::new(1 << 12);
        b.append(1, None, Some(b"v"), headers).unwrap();
        with_attributes(&b.finish().unwrap(), ATTR_NULL_HEADER_VALUES)
    };
    let refused = |bytes: &AlignedVec, what: &str| match BatchView::validate(bytes) {
        Err(BatchError::Inconsistent { what: got }) => assert!(got.contains(what), "{got}"),
        other => panic!("{what}: {other:?}"),
    };
    refused(&forge(&[]), "no null map");
    refused(&forge(&[("k", b""), ("x", &[1])]), "key is not empty");
    refused(&forge(&[("k", b"v"), ("", &[1])]), "has a value");
    refused(&forge(&[("k", b""), ("", &[2])]), "past the last");
    refused(&forge(&[("k", b""), ("", &[1, 0])]), "longer");
    // The smallest valid one: one header, null.
    let ok = forge(&[("k", b""), ("", &[1])]);
    let view = BatchView::validate(&ok).unwrap();
    let record = view.records().next().unwrap();
    assert_eq!(nullable_headers(&record), vec![("k".to_owned(), None)]);
}
