//! Topic metadata: which topics exist, their settings, and which shard owns each partition.
//!
//! One immutable [`Metadata`] snapshot is shared (`Arc`) by all shards. Changes are made by
//! shard 0 alone (others forward create/delete to it), persisted to `<data>/topics.json`
//! (write to a temp file, fsync, rename, fsync the directory), and then broadcast to every
//! shard, which opens or removes its partitions before the change is acknowledged.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::aggregate::AggregateSettings;

/// Name of the metadata file inside the data directory.
pub const METADATA_FILE: &str = "topics.json";
/// Longest topic name in bytes.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
pub use crate::metadata_error::MetadataError;
pub use crate::topic_settings::{TopicSettings, TOPIC_BATCH_BYTES_MIN, TOPIC_PARTITIONS_MAX};

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    /// Name.
    pub name: String,
    /// Unique per incarnation: a topic deleted and created again gets a new id.
    pub id: u64,
    /// Settings.
    pub settings: TopicSettings,
    /// `shards[p]` owns partition `p`.
    pub shards: Vec<u32>,
}

/// A snapshot of every topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Increases with every change.
    pub version: u64,
    /// Next topic id.
    pub next_topic_id: u64,
    /// Topics by name.
    pub topics: BTreeMap<String, Topic>,
    /// Idempotent producer ids below this are (or were) handed out (`api/producer_id.rs`).
    #[serde(default)]
    pub producer_ids_reserved: i64,
    /// Transactional id → its producer id and current epoch.
    #[serde(default)]
    pub transactional_ids: BTreeMap<String, (i64, i16)>,
    /// Transactional id → when its producer last initialized (ms since the epoch); an id
    /// missing here (stored before this was kept) counts as unused since the epoch.
    #[serde(default)]
    pub transactional_ids_used_ms: BTreeMap<String, i64>,
    /// Producer id → current epoch, for the ids of transactional producers: batches of an
    /// older epoch are refused on every partition.
    #[serde(default)]
    pub producer_epochs: BTreeMap<i64, i16>,
    /// State tables declared over topics, by name (`table.rs`, `api/table_admin.rs`).
    #[serde(default)]
    pub tables: BTreeMap<String, DerivedTable>,
}

/// A state table over a topic: its name, the topic (and incarnation) it aggregates, and
/// what it keeps. Its partitions are the topic's, kept on their owners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivedTable {
    /// Name (shares the topics' namespace).
    pub name: String,
    /// The topic.
    pub topic: String,
    /// The topic's incarnation when the table was declared.
    pub topic_id: u64,
    /// What it keeps.
    pub aggregate: AggregateSettings,
}

impl DerivedTable {
    /// The wire form metadata lists.
    pub fn to_wire(&self) -> wire::TableMetadata {
        wire::TableMetadata {
            name: self.name.clone(),
            topic: self.topic.clone(),
            aggregate: self.aggregate.to_wire(),
        }
    }
}

/// Whether `name` follows the naming rule of topics: 1..=249 bytes of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= TOPIC_NAME_BYTES_MAX
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Whether `id` may name a consumer group or a transactional producer: 1..=249 bytes of
/// UTF-8 without control characters. Kafka takes any string (applications use spaces,
/// colons, slashes: `connect-my sink`, `app:orders`); ids are only keys here (the offsets
/// record key `group/topic/partition` is split from its right, and topic names have no
/// `/`), never paths. Control characters are refused so ids print as they are in logs, the
/// CLI and metric labels (which escape `\`, `"` and line breaks).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= TOPIC_NAME_BYTES_MAX && !id.chars().any(char::is_control)
}

/// Checks a topic name against Kafka's rule: 1..=249 bytes of `[A-Za-z0-9._-]`, not `.` or
/// `..`. A leading `.` is allowed, as in Kafka: a topic's directory is one component under
/// `topics~/` (see `layout.rs`), so no valid name can reach a file of the broker.
pub fn validate_name(name: &str) -> Result<(), MetadataError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(MetadataError::InvalidName(name.to_owned()))
    }
}

impl Metadata {
    /// The topic called `name`.
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    /// The id of the topic called `name` (a topic created again under a name gets a new one).
    pub fn topic_id(&self, name: &str) -> Option<u64> {
        self.topic(name).map(|t| t.id)
    }

