//! The broker end to end: real binary, loopback, temp data dir.

use std::collections::BTreeMap;
use std::time::Duration;

use integration_tests::{create_topic, Broker, Conn};

fn fetch_all(conn: &mut Conn, partition: u32, end: u64) -> Vec<Vec<u8>> {
    integration_tests::fetch_all(conn, TOPIC, partition, end)
}
use wire::*;

const TOPIC: &str = "orders";

fn batch(partition: u32, seq: u32, records: u32) -> AlignedVec {
    let mut b = BatchBuilder::new(1 << 20);
    for i in 0..records {
        let key = format!("p{partition}-k{}", (seq * records + i) % 17);
        let value = format!("p{partition}-s{seq}-r{i}-{}", "x".repeat((i % 50) as usize));
        b.append(
            1_700_000_000_000 + i64::from(seq),
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            &[("seq", &seq.to_le_bytes())],
        )
        .unwrap();
    }
    b.finish().unwrap()
}

fn produce(
    conn: &mut Conn,
    partition: u32,
    batches: &[&[u8]],
    ack: AckLevel,
) -> ProducePartitionResult {
    integration_tests::produce(conn, TOPIC, partition, &batches.concat(), ack)
}

fn stats(conn: &mut Conn) -> Vec<ShardStats> {
    let r: StatsResponse = conn.call(&StatsRequest {
        shards: vec![],
        group_lag: false,
        latency: false,
        reset_latency: false,
    });
    r.shards
}

/// Covered bytes equal (everything but the broker-assigned offset and log-append time).
fn same_batch(stored: &[u8], produced: &[u8]) -> bool {
    stored.len() == produced.len() && stored[..8] == produced[..8] && stored[24..] == produced[24..]
}

#[test]
fn produce_100k_fetch_back_restart_and_shard_aware_routing() {
    let mut broker = Broker::start(2);
    let mut admin = broker.connect();
    let owners = create_topic(&mut admin, TOPIC, 8);
    assert!(owners.contains(&0) && owners.contains(&1), "partitions on both shards: {owners:?}");
    let md: MetadataResponse = admin.call(&MetadataRequest { topics: vec![TOPIC.into()] });
    assert_eq!(md.shard_count, 2);
    assert_eq!(md.shards.len(), 2);

    // Shard-aware: each partition's requests go to its owner's own port.
    let mut shard_conns: Vec<Conn> = (0..2).map(|i| broker.connect_shard(i)).collect();
    let mut produced: BTreeMap<u32, Vec<AlignedVec>> = BTreeMap::new();
    let records_per_batch = 100;
    let batches_per_partition = 125; // 8 * 125 * 100 = 100,000 records
    for p in 0..8u32 {
        let conn = &mut shard_conns[owners[p as usize] as usize];
        let mut next = 0u64;
        for chunk in 0..(batches_per_partition / 5) {
            let bs: Vec<AlignedVec> =
                (0..5).map(|i| batch(p, chunk * 5 + i, records_per_batch)).collect();
            let refs: Vec<&[u8]> = bs.iter().map(|b| &b[..]).collect();
            let ack = if chunk % 2 == 0 { AckLevel::Durable } else { AckLevel::Written };
            let r = produce(conn, p, &refs, ack);
            assert_eq!(r.error, 0, "produce error {:?}", ErrorCode::from_u16(r.error));
            assert_eq!(r.base_offset as u64, next);
            next = r.last_offset as u64 + 1;
            produced.entry(p).or_default().extend(bs);
        }
        assert_eq!(next, u64::from(batches_per_partition * records_per_batch));
    }
    for s in stats(&mut admin) {
        assert_eq!(s.forwards_out, 0, "shard-aware requests must not be forwarded: {s:?}");
    }

    let check_all = |conns: &mut Vec<Conn>| {
        let mut total_records = 0;
        for p in 0..8u32 {
            let conn = &mut conns[owners[p as usize] as usize];
            let fetched = fetch_all(conn, p, u64::from(batches_per_partition * records_per_batch));
            let want = &produced[&p];
            assert_eq!(fetched.len(), want.len());
            for (f, w) in fetched.iter().zip(want) {
                assert!(
                    same_batch(f, w),
                    "partition {p}: fetched batch differs from the produced one"
                );
                total_records += BatchView::validate(&to_aligned(f)).unwrap().len();
            }
        }
        assert_eq!(total_records, 100_000);
    };
    check_all(&mut shard_conns);

    for s in stats(&mut admin) {
        assert_eq!(s.forwards_out, 0, "{s:?}");
    }

    // The wrong shard forwards and still answers correctly.
    let wrong = owners.iter().position(|&s| s == 1).unwrap() as u32; // a partition on shard 1
    let mut conn0 = broker.connect_shard(0);
    let extra = batch(wrong, 9999, 3);
    let r = produce(&mut conn0, wrong, &[&extra], AckLevel::Durable);
    assert_eq!(r.error, 0);
    assert_eq!(r.base_offset as u64, u64::from(batches_per_partition * records_per_batch));
    let fetched = fetch_all(&mut conn0, wrong, r.last_offset as u64 + 1);
    assert!(same_batch(fetched.last().unwrap(), &extra));
    let s = stats(&mut admin);
    assert!(s[0].forwards_out >= 2, "forwards counted: {s:?}");
    assert!(s[1].forwards_in >= 2, "{s:?}");
    produced.get_mut(&wrong).unwrap().push(extra);

    // Restart keeps topics and data.
    assert_eq!(broker.stop(), Some(0), "graceful stop exits 0; log:\n{}", broker.log_text());
    broker.restart();
    let mut admin = broker.connect();
    let topics: ListTopicsResponse = admin.call(&ListTopicsRequest { name_prefix: String::new() });
    assert_eq!(topics.topics, vec![TopicSummary { name: TOPIC.into(), partition_count: 8 }]);
    let mut shard_conns: Vec<Conn> = (0..2).map(|i| broker.connect_shard(i)).collect();
    let check_restart = |conns: &mut Vec<Conn>| {
        for p in 0..8u32 {
            let conn = &mut conns[owners[p as usize] as usize];
            let want = &produced[&p];
            let end: u64 = want.iter().map(|b| BatchView::validate(b).unwrap().len() as u64).sum();
            let fetched = fetch_all(conn, p, end);
            assert_eq!(fetched.len(), want.len());
            assert!(
                fetched.iter().zip(want).all(|(f, w)| same_batch(f, w)),
                "partition {p} after restart"
            );
        }
    };
    check_restart(&mut shard_conns);
}

