//! DeleteRecords (v0–2): each partition's records before an offset go, through the native
//! `DeleteRecords` (`api/delete_records.rs`: the log start is persisted before the answer).
//! Offset -1 is the high watermark; below -1 or past the high watermark is
//! OFFSET_OUT_OF_RANGE; below the log start changes nothing. A topic the principal may not
//! `Delete` is TOPIC_AUTHORIZATION_FAILED; a compacted topic without retention is
//! POLICY_VIOLATION (as Kafka: `cleanup.policy=compact` keeps every key's latest record).
//! `low_watermark` is the partition's log start after the deletion. A partition named twice
//! is deleted once, before the furthest offset (`api/delete_records.rs`), and both entries
//! get that answer. A budget met for now (the descriptor for the checkpoint) is
//! KAFKA_STORAGE_ERROR, which admin clients retry.

use std::collections::{HashMap, HashSet};

use kafka_protocol::messages::{
    delete_records_response, DeleteRecordsRequest, DeleteRecordsResponse,
};
use kafka_protocol::ResponseError as K;
use wire::DeleteBefore;

use super::connection::{ready, respond, Answer, Ctx, Session};
use super::error::{kafka_data_code_raw, KafkaError};
use super::native;
use super::sasl::allowed;
use crate::auth::acl::{Operation, Resource};

/// DeleteRecords.
pub async fn delete_records(s: &Session, ctx: Ctx, req: DeleteRecordsRequest) -> Answer {
    let denied: HashSet<&str> = req
        .topics
        .iter()
        .map(|t| t.name.as_str())
        .filter(|name| !allowed(s, Operation::Delete, Resource::Topic(name)))
        .collect();
    let mut topics = Vec::new();
    for t in req.topics.iter().filter(|t| !denied.contains(t.name.as_str())) {
        let partitions = t
            .partitions
            .iter()
            .filter(|p| p.partition_index >= 0 && p.offset >= -1)
            .map(|p| wire::DeleteRecordsPartition {
                partition: p.partition_index as u32,
                before: match p.offset {
                    -1 => DeleteBefore::HighWatermark,
                    o => DeleteBefore::Offset(o as u64),
                },
            })
            .collect();
        topics.push(wire::DeleteRecordsTopic { name: t.name.as_str().to_owned(), partitions });
    }
    let result: Result<wire::DeleteRecordsResponse, KafkaError> =
        native::call(s, &wire::DeleteRecordsRequest { topics }).await;
    let mut done: HashMap<(String, i32), wire::DeleteRecordsPartitionResult> = HashMap::new();
    if let Ok(resp) = &result {
        for t in &resp.topics {
            for p in &t.partitions {
                done.insert((t.name.clone(), p.partition as i32), p.clone());
            }
        }
    }
    let mut out = DeleteRecordsResponse::default();
    for t in &req.topics {
        let mut rt = delete_records_response::DeleteRecordsTopicResult::default();
        rt.name = t.name.clone();
        for p in &t.partitions {
            let mut rp = delete_records_response::DeleteRecordsPartitionResult::default();
            rp.partition_index = p.partition_index;
            rp.low_watermark = -1;
            let key = (t.name.as_str().to_owned(), p.partition_index);
            match (&result, done.get(&key)) {
                _ if denied.contains(t.name.as_str()) => {
                    rp.error_code = K::TopicAuthorizationFailed.code();
                }
                _ if p.offset < -1 => rp.error_code = K::OffsetOutOfRange.code(),
                (Err(e), _) => rp.error_code = e.data_code(),
                (Ok(_), Some(r)) => {
                    rp.error_code = kafka_data_code_raw(r.error);
                    if r.error == 0 {
                        rp.low_watermark = r.log_start_offset as i64;
                    }
                }
                (Ok(_), None) => rp.error_code = K::UnknownTopicOrPartition.code(),
            }
            rt.partitions.push(rp);
        }
        out.topics.push(rt);
    }
    ready(respond(ctx, &out))
}
