//! A Kafka group member's presence: heartbeats keep it, LeaveGroup and a client that left
//! before its first join was answered end it (a member made by a join whose client went
//! took part in the rebalance and got partitions nobody read until its session ended:
//! Kafka's KIP-394 problem; a static member stays until its session ends, as in Kafka).

use std::time::Instant;

use kafka_protocol::messages::{
    leave_group_response, HeartbeatRequest, HeartbeatResponse, LeaveGroupRequest,
    LeaveGroupResponse,
};
use kafka_protocol::ResponseError as K;

use super::{check_member, instance_of, s, Groups, Phase};
use crate::kafka::connection::{respond, Ctx, Session};

/// Removes `member_id` from `group_id`: its join's client left before the answer.
pub(super) fn forget(groups: &Groups, group_id: &str, member_id: &str) {
    let now = Instant::now();
    groups.with(|all| {
        let Some(g) = all.get_mut(group_id) else { return };
        if g.remove_member(member_id) {
            g.after_leave(now);
            g.recount();
        }
    });
}

/// Heartbeat: keeps the member alive; REBALANCE_IN_PROGRESS tells it to rejoin.
pub fn heartbeat(sess: &Session, ctx: Ctx, req: HeartbeatRequest) -> Option<Vec<u8>> {
    let now = Instant::now();
    let code = sess.kafka.groups.with(|all| {
        let group_id = req.group_id.as_str();
        let instance = instance_of(req.group_instance_id.as_deref());
        let member = req.member_id.as_str();
        if let Err(code) =
            check_member(all, group_id, member, instance.as_deref(), req.generation_id, now)
        {
            return code;
        }
        match all.get(group_id).map(|g| g.phase) {
            Some(Phase::Joining { .. }) => K::RebalanceInProgress.code(),
            _ => 0,
        }
    });
    let mut out = HeartbeatResponse::default();
    out.error_code = code;
    respond(ctx, &out)
}

/// LeaveGroup: the members go at once and the rest rebalance (only if one went). From v3
/// a request names several, each by member id, instance id or both (a static member
/// fenced by its instance's restart is refused `FENCED_INSTANCE_ID`).
pub fn leave(sess: &Session, ctx: Ctx, req: LeaveGroupRequest) -> Option<Vec<u8>> {
    let now = Instant::now();
    let leaving: Vec<(String, Option<String>)> = if ctx.version >= 3 {
        req.members
            .iter()
            .map(|m| (m.member_id.as_str().to_owned(), instance_of(m.group_instance_id.as_deref())))
            .collect()
    } else {
        vec![(req.member_id.as_str().to_owned(), None)]
    };
    let mut out = LeaveGroupResponse::default();
    sess.kafka.groups.with(|all| {
        let g = all.get_mut(req.group_id.as_str());
        let mut codes = Vec::with_capacity(leaving.len());
        match g {
            None => codes.extend(leaving.iter().map(|_| K::UnknownMemberId.code())),
            Some(g) => {
                let mut gone = false;
                for (id, instance) in &leaving {
                    let member = match (id.is_empty(), instance) {
                        (true, Some(i)) => {
                            g.statics.get(i).cloned().ok_or(K::UnknownMemberId.code())
                        }
                        _ => g.fenced(instance.as_deref(), id).map(|()| id.clone()),
                    };
                    let code = match member {
                        Ok(m) if g.remove_member(&m) => 0,
                        Ok(_) => K::UnknownMemberId.code(),
                        Err(code) => code,
                    };
                    gone |= code == 0;
                    codes.push(code);
                }
                if gone {
                    g.after_leave(now);
                    g.recount();
                }
            }
        }
        if ctx.version >= 3 {
            for ((id, instance), code) in leaving.iter().zip(&codes) {
                let mut m = leave_group_response::MemberResponse::default();
                m.member_id = s(id);
                m.group_instance_id = instance.as_deref().map(s);
                m.error_code = *code;
                out.members.push(m);
            }
        } else {
            out.error_code = codes.first().copied().unwrap_or(0);
        }
        if all.get(req.group_id.as_str()).is_some_and(|g| g.phase == Phase::Empty) {
            all.remove(req.group_id.as_str());
        }
    });
    respond(ctx, &out)
}
