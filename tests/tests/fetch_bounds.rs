//! A fetch response is bounded (issue 24), against the real broker binary.
//!
//! The batch bytes of a response never exceed the request's `max_bytes` (over all
//! partitions), nor a partition's its own `max_bytes` — except that the first partition, in
//! request order, with data gets its first batch whole however large (Kafka's KIP-74 rule), so
//! a consumer always gets past a batch larger than its limits. Partitions fill greedily in
//! request order with whole batches. A request naming a partition twice is refused. The same
//! holds when partitions live on other shards (forwarded fetches), and long-poll still answers
//! when data arrives.
//!
//! The property test prints its seed when it fails; `FETCH_BOUNDS_SEED=<n>` replays one.

use std::time::{Duration, Instant};

use integration_tests::{create_topic, Broker, Conn};
use wire::constants::{BATCH_BYTES_MAX, FLAG_ERROR};
use wire::*;

const TOPIC: &str = "bounded";

/// One stored batch: where it starts, where the next starts, its length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stored {
    base_offset: u64,
    next_offset: u64,
    len_bytes: usize,
}

/// A batch of `records` records of `value_bytes` bytes each.
fn batch(records: u32, value_bytes: usize, tag: u32) -> AlignedVec {
    let mut b = BatchBuilder::new(1 << 20);
    let value = vec![tag as u8; value_bytes];
    for i in 0..records {
        b.append(1_700_000_000_000 + i64::from(i), Some(&tag.to_le_bytes()), Some(&value), &[])
            .unwrap();
    }
    b.finish().unwrap()
}

/// Appends `batches` to `partition` (durable) and returns them as stored.
fn produce(conn: &mut Conn, partition: u32, batches: &[AlignedVec]) -> Vec<Stored> {
    let all: Vec<u8> = batches.iter().flat_map(|b| b.iter().copied()).collect();
    let r = integration_tests::produce(conn, TOPIC, partition, &all, AckLevel::Durable);
    assert_eq!(r.error, 0, "produce: {:?}", ErrorCode::from_u16(r.error));
    let mut next = r.base_offset as u64;
    batches
        .iter()
        .map(|b| {
            let records = BatchView::validate(b).unwrap().len() as u64;
            let s = Stored { base_offset: next, next_offset: next + records, len_bytes: b.len() };
            next += records;
            s
        })
        .collect()
}

/// One partition of a fetch: (partition, offset, max_bytes).
type Want = (u32, u64, u32);

fn request(max_bytes: u32, min_bytes: u32, max_wait_ms: u32, wants: &[Want]) -> FetchRequest {
    FetchRequest {
        max_wait_ms,
        min_bytes,
        max_bytes,
        topics: vec![FetchTopic {
            name: TOPIC.into(),
            partitions: wants
                .iter()
                .map(|&(partition, offset, max_bytes)| FetchPartition {
                    partition,
                    offset,
                    max_bytes,
                })
                .collect(),
        }],
    }
}

/// Fetches without waiting; per requested partition, the returned batches (validated).
fn fetch(conn: &mut Conn, max_bytes: u32, wants: &[Want]) -> Vec<Vec<Stored>> {
    let resp: FetchResponse = conn.call(&request(max_bytes, 1, 0, wants));
    returned(&resp, wants)
}

fn returned(resp: &FetchResponse, wants: &[Want]) -> Vec<Vec<Stored>> {
    assert_eq!(resp.topics.len(), 1);
    let parts = &resp.topics[0].partitions;
    assert_eq!(parts.len(), wants.len());
    parts
        .iter()
        .zip(wants)
        .map(|(p, &(partition, offset, _))| {
            assert_eq!(p.partition, partition);
            assert_eq!(p.error, 0, "partition {partition}: {:?}", ErrorCode::from_u16(p.error));
            let bytes = to_aligned(&p.batches);
            let got: Vec<Stored> = Batches::new(&bytes)
                .map(|b| {
                    let b = b.expect("a returned batch validates");
                    let h = b.header();
                    Stored {
                        base_offset: h.base_offset(),
                        next_offset: h.next_offset(),
                        len_bytes: b.bytes().len(),
                    }
                })
                .collect();
            if let Some(first) = got.first() {
                assert!(first.base_offset <= offset && offset < first.next_offset);
            }
            got
        })
        .collect()
}

fn bytes(batches: &[Stored]) -> usize {
    batches.iter().map(|b| b.len_bytes).sum()
}

