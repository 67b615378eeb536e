//! Supervisor restarts: under produce load the broker is killed with SIGKILL, reaped, and
//! started again at once on the same fixed ports (what systemd's `Restart=` does). Every
//! restart must come up (before the fix the dead process's listeners, lingering 20–30 ms
//! after it was reaped, made 10 of 10 restarts exit with `Address already in use`), and a
//! client connecting while it restarts is served or refused, never left hanging.
//!
//! `RESTART_CYCLES` (default 20) sets the number of kill/restart cycles.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::{create_topic, Broker, Conn};
use wire::constants::FRAME_HEADER_BYTES;
use wire::*;

const TOPIC: &str = "restarts";
const PARTITIONS: u32 = 4;

/// How long a client may wait for an answer before it counts as left hanging.
const HANG_MS: u64 = 10_000;

fn batch(tag: u64) -> Vec<u8> {
    let mut b = BatchBuilder::new(1 << 16);
    for i in 0..8u64 {
        let value = (tag * 8 + i).to_le_bytes();
        b.append(0, None, Some(&value[..]), &[]).expect("append");
    }
    b.finish().expect("batch").to_vec()
}

/// Appends `written`-acked batches to every partition through the public port until the
/// connection breaks (the broker was killed); returns how many were acked.
fn produce_until_killed(addr: SocketAddr, stop: &AtomicBool, acks: &AtomicU64) -> u64 {
    let mut conn = Conn::connect(addr);
    conn.set_read_timeout(Some(Duration::from_millis(HANG_MS)));
    let mut acked = 0;
    let mut tag = 0;
    while !stop.load(Ordering::Relaxed) {
        tag += 1;
        let req = ProduceRequest {
            ack: AckLevel::Written,
            timeout_ms: 5_000,
            topics: vec![ProduceTopic {
                name: TOPIC.into(),
                partitions: (0..PARTITIONS)
                    .map(|partition| ProducePartition {
                        partition,
                        batches: batch(tag),
                        expect: Default::default(),
                    })
                    .collect(),
            }],
        };
        match conn.try_call::<_, ProduceResponse>(&req) {
            Some(resp) => {
                let n = resp.topics[0].partitions.iter().filter(|p| p.error == 0).count() as u64;
                acks.fetch_add(n, Ordering::Relaxed);
                acked += n;
            }
            None => break,
        }
    }
    acked
}

/// What became of one connection attempt while the broker restarted.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// Connected and answered.
    Served,
    /// Refused, reset or closed: the client knows at once to retry.
    Refused,
    /// Connected, but no answer and no close within `HANG_MS`.
    Hung,
}

/// Connects and asks for metadata once.
fn attempt(addr: SocketAddr) -> Attempt {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(HANG_MS)) else {
        return Attempt::Refused;
    };
    stream.set_read_timeout(Some(Duration::from_millis(HANG_MS))).expect("timeout");
    let frame = encode_request(1, &MetadataRequest { topics: Vec::new() }).expect("encode");
    if stream.write_all(&frame).is_err() {
        return Attempt::Refused;
    }
    let mut head = [0u8; FRAME_HEADER_BYTES];
    match stream.read_exact(&mut head) {
        Ok(()) => Attempt::Served,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Attempt::Hung
        }
        Err(_) => Attempt::Refused,
    }
}

#[test]
fn kill_9_and_immediate_restart_comes_up_under_load() {
    let cycles: usize =
        std::env::var("RESTART_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let mut broker = Broker::start_fixed_ports(2);
    create_topic(&mut broker.connect(), TOPIC, PARTITIONS);
    let public = broker.public;
    let mut rng = fastrand::Rng::with_seed(24);
    let mut acked_total = 0;
    let (served, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicU64::new(0));
        let producers: Vec<_> = (0..2)
            .map(|_| {
                let (stop, acks) = (stop.clone(), acks.clone());
                std::thread::spawn(move || produce_until_killed(public, &stop, &acks))
            })
            .collect();
        // Clients keep connecting through the kill and the restart.
        let probing = Arc::new(AtomicBool::new(true));
        let prober = {
            let (probing, served, refused) = (probing.clone(), served.clone(), refused.clone());
            std::thread::spawn(move || {
                while probing.load(Ordering::Relaxed) {
                    match attempt(public) {
                        Attempt::Served => served.fetch_add(1, Ordering::Relaxed),
                        Attempt::Refused => refused.fetch_add(1, Ordering::Relaxed),
                        Attempt::Hung => return Err(format!("a client hung for {HANG_MS} ms")),
                    };
                    std::thread::sleep(Duration::from_millis(2));
                }
                Ok(())
            })
        };
        // Under load: the kill comes 50-250 ms after the cycle's first ack (a fresh broker's
        // first produce takes ~200 ms here: killed before it, a cycle had no load at all).
        let waited = Instant::now();
        while acks.load(Ordering::Relaxed) == 0 && waited.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.u64(50..250)));
        let killed = Instant::now();
        broker.kill(); // SIGKILL, then wait until reaped
        broker.restart(); // at once; panics with the broker's log if it exits instead
        let up_ms = killed.elapsed().as_millis();
        stop.store(true, Ordering::Relaxed);
        for p in producers {
            acked_total += p.join().expect("producer thread");
        }
        // The restarted broker serves on the same public address.
        std::thread::sleep(Duration::from_millis(20));
        probing.store(false, Ordering::Relaxed);
        prober.join().expect("prober thread").unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        assert_eq!(attempt(public), Attempt::Served, "cycle {cycle}: restarted broker not serving");
        eprintln!("cycle {cycle}: up again {up_ms} ms after the kill");
    }
    assert!(acked_total > 0, "no load reached the broker");
    let log = broker.log_text();
    eprintln!(
        "{cycles} restarts; {acked_total} batches acked; clients served {} times, refused {} \
         times; waited for a lingering listener in {} starts",
        served.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        log.matches("previous broker's listener may still be closing").count()
    );
}
