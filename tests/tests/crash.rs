//! Crash loop: producers append with `durable` acks while a consumer reads along and the
//! broker is killed with SIGKILL at seeded random moments; after every restart every acked
//! batch must be back, byte for byte, at its offset, offsets must be dense, appends must
//! continue after them, and the consumer resumes from its own position: the next batch it
//! gets starts exactly there, and everything it had received is still stored unchanged.
//!
//! `CRASH_ROUNDS` (default 10) sets the number of kill points, `CRASH_SEED` replays a run;
//! `tests/crash_long.sh` runs the long mode.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use integration_tests::{create_topic, Broker, Conn};
use wire::*;

const TOPIC: &str = "ledger";
const PARTITIONS: u32 = 4;

/// (partition, base offset) -> stored-form bytes of every batch acked `durable`.
type Acked = Arc<Mutex<BTreeMap<(u32, u64), Vec<u8>>>>;

/// The consumer's state, kept across crashes: per partition its position (next offset to
/// read) and every batch it received; plus every violation it saw.
#[derive(Default)]
struct Consumed {
    position: [u64; PARTITIONS as usize],
    batches: BTreeMap<(u32, u64), Vec<u8>>,
    violations: Vec<String>,
}

/// Reads every partition from the consumer's position with short long-polls until `stop`
/// or the broker goes away.
fn consumer(
    broker_shards: Vec<std::net::SocketAddr>,
    owners: Vec<u32>,
    consumed: Arc<Mutex<Consumed>>,
    stop: Arc<AtomicBool>,
) {
    let mut conns: Vec<Conn> = broker_shards.iter().map(|a| Conn::connect(*a)).collect();
    while !stop.load(Ordering::Relaxed) {
        for p in 0..PARTITIONS {
            let position = consumed.lock().unwrap().position[p as usize];
            let req = FetchRequest {
                max_wait_ms: 20,
                min_bytes: 1,
                max_bytes: 4 << 20,
                topics: vec![FetchTopic {
                    name: TOPIC.into(),
                    partitions: vec![FetchPartition {
                        partition: p,
                        offset: position,
                        max_bytes: 1 << 20,
                    }],
                }],
            };
            let Some(resp) = conns[owners[p as usize] as usize].try_call::<_, FetchResponse>(&req)
            else {
                return; // killed
            };
            let r = &resp.topics[0].partitions[0];
            let mut c = consumed.lock().unwrap();
            if r.error != 0 {
                let e = ErrorCode::from_u16(r.error);
                c.violations.push(format!(
                    "partition {p}: resuming at {position} failed with {e:?} (high watermark {})",
                    r.high_watermark
                ));
                return;
            }
            let bytes = to_aligned(&r.batches);
            let mut next = position;
            for b in Batches::new(&bytes) {
                let Ok(b) = b else {
                    c.violations.push(format!("partition {p}: invalid batch at {next}"));
                    return;
                };
                if b.header().base_offset() != next {
                    c.violations.push(format!(
                        "partition {p}: expected offset {next}, got batch at {}",
                        b.header().base_offset()
                    ));
                    return;
                }
                c.batches.insert((p, next), b.bytes().to_vec());
                next = b.header().next_offset();
            }
            c.position[p as usize] = next;
        }
    }
}

fn batch(rng: &mut fastrand::Rng, tag: u64) -> AlignedVec {
    let mut b = BatchBuilder::new(1 << 20);
    for i in 0..rng.usize(1..40) {
        let value: Vec<u8> = (0..rng.usize(0..2000))
            .map(|j| (tag as usize).wrapping_mul(31).wrapping_add(i + j) as u8)
            .collect();
        b.append(
            (tag % 1_000_000) as i64,
            Some(format!("k{}", tag % 13).as_bytes()),
            Some(&value),
            &[],
        )
        .unwrap();
    }
    b.finish().unwrap()
}

fn producer(
    broker_shards: Vec<std::net::SocketAddr>,
    owners: Vec<u32>,
    seed: u64,
    acked: Acked,
    stop: Arc<AtomicBool>,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut conns: Vec<Conn> = broker_shards.iter().map(|a| Conn::connect(*a)).collect();
    let mut tag = (seed % 1_000_000) << 20;
    while !stop.load(Ordering::Relaxed) {
        tag += 1;
        let p = rng.u32(0..PARTITIONS);
        let b = batch(&mut rng, tag);
        let req = ProduceRequest {
            ack: AckLevel::Durable,
            timeout_ms: 10_000,
            topics: vec![ProduceTopic {
                name: TOPIC.into(),
                partitions: vec![ProducePartition { partition: p, batches: b.to_vec() }],
            }],
        };
        let Some(resp) = conns[owners[p as usize] as usize].try_call::<_, ProduceResponse>(&req)
        else {
            return;
        };
        let r = &resp.topics[0].partitions[0];
        if r.error != 0 {
            return;
        }
        let mut stored = b.to_vec();
        wire::batch::header::assign(&mut stored, r.base_offset as u64, r.log_append_time_ms);
        acked.lock().unwrap().insert((p, r.base_offset as u64), stored);
    }
}

