//! Fetch: stored batches, byte for byte, with long-poll up to `max_wait_ms`, in a response of
//! bounded size.
//!
//! # Bounds (Kafka's KIP-74 rule)
//! The response's budget is `min(request max_bytes, fetch_response_bytes_max)`. Partitions
//! are filled in request order, each with whole batches within `min(its max_bytes, what is
//! left of the budget)`; one whose next batch does not fit gets none (error 0; its high
//! watermark shows there is more). The one exception lets a consumer get past a batch larger
//! than its limits: the first partition, in request order, that returns data gets its first
//! batch whole, however large. A batch is at most `BATCH_BYTES_MAX` (16 MiB; topics may raise
//! their limit to it) and config validation keeps `fetch_response_bytes_max` at least that, so
//! a response carries at most `max(budget, that first batch)` batch bytes, never more than
//! `fetch_response_bytes_max`. The connection reserved only the budget for the response
//! (`api::response_reservation`): a first batch beyond it takes room in the request's
//! `budget::ResponseRoom` before it is read ([`read_one`]). Worked example, budget 1 byte, partitions A (empty), B and C
//! (data) asked in that order: A none, B its first batch (say 4 KiB), C none; 4 KiB in all.
//!
//! A request naming one (topic, partition) twice is refused whole with `INVALID_REQUEST`
//! naming it: which entry's offset and limit would be served is anyone's guess, and a client
//! that builds such a request has a bug to fix, not a partition to retry.
//!
//! # Across shards
//! Partitions owned by other shards are forwarded (`forward.rs`): each owner gets the whole
//! budget in its sub-request and answers it under these same rules, in parallel with the local
//! reads (so long-polls overlap). The local results and the owners' answers are then merged in
//! request order and cut by the same rules once more ([`Budget`], [`trim`]), so every bound
//! holds for the whole response. The first partition in request order with data is also the
//! first with data in its owner's sub-request. An owner answers within the limits only,
//! never with a first batch beyond them: that batch is made on the owner but held until it
//! is sent by this shard, so this shard takes the room for it first. When the partition
//! whose turn it is to get its first batch whole ([`Budget`]) is a forwarded one and came
//! back empty with data past its offset, it is asked for again on its own, with a limit this
//! shard took room for beforehand: 1 MiB, then `BATCH_BYTES_MAX` if the batch is larger
//! ([`first_batch_from_owner`]; the unused room is given back). So it gets exactly what one
//! shard owning every partition would give it, and the consumer progresses. Later partitions
//! may get less than that (an owner spent its copy of the budget on partitions the merge then
//! cut, or they were let go while the response waited for room), never more than the
//! bounds; the consumer fetches again. The price: a forwarded fetch may read and hold up to
//! (owners + 1) budgets to send one.
//!
//! # Long-poll
//! Local partitions with nothing past their offset are read again whenever one of their high
//! watermarks moves, until `min_bytes` arrived, the budget is spent (waiting could add
//! nothing), a partition failed (unknown, offset out of range: as in Kafka, the client has
//! something to act on), `max_wait_ms` passed, the client's native connection stopped
//! reading (a Kafka connection reads its next request only once it answered this one), or
//! the shard stops. A fetch with `min_bytes` 0 does not wait (`long_poll::fetch_wait_ms`).
//! A partition that returned data, an error, or nothing only because the budget was spent
//! is not read again. Owners of forwarded partitions long-poll their own partitions the same
//! way (for what is left of the wait), and the first to answer before the deadline (its
//! part is due: data there, a first batch left to this shard, or a partition it was asked
//! failed) makes the response due, as local data does: the local long-poll ends
//! ([`Owners`]), and owners still waiting are told to answer at once
//! (`mesh::ShardMsg::EndWait`). Before, a fetch naming a partition of each shard waited out
//! `max_wait_ms` when data came on only one of them.
//!
//! Batch bytes and batches sent are counted (`bytes_out`, `batches_out`) on the shard that
//! answers the client, for what the response carries.

use std::cell::Cell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Instant;

