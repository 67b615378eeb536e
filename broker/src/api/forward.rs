//! Splitting a request by partition owner, forwarding the parts, merging the answers.
//!
//! Contract: a client's request naming partitions owned by other shards is split into one
//! sub-request per owner ([`Split`]), keeping each partition's position; the sub-requests
//! leave in arrival order (so appends to a partition keep their order) and count as
//! forwards; the owners' answers are merged back by position ([`Answers`]), and an owner that
//! does not answer sensibly yields a `NOT_OWNER` result for its partitions. A forwarded
//! request is never forwarded again ([`route`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;

use wire::{AlignedVec, ErrorCode, Message};

use super::Origin;
use crate::counters::Counters;
use crate::shard::Shard;

/// Where one partition of a request is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// On this shard.
    Here,
    /// On another shard, to which it is forwarded.
    Peer(u32),
}

/// Routes partition `index` of `topic`: here, on a peer (only for a client's request), or
/// refused with the error code for its partition result.
pub fn route(shard: &Shard, topic: &str, index: u32, origin: Origin) -> Result<Owner, ErrorCode> {
    match shard.owner(topic, index) {
        Err(code) => Err(code),
        Ok(owner) if owner == shard.id => Ok(Owner::Here),
        Ok(_) if origin != Origin::Client => Err(ErrorCode::NotOwner),
        Ok(owner) => Ok(Owner::Peer(owner)),
    }
}

/// A request made of topics, each with partitions, that can be split by owner.
pub trait SplitRequest: Message {
    /// One partition's part of the request.
    type Partition;
    /// Appends `partition` under topic `name` (a new topic entry unless the last one is
    /// `name`) and returns its (topic, partition) position.
    fn push(&mut self, name: &str, partition: Self::Partition) -> (usize, usize);
}

macro_rules! split_request {
    ($req:ty, $topic:ident, $partition:ty) => {
        impl SplitRequest for $req {
            type Partition = $partition;
            fn push(&mut self, name: &str, partition: $partition) -> (usize, usize) {
                if self.topics.last().is_none_or(|t| t.name != name) {
                    self.topics
                        .push(wire::$topic { name: name.to_owned(), partitions: Vec::new() });
                }
                let t = self.topics.len() - 1;
                self.topics[t].partitions.push(partition);
                (t, self.topics[t].partitions.len() - 1)
            }
        }
    };
}
split_request!(wire::ProduceRequest, ProduceTopic, wire::ProducePartition);
split_request!(wire::FetchRequest, FetchTopic, wire::FetchPartition);
split_request!(wire::ListOffsetsRequest, ListOffsetsTopic, wire::ListOffsetsPartition);
split_request!(wire::TableReadRequest, TableReadTopic, wire::TableReadPartition);
split_request!(wire::KeyQueryRequest, KeyQueryTopic, wire::KeyQueryPartition);

/// The sub-requests for other owners, built while a request is routed.
pub struct Split<T> {
    remote: BTreeMap<u32, T>,
}

impl<T: SplitRequest> Default for Split<T> {
    fn default() -> Self {
        Split { remote: BTreeMap::new() }
    }
}

impl<T: SplitRequest> Split<T> {
    /// Adds partition `index` of topic `name` to `owner`'s sub-request (made by `empty` on
    /// first use) and returns where its answer will be.
    pub fn add(
        &mut self,
        owner: u32,
        name: &str,
        index: u32,
        partition: T::Partition,
        empty: impl FnOnce() -> T,
    ) -> Forwarded {
        let (topic, position) =
            self.remote.entry(owner).or_insert_with(empty).push(name, partition);
        Forwarded { owner, topic, partition: position, index }
    }

