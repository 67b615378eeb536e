//! Consumer group apis: join, heartbeat, leave, commit, fetch and delete offsets, list,
//! describe.
//!
//! Each request names one group and is served by the group's coordinator shard (see
//! `group/mod.rs`): [`coordinator_of`] finds it and `api::start` forwards the whole request
//! there. On the coordinator a handler makes sure the offsets partition is replayed, then
//! acts on the group's state; a commit appends its records at `durable` before it answers,
//! registered in flight from the moment it has a log offset (`Coordinator::commit_enqueued`)
//! so a compaction racing with it restates it (`group/mod.rs`). After a replay and after each
//! commit, [`compact_soon`] starts a compaction of the offsets partition in the background
//! when it grew enough. Deleting offsets (a whole group, or some topics' partitions) appends
//! tombstones the same way, so a deletion is as durable as a commit. `ListGroups` asks every
//! shard. [`expiry_loop`] removes members whose
//! session ran out.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tracing::{info, warn};
use wire::{
    AckLevel, AlignedVec, ApiKey, CommitOffsetsRequest, CommitOffsetsResponse, CommitTopic,
    CommitTopicResult, CommittedOffset, DeleteGroupOffsetsRequest, DeleteGroupOffsetsResponse,
    DescribeGroupRequest, DescribeGroupResponse, ErrorCode, FetchOffsetsRequest,
    FetchOffsetsResponse, GroupMemberDescription, GroupMemberState, GroupSummary, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, PartitionError,
};

use super::forward::decode_reply;
use super::{error_frame, respond, Origin};
use crate::group::membership::{
    from_wire, heartbeat_interval_ms, to_wire, Join, Refusal, HEARTBEAT_MS_MAX,
};
use crate::group::offsets_log::{self, OffsetRecord, Position};
use crate::group::{
    offset_entry_bytes, offsets_partition, valid_group_id, Removal, COMMIT_METADATA_BYTES_MAX,
    OFFSETS_TOPIC,
};
use crate::partition::Partition;
use crate::request::Request;
use crate::shard::Shard;

/// How often the coordinator looks for members whose session ran out.
const EXPIRY_CHECK_MS: u64 = 50;

/// The group a group request names, decoded from its body.
fn group_of(api: ApiKey, body: &[u8]) -> Option<String> {
    fn g<T: wire::Message>(body: &[u8], f: impl FnOnce(T) -> String) -> Option<String>
    where
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>,
            > + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        wire::decode_body::<T>(body).ok().map(f)
    }
    match api {
        ApiKey::JoinGroup => g(body, |r: JoinGroupRequest| r.group),
        ApiKey::Heartbeat => g(body, |r: HeartbeatRequest| r.group),
        ApiKey::LeaveGroup => g(body, |r: LeaveGroupRequest| r.group),
        ApiKey::CommitOffsets => g(body, |r: CommitOffsetsRequest| r.group),
        ApiKey::FetchOffsets => g(body, |r: FetchOffsetsRequest| r.group),
        ApiKey::DescribeGroup => g(body, |r: DescribeGroupRequest| r.group),
        ApiKey::DeleteGroupOffsets => g(body, |r: DeleteGroupOffsetsRequest| r.group),
        _ => None,
    }
}

/// The shard that coordinates the group `req` names, or `None` when the request does not
/// decode (the handler then answers with the error).
pub fn coordinator_of(shard: &Shard, api: ApiKey, req: &Request) -> Option<u32> {
    let group = group_of(api, req.body())?;
    let md = shard.metadata();
    let topic = md.topic(OFFSETS_TOPIC)?;
    let index = offsets_partition(&group, topic.shards.len() as u32);
    topic.shards.get(index as usize).copied()
}

