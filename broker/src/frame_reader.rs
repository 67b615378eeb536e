//! Frames from a byte stream into 16-byte-aligned buffers.
//!
//! Contract: frames are read into a small per-connection buffer (`READ_BUFFER_BYTES`, 16 KiB,
//! so 10,000 idle connections cost ~160 MiB at most); a frame larger than that gets its own
//! buffer sized from the header, after the header's length was checked against
//! `frame_body_bytes_max`, never from an unchecked length, and grown as its bytes arrive
//! (filled and held from the budget: 32 KiB at first, or what a spare buffer from
//! `frame_pool.rs` holds filled, at most 256 KiB; then at most twice what arrived; up to
//! `LARGE_FRAME_RESERVED_BYTES` of address space is reserved at once, so it grows in place),
//! so a header declaring a large body and then stalling holds little memory. A frame must
//! arrive whole within the frame timeout of its first byte, however
//! the bytes are spread (a client dripping a byte at a time is cut off, slowloris). Padding
//! must be zero. Each frame comes out as a [`Request`] with its header decoded once.

use std::time::{Duration, Instant};

use futures_lite::io::AsyncReadExt;
use futures_lite::AsyncRead;
use wire::constants::{align_up, FRAME_HEADER_BYTES};
use wire::{AlignedVec, FrameHeader};

use crate::budget::{Held, MemoryBudget};
use crate::request::Request;
use crate::stage_latency::{self, Stage};

/// Bytes read from the socket at a time; larger frames get their own buffer.
const READ_BUFFER_BYTES: usize = 16 << 10;

/// A larger frame's own buffer reserves up to this many bytes (capacity, not filled) at once,
/// so it grows in place as bytes arrive: each move to a larger allocation copies what
/// arrived, and growing 64 KiB produce frames from 32 KiB cost about 4 % of the broker's CPU
/// at max rate (`perf/results/2026-12-06-copies`). What is filled and held from the shard's
/// budget still grows at most to twice what arrived (or to what a spare buffer from
/// `frame_pool.rs` held filled, at most this much, held from the budget too): a stalled
/// header touches and holds little.
const LARGE_FRAME_RESERVED_BYTES: usize = crate::frame_pool::SPARE_FRAME_BYTES_MAX;

/// Why the reader stopped.
#[derive(Debug)]
pub enum ReadEnd {
    /// The client closed its end.
    Eof,
    /// The socket failed.
    Io(#[allow(dead_code)] std::io::Error),
    /// A broken frame: the stream cannot be resynchronized.
    Frame(wire::FrameError),
    /// A frame did not finish arriving in time, or the connection idled out.
    Timeout,
    /// The shard is stopping.
    Stopping,
    /// The client does not read what is pushed to it (see `connection.rs`).
    SlowConsumer,
    /// The client failed to authenticate (`auth/session.rs`): closed after the error.
    Refused,
}

/// Buffered frame reader over a byte stream.
pub struct FrameReader {
    buf: AlignedVec,
    start: usize,
    end: usize,
    body_bytes_max: u32,
    /// A frame that has started must finish arriving within this time.
    frame_timeout: Duration,
    /// When the frame being read started to arrive (`None` between frames).
    frame_deadline: Option<Instant>,
    /// The shard's budget that large frames' buffers are held from as they grow.
    budget: std::rc::Rc<MemoryBudget>,
}

impl FrameReader {
    /// A reader for frames of at most `body_bytes_max` body bytes, each of which must arrive
    /// whole within `frame_timeout` of its first byte; frames larger than its buffer hold
    /// their bytes from `budget` as they arrive (waiting for room: the connection pauses).
    pub fn new(
        body_bytes_max: u32,
        frame_timeout: Duration,
        budget: std::rc::Rc<MemoryBudget>,
    ) -> Self {
        let mut buf = AlignedVec::with_capacity(READ_BUFFER_BYTES);
        buf.resize(READ_BUFFER_BYTES, 0);
        FrameReader {
            buf,
            start: 0,
            end: 0,
            body_bytes_max,
            frame_timeout,
            frame_deadline: None,
            budget,
        }
    }

    fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The next complete frame, copied into its own 16-byte-aligned buffer.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<Request, ReadEnd> {
        let request = self.next_frame(r).await?;
        // The deadline was set when the frame's first bytes were read.
        if let Some(started) = self.frame_deadline.and_then(|d| d.checked_sub(self.frame_timeout)) {
            stage_latency::record_since(Stage::FrameRead, started);
        }
        // Bytes of the next frame may already be here: its time runs from now.
        self.frame_deadline = (self.buffered() > 0).then(|| Instant::now() + self.frame_timeout);
        Ok(request)
    }

