//! Table reads: the latest value of a key, or the keys of a range in order, of a topic
//! declared a table (`TopicConfig::table`, created with `brokerctl table create`).
//!
//! Each partition keeps its own table on its owning shard; keys are placed like the
//! producer places keyed records (`key_hash`), so [`Client::table_get`] asks only the key's
//! partition and [`Client::table_scan`] asks every partition and merges by key. Every
//! answer says which offsets it reflects; a `min_offset` (the producer's acked offset + 1)
//! makes the broker wait until the table has applied the producer's write
//! (read-your-writes).
//!
//! [`Client::query_key`] works on any topic: every record of one key in a time range.
//!
//! A state table (`TopicConfig::aggregate`) keeps aggregates per group, and a group (a
//! header's value) may have records in every partition: [`Client::state_get`] and
//! [`Client::state_scan`] ask every partition and merge their partial aggregates.

use std::time::Duration;

use wire::{
    AggregateSpec, CreateTableRequest, CreateTableResponse, DeleteTableRequest,
    DeleteTableResponse, ErrorCode, KeyQueryPartition, KeyQueryRequest, KeyQueryResponse,
    KeyQueryTopic, TableEntry, TableReadKind, TableReadPartition, TableReadPartitionResult,
    TableReadRequest, TableReadResponse, TableReadTopic,
};

use crate::client::{check_partition, Client};
use crate::error::ClientError;
use crate::producer::key_hash;

/// Most entries a state read asks each partition for.
const STATE_READ_LIMIT: u32 = 10_000;
/// Longest a table read asks the broker to wait for a `min_offset`.
const TABLE_WAIT_MAX: Duration = Duration::from_secs(10);

/// A key's latest value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableValue {
    /// The key's partition.
    pub partition: u32,
    /// The partition's table reflects every record before this offset.
    pub offset: u64,
    /// The key's latest record, if the key exists.
    pub entry: Option<TableEntry>,
}

/// A projection table's changes (`Client::table_changes`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableChanges {
    /// The records that changed a key, in offset order: `previous_offset` is the key's
    /// record before (none: a new key), `tombstone` marks a removal.
    pub entries: Vec<TableEntry>,
    /// Where the next read of changes starts.
    pub next_offset: u64,
}

/// Keys of a range, in key order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableScan {
    /// Entries in key order, at most the limit asked for.
    pub entries: Vec<TableEntry>,
    /// Per partition: its table reflects every record before this offset.
    pub offsets: Vec<(u32, u64)>,
    /// The scan stopped early: scan again from this key for the rest.
    pub next_key: Option<Vec<u8>>,
}

/// One group's aggregate in a state table (over every partition), for one window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StateEntry {
    /// The group key (record key or header value).
    pub key: Vec<u8>,
    /// The window's start (record time, ms); 0 for a table without windows.
    pub window_start_ms: i64,
    /// Records of the group in the window.
    pub count: u64,
    /// Of them, the records that carried a number.
    pub values: u64,
    /// Sum of the numbers.
    pub sum: f64,
    /// Smallest number (none without numbers).
    pub min: Option<f64>,
    /// Largest number.
    pub max: Option<f64>,
    /// The number of the latest record (by record timestamp) that had one.
    pub last: Option<f64>,
    /// That record's timestamp.
    pub last_timestamp_ms: i64,
}

