//! The `GET /metrics` endpoint: a minimal HTTP/1.1 server on shard 0's background queue.
//!
//! Contract: one connection at a time, one request per connection (`Connection: close`).
//! A request must arrive whole — request line and headers, at most [`REQUEST_BYTES_MAX`] —
//! within [`REQUEST_TIMEOUT`]; the response must be written within the same time again. A
//! body is never read. `GET /metrics` (any query string) answers 200 with the scrape
//! (`exposition.rs`); another path 404, another method 405, an oversized or malformed
//! request 400/431. Serving one scrape at a time bounds what a scraper can make the broker
//! hold to one scrape's text, and keeps one snapshot ask per shard in flight
//! (`collect.rs`). Scrapes run in the shard's background task queue, so they yield to
//! request handling.

use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use super::collect::Gatherer;
use super::exposition::Scrape;
use crate::api::Origin;
use crate::request::Request;
use crate::shard::Shard;

/// Largest request head (request line and headers) read.
pub const REQUEST_BYTES_MAX: usize = 8 << 10;

/// Time a client has to send its request, and again to take the response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The exposition format `prometheus-client`'s text encoder writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    /// `GET /metrics`.
    Metrics,
    /// Something this endpoint does not serve: status line and a short reason.
    Refused(&'static str, &'static str),
}

/// Serves scrapes until the task is cancelled. `listener` is bound by `server.rs`.
pub async fn serve(shard: Rc<Shard>, listener: TcpListener, gatherer: Gatherer) {
    gatherer.connect().await;
    info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "metrics endpoint ready");
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "metrics endpoint: accept failed");
                glommio::timer::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Err(e) = serve_one(&shard, &gatherer, stream).await {
            debug!(error = %e, "metrics endpoint: connection ended early");
        }
    }
}

/// Why a connection ended without a response.
#[derive(Debug, thiserror::Error)]
enum HttpError {
    #[error("client took longer than {REQUEST_TIMEOUT:?}")]
    Timeout,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

async fn serve_one(
    shard: &Rc<Shard>,
    gatherer: &Gatherer,
    mut stream: TcpStream,
) -> Result<(), HttpError> {
    let head = within(REQUEST_TIMEOUT, read_head(&mut stream)).await??;
    let (status, body, content_type) = match parse(&head) {
        Asked::Metrics => ("200 OK", scrape(shard, gatherer).await, CONTENT_TYPE),
        Asked::Refused(status, reason) => (status, format!("{reason}\n"), "text/plain"),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    within(REQUEST_TIMEOUT, async {
        stream.write_all(response.as_bytes()).await?;
        stream.flush().await?;
        stream.close().await
    })
    .await??;
    Ok(())
}

/// `fut`, or `HttpError::Timeout` after `limit`.
async fn within<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, HttpError> {
    crate::timeout::or_after(limit, async { Ok(fut.await) }, || Err(HttpError::Timeout)).await
}

/// Reads up to the blank line ending the head; `Ok(None)` past [`REQUEST_BYTES_MAX`] or at
/// EOF before it.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= REQUEST_BYTES_MAX {
            return Ok(None);
        }
        let want = chunk.len().min(REQUEST_BYTES_MAX - head.len());
        let n = stream.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(head))
}

/// What the request head asks for (`None`: too large or cut short).
fn parse(head: &Option<Vec<u8>>) -> Asked {
    let Some(head) = head else {
        return Asked::Refused(
            "431 Request Header Fields Too Large",
            "request head too large or incomplete",
        );
    };
    let Some(line) = head.split(|&b| b == b'\n').next() else {
        return Asked::Refused("400 Bad Request", "no request line");
    };
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Asked::Refused("400 Bad Request", "malformed request line");
    };
    if !version.starts_with("HTTP/1.") {
        return Asked::Refused("400 Bad Request", "HTTP/1.x only");
    }
    if target.split('?').next() != Some("/metrics") {
        return Asked::Refused("404 Not Found", "only /metrics is served here");
    }
    if method != "GET" {
        return Asked::Refused("405 Method Not Allowed", "GET only");
    }
    Asked::Metrics
}

/// One scrape: every shard's snapshot, the groups' lag, the process.
async fn scrape(shard: &Rc<Shard>, gatherer: &Gatherer) -> String {
    let gathered = gatherer.gather().await;
    let scrape = Scrape {
        shards: gathered.shards,
        missing: gathered.missing,
        group_lag: group_lag(shard).await,
        process: super::process::read(),
        partitions_max: shard.config.metrics_partitions_max,
        per_partition: shard.config.metrics_per_partition,
    };
    scrape.encode()
}

/// Consumer groups' committed offsets and lag through the stats api (what `brokerctl stats
/// --group-lag` shows): each coordinator reports its groups, the high watermarks are looked
/// up once. Empty if the api answers with an error.
async fn group_lag(shard: &Rc<Shard>) -> Vec<wire::GroupPartitionLag> {
    let ask = wire::StatsRequest {
        shards: Vec::new(),
        group_lag: true,
        latency: false,
        reset_latency: false,
    };
    let Ok(frame) = wire::encode_request(0, &ask) else { return Vec::new() };
    let answer = crate::api::admin::stats(shard, &Request::forwarded(frame), Origin::Client).await;
    let Some(stats) = crate::api::forward::decode_reply::<wire::StatsResponse>(&answer) else {
        return Vec::new();
    };
    stats.shards.into_iter().flat_map(|s| s.group_lag).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(head: &str) -> Asked {
        parse(&Some(head.as_bytes().to_vec()))
    }

    #[test]
    fn only_get_metrics_is_served() {
        assert_eq!(ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Asked::Metrics);
        assert_eq!(ask("GET /metrics?name[]=a HTTP/1.0\r\n\r\n"), Asked::Metrics);
        assert!(
            matches!(ask("GET / HTTP/1.1\r\n\r\n"), Asked::Refused(s, _) if s.starts_with("404"))
        );
        assert!(
            matches!(ask("POST /metrics HTTP/1.1\r\n\r\n"), Asked::Refused(s, _) if s.starts_with("405"))
        );
        assert!(
            matches!(ask("GET /metrics\r\n\r\n"), Asked::Refused(s, _) if s.starts_with("400"))
        );
        assert!(
            matches!(ask("GET /metrics SPDY/3\r\n\r\n"), Asked::Refused(s, _) if s.starts_with("400"))
        );
        assert!(matches!(parse(&None), Asked::Refused(s, _) if s.starts_with("431")));
    }
}