/// The offsets partition of `group` on this shard, replayed; or the error to answer with.
async fn offsets_of(shard: &Rc<Shard>, group: &str) -> Result<Rc<Partition>, Refusal> {
    if !valid_group_id(group) {
        return Err(Refusal {
            code: ErrorCode::InvalidGroupId,
            message: format!(
                "invalid group id {group:?}: use 1..=249 bytes without control characters"
            ),
        });
    }
    let count = shard.metadata().topic(OFFSETS_TOPIC).map_or(0, |t| t.shards.len() as u32);
    let index = offsets_partition(group, count);
    let Some(part) = shard.partition(OFFSETS_TOPIC, index) else {
        return Err(Refusal {
            code: ErrorCode::NotOwner,
            message: format!("this shard does not coordinate group {group}"),
        });
    };
    shard.groups.ensure_loaded(index, &part.log).await.map_err(|e| Refusal {
        code: e.code(),
        message: format!("cannot replay the offsets of group {group}: {e}"),
    })?;
    compact_soon(shard, &part);
    Ok(part)
}

/// Starts a compaction of offsets partition `part` in the coordinator's low-priority task
/// queue if it grew enough since the last one and none is running (`Coordinator::compact`).
fn compact_soon(shard: &Rc<Shard>, part: &Rc<Partition>) {
    let threshold = shard.config.group_offsets_compact_bytes;
    if shard.stopping.get()
        || !shard.groups.compaction_due(part.index, part.log.size_bytes(), threshold)
    {
        return;
    }
    let partitions = shard.metadata().topic(OFFSETS_TOPIC).map_or(0, |t| t.shards.len() as u32);
    let (shard, part) = (shard.clone(), part.clone());
    let queue = shard.groups.compaction_queue();
    glommio::spawn_local_into(
        async move {
            let now = crate::clock::now_ms();
            match shard.groups.compact(part.index, partitions, &part.log, now).await {
                Ok(c) => info!(
                    partition = part.index,
                    records = c.records,
                    snapshot_bytes = c.snapshot_bytes,
                    log_start_offset = c.log_start_offset,
                    segments_deleted = c.segments_deleted,
                    size_bytes = c.size_bytes,
                    elapsed_ms = c.elapsed.as_millis() as u64,
                    "group offsets compacted"
                ),
                Err(e) => warn!(partition = part.index, error = %e, "group offsets compaction failed; retried after as much growth again"),
            }
        },
        queue,
    )
    .expect("the coordinator's compaction task queue")
    .detach();
}

/// Partition count of `topic` now (0 if it does not exist).
fn partition_counter(shard: &Shard) -> impl Fn(&str) -> u32 {
    let md = shard.metadata();
    move |t: &str| md.topic(t).map_or(0, |t| t.shards.len() as u32)
}

fn refused_state(r: Refusal) -> GroupMemberState {
    GroupMemberState { error: r.code.as_u16(), message: r.message, ..Default::default() }
}

