//! Produce: validate each batch once, append it to the owner's log, answer at the ack level.
//!
//! Stage one (in arrival order) validates and enqueues local partitions — offsets are
//! assigned here, so a connection's appends to a partition keep their order — and sends the
//! remote partitions to their owners. Stage two waits for acks and merges the results.
//!
//! What a producer may store is checked here, on the owner (local and forwarded produce
//! alike), in two steps: the format (`BatchEnvelope::validate`: lengths, CRC, header,
//! attribute bits the format does not define, the codec; then the records archive, once —
//! a compressed batch is decompressed into a scratch buffer for that and stored as it came)
//! and [`check_producible`] (this broker's features). The control and transactional attribute
//! bits are defined by the format, so stored batches may carry them once the broker writes
//! transaction markers and its read path and consumers must accept them: the codec cannot
//! refuse them. Whether a *producer* may set them is the broker's business — control
//! batches are only ever written by the broker, and transactions are not implemented — so
//! that rule lives here. A refused batch fails its partition with `INVALID_BATCH` and
//! nothing of that partition's request is stored.

use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use tracing::debug;
use wire::constants::{ATTR_COMPACTED, ATTR_CONTROL, ATTR_TRANSACTIONAL};
use wire::{
    AckLevel, AlignedVec, ArchivedExpectedPosition, ArchivedProduceRequest, BatchEnvelope,
    BatchHeader, Envelopes, ErrorCode, ExpectedPosition, ProducePartition, ProducePartitionResult,
    ProduceRequest, ProduceResponse, ProduceTopicResult,
};

use super::forward::{route, Answers, Forwarded, Owner, Split};
use super::{error_frame, ready, respond, Origin, Reply};
use crate::clock::now_ms;
use crate::counters::Counters;
use crate::frame_pool::KeptFrame;
use crate::group::OFFSETS_TOPIC;
use crate::partition::Partition;
use crate::producer_state::Verdict;
use crate::request::Request;
use crate::shard::Shard;
use crate::stage_latency::{self, Stage};
use crate::storage::{AppendTicket, ByteView, Claim};
use crate::timeout::or_at;

enum Slot {
    Done(ProducePartitionResult),
    Local {
        partition: u32,
        tickets: Vec<AppendTicket>,
        log_append_time_ms: i64,
        enqueued: std::time::Instant,
        /// Where the answer starts if batches before these were stored already.
        first_base: Option<u64>,
    },
    /// Every batch was appended before (an idempotent producer's retry): answered with the
    /// original offsets once they reach the ack level.
    Duplicate {
        part: Rc<Partition>,
        base_offset: u64,
        last_offset: u64,
    },
    Remote(Forwarded),
}

fn failed(partition: u32, code: ErrorCode) -> ProducePartitionResult {
    ProducePartitionResult {
        partition,
        error: code.as_u16(),
        base_offset: -1,
        last_offset: -1,
        log_append_time_ms: -1,
        current_offset: -1,
    }
}

/// Why a batch that is valid as bytes is still refused from a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProduceRefusal {
    /// Attribute bit 3: control batches (transaction markers) are written by the broker.
    #[error(
        "batch attributes {attributes:#06x} set the control bit ({ATTR_CONTROL:#06x}): control \
         batches are written by the broker, never produced"
    )]
    Control {
        /// The batch's attributes.
        attributes: u16,
    },
    /// Attribute bit 4: transactions are not implemented.
    #[error(
        "batch attributes {attributes:#06x} set the transactional bit ({ATTR_TRANSACTIONAL:#06x}): \
         this broker does not implement transactions"
    )]
    Transactional {
        /// The batch's attributes.
        attributes: u16,
    },
    /// Attribute bit 5: compacted batches are written by the log cleaner.
    #[error(
        "batch attributes {attributes:#06x} set the compacted bit ({ATTR_COMPACTED:#06x}): \
         compacted batches are written by the broker's log cleaner, never produced"
    )]
    Compacted {
        /// The batch's attributes.
        attributes: u16,
    },
}

impl ProduceRefusal {
    /// The wire code that reports it.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidBatch
    }
}

