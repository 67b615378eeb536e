//! Looking at and deleting groups from Kafka tools: ListGroups, DescribeGroups, DeleteGroups
//! and OffsetDelete (kafka-python's `KafkaAdminClient.list_groups`/`describe_groups`/
//! `delete_consumer_groups`, `kafka-consumer-groups --delete | --delete-offsets`).
//!
//! Contract:
//! - A Kafka group with members is answered from the Kafka coordinator's table
//!   ([`super::group::Groups`]): its state (Empty, PreparingRebalance, CompletingRebalance,
//!   Stable), protocol type and protocol, and each member's id, client id, host,
//!   subscription and assignment as its clients sent them.
//! - Every other group the broker knows (committed offsets only, a Kafka group whose members
//!   left, or a native consumer group) comes from the native ListGroups/DescribeGroup
//!   handlers: state Stable with its members' ids when it has native members, Empty
//!   otherwise, protocol type "" (Kafka's for a group without a Kafka protocol: tools do not
//!   decode its members' bytes, which are empty).
//! - A group nobody knows is described as Kafka does: state Dead, no error.
//! - Only groups the principal may describe are listed; describing one it may not is
//!   GROUP_AUTHORIZATION_FAILED for that group.
//! - DeleteGroups and OffsetDelete run the native `DeleteGroupOffsets` (tombstones in the
//!   offsets log, delete on the group needed). A Kafka group with members is refused here
//!   first (NON_EMPTY_GROUP; for OffsetDelete, GROUP_SUBSCRIBED_TO_TOPIC for the topics its
//!   members' subscriptions name, every topic if a subscription does not decode); native
//!   members are refused by the native handler the same way.

use std::collections::BTreeMap;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{
    delete_groups_response, describe_groups_response, list_groups_response, offset_delete_response,
    ConsumerProtocolSubscription, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, GroupId, ListGroupsRequest, ListGroupsResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError as K;
use wire::ErrorCode;

use super::connection::{ready, respond, Answer, Ctx, Session};
use super::error::{kafka_code_raw, KafkaError};
use super::group::GroupState;
use super::native;
use super::sasl::{allowed, may_describe_group};
use crate::auth::acl::{Operation, Resource};

/// `authorized_operations` when the broker does not report them (Kafka's `INT32_MIN`).
const OPERATIONS_NOT_REPORTED: i32 = i32::MIN;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_owned())
}

