//! One client connection: read frames, dispatch, write responses and pushes.
//!
//! - Frames are read by a [`FrameReader`] (`frame_reader.rs`: a small per-connection buffer,
//!   larger frames sized only from a checked header, a deadline for a started frame).
//! - Requests are pipelined: each request's second stage runs as its own task and its
//!   response is written when ready, so responses may leave out of order (the correlation id
//!   matches them). Responses and pushes queued together leave in one socket write. A
//!   request counts as outstanding until its response is on the socket, not merely queued.
//!   At `inflight_per_connection_max` outstanding requests the reader stops reading until
//!   one is written; it still watches the socket meanwhile (`watched.rs`, ≤ 1 KiB read
//!   ahead), so a client that leaves ends its long-polls at once instead of at their
//!   deadlines, and the same while it waits for a response's room (`wait_watching`).
//! - What the connection holds for the client is bounded in bytes
//!   (`connection_send_queue_bytes_max`): responses and pushes queued and not yet written,
//!   plus what each outstanding request's response may take (a fetch's `max_bytes`, see
//!   `api::response_reservation`; a fetch grows it for a first batch beyond its
//!   `max_bytes` before reading it, `budget::ResponseRoom`), reserved before the request
//!   runs — or, for a fetch that would only wait for data, once data came or its wait
//!   ended, in its own task (`api/long_poll.rs`: idle long-polls hold nothing). While that
//!   is full the reader reads no new request (one always may run when nothing is held), and a local
//!   subscription reads nothing more from the log: a client that does not read holds at most
//!   the bound (plus one response), and the log is the buffer. Pushes relayed from another
//!   shard cannot wait: a connection whose relayed pushes pass twice the bound is closed as a
//!   slow consumer (it resumes from its own position after reconnecting).
//! - All of a shard's connections together hold at most `memory_bytes_per_shard` (request
//!   bodies as they arrive, queued frames, reservations; `budget.rs`): while it is full,
//!   connections that want more pause. Requests that reserve nothing (produce) or hold
//!   their room at once (metadata, `api::Reservation::Now`) never wait for it, and a connection whose frame does not reach the socket within
//!   `connection_write_stall_ms` is closed, so clients that do not read cannot hold the
//!   others hostage for longer than that.
//! - A broken frame header gets one error response (correlation id 0) and the connection is
//!   closed: the stream cannot be resynchronized. A bad body, unknown api or version gets an
//!   error response and the connection lives on.
//! - Session apis (subscriptions) are answered here, in order, by `api::subscribe`, which
//!   keeps the connection's subscriptions; pushes are queued on the same writer. A
//!   subscription for a partition owned by another shard is relayed: the owner serves it
//!   and its pushes come back over the mesh to this connection.
//! - Who the client is (`auth::Session`): SASL requests are answered here, in order; a
//!   failed authentication is answered and the connection closed. Every other request passes
//!   the authorization check (`api::start_client`, or before a subscription) first.
//! - Idle connections (no request for `connection_idle_ms` and no subscription) are closed;
//!   a frame that starts but does not finish within `frame_read_timeout_ms` closes it too
//!   (slowloris).

use std::cell::Cell;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::AsyncWriteExt;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::sync::StaticPermit;
use tracing::debug;
use wire::ApiKey;

use crate::api::long_poll::LongPoll;
use crate::api::subscribe::{self, ClientSubscriptions};
use crate::api::{self, placement, response_reservation, Placement, Reservation};
use crate::auth::Session;
use crate::budget::{self, wait_until, Held, MemoryBudget, ResponseRoom};
use crate::connection_info::ConnectionInfo;
use crate::counters::Counters;
use crate::frame_reader::{FrameReader, ReadEnd};
use crate::mesh::PushTarget;
use crate::out_frame::OutFrame;
use crate::shard::Shard;
use crate::stage_latency::{self, Stage};
use crate::watched::Watched;
use crate::watermark::Watermark;

