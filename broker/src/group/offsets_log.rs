//! Committed offsets as records of the internal offsets topic.
//!
//! Contract: a commit is one batch appended at `durable` to the offsets partition of its
//! group, one record per partition: key `group/topic/partition` (names never contain `/`),
//! value `[version 2][offset u64 LE][topic id u64 LE][metadata UTF-8]` (version 1, written
//! before topic ids were kept, has no topic id); a record without a value (tombstone)
//! forgets the key. The topic id says which incarnation of the topic the offset belongs to:
//! a topic deleted and created again under the same name gets a new id, and an offset
//! committed to the old one is not the new one's (readers ignore it, expiry forgets it). Replaying the partition from its start, later records win, rebuilds
//! every group's offsets: the log is the truth, and a commit inherits the log's durability
//! and recovery. A record's timestamp is when the offset was committed (offset expiry counts
//! from it). Records that do not parse (a future version) are skipped and counted.
//!
//! Compaction (`Coordinator::compact` in `mod.rs`) restates every key's latest value as
//! ordinary records packed by [`Packer`] (a snapshot), then deletes the records before it:
//! replay is the same with or without it.

use std::collections::BTreeMap;

use wire::{AlignedVec, BatchBuilder, Batches};

use super::assignor::TopicPartition;
use crate::storage::io::Disk;
use crate::storage::{FirstBatch, PartitionLog, StorageError};

/// Value format version written today.
const VALUE_VERSION: u8 = 2;
/// The version before topic ids: `[1][offset u64 LE][metadata UTF-8]`.
const VALUE_VERSION_NO_TOPIC_ID: u8 = 1;
/// Bytes read per step while replaying.
const REPLAY_READ_BYTES: usize = 4 << 20;

/// One committed position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Next offset to read.
    pub offset: u64,
    /// Free text stored with it.
    pub metadata: String,
    /// Where the commit sits in the offsets log (a later one wins).
    pub log_offset: u64,
    /// When it was committed (ms since the epoch; a snapshot keeps the original time).
    pub committed_ms: i64,
    /// Id of the topic it was committed to (`None`: a version-1 record, which did not say).
    pub topic_id: Option<u64>,
}

impl Committed {
    /// Whether it belongs to the topic whose current id is `topic_id` (`None`: the topic
    /// does not exist). An offset whose record did not keep the id belongs to any topic of
    /// its name, as it did before ids were kept.
    pub fn belongs_to(&self, topic_id: Option<u64>) -> bool {
        topic_id.is_some() && (self.topic_id.is_none() || self.topic_id == topic_id)
    }
}

/// A committed position as stored: the next offset to read, its metadata and the id of the
/// topic it was committed to (`None` only when read from a version-1 record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Next offset to read.
    pub offset: u64,
    /// Free text stored with it.
    pub metadata: String,
    /// Id of the topic (see [`Committed::topic_id`]).
    pub topic_id: Option<u64>,
}

impl Position {
    /// The map entry for this position, stored at `log_offset` at `committed_ms`.
    pub fn committed(self, log_offset: u64, committed_ms: i64) -> Committed {
        Committed {
            offset: self.offset,
            metadata: self.metadata,
            log_offset,
            committed_ms,
            topic_id: self.topic_id,
        }
    }
}

impl From<Committed> for Position {
    fn from(c: Committed) -> Self {
        Position { offset: c.offset, metadata: c.metadata, topic_id: c.topic_id }
    }
}

/// One record: which partition of which group, and its new position (`None` = forget).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRecord {
    /// Group id.
    pub group: String,
    /// Topic and partition.
    pub tp: TopicPartition,
    /// The position, or `None` to forget it.
    pub committed: Option<Position>,
}

/// The stored key and value of one record.
fn key_value(r: &OffsetRecord) -> (String, Option<Vec<u8>>) {
    let key = format!("{}/{}/{}", r.group, r.tp.0, r.tp.1);
    let value = r.committed.as_ref().map(|p| {
        let mut v = Vec::with_capacity(17 + p.metadata.len());
        match p.topic_id {
            Some(id) => {
                v.push(VALUE_VERSION);
                v.extend_from_slice(&p.offset.to_le_bytes());
                v.extend_from_slice(&id.to_le_bytes());
            }
            // Restating a version-1 record (compaction) keeps it one: nothing to say more.
            None => {
                v.push(VALUE_VERSION_NO_TOPIC_ID);
                v.extend_from_slice(&p.offset.to_le_bytes());
            }
        }
        v.extend_from_slice(p.metadata.as_bytes());
        v
    });
    (key, value)
}

