//! Push subscriptions: the owner shard pushes a partition's batches as they are written,
//! within the byte credit the consumer granted.
//!
//! A subscription lives on the partition's owner. Its pushes go to a [`PushSink`]: the
//! client connection itself when the client subscribed on the owner, or the mesh when the
//! client's connection is on another shard (that shard relays them to the connection, and
//! relays credit grants and the unsubscribe back). At most one batch beyond the credit is
//! ever outstanding, so a consumer that stops granting makes the broker hold nothing more.
//!
//! A subscription with a filter (`SubscribeRequest::filter`, `filter.rs`) pushes only the
//! matching records, re-encoded at their own offsets; reads with no match push nothing and
//! spend no credit (credit counts delivered bytes). Every push says how far it covered
//! (`next_offset`), and a subscription that skipped records without pushing sends a push
//! with no batches, only `next_offset`, at most every [`PROGRESS_INTERVAL`], so the
//! consumer's position (lag, commits) moves past skipped records.

use std::cell::Cell;
use std::rc::{Rc, Weak};

use glommio::task::JoinHandle;
use wire::{ErrorCode, SubscribeRequest, SubscriptionData, SubscriptionDataPieces};

use crate::budget::Held;
use crate::counters::Counters;
use crate::filter::RecordFilter;
use crate::mesh::PushTarget;
use crate::out_frame::OutFrame;
use crate::partition::Partition;
use crate::shard::Shard;
use crate::stage_latency::{self, Stage};
use crate::storage::{ByteView, FirstBatch, StorageError};
use crate::watermark::Watermark;

/// Largest push for one subscription.
const PUSH_BYTES_MAX: usize = 1 << 20;

/// A filtered subscription that skipped records tells the consumer its position at most
/// this often (see the module docs).
pub const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// Where a subscription's pushes go.
pub enum PushSink {
    /// A connection on this shard: push frames are queued on its writer.
    Local(Weak<dyn PushTarget>),
    /// A connection on another shard: push frames travel over the mesh.
    Remote {
        /// This (owning) shard.
        shard: Rc<Shard>,
        /// The shard holding the client connection.
        to: u32,
        /// The relay key that shard registered.
        key: u64,
    },
}

impl PushSink {
    /// Waits until the client's queue has room for a push of `bytes` and holds it (local
    /// clients; a relayed client's queue is on another shard, which bounds it itself: no
    /// room). `None` if the client is gone.
    async fn reserve(&self, bytes: usize) -> Option<Vec<Held>> {
        let PushSink::Local(target) = self else { return Some(Vec::new()) };
        let reserving = target.upgrade().map(|t| t.reserve(bytes))?;
        reserving.await
    }

    /// [`PushSink::send`] of a push read within `holds` (from [`PushSink::reserve`]).
    async fn send_reserved(&self, frame: impl Into<OutFrame>, holds: Vec<Held>) -> bool {
        match self {
            PushSink::Local(target) => {
                target.upgrade().is_some_and(|t| t.push_reserved(frame.into(), holds))
            }
            PushSink::Remote { .. } => self.send(frame).await,
        }
    }

    async fn send(&self, frame: impl Into<OutFrame>) -> bool {
        match self {
            PushSink::Local(target) => target.upgrade().is_some_and(|t| t.push(frame.into())),
            PushSink::Remote { shard, to, key } => {
                shard.mesh.relay_push(*to, *key, frame.into().into_whole()).await
            }
        }
    }

    /// Whether pushes stay on this shard (so they may reference the log's buffers).
    fn is_local(&self) -> bool {
        matches!(self, PushSink::Local(_))
    }
}

/// A running subscription.
pub struct Subscription {
    credit: Rc<Cell<u64>>,
    credit_signal: Watermark,
    task: JoinHandle<()>,
    /// Set when its pushes ended on their own (its partition closed, an error pushed): it
    /// no longer counts against the shard's subscriptions, and its entry goes at the next
    /// subscribe.
    ended: Rc<Cell<bool>>,
}

impl Subscription {
    /// Adds credit and wakes the pusher.
    pub fn grant(&self, credit_bytes: u64) {
        self.credit.set(self.credit.get().saturating_add(credit_bytes));
        self.credit_signal.advance(self.credit_signal.get() + 1);
    }

    /// Stops pushing.
    pub fn cancel(self, counters: &Counters) {
        self.task.cancel();
        if !self.ended.replace(true) {
            Counters::sub(&counters.subscriptions, 1);
        }
    }

    /// Whether its pushes ended on their own (see `ended`).
    pub fn ended(&self) -> bool {
        self.ended.get()
    }
}

