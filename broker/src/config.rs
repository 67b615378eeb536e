//! Broker configuration: a TOML file, overridden by `BROKER_*` environment variables,
//! overridden by command-line flags. With no file at all the defaults run a broker: data in
//! `./data`, listening on 127.0.0.1, one shard per available core.
//!
//! ```toml
//! data_dir = "/var/lib/broker"
//! listen = "127.0.0.1:9400"      # public port, SO_REUSEPORT on every shard
//! shard_port_base = 9401          # shard i listens on base + i (0 = ephemeral)
//! shards = 2                      # 0 = one per available core
//! fetch_response_bytes_max = 67108864  # batch bytes in one fetch response, at least 16 MiB
//! kafka_listen = "127.0.0.1:9092" # the Kafka wire-protocol listener; "off" by default
//! [log]
//! segment_bytes_max = 1073741824
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::storage::{LogConfig, SEGMENT_BYTES_LIMIT, SEGMENT_BYTES_MIN};

/// Default public port (9092 stays free for a later Kafka-protocol listener).
pub const DEFAULT_PORT: u16 = 9400;

/// Default [`BrokerConfig::fetch_response_bytes_max`]: 64 MiB, room for four of the largest
/// batches (Kafka's `fetch.max.bytes` is 55 MiB).
pub const FETCH_RESPONSE_BYTES_MAX_DEFAULT: u32 = 64 << 20;
const _: () = assert!(FETCH_RESPONSE_BYTES_MAX_DEFAULT >= wire::constants::BATCH_BYTES_MAX);
const _: () = assert!(FETCH_RESPONSE_BYTES_MAX_DEFAULT <= wire::constants::FRAME_BODY_BYTES_LIMIT);

/// Default [`BrokerConfig::group_offsets_compact_bytes`]: 64 MiB. A group auto-committing
/// 16 partitions every 5 s writes ~25 MB a day; thousands of groups share 8 partitions.
pub const GROUP_OFFSETS_COMPACT_BYTES_DEFAULT: u64 = 64 << 20;

/// Default [`BrokerConfig::metrics_listen`]: loopback only, Redpanda's admin port.
pub const METRICS_LISTEN_DEFAULT: SocketAddr =
    SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9644));

/// Where the Prometheus endpoint listens: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum MetricsListen {
    /// No endpoint.
    Off,
    /// `GET /metrics` on this address (port 0: ephemeral, written to the ready file).
    On(SocketAddr),
}

impl std::str::FromStr for MetricsListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" | "" => Ok(MetricsListen::Off),
            addr => addr
                .parse()
                .map(MetricsListen::On)
                .map_err(|e| format!("{e}: expected HOST:PORT or \"off\"")),
        }
    }
}

impl TryFrom<String> for MetricsListen {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::fmt::Display for MetricsListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsListen::Off => f.write_str("off"),
            MetricsListen::On(addr) => write!(f, "{addr}"),
        }
    }
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (`tracing_subscriber::fmt`'s default format).
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?}: expected text or json")),
        }
    }
}

/// Longest `shard_journal_gather_us`: acks wait that much more at most.
pub const SHARD_JOURNAL_GATHER_US_MAX: u64 = 10_000;

/// Largest `shard_journal_writes_per_s_max` (a write every 100 ns).
pub const SHARD_JOURNAL_WRITES_PER_S_MAX_LIMIT: u64 = 10_000_000;

