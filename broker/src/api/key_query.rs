//! Query by key and time on each partition's owner: the records of one key whose timestamps
//! lie in a range, found by scanning the stored stream between the time index's bounds
//! (and the key index's last offset for the key, when built). Split by owner, forwarded and
//! merged like list-offsets.

use std::cell::Cell;
use std::rc::Rc;

use wire::{
    AlignedVec, Envelopes, ErrorCode, KeyQueryPartition, KeyQueryPartitionResult, KeyQueryRequest,
    KeyQueryResponse, KeyQueryTopicResult, TableEntry,
};

use super::forward::{per_partition, Lending};
use super::timestamp_lookup::{offset_for_timestamp, LookupError};
use super::{error_frame, respond, Origin};
use crate::budget::{EntryRoom, RoomFrom};
use crate::request::Request;
use crate::shard::Shard;
use crate::storage::{DmaDisk, FirstBatch, PartitionLog};
use crate::table::entry_of;

/// Most records one partition's query returns.
pub const KEY_QUERY_LIMIT_MAX: u32 = 10_000;
/// Most stored bytes one partition's query reads before answering with `next_offset`.
pub const KEY_QUERY_SCAN_BYTES_MAX: usize = 64 << 20;
/// Bytes read per step.
const READ_BYTES: usize = 1 << 20;
/// Room lent to another shard for its partitions' part of a query, at first
/// (`forward::Lending`): a read window, the scratch to open it and a few records.
const LENT_FIRST_BYTES: usize = 2 * READ_BYTES + (256 << 10);

fn failed(partition: u32, code: ErrorCode) -> KeyQueryPartitionResult {
    KeyQueryPartitionResult { partition, error: code.as_u16(), ..Default::default() }
}

/// Answers a key query.
pub async fn handle(shard: &Rc<Shard>, request: &Request, origin: Origin) -> AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<KeyQueryRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    // The response's records share one byte budget, like a fetch's batches.
    let bytes_left = Rc::new(Cell::new(shard.config.fetch_response_bytes_max as usize));
    let topics = req.topics.into_iter().map(|t| (t.name, t.partitions)).collect();
    let from = request.room_from();
    let results = per_partition::<KeyQueryRequest, KeyQueryResponse, _>(
        shard,
        origin,
        topics,
        str::to_owned,
        |q| q.partition,
        KeyQueryRequest::default,
        failed,
        |name, q| {
            let (shard, bytes_left) = (shard.clone(), bytes_left.clone());
            async move {
                let r = local(&shard, &name, &q, bytes_left.get(), from).await;
                let used: usize = r.records.iter().map(TableEntry::bytes_hint).sum();
                bytes_left.set(bytes_left.get().saturating_sub(used));
                r
            }
        },
        request.room(),
        Lending {
            first_bytes: LENT_FIRST_BYTES,
            wait_first: false,
            short: |r| r.error == ErrorCode::RoomShort.as_u16(),
        },
    )
    .await;
    let topics = results
        .into_iter()
        .map(|(name, partitions)| KeyQueryTopicResult { name, partitions })
        .collect();
    respond(&header, &KeyQueryResponse { topics })
}

async fn local(
    shard: &Shard,
    topic: &str,
    q: &KeyQueryPartition,
    bytes_max: usize,
    from: RoomFrom<'_>,
) -> KeyQueryPartitionResult {
    let Some(part) = shard.partition(topic, q.partition) else {
        return failed(q.partition, ErrorCode::UnknownPartition);
    };
    let log = &part.log;
    let result = KeyQueryPartitionResult { partition: q.partition, ..Default::default() };
    if q.from_timestamp_ms > q.to_timestamp_ms {
        return result;
    }
    // Where the time index puts the range; the key index (if built) where the key ends.
    let mut room = EntryRoom::new(from);
    let mut end = log.high_watermark();
    let after_range = q.to_timestamp_ms.saturating_add(1);
    match offset_for_timestamp(log, after_range, &mut room).await {
        Ok(Some((after, _))) => end = end.min(after),
        Err(e @ LookupError::Short) => return failed(q.partition, e.code()),
        Ok(None) | Err(LookupError::Storage(_)) => {}
    }
    match part.keys.known_last_offset(&q.key, part.log.log_start_offset()) {
        Some(None) => return result, // never written
        Some(Some(last)) => end = end.min(last + 1),
        None => {}
    }
    let mut offset = if q.start_offset > 0 {
        q.start_offset
    } else {
        match offset_for_timestamp(log, q.from_timestamp_ms, &mut room).await {
            Ok(Some((o, _))) => o,
            Ok(None) => return result, // every stored record is older
            Err(e) => return failed(q.partition, e.code()),
        }
    };
    offset = offset.max(log.log_start_offset());
    let limit = q.limit.clamp(1, KEY_QUERY_LIMIT_MAX) as usize;
    let mut reading = Reading::default();
    let scan = Scan { q, end, limit, bytes_max };
    let result = scan.run(log, offset, result, &mut room, &mut reading).await;
    room.give_back(reading.window_bytes + reading.scratch_bytes);
    result
}

/// What a query's scan holds of its response's room for reading, not for keeping: the
/// window it reads and the scratch a compressed batch is opened into.
#[derive(Debug, Default)]
struct Reading {
    window_bytes: usize,
    scratch_bytes: usize,
}

