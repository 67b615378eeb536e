//! A gathered scrape as Prometheus text (OpenMetrics 1.0, which Prometheus reads natively),
//! through `prometheus-client`'s encoder: names, HELP/TYPE lines, label escaping, histogram
//! buckets and the `# EOF` terminator come from the library, not from this file.
//!
//! Series (every name carries its unit; counters get `_total` from the encoder):
//! - per shard (`shard`): `broker_{bytes,records,batches}_{in,out}_total`,
//!   `broker_batches_in_frame_total`,
//!   `broker_connections`, `broker_connections_accepted_total`, `broker_subscriptions`,
//!   `broker_credit_stalls_total`, `broker_journal_{records,records_gathered,records_overlapped,records_paced,record_bytes,files_created,
//!   files_removed,files_recycled,file_create_failures,filesystem_syncs}_total`,
//!   `broker_journal_filesystem_sync_failed` (the shard journal's),
//!   `broker_forwards_{in,out}_total`, `broker_cache_bytes`, `broker_partitions`,
//!   `broker_segments`, `broker_disk_bytes`, `broker_fdatasyncs_total`,
//!   `broker_fdatasync_seconds_total`,
//!   `broker_log_writes_total`, `broker_log_space_waits_total`,
//!   `broker_log_write_size_bytes` (histogram of write I/O
//!   sizes), `broker_cache_reads_total`, `broker_log_disk_reads_total`,
//!   `broker_retention_segments_deleted_total`, `broker_retention_deleted_bytes_total`,
//!   `broker_cleaner_{passes,records_removed,reclaimed_bytes}_total`,
//!   `broker_requests_total{api}` (`other`: keys this build
//!   does not count one by one),
//!   `broker_request_errors_total{api,code}`, `broker_{produce,fetch}_latency_seconds`
//!   (histograms), `broker_metrics_shard_up` (0: it did not answer this scrape). The
//!   shard counters that sum its partition logs' (`broker_fdatasyncs_total`,
//!   `broker_log_writes_total`, ...) keep what deleted partitions counted: they never go
//!   down while the broker runs (`ShardSnapshot::logs`).
//! - per partition (`topic`, `partition`) while the broker holds at most
//!   `metrics_partitions_max` partitions and `metrics_per_partition` is on, else per topic
//!   (`broker_topic_*`, summed): `records_in_total`, `records_out_total`, `bytes_out_total`
//!   (counted where they went by, summed over shards), `cache_reads_total`,
//!   `disk_reads_total`, `segments_deleted_total`, `deleted_bytes_total`,
//!   `cleaner_records_removed_total`, `cleaner_reclaimed_bytes_total`,
//!   `bytes_written_total`, `writes_total`, `fdatasyncs_total`,
//!   `dsync_writes_total`, `log_end_offset`, `high_watermark`, `log_start_offset`,
//!   `disk_bytes`, `segments`. `broker_metrics_partition_series_capped` says which.
//! - consumer groups: `broker_group_partition_lag_records` and
//!   `broker_group_partition_committed_offset` (`group`, `topic`, `partition`), or
//!   `broker_group_lag_records{group}` past the same cap.
//! - process: `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//!   `process_open_fds`, `process_max_fds`, `process_cpu_seconds_total`,
//!   `process_start_time_seconds`, `process_threads`.
//!
//! Contract: pure (no I/O); the output is bounded by shards × apis × error codes plus
//! `metrics_partitions_max` partition series (or topics) plus as many group series.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Error as FmtError;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::process::ProcessSnapshot;
use super::{PartitionSnapshot, ShardSnapshot};
use crate::counters::{HistogramSnapshot, API_SLOTS, LATENCY_BUCKETS_US};
use crate::partition_traffic::Traffic;
use crate::storage::log::WRITE_SIZE_BUCKETS_BYTES;