/// Everything the broker needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Where topics live: `<data_dir>/topics~/<topic>/<partition>/` (`layout.rs`).
    pub data_dir: PathBuf,
    /// The public address; every shard accepts on it (SO_REUSEPORT).
    pub listen: SocketAddr,
    /// Shard `i` listens on `shard_port_base + i` of the listen host; 0 = ephemeral ports.
    pub shard_port_base: u16,
    /// Number of shards (executors, one pinned per core); 0 = one per available core.
    pub shards: usize,
    /// At start, how long to wait for a fixed address still held by a listener (a killed
    /// broker's sockets linger 20–30 ms after it is reaped) before giving up.
    pub bind_wait_ms: u64,
    /// Largest request body accepted; checked before anything is allocated.
    pub frame_body_bytes_max: u32,
    /// Connections per shard beyond which new ones are refused. The open-files limit also
    /// bounds all shards' connections together (`descriptors.rs`).
    pub connections_per_shard_max: usize,
    /// Push subscriptions one connection may hold open (`RESOURCE_LIMIT` past it).
    pub subscriptions_per_connection_max: usize,
    /// Push subscriptions a shard serves, its clients' and relayed ones together.
    pub subscriptions_per_shard_max: usize,
    /// Close a connection idle (no request, no subscription) for this long; 0 = never.
    pub connection_idle_ms: u64,
    /// A frame that started arriving must be complete within this time (slowloris guard).
    pub frame_read_timeout_ms: u64,
    /// Requests one connection may have in flight (until their responses are written)
    /// before the broker stops reading from it.
    pub inflight_per_connection_max: usize,
    /// Bytes one connection may hold for its client: responses and pushes queued and not
    /// yet written, plus what outstanding requests' responses may take (a fetch's
    /// `max_bytes`). While it is full the broker reads no new request from the connection
    /// and no more log data for its subscriptions (one request always may run).
    pub connection_send_queue_bytes_max: usize,
    /// Bytes all of a shard's connections may hold together: request bodies being read,
    /// responses and pushes not yet written, reservations for outstanding responses. While
    /// it is full, connections pause (no reading, no log reads for subscriptions) until
    /// clients take what is theirs.
    pub memory_bytes_per_shard: usize,
    /// Close a connection when a frame written to it does not reach its socket in this long
    /// (the client stopped reading).
    pub connection_write_stall_ms: u64,
    /// Batch bytes one fetch response carries at most, whatever the request's `max_bytes`
    /// (Kafka's broker-side `fetch.max.bytes`). At least the largest batch a topic may hold
    /// (`wire::constants::BATCH_BYTES_MAX`, 16 MiB), so the one batch a consumer must get to
    /// move past a batch larger than its own `max_bytes` always fits (`api/fetch.rs`).
    pub fetch_response_bytes_max: u32,
    /// Bytes of recent batches each shard keeps for tailing readers.
    pub cache_bytes_per_shard: usize,
    /// glommio I/O memory per shard (registered with io_uring when the memlock limit allows).
    /// Write buffers come from it; when it is exhausted they come from the heap, which costs
    /// page faults on every write (2 MiB here cost 30 % of written throughput against
    /// 32 MiB), so keep it at many times `log.write_bytes_max`.
    pub io_memory_bytes: usize,
    /// Let the kernel back the broker's heap with transparent huge pages. Off by default: a
    /// shard that touches new heap memory would zero a whole 2 MiB page in one fault, a stall
    /// of milliseconds for every request on it (`huge_pages.rs`).
    pub transparent_huge_pages: bool,
    /// How often each shard applies retention.
    pub retention_check_ms: u64,
    /// Partitions the broker holds over all topics; creating more is refused with
    /// RESOURCE_LIMIT (each open partition holds file descriptors and memory).
    pub partitions_max: u32,
    /// Partitions of the internal committed-offsets topic (`__consumer_offsets`), set when
    /// the broker first creates it; groups are spread over them (and so over the shards).
    pub group_offsets_partitions: u32,
    /// Compact an offsets partition (snapshot its committed offsets, delete the records
    /// before the snapshot: `group/mod.rs`) once its log grew by this many bytes since the
    /// last compaction, or by the last snapshot's size if that is larger; 0 = never. Also
    /// the segment size of the offsets topic when the broker first creates it, so whole
    /// segments fall behind each snapshot (at least 4 KiB).
    pub group_offsets_compact_bytes: u64,
    /// Storage descriptor budget (`descriptors.rs` `StorageFiles`): partitions' active
    /// segments and their optional files (index files, O_DSYNC handles, sealed segments
    /// open for reads). 0 = what the open-files limit leaves after connections; otherwise at
    /// most this. Partitions get three quarters of it at most.
    pub storage_files_max: u64,
    /// Consumer-group members one shard's coordinators hold at once; a join past it is
    /// refused with RESOURCE_LIMIT (members time out after their session).
    pub group_members_per_shard_max: usize,
    /// About how many bytes the members of one shard's groups may hold (topic lists, owned
    /// and granted partitions, ids: a member may keep megabytes); a join past it is refused
    /// with RESOURCE_LIMIT.
    pub group_member_bytes_per_shard_max: usize,
    /// Bytes the Kafka listener's groups keep for their members, over the process: each
    /// member's protocol metadata (up to 1 MiB), its assignment (up to 1 MiB) and ids. A
    /// join or a leader's assignment past it is refused (GROUP_MAX_SIZE_REACHED /
    /// INVALID_REQUEST) once silent members are dropped.
    pub kafka_group_bytes_max: usize,
    /// Committed offsets (group × topic × partition) one shard's coordinators hold; a
    /// commit of a new one past it is refused with RESOURCE_LIMIT.
    pub group_offsets_per_shard_max: usize,
    /// Bytes those committed offsets keep on one shard (ids, topic names, metadata of up to
    /// 4 KiB each, `group::offset_entry_bytes`), applied and in flight; a commit of a new key,
    /// or one growing a key's metadata, past it is refused with RESOURCE_LIMIT. A compaction
    /// of the offsets log holds a second copy of one offsets partition's share while it runs.
    pub group_offset_bytes_per_shard_max: usize,
    /// A group's committed offsets are forgotten once it has had no members and no commit
    /// for this long (Kafka's `offsets.retention.minutes`, 7 days; 0 = never). Offsets of
    /// deleted topics are forgotten whatever this says (`api/offsets_expiry.rs`).
    pub group_offsets_retention_ms: u64,
    /// Transactional ids the broker remembers (each is part of the topic metadata); a new
    /// one past it is refused with RESOURCE_LIMIT.
    pub transactional_ids_max: usize,
    /// A transactional id whose producer has not initialized (InitProducerId) for this long
    /// may be forgotten to make room for a new one when `transactional_ids_max` is reached
    /// (Kafka's `transactional.id.expiration.ms`, 7 days). Only then: below the limit no id
    /// is forgotten, so a long-lived producer stays fenced against its zombies.
    pub transactional_id_expiration_ms: u64,
    /// An idempotent producer with no batch in a partition for this long is forgotten
    /// there (a retry after that may be stored twice); it also bounds how far back a
    /// partition's producer state is rebuilt from the log when it opens.
    pub producer_state_idle_ms: u64,
    /// Idempotent producers a shard's partitions remember together; a new one past it evicts
    /// its partition's least recently appended (`producer_state.rs`).
    pub producer_states_per_shard_max: usize,
    /// How often each shard snapshots the derived state (idempotent producers, key index) of
    /// the partitions that changed since, so opening a partition after a crash reads only
    /// the log written after the snapshot.
    pub state_snapshot_interval_ms: u64,
    /// Bytes the projection tables of one shard may hold for their keys (each key's bytes
    /// plus about 48). A table that would pass it stops following its log and answers reads
    /// with RESOURCE_LIMIT.
    pub table_keys_bytes_per_shard: usize,
    /// The Prometheus endpoint (`GET /metrics`), served by shard 0: `"HOST:PORT"` or
    /// `"off"`. Loopback by default; an address that cannot be bound is logged and the broker
    /// runs without it.
    pub metrics_listen: MetricsListen,
    /// The Kafka wire-protocol listener (`kafka/`): `"HOST:PORT"` (every shard accepts there,
    /// SO_REUSEPORT) or `"off"` (the default). Kafka's usual port is 9092.
    pub kafka_listen: MetricsListen,
    /// Partitions (over all shards) up to which the endpoint reports series per partition;
    /// past it they are summed per topic, so a scrape stays bounded however many partitions
    /// exist. Also bounds consumer-group lag series (past it: per group).
    pub metrics_partitions_max: usize,
    /// Report per-partition series at all (false: always per topic).
    pub metrics_per_partition: bool,
    /// `text` or `json` log lines on stderr. Levels per module come from `RUST_LOG`
    /// (e.g. `RUST_LOG=info,broker::storage=debug`).
    pub log_format: LogFormat,
    /// One journal per shard (`storage/journal/`): a commit cycle makes the durable appends
    /// of all the shard's partitions durable with one O_DSYNC write, and segments are
    /// synced lazily (issue 19). On by default since 2026-12-05 (`BROKER_SHARD_JOURNAL`;
    /// `perf/results/2026-12-05-journal-on-by-default`: +30 % max-rate throughput, many-partition
    /// tails several times lower, more CPU per GB at partitions-100). Off: each partition
    /// makes its own appends durable (O_DSYNC writes or fdatasyncs). Journal files of an
    /// earlier run are replayed at start whether or not it is on.
    pub shard_journal: bool,
    /// Size of each shard journal file (`BROKER_SHARD_JOURNAL_FILE_BYTES`); a full file is
    /// checkpointed (its partitions sync their segments), then kept as a spare or removed.
    pub shard_journal_file_bytes: u64,
    /// Make new shard journal files from checkpointed ones (renamed, first block zeroed)
    /// rather than from zeros (`BROKER_SHARD_JOURNAL_RECYCLE`, default true; like
    /// PostgreSQL's `wal_recycle`, off may suit copy-on-write filesystems).
    pub shard_journal_recycle: bool,
    /// Under load, how long a shard journal's commit cycle waits for more appends before
    /// it writes (`BROKER_SHARD_JOURNAL_GATHER_US`; default 300, 0: at once, at most
    /// 10,000). Under load: the last record held at least 4 entries and the oldest queued
    /// append arrived less than this after its write started; otherwise it writes at once.
    /// At partitions-100, 300 µs took the broker from 0.68 to 0.49 of a core, e2e p50 0.65
    /// → 1.1 ms, p99 not worse; at 1,000 and 10,000 msg/s over 16 partitions no change
    /// (`perf/results/2026-12-05-journal-gather-load`).
    pub shard_journal_gather_us: u64,
    /// A shard journal checkpoint of at least
    /// `shard_journal_checkpoint_syncfs_partitions_min` partitions syncs their segments with one
    /// syncfs of the data filesystem instead of one fdatasync each
    /// (`BROKER_SHARD_JOURNAL_CHECKPOINT_SYNCFS`, default true; used on Linux >= 5.17, whose
    /// syncfs reports a failed flush; smaller checkpoints fdatasync, which costs the journal
    /// less there). The syncfs also flushes other programs' dirty data on that filesystem,
    /// and a writeback error of any file there fences the shard's partitions until restart:
    /// give the data directory a filesystem of its own, or turn this off
    /// (`perf/results/2026-12-05-checkpoint-syncfs`).
    pub shard_journal_checkpoint_syncfs: bool,
    /// Partitions a checkpoint must have to sync the filesystem
    /// (`BROKER_SHARD_JOURNAL_CHECKPOINT_SYNCFS_PARTITIONS_MIN`, default 256).
    pub shard_journal_checkpoint_syncfs_partitions_min: usize,
    /// Segment writes of a shard's journaled partitions in flight at once
    /// (`BROKER_SHARD_JOURNAL_SEGMENT_WRITES_MAX`, default 64, at least 1): a checkpoint
    /// makes every partition write at once, and at partitions-1000 that burst of ~1,000
    /// writes held up the journal's own writes (e2e p99 31–67 ms unlimited, 14–18 ms at 64;
    /// `perf/results/2026-12-05-segment-write-limit`).
    pub shard_journal_segment_writes_max: usize,
    /// Journal records written at once per shard (`BROKER_SHARD_JOURNAL_WRITES_IN_FLIGHT_MAX`,
    /// default 2, at least 1): appends that arrive while a record is written go out at once
    /// in the next, acked in order, instead of waiting for the write in flight.
    pub shard_journal_writes_in_flight_max: usize,
    /// Journal records started per second per shard at most, on average
    /// (`BROKER_SHARD_JOURNAL_WRITES_PER_S_MAX`, default 0: no limit; at most 10,000,000).
    /// Each record is one O_DSYNC write (a write and a device flush); under load a cycle over
    /// the rate waits and its record takes what arrived meanwhile, below it (bursts of 10 ms
    /// worth included) nothing waits. Set it under the device's own limit of operations a
    /// second (a provisioned-IOPS volume's, counting a write and a flush per record): at
    /// 100 MB/s, 1,000 took 25 % less CPU per GB and made acks ~0.8 ms later at the median
    /// (`perf/results/2026-12-07-journal-pace`).
    pub shard_journal_writes_per_s_max: u64,
    /// Partition log settings, the `[log]` table (topic configs override segment size and
    /// retention).
    pub log: LogConfig,
    /// The HTTP gateway, the `[http]` table ([`HttpConfig`]); off unless `http.listen` is set.
    pub http: HttpConfig,
    /// Authentication and ACLs, the `[auth]` table (`auth/config.rs`; `--auth`, `BROKER_AUTH`).
    pub auth: crate::auth::AuthConfig,
    /// TLS on every listener, the `[tls]` table (`crate::tls::TlsConfig`); off unless
    /// `tls.cert` and `tls.key` are set.
    pub tls: crate::tls::TlsConfig,
    /// Start even when a listener is reachable from other hosts without TLS and
    /// authentication (`crate::exposure`); loopback-only brokers never need it.
    pub insecure: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            data_dir: PathBuf::from("./data"),
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            shard_port_base: DEFAULT_PORT + 1,
            shards: 0,
            bind_wait_ms: 5_000,
            frame_body_bytes_max: wire::constants::FRAME_BODY_BYTES_MAX_DEFAULT,
            connections_per_shard_max: 20_000,
            subscriptions_per_connection_max: 10_000,
            subscriptions_per_shard_max: 100_000,
            connection_idle_ms: 600_000,
            frame_read_timeout_ms: 30_000,
            inflight_per_connection_max: 256,
            connection_send_queue_bytes_max: 16 << 20,
            memory_bytes_per_shard: 512 << 20,
            connection_write_stall_ms: 30_000,
            fetch_response_bytes_max: FETCH_RESPONSE_BYTES_MAX_DEFAULT,
            cache_bytes_per_shard: 256 << 20,
            io_memory_bytes: 32 << 20,
            transparent_huge_pages: false,
            retention_check_ms: 30_000,
            partitions_max: 100_000,
            group_offsets_partitions: 8,
            group_offsets_compact_bytes: GROUP_OFFSETS_COMPACT_BYTES_DEFAULT,
            storage_files_max: 0,
            producer_state_idle_ms: 3_600_000,
            producer_states_per_shard_max: 100_000,
            state_snapshot_interval_ms: 60_000,
            table_keys_bytes_per_shard: 1 << 30,
            group_members_per_shard_max: 100_000,
            group_member_bytes_per_shard_max: 256 << 20,
            kafka_group_bytes_max: 256 << 20,
            group_offsets_per_shard_max: 1_000_000,
            group_offset_bytes_per_shard_max: 256 << 20,
            group_offsets_retention_ms: 7 * 24 * 3_600_000,
            transactional_ids_max: 10_000,
            transactional_id_expiration_ms: 604_800_000,
            metrics_listen: MetricsListen::On(METRICS_LISTEN_DEFAULT),
            kafka_listen: MetricsListen::Off,
            metrics_partitions_max: 1_000,
            metrics_per_partition: true,
            log_format: LogFormat::Text,
            shard_journal: true,
            shard_journal_file_bytes: 64 << 20,
            shard_journal_recycle: true,
            shard_journal_gather_us: 300,
            shard_journal_checkpoint_syncfs: true,
            shard_journal_checkpoint_syncfs_partitions_min:
                crate::storage::journal::CHECKPOINT_SYNCFS_MEMBERS_MIN,
            shard_journal_segment_writes_max: crate::storage::journal::SEGMENT_WRITES_MAX,
            shard_journal_writes_in_flight_max: crate::storage::journal::WRITES_IN_FLIGHT_MAX,
            shard_journal_writes_per_s_max: crate::storage::journal::WRITES_PER_S_MAX,
            log: LogConfig::default(),
            http: HttpConfig::default(),
            auth: crate::auth::AuthConfig::default(),
            tls: crate::tls::TlsConfig::default(),
            insecure: false,
        }
    }
}