/// Serves a group request on this shard (its coordinator, or `ListGroups` anywhere).
pub async fn handle(shard: &Rc<Shard>, api: ApiKey, req: &Request, origin: Origin) -> AlignedVec {
    let header = req.header;
    macro_rules! decode {
        ($t:ty) => {
            match wire::decode_body::<$t>(req.body()) {
                Ok(r) => r,
                Err(e) => return error_frame(&header, e.code(), &e.to_string()),
            }
        };
    }
    match api {
        ApiKey::JoinGroup => {
            let r = decode!(JoinGroupRequest);
            respond(&header, &join(shard, r).await.unwrap_or_else(refused_state))
        }
        ApiKey::Heartbeat => {
            let r = decode!(HeartbeatRequest);
            let state = heartbeat(shard, r).await.unwrap_or_else(refused_state);
            respond(&header, &HeartbeatResponse { state })
        }
        ApiKey::LeaveGroup => {
            let r = decode!(LeaveGroupRequest);
            let (error, message) = match leave(shard, r).await {
                Ok(()) => (0, String::new()),
                Err(e) => (e.code.as_u16(), e.message),
            };
            respond(&header, &LeaveGroupResponse { error, message })
        }
        ApiKey::CommitOffsets => {
            let r = decode!(CommitOffsetsRequest);
            let resp = commit(shard, r).await.unwrap_or_else(|e| CommitOffsetsResponse {
                error: e.code.as_u16(),
                message: e.message,
                topics: Vec::new(),
            });
            respond(&header, &resp)
        }
        ApiKey::FetchOffsets => {
            let r = decode!(FetchOffsetsRequest);
            let resp = fetch_offsets(shard, r).await.unwrap_or_else(|e| FetchOffsetsResponse {
                error: e.code.as_u16(),
                message: e.message,
                topics: Vec::new(),
            });
            respond(&header, &resp)
        }
        ApiKey::DescribeGroup => {
            let r = decode!(DescribeGroupRequest);
            let group = r.group.clone();
            let resp = describe(shard, r).await.unwrap_or_else(|e| DescribeGroupResponse {
                error: e.code.as_u16(),
                message: e.message,
                group,
                ..Default::default()
            });
            respond(&header, &resp)
        }
        ApiKey::DeleteGroupOffsets => {
            let r = decode!(DeleteGroupOffsetsRequest);
            let resp =
                delete_offsets(shard, r).await.unwrap_or_else(|e| DeleteGroupOffsetsResponse {
                    error: e.code.as_u16(),
                    message: e.message,
                    topics: Vec::new(),
                });
            respond(&header, &resp)
        }
        ApiKey::ListGroups => {
            let r = decode!(ListGroupsRequest);
            respond(&header, &list(shard, r, origin).await)
        }
        _ => error_frame(&header, ErrorCode::InvalidRequest, "not a group api"),
    }
}

/// Topics one member may subscribe to (each a name of at most 249 bytes): what a member's
/// join keeps is bounded by it and by [`MEMBER_STRING_BYTES_MAX`].
pub const MEMBER_TOPICS_MAX: usize = 10_000;
/// Longest instance id, client id or client host a member keeps.
pub const MEMBER_STRING_BYTES_MAX: usize = 255;
/// Partitions a member may say it owns (in a join or a heartbeat), over all its topics.
pub const MEMBER_OWNED_PARTITIONS_MAX: usize = 100_000;

/// Why a member's list of owned partitions is refused, if it is (a join keeps it).
fn owned_refusal(owned: &[wire::TopicPartitions]) -> Option<String> {
    if owned.len() > MEMBER_TOPICS_MAX {
        return Some(format!("{} owned topics; at most {MEMBER_TOPICS_MAX}", owned.len()));
    }
    if owned.iter().any(|t| t.topic.len() > crate::metadata::TOPIC_NAME_BYTES_MAX) {
        return Some("an owned topic name over 249 bytes".into());
    }
    let partitions: usize = owned.iter().map(|t| t.partitions.len()).sum();
    (partitions > MEMBER_OWNED_PARTITIONS_MAX)
        .then(|| format!("{partitions} owned partitions; at most {MEMBER_OWNED_PARTITIONS_MAX}"))
}

/// Why a join's member fields are refused, if they are (they live as long as the member).
fn member_fields_refusal(r: &JoinGroupRequest) -> Option<String> {
    if r.topics.len() > MEMBER_TOPICS_MAX {
        return Some(format!(
            "{} topics; a member reads at most {MEMBER_TOPICS_MAX}",
            r.topics.len()
        ));
    }
    if let Some(t) = r.topics.iter().find(|t| t.len() > crate::metadata::TOPIC_NAME_BYTES_MAX) {
        return Some(format!("a topic name of {} bytes", t.len()));
    }
    if let Some(refused) = owned_refusal(&r.owned) {
        return Some(refused);
    }
    [("instance_id", &r.instance_id), ("client_id", &r.client_id), ("client_host", &r.client_host)]
        .into_iter()
        .find(|(_, v)| v.len() > MEMBER_STRING_BYTES_MAX)
        .map(|(name, v)| format!("{name} of {} bytes (at most {MEMBER_STRING_BYTES_MAX})", v.len()))
}