/// What a bounded fetch returns from `stored` (per partition, in offset order): partitions in
/// request order, each whole batches within min(its max_bytes, what is left of the request's
/// max_bytes), except that the first with data gets its first batch whatever its size.
fn model(stored: &[Vec<Stored>], max_bytes: u32, wants: &[Want]) -> Vec<Vec<Stored>> {
    let mut left = max_bytes as usize;
    let mut first_given = false;
    let mut out = Vec::new();
    for &(partition, offset, partition_max) in wants {
        let limit = left.min(partition_max as usize);
        let mut got: Vec<Stored> = Vec::new();
        for b in stored[partition as usize].iter().filter(|b| b.next_offset > offset) {
            let must_take = got.is_empty() && !first_given;
            if !must_take && bytes(&got) + b.len_bytes > limit {
                break;
            }
            got.push(*b);
        }
        if !got.is_empty() {
            first_given = true;
        }
        left = left.saturating_sub(bytes(&got));
        out.push(got);
    }
    out
}

/// Checks the bounds themselves (the model implies them; this says them plainly).
fn check_bounds(got: &[Vec<Stored>], max_bytes: u32, wants: &[Want]) {
    let first = got.iter().find(|g| !g.is_empty()).map_or(0, |g| g[0].len_bytes);
    let total: usize = got.iter().map(|g| bytes(g)).sum();
    assert!(
        total <= (max_bytes as usize).max(first),
        "{total} bytes for max_bytes {max_bytes} (first batch {first})"
    );
    let mut first_seen = false;
    for (g, &(partition, _, partition_max)) in got.iter().zip(wants) {
        let allowed = if first_seen || g.is_empty() {
            partition_max as usize
        } else {
            (partition_max as usize).max(g[0].len_bytes)
        };
        assert!(bytes(g) <= allowed, "partition {partition}: {} > {allowed}", bytes(g));
        first_seen |= !g.is_empty();
    }
}

#[test]
fn max_bytes_one_returns_exactly_one_batch_from_cache_and_from_disk() {
    let mut broker = Broker::start(1);
    let mut conn = broker.connect();
    create_topic(&mut conn, TOPIC, 1);
    let sent: Vec<AlignedVec> = (0..5).map(|i| batch(3, 1000 * (i + 1), i as u32)).collect();
    let stored = produce(&mut conn, 0, &sent);
    let check = |conn: &mut Conn| {
        for (i, s) in stored.iter().enumerate() {
            for offset in [s.base_offset, s.base_offset + 1] {
                for (max_bytes, partition_max) in [(1, 1), (1, 1 << 20), (1 << 20, 1), (0, 0)] {
                    let got = fetch(conn, max_bytes, &[(0, offset, partition_max)]);
                    assert_eq!(got, vec![vec![*s]], "batch {i}, offset {offset}, {max_bytes}");
                }
            }
        }
    };
    check(&mut conn); // recent batches: from the cache
    assert_eq!(broker.stop(), Some(0));
    broker.restart();
    check(&mut broker.connect()); // after a restart: from the segment on disk
}

#[test]
fn with_max_bytes_one_only_the_first_partition_with_data_gets_a_batch() {
    let broker = Broker::start(1);
    let mut conn = broker.connect();
    create_topic(&mut conn, TOPIC, 5);
    let mut stored = vec![Vec::new(); 5];
    for p in [0, 1, 2, 4] {
        let sent: Vec<AlignedVec> = (0..3).map(|i| batch(2, 500 + 300 * p, i)).collect();
        stored[p] = produce(&mut conn, p as u32, &sent);
    }
    // Partition 3 is empty, so partition 2 is the first in request order with data.
    let order = [3, 2, 0, 4, 1];
    let wants = |partition_max: u32| -> Vec<Want> {
        order.iter().map(|&p| (p, 0, partition_max)).collect()
    };
    let first = stored[2][0];
    for (max_bytes, partition_max) in [
        (1, 1 << 20),
        (1, 1),
        (0, 0),
        (first.len_bytes as u32, 1 << 20),
        // Room for partition 2's first batch, not for its second nor partition 0's first.
        (first.len_bytes as u32 + 100, 1 << 20),
        (1 << 20, 0),
    ] {
        let got = fetch(&mut conn, max_bytes, &wants(partition_max));
        let mut want = vec![Vec::new(); order.len()];
        want[1] = vec![first];
        assert_eq!(got, want, "max_bytes {max_bytes}, partition max {partition_max}");
    }
    // The other partitions say there is more: error 0, high watermark past the offset.
    let resp: FetchResponse = conn.call(&request(1, 1, 0, &wants(1 << 20)));
    for p in &resp.topics[0].partitions {
        assert_eq!(p.error, 0);
        assert_eq!(p.high_watermark > 0, p.partition != 3, "{p:?}");
    }
    // Enough for everything: everything, in request order.
    let got = fetch(&mut conn, 1 << 20, &wants(1 << 20));
    assert_eq!(got, order.iter().map(|&p| stored[p as usize].clone()).collect::<Vec<_>>());
}

