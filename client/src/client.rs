//! The shard-aware client: one bootstrap address, a metadata cache, one connection per shard.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use wire::*;

use crate::connection::Connection;
use crate::error::ClientError;
use crate::tls::ClientTls;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Retries of a request that failed with a retriable error.
    pub retries: u32,
    /// First backoff between retries (doubles each time).
    pub retry_backoff: Duration,
    /// Name reported in the handshake.
    pub client_id: String,
    /// Authenticate every connection as this user (`auth.rs`); `None`: anonymous.
    pub credentials: Option<crate::auth::Credentials>,
    /// CA certificates (PEM) that sign the broker's certificate: when set, every connection
    /// is TLS (`tls.rs`).
    pub tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for brokers that require one (mTLS), with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// The name the broker's certificate must carry; default: the bootstrap address's host.
    pub tls_server_name: Option<String>,
    /// Metadata older than this is reloaded in the background the next time it is read, so
    /// topics created or grown elsewhere are seen (Kafka's `metadata.max.age.ms`, 5 minutes;
    /// zero: only after routing errors and topic changes made here).
    pub metadata_max_age: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            request_timeout: Duration::from_secs(30),
            retries: 10,
            retry_backoff: Duration::from_millis(100),
            client_id: "rust-client".into(),
            credentials: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_server_name: None,
            metadata_max_age: Duration::from_secs(300),
        }
    }
}

impl ClientConfig {
    /// The TLS connector these settings ask for (`None` without `tls_ca`), checking the
    /// broker's certificate against `tls_server_name` or the host of `bootstrap`.
    pub fn tls(&self, bootstrap: &str) -> Result<Option<ClientTls>, ClientError> {
        let Some(ca) = &self.tls_ca else {
            if self.tls_cert.is_some() || self.tls_key.is_some() {
                return Err(ClientError::Tls("a client certificate needs tls_ca too".into()));
            }
            return Ok(None);
        };
        let client_cert = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            _ => return Err(ClientError::Tls("tls_cert and tls_key go together".into())),
        };
        let name =
            self.tls_server_name.as_deref().unwrap_or_else(|| crate::tls::host_of(bootstrap));
        ClientTls::new(ca, client_cert, name).map(Some)
    }
}

/// See the module docs. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bootstrap: SocketAddr,
    broker_version: String,
    config: ClientConfig,
    tls: Option<ClientTls>,
    conns: Mutex<HashMap<SocketAddr, Arc<Connection>>>,
    /// One connect at a time per address: callers racing to an address with no open
    /// connection join the first one's instead of each opening (and replacing) their own.
    connecting: Connecting,
    metadata: RwLock<Arc<MetadataResponse>>,
    /// When `metadata` was loaded, and whether a reload for its age is under way.
    metadata_loaded: Mutex<std::time::Instant>,
    metadata_reloading: std::sync::atomic::AtomicBool,
    /// The largest request body the broker reads (its handshake's `frame_body_bytes_max`).
    frame_body_bytes_max: u32,
}

/// Connects in progress, one per address (see `Client::conn_to`).
#[derive(Default)]
struct Connecting(Mutex<HashMap<SocketAddr, Shared<BoxFuture<'static, ConnectResult>>>>);

type ConnectResult = Result<Arc<Connection>, ClientError>;

impl std::fmt::Debug for Connecting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connecting").finish_non_exhaustive()
    }
}

async fn connect_and_authenticate(inner: &Inner, addr: SocketAddr) -> ConnectResult {
    let c = Connection::connect(addr, inner.config.request_timeout, inner.tls.as_ref()).await?;
    if let Some(creds) = &inner.config.credentials {
        crate::auth::authenticate(&c, creds).await?;
    }
    Ok(c)
}

/// Resolves `HOST:PORT`.
pub fn resolve(addr: &str) -> Result<SocketAddr, ClientError> {
    let fallback: SocketAddr = "127.0.0.1:0".parse().expect("valid");
    addr.to_socket_addrs()
        .map_err(|e| ClientError::Connect {
            addr: fallback,
            message: format!("cannot resolve {addr:?}: {e}"),
        })?
        .next()
        .ok_or_else(|| ClientError::Connect {
            addr: fallback,
            message: format!("{addr:?} resolves to nothing"),
        })
}

