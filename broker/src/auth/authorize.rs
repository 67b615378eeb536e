//! The one authorization boundary: every client request of every listener (native, HTTP,
//! Kafka — they all run native requests through `api::start_client`) is checked here before
//! it runs; forwarded requests between shards were checked where they entered.
//!
//! | api | needs |
//! |---|---|
//! | Produce | write on each topic |
//! | Fetch, Subscribe, TableRead, KeyQuery | read on each topic (or table) |
//! | ListOffsets, DescribeTopic | describe on each topic |
//! | Metadata, ListTopics | answered, filtered to the topics (and tables) the principal may describe |
//! | CreateTopic / DeleteTopic | create / delete on the topic (a cluster rule covers every topic) |
//! | CreateTable | create on the table's name and read on its topic; DeleteTable: delete |
//! | JoinGroup, CommitOffsets | read on the group and on each topic named |
//! | Heartbeat, LeaveGroup | read on the group; FetchOffsets, DescribeGroup: describe on it |
//! | DeleteGroupOffsets | delete on the group and read on each topic named (Kafka's OffsetDelete) |
//! | ListGroups, Stats, ListUsers, ListAcls, ListTokens | describe on the cluster |
//! | UpsertUser, DeleteUser, ChangeCredentials, CreateAcl, DeleteAcl, ChangeAcls, CreateToken, DeleteToken | alter on the cluster |
//! | InitProducerId with a transactional id | write on the transactional id (it fences the producer before it with that id) |
//! | Handshake, SaslHandshake, SaslAuthenticate, InitProducerId without one, GrantCredit, Unsubscribe | an identity only (credit and unsubscribe name the connection's own subscriptions; a producer id grants no access: writes are checked at produce) |
//!
//! A request is refused whole when any resource it names is denied (`AUTHORIZATION_FAILED`
//! naming the operation and the resource), so nothing of it is written. A body that does not
//! validate is let through: its handler answers `INVALID_REQUEST` without touching anything.

use std::rc::Rc;

use wire::constants::FLAG_ERROR;
use wire::{AlignedVec, ApiKey, FrameHeader};

use super::acl::{Operation, Resource};
use super::config::AuthMode;
use super::session::{Principal, Session};
use super::store::Security;
use super::{error_frame, respond};
use crate::request::Request;

/// What must happen to a permitted request's response.
pub enum After {
    /// Nothing.
    Nothing,
    /// Drop the topics and tables `principal` may not describe from a metadata response.
    FilterMetadata(Principal),
    /// The same for a topic listing.
    FilterTopics(Principal),
}

struct Checker<'a> {
    security: &'a Security,
    session: &'a Session,
    principal: &'a Principal,
    denied: Option<(Operation, String)>,
}

impl Checker<'_> {
    fn ok(&mut self, op: Operation, resource: Resource<'_>) -> bool {
        if self.session.allowed(self.security, self.principal, op, resource) {
            return true;
        }
        self.denied = Some((op, resource.to_string()));
        false
    }
}

fn is_admin(api: ApiKey) -> bool {
    matches!(
        api,
        ApiKey::CreateTopic
            | ApiKey::DeleteTopic
            | ApiKey::CreatePartitions
            | ApiKey::AlterTopicConfig
            | ApiKey::DeleteRecords
            | ApiKey::CreateTable
            | ApiKey::DeleteTable
            | ApiKey::UpsertUser
            | ApiKey::DeleteUser
            | ApiKey::CreateAcl
            | ApiKey::ChangeAcls
            | ApiKey::ChangeCredentials
            | ApiKey::DeleteAcl
            | ApiKey::CreateToken
            | ApiKey::DeleteToken
    )
}

/// Checks `req` for `session` (see the module docs): `Err` is the error response to send
/// instead of running it.
pub fn check(security: &Security, session: &Session, req: &Request) -> Result<After, AlignedVec> {
    let mode = security.mode();
    let Some(api) = ApiKey::from_u16(req.header.api_key) else {
        return Ok(After::Nothing); // answered UNKNOWN_API_KEY by `api::start`
    };
    if mode == AuthMode::Off {
        if is_admin(api) {
            security.audit.record("-", api.name(), &"auth off", true);
        }
        return Ok(After::Nothing);
    }
    if matches!(api, ApiKey::Handshake | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) {
        return Ok(After::Nothing);
    }
    let principal = session
        .principal(security, mode)
        .map_err(|r| error_frame(&req.header, r.code, &r.message))?;
    let mut c = Checker { security, session, principal: &principal, denied: None };
    let after = resources(&mut c, api, req.body());
    if let Some((op, resource)) = c.denied.take() {
        let message = denied(security, &principal, op, &resource, api);
        return Err(error_frame(&req.header, wire::ErrorCode::AuthorizationFailed, &message));
    }
    if is_admin(api) {
        security.audit.record(&principal.user, api.name(), &"cluster", true);
    }
    Ok(after)
}

