//! One client connection: read frames, dispatch, write responses and pushes.
//!
//! - Frames are read into a bounded buffer (`READ_BUFFER_BYTES`); a frame larger than that
//!   gets its own buffer sized from the header, after the header's length was checked
//!   against `frame_body_bytes_max` — never from an unchecked length.
//! - Requests are pipelined: each request's second stage runs as its own task and its
//!   response is written when ready, so responses may leave out of order (the correlation id
//!   matches them). At `inflight_per_connection_max` outstanding requests the reader stops
//!   reading until one completes.
//! - A broken frame header gets one error response (correlation id 0) and the connection is
//!   closed: the stream cannot be resynchronized. A bad body, unknown api or version gets an
//!   error response and the connection lives on.
//! - Subscriptions push batches within the byte credit the client granted: at most one batch
//!   beyond the credit is ever outstanding, so a consumer that stops granting makes the
//!   broker hold nothing more for it.
//! - Idle connections (no request for `connection_idle_ms` and no subscription) are closed;
//!   a frame that starts but does not finish within `FRAME_READ_TIMEOUT` closes it too.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::task::JoinHandle;
use tracing::debug;
use wire::constants::{align_up, FRAME_HEADER_BYTES};
use wire::{
    AlignedVec, ApiKey, ErrorCode, FrameHeader, GrantCreditRequest, GrantCreditResponse,
    StartPosition, SubscribeRequest, SubscribeResponse, SubscriptionData, UnsubscribeRequest,
    UnsubscribeResponse,
};

use crate::api::{self, error_frame, parts, respond, Origin};
use crate::shard::{Counters, Partition, Shard};
use crate::storage::StorageError;
use crate::watermark::Watermark;

/// Bytes read from the socket at a time; larger frames get their own buffer.
const READ_BUFFER_BYTES: usize = 256 << 10;
/// A frame that has started must finish arriving within this time.
const FRAME_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest push for one subscription.
const PUSH_BYTES_MAX: usize = 1 << 20;

/// Why the reader stopped.
#[derive(Debug)]
enum ReadEnd {
    Eof,
    Io(#[allow(dead_code)] std::io::Error),
    Frame(wire::FrameError),
    Timeout,
    Stopping,
}

/// Buffered frame reader over a byte stream.
struct FrameReader {
    buf: AlignedVec,
    start: usize,
    end: usize,
    body_bytes_max: u32,
}

impl FrameReader {
    fn new(body_bytes_max: u32) -> Self {
        let mut buf = AlignedVec::with_capacity(READ_BUFFER_BYTES);
        buf.resize(READ_BUFFER_BYTES, 0);
        FrameReader { buf, start: 0, end: 0, body_bytes_max }
    }

    fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The next complete frame, copied into its own 16-byte-aligned buffer.
    async fn next<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<AlignedVec, ReadEnd> {
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
                    return Ok(frame);
                }
                if len > self.buf.len() {
                    // Larger than the buffer: its own allocation, sized by a checked length.
                    let mut frame = AlignedVec::with_capacity(len);
                    frame.extend_from_slice(&self.buf[self.start..self.end]);
                    let have = frame.len();
                    frame.resize(len, 0);
                    self.start = 0;
                    self.end = 0;
                    read_exact_timed(r, &mut frame[have..]).await?;
                    check_padding(&frame, &header)?;
                    return Ok(frame);
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
            let n = if partial {
                match futures_lite::future::or(
                    async { Some(r.read(&mut self.buf[self.end..]).await) },
                    async {
                        glommio::timer::sleep(FRAME_READ_TIMEOUT).await;
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

async fn read_exact_timed<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<(), ReadEnd> {
    match futures_lite::future::or(async { Some(r.read_exact(buf).await) }, async {
        glommio::timer::sleep(FRAME_READ_TIMEOUT).await;
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

/// A subscription's live state.
struct Subscription {
    credit: Rc<Cell<u64>>,
    credit_signal: Watermark,
    task: JoinHandle<()>,
}

/// State shared by a connection's reader and its subscription tasks.
struct Conn {
    shard: Rc<Shard>,
    out: LocalSender<AlignedVec>,
    subscriptions: RefCell<HashMap<u64, Subscription>>,
}

/// Serves one connection until the client leaves, a broken frame arrives, it idles out, or
/// the shard stops (`stop` reaches 1).
pub async fn serve<S>(shard: Rc<Shard>, stream: S, stop: Watermark)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    Counters::add(&shard.counters.connections, 1);
    Counters::add(&shard.counters.connections_total, 1);
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let (tx, rx) = local_channel::new_unbounded::<AlignedVec>();
    let writer_task = glommio::spawn_local(async move {
        while let Some(frame) = rx.recv().await {
            if writer.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = writer.close().await;
    })
    .detach();
    let conn = Rc::new(Conn {
        shard: shard.clone(),
        out: tx,
        subscriptions: RefCell::new(HashMap::new()),
    });
    let end = read_loop(&conn, &mut reader, &stop).await;
    if let ReadEnd::Frame(e) = &end {
        let _ = conn.out.try_send(wire::encode_error(0, 0, e.code(), &e.to_string()));
    }
    debug!(?end, "connection closed");
    let subs: Vec<Subscription> = conn.subscriptions.borrow_mut().drain().map(|(_, s)| s).collect();
    for s in subs {
        s.task.cancel();
        Counters::add(&shard.counters.subscriptions, u64::MAX); // -1
    }
    drop(conn);
    // The writer drains what is queued (responses to requests already answered), then closes.
    writer_task.await;
    Counters::add(&shard.counters.connections, u64::MAX);
}

async fn read_loop<R: AsyncRead + Unpin>(
    conn: &Rc<Conn>,
    reader: &mut R,
    stop: &Watermark,
) -> ReadEnd {
    let shard = &conn.shard;
    let inflight =
        Rc::new(glommio::sync::Semaphore::new(shard.config.inflight_per_connection_max as u64));
    let mut frames = FrameReader::new(shard.config.frame_body_bytes_max);
    let idle = Duration::from_millis(shard.config.connection_idle_ms);
    loop {
        let next = frames.next(reader);
        let frame = {
            let stopping = async {
                stop.wait_for(1).await;
                Err(ReadEnd::Stopping)
            };
            let idle_out = async {
                if idle.is_zero() {
                    std::future::pending::<()>().await;
                }
                loop {
                    glommio::timer::sleep(idle).await;
                    if conn.subscriptions.borrow().is_empty() {
                        return Err(ReadEnd::Timeout);
                    }
                }
            };
            futures_lite::future::or(next, futures_lite::future::or(stopping, idle_out)).await
        };
        let frame = match frame {
            Ok(f) => f,
            Err(end) => return end,
        };
        let permit = match inflight.acquire_static_permit(1).await {
            Ok(p) => p,
            Err(_) => return ReadEnd::Stopping,
        };
        let (header, _) = parts(&frame);
        match ApiKey::from_u16(header.api_key) {
            Some(api @ (ApiKey::Subscribe | ApiKey::GrantCredit | ApiKey::Unsubscribe))
                if api.supports(header.version) =>
            {
                Counters::add(&shard.counters.requests, 1);
                let reply = subscription_request(conn, api, &frame).await;
                if !reply.is_empty() {
                    let _ = conn.out.try_send(reply);
                }
                drop(permit);
            }
            _ => {
                let reply = api::start(shard, frame, Origin::Client).await;
                let conn = conn.clone();
                glommio::spawn_local(async move {
                    let frame = reply.await;
                    let _ = conn.out.try_send(frame);
                    drop(permit);
                })
                .detach();
            }
        }
    }
}

async fn subscription_request(conn: &Rc<Conn>, api: ApiKey, frame: &AlignedVec) -> AlignedVec {
    let (header, body) = parts(frame);
    match api {
        ApiKey::Subscribe => {
            let req = match wire::decode_body::<SubscribeRequest>(body) {
                Ok(r) => r,
                Err(e) => return error_frame(&header, e.code(), &e.to_string()),
            };
            let refuse = |code: ErrorCode, message: String| SubscribeResponse {
                subscription_id: req.subscription_id,
                error: code.as_u16(),
                message,
                start_offset: 0,
                high_watermark: 0,
            };
            if conn.subscriptions.borrow().contains_key(&req.subscription_id) {
                return respond(
                    &header,
                    &refuse(ErrorCode::DuplicateSubscription, "subscription id in use".into()),
                );
            }
            let part = match conn.shard.owner(&req.topic, req.partition) {
                Err(code) => {
                    return respond(
                        &header,
                        &refuse(code, format!("{}/{}", req.topic, req.partition)),
                    )
                }
                Ok(owner) if owner != conn.shard.id => {
                    let message = format!(
                        "partition {}/{} is owned by shard {owner}; subscribe on its address",
                        req.topic, req.partition
                    );
                    return respond(&header, &refuse(ErrorCode::NotOwner, message));
                }
                Ok(_) => match conn.shard.partition(&req.topic, req.partition) {
                    Some(p) => p,
                    None => {
                        return respond(
                            &header,
                            &refuse(ErrorCode::UnknownPartition, String::new()),
                        )
                    }
                },
            };
            let log = &part.log;
            let start = match req.start {
                StartPosition::Earliest => log.log_start_offset(),
                StartPosition::Latest => log.high_watermark(),
                StartPosition::Offset(o)
                    if o < log.log_start_offset() || o > log.high_watermark() =>
                {
                    let message = format!(
                        "offset {o} outside [{}, {}]",
                        log.log_start_offset(),
                        log.high_watermark()
                    );
                    return respond(&header, &refuse(ErrorCode::OffsetOutOfRange, message));
                }
                StartPosition::Offset(o) => o,
                StartPosition::Timestamp(ts) => match log.offset_for_timestamp(ts).await {
                    Ok(Some((o, _))) => o,
                    Ok(None) => log.high_watermark(),
                    Err(e) => return respond(&header, &refuse(e.code(), e.to_string())),
                },
            };
            let credit = Rc::new(Cell::new(req.credit_bytes));
            let credit_signal = Watermark::new(0);
            // The response goes out before any push for this subscription.
            let response = respond(
                &header,
                &SubscribeResponse {
                    subscription_id: req.subscription_id,
                    error: 0,
                    message: String::new(),
                    start_offset: start,
                    high_watermark: log.high_watermark(),
                },
            );
            let _ = conn.out.try_send(response);
            let task = glommio::spawn_local(push_loop(
                conn.clone(),
                part.clone(),
                req.subscription_id,
                start,
                credit.clone(),
                credit_signal.clone(),
            ))
            .detach();
            conn.subscriptions
                .borrow_mut()
                .insert(req.subscription_id, Subscription { credit, credit_signal, task });
            Counters::add(&conn.shard.counters.subscriptions, 1);
            // Already sent; the caller's send of this empty marker is skipped.
            AlignedVec::new()
        }
        ApiKey::GrantCredit => {
            let req = match wire::decode_body::<GrantCreditRequest>(body) {
                Ok(r) => r,
                Err(e) => return error_frame(&header, e.code(), &e.to_string()),
            };
            let error = match conn.subscriptions.borrow().get(&req.subscription_id) {
                Some(s) => {
                    s.credit.set(s.credit.get().saturating_add(req.credit_bytes));
                    s.credit_signal.advance(s.credit_signal.get() + 1);
                    ErrorCode::None
                }
                None => ErrorCode::UnknownSubscription,
            };
            respond(
                &header,
                &GrantCreditResponse {
                    subscription_id: req.subscription_id,
                    error: error.as_u16(),
                },
            )
        }
        _ => {
            let req = match wire::decode_body::<UnsubscribeRequest>(body) {
                Ok(r) => r,
                Err(e) => return error_frame(&header, e.code(), &e.to_string()),
            };
            let error = match conn.subscriptions.borrow_mut().remove(&req.subscription_id) {
                Some(s) => {
                    s.task.cancel();
                    Counters::add(&conn.shard.counters.subscriptions, u64::MAX);
                    ErrorCode::None
                }
                None => ErrorCode::UnknownSubscription,
            };
            respond(
                &header,
                &UnsubscribeResponse {
                    subscription_id: req.subscription_id,
                    error: error.as_u16(),
                },
            )
        }
    }
}

/// Pushes a subscription's batches as they are written, within its credit.
async fn push_loop(
    conn: Rc<Conn>,
    part: Rc<Partition>,
    id: u64,
    mut next: u64,
    credit: Rc<Cell<u64>>,
    credit_signal: Watermark,
) {
    let log = &part.log;
    let shard = conn.shard.clone();
    loop {
        if credit.get() == 0 {
            let seen = credit_signal.get();
            if credit.get() == 0 {
                credit_signal.wait_for(seen + 1).await;
            }
            continue;
        }
        if next >= log.high_watermark() && !log.high_watermark_mark().wait_for(next + 1).await {
            let end = SubscriptionData {
                subscription_id: id,
                error: ErrorCode::UnknownTopic.as_u16(),
                high_watermark: next,
                batches: Vec::new(),
            };
            if let Ok(f) = wire::encode_push(&end) {
                let _ = conn.out.try_send(f);
            }
            return;
        }
        let max = (credit.get().min(PUSH_BYTES_MAX as u64)) as usize;
        let (error, batches, hw) = match log.read(next, max).await {
            Ok(out) => {
                let mut bytes = Vec::with_capacity(out.bytes());
                for v in &out.batches {
                    for b in wire::Batches::new(v).flatten() {
                        next = next.max(b.header().next_offset());
                        Counters::add(&shard.counters.batches_out, 1);
                    }
                    bytes.extend_from_slice(v);
                }
                (ErrorCode::None, bytes, out.high_watermark)
            }
            Err(StorageError::OffsetOutOfRange { log_start_offset, .. })
                if next < log_start_offset =>
            {
                // Retention removed what this subscriber had not read yet: skip ahead.
                next = log_start_offset;
                continue;
            }
            Err(e) => (e.code(), Vec::new(), log.high_watermark()),
        };
        if batches.is_empty() && error == ErrorCode::None {
            continue;
        }
        credit.set(credit.get().saturating_sub(batches.len() as u64));
        Counters::add(&shard.counters.bytes_out, batches.len() as u64);
        let last = error != ErrorCode::None;
        let push = SubscriptionData {
            subscription_id: id,
            error: error.as_u16(),
            high_watermark: hw,
            batches,
        };
        match wire::encode_push(&push) {
            Ok(f) => {
                if conn.out.try_send(f).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
        if last {
            return;
        }
    }
}
