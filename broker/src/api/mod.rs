//! Request handling: one module per api family.
//!
//! Where each api is served is decided here, once ([`placement`]): on each partition's
//! owner (split by owner, forwarded, merged: `forward.rs`), on shard 0 for metadata changes,
//! on a group's coordinator for group apis (`group.rs`),
//! on the client's connection for subscriptions (`subscribe.rs`), or on whichever shard the
//! request reached.
//!
//! Every request runs in two stages. [`start`] runs in arrival order on the connection's
//! reader (or the mesh receiver for forwarded requests) and does what must be ordered —
//! validating and enqueueing produce batches, sending forwards. It returns the rest as a
//! [`Reply`] future, which the caller spawns: waiting for acks, long polls and remote shards
//! never holds up the next request. A handler reads: decode the body → route each partition
//! (`forward::route`) → act on the partition → answer.

pub mod admin;
pub mod delete_records;
pub mod fetch;
pub mod forward;
pub mod group;
pub mod key_query;
pub mod long_poll;
pub mod offsets;
pub mod offsets_expiry;
pub mod produce;
pub mod producer_id;
mod response_estimate;
pub mod subscribe;
pub mod table;
pub mod table_admin;
pub mod timestamp_lookup;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use wire::{AlignedVec, ApiKey, ErrorCode, FrameHeader, Message};

pub use self::response_estimate::{response_reservation, Reservation};
use crate::counters::Counters;
use crate::request::Request;
use crate::shard::Shard;
use crate::stage_latency::{self, Stage};

/// The second stage of a request: resolves to the response frame.
pub type Reply = Pin<Box<dyn Future<Output = AlignedVec>>>;

/// Who sent a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client connection.
    Client,
    /// Another shard, forwarding a request it received.
    Peer,
}

/// The shard that makes metadata changes (create and delete topic).
pub const CONTROLLER_SHARD: u32 = 0;

/// Where an api is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On each named partition's owner: split by owner, forwarded, merged (`forward.rs`).
    Partition,
    /// On [`CONTROLLER_SHARD`]; other shards forward the whole request to it.
    Controller,
    /// On the client's connection, which holds the state (subscriptions: `subscribe.rs`).
    Session,
    /// Sent by the broker only (pushes); a client sending one is refused.
    PushOnly,
    /// On whichever shard the request reached.
    AnyShard,
    /// On the coordinator of the group the request names (`group.rs`); other shards
    /// forward the whole request to it.
    Group,
}

/// Where `api` is served (the one table; see the module docs).
pub fn placement(api: ApiKey) -> Placement {
    match api {
        ApiKey::Produce
        | ApiKey::Fetch
        | ApiKey::ListOffsets
        | ApiKey::DeleteRecords
        | ApiKey::TableRead
        | ApiKey::KeyQuery => Placement::Partition,
        ApiKey::CreateTopic
        | ApiKey::DeleteTopic
        | ApiKey::CreatePartitions
        | ApiKey::AlterTopicConfig
        | ApiKey::InitProducerId
        | ApiKey::CreateTable
        | ApiKey::DeleteTable
        | ApiKey::UpsertUser
        | ApiKey::DeleteUser
        | ApiKey::CreateAcl
        | ApiKey::ChangeAcls
        | ApiKey::ChangeCredentials
        | ApiKey::DeleteAcl
        | ApiKey::CreateToken
        | ApiKey::DeleteToken => Placement::Controller,
        ApiKey::Subscribe
        | ApiKey::GrantCredit
        | ApiKey::Unsubscribe
        | ApiKey::SaslHandshake
        | ApiKey::SaslAuthenticate => Placement::Session,
        ApiKey::SubscriptionData => Placement::PushOnly,
        ApiKey::JoinGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::CommitOffsets
        | ApiKey::FetchOffsets
        | ApiKey::DescribeGroup
        | ApiKey::DeleteGroupOffsets => Placement::Group,
        ApiKey::ListGroups
        | ApiKey::Handshake
        | ApiKey::Metadata
        | ApiKey::ListTopics
        | ApiKey::DescribeTopic
        | ApiKey::Stats
        | ApiKey::ListUsers
        | ApiKey::ListAcls
        | ApiKey::ListTokens => Placement::AnyShard,
    }
}

/// An error response to `header`'s request.
pub fn error_frame(header: &FrameHeader, code: ErrorCode, message: &str) -> AlignedVec {
    wire::encode_error(header.api_key, header.correlation_id, code, message)
}

