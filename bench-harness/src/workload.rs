//! A workload: what to create, how hard to push, and for how long. Read from TOML files in
//! `bench-harness/workloads/` (in the spirit of the OpenMessaging Benchmark's workloads).
//!
//! ```toml
//! name = "1-topic-16-partitions-1kb-fixed-rate"
//! topics = 1
//! partitions_per_topic = 16
//! producers_per_topic = 1
//! consumers_per_topic = 1
//! message_bytes = 1024
//! keys = "none"                  # none | uniform | zipf
//! payload = "random"             # random | json (compressible order events)
//! active_partitions = 0          # partitions written and read; 0 = all (keyed workloads)
//! producer_rate_msgs_per_s = 100000   # all producers together; 0 = as fast as possible
//! batch_bytes_max = 65536
//! linger_us = 1000
//! ack = "durable"                # none | written | durable
//! warmup_s = 5
//! duration_s = 30
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::HarnessError;

/// How producers choose record keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeyDistribution {
    /// No key: the producer spreads records over partitions itself (sticky per batch).
    #[default]
    None,
    /// Keys drawn uniformly from `key_count` distinct keys.
    Uniform,
    /// Keys drawn from `key_count` keys with a Zipf distribution (`zipf_exponent`): a few hot
    /// keys, a long tail.
    Zipf,
}

/// What the payload bytes after the 16-byte stamp are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    /// Seeded random bytes: incompressible.
    #[default]
    Random,
    /// JSON order events (`{"order_id":..,"customer":"cust-123","items":[..],..}`), values
    /// varying per message: compressible as real JSON events are (see `payload.rs`).
    Json,
}

/// When the producer's request is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Ack {
    /// On receipt.
    None,
    /// Once written to the segment file.
    Written,
    /// Once fdatasync'ed (survives power loss).
    #[default]
    Durable,
}

/// See the module docs. Field names carry their units.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Name used in reports and output file names.
    pub name: String,
    /// What the workload shows, for the report.
    #[serde(default)]
    pub description: String,
    /// Topics created for the run (fresh names each run).
    #[serde(default = "one")]
    pub topics: u32,
    /// Partitions of each topic.
    #[serde(default = "one")]
    pub partitions_per_topic: u32,
    /// Producer clients per topic.
    #[serde(default = "one")]
    pub producers_per_topic: u32,
    /// Consumers per topic; the topic's partitions are split between them (0 = publish only).
    #[serde(default = "one")]
    pub consumers_per_topic: u32,
    /// The topic's consumers are members of one consumer group: the broker assigns them
    /// the partitions (instead of the fixed round-robin split) and they commit positions.
    /// Drivers without groups refuse it.
    #[serde(default)]
    pub consumer_group: bool,
    /// Payload size of each message (at least 16: the first 16 bytes carry a timestamp).
    #[serde(default = "default_message_bytes")]
    pub message_bytes: usize,
    /// Payload content after the stamp (`json` needs `message_bytes` ≥
    /// [`JSON_MESSAGE_BYTES_MIN`]).
    #[serde(default)]
    pub payload: PayloadKind,
    /// Partitions of each topic that are written and read; the rest exist on the server but
    /// stay idle (0 = all). The active ones are spread evenly over the topic (partition
    /// `i * partitions / active`), and producers reach them by drawing only keys that hash
    /// to them, so it needs `keys` = `uniform` or `zipf`. Consumers read the active
    /// partitions only.
    #[serde(default)]
    pub active_partitions: u32,
    /// Key choice.
    #[serde(default)]
    pub keys: KeyDistribution,
    /// Distinct keys for `uniform` and `zipf`.
    #[serde(default = "default_key_count")]
    pub key_count: u64,
    /// Zipf exponent (`zipf` only).
    #[serde(default = "default_zipf_exponent")]
    pub zipf_exponent: f64,
    /// Messages per second over all producers of all topics; 0 = as fast as possible.
    #[serde(default)]
    pub producer_rate_msgs_per_s: u64,
    /// Largest batch a producer ships.
    #[serde(default = "default_batch_bytes_max")]
    pub batch_bytes_max: usize,
    /// How long a producer batch may wait for more messages.
    #[serde(default = "default_linger_us")]
    pub linger_us: u64,
    /// Requests in flight per partition per producer.
    #[serde(default = "default_in_flight")]
    pub in_flight_per_partition_max: usize,
    /// Produce requests on the wire per connection (this broker's client; its default when
    /// absent): how deep one connection's pipeline is, which bounds a single partition's
    /// throughput to about this many requests per round trip.
    #[serde(default = "default_requests_in_flight")]
    pub requests_in_flight_per_connection_max: usize,
    /// Ack level.
    #[serde(default)]
    pub ack: Ack,
    /// Idempotent producers (drivers that have them: this broker's client, on by default
    /// there); `false` measures what idempotence costs.
    #[serde(default = "yes")]
    pub idempotence: bool,
    /// Producer batch compression (this broker's client): `none`, `lz4`, `zstd` or
    /// `zstd:LEVEL`. Other drivers send uncompressed.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Seconds at the start whose messages are not measured.
    #[serde(default = "default_warmup_s")]
    pub warmup_s: f64,
    /// Seconds measured after the warm-up.
    #[serde(default = "default_duration_s")]
    pub duration_s: f64,
    /// Consumer backlog phase: producers first write this many bytes with no consumer
    /// running, then consumers start from the beginning and the catch-up read is measured.
    /// 0 = no backlog phase (consumers run alongside producers).
    #[serde(default)]
    pub backlog_bytes: u64,
}