/// Everything one scrape reports.
#[derive(Debug, Default)]
pub struct Scrape {
    /// Snapshots of the shards that answered.
    pub shards: Vec<ShardSnapshot>,
    /// Shards that did not answer.
    pub missing: Vec<u32>,
    /// Consumer groups' positions.
    pub group_lag: Vec<wire::GroupPartitionLag>,
    /// `/proc/self`.
    pub process: ProcessSnapshot,
    /// Partition series up to this many partitions (and group series up to this many).
    pub partitions_max: usize,
    /// Partition series at all.
    pub per_partition: bool,
}

type Labels = Vec<(&'static str, String)>;

/// `value` escaped for a label of the text format (`\\`, `\"`, `\n`): the encoder writes
/// label values as they are, and a group id may hold any of them (topic names cannot).
fn label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn shard_label(s: &ShardSnapshot) -> Labels {
    vec![("shard", s.shard.to_string())]
}

/// One metric family of counters.
fn counters<V: EncodeCounterValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, V)>,
) -> Result<(), FmtError> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        if labels.is_empty() {
            m.encode_counter::<NoLabelSet, V, u64>(&v, None)?;
        } else {
            m.encode_family(&labels)?.encode_counter::<NoLabelSet, V, u64>(&v, None)?;
        }
    }
    Ok(())
}

/// One metric family of gauges.
fn gauges<V: EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, V)>,
) -> Result<(), FmtError> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in series {
        if labels.is_empty() {
            m.encode_gauge(&v)?;
        } else {
            m.encode_family(&labels)?.encode_gauge(&v)?;
        }
    }
    Ok(())
}

/// One metric family of histograms: `bounds` are the buckets' upper bounds (the `+Inf`
/// bucket follows), each series is (labels, per-bucket counts (not cumulative; the last is
/// `+Inf`), sum).
fn histogram_family<'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    bounds: &[f64],
    series: impl IntoIterator<Item = (Labels, &'a [u64], f64)>,
) -> Result<(), FmtError> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, counts, sum) in series {
        let count: u64 = counts.iter().sum();
        let mut buckets: Vec<(f64, u64)> = bounds
            .iter()
            .copied()
            .chain([f64::MAX]) // the encoder's +Inf
            .zip(counts.iter().copied().chain(std::iter::repeat(0)))
            .collect();
        // Anything past the known bounds (never, with one build) lands in +Inf.
        let known: u64 = buckets.iter().map(|b| b.1).sum();
        if let Some(last) = buckets.last_mut() {
            last.1 += count - known;
        }
        m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
    }
    Ok(())
}

/// One metric family of latency histograms (seconds).
fn histograms<'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, &'a HistogramSnapshot)>,
) -> Result<(), FmtError> {
    let bounds: Vec<f64> = LATENCY_BUCKETS_US.iter().map(|&us| us as f64 / 1e6).collect();
    let series = series.into_iter().map(|(l, h)| (l, &h.buckets[..], h.sum_us as f64 / 1e6));
    histogram_family(e, name, help, &bounds, series)
}

impl Scrape {
    /// Partition series (labels and values): per partition, or summed per topic when over
    /// the cap or switched off; `true` with them when capped.
    fn partition_series(&self) -> (Vec<(Labels, PartitionSnapshot)>, bool) {
        // Traffic is counted where it went by (any shard): sum it per partition first.
        let mut traffic: HashMap<(&str, u32), Traffic> = HashMap::new();
        for (topic, partition, t) in self.shards.iter().flat_map(|s| &s.traffic) {
            traffic.entry((topic.as_str(), *partition)).or_default().add(t);
        }
        let with_traffic = |p: &PartitionSnapshot| {
            let mut p = p.clone();
            p.traffic = traffic.get(&(p.topic.as_str(), p.partition)).copied().unwrap_or_default();
            p
        };
        let total: usize = self.shards.iter().map(|s| s.partitions.len()).sum();
        let capped = !self.per_partition || total > self.partitions_max;
        if !capped {
            let series = self
                .shards
                .iter()
                .flat_map(|s| {
                    s.partitions.iter().map(move |p| {
                        let labels = vec![
                            ("topic", p.topic.clone()),
                            ("partition", p.partition.to_string()),
                            ("shard", s.shard.to_string()),
                        ];
                        (labels, with_traffic(p))
                    })
                })
                .collect();
            return (series, false);
        }
        let mut topics: BTreeMap<&str, PartitionSnapshot> = BTreeMap::new();
        for p in self.shards.iter().flat_map(|s| &s.partitions) {
            topics.entry(&p.topic).or_default().add(&with_traffic(p));
        }
        (topics.into_iter().map(|(t, p)| (vec![("topic", t.to_owned())], p)).collect(), true)
    }

