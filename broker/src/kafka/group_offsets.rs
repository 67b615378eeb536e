//! Kafka's OffsetCommit and OffsetFetch: committed offsets are the native ones. Once the
//! member and generation are checked against the Kafka group (`group.rs`), a commit goes to
//! the native CommitOffsets handler as an administrative commit (empty member, generation
//! 0), on the group's native coordinator, into the offsets log; a fetch reads the native
//! FetchOffsets. A commit outside any generation (-1, no member) is taken while the group
//! has no live members, as in Kafka. Entries not stored (a negative partition or offset) are
//! answered with an error, never as stored; repeated fetch entries are answered once.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use kafka_protocol::messages::{
    offset_commit_response, offset_fetch_response, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::ResponseError as K;

use super::connection::{ready, respond, Answer, Ctx, Session};
use super::error::{kafka_code_raw, KafkaError};
use super::group::s;
use super::native;

/// OffsetCommit: checked against the Kafka group, stored by the native commit.
pub async fn offset_commit(sess: &Session, ctx: Ctx, req: OffsetCommitRequest) -> Answer {
    let group_id = req.group_id.as_str().to_owned();
    let member = req.member_id.as_str();
    let generation = req.generation_id_or_member_epoch;
    let now = Instant::now();
    // A commit outside any generation (-1, no member: a standalone consumer, an admin tool)
    // is taken while the group has no live members, as in Kafka; a live group's offsets are
    // its members' to commit.
    let checked = if generation < 0 && member.is_empty() {
        match sess.kafka.groups.has_members(&group_id) {
            true => Err(K::UnknownMemberId.code()),
            false => Ok(()),
        }
    } else {
        sess.kafka.groups.check(&group_id, member, generation, now)
    };
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let partitions = t
            .partitions
            .iter()
            .filter(|p| p.partition_index >= 0 && p.committed_offset >= 0)
            .map(|p| wire::CommittedOffset {
                partition: p.partition_index as u32,
                offset: p.committed_offset as u64,
                metadata: p.committed_metadata.as_deref().unwrap_or("").to_owned(),
            })
            .collect();
        topics.push(wire::CommitTopic { name: t.name.as_str().to_owned(), partitions });
    }
    let result: Option<Result<wire::CommitOffsetsResponse, KafkaError>> = match checked {
        Err(_) => None,
        Ok(()) => {
            let native_req = wire::CommitOffsetsRequest {
                group: group_id.clone(),
                member_id: String::new(),
                generation: 0,
                topics,
            };
            Some(native::call(sess, &native_req).await)
        }
    };
    let whole: i16 = match (&checked, &result) {
        (Err(code), _) => *code,
        (_, Some(Err(e))) => e.code(),
        (_, Some(Ok(r))) if r.error != 0 => kafka_code_raw(r.error),
        _ => 0,
    };
    let mut per: HashMap<(String, u32), u16> = HashMap::new();
    if let Some(Ok(r)) = &result {
        for t in &r.topics {
            for p in &t.partitions {
                per.insert((t.name.clone(), p.partition), p.error);
            }
        }
    }
    let mut out = OffsetCommitResponse::default();
    for t in &req.topics {
        let mut rt = offset_commit_response::OffsetCommitResponseTopic::default();
        rt.name = t.name.clone();
        for p in &t.partitions {
            let mut rp = offset_commit_response::OffsetCommitResponsePartition::default();
            rp.partition_index = p.partition_index;
            rp.error_code = if whole != 0 {
                whole
            } else if p.partition_index < 0 {
                // Not committed (filtered out above): never answered as stored.
                K::UnknownTopicOrPartition.code()
            } else if p.committed_offset < 0 {
                K::InvalidCommitOffsetSize.code()
            } else {
                per.get(&(t.name.as_str().to_owned(), p.partition_index.max(0) as u32))
                    .map_or(0, |&e| kafka_code_raw(e))
            };
            rt.partitions.push(rp);
        }
        out.topics.push(rt);
    }
    ready(respond(ctx, &out))
}

/// OffsetFetch (v1..=7): the native committed offsets; -1 where none is committed.
pub async fn offset_fetch(sess: &Session, ctx: Ctx, req: OffsetFetchRequest) -> Answer {
    let group = req.group_id.as_str().to_owned();
    let names: Vec<String> =
        req.topics.iter().flatten().map(|t| t.name.as_str().to_owned()).collect();
    let result: Result<wire::FetchOffsetsResponse, KafkaError> =
        native::call(sess, &wire::FetchOffsetsRequest { group, topics: names }).await;
    let mut committed: BTreeMap<(String, i32), (u64, String)> = BTreeMap::new();
    let mut out = OffsetFetchResponse::default();
    match &result {
        Ok(r) if r.error != 0 => out.error_code = kafka_code_raw(r.error),
        Ok(r) => {
            for t in &r.topics {
                for p in &t.partitions {
                    committed.insert(
                        (t.name.clone(), p.partition as i32),
                        (p.offset, p.metadata.clone()),
                    );
                }
            }
        }
        Err(e) => out.error_code = e.code(),
    }
    let wanted: Vec<(String, Vec<i32>)> = match &req.topics {
        // Each topic and partition once (repeats made as many copies of its metadata); a
        // topic named twice answers once, with the partitions of both.
        Some(topics) => {
            let mut at: HashMap<&str, usize> = HashMap::new();
            let mut wanted: Vec<(String, Vec<i32>)> = Vec::new();
            let mut once = std::collections::HashSet::new();
            for t in topics {
                let name = t.name.as_str();
                let i = *at.entry(name).or_insert_with(|| {
                    wanted.push((name.to_owned(), Vec::new()));
                    wanted.len() - 1
                });
                let fresh = t.partition_indexes.iter().filter(|&&p| once.insert((name, p)));
                wanted[i].1.extend(fresh);
            }
            wanted
        }
        None => {
            let mut all: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (t, p) in committed.keys() {
                all.entry(t.clone()).or_default().push(*p);
            }
            all.into_iter().collect()
        }
    };
    for (name, partitions) in wanted {
        let mut rt = offset_fetch_response::OffsetFetchResponseTopic::default();
        rt.name = TopicName(s(&name));
        for p in partitions {
            let mut rp = offset_fetch_response::OffsetFetchResponsePartition::default();
            rp.partition_index = p;
            rp.committed_leader_epoch = -1;
            match committed.get(&(name.clone(), p)) {
                Some((offset, meta)) => {
                    rp.committed_offset = *offset as i64;
                    rp.metadata = Some(s(meta));
                }
                None => {
                    rp.committed_offset = -1;
                    rp.metadata = Some(s(""));
                }
            }
            rp.error_code = if ctx.version < 2 { out.error_code } else { 0 };
            rt.partitions.push(rp);
        }
        out.topics.push(rt);
    }
    ready(respond(ctx, &out))
}