async fn join(shard: &Rc<Shard>, r: JoinGroupRequest) -> Result<GroupMemberState, Refusal> {
    if let Some(message) = member_fields_refusal(&r) {
        return Err(Refusal { code: ErrorCode::InvalidRequest, message });
    }
    offsets_of(shard, &r.group).await?;
    let max = shard.config.group_members_per_shard_max;
    if r.member_id.is_empty() && shard.groups.member_count() >= max {
        return Err(Refusal {
            code: ErrorCode::ResourceLimit,
            message: format!(
                "this shard's groups hold {max} members (group_members_per_shard_max)"
            ),
        });
    }
    // What its member data will take, within the shard's budget for it (a member keeps up
    // to 10,000 topic names and 100,000 owned partitions).
    let bytes_max = shard.config.group_member_bytes_per_shard_max;
    let (held, own) = shard.groups.member_bytes(&r.group, &r.member_id);
    let counts = partition_counter(shard);
    let joining = crate::group::membership::Member::joining_bytes(
        r.topics.iter().map(String::as_str),
        r.owned.iter().flat_map(|t| t.partitions.iter().map(|_| t.topic.as_str())),
        r.member_id.len() + r.instance_id.len() + r.client_id.len() + r.client_host.len(),
    ) + shard.groups.joining_growth(
        &r.group,
        r.topics.iter().map(String::as_str),
        &r.instance_id,
        &counts,
    );
    if held - own + joining > bytes_max {
        return Err(Refusal {
            code: ErrorCode::ResourceLimit,
            message: format!(
                "this shard's group members hold {held} bytes; a member of {joining} more \
                 passes group_member_bytes_per_shard_max ({bytes_max})"
            ),
        });
    }
    let (state, generation) = shard.groups.with_group(&r.group, |g| {
        let state = g.membership.join(
            Join {
                member_id: r.member_id.clone(),
                instance_id: r.instance_id.clone(),
                session_timeout_ms: r.session_timeout_ms,
                topics: r.topics.clone(),
                assignor: r.assignor,
                owned: from_wire(&r.owned),
            },
            Instant::now(),
            &counts,
        );
        if let Ok(s) = &state {
            g.membership.set_client(&s.member_id, &r.client_id, &r.client_host);
        }
        (state, g.membership.generation)
    });
    if let Ok(s) = &state {
        if r.member_id.is_empty() {
            info!(group = %r.group, member = %s.member_id, instance = %r.instance_id, generation, "member joined");
        }
    }
    state
}

/// A heartbeat. When the member has nothing to apply (its assignment is what it owns), the
/// answer waits up to `wait_ms` (at most a third of its session) for a change in the group,
/// so a member learns of a rebalance at once; a held answer says "heartbeat again now".
async fn heartbeat(shard: &Rc<Shard>, r: HeartbeatRequest) -> Result<GroupMemberState, Refusal> {
    if let Some(message) = owned_refusal(&r.owned) {
        return Err(Refusal { code: ErrorCode::InvalidRequest, message });
    }
    offsets_of(shard, &r.group).await?;
    let owned = from_wire(&r.owned);
    // The member was alive when the heartbeat arrived, not when a held answer goes out.
    let arrived = Instant::now();
    let beat = || {
        shard.groups.with_group(&r.group, |g| {
            let state =
                g.membership.heartbeat(&r.member_id, &r.instance_id, r.generation, &owned, arrived);
            (state, g.membership.session_of(&r.member_id))
        })
    };
    let (state, session) = beat();
    let state = state?;
    let Some(session) = session else { return Ok(state) };
    // Read after the beat (nothing changes in between: no await), so its own change does
    // not wake it.
    let Some(changes) = shard.groups.changes_of(&r.group) else { return Ok(state) };
    let hold = Duration::from_millis(u64::from(
        r.wait_ms.min(heartbeat_interval_ms(session)).min(HEARTBEAT_MS_MAX),
    ));
    if hold.is_zero() || from_wire(&state.assignment) != owned || shard.stopping.get() {
        return Ok(state);
    }
    let deadline = Instant::now() + hold;
    let mut seen = changes.get();
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let changed = futures_lite::future::or(
            async {
                changes.wait_for(seen + 1).await;
                true
            },
            async {
                glommio::timer::sleep(deadline - now).await;
                false
            },
        )
        .await;
        if !changed {
            break;
        }
        let (state, _) = beat();
        seen = changes.get();
        let state = state?;
        if from_wire(&state.assignment) != owned
            || state.pending > 0 && state.generation != r.generation
        {
            return Ok(state);
        }
    }
    let (state, _) = beat();
    let mut state = state?;
    if from_wire(&state.assignment) == owned {
        state.heartbeat_interval_ms = 0;
    }
    Ok(state)
}

