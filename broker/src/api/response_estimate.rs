//! What a request's response is expected to take, reserved by the connection before the
//! request runs (`connection.rs`) so it can bound what it holds before the response exists.

use wire::ApiKey;

use crate::metadata::Metadata;
use crate::request::Request;
use crate::shard::Shard;

/// How a request's response room is taken before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Wait until these bytes fit the connection's and the shard's budgets, then hold them.
    Wait(usize),
    /// Hold these bytes of both at once, room or not (an answer bounded by the metadata: it
    /// never waits for other connections' memory, yet counts before the next request is read).
    Now(usize),
    /// An answer whose size neither the request nor this shard knows: wait until the
    /// connection's budget is not full, then hold all of it (the next request waits until
    /// the answer is made and fit to its size); the shard's share is taken when it is queued.
    /// Waiting for "not full" rather than for room lets it pass pushes that keep a little of
    /// the budget held all the time.
    Whole,
}

/// How `req`'s response room is reserved: a fetch waits for its `max_bytes` (never past
/// `fetch_response_bytes_max`), stats with group lag for their most entries per shard asked;
/// metadata, topic listings and descriptions hold what the topics they name take now;
/// answers whose size neither the request nor this shard knows (a group's committed
/// offsets, a group description, the groups, users, ACLs or tokens) hold the connection's
/// whole budget ([`Reservation::Whole`]). Each at most `connection_send_queue_bytes_max`.
///
/// A response may pass its reservation (a fetch's first batch, which grows the room before
/// it is read; table reads and key queries, which take room entry by entry,
/// `budget::EntryRoom`; or any small response: a produce's offsets); it then counts at its
/// actual size once it is queued, and a reservation larger than its response shrinks to it.
pub fn response_reservation(shard: &Shard, req: &Request) -> Reservation {
    let whole = shard.config.connection_send_queue_bytes_max;
    let wait = |bytes: usize| Reservation::Wait(bytes.min(whole));
    let now = |bytes: usize| Reservation::Now(bytes.min(whole));
    match ApiKey::from_u16(req.header.api_key) {
        Some(ApiKey::Fetch) => match wire::access_body::<wire::FetchRequest>(req.body()) {
            Ok(fetch) => wait(
                (fetch.max_bytes.to_native() as usize)
                    .min(shard.config.fetch_response_bytes_max as usize),
            ),
            Err(_) => wait(0), // answered with an error at once
        },
        Some(ApiKey::Stats) => match wire::access_body::<wire::StatsRequest>(req.body()) {
            Ok(stats) if stats.group_lag => {
                let shards = match stats.shards.len() {
                    0 => shard.shard_count as usize,
                    n => n.min(shard.shard_count as usize),
                };
                wait(shards * wire::GROUP_LAG_ENTRIES_MAX * GROUP_LAG_ENTRY_BYTES_MAX)
            }
            _ => wait(0),
        },
        Some(ApiKey::Metadata) => match wire::access_body::<wire::MetadataRequest>(req.body()) {
            Ok(m) if m.topics.is_empty() => now(metadata_bytes(&shard.metadata(), None)),
            Ok(m) => {
                let md = shard.metadata();
                now(m.topics.iter().map(|t| metadata_bytes(&md, Some(t.as_str()))).sum())
            }
            Err(_) => wait(0),
        },
        Some(ApiKey::ListTopics) => {
            now(shard.metadata().topics.keys().map(|name| name.len() + LISTED_TOPIC_BYTES).sum())
        }
        Some(ApiKey::DescribeTopic) => {
            match wire::access_body::<wire::DescribeTopicRequest>(req.body()) {
                Ok(d) => now(shard.metadata().topics.get(d.name.as_str()).map_or(0, |t| {
                    TOPIC_BYTES + t.name.len() + t.shards.len() * DESCRIBED_PARTITION_BYTES
                })),
                Err(_) => wait(0),
            }
        }
        Some(
            ApiKey::FetchOffsets
            | ApiKey::ListGroups
            | ApiKey::DescribeGroup
            | ApiKey::ListUsers
            | ApiKey::ListAcls
            | ApiKey::ListTokens,
        ) => Reservation::Whole,
        _ => wait(0),
    }
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
