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
    offset_commit_request, offset_commit_response, offset_fetch_response, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::ResponseError as K;

use super::connection::{ready, respond, Answer, Ctx, Session};
use super::error::{kafka_code_raw, KafkaError};
use super::group::s;
use super::native;
use super::sasl::allowed;
use crate::auth::acl::{Operation, Resource};
use wire::ErrorCode;

/// OffsetCommit: checked against the Kafka group, stored by the native commit.
pub async fn offset_commit(sess: &Session, ctx: Ctx, req: OffsetCommitRequest) -> Answer {
    let group_id = req.group_id.as_str().to_owned();
    let member = req.member_id.as_str();
    let instance = super::group::instance_of(req.group_instance_id.as_deref());
    let generation = req.generation_id_or_member_epoch;
    let now = Instant::now();
    // Read on the group before anything about it is answered, then read on each topic (a
    // topic denied is answered TOPIC_AUTHORIZATION_FAILED, the others are committed), as
    // Kafka checks them; the native commit checks them again.
    if !allowed(sess, Operation::Read, Resource::Group(&group_id)) {
        return ready(respond(
            ctx,
            &commit_answer(&req, |_, _| K::GroupAuthorizationFailed.code()),
        ));
    }
    let readable: HashMap<&str, bool> = req
        .topics
        .iter()
        .map(|t| {
            (t.name.as_str(), allowed(sess, Operation::Read, Resource::Topic(t.name.as_str())))
        })
        .collect();
    // A commit outside any generation (-1, no member: a standalone consumer, an admin tool)
    // is taken while the group has no live members, as in Kafka; a live group's offsets are
    // its members' to commit.
    let checked = if generation < 0 && member.is_empty() && instance.is_none() {
        match sess.kafka.groups.has_members(&group_id) {
            true => Err(K::UnknownMemberId.code()),
            false => Ok(()),
        }
    } else {
        sess.kafka.groups.check(&group_id, member, instance.as_deref(), generation, now)
    };
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics.iter().filter(|t| readable[t.name.as_str()]) {
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
        Ok(()) if topics.is_empty() => None,
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
    let out = commit_answer(&req, |topic, p| {
        if !readable[topic] {
            K::TopicAuthorizationFailed.code()
        } else if whole != 0 {
            whole
        } else if p.partition_index < 0 {
            // Not committed (filtered out above): never answered as stored.
            K::UnknownTopicOrPartition.code()
        } else if p.committed_offset < 0 {
            K::InvalidCommitOffsetSize.code()
        } else {
            per.get(&(topic.to_owned(), p.partition_index.max(0) as u32))
                .map_or(0, |&e| kafka_code_raw(e))
        }
    });
    ready(respond(ctx, &out))
}

/// An OffsetCommit answer with each partition of `req` coded by `code(topic, partition)`.
fn commit_answer(
    req: &OffsetCommitRequest,
    mut code: impl FnMut(&str, &offset_commit_request::OffsetCommitRequestPartition) -> i16,
) -> OffsetCommitResponse {
    let mut out = OffsetCommitResponse::default();
    for t in &req.topics {
        let mut rt = offset_commit_response::OffsetCommitResponseTopic::default();
        rt.name = t.name.clone();
        for p in &t.partitions {
            let mut rp = offset_commit_response::OffsetCommitResponsePartition::default();
            rp.partition_index = p.partition_index;
            rp.error_code = code(t.name.as_str(), p);
            rt.partitions.push(rp);
        }
        out.topics.push(rt);
    }
    out
}

/// OffsetFetch (v1..=7): the native committed offsets; -1 where none is committed.
pub async fn offset_fetch(sess: &Session, ctx: Ctx, req: OffsetFetchRequest) -> Answer {
    let group = req.group_id.as_str().to_owned();
    // Topics the principal may not describe: named ones answered TOPIC_AUTHORIZATION_FAILED,
    // and left out of an answer for every topic (`topics` null), as Kafka does.
    let may_describe = |topic: &str| allowed(sess, Operation::Describe, Resource::Topic(topic));
    let named: Option<HashMap<&str, bool>> = req
        .topics
        .as_ref()
        .map(|topics| topics.iter().map(|t| (t.name.as_str(), may_describe(&t.name))).collect());
    let names: Vec<String> =
        named.iter().flatten().filter(|(_, &ok)| ok).map(|(&t, _)| t.to_owned()).collect();
    let mut committed: BTreeMap<(String, i32), (u64, String)> = BTreeMap::new();
    let mut out = OffsetFetchResponse::default();
    // Describe on the group first (the native request checks it too, but is not sent when
    // every named topic is denied); then, named topics all denied, nothing to read (no names
    // would read every topic).
    let group_denied = !allowed(sess, Operation::Describe, Resource::Group(&group));
    let only_denied = named.as_ref().is_some_and(|n| !n.is_empty()) && names.is_empty();
    if group_denied {
        out.error_code = K::GroupAuthorizationFailed.code();
    } else if !only_denied {
        let result: Result<wire::FetchOffsetsResponse, KafkaError> =
            native::call(sess, &wire::FetchOffsetsRequest { group, topics: names }).await;
        let group_code = |code: ErrorCode| super::group_admin::group_code(code);
        match &result {
            Ok(r) if r.error != 0 => {
                let code = ErrorCode::from_u16(r.error).unwrap_or(ErrorCode::UnknownServerError);
                out.error_code = group_code(code);
            }
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
            Err(KafkaError::Native { code, .. }) => out.error_code = group_code(*code),
            Err(e) => out.error_code = e.code(),
        }
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
            for (t, p) in committed.keys().filter(|(t, _)| may_describe(t)) {
                all.entry(t.clone()).or_default().push(*p);
            }
            all.into_iter().collect()
        }
    };
    for (name, partitions) in wanted {
        let denied = !group_denied && named.as_ref().is_some_and(|n| !n[name.as_str()]);
        let mut rt = offset_fetch_response::OffsetFetchResponseTopic::default();
        rt.name = TopicName(s(&name));
        for p in partitions {
            let mut rp = offset_fetch_response::OffsetFetchResponsePartition::default();
            rp.partition_index = p;
            rp.committed_leader_epoch = -1;
            match committed.get(&(name.clone(), p)) {
                Some((offset, meta)) if !denied => {
                    rp.committed_offset = *offset as i64;
                    rp.metadata = Some(s(meta));
                }
                _ => {
                    rp.committed_offset = -1;
                    rp.metadata = Some(s(""));
                }
            }
            rp.error_code = if denied {
                K::TopicAuthorizationFailed.code()
            } else if ctx.version < 2 {
                out.error_code
            } else {
                0
            };
            rt.partitions.push(rp);
        }
        out.topics.push(rt);
    }
    ready(respond(ctx, &out))
}