async fn leave(shard: &Rc<Shard>, r: LeaveGroupRequest) -> Result<(), Refusal> {
    offsets_of(shard, &r.group).await?;
    let counts = partition_counter(shard);
    shard.groups.with_group(&r.group, |g| g.membership.leave(&r.member_id, &counts))?;
    info!(group = %r.group, member = %r.member_id, "member left");
    Ok(())
}

async fn commit(
    shard: &Rc<Shard>,
    r: CommitOffsetsRequest,
) -> Result<CommitOffsetsResponse, Refusal> {
    let part = offsets_of(shard, &r.group).await?;
    let md = shard.metadata();
    let tps: Vec<(String, u32)> = r
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.partition)))
        .collect();
    let verdicts = shard
        .groups
        .with_group(&r.group, |g| g.membership.check_commit(&r.member_id, r.generation, &tps))?;
    let mut results: Vec<ErrorCode> = Vec::with_capacity(tps.len());
    // Records that passed every check but the room for new keys, with their result's place.
    let mut candidates: Vec<(usize, OffsetRecord)> = Vec::new();
    let mut seen = BTreeSet::new();
    let offsets = r.topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (&t.name, p)));
    for ((topic, p), verdict) in offsets.zip(verdicts) {
        let code = match md.topic(topic) {
            _ if verdict != ErrorCode::None => verdict,
            None => ErrorCode::UnknownTopic,
            Some(t) if p.partition as usize >= t.shards.len() => ErrorCode::UnknownPartition,
            _ if p.metadata.len() > COMMIT_METADATA_BYTES_MAX => ErrorCode::InvalidRequest,
            _ if !seen.insert((topic.clone(), p.partition)) => ErrorCode::InvalidRequest,
            Some(t) => {
                candidates.push((
                    results.len(),
                    OffsetRecord {
                        group: r.group.clone(),
                        tp: (topic.clone(), p.partition),
                        // This incarnation of the topic: one created again later does not
                        // inherit it.
                        committed: Some(Position {
                            offset: p.offset,
                            metadata: p.metadata.clone(),
                            topic_id: Some(t.id),
                        }),
                    },
                ));
                ErrorCode::None
            }
        };
        results.push(code);
    }
    let results = RefCell::new(results);
    let mut slots = Vec::new();
    if !candidates.is_empty() {
        // New keys (ones the group has not committed) count against the shard's cap, checked
        // in the same synchronous step as the enqueue against what is applied and what other
        // commits have in flight, so concurrent commits cannot pass it together.
        let records = || {
            // The member is checked again here: it may have been expired or fenced while
            // the log had no room.
            let tps: Vec<(String, u32)> = candidates.iter().map(|(_, r)| r.tp.clone()).collect();
            let verdicts = shard.groups.with_group(&r.group, |g| {
                g.membership.check_commit(&r.member_id, r.generation, &tps)
            });
            let verdicts = match verdicts {
                Ok(v) => v,
                Err(refusal) => vec![refusal.code; tps.len()],
            };
            let max = shard.config.group_offsets_per_shard_max;
            let held = shard.groups.offset_count() + shard.groups.offsets_in_flight();
            let mut room = max.saturating_sub(held);
            // And what they keep, in bytes: a commit that grows a known key's metadata needs
            // room for the growth (counted whole: the old value may be in flight still).
            let bytes_max = shard.config.group_offset_bytes_per_shard_max;
            let mut room_bytes = bytes_max.saturating_sub(shard.groups.offset_bytes());
            let mut records = Vec::with_capacity(candidates.len());
            for ((slot, record), verdict) in candidates.into_iter().zip(verdicts) {
                if verdict != ErrorCode::None {
                    results.borrow_mut()[slot] = verdict;
                    continue;
                }
                let metadata = record.committed.as_ref().map_or("", |p| p.metadata.as_str());
                let bytes = offset_entry_bytes(&r.group, &record.tp.0, metadata);
                let known = shard.groups.read_group(&r.group, |g| {
                    g.and_then(|g| g.offsets.get(&record.tp))
                        .map(|c| offset_entry_bytes(&r.group, &record.tp.0, &c.metadata))
                });
                let (keys, grows) = match known {
                    Some(old) => (0, bytes.saturating_sub(old)),
                    None => (1, bytes),
                };
                if keys > room || grows > room_bytes {
                    results.borrow_mut()[slot] = ErrorCode::ResourceLimit;
                    continue;
                }
                room -= keys;
                room_bytes -= grows;
                slots.push(slot);
                records.push(record);
            }
            records
        };
        if let Err(code) = store(shard, &part, &r.group, records).await {
            for &i in &slots {
                results.borrow_mut()[i] = code;
            }
        }
    }
    let results = results.into_inner();
    let mut it = results.into_iter();
    let topics = r
        .topics
        .iter()
        .map(|t| CommitTopicResult {
            name: t.name.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| PartitionError {
                    partition: p.partition,
                    error: it.next().unwrap_or(ErrorCode::UnknownServerError).as_u16(),
                })
                .collect(),
        })
        .collect();
    Ok(CommitOffsetsResponse { error: 0, message: String::new(), topics })
}

