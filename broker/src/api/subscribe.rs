//! Subscribe, grant credit, unsubscribe: validated and answered once, for a client
//! connection or for a peer shard.
//!
//! Contract: a subscription is per connection ([`ClientSubscriptions`]): its id is the
//! client's, unique on that connection. It is served on the partition's owner: directly
//! when the client is connected there, else relayed — the client's shard registers a route
//! and forwards the subscribe; the owner serves it ([`serve_for_peer`], its subscriptions
//! kept per peer in [`RelayedSubscriptions`]) and its pushes, credit grants and the
//! unsubscribe travel over the mesh. The subscribe response always reaches the client
//! before the first push. A connection that ends cancels all of its subscriptions.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use wire::{
    AlignedVec, ApiKey, ErrorCode, FrameHeader, GrantCreditRequest, GrantCreditResponse,
    StartPosition, SubscribeRequest, SubscribeResponse, UnsubscribeRequest, UnsubscribeResponse,
};

use super::forward::decode_reply;
use super::timestamp_lookup::offset_for_timestamp;
use super::{error_frame, respond};
use crate::budget::{EntryRoom, MemoryBudget, ResponseRoom, RoomFrom};
use crate::counters::Counters;
use crate::mesh::{PushTarget, Route};
use crate::partition::Partition;
use crate::request::Request;
use crate::shard::Shard;
use crate::subscription::{self, PushSink, Subscription};

/// A subscription as its client's connection sees it.
enum SubEntry {
    /// Served by this shard.
    Local(Subscription),
    /// Served by the owner shard; pushes are relayed under `key`.
    Remote { owner: u32, key: u64 },
}

/// One connection's subscriptions, by the client's subscription id.
#[derive(Default)]
pub struct ClientSubscriptions {
    entries: RefCell<HashMap<u64, SubEntry>>,
}

impl ClientSubscriptions {
    /// No subscription is open.
    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }

    /// Ends every subscription (the connection is closing).
    pub async fn cancel_all(&self, shard: &Shard) {
        let subs: Vec<SubEntry> = self.entries.borrow_mut().drain().map(|(_, s)| s).collect();
        for s in subs {
            match s {
                SubEntry::Local(sub) => sub.cancel(&shard.counters),
                SubEntry::Remote { owner, key } => {
                    shard.mesh.remove_route(key);
                    shard.mesh.sub_control(owner, key, None).await;
                }
            }
        }
    }
}

/// Subscriptions this (owning) shard serves for clients connected to one peer shard, by
/// the peer's relay key.
pub type RelayedSubscriptions = Rc<RefCell<HashMap<u64, Subscription>>>;

/// Answers a session request (`Subscribe`, `GrantCredit`, `Unsubscribe`) from the client
/// connected through `target`: every frame goes to `target`, the response first.
pub async fn client_request(
    shard: &Rc<Shard>,
    subs: &ClientSubscriptions,
    target: &Rc<dyn PushTarget>,
    api: ApiKey,
    request: &Request,
) {
    let reply = match api {
        ApiKey::Subscribe => subscribe(shard, subs, target, request).await,
        ApiKey::GrantCredit => Some(grant_credit(shard, subs, request).await),
        _ => Some(unsubscribe(shard, subs, request).await),
    };
    if let Some(frame) = reply {
        target.push(frame.into());
    }
}

/// The refusal of subscription `id`.
fn refusal(id: u64, code: ErrorCode, message: String) -> SubscribeResponse {
    SubscribeResponse {
        subscription_id: id,
        error: code.as_u16(),
        message,
        start_offset: 0,
        high_watermark: 0,
    }
}

