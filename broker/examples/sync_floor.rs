//! The floor under the partition log's `durable` latency: raw glommio DMA writes of 64 KiB,
//! each followed by an fdatasync, paced at 100 MB/s, with no log code in between.
//!
//! `cargo run --release -p broker --example sync_floor -- [fallocated|overwrite] [DIR]`
//! - `fallocated`: appends into space reserved with fallocate (unwritten extents, as the
//!   partition log does), so every fdatasync also commits extent conversions to the journal.
//! - `overwrite`: the region was written and synced first, so fdatasync only flushes.
//!
//! Latency counts from each write's intended start (timer slop included, as in the log
//! benchmark's `rate-*` modes).
//!
//! Env: `SYNC_FLOOR_WRITE_BYTES` (default 65536) and `SYNC_FLOOR_RATE_MBPS` (default 100;
//! 0 = a closed loop at full speed, the floor of the log benchmark's `durable` mode when the
//! write size is what its appenders keep in flight, 262144). `SYNC_FLOOR_SYNC=dsync` opens
//! the file O_DSYNC and skips the fdatasync: one I/O round trip per write instead of two;
//! `SYNC_FLOOR_SYNC=none` skips syncing altogether (the floor of the `written` mode).

use std::time::{Duration, Instant};

use glommio::io::DmaFile;
use hdrhistogram::Histogram;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "fallocated".into());
    let dir = std::env::args().nth(2).unwrap_or_else(|| std::env::temp_dir().display().to_string());
    let path = std::path::Path::new(&dir).join(format!("sync-floor-{}.dat", std::process::id()));
    let write_bytes = env_or("SYNC_FLOOR_WRITE_BYTES", 64 << 10) as usize;
    let rate_mbps = env_or("SYNC_FLOOR_RATE_MBPS", 100);
    // 384 MiB of writes: 6,000 at the default size.
    let writes = ((384u64 << 20) / write_bytes as u64) as u32;
    glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(0))
        .io_memory(2 << 20)
        .spawn(move || async move {
            let sync = std::env::var("SYNC_FLOOR_SYNC").unwrap_or_default();
            let dsync = sync == "dsync";
            let f = if dsync {
                glommio::io::OpenOptions::new()
                    .create(true)
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_DSYNC)
                    .dma_open(&path)
                    .await
                    .expect("create the probe file")
            } else {
                DmaFile::create(&path).await.expect("create the probe file")
            };
            f.pre_allocate(1 << 30, false).await.expect("fallocate");
            let (write_bytes_u64, writes_u64) = (write_bytes as u64, u64::from(writes));
            if mode == "overwrite" {
                let mut pos = 0;
                while pos < writes_u64 * write_bytes_u64 {
                    let mut b = f.alloc_dma_buffer(1 << 20);
                    b.as_bytes_mut().fill(0);
                    f.write_at(b, pos).await.expect("zero fill");
                    pos += 1 << 20;
                }
                f.fdatasync().await.expect("fdatasync");
            }
            let mut write_us = Histogram::<u64>::new(3).expect("histogram");
            let mut total_us = Histogram::<u64>::new(3).expect("histogram");
            let start = Instant::now();
            let interval = match rate_mbps {
                0 => Duration::ZERO,
                r => Duration::from_secs_f64(write_bytes as f64 / (r as f64 * 1e6)),
            };
            let mut pos = 0u64;
            for n in 0..writes {
                let intended = start + interval * n;
                if let Some(d) = intended.checked_duration_since(Instant::now()) {
                    glommio::timer::sleep(d).await;
                }
                let mut b = f.alloc_dma_buffer(write_bytes);
                b.as_bytes_mut().fill(0xAB);
                f.write_at(b, pos).await.expect("write");
                write_us.record(intended.elapsed().as_micros() as u64).expect("record");
                if !dsync && sync != "none" {
                    f.fdatasync().await.expect("fdatasync");
                }
                total_us.record(intended.elapsed().as_micros() as u64).expect("record");
                pos += write_bytes_u64;
            }
            let mb_per_s =
                (writes_u64 * write_bytes_u64) as f64 / start.elapsed().as_secs_f64() / 1e6;
            println!("{mode}: {writes} writes of {write_bytes} bytes, {mb_per_s:.1} MB/s");
            for (name, h) in [("write", &write_us), ("write+fdatasync", &total_us)] {
                println!(
                    "{mode} {name}: p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.99),
                    h.value_at_quantile(0.999),
                    h.max()
                );
            }
            f.close().await.expect("close");
            std::fs::remove_file(&path).expect("remove the probe file");
        })
        .expect("spawn executor")
        .join()
        .expect("executor");
}