    fn encode_shards(&self, e: &mut DescriptorEncoder) -> Result<(), FmtError> {
        let per = |f: fn(&ShardSnapshot) -> u64| {
            self.shards.iter().map(move |s| (shard_label(s), f(s))).collect::<Vec<_>>()
        };
        let sum = |f: fn(&PartitionSnapshot) -> u64| {
            let sums = self.shards.iter().map(move |s| s.logs().map(f).sum::<u64>());
            self.shards.iter().map(shard_label).zip(sums).collect::<Vec<_>>()
        };
        let up = self
            .shards
            .iter()
            .map(|s| (s.shard, 1u64))
            .chain(self.missing.iter().map(|&m| (m, 0)))
            .map(|(s, v)| (vec![("shard", s.to_string())], v));
        gauges(e, "broker_metrics_shard_up", "1 if the shard answered this scrape", up)?;
        counters(e, "broker_bytes_in", "Batch bytes appended", per(|s| s.bytes_in))?;
        counters(e, "broker_bytes_out", "Batch bytes sent to consumers", per(|s| s.bytes_out))?;
        counters(e, "broker_records_in", "Records appended", per(|s| s.records_in))?;
        counters(e, "broker_records_out", "Records sent to consumers", per(|s| s.records_out))?;
        counters(e, "broker_batches_in", "Batches appended", per(|s| s.batches_in))?;
        counters(e, "broker_batches_out", "Batches sent to consumers", per(|s| s.batches_out))?;
        let help = "Batches appended that the log keeps in their request's frame (not copied)";
        counters(e, "broker_batches_in_frame", help, per(|s| s.batches_in_frame))?;
        gauges(e, "broker_connections", "Open client connections", per(|s| s.connections))?;
        let accepted = per(|s| s.connections_total);
        counters(e, "broker_connections_accepted", "Client connections accepted", accepted)?;
        let help =
            "TLS handshakes that failed or timed out (plaintext on a TLS port, bad certificates)";
        counters(e, "broker_tls_handshakes_failed", help, per(|s| s.tls_handshakes_failed))?;
        gauges(e, "broker_subscriptions", "Open push subscriptions", per(|s| s.subscriptions))?;
        let help = "Times a subscription waited for credit while data was there to push";
        counters(e, "broker_credit_stalls", help, per(|s| s.credit_stalls))?;
        let help = "Shard journal records written (one O_DSYNC write each; shard_journal)";
        counters(e, "broker_journal_records", help, per(|s| s.journal.records))?;
        let help = "Shard journal records whose commit cycle waited for more appends (shard_journal_gather_us)";
        counters(e, "broker_journal_records_gathered", help, per(|s| s.journal.records_gathered))?;
        let help = "Shard journal records written while an earlier record's write was in flight (shard_journal_writes_in_flight_max)";
        counters(
            e,
            "broker_journal_records_overlapped",
            help,
            per(|s| s.journal.records_overlapped),
        )?;
        let help = "Shard journal records whose commit cycle waited for its turn (shard_journal_writes_per_s_max)";
        counters(e, "broker_journal_records_paced", help, per(|s| s.journal.records_paced))?;
        let help = "Shard journal bytes written for records, padding included";
        counters(e, "broker_journal_record_bytes", help, per(|s| s.journal.record_bytes))?;
        let help = "Shard journal files created";
        counters(e, "broker_journal_files_created", help, per(|s| s.journal.files_created))?;
        let help =
            "Shard journal files removed after their checkpoint (partitions synced past them)";
        counters(e, "broker_journal_files_removed", help, per(|s| s.journal.files_removed))?;
        let help = "Shard journal files made from a checkpointed file instead of zeros";
        counters(e, "broker_journal_files_recycled", help, per(|s| s.journal.files_recycled))?;
        let help = "Failed tries to create a shard journal file (disk full), each tried again";
        let failures = per(|s| s.journal.file_create_failures);
        counters(e, "broker_journal_file_create_failures", help, failures)?;
        let help = "Syncs of the data filesystem by shard journal checkpoints (one syncfs for all of a checkpoint's partitions; shard_journal_checkpoint_syncfs)";
        let syncs = per(|s| s.journal.filesystem_syncs);
        counters(e, "broker_journal_filesystem_syncs", help, syncs)?;
        let help = "1 once a checkpoint's syncfs failed: the shard's partitions are fenced as they sync, and journal files stay until restart";
        let failed = per(|s| s.journal.filesystem_sync_failures);
        gauges(e, "broker_journal_filesystem_sync_failed", help, failed)?;
        let help = "Partition-routed requests this shard forwarded to the owning shard";
        counters(e, "broker_forwards_out", help, per(|s| s.forwards_out))?;
        let help = "Partition-routed requests other shards forwarded to this shard";
        counters(e, "broker_forwards_in", help, per(|s| s.forwards_in))?;
        gauges(
            e,
            "broker_cache_bytes",
            "Bytes held by the shard's batch cache",
            per(|s| s.cache_bytes),
        )?;
        let help = "Bytes the shard's tables hold for their keys (table_keys_bytes_per_shard)";
        gauges(e, "broker_table_keys_bytes", help, per(|s| s.table_keys_bytes))?;
        let help =
            "Idempotent producers the shard's partitions remember (producer_states_per_shard_max)";
        gauges(e, "broker_producer_states", help, per(|s| s.producer_states))?;
        let help = "Bytes held of the shard's memory budget (memory_bytes_per_shard): request bodies, queued responses and pushes, reservations";
        gauges(e, "broker_memory_held_bytes", help, per(|s| s.memory_held_bytes))?;
        gauges(
            e,
            "broker_partitions",
            "Partitions the shard owns",
            per(|s| s.partitions.len() as u64),
        )?;
        gauges(
            e,
            "broker_segments",
            "Log segments of the shard's partitions",
            sum(|p| p.segments),
        )?;
        let help = "Bytes stored in the shard's partitions (segments, and journaled batches not yet written to one)";
        gauges(e, "broker_disk_bytes", help, sum(|p| p.size_bytes))?;
        let help = "fdatasyncs of segment files by the shard's partition logs";
        counters(e, "broker_fdatasyncs", help, sum(|p| p.syncs))?;
        let help =
            "Time in the shard's fdatasyncs (mean latency: rate of this / rate of fdatasyncs)";
        let sync_s = self
            .shards
            .iter()
            .map(|s| (shard_label(s), s.logs().map(|p| p.sync_us).sum::<u64>() as f64 / 1e6));
        counters(e, "broker_fdatasync_seconds", help, sync_s)?;
        let help = "Write I/Os issued for batches by the shard's partition logs";
        counters(e, "broker_log_writes", help, sum(|p| p.writes))?;
        let help = "Segment writes that failed for lack of space and wait to be tried again (shard journal; appends get DISK_FULL meanwhile)";
        counters(e, "broker_log_space_waits", help, sum(|p| p.space_waits))?;
        let help = "Write I/Os for batches by size (page-padded), bytes";
        let bounds: Vec<f64> = WRITE_SIZE_BUCKETS_BYTES.iter().map(|&b| b as f64).collect();
        let sizes: Vec<(Labels, Vec<u64>, f64)> = self
            .shards
            .iter()
            .map(|s| {
                let mut buckets = Vec::new();
                for p in s.logs() {
                    super::add_buckets(&mut buckets, &p.write_sizes);
                }
                let sum: u64 = s.logs().map(|p| p.write_io_bytes).sum();
                (shard_label(s), buckets, sum as f64)
            })
            .collect();
        let sizes = sizes.iter().map(|(l, b, sum)| (l.clone(), &b[..], *sum));
        histogram_family(e, "broker_log_write_size_bytes", help, &bounds, sizes)?;
        let help = "Reads served from the shard's batch cache (no disk I/O)";
        counters(e, "broker_cache_reads", help, sum(|p| p.cache_reads))?;
        let help = "Reads that went to a segment file (cache misses)";
        counters(e, "broker_log_disk_reads", help, sum(|p| p.disk_reads))?;
        let help = "Segments deleted by retention (size or time) or record deletion";
        counters(e, "broker_retention_segments_deleted", help, sum(|p| p.segments_deleted))?;
        let help = "Bytes of segments deleted by retention or record deletion";
        counters(e, "broker_retention_deleted_bytes", help, sum(|p| p.bytes_deleted))?;
        let help = "Compaction passes of the shard's compacted logs";
        counters(e, "broker_cleaner_passes", help, sum(|p| p.cleaner.passes))?;
        let help = "Records compaction removed (superseded values and expired tombstones)";
        counters(e, "broker_cleaner_records_removed", help, sum(|p| p.cleaner.records_removed))?;
        let help = "Segment bytes compaction reclaimed";
        let reclaimed =
            |p: &PartitionSnapshot| p.cleaner.bytes_before.saturating_sub(p.cleaner.bytes_after);
        counters(e, "broker_cleaner_reclaimed_bytes", help, sum(reclaimed))?;
        let requests = self.shards.iter().flat_map(|s| {
            s.requests_by_api.iter().enumerate().filter(|(_, &n)| n > 0).map(move |(key, &n)| {
                let api = if key == API_SLOTS - 1 { "other".into() } else { api_name(key as u16) };
                (vec![("shard", s.shard.to_string()), ("api", api)], n)
            })
        });
        counters(e, "broker_requests", "Client requests answered, by api", requests)?;
        let errors = self.shards.iter().flat_map(|s| {
            s.errors_by_api.iter().map(move |&((api, code), n)| {
                let labels = vec![
                    ("shard", s.shard.to_string()),
                    ("api", api_name(api)),
                    ("code", error_name(code)),
                ];
                (labels, n)
            })
        });
        let help = "Client requests answered with an error frame, by api and error code";
        counters(e, "broker_request_errors", help, errors)?;
        let help = "Client produce requests: request read to response queued";
        let produce = self.shards.iter().map(|s| (shard_label(s), &s.produce_latency));
        histograms(e, "broker_produce_latency_seconds", help, produce)?;
        let help = "Client fetch requests (long-polls included): request read to response queued";
        let fetch = self.shards.iter().map(|s| (shard_label(s), &s.fetch_latency));
        histograms(e, "broker_fetch_latency_seconds", help, fetch)?;
        self.encode_stages(e)
    }

