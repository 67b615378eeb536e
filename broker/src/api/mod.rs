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
    // Only partition-routed apis count as data-path forwards.
    if matches!(
        ApiKey::from_u16(header.api_key),
        Some(ApiKey::Produce | ApiKey::Fetch | ApiKey::ListOffsets)
    ) {
        Counters::add(&shard.counters.forwards_in, 1);
    }
    start(shard, frame, Origin::Peer(u32::MAX)).await
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

/// Where the answer for one forwarded partition will be: the owner it went to, and its
/// place (topic, partition) in the sub-request that owner received.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded {
    /// Owning shard.
    pub owner: u32,
    /// Topic position in the sub-request.
    pub topic: usize,
    /// Partition position within that topic.
    pub partition: usize,
    /// The partition number (for an error result if the owner did not answer).
    pub index: u32,
}

/// Sub-requests sent to owners, waiting for their answers.
pub type Forwards = Vec<(u32, Option<futures_channel::oneshot::Receiver<wire::AlignedVec>>)>;

/// Sends every owner its sub-request now, in order, counting each as a forward.
pub async fn send_forwards<T: Message>(
    shard: &Shard,
    remote: std::collections::BTreeMap<u32, T>,
) -> Forwards {
    let mut forwards = Vec::with_capacity(remote.len());
    for (owner, sub) in remote {
        Counters::add(&shard.counters.forwards_out, 1);
        let rx = match wire::encode_request(0, &sub) {
            Ok(f) => shard.forward_send(owner, f).await,
            Err(_) => None,
        };
        forwards.push((owner, rx));
    }
    forwards
}

/// Per-partition results of a response, by position.
pub trait PartitionResults {
    /// One partition's result.
    type Result: Clone;
    /// The result at (`topic`, `partition`) positions.
    fn result(&self, topic: usize, partition: usize) -> Option<&Self::Result>;
}

macro_rules! partition_results {
    ($resp:ty, $result:ty) => {
        impl PartitionResults for $resp {
            type Result = $result;
            fn result(&self, topic: usize, partition: usize) -> Option<&$result> {
                self.topics.get(topic)?.partitions.get(partition)
            }
        }
    };
}
partition_results!(wire::ProduceResponse, wire::ProducePartitionResult);
partition_results!(wire::FetchResponse, wire::FetchPartitionResult);
partition_results!(wire::ListOffsetsResponse, wire::ListOffsetsPartitionResult);

/// The owners' answers, decoded (`None` for an owner that did not answer sensibly).
pub struct Answers<R>(std::collections::BTreeMap<u32, Option<R>>);

impl<R: PartitionResults> Answers<R> {
    /// Waits for every forward.
    pub async fn collect(forwards: Forwards) -> Self
    where
        R: rkyv::Archive,
        R::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>,
            > + rkyv::Deserialize<R, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        let mut answers = std::collections::BTreeMap::new();
        for (owner, rx) in forwards {
            let resp = match rx {
                Some(rx) => rx.await.ok().and_then(|f| decode_reply::<R>(&f)),
                None => None,
            };
            answers.insert(owner, resp);
        }
        Answers(answers)
    }

    /// The answer for one forwarded partition, if its owner gave one.
    pub fn get(&self, f: &Forwarded) -> Option<R::Result> {
        self.0.get(&f.owner)?.as_ref()?.result(f.topic, f.partition).cloned()
    }
}