impl Client {
    /// Connects to the bootstrap address, agrees on a version and loads metadata.
    pub async fn connect(bootstrap: &str) -> Result<Client, ClientError> {
        Self::connect_with(bootstrap, ClientConfig::default()).await
    }

    /// [`Client::connect`] with settings.
    pub async fn connect_with(
        bootstrap: &str,
        config: ClientConfig,
    ) -> Result<Client, ClientError> {
        let tls = config.tls(bootstrap)?;
        let bootstrap = resolve(bootstrap)?;
        let conn = Connection::connect(bootstrap, config.request_timeout, tls.as_ref()).await?;
        let hs: HandshakeResponse = conn
            .request(&HandshakeRequest {
                client_id: config.client_id.clone(),
                client_version: env!("CARGO_PKG_VERSION").into(),
                protocol_version_min: wire::constants::PROTOCOL_VERSION_MIN,
                protocol_version_max: wire::constants::PROTOCOL_VERSION,
            })
            .await
            .map_err(|e| match e {
                // A TLS port closes a plaintext client at its first bytes.
                ClientError::Closed { addr } if tls.is_none() => ClientError::Connect {
                    addr,
                    message: "the broker closed the connection before answering the handshake: \
                              it may require TLS (set tls_ca / --tls-ca) or a client certificate"
                        .into(),
                },
                e => e,
            })?;
        if hs.error != 0 {
            return Err(ClientError::Broker {
                code: ErrorCode::from_u16(hs.error).unwrap_or(ErrorCode::UnsupportedVersion),
                message: "no common protocol version".into(),
                addr: bootstrap,
            });
        }
        if let Some(creds) = &config.credentials {
            crate::auth::authenticate(&conn, creds).await?;
        }
        let metadata: MetadataResponse = conn.request(&MetadataRequest { topics: vec![] }).await?;
        let mut conns = HashMap::new();
        conns.insert(bootstrap, conn);
        Ok(Client {
            inner: Arc::new(Inner {
                bootstrap,
                broker_version: hs.broker_version,
                config,
                tls,
                conns: Mutex::new(conns),
                connecting: Connecting::default(),
                metadata: RwLock::new(Arc::new(metadata)),
                metadata_loaded: Mutex::new(std::time::Instant::now()),
                metadata_reloading: Default::default(),
                frame_body_bytes_max: match hs.frame_body_bytes_max {
                    0 => wire::constants::FRAME_BODY_BYTES_MAX_DEFAULT,
                    n => n,
                },
            }),
        })
    }

    /// The largest request body the broker reads (a bigger frame closes the connection).
    pub fn frame_body_bytes_max(&self) -> u32 {
        self.inner.frame_body_bytes_max
    }

    /// The software version the bootstrap broker reported in the handshake.
    pub fn broker_version(&self) -> &str {
        &self.inner.broker_version
    }