/// Checks a subscribe for `part` on its owner: the accepting response and where it starts,
/// or the refusal. A start by timestamp is looked up within room taken from the shard's
/// `memory` for what the lookup reads (`timestamp_lookup.rs`).
async fn accept(
    header: &FrameHeader,
    part: &Partition,
    req: &SubscribeRequest,
    memory: &Rc<MemoryBudget>,
) -> Result<(AlignedVec, u64), AlignedVec> {
    if let Err(e) = crate::filter::RecordFilter::parse(&req.filter) {
        let message = format!("invalid filter: {e}");
        return Err(respond(header, &refusal(req.subscription_id, e.code(), message)));
    }
    let start = match req.start {
        StartPosition::Timestamp(ts) => {
            let room = ResponseRoom::default();
            room.put(vec![memory.hold_now(0)]);
            let mut entries = EntryRoom::new(RoomFrom::Connection(&room));
            match offset_for_timestamp(&part.log, ts, &mut entries).await {
                Ok(Some((offset, _))) => Ok(offset),
                Ok(None) => Ok(part.log.high_watermark()),
                Err(e) => Err((e.code(), e.to_string())),
            }
        }
        StartPosition::Earliest => Ok(part.log.log_start_offset()),
        StartPosition::Latest => Ok(part.log.high_watermark()),
        // Up to the written end: a consumer may start at the offset a `written` ack just
        // reported; the push loop waits until the high watermark passes it.
        StartPosition::Offset(o)
            if o < part.log.log_start_offset() || o > part.log.written_offset() =>
        {
            let (start, end) = (part.log.log_start_offset(), part.log.written_offset());
            Err((ErrorCode::OffsetOutOfRange, format!("offset {o} outside [{start}, {end}]")))
        }
        StartPosition::Offset(o) => Ok(o),
    };
    match start {
        Err((code, message)) => Err(respond(header, &refusal(req.subscription_id, code, message))),
        Ok(start) => {
            let ok = SubscribeResponse {
                subscription_id: req.subscription_id,
                error: 0,
                message: String::new(),
                start_offset: start,
                high_watermark: part.log.high_watermark(),
            };
            Ok((respond(header, &ok), start))
        }
    }
}

/// Why the shard takes no more subscriptions, if it does not: it serves
/// `subscriptions_per_shard_max` (its clients' and those relayed from other shards).
fn shard_full(shard: &Shard) -> Option<String> {
    let max = shard.config.subscriptions_per_shard_max;
    (shard.counters.subscriptions.get() >= max as u64).then(|| {
        format!("the partition's shard serves {max} subscriptions (subscriptions_per_shard_max)")
    })
}

/// A client's subscribe: served here, or relayed to the owner. `None` when every frame was
/// already sent.
async fn subscribe(
    shard: &Rc<Shard>,
    subs: &ClientSubscriptions,
    target: &Rc<dyn PushTarget>,
    request: &Request,
) -> Option<AlignedVec> {
    let header = &request.header;
    let req = match wire::decode_body::<SubscribeRequest>(request.body()) {
        Ok(r) => r,
        Err(e) => return Some(error_frame(header, e.code(), &e.to_string())),
    };
    let refuse = |code: ErrorCode, message: String| {
        Some(respond(header, &refusal(req.subscription_id, code, message)))
    };
    let per_connection_max = shard.config.subscriptions_per_connection_max;
    {
        // Subscriptions that ended on their own (their topic deleted, an error pushed) go:
        // the one of this id, and all of them once the connection is at its limit.
        let ended = |e: &SubEntry| matches!(e, SubEntry::Local(s) if s.ended());
        let mut entries = subs.entries.borrow_mut();
        if entries.get(&req.subscription_id).is_some_and(ended) {
            entries.remove(&req.subscription_id);
        }
        if entries.len() >= per_connection_max {
            entries.retain(|_, e| !ended(e));
        }
    }
    if subs.entries.borrow().contains_key(&req.subscription_id) {
        return refuse(ErrorCode::DuplicateSubscription, "subscription id in use".into());
    }
    if subs.entries.borrow().len() >= per_connection_max {
        let message = format!(
            "this connection has {per_connection_max} subscriptions open \
             (subscriptions_per_connection_max); unsubscribe one first"
        );
        return refuse(ErrorCode::ResourceLimit, message);
    }
    let owner = match shard.owner(&req.topic, req.partition) {
        Ok(o) => o,
        Err(code) => return refuse(code, format!("{}/{}", req.topic, req.partition)),
    };
    let weak_target: Weak<dyn PushTarget> = Rc::downgrade(target);
    if owner != shard.id {
        // Relay: the owner serves it and pushes back over the mesh.
        Counters::add(&shard.counters.forwards_out, 1);
        let key = shard.mesh.take_id();
        shard.mesh.add_route(key, Route::new(weak_target));
        let reply =
            match shard.mesh.forward_send_as(owner, key, request.frame.clone(), usize::MAX).await {
                Some(rx) => rx.await.ok(),
                None => None,
            };
        let Some(reply) = reply else {
            shard.mesh.remove_route(key);
            return refuse(ErrorCode::NotOwner, format!("shard {owner} unreachable"));
        };
        let accepted = decode_reply::<SubscribeResponse>(&reply).is_some_and(|r| r.error == 0);
        target.push(reply.into());
        if accepted {
            subs.entries.borrow_mut().insert(req.subscription_id, SubEntry::Remote { owner, key });
            shard.mesh.route_ready(key);
        } else {
            shard.mesh.remove_route(key);
        }
        return None;
    }
    let Some(part) = shard.partition(&req.topic, req.partition) else {
        return refuse(ErrorCode::UnknownPartition, String::new());
    };
    let (response, start) = match accept(header, &part, &req, &shard.memory).await {
        Ok(accepted) => accepted,
        Err(refused) => return Some(refused),
    };
    if let Some(message) = shard_full(shard) {
        return refuse(ErrorCode::ResourceLimit, message);
    }
    // The response is queued before the first push.
    target.push(response.into());
    let sub = subscription::spawn(shard, part, &req, start, PushSink::Local(weak_target));
    subs.entries.borrow_mut().insert(req.subscription_id, SubEntry::Local(sub));
    None
}

