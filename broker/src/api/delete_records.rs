//! Record deletion (`DeleteRecords`, Kafka's too): each named partition's log start moves
//! to the asked offset on its owner (`PartitionLog::delete_records_before`: persisted before
//! the answer, whole segments below it freed), and its table forgets the keys whose latest
//! record went.
//!
//! A partition named more than once is deleted once, before the furthest offset asked
//! (each deletion costs a synced checkpoint write: a request naming one partition a million
//! times would otherwise hold its shard for that many); the answer has one result per
//! partition.
//!
//! Refused per partition: the internal offsets topic (`INTERNAL_TOPIC`), a compacted topic
//! without retention (`POLICY_VIOLATION`, as Kafka refuses `cleanup.policy=compact`: the
//! cleaner keeps every key's latest record), an offset past the high watermark
//! (`OFFSET_OUT_OF_RANGE`).

use std::collections::BTreeMap;
use std::rc::Rc;

use wire::{
    DeleteBefore, DeleteRecordsPartition, DeleteRecordsPartitionResult, DeleteRecordsRequest,
    DeleteRecordsResponse, DeleteRecordsTopic, DeleteRecordsTopicResult, ErrorCode,
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
    let topics = merged(req.topics);
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

/// Each topic once, each of its partitions once, before the furthest offset asked for it (the
/// high watermark beats any offset).
fn merged(topics: Vec<DeleteRecordsTopic>) -> Vec<(String, Vec<DeleteRecordsPartition>)> {
    let mut by_topic: BTreeMap<String, BTreeMap<u32, DeleteBefore>> = BTreeMap::new();
    for t in topics {
        let partitions = by_topic.entry(t.name).or_default();
        for p in t.partitions {
            let before = partitions.entry(p.partition).or_insert(p.before);
            *before = match (*before, p.before) {
                (DeleteBefore::Offset(a), DeleteBefore::Offset(b)) => {
                    DeleteBefore::Offset(a.max(b))
                }
                _ => DeleteBefore::HighWatermark,
            };
        }
    }
    by_topic
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(partition, before)| DeleteRecordsPartition { partition, before })
                .collect();
            (name, partitions)
        })
        .collect()
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
            // Keys whose records went are swept out by the next retention pass (a sweep per
            // request would let deletions in steps of one record hold the shard); until
            // then tables and key conditions read below the log start as absent.
            if let Some(table) = &part.table {
                table.forget_changes_before(log.log_start_offset());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_named_twice_is_deleted_once_before_the_furthest_offset() {
        let p = |partition, before| DeleteRecordsPartition { partition, before };
        let t = |name: &str, partitions| DeleteRecordsTopic { name: name.into(), partitions };
        let asked = vec![
            t("b", vec![p(1, DeleteBefore::Offset(9)), p(0, DeleteBefore::Offset(3))]),
            t("a", vec![p(0, DeleteBefore::Offset(5))]),
            t("b", vec![p(1, DeleteBefore::Offset(4)), p(0, DeleteBefore::HighWatermark)]),
            t("b", vec![p(0, DeleteBefore::Offset(1))]),
        ];
        let want = vec![
            ("a".to_owned(), vec![p(0, DeleteBefore::Offset(5))]),
            (
                "b".to_owned(),
                vec![p(0, DeleteBefore::HighWatermark), p(1, DeleteBefore::Offset(9))],
            ),
        ];
        assert_eq!(merged(asked), want);
    }
}
