//! Looking at groups from Kafka tools: ListGroups and DescribeGroups (kafka-python's
//! `KafkaAdminClient.list_groups`/`describe_groups`, `kafka-consumer-groups`-style tools).
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

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    describe_groups_response, list_groups_response, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as K;
use wire::ErrorCode;

use super::connection::{ready, respond, Answer, Ctx, Session};
use super::error::{kafka_code_raw, KafkaError};
use super::group::GroupState;
use super::native;
use super::sasl::may_describe_group;

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
    for g in sess.kafka.groups.states() {
        groups.insert(g.group, (g.protocol_type, g.state));
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
    for id in &req.groups {
        let id = id.as_str();
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
                if !m.instance_id.is_empty() {
                    d.group_instance_id = Some(s(&m.instance_id));
                }
                g.members.push(d);
            }
        }
        Err(e) => g.error_code = e.code(),
    }
}
