//! Running a native request body through the broker's own handlers (`api::start`), exactly
//! as a native client's request on this shard would run: routed to the owning shard over the
//! mesh, acked at its level, idempotence and group offsets checked by the native code.
//!
//! [`start`] is stage one (ordered: call it in request arrival order); awaiting the returned
//! [`Reply`] and [`decode`]-ing it is stage two.
//!
//! Counting: a Kafka request counts once in the shard's `requests` (by the connection), not
//! once more per native body it runs here.

use std::rc::Rc;

use rkyv::api::high::{HighDeserializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::{Archive, Deserialize};
use wire::constants::{FLAG_ERROR, FRAME_HEADER_BYTES};
use wire::{AlignedVec, ErrorCode, FrameHeader};

use super::connection::Session;
use super::error::KafkaError;
use crate::api::{self, Reply};
use crate::budget::ResponseRoom;
use crate::counters::Counters;
use crate::request::Request;

/// Stage one of a native request with body `msg`.
pub async fn start<T: wire::Message>(s: &Session, msg: &T) -> Result<Reply, KafkaError> {
    start_in(s, msg, None).await
}

/// [`start`], its response's room shared with `room` (`budget::ResponseRoom`).
pub async fn start_in<T: wire::Message>(
    s: &Session,
    msg: &T,
    room: Option<Rc<ResponseRoom>>,
) -> Result<Reply, KafkaError> {
    let frame = wire::encode_request(0, msg).map_err(|e| KafkaError::Native {
        code: ErrorCode::InvalidRequest,
        message: e.to_string(),
    })?;
    // The connection's identity: ACLs are checked as for a native client (`auth/authorize.rs`).
    // Its wait for data (a fetch's) ends when the client leaves (`Session::left`).
    let mut request = Request::forwarded(frame).ending_wait_at(s.left.clone());
    if let Some(room) = room {
        request = request.with_room(room);
    }
    let reply = api::start_client(&s.shard, request, &s.auth).await;
    // `start_client` counted this body in the shard's `requests` (exactly once, whichever way
    // it answered); the Kafka request it serves was counted once already, by the connection
    // (`connection.rs`), however many native bodies it takes. (A body forwarded to another
    // shard still counts there, as a native client's forwarded request does.)
    Counters::sub(&s.shard.counters.requests, 1);
    Ok(reply)
}

/// The response body in a native response frame (deserialized), or the error the frame
/// carries.
pub fn decode<T>(frame: &AlignedVec) -> Result<T, KafkaError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<T, HighDeserializer<rancor::Error>>,
{
    wire::decode_body(body(frame)?).map_err(|e| KafkaError::Native {
        code: ErrorCode::UnknownServerError,
        message: e.to_string(),
    })
}

/// The response body in a native response frame, validated in place (no copy: a fetch's
/// batches are read where they lie, 16-byte aligned), or the error the frame carries.
pub fn access<T>(frame: &AlignedVec) -> Result<&T::Archived, KafkaError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
    wire::access_body::<T>(body(frame)?).map_err(|e| KafkaError::Native {
        code: ErrorCode::UnknownServerError,
        message: e.to_string(),
    })
}

/// The body of a native response frame, or the error the frame carries.
fn body(frame: &AlignedVec) -> Result<&[u8], KafkaError> {
    let broken =
        |message: String| KafkaError::Native { code: ErrorCode::UnknownServerError, message };
    let head: &[u8; FRAME_HEADER_BYTES] = frame
        .get(..FRAME_HEADER_BYTES)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| broken("native response shorter than a header".into()))?;
    let header = FrameHeader::decode(head, u32::MAX).map_err(|e| broken(e.to_string()))?;
    let body = frame
        .get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + header.body_len as usize)
        .ok_or_else(|| broken("native response shorter than its header says".into()))?;
    if header.flags & FLAG_ERROR != 0 {
        let e: wire::ErrorBody = wire::decode_body(body).map_err(|e| broken(e.to_string()))?;
        let code = ErrorCode::from_u16(e.code).unwrap_or(ErrorCode::UnknownServerError);
        return Err(KafkaError::Native { code, message: e.message });
    }
    Ok(body)
}

/// Both stages at once, for requests whose order does not matter.
pub async fn call<Req, Resp>(s: &Session, msg: &Req) -> Result<Resp, KafkaError>
where
    Req: wire::Message,
    Resp: Archive,
    Resp::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<Resp, HighDeserializer<rancor::Error>>,
{
    let reply = start(s, msg).await?;
    decode(&reply.await)
}
