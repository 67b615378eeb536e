//! The mesh inbox: one loop per peer shard, the inbound side of `mesh.rs`.
//!
//! Contract: messages from one peer are handled in arrival order. Forwarded requests run
//! their first stage here, in order (so a peer's appends to a partition keep their order);
//! everything that waits (acks, long polls, the reply send) runs in spawned tasks, and
//! this loop never waits on a send, so two shards forwarding to each other cannot deadlock
//! on full channels. Subscriptions relayed for the peer's clients are served here
//! (`api::subscribe::serve_for_peer`) and kept per peer: credit and unsubscribe from that
//! peer concern only them. Pushes for this shard's clients go to their routes; replies and
//! metadata acknowledgements complete what this shard is waiting for. A forwarded fetch's
//! long-poll ends when the peer says its answer is due (`ShardMsg::EndWait`).

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
    // The peer's forwarded fetches still running, by id: the peer may end their waits.
    let fetches: Rc<RefCell<HashMap<u64, Watermark>>> = Rc::default();
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
            ShardMsg::EndWait { id } => {
                if let Some(end_wait) = fetches.borrow().get(&id) {
                    end_wait.advance(1);
                }
            }
            ShardMsg::Push { key, frame } => shard.mesh.deliver_push(key, frame),
            ShardMsg::SubControl { from: _, key, credit } => match credit {
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
}
