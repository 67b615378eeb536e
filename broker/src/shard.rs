//! One shard: a glommio executor pinned to a core, owning some partitions.
//!
//! A shard owns its partitions' logs, the cache of recent batches, its connections and their
//! subscriptions; nothing of it is touched by another thread. Shards talk only through a
//! bounded glommio channel mesh ([`ShardMsg`]): forwarded requests and their responses, and
//! metadata changes. Receiving loops never wait on a send (replies go out from spawned
//! tasks), so two shards forwarding to each other cannot deadlock on full channels.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use futures_channel::oneshot;
use glommio::channels::channel_mesh::Senders;
use tracing::{info, warn};
use wire::AlignedVec;

use crate::config::BrokerConfig;
use crate::metadata::{partition_dir, Metadata, Topic};
use crate::storage::{DmaDisk, LogConfig, PartitionLog, ShardCache};

/// How long a graceful stop may spend closing (flushing, syncing) partition logs.
const SHUTDOWN_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A message between shards.
pub enum ShardMsg {
    /// A request frame for the receiving shard to answer as the partitions' owner.
    Request {
        /// Sending shard.
        from: u32,
        /// Matches the response.
        id: u64,
        /// A complete frame.
        frame: AlignedVec,
    },
    /// The answer to a forwarded request.
    Response {
        /// The request's id.
        id: u64,
        /// A complete response frame.
        frame: AlignedVec,
    },
    /// A new metadata snapshot to apply (open new partitions, drop deleted ones).
    Apply {
        /// Sending shard.
        from: u32,
        /// Matches the acknowledgement.
        id: u64,
        /// The snapshot.
        metadata: Arc<Metadata>,
    },
    /// The snapshot was applied.
    Applied {
        /// The apply's id.
        id: u64,
    },
    /// A push for a subscription whose client is connected to the receiving shard.
    Push {
        /// The relay key the receiving shard registered.
        key: u64,
        /// A complete push frame.
        frame: AlignedVec,
    },
    /// More credit for (`Some`), or the end of (`None`), a relayed subscription.
    SubControl {
        /// The shard relaying for the client.
        from: u32,
        /// Its relay key.
        key: u64,
        /// Credit to add; `None` unsubscribes.
        credit: Option<u64>,
    },
}

/// Where relayed pushes for one client subscription go, holding pushes that arrive before
/// the subscribe response reached the client.
pub struct Route {
    target: std::rc::Weak<dyn crate::subscription::PushTarget>,
    ready: Cell<bool>,
    held: RefCell<Vec<AlignedVec>>,
}

impl Route {
    /// A route to `target`, holding pushes until [`Shard::route_ready`].
    pub fn new(target: std::rc::Weak<dyn crate::subscription::PushTarget>) -> Self {
        Route { target, ready: Cell::new(false), held: RefCell::new(Vec::new()) }
    }
}

/// Addresses of the broker: the shared public one and each shard's own.
#[derive(Debug, Clone)]
pub struct Addresses {
    /// The public address (every shard accepts on it).
    pub public: SocketAddr,
    /// `shards[i]` is shard i's own address.
    pub shards: Vec<SocketAddr>,
}

/// One partition owned by this shard.
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Topic incarnation.
    pub topic_id: u64,
    /// Partition number.
    pub index: u32,
    /// Its log.
    pub log: PartitionLog<DmaDisk>,
}

/// Counters reported by the stats api.
#[derive(Debug, Default)]
pub struct Counters {
    /// Batch bytes appended.
    pub bytes_in: Cell<u64>,
    /// Batch bytes sent to consumers.
    pub bytes_out: Cell<u64>,
    /// Batches appended.
    pub batches_in: Cell<u64>,
    /// Batches sent.
    pub batches_out: Cell<u64>,
    /// Requests handled (including forwarded ones).
    pub requests: Cell<u64>,
    /// Open connections.
    pub connections: Cell<u64>,
    /// Accepted connections.
    pub connections_total: Cell<u64>,
    /// Partition-routed requests this shard forwarded to an owner.
    pub forwards_out: Cell<u64>,
    /// Partition-routed requests forwarded to this shard.
    pub forwards_in: Cell<u64>,
    /// Open subscriptions.
    pub subscriptions: Cell<u64>,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get().wrapping_add(n));
    }
}

