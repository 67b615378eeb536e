//! A connection's read half that can be watched while its reader waits, to see the client
//! leave: a Kafka connection while a fetch long-polls, a native one while all its in-flight
//! slots are taken (`connection.rs`). What the watch reads ahead (the start of requests sent
//! behind) is kept and read first.
//!
//! Contract: [`Watched::watch`] reads ahead at most [`KEPT_BYTES_MAX`] bytes (a fixed
//! per-connection bound, like a native connection's read buffer) and resolves only when the
//! client has left (end of stream or a read error); with that much kept it stops reading
//! (the client keeps sending: it has not left) and pends. Dropping a `watch` that has not
//! resolved loses nothing: glommio reads on readiness, so a read not completed consumed no
//! bytes, and the bytes of a completed one are kept before the next await. Reads through
//! [`AsyncRead`] return the kept bytes first, in order, then the stream's.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::AsyncReadExt;
use futures_lite::AsyncRead;

/// Most bytes a watch reads ahead of the next request.
pub const KEPT_BYTES_MAX: usize = 1024;

/// The read half of a connection, with what a watch read ahead.
pub struct Watched<R> {
    inner: R,
    kept: Vec<u8>,
    /// Bytes of `kept` already read out.
    at: usize,
    /// How the stream ended, once a watch saw it: reads after the kept bytes return it
    /// without touching the stream again (a TLS stream reports a bad record once; read
    /// again, it would wait on the socket).
    ended: Option<Ended>,
}

/// How a watched stream ended.
enum Ended {
    Eof,
    Failed(std::io::ErrorKind, String),
}

impl<R: AsyncRead + Unpin> Watched<R> {
    /// Wraps the connection's read half.
    pub fn new(inner: R) -> Self {
        Watched { inner, kept: Vec::new(), at: 0, ended: None }
    }

    /// Bytes read ahead and not yet read out.
    pub fn kept(&self) -> usize {
        self.kept.len() - self.at
    }

    /// Resolves when the client has left (at once once it was seen to): reads ahead into the
    /// kept bytes meanwhile (at most [`KEPT_BYTES_MAX`], then pends).
    pub async fn watch(&mut self) {
        if self.at > 0 {
            self.kept.drain(..self.at);
            self.at = 0;
        }
        loop {
            if self.ended.is_some() {
                return;
            }
            let room = KEPT_BYTES_MAX.saturating_sub(self.kept());
            if room == 0 {
                return std::future::pending().await;
            }
            let mut buf = [0u8; KEPT_BYTES_MAX];
            match self.inner.read(&mut buf[..room]).await {
                Ok(0) => self.ended = Some(Ended::Eof),
                Err(e) => self.ended = Some(Ended::Failed(e.kind(), e.to_string())),
                Ok(n) => self.kept.extend_from_slice(&buf[..n]),
            }
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Watched<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.at < this.kept.len() {
            let n = buf.len().min(this.kept.len() - this.at);
            buf[..n].copy_from_slice(&this.kept[this.at..this.at + n]);
            this.at += n;
            if this.at == this.kept.len() {
                // Drained: the memory goes until the next watch reads ahead.
                this.kept = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(n));
        }
        match &this.ended {
            Some(Ended::Eof) => Poll::Ready(Ok(0)),
            Some(Ended::Failed(kind, message)) => {
                Poll::Ready(Err(std::io::Error::new(*kind, message.clone())))
            }
            None => Pin::new(&mut this.inner).poll_read(cx, buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::future::block_on;
    use futures_lite::io::Cursor;

    use super::*;

    #[test]
    fn a_watch_keeps_what_it_reads_until_the_stream_ends_and_it_is_read_first() {
        let bytes: Vec<u8> = (0..100u8).collect();
        let mut w = Watched::new(Cursor::new(bytes.clone()));
        // Everything is read ahead, then the end of the stream: the client left.
        block_on(w.watch());
        assert_eq!(w.kept(), 100);
        let mut out = Vec::new();
        block_on(w.read_to_end(&mut out)).unwrap();
        assert_eq!(out, bytes);
        assert_eq!(w.kept(), 0);
    }

    #[test]
    fn a_watch_stops_reading_at_its_bound() {
        let bytes = vec![7u8; 3 * KEPT_BYTES_MAX];
        let mut w = Watched::new(Cursor::new(bytes));
        // The client keeps sending: the watch pends with its bound read ahead.
        let pending = futures_lite::future::block_on(futures_lite::future::or(
            async {
                w.watch().await;
                false
            },
            async {
                futures_lite::future::yield_now().await;
                true
            },
        ));
        assert!(pending, "the watch resolved while the client was still sending");
        assert_eq!(w.kept(), KEPT_BYTES_MAX);
        let mut out = Vec::new();
        block_on(w.read_to_end(&mut out)).unwrap();
        assert_eq!(out.len(), 3 * KEPT_BYTES_MAX, "the kept bytes, then the rest, in order");
    }

    /// A stream that fails once and then only pends (a TLS stream after a bad record).
    struct FailsOnce(bool);

    impl AsyncRead for FailsOnce {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            if std::mem::replace(&mut self.0, true) {
                return Poll::Pending;
            }
            Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "bad record")))
        }
    }

    #[test]
    fn the_end_a_watch_saw_is_what_later_reads_and_watches_get() {
        let mut w = Watched::new(FailsOnce(false));
        block_on(w.watch());
        block_on(w.watch()); // at once: the end was seen
        let mut buf = [0u8; 16];
        let err = block_on(w.read(&mut buf)).expect_err("the stream failed");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let mut w = Watched::new(Cursor::new(vec![1u8, 2]));
        block_on(w.watch());
        let mut out = Vec::new();
        block_on(w.read_to_end(&mut out)).unwrap();
        assert_eq!(out, [1, 2]);
        assert_eq!(block_on(w.read(&mut buf)).unwrap(), 0, "the end of the stream again");
    }
}