/// Starts pushing `part` from `next` to `sink` for the client's subscription `id`.
pub fn spawn(
    shard: &Rc<Shard>,
    part: Rc<Partition>,
    req: &SubscribeRequest,
    next: u64,
    sink: PushSink,
) -> Subscription {
    let credit = Rc::new(Cell::new(req.credit_bytes));
    let credit_signal = Watermark::new(0);
    // `api::subscribe` refused a filter that does not parse before this.
    let filter = RecordFilter::parse(&req.filter).ok().flatten();
    let ended = Rc::new(Cell::new(false));
    let pushes = push_loop(
        shard.clone(),
        sink,
        part,
        req.subscription_id,
        next,
        credit.clone(),
        credit_signal.clone(),
        filter,
    );
    let (sh, done) = (shard.clone(), ended.clone());
    let task = glommio::spawn_local(async move {
        pushes.await;
        // Ended on its own: its slot of the shard's subscriptions is free again.
        if !done.replace(true) {
            Counters::sub(&sh.counters.subscriptions, 1);
        }
    })
    .detach();
    Counters::add(&shard.counters.subscriptions, 1);
    Subscription { credit, credit_signal, task, ended }
}

/// The partition closed (deleted, or the broker is stopping): the subscription's last push.
async fn closed(sink: &PushSink, id: u64, next: u64) {
    let end = SubscriptionData {
        subscription_id: id,
        error: ErrorCode::UnknownTopic.as_u16(),
        high_watermark: next,
        batches: Vec::new(),
        next_offset: next,
    };
    if let Ok(f) = wire::encode_push(&end) {
        sink.send(f).await;
    }
}

