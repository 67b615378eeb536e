//! Frames from a byte stream into 16-byte-aligned buffers.
//!
//! Contract: frames are read into a small per-connection buffer (`READ_BUFFER_BYTES`, 16 KiB,
//! so 10,000 idle connections cost ~160 MiB at most); a frame larger than that gets its own
//! buffer sized from the header, after the header's length was checked against
//! `frame_body_bytes_max`, never from an unchecked length. A frame that has started must
//! finish arriving within the frame timeout (slowloris). Padding must be zero. Each frame
//! comes out as a [`Request`] with its header decoded once.

use std::time::Duration;

use futures_lite::io::AsyncReadExt;
use futures_lite::AsyncRead;
use wire::constants::{align_up, FRAME_HEADER_BYTES};
use wire::{AlignedVec, FrameHeader};

use crate::request::Request;

/// Bytes read from the socket at a time; larger frames get their own buffer.
const READ_BUFFER_BYTES: usize = 16 << 10;

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
}

/// Buffered frame reader over a byte stream.
pub struct FrameReader {
    buf: AlignedVec,
    start: usize,
    end: usize,
    body_bytes_max: u32,
    /// A frame that has started must finish arriving within this time.
    frame_timeout: Duration,
}

impl FrameReader {
    pub fn new(body_bytes_max: u32, frame_timeout: Duration) -> Self {
        let mut buf = AlignedVec::with_capacity(READ_BUFFER_BYTES);
        buf.resize(READ_BUFFER_BYTES, 0);
        FrameReader { buf, start: 0, end: 0, body_bytes_max, frame_timeout }
    }

    fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The next complete frame, copied into its own 16-byte-aligned buffer.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<Request, ReadEnd> {
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
                    // Larger than the buffer: its own allocation, sized by a checked length.
                    let mut frame = AlignedVec::with_capacity(len);
                    frame.extend_from_slice(&self.buf[self.start..self.end]);
                    let have = frame.len();
                    frame.resize(len, 0);
                    self.start = 0;
                    self.end = 0;
                    read_exact_timed(r, &mut frame[have..], self.frame_timeout).await?;
                    check_padding(&frame, &header)?;
                    return Ok(Request::checked(header, frame));
                }
            }
            if self.start > 0 {
                // Frames are multiples of 16 bytes, so moving the rest to the front keeps
                // every frame start 16-byte aligned.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let partial = self.buffered() > 0;
            let timeout = self.frame_timeout;
            let n = if partial {
                match futures_lite::future::or(
                    async { Some(r.read(&mut self.buf[self.end..]).await) },
                    async {
                        glommio::timer::sleep(timeout).await;
                        None
                    },
                )
                .await
                {
                    Some(n) => n,
                    None => return Err(ReadEnd::Timeout),
                }
            } else {
                r.read(&mut self.buf[self.end..]).await
            }
            .map_err(ReadEnd::Io)?;
            if n == 0 {
                return Err(ReadEnd::Eof);
            }
            self.end += n;
        }
    }
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

async fn read_exact_timed<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    timeout: Duration,
) -> Result<(), ReadEnd> {
    match futures_lite::future::or(async { Some(r.read_exact(buf).await) }, async {
        glommio::timer::sleep(timeout).await;
        None
    })
    .await
    {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ReadEnd::Eof),
        Some(Err(e)) => Err(ReadEnd::Io(e)),
        None => Err(ReadEnd::Timeout),
    }
}
