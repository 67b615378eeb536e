//! Kafka framing: a 4-byte big-endian size, then a request header and body (decoded by the
//! `kafka-protocol` crate); responses are a size, a response header and a body.
//!
//! The size is checked against `frame_body_bytes_max` before the body is allocated (and
//! held from the shard's memory budget before it is allocated), and a
//! started frame must be complete within `frame_read_timeout_ms`. A size that cannot be a
//! request closes the connection (the stream cannot be resynchronized); a header or body that
//! does not decode is answered (when its correlation id is known) and the connection lives on.

use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::error::KafkaError;
use crate::budget::{Held, MemoryBudget};

/// Bytes of the size prefix.
pub const SIZE_BYTES: usize = 4;
/// Smallest request: api key, version, correlation id.
pub const REQUEST_BYTES_MIN: usize = 8;

/// Why a connection's frames stopped.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The client closed the connection between frames.
    #[error("connection closed")]
    Closed,
    /// A read failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// The size prefix is out of range.
    #[error("request of {size} bytes; this listener takes {min}..={max}")]
    BadSize {
        /// What the prefix said.
        size: i64,
        /// Smallest request.
        min: usize,
        /// `frame_body_bytes_max`.
        max: usize,
    },
    /// A started frame did not complete in time.
    #[error("request not complete within {0:?}")]
    Timeout(Duration),
}

/// Reads the next request frame (without its size prefix). Its bytes are held from `memory`
/// (waiting for room) before they are allocated, until the returned [`RequestRoom`] drops
/// (which then holds what the request decodes to as well).
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    body_bytes_max: usize,
    timeout: Duration,
    memory: &Rc<MemoryBudget>,
) -> Result<(Bytes, RequestRoom), FrameError> {
    let mut size = [0u8; SIZE_BYTES];
    let n = r.read(&mut size[..1]).await?;
    if n == 0 {
        return Err(FrameError::Closed);
    }
    let rest = async {
        r.read_exact(&mut size[1..]).await?;
        let len = i32::from_be_bytes(size);
        if len < REQUEST_BYTES_MIN as i32 || len as usize > body_bytes_max {
            return Err(FrameError::BadSize {
                size: i64::from(len),
                min: REQUEST_BYTES_MIN,
                max: body_bytes_max,
            });
        }
        // Checked above: at most `frame_body_bytes_max`; counted before it exists.
        let len = len as usize;
        let held = memory.hold(len).await;
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).await?;
        Ok((Bytes::from(body), RequestRoom::new(len, Some(held))))
    };
    futures_lite::future::or(rest, async {
        glommio::timer::sleep(timeout).await;
        Err(FrameError::Timeout(timeout))
    })
    .await
}

/// The raw api key, version and correlation id at the front of a request (present in every
/// header version), so even an undecodable request can be answered.
pub fn peek_header(frame: &[u8]) -> (i16, i16, i32) {
    let i16_at = |o: usize| i16::from_be_bytes([frame[o], frame[o + 1]]);
    let corr = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    (i16_at(0), i16_at(2), corr)
}

/// What a request holds of its shard's memory budget while its first stage runs: its frame
/// (held before it is allocated, `read_frame`), and what it decodes to. A decode may take
/// up to [`decode_room`] (16× the frame + 1 MiB): it first gets what the budget has free
/// beside everything held ([`RequestRoom::prepare`]); a request that needs more fails that
/// decode for want of room and is decoded again once the budget has the whole room
/// ([`RequestRoom::wait_for_room`]). What the decode took is held until the first stage
/// ends. Before, only the frame was counted, and a request waiting in its first stage (a
/// fetch's long-poll) held up to 16× that uncounted; holding the whole room before every
/// frame instead made a 16 MiB produce wait for 273 MiB free.
pub struct RequestRoom {
    held: Option<Held>,
    frame_bytes: usize,
    /// Room the decodes may still take (held beside the frame).
    room_left: usize,
    decoded_bytes: usize,
    /// A decode failed for want of room while the room was less than [`decode_room`].
    short: bool,
}

impl RequestRoom {
    /// The room of a frame of `frame_bytes`, with what `held` holds for it (`read_frame`),
    /// allowed the whole [`decode_room`] (call [`RequestRoom::prepare`] to hold it).
    pub fn new(frame_bytes: usize, held: Option<Held>) -> Self {
        let room_left = decode_room(frame_bytes);
        RequestRoom { held, frame_bytes, room_left, decoded_bytes: 0, short: false }
    }

    /// Holds, beside the frame, what its decodes may take without waiting: the budget's
    /// free room (any, when the frame is all it holds), at most [`decode_room`].
    pub fn prepare(&mut self) {
        let Some(held) = &mut self.held else { return };
        let room = decode_room(self.frame_bytes).min(held.room_beside());
        held.fit(self.frame_bytes + room);
        self.room_left = room;
    }