/// Refuses a validated batch whose attributes ask for a feature a producer may not use here
/// (see the module doc). Bits the format does not define and unknown codecs were already
/// refused by `BatchEnvelope::validate`.
pub fn check_producible(header: BatchHeader<'_>) -> Result<(), ProduceRefusal> {
    let attributes = header.attributes();
    if attributes & ATTR_CONTROL != 0 {
        return Err(ProduceRefusal::Control { attributes });
    }
    if attributes & ATTR_TRANSACTIONAL != 0 {
        return Err(ProduceRefusal::Transactional { attributes });
    }
    if attributes & ATTR_COMPACTED != 0 {
        return Err(ProduceRefusal::Compacted { attributes });
    }
    Ok(())
}

/// A local partition's part of a request, validated, between the steps of stage one.
struct LocalPlan {
    part: Rc<Partition>,
    index: u32,
    /// Each batch's bytes in the request's frame.
    batches: Vec<Range<usize>>,
    expect: ExpectedPosition,
    /// The one key of a key-conditional append.
    key: Option<Vec<u8>>,
}

enum Plan {
    Done(ProducePartitionResult),
    Local(LocalPlan),
    Remote(Forwarded),
}

/// A local partition's batches once checked: the offsets claimed for each (and its bytes in
/// the frame), or the answer without them.
enum Admitted {
    /// `first_base`: where batches before the claimed ones were stored already (an
    /// idempotent retry of a client batch split in parts, some kept by a crash): the answer
    /// starts there.
    Claimed {
        part: Rc<Partition>,
        index: u32,
        claims: Vec<(Claim, Range<usize>)>,
        first_base: Option<u64>,
    },
    Answered(Slot),
}

