//! One client connection: read frames, dispatch, write responses and pushes.
//!
//! - Frames are read into a small per-connection buffer (`READ_BUFFER_BYTES`, 16 KiB, so
//!   10,000 idle connections cost ~160 MiB at most); a frame larger than that
//!   gets its own buffer sized from the header, after the header's length was checked
//!   against `frame_body_bytes_max` — never from an unchecked length.
//! - Requests are pipelined: each request's second stage runs as its own task and its
//!   response is written when ready, so responses may leave out of order (the correlation id
//!   matches them). At `inflight_per_connection_max` outstanding requests the reader stops
//!   reading until one completes.
//! - A broken frame header gets one error response (correlation id 0) and the connection is
//!   closed: the stream cannot be resynchronized. A bad body, unknown api or version gets an
//!   error response and the connection lives on.
//! - Subscriptions (see [`crate::subscription`]) push batches within the byte credit the
//!   client granted. A subscription for a partition owned by another shard is relayed: the
//!   owner serves it and its pushes come back over the mesh to this connection.
//! - Idle connections (no request for `connection_idle_ms` and no subscription) are closed;
//!   a frame that starts but does not finish within `frame_read_timeout_ms` closes it too
//!   (slowloris).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::channels::local_channel::{self, LocalSender};
use tracing::debug;
use wire::constants::{align_up, FRAME_HEADER_BYTES};
use wire::{
    AlignedVec, ApiKey, ErrorCode, FrameHeader, GrantCreditRequest, GrantCreditResponse,
    SubscribeRequest, SubscribeResponse, UnsubscribeRequest, UnsubscribeResponse,
};

use crate::api::{self, error_frame, parts, respond, Origin};
use crate::shard::{Counters, Route, Shard};
use crate::subscription::{self, PushSink, PushTarget, Subscription};
use crate::watermark::Watermark;

/// Bytes read from the socket at a time; larger frames get their own buffer.
const READ_BUFFER_BYTES: usize = 16 << 10;
/// After the reader stops, queued responses get this long to reach a client that reads.
const WRITER_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// A frame that has started must finish arriving within this time.
    frame_timeout: Duration,
}

