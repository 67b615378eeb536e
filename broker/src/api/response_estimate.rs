//! What a request's response is expected to take, reserved by the connection before the
//! request runs (`connection.rs`) so it can bound what it holds before the response exists.

use wire::ApiKey;

use crate::metadata::Metadata;
use crate::request::Request;
use crate::shard::Shard;

/// The bytes `req`'s response is expected to take: a fetch's `max_bytes` (never past
/// `fetch_response_bytes_max`); stats with group lag their most entries per shard asked;
/// metadata, topic listings and descriptions what the topics they name take now; answers
/// whose size neither the request nor this shard knows (a group's committed offsets, a group
/// description, the groups, users, ACLs or tokens) the connection's whole budget: one such
/// request at a time per connection, once what was queued before it is written. Each at most
/// `connection_send_queue_bytes_max`.
///
/// A response may pass its reservation (a fetch's first batch, which grows the room before
/// it is read; table reads and key queries, which take room entry by entry,
/// `budget::EntryRoom`; or any small response: a produce's offsets); it then counts at its
/// actual size once it is queued, and a reservation larger than its response shrinks to it.
pub fn response_bytes_estimate(shard: &Shard, req: &Request) -> usize {
    let whole = shard.config.connection_send_queue_bytes_max;
    let bytes = match ApiKey::from_u16(req.header.api_key) {
        Some(ApiKey::Fetch) => match wire::access_body::<wire::FetchRequest>(req.body()) {
            Ok(fetch) => (fetch.max_bytes.to_native() as usize)
                .min(shard.config.fetch_response_bytes_max as usize),
            Err(_) => 0, // answered with an error at once
        },
        Some(ApiKey::Stats) => match wire::access_body::<wire::StatsRequest>(req.body()) {
            Ok(stats) if stats.group_lag => {
                let shards = match stats.shards.len() {
                    0 => shard.shard_count as usize,
                    n => n.min(shard.shard_count as usize),
                };
                shards * wire::GROUP_LAG_ENTRIES_MAX * GROUP_LAG_ENTRY_BYTES_MAX
            }
            _ => 0,
        },
        Some(ApiKey::Metadata) => match wire::access_body::<wire::MetadataRequest>(req.body()) {
            Ok(m) if m.topics.is_empty() => metadata_bytes(&shard.metadata(), None),
            Ok(m) => {
                let md = shard.metadata();
                m.topics.iter().map(|t| metadata_bytes(&md, Some(t.as_str()))).sum()
            }
            Err(_) => 0,
        },
        Some(ApiKey::ListTopics) => {
            shard.metadata().topics.keys().map(|name| name.len() + LISTED_TOPIC_BYTES).sum()
        }
        Some(ApiKey::DescribeTopic) => {
            match wire::access_body::<wire::DescribeTopicRequest>(req.body()) {
                Ok(d) => shard.metadata().topics.get(d.name.as_str()).map_or(0, |t| {
                    TOPIC_BYTES + t.name.len() + t.shards.len() * DESCRIBED_PARTITION_BYTES
                }),
                Err(_) => 0,
            }
        }
        Some(
            ApiKey::FetchOffsets
            | ApiKey::ListGroups
            | ApiKey::DescribeGroup
            | ApiKey::ListUsers
            | ApiKey::ListAcls
            | ApiKey::ListTokens,
        ) => whole,
        _ => 0,
    };
    bytes.min(whole)
}

/// The most one group-lag entry of a stats answer takes: a group id and a topic name at their
/// limits (249 bytes each) and its numbers, encoded.
const GROUP_LAG_ENTRY_BYTES_MAX: usize = 2 * 256 + 64;
/// About what one topic of a metadata answer takes beside its name and partitions (its
/// config, encoded).
const TOPIC_BYTES: usize = 256;
/// What one partition of a metadata answer takes (number and owner, encoded).
const METADATA_PARTITION_BYTES: usize = 8;
/// About what one partition of a topic description takes (offsets, sizes, encoded).
const DESCRIBED_PARTITION_BYTES: usize = 64;
/// About what one topic of a listing takes beside its name.
const LISTED_TOPIC_BYTES: usize = 16;

/// About what a metadata answer takes for topic `name` (`None`: every topic).
fn metadata_bytes(md: &Metadata, name: Option<&str>) -> usize {
    let bytes = |t: &crate::metadata::Topic| {
        TOPIC_BYTES + t.name.len() + t.shards.len() * METADATA_PARTITION_BYTES
    };
    match name {
        Some(name) => md.topics.get(name).map_or(TOPIC_BYTES + name.len(), bytes),
        None => md.topics.values().map(bytes).sum(),
    }
}
