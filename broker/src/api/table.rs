//! Table reads on each partition's owner: a key's latest value (or a state table's aggregates
//! of a group, one entry per window), or the keys of a range in order (`table.rs` keeps
//! them). Split by owner, forwarded and merged like list-offsets.

use std::rc::Rc;
use std::time::Duration;

use wire::{
    AlignedVec, ErrorCode, TableReadKind, TableReadPartition, TableReadPartitionResult,
    TableReadRequest, TableReadResponse, TableReadTopicResult,
};

use super::forward::{route, Answers, Forwarded, Owner, Split};
use super::{error_frame, respond, Origin};
use crate::request::Request;
use crate::shard::Shard;
use crate::table::{read_entry, TableError};

/// Longest a partition read waits for its `min_offset`.
pub const TABLE_WAIT_MS_MAX: u32 = 30_000;
/// Most entries one partition's scan returns.
pub const TABLE_SCAN_LIMIT_MAX: u32 = 10_000;

fn failed(partition: u32, code: ErrorCode) -> TableReadPartitionResult {
    TableReadPartitionResult { partition, error: code.as_u16(), ..Default::default() }
}

enum Slot {
    Done(TableReadPartitionResult),
    Remote(Forwarded),
}

/// Answers a table read.
pub async fn handle(shard: &Rc<Shard>, request: &Request, origin: Origin) -> AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<TableReadRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    let wait = Duration::from_millis(u64::from(req.wait_ms.min(TABLE_WAIT_MS_MAX)));
    // The response's entries share one byte budget, like a fetch's batches.
    let mut bytes_left = shard.config.fetch_response_bytes_max as usize;
    let mut slots: Vec<(String, Vec<Slot>)> = Vec::new();
    let mut split = Split::<TableReadRequest>::default();
    for t in &req.topics {
        let mut topic_slots = Vec::new();
        for p in &t.partitions {
            let slot = match route(shard, &t.name, p.partition, origin) {
                Err(code) => Slot::Done(failed(p.partition, code)),
                Ok(Owner::Here) => {
                    let r = local(shard, &t.name, p, wait, bytes_left).await;
                    let used: usize = r.entries.iter().map(wire::TableEntry::bytes_hint).sum();
                    bytes_left = bytes_left.saturating_sub(used);
                    Slot::Done(r)
                }
                Ok(Owner::Peer(owner)) => {
                    Slot::Remote(split.add(owner, &t.name, p.partition, p.clone(), || {
                        TableReadRequest { wait_ms: req.wait_ms, topics: Vec::new() }
                    }))
                }
            };
            topic_slots.push(slot);
        }
        slots.push((t.name.clone(), topic_slots));
    }
    let answers = Answers::<TableReadResponse>::collect(split.send(shard).await).await;
    let topics = slots
        .into_iter()
        .map(|(name, topic_slots)| TableReadTopicResult {
            name,
            partitions: topic_slots
                .into_iter()
                .map(|slot| match slot {
                    Slot::Done(r) => r,
                    Slot::Remote(f) => {
                        answers.get(&f).unwrap_or_else(|| failed(f.index, ErrorCode::NotOwner))
                    }
                })
                .collect(),
        })
        .collect();
    respond(&header, &TableReadResponse { topics })
}

async fn local(
    shard: &Shard,
    topic: &str,
    p: &TableReadPartition,
    wait: Duration,
    bytes_max: usize,
) -> TableReadPartitionResult {
    let Some(part) = shard.partition(topic, p.partition) else {
        return failed(p.partition, ErrorCode::UnknownPartition);
    };
    let Some(table) = part.table.as_ref() else {
        return failed(p.partition, ErrorCode::NotATable);
    };
    let fail = |e: TableError| TableReadPartitionResult {
        offset: table.applied(),
        ..failed(p.partition, e.code())
    };
    if let Err(e) = table.wait_applied(p.min_offset, wait).await {
        return fail(e);
    }
    // The keys and their offsets are taken together with `offset`, before any read yields:
    // the answer is the table exactly as of `offset`.
    let offset = table.applied();
    let mut result =
        TableReadPartitionResult { partition: p.partition, offset, ..Default::default() };
    if table.is_state() {
        // Aggregates are in memory: no log read, nothing can change under the answer.
        let limit = p.limit.clamp(1, TABLE_SCAN_LIMIT_MAX) as usize;
        let (entries, next_key) = match p.kind {
            TableReadKind::Get => {
                let mut end = p.start_key.clone();
                end.push(0);
                table.aggregates(&p.start_key, Some(&end), limit)
            }
            TableReadKind::Scan => table.aggregates(&p.start_key, p.end_key.as_deref(), limit),
        };
        (result.entries, result.next_key) = (entries, next_key);
        return result;
    }
    let mut scratch = AlignedVec::new();
    let wanted: Vec<(Vec<u8>, u64)> = match p.kind {
        TableReadKind::Get => {
            table.lookup(&p.start_key).map(|o| (p.start_key.clone(), o)).into_iter().collect()
        }
        TableReadKind::Scan => {
            let limit = p.limit.clamp(1, TABLE_SCAN_LIMIT_MAX) as usize;
            // One more than asked: tells whether to hand out `next_key`.
            table.range(&p.start_key, p.end_key.as_deref(), limit + 1)
        }
    };
    let limit = match p.kind {
        TableReadKind::Get => 1,
        TableReadKind::Scan => p.limit.clamp(1, TABLE_SCAN_LIMIT_MAX) as usize,
    };
    let mut used = 0usize;
    for (key, at) in wanted {
        if result.entries.len() == limit || (!result.entries.is_empty() && used >= bytes_max) {
            result.next_key = Some(key);
            break;
        }
        match read_entry(&part.log, at, &mut scratch).await {
            Ok(Some(entry)) => {
                used += entry.bytes_hint();
                result.entries.push(entry);
            }
            // Retention deleted the key's latest record: the key is gone.
            Ok(None) => table.forget_if_at(&key, at),
            Err(e) => return fail(TableError::Storage(e)),
        }
    }
    result
}
