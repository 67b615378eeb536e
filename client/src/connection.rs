//! One pipelined connection to one broker address.
//!
//! A writer task sends frames in submission order; a reader task reads responses and hands
//! each to the request that waits for its correlation id (responses may come back in any
//! order), and routes pushes to their subscription's channel. Every request has a timeout;
//! a request that times out on a connection from which nothing at all was read for a whole
//! timeout ends the connection (a half-open one: the broker's host gone without a reset),
//! failing what waited on it, so the next request connects again instead of waiting its
//! timeout out on the dead socket each time.
//! With TLS (`tls.rs`) the same tasks run over the TLS session's halves.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use wire::constants::{FLAG_ERROR, FLAG_PUSH, FRAME_HEADER_BYTES};
use wire::{AlignedVec, ErrorBody, ErrorCode, FrameHeader, Message};

use crate::error::ClientError;
use crate::tls::ClientTls;

/// A received frame.
#[derive(Debug)]
pub struct Frame {
    /// Its header.
    pub header: FrameHeader,
    /// Header, body and padding.
    pub bytes: AlignedVec,
}

impl Frame {
    /// The body archive.
    pub fn body(&self) -> &[u8] {
        &self.bytes[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + self.header.body_len as usize]
    }
}

/// Bytes read from the socket (or TLS session) at a time; a read of a larger body bypasses
/// the buffer.
const READ_BUFFER_BYTES: usize = 64 << 10;

/// The read and write halves of the socket or its TLS session.
type Reader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
type Writer = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// Who waits for a response.
enum Waiter {
    /// A task, in [`PendingResponse::wait`] (which times out on its own).
    Task(oneshot::Sender<Frame>),
    /// A callback the reader task runs as the frame arrives (one task hop less than
    /// waking a waiting task), or with the error when the connection ends or `deadline`
    /// passes (the connection's sweeper).
    Call { deadline: Instant, api: &'static str, call: Callback },
}

/// What [`Connection::send_then`] runs with the response: on the reader task, so it must
/// not block (it may send more requests).
pub type Callback = Box<dyn FnOnce(Result<Frame, ClientError>) + Send>;

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Waiter::Task(_) => f.write_str("Task"),
            Waiter::Call { deadline, api, .. } => {
                f.debug_struct("Call").field("deadline", deadline).field("api", api).finish()
            }
        }
    }
}

