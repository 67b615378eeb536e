//! The mesh inbox: one loop per peer shard, the inbound side of `mesh.rs`.
//!
//! Contract: messages from one peer are handled in arrival order. Forwarded requests run
//! their first stage here, in order (so a peer's appends to a partition keep their order);
//! everything that waits (acks, long polls, the reply send) runs in spawned tasks, and
//! this loop never waits on a send, so two shards forwarding to each other cannot deadlock
//! on full channels. Subscriptions relayed for the peer's clients are served here
//! (`api::subscribe::serve_for_peer`) and kept per peer: credit and unsubscribe from that
//! peer concern only them. Pushes for this shard's clients go to their routes; replies and
//! metadata acknowledgements complete what this shard is waiting for.

use std::rc::Rc;

use glommio::channels::shared_channel::ConnectedReceiver;
use wire::ApiKey;

use crate::api::subscribe::{serve_for_peer, RelayedSubscriptions};
use crate::mesh::ShardMsg;
use crate::request::Request;
use crate::shard::Shard;

/// Handles messages from one peer until it closes the channel.
pub async fn receive_from(shard: Rc<Shard>, rx: ConnectedReceiver<ShardMsg>) {
    let relayed = RelayedSubscriptions::default();
    while let Some(msg) = rx.recv().await {
        match msg {
            ShardMsg::Request { from, id, frame, lent_bytes } => {
                let request = Request::forwarded(frame).lent(lent_bytes);
                if request.header.api_key == ApiKey::Subscribe.as_u16() {
                    let task = serve_for_peer(shard.clone(), from, id, request, relayed.clone());
                    glommio::spawn_local(task).detach();
                    continue;
                }
                // Produce appends are enqueued here, in arrival order; everything that
                // waits (acks, long polls, the reply send) runs in a spawned task.
                let reply = crate::api::handle_forwarded(&shard, request).await;
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    let frame = reply.await;
                    shard.mesh.reply(from, id, frame).await;
                })
                .detach();
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
