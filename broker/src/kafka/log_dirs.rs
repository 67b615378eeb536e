//! DescribeLogDirs (v1–4): the broker's one log directory (its data directory) with the size
//! of every partition asked for (all when the request names none), as `kafka-log-dirs`,
//! admin UIs and rebalancers read them. Sizes come from the native DescribeTopic on each
//! partition's owner; v4 adds the filesystem's total and usable bytes (`statvfs`).
//!
//! As Kafka: DESCRIBE on the cluster is needed (else CLUSTER_AUTHORIZATION_FAILED, v3+, and
//! no results); a topic the request names that does not exist, or that the principal may
//! not describe, is left out; any other failure marks the directory KAFKA_STORAGE_ERROR
//! (sizes missing would read as "no replica here"); `offset_lag` is 0 (no future replicas
//! here). Cost: one native DescribeTopic per topic, each looking up that topic's partitions
//! on their owners (O(partitions) in all; it was O(topics x partitions) until session 40).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kafka_protocol::messages::{
    describe_log_dirs_response, DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as K;

use super::connection::{ready, respond, Answer, Ctx, Session};
use super::error::KafkaError;
use super::native;
use super::sasl::allowed;
use crate::auth::acl::{Operation, Resource};

/// DescribeLogDirs.
pub async fn describe_log_dirs(s: &Session, ctx: Ctx, req: DescribeLogDirsRequest) -> Answer {
    let mut out = DescribeLogDirsResponse::default();
    if !allowed(s, Operation::Describe, Resource::Cluster) {
        out.error_code = K::ClusterAuthorizationFailed.code();
        return ready(respond(ctx, &out));
    }
    // Each topic asked for once, with the partitions asked for (`None`: all of them).
    let asked: BTreeMap<String, Option<BTreeSet<i32>>> = match &req.topics {
        None => s.shard.metadata().topics.keys().map(|t| (t.clone(), None)).collect(),
        Some(topics) => {
            let mut merged: BTreeMap<String, Option<BTreeSet<i32>>> = BTreeMap::new();
            for t in topics {
                let set = merged
                    .entry(t.topic.as_str().to_owned())
                    .or_insert_with(|| Some(BTreeSet::new()));
                if let Some(set) = set {
                    set.extend(t.partitions.iter().copied());
                }
            }
            merged
        }
    };
    let mut result = describe_log_dirs_response::DescribeLogDirsResult::default();
    result.log_dir = StrBytes::from_string(s.shard.config.data_dir.display().to_string());
    for (name, wanted) in asked {
        let described: Result<wire::DescribeTopicResponse, KafkaError> =
            native::call(s, &wire::DescribeTopicRequest { name: name.clone() }).await;
        let d = match described {
            Ok(d) if d.error == 0 => d,
            // Unknown, or not to be described by this principal: left out, as Kafka does.
            Ok(d) if unlisted(d.error) => continue,
            Err(KafkaError::Native { code, .. }) if unlisted(code.as_u16()) => continue,
            // Anything else: the sizes would be wrong or missing, so the directory is
            // reported failed rather than partly empty.
            _ => {
                result.error_code = K::KafkaStorageError.code();
                continue;
            }
        };
        let mut topic = describe_log_dirs_response::DescribeLogDirsTopic::default();
        topic.name = TopicName(StrBytes::from_string(name));
        for p in &d.partitions {
            let index = p.partition as i32;
            if wanted.as_ref().is_some_and(|w| !w.contains(&index)) {
                continue;
            }
            let mut part = describe_log_dirs_response::DescribeLogDirsPartition::default();
            part.partition_index = index;
            part.partition_size = p.size_bytes as i64;
            topic.partitions.push(part);
        }
        if !topic.partitions.is_empty() {
            result.topics.push(topic);
        }
    }
    let (total_bytes, usable_bytes) =
        filesystem_bytes(&s.shard.config.data_dir).unwrap_or((-1, -1));
    result.total_bytes = total_bytes;
    result.usable_bytes = usable_bytes;
    out.results.push(result);
    ready(respond(ctx, &out))
}

/// A native answer that leaves the topic out: unknown, or not to be described.
fn unlisted(code: u16) -> bool {
    use wire::ErrorCode as E;
    matches!(E::from_u16(code), Some(E::UnknownTopic | E::AuthorizationFailed))
}

/// Total and usable (available to the broker's user) bytes of the filesystem holding `dir`.
fn filesystem_bytes(dir: &Path) -> Option<(i64, i64)> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs fills a struct we own (zeroed: plain integers) from a NUL-terminated
    // path that outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let block = if st.f_frsize > 0 { st.f_frsize } else { st.f_bsize } as i64;
    Some((st.f_blocks as i64 * block, st.f_bavail as i64 * block))
}