/// Whether the connection is alive, shared by its reader, its sweeper and its requests.
#[derive(Debug)]
struct Health {
    addr: SocketAddr,
    born: Instant,
    /// Milliseconds after `born` when the reader last read a frame.
    heard_ms: AtomicU64,
    /// Set when the connection ended; later requests fail at once.
    dead: std::sync::atomic::AtomicBool,
    pending: Mutex<HashMap<u64, Waiter>>,
    pushes: Mutex<HashMap<u64, mpsc::UnboundedSender<Frame>>>,
    /// The reader task, ended when the connection is given up.
    reader: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Health {
    fn heard(&self) {
        self.heard_ms.store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// The connection ended: everyone waiting fails (senders dropped, callbacks called with
    /// `Closed`) and push streams end.
    fn end(&self) {
        self.dead.store(true, Ordering::SeqCst);
        let waiters: Vec<Waiter> =
            self.pending.lock().expect("pending lock").drain().map(|(_, w)| w).collect();
        for w in waiters {
            if let Waiter::Call { call, .. } = w {
                call(Err(ClientError::Closed { addr: self.addr }));
            }
        }
        self.pushes.lock().expect("pushes lock").clear();
    }

    /// A request timed out: if nothing was read for a whole `timeout`, the connection is
    /// taken for dead (half-open) and ended.
    fn timed_out(&self, timeout: Duration) {
        let now_ms = self.born.elapsed().as_millis() as u64;
        let silent_ms = now_ms.saturating_sub(self.heard_ms.load(Ordering::Relaxed));
        if silent_ms < timeout.as_millis() as u64 || self.dead.load(Ordering::SeqCst) {
            return;
        }
        if let Some(reader) = self.reader.lock().expect("reader lock").take() {
            reader.abort();
        }
        self.end();
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct Connection {
    addr: SocketAddr,
    out: mpsc::UnboundedSender<AlignedVec>,
    next_id: AtomicU64,
    timeout: Duration,
    /// Who waits for what, and whether the connection still works.
    health: Arc<Health>,
}

impl Connection {
    /// Connects to `addr`, over TLS when `tls` is given (connect and handshake within
    /// `timeout`).
    pub async fn connect(
        addr: SocketAddr,
        timeout: Duration,
        tls: Option<&ClientTls>,
    ) -> Result<Arc<Self>, ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Connect { addr, message: "timed out".into() })?
            .map_err(|e| ClientError::Connect { addr, message: e.to_string() })?;
        stream.set_nodelay(true).ok();
        let (reader, mut writer): (Reader, Writer) = match tls {
            None => {
                let (r, w) = stream.into_split();
                (Box::new(r), Box::new(w))
            }
            Some(tls) => {
                let stream = tokio::time::timeout(timeout, tls.connect(stream))
                    .await
                    .map_err(|_| ClientError::Connect {
                        addr,
                        message: "TLS handshake timed out".into(),
                    })?
                    .map_err(|e| ClientError::Tls(format!("handshake with {addr} failed: {e}")))?;
                let (r, w) = tokio::io::split(stream);
                (Box::new(r), Box::new(w))
            }
        };
        // Frames are read through a buffer: a frame's header and body (and the next frames
        // that arrived with them) come in one read of the socket, not two or more.
        let mut reader = tokio::io::BufReader::with_capacity(READ_BUFFER_BYTES, reader);
        let (out, mut rx) = mpsc::unbounded_channel::<AlignedVec>();
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                // Flushed: under TLS a write that found the socket full leaves encrypted
                // bytes in the session until the next write or flush.
                if writer.write_all(&frame).await.is_err() || writer.flush().await.is_err() {
                    break;
                }
            }
        });
        let health = Arc::new(Health {
            addr,
            born: Instant::now(),
            heard_ms: AtomicU64::new(0),
            dead: std::sync::atomic::AtomicBool::new(false),
            pending: Mutex::default(),
            pushes: Mutex::default(),
            reader: Mutex::new(None),
        });
        let h = health.clone();
        let reader_task = tokio::spawn(async move {
            loop {
                let mut head = [0u8; FRAME_HEADER_BYTES];
                if reader.read_exact(&mut head).await.is_err() {
                    break;
                }
                let Ok(header) =
                    FrameHeader::decode(&head, wire::constants::FRAME_BODY_BYTES_LIMIT)
                else {
                    break;
                };
                let mut bytes = AlignedVec::with_capacity(header.frame_len());
                bytes.extend_from_slice(&head);
                bytes.resize(header.frame_len(), 0);
                if reader.read_exact(&mut bytes[FRAME_HEADER_BYTES..]).await.is_err() {
                    break;
                }
                let frame = Frame { header, bytes };
                h.heard();
                if header.has_flag(FLAG_PUSH) {
                    let Ok(data) = wire::access_body::<wire::SubscriptionData>(frame.body()) else {
                        continue;
                    };
                    let id = data.subscription_id.to_native();
                    let tx = h.pushes.lock().expect("pushes lock").get(&id).cloned();
                    if let Some(tx) = tx {
                        let _ = tx.send(frame);
                    }
                } else {
                    // Taken out first: a callback may send (and so lock `pending`) itself.
                    let waiter =
                        h.pending.lock().expect("pending lock").remove(&header.correlation_id);
                    match waiter {
                        Some(Waiter::Task(tx)) => {
                            let _ = tx.send(frame);
                        }
                        Some(Waiter::Call { call, .. }) => call(Ok(frame)),
                        None => {}
                    }
                }
            }
            // Connection gone: fail everyone waiting and end streams.
            h.end();
        });
        *health.reader.lock().expect("reader lock") = Some(reader_task.abort_handle());
        tokio::spawn(sweep_expired(Arc::downgrade(&health), timeout));
        Ok(Arc::new(Connection { addr, out, next_id: AtomicU64::new(1), timeout, health }))
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the connection still works.
    pub fn is_open(&self) -> bool {
        !self.out.is_closed() && !self.health.dead.load(Ordering::SeqCst)
    }

    /// Sends `req` now (frames leave in call order) and returns its pending response.
    pub fn send<T: Message>(&self, req: &T) -> Result<PendingResponse, ClientError> {
        let (tx, rx) = oneshot::channel();
        let id = self.submit(req, Waiter::Task(tx)).map_err(|(e, _)| e)?;
        Ok(PendingResponse {
            rx,
            id,
            addr: self.addr,
            timeout: self.timeout,
            api: T::API_KEY.name(),
            health: self.health.clone(),
        })
    }

