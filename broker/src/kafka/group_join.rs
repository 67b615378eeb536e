//! JoinGroup: a member enters a Kafka group (or rejoins it, or a static member takes its
//! old place: `group_static.rs`) and waits for the rebalance to complete.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{join_group_response, JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::ResponseError as K;

use super::{
    held_bytes, instance_of, presence, protocol, s, Group, Member, Phase, CLIENT_ID_CHARS_MAX,
    INSTANCE_ID_BYTES_MAX, MEMBER_METADATA_BYTES_MAX, MEMBER_OVERHEAD_BYTES, MEMBER_PROTOCOLS_MAX,
    POLL, PROTOCOL_OVERHEAD_BYTES, SESSION_TIMEOUT_MS_MAX, SESSION_TIMEOUT_MS_MIN,
};
use crate::kafka::connection::{ready, respond, Answer, Ctx, Session};

/// A join's outcome under the lock: wait for the rebalance as this member, or answer now.
enum Joined {
    Wait(String),
    Now(JoinGroupResponse),
}

enum JoinWait {
    Wait,
    Done(JoinGroupResponse),
}

/// JoinGroup: enter the group (or rejoin) and wait for the rebalance to complete.
/// `client_id` is the request header's (shown by DescribeGroups).
pub fn join(sess: &Session, ctx: Ctx, req: JoinGroupRequest, client_id: &str) -> Answer {
    let client_host = sess.info.peer_addr.map(|a| format!("/{}", a.ip())).unwrap_or_default();
    let kafka = sess.kafka.clone();
    let group_id = req.group_id.as_str().to_owned();
    let now = Instant::now();
    let fail = |code: i16, member: &str| {
        let mut out = JoinGroupResponse::default();
        out.error_code = code;
        out.generation_id = -1;
        out.member_id = s(member);
        ready(respond(ctx, &out))
    };
    // The native rule (the group's offsets are committed under it): 1..=249 bytes without
    // control characters. A longer id was kept as the group's key and in every member id.
    if !crate::group::valid_group_id(&group_id) {
        return fail(K::InvalidGroupId.code(), "");
    }
    if !(SESSION_TIMEOUT_MS_MIN..=SESSION_TIMEOUT_MS_MAX).contains(&req.session_timeout_ms) {
        return fail(K::InvalidSessionTimeout.code(), req.member_id.as_str());
    }
    let metadata_bytes: usize = req.protocols.iter().map(|p| p.name.len() + p.metadata.len()).sum();
    if metadata_bytes > MEMBER_METADATA_BYTES_MAX || req.protocols.len() > MEMBER_PROTOCOLS_MAX {
        return fail(K::InvalidRequest.code(), req.member_id.as_str());
    }
    let instance = instance_of(req.group_instance_id.as_deref());
    if instance.as_ref().is_some_and(|i| i.len() > INSTANCE_ID_BYTES_MAX) {
        return fail(K::InvalidRequest.code(), req.member_id.as_str());
    }
    let groups = &kafka.groups;
    let joined: Result<Joined, i16> = groups.with(|all| {
        // Silent members go first: a static member restarted after its session ended joins
        // as a new one (with its instance), not as the replacement of a member just dropped.
        if let Some(g) = all.get_mut(&group_id) {
            g.expire(now);
        }
        // A static member's restart: its instance is known, its member id is not.
        let replaces = (req.member_id.is_empty())
            .then(|| all.get(&group_id)?.statics.get(instance.as_deref()?).cloned())
            .flatten();
        let new_member = req.member_id.is_empty() && replaces.is_none();
        let mut total: usize = all.values().map(|g| g.members.len()).sum();
        if new_member && total >= groups.members_max {
            // Full: first drop members past their session and the groups left empty.
            for g in all.values_mut() {
                g.expire(now);
            }
            all.retain(|_, g| !g.members.is_empty());
            total = all.values().map(|g| g.members.len()).sum();
        }
        if !req.member_id.is_empty() && !all.contains_key(&group_id) {
            // A member of a group that is not there: nothing is made for it.
            return Err(K::UnknownMemberId.code());
        }
        let g = all.entry(group_id.clone()).or_insert_with(Group::new);
        if !req.member_id.is_empty() {
            g.fenced(instance.as_deref(), req.member_id.as_str())?;
        }
        if !g.members.is_empty() && g.protocol_type != req.protocol_type.as_str() {
            return Err(K::InconsistentGroupProtocol.code());
        }
        let names = req.protocols.iter().map(|p| p.name.as_str());
        let except = replaces.as_deref().unwrap_or(req.member_id.as_str());
        if !protocol::joinable(g, except, names) {
            return Err(K::InconsistentGroupProtocol.code());
        }
        let id = if req.member_id.is_empty() {
            if replaces.is_none() && total >= groups.members_max {
                return Err(K::GroupMaxSizeReached.code());
            }
            let n = groups.next_member.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match &instance {
                Some(i) => format!("{i}-{n}"),
                None => format!("{group_id}-member-{n}"),
            }
        } else if g.members.contains_key(req.member_id.as_str()) {
            req.member_id.as_str().to_owned()
        } else {
            return Err(K::UnknownMemberId.code());
        };
        // The bytes it will hold: within `bytes_max` over every group, once silent members
        // of every group are dropped.
        let keeps = MEMBER_OVERHEAD_BYTES
            + metadata_bytes
            + req.protocols.len() * PROTOCOL_OVERHEAD_BYTES
            + client_id.len()
            + client_host.len()
            + 2 * instance.as_ref().map_or(0, String::len);
        let was = replaces.clone().unwrap_or_else(|| id.clone());
        let over = |all: &HashMap<String, Group>| {
            // A rejoining member keeps its assignment until the rebalance completes.
            let (had, assignment) = all
                .get(&group_id)
                .and_then(|g| g.members.get(&was))
                .map_or((0, 0), |m| (m.bytes(), m.assignment.len()));
            held_bytes(all).saturating_sub(had) + keeps + assignment > groups.bytes_max
        };
        if over(all) {
            for g in all.values_mut() {
                g.expire(now);
            }
            all.retain(|id, g| !g.members.is_empty() || *id == group_id);
            if over(all) {
                return Err(K::GroupMaxSizeReached.code());
            }
        }
        let g = all.get_mut(&group_id).expect("the group was made above");
        g.protocol_type = req.protocol_type.as_str().to_owned();
        let rebalance_ms = if req.rebalance_timeout_ms > 0 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        };
        let leader_before = match (&replaces, &instance) {
            (Some(old), Some(i)) => Some(g.replace_static(i, old, &id)),
            _ => None,
        };
        let member = g.members.entry(id.clone()).or_insert_with(|| Member {
            protocols: Vec::new(),
            session_timeout: Duration::ZERO,
            rebalance_timeout: Duration::ZERO,
            last_seen: now,
            joined: false,
            generation: -1,
            assignment: Bytes::new(),
            client_id: String::new(),
            client_host: String::new(),
            instance_id: None,
        });
        // Kept as long as the member lives (shown by DescribeGroups): at most a topic name's
        // length, as Kafka's quota code caps client ids for metrics.
        member.client_id = client_id.chars().take(CLIENT_ID_CHARS_MAX).collect();
        member.client_host = client_host;
        member.protocols = req
            .protocols
            .iter()
            .map(|p| (p.name.as_str().to_owned(), Bytes::copy_from_slice(&p.metadata)))
            .collect();
        member.session_timeout = Duration::from_millis(req.session_timeout_ms as u64);
        member.rebalance_timeout = Duration::from_millis(rebalance_ms as u64);
        member.last_seen = now;
        if new_member {
            if let Some(i) = &instance {
                member.instance_id = Some(i.clone());
                g.statics.insert(i.clone(), id.clone());
            }
        }
        g.recount();
        if let Some(leader) = leader_before {
            // A static member's restart in a Stable group whose protocol it leaves as it
            // was: no rebalance; it gets its assignment back by syncing. From v9 (KIP-814) a
            // restarted leader learns it leads, with the members, and is told to skip the
            // assignment (so it watches the topics' metadata as a leader does); before v9 it
            // is answered the leader as it was and syncs as a follower.
            if g.phase == Phase::Stable && protocol::vote(g) == g.protocol {
                let mut out = JoinGroupResponse::default();
                out.generation_id = g.generation;
                out.protocol_type = Some(s(&g.protocol_type));
                out.protocol_name = Some(s(&g.protocol));
                out.member_id = s(&id);
                if ctx.version < 9 {
                    out.leader = s(&leader);
                } else {
                    out.leader = s(&g.leader);
                    if g.leader == id {
                        out.skip_assignment = true;
                        out.members = leader_view(g);
                    }
                }
                return Ok(Joined::Now(out));
            }
        }
        if !matches!(g.phase, Phase::Joining { .. }) {
            g.rebalance(now);
        }
        if let Some(m) = g.members.get_mut(&id) {
            m.joined = true;
        }
        g.try_complete(now);
        g.recount();
        Ok(Joined::Wait(id))
    });
    let member_id = match joined {
        Ok(Joined::Wait(id)) => id,
        Ok(Joined::Now(out)) => return ready(respond(ctx, &out)),
        Err(code) => return fail(code, req.member_id.as_str()),
    };
    let left = sess.left.clone();
    // A static member whose client left stays until its session ends, as in Kafka.
    let made = req.member_id.is_empty() && instance.is_none();
    Box::pin(async move {
        loop {
            if left.get() > 0 {
                // The client left: nobody reads the answer, nothing keeps it alive; a member
                // this join made goes with it.
                if made {
                    presence::forget(&kafka.groups, &group_id, &member_id);
                }
                return None;
            }
            let now = Instant::now();
            let state = kafka.groups.with(|all| {
                let Some(g) = all.get_mut(&group_id) else {
                    return JoinWait::Done(join_error(K::UnknownMemberId.code(), &member_id));
                };
                // The instance restarted meanwhile (its new member took this one's place).
                if let Err(code) = g.fenced(instance.as_deref(), &member_id) {
                    return JoinWait::Done(join_error(code, &member_id));
                }
                let Some(g) = g.poll_join(&member_id, now) else {
                    return JoinWait::Done(join_error(K::UnknownMemberId.code(), &member_id));
                };
                let (phase, generation) = (g.phase, g.generation);
                let m = &g.members[&member_id];
                if matches!(phase, Phase::Joining { .. }) || m.generation != generation {
                    return JoinWait::Wait;
                }
                let mut out = JoinGroupResponse::default();
                out.generation_id = g.generation;
                out.protocol_type = Some(s(&g.protocol_type));
                out.protocol_name = Some(s(&g.protocol));
                out.leader = s(&g.leader);
                out.member_id = s(&member_id);
                if g.leader == member_id {
                    out.members = leader_view(g);
                }
                JoinWait::Done(out)
            });
            match state {
                JoinWait::Done(out) => return respond(ctx, &out),
                JoinWait::Wait => glommio::timer::sleep(POLL).await,
            }
        }
    })
}

/// The members as the leader sees them: ids, instance ids and their metadata for the
/// group's protocol.
fn leader_view(g: &Group) -> Vec<join_group_response::JoinGroupResponseMember> {
    let member = |(id, m): (&String, &Member)| {
        let mut jm = join_group_response::JoinGroupResponseMember::default();
        jm.member_id = s(id);
        jm.group_instance_id = m.instance_id.as_deref().map(s);
        jm.metadata = m
            .protocols
            .iter()
            .find(|(n, _)| *n == g.protocol)
            .map(|(_, meta)| meta.clone())
            .unwrap_or_default();
        jm
    };
    g.members.iter().map(member).collect()
}

fn join_error(code: i16, member: &str) -> JoinGroupResponse {
    let mut out = JoinGroupResponse::default();
    out.error_code = code;
    out.generation_id = -1;
    out.member_id = s(member);
    out
}
