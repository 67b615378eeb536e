//! Kafka SASL (SaslHandshake v1, SaslAuthenticate v0-2: SCRAM-SHA-256/512, PLAIN only on a
//! secure connection) and the Kafka listener's side of authorization.
//!
//! Contract:
//! - The exchange itself is the native one (`auth::Session::handshake` / `authenticate`), so
//!   credentials, the failed-attempt limit and the audit line are shared. A failed
//!   authentication is answered (SASL_AUTHENTICATION_FAILED) and the connection closed.
//! - With authentication in force, any request but ApiVersions and SASL before a successful
//!   authentication closes the connection, as Kafka brokers do: nothing is answered, so
//!   nothing (no topic name) leaks.
//! - Requests that run as native requests (produce, fetch, list offsets, topic admin,
//!   offsets, producer ids) are checked by the native check (`auth/authorize.rs`) under the
//!   connection's identity; their denials come back as TOPIC_AUTHORIZATION_FAILED per
//!   partition. The Kafka-only group apis (join, sync, heartbeat, leave) need read on the
//!   group here ([`group_denied`]: GROUP_AUTHORIZATION_FAILED), ListGroups and DescribeGroups
//!   show only groups the principal may describe ([`may_describe_group`]), Metadata lists only the
//!   topics the principal may describe ([`may_describe`]; a named one it may not is answered
//!   TOPIC_AUTHORIZATION_FAILED). The group apis that run native requests are checked here
//!   first as Kafka checks them, group before anything about the group is answered
//!   (`group_offsets.rs`, `group_admin.rs`): OffsetCommit needs read on the group
//!   (GROUP_AUTHORIZATION_FAILED) and read on each topic (TOPIC_AUTHORIZATION_FAILED for
//!   that topic's partitions, the others committed); OffsetFetch answers group denials as
//!   GROUP_AUTHORIZATION_FAILED and only topics the principal may describe (a named one it
//!   may not: TOPIC_AUTHORIZATION_FAILED); DeleteGroups and OffsetDelete need delete on the
//!   group before NON_EMPTY_GROUP or GROUP_SUBSCRIBED_TO_TOPIC is answered, and OffsetDelete
//!   read on each topic.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{
    HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as K;

use super::connection::{respond, Answer, Ctx, Session};
use super::error::{kafka_code, KafkaError};
use crate::auth::acl::{Operation, Resource};
use crate::auth::AuthMode;

/// `Some` when `api` may not run on this connection yet: the error closes it.
pub fn gate(s: &Session, api: ApiKey, _correlation_id: i32) -> Option<Result<Answer, KafkaError>> {
    let security = &s.shard.security;
    let mode = security.mode();
    if mode == AuthMode::Off
        || matches!(api, ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
    {
        return None;
    }
    match s.auth.principal(security, mode) {
        Ok(_) => None,
        Err(refusal) => {
            Some(Err(KafkaError::Native { code: refusal.code, message: refusal.message }))
        }
    }
}

/// SaslHandshake.
pub fn handshake(s: &Session, ctx: Ctx, req: SaslHandshakeRequest) -> Option<Vec<u8>> {
    let mut out = SaslHandshakeResponse::default();
    match s.auth.handshake(&s.shard.security, req.mechanism.as_str()) {
        Ok(mechanisms) => {
            out.mechanisms = mechanisms.into_iter().map(StrBytes::from_string).collect();
        }
        Err(f) => {
            out.error_code = match f.code {
                wire::ErrorCode::UnsupportedSaslMechanism => K::UnsupportedSaslMechanism.code(),
                wire::ErrorCode::InvalidRequest => K::IllegalSaslState.code(),
                other => kafka_code(other),
            };
            out.mechanisms = s.auth.mechanisms().into_iter().map(StrBytes::from_string).collect();
            if f.close {
                s.closing.set(true);
            }
        }
    }
    respond(ctx, &out)
}

/// SaslAuthenticate.
pub fn authenticate(s: &Session, ctx: Ctx, req: SaslAuthenticateRequest) -> Option<Vec<u8>> {
    let mut out = SaslAuthenticateResponse::default();
    match s.auth.authenticate(&s.shard.security, &req.auth_bytes) {
        Ok(step) => out.auth_bytes = step.auth_bytes.into(),
        Err(f) => {
            out.error_code = match f.code {
                wire::ErrorCode::InvalidRequest => K::IllegalSaslState.code(),
                _ => K::SaslAuthenticationFailed.code(),
            };
            out.error_message = Some(StrBytes::from_string(f.message));
            if f.close {
                s.closing.set(true);
            }
        }
    }
    respond(ctx, &out)
}

/// Whether this connection may see `topic` (always, with authentication off).
pub fn may_describe(s: &Session, topic: &str) -> bool {
    allowed(s, Operation::Describe, Resource::Topic(topic))
}

/// Whether this connection may see `group` in ListGroups and DescribeGroups (always, with
/// authentication off).
pub fn may_describe_group(s: &Session, group: &str) -> bool {
    allowed(s, Operation::Describe, Resource::Group(group))
}

/// Whether this connection's principal may do `op` on `resource`, not audited (for listing
/// what a principal may do, as Kafka's authorized-operations fields: not an attempt).
pub fn permits(s: &Session, op: Operation, resource: Resource<'_>) -> bool {
    let security = &s.shard.security;
    let mode = security.mode();
    mode == AuthMode::Off
        || s.auth
            .principal(security, mode)
            .is_ok_and(|p| s.auth.allowed(security, &p, op, resource))
}

/// Whether this connection's principal may do `op` on `resource` (always with authentication
/// off); a denial is audited.
pub fn allowed(s: &Session, op: Operation, resource: Resource<'_>) -> bool {
    let security = &s.shard.security;
    let mode = security.mode();
    if mode == AuthMode::Off {
        return true;
    }
    match s.auth.principal(security, mode) {
        Ok(p) => {
            let ok = s.auth.allowed(security, &p, op, resource);
            if !ok {
                security.audit.record(&p.user, op.name(), &resource, false);
            }
            ok
        }
        Err(_) => false,
    }
}

/// The answer to a Kafka-only group api whose principal may not read `group`, if so.
pub fn group_denied(s: &Session, ctx: Ctx, group: &str) -> Option<Answer> {
    if allowed(s, Operation::Read, Resource::Group(group)) {
        return None;
    }
    let code = K::GroupAuthorizationFailed.code();
    let frame = match ctx.api {
        ApiKey::JoinGroup => {
            let mut out = JoinGroupResponse::default();
            out.error_code = code;
            out.generation_id = -1;
            respond(ctx, &out)
        }
        ApiKey::SyncGroup => {
            let mut out = SyncGroupResponse::default();
            out.error_code = code;
            respond(ctx, &out)
        }
        ApiKey::Heartbeat => {
            let mut out = HeartbeatResponse::default();
            out.error_code = code;
            respond(ctx, &out)
        }
        _ => {
            let mut out = LeaveGroupResponse::default();
            out.error_code = code;
            respond(ctx, &out)
        }
    };
    Some(super::connection::ready(frame))
}
