//! The Prometheus endpoint: what a shard reports and how a scrape gathers it.
//!
//! ```text
//! Prometheus ──GET /metrics──▶ shard 0 http.rs ──▶ collect.rs gather
//!                                    │ own snapshot: snapshot(&shard)
//!                                    │ shard i ≥ 1: request ──shared channel──▶ responder on i
//!                                    │              ◀── ShardSnapshot (Send, plain data) ──┘
//!                                    │ group lag: the stats api (admin::stats, group_lag)
//!                                    ▼ process.rs (/proc/self)
//!                              exposition.rs: prometheus-client text, partition cap applied
//! ```
//!
//! Contract: the hot path only bumps shard-local `Cell`s (`counters.rs`, the logs' own
//! `LogStats`); nothing is shared or locked between threads. A scrape copies each shard's
//! cells into a [`ShardSnapshot`] on that shard and sums the copies on shard 0, so a scrape
//! costs each shard one walk over its partitions and nothing between scrapes. Scrapes are
//! served one at a time (`http.rs`), so at most one snapshot request per shard is in flight.
//! Counters are monotonic for the life of the process (a restart starts them at 0).

pub mod collect;
pub mod exposition;
pub mod http;
pub mod process;

use crate::counters::HistogramSnapshot;
use crate::partition_traffic::Traffic;
use crate::shard::Shard;
use crate::storage::journal::JournalStats;
use crate::storage::log::{CleanerStats, LogStats};

/// One shard's counters, copied on that shard at scrape time.
#[derive(Debug, Clone, Default)]
pub struct ShardSnapshot {
    /// Shard id.
    pub shard: u32,
    /// Batch bytes appended.
    pub bytes_in: u64,
    /// Batch bytes sent to consumers.
    pub bytes_out: u64,
    /// Records appended.
    pub records_in: u64,
    /// Records sent to consumers.
    pub records_out: u64,
    /// Batches appended.
    pub batches_in: u64,
    /// Batches sent to consumers.
    pub batches_out: u64,
    /// Batches appended that the log keeps in their request's frame.
    pub batches_in_frame: u64,
    /// Open connections.
    pub connections: u64,
    /// Accepted connections.
    pub connections_total: u64,
    /// TLS handshakes that failed or timed out.
    pub tls_handshakes_failed: u64,
    /// Open subscriptions.
    pub subscriptions: u64,
    /// Push loops that waited for credit with data to push.
    pub credit_stalls: u64,
    /// Partition-routed requests forwarded to another shard.
    pub forwards_out: u64,
    /// Partition-routed requests forwarded here.
    pub forwards_in: u64,
    /// Client requests answered, by api key (index = key; the last slot takes the rest).
    pub requests_by_api: Vec<u64>,
    /// Client requests answered with an error frame, by (api key, error code).
    pub errors_by_api: Vec<((u16, u16), u64)>,
    /// Client produce latency.
    pub produce_latency: HistogramSnapshot,
    /// Client fetch latency.
    pub fetch_latency: HistogramSnapshot,
    /// Bytes held by the shard's batch cache.
    pub cache_bytes: u64,
    /// Bytes the shard's tables hold for their keys (`table_keys_bytes_per_shard`).
    pub table_keys_bytes: u64,
    /// Idempotent producers its partitions remember (`producer_states_per_shard_max`).
    pub producer_states: u64,
    /// Bytes held of the shard's memory budget (`memory_bytes_per_shard`): request bodies,
    /// queued responses and pushes, reservations.
    pub memory_held_bytes: u64,
    /// The shard journal's counters since start (`shard_journal`; zero without it).
    pub journal: JournalStats,
    /// The partitions this shard owns.
    pub partitions: Vec<PartitionSnapshot>,
    /// Log counters of partitions it no longer holds (`Counters::retired_logs`; no topic,
    /// gauges zero): part of the shard's totals, never a partition series.
    pub retired: PartitionSnapshot,
    /// The shard's per-stage latency since start (`stage_latency.rs`; HDR, 1 % resolution).
    pub stages: Vec<wire::StageLatency>,
    /// Records and bytes in and out this shard counted per partition, for partitions of any
    /// shard (`partition_traffic.rs`): summed over shards per partition at scrape.
    pub traffic: Vec<(String, u32, Traffic)>,
}