/// Stage one of a produce request, in three steps. (1) Nothing awaits: the request is
/// validated and routed, local batches are noted by their place in the frame, forwards are
/// copied. (2) Each local log's room is awaited (and a key-conditional append's key index),
/// in arrival order. (3) Nothing awaits: per local partition the producer checks and
/// conditions, offsets claimed and written into the frame's batches, which the logs then
/// store — as views of the frame itself when one partition's batches are nearly all of it
/// (`KEPT_FRAME_SHARE`), else copied.
pub async fn start(shard: &Rc<Shard>, mut request: Request, origin: Origin) -> Reply {
    let (header, received) = (request.header, request.received);
    let frame_at = request.frame.as_ptr() as usize;
    let req: &ArchivedProduceRequest = match wire::access_body::<ProduceRequest>(request.body()) {
        Ok(r) => r,
        Err(e) => return ready(error_frame(&header, e.code(), &e.to_string())),
    };
    let ack = req.ack.to_native();
    let timeout_ms = req.timeout_ms.to_native();
    let mut plans: Vec<(String, Vec<Plan>)> = Vec::with_capacity(req.topics.len());
    let mut split = Split::<ProduceRequest>::default();
    for t in req.topics.iter() {
        let name = t.name.as_str();
        let mut topic_plans = Vec::with_capacity(t.partitions.len());
        for p in t.partitions.iter() {
            let index = p.partition.to_native();
            let plan = match route(shard, name, index, origin) {
                // The broker alone writes its internal topics.
                _ if name == OFFSETS_TOPIC => Plan::Done(failed(index, ErrorCode::InternalTopic)),
                Err(code) => Plan::Done(failed(index, code)),
                Ok(Owner::Here) => {
                    let expect = expected(&p.expect);
                    plan_local(shard, name, index, p.batches.as_slice(), expect, frame_at)
                }
                Ok(Owner::Peer(owner)) => Plan::Remote(split.add(
                    owner,
                    name,
                    index,
                    ProducePartition {
                        partition: index,
                        batches: p.batches.as_slice().to_vec(),
                        expect: expected(&p.expect),
                    },
                    || ProduceRequest { ack, timeout_ms, topics: Vec::new() },
                )),
            };
            topic_plans.push(plan);
        }
        plans.push((name.to_owned(), topic_plans));
    }
    for plan in plans.iter_mut().flat_map(|(_, p)| p.iter_mut()) {
        let Plan::Local(local) = plan else { continue };
        if local.key.is_some() {
            if local.part.keys.is_over_budget() {
                *plan = Plan::Done(failed(local.index, ErrorCode::ResourceLimit));
                continue;
            }
            if origin != Origin::Client && !local.part.keys.is_current(local.part.log.rollbacks()) {
                // Forwarded: the peer's later requests wait behind this stage (`peer.rs`),
                // those of every client on that shard, and a build scans the whole log. It
                // is built in the background; the append is refused as retriable.
                build_key_index(shard, &local.part);
                *plan = Plan::Done(failed(local.index, ErrorCode::Loading));
                continue;
            }
            if let Err(e) = local.part.keys.ensure(&local.part.log).await {
                *plan = Plan::Done(failed(local.index, e.code()));
                continue;
            }
        }
        // Backpressure: the reader stops here while the log's write queue is full.
        local.part.log.writable().await;
    }
    let slots = append_all(shard, &mut request.frame, plans, ack, now_ms());
    // Send forwards now, still in arrival order; their answers are awaited in stage two.
    let forwards = split.send(shard).await;
    // Their copies of the batches wait in the shard-to-shard channels and on their owners
    // until they answer: the hold of the request's frame (a large one's, at least their
    // size) stays until then, the frame itself goes now.
    let held = if forwards.is_empty() { None } else { request.into_held() };
    // One deadline for the local partitions' acks: each waits against it (a timeout each
    // would let a request of n stuck partitions take n timeouts). A forwarded partition
    // waits `timeout_ms` on its owner.
    let deadline = (timeout_ms > 0)
        .then(|| std::time::Instant::now() + Duration::from_millis(u64::from(timeout_ms)));
    Box::pin(async move {
        let _held = held;
        let mut answers = Answers::<ProduceResponse>::collect(forwards).await;
        let mut topics = Vec::with_capacity(slots.len());
        for (name, topic_slots) in slots {
            let mut partitions = Vec::with_capacity(topic_slots.len());
            for slot in topic_slots {
                partitions.push(match slot {
                    Slot::Done(r) => r,
                    Slot::Local {
                        partition,
                        tickets,
                        log_append_time_ms,
                        enqueued,
                        first_base,
                    } => {
                        let mut r =
                            wait_acks(partition, tickets, log_append_time_ms, deadline).await;
                        // (Stored before these, so at the ack level once these are.)
                        if let (0, Some(base)) = (r.error, first_base) {
                            r.base_offset = base as i64;
                        }
                        stage_latency::record_since(Stage::ProduceAck, enqueued);
                        r
                    }
                    Slot::Duplicate { part, base_offset, last_offset } => {
                        wait_duplicate(part, base_offset, last_offset, ack, deadline).await
                    }
                    Slot::Remote(f) => {
                        answers.take(&f).unwrap_or_else(|| failed(f.index, ErrorCode::NotOwner))
                    }
                });
            }
            topics.push(ProduceTopicResult { name, partitions });
        }
        let response = respond(&header, &ProduceResponse { topics });
        stage_latency::record_since(Stage::Produce, received);
        response
    })
}

/// A partition's batches may stay in the request's frame (the log keeps views of it instead
/// of copies) when they are at least this share of the frame's buffer, so the log never
/// keeps a frame mostly of bytes it does not count: at most 8/7 of what it counts.
const KEPT_FRAME_SHARE: (usize, usize) = (7, 8);

/// Largest frame buffer kept so. The cache evicts batch by batch and a frame stays whole
/// until its last batch goes, so a partly evicted frame (at most one per partition whose
/// batches straddle the cache's eviction point) keeps at most this much beyond what the
/// cache counts.
const KEPT_FRAME_BYTES_MAX: usize = crate::frame_pool::SPARE_FRAME_BYTES_MAX;

/// Builds `part`'s key index in the shard's background task queue unless a build runs: a
/// failed one (an I/O error; over budget is final) is tried again by the next forwarded
/// conditional append. (Spawned from the peer's inbox task, it would share that task's
/// queue, whose tasks take turns in 100 ms slices: the inbox would wait for them.)
fn build_key_index(shard: &Shard, part: &Rc<Partition>) {
    // One at a time, claimed before the task first runs (requests meanwhile spawn none),
    // and not again within a second of a failure.
    if !part.keys.claim_background_build() {
        return;
    }
    let part_in = part.clone();
    let build = async move {
        let part = part_in;
        let built = part.keys.ensure(&part.log).await;
        if let Err(e) = &built {
            tracing::warn!(topic = %part.topic, partition = part.index, error = %e, "key index not built");
        }
        part.keys.background_build_ended(built.is_err());
    };
    let task = match shard.background.get() {
        Some(&queue) => glommio::spawn_local_into(build, queue),
        None => Ok(glommio::spawn_local(build)),
    };
    match task {
        Ok(task) => drop(task.detach()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a key index build");
            part.keys.background_build_ended(true);
        }
    }
}