fn verify(broker: &Broker, owners: &[u32], acked: &Acked, consumed: &Mutex<Consumed>) -> u64 {
    let acked = acked.lock().unwrap();
    let consumed = consumed.lock().unwrap();
    assert!(consumed.violations.is_empty(), "consumer: {:?}", consumed.violations);
    let mut checked = 0;
    for p in 0..PARTITIONS {
        let mut conn = broker.connect_shard(owners[p as usize] as usize);
        let mut offset = 0;
        let mut got: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        loop {
            let resp: FetchResponse = conn.call(&FetchRequest {
                max_wait_ms: 0,
                min_bytes: 1,
                max_bytes: 8 << 20,
                topics: vec![FetchTopic {
                    name: TOPIC.into(),
                    partitions: vec![FetchPartition { partition: p, offset, max_bytes: 4 << 20 }],
                }],
            });
            let r = &resp.topics[0].partitions[0];
            assert_eq!(r.error, 0, "fetch {p}@{offset}: {:?}", ErrorCode::from_u16(r.error));
            if r.batches.is_empty() {
                assert_eq!(
                    offset, r.high_watermark,
                    "partition {p}: read stopped before the high watermark"
                );
                break;
            }
            let bytes = to_aligned(&r.batches);
            for b in Batches::new(&bytes) {
                let b = b.expect("stored batch validates");
                assert_eq!(b.header().base_offset(), offset, "partition {p}: offsets not dense");
                offset = b.header().next_offset();
                got.insert(b.header().base_offset(), b.bytes().to_vec());
            }
        }
        for ((_, o), want) in acked.range((p, 0)..(p, u64::MAX)) {
            assert_eq!(got.get(o), Some(want), "partition {p}: acked batch at {o} lost or altered");
            checked += 1;
        }
        for ((_, o), seen) in consumed.batches.range((p, 0)..(p, u64::MAX)) {
            assert_eq!(
                got.get(o),
                Some(seen),
                "partition {p}: a batch the consumer received at {o} is gone or different"
            );
        }
        assert!(
            consumed.position[p as usize] <= offset,
            "partition {p}: the consumer's position {} is past the log end {offset}",
            consumed.position[p as usize]
        );
    }
    checked
}

#[test]
fn sigkill_under_durable_load_loses_nothing_acked() {
    let rounds: u32 = std::env::var("CRASH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("crash loop seed {seed} (replay: CRASH_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut broker = Broker::start(2);
    let owners = create_topic(&mut broker.connect(), TOPIC, PARTITIONS);
    let acked: Acked = Arc::default();
    let consumed: Arc<Mutex<Consumed>> = Arc::default();
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (shards, owners, consumed, stop) =
                (broker.shards.clone(), owners.clone(), consumed.clone(), stop.clone());
            std::thread::spawn(move || consumer(shards, owners, consumed, stop))
        };
        let producers: Vec<_> = (0..3)
            .map(|i| {
                let (shards, owners, acked, stop) =
                    (broker.shards.clone(), owners.clone(), acked.clone(), stop.clone());
                let s = seed ^ (u64::from(round) << 8) ^ i;
                std::thread::spawn(move || producer(shards, owners, s, acked, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.u64(30..400)));
        broker.kill();
        stop.store(true, Ordering::Relaxed);
        for p in producers {
            p.join().unwrap();
        }
        reader.join().unwrap();
        broker.restart();
        let checked = verify(&broker, &owners, &acked, &consumed);
        let read = consumed.lock().unwrap().batches.len();
        eprintln!(
            "round {round}: {checked} acked batches verified after SIGKILL; the consumer had read {read} and resumes"
        );
    }
    assert!(acked.lock().unwrap().len() > rounds as usize, "the producers got acks between kills");
    assert!(
        consumed.lock().unwrap().batches.len() > rounds as usize,
        "the consumer read between kills"
    );
}
