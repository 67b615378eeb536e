//! Splitting a request by partition owner, forwarding the parts, merging the answers.
//!
//! Contract: a client's request naming partitions owned by other shards is split into one
//! sub-request per owner ([`Split`]), keeping each partition's position; the sub-requests
//! leave in arrival order (so appends to a partition keep their order) and count as
//! forwards; the owners' answers are merged back by position ([`Answers`]), and an owner that
//! does not answer sensibly yields a `NOT_OWNER` result for its partitions. A forwarded
//! request is never forwarded again ([`route`]). Answers made piece by piece on the owners
//! (table reads, key queries, list offsets) are made within room the asking shard lent them
//! ([`Lending`]), so a connection's budget holds what other shards make for it.

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;

use wire::{AlignedVec, ErrorCode, Message};

use super::Origin;
use crate::budget::ResponseRoom;
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
split_request!(wire::DeleteRecordsRequest, DeleteRecordsTopic, wire::DeleteRecordsPartition);
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
        self.send_lending(shard, usize::MAX).await
    }

    /// [`Split::send`], lending each owner `lent_bytes` of room for its answer
    /// (`budget::RoomFrom::Lent`; the caller holds it; `usize::MAX`: none, no bound).
    pub async fn send_lending(self, shard: &Shard, lent_bytes: usize) -> Forwards {
        self.send_lending_each(shard, |_| lent_bytes).await
    }

    /// [`Split::send_lending`] with what each owner is lent told by `lent_bytes(owner)`.
    pub async fn send_lending_each(
        self,
        shard: &Shard,
        lent_bytes: impl Fn(u32) -> usize,
    ) -> Forwards {
        let mut forwards = Vec::with_capacity(self.remote.len());
        for (owner, sub) in self.remote {
            Counters::add(&shard.counters.forwards_out, 1);
            let id = shard.mesh.take_id();
            let reply = match wire::encode_request(0, &sub) {
                Ok(f) => shard.mesh.forward_send_as(owner, id, f, lent_bytes(owner)).await,
                Err(_) => None,
            };
            forwards.push(Forward { owner, id, reply });
        }
        forwards
    }

    /// How many owners it goes to.
    pub fn owners(&self) -> usize {
        self.remote.len()
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

/// A sub-request sent to its owner, waiting for the answer.
pub struct Forward {
    /// The owning shard.
    pub owner: u32,
    /// Its id between the shards (`mesh::ShardMsg::EndWait` names it).
    pub id: u64,
    /// Resolves to the answer; `None` if it could not be sent.
    pub reply: Option<futures_channel::oneshot::Receiver<wire::AlignedVec>>,
}

/// Sub-requests sent to owners, waiting for their answers.
pub type Forwards = Vec<Forward>;

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
partition_results!(wire::DeleteRecordsResponse, wire::DeleteRecordsPartitionResult);
partition_results!(wire::TableReadResponse, wire::TableReadPartitionResult);
partition_results!(wire::KeyQueryResponse, wire::KeyQueryPartitionResult);

/// The owners' answers, decoded (`None` for an owner that did not answer sensibly), and the
/// bytes of their frames.
pub struct Answers<R>(std::collections::BTreeMap<u32, Option<R>>, usize);

impl<R: PartitionResults> Answers<R> {
    /// Waits for every forward.
    pub async fn collect(forwards: Forwards) -> Self
    where
        R: rkyv::Archive,
        R::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>,
            > + rkyv::Deserialize<R, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        let mut frames = Vec::with_capacity(forwards.len());
        for f in forwards {
            let frame = match f.reply {
                Some(rx) => rx.await.ok(),
                None => None,
            };
            frames.push((f.owner, frame));
        }
        Self::decode(frames)
    }

    /// Decodes the owners' answer frames (`None`: no answer).
    pub fn decode(frames: Vec<(u32, Option<AlignedVec>)>) -> Self
    where
        R: rkyv::Archive,
        R::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>,
            > + rkyv::Deserialize<R, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        let (mut answers, mut frame_bytes) = (std::collections::BTreeMap::new(), 0);
        for (owner, frame) in frames {
            frame_bytes += frame.as_ref().map_or(0, AlignedVec::len);
            answers.insert(owner, frame.and_then(|f| decode_reply::<R>(&f)));
        }
        Answers(answers, frame_bytes)
    }

    /// The bytes of the owners' answer frames.
    pub fn frame_bytes(&self) -> usize {
        self.1
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

/// How the owners of a request's partitions are lent room for their answers (the owners
/// take what making them takes from it: `budget::RoomFrom::Lent`), so that an answer made on
/// another shard is held in the asking connection's budgets before it is made. Each owner is
/// lent `first_bytes` with its sub-request — nothing if `wait_first` (the owners may wait for
/// data first: a wait holds no room). Partitions whose owner needed more (`ROOM_SHORT`,
/// `short`) are asked for again with more ([`ask_short_again`]).
pub struct Lending<R> {
    /// Lent to each owner with its sub-request (unless `wait_first`).
    pub first_bytes: usize,
    /// The owners may wait for data before they read: lend nothing at first.
    pub wait_first: bool,
    /// The owner needed more room than it was lent.
    pub short: fn(&R) -> bool,
}

/// The most room an owner is lent for one partition's answer: a timestamp lookup's
/// allowance for the largest batch (twice `BATCH_BYTES_MAX`), and more for a read window and
/// the records kept.
pub const LENT_BYTES_MAX: usize = 4 * wire::constants::BATCH_BYTES_MAX as usize + (1 << 20);

/// Per topic, every partition's result in request order, a forwarded one's with where it
/// was asked for.
type Results<R, P> = Vec<(String, Vec<(R, Option<(Forwarded, P)>)>)>;

/// Answers a request of topics and partitions partition by partition, in request order:
/// each partition this shard owns by `local` (one after another, in order, after the others
/// were forwarded), the others forwarded to their owners in one sub-request each (made by
/// `empty`), lent room for their answers from `room` when a connection reserved one
/// ([`Lending`]); a partition that cannot be routed, or whose owner did not answer, gets
/// `failed(partition, code)`. A name is routed as the topic `routing_topic` gives (a state
/// table's: its topic's partitions) and forwarded as it is.
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
    room: Option<&ResponseRoom>,
    lending: Lending<Resp::Result>,
) -> Vec<(String, Vec<Resp::Result>)>
where
    Req: SplitRequest,
    Req::Partition: Clone,
    Resp: PartitionResults + rkyv::Archive,
    Resp::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<Resp, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    Fut: Future<Output = Resp::Result>,
{
    enum Slot<P, R> {
        Done(R),
        Local(P),
        Remote(Forwarded, P),
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
                Ok(Owner::Here) => Slot::Local(p),
                Ok(Owner::Peer(owner)) => {
                    Slot::Remote(split.add(owner, &name, i, p.clone(), &empty), p)
                }
            });
        }
        slots.push((name, topic_slots));
    }
    // Room for the owners' answers, taken before anything of the response is made here.
    let first_lent_bytes = if lending.wait_first { 0 } else { lending.first_bytes };
    let lent_bytes = room.map_or(usize::MAX, |_| first_lent_bytes);
    let lent_total = first_lent_bytes * split.owners();
    if let Some(room) = room.filter(|_| lent_total > 0) {
        if !room.try_grow(lent_total) {
            room.grow(lent_total).await;
        }
    }
    let forwards = split.send_lending(shard, lent_bytes).await;
    for (name, topic_slots) in &mut slots {
        for slot in topic_slots.iter_mut() {
            if let Slot::Local(p) = slot {
                *slot = Slot::Done(local(name.clone(), p.clone()).await);
            }
        }
    }
    let mut answers = Answers::<Resp>::collect(forwards).await;
    if let Some(room) = room.filter(|_| lent_total > 0) {
        room.shrink(lent_total.saturating_sub(answers.frame_bytes()));
    }
    // Every result in request order; the forwarded ones with where they came from.
    let mut results: Results<Resp::Result, Req::Partition> = Vec::with_capacity(slots.len());
    for (name, topic_slots) in slots {
        let topic_results = topic_slots
            .into_iter()
            .map(|slot| match slot {
                Slot::Done(r) => (r, None),
                Slot::Local(_) => unreachable!("every local partition was answered"),
                Slot::Remote(f, p) => {
                    let r =
                        answers.take(&f).unwrap_or_else(|| failed(f.index, ErrorCode::NotOwner));
                    (r, Some((f, p)))
                }
            })
            .collect();
        results.push((name, topic_results));
    }
    if let Some(room) = room {
        let (lent, results) = ((&lending, first_lent_bytes), &mut results);
        ask_short_again::<Req, Resp>(shard, room, lent, results, &empty, &failed).await;
    }
    results
        .into_iter()
        .map(|(name, topic_results)| (name, topic_results.into_iter().map(|(r, _)| r).collect()))
        .collect()
}