use wire::{ErrorCode, FetchPartitionResult, FetchRequest, FetchResponse, FetchTopicResult};

use super::forward::{route, Answers, Forward, Forwarded, Forwards, Owner, Split};
use super::long_poll::{fetch_deadline, fetch_wait_ms};
use super::{error_frame, respond, Origin};
use crate::budget::ResponseRoom;
use crate::counters::Counters;
use crate::partition::Partition;
use crate::request::Request;
use crate::shard::Shard;
use crate::storage::{FirstBatch, StorageError};
use crate::watermark::{WaitAny, WaitFor, Watermark};

/// A partition this shard owns, read (and read again while long-polling) here.
struct LocalRead {
    part: Rc<Partition>,
    offset: u64,
    max_bytes: usize,
    result: Option<FetchPartitionResult>,
    /// Read for good: it returned data or an error, or has data the budget had no room for.
    done: bool,
}

/// Where one partition's result comes from.
enum Slot {
    Done(FetchPartitionResult),
    Local(usize),
    /// Forwarded to its owner, from this offset.
    Remote(Forwarded, u64),
}

/// A response's byte budget, spent in request order.
#[derive(Debug, Clone, Copy)]
struct Budget {
    left_bytes: usize,
    /// A partition returned data: from now on no first batch comes beyond the limit.
    first_given: bool,
}

impl Budget {
    fn new(bytes: usize) -> Self {
        Budget { left_bytes: bytes, first_given: false }
    }

    /// The limit for the next partition in request order (its own maximum
    /// `partition_max_bytes`), and whether its first batch comes whatever its size.
    fn limit(&self, partition_max_bytes: usize) -> (usize, FirstBatch) {
        let first = if self.first_given { FirstBatch::IfItFits } else { FirstBatch::Always };
        (partition_max_bytes.min(self.left_bytes), first)
    }

    /// Spends what that partition returned.
    fn spend(&mut self, bytes: usize) {
        if bytes > 0 {
            self.first_given = true;
            self.left_bytes = self.left_bytes.saturating_sub(bytes);
        }
    }

    /// Nothing more can be returned.
    fn spent(&self) -> bool {
        self.first_given && self.left_bytes == 0
    }
}

/// Cuts `batches` (whole batches back to back, as stored) to the whole batches within
/// `limit_bytes`, the first one kept regardless if `first` is [`FirstBatch::Always`].
fn trim(batches: &mut Vec<u8>, limit_bytes: usize, first: FirstBatch) {
    let mut keep_bytes = 0usize;
    for h in wire::batch::header::trusted_headers(batches) {
        let len = h.batch_len() as usize;
        let must_take = keep_bytes == 0 && first == FirstBatch::Always;
        if !must_take && keep_bytes + len > limit_bytes {
            break;
        }
        keep_bytes += len;
    }
    batches.truncate(keep_bytes);
}

/// The first (topic, partition) the request names twice, if any.
fn named_twice(req: &FetchRequest) -> Option<(&str, u32)> {
    let mut seen = HashSet::new();
    req.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.as_str(), p.partition)))
        .find(|&key| !seen.insert(key))
}

fn failed(partition: u32, code: ErrorCode) -> FetchPartitionResult {
    FetchPartitionResult {
        partition,
        error: code.as_u16(),
        high_watermark: 0,
        log_start_offset: 0,
        batches: Vec::new(),
    }
}