/// ListGroups (v0-4): the Kafka groups with members, then every other group the native
/// coordinators know; filtered by state (v4, case-insensitive) and by what the principal
/// may describe.
pub async fn list_groups(sess: &Session, ctx: Ctx, req: ListGroupsRequest) -> Answer {
    // id -> (protocol type, state)
    let mut groups: BTreeMap<String, (String, &'static str)> = BTreeMap::new();
    let native: Result<wire::ListGroupsResponse, KafkaError> =
        native::call(sess, &wire::ListGroupsRequest { prefix: String::new() }).await;
    let mut out = ListGroupsResponse::default();
    match native {
        Ok(listed) => {
            for g in listed.groups {
                let state = if g.members > 0 { "Stable" } else { "Empty" };
                groups.insert(g.group, (String::new(), state));
            }
        }
        Err(e) => out.error_code = e.code(),
    }
    // Ids, protocol types and states only: ListGroups copied every member of every group.
    for (id, protocol_type, state) in sess.kafka.groups.summaries() {
        groups.insert(id, (protocol_type, state));
    }
    let wanted = |state: &str| {
        req.states_filter.is_empty()
            || req.states_filter.iter().any(|f| f.as_str().eq_ignore_ascii_case(state))
    };
    for (id, (protocol_type, state)) in groups {
        if !wanted(state) || !may_describe_group(sess, &id) {
            continue;
        }
        let mut g = list_groups_response::ListedGroup::default();
        g.group_id = GroupId(s(&id));
        g.protocol_type = s(&protocol_type);
        g.group_state = s(state);
        out.groups.push(g);
    }
    ready(respond(ctx, &out))
}

/// DescribeGroups (v0-5): each named group, from the Kafka table or the native coordinator.
pub async fn describe_groups(sess: &Session, ctx: Ctx, req: DescribeGroupsRequest) -> Answer {
    let mut out = DescribeGroupsResponse::default();
    // Each group once (a request repeating one made as many copies of its members' bytes).
    let mut seen = std::collections::HashSet::new();
    for id in req.groups.iter().map(|id| id.as_str()).filter(|id| seen.insert(*id)) {
        let mut g = describe_groups_response::DescribedGroup::default();
        g.group_id = GroupId(s(id));
        g.authorized_operations = OPERATIONS_NOT_REPORTED;
        if !may_describe_group(sess, id) {
            g.error_code = K::GroupAuthorizationFailed.code();
        } else if let Some(state) = sess.kafka.groups.state(id) {
            kafka_group(&mut g, state);
        } else {
            native_group(sess, &mut g, id).await;
        }
        out.groups.push(g);
    }
    ready(respond(ctx, &out))
}

fn kafka_group(g: &mut describe_groups_response::DescribedGroup, state: GroupState) {
    g.group_state = s(state.state);
    g.protocol_type = s(&state.protocol_type);
    g.protocol_data = s(&state.protocol);
    for m in state.members {
        let mut d = describe_groups_response::DescribedGroupMember::default();
        d.member_id = s(&m.member_id);
        d.group_instance_id = m.instance_id.as_deref().map(s);
        d.client_id = s(&m.client_id);
        d.client_host = s(&m.client_host);
        d.member_metadata = m.metadata;
        d.member_assignment = m.assignment;
        g.members.push(d);
    }
}

async fn native_group(sess: &Session, g: &mut describe_groups_response::DescribedGroup, id: &str) {
    let described: Result<wire::DescribeGroupResponse, KafkaError> =
        native::call(sess, &wire::DescribeGroupRequest { group: id.to_owned() }).await;
    match described {
        Ok(r) if r.error == ErrorCode::UnknownGroup.as_u16() => g.group_state = s("Dead"),
        Ok(r) if r.error != 0 => g.error_code = kafka_code_raw(r.error),
        Ok(r) => {
            g.group_state = s(if r.members.is_empty() { "Empty" } else { "Stable" });
            for m in r.members {
                let mut d = describe_groups_response::DescribedGroupMember::default();
                d.member_id = s(&m.member_id);
                d.client_id = s(&m.client_id);
                if !m.client_host.is_empty() {
                    // Kafka shows the host as `/<ip>`.
                    d.client_host = s(&format!("/{}", m.client_host));
                }
                if !m.instance_id.is_empty() {
                    d.group_instance_id = Some(s(&m.instance_id));
                }
                g.members.push(d);
            }
        }
        Err(e) => g.error_code = e.code(),
    }
}

/// A group-level code from a native answer: authorization is the group's (Kafka's
/// GROUP_AUTHORIZATION_FAILED), the rest as usual.
pub fn group_code(code: ErrorCode) -> i16 {
    match code {
        ErrorCode::AuthorizationFailed => K::GroupAuthorizationFailed.code(),
        code => super::error::kafka_code(code),
    }
}

/// The native `DeleteGroupOffsets` for `group` (`topics` empty: all of it): the group-level
/// Kafka code, and the per-partition codes when it ran.
async fn delete_native(
    sess: &Session,
    group: &str,
    topics: Vec<wire::TopicPartitions>,
) -> (i16, Vec<(String, u32, i16)>) {
    let req = wire::DeleteGroupOffsetsRequest { group: group.to_owned(), topics };
    let answer: Result<wire::DeleteGroupOffsetsResponse, KafkaError> =
        native::call(sess, &req).await;
    match answer {
        Ok(r) if r.error != 0 => (
            group_code(ErrorCode::from_u16(r.error).unwrap_or(ErrorCode::UnknownServerError)),
            vec![],
        ),
        Ok(r) => {
            let parts = r.topics.into_iter().flat_map(|t| {
                let name = t.name;
                t.partitions
                    .into_iter()
                    .map(move |p| (name.clone(), p.partition, kafka_code_raw(p.error)))
            });
            (0, parts.collect())
        }
        Err(KafkaError::Native { code, .. }) => (group_code(code), vec![]),
        Err(e) => (e.code(), vec![]),
    }
}

/// DeleteGroups (v0-2): each group deleted with all its offsets, unless it has members.
pub async fn delete_groups(sess: &Session, ctx: Ctx, req: DeleteGroupsRequest) -> Answer {
    let mut out = DeleteGroupsResponse::default();
    for id in &req.groups_names {
        let mut r = delete_groups_response::DeletableGroupResult::default();
        r.group_id = id.clone();
        // Delete on the group first: NON_EMPTY_GROUP would tell anyone the group is live.
        r.error_code = if !allowed(sess, Operation::Delete, Resource::Group(id.as_str())) {
            K::GroupAuthorizationFailed.code()
        } else if sess.kafka.groups.state(id.as_str()).is_some() {
            K::NonEmptyGroup.code()
        } else {
            delete_native(sess, id.as_str(), Vec::new()).await.0
        };
        out.results.push(r);
    }
    ready(respond(ctx, &out))
}

/// The topics the members of a Kafka group subscribe to (none without members); `None` when
/// some subscription does not decode (then every topic counts as subscribed).
fn kafka_subscriptions(sess: &Session, group: &str) -> Option<Vec<String>> {
    let Some(state) = sess.kafka.groups.state(group) else { return Some(Vec::new()) };
    if state.protocol_type != "consumer" {
        return None;
    }
    let mut topics = Vec::new();
    for m in state.members {
        let mut buf: Bytes = m.metadata.clone();
        if buf.remaining() < 2 {
            return None;
        }
        let version = buf.get_i16();
        let room = super::codec::decode_room(buf.len());
        let sub = kafka_protocol::protocol::types::with_decode_room(room, || {
            ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3))
        })
        .ok()?;
        topics.extend(sub.topics.iter().map(|t| t.as_str().to_owned()));
    }
    Some(topics)
}

