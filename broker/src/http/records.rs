//! Records as the gateway's JSON shows them, both ways.
//!
//! In (`POST /topics/{t}/records`, `Content-Type: application/json`): one object or an array
//! of objects
//! `{"key": "k", "value": <any JSON>, "headers": {"h": "v"}, "partition": 0, "timestamp_ms": 0}`
//! (a header value may be `null`),
//! where `key_base64` / `value_base64` carry binary bytes instead, `value` is stored as its
//! compact JSON text, and an absent or `null` value is a tombstone. Any other content type is
//! one record whose value is the raw body (key and partition from the query).
//!
//! Out (`GET .../records`, the stream's `data:`):
//! `{"partition": 0, "offset": 5, "timestamp_ms": .., "key": "k", "value": <JSON>, "headers": {..}}`:
//! a value that is valid JSON is shown as that JSON (so what was posted as JSON reads back
//! the same), any other value as `value_base64`; a key or header value that is not UTF-8 as
//! `key_base64` / under `headers_base64`; a null header value (a Kafka producer's) as `null`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{Map, Value};
use wire::RecordView;

use super::error::ApiError;

/// One record to produce.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InRecord {
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes (`None`: tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers in order (`None`: a null value).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Explicit partition.
    pub partition: Option<u32>,
    /// Explicit timestamp (else the gateway's clock).
    pub timestamp_ms: Option<i64>,
}

/// Parses a JSON produce body (see the module docs).
pub fn parse_json(body: &[u8]) -> Result<Vec<InRecord>, ApiError> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("malformed JSON body: {e}")))?;
    match doc {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                parse_record(v).map_err(|e| ApiError::invalid(format!("record {i}: {}", e.message)))
            })
            .collect(),
        v @ Value::Object(_) => Ok(vec![parse_record(v)?]),
        _ => Err(ApiError::invalid("the body must be a record object or an array of them")),
    }
}

fn base64_field(o: &Map<String, Value>, name: &str) -> Result<Option<Vec<u8>>, ApiError> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => BASE64
            .decode(s)
            .map(Some)
            .map_err(|e| ApiError::invalid(format!("{name}: not base64: {e}"))),
        Some(_) => Err(ApiError::invalid(format!("{name} must be a base64 string"))),
    }
}

fn parse_record(v: Value) -> Result<InRecord, ApiError> {
    let Value::Object(o) = v else {
        return Err(ApiError::invalid("a record must be a JSON object"));
    };
    const FIELDS: [&str; 7] =
        ["key", "key_base64", "value", "value_base64", "headers", "partition", "timestamp_ms"];
    if let Some(unknown) = o.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!(
            "unknown field {unknown:?} (expected one of {})",
            FIELDS.join(", ")
        )));
    }
    let key = match (o.get("key"), base64_field(&o, "key_base64")?) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("give key or key_base64, not both")),
        (None | Some(Value::Null), b) => b,
        (Some(Value::String(s)), None) => Some(s.as_bytes().to_vec()),
        (Some(_), None) => return Err(ApiError::invalid("key must be a string")),
    };
    let value = match (o.get("value"), base64_field(&o, "value_base64")?) {
        (None | Some(Value::Null), b) => b,
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("give value or value_base64, not both"))
        }
        (Some(v), None) => Some(serde_json::to_vec(v).expect("a JSON value serializes")),
    };
    let mut headers = Vec::new();
    match o.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, v) in h {
                let value = match v {
                    Value::String(s) => Some(s.as_bytes().to_vec()),
                    Value::Null => None,
                    _ => {
                        return Err(ApiError::invalid(format!(
                            "header {k:?} must be a string or null"
                        )))
                    }
                };
                headers.push((k.clone(), value));
            }
        }
        Some(_) => {
            return Err(ApiError::invalid("headers must be an object of strings (or nulls)"))
        }
    }
    let partition = match o.get("partition") {
        None | Some(Value::Null) => None,
        Some(p) => Some(
            p.as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .ok_or_else(|| ApiError::invalid("partition must be a non-negative integer"))?,
        ),
    };
    let timestamp_ms = match o.get("timestamp_ms") {
        None | Some(Value::Null) => None,
        Some(t) => {
            Some(t.as_i64().ok_or_else(|| ApiError::invalid("timestamp_ms must be an integer"))?)
        }
    };
    Ok(InRecord { key, value, headers, partition, timestamp_ms })
}

