//! Forgetting committed offsets nobody will read: those of deleted topics, and of topics
//! deleted and created again under the same name (an offset keeps the id of the topic it
//! was committed to, and readers ignore it as soon as the id changes, before the sweep
//! forgets it: see `group/offsets_log.rs`), and all offsets of a group that has had
//! no members (native or Kafka) and no commit for `group_offsets_retention_ms` (Kafka's
//! `offsets.retention.minutes`: otherwise every group id ever used holds its offsets for
//! ever, and `group_offsets_per_shard_max` fills until new groups are refused).
//!
//! Contract: [`expiry_loop`] runs on every shard. Each sweep first replays every offsets
//! partition the shard owns (so groups nobody touched since the restart are swept too), and
//! it sweeps the groups it coordinates whenever the topic set changed (checked every
//! [`CHECK_MS`]) and at least every quarter of the retention (within 0.1–60 s). A sweep
//! forgets what `Coordinator::expired` names by appending tombstones at `durable`, exactly
//! like `DeleteGroupOffsets`, and decides again in the synchronous step that enqueues them,
//! so a commit that arrived meanwhile is never forgotten. Offsets expire no earlier than the
//! retention after the broker started, since membership is not persisted.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::group::{load_owned, store};
use crate::group::offsets_log::OffsetRecord;
use crate::group::{offsets_partition, OFFSETS_TOPIC};
use crate::shard::Shard;

/// How often the loop looks whether the topic set changed.
pub const CHECK_MS: u64 = 200;

/// The longest time between two sweeps.
const SWEEP_INTERVAL_MS_MAX: u64 = 60_000;
/// The shortest time between two sweeps that the topic set did not ask for.
const SWEEP_INTERVAL_MS_MIN: u64 = 100;

/// Sweeps this shard's groups until the shard stops; see the module docs.
/// Whether a group has members other than its native ones (the Kafka listener's): such a
/// group keeps its offsets, as in Kafka. Passed in by the server (the listener is above
/// this layer).
pub type MembersElsewhere = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// `elsewhere`: see [`MembersElsewhere`] (`None`: no Kafka listener).
pub async fn expiry_loop(shard: Rc<Shard>, elsewhere: Option<MembersElsewhere>) {
    let retention_ms = shard.config.group_offsets_retention_ms;
    let every = Duration::from_millis(if retention_ms == 0 {
        SWEEP_INTERVAL_MS_MAX
    } else {
        (retention_ms / 4).clamp(SWEEP_INTERVAL_MS_MIN, SWEEP_INTERVAL_MS_MAX)
    });
    let mut swept_topics = None;
    let mut swept_at = Instant::now();
    while !shard.stopping.get() {
        glommio::timer::sleep(Duration::from_millis(CHECK_MS)).await;
        let topics = topic_names(&shard);
        if swept_topics.as_ref() == Some(&topics) && swept_at.elapsed() < every {
            continue;
        }
        swept_topics = Some(topics);
        swept_at = Instant::now();
        sweep(&shard, retention_ms, elsewhere.as_deref()).await;
    }
}

/// The names of the topics that exist now, with their ids (a topic created again under a
/// name is another topic).
fn topic_names(shard: &Shard) -> Vec<(String, u64)> {
    shard.metadata().topics.values().map(|t| (t.name.clone(), t.id)).collect()
}

/// One pass over the groups this shard coordinates.
async fn sweep(
    shard: &Rc<Shard>,
    retention_ms: u64,
    elsewhere: Option<&(dyn Fn(&str) -> bool + Send + Sync)>,
) {
    // Partitions this shard owns that nobody used since the start are replayed first.
    load_owned(shard).await;
    let md = shard.metadata();
    let Some(offsets_topic) = md.topic(OFFSETS_TOPIC) else { return };
    let partitions = offsets_topic.shards.len() as u32;
    for group in shard.groups.group_ids() {
        if shard.stopping.get() {
            return;
        }
        let index = offsets_partition(&group, partitions);
        let Some(part) = shard.partition(OFFSETS_TOPIC, index) else { continue };
        if elsewhere.is_some_and(|f| f(&group)) {
            // Its retention counts from when its Kafka members went, as in Kafka.
            shard.groups.used_elsewhere(&group, Instant::now());
        }
        let expired = |shard: &Shard| {
            let md = shard.metadata();
            let topic_id = |topic: &str| md.topic_id(topic);
            let now_ms = crate::clock::now_ms();
            // A Kafka group with members is not idle however long since its last commit.
            let retention_ms = match elsewhere {
                Some(f) if f(&group) => 0,
                _ => retention_ms,
            };
            shard.groups.expired(index, &group, Instant::now(), now_ms, retention_ms, &topic_id)
        };
        if expired(shard).is_empty() {
            continue;
        }
        // Decided again once the log has room, in the step that enqueues the tombstones.
        let tombstones = || {
            let keys = expired(shard);
            let to_record = |tp| OffsetRecord { group: group.clone(), tp, committed: None };
            keys.into_iter().map(to_record).collect()
        };
        match store(shard, &part, &group, tombstones).await {
            Ok(0) => {}
            Ok(n) => {
                info!(%group, offsets = n, "expired group offsets forgotten (deleted topics or retention)")
            }
            Err(code) => {
                warn!(%group, %code, "cannot forget expired group offsets; retried at the next sweep")
            }
        }
        glommio::yield_if_needed().await;
    }
}