    /// The shards' per-stage latency (`stage_latency.rs`: write, write_dsync, sync, ...):
    /// quantiles since start as gauges, and the sample counts.
    fn encode_stages(&self, e: &mut DescriptorEncoder) -> Result<(), FmtError> {
        let stages = || {
            self.shards.iter().flat_map(|s| s.stages.iter().map(move |l| (s.shard.to_string(), l)))
        };
        let quantiles = stages().flat_map(|(shard, l)| {
            [
                ("0.5", l.p50_us),
                ("0.9", l.p90_us),
                ("0.99", l.p99_us),
                ("0.999", l.p999_us),
                ("1", l.max_us),
            ]
            .into_iter()
            .map(move |(q, us)| {
                let labels = vec![
                    ("shard", shard.clone()),
                    ("stage", l.stage.clone()),
                    ("quantile", q.into()),
                ];
                (labels, us as f64 / 1e6)
            })
        });
        let help = "Latency of each request stage on the shard since start (write, write_dsync, \
                    sync = fdatasync, log_queue, produce_ack, ...), by quantile (1 = max)";
        gauges(e, "broker_stage_latency_seconds", help, quantiles)?;
        let counts = stages()
            .map(|(shard, l)| (vec![("shard", shard), ("stage", l.stage.clone())], l.count));
        counters(e, "broker_stage_samples", "Samples of each request stage on the shard", counts)
    }

