//! Record deletion (`DeleteRecords`, Kafka's too): each named partition's log start moves
//! to the asked offset on its owner (`PartitionLog::delete_records_before`: persisted before
//! the answer, whole segments below it freed), and its table forgets the keys whose latest
//! record went.
//!
//! Refused per partition: the internal offsets topic (`INTERNAL_TOPIC`), a compacted topic
//! without retention (`POLICY_VIOLATION`, as Kafka refuses `cleanup.policy=compact`: the
//! cleaner keeps every key's latest record), an offset past the high watermark
//! (`OFFSET_OUT_OF_RANGE`).

use std::rc::Rc;

use wire::{
    DeleteBefore, DeleteRecordsPartition, DeleteRecordsPartitionResult, DeleteRecordsRequest,
    DeleteRecordsResponse, DeleteRecordsTopicResult, ErrorCode,
};

use super::forward::{per_partition, Lending};
use super::{error_frame, respond, Origin};
use crate::group::OFFSETS_TOPIC;
use crate::request::Request;
use crate::shard::Shard;

fn failed(partition: u32, code: ErrorCode) -> DeleteRecordsPartitionResult {
    DeleteRecordsPartitionResult { partition, error: code.as_u16(), log_start_offset: 0 }
}

/// Answers a delete-records request.
pub async fn handle(shard: &Rc<Shard>, request: &Request, origin: Origin) -> wire::AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<DeleteRecordsRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    let topics = req.topics.into_iter().map(|t| (t.name, t.partitions)).collect();
    let results = per_partition::<DeleteRecordsRequest, DeleteRecordsResponse, _>(
        shard,
        origin,
        topics,
        str::to_owned,
        |p| p.partition,
        DeleteRecordsRequest::default,
        failed,
        |name, p| {
            let shard = shard.clone();
            async move { local(&shard, &name, &p).await }
        },
        request.room(),
        // The answers are a few bytes: nothing is lent.
        Lending { first_bytes: 0, wait_first: false, short: |_| false },
    )
    .await;
    let topics = results
        .into_iter()
        .map(|(name, partitions)| DeleteRecordsTopicResult { name, partitions })
        .collect();
    respond(&header, &DeleteRecordsResponse { topics })
}

/// One partition's deletion, on its owner.
async fn local(
    shard: &Shard,
    topic: &str,
    p: &DeleteRecordsPartition,
) -> DeleteRecordsPartitionResult {
    if topic == OFFSETS_TOPIC {
        return failed(p.partition, ErrorCode::InternalTopic);
    }
    let Some(part) = shard.partition(topic, p.partition) else {
        return failed(p.partition, ErrorCode::UnknownPartition);
    };
    let kept_by_key = shard.metadata().topic(topic).is_some_and(|t| {
        let c = shard.log_config(t);
        c.compact && c.retention_ms < 0 && c.retention_bytes < 0
    });
    if kept_by_key {
        return failed(p.partition, ErrorCode::PolicyViolation);
    }
    let log = &part.log;
    let offset = match p.before {
        DeleteBefore::HighWatermark => log.high_watermark(),
        DeleteBefore::Offset(o) => o,
    };
    let error = match log.delete_records_before(offset).await {
        Ok(_) => {
            if let Some(table) = &part.table {
                table.forget_before(log.log_start_offset());
            }
            0
        }
        Err(e) => e.code().as_u16(),
    };
    DeleteRecordsPartitionResult {
        partition: p.partition,
        error,
        log_start_offset: log.log_start_offset(),
    }
}