/// Encodes a response, or an error response if it cannot be encoded.
pub fn respond<T: Message>(header: &FrameHeader, msg: &T) -> AlignedVec {
    wire::encode_response(header.correlation_id, msg)
        .unwrap_or_else(|e| error_frame(header, ErrorCode::UnknownServerError, &e.to_string()))
}

/// A reply that is already known.
pub fn ready(frame: AlignedVec) -> Reply {
    Box::pin(std::future::ready(frame))
}

/// The api of a request if this broker speaks it at the request's version; else the error
/// response.
pub fn check_api(header: &FrameHeader) -> Result<ApiKey, AlignedVec> {
    let Some(api) = ApiKey::from_u16(header.api_key) else {
        return Err(error_frame(
            header,
            ErrorCode::UnknownApiKey,
            &format!("unknown api key {}", header.api_key),
        ));
    };
    if !api.supports(header.version) {
        let (min, max) = api.versions();
        let message = format!(
            "{api} version {} not supported; this broker speaks {min}..={max}",
            header.version
        );
        return Err(error_frame(header, ErrorCode::UnsupportedVersion, &message));
    }
    Ok(api)
}

/// Stage one of any request except the session apis (see the module docs).
pub async fn start(shard: &Rc<Shard>, req: Request, origin: Origin) -> Reply {
    Counters::add(&shard.counters.requests, 1);
    stage_latency::record_since(Stage::RequestQueue, req.received);
    let api = match check_api(&req.header) {
        Ok(api) => api,
        Err(frame) => return ready(frame),
    };
    let shard = shard.clone();
    if placement(api) == Placement::Controller && shard.id != CONTROLLER_SHARD {
        return Box::pin(async move {
            let header = req.header;
            let (frame, _held) = req.into_forwarded();
            shard.mesh.forward(CONTROLLER_SHARD, frame).await.unwrap_or_else(|| {
                error_frame(&header, ErrorCode::UnknownServerError, "shard 0 unreachable")
            })
        });
    }
    if placement(api) == Placement::Group {
        if let Some(owner) = group::coordinator_of(&shard, api, &req).filter(|&o| o != shard.id) {
            return Box::pin(async move {
                let header = req.header;
                let (frame, _held) = req.into_forwarded();
                shard.mesh.forward(owner, frame).await.unwrap_or_else(|| {
                    error_frame(
                        &header,
                        ErrorCode::NotOwner,
                        "the group's coordinator is unreachable",
                    )
                })
            });
        }
    }
    match api {
        ApiKey::Produce => produce::start(&shard, req, origin).await,
        ApiKey::Fetch => Box::pin(async move {
            let response = fetch::handle(&shard, &req, origin).await;
            stage_latency::record_since(Stage::Fetch, req.received);
            response
        }),
        ApiKey::ListOffsets => Box::pin(async move { offsets::handle(&shard, &req, origin).await }),
        ApiKey::DeleteRecords => {
            Box::pin(async move { delete_records::handle(&shard, &req, origin).await })
        }
        ApiKey::TableRead => Box::pin(async move { table::handle(&shard, &req, origin).await }),
        ApiKey::KeyQuery => Box::pin(async move { key_query::handle(&shard, &req, origin).await }),
        ApiKey::CreateTable => {
            Box::pin(async move { table_admin::create_table(&shard, &req).await })
        }
        ApiKey::DeleteTable => {
            Box::pin(async move { table_admin::delete_table(&shard, &req).await })
        }
        ApiKey::Handshake => ready(admin::handshake(&shard, &req)),
        ApiKey::Metadata => ready(admin::metadata(&shard, &req)),
        ApiKey::ListTopics => ready(admin::list_topics(&shard, &req)),
        ApiKey::CreateTopic => Box::pin(async move { admin::create_topic(&shard, &req).await }),
        ApiKey::DeleteTopic => Box::pin(async move { admin::delete_topic(&shard, &req).await }),
        ApiKey::CreatePartitions => {
            Box::pin(async move { admin::create_partitions(&shard, &req).await })
        }
        ApiKey::AlterTopicConfig => {
            Box::pin(async move { admin::alter_topic_config(&shard, &req).await })
        }
        ApiKey::DescribeTopic => {
            Box::pin(async move { admin::describe_topic(&shard, &req, origin).await })
        }
        ApiKey::Stats => Box::pin(async move { admin::stats(&shard, &req, origin).await }),
        ApiKey::InitProducerId => {
            Box::pin(async move { producer_id::init_producer_id(&shard, &req).await })
        }
        ApiKey::JoinGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::CommitOffsets
        | ApiKey::FetchOffsets
        | ApiKey::DescribeGroup
        | ApiKey::DeleteGroupOffsets
        | ApiKey::ListGroups => {
            Box::pin(async move { group::handle(&shard, api, &req, origin).await })
        }
        ApiKey::UpsertUser => ready(crate::auth::admin::upsert_user(&shard.security, &req)),
        ApiKey::DeleteUser => ready(crate::auth::admin::delete_user(&shard.security, &req)),
        ApiKey::ListUsers => ready(crate::auth::admin::list_users(&shard.security, &req)),
        ApiKey::CreateAcl => ready(crate::auth::admin::create_acl(&shard.security, &req)),
        ApiKey::ChangeAcls => ready(crate::auth::admin::change_acls(&shard.security, &req)),
        ApiKey::ChangeCredentials => {
            ready(crate::auth::admin::change_credentials(&shard.security, &req))
        }
        ApiKey::DeleteAcl => ready(crate::auth::admin::delete_acl(&shard.security, &req)),
        ApiKey::ListAcls => ready(crate::auth::admin::list_acls(&shard.security, &req)),
        ApiKey::CreateToken => ready(crate::auth::admin::create_token(&shard.security, &req)),
        ApiKey::DeleteToken => ready(crate::auth::admin::delete_token(&shard.security, &req)),
        ApiKey::ListTokens => ready(crate::auth::admin::list_tokens(&shard.security, &req)),
        ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => ready(error_frame(
            &req.header,
            ErrorCode::InvalidRequest,
            "SASL is answered by the client's own connection",
        )),
        ApiKey::Subscribe
        | ApiKey::GrantCredit
        | ApiKey::Unsubscribe
        | ApiKey::SubscriptionData => {
            // Session apis are answered by the client's own connection (`subscribe.rs`), and
            // pushes are the broker's to send.
            ready(error_frame(
                &req.header,
                ErrorCode::NotOwner,
                "subscriptions are served on a connection to the owning shard",
            ))
        }
    }
}