/// After the reader stops, queued responses get this long to reach a client that reads.
const WRITER_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Frames queued together go out in one vectored socket write of up to about this many
/// bytes (the last one may pass it).
const COALESCE_BYTES_MAX: usize = 64 << 10;

/// What a frame on its way to the socket holds of the connection's and the shard's budgets
/// (one [`Held`] of each, the same bytes).
type Holds = Vec<Held>;

/// A frame on its way to the socket, with what it holds until it is written.
struct Outgoing {
    frame: OutFrame,
    /// When it was queued (`stage_latency`'s `response_write`).
    queued: std::time::Instant,
    _holds: Holds,
    /// The request's in-flight permit, released once the response is written.
    _permit: Option<StaticPermit>,
}

/// State shared by a connection's reader, its writer and its subscription tasks.
struct Conn {
    shard: Rc<Shard>,
    out: LocalSender<Outgoing>,
    subscriptions: ClientSubscriptions,
    /// This connection's budget (`connection_send_queue_bytes_max`); the shard's is
    /// `shard.memory`.
    budget: Rc<MemoryBudget>,
    /// Bytes of frames queued for the socket (not reservations).
    queued_bytes: Cell<usize>,
    /// Reaches 1 when the connection must close (a slow consumer of relayed pushes).
    doomed: Watermark,
    /// Reaches 1 when the connection's user was deleted (`auth::session::watch_revocation`).
    revoked: Watermark,
    /// Reaches 1 when the reader stopped (the client left, or the connection is closing):
    /// requests still waiting for data (long-poll fetches) answer now with what they have
    /// instead of holding their room and in-flight slot until their deadline.
    reading_ended: Watermark,
    /// Where the client is, whether the connection is TLS, its mTLS principal.
    info: ConnectionInfo,
}

impl Conn {
    /// Waits until `bytes` fit this connection's and the shard's budgets, then holds them.
    async fn reserve(&self, bytes: usize) -> Holds {
        budget::reserve(&[&self.budget, &self.shard.memory], bytes).await
    }

    /// Takes a response's room the way `reservation` says (`api::Reservation`).
    async fn reserve_for(&self, reservation: Reservation) -> Holds {
        match reservation {
            Reservation::Wait(bytes) => self.reserve(bytes).await,
            Reservation::Now(bytes) => self.hold_now(bytes),
            Reservation::Whole => {
                let budget = &self.budget;
                wait_until(&[&**budget], || !budget.is_full()).await;
                vec![budget.hold_now(budget.held_bytes_max()), self.shard.memory.hold_now(0)]
            }
        }
    }

    fn hold_now(&self, bytes: usize) -> Holds {
        budget::hold_all_now(&[&self.budget, &self.shard.memory], bytes)
    }

    /// Queues `frame` for the socket with what was reserved for it (grown or shrunk to the
    /// memory it keeps).
    fn send(&self, frame: OutFrame, mut holds: Holds, permit: Option<StaticPermit>) -> bool {
        let len = frame.len();
        let keeps = frame.held_bytes();
        for held in &mut holds {
            held.fit(keeps);
        }
        self.queued_bytes.set(self.queued_bytes.get() + len);
        match self.out.try_send(Outgoing {
            frame,
            queued: std::time::Instant::now(),
            _holds: holds,
            _permit: permit,
        }) {
            Ok(()) => true,
            Err(_) => {
                self.queued_bytes.set(self.queued_bytes.get() - len);
                false
            }
        }
    }
}

impl PushTarget for Conn {
    fn push(&self, frame: OutFrame) -> bool {
        if self.queued_bytes.get() > 2 * self.budget.held_bytes_max() {
            // Only relayed pushes get here (local ones wait for room): close, do not buffer.
            self.doomed.advance(1);
            return false;
        }
        self.send(frame, self.hold_now(0), None)
    }