/// Asks the owners again for every partition whose answer was short of room, all at once on
/// each rung of more room (`first_bytes` if nothing was lent, 8 MiB, [`LENT_BYTES_MAX`]), the
/// room for them taken first — waiting for it if need be, as local readers do (`grow` gives
/// back what the response holds first, so two responses of one connection never wait for
/// each other; what the response made is not counted meanwhile); what the answers did not use
/// is given back. One still short is answered `RESOURCE_LIMIT`.
async fn ask_short_again<Req, Resp>(
    shard: &Shard,
    room: &ResponseRoom,
    (lending, first_lent_bytes): (&Lending<Resp::Result>, usize),
    results: &mut Results<Resp::Result, Req::Partition>,
    empty: impl Fn() -> Req,
    failed: impl Fn(u32, ErrorCode) -> Resp::Result,
) where
    Req: SplitRequest,
    Req::Partition: Clone,
    Resp: PartitionResults + rkyv::Archive,
    Resp::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<Resp, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    let rungs = [lending.first_bytes, 8 << 20, LENT_BYTES_MAX];
    for lent_bytes in rungs.into_iter().filter(|&b| b > first_lent_bytes) {
        let mut again = Split::<Req>::default();
        let mut asked = Vec::new();
        let mut per_owner: BTreeMap<u32, usize> = BTreeMap::new();
        for (t, (name, topic_results)) in results.iter().enumerate() {
            for (i, (r, from)) in topic_results.iter().enumerate() {
                if let Some((f, p)) = from.as_ref().filter(|_| (lending.short)(r)) {
                    asked.push((t, i, again.add(f.owner, name, f.index, p.clone(), &empty)));
                    *per_owner.entry(f.owner).or_default() += lent_bytes;
                }
            }
        }
        if asked.is_empty() {
            return;
        }
        let total_bytes = lent_bytes * asked.len();
        if !room.try_grow(total_bytes) {
            room.grow(total_bytes).await;
        }
        let forwards = again.send_lending_each(shard, |owner| per_owner[&owner]).await;
        let mut answers = Answers::<Resp>::collect(forwards).await;
        room.shrink(total_bytes.saturating_sub(answers.frame_bytes()));
        for (t, i, f) in asked {
            let r = answers.take(&f).unwrap_or_else(|| failed(f.index, ErrorCode::NotOwner));
            results[t].1[i].0 = r;
        }
    }
    for (r, from) in results.iter_mut().flat_map(|(_, t)| t.iter_mut()) {
        if let Some((f, _)) = from.as_ref().filter(|_| (lending.short)(r)) {
            *r = failed(f.index, ErrorCode::ResourceLimit);
        }
    }
}