/// A stored record as JSON (see the module docs).
pub fn to_json(partition: u32, r: &RecordView<'_>) -> Value {
    let mut o = Map::new();
    o.insert("partition".into(), partition.into());
    o.insert("offset".into(), r.offset().into());
    o.insert("timestamp_ms".into(), r.timestamp_ms().into());
    match r.key() {
        None => {
            o.insert("key".into(), Value::Null);
        }
        Some(k) => match std::str::from_utf8(k) {
            Ok(s) => {
                o.insert("key".into(), s.into());
            }
            Err(_) => {
                o.insert("key_base64".into(), BASE64.encode(k).into());
            }
        },
    }
    match r.value() {
        None => {
            o.insert("value".into(), Value::Null);
        }
        Some(v) => match serde_json::from_slice::<Value>(v) {
            Ok(json) => {
                o.insert("value".into(), json);
            }
            Err(_) => {
                o.insert("value_base64".into(), BASE64.encode(v).into());
            }
        },
    }
    let (mut text, mut binary) = (Map::new(), Map::new());
    for h in r.headers() {
        // A null header value (Kafka's may be null) is JSON null, not an empty string.
        let Some(v) = h.nullable_value() else {
            text.insert(h.key().to_owned(), Value::Null);
            continue;
        };
        match std::str::from_utf8(v) {
            Ok(s) => text.insert(h.key().to_owned(), s.into()),
            Err(_) => binary.insert(h.key().to_owned(), BASE64.encode(v).into()),
        };
    }
    o.insert("headers".into(), Value::Object(text));
    if !binary.is_empty() {
        o.insert("headers_base64".into(), Value::Object(binary));
    }
    Value::Object(o)
}

/// Calls `each` for every record at or after `from` in `batches` (as a fetch returns them:
/// whole batches, possibly compressed), one batch at a time: a compressed batch is opened
/// into one scratch buffer reused for the next, so a fetch of many small batches that
/// decompress to 16 MiB each holds one of them, not all. Stops early when `each` returns
/// false. Returns the offset after the last batch whose records were all visited (the batch
/// header's end: past offsets whose records compaction removed, and past empty batches,
/// which have no record to move a reader's position), or `None` when it stopped in the
/// first.
pub fn for_each_record(
    batches: &[u8],
    from: u64,
    mut each: impl FnMut(&RecordView<'_>) -> bool,
) -> Result<Option<u64>, ApiError> {
    let corrupt = |e: wire::BatchError| ApiError::new(e.code(), e.to_string());
    let mut scratch = wire::AlignedVec::new();
    let mut visited = None;
    for envelope in wire::Envelopes::new(batches) {
        let envelope = envelope.map_err(corrupt)?;
        let batch = envelope.open(&mut scratch).map_err(corrupt)?;
        for r in batch.records() {
            if r.offset() >= from && !each(&r) {
                return Ok(visited);
            }
        }
        visited = Some(envelope.header().next_offset());
    }
    Ok(visited)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_read_back_as_json_and_bytes_as_base64() {
        let recs = parse_json(
            br#"[{"key":"a","value":{"n":1},"headers":{"h":"v","z":null}},
                {"key_base64":"/wA=","value_base64":"/w=="},{"value":null}]"#,
        )
        .unwrap();
        assert_eq!(recs[0].value.as_deref(), Some(&br#"{"n":1}"#[..]));
        assert_eq!(recs[1].key.as_deref(), Some(&[0xffu8, 0][..]));
        assert_eq!(recs[1].value.as_deref(), Some(&[0xffu8][..]));
        assert_eq!(recs[2].value, None);
        let mut b = wire::BatchBuilder::new(1 << 20);
        for r in &recs {
            let h: Vec<(&str, Option<&[u8]>)> =
                r.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
            b.append_nullable(5, r.key.as_deref(), r.value.as_deref(), &h).unwrap();
        }
        let batch = b.finish().unwrap();
        let mut out = Vec::new();
        for_each_record(&batch, 1, |r| {
            out.push(to_json(3, r));
            true
        })
        .unwrap();
        assert_eq!(out.len(), 2, "records below `from` are skipped");
        assert_eq!(out[0]["key_base64"], "/wA=");
        assert_eq!(out[0]["value_base64"], "/w==");
        assert_eq!(out[1]["value"], Value::Null);
        assert_eq!(out[1]["offset"], 2);
        let mut first = Value::Null;
        for_each_record(&batch, 0, |r| {
            first = to_json(3, r);
            false
        })
        .unwrap();
        assert_eq!(first["headers"], serde_json::json!({"h": "v", "z": null}), "null stays null");
    }

    #[test]
    fn malformed_bodies_are_refused_with_a_reason() {
        for (body, why) in [
            (&b"{"[..], "malformed JSON"),
            (b"3", "record object"),
            (br#"{"nope":1}"#, "unknown field"),
            (br#"{"key":1}"#, "key must be a string"),
            (br#"{"value_base64":"!!"}"#, "not base64"),
            (br#"[{"partition":-1}]"#, "record 0: partition"),
        ] {
            let e = parse_json(body).unwrap_err();
            assert_eq!(e.code, wire::ErrorCode::InvalidRequest);
            assert!(e.message.contains(why), "{}: {e}", String::from_utf8_lossy(body));
        }
    }
}