/// Appends the records of `group` (commits or tombstones) that `records` gives once the
/// log has room (called in the same synchronous step as the enqueue, so it decides on the
/// current state) to its offsets partition `part` at `durable`, registered in flight from
/// the moment they have log offsets, and applies them to the group once durable; then maybe
/// starts a compaction. Returns how many were stored, or the error code.
pub(super) async fn store(
    shard: &Rc<Shard>,
    part: &Rc<Partition>,
    group: &str,
    records: impl FnOnce() -> Vec<OffsetRecord>,
) -> Result<usize, ErrorCode> {
    part.log.writable().await;
    // From here to the enqueue: no await.
    let records = records();
    if records.is_empty() {
        return Ok(0);
    }
    let now = crate::clock::now_ms();
    let batch = offsets_log::encode(&records, now).map_err(|_| ErrorCode::InvalidRequest)?;
    let ticket = part.log.enqueue(&batch, AckLevel::Durable, now).map_err(|e| e.code())?;
    let stored = records.len();
    let commits = records.into_iter().map(|rec| (rec.tp, rec.committed)).collect();
    let in_flight =
        shard.groups.commit_enqueued(part.index, group, commits, ticket.base_offset, now);
    ticket.wait().await.map_err(|e| e.code())?;
    in_flight.applied();
    compact_soon(shard, part);
    Ok(stored)
}