#[test]
fn the_broker_maximum_caps_what_a_request_asks_for() {
    let cap = BATCH_BYTES_MAX.to_string(); // the smallest the broker accepts
    let broker = Broker::start_with_env(1, &[("BROKER_FETCH_RESPONSE_BYTES_MAX", &cap)]);
    let mut conn = broker.connect();
    create_topic(&mut conn, TOPIC, 4);
    let mut stored = Vec::new();
    for p in 0..4 {
        let sent: Vec<AlignedVec> = (0..5).map(|i| batch(1, 1_000_000, i)).collect();
        stored.push(produce(&mut conn, p, &sent));
    }
    let wants: Vec<Want> = (0..4).map(|p| (p, 0, u32::MAX)).collect();
    let got = fetch(&mut conn, u32::MAX, &wants);
    let total: usize = got.iter().map(|g| bytes(g)).sum();
    assert!(total <= BATCH_BYTES_MAX as usize, "{total} bytes");
    assert_eq!(got, model(&stored, BATCH_BYTES_MAX, &wants));
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), vec![5, 5, 5, 1]); // 16 of ~1 MB
}

#[test]
fn a_partition_named_twice_is_refused() {
    let broker = Broker::start(2);
    let mut conn = broker.connect_shard(0);
    let owners = create_topic(&mut conn, TOPIC, 2);
    let on_other = owners.iter().position(|&s| s == 1).expect("a partition on shard 1") as u32;
    produce(&mut conn, on_other, &[batch(1, 100, 0)]);
    let twice = |topics: Vec<FetchTopic>| FetchRequest {
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: 1,
        topics,
    };
    let entry = |partitions: &[u32]| FetchTopic {
        name: TOPIC.into(),
        partitions: partitions
            .iter()
            .map(|&partition| FetchPartition { partition, offset: 0, max_bytes: 1 })
            .collect(),
    };
    let other = 1 - on_other;
    for req in [
        twice(vec![entry(&[other, on_other, other])]),
        // Across two entries of the same topic, and forwarded (owned by shard 1).
        twice(vec![entry(&[on_other]), entry(&[other]), entry(&[on_other])]),
    ] {
        let id = conn.send(&req);
        let f = conn.wait(id);
        assert!(f.header.has_flag(FLAG_ERROR), "a duplicate must be refused");
        let e: ErrorBody = decode_body(f.body()).unwrap();
        assert_eq!(ErrorCode::from_u16(e.code), Some(ErrorCode::InvalidRequest));
        assert!(e.message.contains(&format!("{TOPIC}/")), "names the partition: {}", e.message);
    }
    // The connection still works, and distinct partitions are fine.
    let got = fetch(&mut conn, 1, &[(other, 0, 1), (on_other, 0, 1)]);
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), vec![0, 1]);
}