impl StateEntry {
    /// A partition's partial aggregate, as the broker encodes it (`broker::aggregate`).
    fn from_entry(e: &TableEntry) -> Result<StateEntry, ClientError> {
        let v: serde_json::Value = serde_json::from_slice(&e.value)
            .map_err(|err| ClientError::Protocol(format!("state table entry: {err}")))?;
        let number = |name: &str| v.get(name).and_then(serde_json::Value::as_f64);
        Ok(StateEntry {
            key: e.key.clone(),
            window_start_ms: e.timestamp_ms,
            count: v.get("count").and_then(serde_json::Value::as_u64).unwrap_or(0),
            values: v.get("values").and_then(serde_json::Value::as_u64).unwrap_or(0),
            sum: number("sum").unwrap_or(0.0),
            min: number("min"),
            max: number("max"),
            last: number("last"),
            last_timestamp_ms: v
                .get("last_timestamp_ms")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0),
        })
    }

    /// Folds another partition's partial of the same group and window into this one (the
    /// broker's `Aggregate::merge` rules).
    fn merge(&mut self, other: &StateEntry) {
        self.count += other.count;
        if other.values > 0 {
            self.sum += other.sum;
            let pick = |a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64| match (a, b) {
                (Some(a), Some(b)) => Some(f(a, b)),
                (a, b) => a.or(b),
            };
            self.min = pick(self.min, other.min, f64::min);
            self.max = pick(self.max, other.max, f64::max);
            if self.values == 0 || other.last_timestamp_ms >= self.last_timestamp_ms {
                (self.last, self.last_timestamp_ms) = (other.last, other.last_timestamp_ms);
            }
            self.values += other.values;
        }
    }

    /// The aggregate as one JSON object (what `brokerctl table get|scan` prints).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "key": String::from_utf8_lossy(&self.key),
            "window_start_ms": self.window_start_ms,
            "count": self.count,
            "values": self.values,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "last": self.last,
            "last_timestamp_ms": self.last_timestamp_ms,
        })
    }
}

/// Groups of a state table, merged over every partition.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StateScan {
    /// In key, then window order.
    pub entries: Vec<StateEntry>,
    /// Per partition: its table reflects every record before this offset.
    pub offsets: Vec<(u32, u64)>,
    /// The scan stopped early: scan again from this key for the rest.
    pub next_key: Option<Vec<u8>>,
}

/// Which keys a scan reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyRange {
    /// First key (inclusive).
    pub start: Vec<u8>,
    /// The key to stop before; `None`: to the last key.
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> KeyRange {
        KeyRange { start: prefix.to_vec(), end: wire::prefix_end(prefix) }
    }

    /// Every key.
    pub fn all() -> KeyRange {
        KeyRange::default()
    }
}

impl Client {
    /// The latest value of `key` in table `topic`, once the key's partition's table reflects
    /// every record before `min_offset` (0: as it is now).
    pub async fn table_get(
        &self,
        topic: &str,
        key: &[u8],
        min_offset: u64,
    ) -> Result<TableValue, ClientError> {
        let partitions = self.partition_count(topic).await?;
        let partition = (key_hash(key) % u64::from(partitions)) as u32;
        let read = TableReadPartition {
            partition,
            kind: TableReadKind::Get,
            start_key: key.to_vec(),
            end_key: None,
            limit: 1,
            min_offset,
        };
        let mut results = self.table_read(topic, vec![read], true).await?;
        let r = results.pop().ok_or_else(|| ClientError::Protocol("empty table read".into()))?;
        Ok(TableValue { partition, offset: r.offset, entry: r.entries.into_iter().next() })
    }

    /// Up to `limit` keys of `range` in table `topic`, in key order, merged over every
    /// partition. `min_offsets` names, per partition, the offset its table must reflect
    /// before answering (read-your-writes; other partitions answer as they are).
    pub async fn table_scan(
        &self,
        topic: &str,
        range: &KeyRange,
        limit: u32,
        min_offsets: &[(u32, u64)],
    ) -> Result<TableScan, ClientError> {
        let limit = limit.max(1);
        let results = self.scan_every_partition(topic, range, limit, min_offsets).await?;
        Ok(merge(results, limit as usize))
    }

