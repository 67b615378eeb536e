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

use std::time::{Duration, Instant};

use glommio::io::DmaFile;
use hdrhistogram::Histogram;

const WRITE_BYTES: usize = 64 << 10;
const WRITES: u32 = 6000;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "fallocated".into());
    let dir = std::env::args().nth(2).unwrap_or_else(|| std::env::temp_dir().display().to_string());
    let path = std::path::Path::new(&dir).join(format!("sync-floor-{}.dat", std::process::id()));
    glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(0))
        .io_memory(2 << 20)
        .spawn(move || async move {
            let f = DmaFile::create(&path).await.expect("create the probe file");
            f.pre_allocate(1 << 30, false).await.expect("fallocate");
            if mode == "overwrite" {
                let mut pos = 0;
                while pos < u64::from(WRITES) * WRITE_BYTES as u64 {
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
            let interval = Duration::from_secs_f64(WRITE_BYTES as f64 / 100e6);
            let mut pos = 0u64;
            for n in 0..WRITES {
                let intended = start + interval * n;
                if let Some(d) = intended.checked_duration_since(Instant::now()) {
                    glommio::timer::sleep(d).await;
                }
                let mut b = f.alloc_dma_buffer(WRITE_BYTES);
                b.as_bytes_mut().fill(0xAB);
                f.write_at(b, pos).await.expect("write");
                write_us.record(intended.elapsed().as_micros() as u64).expect("record");
                f.fdatasync().await.expect("fdatasync");
                total_us.record(intended.elapsed().as_micros() as u64).expect("record");
                pos += WRITE_BYTES as u64;
            }
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
