//! Table reads on each partition's owner: a key's latest value (or a state table's aggregates
//! of a group, one entry per window), or the keys of a range in order (`table.rs` keeps
//! them). Split by owner, forwarded and merged like list-offsets.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use wire::{
    AlignedVec, ErrorCode, TableEntry, TableReadKind, TableReadPartition, TableReadPartitionResult,
    TableReadRequest, TableReadResponse, TableReadTopicResult,
};

use super::forward::{per_partition, Lending};
use super::{error_frame, respond, Origin};
use crate::budget::{EntryRoom, RoomFrom};
use crate::partition::Partition;
use crate::request::Request;
use crate::shard::Shard;
use crate::storage::{DmaDisk, PartitionLog, StorageError};
use crate::table::{read_record, Table, TableError};

/// Longest a partition read waits for its `min_offset`.
pub const TABLE_WAIT_MS_MAX: u32 = 30_000;
/// Most entries one partition's scan returns.
pub const TABLE_SCAN_LIMIT_MAX: u32 = 10_000;
/// Bytes of keys a scan copies out of the table for one page (at least one key; held outside
/// any room while the entries are read, so a page of long keys ends early).
pub const SCAN_KEY_BYTES_MAX: usize = 256 << 10;
/// Room lent to another shard for its partitions' part of a table read, at first
/// (`forward::Lending`): a scan's or a feed's first 1 MiB (it answers partially beyond).
const LENT_FIRST_BYTES: usize = 1 << 20;
/// The same for a read of gets only: a record of a small batch.
const LENT_FIRST_GET_BYTES: usize = 256 << 10;

fn failed(partition: u32, code: ErrorCode) -> TableReadPartitionResult {
    TableReadPartitionResult { partition, error: code.as_u16(), ..Default::default() }
}

/// Answers a table read.
pub async fn handle(shard: &Rc<Shard>, request: &Request, origin: Origin) -> AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<TableReadRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    // One deadline for the request's local partitions: each waits what is left of it (a
    // wait each would let n partitions not yet at their `min_offset` take n waits).
    let deadline = std::time::Instant::now()
        + Duration::from_millis(u64::from(req.wait_ms.min(TABLE_WAIT_MS_MAX)));
    // The response's entries share one byte budget, like a fetch's batches.
    let bytes_left = Rc::new(Cell::new(shard.config.fetch_response_bytes_max as usize));
    // A get is one entry; a scan or a feed of changes is lent room for more at first.
    let gets_only =
        req.topics.iter().flat_map(|t| &t.partitions).all(|p| p.kind == TableReadKind::Get);
    let lent_first_bytes = if gets_only { LENT_FIRST_GET_BYTES } else { LENT_FIRST_BYTES };
    let topics = req.topics.into_iter().map(|t| (t.name, t.partitions)).collect();
    let (wait_ms, from) = (req.wait_ms, request.room_from());
    let results = per_partition::<TableReadRequest, TableReadResponse, _>(
        shard,
        origin,
        topics,
        |name| {
            shard.metadata().tables.get(name).map_or_else(|| name.to_owned(), |t| t.topic.clone())
        },
        |p| p.partition,
        || TableReadRequest { wait_ms, topics: Vec::new() },
        failed,
        |name, p| {
            let (shard, bytes_left) = (shard.clone(), bytes_left.clone());
            async move {
                let wait = deadline.saturating_duration_since(std::time::Instant::now());
                let r = local(&shard, &name, &p, wait, bytes_left.get(), from).await;
                let used: usize = r.entries.iter().map(TableEntry::bytes_hint).sum();
                bytes_left.set(bytes_left.get().saturating_sub(used));
                r
            }
        },
        request.room(),
        Lending {
            first_bytes: lent_first_bytes,
            wait_first: wait_ms > 0,
            short: |r| r.error == ErrorCode::RoomShort.as_u16(),
        },
    )
    .await;
    let topics = results
        .into_iter()
        .map(|(name, partitions)| TableReadTopicResult { name, partitions })
        .collect();
    respond(&header, &TableReadResponse { topics })
}