    /// The changes of partition `partition`'s projection table at or after `from_offset`, at
    /// most `limit`, waiting (long-poll, up to about half the request timeout) until there
    /// is one. A `from_offset` whose changes the broker no longer remembers fails with
    /// `OFFSET_OUT_OF_RANGE`: read the table with [`Client::table_scan`] and go on from its
    /// `offsets`.
    pub async fn table_changes(
        &self,
        topic: &str,
        partition: u32,
        from_offset: u64,
        limit: u32,
    ) -> Result<TableChanges, ClientError> {
        let read = TableReadPartition {
            partition,
            kind: TableReadKind::Changes,
            start_key: Vec::new(),
            end_key: None,
            limit,
            min_offset: from_offset,
        };
        let mut results = self.table_read(topic, vec![read], true).await?;
        let r = results.pop().ok_or_else(|| ClientError::Protocol("empty table read".into()))?;
        Ok(TableChanges { entries: r.entries, next_offset: r.offset })
    }

    /// Whether `name` is a state table (a table topic declaring aggregates, or a table
    /// declared over a topic).
    pub async fn is_state_table(&self, name: &str) -> Result<bool, ClientError> {
        self.table_partitions(name).await?;
        let md = self.metadata();
        let t = md.topics.iter().find(|t| t.name == name);
        Ok(t.is_some_and(|t| t.config.table && t.config.aggregate.is_some())
            || md.tables.iter().any(|t| t.name == name))
    }

    /// Declares state table `name` over existing topic `topic`: the topic's partitions'
    /// owners keep `aggregate` from the topic's first stored record on.
    pub async fn create_table(
        &self,
        name: &str,
        topic: &str,
        aggregate: AggregateSpec,
    ) -> Result<(), ClientError> {
        let conn = self.bootstrap_conn().await?;
        let req = CreateTableRequest { name: name.into(), topic: topic.into(), aggregate };
        let r: CreateTableResponse = conn.request(&req).await?;
        self.check(r.error, r.message)?;
        self.refresh_metadata().await?;
        Ok(())
    }

    /// Deletes state table `name` (its topic stays).
    pub async fn delete_table(&self, name: &str) -> Result<(), ClientError> {
        let conn = self.bootstrap_conn().await?;
        let r: DeleteTableResponse =
            conn.request(&DeleteTableRequest { name: name.into() }).await?;
        self.check(r.error, r.message)?;
        self.refresh_metadata().await?;
        Ok(())
    }

    /// The partition count of table `name`: its topic's (refreshing metadata once if
    /// unknown).
    async fn table_partitions(&self, name: &str) -> Result<u32, ClientError> {
        for attempt in 0..2 {
            let md = if attempt == 0 { self.metadata() } else { self.refresh_metadata().await? };
            let topic = md.tables.iter().find(|t| t.name == name).map_or(name, |t| &t.topic);
            if let Some(t) = md.topics.iter().find(|t| t.name == topic && t.error == 0) {
                return Ok(t.partitions.len() as u32);
            }
        }
        Err(ClientError::UnknownTopic(name.into()))
    }

    /// A state table's aggregates of group `key` (one entry per window), merged over every
    /// partition; `min_offsets` as for [`Client::table_scan`].
    pub async fn state_get(
        &self,
        topic: &str,
        key: &[u8],
        min_offsets: &[(u32, u64)],
    ) -> Result<StateScan, ClientError> {
        let range = KeyRange { start: key.to_vec(), end: Some(wire::key_after(key)) };
        self.state_scan(topic, &range, u32::MAX, min_offsets).await
    }