/// The batch that stores `records` (one record each).
pub fn encode(records: &[OffsetRecord], now_ms: i64) -> Result<AlignedVec, wire::BuildError> {
    let mut builder = BatchBuilder::new(usize::MAX >> 1);
    for r in records {
        let (key, value) = key_value(r);
        builder.append(now_ms, Some(key.as_bytes()), value.as_deref(), &[])?;
    }
    builder.finish()
}

/// Records packed, in the order pushed, into batches of at most `batch_bytes_max` bytes
/// each (a snapshot: see `Coordinator::compact`), each with its own timestamp. Each batch
/// comes with its records and their timestamps, in batch order, so the caller knows the log
/// offset of each once the batch is appended.
pub struct Packer {
    builder: BatchBuilder,
    open: Vec<(OffsetRecord, i64)>,
    done: Vec<(AlignedVec, Vec<(OffsetRecord, i64)>)>,
}

impl Packer {
    /// An empty packer.
    pub fn new(batch_bytes_max: usize) -> Self {
        Packer { builder: BatchBuilder::new(batch_bytes_max), open: Vec::new(), done: Vec::new() }
    }

    /// Adds `r`, stamped `timestamp_ms`, to the open batch, closing it first when `r` does
    /// not fit.
    pub fn push(&mut self, r: OffsetRecord, timestamp_ms: i64) -> Result<(), wire::BuildError> {
        let (key, value) = key_value(&r);
        let append = |b: &mut BatchBuilder| {
            b.append(timestamp_ms, Some(key.as_bytes()), value.as_deref(), &[])
        };
        match append(&mut self.builder) {
            Ok(()) => {}
            Err(wire::BuildError::Full { .. } | wire::BuildError::TooManyRecords { .. }) => {
                self.close_batch()?;
                append(&mut self.builder)?;
            }
            Err(e) => return Err(e),
        }
        self.open.push((r, timestamp_ms));
        Ok(())
    }

    /// Records pushed so far.
    pub fn records(&self) -> usize {
        self.open.len() + self.done.iter().map(|(_, r)| r.len()).sum::<usize>()
    }

    fn close_batch(&mut self) -> Result<(), wire::BuildError> {
        if self.open.is_empty() {
            return Ok(());
        }
        let batch = self.builder.finish()?;
        self.done.push((batch, std::mem::take(&mut self.open)));
        Ok(())
    }

    /// The batches, in push order.
    #[allow(clippy::type_complexity)]
    pub fn finish(
        mut self,
    ) -> Result<Vec<(AlignedVec, Vec<(OffsetRecord, i64)>)>, wire::BuildError> {
        self.close_batch()?;
        Ok(self.done)
    }
}

/// Parses one stored record; `None` if it is not one this version understands.
pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<OffsetRecord> {
    let key = std::str::from_utf8(key?).ok()?;
    let mut parts = key.rsplitn(3, '/');
    let partition: u32 = parts.next()?.parse().ok()?;
    let topic = parts.next()?.to_owned();
    let group = parts.next()?.to_owned();
    let committed = match value {
        None => None,
        Some(v) if v.len() >= 17 && v[0] == VALUE_VERSION => Some(Position {
            offset: u64::from_le_bytes(v[1..9].try_into().ok()?),
            topic_id: Some(u64::from_le_bytes(v[9..17].try_into().ok()?)),
            metadata: String::from_utf8(v[17..].to_vec()).ok()?,
        }),
        Some(v) if v.len() >= 9 && v[0] == VALUE_VERSION_NO_TOPIC_ID => Some(Position {
            offset: u64::from_le_bytes(v[1..9].try_into().ok()?),
            topic_id: None,
            metadata: String::from_utf8(v[9..].to_vec()).ok()?,
        }),
        Some(_) => return None,
    };
    Some(OffsetRecord { group, tp: (topic, partition), committed })
}