/// Pushes a subscription's batches as they are written, within its credit.
#[allow(clippy::too_many_arguments)]
async fn push_loop(
    shard: Rc<Shard>,
    sink: PushSink,
    part: Rc<Partition>,
    id: u64,
    mut next: u64,
    credit: Rc<Cell<u64>>,
    credit_signal: Watermark,
    filter: Option<RecordFilter>,
) {
    let log = &part.log;
    // What the consumer was last told (`next_offset`), and when.
    let mut reported = next;
    let mut last_push = std::time::Instant::now();
    let progress = |next: u64, hw: u64| SubscriptionData {
        subscription_id: id,
        error: 0,
        high_watermark: hw,
        batches: Vec::new(),
        next_offset: next,
    };
    loop {
        if credit.get() == 0 {
            let seen = credit_signal.get();
            if next < log.high_watermark() {
                // Data is waiting and the consumer granted no room for it.
                Counters::add(&shard.counters.credit_stalls, 1);
            }
            if credit.get() == 0 {
                credit_signal.wait_for(seen + 1).await;
            }
            continue;
        }
        if next >= log.high_watermark() && reported < next {
            // Caught up after skipping records: tell the consumer where it is, once the
            // progress interval passed, unless new records come first.
            let due = last_push + PROGRESS_INTERVAL;
            let came = futures_lite::future::or(
                async { Some(log.high_watermark_mark().wait_for(next + 1).await) },
                async {
                    glommio::timer::sleep(due.saturating_duration_since(std::time::Instant::now()))
                        .await;
                    None
                },
            )
            .await;
            match came {
                // The partition closed (a closed mark answers at once: looping here would
                // never yield and hang the shard).
                Some(false) => return closed(&sink, id, next).await,
                Some(true) => {}
                None => {
                    let Ok(f) = wire::encode_push(&progress(next, log.high_watermark())) else {
                        return;
                    };
                    if !sink.send(f).await {
                        return;
                    }
                    (reported, last_push) = (next, std::time::Instant::now());
                }
            }
            continue;
        }
        // `visible_at`: when the records this push carries became visible (the wake of the
        // wait for them), for the `push` stage.
        let (open, visible_at) = match next >= log.high_watermark() {
            true => {
                let wait = std::pin::pin!(log.high_watermark_mark().wait_for(next + 1));
                stage_latency::woken(wait).await
            }
            false => (true, None),
        };
        if !open {
            return closed(&sink, id, next).await;
        }
        // The log is the buffer: nothing is read for a client whose queue is full, and what
        // is read is held in its queue's room first (subscriptions of one client that each
        // saw room now read together: 10,000 of them, 10 GB from disk).
        let max = credit.get().min(PUSH_BYTES_MAX as u64) as usize;
        let Some(mut holds) = sink.reserve(max).await else {
            return;
        };
        // A next batch larger than that (up to 16 MiB) is read only once room for it whole
        // is held too (10,000 subscriptions of credit 1 read their first batches at once).
        let mut read = log.read(next, max, FirstBatch::IfItFits).await;
        if matches!(&read, Ok(out) if out.batches.is_empty() && next < out.high_watermark) {
            let bytes_max = wire::constants::BATCH_BYTES_MAX as usize;
            let stored =
                log.batch_bytes_at(next).await.ok().flatten().map_or(bytes_max, |b| b.stored);
            drop(holds);
            let Some(more) = sink.reserve(stored.max(max)).await else {
                return;
            };
            holds = more;
            read = log.read(next, max, FirstBatch::Always).await;
        }
        let (error, batches, hw) = match read {
            Ok(out) => {
                let counted = out.count();
                let from = next;
                next = next.max(counted.next_offset.unwrap_or(next));
                match &filter {
                    // Pushed from the log's views: to a client on this shard without a
                    // copy (the socket write gathers them), to another shard copied once.
                    None => {
                        Counters::add(&shard.counters.batches_out, counted.batches);
                        let views = Pushed::Views { views: out.batches, records: counted.records };
                        (ErrorCode::None, views, out.high_watermark)
                    }
                    Some(f) => {
                        let bytes = out.concat();
                        let mut selected = Vec::new();
                        let batch_bytes_max = PUSH_BYTES_MAX.max(bytes.len());
                        // Matches re-encoded uncompressed: at most the credit (at least one
                        // batch), the rest read again by the next push.
                        match f.select(&bytes, from, batch_bytes_max, max, &mut selected) {
                            Ok(s) => {
                                if let Some(at) = s.resume_at {
                                    next = at;
                                }
                                (ErrorCode::None, Pushed::Joined(selected), out.high_watermark)
                            }
                            Err(e) => (e.code(), Pushed::none(), out.high_watermark),
                        }
                    }
                }
            }
            Err(StorageError::OffsetOutOfRange { log_start_offset, .. })
                if next < log_start_offset =>
            {
                // Retention removed what this subscriber had not read yet: skip ahead.
                next = log_start_offset;
                continue;
            }
            Err(e) => (e.code(), Pushed::none(), log.high_watermark()),
        };
        let pieces = batches.pieces();
        let batch_bytes: usize = pieces.iter().map(|p| p.len()).sum();
        if batch_bytes == 0 && error == ErrorCode::None {
            if filter.is_some() && reported < next && last_push.elapsed() >= PROGRESS_INTERVAL {
                let Ok(f) = wire::encode_push(&progress(next, hw)) else { return };
                if !sink.send(f).await {
                    return;
                }
                (reported, last_push) = (next, std::time::Instant::now());
            }
            // Reads served from memory whose records a filter all skips do not wait: let
            // the shard's other work run between them.
            glommio::yield_if_needed().await;
            continue;
        }
        credit.set(credit.get().saturating_sub(batch_bytes as u64));
        Counters::add(&shard.counters.bytes_out, batch_bytes as u64);
        let records = batches.records();
        Counters::add(&shard.counters.records_out, records);
        let bytes = batch_bytes as u64;
        shard.counters.partitions.count_out(&part.topic, part.index, records, bytes);
        let last = error != ErrorCode::None;
        let push = SubscriptionDataPieces {
            subscription_id: id,
            error: error.as_u16(),
            high_watermark: hw,
            batches: &pieces,
            next_offset: next,
        };
        (reported, last_push) = (next, std::time::Instant::now());
        // The log's buffers go with a local push (until it is written; those worth it,
        // `OutFrame::referenced`), not with a relayed one (copied into its frame).
        let views = if sink.is_local() { batches.referenced_views() } else { Vec::new() };
        let frame = if views.is_empty() {
            push.encode_push().map(OutFrame::Whole)
        } else {
            let referenced: Vec<&[u8]> = views.iter().map(|v| &v[..]).collect();
            let parts = push.encode_push_parts(&referenced);
            drop(referenced);
            parts.map(|parts| OutFrame::Parts { parts, views })
        };
        drop(pieces);
        drop(batches);
        match frame {
            Ok(f) => {
                if !sink.send_reserved(f, holds).await {
                    return;
                }
                if let Some(at) = visible_at {
                    stage_latency::record_since(Stage::Push, at);
                }
            }
            Err(_) => return,
        }
        if last {
            return;
        }
    }
}

/// The batches of one push: the log's views (no filter) or the records a filter selected.
enum Pushed {
    Views { views: Vec<ByteView>, records: u64 },
    Joined(Vec<u8>),
}

impl Pushed {
    fn none() -> Self {
        Pushed::Joined(Vec::new())
    }

    /// The log's views a push references rather than copies (`OutFrame::referenced`; none
    /// for selected records).
    fn referenced_views(&self) -> Vec<ByteView> {
        match self {
            Pushed::Views { views, .. } => {
                views.iter().filter(|v| OutFrame::referenced(v)).cloned().collect()
            }
            Pushed::Joined(_) => Vec::new(),
        }
    }

    /// How many records it holds.
    fn records(&self) -> u64 {
        match self {
            Pushed::Views { records, .. } => *records,
            Pushed::Joined(bytes) => wire::batch::header::trusted_headers(bytes)
                .map(|h| u64::from(h.record_count()))
                .sum(),
        }
    }

    /// The batch bytes, in order, as slices.
    fn pieces(&self) -> Vec<&[u8]> {
        match self {
            Pushed::Views { views, .. } => views.iter().map(|v| &v[..]).collect(),
            Pushed::Joined(bytes) => vec![&bytes[..]],
        }
    }
}
