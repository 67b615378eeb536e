//! The gateway's one way into the broker: a native request body, framed and run through the
//! same handlers as a native connection's request (`api::start`, origin `Client`), so
//! routing to the owning shard, forwarding, acks, validation and limits are the native
//! listener's, not a second copy.
//!
//! Contract: [`call`] returns the decoded response, or the native error (code + message) when
//! the broker answered with an error frame; a response that does not decode is
//! `UNKNOWN_SERVER_ERROR` (a broker bug, never the client's input). A metadata change's
//! second stage runs as a task of its own, as on a native connection, so a client that
//! disconnects mid-request (hyper then drops the call) does not cut it short half done;
//! every other request's ends with the call (reads stop waiting for data or room).

use wire::constants::{FLAG_ERROR, FRAME_HEADER_BYTES};
use wire::{ApiKey, ErrorBody, ErrorCode, FrameHeader, Message};

use super::error::ApiError;
use super::Gateway;
use crate::api;
use crate::budget::Held;
use crate::request::Request;

type Validator<'a> = rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>;
type Deserializer = rkyv::api::high::HighDeserializer<rkyv::rancor::Error>;

/// A native response body the gateway validates and deserializes.
pub trait Answer:
    Sized
    + rkyv::Archive<
        Archived: for<'a> rkyv::bytecheck::CheckBytes<Validator<'a>>
                      + rkyv::Deserialize<Self, Deserializer>,
    >
{
}

impl<T> Answer for T
where
    T: rkyv::Archive,
    T::Archived:
        for<'a> rkyv::bytecheck::CheckBytes<Validator<'a>> + rkyv::Deserialize<T, Deserializer>,
{
}

/// Runs `msg` as a native request on `shard` and decodes its response `R`.
pub async fn call<Q, R>(gw: &Gateway, msg: &Q) -> Result<R, ApiError>
where
    Q: Message,
    R: Answer,
{
    call_with(gw, msg, |r| r).await
}

/// [`call`] for a request whose answer takes room from the shard's budget as it is made, as
/// a native connection's does from its own and the shard's: a table read's pieces
/// (`budget::EntryRoom`; they wait for room, or answer what fit), a fetch's first batch
/// beyond its limits (`ResponseRoom::grow`; a wait for it gives back `held` meanwhile).
/// `held` is what the caller took for the answer already (none: pass an empty list). What
/// the answer took comes back with it, `held` included: keep it while the answer is
/// rendered.
pub async fn call_in_room<Q, R>(
    gw: &Gateway,
    msg: &Q,
    held: Vec<Held>,
) -> Result<(R, Vec<Held>), ApiError>
where
    Q: Message,
    R: Answer,
{
    let room = std::rc::Rc::new(crate::budget::ResponseRoom::default());
    room.put(if held.is_empty() {
        crate::budget::hold_all_now(&[&gw.shard.memory], 0)
    } else {
        held
    });
    let answer = call_with(gw, msg, |r| r.with_room(room.clone())).await?;
    Ok((answer, room.take()))
}

async fn call_with<Q, R>(
    gw: &Gateway,
    msg: &Q,
    prepare: impl FnOnce(Request) -> Request,
) -> Result<R, ApiError>
where
    Q: Message,
    R: Answer,
{
    let shard = &gw.shard;
    let frame = wire::encode_request(0, msg)
        .map_err(|e| ApiError::new(e.code(), format!("request does not encode: {e}")))?;
    if frame.len() - FRAME_HEADER_BYTES > shard.config.frame_body_bytes_max as usize {
        return Err(ApiError::new(
            ErrorCode::FrameTooLarge,
            format!(
                "the request is {} bytes as a native frame body; the broker takes at most {}",
                frame.len() - FRAME_HEADER_BYTES,
                shard.config.frame_body_bytes_max
            ),
        ));
    }
    let header = FrameHeader::decode(
        frame[..FRAME_HEADER_BYTES].try_into().expect("an encoded frame has a header"),
        u32::MAX,
    )
    .map_err(|e| ApiError::new(ErrorCode::UnknownServerError, e.to_string()))?;
    let changes_metadata = matches!(
        ApiKey::from_u16(header.api_key),
        Some(
            ApiKey::CreateTopic
                | ApiKey::DeleteTopic
                | ApiKey::CreatePartitions
                | ApiKey::CreateTable
                | ApiKey::DeleteTable
        )
    );
    let request = prepare(Request::checked(header, frame));
    let reply = api::start_client(shard, request, &gw.session).await;
    let reply = if changes_metadata {
        // Its own task, as on native connections: hyper drops this future when its client
        // disconnects, which must not cut a change short half done (a topic created or
        // deleted on some shards only, the admin lock let go meanwhile). Reads stay in
        // the call: dropping them ends their waits (for data, for room) with the client.
        glommio::spawn_local(reply).detach().await.ok_or_else(|| {
            ApiError::new(ErrorCode::UnknownServerError, "the request's task was cancelled")
        })?
    } else {
        reply.await
    };
    decode::<R>(&reply)
}

/// The response in `frame`, or the error it carries.
fn decode<R>(frame: &wire::AlignedVec) -> Result<R, ApiError>
where
    R: Answer,
{
    let broken = |why: String| ApiError::new(ErrorCode::UnknownServerError, why);
    let (raw, _) = wire::split_frame(frame, u32::MAX)
        .map_err(|e| broken(e.to_string()))?
        .ok_or_else(|| broken("incomplete response frame".into()))?;
    if raw.header.has_flag(FLAG_ERROR) {
        let body = wire::decode_body::<ErrorBody>(raw.body).map_err(|e| broken(e.to_string()))?;
        let code = ErrorCode::from_u16(body.code).unwrap_or(ErrorCode::UnknownServerError);
        return Err(ApiError::new(code, body.message));
    }
    wire::decode_body::<R>(raw.body).map_err(|e| broken(e.to_string()))
}
