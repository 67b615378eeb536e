//! Filters evaluated on the broker: a subscription's (or an HTTP stream's) parsed
//! [`wire::filter::Filter`] applied to stored records, and [`RecordFilter::select`], which
//! turns fetched batches into the batches a filtered subscriber receives.
//!
//! Contract: `select` keeps exactly the records at or after `from` that match, in offset
//! order, each at its own offset: consecutive matches are re-encoded (wire's
//! `BatchBuilder`) as one batch whose base offset is the first one's, so the offset deltas of
//! the batch format hold. Keys, values, headers and timestamps are kept; producer fields are
//! not (a filtered view is not an idempotent producer's batch). Records that do not match
//! cost nothing on the wire; the caller reports how far it got (`next_offset`).
//!
//! A value predicate parses the record's value as JSON once per record, only if the filter
//! has one (`serde_json`); a value that is not JSON matches no value predicate.

use serde_json::Value;
use wire::filter::{Compare, Filter, FilterError, Literal};
use wire::{BatchError, RecordView};

/// A parsed filter, ready to evaluate.
#[derive(Debug, Clone)]
pub struct RecordFilter {
    expr: Filter,
    reads_value: bool,
}

/// Why a filtered read failed.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// A stored batch did not decode.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A matching record could not be re-encoded.
    #[error("cannot re-encode a matching record: {0}")]
    Build(#[from] wire::BuildError),
}

impl SelectError {
    /// The wire code that reports this error.
    pub fn code(&self) -> wire::ErrorCode {
        match self {
            SelectError::Batch(e) => e.code(),
            SelectError::Build(_) => wire::ErrorCode::UnknownServerError,
        }
    }
}

impl RecordFilter {
    /// Parses a filter text: `Ok(None)` when it is empty (no filter).
    pub fn parse(text: &str) -> Result<Option<RecordFilter>, FilterError> {
        Ok(wire::filter::parse(text)?
            .map(|expr| RecordFilter { reads_value: reads_value(&expr), expr }))
    }

    /// Whether `r` matches.
    pub fn matches(&self, r: &RecordView<'_>) -> bool {
        let json = if self.reads_value {
            r.value().and_then(|v| serde_json::from_slice::<Value>(v).ok())
        } else {
            None
        };
        eval(&self.expr, r, json.as_ref())
    }

    /// Appends to `out` the matching records at or after `from` of `batches` (whole batches
    /// back to back, as a log read returns them; compressed ones are opened one at a time
    /// into one scratch buffer), re-encoded (see the module docs). `batch_bytes_max` bounds
    /// each re-encoded batch; once `out` holds `out_bytes_max` bytes the rest is left for the
    /// next call ([`Selected::resume_at`]): compressed batches decompress to many times what
    /// was read, and a subscriber's credit counts what is pushed.
    pub fn select(
        &self,
        batches: &[u8],
        from: u64,
        batch_bytes_max: usize,
        out_bytes_max: usize,
        out: &mut Vec<u8>,
    ) -> Result<Selected, SelectError> {
        let mut scratch = wire::AlignedVec::new();
        let mut builder = wire::BatchBuilder::new(batch_bytes_max);
        let mut run_base = 0u64;
        let mut run_next = 0u64;
        let mut selected = Selected { matched: 0, resume_at: None };
        for envelope in wire::Envelopes::new(batches) {
            let envelope = envelope?;
            let next = envelope.header().next_offset();
            if next <= from {
                continue;
            }
            if selected.matched > 0 && out.len() + builder.estimated_bytes() >= out_bytes_max {
                selected.resume_at = Some(envelope.header().base_offset().max(from));
                break;
            }
            let batch = envelope.open(&mut scratch)?;
            let mut headers: Vec<(&str, Option<&[u8]>)> = Vec::new();
            for r in batch.records() {
                if r.offset() < from || !self.matches(&r) {
                    continue;
                }
                selected.matched += 1;
                if !builder.is_empty() && r.offset() != run_next {
                    flush(&mut builder, run_base, out)?;
                }
                if builder.is_empty() {
                    run_base = r.offset();
                }
                headers.clear();
                // Null header values (a Kafka producer's) stay null.
                headers.extend(r.headers().map(|h| (h.key(), h.nullable_value())));
                let mut appended =
                    builder.append_nullable(r.timestamp_ms(), r.key(), r.value(), &headers);
                if appended.is_err() && !builder.is_empty() {
                    // Full, or a timestamp too far from the batch's first: a new batch.
                    flush(&mut builder, run_base, out)?;
                    run_base = r.offset();
                    appended =
                        builder.append_nullable(r.timestamp_ms(), r.key(), r.value(), &headers);
                }
                appended?;
                run_next = r.offset() + 1;
            }
        }
        if !builder.is_empty() {
            flush(&mut builder, run_base, out)?;
        }
        Ok(selected)
    }
}

