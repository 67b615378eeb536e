//! Compaction's rewrite of a batch: kept records keep their offsets, the span stays, the
//! codec stays, and the result validates; producers cannot forge the bit's relaxed rules.

use proptest::prelude::*;
use rkyv::util::AlignedVec;

use super::compact::{empty_into, retain_into, Retained};
use super::header::assign;
use super::*;
use crate::constants::*;
use crate::error::BatchError;

fn batch(values: &[(Option<u8>, Option<Vec<u8>>)], compression: Compression) -> AlignedVec {
    let mut b = BatchBuilder::new(BATCH_BYTES_MAX as usize);
    b.set_producer(7, 1, 100);
    for (i, (key, value)) in values.iter().enumerate() {
        let key = key.map(|k| vec![k]);
        b.append(1_000 + (i as i64 * 37) % 500, key.as_deref(), value.as_deref(), &[("h", b"x")])
            .unwrap();
    }
    let mut plain = b.finish().unwrap();
    assign(&mut plain, 5_000, 42);
    let mut out: AlignedVec = AlignedVec::new();
    match BatchEnvelope::validate(&plain).unwrap().compress_into(compression, &mut out) {
        Some(_) => out,
        None => plain,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn a_rewritten_batch_keeps_exactly_the_kept_records_at_their_offsets(
        values in proptest::collection::vec(
            (proptest::option::of(0u8..8), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200))),
            1..60),
        keep in proptest::collection::vec(any::<bool>(), 60),
        codec in 0usize..3,
    ) {
        let compression = [Compression::None, Compression::Lz4, Compression::ZSTD][codec];
        let original = batch(&values, compression);
        let envelope = BatchEnvelope::validate(&original).unwrap();
        let mut scratch: AlignedVec = AlignedVec::new();
        let mut builder = BatchBuilder::new(BATCH_BYTES_MAX as usize);
        let mut out: AlignedVec = AlignedVec::new();
        let retained = retain_into(&envelope, &mut scratch, &mut builder, &mut out, |r| {
            keep[(r.offset() - 5_000) as usize]
        }).unwrap();
        let wanted: Vec<usize> = (0..values.len()).filter(|&i| keep[i]).collect();
        let range = match retained {
            Retained::All => { prop_assert_eq!(wanted.len(), values.len()); return Ok(()); }
            Retained::Rewritten { range, records } => { prop_assert_eq!(records as usize, wanted.len()); range }
        };
        let rewritten = &out[range];
        let env = BatchEnvelope::validate(rewritten).unwrap();
        let (h, oh) = (env.header(), envelope.header());
        prop_assert_eq!(h.base_offset(), oh.base_offset());
        prop_assert_eq!(h.next_offset(), oh.next_offset());
        prop_assert_eq!(h.max_timestamp_ms(), oh.max_timestamp_ms());
        prop_assert_eq!(h.log_append_time_ms(), 42);
        prop_assert_eq!((h.producer_id(), h.producer_epoch(), h.base_sequence()), (7, 1, 100));
        prop_assert_eq!(h.attributes() & ATTR_COMPACTED, ATTR_COMPACTED);
        let mut s2: AlignedVec = AlignedVec::new();
        let view = env.open(&mut s2).unwrap();
        let mut s1: AlignedVec = AlignedVec::new();
        let before = envelope.open(&mut s1).unwrap();
        let originals: Vec<_> = before.records().collect();
        let got: Vec<_> = view.records().collect();
        prop_assert_eq!(got.len(), wanted.len());
        for (g, &i) in got.iter().zip(&wanted) {
            let o = &originals[i];
            prop_assert_eq!(g.offset(), o.offset());
            prop_assert_eq!(g.timestamp_ms(), o.timestamp_ms());
            prop_assert_eq!(g.key(), o.key());
            prop_assert_eq!(g.value(), o.value());
            prop_assert_eq!(g.headers().count(), 1);
        }
    }
}

#[test]
fn an_empty_compacted_batch_covers_its_span() {
    let mut builder = BatchBuilder::new(1 << 20);
    let mut out: AlignedVec = AlignedVec::new();
    let range = empty_into(&mut builder, &mut out, 100, 250, 9_000, 8_000).unwrap();
    let view = BatchView::validate(&out[range]).unwrap();
    assert!(view.is_empty());
    let h = view.header();
    assert_eq!((h.base_offset(), h.next_offset(), h.record_count()), (100, 250, 0));
    assert_eq!((h.max_timestamp_ms(), h.log_append_time_ms()), (9_000, 8_000));
}

#[test]
fn without_the_compacted_bit_gaps_and_empty_batches_are_refused() {
    let mut builder = BatchBuilder::new(1 << 20);
    let mut out: AlignedVec = AlignedVec::new();
    let range = empty_into(&mut builder, &mut out, 0, 3, 1, 1).unwrap();
    let mut forged = out[range].to_vec();
    let attributes = u16::from_le_bytes([forged[26], forged[27]]) & !ATTR_COMPACTED;
    forged[26..28].copy_from_slice(&attributes.to_le_bytes());
    let crc = header::covered_crc(&forged);
    forged[4..8].copy_from_slice(&crc.to_le_bytes());
    let mut aligned: AlignedVec = AlignedVec::new();
    aligned.extend_from_slice(&forged);
    assert!(matches!(BatchEnvelope::validate(&aligned), Err(BatchError::Inconsistent { .. })));
}

#[test]
fn compaction_keeps_null_header_values() {
    let mut builder = BatchBuilder::new(1 << 20);
    for i in 0..4u8 {
        let headers: Vec<(&str, Option<&[u8]>)> = vec![("h", None), ("h", Some(&[][..]))];
        builder.append_nullable(i64::from(i), Some(&[i]), Some(&[i]), &headers).unwrap();
    }
    let mut original = builder.finish().unwrap();
    header::assign(&mut original, 10, 1);
    let envelope = BatchEnvelope::validate(&original).unwrap();
    let (mut scratch, mut out): (AlignedVec, AlignedVec) = (AlignedVec::new(), AlignedVec::new());
    let kept =
        retain_into(&envelope, &mut scratch, &mut builder, &mut out, |r| r.offset() % 2 == 1)
            .unwrap();
    assert!(matches!(kept, Retained::Rewritten { records: 2, .. }));
    let view = BatchView::validate(&out).unwrap();
    for r in view.records() {
        let got: Vec<_> = r.headers().map(|h| (h.key(), h.nullable_value())).collect();
        assert_eq!(got, vec![("h", None), ("h", Some(&[][..]))], "offset {}", r.offset());
    }
}