    async fn next_frame<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<Request, ReadEnd> {
        loop {
            if self.buffered() >= FRAME_HEADER_BYTES {
                let head: &[u8; FRAME_HEADER_BYTES] =
                    self.buf[self.start..self.start + FRAME_HEADER_BYTES].try_into().expect("32");
                let header =
                    FrameHeader::decode(head, self.body_bytes_max).map_err(ReadEnd::Frame)?;
                let len = header.frame_len();
                if self.buffered() >= len {
                    let mut frame = AlignedVec::with_capacity(len);
                    frame.extend_from_slice(&self.buf[self.start..self.start + len]);
                    self.start += len;
                    check_padding(&frame, &header)?;
                    return Ok(Request::checked(header, frame));
                }
                if len > self.buf.len() {
                    let (frame, held) = self.read_large(r, len).await?;
                    check_padding(&frame, &header)?;
                    return Ok(Request::checked(header, frame).holding(held));
                }
            }
            if self.start > 0 {
                // Frames are multiples of 16 bytes, so moving the rest to the front keeps
                // every frame start 16-byte aligned.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let (end, deadline) = (self.end, self.frame_deadline);
            let n = read_until(r, &mut self.buf[end..], deadline).await?;
            if self.frame_deadline.is_none() {
                self.frame_deadline = Some(Instant::now() + self.frame_timeout);
            }
            self.end += n;
        }
    }

    /// A frame larger than the read buffer, of `len` bytes (checked against the maximum):
    /// its own buffer, grown as its bytes arrive (filled and held: 32 KiB or a spare's filled
    /// length at first, then never beyond twice what arrived; in place up to
    /// [`LARGE_FRAME_RESERVED_BYTES`]), so a header that declares a large body and stalls
    /// costs little.
    async fn read_large<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        len: usize,
    ) -> Result<(AlignedVec, Held), ReadEnd> {
        // A spare buffer (`frame_pool.rs`) is already filled up to its length, so only bytes
        // beyond it are zeroed before they are read into; its whole capacity (up to twice
        // the frame: an earlier frame may have filled it) is held from the budget from the
        // start (memory this frame keeps); a new buffer's first min(len, 2 ×
        // `READ_BUFFER_BYTES`) at least. The hold is taken first: a reader waiting for room
        // keeps no spare.
        let reserved = len.min(LARGE_FRAME_RESERVED_BYTES);
        let spare = crate::frame_pool::spare_held(reserved).unwrap_or(0);
        let mut held = self.budget.hold(len.min(2 * READ_BUFFER_BYTES).max(spare)).await;
        let mut frame = crate::frame_pool::take(reserved);
        // (A spare has a length, a new buffer none.)
        if !frame.is_empty() && frame.capacity() > held.bytes() {
            // The pool changed while the hold waited: this spare holds more than is held.
            crate::frame_pool::give_back(frame);
            frame = AlignedVec::with_capacity(reserved);
        }
        let buffered = &self.buf[self.start..self.end];
        let mut have = buffered.len();
        if frame.len() < have {
            frame.resize(have, 0);
        }
        frame[..have].copy_from_slice(buffered);
        self.start = 0;
        self.end = 0;
        while have < len {
            // Bytes are read only into what is held, which grows to at most twice what
            // arrived (or what a spare held filled).
            let mut upto = held.bytes().min(len);
            if have >= upto {
                upto = (have * 2).clamp(READ_BUFFER_BYTES, len);
                held.grow_when_room(upto.saturating_sub(held.bytes())).await;
            }
            if frame.len() < upto {
                frame.resize(upto, 0);
            }
            have += read_until(r, &mut frame[have..upto], self.frame_deadline).await?;
        }
        frame.resize(len, 0);
        Ok((frame, held))
    }
}

/// One read into `buf`, failing with `Timeout` at `deadline` (none: wait as long as it
/// takes) and with `Eof` when the stream ends.
async fn read_until<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    deadline: Option<Instant>,
) -> Result<usize, ReadEnd> {
    let n = match deadline {
        None => stage_latency::wake_timed(Stage::ReadWake, r.read(buf)).await,
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            let read = stage_latency::wake_timed(Stage::ReadWake, r.read(buf));
            match futures_lite::future::or(async { Some(read.await) }, async {
                glommio::timer::sleep(left).await;
                None
            })
            .await
            {
                Some(n) => n,
                None => return Err(ReadEnd::Timeout),
            }
        }
    }
    .map_err(ReadEnd::Io)?;
    if n == 0 {
        return Err(ReadEnd::Eof);
    }
    Ok(n)
}

fn check_padding(frame: &AlignedVec, header: &FrameHeader) -> Result<(), ReadEnd> {
    let body_end = FRAME_HEADER_BYTES + header.body_len as usize;
    if frame[body_end..FRAME_HEADER_BYTES + align_up(header.body_len as usize)]
        .iter()
        .any(|&b| b != 0)
    {
        return Err(ReadEnd::Frame(wire::FrameError::PaddingNotZero));
    }
    Ok(())
}