async fn local(
    shard: &Shard,
    topic: &str,
    p: &TableReadPartition,
    wait: Duration,
    bytes_max: usize,
    from: RoomFrom<'_>,
) -> TableReadPartitionResult {
    // A state table over a topic reads that topic's partition, else the topic's own table.
    let declared = shard.metadata().tables.get(topic).map(|t| t.topic.clone());
    let Some(part) = shard.partition(declared.as_deref().unwrap_or(topic), p.partition) else {
        return failed(p.partition, ErrorCode::UnknownPartition);
    };
    let derived = declared.as_ref().and_then(|_| part.derived.borrow().get(topic).cloned());
    let table = match declared {
        Some(_) => derived.as_deref(),
        None => part.table.as_ref(),
    };
    let Some(table) = table else {
        return failed(p.partition, ErrorCode::NotATable);
    };
    let fail = |e: TableError| TableReadPartitionResult {
        offset: table.applied(),
        ..failed(p.partition, e.code())
    };
    if p.kind == TableReadKind::Changes {
        return changes(&part, table, p, wait, bytes_max, from).await;
    }
    if let Err(e) = table.wait_applied(p.min_offset, wait).await {
        return fail(e);
    }
    // The keys and their offsets are taken together with `offset`, before any read yields:
    // the answer is the table exactly as of `offset`.
    let offset = table.applied();
    let mut result =
        TableReadPartitionResult { partition: p.partition, offset, ..Default::default() };
    let limit = p.limit.clamp(1, TABLE_SCAN_LIMIT_MAX) as usize;
    if table.is_state() {
        // Aggregates are in memory: no log read, nothing can change under the answer. A get
        // is the range of the one group (all its windows).
        let end = match p.kind {
            TableReadKind::Get => Some(wire::key_after(&p.start_key)),
            _ => p.end_key.clone(),
        };
        let mut room = EntryRoom::new(from);
        loop {
            let (entries, next_key) = table.aggregates(&p.start_key, end.as_deref(), limit);
            match keep_groups(entries, &mut room) {
                Kept::All(entries) => (result.entries, result.next_key) = (entries, next_key),
                Kept::Some(entries, cut_at) => {
                    (result.entries, result.next_key) = (entries, Some(cut_at));
                }
                Kept::None(bytes) if room.wait(bytes).await => continue, // made again
                Kept::None(_) => return failed(p.partition, ErrorCode::RoomShort),
            }
            return result;
        }
    }
    let wanted: Vec<(Vec<u8>, u64)> = match p.kind {
        TableReadKind::Changes => unreachable!("answered above"),
        TableReadKind::Get => {
            table.lookup(&p.start_key).map(|o| (p.start_key.clone(), o)).into_iter().collect()
        }
        // One more than asked: tells whether to hand out `next_key`. At most
        // `SCAN_KEY_BYTES_MAX` bytes of keys are copied (they are held, outside any room,
        // while the entries are read): a page of long keys ends there.
        TableReadKind::Scan => {
            table.range(&p.start_key, p.end_key.as_deref(), limit + 1, SCAN_KEY_BYTES_MAX)
        }
    };
    // The range was cut after the last key looked at (by count or by bytes): if keys of it
    // are skipped (their records gone), the page still names where the rest starts.
    let key_bytes: usize = wanted.iter().map(|(k, _)| k.len()).sum();
    let cut_after = match p.kind {
        TableReadKind::Scan if wanted.len() > limit || key_bytes >= SCAN_KEY_BYTES_MAX => {
            wanted.last().map(|(k, _)| k.clone())
        }
        _ => None,
    };
    let (mut used, mut room) = (0usize, EntryRoom::new(from));
    for (key, at) in wanted {
        if result.entries.len() == limit || (!result.entries.is_empty() && used >= bytes_max) {
            result.next_key = Some(key);
            break;
        }
        let read = match read_in_room(&part.log, at, &mut room, !result.entries.is_empty()).await {
            Ok(InRoom::Read(read)) => read,
            // No room in the connection's budget now: answer what was gathered.
            Ok(InRoom::NoRoom) => {
                result.next_key = Some(key);
                break;
            }
            Ok(InRoom::Short) => return failed(p.partition, ErrorCode::RoomShort),
            Err(e) => return fail(TableError::Storage(e)),
        };
        match read {
            Some(entry) if !entry.tombstone => {
                used += entry.bytes_hint();
                result.entries.push(entry);
            }
            // Retention deleted the key's latest record: the key is gone.
            _ => table.forget_if_at(&key, at),
        }
    }
    if result.next_key.is_none() {
        result.next_key = cut_after.map(|k| wire::key_after(&k));
    }
    result
}

/// What of a state table's answer fits its room.
enum Kept {
    /// Every group.
    All(Vec<TableEntry>),
    /// The groups before the one at this key.
    Some(Vec<TableEntry>, Vec<u8>),
    /// Not the first group, which takes this many bytes: the answer was let go.
    None(usize),
}

