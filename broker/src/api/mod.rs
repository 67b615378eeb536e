//! Request handling: one module per api family.
//!
//! Every request runs in two stages. [`start`] runs in arrival order on the connection's
//! reader (or the mesh receiver for forwarded requests) and does what must be ordered —
//! validating and enqueueing produce batches, sending forwards. It returns the rest as a
//! [`Reply`] future, which the caller spawns: waiting for acks, long polls and remote shards
//! never holds up the next request. Requests for partitions owned by another shard are split
//! by owner, forwarded over the mesh, and their answers merged back in request order.

pub mod admin;
pub mod fetch;
pub mod offsets;
pub mod produce;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use wire::constants::FRAME_HEADER_BYTES;
use wire::{AlignedVec, ApiKey, ErrorCode, FrameHeader, Message};

use crate::shard::{Counters, Shard};

/// The second stage of a request: resolves to the response frame.
pub type Reply = Pin<Box<dyn Future<Output = AlignedVec>>>;

/// Who sent a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client connection.
    Client,
    /// Another shard, forwarding a request it received.
    Peer(u32),
}

/// The header and body of a complete frame produced by the connection reader or a peer.
pub fn parts(frame: &AlignedVec) -> (FrameHeader, &[u8]) {
    let header = FrameHeader::decode(
        frame[..FRAME_HEADER_BYTES].try_into().expect("frame has a header"),
        u32::MAX,
    )
    .expect("frames are checked before they reach the api");
    let body = &frame[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + header.body_len as usize];
    (header, body)
}

/// An error response to `header`'s request.
pub fn error_frame(header: &FrameHeader, code: ErrorCode, message: &str) -> AlignedVec {
    wire::encode_error(header.api_key, header.correlation_id, code, message)
}

/// Encodes a response, or an error response if it cannot be encoded.
pub fn respond<T: Message>(header: &FrameHeader, msg: &T) -> AlignedVec {
    wire::encode_response(header.correlation_id, msg)
        .unwrap_or_else(|e| error_frame(header, ErrorCode::UnknownServerError, &e.to_string()))
}

/// A reply that is already known.
pub fn ready(frame: AlignedVec) -> Reply {
    Box::pin(std::future::ready(frame))
}

/// Stage one of any request except the subscription apis (see the module docs).
pub async fn start(shard: &Rc<Shard>, frame: AlignedVec, origin: Origin) -> Reply {
    Counters::add(&shard.counters.requests, 1);
    let (header, _) = parts(&frame);
    let Some(api) = ApiKey::from_u16(header.api_key) else {
        return ready(error_frame(
            &header,
            ErrorCode::UnknownApiKey,
            &format!("unknown api key {}", header.api_key),
        ));
    };
    if !api.supports(header.version) {
        let (min, max) = api.versions();
        let message = format!(
            "{api} version {} not supported; this broker speaks {min}..={max}",
            header.version
        );
        return ready(error_frame(&header, ErrorCode::UnsupportedVersion, &message));
    }
    let shard = shard.clone();
    match api {
        ApiKey::Produce => produce::start(&shard, frame, origin).await,
        ApiKey::Fetch => Box::pin(async move { fetch::handle(&shard, &frame, origin).await }),
        ApiKey::ListOffsets => {
            Box::pin(async move { offsets::handle(&shard, &frame, origin).await })
        }
        ApiKey::Handshake => ready(admin::handshake(&shard, &frame)),
        ApiKey::Metadata => ready(admin::metadata(&shard, &frame)),
        ApiKey::ListTopics => ready(admin::list_topics(&shard, &frame)),
        ApiKey::CreateTopic => Box::pin(async move { admin::create_topic(&shard, frame).await }),
        ApiKey::DeleteTopic => Box::pin(async move { admin::delete_topic(&shard, frame).await }),
        ApiKey::DescribeTopic => {
            Box::pin(async move { admin::describe_topic(&shard, &frame, origin).await })
        }
        ApiKey::Stats => Box::pin(async move { admin::stats(&shard, &frame, origin).await }),
        ApiKey::Subscribe
        | ApiKey::GrantCredit
        | ApiKey::Unsubscribe
        | ApiKey::SubscriptionData => {
            // Subscriptions live on a client connection to the partition's owner.
            ready(error_frame(
                &header,
                ErrorCode::NotOwner,
                "subscriptions are served on a connection to the owning shard",
            ))
        }
    }
}

/// Stage one of a request forwarded by another shard.
pub async fn handle_forwarded(shard: &Rc<Shard>, frame: AlignedVec) -> Reply {
    let (header, _) = parts(&frame);
    let from = if header.api_key == ApiKey::Produce.as_u16()
        || header.api_key == ApiKey::Fetch.as_u16()
        || header.api_key == ApiKey::ListOffsets.as_u16()
    {
        Counters::add(&shard.counters.forwards_in, 1);
        Origin::Peer(u32::MAX)
    } else {
        Origin::Peer(u32::MAX)
    };
    start(shard, frame, from).await
}

/// Decodes a forwarded response frame into `T`, or `None` (the caller reports per-partition
/// errors) if the peer answered with an error body or garbage.
pub fn decode_reply<T>(frame: &AlignedVec) -> Option<T>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    let (raw, _) = wire::split_frame(frame, u32::MAX).ok()??;
    if raw.header.has_flag(wire::constants::FLAG_ERROR) {
        return None;
    }
    wire::decode_body::<T>(raw.body).ok()
}