    /// Sends every owner its sub-request now, in order, counting each as a forward.
    pub async fn send(self, shard: &Shard) -> Forwards {
        let mut forwards = Vec::with_capacity(self.remote.len());
        for (owner, sub) in self.remote {
            Counters::add(&shard.counters.forwards_out, 1);
            let rx = match wire::encode_request(0, &sub) {
                Ok(f) => shard.mesh.forward_send(owner, f).await,
                Err(_) => None,
            };
            forwards.push((owner, rx));
        }
        forwards
    }
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

/// Per-partition results of a response, by position.
pub trait PartitionResults {
    /// One partition's result.
    type Result: Default;
    /// The result at (`topic`, `partition`) positions.
    fn result_mut(&mut self, topic: usize, partition: usize) -> Option<&mut Self::Result>;
}

macro_rules! partition_results {
    ($resp:ty, $result:ty) => {
        impl PartitionResults for $resp {
            type Result = $result;
            fn result_mut(&mut self, topic: usize, partition: usize) -> Option<&mut $result> {
                self.topics.get_mut(topic)?.partitions.get_mut(partition)
            }
        }
    };
}
partition_results!(wire::ProduceResponse, wire::ProducePartitionResult);
partition_results!(wire::FetchResponse, wire::FetchPartitionResult);
partition_results!(wire::ListOffsetsResponse, wire::ListOffsetsPartitionResult);
partition_results!(wire::TableReadResponse, wire::TableReadPartitionResult);
partition_results!(wire::KeyQueryResponse, wire::KeyQueryPartitionResult);

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

    /// The answer for one forwarded partition, if its owner gave one, taken out (a
    /// partition's answer is taken once: it is moved into the response, not copied).
    pub fn take(&mut self, f: &Forwarded) -> Option<R::Result> {
        let answer = self.0.get_mut(&f.owner)?.as_mut()?;
        answer.result_mut(f.topic, f.partition).map(std::mem::take)
    }

    /// Every owner's answer, to change in place.
    pub fn answers_mut(&mut self) -> impl Iterator<Item = &mut R> {
        self.0.values_mut().flatten()
    }
}

/// Answers a request of topics and partitions partition by partition, in request order:
/// each partition this shard owns by `local` (one after another, in order), the others
/// forwarded to their owners in one sub-request each (made by `empty`); a partition that
/// cannot be routed, or whose owner did not answer, gets `failed(partition, code)`. A name
/// is routed as the topic `routing_topic` gives (a state table's: its topic's partitions)
/// and forwarded as it is.
#[allow(clippy::too_many_arguments)]
pub async fn per_partition<Req, Resp, Fut>(
    shard: &Rc<Shard>,
    origin: Origin,
    topics: Vec<(String, Vec<Req::Partition>)>,
    routing_topic: impl Fn(&str) -> String,
    index: impl Fn(&Req::Partition) -> u32,
    empty: impl Fn() -> Req,
    failed: impl Fn(u32, ErrorCode) -> Resp::Result,
    mut local: impl FnMut(String, Req::Partition) -> Fut,
) -> Vec<(String, Vec<Resp::Result>)>
where
    Req: SplitRequest,
    Resp: PartitionResults + rkyv::Archive,
    Resp::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<Resp, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    Fut: Future<Output = Resp::Result>,
{
    enum Slot<R> {
        Done(R),
        Remote(Forwarded),
    }
    let mut slots = Vec::with_capacity(topics.len());
    let mut split = Split::<Req>::default();
    for (name, partitions) in topics {
        let mut topic_slots = Vec::with_capacity(partitions.len());
        let topic = routing_topic(&name);
        for p in partitions {
            let i = index(&p);
            topic_slots.push(match route(shard, &topic, i, origin) {
                Err(code) => Slot::Done(failed(i, code)),
                Ok(Owner::Here) => Slot::Done(local(name.clone(), p).await),
                Ok(Owner::Peer(owner)) => Slot::Remote(split.add(owner, &name, i, p, &empty)),
            });
        }
        slots.push((name, topic_slots));
    }
    let mut answers = Answers::<Resp>::collect(split.send(shard).await).await;
    slots
        .into_iter()
        .map(|(name, topic_slots)| {
            let results = topic_slots
                .into_iter()
                .map(|slot| match slot {
                    Slot::Done(r) => r,
                    Slot::Remote(f) => {
                        answers.take(&f).unwrap_or_else(|| failed(f.index, ErrorCode::NotOwner))
                    }
                })
                .collect();
            (name, results)
        })
        .collect()
}