/// Answers a fetch request.
pub async fn handle(shard: &Rc<Shard>, request: &Request, origin: Origin) -> wire::AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<FetchRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    if let Some((topic, partition)) = named_twice(&req) {
        let message = format!("partition {topic}/{partition} is named twice in one fetch");
        return error_frame(&header, ErrorCode::InvalidRequest, &message);
    }
    let response_bytes_max = shard.config.fetch_response_bytes_max as usize;
    let budget_bytes = (req.max_bytes as usize).min(response_bytes_max);
    // From when the request arrived: a wait for data before it reserved room
    // (`long_poll.rs`) counts.
    let deadline = fetch_deadline(request.received, fetch_wait_ms(req.max_wait_ms, req.min_bytes));
    let wait_left_ms = deadline.saturating_duration_since(Instant::now()).as_millis() as u32;
    let mut locals: Vec<LocalRead> = Vec::new();
    // Per topic entry: its name and, per partition in request order, (max_bytes, slot).
    let mut slots: Vec<(String, Vec<(usize, Slot)>)> = Vec::new();
    let mut split = Split::<FetchRequest>::default();
    for t in &req.topics {
        let mut topic_slots = Vec::new();
        for p in &t.partitions {
            let slot = match route(shard, &t.name, p.partition, origin) {
                Err(code) => Slot::Done(failed(p.partition, code)),
                Ok(Owner::Here) => match shard.partition(&t.name, p.partition) {
                    Some(part) => {
                        locals.push(LocalRead {
                            part,
                            offset: p.offset,
                            max_bytes: p.max_bytes as usize,
                            result: None,
                            done: false,
                        });
                        Slot::Local(locals.len() - 1)
                    }
                    None => Slot::Done(failed(p.partition, ErrorCode::UnknownPartition)),
                },
                Ok(Owner::Peer(owner)) => {
                    let f = split.add(owner, &t.name, p.partition, p.clone(), || {
                        // The whole budget: the merge below cuts the owners' answers to it.
                        FetchRequest {
                            // What is left of the wait: owners end theirs with this one.
                            max_wait_ms: wait_left_ms,
                            min_bytes: req.min_bytes,
                            max_bytes: budget_bytes as u32,
                            topics: Vec::new(),
                        }
                    });
                    Slot::Remote(f, p.offset)
                }
            };
            topic_slots.push((p.max_bytes as usize, slot));
        }
        slots.push((t.name.clone(), topic_slots));
    }

    let owners = Owners::ask(split.send(shard).await, wait_left_ms > 0);
    let room = request.room();
    // A peer's sub-request is answered within the limits: the first batch beyond them is
    // asked for on its own, once the asking shard has room for it (module docs).
    let whole_first = origin == Origin::Client;
    // The local long-poll ends early when an owner answered (this shard's answer is due),
    // on an owner when the asking shard says so, and for a client when its connection stops
    // reading (`Request::end_wait`).
    let ends: Vec<&Watermark> = request
        .end_wait()
        .into_iter()
        .chain(owners.is_asked().then_some(&owners.answered))
        .collect();
    // A partition that failed makes the answer due, as in Kafka: the client has something
    // to act on (an unknown partition, an offset out of range), not something to wait for.
    let failed_already = slots.iter().flat_map(|(_, t)| t).any(|(_, s)| matches!(s, Slot::Done(_)));
    let rules =
        ReadRules { budget_bytes, min_bytes: req.min_bytes, deadline, whole_first, failed_already };
    let due = read_locals(shard, &mut locals, rules, room, &ends).await;
    let mut answers = owners.answers(shard, due, deadline, request.end_wait()).await;

    // Merge in request order, cut by the same rules over all partitions.
    let mut budget = Budget::new(budget_bytes);
    let (mut sent_bytes, mut sent_batches, mut first_batch_bytes) = (0usize, 0u64, 0usize);
    let mut sent_records = 0u64;
    let mut topics = Vec::with_capacity(slots.len());
    for (name, topic_slots) in slots {
        let mut partitions = Vec::with_capacity(topic_slots.len());
        for (partition_max_bytes, slot) in topic_slots {
            let (limit_bytes, first) = budget.limit(partition_max_bytes);
            let mut r = match slot {
                Slot::Done(r) => r,
                Slot::Local(i) => locals[i].result.take().expect("every local partition was read"),
                Slot::Remote(f, offset) => {
                    let r =
                        answers.take(&f).unwrap_or_else(|| failed(f.index, ErrorCode::NotOwner));
                    let beyond = r.error == 0 && r.batches.is_empty() && r.high_watermark > offset;
                    if first == FirstBatch::Always && beyond {
                        let wanted = FirstBatchWanted { name: &name, f, offset, limit_bytes };
                        let mut made = Made { answers: &mut answers, locals: &mut locals };
                        first_batch_from_owner(shard, wanted, room, &mut made).await.unwrap_or(r)
                    } else {
                        r
                    }
                }
            };
            trim(&mut r.batches, limit_bytes, first);
            if first == FirstBatch::Always {
                first_batch_bytes = wire::batch::header::trusted_headers(&r.batches)
                    .next()
                    .map_or(0, |h| h.batch_len() as usize);
            }
            budget.spend(r.batches.len());
            sent_bytes += r.batches.len();
            let mut records = 0u64;
            for h in wire::batch::header::trusted_headers(&r.batches) {
                sent_batches += 1;
                records += u64::from(h.record_count());
            }
            sent_records += records;
            if origin == Origin::Client && !r.batches.is_empty() {
                let bytes = r.batches.len() as u64;
                shard.counters.partitions.count_out(&name, r.partition, records, bytes);
            }
            partitions.push(r);
        }
        topics.push(FetchTopicResult { name, partitions });
    }
    assert!(
        sent_bytes <= budget_bytes.max(first_batch_bytes) && sent_bytes <= response_bytes_max,
        "fetch response of {sent_bytes} batch bytes: budget {budget_bytes}, first batch \
         {first_batch_bytes}, broker maximum {response_bytes_max}"
    );
    if origin == Origin::Client {
        Counters::add(&shard.counters.bytes_out, sent_bytes as u64);
        Counters::add(&shard.counters.batches_out, sent_batches);
        Counters::add(&shard.counters.records_out, sent_records);
    }
    respond(&header, &FetchResponse { topics })
}