/// Validates every batch of one partition (format, what a producer may store, size, a key
/// condition's one key) and notes where each lies in the frame (at `frame_at`).
fn plan_local(
    shard: &Rc<Shard>,
    topic: &str,
    index: u32,
    bytes: &[u8],
    expect: ExpectedPosition,
    frame_at: usize,
) -> Plan {
    let Some(part) = shard.partition(topic, index) else {
        return Plan::Done(failed(index, ErrorCode::UnknownPartition));
    };
    if bytes.is_empty() {
        return Plan::Done(failed(index, ErrorCode::InvalidBatch));
    }
    let mut views = Vec::new();
    // Compressed batches are opened (validated) one at a time into one buffer and not kept:
    // a request of small batches that each decompress to 16 MiB holds one of them.
    let mut scratch = AlignedVec::new();
    let conditional =
        matches!(expect, ExpectedPosition::KeyLastOffset(_) | ExpectedPosition::KeyNeverWritten);
    let mut keys = SingleKey::default();
    for b in Envelopes::new(bytes) {
        let (code, reason) = match b.map(|v| (v, check_producible(v.header()))) {
            Ok((v, Ok(()))) => match v.open(&mut scratch) {
                Ok(view) => {
                    if conditional {
                        keys.add(&view);
                    }
                    views.push(v.bytes());
                    continue;
                }
                Err(e) => (e.code(), e.to_string()),
            },
            Ok((_, Err(e))) => (e.code(), e.to_string()),
            Err(e) => (e.code(), e.to_string()),
        };
        // The response carries only the code; the reason is here for whoever debugs it.
        debug!(topic, partition = index, batch = views.len(), %reason, "batch refused");
        return Plan::Done(failed(index, code));
    }
    let limit = part.log.batch_bytes_max();
    if views.iter().any(|v| v.len() > limit) {
        return Plan::Done(failed(index, ErrorCode::BatchTooLarge));
    }
    // A key condition needs one key over all records, and the partition's key index.
    let key = match expect {
        ExpectedPosition::KeyLastOffset(_) | ExpectedPosition::KeyNeverWritten => {
            let SingleKey::One(key) = keys else {
                debug!(
                    topic,
                    partition = index,
                    "key-conditional append whose records do not share one key"
                );
                return Plan::Done(failed(index, ErrorCode::InvalidRequest));
            };
            Some(key)
        }
        _ => None,
    };
    let batches = views
        .iter()
        .map(|v| {
            let at = v.as_ptr() as usize - frame_at;
            at..at + v.len()
        })
        .collect();
    Plan::Local(LocalPlan { part, index, batches, expect, key })
}

