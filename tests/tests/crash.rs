//! Crash loop: producers append with `durable` acks while a consumer reads along and the
//! broker is killed with SIGKILL at seeded random moments; after every restart every acked
//! batch must be back, byte for byte, at its offset, offsets must be dense, appends must
//! continue after them, and the consumer resumes from its own position: the next batch it
//! gets starts exactly there, and everything it had received is still stored unchanged.
//!
//! A second loop runs the same with small segments and size retention, so segments roll,
//! retention deletes (and frees in steps) and rolls reuse deleted segments' files: there,
//! everything acked at or above the log start must be back, the log start never moves
//! back, and a consumer that fell behind it skips forward as a consumer resetting to
//! earliest would.
//!
//! A third loop runs the first with the shard journal (`BROKER_SHARD_JOURNAL`, on by
//! default since 2026-12-05) and small journal files, so checkpoints (one syncfs of the data
//! filesystem for all their partitions, from one partition on here) run every round, and
//! one segment write per shard at a time; the first loop runs without it
//! (each partition's own O_DSYNC writes and fdatasyncs), the second with it.
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
    retention: bool,
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
            if retention
                && ErrorCode::from_u16(r.error) == Some(ErrorCode::OffsetOutOfRange)
                && position < r.log_start_offset
            {
                // Retention deleted what this consumer had not read yet: skip to the start.
                c.position[p as usize] = r.log_start_offset;
                continue;
            }
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
                partitions: vec![ProducePartition {
                    partition: p,
                    batches: b.to_vec(),
                    expect: Default::default(),
                }],
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

