//! Topic metadata: which topics exist, their settings, and which shard owns each partition.
//!
//! One immutable [`Metadata`] snapshot is shared (`Arc`) by all shards. Changes are made by
//! shard 0 alone (others forward create/delete to it), persisted to `<data>/topics.json`
//! (write to a temp file, fsync, rename, fsync the directory), and then broadcast to every
//! shard, which opens or removes its partitions before the change is acknowledged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wire::AckLevel;

use crate::storage::LogConfig;

/// Name of the metadata file inside the data directory.
pub const METADATA_FILE: &str = "topics.json";
/// Longest topic name in bytes.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Most partitions one topic may have.
pub const TOPIC_PARTITIONS_MAX: u32 = 100_000;

/// A topic's settings as stored (mirrors `wire::TopicConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSettings {
    /// Number of partitions.
    pub partition_count: u32,
    /// Retention by time; -1 forever, 0 = broker default.
    pub retention_ms: i64,
    /// Retention by size; -1 unlimited, 0 = broker default.
    pub retention_bytes: i64,
    /// Segment roll size; 0 = broker default.
    pub segment_bytes_max: u64,
    /// Segment roll age; 0 = broker default.
    pub segment_ms: i64,
    /// `none`, `written` or `durable`.
    pub default_ack: String,
    /// Largest batch; 0 = broker default.
    pub batch_bytes_max: u32,
}

impl TopicSettings {
    /// The log settings of this topic: `base` (the broker's `[log]` defaults) overridden by
    /// every setting the topic gives (0 = use the default).
    pub fn log_config(&self, base: &LogConfig) -> LogConfig {
        let mut c = base.clone();
        if self.retention_ms != 0 {
            c.retention_ms = self.retention_ms;
        }
        if self.retention_bytes != 0 {
            c.retention_bytes = self.retention_bytes;
        }
        if self.segment_bytes_max > 0 {
            c.segment_bytes_max = self.segment_bytes_max;
        }
        if self.segment_ms > 0 {
            c.segment_ms = self.segment_ms;
        }
        if self.batch_bytes_max > 0 {
            c.batch_bytes_max = self.batch_bytes_max as usize;
            c.write_bytes_max = c.write_bytes_max.max(c.batch_bytes_max);
        }
        c
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
        }
    }

    /// The topic's default ack level.
    pub fn default_ack(&self) -> AckLevel {
        AckLevel::parse(&self.default_ack).unwrap_or(AckLevel::Durable)
    }
}

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
}

/// Why a metadata change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// Bad name.
    #[error("invalid topic name {0:?}: use 1..=249 bytes of [A-Za-z0-9._-], not . or ..")]
    InvalidName(String),
    /// Exists.
    #[error("topic {0:?} already exists")]
    Exists(String),
    /// Missing.
    #[error("unknown topic {0:?}")]
    Unknown(String),
    /// Bad settings.
    #[error("invalid topic config: {0}")]
    InvalidConfig(String),
}

impl MetadataError {
    /// Wire code.
    pub fn code(&self) -> wire::ErrorCode {
        match self {
            MetadataError::InvalidName(_) => wire::ErrorCode::InvalidTopicName,
            MetadataError::Exists(_) => wire::ErrorCode::TopicAlreadyExists,
            MetadataError::Unknown(_) => wire::ErrorCode::UnknownTopic,
            MetadataError::InvalidConfig(_) => wire::ErrorCode::InvalidTopicConfig,
        }
    }
}

/// Checks a topic name against Kafka's rule: 1..=249 bytes of `[A-Za-z0-9._-]`, not `.` or
/// `..`. A leading `.` is allowed, as in Kafka: a topic's directory is one component under
/// `topics~/` (see `layout.rs`), so no valid name can reach a file of the broker.
pub fn validate_name(name: &str) -> Result<(), MetadataError> {
    let ok = !name.is_empty()
        && name.len() <= TOPIC_NAME_BYTES_MAX
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
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

    /// A new snapshot with the topic added; partitions go to the least-loaded shards.
    pub fn with_topic(
        &self,
        name: &str,
        settings: TopicSettings,
        shard_count: u32,
    ) -> Result<Metadata, MetadataError> {
        validate_name(name)?;
        if self.topics.contains_key(name) {
            return Err(MetadataError::Exists(name.to_owned()));
        }
        if settings.partition_count == 0 || settings.partition_count > TOPIC_PARTITIONS_MAX {
            return Err(MetadataError::InvalidConfig(format!(
                "partition_count must be 1..={TOPIC_PARTITIONS_MAX}"
            )));
        }
        if AckLevel::parse(&settings.default_ack).is_none() {
            return Err(MetadataError::InvalidConfig(format!(
                "default_ack {:?}",
                settings.default_ack
            )));
        }
        if settings.segment_bytes_max != 0 && settings.segment_bytes_max < 4096 {
            return Err(MetadataError::InvalidConfig(
                "segment_bytes_max must be 0 or at least 4096".into(),
            ));
        }
        if settings.batch_bytes_max > wire::constants::BATCH_BYTES_MAX {
            return Err(MetadataError::InvalidConfig("batch_bytes_max exceeds 16 MiB".into()));
        }
        let mut load = vec![0u64; shard_count as usize];
        for t in self.topics.values() {
            for &s in &t.shards {
                if let Some(l) = load.get_mut(s as usize) {
                    *l += 1;
                }
            }
        }
        let mut shards = Vec::with_capacity(settings.partition_count as usize);
        for _ in 0..settings.partition_count {
            let (s, _) =
                load.iter().enumerate().min_by_key(|&(i, l)| (*l, i)).expect("at least one shard");
            load[s] += 1;
            shards.push(s as u32);
        }
        let mut next = self.clone();
        next.version += 1;
        next.next_topic_id += 1;
        next.topics.insert(
            name.to_owned(),
            Topic { name: name.to_owned(), id: self.next_topic_id, settings, shards },
        );
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
        Ok(next)
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
        use std::io::Write;
        let path = data_dir.join(METADATA_FILE);
        let tmp: PathBuf = data_dir.join(format!("{METADATA_FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(data_dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(m.with_topic("z", settings(0), 2), Err(MetadataError::InvalidConfig(_))));
        let m2 = m.without_topic("a").unwrap();
        assert!(m2.topic("a").is_none());
        assert!(m2.version > m.version);
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
    fn store_and_load() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Metadata::load(dir.path()).unwrap(), Metadata::default());
        let m = Metadata::default().with_topic("t", settings(4), 2).unwrap();
        m.store(dir.path()).unwrap();
        assert_eq!(Metadata::load(dir.path()).unwrap(), m);
    }
}
