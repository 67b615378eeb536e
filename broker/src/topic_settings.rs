//! A topic's settings as stored: what a new topic may ask for
//! ([`TopicSettings::validate`]), what they make of the broker's log defaults
//! ([`TopicSettings::log_config`]), and which of them an existing topic may change
//! ([`TopicSettings::altered`]: retention, rolling, compaction, tombstone retention,
//! default ack; its partitions take the change while open, `storage/log/live_config.rs`).

use serde::{Deserialize, Serialize};
use wire::AckLevel;

use crate::aggregate::AggregateSettings;
use crate::metadata_error::MetadataError;
use crate::storage::{LogConfig, SEGMENT_BYTES_LIMIT, SEGMENT_BYTES_MIN};

/// Most partitions one topic may have.
pub const TOPIC_PARTITIONS_MAX: u32 = 100_000;

/// Smallest `batch_bytes_max` a topic may set: the smallest batch the format's length
/// relations allow (the header and one 16-byte line of records). Below it nothing could be
/// produced.
pub const TOPIC_BATCH_BYTES_MIN: u32 =
    (wire::constants::BATCH_HEADER_BYTES + wire::constants::BODY_ALIGN) as u32;
const _: () = assert!(TOPIC_BATCH_BYTES_MIN <= wire::constants::BATCH_BYTES_MAX);

/// A topic's settings as stored (mirrors `wire::TopicConfig`). [`TopicSettings::validate`]
/// says which values a new topic may have; topics stored before a rule existed keep their
/// values and [`TopicSettings::log_config`] reads them as it always did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSettings {
    /// Number of partitions: 1..=[`TOPIC_PARTITIONS_MAX`].
    pub partition_count: u32,
    /// Retention by time; -1 forever, 0 = broker default.
    pub retention_ms: i64,
    /// Retention by size; -1 unlimited, 0 = broker default.
    pub retention_bytes: i64,
    /// Segment roll size; 0 = broker default.
    pub segment_bytes_max: u64,
    /// Segment roll age; -1 = never by age, 0 = broker default.
    pub segment_ms: i64,
    /// `none`, `written` or `durable`.
    pub default_ack: String,
    /// Largest batch; 0 = broker default.
    pub batch_bytes_max: u32,
    /// A projection table is kept per partition (`table.rs`).
    #[serde(default)]
    pub table: bool,
    /// With `table`: a state table of these aggregates instead (`aggregate.rs`).
    #[serde(default)]
    pub aggregate: Option<AggregateSettings>,
    /// Compaction: closed segments keep each key's latest record (`storage/log/cleaner.rs`).
    #[serde(default)]
    pub compact: bool,
    /// With `compact`: expired tombstones go after this long; 0 = default, -1 = never.
    #[serde(default)]
    pub delete_retention_ms: i64,
}

impl TopicSettings {
    /// The log settings of this topic: `base` (the broker's `[log]` defaults) overridden by
    /// every setting the topic gives (0 = use the default).
    pub fn log_config(&self, base: &LogConfig) -> LogConfig {
        let mut c = base.clone();
        if self.retention_ms != 0 {
            c.retention_ms = self.retention_ms;
        } else if self.compact {
            c.retention_ms = -1; // compacted: kept by key, not by age, unless asked
        }
        if self.retention_bytes != 0 {
            c.retention_bytes = self.retention_bytes;
        } else if self.compact {
            c.retention_bytes = -1;
        }
        c.compact = self.compact;
        if self.delete_retention_ms > 0 {
            c.delete_retention_ms = self.delete_retention_ms;
        } else if self.delete_retention_ms == -1 {
            c.delete_retention_ms = i64::MAX;
        }
        if self.segment_bytes_max > 0 {
            // A topic stored before the limit was checked gets the most the index addresses.
            c.segment_bytes_max = self.segment_bytes_max.min(SEGMENT_BYTES_LIMIT);
        }
        if self.segment_ms > 0 {
            c.segment_ms = self.segment_ms;
        } else if self.segment_ms == -1 {
            c.segment_ms = 0; // the log's "never by age"
        }
        if self.batch_bytes_max > 0 {
            c.batch_bytes_max = self.batch_bytes_max as usize;
            c.write_bytes_max = c.write_bytes_max.max(c.batch_bytes_max);
        }
        c
    }

