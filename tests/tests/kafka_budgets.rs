//! What a Kafka client can make the broker hold comes out of the configured budgets (issue
//! 22): a client that pipelines large fetches and never reads its responses holds at most its
//! connection's send-queue budget (plus what the socket buffers take), and other clients are
//! still served.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use integration_tests::{create_topic, produce, Broker};
use kafka_protocol::messages::{
    fetch_request, produce_request, ApiKey, FetchRequest, ProduceRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

mod kafka_wire;
use kafka_wire::{frame, kafka_addr, response_body};

/// A fetch of partition 0 of `topic` from offset 0, of at most `max_bytes` (and as much per
/// partition).
fn fetch_from_start(topic: &'static str, max_bytes: i32) -> FetchRequest {
    let mut partition = fetch_request::FetchPartition::default();
    partition.partition = 0;
    partition.fetch_offset = 0;
    partition.partition_max_bytes = max_bytes;
    let mut t = fetch_request::FetchTopic::default();
    t.topic = TopicName(StrBytes::from_static_str(topic));
    t.partitions.push(partition);
    let mut fetch = FetchRequest::default();
    fetch.replica_id = kafka_protocol::messages::BrokerId(-1);
    fetch.max_wait_ms = 10;
    fetch.max_bytes = max_bytes;
    fetch.topics.push(t);
    fetch
}

/// Sends `fetch` 100 times on a new connection to `addr` without reading, and asserts the
/// broker's RSS grew less than `allowed_bytes`; returns the connection.
fn pipeline_unread(b: &Broker, addr: &str, fetch: &FetchRequest, allowed_bytes: u64) -> TcpStream {
    let before = b.rss_bytes();
    let mut greedy = TcpStream::connect(addr).unwrap();
    greedy.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sent = 0;
    for i in 0..100 {
        if greedy.write_all(&frame(ApiKey::Fetch, 4, i, fetch)).is_err() {
            break; // the broker stopped reading: that is the point
        }
        sent += 1;
    }
    std::thread::sleep(Duration::from_secs(2));
    let grown = b.rss_bytes().saturating_sub(before);
    eprintln!("broker RSS grew {} MiB with {sent} unread fetches", grown >> 20);
    assert!(
        grown < allowed_bytes,
        "a client that does not read made the broker hold {} MiB (sent {sent} fetches)",
        grown >> 20
    );
    greedy
}

#[test]
fn a_kafka_client_that_does_not_read_holds_only_its_send_queue_budget() {
    const SEND_QUEUE_BYTES_MAX: u64 = 4 << 20;
    let b = Broker::start_with_env(
        1,
        &[
            ("BROKER_KAFKA_LISTEN", "127.0.0.1:0"),
            ("BROKER_CONNECTION_SEND_QUEUE_BYTES_MAX", &SEND_QUEUE_BYTES_MAX.to_string()),
        ],
    );
    let addr = kafka_addr(&b);
    let mut native = b.connect();
    create_topic(&mut native, "held", 1);
    // 4 MiB of records: every fetch from offset 0 answers with all of it.
    let value = vec![7u8; 1000];
    for _ in 0..4 {
        let mut builder = wire::BatchBuilder::new(1 << 20);
        while builder.append(0, None, Some(&value), &[]).is_ok() {}
        let batch = builder.finish().unwrap();
        assert_eq!(produce(&mut native, "held", 0, &batch, wire::AckLevel::Written).error, 0);
    }
    // 100 fetches of ~4 MiB each (400 MiB of responses) sent, none read.
    let mut greedy = pipeline_unread(&b, &addr, &fetch_from_start("held", 8 << 20), 64 << 20);
    // Others are served meanwhile.
    let mut other = TcpStream::connect(&addr).unwrap();
    other.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    other
        .write_all(&frame(
            ApiKey::ApiVersions,
            0,
            1,
            &kafka_protocol::messages::ApiVersionsRequest::default(),
        ))
        .unwrap();
    let mut size = [0u8; 4];
    other.read_exact(&mut size).expect("ApiVersions answered while a client holds its budget");
    // The greedy client's responses come in order once it reads.
    greedy.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    for i in 0..3 {
        greedy.read_exact(&mut size).unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        greedy.read_exact(&mut body).unwrap();
        assert_eq!(i32::from_be_bytes(body[..4].try_into().unwrap()), i, "in request order");
        assert!(body.len() > 1 << 20, "carries the records");
    }
}

/// A fetch's first batch comes whole however small its limits: 100 unread fetches of at most
/// 1 byte each, from a backlog of 4 MiB batches on disk, hold at most the connection's budget
/// and one batch (before, each reserved 1 byte and was answered with 4 MiB at once).
#[test]
fn unread_kafka_fetches_below_their_first_batch_hold_only_the_budget() {
    let b = Broker::start_with_env(
        1,
        &[
            ("BROKER_KAFKA_LISTEN", "127.0.0.1:0"),
            ("BROKER_CONNECTION_SEND_QUEUE_BYTES_MAX", "4194304"),
            ("BROKER_CACHE_BYTES_PER_SHARD", "8388608"),
        ],
    );
    let addr = kafka_addr(&b);
    let mut native = b.connect();
    create_topic(&mut native, "big-batches", 1);
    let mut builder = wire::BatchBuilder::new(8 << 20);
    for _ in 0..4 {
        builder.append(0, None, Some(&vec![9u8; 1 << 20]), &[]).unwrap();
    }
    let batch = builder.finish().unwrap();
    for _ in 0..8 {
        assert_eq!(
            produce(&mut native, "big-batches", 0, &batch, wire::AckLevel::Durable).error,
            0
        );
    }
    let mut greedy = pipeline_unread(&b, &addr, &fetch_from_start("big-batches", 1), 64 << 20);
    greedy.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for i in 0..3 {
        let body = response_body(&mut greedy, i);
        assert!(body.len() > 4 << 20, "response {i} carries the whole first batch");
    }
    drop(greedy);
    // A request `max_bytes` of 0 (or less) with large partition limits: before, it reserved
    // nothing and read up to `fetch_response_bytes_max` (64 MiB) per fetch as if reserved.
    let mut zero = fetch_from_start("big-batches", 32 << 20);
    zero.max_bytes = 0;
    let mut greedy = pipeline_unread(&b, &addr, &zero, 64 << 20);
    greedy.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = response_body(&mut greedy, 0);
    assert!(body.len() > 4 << 20, "the whole first batch");
}

/// A member's protocol metadata is kept as long as the member lives: a join carrying more
/// than the per-member maximum (1 MiB) is refused with INVALID_REQUEST, and one within it
/// joins (its bytes copied out of the request, which would otherwise stay alive whole).
#[test]
fn a_kafka_join_with_oversized_protocol_metadata_is_refused() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{GroupId, JoinGroupRequest, JoinGroupResponse};
    use kafka_protocol::protocol::Decodable;
    let b = Broker::start_with_env(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let mut s = TcpStream::connect(kafka_addr(&b)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let join = |metadata_bytes: usize, protocols: usize| {
        let mut p = JoinGroupRequestProtocol::default();
        p.name = StrBytes::from_static_str("range");
        p.metadata = bytes::Bytes::from(vec![7u8; metadata_bytes]);
        let mut r = JoinGroupRequest::default();
        r.group_id = GroupId(StrBytes::from_static_str("big-metadata"));
        r.session_timeout_ms = 10_000;
        r.rebalance_timeout_ms = 1_000;
        r.protocol_type = StrBytes::from_static_str("consumer");
        r.protocols = vec![p; protocols];
        r
    };
    s.write_all(&frame(ApiKey::JoinGroup, 5, 1, &join(2 << 20, 1))).unwrap();
    let mut body = response_body(&mut s, 1);
    let refused = JoinGroupResponse::decode(&mut body, 5).unwrap();
    assert_eq!(refused.error_code, 42, "INVALID_REQUEST for 2 MiB of metadata");
    // Many protocols of (nearly) nothing each: kept per member and compared with every
    // member's at each rebalance (before: a million were accepted).
    s.write_all(&frame(ApiKey::JoinGroup, 5, 3, &join(0, 100_000))).unwrap();
    let mut body = response_body(&mut s, 3);
    let refused = JoinGroupResponse::decode(&mut body, 5).unwrap();
    assert_eq!(refused.error_code, 42, "INVALID_REQUEST for 100,000 protocols");
    // A group id the native rule refuses (its offsets could never be committed; a long one
    // was kept as the group's key and in every member id).
    let mut long_id = join(100, 1);
    long_id.group_id = GroupId(StrBytes::from_string("g".repeat(1000)));
    s.write_all(&frame(ApiKey::JoinGroup, 5, 4, &long_id)).unwrap();
    let refused = JoinGroupResponse::decode(&mut response_body(&mut s, 4), 5).unwrap();
    assert_eq!(refused.error_code, 24, "INVALID_GROUP_ID for a 1,000-byte id");
    s.write_all(&frame(ApiKey::JoinGroup, 5, 2, &join(100, 1))).unwrap();
    let mut body = response_body(&mut s, 2);
    let joined = JoinGroupResponse::decode(&mut body, 5).unwrap();
    assert_eq!(joined.error_code, 0, "a small join is accepted");
    assert!(!joined.member_id.is_empty());
}

/// Kafka group members' data is bounded in bytes over the process (`kafka_group_bytes_max`),
/// not only per member (1 MiB of metadata, 1 MiB of assignment) and in count (100,000): a
/// client making members of 1 MiB each made the broker keep up to 200 GB. Past the bound a
/// join is refused (GROUP_MAX_SIZE_REACHED), as is a leader's assignment (INVALID_REQUEST);
/// a member leaving makes room again.
#[test]
fn kafka_group_members_are_bounded_in_bytes() {
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::{
        JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest,
        SyncGroupResponse,
    };
    use kafka_protocol::protocol::Decodable;
    let b = Broker::start_with_env(
        1,
        &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0"), ("BROKER_KAFKA_GROUP_BYTES_MAX", "3145728")],
    );
    let mut s = TcpStream::connect(kafka_addr(&b)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let groups = ["bytes-a", "bytes-b", "bytes-c", "bytes-d"];
    let join = |s: &mut TcpStream, group: &'static str, id: i32| {
        let mut request = range_join(group, 10_000, 1_000);
        request.protocols[0].metadata = bytes::Bytes::from(vec![7u8; 900 << 10]);
        s.write_all(&frame(ApiKey::JoinGroup, 5, id, &request)).unwrap();
        JoinGroupResponse::decode(&mut response_body(s, id), 5).unwrap()
    };
    let joined: Vec<JoinGroupResponse> =
        groups[..3].iter().zip(1..).map(|(g, id)| join(&mut s, g, id)).collect();
    assert!(joined.iter().all(|j| j.error_code == 0), "three members of 900 KiB fit 3 MiB");
    assert_eq!(join(&mut s, groups[3], 4).error_code, 81, "GROUP_MAX_SIZE_REACHED");
    // A leader's assignment counts too.
    let mut sync = SyncGroupRequest::default();
    sync.group_id = kafka_protocol::messages::GroupId(StrBytes::from_static_str("bytes-b"));
    sync.generation_id = joined[1].generation_id;
    sync.member_id = joined[1].member_id.clone();
    let mut a = SyncGroupRequestAssignment::default();
    a.member_id = joined[1].member_id.clone();
    a.assignment = bytes::Bytes::from(vec![1u8; 1 << 20]);
    sync.assignments = vec![a];
    s.write_all(&frame(ApiKey::SyncGroup, 3, 5, &sync)).unwrap();
    let synced = SyncGroupResponse::decode(&mut response_body(&mut s, 5), 3).unwrap();
    assert_eq!(synced.error_code, 27, "REBALANCE_IN_PROGRESS past the bound (retriable)");
    // One leaves: room for the fourth.
    let mut leave = LeaveGroupRequest::default();
    leave.group_id = kafka_protocol::messages::GroupId(StrBytes::from_static_str("bytes-a"));
    leave.member_id = joined[0].member_id.clone();
    s.write_all(&frame(ApiKey::LeaveGroup, 1, 6, &leave)).unwrap();
    assert_eq!(LeaveGroupResponse::decode(&mut response_body(&mut s, 6), 1).unwrap().error_code, 0);
    assert_eq!(join(&mut s, groups[3], 7).error_code, 0, "room again after a member left");
}

/// A long-poll fetch of partitions 0..`partitions` of `topic`, waiting `max_wait_ms`.
fn long_poll(topic: &'static str, partitions: i32, max_wait_ms: i32) -> FetchRequest {
    let mut poll = fetch_from_start(topic, 1 << 20);
    poll.min_bytes = 1;
    poll.max_wait_ms = max_wait_ms;
    let first = poll.topics[0].partitions[0].clone();
    for p in 1..partitions {
        let mut more = first.clone();
        more.partition = p;
        poll.topics[0].partitions.push(more);
    }
    poll
}

/// Client connections of every shard of `b`.
fn connections(b: &Broker, shards: u32) -> f64 {
    (0..shards).map(|s| b.metric("broker_connections", s).expect("metrics on")).sum()
}

/// A Kafka consumer's long-poll fetch is watched while it waits: a request sent behind it is
/// read whole and answered after it, in order, and a client that leaves ends it at once (the
/// connection went only at the fetch's deadline before, 20 s here), also after sending a
/// request behind it; a graceful stop ends it too — whether it waits on the connection's
/// shard or, with partitions on both shards, on their owners.
#[test]
fn a_kafka_long_poll_ends_when_its_client_leaves_and_keeps_what_follows() {
    for shards in [1u32, 2] {
        let b = Broker::start_with_env(
            shards as usize,
            &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0"), ("BROKER_METRICS_LISTEN", "127.0.0.1:0")],
        );
        let addr = kafka_addr(&b);
        let mut native = b.connect();
        let owners = create_topic(&mut native, "quiet", shards);
        // With 2 shards the long-poll waits on the owners (one partition is elsewhere).
        assert_eq!(owners.len(), shards as usize);
        if shards == 2 {
            assert_ne!(owners[0], owners[1], "one partition on each shard");
        }
        let before = connections(&b, shards);
        if shards == 1 {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let started = std::time::Instant::now();
            s.write_all(&frame(ApiKey::Fetch, 4, 1, &long_poll("quiet", 1, 1_500))).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            let versions = kafka_protocol::messages::ApiVersionsRequest::default();
            s.write_all(&frame(ApiKey::ApiVersions, 0, 2, &versions)).unwrap();
            response_body(&mut s, 1);
            assert!(started.elapsed() >= Duration::from_millis(1_400), "the long-poll waited");
            response_body(&mut s, 2);
        }
        let settled = std::time::Instant::now() + Duration::from_secs(10);
        while connections(&b, shards) > before {
            assert!(std::time::Instant::now() < settled, "the first connection stayed");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut leaving = TcpStream::connect(&addr).unwrap();
        let poll = long_poll("quiet", shards as i32, 20_000);
        leaving.write_all(&frame(ApiKey::Fetch, 4, 3, &poll)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while connections(&b, shards) <= before {
            assert!(std::time::Instant::now() < deadline, "the connection never counted");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        drop(leaving);
        gone_within_5s(&b, shards, before, "after the client left");

        // A client that sends a request behind its long-poll and then leaves: the watch reads
        // the request ahead and still sees it leave (before: it kept the first byte and
        // stopped watching, so the connection stayed to the fetch's deadline).
        let mut pipelined = counted(&b, shards, before, &addr, &poll, 4);
        std::thread::sleep(Duration::from_millis(300));
        let versions = kafka_protocol::messages::ApiVersionsRequest::default();
        pipelined.write_all(&frame(ApiKey::ApiVersions, 0, 5, &versions)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        drop(pipelined);
        gone_within_5s(&b, shards, before, "after a client that pipelined left");

        // A graceful stop during a long-poll answers it and closes within a second or so
        // (`api/long_poll.rs` checks the shard's stop every second).
        let mut polling = counted(&b, shards, before, &addr, &poll, 6);
        polling.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let stopping = std::time::Instant::now();
        let mut b = b;
        assert_eq!(b.stop(), Some(0));
        let took = stopping.elapsed();
        assert!(took < Duration::from_secs(5), "{shards} shard(s): the stop took {took:?}");
        response_body(&mut polling, 6);
    }
}

/// A connection that sent `poll` (correlation id `id`), once the broker counts it.
fn counted(
    b: &Broker,
    shards: u32,
    before: f64,
    addr: &str,
    poll: &FetchRequest,
    id: i32,
) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&frame(ApiKey::Fetch, 4, id, poll)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while connections(b, shards) <= before {
        assert!(std::time::Instant::now() < deadline, "the connection never counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    s
}

fn gone_within_5s(b: &Broker, shards: u32, before: f64, what: &str) {
    let left = std::time::Instant::now();
    while connections(b, shards) > before {
        let waited = left.elapsed();
        assert!(
            waited < Duration::from_secs(5),
            "{shards} shard(s): connection kept {waited:?} {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Kafka group with a live member keeps its committed offsets however long since its last
/// commit (Kafka: offsets of a non-empty group do not expire); before, only native members
/// counted, so a member that heartbeats and commits rarely lost its offsets to the sweep.
#[test]
fn a_kafka_group_with_members_keeps_its_offsets_past_the_retention() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{
        HeartbeatRequest, HeartbeatResponse, JoinGroupResponse, LeaveGroupRequest,
        LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
        OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse,
    };
    use kafka_protocol::protocol::Decodable;
    let env =
        [("BROKER_KAFKA_LISTEN", "127.0.0.1:0"), ("BROKER_GROUP_OFFSETS_RETENTION_MS", "1000")];
    let b = Broker::start_with_env(1, &env);
    create_topic(&mut b.connect(), "kept", 1);
    let mut s = TcpStream::connect(kafka_addr(&b)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let join = range_join("live", 10_000, 10_000);
    let group = join.group_id.clone();
    s.write_all(&frame(ApiKey::JoinGroup, 5, 1, &join)).unwrap();
    let joined = JoinGroupResponse::decode(&mut response_body(&mut s, 1), 5).unwrap();
    assert_eq!(joined.error_code, 0);
    let mut sync = SyncGroupRequest::default();
    sync.group_id = group.clone();
    sync.generation_id = joined.generation_id;
    sync.member_id = joined.member_id.clone();
    s.write_all(&frame(ApiKey::SyncGroup, 3, 2, &sync)).unwrap();
    let synced = SyncGroupResponse::decode(&mut response_body(&mut s, 2), 3).unwrap();
    assert_eq!(synced.error_code, 0);
    let mut commit = OffsetCommitRequest::default();
    commit.group_id = group.clone();
    commit.generation_id_or_member_epoch = joined.generation_id;
    commit.member_id = joined.member_id.clone();
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(StrBytes::from_static_str("kept"));
    let mut cp = OffsetCommitRequestPartition::default();
    cp.committed_offset = 5;
    t.partitions = vec![cp];
    commit.topics = vec![t];
    s.write_all(&frame(ApiKey::OffsetCommit, 7, 3, &commit)).unwrap();
    let committed = OffsetCommitResponse::decode(&mut response_body(&mut s, 3), 7).unwrap();
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    // A negative partition or offset is not stored, and not answered as stored (it was).
    let mut negative = commit.clone();
    let mut bad_partition = negative.topics[0].partitions[0].clone();
    bad_partition.partition_index = -1;
    let mut bad_offset = negative.topics[0].partitions[0].clone();
    bad_offset.committed_offset = -2;
    negative.topics[0].partitions = vec![bad_partition, bad_offset];
    s.write_all(&frame(ApiKey::OffsetCommit, 7, 5, &negative)).unwrap();
    let answer = OffsetCommitResponse::decode(&mut response_body(&mut s, 5), 7).unwrap();
    let codes: Vec<i16> = answer.topics[0].partitions.iter().map(|p| p.error_code).collect();
    assert_eq!(codes, [3, 28], "UNKNOWN_TOPIC_OR_PARTITION, INVALID_COMMIT_OFFSET_SIZE");
    // A commit outside the group's generation (an admin tool's) is refused while it has a
    // live member.
    let mut admin_commit = commit.clone();
    admin_commit.generation_id_or_member_epoch = -1;
    admin_commit.member_id = StrBytes::from_static_str("");
    admin_commit.topics[0].partitions[0].committed_offset = 9;
    s.write_all(&frame(ApiKey::OffsetCommit, 7, 4, &admin_commit)).unwrap();
    let refused = OffsetCommitResponse::decode(&mut response_body(&mut s, 4), 7).unwrap();
    assert_eq!(refused.topics[0].partitions[0].error_code, 25, "UNKNOWN_MEMBER_ID");
    // Only heartbeats for four retentions (sweeps run every quarter of one).
    for i in 0..16 {
        std::thread::sleep(Duration::from_millis(250));
        let mut hb = HeartbeatRequest::default();
        hb.group_id = group.clone();
        hb.generation_id = joined.generation_id;
        hb.member_id = joined.member_id.clone();
        s.write_all(&frame(ApiKey::Heartbeat, 3, 10 + i, &hb)).unwrap();
        let beat = HeartbeatResponse::decode(&mut response_body(&mut s, 10 + i), 3).unwrap();
        assert_eq!(beat.error_code, 0);
    }
    let mut fetch = OffsetFetchRequest::default();
    fetch.group_id = group;
    let mut ft = OffsetFetchRequestTopic::default();
    ft.name = TopicName(StrBytes::from_static_str("kept"));
    ft.partition_indexes = vec![0];
    fetch.topics = Some(vec![ft]);
    let fetched_offset = |s: &mut TcpStream, id: i32| {
        s.write_all(&frame(ApiKey::OffsetFetch, 5, id, &fetch)).unwrap();
        let fetched = OffsetFetchResponse::decode(&mut response_body(s, id), 5).unwrap();
        fetched.topics[0].partitions[0].committed_offset
    };
    assert_eq!(fetched_offset(&mut s, 99), 5, "the live group's offset expired");
    // Its retention counts from when its last member left, not from its last commit.
    let mut leave = LeaveGroupRequest::default();
    leave.group_id = fetch.group_id.clone();
    leave.member_id = joined.member_id.clone();
    s.write_all(&frame(ApiKey::LeaveGroup, 1, 100, &leave)).unwrap();
    let left = LeaveGroupResponse::decode(&mut response_body(&mut s, 100), 1).unwrap();
    assert_eq!(left.error_code, 0);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(fetched_offset(&mut s, 101), 5, "expired at once when the last member left");
    // Then it expires like any group's.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fetched_offset(&mut s, 102) != -1 {
        assert!(std::time::Instant::now() < deadline, "the empty group's offset never expired");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An array's element count comes from the wire: a request saying "2^31 - 1 topics" and
/// carrying none is refused (the connection closed, as for any request that does not decode)
/// before anything is reserved for them. Before (kafka-protocol 0.18 as released), the codec
/// reserved the whole count first: ~170 GB of address space from a 20-byte request, which
/// aborts the broker where the kernel does not overcommit (`vm.overcommit_memory=2`).
#[test]
fn a_kafka_array_count_larger_than_its_request_reserves_nothing() {
    let b = Broker::start_with_env(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let addr = kafka_addr(&b);
    let before = b.status_bytes("VmPeak");
    // Metadata v1: topics is an Array (Int32 count); v9 is flexible: a CompactArray
    // (unsigned varint count + 1).
    let bodies: [(i16, Vec<u8>); 2] =
        [(1, i32::MAX.to_be_bytes().to_vec()), (9, vec![0xff, 0xff, 0xff, 0xff, 0x07, 0x00])];
    for (version, body) in bodies {
        let mut header = RequestHeader::default();
        header.request_api_key = ApiKey::Metadata as i16;
        header.request_api_version = version;
        header.correlation_id = 7;
        let mut buf = BytesMut::new();
        header.encode(&mut buf, ApiKey::Metadata.request_header_version(version)).unwrap();
        buf.extend_from_slice(&body);
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&(buf.len() as i32).to_be_bytes()).unwrap();
        s.write_all(&buf).unwrap();
        let mut rest = Vec::new();
        let end = s.read_to_end(&mut rest);
        assert!(
            matches!(end, Ok(0)) || end.is_err(),
            "v{version}: the connection is closed without an answer: {end:?} {rest:?}"
        );
    }
    let after = b.status_bytes("VmPeak");
    assert!(after < before + (4 << 30), "peak virtual memory grew from {before} to {after} bytes");
    // Still serving.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let request = kafka_protocol::messages::MetadataRequest::default();
    s.write_all(&frame(ApiKey::Metadata, 1, 8, &request)).unwrap();
    let _ = response_body(&mut s, 8);
}

/// A request's arrays are counted at their size in memory as they decode: a 32 MiB Metadata
/// v9 request of 16 million null topic names (2 bytes each on the wire, ~72 in memory)
/// decoded to 1.2 GB before; now it is refused (past 16× its frame + 1 MiB, at most
/// 128 MiB) before the array is reserved, and a real request of 60,000 short names (8 bytes
/// each on the wire, 72 in memory) is still answered.
#[test]
fn a_kafka_request_decodes_within_a_multiple_of_its_size() {
    use kafka_protocol::messages::{
        metadata_request, MetadataRequest, MetadataResponse, TopicName,
    };
    use kafka_protocol::protocol::{Decodable, StrBytes};
    let b = Broker::start_with_env(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let addr = kafka_addr(&b);
    let entries: u32 = 16 << 20;
    let mut header = RequestHeader::default();
    header.request_api_key = ApiKey::Metadata as i16;
    header.request_api_version = 9;
    header.correlation_id = 7;
    let mut buf = BytesMut::new();
    header.encode(&mut buf, ApiKey::Metadata.request_header_version(9)).unwrap();
    // topics: a compact array (count + 1 as an unsigned varint) of {name: null, no tags}.
    let mut count = entries + 1;
    while count >= 0x80 {
        buf.extend_from_slice(&[(count as u8) | 0x80]);
        count >>= 7;
    }
    buf.extend_from_slice(&[count as u8]);
    buf.extend_from_slice(&[0u8, 0].repeat(entries as usize));
    buf.extend_from_slice(&[0, 0, 0]); // allow auto creation, authorized operations, no tags
    let before = b.status_bytes("VmHWM");
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(&(buf.len() as i32).to_be_bytes()).unwrap();
    s.write_all(&buf).unwrap();
    assert!(closed_without_answer(&mut s), "refused as a request that does not decode");
    let grown = b.status_bytes("VmHWM").saturating_sub(before);
    eprintln!("peak resident memory grew by {} MiB", grown >> 20);
    assert!(grown < 256 << 20, "peak resident memory grew by {} MiB", grown >> 20);
    // A real one: 60,000 short names (none exists), each answered.
    let mut request = MetadataRequest::default();
    request.topics = Some(
        (0..60_000)
            .map(|i| {
                let mut t = metadata_request::MetadataRequestTopic::default();
                t.name = Some(TopicName(StrBytes::from_string(format!("t{i:05}"))));
                t
            })
            .collect(),
    );
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(&frame(ApiKey::Metadata, 9, 8, &request)).unwrap();
    let mut body = response_body(&mut s, 8).slice(1..);
    let answer = MetadataResponse::decode(&mut body, 9).unwrap();
    assert_eq!(answer.topics.len(), 60_000);
}

/// A Kafka v2 batch of one record whose value is 15 MiB of zeros, zstd-compressed (a few
/// hundred bytes).
fn kafka_bomb() -> bytes::Bytes {
    kafka_batch_of(&[vec![0u8; 15 << 20]], kafka_protocol::records::Compression::Zstd)
}

/// One Kafka v2 batch of records (no key) with `values`, compressed with `compression`.
fn kafka_batch_of(
    values: &[Vec<u8>],
    compression: kafka_protocol::records::Compression,
) -> bytes::Bytes {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(bytes::Bytes::from(v.clone())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).unwrap();
    buf.freeze()
}

/// A Produce of `batches` for partition 0 of `topic`, acks=-1.
fn produce_request(topic: &'static str, batches: bytes::Bytes) -> ProduceRequest {
    let mut p = produce_request::PartitionProduceData::default();
    p.index = 0;
    p.records = Some(batches);
    let mut t = produce_request::TopicProduceData::default();
    t.name = TopicName(StrBytes::from_static_str(topic));
    t.partition_data.push(p);
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 30_000;
    req.topic_data.push(t);
    req
}

/// Compressed Kafka batches become uncompressed native ones: what they become is held from
/// the shard's budget as it grows, at most one native request's worth (64 MiB) per request.
/// 40 batches of a few hundred bytes that each decompress to 15 MiB are refused with
/// MESSAGE_TOO_LARGE; before, all 600 MiB were converted (and copied twice more) with
/// nothing held. Two of them (30 MiB) are stored.
#[test]
fn compressed_kafka_batches_convert_within_one_requests_room() {
    use kafka_protocol::messages::ProduceResponse;
    use kafka_protocol::protocol::Decodable;
    let b = Broker::start_with_env(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let mut native = b.connect();
    create_topic(&mut native, "bombs", 1);
    let bomb = kafka_bomb();
    assert!(bomb.len() < 64 << 10, "compressed to {} bytes", bomb.len());
    let mut s = TcpStream::connect(kafka_addr(&b)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let before = b.status_bytes("VmHWM");
    let many: Vec<u8> = (0..40).flat_map(|_| bomb.iter().copied()).collect();
    s.write_all(&frame(ApiKey::Produce, 7, 1, &produce_request("bombs", many.into()))).unwrap();
    let mut body = response_body(&mut s, 1);
    let refused = ProduceResponse::decode(&mut body, 7).unwrap();
    let p = &refused.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 10, "MESSAGE_TOO_LARGE: {:?}", p.error_message);
    let grown = b.status_bytes("VmHWM").saturating_sub(before);
    eprintln!("peak resident memory grew by {} MiB", grown >> 20);
    assert!(grown < 400 << 20, "peak resident memory grew by {} MiB", grown >> 20);
    let two: Vec<u8> = (0..2).flat_map(|_| bomb.iter().copied()).collect();
    s.write_all(&frame(ApiKey::Produce, 7, 2, &produce_request("bombs", two.into()))).unwrap();
    let mut body = response_body(&mut s, 2);
    let stored = ProduceResponse::decode(&mut body, 7).unwrap();
    let p = &stored.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0), "{:?}", p.error_message);
    // Room for the conversion is taken, never waited for while the request holds its frame:
    // with a shard budget of 64 MiB, a 27 MiB request (its frame held) asking for 2 × 27
    // MiB more waited for room for ever, and every frame read on the shard behind it.
    let small = Broker::start_with_env(
        1,
        &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0"), ("BROKER_MEMORY_BYTES_PER_SHARD", "67108864")],
    );
    create_topic(&mut small.connect(), "big", 1);
    let mut s2 = TcpStream::connect(kafka_addr(&small)).unwrap();
    s2.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let values: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 9 << 20]).collect();
    let big = kafka_batch_of(&values, kafka_protocol::records::Compression::None);
    let mut request = produce_request("big", big);
    request.topic_data[0].partition_data[0].index = 0;
    s2.write_all(&frame(ApiKey::Produce, 7, 1, &request)).unwrap();
    let mut body = response_body(&mut s2, 1);
    let stored = ProduceResponse::decode(&mut body, 7).unwrap();
    let p = &stored.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0), "{:?}", p.error_message);
}

/// Stored compressed batches are written to Kafka consumers uncompressed: a fetch opens
/// them one at a time and stops once its answer passes the fetch's `max_bytes` (after at
/// least one batch). Before, the whole read was decompressed at once and converted: 48
/// stored batches of a few KiB that open to 15 MiB each made one 1 MiB fetch answer 755 MB
/// (peak resident memory +2.1 GB).
#[test]
fn a_kafka_fetch_of_compressed_batches_converts_within_its_max_bytes() {
    let b = Broker::start_with_env(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let mut native = b.connect();
    create_topic(&mut native, "bombs", 1);
    let one = integration_tests::zeros_batch_compressed(15 << 20);
    let request: Vec<u8> = (0..48).flat_map(|_| one.iter().copied()).collect();
    assert_eq!(produce(&mut native, "bombs", 0, &request, wire::AckLevel::Durable).error, 0);
    let mut s = TcpStream::connect(kafka_addr(&b)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let before = b.status_bytes("VmHWM");
    s.write_all(&frame(ApiKey::Fetch, 4, 1, &fetch_from_start("bombs", 1 << 20))).unwrap();
    let body = response_body(&mut s, 1);
    let grown = b.status_bytes("VmHWM").saturating_sub(before);
    eprintln!("peak resident memory grew by {} MiB; answer {} bytes", grown >> 20, body.len());
    assert!(body.len() > 15 << 20, "one whole batch");
    assert!(body.len() < 2 * (15 << 20), "one batch, not 48");
    assert!(grown < 200 << 20, "peak resident memory grew by {} MiB", grown >> 20);
    // A `max_bytes` past `fetch_response_bytes_max` (64 MiB) converts within what was
    // reserved, not within what was asked (before: all 48, 720 MiB).
    s.write_all(&frame(ApiKey::Fetch, 4, 2, &fetch_from_start("bombs", i32::MAX))).unwrap();
    let body = response_body(&mut s, 2);
    assert!(body.len() < (64 << 20) + (16 << 20), "answer of {} bytes", body.len());
}

/// Whether the broker closed `s` without answering.
fn closed_without_answer(s: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    matches!(s.read_to_end(&mut rest), Ok(0)) || rest.is_empty()
}

/// A request's repeated entries are answered once (a Metadata naming one topic 2,000 times
/// made 2,000 copies of its partitions' answer; so did repeated DescribeGroups ids and
/// OffsetFetch partitions), and one naming a topic longer than any name can be or more
/// partition entries than the broker may have partitions is refused whole, as a request
/// that does not decode: the handlers copied the name once per partition entry (a 64 MiB
/// request of one long name and millions of entries, gigabytes).
#[test]
fn repeated_kafka_entries_are_answered_once_and_oversized_ones_refused() {
    use kafka_protocol::messages::{
        metadata_request, offset_fetch_request, DescribeGroupsRequest, DescribeGroupsResponse,
        GroupId, MetadataRequest, MetadataResponse, OffsetFetchRequest, OffsetFetchResponse,
    };
    use kafka_protocol::protocol::Decodable;
    let b = Broker::start_with_env(
        1,
        &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0"), ("BROKER_PARTITIONS_MAX", "1000")],
    );
    let addr = kafka_addr(&b);
    create_topic(&mut b.connect(), "wide", 8);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut md = MetadataRequest::default();
    let mut topic = metadata_request::MetadataRequestTopic::default();
    topic.name = Some(TopicName(StrBytes::from_static_str("wide")));
    md.topics = Some(vec![topic; 2_000]);
    s.write_all(&frame(ApiKey::Metadata, 1, 1, &md)).unwrap();
    let answer = MetadataResponse::decode(&mut response_body(&mut s, 1), 1).unwrap();
    assert_eq!(answer.topics.len(), 1, "the topic once");
    assert_eq!(answer.topics[0].partitions.len(), 8);
    let mut dg = DescribeGroupsRequest::default();
    dg.groups = vec![GroupId(StrBytes::from_static_str("g")); 500];
    s.write_all(&frame(ApiKey::DescribeGroups, 0, 2, &dg)).unwrap();
    let answer = DescribeGroupsResponse::decode(&mut response_body(&mut s, 2), 0).unwrap();
    assert_eq!(answer.groups.len(), 1, "the group once");
    let mut of = OffsetFetchRequest::default();
    of.group_id = GroupId(StrBytes::from_static_str("g"));
    let mut t = offset_fetch_request::OffsetFetchRequestTopic::default();
    t.name = TopicName(StrBytes::from_static_str("wide"));
    t.partition_indexes = vec![3; 500];
    of.topics = Some(vec![t.clone(), t]);
    s.write_all(&frame(ApiKey::OffsetFetch, 1, 3, &of)).unwrap();
    let answer = OffsetFetchResponse::decode(&mut response_body(&mut s, 3), 1).unwrap();
    assert_eq!(answer.topics.len(), 1, "the topic once");
    assert_eq!(answer.topics[0].partitions.len(), 1, "the partition once");
    // A topic name of 32 KiB (flexible Produce v9: compact strings).
    let long: &'static str = Box::leak("x".repeat(32 << 10).into_boxed_str());
    let mut long_name = TcpStream::connect(&addr).unwrap();
    long_name.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = produce_request(long, bytes::Bytes::new());
    long_name.write_all(&frame(ApiKey::Produce, 9, 4, &req)).unwrap();
    assert!(closed_without_answer(&mut long_name), "a 32 KiB topic name is refused");
    // 2,000 partition entries with BROKER_PARTITIONS_MAX 1,000.
    let mut many = TcpStream::connect(&addr).unwrap();
    many.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = produce_request("wide", bytes::Bytes::new());
    let entry = req.topic_data[0].partition_data[0].clone();
    req.topic_data[0].partition_data = vec![entry; 2_000];
    many.write_all(&frame(ApiKey::Produce, 9, 5, &req)).unwrap();
    assert!(closed_without_answer(&mut many), "2,000 partition entries are refused");
    // Still serving.
    s.write_all(&frame(ApiKey::Metadata, 1, 6, &md)).unwrap();
    let _ = response_body(&mut s, 6);
}

/// ListOffsets by timestamp answers as Kafka: the first record at or after it, and offset -1
/// (timestamp -1) when there is none; before, the partition's end offset with timestamp -1,
/// which Java's `offsetsForTimes` refuses (a negative timestamp). MAX_TIMESTAMP (v7) has no
/// native equivalent, so v7 is not advertised (it was read as a timestamp).
#[test]
fn kafka_list_offsets_by_timestamp_answers_minus_one_past_the_last_record() {
    use kafka_protocol::messages::{
        list_offsets_request, ApiVersionsRequest, ApiVersionsResponse, ListOffsetsRequest,
        ListOffsetsResponse,
    };
    use kafka_protocol::protocol::Decodable;
    let b = Broker::start_with_env(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let mut native = b.connect();
    create_topic(&mut native, "times", 1);
    let mut builder = wire::BatchBuilder::new(1 << 20);
    builder.append(1_700_000_000_000, None, Some(b"v"), &[]).unwrap();
    let batch = builder.finish().unwrap();
    assert_eq!(produce(&mut native, "times", 0, &batch, wire::AckLevel::Durable).error, 0);
    let mut s = TcpStream::connect(kafka_addr(&b)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let at = |s: &mut TcpStream, id: i32, timestamp: i64| {
        let mut p = list_offsets_request::ListOffsetsPartition::default();
        p.timestamp = timestamp;
        let mut t = list_offsets_request::ListOffsetsTopic::default();
        t.name = TopicName(StrBytes::from_static_str("times"));
        t.partitions = vec![p];
        let mut req = ListOffsetsRequest::default();
        req.replica_id = kafka_protocol::messages::BrokerId(-1);
        req.topics = vec![t];
        s.write_all(&frame(ApiKey::ListOffsets, 6, id, &req)).unwrap();
        // v6 is flexible: the response header ends with its (empty) tagged fields.
        let mut body = response_body(s, id).slice(1..);
        let answer = ListOffsetsResponse::decode(&mut body, 6).unwrap();
        let p = &answer.topics[0].partitions[0];
        (p.error_code, p.offset, p.timestamp)
    };
    assert_eq!(at(&mut s, 1, 1_600_000_000_000), (0, 0, 1_700_000_000_000));
    assert_eq!(at(&mut s, 2, 1_800_000_000_000), (0, -1, -1), "no record at or after");
    s.write_all(&frame(ApiKey::ApiVersions, 0, 3, &ApiVersionsRequest::default())).unwrap();
    let versions = ApiVersionsResponse::decode(&mut response_body(&mut s, 3), 0).unwrap();
    let list = versions.api_keys.iter().find(|k| k.api_key == ApiKey::ListOffsets as i16);
    assert_eq!(list.map(|k| k.max_version), Some(6));
}

/// A consumer's JoinGroup of `group` speaking the range assignor.
fn range_join(
    group: &'static str,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
) -> kafka_protocol::messages::JoinGroupRequest {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    let mut join = kafka_protocol::messages::JoinGroupRequest::default();
    join.group_id = kafka_protocol::messages::GroupId(StrBytes::from_static_str(group));
    join.session_timeout_ms = session_timeout_ms;
    join.rebalance_timeout_ms = rebalance_timeout_ms;
    join.protocol_type = StrBytes::from_static_str("consumer");
    let mut p = JoinGroupRequestProtocol::default();
    p.name = StrBytes::from_static_str("range");
    join.protocols = vec![p];
    join
}

/// A follower's SyncGroup waits for the leader's assignment at most the group's rebalance
/// timeout (Kafka's pending sync): a leader that heartbeats and never syncs held its
/// followers' SyncGroup for ever; now they are told to rejoin (REBALANCE_IN_PROGRESS).
#[test]
fn a_kafka_leader_that_never_syncs_holds_its_followers_one_rebalance_timeout() {
    use kafka_protocol::messages::{
        HeartbeatRequest, JoinGroupResponse, SyncGroupRequest, SyncGroupResponse,
    };
    use kafka_protocol::protocol::Decodable;
    let b = Broker::start_with_env(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let addr = kafka_addr(&b);
    let join = range_join("pending-sync", 30_000, 1_000);
    let group = join.group_id.clone();
    let mut conns: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    for c in &mut conns {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        c.write_all(&frame(ApiKey::JoinGroup, 5, 1, &join)).unwrap();
    }
    let joined: Vec<JoinGroupResponse> = conns
        .iter_mut()
        .map(|c| JoinGroupResponse::decode(&mut response_body(c, 1), 5).unwrap())
        .collect();
    assert!(joined.iter().all(|j| j.error_code == 0 && j.generation_id == joined[0].generation_id));
    let leader = joined.iter().position(|j| j.leader == j.member_id).expect("a leader");
    let follower = 1 - leader;
    let mut sync = SyncGroupRequest::default();
    sync.group_id = group.clone();
    sync.generation_id = joined[follower].generation_id;
    sync.member_id = joined[follower].member_id.clone();
    conns[follower].write_all(&frame(ApiKey::SyncGroup, 3, 2, &sync)).unwrap();
    conns[follower].set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let started = std::time::Instant::now();
    let mut size = [0u8; 4];
    for i in 0.. {
        match conns[follower].read(&mut size[..1]) {
            Ok(1) => break,
            Ok(_) => panic!("the follower's connection closed"),
            Err(_) => {
                assert!(started.elapsed() < Duration::from_secs(20), "the follower still waits");
                // The leader stays alive and never syncs.
                let mut hb = HeartbeatRequest::default();
                hb.group_id = group.clone();
                hb.generation_id = joined[leader].generation_id;
                hb.member_id = joined[leader].member_id.clone();
                conns[leader].write_all(&frame(ApiKey::Heartbeat, 3, 10 + i, &hb)).unwrap();
                let _ = response_body(&mut conns[leader], 10 + i);
            }
        }
    }
    conns[follower].set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    conns[follower].read_exact(&mut size[1..]).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    conns[follower].read_exact(&mut body).unwrap();
    let answer = SyncGroupResponse::decode(&mut bytes::Bytes::from(body).slice(4..), 3).unwrap();
    assert_eq!(answer.error_code, 27, "REBALANCE_IN_PROGRESS");
    eprintln!("answered after {:?}", started.elapsed());
}

/// A member made by a JoinGroup whose client left before the answer goes with it (Kafka's
/// KIP-394 problem): it took part in the next rebalance as joined, the leader assigned it
/// partitions, and nobody read them until its session ended.
#[test]
fn a_kafka_member_whose_client_left_before_its_join_was_answered_goes() {
    use kafka_protocol::messages::{JoinGroupResponse, SyncGroupRequest};
    use kafka_protocol::protocol::Decodable;
    let b = Broker::start_with_env(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let addr = kafka_addr(&b);
    let mut a = TcpStream::connect(&addr).unwrap();
    a.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    a.write_all(&frame(ApiKey::JoinGroup, 5, 1, &range_join("orphans", 30_000, 5_000))).unwrap();
    let first = JoinGroupResponse::decode(&mut response_body(&mut a, 1), 5).unwrap();
    assert_eq!((first.error_code, first.members.len()), (0, 1));
    let mut sync = SyncGroupRequest::default();
    sync.group_id = kafka_protocol::messages::GroupId(StrBytes::from_static_str("orphans"));
    sync.generation_id = first.generation_id;
    sync.member_id = first.member_id.clone();
    a.write_all(&frame(ApiKey::SyncGroup, 3, 2, &sync)).unwrap();
    let _ = response_body(&mut a, 2);
    // A newcomer's join starts a rebalance; its client goes before the answer.
    {
        let mut gone = TcpStream::connect(&addr).unwrap();
        gone.write_all(&frame(ApiKey::JoinGroup, 5, 1, &range_join("orphans", 30_000, 5_000)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut rejoin = range_join("orphans", 30_000, 5_000);
    rejoin.member_id = first.member_id.clone();
    a.write_all(&frame(ApiKey::JoinGroup, 5, 3, &rejoin)).unwrap();
    let second = JoinGroupResponse::decode(&mut response_body(&mut a, 3), 5).unwrap();
    assert_eq!(second.error_code, 0);
    let members: Vec<&str> = second.members.iter().map(|m| m.member_id.as_str()).collect();
    assert_eq!(members, [first.member_id.as_str()], "only the member whose client stayed");
}

/// A produce with acks=0 is never answered; one that fails closes the connection, as Kafka
/// does (the client learns of the failure only so, and refreshes its metadata): before, the
/// error was dropped and the producer went on sending into nothing. The answers to the
/// requests before it are still written. One that succeeds leaves the connection open.
#[test]
fn a_failed_acks_0_produce_closes_the_kafka_connection() {
    use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
    use kafka_protocol::protocol::Decodable;
    let b = Broker::start_with_env(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    create_topic(&mut b.connect(), "fire-and-forget", 1);
    let mut s = TcpStream::connect(kafka_addr(&b)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let batch = kafka_batch_of(&[vec![1u8; 100]], kafka_protocol::records::Compression::None);
    let mut stored = produce_request("fire-and-forget", batch.clone());
    stored.acks = 0;
    let mut failing = produce_request("no-such-topic", batch);
    failing.acks = 0;
    s.write_all(&frame(ApiKey::Produce, 3, 1, &stored)).unwrap();
    s.write_all(&frame(ApiKey::ApiVersions, 0, 2, &ApiVersionsRequest::default())).unwrap();
    let versions = ApiVersionsResponse::decode(&mut response_body(&mut s, 2), 0).unwrap();
    assert_eq!(versions.error_code, 0, "a stored acks=0 produce leaves the connection open");
    s.write_all(&frame(ApiKey::ApiVersions, 0, 3, &ApiVersionsRequest::default())).unwrap();
    s.write_all(&frame(ApiKey::Produce, 3, 4, &failing)).unwrap();
    let versions = ApiVersionsResponse::decode(&mut response_body(&mut s, 3), 0).unwrap();
    assert_eq!(versions.error_code, 0, "the answer before the failed produce is written");
    // Closed: the read ends (a timeout is not a close).
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rest = [0u8; 64];
    let read = s.read(&mut rest);
    assert!(
        matches!(read, Ok(0))
            || read.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the failed acks=0 produce closed the connection: {read:?}"
    );
}

/// What a Kafka request decodes to is held from the shard's memory budget with its frame,
/// for as long as its first stage runs: a fetch v12 whose `forgotten_topics_data` names
/// 20,000 empty topics (3 bytes each on the wire, ~96 in memory) decodes to ~1.9 MiB from a
/// 60 KB frame, then waits in its long-poll holding it. Before, only the frame was counted:
/// 150 such fetches held ~280 MiB past a 32 MiB budget; now frames are not read past it
/// (each is held with room for what it may decode to before it is allocated).
#[test]
fn what_a_kafka_request_decodes_to_is_held() {
    use kafka_protocol::messages::fetch_request::ForgottenTopic;
    let budget_bytes: u64 = 32 << 20;
    let budget = budget_bytes.to_string();
    let b = Broker::start_with_env(
        1,
        &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0"), ("BROKER_MEMORY_BYTES_PER_SHARD", &budget)],
    );
    let addr = kafka_addr(&b);
    create_topic(&mut b.connect(), "quiet", 1);
    let mut fetch = fetch_from_start("quiet", 1024);
    fetch.max_wait_ms = 30_000;
    fetch.min_bytes = 1;
    fetch.forgotten_topics_data = (0..20_000).map(|_| ForgottenTopic::default()).collect();
    let one = frame(ApiKey::Fetch, 12, 1, &fetch);
    assert!(one.len() < 64 << 10, "a frame of {} bytes", one.len());
    let before = b.rss_bytes();
    let polls: Vec<TcpStream> = (0..150)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(&one).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let grown = b.rss_bytes().saturating_sub(before);
    let held = b.metric("broker_memory_held_bytes", 0).expect("metrics on") as u64;
    eprintln!(
        "150 waiting fetches: RSS +{} MiB, {} MiB held of a {} MiB budget",
        grown >> 20,
        held >> 20,
        budget_bytes >> 20
    );
    // Those read hold what they decoded to (~1.9 MiB each, not their 60 KB), so no more are
    // read once the budget is full.
    assert!(held >= budget_bytes / 2, "only {} MiB held: decoded requests uncounted", held >> 20);
    assert!(grown < 3 * budget_bytes, "RSS grew {} MiB on a 32 MiB budget", grown >> 20);
    // Their clients leave: what they held goes back, and the listener answers again.
    drop(polls);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while b.metric("broker_memory_held_bytes", 0).expect("metrics on") as u64 > 1 << 20 {
        assert!(std::time::Instant::now() < deadline, "the fetches' memory was not given back");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = kafka_protocol::messages::MetadataRequest::default();
    s.write_all(&frame(ApiKey::Metadata, 1, 8, &request)).unwrap();
    let _ = response_body(&mut s, 8);
}

/// A request decodes within the room its shard's budget has free and waits only when it
/// needs more: an 8 MiB produce on a 32 MiB budget is stored while a consumer long-polls
/// (holding a little of the budget). The first version of the decode room held 16× every
/// frame + 1 MiB before reading it (137 MiB here), so the produce waited for an empty
/// budget: until the long-poll ended, and a longer one closed it as a slow frame.
#[test]
fn a_large_kafka_produce_is_not_held_up_by_its_decode_room() {
    use kafka_protocol::messages::ProduceResponse;
    use kafka_protocol::protocol::Decodable;
    let budget = (32u64 << 20).to_string();
    let b = Broker::start_with_env(
        1,
        &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0"), ("BROKER_MEMORY_BYTES_PER_SHARD", &budget)],
    );
    let addr = kafka_addr(&b);
    let mut native = b.connect();
    create_topic(&mut native, "quiet", 1);
    create_topic(&mut native, "large", 1);
    let mut poll = fetch_from_start("quiet", 1024);
    poll.max_wait_ms = 30_000;
    poll.min_bytes = 1;
    let mut polling = TcpStream::connect(&addr).unwrap();
    polling.write_all(&frame(ApiKey::Fetch, 12, 1, &poll)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let batches = kafka_batch_of(&[vec![5u8; 8 << 20]], kafka_protocol::records::Compression::None);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&frame(ApiKey::Produce, 7, 2, &produce_request("large", batches))).unwrap();
    let mut body = response_body(&mut s, 2);
    let answer = ProduceResponse::decode(&mut body, 7).unwrap();
    let p = &answer.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0), "{answer:?}");
    // The long-poll still waits: the produce did not wait for it to end.
    polling.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let waiting =
        matches!(polling.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    assert!(waiting, "the long-poll answered first: the produce waited for it");
}

/// A fetch whose `max_bytes` is more than the shard's whole budget (Kafka consumers ask for
/// 50 MiB by default) is served on a quiet broker: its room is waited for beside what the
/// request itself holds (its frame and what it decoded to). Before, the request's own hold
/// kept the budget from ever looking empty, and the fetch waited for ever.
#[test]
fn a_fetch_larger_than_the_budget_does_not_wait_for_its_own_request() {
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::protocol::Decodable;
    let budget = (32u64 << 20).to_string();
    let b = Broker::start_with_env(
        1,
        &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0"), ("BROKER_MEMORY_BYTES_PER_SHARD", &budget)],
    );
    let addr = kafka_addr(&b);
    let mut native = b.connect();
    create_topic(&mut native, "small", 1);
    let mut batch = wire::BatchBuilder::new(1 << 16);
    batch.append(0, None, Some(b"one"), &[]).unwrap();
    let r = produce(&mut native, "small", 0, &batch.finish().unwrap(), wire::AckLevel::Durable);
    assert_eq!(r.error, 0);
    let mut fetch = fetch_from_start("small", 50 << 20);
    fetch.max_wait_ms = 0;
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let asked = std::time::Instant::now();
    s.write_all(&frame(ApiKey::Fetch, 12, 3, &fetch)).unwrap();
    let mut body = response_body(&mut s, 3).slice(1..);
    eprintln!("answered in {:?}", asked.elapsed());
    let answer = FetchResponse::decode(&mut body, 12).unwrap();
    let p = &answer.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "{answer:?}");
    assert!(p.records.as_ref().is_some_and(|r| !r.is_empty()), "{answer:?}");
}

/// Fetches that waited `frame_read_timeout_ms` for room take only what fits then (the first
/// batch, whose room they wait for as a new holder), not their whole reservation: before,
/// each took up to half the shard's budget past it, so connections that do not read could
/// hold the budget many times over (here 2 greedy connections fill a 32 MiB budget and 8
/// more each asked for 16 MiB: ~160 MiB held before, the budget and a batch or so now).
#[test]
fn kafka_fetches_that_waited_for_room_take_only_what_fits() {
    const BUDGET: u64 = 32 << 20;
    let b = Broker::start_with_env(
        1,
        &[
            ("BROKER_KAFKA_LISTEN", "127.0.0.1:0"),
            ("BROKER_MEMORY_BYTES_PER_SHARD", &BUDGET.to_string()),
            ("BROKER_CONNECTION_SEND_QUEUE_BYTES_MAX", "16777216"),
            ("BROKER_FRAME_READ_TIMEOUT_MS", "500"),
        ],
    );
    let addr = kafka_addr(&b);
    let mut native = b.connect();
    create_topic(&mut native, "room", 1);
    // 8 MiB in 1 MiB batches: every fetch from offset 0 answers with 8 MiB.
    for _ in 0..8 {
        let mut builder = wire::BatchBuilder::new(2 << 20);
        for _ in 0..1000 {
            builder.append(0, None, Some(&[5u8; 1000]), &[]).unwrap();
        }
        let batch = builder.finish().unwrap();
        assert_eq!(produce(&mut native, "room", 0, &batch, wire::AckLevel::Durable).error, 0);
    }
    let fetch = fetch_from_start("room", 16 << 20);
    let mut greedy = Vec::new();
    for c in 0..10 {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        // The first two connections pipeline 4 fetches each, the others one.
        for i in 0..if c < 2 { 4 } else { 1 } {
            let _ = s.write_all(&frame(ApiKey::Fetch, 4, i, &fetch));
        }
        greedy.push(s);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Well past the 500 ms wait of every fetch.
    std::thread::sleep(Duration::from_secs(3));
    let held = b.metric("broker_memory_held_bytes", 0).expect("metrics on") as u64;
    eprintln!("{} MiB held of a {} MiB budget", held >> 20, BUDGET >> 20);
    assert!(held <= BUDGET + (4 << 20), "{} MiB held of a 32 MiB budget", held >> 20);
    // The connections read: each gets its answers, in order, with a batch at least.
    for (c, s) in greedy.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        for i in 0..if c < 2 { 4 } else { 1 } {
            let body = response_body(s, i);
            assert!(body.len() > 1_000_000, "connection {c} fetch {i}: {} bytes", body.len());
        }
    }
}