/// Every group's offsets as stored in `log`, and how many records were skipped.
pub async fn replay<D: Disk>(
    log: &PartitionLog<D>,
) -> Result<(BTreeMap<String, BTreeMap<TopicPartition, Committed>>, u64), StorageError> {
    let mut groups: BTreeMap<String, BTreeMap<TopicPartition, Committed>> = BTreeMap::new();
    let mut skipped = 0;
    let mut offset = log.log_start_offset();
    let end = log.high_watermark();
    while offset < end {
        let out = log.read(offset, REPLAY_READ_BYTES, FirstBatch::Always).await?;
        if out.batches.is_empty() {
            break;
        }
        for view in &out.batches {
            for batch in Batches::new(view) {
                let batch = batch.map_err(|e| StorageError::Corrupt {
                    file: format!("{}", log.dir().display()),
                    position: offset,
                    reason: e.to_string(),
                })?;
                offset = offset.max(batch.header().next_offset());
                for record in batch.records() {
                    match decode(record.key(), record.value()) {
                        Some(r) => {
                            let offsets = groups.entry(r.group).or_default();
                            match r.committed {
                                Some(p) => {
                                    let c = p.committed(record.offset(), record.timestamp_ms());
                                    offsets.insert(r.tp, c);
                                }
                                None => {
                                    offsets.remove(&r.tp);
                                }
                            }
                        }
                        None => skipped += 1,
                    }
                }
                // Reads from the cache do not wait: give the shard up now and then.
                glommio::yield_if_needed().await;
            }
        }
    }
    groups.retain(|_, o| !o.is_empty());
    Ok((groups, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_a_batch() {
        let records = vec![
            OffsetRecord {
                group: "g.1".into(),
                tp: ("orders-v2".into(), 7),
                committed: Some(Position {
                    offset: 42,
                    metadata: "meta/with/slashes".into(),
                    topic_id: Some(9),
                }),
            },
            OffsetRecord { group: "g".into(), tp: ("t".into(), 0), committed: None },
            // A version-1 record restated by a compaction stays one.
            OffsetRecord {
                group: "g".into(),
                tp: ("t".into(), 1),
                committed: Some(Position { offset: 7, metadata: "m".into(), topic_id: None }),
            },
        ];
        let batch = encode(&records, 1).unwrap();
        let view = wire::BatchView::validate(&batch).unwrap();
        let back: Vec<_> = view.records().map(|r| decode(r.key(), r.value()).unwrap()).collect();
        assert_eq!(back, records);
    }

    #[test]
    fn a_packer_keeps_push_order_within_the_batch_limit() {
        let mut packer = Packer::new(1024);
        let records: Vec<OffsetRecord> = (0..200)
            .map(|i| OffsetRecord {
                group: format!("g{}", i % 3),
                tp: ("t".into(), i),
                committed: (i != 5).then(|| Position {
                    offset: u64::from(i) * 10,
                    metadata: "m".into(),
                    topic_id: Some(u64::from(i % 2)),
                }),
            })
            .collect();
        for (i, r) in records.iter().enumerate() {
            packer.push(r.clone(), 1_000 + i as i64).unwrap();
        }
        assert_eq!(packer.records(), 200);
        let batches = packer.finish().unwrap();
        assert!(batches.len() > 5, "{} batches", batches.len());
        let mut back = Vec::new();
        for (batch, with) in &batches {
            assert!(batch.len() <= 1024, "batch of {} bytes", batch.len());
            let view = wire::BatchView::validate(batch).unwrap();
            let decoded: Vec<_> = view
                .records()
                .map(|r| (decode(r.key(), r.value()).unwrap(), r.timestamp_ms()))
                .collect();
            assert_eq!(&decoded, with, "records and their own timestamps");
            back.extend(decoded.into_iter().map(|(r, _)| r));
        }
        assert_eq!(back, records);
    }

    #[test]
    fn version_1_records_read_without_a_topic_id() {
        let mut v = vec![1];
        v.extend_from_slice(&42u64.to_le_bytes());
        v.extend_from_slice(b"meta");
        let r = decode(Some(b"g/t/3"), Some(&v)).unwrap();
        let p = Position { offset: 42, metadata: "meta".into(), topic_id: None };
        assert_eq!(r, OffsetRecord { group: "g".into(), tp: ("t".into(), 3), committed: Some(p) });
        let c = r.committed.unwrap().committed(5, 6);
        assert!(c.belongs_to(Some(1)) && c.belongs_to(Some(2)) && !c.belongs_to(None));
        let c = Committed { topic_id: Some(1), ..c };
        assert!(c.belongs_to(Some(1)) && !c.belongs_to(Some(2)) && !c.belongs_to(None));
    }

    #[test]
    fn unknown_versions_and_garbage_are_skipped_not_misread() {
        assert_eq!(decode(Some(b"g/t/1"), Some(&[3, 0, 0, 0, 0, 0, 0, 0, 0])), None);
        assert_eq!(decode(Some(b"g/t/1"), Some(&[2, 0, 0, 0, 0, 0, 0, 0, 0])), None);
        assert_eq!(decode(Some(b"g/t/x"), Some(&[1, 0, 0, 0, 0, 0, 0, 0, 0])), None);
        assert_eq!(decode(Some(b"gt1"), None), None);
        assert_eq!(decode(None, None), None);
        assert_eq!(decode(Some(b"g/t/1"), Some(&[1, 0])), None);
    }
}