/// Audits a denial and says why, in the words of every listener's refusal.
fn denied(
    security: &Security,
    principal: &Principal,
    op: Operation,
    resource: &str,
    api: ApiKey,
) -> String {
    security.audit.record(&principal.user, op.name(), &resource, false);
    format!(
        "{:?} may not {} {resource} ({}): ask for an ACL (brokerctl acl add)",
        &*principal.user,
        op.name(),
        api.name()
    )
}

/// [`check`]'s answer for `api` doing `op` on `resource` alone, decided ahead of the request
/// (the HTTP gateway checks a produce's write before it reads and parses the body): the
/// code and message `check` would refuse it with, audited as `check` audits. The request's
/// own check still runs.
pub fn ahead(
    security: &Security,
    session: &Session,
    api: ApiKey,
    op: Operation,
    resource: Resource<'_>,
) -> Result<(), (wire::ErrorCode, String)> {
    let mode = security.mode();
    if mode == AuthMode::Off {
        return Ok(());
    }
    let principal = session.principal(security, mode).map_err(|r| (r.code, r.message))?;
    if session.allowed(security, &principal, op, resource) {
        return Ok(());
    }
    let message = denied(security, &principal, op, &resource.to_string(), api);
    Err((wire::ErrorCode::AuthorizationFailed, message))
}

/// Runs the checks of `api` on `body` (the table in the module docs).
fn resources(c: &mut Checker<'_>, api: ApiKey, body: &[u8]) -> After {
    use Operation::*;
    use Resource::*;
    macro_rules! body {
        ($t:ty) => {
            match wire::access_body::<$t>(body) {
                Ok(b) => b,
                Err(_) => return After::Nothing,
            }
        };
    }
    let superuser = c.principal.superuser;
    match api {
        ApiKey::Produce => {
            for t in body!(wire::ProduceRequest).topics.iter() {
                if !c.ok(Write, Topic(t.name.as_str())) {
                    break;
                }
            }
        }
        ApiKey::Fetch => {
            for t in body!(wire::FetchRequest).topics.iter() {
                if !c.ok(Read, Topic(t.name.as_str())) {
                    break;
                }
            }
        }
        ApiKey::TableRead => {
            for t in body!(wire::TableReadRequest).topics.iter() {
                if !c.ok(Read, Topic(t.name.as_str())) {
                    break;
                }
            }
        }
        ApiKey::KeyQuery => {
            for t in body!(wire::KeyQueryRequest).topics.iter() {
                if !c.ok(Read, Topic(t.name.as_str())) {
                    break;
                }
            }
        }
        ApiKey::ListOffsets => {
            for t in body!(wire::ListOffsetsRequest).topics.iter() {
                if !c.ok(Describe, Topic(t.name.as_str())) {
                    break;
                }
            }
        }
        ApiKey::Subscribe => {
            c.ok(Read, Topic(body!(wire::SubscribeRequest).topic.as_str()));
        }
        ApiKey::DescribeTopic => {
            c.ok(Describe, Topic(body!(wire::DescribeTopicRequest).name.as_str()));
        }
        ApiKey::CreateTopic => {
            c.ok(Create, Topic(body!(wire::CreateTopicRequest).name.as_str()));
        }
        ApiKey::DeleteTopic => {
            c.ok(Delete, Topic(body!(wire::DeleteTopicRequest).name.as_str()));
        }
        ApiKey::CreatePartitions => {
            // As Kafka: altering a topic's partitions is `Alter` on the topic.
            c.ok(Alter, Topic(body!(wire::CreatePartitionsRequest).name.as_str()));
        }
        ApiKey::AlterTopicConfig => {
            // Kafka's AlterConfigs on the topic; the ACLs here have one `Alter`.
            c.ok(Alter, Topic(body!(wire::AlterTopicConfigRequest).name.as_str()));
        }
        ApiKey::DeleteRecords => {
            // As Kafka: deleting records is `Delete` on each topic.
            for t in body!(wire::DeleteRecordsRequest).topics.iter() {
                if !c.ok(Delete, Topic(t.name.as_str())) {
                    break;
                }
            }
        }
        ApiKey::CreateTable => {
            let b = body!(wire::CreateTableRequest);
            let _ = c.ok(Create, Topic(b.name.as_str())) && c.ok(Read, Topic(b.topic.as_str()));
        }
        ApiKey::DeleteTable => {
            c.ok(Delete, Topic(body!(wire::DeleteTableRequest).name.as_str()));
        }
        ApiKey::JoinGroup => {
            let b = body!(wire::JoinGroupRequest);
            if c.ok(Read, Group(b.group.as_str())) {
                for t in b.topics.iter() {
                    if !c.ok(Read, Topic(t.as_str())) {
                        break;
                    }
                }
            }
        }
        ApiKey::CommitOffsets => {
            let b = body!(wire::CommitOffsetsRequest);
            if c.ok(Read, Group(b.group.as_str())) {
                for t in b.topics.iter() {
                    if !c.ok(Read, Topic(t.name.as_str())) {
                        break;
                    }
                }
            }
        }
        ApiKey::Heartbeat => {
            c.ok(Read, Group(body!(wire::HeartbeatRequest).group.as_str()));
        }
        ApiKey::LeaveGroup => {
            c.ok(Read, Group(body!(wire::LeaveGroupRequest).group.as_str()));
        }
        ApiKey::FetchOffsets => {
            // Describe, as Kafka's OffsetFetch (monitoring tools read a group's offsets).
            c.ok(Describe, Group(body!(wire::FetchOffsetsRequest).group.as_str()));
        }
        ApiKey::DescribeGroup => {
            c.ok(Describe, Group(body!(wire::DescribeGroupRequest).group.as_str()));
        }
        ApiKey::DeleteGroupOffsets => {
            let b = body!(wire::DeleteGroupOffsetsRequest);
            if c.ok(Delete, Group(b.group.as_str())) {
                for t in b.topics.iter() {
                    if !c.ok(Read, Topic(t.topic.as_str())) {
                        break;
                    }
                }
            }
        }
        ApiKey::InitProducerId => {
            let b = body!(wire::InitProducerIdRequest);
            if !b.transactional_id.is_empty() {
                c.ok(Write, TransactionalId(b.transactional_id.as_str()));
            }
        }
        ApiKey::ListGroups
        | ApiKey::Stats
        | ApiKey::ListUsers
        | ApiKey::ListAcls
        | ApiKey::ListTokens => {
            c.ok(Describe, Cluster);
        }
        ApiKey::UpsertUser
        | ApiKey::DeleteUser
        | ApiKey::CreateAcl
        | ApiKey::ChangeAcls
        | ApiKey::ChangeCredentials
        | ApiKey::DeleteAcl
        | ApiKey::CreateToken
        | ApiKey::DeleteToken => {
            c.ok(Alter, Cluster);
        }
        ApiKey::Metadata if !superuser => return After::FilterMetadata(c.principal.clone()),
        ApiKey::ListTopics if !superuser => return After::FilterTopics(c.principal.clone()),
        ApiKey::Metadata
        | ApiKey::ListTopics
        | ApiKey::Handshake
        | ApiKey::SaslHandshake
        | ApiKey::SaslAuthenticate
        | ApiKey::GrantCredit
        | ApiKey::Unsubscribe
        | ApiKey::SubscriptionData => {}
    }
    After::Nothing
}