/// Step (3) of stage one: admits every local partition's batches, writes their offsets into
/// `frame` and has the logs store them (nothing awaits, so the claimed offsets hold).
fn append_all(
    shard: &Rc<Shard>,
    frame: &mut AlignedVec,
    plans: Vec<(String, Vec<Plan>)>,
    ack: AckLevel,
    now: i64,
) -> Vec<(String, Vec<Slot>)> {
    let admitted: Vec<(String, Vec<Admitted>)> = plans
        .into_iter()
        .map(|(name, topic_plans)| {
            let topic_admitted = topic_plans
                .into_iter()
                .map(|plan| match plan {
                    Plan::Done(r) => Admitted::Answered(Slot::Done(r)),
                    Plan::Remote(f) => Admitted::Answered(Slot::Remote(f)),
                    Plan::Local(local) => admit(shard, &name, local, frame, ack, now),
                })
                .collect();
            (name, topic_admitted)
        })
        .collect();
    // The frame itself is kept when one partition's batches (of all its entries: a client
    // may send each batch as an entry of its own) are nearly all of it.
    let mut stored: HashMap<*const Partition, usize> = HashMap::new();
    for a in admitted.iter().flat_map(|(_, a)| a) {
        if let Admitted::Claimed { part, claims, .. } = a {
            for (claim, range) in claims {
                wire::batch::header::assign(&mut frame[range.clone()], claim.base_offset(), now);
            }
            let bytes: usize = claims.iter().map(|(_, r)| r.len()).sum();
            *stored.entry(Rc::as_ptr(part)).or_default() += bytes;
        }
    }
    let (share, of) = KEPT_FRAME_SHARE;
    let cap = frame.capacity();
    let kept_part = match cap <= KEPT_FRAME_BYTES_MAX {
        true => stored.iter().find(|&(_, &sum)| sum > 0 && sum * of >= cap * share).map(|p| *p.0),
        false => None,
    };
    let kept = kept_part.map(|_| ByteView::new(Rc::new(KeptFrame::new(std::mem::take(frame)))));
    // One clock read for the request's batches (`produce_ack` starts there).
    let enqueued = std::time::Instant::now();
    let mut store = |a: Admitted| {
        let (part, index, claims, first_base) = match a {
            Admitted::Answered(slot) => return slot,
            Admitted::Claimed { part, index, claims, first_base } => {
                (part, index, claims, first_base)
            }
        };
        let in_kept = kept_part == Some(Rc::as_ptr(&part));
        let mut tickets = Vec::with_capacity(claims.len());
        let mut refused = None;
        for (claim, range) in claims {
            let len = range.len() as u64;
            let bytes = match &kept {
                Some(view) if in_kept => view.slice(range.start, range.end),
                Some(view) => copied(&view[range]),
                None => copied(&frame[range]),
            };
            // Once one fails (the log was fenced), the rest fail too: earlier batches are in.
            match part.log.store(claim, bytes) {
                Ok(t) => {
                    let (records, bytes) = (t.last_offset - t.base_offset + 1, len);
                    let c = &shard.counters;
                    Counters::add(&c.bytes_in, bytes);
                    Counters::add(&c.batches_in, 1);
                    Counters::add(&c.records_in, records);
                    Counters::add(&c.batches_in_frame, u64::from(in_kept));
                    c.partitions.count_in(&part.topic, part.index, records, bytes);
                    tickets.push(t);
                }
                Err(e) => refused = refused.or(Some(e.code())),
            }
        }
        if let (true, Some(code)) = (tickets.is_empty(), refused) {
            return Slot::Done(failed(index, code));
        }
        Slot::Local { partition: index, tickets, log_append_time_ms: now, enqueued, first_base }
    };
    admitted
        .into_iter()
        .map(|(name, topic_admitted)| (name, topic_admitted.into_iter().map(&mut store).collect()))
        .collect()
}

/// A batch's own copy.
fn copied(batch: &[u8]) -> ByteView {
    ByteView::new(Rc::new(wire::to_aligned(batch)))
}

