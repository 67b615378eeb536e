//! The topic metadata a broker starts with: what the data directory holds, with the
//! partitions of shards that are gone (a restart with fewer shards) given to the remaining
//! ones, and the internal committed-offsets topic created the first time the broker starts
//! on a data directory. Every change is stored before any shard starts; errors are messages
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
    if metadata.topic(OFFSETS_TOPIC).is_some() {
        return Ok(metadata);
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