/// Checks every partition after a restart; returns how many acked batches were compared.
/// `log_starts` holds each partition's log start from the previous check (it may only grow).
fn verify(
    broker: &Broker,
    owners: &[u32],
    acked: &Acked,
    consumed: &Mutex<Consumed>,
    log_starts: &mut [u64],
) -> u64 {
    let acked = acked.lock().unwrap();
    let consumed = consumed.lock().unwrap();
    assert!(consumed.violations.is_empty(), "consumer: {:?}", consumed.violations);
    let mut checked = 0;
    for p in 0..PARTITIONS {
        let mut conn = broker.connect_shard(owners[p as usize] as usize);
        let mut offset = 0;
        let mut got: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let mut start: Option<u64> = None;
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
            if ErrorCode::from_u16(r.error) == Some(ErrorCode::OffsetOutOfRange)
                && offset < r.log_start_offset
            {
                // Retention deleted the beginning, before this check or during it (it runs
                // every 100 ms in the restarted broker): go on from the new log start.
                offset = r.log_start_offset;
                got.retain(|o, _| *o >= offset);
                start = Some(offset);
                continue;
            }
            assert_eq!(
                r.error,
                0,
                "fetch {p}@{offset}: {:?} (log start {}, high watermark {})",
                ErrorCode::from_u16(r.error),
                r.log_start_offset,
                r.high_watermark
            );
            start.get_or_insert(offset);
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
        let start = got.keys().next().copied().unwrap_or(offset).min(start.unwrap_or(offset));
        assert!(
            start >= log_starts[p as usize],
            "partition {p}: the log start moved back from {} to {start}",
            log_starts[p as usize]
        );
        log_starts[p as usize] = start;
        // Below the log start retention deleted whole segments; everything from it is kept.
        for ((_, o), want) in acked.range((p, start)..(p, u64::MAX)) {
            assert_eq!(got.get(o), Some(want), "partition {p}: acked batch at {o} lost or altered");
            checked += 1;
        }
        for ((_, o), seen) in consumed.batches.range((p, start)..(p, u64::MAX)) {
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
    crash_loop(false, false);
}

#[test]
fn sigkill_with_retention_and_reused_segments_loses_nothing_retained() {
    crash_loop(true, false);
}

/// The same with the shard journal on: durable acks come from journal records, segments
/// are synced lazily, and each restart replays the journal into the partitions.
#[test]
fn sigkill_with_the_shard_journal_loses_nothing_acked() {
    crash_loop(false, true);
}

fn crash_loop(retention: bool, journal: bool) {
    let rounds: u32 = std::env::var("CRASH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("crash loop seed {seed} (replay: CRASH_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut broker = match (retention, journal) {
        // With the shard journal (the default): rolls, retention and reuse with segment
        // writes deferred behind the journal.
        (true, _) => Broker::start_with_env(
            2,
            &[("BROKER_RETENTION_CHECK_MS", "100"), ("BROKER_SHARD_JOURNAL", "true")],
        ),
        // Small journal files: checkpoints (segment syncs, file removal) run every round
        // (counted on the metrics endpoint).
        (false, true) => Broker::start_with_env(
            2,
            &[
                ("BROKER_SHARD_JOURNAL", "true"),
                ("BROKER_SHARD_JOURNAL_FILE_BYTES", "262144"),
                // Four partitions: checkpoints sync the filesystem from one member on.
                ("BROKER_SHARD_JOURNAL_CHECKPOINT_SYNCFS_PARTITIONS_MIN", "1"),
                // One segment write in the kernel per shard: kills land while writes wait
                // for their permit.
                ("BROKER_SHARD_JOURNAL_SEGMENT_WRITES_MAX", "1"),
                ("BROKER_METRICS_LISTEN", "127.0.0.1:0"),
            ],
        ),
        // Without the journal: each partition's own O_DSYNC writes and fdatasyncs.
        (false, false) => Broker::start_with_env(2, &[("BROKER_SHARD_JOURNAL", "false")]),
    };
    let owners = if retention {
        // 256 KiB segments (~12 batches), 768 KiB kept per partition: several rolls,
        // deletions and reuses every round, even in a slow debug build.
        let resp: CreateTopicResponse = broker.connect().call(&CreateTopicRequest {
            name: TOPIC.into(),
            config: TopicConfig {
                partition_count: PARTITIONS,
                retention_ms: -1,
                retention_bytes: 768 << 10,
                segment_bytes_max: 256 << 10,
                ..Default::default()
            },
        });
        assert_eq!(resp.error, 0, "{}", resp.message);
        resp.topic.expect("topic").partitions.iter().map(|p| p.shard).collect()
    } else {
        create_topic(&mut broker.connect(), TOPIC, PARTITIONS)
    };
    let mut log_starts = [0u64; PARTITIONS as usize];
    let acked: Acked = Arc::default();
    let consumed: Arc<Mutex<Consumed>> = Arc::default();
    let (mut checkpointed_files, mut filesystem_syncs) = (0.0, 0.0);
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (shards, owners, consumed, stop) =
                (broker.shards.clone(), owners.clone(), consumed.clone(), stop.clone());
            std::thread::spawn(move || consumer(shards, owners, consumed, stop, retention))
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
        if journal {
            // A checkpointed file is removed or, later, recycled as a new one.
            checkpointed_files += metric_sum(&broker, "broker_journal_files_removed_total")
                + metric_sum(&broker, "broker_journal_files_recycled_total");
            filesystem_syncs += metric_sum(&broker, "broker_journal_filesystem_syncs_total");
        }
        broker.kill();
        stop.store(true, Ordering::Relaxed);
        for p in producers {
            p.join().unwrap();
        }
        reader.join().unwrap();
        broker.restart();
        let checked = verify(&broker, &owners, &acked, &consumed, &mut log_starts);
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
    if journal {
        eprintln!("journal files removed or recycled after checkpoints before the kills: {checkpointed_files}");
        assert!(checkpointed_files > 0.0, "no journal checkpoint freed a file between kills");
        // Checkpoints sync the data filesystem once for all their partitions (the default).
        eprintln!("checkpoint filesystem syncs before the kills: {filesystem_syncs}");
        assert!(filesystem_syncs > 0.0, "no checkpoint synced the filesystem");
    }
    if retention {
        assert!(log_starts.iter().any(|&s| s > 0), "retention deleted segments");
        let log = broker.log_text();
        let reused = log
            .lines()
            .filter(|l| l.contains("rolled to a new segment"))
            .filter(|l| l.split("reused_bytes=").nth(1).is_some_and(|v| !v.starts_with('0')))
            .count();
        eprintln!("rolls into a reused segment: {reused}; log starts {log_starts:?}");
        assert!(reused > 0, "no roll reused a deleted segment");
    }
}

/// A journal file that exists but cannot be read (here a directory where a file should be)
/// must stop the broker at start with an error naming it: starting with nothing replayed
/// would lose what the journal acked and reuse its offsets.
#[test]
fn an_unreadable_journal_file_refuses_start() {
    let tmp = tempfile::Builder::new().prefix("broker-it-").tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let bad = data.join("journal~").join("shard-1").join("00000000000000000000.journal");
    std::fs::create_dir_all(&bad).expect("a directory in the journal file's place");
    let (ready, log) = (tmp.path().join("ready"), tmp.path().join("log"));
    let mut child = std::process::Command::new(integration_tests::broker_binary())
        .arg("--data-dir")
        .arg(&data)
        .arg("--ready-file")
        .arg(&ready)
        .args(["--listen", "127.0.0.1:0", "--shards", "2", "--shard-port-base", "0"])
        .args(["--metrics", "off"])
        .env("BROKER_SHARD_JOURNAL", "true")
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn broker");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if ready.exists() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the broker started over an unreadable journal file");
        }
        assert!(std::time::Instant::now() < deadline, "the broker neither started nor exited");
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "it must fail:\n{err}");
    assert!(err.contains("journal") && err.contains("00000000000000000000.journal"), "{err}");
}

/// The sum over its series of counter `name` on the broker's metrics endpoint (address from
/// the ready file).
fn metric_sum(broker: &Broker, name: &str) -> f64 {
    use std::io::{Read, Write};
    let ready = std::fs::read_to_string(broker.data_dir.with_extension("ready")).expect("ready");
    let v: serde_json::Value = serde_json::from_str(&ready).expect("ready file json");
    let addr = v["metrics"].as_str().expect("metrics address");
    let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("metrics response");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