    fn reserve(&self, bytes: usize) -> Pin<Box<dyn Future<Output = Option<Holds>>>> {
        let (conn, shard) = (self.budget.clone(), self.shard.memory.clone());
        Box::pin(async move {
            let fits = || conn.has_room(bytes) && shard.has_room(bytes);
            if !wait_until(&[&conn, &shard], fits).await {
                return None; // a budget closed: the connection is going
            }
            Some(budget::hold_all_now(&[&conn, &shard], bytes))
        })
    }

    fn push_reserved(&self, frame: OutFrame, mut holds: Holds) -> bool {
        let keeps = frame.held_bytes();
        for held in &mut holds {
            held.shrink(held.bytes().saturating_sub(keeps));
        }
        self.send(frame, holds, None)
    }
}

/// Serves one connection until the client leaves, a broken frame arrives, it idles out, or
/// the shard stops (`stop` reaches 1). `stream` is the socket or its TLS session (the
/// handshake is done); `info` says which and who the client is; `session` is who it
/// authenticated as (`auth/`).
pub async fn serve<S>(
    shard: Rc<Shard>,
    stream: S,
    info: ConnectionInfo,
    stop: Watermark,
    session: Rc<Session>,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    Counters::add(&shard.counters.connections, 1);
    Counters::add(&shard.counters.connections_total, 1);
    let (mut reader, writer) = crate::stream_halves::split(stream);
    let (tx, rx) = local_channel::new_unbounded::<Outgoing>();
    let conn = Rc::new(Conn {
        shard: shard.clone(),
        out: tx,
        subscriptions: ClientSubscriptions::default(),
        budget: MemoryBudget::new(shard.config.connection_send_queue_bytes_max),
        queued_bytes: Cell::new(0),
        doomed: Watermark::new(0),
        revoked: Watermark::new(0),
        reading_ended: Watermark::new(0),
        info,
    });
    let write_stall = Duration::from_millis(shard.config.connection_write_stall_ms.max(1));
    let writer_task =
        glommio::spawn_local(write_loop(Rc::downgrade(&conn), rx, writer, write_stall)).detach();
    let end = read_loop(&conn, &mut Watched::new(&mut reader), &stop, &session).await;
    conn.reading_ended.advance(1);
    if let ReadEnd::Frame(e) = &end {
        let frame = wire::encode_error(0, 0, e.code(), &e.to_string());
        conn.send(frame.into(), conn.hold_now(0), None);
    }
    debug!(?end, peer = ?conn.info.peer_addr, principal = ?conn.info.principal, "connection closed");
    conn.subscriptions.cancel_all(&shard).await;
    conn.budget.close();
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
    Counters::sub(&shard.counters.connections, 1);
}

/// Writes queued frames to the socket until the queue closes or a write fails or stalls.
/// Frames queued together go out in one vectored write (up to [`COALESCE_BYTES_MAX`],
/// without copying them: pushed batches are most of a consumer connection's bytes): at many
/// small batches per second (a produce answer and a push per batch) one socket write per
/// frame was most of a shard's kernel time. Under TLS the frames are encrypted into records
/// that go out in one `sendmsg` too (glommio's patched `poll_write_vectored`).
async fn write_loop<W: AsyncWrite + Unpin>(
    conn: std::rc::Weak<Conn>,
    rx: local_channel::LocalReceiver<Outgoing>,
    mut writer: W,
    write_stall: Duration,
) {
    let mut outs: Vec<Outgoing> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut bytes = first.frame.len();
        outs.push(first);
        while bytes < COALESCE_BYTES_MAX {
            match futures_lite::future::poll_once(rx.recv()).await {
                Some(Some(next)) => {
                    bytes += next.frame.len();
                    outs.push(next);
                }
                _ => break,
            }
        }
        // Frames that do not reach the socket in `connection_write_stall_ms` cut the client
        // off: it would hold its share of the shard's budget forever.
        let written = futures_lite::future::or(
            // The flush matters under TLS: a write that found the socket full leaves
            // encrypted bytes in the session, and nothing else would push them out.
            async {
                let written = write_frames(&mut writer, &outs).await;
                Some(written.is_ok() && writer.flush().await.is_ok())
            },
            async {
                glommio::timer::sleep(write_stall).await;
                None
            },
        )
        .await;
        let conn = conn.upgrade();
        for out in outs.drain(..) {
            if written == Some(true) {
                stage_latency::record_since(Stage::ResponseWrite, out.queued);
            }
            if let Some(conn) = &conn {
                conn.queued_bytes.set(conn.queued_bytes.get() - out.frame.len());
            }
            // Its budget and the request's permit go once the frame is on the socket.
            drop(out);
        }
        if written.is_none() {
            if let Some(conn) = &conn {
                conn.doomed.advance(1);
            }
        }
        if written != Some(true) {
            break;
        }
    }
    // What is still queued goes now, with the slots and room it holds (the reader may be
    // waiting for them), and nothing more can be queued.
    while let Some(Some(out)) = futures_lite::future::poll_once(rx.recv()).await {
        if let Some(conn) = conn.upgrade() {
            conn.queued_bytes.set(conn.queued_bytes.get() - out.frame.len());
        }
    }
    drop(rx);
    let _ = writer.close().await;
}