/// A metadata broadcast waiting for acknowledgements: (shards still to ack, completion).
type PendingApply = (usize, Option<oneshot::Sender<()>>);

/// See the module docs.
pub struct Shard {
    /// Shard number (its rank in the mesh).
    pub id: u32,
    /// Number of shards.
    pub shard_count: u32,
    /// CPU the executor is pinned to.
    pub cpu: u32,
    /// Broker config.
    pub config: Arc<BrokerConfig>,
    /// Addresses.
    pub addresses: Arc<Addresses>,
    /// Recent batches for tailing readers.
    pub cache: Rc<ShardCache>,
    /// Counters.
    pub counters: Counters,
    metadata: RefCell<Arc<Metadata>>,
    partitions: RefCell<HashMap<(String, u32), Rc<Partition>>>,
    senders: Senders<ShardMsg>,
    next_id: Cell<u64>,
    replies: RefCell<HashMap<u64, oneshot::Sender<AlignedVec>>>,
    applies: RefCell<HashMap<u64, PendingApply>>,
    routes: RefCell<HashMap<u64, Route>>,
    remote_subs: RefCell<HashMap<(u32, u64), crate::subscription::Subscription>>,
    /// Serializes metadata changes (used on shard 0).
    pub admin_lock: glommio::sync::Semaphore,
    /// Set when the broker is shutting down.
    pub stopping: Cell<bool>,
}

impl Shard {
    /// A shard with no partitions open yet.
    pub fn new(
        id: u32,
        cpu: u32,
        config: Arc<BrokerConfig>,
        addresses: Arc<Addresses>,
        senders: Senders<ShardMsg>,
    ) -> Rc<Self> {
        Rc::new(Shard {
            id,
            shard_count: addresses.shards.len() as u32,
            cpu,
            cache: ShardCache::new(config.cache_bytes_per_shard),
            config,
            addresses,
            counters: Counters::default(),
            metadata: RefCell::new(Arc::new(Metadata::default())),
            partitions: RefCell::new(HashMap::new()),
            senders,
            next_id: Cell::new(1),
            replies: RefCell::new(HashMap::new()),
            applies: RefCell::new(HashMap::new()),
            routes: RefCell::new(HashMap::new()),
            remote_subs: RefCell::new(HashMap::new()),
            admin_lock: glommio::sync::Semaphore::new(1),
            stopping: Cell::new(false),
        })
    }

    /// The current metadata snapshot.
    pub fn metadata(&self) -> Arc<Metadata> {
        self.metadata.borrow().clone()
    }

