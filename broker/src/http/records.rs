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
use serde::de::{self, Deserialize};
use serde_json::value::RawValue;

use wire::RecordView;

use super::error::ApiError;

/// One record to produce, owned while it is appended (the body is read one record at a time).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InRecord {
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes (`None`: tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers in the body's order, repeats kept (`None`: a null value).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Explicit partition.
    pub partition: Option<u32>,
    /// Explicit timestamp (else the gateway's clock).
    pub timestamp_ms: Option<i64>,
}

const FIELDS: [&str; 7] =
    ["key", "key_base64", "value", "value_base64", "headers", "partition", "timestamp_ms"];

/// A record object as it is in the body: each field's raw JSON text, borrowed.
struct RawRecord<'a>([Option<&'a RawValue>; 7]);

impl<'de> Deserialize<'de> for RawRecord<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RawRecordVisitor)
    }
}

struct RawRecordVisitor;

impl<'de> de::Visitor<'de> for RawRecordVisitor {
    type Value = RawRecord<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a record (a JSON object)")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawRecord<'de>, A::Error> {
        let mut fields = [None; 7];
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let Some(i) = FIELDS.iter().position(|f| *f == name) else {
                return Err(de::Error::custom(format!(
                    "unknown field {name:?} (expected one of {})",
                    FIELDS.join(", ")
                )));
            };
            if fields[i].replace(map.next_value::<&'de RawValue>()?).is_some() {
                return Err(de::Error::custom(format!("field {name:?} given twice")));
            }
        }
        Ok(RawRecord(fields))
    }
}

/// Reads a JSON produce body (see the module docs) one record at a time, calling `each`
/// with its position and the record, and returns how many there were. No tree of the body
/// is built (a parsed tree takes many times its text) and a record is gone once `each`
/// returns; an error of `each` ends the read and is returned as it is.
pub fn for_each_json_record(
    body: &[u8],
    mut each: impl FnMut(usize, InRecord) -> Result<(), ApiError>,
) -> Result<usize, ApiError> {
    let mut state = BodyState { each: &mut each, failed: None, array: false, count: 0 };
    let mut de = serde_json::Deserializer::from_slice(body);
    let read = de::DeserializeSeed::deserialize(&mut state, &mut de).and_then(|()| de.end());
    match (read, state.failed) {
        (_, Some(e)) => Err(e),
        (Ok(()), None) => Ok(state.count),
        (Err(e), None) if state.array => {
            Err(ApiError::invalid(format!("record {}: {e}", state.count)))
        }
        (Err(e), None) => Err(ApiError::invalid(format!("malformed JSON body: {e}"))),
    }
}

struct BodyState<'f> {
    each: &'f mut dyn FnMut(usize, InRecord) -> Result<(), ApiError>,
    /// `each`'s error, or a record's that does not parse (serde only carries text).
    failed: Option<ApiError>,
    /// Whether the body is an array (errors name the record).
    array: bool,
    count: usize,
}

impl BodyState<'_> {
    fn take<E: de::Error>(&mut self, raw: RawRecord<'_>) -> Result<(), E> {
        let at = self.count;
        let result = match parse_record(&raw) {
            Ok(r) => (self.each)(at, r),
            Err(e) if self.array => Err(ApiError::invalid(format!("record {at}: {}", e.message))),
            Err(e) => Err(e),
        };
        self.count += 1;
        result.map_err(|e| {
            self.failed = Some(e);
            E::custom("stopped")
        })
    }
}

impl<'de> de::DeserializeSeed<'de> for &mut BodyState<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> de::Visitor<'de> for &mut BodyState<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the body must be a record object or an array of them")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let raw = RawRecordVisitor.visit_map(map)?;
        self.take(raw)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.array = true;
        while let Some(raw) = seq.next_element::<RawRecord<'de>>()? {
            self.take(raw)?;
        }
        // Past the array: an error now (trailing characters) is the body's, not a record's.
        self.array = false;
        Ok(())
    }
}

fn parse_field<'a, T: Deserialize<'a>>(
    raw: &RawRecord<'a>,
    name: &str,
    expected: &str,
) -> Result<Option<T>, ApiError> {
    let i = FIELDS.iter().position(|f| *f == name).expect("a known field");
    match raw.0[i] {
        None => Ok(None),
        Some(v) => serde_json::from_str::<Option<T>>(v.get())
            .map_err(|_| ApiError::invalid(format!("{name} must be {expected}"))),
    }
}

fn base64_field(raw: &RawRecord<'_>, name: &str) -> Result<Option<Vec<u8>>, ApiError> {
    parse_field::<String>(raw, name, "a base64 string")?
        .map(|s| {
            BASE64.decode(s).map_err(|e| ApiError::invalid(format!("{name}: not base64: {e}")))
        })
        .transpose()
}

fn parse_record(raw: &RawRecord<'_>) -> Result<InRecord, ApiError> {
    let key =
        match (parse_field::<String>(raw, "key", "a string")?, base64_field(raw, "key_base64")?) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid("give key or key_base64, not both"))
            }
            (Some(k), None) => Some(k.into_bytes()),
            (None, b) => b,
        };
    let text = raw.0[2].filter(|v| v.get() != "null");
    let value = match (text, base64_field(raw, "value_base64")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("give value or value_base64, not both"))
        }
        (Some(v), None) => Some(compact(v.get())),
        (None, b) => b,
    };
    let headers = parse_field::<Headers>(raw, "headers", "an object of strings (or nulls)")?
        .unwrap_or_default();
    let partition = parse_field::<u32>(raw, "partition", "a non-negative integer")?;
    let timestamp_ms = parse_field::<i64>(raw, "timestamp_ms", "an integer")?;
    Ok(InRecord { key, value, headers: headers.0, partition, timestamp_ms })
}

