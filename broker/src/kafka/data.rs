//! The data path: Produce, Fetch, ListOffsets and InitProducerId, each translated into the
//! native request and answered from the native response.
//!
//! Produce converts every partition's Kafka batches at ingress (`convert.rs`) and runs the
//! native produce in stage one (so a connection's batches are enqueued in arrival order, as
//! an idempotent producer needs); acks 0/1/all map to the native `none`/`written`/`durable`.
//! A partition whose batches do not convert is answered with its own error; the others are
//! appended.

use std::collections::HashMap;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    fetch_response, list_offsets_response, produce_response, FetchRequest, FetchResponse,
    InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse,
    ProduceRequest, ProduceResponse,
};
use kafka_protocol::ResponseError as K;
use wire::constants::BATCH_BYTES_MAX;
use wire::AckLevel;

use super::connection::Session;
use super::connection::{ready, respond, Answer, Ctx};
use super::convert;
use super::error::{kafka_code_raw, kafka_data_code_raw, KafkaError};
use super::native;
use super::sasl::allowed;
use crate::auth::acl::{Operation, Resource};
use crate::budget::ResponseRoom;

type Key = (String, i32);

/// Produce (v3+).
pub async fn produce(s: &Session, ctx: Ctx, req: ProduceRequest) -> Answer {
    let shard = &s.shard;
    let ack = match req.acks {
        0 => AckLevel::None,
        1 => AckLevel::Written,
        _ => AckLevel::Durable,
    };
    let metadata = shard.metadata();
    // The native batches the records become: held from the shard's budget as they grow,
    // at most what one native request may carry, until the answer.
    let mut room = ConvertRoom::new(shard.config.frame_body_bytes_max as usize);
    let mut failed: HashMap<Key, (i16, String)> = HashMap::new();
    let mut topics = Vec::with_capacity(req.topic_data.len());
    let mut order: Vec<(String, Vec<i32>)> = Vec::with_capacity(req.topic_data.len());
    for t in &req.topic_data {
        let name = t.name.as_str().to_owned();
        let batch_bytes_max = metadata
            .topic(&name)
            .map(|topic| topic.settings.batch_bytes_max)
            .filter(|&b| b != 0)
            .unwrap_or(BATCH_BYTES_MAX) as usize;
        let mut partitions = Vec::with_capacity(t.partition_data.len());
        let mut indexes = Vec::with_capacity(t.partition_data.len());
        // Write on each topic, as Kafka checks it: a denied topic's partitions are answered
        // TOPIC_AUTHORIZATION_FAILED and the others are written (the native check refuses a
        // request naming any denied topic whole).
        let writable = allowed(s, Operation::Write, Resource::Topic(&name));
        for p in &t.partition_data {
            indexes.push(p.index);
            let key = (name.clone(), p.index);
            if !writable {
                let message = format!("not authorized to write to topic {name}");
                failed.insert(key, (K::TopicAuthorizationFailed.code(), message));
                continue;
            }
            let converted = match (&p.records, u32::try_from(p.index)) {
                (_, Err(_)) => {
                    Err((K::UnknownTopicOrPartition.code(), "negative partition".into()))
                }
                (None, _) => Err((K::InvalidRecord.code(), "no records".into())),
                (Some(records), Ok(_)) => room.convert(shard, records, batch_bytes_max),
            };
            match converted {
                Ok(c) if !c.batches.is_empty() => partitions.push(wire::ProducePartition {
                    partition: p.index as u32,
                    batches: c.batches.to_vec(),
                    expect: wire::ExpectedPosition::Any,
                }),
                Ok(_) => {
                    failed.insert(key, (K::InvalidRecord.code(), "no records".into()));
                }
                Err(e) => {
                    tracing::debug!(topic = %key.0, partition = key.1, error = %e.1, "kafka produce refused");
                    failed.insert(key, e);
                }
            }
        }
        order.push((name.clone(), indexes));
        if !partitions.is_empty() {
            topics.push(wire::ProduceTopic { name, partitions });
        }
    }
    let acks = req.acks;
    let timeout_ms = req.timeout_ms.max(0) as u32;
    let reply = if topics.is_empty() {
        None
    } else {
        let native_req = wire::ProduceRequest { ack, timeout_ms, topics };
        Some(native::start(s, &native_req).await)
    };
    let close_now = s.close_now.clone();
    Box::pin(async move {
        let _room = room;
        let result: Result<Option<wire::ProduceResponse>, KafkaError> = match reply {
            None => Ok(None),
            Some(Err(e)) => Err(e),
            Some(Ok(reply)) => native::decode(&reply.await).map(Some),
        };
        let mut done: HashMap<Key, &wire::ProducePartitionResult> = HashMap::new();
        if let Ok(Some(resp)) = &result {
            for t in &resp.topics {
                for p in &t.partitions {
                    done.insert((t.name.clone(), p.partition as i32), p);
                }
            }
        }
        let mut out = ProduceResponse::default();
        for (name, indexes) in order {
            let mut t = produce_response::TopicProduceResponse::default();
            t.name = kafka_protocol::messages::TopicName(name.clone().into());
            for index in indexes {
                let key = (name.clone(), index);
                let mut p = produce_response::PartitionProduceResponse::default();
                p.index = index;
                p.base_offset = -1;
                p.log_append_time_ms = -1;
                p.log_start_offset = -1;
                if let Some((code, message)) = failed.get(&key) {
                    p.error_code = *code;
                    p.error_message = Some(message.clone().into());
                } else if let Err(e) = &result {
                    p.error_code = e.data_code();
                    p.error_message = Some(e.to_string().into());
                } else if let Some(r) = done.get(&key) {
                    p.error_code = kafka_data_code_raw(r.error);
                    p.base_offset = r.base_offset;
                } else {
                    p.error_code = K::UnknownServerError.code();
                }
                t.partition_responses.push(p);
            }
            out.responses.push(t);
        }
        if acks == 0 {
            // Kafka's acks=0: no response at all. A failed partition closes the connection,
            // as Kafka does: the client hears of it only so (and refreshes its metadata).
            let failed = out.responses.iter().flat_map(|t| &t.partition_responses);
            if failed.into_iter().any(|p| p.error_code != 0) {
                close_now.advance(1);
                return Some(Vec::new()); // the writer closes here (`connection.rs`)
            }
            return None;
        }
        respond(ctx, &out)
    })
}