/// OffsetDelete (v0): the group's offsets of the named partitions, except of topics its
/// members subscribe to (GROUP_SUBSCRIBED_TO_TOPIC).
pub async fn offset_delete(sess: &Session, ctx: Ctx, req: OffsetDeleteRequest) -> Answer {
    let group = req.group_id.as_str();
    let mut out = OffsetDeleteResponse::default();
    // Delete on the group before anything about it (its members' subscriptions) is answered;
    // read on each topic named, as the native handler needs.
    if !allowed(sess, Operation::Delete, Resource::Group(group)) {
        out.error_code = K::GroupAuthorizationFailed.code();
        return ready(respond(ctx, &out));
    }
    let readable: std::collections::HashMap<&str, bool> = req
        .topics
        .iter()
        .map(|t| {
            (t.name.as_str(), allowed(sess, Operation::Read, Resource::Topic(t.name.as_str())))
        })
        .collect();
    let subscribed: Option<std::collections::HashSet<String>> =
        kafka_subscriptions(sess, group).map(|s| s.into_iter().collect());
    let protected = |topic: &str| subscribed.as_ref().is_none_or(|s| s.contains(topic));
    let mut wanted = Vec::new();
    for t in &req.topics {
        if protected(t.name.as_str()) || !readable[t.name.as_str()] {
            continue;
        }
        let partitions: Vec<u32> =
            t.partitions.iter().filter_map(|p| u32::try_from(p.partition_index).ok()).collect();
        if !partitions.is_empty() {
            wanted.push(wire::TopicPartitions { topic: t.name.as_str().to_owned(), partitions });
        }
    }
    let (error, done) =
        if wanted.is_empty() { (0, Vec::new()) } else { delete_native(sess, group, wanted).await };
    let done: std::collections::HashMap<(&str, u32), i16> =
        done.iter().map(|(n, p, code)| ((n.as_str(), *p), *code)).collect();
    out.error_code = error;
    for t in &req.topics {
        let mut rt = offset_delete_response::OffsetDeleteResponseTopic::default();
        rt.name = TopicName(s(t.name.as_str()));
        let topic_protected = protected(t.name.as_str());
        for p in &t.partitions {
            let mut rp = offset_delete_response::OffsetDeleteResponsePartition::default();
            rp.partition_index = p.partition_index;
            rp.error_code = if !readable[t.name.as_str()] {
                K::TopicAuthorizationFailed.code()
            } else if topic_protected {
                K::GroupSubscribedToTopic.code()
            } else if p.partition_index < 0 {
                K::UnknownTopicOrPartition.code()
            } else {
                done.get(&(t.name.as_str(), p.partition_index as u32)).copied().unwrap_or(0)
            };
            rt.partitions.push(rp);
        }
        out.topics.push(rt);
    }
    ready(respond(ctx, &out))
}