    /// Checks every setting a new topic asks for; the error names the first bad field and
    /// what it allows.
    pub fn validate(&self) -> Result<(), MetadataError> {
        let bad = |field: &'static str, value: String, allowed: String| {
            Err(MetadataError::InvalidConfig { field, value, allowed })
        };
        if !(1..=TOPIC_PARTITIONS_MAX).contains(&self.partition_count) {
            let allowed = format!("1..={TOPIC_PARTITIONS_MAX}");
            return bad("partition_count", self.partition_count.to_string(), allowed);
        }
        let limits = [
            ("retention_ms", self.retention_ms, "-1 (keep forever)", "milliseconds"),
            ("retention_bytes", self.retention_bytes, "-1 (no limit)", "bytes"),
            ("segment_ms", self.segment_ms, "-1 (never roll by age)", "milliseconds"),
            (
                "delete_retention_ms",
                self.delete_retention_ms,
                "-1 (keep tombstones)",
                "milliseconds",
            ),
        ];
        for (field, value, minus_one, unit) in limits {
            if value < -1 {
                let allowed = format!("{minus_one}, 0 (broker default) or 1..={} {unit}", i64::MAX);
                return bad(field, value.to_string(), allowed);
            }
        }
        let segment = self.segment_bytes_max;
        if segment != 0 && !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_LIMIT).contains(&segment) {
            let allowed =
                format!("0 (broker default) or {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_LIMIT} bytes");
            return bad("segment_bytes_max", segment.to_string(), allowed);
        }
        let batch = self.batch_bytes_max;
        let batch_max = wire::constants::BATCH_BYTES_MAX;
        if batch != 0 && !(TOPIC_BATCH_BYTES_MIN..=batch_max).contains(&batch) {
            let allowed =
                format!("0 (broker default) or {TOPIC_BATCH_BYTES_MIN}..={batch_max} bytes");
            return bad("batch_bytes_max", batch.to_string(), allowed);
        }
        if let Some(a) = &self.aggregate {
            if !self.table {
                let allowed = "only with table = true".to_owned();
                return bad("aggregate", format!("{a:?}"), allowed);
            }
            if let Err(why) = a.validate() {
                return bad("aggregate", format!("{a:?}"), why);
            }
        }
        if AckLevel::parse(&self.default_ack).is_none() {
            let allowed = "none, written or durable".to_owned();
            return bad("default_ack", format!("{:?}", self.default_ack), allowed);
        }
        Ok(())
    }

    /// From the wire form.
    pub fn from_wire(c: &wire::TopicConfig) -> Self {
        TopicSettings {
            partition_count: c.partition_count,
            retention_ms: c.retention_ms,
            retention_bytes: c.retention_bytes,
            segment_bytes_max: c.segment_bytes_max,
            segment_ms: c.segment_ms,
            default_ack: c.default_ack.name().to_owned(),
            batch_bytes_max: c.batch_bytes_max,
            table: c.table,
            aggregate: c.aggregate.as_ref().map(AggregateSettings::from_wire),
            compact: c.compact,
            delete_retention_ms: c.delete_retention_ms,
        }
    }

    /// To the wire form.
    pub fn to_wire(&self) -> wire::TopicConfig {
        wire::TopicConfig {
            partition_count: self.partition_count,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            segment_bytes_max: self.segment_bytes_max,
            segment_ms: self.segment_ms,
            default_ack: AckLevel::parse(&self.default_ack).unwrap_or(AckLevel::Durable),
            batch_bytes_max: self.batch_bytes_max,
            table: self.table,
            aggregate: self.aggregate.as_ref().map(AggregateSettings::to_wire),
            compact: self.compact,
            delete_retention_ms: self.delete_retention_ms,
        }
    }

    /// The topic's default ack level.
    pub fn default_ack(&self) -> AckLevel {
        AckLevel::parse(&self.default_ack).unwrap_or(AckLevel::Durable)
    }

    /// These settings with `changes` made (a setting's name and its new value as text;
    /// empty: back to the broker default), checked as a new topic's are. Only
    /// [`ALTERABLE_SETTINGS`] change: partitions grow with `CreatePartitions`; a table, an
    /// aggregate and the batch limit are fixed at creation.
    pub fn altered(&self, changes: &[(String, String)]) -> Result<TopicSettings, MetadataError> {
        let mut next = self.clone();
        // Only the changed fields are checked, on an otherwise default topic: one stored
        // before a rule existed keeps what it had, and can still change.
        let mut probe = TopicSettings::from_wire(&wire::TopicConfig {
            partition_count: 1,
            ..Default::default()
        });
        for (name, value) in changes {
            let Some(&field) = ALTERABLE_SETTINGS.iter().find(|&&f| f == name) else {
                let fixed = ["partition_count", "table", "aggregate", "batch_bytes_max"];
                let allowed = if fixed.contains(&name.as_str()) {
                    format!("one of {ALTERABLE_SETTINGS:?} ({name} is fixed at creation)")
                } else {
                    format!("one of {ALTERABLE_SETTINGS:?}")
                };
                return Err(MetadataError::InvalidConfig {
                    field: "setting",
                    value: name.clone(),
                    allowed,
                });
            };
            next.set(field, value.trim())?;
            probe.set(field, value.trim())?;
        }
        probe.validate()?;
        if self.compact && !next.compact {
            // A compacted topic's unset retention is "forever" (`log_config`); without
            // compaction it would become the broker's, and the next retention pass would
            // delete what the topic kept. What it kept stays unless retention is named.
            let named = |f: &str| changes.iter().any(|(name, _)| name == f);
            if !named("retention_ms") && next.retention_ms == 0 {
                next.retention_ms = -1;
            }
            if !named("retention_bytes") && next.retention_bytes == 0 {
                next.retention_bytes = -1;
            }
        }
        Ok(next)
    }

    /// Sets one of [`ALTERABLE_SETTINGS`] from its text (empty: the broker default).
    fn set(&mut self, field: &'static str, value: &str) -> Result<(), MetadataError> {
        let number = |allowed: &str| -> Result<i64, MetadataError> {
            if value.is_empty() {
                return Ok(0);
            }
            value.parse().map_err(|_| MetadataError::InvalidConfig {
                field,
                value: value.to_owned(),
                allowed: allowed.to_owned(),
            })
        };
        match field {
            "retention_ms" => self.retention_ms = number("an integer (milliseconds)")?,
            "retention_bytes" => self.retention_bytes = number("an integer (bytes)")?,
            "segment_ms" => self.segment_ms = number("an integer (milliseconds)")?,
            "delete_retention_ms" => {
                self.delete_retention_ms = number("an integer (milliseconds)")?
            }
            // Compaction on or off from the next pass (`storage/log/live_config.rs`).
            "compact" => {
                self.compact = match value {
                    "" | "false" => false,
                    "true" => true,
                    _ => {
                        return Err(MetadataError::InvalidConfig {
                            field,
                            value: value.to_owned(),
                            allowed: "true, false or empty (the default: false)".to_owned(),
                        })
                    }
                }
            }
            "segment_bytes_max" => {
                let bytes = number("an integer (bytes)")?;
                self.segment_bytes_max =
                    u64::try_from(bytes).map_err(|_| MetadataError::InvalidConfig {
                        field,
                        value: value.to_owned(),
                        allowed: format!(
                            "0 (broker default) or {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_LIMIT} bytes"
                        ),
                    })?;
            }
            _ => {
                // default_ack
                self.default_ack = match value {
                    "" => AckLevel::Durable.name().to_owned(),
                    v => v.to_owned(),
                }
            }
        }
        Ok(())
    }
}