    /// Sends `req` now (frames leave in call order); `call` runs with its response on the
    /// connection's reader task, or with the error if the connection ends or the request
    /// times out first. If the request cannot be sent, `call` comes back with the error, not
    /// called (the caller may hold locks `call` takes).
    pub fn send_then<T: Message>(
        &self,
        req: &T,
        call: Callback,
    ) -> Result<(), (ClientError, Callback)> {
        let deadline = Instant::now() + self.timeout;
        match self.submit(req, Waiter::Call { deadline, api: T::API_KEY.name(), call }) {
            Err((e, Some(Waiter::Call { call, .. }))) => Err((e, call)),
            // Not sent, but the reader failed it already (it was called, and is gone).
            _ => Ok(()),
        }
    }

    /// Encodes `req` under the next correlation id, registers `waiter` for its response and
    /// puts the frame on the wire. On failure the waiter comes back with the error, unless
    /// the reader, ending, took it first.
    fn submit<T: Message>(
        &self,
        req: &T,
        waiter: Waiter,
    ) -> Result<u64, (ClientError, Option<Waiter>)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = match wire::encode_request(id, req) {
            Ok(f) => f,
            Err(e) => return Err((ClientError::Protocol(e.to_string()), Some(waiter))),
        };
        if !self.is_open() {
            return Err((ClientError::Closed { addr: self.addr }, Some(waiter)));
        }
        let health = &self.health;
        health.pending.lock().expect("pending lock").insert(id, waiter);
        if health.dead.load(Ordering::SeqCst) || self.out.send(frame).is_err() {
            let waiter = health.pending.lock().expect("pending lock").remove(&id);
            return Err((ClientError::Closed { addr: self.addr }, waiter));
        }
        Ok(id)
    }

    /// Sends `req` and waits for its response frame.
    pub async fn request_frame<T: Message>(&self, req: &T) -> Result<Frame, ClientError> {
        self.send(req)?.wait().await
    }

    /// Sends `req` and decodes its response.
    pub async fn request<T: Message, R>(&self, req: &T) -> Result<R, ClientError>
    where
        R: rkyv::Archive,
        R::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>,
            > + rkyv::Deserialize<R, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        let frame = self.request_frame(req).await?;
        if frame.header.has_flag(FLAG_ERROR) {
            let e: ErrorBody = wire::decode_body(frame.body())
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            return Err(ClientError::Broker {
                code: ErrorCode::from_u16(e.code).unwrap_or(ErrorCode::UnknownServerError),
                message: e.message,
                addr: self.addr,
            });
        }
        wire::decode_body::<R>(frame.body()).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Routes pushes for `subscription_id` to a new channel.
    pub fn register_pushes(&self, subscription_id: u64) -> mpsc::UnboundedReceiver<Frame> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.health.pushes.lock().expect("pushes lock").insert(subscription_id, tx);
        rx
    }

    /// Stops routing pushes for `subscription_id`.
    pub fn unregister_pushes(&self, subscription_id: u64) {
        self.health.pushes.lock().expect("pushes lock").remove(&subscription_id);
    }
}

/// A request on the wire whose response has not been read yet.
#[derive(Debug)]
pub struct PendingResponse {
    rx: oneshot::Receiver<Frame>,
    id: u64,
    addr: SocketAddr,
    timeout: Duration,
    api: &'static str,
    health: Arc<Health>,
}

impl PendingResponse {
    /// Waits for the response frame (up to the request timeout).
    pub async fn wait(self) -> Result<Frame, ClientError> {
        match tokio::time::timeout(self.timeout, self.rx).await {
            Ok(Ok(f)) => Ok(f),
            Ok(Err(_)) => Err(ClientError::Closed { addr: self.addr }),
            Err(_) => {
                self.health.pending.lock().expect("pending lock").remove(&self.id);
                self.health.timed_out(self.timeout);
                Err(ClientError::Timeout { addr: self.addr, api: self.api })
            }
        }
    }
}

/// Fails the callbacks whose deadline passed (a tenth of the request timeout late at most),
/// until the connection ends.
async fn sweep_expired(health: std::sync::Weak<Health>, timeout: Duration) {
    let every = (timeout / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        let Some(health) = health.upgrade() else { return };
        if health.dead.load(Ordering::SeqCst) {
            return;
        }
        let addr = health.addr;
        let now = Instant::now();
        let expired: Vec<Waiter> = {
            let mut map = health.pending.lock().expect("pending lock");
            let ids: Vec<u64> = map
                .iter()
                .filter(|(_, w)| matches!(w, Waiter::Call { deadline, .. } if *deadline <= now))
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        let any = !expired.is_empty();
        for w in expired {
            if let Waiter::Call { api, call, .. } = w {
                call(Err(ClientError::Timeout { addr, api }));
            }
        }
        if any {
            health.timed_out(timeout);
        }
    }
}