    /// A state table's groups in `range`, merged over every partition: at most `limit`
    /// groups (each with all its windows the partitions returned).
    pub async fn state_scan(
        &self,
        topic: &str,
        range: &KeyRange,
        limit: u32,
        min_offsets: &[(u32, u64)],
    ) -> Result<StateScan, ClientError> {
        let per_partition = limit.clamp(1, STATE_READ_LIMIT);
        let results = self.scan_every_partition(topic, range, per_partition, min_offsets).await?;
        let offsets = results.iter().map(|r| (r.partition, r.offset)).collect();
        // Only groups below every partition's stopping point are complete.
        let bound: Option<Vec<u8>> = results.iter().filter_map(|r| r.next_key.clone()).min();
        let mut merged: std::collections::BTreeMap<(Vec<u8>, i64), StateEntry> = Default::default();
        for e in results.iter().flat_map(|r| &r.entries) {
            if bound.as_ref().is_some_and(|b| e.key >= *b) {
                continue;
            }
            let partial = StateEntry::from_entry(e)?;
            match merged.entry((e.key.clone(), e.timestamp_ms)) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(partial);
                }
                std::collections::btree_map::Entry::Occupied(mut o) => o.get_mut().merge(&partial),
            }
        }
        let mut entries: Vec<StateEntry> = Vec::new();
        let mut groups = 0u32;
        let mut next_key = bound;
        for ((key, _), e) in merged {
            if entries.last().is_none_or(|l: &StateEntry| l.key != key) {
                if groups == limit {
                    next_key = Some(key);
                    break;
                }
                groups += 1;
            }
            entries.push(e);
        }
        Ok(StateScan { entries, offsets, next_key })
    }

    /// Every record of `key` in `topic` with a timestamp in `from_ms..=to_ms`, in offset
    /// order, at most `limit` (the broker reads the stored stream between the time index's
    /// bounds, in steps: this pages through them).
    pub async fn query_key(
        &self,
        topic: &str,
        key: &[u8],
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<TableEntry>, ClientError> {
        let partitions = self.partition_count(topic).await?;
        let partition = (key_hash(key) % u64::from(partitions)) as u32;
        let mut records = Vec::new();
        let mut start_offset = 0u64;
        while records.len() < limit {
            let query = KeyQueryPartition {
                partition,
                key: key.to_vec(),
                from_timestamp_ms: from_ms,
                to_timestamp_ms: to_ms,
                start_offset,
                limit: (limit - records.len()).min(u32::MAX as usize) as u32,
            };
            let r = self
                .with_retries(|| async {
                    let conn = self.owner_conn(topic, partition).await?;
                    let resp: KeyQueryResponse = conn
                        .request(&KeyQueryRequest {
                            topics: vec![KeyQueryTopic {
                                name: topic.into(),
                                partitions: vec![query.clone()],
                            }],
                        })
                        .await?;
                    let r =
                        resp.topics.into_iter().flat_map(|t| t.partitions).next().ok_or_else(
                            || ClientError::Protocol("empty key query response".into()),
                        )?;
                    check_partition(topic, partition, r.error).map(|()| r)
                })
                .await?;
            records.extend(r.records);
            match r.next_offset {
                Some(next) if next > start_offset => start_offset = next,
                _ => break,
            }
        }
        records.truncate(limit);
        Ok(records)
    }

    /// A scan of `range` (at most `limit` entries each) on every partition of `topic`, each
    /// waiting for its `min_offsets` entry (if any).
    async fn scan_every_partition(
        &self,
        topic: &str,
        range: &KeyRange,
        limit: u32,
        min_offsets: &[(u32, u64)],
    ) -> Result<Vec<TableReadPartitionResult>, ClientError> {
        let partitions = self.table_partitions(topic).await?;
        let reads = (0..partitions)
            .map(|partition| TableReadPartition {
                partition,
                kind: TableReadKind::Scan,
                start_key: range.start.clone(),
                end_key: range.end.clone(),
                limit,
                min_offset: min_offsets
                    .iter()
                    .filter(|(p, _)| *p == partition)
                    .map(|(_, o)| *o)
                    .max()
                    .unwrap_or(0),
            })
            .collect();
        self.table_read(topic, reads, false).await
    }

    /// One table read request; every partition's error is checked.
    async fn table_read(
        &self,
        topic: &str,
        partitions: Vec<TableReadPartition>,
        to_owner: bool,
    ) -> Result<Vec<TableReadPartitionResult>, ClientError> {
        let wait = (self.config().request_timeout / 2).min(TABLE_WAIT_MAX);
        self.with_retries(|| async {
            let conn = match (to_owner, partitions.first()) {
                (true, Some(p)) => self.owner_conn(topic, p.partition).await?,
                _ => self.bootstrap_conn().await?,
            };
            let resp: TableReadResponse = conn
                .request(&TableReadRequest {
                    wait_ms: wait.as_millis() as u32,
                    topics: vec![TableReadTopic {
                        name: topic.into(),
                        partitions: partitions.clone(),
                    }],
                })
                .await?;
            let results: Vec<TableReadPartitionResult> =
                resp.topics.into_iter().flat_map(|t| t.partitions).collect();
            if results.len() != partitions.len() {
                return Err(ClientError::Protocol("table read answered other partitions".into()));
            }
            for r in &results {
                if r.error == ErrorCode::NotATable.as_u16() {
                    return Err(ClientError::Broker {
                        code: ErrorCode::NotATable,
                        message: format!("{topic} is not a table"),
                        addr: conn.addr(),
                    });
                }
                check_partition(topic, r.partition, r.error)?;
            }
            Ok(results)
        })
        .await
    }
}