/// Forgets committed offsets of a group (see `DeleteGroupOffsetsRequest`): tombstones for
/// every key that has a value now, appended like a commit.
async fn delete_offsets(
    shard: &Rc<Shard>,
    r: DeleteGroupOffsetsRequest,
) -> Result<DeleteGroupOffsetsResponse, Refusal> {
    // Each named partition gets an outcome (its topic's name copied): no more than the broker
    // may have, so a request cannot make the shard hold many times its own size.
    let named: usize = r.topics.iter().map(|t| t.partitions.len()).sum();
    if named > shard.config.partitions_max as usize {
        return Err(Refusal {
            code: ErrorCode::InvalidRequest,
            message: format!(
                "{named} partitions named; at most {} (partitions_max)",
                shard.config.partitions_max
            ),
        });
    }
    let part = offsets_of(shard, &r.group).await?;
    // The keys with a value now (commits in flight included) and who reads what.
    let current: BTreeMap<(String, u32), u64> = shard
        .groups
        .current(part.index, &r.group)
        .into_iter()
        .map(|(tp, c)| (tp, c.offset))
        .collect();
    let (members, subscribed) = shard.groups.read_group(&r.group, |g| {
        let Some(g) = g else { return (0, BTreeSet::new()) };
        let topics = g.membership.members.values().flat_map(|m| m.topics.iter().cloned());
        (g.membership.members.len(), topics.collect::<BTreeSet<String>>())
    });
    // (topic, partition) -> outcome, in order.
    let mut outcome: BTreeMap<(String, u32), ErrorCode> = BTreeMap::new();
    if r.topics.is_empty() {
        if members > 0 {
            return Err(Refusal {
                code: ErrorCode::GroupNotEmpty,
                message: format!(
                    "group {} has {members} members: it can be deleted once they left",
                    r.group
                ),
            });
        }
        if current.is_empty() {
            return Err(Refusal {
                code: ErrorCode::UnknownGroup,
                message: format!("group {} has no members and no committed offsets", r.group),
            });
        }
        outcome.extend(current.keys().map(|tp| (tp.clone(), ErrorCode::None)));
    } else {
        for t in &r.topics {
            let parts: Vec<u32> = if t.partitions.is_empty() {
                let range = (t.topic.clone(), 0)..=(t.topic.clone(), u32::MAX);
                current.range(range).map(|(tp, _)| tp.1).collect()
            } else {
                t.partitions.clone()
            };
            let code = if subscribed.contains(&t.topic) {
                ErrorCode::GroupSubscribedToTopic
            } else {
                ErrorCode::None
            };
            outcome.extend(parts.into_iter().map(|p| ((t.topic.clone(), p), code)));
        }
    }
    // A partition without an offset has nothing to forget: answered without a record.
    let records: Vec<OffsetRecord> = outcome
        .iter()
        .filter(|(tp, code)| **code == ErrorCode::None && current.contains_key(*tp))
        .map(|(tp, _)| OffsetRecord { group: r.group.clone(), tp: tp.clone(), committed: None })
        .collect();
    if !records.is_empty() {
        let forgotten = records.len();
        match store(shard, &part, &r.group, || records).await {
            Ok(_) => info!(group = %r.group, offsets = forgotten, "group offsets deleted"),
            Err(code) => {
                outcome.values_mut().filter(|c| **c == ErrorCode::None).for_each(|c| *c = code)
            }
        }
    }
    let mut topics: Vec<CommitTopicResult> = Vec::new();
    for ((topic, partition), code) in outcome {
        let entry = PartitionError { partition, error: code.as_u16() };
        match topics.last_mut() {
            Some(last) if last.name == topic => last.partitions.push(entry),
            _ => topics.push(CommitTopicResult { name: topic, partitions: vec![entry] }),
        }
    }
    Ok(DeleteGroupOffsetsResponse { error: 0, message: String::new(), topics })
}

/// A group's committed offsets as wire topics, only `topics` if not empty, and only those
/// committed to the topic that has the name now (not to one deleted before it was created
/// again, nor to one deleted since: the expiry sweep forgets those).
fn committed_topics(
    g: &crate::group::Group,
    topics: &[String],
    md: &crate::metadata::Metadata,
) -> Vec<CommitTopic> {
    let mut out: Vec<CommitTopic> = Vec::new();
    for ((topic, partition), c) in &g.offsets {
        if !topics.is_empty() && !topics.contains(topic) {
            continue;
        }
        if !c.belongs_to(md.topic_id(topic)) {
            continue;
        }
        let entry = CommittedOffset {
            partition: *partition,
            offset: c.offset,
            metadata: c.metadata.clone(),
        };
        match out.last_mut() {
            Some(last) if last.name == *topic => last.partitions.push(entry),
            _ => out.push(CommitTopic { name: topic.clone(), partitions: vec![entry] }),
        }
    }
    out
}