    fn encode_partitions(&self, e: &mut DescriptorEncoder) -> Result<(), FmtError> {
        let (series, capped) = self.partition_series();
        let help = "1 if partition series are summed per topic (broker_topic_*)";
        gauges(e, "broker_metrics_partition_series_capped", help, [(vec![], u64::from(capped))])?;
        let prefix = if capped { "broker_topic" } else { "broker_partition" };
        type Field = (&'static str, &'static str, bool, fn(&PartitionSnapshot) -> u64);
        const FIELDS: [Field; 18] = [
            ("records_in", "Records appended", true, |p| p.traffic.records_in),
            ("records_out", "Records sent to consumers (fetches and pushes)", true, |p| {
                p.traffic.records_out
            }),
            ("bytes_out", "Batch bytes sent to consumers", true, |p| p.traffic.bytes_out),
            ("cache_reads", "Reads served from the batch cache", true, |p| p.cache_reads),
            ("disk_reads", "Reads that went to a segment file", true, |p| p.disk_reads),
            ("segments_deleted", "Segments deleted by retention", true, |p| p.segments_deleted),
            ("deleted_bytes", "Bytes of segments deleted by retention", true, |p| p.bytes_deleted),
            ("cleaner_records_removed", "Records compaction removed", true, |p| {
                p.cleaner.records_removed
            }),
            ("cleaner_reclaimed_bytes", "Bytes compaction reclaimed", true, |p| {
                p.cleaner.bytes_before.saturating_sub(p.cleaner.bytes_after)
            }),
            ("bytes_written", "Batch bytes written since the log opened", true, |p| {
                p.bytes_written
            }),
            ("writes", "Write I/Os issued for batches", true, |p| p.writes),
            ("fdatasyncs", "fdatasyncs of segment files", true, |p| p.syncs),
            ("dsync_writes", "Writes through O_DSYNC", true, |p| p.dsync_writes),
            ("log_end_offset", "Offset the next append gets", false, |p| p.log_end_offset),
            ("high_watermark", "Durable offset visible to readers", false, |p| p.high_watermark),
            ("log_start_offset", "First offset still stored", false, |p| p.log_start_offset),
            (
                "disk_bytes",
                "Bytes stored (in segments, or journaled and not yet written to one)",
                false,
                |p| p.size_bytes,
            ),
            ("segments", "Segments, the active one included", false, |p| p.segments),
        ];
        for (field, help, counter, get) in FIELDS {
            let name = format!("{prefix}_{field}");
            let values = series.iter().map(|(l, p)| (l.clone(), get(p)));
            if counter {
                counters(e, &name, help, values)?;
            } else {
                gauges(e, &name, help, values)?;
            }
        }
        // Table partitions only: no series for the (many) partitions without a table.
        let tables: Vec<&(Labels, PartitionSnapshot)> =
            series.iter().filter(|(_, p)| p.is_table).collect();
        if !tables.is_empty() {
            let entries = tables.iter().map(|(l, p)| (l.clone(), p.table_entries));
            let help = "Keys (projection) or groups and windows (state table) in the table";
            gauges(e, &format!("{prefix}_table_entries"), help, entries)?;
            let lag = tables.iter().map(|(l, p)| (l.clone(), p.table_lag_records));
            let help = "High watermark minus the offset the table reflects";
            gauges(e, &format!("{prefix}_table_lag_records"), help, lag)?;
        }
        Ok(())
    }

