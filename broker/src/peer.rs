//! The mesh inbox: one loop per peer shard, the inbound side of `mesh.rs`.
//!
//! Contract: a peer's forwarded requests (and its subscription controls, which follow their
//! subscriptions) are handled in arrival order by one task per peer: each runs its first
//! stage there, in order (so a peer's appends to a partition keep their order); everything
//! that waits after it (acks, long polls, the reply send) runs in spawned tasks. The rest —
//! answers to this shard's own forwards, pushes for its clients, metadata and its
//! acknowledgements, the end of a forwarded fetch's wait (`ShardMsg::EndWait`) — is handled
//! by the loop as it arrives: a request waiting in its first stage (its partition's write
//! queue full; not a key index to build: a forwarded conditional append is answered
//! `LOADING` and the index built in the background) delays the peer's later requests, not the answers
//! this shard's clients wait for. Neither waits on a send, so two shards forwarding to each
//! other cannot deadlock on full channels. Subscriptions relayed for the peer's clients are
//! served here (`api::subscribe::serve_for_peer`) and kept per peer: credit and
//! unsubscribe from that peer concern only them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use glommio::channels::shared_channel::ConnectedReceiver;
use wire::ApiKey;

use crate::api::subscribe::{serve_for_peer, RelayedSubscriptions};
use crate::mesh::ShardMsg;
use crate::request::Request;
use crate::shard::Shard;
use crate::watermark::Watermark;

/// Handles messages from one peer until it closes the channel.
pub async fn receive_from(shard: Rc<Shard>, rx: ConnectedReceiver<ShardMsg>) {
    let relayed = RelayedSubscriptions::default();
    // The peer's forwarded fetches not answered yet, by id: the peer may end their waits
    // (registered as they arrive, so an end for one still queued is kept).
    let fetches: Rc<RefCell<HashMap<u64, Watermark>>> = Rc::default();
    // The peer's requests (and subscription controls, which follow their subscriptions) run
    // in order in their own task: one waiting in its first stage (its partition's write
    // queue full) delays the peer's later requests, as order
    // demands, but not the answers to this shard's forwards, pushes or metadata, which are
    // handled here as they arrive. What waits there is bounded by the peer: each forwarded
    // request's frame stays held in its budgets until it is answered.
    let (requests_tx, requests_rx) = glommio::channels::local_channel::new_unbounded();
    let requests = glommio::spawn_local(serve_requests(
        shard.clone(),
        requests_rx,
        relayed.clone(),
        fetches.clone(),
    ))
    .detach();
    while let Some(msg) = rx.recv().await {
        match msg {
            ShardMsg::Request { from, id, frame, lent_bytes } => {
                let mut request = Request::forwarded(frame).lent(lent_bytes);
                let fetch = request.header.api_key == ApiKey::Fetch.as_u16();
                if fetch {
                    let end_wait = Watermark::new(0);
                    fetches.borrow_mut().insert(id, end_wait.clone());
                    request = request.ending_wait_at(end_wait);
                }
                let _ = requests_tx.try_send(Queued::Request { from, id, fetch, request });
            }
            ShardMsg::SubControl { from: _, key, credit } => {
                let _ = requests_tx.try_send(Queued::SubControl { key, credit });
            }
            ShardMsg::EndWait { id } => {
                if let Some(end_wait) = fetches.borrow().get(&id) {
                    end_wait.advance(1);
                }
            }
            ShardMsg::Push { key, frame } => shard.mesh.deliver_push(key, frame),
            ShardMsg::Response { id, frame } => shard.mesh.resolve_reply(id, frame),
            ShardMsg::Apply { from, id, metadata } => {
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    shard.apply_metadata(metadata).await;
                    shard.mesh.applied(from, id).await;
                })
                .detach();
            }
            ShardMsg::Applied { id } => shard.mesh.resolve_applied(id),
        }
    }
    // The peer is gone: what it sent is still served.
    drop(requests_tx);
    let _ = requests.await;
}

/// What `serve_requests` takes, in arrival order.
enum Queued {
    Request { from: u32, id: u64, fetch: bool, request: Request },
    SubControl { key: u64, credit: Option<u64> },
}

/// The peer's requests and subscription controls, in arrival order (see `receive_from`).
async fn serve_requests(
    shard: Rc<Shard>,
    rx: glommio::channels::local_channel::LocalReceiver<Queued>,
    relayed: RelayedSubscriptions,
    fetches: Rc<RefCell<HashMap<u64, Watermark>>>,
) {
    while let Some(queued) = rx.recv().await {
        match queued {
            Queued::Request { from, id, fetch, request } => {
                if request.header.api_key == ApiKey::Subscribe.as_u16() {
                    let task = serve_for_peer(shard.clone(), from, id, request, relayed.clone());
                    glommio::spawn_local(task).detach();
                    continue;
                }
                // Produce appends are enqueued here, in arrival order; everything that
                // waits (acks, long polls, the reply send) runs in a spawned task.
                let reply = crate::api::handle_forwarded(&shard, request).await;
                let (shard, fetches) = (shard.clone(), fetches.clone());
                glommio::spawn_local(async move {
                    let frame = reply.await;
                    if fetch {
                        fetches.borrow_mut().remove(&id);
                    }
                    shard.mesh.reply(from, id, frame).await;
                })
                .detach();
            }
            Queued::SubControl { key, credit } => match credit {
                Some(bytes) => {
                    if let Some(sub) = relayed.borrow().get(&key) {
                        sub.grant(bytes);
                    }
                }
                None => {
                    let sub = relayed.borrow_mut().remove(&key);
                    if let Some(sub) = sub {
                        sub.cancel(&shard.counters);
                    }
                }
            },
        }
    }
}