/// What [`RecordFilter::select`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    /// Records that matched (and were appended).
    pub matched: u64,
    /// Where the next call goes on when it stopped at `out_bytes_max` before the end.
    pub resume_at: Option<u64>,
}

/// Finishes the run in `builder` onto `out` at base offset `base`.
fn flush(
    builder: &mut wire::BatchBuilder,
    base: u64,
    out: &mut Vec<u8>,
) -> Result<(), SelectError> {
    let mut batch = builder.finish()?;
    // The CRC does not cover the broker-assigned fields, so this keeps the batch valid.
    wire::batch::header::assign(&mut batch, base, wire::constants::NO_TIMESTAMP);
    out.extend_from_slice(&batch);
    Ok(())
}

fn reads_value(f: &Filter) -> bool {
    match f {
        Filter::And(v) | Filter::Or(v) => v.iter().any(reads_value),
        Filter::Not(f) => reads_value(f),
        Filter::Value(..) | Filter::ValueIn(..) => true,
        _ => false,
    }
}

fn eval(f: &Filter, r: &RecordView<'_>, json: Option<&Value>) -> bool {
    match f {
        Filter::And(v) => v.iter().all(|f| eval(f, r, json)),
        Filter::Or(v) => v.iter().any(|f| eval(f, r, json)),
        Filter::Not(f) => !eval(f, r, json),
        Filter::KeyEquals(k) => r.key() == Some(k.as_slice()),
        Filter::KeyPrefix(p) => r.key().is_some_and(|k| k.starts_with(p)),
        Filter::HeaderEquals(name, value) => {
            r.headers().any(|h| h.key() == name && h.value() == value.as_slice())
        }
        Filter::HeaderExists(name) => r.headers().any(|h| h.key() == name),
        Filter::Value(path, op, lit) => field(json, path).is_some_and(|v| compare(v, *op, lit)),
        Filter::ValueIn(path, list) => {
            field(json, path).is_some_and(|v| list.iter().any(|l| equal(v, l)))
        }
    }
}

fn field<'a>(json: Option<&'a Value>, path: &[String]) -> Option<&'a Value> {
    let mut v = json?;
    for name in path {
        v = v.as_object()?.get(name)?;
    }
    Some(v)
}

fn equal(v: &Value, lit: &Literal) -> bool {
    match (v, lit) {
        (Value::Null, Literal::Null) => true,
        (Value::Bool(a), Literal::Bool(b)) => a == b,
        (Value::Number(a), Literal::Number(b)) => a.as_f64() == Some(*b),
        (Value::String(a), Literal::String(b)) => a == b,
        _ => false,
    }
}