/// What a produce request's records converted to native batches hold (`ConvertRoom::convert`).
struct ConvertRoom {
    held: Option<crate::budget::Held>,
    used_bytes: usize,
    bytes_max: usize,
}

impl ConvertRoom {
    fn new(bytes_max: usize) -> Self {
        ConvertRoom { held: None, used_bytes: 0, bytes_max }
    }

    /// Converts one partition's records, holding room for the native batches before they
    /// are built: first a guess from the records' size, then four times more each time the
    /// batches pass it (compressed records: a few hundred bytes can decompress to 16 MiB;
    /// the conversion goes on, it does not start again), up to `bytes_max` over the request
    /// (MESSAGE_TOO_LARGE past it); what was not used is given back. The room is taken at
    /// once, past the budget if need be, never waited for: this request holds its frame
    /// already, and holders waiting for more while holding would wait on each other for
    /// ever. Frames read after it wait for the room it took (`codec::read_frame`).
    fn convert(
        &mut self,
        shard: &crate::shard::Shard,
        records: &bytes::Bytes,
        batch_bytes_max: usize,
    ) -> Result<convert::Converted, (i16, String)> {
        let left = self.bytes_max.saturating_sub(self.used_bytes);
        let first = records.len().saturating_mul(2).saturating_add(64 << 10).min(left);
        let used = self.used_bytes;
        let held = self.held.get_or_insert_with(|| shard.memory.hold_now(0));
        held.grow((used + first).saturating_sub(held.bytes()));
        let mut room = first;
        let mut more = |needed: usize| {
            if needed > left {
                return None;
            }
            let next = needed.max(room.saturating_mul(4)).min(left);
            held.grow((used + next).saturating_sub(held.bytes()));
            room = next;
            Some(next)
        };
        let converted = convert::to_native_within(records, batch_bytes_max, first, &mut more);
        if let Ok(Some(c)) = &converted {
            self.used_bytes += c.batches.len();
        }
        // Room past what the batches took goes back.
        let held = self.held.as_mut().expect("taken above");
        held.shrink(held.bytes().saturating_sub(self.used_bytes));
        match converted {
            Ok(Some(c)) => Ok(c),
            Ok(None) => {
                let message =
                    format!("the request's records convert to more than {} bytes", self.bytes_max);
                Err((K::MessageTooLarge.code(), message))
            }
            Err(e) => Err((e.code(), e.to_string())),
        }
    }
}