/// One partition's scan for a key: the query, where the range ends, the most records and
/// the bytes its records may take.
struct Scan<'a> {
    q: &'a KeyQueryPartition,
    end: u64,
    limit: usize,
    bytes_max: usize,
}

impl Scan<'_> {
    /// Scans from `offset` into `result`. Room is taken before anything is read: for the read
    /// window (`READ_BYTES`, or the first batch whole when it is larger: its length from
    /// memory or its header), for the scratch a compressed batch is opened into (its
    /// decompressed length, from its header), and for each record kept. With records, an
    /// answer stops where the room ends (partial, `next_offset`); without, it lets what it
    /// read go, waits for the room the next step needs and reads again.
    async fn run(
        &self,
        log: &PartitionLog<DmaDisk>,
        mut offset: u64,
        mut result: KeyQueryPartitionResult,
        room: &mut EntryRoom<'_>,
        reading: &mut Reading,
    ) -> KeyQueryPartitionResult {
        let q = self.q;
        let (mut scanned, mut used) = (0usize, 0usize);
        let mut scratch = AlignedVec::new();
        while offset < self.end {
            if scanned >= KEY_QUERY_SCAN_BYTES_MAX {
                result.next_offset = Some(offset);
                return result;
            }
            let first = match log.batch_bytes_at(offset).await {
                Ok(first) => first,
                Err(e) => return failed(q.partition, e.code()),
            };
            let window_bytes = READ_BYTES.max(first.map_or(0, |b| b.stored));
            if !room.admit(window_bytes) {
                if !result.records.is_empty() {
                    result.next_offset = Some(offset);
                    return result;
                }
                let scratch_bytes = std::mem::take(&mut reading.scratch_bytes);
                room.give_back(scratch_bytes);
                scratch = AlignedVec::new();
                if !room.wait(window_bytes + scratch_bytes).await {
                    return failed(q.partition, ErrorCode::RoomShort); // lent, too small
                }
                let granted = room.admit(window_bytes);
                debug_assert!(granted, "the wait granted it");
            }
            reading.window_bytes = window_bytes;
            let out = match log.read(offset, READ_BYTES, FirstBatch::Always).await {
                Ok(out) => out,
                Err(e) => return failed(q.partition, e.code()),
            };
            if out.batches.is_empty() {
                break;
            }
            scanned += out.bytes();
            // No room now for the answer's first piece: (where to read again, the room reading
            // it again takes: window, scratch and piece), read again after the wait.
            let mut no_room = None;
            'views: for view in &out.batches {
                for envelope in Envelopes::new(view).filter_map(Result::ok) {
                    let h = envelope.header();
                    let next = h.next_offset();
                    // A batch whose newest record is older than the range is skipped unopened.
                    if next <= offset || h.max_timestamp_ms() < q.from_timestamp_ms {
                        offset = offset.max(next);
                        continue;
                    }
                    let opened_bytes = h.uncompressed_len() as usize;
                    if opened_bytes > reading.scratch_bytes {
                        let more = opened_bytes - reading.scratch_bytes;
                        if !room.admit(more) {
                            if result.records.is_empty() {
                                no_room = Some((offset, window_bytes + opened_bytes));
                                break 'views;
                            }
                            result.next_offset = Some(offset);
                            return result;
                        }
                        reading.scratch_bytes = opened_bytes;
                    }
                    let Ok(batch) = envelope.open(&mut scratch) else {
                        offset = next;
                        continue;
                    };
                    let end = self.end;
                    for r in batch.records().filter(|r| r.offset() >= offset && r.offset() < end) {
                        let ts = r.timestamp_ms();
                        if r.key() != Some(q.key.as_slice())
                            || ts < q.from_timestamp_ms
                            || ts > q.to_timestamp_ms
                        {
                            continue;
                        }
                        if result.records.len() == self.limit
                            || (!result.records.is_empty() && used >= self.bytes_max)
                        {
                            result.next_offset = Some(r.offset());
                            return result;
                        }
                        let Some(entry) = entry_of(&r) else { continue };
                        let bytes = entry.bytes_hint();
                        if !room.admit(bytes) {
                            if result.records.is_empty() {
                                let need = window_bytes + reading.scratch_bytes + bytes;
                                no_room = Some((r.offset(), need));
                                break 'views;
                            }
                            // No room in the connection's budget now: answer what was found.
                            result.next_offset = Some(r.offset());
                            return result;
                        }
                        used += bytes;
                        result.records.push(entry);
                    }
                    offset = next;
                }
            }
            room.give_back(std::mem::take(&mut reading.window_bytes));
            if let Some((at, need)) = no_room {
                // Wait holding nothing read: the window and the scratch go, and are read again
                // from `at` with room for them and the piece.
                scanned -= out.bytes();
                drop(out);
                room.give_back(std::mem::take(&mut reading.scratch_bytes));
                scratch = AlignedVec::new();
                offset = at;
                if !room.wait(need).await {
                    return failed(q.partition, ErrorCode::RoomShort); // lent, too small
                }
                continue;
            }
            glommio::yield_if_needed().await;
        }
        result
    }
}