/// How the local partitions are read: within `budget_bytes`, long-polling until
/// `min_bytes` arrived or `deadline` (not at all if a partition `failed_already` or one
/// fails when read); a first batch beyond the budget whole only if `whole_first` (not for a
/// peer's sub-request).
struct ReadRules {
    budget_bytes: usize,
    min_bytes: u32,
    deadline: Instant,
    whole_first: bool,
    failed_already: bool,
}

/// The owners of forwarded partitions, asked: their answers are awaited as they come, and
/// `answered` counts them.
struct Owners {
    waiting: Vec<Asked>,
    /// Sub-requests that do not wait: answered at once.
    at_once: Forwards,
    answered: Watermark,
}

/// One owner's sub-request: where it went, whether it answered, and the task awaiting it.
struct Asked {
    forward: Forward,
    answered: Rc<Cell<bool>>,
    answer: glommio::Task<Option<wire::AlignedVec>>,
}

impl Owners {
    /// Starts awaiting every forward's answer (as they come only if they may `wait`: else
    /// each is awaited in turn, in [`Owners::answers`]).
    fn ask(forwards: Forwards, wait: bool) -> Self {
        let answered = Watermark::new(0);
        if !wait {
            return Owners { waiting: Vec::new(), at_once: forwards, answered };
        }
        let waiting = forwards
            .into_iter()
            .map(|mut f| {
                let (done, mark, reply) =
                    (Rc::new(Cell::new(false)), answered.clone(), f.reply.take());
                let done_too = done.clone();
                let task = glommio::spawn_local(async move {
                    let frame = match reply {
                        Some(rx) => rx.await.ok(),
                        None => None,
                    };
                    done_too.set(true);
                    mark.advance(mark.get() + 1);
                    frame
                });
                Asked { forward: f, answered: done, answer: task }
            })
            .collect();
        Owners { waiting, at_once: Vec::new(), answered }
    }