mod http;
pub use http::HttpConfig;

/// A configuration problem, said plainly.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml said.
        message: String,
    },
    /// An environment variable has a bad value.
    #[error("invalid value {value:?} for {name}: {message}")]
    Env {
        /// Variable name.
        name: String,
        /// Its value.
        value: String,
        /// Why.
        message: String,
    },
    /// A value out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl BrokerConfig {
    /// Reads `file` (if given) over the defaults, then applies `BROKER_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?
            }
            None => BrokerConfig::default(),
        };
        for (name, value) in env {
            config.apply_env(&name, &value)?;
        }
        Ok(config)
    }

    fn apply_env(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse().map_err(|e: T::Err| ConfigError::Env {
                name: name.into(),
                value: value.into(),
                message: e.to_string(),
            })
        }
        match name {
            "BROKER_DATA_DIR" => self.data_dir = PathBuf::from(value),
            "BROKER_LISTEN" => self.listen = parse(name, value)?,
            "BROKER_SHARD_PORT_BASE" => self.shard_port_base = parse(name, value)?,
            "BROKER_SHARDS" => self.shards = parse(name, value)?,
            "BROKER_BIND_WAIT_MS" => self.bind_wait_ms = parse(name, value)?,
            "BROKER_FRAME_BODY_BYTES_MAX" => self.frame_body_bytes_max = parse(name, value)?,
            "BROKER_CONNECTIONS_PER_SHARD_MAX" => {
                self.connections_per_shard_max = parse(name, value)?
            }
            "BROKER_SUBSCRIPTIONS_PER_CONNECTION_MAX" => {
                self.subscriptions_per_connection_max = parse(name, value)?
            }
            "BROKER_SUBSCRIPTIONS_PER_SHARD_MAX" => {
                self.subscriptions_per_shard_max = parse(name, value)?
            }
            "BROKER_CONNECTION_IDLE_MS" => self.connection_idle_ms = parse(name, value)?,
            "BROKER_FRAME_READ_TIMEOUT_MS" => self.frame_read_timeout_ms = parse(name, value)?,
            "BROKER_INFLIGHT_PER_CONNECTION_MAX" => {
                self.inflight_per_connection_max = parse(name, value)?
            }
            "BROKER_CONNECTION_SEND_QUEUE_BYTES_MAX" => {
                self.connection_send_queue_bytes_max = parse(name, value)?
            }
            "BROKER_MEMORY_BYTES_PER_SHARD" => self.memory_bytes_per_shard = parse(name, value)?,
            "BROKER_CONNECTION_WRITE_STALL_MS" => {
                self.connection_write_stall_ms = parse(name, value)?
            }
            "BROKER_FETCH_RESPONSE_BYTES_MAX" => {
                self.fetch_response_bytes_max = parse(name, value)?
            }
            "BROKER_CACHE_BYTES_PER_SHARD" => self.cache_bytes_per_shard = parse(name, value)?,
            "BROKER_IO_MEMORY_BYTES" => self.io_memory_bytes = parse(name, value)?,
            "BROKER_TRANSPARENT_HUGE_PAGES" => self.transparent_huge_pages = parse(name, value)?,
            "BROKER_RETENTION_CHECK_MS" => self.retention_check_ms = parse(name, value)?,
            "BROKER_PARTITIONS_MAX" => self.partitions_max = parse(name, value)?,
            "BROKER_PRODUCER_STATE_IDLE_MS" => self.producer_state_idle_ms = parse(name, value)?,
            "BROKER_PRODUCER_STATES_PER_SHARD_MAX" => {
                self.producer_states_per_shard_max = parse(name, value)?
            }
            "BROKER_STATE_SNAPSHOT_INTERVAL_MS" => {
                self.state_snapshot_interval_ms = parse(name, value)?
            }
            "BROKER_TABLE_KEYS_BYTES_PER_SHARD" => {
                self.table_keys_bytes_per_shard = parse(name, value)?
            }
            "BROKER_GROUP_MEMBERS_PER_SHARD_MAX" => {
                self.group_members_per_shard_max = parse(name, value)?
            }
            "BROKER_KAFKA_GROUP_BYTES_MAX" => self.kafka_group_bytes_max = parse(name, value)?,
            "BROKER_GROUP_MEMBER_BYTES_PER_SHARD_MAX" => {
                self.group_member_bytes_per_shard_max = parse(name, value)?
            }
            "BROKER_GROUP_OFFSETS_PER_SHARD_MAX" => {
                self.group_offsets_per_shard_max = parse(name, value)?
            }
            "BROKER_GROUP_OFFSET_BYTES_PER_SHARD_MAX" => {
                self.group_offset_bytes_per_shard_max = parse(name, value)?
            }
            "BROKER_GROUP_OFFSETS_RETENTION_MS" => {
                self.group_offsets_retention_ms = parse(name, value)?
            }
            "BROKER_TRANSACTIONAL_IDS_MAX" => self.transactional_ids_max = parse(name, value)?,
            "BROKER_TRANSACTIONAL_ID_EXPIRATION_MS" => {
                self.transactional_id_expiration_ms = parse(name, value)?
            }
            "BROKER_GROUP_OFFSETS_PARTITIONS" => {
                self.group_offsets_partitions = parse(name, value)?
            }
            "BROKER_GROUP_OFFSETS_COMPACT_BYTES" => {
                self.group_offsets_compact_bytes = parse(name, value)?
            }
            "BROKER_STORAGE_FILES_MAX" => self.storage_files_max = parse(name, value)?,
            "BROKER_METRICS_LISTEN" => self.metrics_listen = parse(name, value)?,
            "BROKER_KAFKA_LISTEN" => self.kafka_listen = parse(name, value)?,
            "BROKER_METRICS_PARTITIONS_MAX" => self.metrics_partitions_max = parse(name, value)?,
            "BROKER_METRICS_PER_PARTITION" => self.metrics_per_partition = parse(name, value)?,
            "BROKER_LOG_FORMAT" => self.log_format = parse(name, value)?,
            "BROKER_SHARD_JOURNAL" => self.shard_journal = parse(name, value)?,
            "BROKER_SHARD_JOURNAL_FILE_BYTES" => {
                self.shard_journal_file_bytes = parse(name, value)?
            }
            "BROKER_SHARD_JOURNAL_RECYCLE" => self.shard_journal_recycle = parse(name, value)?,
            "BROKER_SHARD_JOURNAL_GATHER_US" => self.shard_journal_gather_us = parse(name, value)?,
            "BROKER_SHARD_JOURNAL_CHECKPOINT_SYNCFS" => {
                self.shard_journal_checkpoint_syncfs = parse(name, value)?
            }
            "BROKER_SHARD_JOURNAL_CHECKPOINT_SYNCFS_PARTITIONS_MIN" => {
                self.shard_journal_checkpoint_syncfs_partitions_min = parse(name, value)?
            }
            "BROKER_SHARD_JOURNAL_SEGMENT_WRITES_MAX" => {
                self.shard_journal_segment_writes_max = parse(name, value)?
            }
            "BROKER_SHARD_JOURNAL_WRITES_IN_FLIGHT_MAX" => {
                self.shard_journal_writes_in_flight_max = parse(name, value)?
            }
            "BROKER_SHARD_JOURNAL_WRITES_PER_S_MAX" => {
                self.shard_journal_writes_per_s_max = parse(name, value)?
            }
            "BROKER_SEGMENT_BYTES_MAX" => self.log.segment_bytes_max = parse(name, value)?,
            "BROKER_GROUP_COMMIT_DELAY_US" => self.log.group_commit_delay_us = parse(name, value)?,
            "BROKER_ZERO_AHEAD_BYTES" => self.log.zero_ahead_bytes = parse(name, value)?,
            "BROKER_DSYNC_WRITES" => self.log.dsync_writes = parse(name, value)?,
            "BROKER_CLEANER_BYTES_PER_S" => self.log.cleaner_bytes_per_s = parse(name, value)?,
            "BROKER_CLEANER_DIRTY_PERCENT_MIN" => {
                self.log.cleaner_dirty_percent_min = parse(name, value)?
            }
            "BROKER_HTTP" => self.http.listen = parse(name, value)?,
            "BROKER_AUTH" => self.auth.mode = parse(name, value)?,
            "BROKER_HTTP_BODY_BYTES_MAX" => self.http.body_bytes_max = parse(name, value)?,
            "BROKER_HTTP_READ_TIMEOUT_MS" => self.http.read_timeout_ms = parse(name, value)?,
            "BROKER_HTTP_WRITE_STALL_MS" => self.http.write_stall_ms = parse(name, value)?,
            "BROKER_HTTP_MEMORY_WAIT_MS" => self.http.memory_wait_ms = parse(name, value)?,
            "BROKER_HTTP_PRODUCE_RECORDS_MAX" => {
                self.http.produce_records_max = parse(name, value)?
            }
            "BROKER_HTTP_STREAM_BUFFER_BYTES_MAX" => {
                self.http.stream_buffer_bytes_max = parse(name, value)?
            }
            "BROKER_TLS_CERT" => self.tls.cert = Some(PathBuf::from(value)),
            "BROKER_TLS_KEY" => self.tls.key = Some(PathBuf::from(value)),
            "BROKER_TLS_CLIENT_CA" => self.tls.client_ca = Some(PathBuf::from(value)),
            "BROKER_TLS_HANDSHAKE_TIMEOUT_MS" => {
                self.tls.handshake_timeout_ms = parse(name, value)?
            }
            "BROKER_INSECURE" => self.insecure = parse(name, value)?,
            _ => {} // other BROKER_* names (e.g. BROKER_ADDR for clients) are not ours
        }
        Ok(())
    }

    /// The number of shards to run: the configured count, or the available cores.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// Segment size of the offsets topic when the broker creates it: the compaction
    /// threshold, within what a segment may be (the broker default when compaction is off).
    pub fn group_offsets_segment_bytes(&self) -> u64 {
        match self.group_offsets_compact_bytes {
            0 => self.log.segment_bytes_max,
            bytes => bytes.clamp(SEGMENT_BYTES_MIN, SEGMENT_BYTES_LIMIT),
        }
    }

    /// The client listeners that are on: (name, address) for the secure-by-default rule
    /// (`crate::exposure`). Shard ports share the public address's IP.
    pub fn client_listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut listeners = vec![("native", self.listen)];
        if let MetricsListen::On(addr) = self.http.listen {
            listeners.push(("http", addr));
        }
        if let MetricsListen::On(addr) = self.kafka_listen {
            listeners.push(("kafka", addr));
        }
        listeners
    }

    /// Checks relations between values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.frame_body_bytes_max
            < wire::constants::BATCH_BYTES_MAX.min(self.log.batch_bytes_max as u32)
        {
            return bad(format!(
                "frame_body_bytes_max {} is below the batch maximum",
                self.frame_body_bytes_max
            ));
        }
        if !(crate::storage::journal::FILE_BYTES_MIN..=crate::storage::journal::FILE_BYTES_MAX)
            .contains(&self.shard_journal_file_bytes)
        {
            return bad(format!(
                "shard_journal_file_bytes {} is outside {}..={} bytes",
                self.shard_journal_file_bytes,
                crate::storage::journal::FILE_BYTES_MIN,
                crate::storage::journal::FILE_BYTES_MAX
            ));
        }
        if self.shard_journal_gather_us > SHARD_JOURNAL_GATHER_US_MAX {
            return bad(format!(
                "shard_journal_gather_us {} exceeds {SHARD_JOURNAL_GATHER_US_MAX}",
                self.shard_journal_gather_us
            ));
        }
        if self.producer_states_per_shard_max == 0 {
            return bad("producer_states_per_shard_max must be at least 1".into());
        }
        if self.shard_journal_segment_writes_max == 0 {
            return bad("shard_journal_segment_writes_max must be at least 1".into());
        }
        if self.shard_journal_writes_in_flight_max == 0 {
            return bad("shard_journal_writes_in_flight_max must be at least 1".into());
        }
        if self.shard_journal_writes_per_s_max > SHARD_JOURNAL_WRITES_PER_S_MAX_LIMIT {
            return bad(format!(
                "shard_journal_writes_per_s_max {} exceeds {SHARD_JOURNAL_WRITES_PER_S_MAX_LIMIT}",
                self.shard_journal_writes_per_s_max
            ));
        }
        if self.frame_body_bytes_max > wire::constants::FRAME_BODY_BYTES_LIMIT {
            return bad(format!(
                "frame_body_bytes_max {} exceeds the format limit",
                self.frame_body_bytes_max
            ));
        }
        if self.fetch_response_bytes_max < wire::constants::BATCH_BYTES_MAX {
            // Topics may raise their batch maximum up to the format's, whatever `[log]` says.
            return bad(format!(
                "fetch_response_bytes_max {} is below the largest batch a topic may hold ({} \
                 bytes): a consumer behind such a batch could never fetch past it",
                self.fetch_response_bytes_max,
                wire::constants::BATCH_BYTES_MAX
            ));
        }
        if self.fetch_response_bytes_max > wire::constants::FRAME_BODY_BYTES_LIMIT {
            return bad(format!(
                "fetch_response_bytes_max {} exceeds the frame format's limit {}",
                self.fetch_response_bytes_max,
                wire::constants::FRAME_BODY_BYTES_LIMIT
            ));
        }
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_LIMIT).contains(&self.log.segment_bytes_max) {
            return bad(format!(
                "log.segment_bytes_max {} is outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_LIMIT}",
                self.log.segment_bytes_max
            ));
        }
        if self.log.batch_bytes_max > wire::constants::BATCH_BYTES_MAX as usize {
            return bad("log.batch_bytes_max exceeds the format's 16 MiB".into());
        }
        if !(1..=crate::metadata::TOPIC_PARTITIONS_MAX).contains(&self.group_offsets_partitions) {
            return bad(format!(
                "group_offsets_partitions {} is outside 1..={}",
                self.group_offsets_partitions,
                crate::metadata::TOPIC_PARTITIONS_MAX
            ));
        }
        if self.inflight_per_connection_max == 0
            || self.connections_per_shard_max == 0
            || self.subscriptions_per_connection_max == 0
            || self.subscriptions_per_shard_max == 0
            || self.connection_send_queue_bytes_max == 0
            || self.memory_bytes_per_shard == 0
        {
            return bad("connection limits must be positive".into());
        }
        self.http.validate(self.frame_body_bytes_max).map_err(ConfigError::Invalid)?;
        self.auth.validate().map_err(ConfigError::Invalid)?;
        self.tls.validate().map_err(ConfigError::Invalid)?;
        if self.shard_port_base != 0
            && usize::from(self.shard_port_base) + self.shard_count() > 65536
        {
            return bad("shard ports run past 65535".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