/// Random data and random requests; every response keeps the bounds. On one shard it equals
/// the model; on two shards, asked through either shard's port (so some partitions are
/// forwarded), the first partition with data gets what the model gives it, and the others
/// whole batches from their offset on (an owner may have spent its copy of the budget on
/// partitions the merge cut, so they may get less than on one shard).
fn random_requests_match_the_model(shards: usize) {
    let seed = std::env::var("FETCH_BOUNDS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let _guard = SeedGuard(seed);
    let mut rng = fastrand::Rng::with_seed(seed);
    let broker = Broker::start(shards);
    let mut conns: Vec<Conn> = (0..shards).map(|i| broker.connect_shard(i)).collect();
    let partitions = 6u32;
    let owners = create_topic(&mut conns[0], TOPIC, partitions);
    if shards > 1 {
        assert!(owners.contains(&0) && owners.contains(&1), "both shards own some: {owners:?}");
    }
    let mut stored = vec![Vec::new(); partitions as usize];
    for p in 0..partitions {
        let sent: Vec<AlignedVec> =
            (0..rng.u32(0..8)).map(|i| batch(rng.u32(1..4), rng.usize(50..12_000), i)).collect();
        if !sent.is_empty() {
            stored[p as usize] = produce(&mut conns[0], p, &sent);
        }
    }
    let end = |p: u32| stored[p as usize].last().map_or(0, |s| s.next_offset);
    for round in 0..150 {
        let mut chosen: Vec<u32> = (0..partitions).collect();
        rng.shuffle(&mut chosen);
        chosen.truncate(rng.usize(1..=partitions as usize));
        let wants: Vec<Want> = chosen
            .iter()
            .map(|&p| {
                let offset = match rng.u8(0..4) {
                    0 => 0,
                    1 => end(p),
                    _ => rng.u64(0..=end(p)),
                };
                let max = [0, 1, rng.u32(0..40_000), 1 << 20][rng.usize(0..4)];
                (p, offset, max)
            })
            .collect();
        let max_bytes = [0, 1, rng.u32(0..60_000), 1 << 20][rng.usize(0..4)];
        let via = rng.usize(0..shards);
        let got = fetch(&mut conns[via], max_bytes, &wants);
        let context = format!("round {round} via shard {via}: max_bytes {max_bytes}, {wants:?}");
        check_bounds(&got, max_bytes, &wants);
        let want = model(&stored, max_bytes, &wants);
        if shards == 1 {
            assert_eq!(got, want, "{context}");
            continue;
        }
        let first = want.iter().position(|w| !w.is_empty());
        assert_eq!(got.iter().position(|g| !g.is_empty()), first, "{context}");
        if let Some(i) = first {
            assert_eq!(got[i], want[i], "{context}");
        }
        for (g, &(p, offset, _)) in got.iter().zip(&wants) {
            let from: Vec<Stored> =
                stored[p as usize].iter().filter(|b| b.next_offset > offset).copied().collect();
            assert_eq!(g[..], from[..g.len()], "partition {p}: {context}");
        }
    }
    if shards > 1 {
        let s: StatsResponse = conns[0].call(&StatsRequest {
            shards: vec![],
            group_lag: false,
            latency: false,
            reset_latency: false,
        });
        assert!(s.shards.iter().all(|s| s.forwards_out > 0), "fetches were forwarded: {s:?}");
    }
}

#[test]
fn random_requests_match_the_model_on_one_shard() {
    random_requests_match_the_model(1);
}

#[test]
fn random_requests_match_the_model_across_two_shards() {
    random_requests_match_the_model(2);
}

#[test]
fn forwarded_partitions_share_one_budget() {
    let broker = Broker::start(2);
    let mut conn = broker.connect();
    let owners = create_topic(&mut conn, TOPIC, 4);
    assert!(owners.contains(&0) && owners.contains(&1), "both shards own some: {owners:?}");
    let mut stored = Vec::new();
    for p in 0..4 {
        let sent: Vec<AlignedVec> = (0..4).map(|i| batch(2, 4000, i)).collect();
        stored.push(produce(&mut conn, p, &sent));
    }
    for shard in 0..2 {
        let mut conn = broker.connect_shard(shard);
        // Owners alternate, the first asked for on the other shard.
        let (mut there, mut here): (Vec<u32>, Vec<u32>) =
            (0..4).partition(|&p| owners[p as usize] != shard as u32);
        assert_eq!((there.len(), here.len()), (2, 2), "{owners:?}");
        let order = [there.remove(0), here.remove(0), there.remove(0), here.remove(0)];
        let wants: Vec<Want> = order.iter().map(|&p| (p, 0, 1 << 20)).collect();
        let got = fetch(&mut conn, 1, &wants);
        let mut want = vec![Vec::new(); 4];
        want[0] = vec![stored[order[0] as usize][0]];
        assert_eq!(got, want, "via shard {shard}, order {order:?}");
        // Room for five batches of the sixteen: the first partition's four (from the other
        // shard), then one of the second's (from this one).
        let five = 5 * stored[0][0].len_bytes as u32;
        let got = fetch(&mut conn, five, &wants);
        assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 1, 0, 0]);
        assert_eq!(got.iter().map(|g| bytes(g)).sum::<usize>(), five as usize);
    }
}