    /// The partition if this shard owns it.
    pub fn partition(&self, topic: &str, partition: u32) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(&(topic.to_owned(), partition)).cloned()
    }

    /// Every partition this shard owns.
    pub fn partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Which shard owns a partition: `Err` with the wire error if it does not exist.
    pub fn owner(&self, topic: &str, partition: u32) -> Result<u32, wire::ErrorCode> {
        let md = self.metadata.borrow();
        let t = md.topic(topic).ok_or(wire::ErrorCode::UnknownTopic)?;
        t.shards.get(partition as usize).copied().ok_or(wire::ErrorCode::UnknownPartition)
    }

    /// The log settings for a topic: broker defaults overridden by the topic's.
    pub fn log_config(&self, topic: &Topic) -> LogConfig {
        topic.settings.log_config(&self.config.log)
    }

    /// Installs a metadata snapshot: opens (recovering) partitions newly assigned here,
    /// closes and deletes partitions whose topic is gone.
    pub async fn apply_metadata(self: &Rc<Self>, next: Arc<Metadata>) {
        if next.version < self.metadata.borrow().version {
            return;
        }
        *self.metadata.borrow_mut() = next.clone();
        let gone: Vec<Rc<Partition>> = {
            let mut parts = self.partitions.borrow_mut();
            let keys: Vec<_> = parts
                .iter()
                .filter(|(_, p)| next.topic(&p.topic).map(|t| t.id) != Some(p.topic_id))
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter().filter_map(|k| parts.remove(&k)).collect()
        };
        for p in gone {
            if let Err(e) = p.log.close().await {
                warn!(topic = %p.topic, partition = p.index, error = %e, "closing deleted partition");
            }
            let dir = p.log.dir().to_owned();
            if let Err(e) = crate::trash::move_to_trash(&self.config.data_dir, &dir) {
                warn!(dir = %dir.display(), error = %e, "cannot move deleted partition's data to the trash");
            }
            info!(topic = %p.topic, partition = p.index, "partition deleted");
        }
        for topic in next.topics.values() {
            for (index, &owner) in topic.shards.iter().enumerate() {
                let index = index as u32;
                if owner != self.id
                    || self.partitions.borrow().contains_key(&(topic.name.clone(), index))
                {
                    continue;
                }
                let dir = partition_dir(&self.config.data_dir, &topic.name, index);
                match PartitionLog::open(
                    DmaDisk,
                    dir,
                    self.log_config(topic),
                    self.cache.partition(),
                )
                .await
                {
                    Ok(log) => {
                        let p = Rc::new(Partition {
                            topic: topic.name.clone(),
                            topic_id: topic.id,
                            index,
                            log,
                        });
                        self.partitions.borrow_mut().insert((topic.name.clone(), index), p);
                    }
                    Err(e) => {
                        warn!(topic = %topic.name, partition = index, error = %e, "cannot open partition")
                    }
                }
            }
        }
    }

    /// Applies a snapshot here and on every other shard, returning when all have.
    pub async fn broadcast_metadata(self: &Rc<Self>, next: Arc<Metadata>) {
        let id = self.take_id();
        let (tx, rx) = oneshot::channel();
        let others = self.shard_count as usize - 1;
        self.applies.borrow_mut().insert(id, (others, Some(tx)));
        for peer in 0..self.shard_count {
            if peer != self.id {
                let msg = ShardMsg::Apply { from: self.id, id, metadata: next.clone() };
                if self.senders.send_to(peer as usize, msg).await.is_err() {
                    warn!(peer, "cannot reach shard to apply metadata");
                }
            }
        }
        self.apply_metadata(next).await;
        if others > 0 {
            let _ = rx.await;
        } else {
            self.applies.borrow_mut().remove(&id);
        }
    }

    /// A fresh id for a forward or a relay.
    pub fn take_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// Sends a complete request frame to the owner shard and returns its response frame.
    pub async fn forward(&self, to: u32, frame: AlignedVec) -> Option<AlignedVec> {
        self.forward_send(to, frame).await?.await.ok()
    }

    /// Sends a request frame to another shard now; the receiver resolves to its response.
    pub async fn forward_send(
        &self,
        to: u32,
        frame: AlignedVec,
    ) -> Option<oneshot::Receiver<AlignedVec>> {
        self.forward_send_as(to, self.take_id(), frame).await
    }

    /// [`Shard::forward_send`] with a caller-chosen id (from [`Shard::take_id`]).
    pub async fn forward_send_as(
        &self,
        to: u32,
        id: u64,
        frame: AlignedVec,
    ) -> Option<oneshot::Receiver<AlignedVec>> {
        let (tx, rx) = oneshot::channel();
        self.replies.borrow_mut().insert(id, tx);
        if self
            .senders
            .send_to(to as usize, ShardMsg::Request { from: self.id, id, frame })
            .await
            .is_err()
        {
            self.replies.borrow_mut().remove(&id);
            return None;
        }
        Some(rx)
    }

    /// Handles messages from one peer until it closes the channel.
    pub async fn receive_from(
        self: Rc<Self>,
        rx: glommio::channels::shared_channel::ConnectedReceiver<ShardMsg>,
    ) {
        while let Some(msg) = rx.recv().await {
            match msg {
                ShardMsg::Request { from, id, frame }
                    if crate::api::parts(&frame).0.api_key == wire::ApiKey::Subscribe.as_u16() =>
                {
                    let shard = self.clone();
                    glommio::spawn_local(
                        async move { shard.subscribe_for_peer(from, id, frame).await },
                    )
                    .detach();
                }
                ShardMsg::Push { key, frame } => {
                    let routes = self.routes.borrow();
                    if let Some(route) = routes.get(&key) {
                        if route.ready.get() {
                            if let Some(t) = route.target.upgrade() {
                                t.push(frame);
                            }
                        } else {
                            route.held.borrow_mut().push(frame);
                        }
                    }
                }
                ShardMsg::SubControl { from, key, credit } => match credit {
                    Some(bytes) => {
                        if let Some(sub) = self.remote_subs.borrow().get(&(from, key)) {
                            sub.grant(bytes);
                        }
                    }
                    None => {
                        let sub = self.remote_subs.borrow_mut().remove(&(from, key));
                        if let Some(sub) = sub {
                            sub.cancel(&self);
                        }
                    }
                },
                ShardMsg::Request { from, id, frame } => {
                    // Produce appends are enqueued here, in arrival order; everything that
                    // waits (acks, long polls, the reply send) runs in a spawned task.
                    let reply = crate::api::handle_forwarded(&self, frame).await;
                    let shard = self.clone();
                    glommio::spawn_local(async move {
                        let frame = reply.await;
                        let _ = shard
                            .senders
                            .send_to(from as usize, ShardMsg::Response { id, frame })
                            .await;
                    })
                    .detach();
                }
                ShardMsg::Response { id, frame } => {
                    if let Some(tx) = self.replies.borrow_mut().remove(&id) {
                        let _ = tx.send(frame);
                    }
                }
                ShardMsg::Apply { from, id, metadata } => {
                    let shard = self.clone();
                    glommio::spawn_local(async move {
                        shard.apply_metadata(metadata).await;
                        let _ =
                            shard.senders.send_to(from as usize, ShardMsg::Applied { id }).await;
                    })
                    .detach();
                }
                ShardMsg::Applied { id } => {
                    let mut applies = self.applies.borrow_mut();
                    if let Some((remaining, tx)) = applies.get_mut(&id) {
                        *remaining -= 1;
                        if *remaining == 0 {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(());
                            }
                            applies.remove(&id);
                        }
                    }
                }
            }
        }
    }

    /// Registers where relayed pushes for `key` go.
    pub fn add_route(&self, key: u64, route: Route) {
        self.routes.borrow_mut().insert(key, route);
    }

    /// The subscribe response reached the client: deliver held pushes and pass later ones.
    pub fn route_ready(&self, key: u64) {
        let routes = self.routes.borrow();
        if let Some(route) = routes.get(&key) {
            route.ready.set(true);
            if let Some(t) = route.target.upgrade() {
                for f in route.held.borrow_mut().drain(..) {
                    t.push(f);
                }
            }
        }
    }

    /// Forgets a route.
    pub fn remove_route(&self, key: u64) {
        self.routes.borrow_mut().remove(&key);
    }

    /// Sends a push for a relayed subscription to the shard holding the client.
    pub async fn relay_push(&self, to: u32, key: u64, frame: AlignedVec) -> bool {
        self.senders.send_to(to as usize, ShardMsg::Push { key, frame }).await.is_ok()
    }

    /// Grants credit to (`Some`) or ends (`None`) a subscription relayed through this shard.
    pub async fn sub_control(&self, owner: u32, key: u64, credit: Option<u64>) {
        let _ = self
            .senders
            .send_to(owner as usize, ShardMsg::SubControl { from: self.id, key, credit })
            .await;
    }

    /// Serves a subscribe forwarded by shard `from` for one of this shard's partitions; pushes
    /// travel back over the mesh under the relay key `id`.
    async fn subscribe_for_peer(self: Rc<Self>, from: u32, id: u64, frame: AlignedVec) {
        let (header, body) = crate::api::parts(&frame);
        let reply = match wire::decode_body::<wire::SubscribeRequest>(body) {
            Err(e) => Err(crate::api::error_frame(&header, e.code(), &e.to_string())),
            Ok(req) => {
                let refuse = |code: wire::ErrorCode, message: String| wire::SubscribeResponse {
                    subscription_id: req.subscription_id,
                    error: code.as_u16(),
                    message,
                    start_offset: 0,
                    high_watermark: 0,
                };
                match self.partition(&req.topic, req.partition) {
                    None => Err(crate::api::respond(
                        &header,
                        &refuse(wire::ErrorCode::NotOwner, "not the owner".into()),
                    )),
                    Some(part) => {
                        match crate::subscription::start_offset(&part, &req.start).await {
                            Err((code, message)) => {
                                Err(crate::api::respond(&header, &refuse(code, message)))
                            }
                            Ok(start) => {
                                let ok = wire::SubscribeResponse {
                                    subscription_id: req.subscription_id,
                                    error: 0,
                                    message: String::new(),
                                    start_offset: start,
                                    high_watermark: part.log.high_watermark(),
                                };
                                Ok((crate::api::respond(&header, &ok), part, req, start))
                            }
                        }
                    }
                }
            }
        };
        match reply {
            Err(frame) => {
                let _ = self.senders.send_to(from as usize, ShardMsg::Response { id, frame }).await;
            }
            Ok((frame, part, req, start)) => {
                // The response goes out before the first push (same channel, in order).
                let _ = self.senders.send_to(from as usize, ShardMsg::Response { id, frame }).await;
                let sink = crate::subscription::PushSink::Remote {
                    shard: self.clone(),
                    to: from,
                    key: id,
                };
                let sub = crate::subscription::spawn(&self, part, &req, start, sink);
                self.remote_subs.borrow_mut().insert((from, id), sub);
            }
        }
    }

    /// Stats of this shard.
    pub fn stats(&self) -> wire::ShardStats {
        let c = &self.counters;
        let parts = self.partitions();
        wire::ShardStats {
            shard_id: self.id,
            cpu: self.cpu,
            partitions: parts.len() as u32,
            bytes_in: c.bytes_in.get(),
            bytes_out: c.bytes_out.get(),
            batches_in: c.batches_in.get(),
            batches_out: c.batches_out.get(),
            requests: c.requests.get(),
            connections: c.connections.get(),
            connections_total: c.connections_total.get(),
            forwards_out: c.forwards_out.get(),
            forwards_in: c.forwards_in.get(),
            subscriptions: c.subscriptions.get(),
            syncs: parts.iter().map(|p| p.log.stats().syncs).sum(),
        }
    }

    /// Closes every partition log (flush, sync, trim): the last step of a graceful stop.
    pub async fn close_partitions(&self) {
        let parts: Vec<Rc<Partition>> =
            self.partitions.borrow_mut().drain().map(|(_, p)| p).collect();
        // A shutdown must end: a close that does not finish in time is abandoned (what was
        // acked durable is already synced; recovery trims the rest on the next start).
        let deadline = std::time::Instant::now() + SHUTDOWN_CLOSE_TIMEOUT;
        for p in parts {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            let closed = futures_lite::future::or(async { Some(p.log.close().await) }, async {
                glommio::timer::sleep(remaining).await;
                None
            })
            .await;
            match closed {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    warn!(topic = %p.topic, partition = p.index, error = %e, "close failed")
                }
                None => {
                    warn!(topic = %p.topic, partition = p.index, "close did not finish before the shutdown deadline; abandoned")
                }
            }
        }
    }

    /// Applies retention to every partition.
    pub async fn apply_retention(&self, now_ms: i64) {
        for p in self.partitions() {
            if let Err(e) = p.log.apply_retention(now_ms).await {
                warn!(topic = %p.topic, partition = p.index, error = %e, "retention failed");
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
