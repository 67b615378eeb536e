//! What a state table keeps per group: a record count and the sum, minimum, maximum and last
//! value of a numeric field, per group key (the record key or a header's value) and, with
//! windows, per tumbling window of record time.
//!
//! Contract: [`AggregateSettings`] is the stored form of `wire::AggregateSpec` (checked by
//! [`AggregateSettings::validate`] when the topic is created); [`Aggregator`] is its parsed
//! form, which says for one record which group and window it belongs to and which number it
//! carries. A record with no group (no key, or no such header) is not counted; a record
//! whose field is missing or not a number counts in `count` but not in `values`. Pure code:
//! the table (`table.rs`) applies records in offset order and the client merges the
//! partitions' partial aggregates of one group with [`Aggregate::merge`]'s rules.

use serde::{Deserialize, Serialize};
use wire::RecordView;

/// Longest JSON path accepted.
pub const JSON_PATH_BYTES_MAX: usize = 256;
/// Most steps in a JSON path.
pub const JSON_PATH_STEPS_MAX: usize = 32;

/// A state table's declaration as stored with its topic (mirrors `wire::AggregateSpec`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateSettings {
    /// Group by this header's value; `None`: by the record key.
    pub group_by_header: Option<String>,
    /// The numeric field as a JSON path into the value.
    pub field_json_path: Option<String>,
    /// Or the numeric field as a header's decimal text.
    pub field_header: Option<String>,
    /// Tumbling windows of record time; 0: the whole stream.
    pub window_ms: u64,
    /// With windows: each group keeps its newest this many; 0: every window.
    #[serde(default)]
    pub windows_kept: u32,
}

impl AggregateSettings {
    /// From the wire form.
    pub fn from_wire(s: &wire::AggregateSpec) -> Self {
        AggregateSettings {
            group_by_header: s.group_by_header.clone(),
            field_json_path: s.field_json_path.clone(),
            field_header: s.field_header.clone(),
            window_ms: s.window_ms,
            windows_kept: s.windows_kept,
        }
    }

    /// To the wire form.
    pub fn to_wire(&self) -> wire::AggregateSpec {
        wire::AggregateSpec {
            group_by_header: self.group_by_header.clone(),
            field_json_path: self.field_json_path.clone(),
            field_header: self.field_header.clone(),
            window_ms: self.window_ms,
            windows_kept: self.windows_kept,
        }
    }

    /// Why this declaration cannot be used, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.field_json_path.is_some() && self.field_header.is_some() {
            return Err("give field_json_path or field_header, not both".into());
        }
        if let Some(path) = &self.field_json_path {
            JsonPath::parse(path)?;
        }
        for (what, h) in
            [("group_by_header", &self.group_by_header), ("field_header", &self.field_header)]
        {
            if let Some(h) = h {
                if h.is_empty() || h.len() > wire::constants::HEADER_KEY_BYTES_MAX {
                    return Err(format!(
                        "{what}: a header name of 1..={} bytes",
                        wire::constants::HEADER_KEY_BYTES_MAX
                    ));
                }
            }
        }
        if self.windows_kept > 0 && self.window_ms == 0 {
            return Err("windows_kept: only with window_ms".into());
        }
        if self.window_ms > i64::MAX as u64 {
            return Err(format!("window_ms: 0 (no windows) or 1..={}", i64::MAX));
        }
        Ok(())
    }
}

/// A parsed JSON path: `$.a.b.0` (names, and indexes into arrays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(Vec<String>);

