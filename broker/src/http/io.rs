//! The socket as hyper sees it: glommio's `TcpStream` (futures `AsyncRead`/`AsyncWrite`)
//! behind hyper's `rt::Read`/`rt::Write`, with the gateway's slow-client deadlines.
//!
//! hyper's own timeouts need a `Send + Sync` timer, which a glommio executor does not have,
//! so the deadlines live here, on the one thread that polls the connection:
//! - **read**: while no request is being answered ([`Activity::busy`] is 0), a request head
//!   must be complete within `read_timeout_ms` of its first byte, and a connection with no
//!   bytes at all closes after `read_timeout_ms` idle. While a request is answered, reads
//!   have no deadline here (the handler bounds reading the body itself).
//! - **write**: a write that makes no progress for `write_stall_ms` fails the connection
//!   (a client that stopped reading a response or a stream).
//!
//! A deadline that passes returns `TimedOut` from the read or write; hyper then closes the
//! connection and drops everything it held.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite, Future};
use glommio::timer::Timer;

/// Bytes copied per read from the socket into hyper's buffer.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// What the connection is doing, shared by the adapter and the request handlers.
#[derive(Debug, Default)]
pub struct Activity {
    /// Requests being answered whose response body is not finished.
    busy: Cell<u32>,
    /// When the first byte of the next request head arrived (`None`: none yet).
    head_started: Cell<Option<Instant>>,
    /// When the connection last became idle.
    idle_since: Cell<Option<Instant>>,
}

impl Activity {
    /// Marks a request as answered until the returned guard drops (with its response body).
    pub fn begin(self: &Rc<Self>) -> Busy {
        self.busy.set(self.busy.get() + 1);
        self.head_started.set(None);
        Busy(self.clone())
    }
}

/// A request being answered; see [`Activity::begin`].
#[derive(Debug)]
pub struct Busy(Rc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        a.busy.set(a.busy.get() - 1);
        a.idle_since.set(Some(Instant::now()));
    }
}

/// A deadline being waited for.
struct Alarm {
    at: Instant,
    timer: Timer,
}

impl Alarm {
    /// Polls the alarm for `at` (re-armed if the deadline moved): ready once it passed.
    fn poll(slot: &mut Option<Alarm>, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let now = Instant::now();
        if now >= at {
            return Poll::Ready(());
        }
        if slot.as_ref().is_none_or(|a| a.at != at) {
            *slot = Some(Alarm { at, timer: Timer::new(at - now) });
        }
        let alarm = slot.as_mut().expect("armed above");
        Pin::new(&mut alarm.timer).poll(cx).map(|_| ())
    }
}

/// The socket with deadlines; see the module docs.
pub struct Io<S> {
    stream: S,
    activity: Rc<Activity>,
    read_timeout: Duration,
    write_stall: Duration,
    scratch: Box<[u8]>,
    read_alarm: Option<Alarm>,
    write_alarm: Option<Alarm>,
    /// When the current write started waiting.
    write_waiting_since: Option<Instant>,
}

impl<S> Io<S> {
    /// Wraps `stream`.
    pub fn new(
        stream: S,
        activity: Rc<Activity>,
        read_timeout: Duration,
        write_stall: Duration,
    ) -> Self {
        activity.idle_since.set(Some(Instant::now()));
        Io {
            stream,
            activity,
            read_timeout,
            write_stall,
            scratch: vec![0u8; READ_CHUNK_BYTES].into_boxed_slice(),
            read_alarm: None,
            write_alarm: None,
            write_waiting_since: None,
        }
    }

    /// The read deadline now, if any (see the module docs).
    fn read_deadline(&self) -> Option<Instant> {
        if self.activity.busy.get() > 0 {
            return None;
        }
        let since = self.activity.head_started.get().or(self.activity.idle_since.get())?;
        Some(since + self.read_timeout)
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("http client too slow: {what}"))
}

impl<S: AsyncRead + Unpin> hyper::rt::Read for Io<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let want = buf.remaining().min(this.scratch.len());
        match Pin::new(&mut this.stream).poll_read(cx, &mut this.scratch[..want]) {
            Poll::Ready(Ok(n)) => {
                this.read_alarm = None;
                if n > 0
                    && this.activity.busy.get() == 0
                    && this.activity.head_started.get().is_none()
                {
                    this.activity.head_started.set(Some(Instant::now()));
                }
                buf.put_slice(&this.scratch[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some(at) = this.read_deadline() else {
                    this.read_alarm = None;
                    return Poll::Pending;
                };
                match Alarm::poll(&mut this.read_alarm, at, cx) {
                    Poll::Ready(()) => Poll::Ready(Err(timed_out("request not received in time"))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Io<S> {
    /// Maps a write-side poll through the stall deadline. Only bytes accepted by the socket
    /// (`progressed`) restart it: a flush that returns at once while the writes wait is no
    /// progress.
    fn stalled<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        progressed: bool,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                if progressed {
                    self.write_waiting_since = None;
                    self.write_alarm = None;
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let since = *self.write_waiting_since.get_or_insert_with(Instant::now);
                match Alarm::poll(&mut self.write_alarm, since + self.write_stall, cx) {
                    Poll::Ready(()) => Poll::Ready(Err(timed_out("response not read in time"))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> hyper::rt::Write for Io<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        let progressed = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        this.stalled(polled, progressed, cx)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_flush(cx);
        this.stalled(polled, false, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_close(cx);
        this.stalled(polled, false, cx)
    }
}