    /// Settings.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The cached metadata (once older than `metadata_max_age`, a reload starts in the
    /// background: this answer is still the old one).
    pub fn metadata(&self) -> Arc<MetadataResponse> {
        let md = self.inner.metadata.read().expect("metadata lock").clone();
        let max_age = self.inner.config.metadata_max_age;
        if max_age.is_zero() {
            return md;
        }
        let loaded = *self.inner.metadata_loaded.lock().expect("metadata time lock");
        let reloading = &self.inner.metadata_reloading;
        use std::sync::atomic::Ordering::{AcqRel, Release};
        if loaded.elapsed() > max_age && !reloading.swap(true, AcqRel) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    // Cleared however the task ends, even unpolled (its runtime may drop it).
                    struct Done(Client);
                    impl Drop for Done {
                        fn drop(&mut self) {
                            self.0.inner.metadata_reloading.store(false, Release);
                        }
                    }
                    let done = Done(self.clone());
                    runtime.spawn(async move {
                        done.0.reload_metadata_older_than(loaded).await;
                    });
                }
                Err(_) => reloading.store(false, Release),
            }
        }
        md
    }

    /// Every topic's metadata, from the bootstrap address.
    async fn fetch_metadata(&self) -> Result<MetadataResponse, ClientError> {
        let conn = self.conn_to(self.inner.bootstrap).await?;
        conn.request(&MetadataRequest { topics: vec![] }).await
    }

    /// The background reload of metadata loaded at `loaded`: installed only if nothing
    /// newer was loaded meanwhile (a refresh after a topic change made here); after a failure
    /// the next try waits a second, not a whole `metadata_max_age`, nor none.
    async fn reload_metadata_older_than(&self, loaded: std::time::Instant) {
        let fetched = self.fetch_metadata().await;
        let mut at = self.inner.metadata_loaded.lock().expect("metadata time lock");
        if *at != loaded {
            return; // newer metadata came meanwhile
        }
        match fetched {
            Ok(md) => {
                *self.inner.metadata.write().expect("metadata lock") = Arc::new(md);
                *at = std::time::Instant::now();
            }
            Err(_) => {
                let retry = std::time::Instant::now() + Duration::from_secs(1);
                *at = retry.checked_sub(self.inner.config.metadata_max_age).unwrap_or(*at);
            }
        }
    }

    /// Reloads metadata (after a routing error or a topic change).
    pub async fn refresh_metadata(&self) -> Result<Arc<MetadataResponse>, ClientError> {
        let md = Arc::new(self.fetch_metadata().await?);
        // The time first, held while the metadata is written (the background reload's order):
        // a reload that read the time before cannot install an older answer after this one.
        let mut loaded = self.inner.metadata_loaded.lock().expect("metadata time lock");
        *self.inner.metadata.write().expect("metadata lock") = md.clone();
        *loaded = std::time::Instant::now();
        Ok(md)
    }

    /// The connection to the bootstrap address (any shard: the broker forwards).
    pub(crate) async fn bootstrap_conn(&self) -> Result<Arc<Connection>, ClientError> {
        self.conn_to(self.inner.bootstrap).await
    }

    /// The open connection to `addr`, connecting (and authenticating) if there is none. A
    /// client keeps one connection per address: concurrent callers share one connect.
    ///
    /// The connect is a shared future that any of its callers drives, not a lock held by
    /// the first: a caller may be a future that its task stops polling for a while (a
    /// partition sender's retry in its `FuturesOrdered` while the task itself waits for a
    /// connection), and a lock held there would block the task on itself.
    async fn conn_to(&self, addr: SocketAddr) -> Result<Arc<Connection>, ClientError> {
        if let Some(c) = self.open_conn(addr) {
            return Ok(c);
        }
        let connect = {
            let mut connecting = self.inner.connecting.0.lock().expect("connecting lock");
            // Checked again under the lock: a finished connect installs its connection
            // before it leaves `connecting`.
            if let Some(c) = self.open_conn(addr) {
                return Ok(c);
            }
            let inner = self.inner.clone();
            connecting
                .entry(addr)
                .or_insert_with(|| {
                    async move {
                        let result = connect_and_authenticate(&inner, addr).await;
                        if let Ok(c) = &result {
                            inner.conns.lock().expect("conns lock").insert(addr, c.clone());
                        }
                        inner.connecting.0.lock().expect("connecting lock").remove(&addr);
                        result
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        connect.await
    }

    fn open_conn(&self, addr: SocketAddr) -> Option<Arc<Connection>> {
        let conns = self.inner.conns.lock().expect("conns lock");
        conns.get(&addr).filter(|c| c.is_open()).cloned()
    }

    /// The number of partitions of `topic` (refreshing metadata once if unknown).
    pub async fn partition_count(&self, topic: &str) -> Result<u32, ClientError> {
        for attempt in 0..2 {
            let md = if attempt == 0 { self.metadata() } else { self.refresh_metadata().await? };
            // A topic listed with no partitions is not usable (a producer divides by the
            // count): as unknown.
            if let Some(t) = md
                .topics
                .iter()
                .find(|t| t.name == topic && t.error == 0 && !t.partitions.is_empty())
            {
                return Ok(t.partitions.len() as u32);
            }
        }
        Err(ClientError::UnknownTopic(topic.into()))
    }

    /// Whether the metadata held now lists `topic` with partition `partition`.
    fn lists_partition(&self, topic: &str, partition: u32) -> bool {
        self.metadata().topics.iter().any(|t| {
            t.name == topic && t.error == 0 && t.partitions.iter().any(|p| p.partition == partition)
        })
    }

    /// The connection to the shard that owns `topic`/`partition`.
    pub async fn owner_conn(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Arc<Connection>, ClientError> {
        let md = self.metadata();
        let shard = md
            .topics
            .iter()
            .find(|t| t.name == topic)
            .and_then(|t| t.partitions.iter().find(|p| p.partition == partition))
            .map(|p| p.shard);
        let addr = shard
            .and_then(|s| md.shards.iter().find(|a| a.shard_id == s))
            .and_then(|a| format!("{}:{}", a.host, a.port).parse::<SocketAddr>().ok())
            .unwrap_or(self.inner.bootstrap);
        match self.conn_to(addr).await {
            Ok(c) => Ok(c),
            // The shard port may be unreachable (NAT, firewall): the public port forwards.
            Err(_) => self.conn_to(self.inner.bootstrap).await,
        }
    }

    /// Runs `op` with retries (backoff, metadata refresh) for retriable errors only.
    pub async fn with_retries<T, F, Fut>(&self, mut op: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let mut backoff = self.inner.config.retry_backoff;
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retriable() && attempt < self.inner.config.retries => {
                    attempt += 1;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    let _ = self.refresh_metadata().await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends record batches to one partition at `ack`; returns the broker's result.
    pub async fn produce_batches(
        &self,
        topic: &str,
        partition: u32,
        batches: &[u8],
        ack: AckLevel,
    ) -> Result<ProducePartitionResult, ClientError> {
        self.produce_expecting(topic, partition, batches, ack, ExpectedPosition::Any).await
    }

    /// Appends `batches` to one partition only if it (or the records' one key) is where
    /// `expect` says: optimistic concurrency for event streams. A mismatch is
    /// [`ClientError::ConditionFailed`] with the actual position; nothing was appended.
    pub async fn produce_expecting(
        &self,
        topic: &str,
        partition: u32,
        batches: &[u8],
        ack: AckLevel,
        expect: ExpectedPosition,
    ) -> Result<ProducePartitionResult, ClientError> {
        let tries = std::sync::atomic::AtomicU32::new(0);
        self.with_retries(|| async {
            // Once metadata was refreshed after a failure (`with_retries`), a partition it
            // does not list is gone for good (deleted, or fewer partitions): retrying would
            // only spend the retries (~26 s) on it.
            let tried = tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if tried > 0 && !self.lists_partition(topic, partition) {
                return Err(ClientError::UnknownTopic(format!("{topic}/{partition}")));
            }
            let conn = self.owner_conn(topic, partition).await?;
            let resp: ProduceResponse = conn
                .request(&ProduceRequest {
                    ack,
                    timeout_ms: self.inner.config.request_timeout.as_millis() as u32,
                    topics: vec![ProduceTopic {
                        name: topic.into(),
                        partitions: vec![ProducePartition {
                            partition,
                            batches: batches.to_vec(),
                            expect,
                        }],
                    }],
                })
                .await?;
            let r =
                only_partition(resp.topics.into_iter().next().map(|t| t.partitions), "produce")?;
            if r.error == ErrorCode::ConditionFailed.as_u16() {
                return Err(ClientError::ConditionFailed {
                    topic: topic.into(),
                    partition,
                    current_offset: r.current_offset,
                });
            }
            check_partition(topic, partition, r.error).map(|()| r)
        })
        .await
    }

    /// Reads batches of one partition from `offset` (waiting up to `max_wait_ms` for data).
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: u32,
        max_wait_ms: u32,
    ) -> Result<FetchPartitionResult, ClientError> {
        self.with_retries(|| async {
            let conn = self.owner_conn(topic, partition).await?;
            let resp: FetchResponse = conn
                .request(&FetchRequest {
                    max_wait_ms,
                    min_bytes: 1,
                    max_bytes,
                    topics: vec![FetchTopic {
                        name: topic.into(),
                        partitions: vec![FetchPartition { partition, offset, max_bytes }],
                    }],
                })
                .await?;
            let r = only_partition(resp.topics.into_iter().next().map(|t| t.partitions), "fetch")?;
            check_partition(topic, partition, r.error).map(|()| r)
        })
        .await
    }

    /// Creates a topic.
    pub async fn create_topic(
        &self,
        name: &str,
        config: TopicConfig,
    ) -> Result<TopicMetadata, ClientError> {
        let conn = self.conn_to(self.inner.bootstrap).await?;
        let r: CreateTopicResponse =
            conn.request(&CreateTopicRequest { name: name.into(), config }).await?;
        self.check(r.error, r.message)?;
        self.refresh_metadata().await?;
        r.topic.ok_or_else(|| ClientError::Protocol("create answered without the topic".into()))
    }

    /// Grows topic `name` to `partition_count` partitions (more than it has): the new ones
    /// are placed on the least loaded shards; the others and their data stay. Keyed records
    /// map to partitions by the new count from then on.
    pub async fn create_partitions(
        &self,
        name: &str,
        partition_count: u32,
    ) -> Result<TopicMetadata, ClientError> {
        let conn = self.conn_to(self.inner.bootstrap).await?;
        let req = CreatePartitionsRequest { name: name.into(), partition_count };
        let r: CreatePartitionsResponse = conn.request(&req).await?;
        self.check(r.error, r.message)?;
        self.refresh_metadata().await?;
        r.topic.ok_or_else(|| ClientError::Protocol("grow answered without the topic".into()))
    }

    /// Changes settings of topic `name`: each change is a `TopicConfig` field that may change
    /// (`retention_ms`, `retention_bytes`, `segment_bytes_max`, `segment_ms`,
    /// `delete_retention_ms`, `default_ack`) and its new value as text (empty: the broker
    /// default). All are checked first; none is made if one is refused. With
    /// `validate_only` nothing changes and the answer shows the result.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        changes: &[(String, String)],
        validate_only: bool,
    ) -> Result<TopicMetadata, ClientError> {
        let conn = self.conn_to(self.inner.bootstrap).await?;
        let changes = changes
            .iter()
            .map(|(name, value)| TopicSettingChange { name: name.clone(), value: value.clone() })
            .collect();
        let req = AlterTopicConfigRequest { name: name.into(), changes, validate_only };
        let r: AlterTopicConfigResponse = conn.request(&req).await?;
        self.check(r.error, r.message)?;
        self.refresh_metadata().await?;
        r.topic.ok_or_else(|| ClientError::Protocol("alter answered without the topic".into()))
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let conn = self.conn_to(self.inner.bootstrap).await?;
        let r: DeleteTopicResponse =
            conn.request(&DeleteTopicRequest { name: name.into() }).await?;
        self.check(r.error, r.message)?;
        self.refresh_metadata().await?;
        Ok(())
    }

    /// Topic names and partition counts.
    pub async fn list_topics(&self) -> Result<Vec<TopicSummary>, ClientError> {
        let conn = self.conn_to(self.inner.bootstrap).await?;
        let r: ListTopicsResponse =
            conn.request(&ListTopicsRequest { name_prefix: String::new() }).await?;
        Ok(r.topics)
    }

    /// Config, layout and per-partition state of a topic.
    pub async fn describe_topic(&self, name: &str) -> Result<DescribeTopicResponse, ClientError> {
        let conn = self.conn_to(self.inner.bootstrap).await?;
        let r: DescribeTopicResponse =
            conn.request(&DescribeTopicRequest { name: name.into() }).await?;
        self.check(r.error, r.message.clone())?;
        Ok(r)
    }

    /// Offsets of every partition of `topic` for `spec`: `(partition, offset, timestamp)`.
    pub async fn list_offsets(
        &self,
        topic: &str,
        spec: OffsetSpec,
    ) -> Result<Vec<(u32, u64, i64)>, ClientError> {
        let n = self.partition_count(topic).await?;
        let conn = self.conn_to(self.inner.bootstrap).await?;
        let r: ListOffsetsResponse = conn
            .request(&ListOffsetsRequest {
                topics: vec![ListOffsetsTopic {
                    name: topic.into(),
                    partitions: (0..n)
                        .map(|partition| ListOffsetsPartition { partition, spec })
                        .collect(),
                }],
            })
            .await?;
        let partitions = r.topics.into_iter().flat_map(|t| t.partitions);
        partitions
            .map(|p| {
                check_partition(topic, p.partition, p.error)
                    .map(|()| (p.partition, p.offset, p.timestamp_ms))
            })
            .collect()
    }

    /// Deletes the records of `topic` before an offset, per partition (`DeleteBefore`: the
    /// high watermark, or an offset at most there): each partition's log start moves there,
    /// durably once answered. Returns `(partition, log start offset)` for each; the first
    /// partition refused (`OFFSET_OUT_OF_RANGE` past the high watermark, `POLICY_VIOLATION`
    /// on a compacted topic without retention) fails the call (the others are done).
    pub async fn delete_records(
        &self,
        topic: &str,
        partitions: &[(u32, DeleteBefore)],
    ) -> Result<Vec<(u32, u64)>, ClientError> {
        let conn = self.conn_to(self.inner.bootstrap).await?;
        let partitions = partitions
            .iter()
            .map(|&(partition, before)| DeleteRecordsPartition { partition, before })
            .collect();
        let r: DeleteRecordsResponse = conn
            .request(&DeleteRecordsRequest {
                topics: vec![DeleteRecordsTopic { name: topic.into(), partitions }],
            })
            .await?;
        let partitions = r.topics.into_iter().flat_map(|t| t.partitions);
        partitions
            .map(|p| {
                check_partition(topic, p.partition, p.error)
                    .map(|()| (p.partition, p.log_start_offset))
            })
            .collect()
    }

    /// An idempotent producer id and epoch from the broker: a new id, or, for a
    /// `transactional_id` seen before, its id at the next epoch (fencing the older one).
    pub async fn init_producer_id(
        &self,
        transactional_id: Option<&str>,
    ) -> Result<(i64, i16), ClientError> {
        let transactional_id = transactional_id.unwrap_or_default().to_owned();
        self.with_retries(|| async {
            let conn = self.conn_to(self.inner.bootstrap).await?;
            let req = InitProducerIdRequest { transactional_id: transactional_id.clone() };
            let r: InitProducerIdResponse = conn.request(&req).await?;
            self.check(r.error, r.message)?;
            Ok((r.producer_id, r.producer_epoch))
        })
        .await
    }

    /// Per-shard counters.
    pub async fn stats(&self) -> Result<Vec<ShardStats>, ClientError> {
        self.stats_with(false).await
    }

    /// Per-shard counters, with every consumer group's lag per partition when `group_lag`.
    pub async fn stats_with(&self, group_lag: bool) -> Result<Vec<ShardStats>, ClientError> {
        let conn = self.conn_to(self.inner.bootstrap).await?;
        let request =
            StatsRequest { shards: vec![], group_lag, latency: false, reset_latency: false };
        let r: StatsResponse = conn.request(&request).await?;
        Ok(r.shards)
    }

    /// Per-shard counters with each shard's per-stage latency (`ShardStats::latency`); the
    /// shards start their histograms afresh after this read when `reset`.
    pub async fn stats_with_latency(&self, reset: bool) -> Result<Vec<ShardStats>, ClientError> {
        let conn = self.conn_to(self.inner.bootstrap).await?;
        let request =
            StatsRequest { shards: vec![], group_lag: false, latency: true, reset_latency: reset };
        let r: StatsResponse = conn.request(&request).await?;
        Ok(r.shards)
    }

    pub(crate) fn check(&self, error: u16, message: String) -> Result<(), ClientError> {
        match ErrorCode::from_u16(error) {
            Some(ErrorCode::None) => Ok(()),
            code => Err(ClientError::Broker {
                code: code.unwrap_or(ErrorCode::UnknownServerError),
                message,
                addr: self.inner.bootstrap,
            }),
        }
    }
}

/// The single partition result of a one-partition request.
fn only_partition<T>(partitions: Option<Vec<T>>, api: &str) -> Result<T, ClientError> {
    partitions
        .and_then(|p| p.into_iter().next())
        .ok_or_else(|| ClientError::Protocol(format!("empty {api} response")))
}

/// A per-partition error code as a result.
pub fn check_partition(topic: &str, partition: u32, error: u16) -> Result<(), ClientError> {
    match ErrorCode::from_u16(error) {
        Some(ErrorCode::None) => Ok(()),
        code => Err(ClientError::Partition {
            topic: topic.into(),
            partition,
            code: code.unwrap_or(ErrorCode::UnknownServerError),
        }),
    }
}