impl ShardSnapshot {
    /// Its partitions and the counters of those it no longer holds: what the shard's
    /// totals sum (a counter must not go down when a topic is deleted).
    pub fn logs(&self) -> impl Iterator<Item = &PartitionSnapshot> {
        self.partitions.iter().chain(std::iter::once(&self.retired))
    }
}

/// One partition's log, copied on its owner at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionSnapshot {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// Batch bytes written to the log since it opened (`LogStats::bytes_written`).
    pub bytes_written: u64,
    /// Write I/Os issued for batches.
    pub writes: u64,
    /// fdatasyncs of segment files (`LogStats::syncs`).
    pub syncs: u64,
    /// Time in those fdatasyncs, microseconds (`LogStats::sync_us`).
    pub sync_us: u64,
    /// Writes through O_DSYNC (durable without an fdatasync).
    pub dsync_writes: u64,
    /// With the shard journal: segment writes that failed for lack of space and were kept
    /// to be tried again (`LogStats::space_waits`).
    pub space_waits: u64,
    /// Offset the next append gets (records appended over the log's life).
    pub log_end_offset: u64,
    /// The high watermark (durable, visible to readers).
    pub high_watermark: u64,
    /// First offset still stored.
    pub log_start_offset: u64,
    /// Bytes stored across segments.
    pub size_bytes: u64,
    /// Segments, the active one included.
    pub segments: u64,
    /// Whether the partition keeps a table (the two fields below mean something).
    pub is_table: bool,
    /// Keys (projection) or groups and windows (state table) in its table.
    pub table_entries: u64,
    /// High watermark minus the offset the table reflects.
    pub table_lag_records: u64,
    /// Records and bytes in and out, summed over the shards that counted them.
    pub traffic: Traffic,
    /// Reads served from the batch cache (`LogStats::cache_reads`).
    pub cache_reads: u64,
    /// Reads that went to a segment file.
    pub disk_reads: u64,
    /// Segments deleted by retention or record deletion, and their bytes.
    pub segments_deleted: u64,
    /// Bytes of those segments.
    pub bytes_deleted: u64,
    /// Write I/Os per size bucket (`WRITE_SIZE_BUCKETS_BYTES`, then the rest).
    pub write_sizes: Vec<u64>,
    /// Bytes of those write I/Os.
    pub write_io_bytes: u64,
    /// The log cleaner's counts (compacted topics).
    pub cleaner: CleanerStats,
}

impl PartitionSnapshot {
    /// A log's counters (`LogStats`, `CleanerStats`), everything else zero: what a live
    /// partition's snapshot starts from and what a shard keeps of removed ones.
    pub fn from_log(stats: &LogStats, cleaner: CleanerStats) -> PartitionSnapshot {
        PartitionSnapshot {
            bytes_written: stats.bytes_written,
            writes: stats.writes,
            syncs: stats.syncs,
            sync_us: stats.sync_us,
            dsync_writes: stats.dsync_writes,
            space_waits: stats.space_waits,
            cache_reads: stats.cache_reads,
            disk_reads: stats.disk_reads,
            segments_deleted: stats.segments_deleted,
            bytes_deleted: stats.bytes_deleted,
            write_sizes: stats.write_sizes.to_vec(),
            write_io_bytes: stats.write_io_bytes,
            cleaner,
            ..PartitionSnapshot::default()
        }
    }

