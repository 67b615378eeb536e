//! A request as the api sees it: a complete, checked frame and its decoded header.
//!
//! Contract: a [`Request`] is built only from a frame whose header was decoded and checked
//! (length against `frame_body_bytes_max`, padding) by the connection's frame reader, or
//! from a frame a peer shard forwarded (which its own reader checked). The header is decoded
//! once, here; handlers read it and the body without decoding it again.

use wire::constants::FRAME_HEADER_BYTES;
use wire::{AlignedVec, FrameHeader};

use std::cell::Cell;
use std::rc::Rc;

use crate::budget::{Held, ResponseRoom, RoomFrom};
use crate::watermark::Watermark;

/// A complete request frame with its header.
pub struct Request {
    /// The decoded header.
    pub header: FrameHeader,
    /// The whole frame (header, body, padding), 16-byte aligned.
    pub frame: AlignedVec,
    /// What a large frame holds of its shard's memory budget, until the request is dropped.
    held: Option<Held>,
    /// When the frame was complete (for `stage_latency`).
    pub received: std::time::Instant,
    /// The room its response holds of the connection's and the shard's budgets, when a
    /// connection reserved it (`budget::ResponseRoom`; a fetch grows it for a first batch
    /// beyond its `max_bytes`).
    room: Option<Rc<ResponseRoom>>,
    /// Forwarded with room lent for its answer by the shard that forwarded it: what is left.
    lent_bytes: Option<Cell<usize>>,
    /// Reaches 1 when whoever asked no longer waits for its answer to grow: the shard that
    /// forwarded it, or the client's connection that stopped reading (a fetch ends its
    /// long-poll then).
    end_wait: Option<Watermark>,
}

impl Request {
    /// Wraps a frame whose header was already checked (see the module docs).
    pub fn checked(header: FrameHeader, frame: AlignedVec) -> Self {
        assert!(
            frame.len() >= FRAME_HEADER_BYTES + header.body_len as usize,
            "frame of {} bytes shorter than its header says ({})",
            frame.len(),
            header.body_len
        );
        let received = std::time::Instant::now();
        Request {
            header,
            frame,
            held: None,
            received,
            room: None,
            lent_bytes: None,
            end_wait: None,
        }
    }

    /// The same request, holding `held` of a budget for as long as it lives.
    pub fn holding(mut self, held: Held) -> Self {
        self.held = Some(held);
        self
    }

    /// What its frame holds of the shard's budget, the frame itself let go (to keep counting
    /// copies of it that live on: a produce's forwarded sub-requests).
    pub fn into_held(mut self) -> Option<Held> {
        self.held.take()
    }

    /// The same request, its response's room shared with `room`.
    pub fn with_room(mut self, room: Rc<ResponseRoom>) -> Self {
        self.room = Some(room);
        self
    }

    /// The room its response holds, if a connection reserved one.
    pub fn room(&self) -> Option<&ResponseRoom> {
        self.room.as_deref()
    }

    /// The same request, forwarded with `bytes` lent for its answer by the shard that
    /// forwarded it (`usize::MAX`: nothing lent, no bound).
    pub fn lent(mut self, bytes: usize) -> Self {
        self.lent_bytes = (bytes != usize::MAX).then(|| Cell::new(bytes));
        self
    }

    /// The same request, its wait for data ended once `end_wait` reaches 1.
    pub fn ending_wait_at(mut self, end_wait: Watermark) -> Self {
        self.end_wait = Some(end_wait);
        self
    }

    /// What ends its wait for data early, if anything (see [`Request::ending_wait_at`]).
    pub fn end_wait(&self) -> Option<&Watermark> {
        self.end_wait.as_ref()
    }

    /// Where a response gathered a piece at a time takes its room: the connection's
    /// reservation, the room lent by the shard that forwarded it, or nowhere.
    pub fn room_from(&self) -> RoomFrom<'_> {
        match (&self.room, &self.lent_bytes) {
            (Some(room), _) => RoomFrom::Connection(room),
            (None, Some(lent)) => RoomFrom::Lent(lent),
            (None, None) => RoomFrom::Unbounded,
        }
    }

    /// The same request (its budget hold and arrival time) as `frame`, a frame the broker
    /// encoded for it (`api::with_client_host`).
    pub fn reframed(mut self, frame: AlignedVec) -> Self {
        let mut r = Request::forwarded(frame);
        r.held = self.held.take();
        r.received = self.received;
        r.room = self.room.take();
        r.lent_bytes = self.lent_bytes.take();
        r.end_wait = self.end_wait.take();
        r
    }

    /// Its frame, to forward it whole, and what the frame holds of the shard's budget (keep
    /// it until the forward is answered: the copy waits in the shard-to-shard channel and on
    /// the other shard meanwhile). The request goes.
    pub fn into_forwarded(mut self) -> (AlignedVec, Option<Held>) {
        (std::mem::take(&mut self.frame), self.held.take())
    }

    /// Decodes the header of a frame a peer shard forwarded (its reader checked it).
    pub fn forwarded(frame: AlignedVec) -> Self {
        let header = FrameHeader::decode(
            frame[..FRAME_HEADER_BYTES].try_into().expect("frame has a header"),
            u32::MAX,
        )
        .expect("forwarded frames were checked by the shard that received them");
        Request::checked(header, frame)
    }

    /// The body (without padding).
    pub fn body(&self) -> &[u8] {
        &self.frame[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + self.header.body_len as usize]
    }
}

impl Drop for Request {
    /// A large frame's buffer becomes a spare for the next one (`frame_pool.rs`).
    fn drop(&mut self) {
        crate::frame_pool::give_back(std::mem::take(&mut self.frame));
    }
}