/// The settings an existing topic may change ([`TopicSettings::altered`]), by their
/// `wire::TopicConfig` names.
pub const ALTERABLE_SETTINGS: [&str; 7] = [
    "retention_ms",
    "retention_bytes",
    "segment_bytes_max",
    "segment_ms",
    "delete_retention_ms",
    "default_ack",
    "compact",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TopicSettings {
        TopicSettings::from_wire(&wire::TopicConfig { partition_count: 3, ..Default::default() })
    }

    fn change(name: &str, value: &str) -> Vec<(String, String)> {
        vec![(name.to_owned(), value.to_owned())]
    }

    #[test]
    fn only_alterable_settings_change_and_each_is_checked() {
        let s = settings();
        let next = s.altered(&change("retention_ms", "5000")).unwrap();
        assert_eq!((next.retention_ms, next.partition_count), (5000, 3));
        let next = next.altered(&change("retention_ms", "")).unwrap();
        assert_eq!(next.retention_ms, 0, "empty: back to the broker default");
        let next = s.altered(&change("default_ack", "written")).unwrap();
        assert_eq!(next.default_ack(), AckLevel::Written);
        let next = s.altered(&change("compact", "true")).unwrap();
        assert!(next.compact);
        assert_eq!(next.log_config(&LogConfig::default()).retention_ms, -1, "kept by key");
        // Off again: what it kept stays (retention forever) unless retention is named.
        let off = next.altered(&change("compact", "")).unwrap();
        assert_eq!((off.compact, off.retention_ms, off.retention_bytes), (false, -1, -1));
        let named =
            [("compact".to_owned(), "false".to_owned()), ("retention_ms".into(), "".into())];
        let off = next.altered(&named).unwrap();
        assert_eq!((off.retention_ms, off.retention_bytes), (0, -1));
        for (name, value) in [
            ("compact", "yes"),
            ("table", "true"),
            ("partition_count", "9"),
            ("nope", "1"),
            ("retention_ms", "-2"),
            ("segment_bytes_max", "1"),
            ("default_ack", "maybe"),
        ] {
            let refused = s.altered(&change(name, value));
            assert!(matches!(refused, Err(MetadataError::InvalidConfig { .. })), "{name}={value}");
        }
    }

    /// A topic stored before a rule existed (here a batch limit below today's minimum) can
    /// still change what may change; a bad changed value is refused all the same.
    #[test]
    fn a_topic_stored_before_a_rule_can_still_change() {
        let legacy = TopicSettings { batch_bytes_max: 10, ..settings() };
        assert!(legacy.validate().is_err());
        let next = legacy.altered(&change("retention_bytes", "4096")).unwrap();
        assert_eq!((next.retention_bytes, next.batch_bytes_max), (4096, 10));
        assert!(legacy.altered(&change("retention_bytes", "-7")).is_err());
    }
}