#[test]
fn subscriber_sees_records_produced_after_it_subscribed_in_order() {
    let broker = Broker::start(2);
    let mut admin = broker.connect();
    let owners = create_topic(&mut admin, TOPIC, 2);
    let mut sub = broker.connect_shard(owners[1] as usize);
    let resp: SubscribeResponse = sub.call(&SubscribeRequest {
        subscription_id: 7,
        topic: TOPIC.into(),
        partition: 1,
        start: StartPosition::Latest,
        credit_bytes: 1 << 20,
        filter: String::new(),
    });
    assert_eq!(resp.error, 0, "{}", resp.message);
    assert_eq!(resp.start_offset, 0);

    let mut producer = broker.connect();
    let mut sent = Vec::new();
    for seq in 0..50 {
        let b = batch(1, seq, 20);
        assert_eq!(produce(&mut producer, 1, &[&b], AckLevel::Written).error, 0);
        sent.push(b);
    }
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut next = 0;
    while got.len() < sent.len() {
        let push = sub.next_push();
        let data: SubscriptionData = push.decode();
        assert_eq!(data.subscription_id, 7);
        assert_eq!(data.error, 0);
        let bytes = to_aligned(&data.batches);
        for b in Batches::new(&bytes) {
            let b = b.unwrap();
            assert_eq!(b.header().base_offset(), next, "in order, no gaps");
            next = b.header().next_offset();
            got.push(b.bytes().to_vec());
        }
        // Keep granting as the application consumes.
        let id = sub.send(&GrantCreditRequest {
            subscription_id: 7,
            credit_bytes: data.batches.len() as u64,
        });
        let g: GrantCreditResponse = sub.wait(id).decode();
        assert_eq!(g.error, 0);
    }
    assert!(got.iter().zip(&sent).all(|(g, s)| same_batch(g, s)));

    // Subscribing through a shard that does not own the partition is relayed by it.
    if owners[0] != owners[1] {
        let mut relayed = broker.connect_shard(owners[0] as usize);
        let r: SubscribeResponse = relayed.call(&SubscribeRequest {
            subscription_id: 9,
            topic: TOPIC.into(),
            partition: 1,
            start: StartPosition::Earliest,
            credit_bytes: 64 << 10,
            filter: String::new(),
        });
        assert_eq!(r.error, 0, "{}", r.message);
        let mut offset = 0;
        let mut credit_rounds = 0;
        while offset < next {
            let data: SubscriptionData = relayed.next_push().decode();
            assert_eq!(data.subscription_id, 9);
            let bytes = to_aligned(&data.batches);
            for b in Batches::new(&bytes) {
                let b = b.unwrap();
                assert_eq!(b.header().base_offset(), offset);
                offset = b.header().next_offset();
            }
            let id = relayed.send(&GrantCreditRequest {
                subscription_id: 9,
                credit_bytes: data.batches.len() as u64,
            });
            let g: GrantCreditResponse = relayed.wait(id).decode();
            assert_eq!(g.error, 0);
            credit_rounds += 1;
        }
        assert!(credit_rounds > 1, "credit limited the pushes");
        let r: UnsubscribeResponse = relayed.call(&UnsubscribeRequest { subscription_id: 9 });
        assert_eq!(r.error, 0);
    }
    let r: UnsubscribeResponse = sub.call(&UnsubscribeRequest { subscription_id: 7 });
    assert_eq!(r.error, 0);
}

