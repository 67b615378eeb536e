//! One client connection: read frames, dispatch, write responses and pushes.
//!
//! - Frames are read by a [`FrameReader`] (`frame_reader.rs`: a small per-connection buffer,
//!   larger frames sized only from a checked header, a deadline for a started frame).
//! - Requests are pipelined: each request's second stage runs as its own task and its
//!   response is written when ready, so responses may leave out of order (the correlation id
//!   matches them). At `inflight_per_connection_max` outstanding requests the reader stops
//!   reading until one completes.
//! - A broken frame header gets one error response (correlation id 0) and the connection is
//!   closed: the stream cannot be resynchronized. A bad body, unknown api or version gets an
//!   error response and the connection lives on.
//! - Session apis (subscriptions) are answered here, in order, by `api::subscribe`, which
//!   keeps the connection's subscriptions; pushes are queued on the same writer. A
//!   subscription for a partition owned by another shard is relayed: the owner serves it
//!   and its pushes come back over the mesh to this connection.
//! - Idle connections (no request for `connection_idle_ms` and no subscription) are closed;
//!   a frame that starts but does not finish within `frame_read_timeout_ms` closes it too
//!   (slowloris).

use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::AsyncWriteExt;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::channels::local_channel::{self, LocalSender};
use tracing::debug;
use wire::{AlignedVec, ApiKey};

use crate::api::subscribe::{self, ClientSubscriptions};
use crate::api::{self, placement, Origin, Placement};
use crate::counters::Counters;
use crate::frame_reader::{FrameReader, ReadEnd};
use crate::mesh::PushTarget;
use crate::shard::Shard;
use crate::watermark::Watermark;

/// After the reader stops, queued responses get this long to reach a client that reads.
const WRITER_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// State shared by a connection's reader and its subscription tasks.
struct Conn {
    shard: Rc<Shard>,
    out: LocalSender<AlignedVec>,
    subscriptions: ClientSubscriptions,
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
        subscriptions: ClientSubscriptions::default(),
    });
    let end = read_loop(&conn, &mut reader, &stop).await;
    if let ReadEnd::Frame(e) = &end {
        let _ = conn.out.try_send(wire::encode_error(0, 0, e.code(), &e.to_string()));
    }
    debug!(?end, "connection closed");
    conn.subscriptions.cancel_all(&shard).await;
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
    let target: Rc<dyn PushTarget> = conn.clone();
    loop {
        let next = frames.next(reader);
        let request = {
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
                    if conn.subscriptions.is_empty() {
                        return Err(ReadEnd::Timeout);
                    }
                }
            };
            futures_lite::future::or(next, futures_lite::future::or(stopping, idle_out)).await
        };
        let request = match request {
            Ok(r) => r,
            Err(end) => return end,
        };
        let permit = match inflight.acquire_static_permit(1).await {
            Ok(p) => p,
            Err(_) => return ReadEnd::Stopping,
        };
        match ApiKey::from_u16(request.header.api_key) {
            Some(api)
                if placement(api) == Placement::Session && api.supports(request.header.version) =>
            {
                Counters::add(&shard.counters.requests, 1);
                subscribe::client_request(shard, &conn.subscriptions, &target, api, &request).await;
                drop(permit);
            }
            _ => {
                let reply = api::start(shard, request, Origin::Client).await;
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