/// Writes every frame of `outs`, in order, in as few vectored writes as the socket takes.
async fn write_frames<W: AsyncWrite + Unpin>(
    writer: &mut W,
    outs: &[Outgoing],
) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(outs.len());
    for o in outs {
        o.frame.extend_io_slices(&mut slices);
    }
    let mut left = &mut slices[..];
    while !left.is_empty() {
        match writer.write_vectored(left).await? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            n => IoSlice::advance_slices(&mut left, n),
        }
    }
    Ok(())
}

async fn read_loop<R: AsyncRead + Unpin>(
    conn: &Rc<Conn>,
    reader: &mut Watched<R>,
    stop: &Watermark,
    session: &Rc<Session>,
) -> ReadEnd {
    let shard = &conn.shard;
    let inflight =
        Rc::new(glommio::sync::Semaphore::new(shard.config.inflight_per_connection_max as u64));
    let mut frames = FrameReader::new(
        shard.config.frame_body_bytes_max,
        Duration::from_millis(shard.config.frame_read_timeout_ms.max(1)),
        shard.memory.clone(),
    );
    let idle = Duration::from_millis(shard.config.connection_idle_ms);
    let target: Rc<dyn PushTarget> = conn.clone();
    loop {
        let next = frames.next(reader);
        let request = {
            let idle_out = async {
                if idle.is_zero() {
                    std::future::pending::<()>().await;
                }
                loop {
                    glommio::timer::sleep(idle).await;
                    if conn.subscriptions.is_empty() {
                        return Err(ReadEnd::Timeout);
                    }
                }
            };
            let ends = futures_lite::future::or(async { Err(ending(conn, stop).await) }, idle_out);
            futures_lite::future::or(next, ends).await
        };
        let request = match request {
            Ok(r) => r,
            Err(end) => return end,
        };
        let permit =
            match wait_watching(conn, reader, stop, inflight.acquire_static_permit(1)).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => return ReadEnd::Stopping,
                Err(end) => return end,
            };
        match ApiKey::from_u16(request.header.api_key) {
            Some(api @ (ApiKey::SaslHandshake | ApiKey::SaslAuthenticate))
                if api.supports(request.header.version) =>
            {
                Counters::add(&shard.counters.requests, 1);
                let was_authenticated = session.is_authenticated();
                let answer = session.sasl(&shard.security, api, &request.header, request.body());
                conn.send(answer.frame.into(), conn.hold_now(0), Some(permit));
                if answer.close {
                    return ReadEnd::Refused;
                }
                if !was_authenticated && session.is_authenticated() {
                    crate::auth::session::watch_revocation(
                        session,
                        shard.security.clone(),
                        conn.revoked.clone(),
                    );
                }
            }
            Some(api)
                if placement(api) == Placement::Session && api.supports(request.header.version) =>
            {
                Counters::add(&shard.counters.requests, 1);
                match crate::auth::authorize::check(&shard.security, session, &request) {
                    Ok(_) => {
                        subscribe::client_request(
                            shard,
                            &conn.subscriptions,
                            &target,
                            api,
                            &request,
                        )
                        .await
                    }
                    Err(frame) => {
                        conn.send(frame.into(), conn.hold_now(0), None);
                    }
                }
                drop(permit);
            }
            _ => {
                // What the response may take is held before the request runs; a fetch that
                // would only wait for data holds nothing until data came (`long_poll.rs`).
                // The request shares the room with this task: a fetch grows it for a first
                // batch beyond its `max_bytes` before reading it.
                let reservation = response_reservation(shard, &request);
                let room = Rc::new(ResponseRoom::default());
                let poll = LongPoll::of_request(shard, session, &request);
                if poll.is_none() {
                    match wait_watching(conn, reader, stop, conn.reserve_for(reservation)).await {
                        Ok(holds) => room.put(holds),
                        Err(end) => return end,
                    }
                }
                let request =
                    request.with_room(room.clone()).ending_wait_at(conn.reading_ended.clone());
                let (started, api_key) = (std::time::Instant::now(), request.header.api_key);
                let reply = api::start_client(shard, request, session).await;
                let (conn, shard) = (conn.clone(), shard.clone());
                glommio::spawn_local(async move {
                    if let Some(poll) = poll {
                        poll.wait(&shard, Some(&conn.reading_ended)).await;
                        room.put(conn.reserve_for(reservation).await);
                    }
                    let frame = reply.await;
                    let code = crate::counters::frame_error_code(&frame);
                    shard.counters.answered(api_key, code, started.elapsed());
                    conn.send(frame.into(), room.take(), Some(permit));
                })
                .detach();
            }
        }
    }
}

