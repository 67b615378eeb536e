//! The HTTP gateway's settings, the `[http]` table of the broker's config (`config.rs`;
//! the gateway itself is `http/`).

use serde::Deserialize;

use super::MetricsListen;

/// The HTTP gateway's settings (`http/`), the `[http]` table (`BROKER_HTTP*`, `--http`).
/// Every limit here bounds what one HTTP client can make the broker hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// `"HOST:PORT"` (every shard accepts there, SO_REUSEPORT) or `"off"` (the default); the
    /// same form as `metrics_listen`.
    pub listen: MetricsListen,
    /// Largest request body accepted; a larger one is refused with 413 `FRAME_TOO_LARGE`
    /// before it is read (by its Content-Length) or as soon as it passes the limit.
    pub body_bytes_max: usize,
    /// A request's head and body must arrive within this long once its first byte did
    /// (slowloris); a connection with no request open closes after it too.
    pub read_timeout_ms: u64,
    /// A response write that makes no progress for this long closes the connection (a client
    /// that does not read, including a stalled Server-Sent Events reader).
    pub write_stall_ms: u64,
    /// Batch bytes one Server-Sent Events stream (or one `GET .../records`) reads from the
    /// log at a time, and the most text it renders them into (at least one record; the rest
    /// is read again next); the stream reads the next only once the previous is written
    /// out, so twice this (plus hyper's write buffer) is what a stream holds.
    pub stream_buffer_bytes_max: u32,
    /// Most records one `GET .../records` returns.
    pub records_limit_max: u32,
    /// Most records one `POST .../records` produces (each becomes at least 48 bytes of
    /// batch and an entry of the answer, so this bounds what a body of tiny records
    /// makes the broker hold); a body with more is refused with 413 `FRAME_TOO_LARGE`.
    pub produce_records_max: u32,
    /// A read (`GET .../records`, `GET /tables/...`) that finds no room in the shard's
    /// `memory_bytes_per_shard` budget waits at most this long for it, then is refused with
    /// 429 `RESOURCE_LIMIT` and `Retry-After` (a table read's whole answer is bounded by this
    /// plus its `wait_ms`). A request body waits for room within `read_timeout_ms`; an open
    /// stream waits for room as it waits for records.
    pub memory_wait_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: MetricsListen::Off,
            body_bytes_max: 4 << 20,
            read_timeout_ms: 30_000,
            write_stall_ms: 10_000,
            stream_buffer_bytes_max: 1 << 20,
            records_limit_max: 10_000,
            produce_records_max: 100_000,
            memory_wait_ms: 10_000,
        }
    }
}

impl HttpConfig {
    /// Checks the values against each other and the native frame limit (a produce body is
    /// turned into one native request frame).
    pub fn validate(&self, frame_body_bytes_max: u32) -> Result<(), String> {
        if self.body_bytes_max == 0
            || self.read_timeout_ms == 0
            || self.write_stall_ms == 0
            || self.memory_wait_ms == 0
        {
            return Err("http limits must be positive".into());
        }
        // A produce body becomes one native request (the records built from it are checked
        // against the frame limit again, since tiny JSON records grow into batch framing).
        if self.body_bytes_max > frame_body_bytes_max as usize {
            return Err(format!(
                "http.body_bytes_max {} exceeds frame_body_bytes_max {}",
                self.body_bytes_max, frame_body_bytes_max
            ));
        }
        if self.stream_buffer_bytes_max == 0
            || self.records_limit_max == 0
            || self.produce_records_max == 0
        {
            return Err("http.stream_buffer_bytes_max, records_limit_max and \
                        produce_records_max must be positive"
                .into());
        }
        Ok(())
    }
}