    /// Some owner was asked to wait for data (its answer can end the local long-poll).
    fn is_asked(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Every owner's answer. Unless the answer is already `due`, waits for the first owner's
    /// (or `deadline`, or `end_wait` reaching 1); then owners still long-polling are told to
    /// answer now (`mesh::ShardMsg::EndWait`): with one answer in, the response is due.
    async fn answers(
        self,
        shard: &Shard,
        due: bool,
        deadline: Instant,
        end_wait: Option<&Watermark>,
    ) -> Answers<FetchResponse> {
        let ended = || end_wait.is_some_and(|w| w.get() >= 1);
        if !self.waiting.is_empty() && !due && self.answered.get() == 0 && !ended() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let slept = async {
                glommio::timer::sleep(remaining).await;
                true
            };
            let waits = end_wait.into_iter().chain([&self.answered]).map(|w| w.wait_for(1));
            futures_lite::future::or(WaitAny(waits.collect()), slept).await;
        }
        if !self.at_once.is_empty() {
            return Answers::collect(self.at_once).await;
        }
        if Instant::now() < deadline && self.waiting.iter().any(|a| !a.answered.get()) {
            // Answers already on their way (the usual case when data was there) come first.
            futures_lite::future::yield_now().await;
            for a in self.waiting.iter().filter(|a| !a.answered.get()) {
                shard.mesh.end_wait(a.forward.owner, a.forward.id).await;
            }
        }
        let mut frames = Vec::with_capacity(self.waiting.len());
        for a in self.waiting {
            frames.push((a.forward.owner, a.answer.await));
        }
        Answers::decode(frames)
    }
}

/// Reads the local partitions by `rules`, in request order; long-polls until `min_bytes`
/// arrived, the budget is spent, `deadline` passed, one of `ends` reached 1 or the shard stops.
/// A first batch beyond the budget grows `room` first (see [`read_one`]). Whether the answer
/// is due now for a reason of its own (not only because nothing here can be waited for or
/// the deadline passed).
async fn read_locals(
    shard: &Shard,
    locals: &mut [LocalRead],
    rules: ReadRules,
    room: Option<&ResponseRoom>,
    ends: &[&Watermark],
) -> bool {
    let ReadRules { budget_bytes, min_bytes, deadline, whole_first, failed_already } = rules;
    let mut budget = Budget::new(budget_bytes);
    let mut failed = failed_already;
    loop {
        let (mut total_bytes, mut first_wanted) = (0usize, false);
        for l in locals.iter_mut() {
            if !l.done {
                let (limit_bytes, first) = budget.limit(l.max_bytes);
                let r = match whole_first {
                    true => read_one(l, limit_bytes, first, room).await,
                    false => read_one(l, limit_bytes, FirstBatch::IfItFits, room).await,
                };
                // A peer's partition whose first batch is due whole but was not read: the
                // asking shard asks for it on its own, at once (no waiting for more).
                first_wanted |= !whole_first
                    && first == FirstBatch::Always
                    && r.error == 0
                    && r.batches.is_empty()
                    && r.high_watermark > l.offset;
                budget.spend(r.batches.len());
                // Data past the offset that did not fit will not fit later either.
                l.done = r.error != 0 || r.high_watermark > l.offset;
                failed |= r.error != 0;
                l.result = Some(r);
            }
            total_bytes += l.result.as_ref().map_or(0, |r| r.batches.len());
        }
        let waits: Vec<WaitFor> = locals
            .iter()
            .filter(|l| !l.done)
            .map(|l| l.part.log.high_watermark_mark().wait_for(l.offset + 1))
            .collect();
        let due = total_bytes >= min_bytes.max(1) as usize
            || first_wanted
            || failed
            || budget.spent()
            || ends.iter().any(|w| w.get() >= 1)
            || shard.stopping.get();
        if due || waits.is_empty() || Instant::now() >= deadline {
            return due;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let ended = async {
            match ends.is_empty() {
                false => WaitAny(ends.iter().map(|w| w.wait_for(1)).collect()).await,
                true => std::future::pending().await,
            }
        };
        let slept = async {
            glommio::timer::sleep(remaining).await;
            true
        };
        futures_lite::future::or(WaitAny(waits), futures_lite::future::or(slept, ended)).await;
    }
}

/// The forwarded partition whose first batch is wanted whole: topic `name`, from `offset`,
/// its limit in the response `limit_bytes`.
struct FirstBatchWanted<'a> {
    name: &'a str,
    f: Forwarded,
    offset: u64,
    limit_bytes: usize,
}