/// Takes room for `entries` (a state table's, a group's windows one after another) group by
/// group, keeping the groups that fit: a group's windows are never split over two answers.
fn keep_groups(mut entries: Vec<TableEntry>, room: &mut EntryRoom<'_>) -> Kept {
    let mut kept = 0;
    while kept < entries.len() {
        let key = &entries[kept].key;
        let group = entries[kept..].iter().take_while(|e| &e.key == key).count();
        let bytes: usize = entries[kept..kept + group].iter().map(TableEntry::bytes_hint).sum();
        if !room.admit(bytes) {
            if kept == 0 {
                return Kept::None(bytes);
            }
            let cut_at = entries[kept].key.clone();
            entries.truncate(kept);
            return Kept::Some(entries, cut_at);
        }
        kept += group;
    }
    Kept::All(entries)
}

/// What reading a record within a room came to.
enum InRoom {
    /// Its entry (`None`: no record there).
    Read(Option<TableEntry>),
    /// No room now, and the answer has entries: it goes out with them.
    NoRoom,
    /// The room was lent by the shard that forwarded the read and is too small for it.
    Short,
}

/// Reads the record at `at` once `room` has room for what reading it takes (its batch, and
/// the batch decompressed: told from memory or its header, before it is read), and keeps the
/// entry's bytes of that room, giving back the rest. No room now and `partial` (the answer
/// has entries): [`InRoom::NoRoom`]; without entries it waits for the room, holding nothing
/// it read ([`InRoom::Short`] if the room was lent: no wait grows it).
async fn read_in_room(
    log: &PartitionLog<DmaDisk>,
    at: u64,
    room: &mut EntryRoom<'_>,
    partial: bool,
) -> Result<InRoom, StorageError> {
    let need = log.batch_bytes_at(at).await?.map_or(0, |b| b.opened());
    if !room.admit(need) {
        if partial {
            return Ok(InRoom::NoRoom);
        }
        if !room.wait(need).await {
            return Ok(InRoom::Short);
        }
        let granted = room.admit(need);
        debug_assert!(granted, "the wait granted it");
    }
    let mut scratch = AlignedVec::new(); // the decompressed batch, within `need`
    let entry = read_record(log, at, &mut scratch).await?;
    let kept = entry.as_ref().map_or(0, TableEntry::bytes_hint);
    room.give_back(need.saturating_sub(kept));
    if kept > need {
        let _ = room.admit(kept - need); // counted when sent if not now
    }
    Ok(InRoom::Read(entry))
}

/// A projection table's changes at or after `p.min_offset`: waits (at most `wait`) until the
/// table applied one, then reads each changing record from the log.
async fn changes(
    part: &Partition,
    table: &Table,
    p: &TableReadPartition,
    wait: Duration,
    bytes_max: usize,
    from: RoomFrom<'_>,
) -> TableReadPartitionResult {
    if table.is_state() {
        return failed(p.partition, ErrorCode::InvalidRequest); // no change feed (yet)
    }
    // Nothing to report until the table applied something at or after `from` (not reached
    // in time: an empty answer). A table stopped by its memory budget says so.
    if let Err(e @ TableError::OverBudget { .. }) =
        table.wait_applied(p.min_offset.saturating_add(1), wait).await
    {
        return failed(p.partition, e.code());
    }
    let offset = table.applied();
    let limit = p.limit.clamp(1, TABLE_SCAN_LIMIT_MAX) as usize;
    let changes = match table.changes_since(p.min_offset, limit) {
        Ok(c) => c,
        Err(forgotten) => {
            let mut r = failed(p.partition, ErrorCode::OffsetOutOfRange);
            r.offset = forgotten.oldest_offset;
            return r;
        }
    };
    let mut result =
        TableReadPartitionResult { partition: p.partition, offset, ..Default::default() };
    let (mut used, mut room) = (0usize, EntryRoom::new(from));
    // Where to ask next: after the last change looked at, or (none) the applied offset.
    let mut next = offset.max(p.min_offset);
    for (at, previous) in changes {
        if !result.entries.is_empty() && used >= bytes_max {
            break;
        }
        match read_in_room(&part.log, at, &mut room, !result.entries.is_empty()).await {
            Ok(InRoom::Read(Some(mut entry))) => {
                entry.previous_offset = previous;
                used += entry.bytes_hint();
                result.entries.push(entry);
            }
            // Retention took it: the feed goes on after it.
            Ok(InRoom::Read(None)) => {}
            // No room now: the feed goes on from `at`.
            Ok(InRoom::NoRoom) => break,
            Ok(InRoom::Short) => return failed(p.partition, ErrorCode::RoomShort),
            Err(e) => {
                let mut r = failed(p.partition, e.code());
                r.offset = offset;
                return r;
            }
        }
        next = at + 1;
    }
    result.offset = next;
    result
}
