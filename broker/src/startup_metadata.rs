//! The topic metadata a broker starts with: what the data directory holds, with the
//! partitions of shards that are gone (a restart with fewer shards) given to the remaining
//! ones, and the internal committed-offsets topic created the first time the broker starts
//! on a data directory (and its segment size brought to the compaction threshold's when it
//! differs: a topic created before compaction, or with another threshold, kept 1 GiB
//! segments, so compaction deleted nothing until one rolled). Every change is stored before any shard starts; errors are messages
//! the caller reports against the data directory.

use std::sync::Arc;

use tracing::{info, warn};

use crate::config::BrokerConfig;
use crate::group::OFFSETS_TOPIC;
use crate::metadata::Metadata;

/// The metadata to start `shards` shards with (see the module docs).
pub fn load(config: &BrokerConfig, shards: u32) -> Result<Arc<Metadata>, String> {
    let metadata = Metadata::load(&config.data_dir).map_err(|e| e.to_string())?;
    let metadata = with_owners_below(metadata, config, shards)?;
    with_offsets_topic(metadata, config, shards).map(Arc::new)
}

/// Gives the partitions of shards at or above `shards` to shards below it
/// (`Metadata::with_owners_below`).
fn with_owners_below(
    metadata: Metadata,
    config: &BrokerConfig,
    shards: u32,
) -> Result<Metadata, String> {
    let Some((next, moved)) = metadata.with_owners_below(shards) else { return Ok(metadata) };
    next.store(&config.data_dir).map_err(|e| format!("cannot store topic metadata: {e}"))?;
    warn!(
        partitions = moved,
        shards, "partitions of shards beyond the shard count moved to the remaining shards"
    );
    Ok(next)
}

/// The metadata with the internal committed-offsets topic, created the first time.
fn with_offsets_topic(
    metadata: Metadata,
    config: &BrokerConfig,
    shards: u32,
) -> Result<Metadata, String> {
    if let Some(t) = metadata.topic(OFFSETS_TOPIC) {
        let segment_bytes_max = config.group_offsets_segment_bytes();
        if t.settings.segment_bytes_max == segment_bytes_max {
            return Ok(metadata);
        }
        // The active segment, if larger, rolls at its next append; compaction then deletes
        // whole segments behind each snapshot again.
        let from = t.settings.segment_bytes_max;
        let settings = crate::metadata::TopicSettings { segment_bytes_max, ..t.settings.clone() };
        let next =
            metadata.with_topic_settings(OFFSETS_TOPIC, settings).map_err(|e| e.to_string())?;
        next.store(&config.data_dir).map_err(|e| format!("cannot store topic metadata: {e}"))?;
        info!(
            topic = OFFSETS_TOPIC,
            from,
            to = segment_bytes_max,
            "committed-offsets topic's segment size changed"
        );
        return Ok(next);
    }
    let settings = crate::metadata::TopicSettings::from_wire(&wire::TopicConfig {
        partition_count: config.group_offsets_partitions,
        retention_ms: -1,
        retention_bytes: -1,
        // Compaction deletes whole segments behind each snapshot (`group/mod.rs`).
        segment_bytes_max: config.group_offsets_segment_bytes(),
        default_ack: wire::AckLevel::Durable,
        ..Default::default()
    });
    let next = metadata.with_topic(OFFSETS_TOPIC, settings, shards).map_err(|e| e.to_string())?;
    next.store(&config.data_dir).map_err(|e| format!("cannot store topic metadata: {e}"))?;
    info!(
        topic = OFFSETS_TOPIC,
        partitions = config.group_offsets_partitions,
        "created the committed-offsets topic"
    );
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path, compact_bytes: u64) -> BrokerConfig {
        BrokerConfig {
            data_dir: dir.to_path_buf(),
            group_offsets_compact_bytes: compact_bytes,
            ..BrokerConfig::default()
        }
    }

    #[test]
    fn the_offsets_topic_is_created_once_and_its_segment_size_follows_the_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let first = load(&config(dir.path(), 64 << 20), 2).unwrap();
        let t = first.topic(OFFSETS_TOPIC).unwrap().clone();
        assert_eq!(t.settings.segment_bytes_max, 64 << 20);
        // As stored by a broker from before compaction: 1 GiB segments.
        let old = first
            .with_topic_settings(
                OFFSETS_TOPIC,
                crate::metadata::TopicSettings { segment_bytes_max: 1 << 30, ..t.settings.clone() },
            )
            .unwrap();
        old.store(dir.path()).unwrap();
        let again = load(&config(dir.path(), 64 << 20), 2).unwrap();
        let now = again.topic(OFFSETS_TOPIC).unwrap();
        assert_eq!(now.settings.segment_bytes_max, 64 << 20, "segment size brought back");
        assert_eq!((now.id, &now.shards), (t.id, &t.shards), "same topic, same owners");
        // Stored: the next start reads it as it is and changes nothing.
        let stored = Metadata::load(dir.path()).unwrap();
        assert_eq!(stored.topic(OFFSETS_TOPIC).unwrap().settings.segment_bytes_max, 64 << 20);
        let unchanged = load(&config(dir.path(), 64 << 20), 2).unwrap();
        assert_eq!(unchanged.version, stored.version, "no change stored when none is due");
    }
}
