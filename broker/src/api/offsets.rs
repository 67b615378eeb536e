//! List offsets: earliest, latest, or the first offset at or after a timestamp.

use std::rc::Rc;

use wire::{
    ErrorCode, ListOffsetsPartition, ListOffsetsPartitionResult, ListOffsetsRequest,
    ListOffsetsResponse, ListOffsetsTopicResult, OffsetSpec,
};

use super::forward::{route, Answers, Forwarded, Owner, Split};
use super::{error_frame, respond, Origin};
use crate::request::Request;
use crate::shard::Shard;

fn failed(partition: u32, code: ErrorCode) -> ListOffsetsPartitionResult {
    ListOffsetsPartitionResult { partition, error: code.as_u16(), offset: 0, timestamp_ms: -1 }
}

enum Slot {
    Done(ListOffsetsPartitionResult),
    Remote(Forwarded),
}

/// Answers a list-offsets request.
pub async fn handle(shard: &Rc<Shard>, request: &Request, origin: Origin) -> wire::AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<ListOffsetsRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    let mut slots: Vec<(String, Vec<Slot>)> = Vec::new();
    let mut split = Split::<ListOffsetsRequest>::default();
    for t in &req.topics {
        let mut topic_slots = Vec::new();
        for p in &t.partitions {
            let slot = match route(shard, &t.name, p.partition, origin) {
                Err(code) => Slot::Done(failed(p.partition, code)),
                Ok(Owner::Here) => Slot::Done(local(shard, &t.name, p).await),
                Ok(Owner::Peer(owner)) => Slot::Remote(split.add(
                    owner,
                    &t.name,
                    p.partition,
                    p.clone(),
                    ListOffsetsRequest::default,
                )),
            };
            topic_slots.push(slot);
        }
        slots.push((t.name.clone(), topic_slots));
    }
    let answers = Answers::<ListOffsetsResponse>::collect(split.send(shard).await).await;
    let topics = slots
        .into_iter()
        .map(|(name, topic_slots)| ListOffsetsTopicResult {
            name,
            partitions: topic_slots
                .into_iter()
                .map(|slot| match slot {
                    Slot::Done(r) => r,
                    Slot::Remote(f) => {
                        answers.get(&f).unwrap_or_else(|| failed(f.index, ErrorCode::NotOwner))
                    }
                })
                .collect(),
        })
        .collect();
    respond(&header, &ListOffsetsResponse { topics })
}

async fn local(shard: &Shard, topic: &str, p: &ListOffsetsPartition) -> ListOffsetsPartitionResult {
    let Some(part) = shard.partition(topic, p.partition) else {
        return failed(p.partition, ErrorCode::UnknownPartition);
    };
    let log = &part.log;
    let ok = |offset, timestamp_ms| ListOffsetsPartitionResult {
        partition: p.partition,
        error: 0,
        offset,
        timestamp_ms,
    };
    match p.spec {
        OffsetSpec::Earliest => ok(log.log_start_offset(), -1),
        OffsetSpec::Latest => ok(log.high_watermark(), -1),
        OffsetSpec::Timestamp(ts) => match log.offset_for_timestamp(ts).await {
            Ok(Some((offset, found))) => ok(offset, found),
            Ok(None) => ok(log.high_watermark(), -1),
            Err(e) => failed(p.partition, e.code()),
        },
    }
}