#[test]
fn a_forwarded_first_batch_beyond_the_limit_comes_without_waiting_for_more() {
    // Two partitions of the other shard: one with a batch larger than the fetch's limits,
    // one empty. The owner answers its part within the limits (nothing) and the shard the
    // client is connected to asks for the first batch on its own; the owner must not wait
    // out `max_wait_ms` for the empty partition first (review finding on session 26's
    // change: it did).
    let broker = Broker::start(2);
    let mut admin = broker.connect();
    let owners = create_topic(&mut admin, TOPIC, 4);
    let owner = owners[0];
    let empty = (1..4).find(|&p| owners[p as usize] == owner).expect("two of one owner") as u32;
    let stored = produce(&mut broker.connect_shard(owner as usize), 0, &[batch(4, 8000, 1)]);
    let mut conn = broker.connect_shard(1 - owner as usize);
    let wants: Vec<Want> = vec![(0, 0, 1024), (empty, 0, 1024)];
    let started = Instant::now();
    let resp: FetchResponse = conn.call(&request(1024, 1, 20_000, &wants));
    let waited = started.elapsed();
    assert_eq!(returned(&resp, &wants), vec![stored, Vec::new()], "the first batch whole");
    assert!(waited < Duration::from_secs(10), "answered after {waited:?} of a 20 s wait");
}

#[test]
fn long_poll_still_answers_when_data_arrives_here_or_on_another_shard() {
    let broker = Broker::start(2);
    let mut conn = broker.connect_shard(0);
    let owners = create_topic(&mut conn, TOPIC, 2);
    let here = owners.iter().position(|&s| s == 0).expect("a partition on shard 0") as u32;
    let there = 1 - here;
    assert_eq!(owners[there as usize], 1);
    for p in [here, there] {
        let addr = broker.shards[0];
        let waiter = std::thread::spawn(move || {
            let mut conn = Conn::connect(addr);
            let started = Instant::now();
            let resp: FetchResponse = conn.call(&request(1 << 20, 1, 10_000, &[(p, 0, 1 << 20)]));
            (resp, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(300));
        let stored = produce(&mut conn, p, &[batch(2, 100, p)]);
        let (resp, waited) = waiter.join().unwrap();
        assert_eq!(returned(&resp, &[(p, 0, 1 << 20)]), vec![stored], "partition {p}");
        assert!(waited < Duration::from_secs(5), "answered when data arrived: {waited:?}");
    }
    // A spent budget answers at once: waiting for min_bytes could add nothing.
    let started = Instant::now();
    let wants = [(here, 0, 1 << 20), (there, 0, 1 << 20)];
    let resp: FetchResponse = conn.call(&request(1, 1 << 20, 10_000, &wants));
    assert_eq!(returned(&resp, &wants).iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 0]);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn a_long_poll_over_both_shards_answers_when_data_arrives_on_either() {
    // One fetch naming a partition of each shard (a Kafka consumer's fetch spans every
    // partition it reads): data arriving on either one answers it, not the other's deadline.
    let broker = Broker::start(2);
    let mut conn = broker.connect_shard(0);
    let owners = create_topic(&mut conn, TOPIC, 2);
    let here = owners.iter().position(|&s| s == 0).expect("a partition on shard 0") as u32;
    let there = 1 - here;
    let mut ends = [0u64; 2]; // per partition, where the next record goes
    for p in [there, here, there] {
        let wants = [(here, ends[here as usize], 1 << 20), (there, ends[there as usize], 1 << 20)];
        let addr = broker.shards[0];
        let waiter = std::thread::spawn(move || {
            let mut conn = Conn::connect(addr);
            let started = Instant::now();
            let resp: FetchResponse = conn.call(&request(1 << 20, 1, 20_000, &wants));
            (resp, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(300));
        let stored = produce(&mut conn, p, &[batch(2, 100, p)]);
        let (resp, waited) = waiter.join().unwrap();
        ends[p as usize] = stored[0].next_offset;
        let got = returned(&resp, &wants);
        assert_eq!(got[(p != here) as usize], stored, "partition {p}");
        assert!(
            waited < Duration::from_secs(10),
            "data on partition {p}: answered after {waited:?}"
        );
    }
}

/// Prints the seed if the test panics while it is alive.
struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "fetch_bounds failed with seed {} (rerun: FETCH_BOUNDS_SEED={})",
                self.0, self.0
            );
        }
    }
}

