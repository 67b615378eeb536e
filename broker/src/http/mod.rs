//! The HTTP gateway: REST and Server-Sent Events for clients in any language, on its own
//! port (`http.listen`, `--http`, `BROKER_HTTP`; off by default). `openapi.yaml` at the
//! repository root describes the endpoints.
//!
//! - It is an adapter, not a second broker: each HTTP request becomes native request bodies
//!   (`wire::message::*`) run through `api::start` like a native connection's (`native.rs`),
//!   so routing to the owning shard, acks, validation and error codes are shared. Errors are
//!   JSON carrying the native code (`error.rs`).
//! - Every shard accepts on the gateway's port (SO_REUSEPORT, like the public port); a
//!   connection takes a descriptor slot from the same pool as native connections.
//! - HTTP/1.1 is hyper's (`server::conn::http1`) over glommio's `TcpStream` (`io.rs`, which
//!   also holds the slow-client deadlines). One connection's requests are answered in order.
//! - Bounds: a request body at most `http.body_bytes_max` (413 otherwise) read within
//!   `http.read_timeout_ms`; request heads within hyper's `max_buf_size`
//!   ([`HEAD_BYTES_MAX`]); a response that is not read for `http.write_stall_ms` closes the
//!   connection; a stream holds one fetch's bytes at a time (`stream.rs`). Request bodies
//!   and fetches in flight count in the shard's `memory_bytes_per_shard` budget, shared with
//!   native connections: when it is full, the gateway waits (within the deadlines).
//!
//! Files: `io.rs` (socket adapter, deadlines), `native.rs` (the
//! bridge to the api handlers), `routes.rs` (endpoints), `produce.rs` (a body into one native
//! produce), `records.rs` (records ⇄ JSON),
//! `stream.rs` (SSE), `error.rs` (errors as JSON); the settings are `config::HttpConfig`
//! (`config/http.rs`).

pub mod auth;
pub mod error;
pub mod io;
pub mod native;
pub mod produce;
pub mod records;
pub mod routes;
pub mod stream;

use std::cell::Cell;
use std::convert::Infallible;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use glommio::net::TcpListener;
use tracing::{debug, warn};

pub use crate::config::HttpConfig;

use crate::connection_info::ConnectionInfo;
use crate::counters::Counters;
use crate::shard::Shard;
use crate::tls::{Listener, ServerTls};
use crate::watermark::Watermark;

/// Largest request head (request line and headers) hyper buffers; a longer one is refused
/// with 431.
pub const HEAD_BYTES_MAX: usize = 64 * 1024;

/// Every response body: a full JSON document or an event stream. Not `Send` (it lives on
/// its shard), which HTTP/1 connections do not need.
pub type Body = std::pin::Pin<Box<dyn hyper::body::Body<Data = Bytes, Error = Infallible>>>;

/// The gateway's state on one shard.
pub struct Gateway {
    /// The shard it runs on.
    pub shard: Rc<Shard>,
    /// The partition for the next request's unkeyed records (round robin per request),
    /// shared by every request on the shard.
    pub sticky: Rc<Cell<u32>>,
    /// Who the request is (`auth.rs`); the shard-wide gateway's is never used for a request.
    pub session: Rc<crate::auth::Session>,
}

impl Gateway {
    /// The gateway as seen by one request of `session`.
    pub fn for_request(&self, session: Rc<crate::auth::Session>) -> Rc<Gateway> {
        Rc::new(Gateway { shard: self.shard.clone(), sticky: self.sticky.clone(), session })
    }
}

/// Accepts HTTP connections on `listener` until the shard stops; with `tls`, each one
/// after its TLS handshake (HTTPS).
pub async fn serve(
    shard: Rc<Shard>,
    listener: TcpListener,
    stop: Watermark,
    gate: Rc<glommio::sync::Gate>,
    tls: Option<Arc<ServerTls>>,
) {
    let gw = Rc::new(Gateway {
        sticky: Rc::new(Cell::new(shard.id)),
        shard,
        session: crate::auth::Session::new(None),
    });
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(shard = gw.shard.id, error = %e, "http accept failed");
                glommio::timer::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The same descriptor pool and per-shard limit as native connections.
        let slot = (gw.shard.counters.connections.get()
            < gw.shard.config.connections_per_shard_max as u64)
            .then(|| gw.shard.connection_slots.take())
            .flatten();
        let Some(slot) = slot else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (gw, stop, tls) = (gw.clone(), stop.clone(), tls.clone());
        match gate.spawn(async move {
            let peer = stream.peer_addr().ok();
            // Counted with the native and Kafka connections (their per-shard limit), from
            // accept: a TLS handshake in progress counts too.
            let shard = gw.shard.clone();
            Counters::add(&shard.counters.connections, 1);
            Counters::add(&shard.counters.connections_total, 1);
            match tls {
                None => connection(gw, stream, ConnectionInfo::plaintext(peer), stop).await,
                Some(tls) => {
                    let counters = &shard.counters;
                    let accepted = tls.handshake(counters, Listener::Http, stream, peer).await;
                    if let Some((stream, info)) = accepted {
                        connection(gw, stream, info, stop).await;
                    }
                }
            }
            Counters::sub(&shard.counters.connections, 1);
            drop(slot);
        }) {
            Ok(task) => task.detach(),
            Err(_) => return, // the shard is stopping
        };
    }
}

/// Serves one HTTP connection until the client leaves, a deadline passes, or the shard stops.
/// Each request carries `info` in its extensions (who the client is, whether it is TLS).
async fn connection<S>(gw: Rc<Gateway>, stream: S, info: ConnectionInfo, stop: Watermark)
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + 'static,
{
    let http = &gw.shard.config.http;
    let activity = Rc::new(io::Activity::default());
    let conn_auth = auth::ConnAuth::new(&info);
    let socket = io::Io::new(
        stream,
        activity.clone(),
        Duration::from_millis(http.read_timeout_ms),
        Duration::from_millis(http.write_stall_ms),
    );
    let service = {
        let gw = gw.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(info.clone());
            let (gw, activity, conn_auth) = (gw.clone(), activity.clone(), conn_auth.clone());
            async move { Ok::<_, Infallible>(routes::handle(&gw, &activity, &conn_auth, req).await) }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Deadlines are `io.rs`'s (hyper's need a Send timer).
    builder.header_read_timeout(None).max_buf_size(HEAD_BYTES_MAX).keep_alive(true);
    let conn = builder.serve_connection(socket, service);
    let ended = futures_lite::future::or(async { Some(conn.await) }, async {
        stop.wait_for(1).await;
        None
    })
    .await;
    if let Some(Err(e)) = ended {
        debug!(error = %e, "http connection ended");
    }
}