    fn encode_groups(&self, e: &mut DescriptorEncoder) -> Result<(), FmtError> {
        if self.per_partition && self.group_lag.len() <= self.partitions_max {
            let labels = |g: &wire::GroupPartitionLag| {
                vec![
                    ("group", label_value(&g.group)),
                    ("topic", g.topic.clone()),
                    ("partition", g.partition.to_string()),
                ]
            };
            let lag = self.group_lag.iter().map(|g| (labels(g), g.lag));
            let help = "High watermark minus the group's committed offset";
            gauges(e, "broker_group_partition_lag_records", help, lag)?;
            let committed = self.group_lag.iter().map(|g| (labels(g), g.committed));
            let help = "The group's committed offset";
            return gauges(e, "broker_group_partition_committed_offset", help, committed);
        }
        let mut groups: BTreeMap<&str, u64> = BTreeMap::new();
        for g in &self.group_lag {
            *groups.entry(&g.group).or_default() += g.lag;
        }
        let lag = groups.into_iter().map(|(g, lag)| (vec![("group", label_value(g))], lag));
        gauges(e, "broker_group_lag_records", "Sum of the group's lag over its partitions", lag)
    }

    fn encode_process(&self, e: &mut DescriptorEncoder) -> Result<(), FmtError> {
        let p = &self.process;
        let one = |v: Option<u64>| v.map(|v| (Labels::new(), v));
        gauges(
            e,
            "process_resident_memory_bytes",
            "Resident memory",
            one(p.resident_memory_bytes),
        )?;
        gauges(e, "process_virtual_memory_bytes", "Virtual memory", one(p.virtual_memory_bytes))?;
        gauges(e, "process_open_fds", "Open file descriptors", one(p.open_fds))?;
        gauges(e, "process_max_fds", "Soft limit of open file descriptors", one(p.max_fds))?;
        gauges(e, "process_threads", "OS threads", one(p.threads))?;
        let cpu = p.cpu_seconds.map(|v| (Labels::new(), v));
        counters(e, "process_cpu_seconds", "User and system CPU time", cpu)?;
        let start = p.start_time_seconds.map(|v| (Labels::new(), v));
        gauges(e, "process_start_time_seconds", "Start time since the Unix epoch", start)
    }

