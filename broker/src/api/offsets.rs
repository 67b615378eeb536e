//! List offsets: earliest, latest, or the first offset at or after a timestamp.

use std::rc::Rc;

use wire::{
    ErrorCode, ListOffsetsPartition, ListOffsetsPartitionResult, ListOffsetsRequest,
    ListOffsetsResponse, ListOffsetsTopicResult, OffsetSpec,
};

use super::forward::{per_partition, Lending};
use super::timestamp_lookup::{offset_for_timestamp, LOOKUP_FIRST_BYTES};
use super::{error_frame, respond, Origin};
use crate::budget::{EntryRoom, RoomFrom};
use crate::request::Request;
use crate::shard::Shard;

fn failed(partition: u32, code: ErrorCode) -> ListOffsetsPartitionResult {
    ListOffsetsPartitionResult { partition, error: code.as_u16(), offset: 0, timestamp_ms: -1 }
}

/// Answers a list-offsets request.
pub async fn handle(shard: &Rc<Shard>, request: &Request, origin: Origin) -> wire::AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<ListOffsetsRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    // Only a timestamp's lookup reads: room for its first try is lent to other shards.
    let by_time = |p: &ListOffsetsPartition| matches!(p.spec, OffsetSpec::Timestamp(_));
    let lent_first_bytes = match req.topics.iter().flat_map(|t| &t.partitions).any(by_time) {
        true => LOOKUP_FIRST_BYTES,
        false => 0,
    };
    let topics = req.topics.into_iter().map(|t| (t.name, t.partitions)).collect();
    let from = request.room_from();
    let results = per_partition::<ListOffsetsRequest, ListOffsetsResponse, _>(
        shard,
        origin,
        topics,
        str::to_owned,
        |p| p.partition,
        ListOffsetsRequest::default,
        failed,
        |name, p| {
            let shard = shard.clone();
            async move { local(&shard, &name, &p, from).await }
        },
        request.room(),
        Lending {
            first_bytes: lent_first_bytes,
            wait_first: false,
            short: |r| r.error == ErrorCode::RoomShort.as_u16(),
        },
    )
    .await;
    let topics = results
        .into_iter()
        .map(|(name, partitions)| ListOffsetsTopicResult { name, partitions })
        .collect();
    respond(&header, &ListOffsetsResponse { topics })
}

/// One partition's offset; a timestamp's lookup takes room in the response's `room` for
/// what it reads (`timestamp_lookup.rs`).
async fn local(
    shard: &Shard,
    topic: &str,
    p: &ListOffsetsPartition,
    from: RoomFrom<'_>,
) -> ListOffsetsPartitionResult {
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
        OffsetSpec::Timestamp(ts) => {
            match offset_for_timestamp(log, ts, &mut EntryRoom::new(from)).await {
                Ok(Some((offset, found))) => ok(offset, found),
                Ok(None) => ok(log.high_watermark(), -1),
                Err(e) => failed(p.partition, e.code()),
            }
        }
    }
}
