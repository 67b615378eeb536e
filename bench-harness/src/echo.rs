//! The harness's own floor: a plain loopback TCP echo measured with the same tokio runtime
//! and pinning as the run (issue 26), reported beside the server's figures so a latency can
//! be read as "server + this floor".
//!
//! An echo thread (pinned to the server's CPUs when given) answers 64-byte messages on
//! 127.0.0.1; the harness sends them one at a time from its runtime and records each round
//! trip in an HDR histogram (µs). Paced like a light workload (one message every 200 µs), so
//! it measures the wake-ups a lightly loaded client sees, not a busy loop.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::affinity::{pin_thread, CpuList};

/// Bytes per echo message.
const MESSAGE_BYTES: usize = 64;

/// Round trips of the loopback echo (µs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EchoFloor {
    /// Round trips measured.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

/// Measures `round_trips` echoes, the echo thread pinned to `server_cpus` if given.
pub async fn measure(
    round_trips: u64,
    server_cpus: Option<&CpuList>,
) -> std::io::Result<EchoFloor> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let cpus = server_cpus.cloned();
    let server = std::thread::Builder::new().name("echo-floor".into()).spawn(move || {
        if let Some(cpus) = cpus {
            let _ = pin_thread(0, &cpus);
        }
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; MESSAGE_BYTES];
        loop {
            match s.read_exact(&mut buf) {
                Ok(()) => s.write_all(&buf)?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    })?;
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("static bounds");
    let mut buf = [7u8; MESSAGE_BYTES];
    let mut next = Instant::now();
    for _ in 0..round_trips {
        next += Duration::from_micros(200);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let start = Instant::now();
        stream.write_all(&buf).await?;
        stream.read_exact(&mut buf).await?;
        h.saturating_record((start.elapsed().as_micros() as u64).max(1));
    }
    drop(stream);
    let _ = server.join();
    Ok(EchoFloor {
        count: h.len(),
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn measures_round_trips_on_loopback() {
        let f = measure(200, None).await.unwrap();
        assert_eq!(f.count, 200);
        assert!(f.p50_us >= 1 && f.p50_us <= f.p99_us && f.p99_us <= f.max_us, "{f:?}");
    }
}