/// Fetch (v4+): whole stored batches from each partition's offset, long-polled.
/// `room` is what the connection reserved for the answer; the native fetch grows it for a
/// first batch beyond the limits.
pub async fn fetch(s: &Session, ctx: Ctx, req: FetchRequest, room: Rc<ResponseRoom>) -> Answer {
    // What the connection reserved (`connection.rs`): 0 or less is "the first batch only"
    // (KIP-74), whose room the native fetch grows; never more than was reserved.
    let max_bytes = req.max_bytes.max(0) as u32;
    let mut topics: Vec<wire::FetchTopic> = Vec::with_capacity(req.topics.len());
    let mut failed: HashMap<Key, i16> = HashMap::new();
    let mut order: Vec<(String, Vec<i32>)> = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.topic.as_str().to_owned();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        let mut indexes = Vec::with_capacity(t.partitions.len());
        // Read on each topic, as Kafka checks it (see `produce`).
        let readable = allowed(s, Operation::Read, Resource::Topic(&name));
        for p in &t.partitions {
            indexes.push(p.partition);
            if !readable {
                failed.insert((name.clone(), p.partition), K::TopicAuthorizationFailed.code());
            } else if p.partition < 0 {
                failed.insert((name.clone(), p.partition), K::UnknownTopicOrPartition.code());
            } else if p.fetch_offset < 0 {
                failed.insert((name.clone(), p.partition), K::OffsetOutOfRange.code());
            } else {
                partitions.push(wire::FetchPartition {
                    partition: p.partition as u32,
                    offset: p.fetch_offset as u64,
                    max_bytes: p.partition_max_bytes.max(0) as u32,
                });
            }
        }
        order.push((name.clone(), indexes));
        if !partitions.is_empty() {
            topics.push(wire::FetchTopic { name, partitions });
        }
    }
    let native_req = wire::FetchRequest {
        // A partition refused here makes the answer due, as one the native fetch refuses does.
        max_wait_ms: if failed.is_empty() { req.max_wait_ms.max(0) as u32 } else { 0 },
        min_bytes: req.min_bytes.max(0) as u32,
        max_bytes,
        topics,
    };
    let reply = native::start_in(s, &native_req, Some(room)).await;
    // Converted batches are written uncompressed: at most what the connection reserved over
    // the answer (`max_bytes` within `fetch_response_bytes_max`; and one batch), whatever the
    // stored ones open to.
    let mut converted_left =
        (max_bytes as usize).min(s.shard.config.fetch_response_bytes_max as usize);
    Box::pin(async move {
        let frame = match reply {
            Err(e) => Err(e),
            Ok(reply) => Ok(reply.await),
        };
        // The batches are read in place from the native response (no copy before conversion).
        let result =
            frame.as_ref().map_err(Clone::clone).and_then(native::access::<wire::FetchResponse>);
        let mut done: HashMap<(&str, i32), &wire::ArchivedFetchPartitionResult> = HashMap::new();
        if let Ok(resp) = result.as_ref() {
            for t in resp.topics.iter() {
                for p in t.partitions.iter() {
                    done.insert((t.name.as_str(), p.partition.to_native() as i32), p);
                }
            }
        }
        let mut out = FetchResponse::default();
        let mut answered_bytes = 0usize;
        for (name, indexes) in &order {
            let mut t = fetch_response::FetchableTopicResponse::default();
            t.topic = kafka_protocol::messages::TopicName(name.clone().into());
            for &index in indexes {
                let mut p = fetch_response::PartitionData::default();
                p.partition_index = index;
                p.high_watermark = -1;
                p.last_stable_offset = -1;
                p.log_start_offset = -1;
                p.preferred_read_replica = kafka_protocol::messages::BrokerId(-1);
                p.records = Some(Bytes::new());
                if let Some(code) = failed.get(&(name.clone(), index)) {
                    p.error_code = *code;
                } else if let Err(e) = &result {
                    p.error_code = e.data_code();
                } else if let Some(r) = done.get(&(name.as_str(), index)) {
                    p.error_code = kafka_data_code_raw(r.error.to_native());
                    p.high_watermark = r.high_watermark.to_native() as i64;
                    p.last_stable_offset = p.high_watermark;
                    p.log_start_offset = r.log_start_offset.to_native() as i64;
                    let batches = r.batches.as_slice();
                    // Past the answer's bytes, a partition's records wait for the next fetch.
                    if !batches.is_empty() && (converted_left > 0 || answered_bytes == 0) {
                        let mut records = BytesMut::with_capacity(batches.len());
                        match convert::to_kafka_within(batches, &mut records, converted_left) {
                            Ok(()) => {
                                answered_bytes += records.len();
                                converted_left = converted_left.saturating_sub(records.len());
                                p.records = Some(records.freeze());
                            }
                            Err(e) => {
                                tracing::warn!(topic = %name, partition = index, error = %e, "stored batches do not convert");
                                p.error_code = e.code();
                            }
                        }
                    }
                } else {
                    p.error_code = K::UnknownTopicOrPartition.code();
                }
                t.partitions.push(p);
            }
            out.responses.push(t);
        }
        respond(ctx, &out)
    })
}