fn compare(v: &Value, op: Compare, lit: &Literal) -> bool {
    match op {
        Compare::Eq => equal(v, lit),
        Compare::Ne => !equal(v, lit),
        Compare::Lt | Compare::Gt => {
            let ord = match (v, lit) {
                (Value::Number(a), Literal::Number(b)) => a.as_f64().and_then(|a| a.partial_cmp(b)),
                (Value::String(a), Literal::String(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
                _ => None,
            };
            matches!(
                (op, ord),
                (Compare::Lt, Some(std::cmp::Ordering::Less))
                    | (Compare::Gt, Some(std::cmp::Ordering::Greater))
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test record: key, value, headers.
    type TestRecord<'a> = (Option<&'a str>, &'a str, &'a [(&'a str, &'a [u8])]);

    fn batch(base: u64, records: &[TestRecord<'_>]) -> Vec<u8> {
        let mut b = wire::BatchBuilder::new(1 << 20);
        for (i, (k, v, h)) in records.iter().enumerate() {
            b.append(1_000 + i as i64, k.map(str::as_bytes), Some(v.as_bytes()), h).unwrap();
        }
        let mut bytes = b.finish().unwrap();
        wire::batch::header::assign(&mut bytes, base, wire::constants::NO_TIMESTAMP);
        bytes.to_vec()
    }

    fn offsets(bytes: &[u8]) -> Vec<(u64, u64)> {
        let aligned = wire::to_aligned(bytes);
        wire::Batches::new(&aligned)
            .map(|b| {
                let b = b.unwrap();
                (b.header().base_offset(), b.records().len() as u64)
            })
            .collect()
    }

    #[test]
    fn matches_are_reencoded_at_their_own_offsets_in_runs() {
        let mut stored = batch(
            10,
            &[
                (Some("a1"), r#"{"n":1}"#, &[]),
                (Some("b"), r#"{"n":2}"#, &[]),
                (Some("a2"), r#"{"n":3}"#, &[("h", b"x")]),
                (Some("a3"), "not json", &[]),
            ],
        );
        stored.extend(batch(14, &[(Some("a4"), r#"{"n":5}"#, &[]), (None, "{}", &[])]));
        let f = RecordFilter::parse(r#"key prefix "a""#).unwrap().unwrap();
        let mut out = Vec::new();
        assert_eq!(f.select(&stored, 0, 1 << 20, usize::MAX, &mut out).unwrap().matched, 4);
        // 10 alone, then 12..=14 as one run (across the stored batches' boundary).
        assert_eq!(offsets(&out), [(10, 1), (12, 3)]);
        let aligned = wire::to_aligned(&out);
        let recs: Vec<(u64, Vec<u8>, i64)> = wire::Batches::new(&aligned)
            .flat_map(|b| {
                b.unwrap()
                    .records()
                    .map(|r| (r.offset(), r.key().unwrap().to_vec(), r.timestamp_ms()))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(recs[1], (12, b"a2".to_vec(), 1_002));
        assert_eq!(recs[3], (14, b"a4".to_vec(), 1_000));
        // `from` skips records before it; a value predicate ignores non-JSON values.
        let mut out = Vec::new();
        let f = RecordFilter::parse("value.n > 1").unwrap().unwrap();
        assert_eq!(f.select(&stored, 13, 1 << 20, usize::MAX, &mut out).unwrap().matched, 1);
        assert_eq!(offsets(&out), [(14, 1)]);
    }

    /// Matches re-encoded uncompressed may be many times the batches read (compressed ones):
    /// a select stops at `out_bytes_max` (after at least one match) at a stored batch's
    /// start and says where to go on; going on from there gives the rest, nothing twice.
    #[test]
    fn a_select_stops_at_its_bytes_and_goes_on_from_there() {
        let mut stored = batch(10, &[(Some("a1"), "{}", &[]), (Some("a2"), "{}", &[])]);
        stored.extend(batch(12, &[(Some("a3"), "{}", &[])]));
        stored.extend(batch(13, &[(Some("a4"), "{}", &[])]));
        let f = RecordFilter::parse(r#"key prefix "a""#).unwrap().unwrap();
        let (mut from, mut got) = (11, Vec::new());
        loop {
            let mut out = Vec::new();
            let s = f.select(&stored, from, 1 << 20, 1, &mut out).unwrap();
            got.extend(offsets(&out));
            match s.resume_at {
                Some(at) => from = at,
                None => break,
            }
        }
        assert_eq!(got, [(11, 1), (12, 1), (13, 1)]);
    }

    #[test]
    fn predicates_follow_their_documented_meaning() {
        let stored = batch(
            0,
            &[(
                Some("user-7"),
                r#"{"amount": 150, "kind": "buy", "who": {"name": "ann"}, "flag": true, "z": null}"#,
                &[("prio", b"high"), ("trace", b"")],
            )],
        );
        let aligned = wire::to_aligned(&stored);
        let view = wire::BatchView::validate(&aligned).unwrap();
        let r = view.records().next().unwrap();
        let check = |text: &str| RecordFilter::parse(text).unwrap().unwrap().matches(&r);
        for yes in [
            r#"key = "user-7""#,
            r#"key prefix "user-""#,
            r#"header.prio = "high""#,
            "header.trace exists",
            "value.amount > 100",
            "value.amount < 150.5",
            "value.amount = 150",
            r#"value.kind in ["sell", "buy"]"#,
            r#"value.who.name = "ann""#,
            r#"value.kind > "a""#,
            "value.flag = true",
            "value.z = null",
            r#"value.kind != "sell""#,
            r#"not key = "x" and (value.amount > 1000 or header.prio exists)"#,
        ] {
            assert!(check(yes), "{yes}");
        }
        for no in [
            r#"key = "user""#,
            r#"header.prio = "low""#,
            "header.nope exists",
            "value.amount > 150",
            "value.missing != 1",
            r#"value.amount > "100""#,
            r#"value.kind in ["sell"]"#,
            "value.who > 1",
        ] {
            assert!(!check(no), "{no}");
        }
    }
}