/// Stage one of a client's request on any listener: authentication and ACLs
/// (`auth/authorize.rs`) for `session`, then [`start`]; a metadata listing is filtered to
/// what the principal may describe.
pub async fn start_client(
    shard: &Rc<Shard>,
    req: Request,
    session: &Rc<crate::auth::Session>,
) -> Reply {
    use crate::auth::authorize::{self, After};
    let req = with_client_host(req, session.peer());
    match authorize::check(&shard.security, session, &req) {
        Err(frame) => {
            Counters::add(&shard.counters.requests, 1);
            ready(frame)
        }
        Ok(After::Nothing) => start(shard, req, Origin::Client).await,
        Ok(after) => {
            let reply = start(shard, req, Origin::Client).await;
            let (security, session) = (shard.security.clone(), session.clone());
            Box::pin(async move { authorize::filter(&security, &session, after, reply.await) })
        }
    }
}

/// A client's `JoinGroup` with `client_host` set to the address its connection comes from
/// (what the client sent is replaced), before it may be forwarded to the group's
/// coordinator. Any other request, or one that does not decode (answered with the error
/// later), is returned as it is.
fn with_client_host(req: Request, peer: Option<std::net::SocketAddr>) -> Request {
    if req.header.api_key != ApiKey::JoinGroup.as_u16() {
        return req;
    }
    let Ok(mut join) = wire::decode_body::<wire::JoinGroupRequest>(req.body()) else {
        return req;
    };
    join.client_host = peer.map(|a| a.ip().to_string()).unwrap_or_default();
    match wire::encode_request(req.header.correlation_id, &join) {
        Ok(frame) => req.reframed(frame),
        Err(_) => req,
    }
}

/// Stage one of a request forwarded by another shard.
pub async fn handle_forwarded(shard: &Rc<Shard>, req: Request) -> Reply {
    // Only partition-routed apis count as data-path forwards.
    if ApiKey::from_u16(req.header.api_key).map(placement) == Some(Placement::Partition) {
        Counters::add(&shard.counters.forwards_in, 1);
    }
    start(shard, req, Origin::Peer).await
}