/// Long-polls hold no room while they wait (`api/long_poll.rs`): with a shard budget of two
/// 16 MiB responses, eight fetches waiting on empty partitions (16 MiB each) do not keep a
/// fetch of a partition with data waiting; each of them still gets its data when it comes,
/// and a long-poll that finds nothing answers at its own deadline (not twice it).
#[test]
fn waiting_long_polls_do_not_hold_the_budget_from_fetches_with_data() {
    let budget = (32u32 << 20).to_string();
    let broker = Broker::start_with_env(1, &[("BROKER_MEMORY_BYTES_PER_SHARD", budget.as_str())]);
    let mut conn = broker.connect();
    create_topic(&mut conn, TOPIC, 9);
    let max = 16 << 20;
    let mut waiting: Vec<(Conn, u64, u32)> = (1..=8)
        .map(|partition| {
            let mut c = broker.connect();
            let id = c.send(&request(max, 1, 20_000, &[(partition, 0, max)]));
            (c, id, partition)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let stored = produce(&mut conn, 0, &[batch(3, 100, 0)]);
    let started = Instant::now();
    let resp: FetchResponse = conn.call(&request(max, 1, 20_000, &[(0, 0, max)]));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a fetch with data waited {:?} behind idle long-polls",
        started.elapsed()
    );
    assert_eq!(returned(&resp, &[(0, 0, max)]), vec![stored]);
    // Data for the waiting ones: each answers with it.
    for (c, id, partition) in waiting.iter_mut() {
        let stored = produce(&mut conn, *partition, &[batch(1, 10, *partition)]);
        let resp: FetchResponse = c.wait(*id).decode();
        assert_eq!(returned(&resp, &[(*partition, 0, max)]), vec![stored]);
    }
    // Nothing comes: answered empty at its deadline.
    let started = Instant::now();
    let resp: FetchResponse = conn.call(&request(max, 1, 400, &[(0, 3, max)]));
    let waited = started.elapsed();
    assert_eq!(returned(&resp, &[(0, 3, max)]), vec![Vec::<Stored>::new()]);
    assert!(waited >= Duration::from_millis(350) && waited < Duration::from_secs(3), "{waited:?}");
}

/// `min_bytes` 0 answers at once, as a Kafka broker does (it waited like 1 before): a fetch
/// at the end of the log asking for no bytes does not wait out its `max_wait_ms`, whether its
/// partitions are on the connection's shard (the wait that holds nothing, `long_poll.rs`) or
/// on both shards.
#[test]
fn a_fetch_asking_for_no_bytes_answers_at_once() {
    let broker = Broker::start(2);
    let mut conn = broker.connect_shard(0);
    let owners = create_topic(&mut conn, TOPIC, 2);
    let here = owners.iter().position(|&s| s == 0).expect("a partition on shard 0") as u32;
    let there = 1 - here;
    for wants in [vec![(here, 0, 1024)], vec![(here, 0, 1024), (there, 0, 1024)]] {
        let started = Instant::now();
        let resp: FetchResponse = conn.call(&request(1 << 20, 0, 20_000, &wants));
        let waited = started.elapsed();
        assert!(returned(&resp, &wants).iter().all(Vec::is_empty));
        assert!(waited < Duration::from_secs(10), "{wants:?}: answered after {waited:?} of 20 s");
    }
}

/// A client that leaves while its fetch long-polls over partitions of both shards (the kind
/// that holds its response's room while it waits) does not keep that room, nor the owner's
/// wait, until the deadline: the connection's reader ends the wait when it stops.
#[test]
fn a_long_poll_ends_when_its_client_leaves() {
    let env = [("BROKER_METRICS_LISTEN", "127.0.0.1:0")];
    let broker = Broker::start_with_env(2, &env);
    let (mut conn, here, wants) = topic_over_both_shards(&broker);
    leave_with_long_polls(&broker, &wants, 1, 8 << 20);
    still_serving(&mut conn, here, &wants);
}

/// A client that fills every in-flight slot of its connection with long-polls, sends one
/// more request and leaves: the reader, waiting for a slot, still watches the socket, so the
/// long-polls end (and give back their room) at once, not at their 30 s deadline.
#[test]
fn a_client_that_leaves_with_every_slot_taken_ends_its_long_polls() {
    let env =
        [("BROKER_METRICS_LISTEN", "127.0.0.1:0"), ("BROKER_INFLIGHT_PER_CONNECTION_MAX", "2")];
    let broker = Broker::start_with_env(2, &env);
    let (mut conn, here, wants) = topic_over_both_shards(&broker);
    leave_with_long_polls(&broker, &wants, 3, 2 << 20);
    // A client that only closes its sending half still gets every answer: its long-polls
    // end early (with nothing), and the request read behind them is answered after them.
    let mut half = broker.connect_shard(0);
    let ids: Vec<u64> = [30_000, 30_000, 0]
        .into_iter()
        .map(|wait_ms| half.send(&request(1 << 20, 1, wait_ms, &wants[..1])))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    half.shutdown_write();
    let closed = Instant::now();
    for id in ids {
        let resp: FetchResponse = half.wait(id).decode();
        assert!(returned(&resp, &wants[..1]).iter().all(Vec::is_empty));
    }
    assert!(closed.elapsed() < Duration::from_secs(10), "answered {:?} after", closed.elapsed());
    still_serving(&mut conn, here, &wants);
}

/// A connection to shard 0 and topic `TOPIC` over both shards: the partition on shard 0, and
/// a want of each partition from offset 0.
fn topic_over_both_shards(broker: &Broker) -> (Conn, u32, [Want; 2]) {
    let mut conn = broker.connect_shard(0);
    let owners = create_topic(&mut conn, TOPIC, 2);
    let here = owners.iter().position(|&s| s == 0).expect("a partition on shard 0") as u32;
    (conn, here, [(here, 0, 1 << 20), (1 - here, 0, 1 << 20)])
}

/// Sends `count` long-polls (30 s) of `max_bytes` for `wants` on a new connection to shard
/// 0, waits until the in-flight ones (at most 2 when more are sent) hold their room, leaves,
/// and asserts the room comes back within 10 s.
fn leave_with_long_polls(broker: &Broker, wants: &[Want], count: usize, max_bytes: u32) {
    let mut leaving = broker.connect_shard(0);
    for _ in 0..count {
        leaving.send(&request(max_bytes, 1, 30_000, wants));
    }
    let held = |b: &Broker| b.metric("broker_memory_held_bytes", 0).expect("metrics on");
    let reserved = f64::from(max_bytes) * count.min(2) as f64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while held(broker) < reserved {
        assert!(Instant::now() < deadline, "the long-polls never reserved their room");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100)); // what is behind them is read
    drop(leaving);
    let left = Instant::now();
    while held(broker) > 0.0 {
        let waited = left.elapsed();
        assert!(waited < Duration::from_secs(10), "room held {waited:?} after the client left");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Still serving: a long-poll answers when data comes.
fn still_serving(conn: &mut Conn, here: u32, wants: &[Want]) {
    let stored = produce(conn, here, &[batch(1, 10, here)]);
    let resp: FetchResponse = conn.call(&request(1 << 20, 1, 5_000, wants));
    assert_eq!(returned(&resp, wants)[0], stored);
}

/// A partition that fails makes a long-poll answer at once, as in Kafka (the client has
/// something to act on): an offset out of range, or a partition the topic does not have,
/// next to partitions with nothing to read here and on the other shard.
#[test]
fn a_failed_partition_makes_a_long_poll_answer_at_once() {
    let broker = Broker::start(2);
    let mut conn = broker.connect_shard(0);
    let owners = create_topic(&mut conn, TOPIC, 2);
    let here = owners.iter().position(|&s| s == 0).expect("a partition on shard 0") as u32;
    let there = 1 - here;
    let out_of_range = (here, 100, 1024);
    let missing = (7, 0, 1024);
    for (failing, code) in
        [(out_of_range, ErrorCode::OffsetOutOfRange), (missing, ErrorCode::UnknownPartition)]
    {
        for waiting in [here, there] {
            let wants = [(waiting, 0, 1024), failing];
            if waiting == failing.0 {
                continue;
            }
            let started = Instant::now();
            let resp: FetchResponse = conn.call(&request(1 << 20, 1, 20_000, &wants));
            let waited = started.elapsed();
            assert_eq!(resp.topics[0].partitions[1].error, code.as_u16(), "{wants:?}");
            assert!(waited < Duration::from_secs(10), "{wants:?}: answered after {waited:?}");
        }
    }
}