/// A record's headers in the body's order, repeated names kept (Kafka's headers are a list).
#[derive(Default)]
struct Headers(Vec<(String, Option<Vec<u8>>)>);

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Headers;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of strings (or nulls)")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Option<String>>()? {
                    out.push((k, v.map(String::into_bytes)));
                }
                Ok(Headers(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// `raw` (valid JSON text) without the whitespace outside its strings: a value posted as JSON
/// is stored as its compact text, as written otherwise (numbers, key order and repeats kept).
fn compact(raw: &str) -> Vec<u8> {
    let mut out = String::with_capacity(raw.len());
    compact_into(raw, &mut out);
    out.into_bytes()
}

/// Appends `raw` (valid JSON text) to `out` without the whitespace outside its strings (a
/// string holds no raw line break, so the text is one line).
fn compact_into(raw: &str, out: &mut String) {
    let (mut in_string, mut escaped) = (false, false);
    for c in raw.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
}

/// Appends a stored record as JSON text (see the module docs) to `out`. No tree is built:
/// a value that is JSON is checked and copied as its compact text (a parsed tree takes many
/// times its text: a 12 MiB array of zeros made a 200 MB tree per read), and the text has
/// no line breaks (an SSE `data:` line).
pub fn write_json(partition: u32, r: &RecordView<'_>, out: &mut String) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        r#"{{"partition":{partition},"offset":{},"timestamp_ms":{}"#,
        r.offset(),
        r.timestamp_ms()
    );
    match r.key() {
        None => out.push_str(r#","key":null"#),
        Some(k) => match std::str::from_utf8(k) {
            Ok(text) => {
                out.push_str(r#","key":"#);
                push_string(out, text);
            }
            Err(_) => push_base64(out, "key_base64", k),
        },
    }
    match r.value() {
        None => out.push_str(r#","value":null"#),
        Some(v) => match serde_json::from_slice::<&RawValue>(v) {
            Ok(raw) => {
                out.push_str(r#","value":"#);
                compact_into(raw.get(), out);
            }
            Err(_) => push_base64(out, "value_base64", v),
        },
    }
    // A null header value (Kafka's may be null) is JSON null, not an empty string.
    out.push_str(r#","headers":{"#);
    let mut first = true;
    let mut binary = false;
    for h in r.headers() {
        let text = match h.nullable_value() {
            None => None,
            Some(v) => match std::str::from_utf8(v) {
                Ok(text) => Some(text),
                Err(_) => {
                    binary = true;
                    continue;
                }
            },
        };
        if !std::mem::take(&mut first) {
            out.push(',');
        }
        push_string(out, h.key());
        out.push(':');
        match text {
            None => out.push_str("null"),
            Some(text) => push_string(out, text),
        }
    }
    out.push('}');
    if binary {
        out.push_str(r#","headers_base64":{"#);
        let mut first = true;
        for h in r.headers() {
            let Some(v) = h.nullable_value().filter(|v| std::str::from_utf8(v).is_err()) else {
                continue;
            };
            if !std::mem::take(&mut first) {
                out.push(',');
            }
            push_string(out, h.key());
            out.push_str(":\"");
            BASE64.encode_string(v, out);
            out.push('"');
        }
        out.push('}');
    }
    out.push('}');
}

fn push_string(out: &mut String, text: &str) {
    out.push_str(&serde_json::to_string(text).expect("a string serializes"));
}

fn push_base64(out: &mut String, name: &str, bytes: &[u8]) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":\"");
    BASE64.encode_string(bytes, out);
    out.push('"');
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
    use serde_json::Value;

    fn to_json(partition: u32, r: &RecordView<'_>) -> Value {
        let mut text = String::new();
        write_json(partition, r, &mut text);
        assert!(!text.contains('\n'), "one line: {text}");
        serde_json::from_str(&text).expect("write_json writes JSON")
    }

    fn parse_json(body: &[u8]) -> Result<Vec<InRecord>, ApiError> {
        let mut out = Vec::new();
        let count = for_each_json_record(body, |i, r| {
            assert_eq!(i, out.len());
            out.push(r);
            Ok(())
        })?;
        assert_eq!(count, out.len());
        Ok(out)
    }

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
    fn values_are_stored_as_their_compact_text_as_written() {
        let recs = parse_json(
            b"{\"value\": { \"b\" : [1, 2.50, 1e2] ,\n \"a\": \" x \\\" y \", \"b\": null}, \"headers\": {\"h\": \"1\", \"h\": null}}",
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(recs[0].value.as_deref().unwrap()).unwrap(),
            r#"{"b":[1,2.50,1e2],"a":" x \" y ","b":null}"#
        );
        assert_eq!(recs[0].headers, vec![("h".into(), Some(b"1".to_vec())), ("h".into(), None)]);
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
            (br#"[{}, 3]"#, "record 1: invalid type"),
            (br#"[{}, {"key":"a","key":"b"}]"#, "record 1: field \"key\" given twice"),
            (br#"{"headers":{"h":1}}"#, "headers must be"),
            (br#"[{}] x"#, "malformed JSON body: trailing characters"),
            (br#"[]"#, ""),
        ] {
            if body == b"[]" {
                assert!(parse_json(body).unwrap().is_empty());
                continue;
            }
            let e = parse_json(body).unwrap_err();
            assert_eq!(e.code, wire::ErrorCode::InvalidRequest);
            assert!(e.message.contains(why), "{}: {e}", String::from_utf8_lossy(body));
        }
    }
}