async fn grant_credit(shard: &Shard, subs: &ClientSubscriptions, request: &Request) -> AlignedVec {
    let header = &request.header;
    let req = match wire::decode_body::<GrantCreditRequest>(request.body()) {
        Ok(r) => r,
        Err(e) => return error_frame(header, e.code(), &e.to_string()),
    };
    let remote = match subs.entries.borrow().get(&req.subscription_id) {
        Some(SubEntry::Local(sub)) => {
            sub.grant(req.credit_bytes);
            Some(None)
        }
        Some(SubEntry::Remote { owner, key }) => Some(Some((*owner, *key))),
        None => None,
    };
    let error = match remote {
        Some(Some((owner, key))) => {
            shard.mesh.sub_control(owner, key, Some(req.credit_bytes)).await;
            ErrorCode::None
        }
        Some(None) => ErrorCode::None,
        None => ErrorCode::UnknownSubscription,
    };
    respond(
        header,
        &GrantCreditResponse { subscription_id: req.subscription_id, error: error.as_u16() },
    )
}

async fn unsubscribe(shard: &Shard, subs: &ClientSubscriptions, request: &Request) -> AlignedVec {
    let header = &request.header;
    let req = match wire::decode_body::<UnsubscribeRequest>(request.body()) {
        Ok(r) => r,
        Err(e) => return error_frame(header, e.code(), &e.to_string()),
    };
    let entry = subs.entries.borrow_mut().remove(&req.subscription_id);
    let error = match entry {
        Some(SubEntry::Local(sub)) => {
            sub.cancel(&shard.counters);
            ErrorCode::None
        }
        Some(SubEntry::Remote { owner, key }) => {
            shard.mesh.remove_route(key);
            shard.mesh.sub_control(owner, key, None).await;
            ErrorCode::None
        }
        None => ErrorCode::UnknownSubscription,
    };
    respond(
        header,
        &UnsubscribeResponse { subscription_id: req.subscription_id, error: error.as_u16() },
    )
}

/// Serves a subscribe that peer shard `from` relays for its client, for a partition of this
/// shard; pushes travel back over the mesh under the relay key `key`.
pub async fn serve_for_peer(
    shard: Rc<Shard>,
    from: u32,
    key: u64,
    request: Request,
    relayed: RelayedSubscriptions,
) {
    let header = &request.header;
    let reply = match wire::decode_body::<SubscribeRequest>(request.body()) {
        Err(e) => Err(error_frame(header, e.code(), &e.to_string())),
        Ok(req) => match shard.partition(&req.topic, req.partition) {
            None => Err(respond(
                header,
                &refusal(req.subscription_id, ErrorCode::NotOwner, "not the owner".into()),
            )),
            Some(part) => {
                let accepted = accept(header, &part, &req, &shard.memory).await;
                accepted.map(|(ok, start)| (ok, part, req, start))
            }
        },
    };
    let reply = reply.and_then(|(ok, part, req, start)| match shard_full(&shard) {
        Some(message) => {
            Err(respond(header, &refusal(req.subscription_id, ErrorCode::ResourceLimit, message)))
        }
        None => Ok((ok, part, req, start)),
    });
    match reply {
        Err(frame) => shard.mesh.reply(from, key, frame).await,
        Ok((frame, part, req, start)) => {
            // The response goes out before the first push (same channel, in order).
            shard.mesh.reply(from, key, frame).await;
            let sink = PushSink::Remote { shard: shard.clone(), to: from, key };
            let sub = subscription::spawn(&shard, part, &req, start, sink);
            let mut relayed = relayed.borrow_mut();
            // Those that ended on their own (their topic deleted, an error pushed) go.
            relayed.retain(|_, s| !s.ended());
            relayed.insert(key, sub);
        }
    }
}