fn one() -> u32 {
    1
}
fn default_compression() -> String {
    "none".into()
}

fn yes() -> bool {
    true
}
fn default_message_bytes() -> usize {
    1024
}
fn default_key_count() -> u64 {
    10_000
}
fn default_zipf_exponent() -> f64 {
    1.0
}
fn default_batch_bytes_max() -> usize {
    64 << 10
}
fn default_linger_us() -> u64 {
    1000
}
fn default_in_flight() -> usize {
    5
}
fn default_requests_in_flight() -> usize {
    client::producer::ProducerConfig::default().requests_in_flight_per_connection_max
}
fn default_warmup_s() -> f64 {
    5.0
}
fn default_duration_s() -> f64 {
    30.0
}

/// Smallest `message_bytes` of a `json` payload: the stamp and an order event's fixed fields.
pub const JSON_MESSAGE_BYTES_MIN: usize = 256;

/// Bytes at the start of every payload holding the intended send time (ns, u64 LE) and the
/// producer's sequence number (u64 LE).
pub const PAYLOAD_HEADER_BYTES: usize = 16;

/// Most keys a workload with idle partitions may draw from (each is precomputed and kept).
pub const ACTIVE_KEYS_MAX: u64 = 1_000_000;

impl Workload {
    /// Reads and checks a workload file.
    pub fn load(path: &Path) -> Result<Workload, HarnessError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| HarnessError::Workload(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| HarnessError::Workload(format!("{}: {e}", path.display())))
    }

    /// Parses and checks a workload.
    pub fn parse(text: &str) -> Result<Workload, String> {
        let w: Workload = toml::from_str(text).map_err(|e| e.to_string())?;
        w.check()?;
        Ok(w)
    }

    /// Rejects settings that cannot run.
    pub fn check(&self) -> Result<(), String> {
        self.compression.parse::<wire::Compression>().map_err(|e| e.to_string())?;
        let positive = [
            ("topics", u64::from(self.topics)),
            ("partitions_per_topic", u64::from(self.partitions_per_topic)),
            ("producers_per_topic", u64::from(self.producers_per_topic)),
            ("batch_bytes_max", self.batch_bytes_max as u64),
            ("in_flight_per_partition_max", self.in_flight_per_partition_max as u64),
            (
                "requests_in_flight_per_connection_max",
                self.requests_in_flight_per_connection_max as u64,
            ),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.message_bytes < PAYLOAD_HEADER_BYTES {
            return Err(format!(
                "message_bytes must be at least {PAYLOAD_HEADER_BYTES} (the payload carries a timestamp)"
            ));
        }
        if self.message_bytes > 8 << 20 {
            return Err("message_bytes above 8 MiB is not supported".into());
        }
        if self.payload == PayloadKind::Json && self.message_bytes < JSON_MESSAGE_BYTES_MIN {
            return Err(format!(
                "payload = \"json\" needs message_bytes of at least {JSON_MESSAGE_BYTES_MIN} (one order event)"
            ));
        }
        if self.active_partitions > self.partitions_per_topic {
            return Err(format!(
                "active_partitions ({}) exceeds partitions_per_topic ({})",
                self.active_partitions, self.partitions_per_topic
            ));
        }
        if self.active_partition_count() < self.partitions_per_topic {
            if self.keys == KeyDistribution::None {
                return Err("active_partitions needs keys = \"uniform\" or \"zipf\" (producers reach the active partitions through keys that hash to them)".into());
            }
            if self.key_count < u64::from(self.active_partition_count()) {
                return Err(format!(
                    "key_count ({}) must be at least active_partitions ({}) so every active partition gets keys",
                    self.key_count,
                    self.active_partition_count()
                ));
            }
            if self.key_count > ACTIVE_KEYS_MAX {
                return Err(format!(
                    "key_count above {ACTIVE_KEYS_MAX} is not supported with active_partitions (the keys are precomputed)"
                ));
            }
        }
        if self.keys != KeyDistribution::None && self.key_count == 0 {
            return Err("key_count must be at least 1 for keyed workloads".into());
        }
        if self.keys == KeyDistribution::Zipf
            && (self.zipf_exponent.is_nan() || self.zipf_exponent <= 0.0)
        {
            return Err("zipf_exponent must be positive".into());
        }
        if self.consumers_per_topic > self.active_partition_count() {
            return Err(format!(
                "consumers_per_topic ({}) exceeds the partitions read ({}): some consumers would idle",
                self.consumers_per_topic,
                self.active_partition_count()
            ));
        }
        let valid = |v: f64, min_exclusive: bool| {
            v.is_finite() && (v > 0.0 || (!min_exclusive && v == 0.0))
        };
        if !valid(self.warmup_s, false) || !valid(self.duration_s, true) {
            return Err("warmup_s must be >= 0 and duration_s > 0".into());
        }
        if self.backlog_bytes > 0 && self.consumers_per_topic == 0 {
            return Err("a backlog phase needs consumers".into());
        }
        Ok(())
    }

    /// Producer tasks over all topics.
    pub fn producer_count(&self) -> u32 {
        self.topics * self.producers_per_topic
    }

    /// Target messages per second of one producer (0 = unlimited).
    pub fn rate_per_producer(&self) -> f64 {
        if self.producer_rate_msgs_per_s == 0 {
            0.0
        } else {
            self.producer_rate_msgs_per_s as f64 / f64::from(self.producer_count())
        }
    }

    /// Partitions of each topic that are written and read.
    pub fn active_partition_count(&self) -> u32 {
        match self.active_partitions {
            0 => self.partitions_per_topic,
            n => n.min(self.partitions_per_topic),
        }
    }

    /// The active partitions of a topic, ascending, spread evenly over it.
    pub fn active_partition_list(&self) -> Vec<u32> {
        let (all, active) =
            (u64::from(self.partitions_per_topic), u64::from(self.active_partition_count()));
        // i * all / active is strictly increasing for active <= all: distinct partitions.
        (0..active).map(|i| (i * all / active) as u32).collect()
    }

    /// The partitions of a topic consumer `index` reads (round-robin split of the active
    /// partitions).
    pub fn partitions_of_consumer(&self, index: u32) -> Vec<u32> {
        let consumers = self.consumers_per_topic.max(1) as usize;
        self.active_partition_list()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % consumers == index as usize)
            .map(|(_, p)| p)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_workload_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let w = Workload::load(&path).unwrap();
                assert_eq!(
                    path.file_stem().unwrap().to_str().unwrap(),
                    w.name,
                    "file name matches the workload name"
                );
                n += 1;
            }
        }
        assert!(n >= 8, "the standard workloads ship ({n} found)");
    }

    #[test]
    fn defaults_and_rejections() {
        let w = Workload::parse("name = \"x\"").unwrap();
        assert_eq!(w.message_bytes, 1024);
        assert_eq!(w.ack, Ack::Durable);
        assert_eq!(w.partitions_of_consumer(0), vec![0]);
        for bad in [
            "name = \"x\"\nmessage_bytes = 8",
            "name = \"x\"\npartitions_per_topic = 0",
            "name = \"x\"\nconsumers_per_topic = 2",
            "name = \"x\"\nkeys = \"zipf\"\nzipf_exponent = 0.0",
            "name = \"x\"\nunknown_field = 1",
            "name = \"x\"\nack = \"maybe\"",
            "name = \"x\"\nduration_s = 0",
            "name = \"x\"\npayload = \"xml\"",
            "name = \"x\"\npayload = \"json\"\nmessage_bytes = 200",
            "name = \"x\"\npartitions_per_topic = 4\nactive_partitions = 5",
            "name = \"x\"\npartitions_per_topic = 4\nactive_partitions = 2",
            "name = \"x\"\npartitions_per_topic = 4\nactive_partitions = 2\nkeys = \"uniform\"\nkey_count = 1",
            "name = \"x\"\npartitions_per_topic = 4\nactive_partitions = 1\nkeys = \"uniform\"\nconsumers_per_topic = 2",
        ] {
            assert!(Workload::parse(bad).is_err(), "{bad}");
        }
        let w = Workload::parse(
            "name = \"x\"\npartitions_per_topic = 5\nconsumers_per_topic = 2\nproducer_rate_msgs_per_s = 1000\nproducers_per_topic = 4",
        )
        .unwrap();
        assert_eq!(w.partitions_of_consumer(0), vec![0, 2, 4]);
        assert_eq!(w.partitions_of_consumer(1), vec![1, 3]);
        assert_eq!(w.rate_per_producer(), 250.0);
        assert_eq!(w.payload, PayloadKind::Random);
        assert_eq!(w.active_partition_list(), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn active_partitions_spread_over_the_topic() {
        let w = Workload::parse(
            "name = \"x\"\npartitions_per_topic = 10000\nactive_partitions = 100\nkeys = \"uniform\"\nconsumers_per_topic = 3",
        )
        .unwrap();
        let active = w.active_partition_list();
        assert_eq!(active.len(), 100);
        assert_eq!(&active[..3], &[0, 100, 200]);
        assert_eq!(*active.last().unwrap(), 9900);
        let read: Vec<u32> = (0..3).flat_map(|c| w.partitions_of_consumer(c)).collect();
        assert_eq!(read.len(), 100, "every active partition has one consumer");
        assert!(read.iter().all(|p| active.contains(p)));
        let odd = Workload::parse(
            "name = \"x\"\npartitions_per_topic = 7\nactive_partitions = 3\nkeys = \"zipf\"",
        )
        .unwrap();
        assert_eq!(odd.active_partition_list(), vec![0, 2, 4]);
    }
}
