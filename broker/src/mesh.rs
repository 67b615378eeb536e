//! The shard-to-shard transport: message kinds, request ids and their reply slots,
//! metadata-apply acknowledgements, and relay routes for pushes.
//!
//! Contract: shards talk only through this bounded glommio channel mesh; nothing of one
//! shard is touched by another thread. Every forwarded request gets a fresh id whose reply
//! slot is filled by [`Mesh::resolve_reply`]; a peer that cannot be reached resolves it to
//! `None`. The inbound side (`peer.rs`) never waits on a send from its receiving loop
//! (replies go out from spawned tasks), so two shards forwarding to each other cannot
//! deadlock on full channels. This file imports nothing from the shard, the api or
//! subscriptions: they use it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Weak;
use std::sync::Arc;

use futures_channel::oneshot;
use glommio::channels::channel_mesh::Senders;
use tracing::warn;
use wire::AlignedVec;

use crate::budget::Held;
use crate::metadata::Metadata;
use crate::out_frame::OutFrame;

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
        /// Room the sending shard holds (of its own budgets) for the answer, lent to the
        /// receiver for making it (`budget::RoomFrom::Lent`); `usize::MAX`: none, no bound.
        lent_bytes: usize,
    },
    /// The sender no longer waits for long-polling request `id` (its answer is due now):
    /// the receiver ends that request's wait and answers with what it has.
    EndWait {
        /// The forwarded request's id.
        id: u64,
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

/// Something that accepts push frames for a client (a connection's outbound queue).
pub trait PushTarget {
    /// Queues a frame; `false` if the client is gone (or is being dropped as too slow).
    fn push(&self, frame: OutFrame) -> bool;
    /// Waits until the client's queue has room for a push of `bytes`, then holds it (`None`
    /// if the client is gone meanwhile). Holds nothing of the client while it waits; what
    /// it returns is the push's room, taken before the push is read, so subscriptions of one
    /// client never read more together than its queue has room for.
    fn reserve(&self, bytes: usize) -> Pin<Box<dyn Future<Output = Option<Vec<Held>>>>>;
    /// Queues a frame read within room from [`PushTarget::reserve`] (the room resized to
    /// what the frame keeps); `false` if the client is gone.
    fn push_reserved(&self, frame: OutFrame, holds: Vec<Held>) -> bool;
}

/// Where relayed pushes for one client subscription go, holding pushes that arrive before
/// the subscribe response reached the client.
pub struct Route {
    target: Weak<dyn PushTarget>,
    ready: Cell<bool>,
    held: RefCell<Vec<AlignedVec>>,
}

impl Route {
    /// A route to `target`, holding pushes until [`Mesh::route_ready`].
    pub fn new(target: Weak<dyn PushTarget>) -> Self {
        Route { target, ready: Cell::new(false), held: RefCell::new(Vec::new()) }
    }
}

/// A metadata broadcast waiting for acknowledgements: (shards still to ack, completion).
type PendingApply = (usize, Option<oneshot::Sender<()>>);

/// One shard's end of the mesh (see the module docs).
pub struct Mesh {
    /// This shard's rank.
    pub id: u32,
    /// Number of shards.
    pub shard_count: u32,
    senders: Senders<ShardMsg>,
    next_id: Cell<u64>,
    replies: RefCell<HashMap<u64, oneshot::Sender<AlignedVec>>>,
    applies: RefCell<HashMap<u64, PendingApply>>,
    routes: RefCell<HashMap<u64, Route>>,
}

impl Mesh {
    /// This shard's end, sending through `senders`.
    pub fn new(id: u32, shard_count: u32, senders: Senders<ShardMsg>) -> Self {
        Mesh {
            id,
            shard_count,
            senders,
            next_id: Cell::new(1),
            replies: RefCell::new(HashMap::new()),
            applies: RefCell::new(HashMap::new()),
            routes: RefCell::new(HashMap::new()),
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
        self.forward_send(to, frame, usize::MAX).await?.await.ok()
    }

    /// Sends a request frame to another shard now, with `lent_bytes` of room for its answer
    /// (`usize::MAX`: none); the receiver resolves to its response.
    pub async fn forward_send(
        &self,
        to: u32,
        frame: AlignedVec,
        lent_bytes: usize,
    ) -> Option<oneshot::Receiver<AlignedVec>> {
        self.forward_send_as(to, self.take_id(), frame, lent_bytes).await
    }

    /// [`Mesh::forward_send`] with a caller-chosen id (from [`Mesh::take_id`]).
    pub async fn forward_send_as(
        &self,
        to: u32,
        id: u64,
        frame: AlignedVec,
        lent_bytes: usize,
    ) -> Option<oneshot::Receiver<AlignedVec>> {
        let (tx, rx) = oneshot::channel();
        self.replies.borrow_mut().insert(id, tx);
        let msg = ShardMsg::Request { from: self.id, id, frame, lent_bytes };
        if self.senders.send_to(to as usize, msg).await.is_err() {
            self.replies.borrow_mut().remove(&id);
            return None;
        }
        Some(rx)
    }

    /// Tells shard `to` that forwarded request `id` need not wait any longer.
    pub async fn end_wait(&self, to: u32, id: u64) {
        let _ = self.senders.send_to(to as usize, ShardMsg::EndWait { id }).await;
    }

    /// Answers request `id` from shard `to`.
    pub async fn reply(&self, to: u32, id: u64, frame: AlignedVec) {
        let _ = self.senders.send_to(to as usize, ShardMsg::Response { id, frame }).await;
    }

    /// A peer answered request `id`.
    pub fn resolve_reply(&self, id: u64, frame: AlignedVec) {
        if let Some(tx) = self.replies.borrow_mut().remove(&id) {
            let _ = tx.send(frame);
        }
    }

    /// Sends `metadata` to every other shard to apply; the receiver resolves once all
    /// acknowledged (`None` if there are no others).
    pub async fn broadcast_apply(&self, metadata: &Arc<Metadata>) -> Option<oneshot::Receiver<()>> {
        let others = self.shard_count as usize - 1;
        if others == 0 {
            return None;
        }
        let id = self.take_id();
        let (tx, rx) = oneshot::channel();
        self.applies.borrow_mut().insert(id, (others, Some(tx)));
        for peer in 0..self.shard_count {
            if peer != self.id {
                let msg = ShardMsg::Apply { from: self.id, id, metadata: metadata.clone() };
                if self.senders.send_to(peer as usize, msg).await.is_err() {
                    warn!(peer, "cannot reach shard to apply metadata");
                }
            }
        }
        Some(rx)
    }

    /// Tells shard `to` that its snapshot `id` was applied here.
    pub async fn applied(&self, to: u32, id: u64) {
        let _ = self.senders.send_to(to as usize, ShardMsg::Applied { id }).await;
    }

    /// A peer applied snapshot `id`.
    pub fn resolve_applied(&self, id: u64) {
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
                    t.push(f.into());
                }
            }
        }
    }

    /// Forgets a route.
    pub fn remove_route(&self, key: u64) {
        self.routes.borrow_mut().remove(&key);
    }

    /// A relayed push arrived: pass it to its route's client, or hold it until the route is
    /// ready; pushes for a forgotten route are dropped.
    pub fn deliver_push(&self, key: u64, frame: AlignedVec) {
        let routes = self.routes.borrow();
        if let Some(route) = routes.get(&key) {
            if route.ready.get() {
                if let Some(t) = route.target.upgrade() {
                    t.push(frame.into());
                }
            } else {
                route.held.borrow_mut().push(frame);
            }
        }
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
}