/// Every partition's scan merged: the `limit` smallest keys, and where to go on from.
fn merge(results: Vec<TableReadPartitionResult>, limit: usize) -> TableScan {
    let mut scan = TableScan {
        offsets: results.iter().map(|r| (r.partition, r.offset)).collect(),
        ..TableScan::default()
    };
    // The first key any partition did not hand out bounds what the merge may return.
    let mut next_key: Option<Vec<u8>> = results.iter().filter_map(|r| r.next_key.clone()).min();
    let mut all: Vec<TableEntry> = results.into_iter().flat_map(|r| r.entries).collect();
    all.sort_by(|a, b| a.key.cmp(&b.key));
    for entry in all {
        let past_bound = next_key.as_ref().is_some_and(|k| entry.key >= *k);
        if past_bound || scan.entries.len() == limit {
            if next_key.as_ref().is_none_or(|k| entry.key < *k) {
                next_key = Some(entry.key.clone());
            }
            break;
        }
        scan.entries.push(entry);
    }
    scan.next_key = next_key;
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str) -> TableEntry {
        TableEntry { key: key.as_bytes().to_vec(), ..Default::default() }
    }

    fn result(partition: u32, keys: &[&str], next: Option<&str>) -> TableReadPartitionResult {
        TableReadPartitionResult {
            partition,
            entries: keys.iter().map(|k| entry(k)).collect(),
            next_key: next.map(|k| k.as_bytes().to_vec()),
            ..Default::default()
        }
    }

    fn keys(scan: &TableScan) -> Vec<&str> {
        scan.entries.iter().map(|e| std::str::from_utf8(&e.key).unwrap()).collect()
    }

    #[test]
    fn merge_takes_the_smallest_keys_and_resumes_where_nothing_is_skipped() {
        let a = result(0, &["a", "d", "e"], Some("f"));
        let b = result(1, &["b", "c"], None);
        let scan = merge(vec![a.clone(), b.clone()], 3);
        assert_eq!(keys(&scan), ["a", "b", "c"]);
        assert_eq!(scan.next_key.as_deref(), Some(&b"d"[..]));
        // A partition that stopped early bounds the merge: "g" must wait for partition 0's
        // keys between "f" and "g".
        let c = result(1, &["b", "g"], None);
        let scan = merge(vec![a, c], 10);
        assert_eq!(keys(&scan), ["a", "b", "d", "e"]);
        assert_eq!(scan.next_key.as_deref(), Some(&b"f"[..]));
        let scan = merge(vec![result(0, &["a"], None), result(1, &["b"], None)], 10);
        assert_eq!((keys(&scan), scan.next_key.clone()), (vec!["a", "b"], None));
    }
}