/// Applies `after` to a response frame.
pub fn filter(
    security: &Security,
    session: &Rc<Session>,
    after: After,
    frame: AlignedVec,
) -> AlignedVec {
    let (principal, metadata) = match after {
        After::Nothing => return frame,
        After::FilterMetadata(p) => (p, true),
        After::FilterTopics(p) => (p, false),
    };
    let header: FrameHeader = match wire::split_frame(&frame, u32::MAX) {
        Ok(Some((raw, _))) if !raw.header.has_flag(FLAG_ERROR) => raw.header,
        _ => return frame,
    };
    let body = &frame[wire::constants::FRAME_HEADER_BYTES..][..header.body_len as usize];
    let may = |name: &str| {
        session.allowed(security, &principal, Operation::Describe, Resource::Topic(name))
    };
    let filtered = if metadata {
        wire::decode_body::<wire::MetadataResponse>(body).map(|mut m| {
            // The broker's own topics (`__consumer_offsets`) stay: clients route group requests
            // by their layout. Writing them is refused elsewhere; reading them needs read on
            // them like any topic (a rule for every topic covers them, as in Kafka).
            m.topics.retain(|t| t.name.starts_with("__") || may(&t.name));
            m.tables.retain(|t| may(&t.name) && may(&t.topic));
            respond(&header, &m)
        })
    } else {
        wire::decode_body::<wire::ListTopicsResponse>(body).map(|mut l| {
            l.topics.retain(|t| may(&t.name));
            respond(&header, &l)
        })
    };
    filtered.unwrap_or_else(|e| {
        error_frame(&header, wire::ErrorCode::UnknownServerError, &format!("filtering: {e}"))
    })
}

/// Whether `session` may read `topic`, decided ahead of a request's own check and without
/// auditing (that check audits a denial): a fetch only waits for data it may read
/// (`api/long_poll.rs`), so a denied one is answered at once and its wait tells nothing.
pub fn may_read(security: &Security, session: &Session, topic: &str) -> bool {
    let mode = security.mode();
    if mode == AuthMode::Off {
        return true;
    }
    session
        .principal(security, mode)
        .is_ok_and(|p| session.allowed(security, &p, Operation::Read, Resource::Topic(topic)))
}