    /// Adds another partition's values (for per-topic aggregation).
    pub fn add(&mut self, o: &PartitionSnapshot) {
        self.bytes_written += o.bytes_written;
        self.writes += o.writes;
        self.syncs += o.syncs;
        self.sync_us += o.sync_us;
        self.dsync_writes += o.dsync_writes;
        self.space_waits += o.space_waits;
        self.log_end_offset += o.log_end_offset;
        self.high_watermark += o.high_watermark;
        self.log_start_offset += o.log_start_offset;
        self.size_bytes += o.size_bytes;
        self.segments += o.segments;
        self.is_table |= o.is_table;
        self.table_entries += o.table_entries;
        self.table_lag_records += o.table_lag_records;
        self.traffic.add(&o.traffic);
        self.cache_reads += o.cache_reads;
        self.disk_reads += o.disk_reads;
        self.segments_deleted += o.segments_deleted;
        self.bytes_deleted += o.bytes_deleted;
        add_buckets(&mut self.write_sizes, &o.write_sizes);
        self.write_io_bytes += o.write_io_bytes;
        self.cleaner.add(&o.cleaner);
    }
}

/// Adds bucket counts `b` into `a` (growing `a` to `b`'s length).
pub fn add_buckets(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.wrapping_add(*y);
    }
}

/// Copies this shard's counters and every owned partition's log stats. Synchronous: no
/// await, so the copy is one consistent moment of this shard.
pub fn snapshot(shard: &Shard) -> ShardSnapshot {
    let c = &shard.counters;
    let mut partitions: Vec<PartitionSnapshot> = shard
        .partitions()
        .iter()
        .map(|p| {
            PartitionSnapshot {
                // (traffic is summed over the shards at scrape)
                topic: p.topic.clone(),
                partition: p.index,
                log_end_offset: p.log.next_offset(),
                high_watermark: p.log.high_watermark(),
                log_start_offset: p.log.log_start_offset(),
                size_bytes: p.log.size_bytes(),
                segments: p.log.segment_count() as u64,
                is_table: p.table.is_some(),
                table_entries: p.table.as_ref().map_or(0, |t| t.len() as u64),
                table_lag_records: p
                    .table
                    .as_ref()
                    .map_or(0, |t| p.log.high_watermark().saturating_sub(t.applied())),
                ..PartitionSnapshot::from_log(&p.log.stats(), p.log.cleaner_stats())
            }
        })
        .collect();
    partitions.sort_unstable_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let (log, cleaner) = c.retired_logs.get();
    let retired = PartitionSnapshot::from_log(&log, cleaner);
    let metadata = shard.metadata();
    c.partitions.forget_missing(|topic| metadata.topic(topic).is_some());
    ShardSnapshot {
        shard: shard.id,
        bytes_in: c.bytes_in.get(),
        bytes_out: c.bytes_out.get(),
        records_in: c.records_in.get(),
        records_out: c.records_out.get(),
        batches_in: c.batches_in.get(),
        batches_out: c.batches_out.get(),
        batches_in_frame: c.batches_in_frame.get(),
        connections: c.connections.get(),
        connections_total: c.connections_total.get(),
        tls_handshakes_failed: c.tls_handshakes_failed.get(),
        subscriptions: c.subscriptions.get(),
        credit_stalls: c.credit_stalls.get(),
        forwards_out: c.forwards_out.get(),
        forwards_in: c.forwards_in.get(),
        requests_by_api: c.requests_by_api.iter().map(std::cell::Cell::get).collect(),
        errors_by_api: c.errors_by_api.borrow().iter().map(|(&k, &v)| (k, v)).collect(),
        produce_latency: c.produce_latency.snapshot(),
        fetch_latency: c.fetch_latency.snapshot(),
        stages: crate::stage_latency::summaries(false),
        cache_bytes: shard.cache.used_bytes() as u64,
        table_keys_bytes: shard.tables.used_bytes() as u64,
        producer_states: shard.producers.count() as u64,
        memory_held_bytes: shard.memory.held_bytes() as u64,
        journal: shard.journal_stats().unwrap_or_default(),
        partitions,
        retired,
        traffic: c.partitions.snapshot(),
    }
}
