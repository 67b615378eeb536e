//! Query by key and time on each partition's owner: the records of one key whose timestamps
//! lie in a range, found by scanning the stored stream between the time index's bounds
//! (and the key index's last offset for the key, when built). Split by owner, forwarded and
//! merged like list-offsets.

use std::rc::Rc;

use wire::{
    AlignedVec, Envelopes, ErrorCode, KeyQueryPartition, KeyQueryPartitionResult, KeyQueryRequest,
    KeyQueryResponse, KeyQueryTopicResult, TableEntry, TableEntryHeader,
};

use super::forward::{route, Answers, Forwarded, Owner, Split};
use super::{error_frame, respond, Origin};
use crate::request::Request;
use crate::shard::Shard;
use crate::storage::FirstBatch;

/// Most records one partition's query returns.
pub const KEY_QUERY_LIMIT_MAX: u32 = 10_000;
/// Most stored bytes one partition's query reads before answering with `next_offset`.
pub const KEY_QUERY_SCAN_BYTES_MAX: usize = 64 << 20;
/// Bytes read per step.
const READ_BYTES: usize = 1 << 20;

fn failed(partition: u32, code: ErrorCode) -> KeyQueryPartitionResult {
    KeyQueryPartitionResult { partition, error: code.as_u16(), ..Default::default() }
}

enum Slot {
    Done(KeyQueryPartitionResult),
    Remote(Forwarded),
}

/// Answers a key query.
pub async fn handle(shard: &Rc<Shard>, request: &Request, origin: Origin) -> AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<KeyQueryRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    // The response's records share one byte budget, like a fetch's batches.
    let mut bytes_left = shard.config.fetch_response_bytes_max as usize;
    let mut slots: Vec<(String, Vec<Slot>)> = Vec::new();
    let mut split = Split::<KeyQueryRequest>::default();
    for t in &req.topics {
        let mut topic_slots = Vec::new();
        for p in &t.partitions {
            let slot = match route(shard, &t.name, p.partition, origin) {
                Err(code) => Slot::Done(failed(p.partition, code)),
                Ok(Owner::Here) => {
                    let r = local(shard, &t.name, p, bytes_left).await;
                    let used: usize = r.records.iter().map(TableEntry::bytes_hint).sum();
                    bytes_left = bytes_left.saturating_sub(used);
                    Slot::Done(r)
                }
                Ok(Owner::Peer(owner)) => Slot::Remote(split.add(
                    owner,
                    &t.name,
                    p.partition,
                    p.clone(),
                    KeyQueryRequest::default,
                )),
            };
            topic_slots.push(slot);
        }
        slots.push((t.name.clone(), topic_slots));
    }
    let answers = Answers::<KeyQueryResponse>::collect(split.send(shard).await).await;
    let topics = slots
        .into_iter()
        .map(|(name, topic_slots)| KeyQueryTopicResult {
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
    respond(&header, &KeyQueryResponse { topics })
}

async fn local(
    shard: &Shard,
    topic: &str,
    q: &KeyQueryPartition,
    bytes_max: usize,
) -> KeyQueryPartitionResult {
    let Some(part) = shard.partition(topic, q.partition) else {
        return failed(q.partition, ErrorCode::UnknownPartition);
    };
    let log = &part.log;
    let mut result = KeyQueryPartitionResult { partition: q.partition, ..Default::default() };
    if q.from_timestamp_ms > q.to_timestamp_ms {
        return result;
    }
    // Where the time index puts the range; the key index (if built) where the key ends.
    let mut end = log.high_watermark();
    if let Ok(Some((after, _))) =
        log.offset_for_timestamp(q.to_timestamp_ms.saturating_add(1)).await
    {
        end = end.min(after);
    }
    match part.keys.known_last_offset(&q.key) {
        Some(None) => return result, // never written
        Some(Some(last)) => end = end.min(last + 1),
        None => {}
    }
    let mut offset = if q.start_offset > 0 {
        q.start_offset
    } else {
        match log.offset_for_timestamp(q.from_timestamp_ms).await {
            Ok(Some((o, _))) => o,
            Ok(None) => return result, // every stored record is older
            Err(e) => return failed(q.partition, e.code()),
        }
    };
    offset = offset.max(log.log_start_offset());
    let limit = q.limit.clamp(1, KEY_QUERY_LIMIT_MAX) as usize;
    let (mut scanned, mut used) = (0usize, 0usize);
    let mut scratch = AlignedVec::new();
    while offset < end {
        if scanned >= KEY_QUERY_SCAN_BYTES_MAX {
            result.next_offset = Some(offset);
            return result;
        }
        let out = match log.read(offset, READ_BYTES, FirstBatch::Always).await {
            Ok(out) => out,
            Err(e) => return failed(q.partition, e.code()),
        };
        if out.batches.is_empty() {
            break;
        }
        scanned += out.bytes();
        for view in &out.batches {
            for envelope in Envelopes::new(view).filter_map(Result::ok) {
                let h = envelope.header();
                let next = h.next_offset();
                // A batch whose newest record is older than the range is skipped unopened.
                if next <= offset || h.max_timestamp_ms() < q.from_timestamp_ms {
                    offset = offset.max(next);
                    continue;
                }
                let Ok(batch) = envelope.open(&mut scratch) else {
                    offset = next;
                    continue;
                };
                for r in batch.records().filter(|r| r.offset() >= offset && r.offset() < end) {
                    let ts = r.timestamp_ms();
                    if r.key() != Some(q.key.as_slice())
                        || ts < q.from_timestamp_ms
                        || ts > q.to_timestamp_ms
                    {
                        continue;
                    }
                    if result.records.len() == limit
                        || (!result.records.is_empty() && used >= bytes_max)
                    {
                        result.next_offset = Some(r.offset());
                        return result;
                    }
                    let entry = TableEntry {
                        key: q.key.clone(),
                        value: r.value().map(<[u8]>::to_vec).unwrap_or_default(),
                        offset: r.offset(),
                        timestamp_ms: ts,
                        headers: r
                            .headers()
                            .map(|h| TableEntryHeader {
                                key: h.key().to_owned(),
                                value: h.value().to_vec(),
                            })
                            .collect(),
                    };
                    used += entry.bytes_hint();
                    result.records.push(entry);
                }
                offset = next;
            }
        }
        glommio::yield_if_needed().await;
    }
    result
}