/// Resolves when the connection must end whatever its reader is doing: the shard stops, the
/// writer gave up on the client (`doomed`: a write stalled, or relayed pushes piled up), or
/// the client's user was deleted.
async fn ending(conn: &Conn, stop: &Watermark) -> ReadEnd {
    let stopping = async {
        stop.wait_for(1).await;
        ReadEnd::Stopping
    };
    let doomed = async {
        conn.doomed.wait_for(1).await;
        ReadEnd::SlowConsumer
    };
    let revoked = async {
        conn.revoked.wait_for(1).await;
        ReadEnd::Refused
    };
    futures_lite::future::or(stopping, futures_lite::future::or(doomed, revoked)).await
}

/// Waits for `wait` while the reader reads no request (every in-flight slot is taken, or the
/// response's room is not free): [`ending`] ends the wait (the answers queued behind a
/// writer that gave up hold their slots and room until the connection goes), and the socket
/// is still watched (`watched.rs`, ≤ 1 KiB read ahead), so a client that leaves ends its
/// long-polls now (`reading_ended`) and their slots and room come back; what it sent before
/// leaving is still answered (a half-closed client reads), then the next read ends.
async fn wait_watching<R: AsyncRead + Unpin, T>(
    conn: &Conn,
    reader: &mut Watched<R>,
    stop: &Watermark,
    wait: impl Future<Output = T>,
) -> Result<T, ReadEnd> {
    let watch = async {
        reader.watch().await;
        conn.reading_ended.advance(1);
        std::future::pending().await
    };
    let ends = futures_lite::future::or(watch, async { Err(ending(conn, stop).await) });
    let waited = futures_lite::future::or(async { Ok(wait.await) }, ends).await;
    // The writer that gives up frees the slots and room its queue held in the same step as
    // it dooms the connection: the wait may end with both; the end wins (the request read
    // would run for a client whose answers are thrown away).
    if waited.is_ok() {
        if let Some(end) = futures_lite::future::poll_once(ending(conn, stop)).await {
            return Err(end);
        }
    }
    waited
}