async fn fetch_offsets(
    shard: &Rc<Shard>,
    r: FetchOffsetsRequest,
) -> Result<FetchOffsetsResponse, Refusal> {
    offsets_of(shard, &r.group).await?;
    let md = shard.metadata();
    let topics =
        shard.groups.read_group(&r.group, |g| g.map(|g| committed_topics(g, &r.topics, &md)));
    Ok(FetchOffsetsResponse {
        error: 0,
        message: String::new(),
        topics: topics.unwrap_or_default(),
    })
}

async fn describe(
    shard: &Rc<Shard>,
    r: DescribeGroupRequest,
) -> Result<DescribeGroupResponse, Refusal> {
    offsets_of(shard, &r.group).await?;
    let now = Instant::now();
    let md = shard.metadata();
    shard.groups.read_group(&r.group, |g| {
        let Some(g) = g else {
            return Err(Refusal {
                code: ErrorCode::UnknownGroup,
                message: format!("group {} has no members and no committed offsets", r.group),
            });
        };
        let m = &g.membership;
        Ok(DescribeGroupResponse {
            error: 0,
            message: String::new(),
            group: r.group.clone(),
            generation: m.generation,
            assignor: m.assignor,
            rebalancing: m.rebalancing(),
            members: m
                .members
                .values()
                .map(|mem| GroupMemberDescription {
                    member_id: mem.id.clone(),
                    instance_id: mem.instance_id.clone(),
                    topics: mem.topics.clone(),
                    assignment: to_wire(&mem.granted),
                    since_heartbeat_ms: now.saturating_duration_since(mem.last_seen).as_millis()
                        as u64,
                    client_id: mem.client_id.clone(),
                    client_host: mem.client_host.clone(),
                })
                .collect(),
            offsets: committed_topics(g, &[], &md),
        })
    })
}

/// Replays every offsets partition this shard owns (so groups known only by their
/// committed offsets are listed and reported too).
pub async fn load_owned(shard: &Shard) {
    let md = shard.metadata();
    if let Some(t) = md.topic(OFFSETS_TOPIC) {
        for (index, &owner) in t.shards.iter().enumerate() {
            if owner != shard.id {
                continue;
            }
            if let Some(part) = shard.partition(OFFSETS_TOPIC, index as u32) {
                let _ = shard.groups.ensure_loaded(index as u32, &part.log).await;
            }
        }
    }
}

async fn list(shard: &Rc<Shard>, r: ListGroupsRequest, origin: Origin) -> ListGroupsResponse {
    load_owned(shard).await;
    let mut groups: Vec<GroupSummary> = shard
        .groups
        .list(&r.prefix)
        .into_iter()
        .map(|(group, members, generation)| GroupSummary { group, members, generation })
        .collect();
    if origin == Origin::Client {
        for id in (0..shard.shard_count).filter(|&id| id != shard.id) {
            let Ok(f) = wire::encode_request(0, &r) else { continue };
            if let Some(resp) =
                shard.mesh.forward(id, f).await.and_then(|f| decode_reply::<ListGroupsResponse>(&f))
            {
                groups.extend(resp.groups);
            }
        }
    }
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    ListGroupsResponse { groups }
}

/// Removes members whose session timed out, on this shard's groups, until the shard stops.
pub async fn expiry_loop(shard: Rc<Shard>) {
    while !shard.stopping.get() {
        glommio::timer::sleep(Duration::from_millis(EXPIRY_CHECK_MS)).await;
        let counts = partition_counter(&shard);
        let bytes_max = shard.config.group_member_bytes_per_shard_max;
        for (group, member, why) in shard.groups.expire(Instant::now(), &counts, bytes_max) {
            match why {
                Removal::Expired => {
                    info!(%group, %member, "member removed: no heartbeat within its session timeout, or it kept a partition the group took from it past the revocation timeout")
                }
                Removal::OverBudget => {
                    warn!(%group, %member, bytes_max, "member removed: a topic its group reads grew and the shard's group members would hold more than group_member_bytes_per_shard_max")
                }
            }
        }
    }
}