impl JsonPath {
    /// Parses `$`, `$.a.b`, `a.b` or `$.items.0.price`.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        if text.len() > JSON_PATH_BYTES_MAX {
            return Err(format!("field_json_path: at most {JSON_PATH_BYTES_MAX} bytes"));
        }
        let rest = text.strip_prefix('$').unwrap_or(text);
        let rest = rest.strip_prefix('.').unwrap_or(rest);
        if rest.is_empty() {
            return Ok(JsonPath(Vec::new()));
        }
        let steps: Vec<String> = rest.split('.').map(str::to_owned).collect();
        if steps.iter().any(String::is_empty) {
            return Err(format!("field_json_path {text:?}: an empty step"));
        }
        if steps.len() > JSON_PATH_STEPS_MAX {
            return Err(format!("field_json_path: at most {JSON_PATH_STEPS_MAX} steps"));
        }
        Ok(JsonPath(steps))
    }

    /// The number at this path in `value` (a JSON number, or a string holding one).
    pub fn number_in(&self, value: &[u8]) -> Option<f64> {
        let doc: serde_json::Value = serde_json::from_slice(value).ok()?;
        let mut at = &doc;
        for step in &self.0 {
            at = match at {
                serde_json::Value::Object(map) => map.get(step)?,
                serde_json::Value::Array(items) => items.get(step.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        match at {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|v: &f64| v.is_finite())
    }
}

/// One group's (and window's) aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Aggregate {
    /// Records of the group.
    pub count: u64,
    /// Of them, the records that carried a number.
    pub values: u64,
    /// Sum of the numbers.
    pub sum: f64,
    /// Smallest number (meaningless while `values` is 0).
    pub min: f64,
    /// Largest number.
    pub max: f64,
    /// The latest record's number.
    pub last: f64,
    /// The timestamp of the record `last` came from (orders partitions' partials).
    pub last_timestamp_ms: i64,
    /// Offset of the latest record counted.
    pub last_offset: u64,
}

impl Aggregate {
    /// Counts a record at `offset` with timestamp `timestamp_ms` carrying `value`.
    pub fn add(&mut self, value: Option<f64>, offset: u64, timestamp_ms: i64) {
        self.count += 1;
        self.last_offset = offset;
        let Some(v) = value else { return };
        if self.values == 0 {
            (self.min, self.max) = (v, v);
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.values += 1;
        self.sum += v;
        self.last = v;
        self.last_timestamp_ms = timestamp_ms;
    }

    /// Folds another partition's partial aggregate of the same group into this one.
    pub fn merge(&mut self, other: &Aggregate) {
        if other.values > 0 {
            if self.values == 0 {
                (self.min, self.max) = (other.min, other.max);
            } else {
                self.min = self.min.min(other.min);
                self.max = self.max.max(other.max);
            }
            if self.values == 0 || other.last_timestamp_ms >= self.last_timestamp_ms {
                (self.last, self.last_timestamp_ms) = (other.last, other.last_timestamp_ms);
            }
            self.sum += other.sum;
            self.values += other.values;
        }
        self.count += other.count;
    }

    /// The JSON object a table entry carries (`min`, `max`, `last` are null without values).
    pub fn to_json(&self) -> Vec<u8> {
        let number =
            |v: f64| if self.values > 0 { serde_json::json!(v) } else { serde_json::Value::Null };
        serde_json::to_vec(&serde_json::json!({
            "count": self.count,
            "values": self.values,
            "sum": self.sum,
            "min": number(self.min),
            "max": number(self.max),
            "last": number(self.last),
            "last_timestamp_ms": self.last_timestamp_ms,
        }))
        .expect("plain data")
    }

    /// Reads what [`Aggregate::to_json`] wrote (clients merging partitions).
    pub fn from_json(bytes: &[u8]) -> Option<Aggregate> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let f = |name: &str| v.get(name).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        Some(Aggregate {
            count: v.get("count")?.as_u64()?,
            values: v.get("values")?.as_u64()?,
            sum: f("sum"),
            min: f("min"),
            max: f("max"),
            last: f("last"),
            last_timestamp_ms: v.get("last_timestamp_ms").and_then(serde_json::Value::as_i64)?,
            last_offset: 0,
        })
    }
}

/// [`AggregateSettings`] ready to apply to records.
#[derive(Debug, Clone)]
pub struct Aggregator {
    settings: AggregateSettings,
    path: Option<JsonPath>,
}

impl Aggregator {
    /// Parses `settings` (validated when the topic was created).
    pub fn new(settings: &AggregateSettings) -> Result<Aggregator, String> {
        settings.validate()?;
        let path = settings.field_json_path.as_deref().map(JsonPath::parse).transpose()?;
        Ok(Aggregator { settings: settings.clone(), path })
    }

    /// What it aggregates.
    pub fn settings(&self) -> &AggregateSettings {
        &self.settings
    }

    /// The record's group key and window start (0 without windows); `None`: not counted.
    pub fn group(&self, r: &RecordView<'_>) -> Option<(Vec<u8>, i64)> {
        let key = match &self.settings.group_by_header {
            None => r.key()?.to_vec(),
            Some(name) => r.headers().find(|h| h.key() == name)?.value().to_vec(),
        };
        let window = match self.settings.window_ms {
            0 => 0,
            w => {
                // Saturating: a client's timestamp near i64::MIN would overflow.
                let w = w as i64;
                r.timestamp_ms().saturating_sub(r.timestamp_ms().rem_euclid(w))
            }
        };
        Some((key, window))
    }

    /// How many windows each group keeps (0: all).
    pub fn windows_kept(&self) -> usize {
        self.settings.windows_kept as usize
    }

    /// The number the record carries, if any.
    pub fn value(&self, r: &RecordView<'_>) -> Option<f64> {
        if let Some(path) = &self.path {
            return path.number_in(r.value()?);
        }
        let name = self.settings.field_header.as_ref()?;
        let text = r.headers().find(|h| h.key() == name)?.value();
        std::str::from_utf8(text).ok()?.trim().parse::<f64>().ok().filter(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_find_numbers_and_refuse_nonsense() {
        let p = JsonPath::parse("$.order.items.1.price").unwrap();
        let doc = br#"{"order":{"items":[{"price":1},{"price":"2.5"}]}}"#;
        assert_eq!(p.number_in(doc), Some(2.5));
        assert_eq!(JsonPath::parse("amount").unwrap().number_in(br#"{"amount":-3}"#), Some(-3.0));
        assert_eq!(JsonPath::parse("$").unwrap().number_in(b"42"), Some(42.0));
        assert_eq!(JsonPath::parse("$.a").unwrap().number_in(b"not json"), None);
        assert_eq!(JsonPath::parse("$.a").unwrap().number_in(br#"{"a":true}"#), None);
        assert!(JsonPath::parse("$.a..b").is_err());
        assert!(JsonPath::parse(&"a.".repeat(200)).is_err());
    }

    #[test]
    fn partial_aggregates_merge_to_the_whole() {
        let values =
            [(Some(3.0), 10), (None, 11), (Some(-1.0), 12), (Some(7.5), 13), (Some(2.0), 14)];
        let mut whole = Aggregate::default();
        let (mut a, mut b) = (Aggregate::default(), Aggregate::default());
        for (i, (v, ts)) in values.iter().enumerate() {
            whole.add(*v, i as u64, *ts);
            if i % 2 == 0 {
                a.add(*v, i as u64, *ts)
            } else {
                b.add(*v, i as u64, *ts)
            }
        }
        let mut merged = Aggregate::default();
        merged.merge(&b);
        merged.merge(&a);
        assert_eq!((merged.count, merged.values, merged.sum), (5, 4, 11.5));
        assert_eq!((merged.min, merged.max, merged.last), (-1.0, 7.5, 2.0));
        assert_eq!(
            (whole.count, whole.values, whole.sum, whole.min, whole.max, whole.last),
            (5, 4, 11.5, -1.0, 7.5, 2.0)
        );
        let back = Aggregate::from_json(&whole.to_json()).unwrap();
        assert_eq!((back.count, back.sum, back.last, back.last_timestamp_ms), (5, 11.5, 2.0, 14));
    }

    #[test]
    fn settings_are_checked() {
        let mut s = AggregateSettings {
            group_by_header: None,
            field_json_path: Some("$.x".into()),
            field_header: Some("h".into()),
            window_ms: 0,
            windows_kept: 0,
        };
        assert!(s.validate().is_err());
        s.field_header = None;
        assert!(s.validate().is_ok());
        s.windows_kept = 3;
        assert!(s.validate().is_err(), "windows_kept without windows");
        s.window_ms = 60_000;
        assert!(s.validate().is_ok());
        s.group_by_header = Some(String::new());
        assert!(s.validate().is_err());
    }

    /// A record's window start from a client's timestamp near `i64::MIN` saturates instead of
    /// overflowing (a panic in a debug build, a wrapped window in release).
    #[test]
    fn a_window_of_the_earliest_timestamp_does_not_overflow() {
        let settings = AggregateSettings {
            group_by_header: None,
            field_json_path: None,
            field_header: None,
            window_ms: 60_000,
            windows_kept: 0,
        };
        let aggregator = Aggregator::new(&settings).unwrap();
        let mut b = wire::BatchBuilder::new(1 << 10);
        b.append(i64::MIN, Some(b"k"), Some(b"1"), &[]).unwrap();
        let batch = b.finish().unwrap();
        let view = wire::BatchView::validate(&batch).unwrap();
        let r = view.records().next().unwrap();
        assert_eq!(aggregator.group(&r), Some((b"k".to_vec(), i64::MIN)));
    }
}