#[test]
fn malformed_frames_get_errors_and_other_connections_keep_working() {
    let broker = Broker::start(2);
    let mut good = broker.connect();
    create_topic(&mut good, TOPIC, 1);

    // Unknown api key: an error response, and the connection stays usable.
    let mut c = broker.connect();
    c.send_raw(
        &encode_frame(
            999,
            0,
            5,
            &StatsRequest {
                shards: vec![],
                group_lag: false,
                latency: false,
                reset_latency: false,
            },
        )
        .unwrap(),
    )
    .unwrap();
    let f = c.wait(5);
    assert!(f.header.has_flag(wire::constants::FLAG_ERROR));
    let e: ErrorBody = wire::decode_body(f.body()).unwrap();
    assert_eq!(ErrorCode::from_u16(e.code), Some(ErrorCode::UnknownApiKey));
    let _: StatsResponse = c.call(&StatsRequest {
        shards: vec![],
        group_lag: false,
        latency: false,
        reset_latency: false,
    });

    // A structurally invalid body: an error response, connection stays.
    let mut frame = encode_request(6, &MetadataRequest { topics: vec!["a".into()] }).unwrap();
    let header = FrameHeader::decode(frame[..32].try_into().unwrap(), u32::MAX).unwrap();
    let root_end = 32 + header.body_len as usize;
    frame[root_end - 8..root_end].fill(0xFF); // the root vector's pointer and length
    c.send_raw(&frame).unwrap();
    let f = c.wait(6);
    assert!(f.header.has_flag(wire::constants::FLAG_ERROR));

    // Garbage: the broker answers with one error frame and closes.
    let mut bad = broker.connect();
    bad.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n and some more bytes to fill a header")
        .unwrap();
    let f = bad.read_frame().expect("an error frame before the close");
    assert!(f.header.has_flag(wire::constants::FLAG_ERROR));
    assert!(bad.read_frame().is_none(), "connection closed after a broken frame");

    // A body length of 4 GiB is refused from the header.
    let mut huge = broker.connect();
    let mut h = FrameHeader {
        version: 1,
        api_key: ApiKey::Produce.as_u16(),
        flags: 0,
        correlation_id: 1,
        body_len: 0,
    }
    .encode();
    h[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    let crc = crc32c::crc32c(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    huge.send_raw(&h).unwrap();
    let f = huge.read_frame().expect("error frame");
    let e: ErrorBody = wire::decode_body(f.body()).unwrap();
    assert_eq!(ErrorCode::from_u16(e.code), Some(ErrorCode::FrameTooLarge));

    // A batch with a wrong CRC: a per-partition error.
    let mut b = batch(0, 0, 3).to_vec();
    let last = b.len() - 20;
    b[last] ^= 1;
    let r = produce(&mut good, 0, &[&b], AckLevel::Written);
    assert_eq!(ErrorCode::from_u16(r.error), Some(ErrorCode::CorruptBatch));
    // Unknown topic.
    let resp: ProduceResponse = good.call(&ProduceRequest {
        ack: AckLevel::Written,
        timeout_ms: 1000,
        topics: vec![ProduceTopic {
            name: "nope".into(),
            partitions: vec![ProducePartition {
                partition: 0,
                batches: batch(0, 0, 1).to_vec(),
                expect: Default::default(),
            }],
        }],
    });
    assert_eq!(
        ErrorCode::from_u16(resp.topics[0].partitions[0].error),
        Some(ErrorCode::UnknownTopic)
    );

    // The good connection never noticed.
    let ok = produce(&mut good, 0, &[&batch(0, 1, 2)], AckLevel::Durable);
    assert_eq!(ok.error, 0);
}

#[test]
fn subscriber_without_credit_holds_no_memory() {
    let broker = Broker::start_with_env(1, &[("BROKER_CACHE_BYTES_PER_SHARD", "4194304")]);
    let mut admin = broker.connect();
    create_topic(&mut admin, TOPIC, 1);
    let mut sub = broker.connect_shard(0);
    let r: SubscribeResponse = sub.call(&SubscribeRequest {
        subscription_id: 1,
        topic: TOPIC.into(),
        partition: 0,
        start: StartPosition::Earliest,
        credit_bytes: 0,
        filter: String::new(),
    });
    assert_eq!(r.error, 0);
    let mut producer = broker.connect_shard(0);
    let big = {
        let mut b = BatchBuilder::new(1 << 20);
        let v = vec![7u8; 1000];
        while b.append(0, None, Some(&v), &[]).is_ok() {}
        b.finish().unwrap()
    };
    // Warm up, then measure growth while 128 MB more are produced.
    for _ in 0..16 {
        assert_eq!(produce(&mut producer, 0, &[&big], AckLevel::Written).error, 0);
    }
    let before = broker.rss_bytes();
    for _ in 0..128 {
        assert_eq!(produce(&mut producer, 0, &[&big], AckLevel::Written).error, 0);
    }
    let after = broker.rss_bytes();
    let growth = after.saturating_sub(before);
    assert!(
        growth < 48 << 20,
        "broker RSS grew by {} MiB while a creditless subscriber waited",
        growth >> 20
    );
    sub.set_read_timeout(Some(Duration::from_millis(300)));
    // Nothing was pushed without credit.
    assert!(sub.pushes.is_empty());
}

#[test]
fn ten_thousand_idle_connections_and_the_broker_still_answers() {
    // Raise the soft fd limit to the hard one (the broker child inherits it).
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on structs we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    if lim.rlim_cur < 12_000 {
        eprintln!("skipping: the fd limit {} is below what 10,000 connections need", lim.rlim_cur);
        return;
    }
    let broker = Broker::start(2);
    let mut admin = broker.connect();
    let before = broker.rss_bytes();
    let conns: Vec<std::net::TcpStream> = (0..10_000)
        .map(|i| {
            std::net::TcpStream::connect(if i % 2 == 0 {
                broker.public
            } else {
                broker.shards[i % 2]
            })
            .expect("connect")
        })
        .collect();
    // Wait until the broker has accepted them all.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let open: u64 = stats(&mut admin).iter().map(|s| s.connections).sum();
        if open > 10_000 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "only {open} connections accepted");
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = broker.rss_bytes();
    let per_connection = after.saturating_sub(before) / 10_000;
    eprintln!("idle connection cost: {per_connection} bytes of RSS each");
    assert!(per_connection < 64 << 10, "{per_connection} bytes of RSS per idle connection");
    // Still serving.
    create_topic(&mut admin, TOPIC, 1);
    let r = produce(&mut admin, 0, &[&batch(0, 0, 5)], AckLevel::Durable);
    assert_eq!(r.error, 0);
    drop(conns);
}

#[test]
fn a_thousand_partitions_open_serve_and_recover() {
    let mut broker = Broker::start(2);
    let mut admin = broker.connect();
    let before = broker.rss_bytes();
    let fds_before = broker.open_fds();
    let owners = create_topic(&mut admin, TOPIC, 1000);
    let per_partition = broker.rss_bytes().saturating_sub(before) / 1000;
    let fds = broker.open_fds() - fds_before;
    eprintln!("idle partition cost: {per_partition} bytes of RSS each, {fds} fds for 1,000");
    assert!(per_partition < 256 << 10, "{per_partition} bytes of RSS per idle partition");
    // An idle partition holds its log file only; index files open with their first entries.
    assert!(fds <= 1000 + 16, "{fds} descriptors for 1,000 idle partitions");
    let mut conns: Vec<Conn> = (0..2).map(|i| broker.connect_shard(i)).collect();
    for p in (0..1000).step_by(97) {
        let r = produce(
            &mut conns[owners[p as usize] as usize],
            p,
            &[&batch(p, 0, 3)],
            AckLevel::Durable,
        );
        assert_eq!(r.error, 0);
    }
    assert_eq!(broker.stop(), Some(0));
    broker.restart();
    let mut conn = broker.connect();
    let d: DescribeTopicResponse = conn.call(&DescribeTopicRequest { name: TOPIC.into() });
    assert_eq!(d.partitions.len(), 1000);
    let fds = broker.open_fds();
    assert!(fds <= 1000 + 64, "{fds} descriptors after a restart with 1,000 partitions");
    let with_data: Vec<u32> =
        d.partitions.iter().filter(|p| p.high_watermark > 0).map(|p| p.partition).collect();
    assert_eq!(with_data, (0..1000).step_by(97).collect::<Vec<u32>>());
}

#[test]
fn half_a_frame_then_silence_is_cut_off_and_others_are_unaffected() {
    let broker = Broker::start_with_env(1, &[("BROKER_FRAME_READ_TIMEOUT_MS", "500")]);
    let mut good = broker.connect();
    create_topic(&mut good, TOPIC, 1);
    let mut slow = broker.connect();
    let frame = encode_request(
        1,
        &StatsRequest { shards: vec![], group_lag: false, latency: false, reset_latency: false },
    )
    .unwrap();
    slow.send_raw(&frame[..frame.len() / 2]).unwrap();
    // Meanwhile another client is served normally.
    let r = produce(&mut good, 0, &[&batch(0, 0, 2)], AckLevel::Written);
    assert_eq!(r.error, 0);
    // The stalled client is disconnected after the frame timeout.
    slow.set_read_timeout(Some(Duration::from_secs(10)));
    let started = std::time::Instant::now();
    assert!(slow.read_frame().is_none(), "a stalled half frame gets no answer, only a close");
    assert!(started.elapsed() < Duration::from_secs(5));
    let _: StatsResponse = good.call(&StatsRequest {
        shards: vec![],
        group_lag: false,
        latency: false,
        reset_latency: false,
    });
}

/// The default `data_dir` is relative (`./data`): partitions open (on the shard threads) and
/// serve when the broker is started with a relative path.
#[test]
fn a_relative_data_dir_works() {
    let dir = std::env::temp_dir().join(format!("broker-relative-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = std::process::Command::new(integration_tests::broker_binary())
        .current_dir(&dir)
        .args(["--data-dir", "data", "--listen", "127.0.0.1:0", "--shard-port-base", "0"])
        .args(["--shards", "2", "--ready-file", "ready.json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let public = loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("ready.json")) {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            break v["public"].as_str().unwrap().parse().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "broker not ready");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut conn = Conn::connect(public);
    create_topic(&mut conn, TOPIC, 2);
    for p in 0..2 {
        let r = produce(&mut conn, p, &[&batch(p, 0, 3)], AckLevel::Durable);
        assert_eq!(
            r.error,
            0,
            "{:?}\n{}",
            ErrorCode::from_u16(r.error),
            std::fs::read_to_string(dir.join("log")).unwrap()
        );
    }
    assert!(dir.join("data").join("topics~").join(TOPIC).join("1").is_dir());
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Transparent huge pages are off for the broker process unless configured on
/// (`huge_pages.rs`: with them, a shard zeroes a whole 2 MiB page in one fault and every
/// request on it waits milliseconds).
#[test]
fn transparent_huge_pages_are_off_for_the_broker_unless_configured() {
    let thp = |b: &Broker| {
        let status = std::fs::read_to_string(format!("/proc/{}/status", b.pid())).unwrap();
        status.lines().find_map(|l| Some(l.strip_prefix("THP_enabled:")?.trim().to_string()))
    };
    let default = Broker::start(1);
    let Some(flag) = thp(&default) else {
        eprintln!("skipped: this kernel does not show THP_enabled in /proc/<pid>/status");
        return;
    };
    assert_eq!(flag, "0", "THP still enabled for the broker:\n{}", default.log_text());
    let on = Broker::start_with_env(1, &[("BROKER_TRANSPARENT_HUGE_PAGES", "true")]);
    assert_eq!(thp(&on).as_deref(), Some("1"));
}

/// Per-stage latency: a produce at `durable`, a fetch and the pushes of a subscription
/// waiting for them show up in the shard's stages, and a reset starts them afresh.
#[test]
fn stage_latency_is_reported_per_shard_and_resets() {
    let broker = Broker::start(1);
    let mut conn = broker.connect();
    integration_tests::create_topic(&mut conn, TOPIC, 1);
    let mut sub = broker.connect();
    let resp: SubscribeResponse = sub.call(&SubscribeRequest {
        subscription_id: 1,
        topic: TOPIC.into(),
        partition: 0,
        start: StartPosition::Latest,
        credit_bytes: 1 << 20,
        filter: String::new(),
    });
    assert_eq!(resp.error, 0, "{}", resp.message);
    let mut pushed = 0;
    for seq in 0..20 {
        let r = produce(&mut conn, 0, &[&batch(0, seq, 3)], AckLevel::Durable);
        assert_eq!(r.error, 0);
        // Each produce is pushed before the next: the subscription waited for it.
        let data: SubscriptionData = sub.next_push().decode();
        assert_eq!(data.next_offset, 3 * (seq as u64 + 1));
        pushed += 1;
    }
    let _ = integration_tests::fetch_all(&mut conn, TOPIC, 0, 60);
    let ask = |conn: &mut Conn, reset| -> Vec<wire::StageLatency> {
        let r: StatsResponse = conn.call(&StatsRequest {
            shards: vec![],
            group_lag: false,
            latency: true,
            reset_latency: reset,
        });
        r.shards.into_iter().flat_map(|s| s.latency).collect()
    };
    let stages = ask(&mut conn, true);
    let count = |name: &str| stages.iter().find(|s| s.stage == name).map_or(0, |s| s.count);
    assert_eq!(count("produce"), 20, "{stages:?}");
    assert_eq!(count("produce_ack"), 20, "{stages:?}");
    assert!(count("log_queue") >= 20, "{stages:?}");
    assert!(count("write") + count("write_dsync") >= 1, "{stages:?}");
    assert!(count("fetch") >= 1, "{stages:?}");
    // A push that went out after a wait for its records (visible → push queued) is a
    // sample: each of these, but for one that found its records already there.
    assert!((1..=pushed).contains(&count("push")), "{stages:?}");
    assert!(count("request_queue") >= 23, "{stages:?}"); // subscribe, produces, fetch, stats
    assert!(count("frame_read") >= 22, "{stages:?}");
    // The connection waited for its next request at least once (a synchronous client).
    assert!(count("read_wake") >= 1, "{stages:?}");
    assert!(count("response_write") >= 41, "{stages:?}"); // every answer but this one, pushes
    for s in &stages {
        assert!(s.p50_us <= s.p99_us && s.p99_us <= s.max_us && s.count > 0, "{s:?}");
    }
    // After the reset only the asking request itself has been seen (read and queued, its
    // read perhaps woken), and the previous answer written.
    let after = ask(&mut conn, false);
    assert!(
        after
            .iter()
            .all(|s| matches!(s.stage.as_str(), "request_queue" | "frame_read") && s.count == 1
                || matches!(s.stage.as_str(), "response_write" | "read_wake") && s.count <= 1),
        "{after:?}"
    );
}

#[test]
fn a_subscription_by_timestamp_starts_at_the_first_record_at_or_after_it() {
    // On the partition's own shard and through the other one (relayed); the lookup takes
    // room from the owner's memory budget for what it reads (`api/subscribe.rs`).
    let broker = Broker::start(2);
    let mut admin = broker.connect();
    let owner = create_topic(&mut admin, TOPIC, 1)[0] as usize;
    let mut c = broker.connect_shard(owner);
    // Batch `seq` holds 3 records stamped 1_700_000_000_000 + seq: offsets 3 × seq on.
    for seq in 0..10 {
        let r = produce(&mut c, 0, &[&batch(0, seq, 3)], AckLevel::Durable);
        assert_eq!(r.error, 0, "produce");
    }
    for via in [owner, 1 - owner] {
        let mut conn = broker.connect_shard(via);
        let cases = [(1_700_000_000_004, 12), (0, 0), (1_800_000_000_000, 30)];
        for (id, (ts, want)) in cases.into_iter().enumerate() {
            let resp: SubscribeResponse = conn.call(&SubscribeRequest {
                subscription_id: id as u64 + 1,
                topic: TOPIC.into(),
                partition: 0,
                start: StartPosition::Timestamp(ts),
                credit_bytes: 0,
                filter: String::new(),
            });
            assert_eq!((resp.error, resp.start_offset), (0, want), "{ts} via shard {via}");
        }
    }
}