/// ListOffsets (v1+): -2 earliest, -1 latest, otherwise the first offset at or after a
/// timestamp.
pub async fn list_offsets(s: &Session, ctx: Ctx, req: ListOffsetsRequest) -> Answer {
    let mut topics = Vec::with_capacity(req.topics.len());
    // Describe on each topic, as Kafka checks it (see `produce`).
    let denied: std::collections::HashSet<&str> = req
        .topics
        .iter()
        .map(|t| t.name.as_str())
        .filter(|name| !allowed(s, Operation::Describe, Resource::Topic(name)))
        .collect();
    for t in req.topics.iter().filter(|t| !denied.contains(t.name.as_str())) {
        let partitions = t
            .partitions
            .iter()
            .filter(|p| p.partition_index >= 0)
            .map(|p| wire::ListOffsetsPartition {
                partition: p.partition_index as u32,
                spec: match p.timestamp {
                    -2 => wire::OffsetSpec::Earliest,
                    -1 => wire::OffsetSpec::Latest,
                    ts => wire::OffsetSpec::Timestamp(ts),
                },
            })
            .collect();
        topics.push(wire::ListOffsetsTopic { name: t.name.as_str().to_owned(), partitions });
    }
    let result: Result<wire::ListOffsetsResponse, KafkaError> =
        native::call(s, &wire::ListOffsetsRequest { topics }).await;
    let mut done: HashMap<Key, wire::ListOffsetsPartitionResult> = HashMap::new();
    if let Ok(resp) = &result {
        for t in &resp.topics {
            for p in &t.partitions {
                done.insert((t.name.clone(), p.partition as i32), p.clone());
            }
        }
    }
    let mut out = ListOffsetsResponse::default();
    for t in &req.topics {
        let mut rt = list_offsets_response::ListOffsetsTopicResponse::default();
        rt.name = t.name.clone();
        for p in &t.partitions {
            let mut rp = list_offsets_response::ListOffsetsPartitionResponse::default();
            rp.partition_index = p.partition_index;
            rp.timestamp = -1;
            rp.offset = -1;
            rp.leader_epoch = -1;
            match (&result, done.get(&(t.name.as_str().to_owned(), p.partition_index))) {
                _ if denied.contains(t.name.as_str()) => {
                    rp.error_code = K::TopicAuthorizationFailed.code();
                }
                (Err(e), _) => rp.error_code = e.data_code(),
                // A timestamp with no record at or after it: offset -1, as Kafka (the native
                // answer's end offset with timestamp -1 broke Java's offsetsForTimes).
                (Ok(_), Some(r)) if p.timestamp >= 0 && r.timestamp_ms < 0 => {
                    rp.error_code = kafka_data_code_raw(r.error);
                }
                (Ok(_), Some(r)) => {
                    rp.error_code = kafka_data_code_raw(r.error);
                    rp.offset = r.offset as i64;
                    rp.timestamp = r.timestamp_ms;
                }
                (Ok(_), None) => rp.error_code = K::UnknownTopicOrPartition.code(),
            }
            rt.partitions.push(rp);
        }
        out.topics.push(rt);
    }
    ready(respond(ctx, &out))
}

/// InitProducerId: a producer id from the native allocator (idempotent producers).
pub async fn init_producer_id(s: &Session, ctx: Ctx, req: InitProducerIdRequest) -> Answer {
    let transactional_id =
        req.transactional_id.as_ref().map(|t| t.as_str().to_owned()).unwrap_or_default();
    let result: Result<wire::InitProducerIdResponse, KafkaError> =
        native::call(s, &wire::InitProducerIdRequest { transactional_id }).await;
    let mut out = InitProducerIdResponse::default();
    match result {
        Ok(r) if r.error == 0 => {
            out.producer_id = kafka_protocol::messages::ProducerId(r.producer_id);
            out.producer_epoch = r.producer_epoch;
        }
        Ok(r) => {
            out.error_code = kafka_code_raw(r.error);
            out.producer_id = kafka_protocol::messages::ProducerId(-1);
            out.producer_epoch = -1;
        }
        Err(e) => {
            out.error_code = match e {
                // The transactional id's write was denied (`auth/authorize.rs`).
                KafkaError::Native { code: wire::ErrorCode::AuthorizationFailed, .. } => {
                    K::TransactionalIdAuthorizationFailed.code()
                }
                e => e.code(),
            };
            out.producer_id = kafka_protocol::messages::ProducerId(-1);
            out.producer_epoch = -1;
        }
    }
    ready(respond(ctx, &out))
}