/// What a response made before it waits for room: the owners' answers and the local reads
/// not yet merged.
struct Made<'a> {
    answers: &'a mut Answers<FetchResponse>,
    locals: &'a mut [LocalRead],
}

impl Made<'_> {
    /// Lets every batch go (those partitions get none this time), so that a wait for room
    /// holds nothing made beside the room (`ResponseRoom::grow`).
    fn let_go(&mut self) {
        let answered = self.answers.answers_mut().flat_map(|a| a.topics.iter_mut());
        for p in answered.flat_map(|t| t.partitions.iter_mut()) {
            p.batches = Vec::new();
        }
        for r in self.locals.iter_mut().filter_map(|l| l.result.as_mut()) {
            r.batches = Vec::new();
        }
    }
}

/// Asks a forwarded partition's owner for its first batch beyond the limits (the owner
/// answered the sub-request within them), taking room for it first: a limit of 1 MiB, then
/// `BATCH_BYTES_MAX` if the batch was larger, each taken before it is asked for and what the
/// answer did not need given back. If the room must be waited for, what the response made
/// is let go first. `None` if the owner did not answer.
async fn first_batch_from_owner(
    shard: &Shard,
    wanted: FirstBatchWanted<'_>,
    room: Option<&ResponseRoom>,
    made: &mut Made<'_>,
) -> Option<FetchPartitionResult> {
    const FIRST_LIMIT_BYTES: usize = 1 << 20;
    let FirstBatchWanted { name, f, offset, limit_bytes } = wanted;
    let batch_bytes_max = wire::constants::BATCH_BYTES_MAX as usize;
    let mut answer = None;
    for grant_bytes in [FIRST_LIMIT_BYTES, batch_bytes_max] {
        if grant_bytes <= limit_bytes {
            continue;
        }
        let extra_bytes = grant_bytes - limit_bytes;
        if let Some(room) = room {
            if !room.try_grow(extra_bytes) {
                made.let_go();
                room.grow(extra_bytes).await;
            }
        }
        let mut split = Split::<FetchRequest>::default();
        let part =
            wire::FetchPartition { partition: f.index, offset, max_bytes: grant_bytes as u32 };
        let asked = split.add(f.owner, name, f.index, part, || FetchRequest {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: grant_bytes as u32,
            topics: Vec::new(),
        });
        let mut answers = Answers::<FetchResponse>::collect(split.send(shard).await).await;
        let mut r = answers.take(&asked);
        if let Some(r) = r.as_mut() {
            trim(&mut r.batches, limit_bytes, FirstBatch::Always);
        }
        let taken_bytes = r.as_ref().map_or(0, |r| r.batches.len().saturating_sub(limit_bytes));
        if let Some(room) = room {
            room.shrink(extra_bytes - taken_bytes.min(extra_bytes));
        }
        let more = r
            .as_ref()
            .is_some_and(|r| r.error == 0 && r.batches.is_empty() && r.high_watermark > offset);
        answer = r;
        if !more {
            break;
        }
    }
    answer
}