/// Checks one local partition's batches against its producers' state and its condition and
/// claims their offsets (all, or none but a prefix an idempotent producer's refusal ends).
fn admit(
    shard: &Rc<Shard>,
    topic: &str,
    plan: LocalPlan,
    frame: &[u8],
    ack: AckLevel,
    now: i64,
) -> Admitted {
    let LocalPlan { part, index, batches, expect, key } = plan;
    let answer = |r| Admitted::Answered(Slot::Done(r));
    let mut checked = false;
    // Claimed in offset order; an idempotent producer's batches are remembered as they are.
    let mut claims: Vec<(Claim, Range<usize>)> = Vec::with_capacity(batches.len());
    let mut duplicate: Option<(u64, u64)> = None;
    let mut producers = part.producers.borrow_mut();
    producers.after_rollbacks(part.log.rollbacks(), part.log.next_offset());
    let md = shard.metadata();
    let epochs = &md.producer_epochs;
    let mut scratch = AlignedVec::new();
    for range in batches {
        let v = &frame[range.clone()];
        let h = wire::BatchHeader::new(v).expect("validated above");
        let (id, epoch, sequence, records) =
            (h.producer_id(), h.producer_epoch(), h.base_sequence(), h.record_count());
        // A transactional producer's newer incarnation fences the older everywhere.
        let fenced = epochs.get(&id).is_some_and(|&e| epoch < e);
        let verdict = match fenced {
            true => Verdict::Refuse(ErrorCode::ProducerFenced),
            false => producers.check(id, epoch, sequence, records),
        };
        match verdict {
            Verdict::Append => {}
            // Stored before: skipped (a request of only retried batches gets their offsets).
            Verdict::Duplicate { base_offset, last_offset } => {
                if claims.is_empty() {
                    let first = duplicate.map_or(base_offset, |(b, _)| b);
                    duplicate = Some((first, last_offset));
                }
                continue;
            }
            Verdict::Refuse(code) if claims.is_empty() && duplicate.is_none() => {
                debug!(topic, partition = index, producer = id, epoch, sequence, %code, "idempotent batch refused");
                return answer(failed(index, code));
            }
            Verdict::Refuse(_) => break, // earlier batches are in; report them
        }
        if !checked {
            // The condition holds for the first batch to be appended, atomically with it.
            checked = true;
            // The index may have gone over budget while this request waited to be written,
            // or appends it noted failed meanwhile (their offsets went to others): the retry
            // builds it again.
            if key.is_some() && !part.keys.is_current(part.log.rollbacks()) {
                return answer(failed(index, ErrorCode::ResourceLimit));
            }
            if let Some(actual) = condition_fails(&part, expect, key.as_deref()) {
                let mut r = failed(index, ErrorCode::ConditionFailed);
                r.current_offset = actual;
                return answer(r);
            }
        }
        match part.log.claim(v, ack, now) {
            Ok(c) => {
                producers.record(id, epoch, sequence, records, c.base_offset(), now);
                if part.keys.wants_batches() {
                    // A compressed batch is opened again (it was validated at the plan).
                    if let Ok(Ok(view)) = BatchEnvelope::validate(v).map(|e| e.open(&mut scratch)) {
                        part.keys.note(&view, c.base_offset());
                    }
                }
                claims.push((c, range));
            }
            Err(e) if claims.is_empty() => return answer(failed(index, e.code())),
            Err(_) => break, // earlier batches are in; report them (the client retries the rest)
        }
    }
    drop(producers);
    match duplicate {
        Some((base_offset, last_offset)) if claims.is_empty() => {
            Admitted::Answered(Slot::Duplicate { part, base_offset, last_offset })
        }
        _ => {
            let first_base = duplicate.map(|(base, _)| base);
            Admitted::Claimed { part, index, claims, first_base }
        }
    }
}

/// The native form of a request's condition.
fn expected(e: &ArchivedExpectedPosition) -> ExpectedPosition {
    match e {
        ArchivedExpectedPosition::Any => ExpectedPosition::Any,
        ArchivedExpectedPosition::NextOffset(n) => ExpectedPosition::NextOffset(n.to_native()),
        ArchivedExpectedPosition::KeyLastOffset(o) => {
            ExpectedPosition::KeyLastOffset(o.to_native())
        }
        ArchivedExpectedPosition::KeyNeverWritten => ExpectedPosition::KeyNeverWritten,
    }
}

/// The one key every record of a request's batches has, if they share one.
#[derive(Default)]
enum SingleKey {
    /// No record seen yet.
    #[default]
    None,
    One(Vec<u8>),
    /// Records without a key, or more than one key.
    Not,
}

impl SingleKey {
    fn add(&mut self, batch: &wire::BatchView<'_>) {
        for r in batch.records() {
            match (&*self, r.key()) {
                (SingleKey::Not, _) => return,
                (_, None) => *self = SingleKey::Not,
                (SingleKey::None, Some(k)) => *self = SingleKey::One(k.to_vec()),
                (SingleKey::One(seen), Some(k)) if seen != k => *self = SingleKey::Not,
                (SingleKey::One(_), Some(_)) => {}
            }
        }
    }
}

/// `Some(actual position)` when `expect` does not hold now (call right before enqueue).
fn condition_fails(part: &Partition, expect: ExpectedPosition, key: Option<&[u8]>) -> Option<i64> {
    let key_last = || key.and_then(|k| part.keys.last_offset(k, part.log.log_start_offset()));
    match expect {
        ExpectedPosition::Any => None,
        ExpectedPosition::NextOffset(n) => {
            let next = part.log.next_offset();
            (next != n).then_some(next as i64)
        }
        ExpectedPosition::KeyLastOffset(o) => {
            let last = key_last();
            (last != Some(o)).then(|| last.map_or(-1, |l| l as i64))
        }
        ExpectedPosition::KeyNeverWritten => key_last().map(|l| l as i64),
    }
}

