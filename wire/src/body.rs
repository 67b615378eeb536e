//! Encoding message bodies into frames, and validating bodies that arrived from a socket.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::api::ApiKey;
use crate::constants::{
    align_up, BODY_ALIGN, FLAG_ERROR, FLAG_PUSH, FLAG_RESPONSE, FRAME_BODY_BYTES_LIMIT,
    FRAME_HEADER_BYTES, PROTOCOL_VERSION,
};
use crate::error::BodyError;
use crate::error_code::ErrorCode;
use crate::frame::FrameHeader;
use crate::message::error_body::ErrorBody;

/// A body type of the protocol, tied to its api key.
pub trait Message:
    Archive + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
{
    /// The api this body belongs to.
    const API_KEY: ApiKey;

    /// A guess of the encoded body size, so the frame buffer is allocated once instead of
    /// growing by doubling (which for megabyte bodies means many fresh pages to fault in).
    fn body_bytes_hint(&self) -> usize {
        256
    }
}

/// Encodes `msg` as a whole frame (header, body, padding) into a fresh 16-byte-aligned buffer.
pub fn encode_frame<T>(
    api_key: u16,
    flags: u16,
    correlation_id: u64,
    msg: &T,
) -> Result<AlignedVec, BodyError>
where
    T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    encode_frame_sized(api_key, flags, correlation_id, msg, 256)
}

/// [`encode_frame`] with the buffer sized for a body of about `body_bytes_hint` bytes.
pub fn encode_frame_sized<T>(
    api_key: u16,
    flags: u16,
    correlation_id: u64,
    msg: &T,
    body_bytes_hint: usize,
) -> Result<AlignedVec, BodyError>
where
    T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    let mut buf = AlignedVec::with_capacity(FRAME_HEADER_BYTES + body_bytes_hint + BODY_ALIGN);
    buf.resize(FRAME_HEADER_BYTES, 0);
    let (mut buf, body_len) = serialize_body(msg, buf)?;
    buf.resize(FRAME_HEADER_BYTES + align_up(body_len), 0);
    buf[..FRAME_HEADER_BYTES].copy_from_slice(&frame_header(
        api_key,
        flags,
        correlation_id,
        body_len,
    ));
    Ok(buf)
}

/// Serializes `msg` into `writer`, whose position is just past a frame header's room: the
/// writer back, and the body's length (checked against the protocol's limit).
pub(crate) fn serialize_body<T, W>(msg: &T, writer: W) -> Result<(W, usize), BodyError>
where
    W: rkyv::ser::Writer<rancor::Error>,
    T: for<'a> Serialize<HighSerializer<W, ArenaHandle<'a>, rancor::Error>>,
{
    let writer = rkyv::util::with_arena(|arena| {
        rkyv::api::high::to_bytes_in_with_alloc::<_, _, rancor::Error>(msg, writer, arena.acquire())
    })
    .map_err(|e| BodyError::Encode {
        message: std::any::type_name::<T>(),
        reason: e.to_string(),
    })?;
    let body_len = writer.pos() - FRAME_HEADER_BYTES;
    if body_len > FRAME_BODY_BYTES_LIMIT as usize {
        return Err(BodyError::TooLarge { body_len });
    }
    Ok((writer, body_len))
}

/// The encoded header of a frame whose body is `body_len` bytes.
pub(crate) fn frame_header(
    api_key: u16,
    flags: u16,
    correlation_id: u64,
    body_len: usize,
) -> [u8; FRAME_HEADER_BYTES] {
    let body_len = u32::try_from(body_len).expect("body length checked against the limit");
    FrameHeader { version: PROTOCOL_VERSION, api_key, flags, correlation_id, body_len }.encode()
}

/// Encodes a request frame.
pub fn encode_request<T: Message>(correlation_id: u64, msg: &T) -> Result<AlignedVec, BodyError> {
    encode_frame_sized(T::API_KEY.as_u16(), 0, correlation_id, msg, msg.body_bytes_hint())
}

/// Encodes a response frame to the request with `correlation_id`.
pub fn encode_response<T: Message>(correlation_id: u64, msg: &T) -> Result<AlignedVec, BodyError> {
    encode_frame_sized(
        T::API_KEY.as_u16(),
        FLAG_RESPONSE,
        correlation_id,
        msg,
        msg.body_bytes_hint(),
    )
}

/// Encodes a broker-initiated push frame.
pub fn encode_push<T: Message>(msg: &T) -> Result<AlignedVec, BodyError> {
    encode_frame_sized(T::API_KEY.as_u16(), FLAG_PUSH, 0, msg, msg.body_bytes_hint())
}

/// Encodes an error response to a request that could not be answered at all. `api_key` is
/// echoed raw, so an unknown api key is answered too.
pub fn encode_error(
    api_key: u16,
    correlation_id: u64,
    code: ErrorCode,
    message: &str,
) -> AlignedVec {
    let body = ErrorBody { code: code.as_u16(), message: message.to_owned() };
    encode_frame(api_key, FLAG_RESPONSE | FLAG_ERROR, correlation_id, &body)
        .expect("an error body always encodes")
}

/// Validates `body` as an archived `T` (bytecheck) and returns it in place. Use on every
/// body that came from outside the process.
pub fn access_body<T>(body: &[u8]) -> Result<&T::Archived, BodyError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
    let misalignment = body.as_ptr() as usize % BODY_ALIGN;
    if misalignment != 0 {
        return Err(BodyError::Misaligned { misalignment });
    }
    rkyv::access::<T::Archived, rancor::Error>(body)
        .map_err(|e| BodyError::Invalid { message: short_type_name::<T>(), reason: e.to_string() })
}

/// Validates and deserializes `body` into an owned `T`.
pub fn decode_body<T>(body: &[u8]) -> Result<T, BodyError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<T, HighDeserializer<rancor::Error>>,
{
    let archived = access_body::<T>(body)?;
    rkyv::deserialize::<T, rancor::Error>(archived)
        .map_err(|e| BodyError::Invalid { message: short_type_name::<T>(), reason: e.to_string() })
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// Copies `bytes` into a fresh 16-byte-aligned buffer, for a caller whose bytes arrived at an
/// arbitrary address (the broker and client read frames into aligned buffers and never need
/// this).
pub fn to_aligned(bytes: &[u8]) -> AlignedVec {
    let mut v = AlignedVec::with_capacity(bytes.len());
    v.extend_from_slice(bytes);
    v
}