impl FrameReader {
    fn new(body_bytes_max: u32, frame_timeout: Duration) -> Self {
        let mut buf = AlignedVec::with_capacity(READ_BUFFER_BYTES);
        buf.resize(READ_BUFFER_BYTES, 0);
        FrameReader { buf, start: 0, end: 0, body_bytes_max, frame_timeout }
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
                    read_exact_timed(r, &mut frame[have..], self.frame_timeout).await?;
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

/// A subscription as its connection sees it.
enum SubEntry {
    /// Served by this shard.
    Local(Subscription),
    /// Served by the owner shard; pushes are relayed under `key`.
    Remote { owner: u32, key: u64 },
}

/// State shared by a connection's reader and its subscription tasks.
struct Conn {
    shard: Rc<Shard>,
    out: LocalSender<AlignedVec>,
    subscriptions: RefCell<HashMap<u64, SubEntry>>,
}

impl PushTarget for Conn {
    fn push(&self, frame: AlignedVec) -> bool {
        self.out.try_send(frame).is_ok()
    }
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
    let subs: Vec<SubEntry> = conn.subscriptions.borrow_mut().drain().map(|(_, s)| s).collect();
    for s in subs {
        match s {
            SubEntry::Local(sub) => sub.cancel(&shard),
            SubEntry::Remote { owner, key } => {
                shard.remove_route(key);
                shard.sub_control(owner, key, None).await;
            }
        }
    }
    drop(conn);
    // The writer drains what is queued (responses to requests already answered), then closes.
    // A client that stopped reading must not hold the connection (or a shutdown) forever.
    let mut writer_task = writer_task;
    let drained = futures_lite::future::or(async { (&mut writer_task).await.is_some() }, async {
        glommio::timer::sleep(WRITER_DRAIN_TIMEOUT).await;
        false
    })
    .await;
    if !drained {
        debug!("writer did not drain in time; dropping the connection");
        writer_task.cancel();
    }
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
    let mut frames = FrameReader::new(
        shard.config.frame_body_bytes_max,
        Duration::from_millis(shard.config.frame_read_timeout_ms.max(1)),
    );
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
    let shard = &conn.shard;
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
            let owner = match shard.owner(&req.topic, req.partition) {
                Ok(o) => o,
                Err(code) => {
                    return respond(
                        &header,
                        &refuse(code, format!("{}/{}", req.topic, req.partition)),
                    )
                }
            };
            if owner != shard.id {
                // Relay: the owner serves it and pushes back over the mesh.
                Counters::add(&shard.counters.forwards_out, 1);
                let key = shard.take_id();
                let target: std::rc::Weak<dyn PushTarget> =
                    Rc::downgrade(&(conn.clone() as Rc<dyn PushTarget>));
                shard.add_route(key, Route::new(target));
                let reply = match shard.forward_send_as(owner, key, frame.clone()).await {
                    Some(rx) => rx.await.ok(),
                    None => None,
                };
                let Some(reply) = reply else {
                    shard.remove_route(key);
                    return respond(
                        &header,
                        &refuse(ErrorCode::NotOwner, format!("shard {owner} unreachable")),
                    );
                };
                let accepted = crate::api::decode_reply::<SubscribeResponse>(&reply)
                    .is_some_and(|r| r.error == 0);
                let _ = conn.out.try_send(reply);
                if accepted {
                    conn.subscriptions
                        .borrow_mut()
                        .insert(req.subscription_id, SubEntry::Remote { owner, key });
                    shard.route_ready(key);
                } else {
                    shard.remove_route(key);
                }
                return AlignedVec::new(); // already sent
            }
            let Some(part) = shard.partition(&req.topic, req.partition) else {
                return respond(&header, &refuse(ErrorCode::UnknownPartition, String::new()));
            };
            let start = match subscription::start_offset(&part, &req.start).await {
                Ok(s) => s,
                Err((code, message)) => return respond(&header, &refuse(code, message)),
            };
            // The response is queued before the first push.
            let response = respond(
                &header,
                &SubscribeResponse {
                    subscription_id: req.subscription_id,
                    error: 0,
                    message: String::new(),
                    start_offset: start,
                    high_watermark: part.log.high_watermark(),
                },
            );
            let _ = conn.out.try_send(response);
            let target: std::rc::Weak<dyn PushTarget> =
                Rc::downgrade(&(conn.clone() as Rc<dyn PushTarget>));
            let sub = subscription::spawn(shard, part, &req, start, PushSink::Local(target));
            conn.subscriptions.borrow_mut().insert(req.subscription_id, SubEntry::Local(sub));
            AlignedVec::new() // already sent
        }
        ApiKey::GrantCredit => {
            let req = match wire::decode_body::<GrantCreditRequest>(body) {
                Ok(r) => r,
                Err(e) => return error_frame(&header, e.code(), &e.to_string()),
            };
            let remote = match conn.subscriptions.borrow().get(&req.subscription_id) {
                Some(SubEntry::Local(sub)) => {
                    sub.grant(req.credit_bytes);
                    Some(None)
                }
                Some(SubEntry::Remote { owner, key }) => Some(Some((*owner, *key))),
                None => None,
            };
            let error = match remote {
                Some(Some((owner, key))) => {
                    shard.sub_control(owner, key, Some(req.credit_bytes)).await;
                    ErrorCode::None
                }
                Some(None) => ErrorCode::None,
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
            let entry = conn.subscriptions.borrow_mut().remove(&req.subscription_id);
            let error = match entry {
                Some(SubEntry::Local(sub)) => {
                    sub.cancel(shard);
                    ErrorCode::None
                }
                Some(SubEntry::Remote { owner, key }) => {
                    shard.remove_route(key);
                    shard.sub_control(owner, key, None).await;
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