/// The answer to a retried batch: its original offsets, once they reached `ack` (a retry
/// must not be acked before its original would have been).
async fn wait_duplicate(
    part: Rc<Partition>,
    base_offset: u64,
    last_offset: u64,
    ack: AckLevel,
    deadline: Option<std::time::Instant>,
) -> ProducePartitionResult {
    // `false` when the log closed first (the original append's fate is then unknown).
    let reached = async {
        match ack {
            AckLevel::None => true,
            AckLevel::Written if part.log.written_offset() > last_offset => true,
            _ => part.log.high_watermark_mark().wait_for(last_offset + 1).await,
        }
    };
    if !or_at(deadline, reached, || false).await {
        return failed(part.index, ErrorCode::Timeout);
    }
    if part.log.high_watermark() <= last_offset && ack == AckLevel::Durable {
        return failed(part.index, ErrorCode::StorageIo);
    }
    ProducePartitionResult {
        partition: part.index,
        error: 0,
        base_offset: base_offset as i64,
        last_offset: last_offset as i64,
        log_append_time_ms: -1,
        current_offset: -1,
    }
}

async fn wait_acks(
    partition: u32,
    tickets: Vec<AppendTicket>,
    log_append_time_ms: i64,
    deadline: Option<std::time::Instant>,
) -> ProducePartitionResult {
    let base_offset = tickets.first().map_or(-1, |t| t.base_offset as i64);
    let last_offset = tickets.last().map_or(-1, |t| t.last_offset as i64);
    let wait_all = async {
        for t in tickets {
            t.wait().await.map_err(|e| e.code())?;
        }
        Ok::<(), ErrorCode>(())
    };
    match or_at(deadline, wait_all, || Err(ErrorCode::Timeout)).await {
        Ok(()) => ProducePartitionResult {
            partition,
            error: 0,
            base_offset,
            last_offset,
            log_append_time_ms,
            current_offset: -1,
        },
        Err(code) => failed(partition, code),
    }
}

#[cfg(test)]
mod tests {
    use wire::batch::header::covered_crc;
    use wire::constants::ATTR_KNOWN_MASK;
    use wire::{AlignedVec, BatchBuilder, BatchView};

    use super::*;

    /// A one-record batch with `attributes` and a matching CRC.
    fn batch(attributes: u16) -> AlignedVec {
        let mut b = BatchBuilder::new(1 << 12);
        b.append(1, Some(b"k"), Some(b"v"), &[]).unwrap();
        let mut bytes = b.finish().unwrap();
        bytes[26..28].copy_from_slice(&attributes.to_le_bytes());
        let crc = covered_crc(&bytes);
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn control_and_transactional_batches_are_valid_bytes_but_not_producible() {
        assert_eq!(check_producible(BatchView::validate(&batch(0)).unwrap().header()), Ok(()));
        for (attributes, bit) in [
            (ATTR_CONTROL, "control"),
            (ATTR_TRANSACTIONAL, "transactional"),
            (ATTR_CONTROL | ATTR_TRANSACTIONAL, "control"),
            (ATTR_COMPACTED, "compacted"),
        ] {
            let bytes = batch(attributes);
            let view = BatchView::validate(&bytes).expect("the format defines the bit");
            let refused = check_producible(view.header()).unwrap_err();
            assert_eq!(refused.code(), ErrorCode::InvalidBatch);
            assert!(refused.to_string().contains(&format!("the {bit} bit")), "{refused}");
        }
        // Every other bit is refused by the format already, also as INVALID_BATCH.
        for bit in (0..16).map(|i| 1u16 << i) {
            if bit & (ATTR_CONTROL | ATTR_TRANSACTIONAL | ATTR_COMPACTED) == 0 {
                let e = BatchView::validate(&batch(bit)).map(|_| ()).unwrap_err();
                assert_eq!(e.code(), ErrorCode::InvalidBatch, "bit {bit:#06x}: {e}");
                // Bit 6 (null header values) is refused here for the null map it lacks.
                assert!(
                    bit & ATTR_KNOWN_MASK == 0
                        || e.to_string().contains("compress")
                        || e.to_string().contains("null map")
                );
            }
        }
    }
}
