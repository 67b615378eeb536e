//! Fetch: stored batches, byte for byte, with long-poll up to `max_wait_ms`.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wire::{ErrorCode, FetchPartitionResult, FetchRequest, FetchResponse, FetchTopicResult};

use super::forward::{route, Answers, Forwarded, Owner, Split};
use super::{error_frame, respond, Origin};
use crate::counters::Counters;
use crate::partition::Partition;
use crate::request::Request;
use crate::shard::Shard;
use crate::storage::{FirstBatch, StorageError};
use crate::watermark::WaitFor;

/// Longest long-poll a client may ask for.
const FETCH_WAIT_MS_MAX: u32 = 60_000;

struct LocalRead {
    part: Rc<Partition>,
    offset: u64,
    max_bytes: usize,
    done: bool,
}

enum Slot {
    Done(FetchPartitionResult),
    Local(usize),
    Remote(Forwarded),
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
    let max_wait = Duration::from_millis(u64::from(req.max_wait_ms.min(FETCH_WAIT_MS_MAX)));
    let deadline = Instant::now() + max_wait;
    let mut locals: Vec<LocalRead> = Vec::new();
    let mut results: Vec<Vec<FetchPartitionResult>> = Vec::new();
    let mut slots: Vec<(String, Vec<Slot>)> = Vec::new();
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
                            done: false,
                        });
                        Slot::Local(locals.len() - 1)
                    }
                    None => Slot::Done(failed(p.partition, ErrorCode::UnknownPartition)),
                },
                Ok(Owner::Peer(owner)) => {
                    Slot::Remote(split.add(owner, &t.name, p.partition, p.clone(), || {
                        FetchRequest { topics: Vec::new(), ..req.clone() }
                    }))
                }
            };
            topic_slots.push(slot);
        }
        slots.push((t.name.clone(), topic_slots));
    }
    results.resize_with(locals.len(), Vec::new);

    let forwards = split.send(shard).await;

    // Read local partitions; long-poll until min_bytes arrive or the wait is over.
    let mut local_results: Vec<Option<FetchPartitionResult>> =
        (0..locals.len()).map(|_| None).collect();
    let mut budget = req.max_bytes as usize;
    loop {
        let mut total = 0usize;
        for (i, l) in locals.iter_mut().enumerate() {
            if l.done {
                total += local_results[i].as_ref().map_or(0, |r| r.batches.len());
                continue;
            }
            let r = read_one(shard, l, budget).await;
            let got = r.batches.len();
            if got > 0 || r.error != 0 {
                l.done = true;
                budget = budget.saturating_sub(got);
            }
            total += got;
            local_results[i] = Some(r);
        }
        let waiting: Vec<&LocalRead> = locals.iter().filter(|l| !l.done).collect();
        if total >= req.min_bytes.max(1) as usize
            || waiting.is_empty()
            || Instant::now() >= deadline
            || shard.stopping.get()
        {
            break;
        }
        let waits: Vec<WaitFor> = waiting
            .iter()
            .map(|l| l.part.log.high_watermark_mark().wait_for(l.offset + 1))
            .collect();
        let remaining = deadline.saturating_duration_since(Instant::now());
        futures_lite::future::or(WaitAny(waits), async {
            glommio::timer::sleep(remaining).await;
        })
        .await;
    }

    let answers = Answers::<FetchResponse>::collect(forwards).await;
    let mut topics = Vec::with_capacity(slots.len());
    for (name, topic_slots) in slots {
        let mut partitions = Vec::new();
        for slot in topic_slots {
            partitions.push(match slot {
                Slot::Done(r) => r,
                Slot::Local(i) => local_results[i].take().expect("every local partition was read"),
                Slot::Remote(f) => {
                    answers.get(&f).unwrap_or_else(|| failed(f.index, ErrorCode::NotOwner))
                }
            });
        }
        topics.push(FetchTopicResult { name, partitions });
    }
    respond(&header, &FetchResponse { topics })
}

async fn read_one(shard: &Shard, l: &LocalRead, budget: usize) -> FetchPartitionResult {
    let log = &l.part.log;
    let max = l.max_bytes.min(budget).max(1);
    match log.read(l.offset, max, FirstBatch::Always).await {
        Ok(out) => {
            let (batches, n, _) = out.concat();
            Counters::add(&shard.counters.bytes_out, batches.len() as u64);
            Counters::add(&shard.counters.batches_out, n);
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

/// Resolves when any of the waits does.
pub struct WaitAny(pub Vec<WaitFor>);

impl Future for WaitAny {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        for w in self.0.iter_mut() {
            if Pin::new(w).poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        if self.0.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