    /// The scrape as Prometheus text.
    pub fn encode(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("encoding into a String cannot fail");
        out
    }
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), FmtError> {
        self.encode_shards(&mut e)?;
        self.encode_partitions(&mut e)?;
        self.encode_groups(&mut e)?;
        self.encode_process(&mut e)
    }
}

/// An api key's name (its number if this build does not know it).
fn api_name(key: u16) -> String {
    wire::ApiKey::from_u16(key).map_or_else(|| key.to_string(), |a| a.name().to_owned())
}

/// An error code's name (its number if this build does not know it).
fn error_name(code: u16) -> String {
    wire::ErrorCode::from_u16(code).map_or_else(|| code.to_string(), |c| c.name().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(topic: &str, partition: u32) -> PartitionSnapshot {
        PartitionSnapshot {
            topic: topic.into(),
            partition,
            bytes_written: 100,
            log_end_offset: 10,
            segments: 1,
            ..Default::default()
        }
    }

    fn scrape(partitions: u32, partitions_max: usize) -> Scrape {
        let shard = ShardSnapshot {
            shard: 0,
            records_in: 7,
            requests_by_api: vec![0; crate::counters::API_SLOTS],
            errors_by_api: vec![((6, 3), 2)],
            partitions: (0..partitions).map(|p| partition(&format!("t{}", p % 3), p)).collect(),
            ..Default::default()
        };
        Scrape {
            shards: vec![shard],
            missing: vec![1],
            partitions_max,
            per_partition: true,
            ..Default::default()
        }
    }

    #[test]
    fn partitions_past_the_cap_are_summed_per_topic() {
        let text = scrape(30, 100).encode();
        assert_eq!(text.matches("broker_partition_log_end_offset{").count(), 30, "{text}");
        assert!(text.contains("broker_metrics_partition_series_capped 0"), "{text}");
        let text = scrape(300, 100).encode();
        assert!(!text.contains("broker_partition_"), "{text}");
        assert_eq!(text.matches("broker_topic_log_end_offset{").count(), 3, "{text}");
        assert!(text.contains("broker_topic_log_end_offset{topic=\"t0\"} 1000"), "{text}");
        assert!(text.contains("broker_metrics_shard_up{shard=\"1\"} 0"), "{text}");
        assert!(text.contains("broker_records_in_total{shard=\"0\"} 7"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(!text.contains("_table_entries"), "no table, no table series: {text}");
    }

    /// Group ids may hold `"` and `\` (Kafka's are any string): escaped, a scrape still
    /// parses (before, such an id ended the label early and broke the whole scrape).
    #[test]
    fn group_labels_are_escaped() {
        let mut s = scrape(1, 100);
        let lag = |group: &str| wire::GroupPartitionLag {
            group: group.into(),
            topic: "t0".into(),
            partition: 0,
            committed: 3,
            high_watermark: 10,
            lag: 7,
        };
        s.group_lag = vec![lag(r#"app "x"\y"#), lag("plain")];
        let text = s.encode();
        let want = r#"broker_group_partition_lag_records{group="app \"x\"\\y",topic="t0",partition="0"} 7"#;
        assert!(text.contains(want), "{text}");
        s = scrape(1, 1);
        s.per_partition = false;
        s.group_lag = vec![lag(r#"a"b"#)];
        assert!(s.encode().contains(r#"broker_group_lag_records{group="a\"b"} 7"#));
    }

    #[test]
    fn table_partitions_report_entries_and_lag() {
        let mut s = scrape(3, 100);
        s.shards[0].partitions[1].is_table = true;
        s.shards[0].partitions[1].table_entries = 42;
        s.shards[0].partitions[1].table_lag_records = 5;
        s.shards[0].table_keys_bytes = 4096;
        s.shards[0].producer_states = 12;
        s.shards[0].memory_held_bytes = 4096;
        let text = s.encode();
        assert_eq!(text.matches("broker_partition_table_entries{").count(), 1, "{text}");
        assert!(
            text.contains(
                "broker_partition_table_entries{topic=\"t1\",partition=\"1\",shard=\"0\"} 42"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "broker_partition_table_lag_records{topic=\"t1\",partition=\"1\",shard=\"0\"} 5"
            ),
            "{text}"
        );
        assert!(text.contains("broker_table_keys_bytes{shard=\"0\"} 4096"), "{text}");
        assert!(text.contains("broker_producer_states{shard=\"0\"} 12"), "{text}");
        assert!(text.contains("broker_memory_held_bytes{shard=\"0\"} 4096"), "{text}");
    }

    #[test]
    fn histograms_are_cumulative_in_seconds() {
        let h = crate::counters::LatencyHistogram::default();
        h.record(std::time::Duration::from_micros(40));
        h.record(std::time::Duration::from_millis(3));
        let mut s = scrape(1, 10);
        s.shards[0].produce_latency = h.snapshot();
        let text = s.encode();
        for line in [
            "broker_produce_latency_seconds_bucket{le=\"0.00005\",shard=\"0\"} 1",
            "broker_produce_latency_seconds_bucket{le=\"0.005\",shard=\"0\"} 2",
            "broker_produce_latency_seconds_bucket{le=\"+Inf\",shard=\"0\"} 2",
            "broker_produce_latency_seconds_count{shard=\"0\"} 2",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