    /// Whether the last decode failed only for want of room the budget did not have free.
    pub fn short(&self) -> bool {
        self.short
    }

    /// Waits until the budget has the whole [`decode_room`] beside what others hold, then
    /// holds it for decoding the request again.
    pub async fn wait_for_room(&mut self) {
        let room = decode_room(self.frame_bytes);
        if let Some(held) = &mut self.held {
            held.fit(self.frame_bytes);
            held.grow_when_room(room).await;
        }
        (self.room_left, self.decoded_bytes, self.short) = (room, 0, false);
    }

    /// What it holds of the shard's budget now.
    pub fn held_bytes(&self) -> usize {
        self.held.as_ref().map_or(0, Held::bytes)
    }

    /// Runs `decode` within the room left and counts what it took.
    fn take<R>(&mut self, decode: impl FnOnce() -> anyhow::Result<R>) -> anyhow::Result<R> {
        use kafka_protocol::protocol::types::{
            decode_room_left, decode_room_short, with_decode_room,
        };
        let room = self.room_left;
        let decoded = with_decode_room(room, || Ok((decode()?, decode_room_left())));
        let (value, left) = decoded.inspect_err(|_| {
            self.short = decode_room_short() && room < decode_room(self.frame_bytes);
        })?;
        self.room_left = left;
        self.decoded_bytes += room.saturating_sub(left) + std::mem::size_of::<R>();
        Ok(value)
    }

    /// Decodes the request header (its version follows from the api key and version).
    pub fn decode_header(
        &mut self,
        frame: &mut Bytes,
        api: ApiKey,
        version: i16,
    ) -> Result<RequestHeader, KafkaError> {
        self.take(|| RequestHeader::decode(frame, api.request_header_version(version)))
            .map_err(|e| KafkaError::Decode(format!("{api:?} v{version} header: {e}")))
    }

    /// Decodes the request body (the last decode): what the room held beyond what the
    /// frame and the decodes took is given back.
    pub fn decode<T: Decodable>(
        &mut self,
        frame: &mut Bytes,
        version: i16,
    ) -> Result<T, KafkaError> {
        let decoded = self.take(|| T::decode(frame, version)).map_err(|e| {
            KafkaError::Decode(format!("{} v{version}: {e}", std::any::type_name::<T>()))
        })?;
        self.room_left = 0;
        if let Some(held) = &mut self.held {
            held.fit(self.frame_bytes + self.decoded_bytes);
        }
        Ok(decoded)
    }
}

/// What decoding a request of `frame_bytes` may allocate (arrays at their elements' size in
/// memory, unknown tagged fields): a count is bounded by the bytes left, but an element of
/// one or two bytes on the wire takes tens in memory, so a 64 MiB Metadata request of empty
/// names decoded to 2.4 GB. Real requests with many short entries take up to ~10× their
/// frame (a Metadata v9 topic named in 5 bytes: 7 on the wire, 72 in memory; an OffsetCommit
/// v8 topic of one partition ~5×), so the room is 16× the frame plus 1 MiB, and at most
/// [`DECODE_BYTES_MAX`] (a Metadata v9 of 100,000 five-letter names takes 7 MiB; an
/// OffsetCommit of 100,000 one-partition topics ~17 MiB). Past it the request does not
/// decode (the connection closes).
pub fn decode_room(frame_bytes: usize) -> usize {
    frame_bytes
        .saturating_mul(DECODED_BYTES_PER_FRAME_BYTE)
        .saturating_add(1 << 20)
        .min(DECODE_BYTES_MAX)
}

/// See [`decode_room`].
const DECODED_BYTES_PER_FRAME_BYTE: usize = 16;
/// See [`decode_room`].
const DECODE_BYTES_MAX: usize = 128 << 20;

/// A response frame: size, header (v0 or v1 with tagged fields, as the api and version
/// want), body.
pub fn response<T: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Vec<u8>, KafkaError> {
    let mut out = BytesMut::with_capacity(64);
    out.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let encoded = header
        .encode(&mut out, api.response_header_version(version))
        .and_then(|()| body.encode(&mut out, version));
    encoded.map_err(|e| KafkaError::Encode(format!("{api:?} v{version}: {e}")))?;
    let size = (out.len() - SIZE_BYTES) as i32;
    out[..SIZE_BYTES].copy_from_slice(&size.to_be_bytes());
    Ok(out.to_vec())
}

/// The answer to an api or version this listener does not speak: the correlation id and
/// UNSUPPORTED_VERSION (35) where every error-first response (ApiVersions v0 among them)
/// has its error code.
pub fn unsupported(correlation_id: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(14);
    out.extend_from_slice(&10i32.to_be_bytes());
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(&kafka_protocol::ResponseError::UnsupportedVersion.code().to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    out
}