    /// A new snapshot with the topic added; partitions go to the least-loaded shards.
    pub fn with_topic(
        &self,
        name: &str,
        settings: TopicSettings,
        shard_count: u32,
    ) -> Result<Metadata, MetadataError> {
        validate_name(name)?;
        if self.topics.contains_key(name) || self.tables.contains_key(name) {
            return Err(MetadataError::Exists(name.to_owned()));
        }
        settings.validate()?;
        let shards = self.place(settings.partition_count, shard_count);
        let mut next = self.clone();
        next.version += 1;
        next.next_topic_id += 1;
        next.topics.insert(
            name.to_owned(),
            Topic { name: name.to_owned(), id: self.next_topic_id, settings, shards },
        );
        Ok(next)
    }

    /// Owners for `count` new partitions: each the least loaded of `shard_count` shards
    /// (counting every topic's partitions and those placed so far).
    fn place(&self, count: u32, shard_count: u32) -> Vec<u32> {
        let mut load = vec![0u64; shard_count.max(1) as usize];
        for &s in self.topics.values().flat_map(|t| &t.shards) {
            if let Some(l) = load.get_mut(s as usize) {
                *l += 1;
            }
        }
        let mut shards = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let (s, _) =
                load.iter().enumerate().min_by_key(|&(i, l)| (*l, i)).expect("at least one shard");
            load[s] += 1;
            shards.push(s as u32);
        }
        shards
    }

    /// A new snapshot in which topic `name`'s settings have `changes` made
    /// ([`TopicSettings::altered`]); its id, partitions and owners stay.
    pub fn with_settings(
        &self,
        name: &str,
        changes: &[(String, String)],
    ) -> Result<Metadata, MetadataError> {
        let t = self.topic(name).ok_or_else(|| MetadataError::Unknown(name.to_owned()))?;
        let settings = t.settings.altered(changes)?;
        let state_tables =
            settings.aggregate.is_some() || self.tables_of(name, t.id).next().is_some();
        if settings.compact && !t.settings.compact && state_tables {
            return Err(MetadataError::InvalidConfig {
                field: "compact",
                value: "true".into(),
                allowed: "false while a state table aggregates the topic (it counts every record: \
                          after a restart it replays the log, which compaction would have thinned)"
                    .into(),
            });
        }
        let mut next = self.clone();
        next.topics.get_mut(name).expect("looked up above").settings = settings;
        next.version += 1;
        Ok(next)
    }

    /// A new snapshot in which topic `name` has `partition_count` partitions, the new ones
    /// on the least loaded shards; the others, their ids and owners stay. A projection table
    /// (`table` without an aggregate) cannot grow: its lookups go by a key's partition.
    pub fn with_partitions(
        &self,
        name: &str,
        partition_count: u32,
        shard_count: u32,
    ) -> Result<Metadata, MetadataError> {
        let t = self.topic(name).ok_or_else(|| MetadataError::Unknown(name.to_owned()))?;
        let now = t.settings.partition_count;
        if t.settings.table && t.settings.aggregate.is_none() {
            // Its lookups go to a key's partition by the count: keys written before would
            // be looked for, deleted and conditioned on in the wrong partition.
            return Err(MetadataError::InvalidConfig {
                field: "partition_count",
                value: partition_count.to_string(),
                allowed: format!("{now}: a projection table's keys stay on their partitions"),
            });
        }
        if partition_count <= now || partition_count > TOPIC_PARTITIONS_MAX {
            return Err(MetadataError::InvalidConfig {
                field: "partition_count",
                value: partition_count.to_string(),
                allowed: format!("{}..={TOPIC_PARTITIONS_MAX} (more than now)", now + 1),
            });
        }
        let mut next = self.clone();
        let mut shards = t.shards.clone();
        shards.extend(self.place(partition_count - now, shard_count));
        let topic = next.topics.get_mut(name).expect("looked up above");
        topic.shards = shards;
        topic.settings.partition_count = partition_count;
        next.version += 1;
        Ok(next)
    }

    /// A new snapshot in which every partition owned by a shard at or above `shard_count`
    /// (the broker restarted with fewer shards) belongs to the least loaded shard below it,
    /// with how many moved; `None` when none has to. A partition's files do not depend on
    /// its shard, so its new owner simply opens them.
    pub fn with_owners_below(&self, shard_count: u32) -> Option<(Metadata, usize)> {
        let shard_count = shard_count.max(1);
        let mut load = vec![0u64; shard_count as usize];
        let mut stray = 0;
        for t in self.topics.values() {
            for &s in &t.shards {
                match load.get_mut(s as usize) {
                    Some(l) => *l += 1,
                    None => stray += 1,
                }
            }
        }
        if stray == 0 {
            return None;
        }
        let mut next = self.clone();
        next.version += 1;
        for t in next.topics.values_mut() {
            for s in t.shards.iter_mut().filter(|s| **s >= shard_count) {
                let (least, _) =
                    load.iter().enumerate().min_by_key(|&(i, l)| (*l, i)).expect("a shard");
                load[least] += 1;
                *s = least as u32;
            }
        }
        Some((next, stray))
    }

    /// A new snapshot in which topic `name` has `settings` (its id and owners kept; the
    /// partition count cannot change).
    pub fn with_topic_settings(
        &self,
        name: &str,
        settings: TopicSettings,
    ) -> Result<Metadata, MetadataError> {
        settings.validate()?;
        let mut next = self.clone();
        let Some(topic) = next.topics.get_mut(name) else {
            return Err(MetadataError::Unknown(name.to_owned()));
        };
        assert_eq!(
            topic.settings.partition_count, settings.partition_count,
            "with_topic_settings cannot change the partition count"
        );
        topic.settings = settings;
        next.version += 1;
        Ok(next)
    }

    /// A new snapshot without the topic.
    pub fn without_topic(&self, name: &str) -> Result<Metadata, MetadataError> {
        if !self.topics.contains_key(name) {
            return Err(MetadataError::Unknown(name.to_owned()));
        }
        let mut next = self.clone();
        next.version += 1;
        next.topics.remove(name);
        // Its state tables go with it.
        next.tables.retain(|_, t| t.topic != name);
        Ok(next)
    }

    /// A new snapshot with state table `name` over `topic` added.
    pub fn with_table(
        &self,
        name: &str,
        topic: &str,
        aggregate: AggregateSettings,
    ) -> Result<Metadata, MetadataError> {
        validate_name(name)?;
        if self.topics.contains_key(name) || self.tables.contains_key(name) {
            return Err(MetadataError::Exists(name.to_owned()));
        }
        let t = self.topic(topic).ok_or_else(|| MetadataError::Unknown(topic.to_owned()))?;
        if t.settings.compact {
            // It counts every record, and replays the log after a restart: compaction
            // would have removed some.
            return Err(MetadataError::InvalidConfig {
                field: "topic",
                value: topic.to_owned(),
                allowed: "a topic without compaction (a state table counts every record)".into(),
            });
        }
        if let Err(allowed) = aggregate.validate() {
            let value = format!("{aggregate:?}");
            return Err(MetadataError::InvalidConfig { field: "aggregate", value, allowed });
        }
        let mut next = self.clone();
        next.version += 1;
        let table = DerivedTable {
            name: name.to_owned(),
            topic: topic.to_owned(),
            topic_id: t.id,
            aggregate,
        };
        next.tables.insert(name.to_owned(), table);
        Ok(next)
    }

    /// A new snapshot without state table `name`.
    pub fn without_table(&self, name: &str) -> Result<Metadata, MetadataError> {
        if !self.tables.contains_key(name) {
            return Err(MetadataError::UnknownTable(name.to_owned()));
        }
        let mut next = self.clone();
        next.version += 1;
        next.tables.remove(name);
        Ok(next)
    }

    /// The state tables over `topic` (incarnation `topic_id`).
    pub fn tables_of<'a>(
        &'a self,
        topic: &'a str,
        topic_id: u64,
    ) -> impl Iterator<Item = &'a DerivedTable> + 'a {
        self.tables.values().filter(move |t| t.topic == topic && t.topic_id == topic_id)
    }

    /// Loads `<data_dir>/topics.json`, or an empty table if there is none.
    pub fn load(data_dir: &Path) -> std::io::Result<Metadata> {
        let path = data_dir.join(METADATA_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Metadata::default()),
            Err(e) => Err(e),
        }
    }

    /// Persists atomically and durably.
    pub fn store(&self, data_dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::durable_file::write_atomic(data_dir, METADATA_FILE, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{LogConfig, SEGMENT_BYTES_LIMIT};

    fn settings(p: u32) -> TopicSettings {
        TopicSettings::from_wire(&wire::TopicConfig {
            partition_count: p,
            retention_ms: -1,
            retention_bytes: -1,
            ..Default::default()
        })
    }

    #[test]
    fn partitions_spread_evenly_across_shards() {
        let m = Metadata::default().with_topic("a", settings(8), 2).unwrap();
        assert_eq!(m.topic("a").unwrap().shards, vec![0, 1, 0, 1, 0, 1, 0, 1]);
        let m = m.with_topic("b", settings(3), 3).unwrap();
        let b = &m.topic("b").unwrap().shards;
        assert_eq!(b, &vec![2, 2, 2]);
        assert!(matches!(m.with_topic("a", settings(1), 2), Err(MetadataError::Exists(_))));
        assert!(matches!(m.with_topic("../x", settings(1), 2), Err(MetadataError::InvalidName(_))));
        assert!(matches!(
            m.with_topic("z", settings(0), 2),
            Err(MetadataError::InvalidConfig { field: "partition_count", .. })
        ));
        let m2 = m.without_topic("a").unwrap();
        assert!(m2.topic("a").is_none());
        assert!(m2.version > m.version);
    }

    /// Growing a topic keeps its partitions where they are and places the new ones on the
    /// least loaded shards; it never shrinks, and keeps the topic's id.
    #[test]
    fn a_grown_topic_keeps_its_partitions_and_places_the_new_ones_evenly() {
        let m = Metadata::default().with_topic("a", settings(3), 2).unwrap();
        let m = m.with_topic("b", settings(1), 2).unwrap();
        assert_eq!(m.topic("a").unwrap().shards, vec![0, 1, 0]);
        assert_eq!(m.topic("b").unwrap().shards, vec![1]);
        let grown = m.with_partitions("a", 6, 2).unwrap();
        let a = grown.topic("a").unwrap();
        assert_eq!(a.shards, vec![0, 1, 0, 0, 1, 0], "2 and 2 before: then 0, 1, 0");
        assert_eq!((a.settings.partition_count, a.id), (6, m.topic("a").unwrap().id));
        assert!(grown.version > m.version);
        for (count, what) in [(6, "the same"), (2, "fewer")] {
            let refused = grown.with_partitions("a", count, 2);
            assert!(
                matches!(refused, Err(MetadataError::InvalidConfig { .. })),
                "{what}: {refused:?}"
            );
        }
        assert!(matches!(grown.with_partitions("nope", 9, 2), Err(MetadataError::Unknown(_))));
        let table = TopicSettings { table: true, ..settings(2) };
        let m = grown.with_topic("t", table, 2).unwrap();
        assert!(
            matches!(m.with_partitions("t", 4, 2), Err(MetadataError::InvalidConfig { .. })),
            "a projection table's keys would be looked for in the wrong partition"
        );
    }

    #[test]
    fn partitions_of_shards_beyond_a_lowered_count_move_to_the_least_loaded() {
        let m = Metadata::default().with_topic("a", settings(6), 3).unwrap();
        assert_eq!(m.topic("a").unwrap().shards, vec![0, 1, 2, 0, 1, 2]);
        assert!(m.with_owners_below(3).is_none(), "nothing to move");
        let (next, moved) = m.with_owners_below(2).unwrap();
        assert_eq!(moved, 2);
        assert_eq!(next.topic("a").unwrap().shards, vec![0, 1, 0, 0, 1, 1]);
        assert!(next.version > m.version);
        let (one, moved) = m.with_owners_below(1).unwrap();
        assert_eq!((moved, one.topic("a").unwrap().shards.clone()), (4, vec![0; 6]));
    }

    #[test]
    fn zero_means_the_broker_default_and_minus_one_forever() {
        let base = LogConfig::default();
        // A topic created with an all-default config keeps the broker's retention (a zero
        // once meant "delete every closed segment at once").
        let c = TopicSettings::from_wire(&wire::TopicConfig {
            partition_count: 1,
            ..Default::default()
        })
        .log_config(&base);
        assert_eq!((c.retention_ms, c.retention_bytes), (base.retention_ms, base.retention_bytes));
        assert_eq!(c.segment_bytes_max, base.segment_bytes_max);
        let c = settings(1).log_config(&base);
        assert_eq!((c.retention_ms, c.retention_bytes), (-1, -1));
        let mut s = settings(1);
        s.retention_ms = 60_000;
        s.segment_bytes_max = 1 << 20;
        s.batch_bytes_max = 32 << 20;
        let c = s.log_config(&base);
        assert_eq!(
            (c.retention_ms, c.segment_bytes_max, c.batch_bytes_max),
            (60_000, 1 << 20, 32 << 20)
        );
        assert!(c.write_bytes_max >= c.batch_bytes_max);
    }

    #[test]
    fn every_field_is_checked_and_the_error_names_it_and_its_range() {
        type Set = fn(&mut TopicSettings);
        let cases: &[(&str, Set, Option<&str>)] = &[
            ("defaults", |_| {}, None),
            ("0 partitions", |s| s.partition_count = 0, Some("partition_count")),
            ("max partitions", |s| s.partition_count = TOPIC_PARTITIONS_MAX, None),
            ("too many", |s| s.partition_count = TOPIC_PARTITIONS_MAX + 1, Some("partition_count")),
            ("retention -1", |s| s.retention_ms = -1, None),
            ("retention 0", |s| s.retention_ms = 0, None),
            ("retention max", |s| s.retention_ms = i64::MAX, None),
            ("retention -2", |s| s.retention_ms = -2, Some("retention_ms")),
            ("retention min", |s| s.retention_ms = i64::MIN, Some("retention_ms")),
            ("bytes -5", |s| s.retention_bytes = -5, Some("retention_bytes")),
            ("bytes min", |s| s.retention_bytes = i64::MIN, Some("retention_bytes")),
            ("segment_ms -1", |s| s.segment_ms = -1, None),
            ("segment_ms -2", |s| s.segment_ms = -2, Some("segment_ms")),
            ("segment_ms min", |s| s.segment_ms = i64::MIN, Some("segment_ms")),
            ("segment 1", |s| s.segment_bytes_max = 1, Some("segment_bytes_max")),
            ("segment min-1", |s| s.segment_bytes_max = 4095, Some("segment_bytes_max")),
            ("segment min", |s| s.segment_bytes_max = 4096, None),
            ("segment limit", |s| s.segment_bytes_max = 1 << 32, None),
            ("segment limit+1", |s| s.segment_bytes_max = (1 << 32) + 1, Some("segment_bytes_max")),
            ("segment u64 max", |s| s.segment_bytes_max = u64::MAX, Some("segment_bytes_max")),
            ("batch 1", |s| s.batch_bytes_max = 1, Some("batch_bytes_max")),
            ("batch 95", |s| s.batch_bytes_max = 95, Some("batch_bytes_max")),
            ("batch 96", |s| s.batch_bytes_max = 96, None),
            ("batch 16 MiB", |s| s.batch_bytes_max = 16 << 20, None),
            ("batch over", |s| s.batch_bytes_max = (16 << 20) + 1, Some("batch_bytes_max")),
            ("ack", |s| s.default_ack = "fast".into(), Some("default_ack")),
        ];
        for (what, set, refused) in cases {
            let mut s = settings(1);
            set(&mut s);
            match (s.validate(), refused) {
                (Ok(()), None) => {}
                (Err(e), Some(field)) => {
                    assert!(
                        matches!(&e, MetadataError::InvalidConfig { field: f, .. } if f == field),
                        "{what}: {e}"
                    );
                    let text = e.to_string();
                    assert!(text.contains(field) && text.contains("allowed: "), "{what}: {text}");
                    assert_eq!(e.code(), wire::ErrorCode::InvalidTopicConfig);
                    // Nothing is created.
                    assert!(Metadata::default().with_topic("t", s.clone(), 1).is_err(), "{what}");
                }
                (got, want) => panic!("{what}: got {got:?}, want refusal of {want:?}"),
            }
        }
        let e = {
            let mut s = settings(1);
            s.retention_ms = -5;
            s.validate().unwrap_err()
        };
        assert_eq!(
            e.to_string(),
            format!(
                "invalid topic config: retention_ms = -5; allowed: -1 (keep forever), \
                 0 (broker default) or 1..={} milliseconds",
                i64::MAX
            )
        );
    }

    #[test]
    fn stored_values_the_checks_now_refuse_still_open() {
        let base = LogConfig::default();
        let mut s = settings(1);
        s.segment_ms = -1;
        assert_eq!(s.log_config(&base).segment_ms, 0, "-1 = never roll by age");
        s.segment_ms = -7; // stored before it was refused: the broker default, as before
        assert_eq!(s.log_config(&base).segment_ms, base.segment_ms);
        s.segment_bytes_max = 8 << 30;
        assert_eq!(s.log_config(&base).segment_bytes_max, SEGMENT_BYTES_LIMIT);
    }

    #[test]
    fn store_and_load() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Metadata::load(dir.path()).unwrap(), Metadata::default());
        let m = Metadata::default().with_topic("t", settings(4), 2).unwrap();
        m.store(dir.path()).unwrap();
        assert_eq!(Metadata::load(dir.path()).unwrap(), m);
    }
}