/// Reads one partition within `limit_bytes`. A first batch beyond it (`FirstBatch::Always`)
/// takes room in the response's `room` before it is read: the connection reserved only the
/// budget, and a client pipelining fetches with a small `max_bytes` must not make the broker
/// hold a batch of up to 16 MiB per request. So the partition is read within the limit first
/// (a batch that does not fit is not read in full); only if its next batch did not fit is
/// room taken for it (its length from memory or its header on disk; `BATCH_BYTES_MAX` if
/// that cannot be told), waiting for it holding nothing else, the batch read whole, and what
/// it did not need given back. (The wait has no deadline of its own: it ends when the
/// connection's queued answers are written, or the connection closes.)
async fn read_one(
    l: &LocalRead,
    limit_bytes: usize,
    first: FirstBatch,
    room: Option<&ResponseRoom>,
) -> FetchPartitionResult {
    let log = &l.part.log;
    let batch_bytes_max = wire::constants::BATCH_BYTES_MAX as usize;
    let read = match room {
        Some(room) if first == FirstBatch::Always && limit_bytes < batch_bytes_max => {
            match log.read(l.offset, limit_bytes, FirstBatch::IfItFits).await {
                Ok(out) if out.batches.is_empty() && l.offset < out.high_watermark => {
                    let batch_bytes = log.batch_bytes_at(l.offset).await.ok().flatten();
                    let stored_bytes = batch_bytes.map_or(batch_bytes_max, |b| b.stored);
                    let extra_bytes = stored_bytes.saturating_sub(limit_bytes);
                    room.grow(extra_bytes).await;
                    let read = log.read(l.offset, limit_bytes, first).await;
                    let taken = read.as_ref().map_or(0, |o| o.bytes().saturating_sub(limit_bytes));
                    room.shrink(extra_bytes.saturating_sub(taken));
                    read
                }
                within => within,
            }
        }
        _ => log.read(l.offset, limit_bytes, first).await,
    };
    match read {
        Ok(out) => {
            let batches = out.concat();
            FetchPartitionResult {
                partition: l.part.index,
                error: 0,
                high_watermark: out.high_watermark,
                log_start_offset: out.log_start_offset,
                batches,
            }
        }
        Err(e) => {
            let (hw, start) = match &e {
                StorageError::OffsetOutOfRange { high_watermark, log_start_offset, .. } => {
                    (*high_watermark, *log_start_offset)
                }
                _ => (log.high_watermark(), log.log_start_offset()),
            };
            FetchPartitionResult {
                partition: l.part.index,
                error: e.code().as_u16(),
                high_watermark: hw,
                log_start_offset: start,
                batches: Vec::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` batches of growing size, back to back.
    fn batches(n: u32) -> (Vec<u8>, Vec<usize>) {
        let mut all = Vec::new();
        let mut lens = Vec::new();
        for i in 0..n {
            let mut b = wire::BatchBuilder::new(1 << 20);
            b.append(0, None, Some(&vec![7u8; 100 * (i as usize + 1)]), &[]).unwrap();
            let b = b.finish().unwrap();
            lens.push(b.len());
            all.extend_from_slice(&b);
        }
        (all, lens)
    }

    #[test]
    fn trim_keeps_whole_batches_within_the_limit() {
        let (all, lens) = batches(3);
        let cut = |limit, first| {
            let mut v = all.clone();
            trim(&mut v, limit, first);
            v.len()
        };
        assert_eq!(cut(0, FirstBatch::IfItFits), 0);
        assert_eq!(cut(0, FirstBatch::Always), lens[0]);
        assert_eq!(cut(lens[0] + lens[1] - 1, FirstBatch::IfItFits), lens[0]);
        assert_eq!(cut(lens[0] + lens[1], FirstBatch::Always), lens[0] + lens[1]);
        assert_eq!(cut(usize::MAX, FirstBatch::IfItFits), all.len());
    }

    #[test]
    fn budget_gives_the_first_batch_once() {
        let mut b = Budget::new(10);
        assert_eq!(b.limit(100), (10, FirstBatch::Always));
        b.spend(0); // an empty partition does not use the exception
        assert_eq!(b.limit(4), (4, FirstBatch::Always));
        b.spend(50); // a first batch beyond the limit
        assert!(b.spent());
        assert_eq!(b.limit(100), (0, FirstBatch::IfItFits));
    }

    #[test]
    fn a_partition_named_twice_is_found() {
        let part = |partition| wire::FetchPartition { partition, offset: 0, max_bytes: 1 };
        let topic = |name: &str, ps: &[u32]| wire::FetchTopic {
            name: name.into(),
            partitions: ps.iter().map(|&p| part(p)).collect(),
        };
        let req = |topics| FetchRequest { max_wait_ms: 0, min_bytes: 0, max_bytes: 0, topics };
        assert_eq!(named_twice(&req(vec![topic("a", &[0, 1]), topic("b", &[0])])), None);
        assert_eq!(named_twice(&req(vec![topic("a", &[0, 1, 0])])), Some(("a", 0)));
        assert_eq!(named_twice(&req(vec![topic("a", &[1]), topic("a", &[1])])), Some(("a", 1)));
    }
}
