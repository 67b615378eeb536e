//! The Kafka listener (issue 22) with real Kafka clients: confluent-kafka (librdkafka),
//! kafka-python and kcat against the real broker binary, plus raw-socket checks of the
//! framing and of unsupported apis.
//!
//! The clients are installed by CI (`.ci/run`: `pip install confluent-kafka kafka-python`,
//! `apt-get install kcat`). A test whose tool is missing fails and says how to install it;
//! it never passes silently.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use integration_tests::{create_topic, fetch_all, produce, Broker};

/// A broker with the Kafka listener on an ephemeral port, and that port's address.
fn kafka_broker(shards: usize) -> (Broker, String) {
    let b = Broker::start_with_env(shards, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let ready = std::fs::read_to_string(b.data_dir.with_extension("ready")).expect("ready file");
    let v: serde_json::Value = serde_json::from_str(&ready).expect("ready json");
    let kafka = v["kafka"].as_str().expect("the ready file names the kafka listener").to_owned();
    (b, kafka)
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kafka").join(name)
}

/// Fails loudly when a client the test needs is not installed.
fn require(what: &str, cmd: &str, args: &[&str], install: &str) {
    let ok = Command::new(cmd).args(args).output().is_ok_and(|o| o.status.success());
    assert!(ok, "{what} is not installed (needed by this test): {install}");
}

fn require_python_clients() {
    require(
        "confluent-kafka and kafka-python",
        "python3",
        &["-c", "import confluent_kafka, kafka"],
        "python3 -m pip install --break-system-packages confluent-kafka kafka-python",
    );
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run client");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn group_roundtrip(client: &str) {
    require_python_clients();
    let (b, kafka) = kafka_broker(2);
    let out = run(Command::new("python3").arg(script("group_roundtrip.py")).args([
        client,
        &kafka,
        &format!("roundtrip-{client}"),
        "100000",
    ]));
    eprintln!("{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("summary json");
    assert_eq!(v["missing"], 0, "{out}");
    assert_eq!(v["duplicates"], 0, "{out}");
    assert_eq!(v["phase1"].as_u64().unwrap() + v["phase2"].as_u64().unwrap(), 100_000, "{out}");
    assert!(!b.log_text().contains("panicked"), "{}", b.log_text());
}

#[test]
fn confluent_kafka_100k_keyed_idempotent_group_of_two_resumes_without_loss_or_repeats() {
    group_roundtrip("confluent");
}

#[test]
fn kafka_python_100k_keyed_idempotent_group_of_two_resumes_without_loss_or_repeats() {
    group_roundtrip("kafka-python");
}

#[test]
fn kcat_produces_and_consumes() {
    require("kcat", "kcat", &["-V"], "apt-get install kcat");
    let (b, kafka) = kafka_broker(2);
    create_topic(&mut b.connect(), "kcat", 2);
    let input = "k1:one\nk2:two\nk3:three\n";
    let mut producer = Command::new("kcat")
        .args(["-b", &kafka, "-t", "kcat", "-p", "1", "-P", "-K:", "-H", "trace=abc"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("kcat");
    producer.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    assert!(producer.wait().expect("kcat producer").success());
    let out = run(Command::new("kcat").args([
        "-b",
        &kafka,
        "-t",
        "kcat",
        "-p",
        "1",
        "-C",
        "-o",
        "beginning",
        "-e",
        "-f",
        "%k|%s|%h|%o\n",
    ]));
    assert_eq!(out, "k1|one|trace=abc|0\nk2|two|trace=abc|1\nk3|three|trace=abc|2\n");
    let meta = run(Command::new("kcat").args(["-b", &kafka, "-L", "-t", "kcat"]));
    assert!(meta.contains("topic \"kcat\" with 2 partitions"), "{meta}");
}

const KEY: &[u8] = b"\x00\x01native-key\xff";
const VALUE: &[u8] = b"value \x00\xfe bytes";
const TIMESTAMP_MS: i64 = 1_700_000_000_123;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn native_record_reads_byte_for_byte_through_a_kafka_client() {
    require_python_clients();
    let (b, kafka) = kafka_broker(2);
    let mut conn = b.connect();
    create_topic(&mut conn, "bfb-native", 2);
    let mut builder = wire::BatchBuilder::new(1 << 20);
    builder.append(TIMESTAMP_MS - 1, Some(b"first"), Some(b"x"), &[]).unwrap();
    builder
        .append(TIMESTAMP_MS, Some(KEY), Some(VALUE), &[("h1", b"\x00\xff"), ("h2", b"")])
        .unwrap();
    let batch = builder.finish().unwrap();
    let r = produce(&mut conn, "bfb-native", 1, &batch, wire::AckLevel::Durable);
    assert_eq!(r.error, 0);
    let out = run(Command::new("python3").arg(script("byte_for_byte.py")).args([
        "read",
        &kafka,
        "bfb-native",
        "1",
        &(r.base_offset + 1).to_string(),
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["key"], hex(KEY), "{out}");
    assert_eq!(v["value"], hex(VALUE), "{out}");
    assert_eq!(v["timestamp"], TIMESTAMP_MS, "{out}");
    assert_eq!(v["headers"], serde_json::json!([["h1", hex(b"\x00\xff")], ["h2", ""]]), "{out}");
}

#[test]
fn kafka_client_record_reads_byte_for_byte_through_the_native_protocol() {
    require_python_clients();
    let (b, kafka) = kafka_broker(2);
    let mut conn = b.connect();
    create_topic(&mut conn, "bfb-kafka", 2);
    let out = run(Command::new("python3").arg(script("byte_for_byte.py")).args([
        "write",
        &kafka,
        "bfb-kafka",
        "0",
        &hex(KEY),
        &hex(VALUE),
        &TIMESTAMP_MS.to_string(),
        &format!("h1={}", hex(b"\x00\xff")),
        "h2=",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let offset = v["offset"].as_u64().expect("offset");
    let batches = fetch_all(&mut conn, "bfb-kafka", 0, offset + 1);
    let bytes = wire::to_aligned(&batches.concat());
    let record = wire::Batches::new(&bytes)
        .flat_map(|b| b.expect("valid").records().collect::<Vec<_>>())
        .find(|r| r.offset() == offset)
        .expect("the record");
    assert_eq!(record.key(), Some(KEY));
    assert_eq!(record.value(), Some(VALUE));
    assert_eq!(record.timestamp_ms(), TIMESTAMP_MS);
    let headers: Vec<(String, Vec<u8>)> =
        record.headers().map(|h| (h.key().to_owned(), h.value().to_vec())).collect();
    assert_eq!(headers, vec![("h1".into(), b"\x00\xff".to_vec()), ("h2".into(), Vec::new())]);
}

/// A raw Kafka request frame: size, api key, version, correlation id, client id (header v1).
fn raw_request(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    frame.extend_from_slice(body);
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&frame);
    out
}

fn read_response(s: &mut TcpStream) -> Vec<u8> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size).expect("response size");
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).expect("response body");
    body
}

#[test]
fn unsupported_apis_get_unsupported_version_and_the_connection_stays() {
    let (_b, kafka) = kafka_broker(1);
    let mut s = TcpStream::connect(&kafka).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // DescribeAcls (29) is not spoken; nor is Produce v2 (before record batch v2).
    for (api, version, corr) in [(29i16, 0i16, 7i32), (0, 2, 8), (1000, 0, 9)] {
        s.write_all(&raw_request(api, version, corr, &[])).unwrap();
        let r = read_response(&mut s);
        assert_eq!(i32::from_be_bytes(r[..4].try_into().unwrap()), corr);
        assert_eq!(i16::from_be_bytes(r[4..6].try_into().unwrap()), 35, "UNSUPPORTED_VERSION");
    }
    // The same connection still answers: ApiVersions v0 lists Produce from v3.
    s.write_all(&raw_request(18, 0, 10, &[])).unwrap();
    let r = read_response(&mut s);
    assert_eq!(i32::from_be_bytes(r[..4].try_into().unwrap()), 10);
    assert_eq!(i16::from_be_bytes(r[4..6].try_into().unwrap()), 0);
    let n = i32::from_be_bytes(r[6..10].try_into().unwrap()) as usize;
    let apis: Vec<(i16, i16, i16)> = (0..n)
        .map(|i| {
            let at = 10 + 6 * i;
            let g = |o: usize| i16::from_be_bytes(r[at + o..at + o + 2].try_into().unwrap());
            (g(0), g(2), g(4))
        })
        .collect();
    assert!(apis.iter().any(|&(k, min, _)| k == 0 && min == 3), "{apis:?}");
    assert!(apis.iter().any(|&(k, min, _)| k == 1 && min == 4), "{apis:?}");
}

#[test]
fn oversized_and_garbage_frames_close_only_that_connection() {
    let (b, kafka) = kafka_broker(1);
    // A size past frame_body_bytes_max: closed before anything is allocated.
    let mut s = TcpStream::connect(&kafka).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&i32::MAX.to_be_bytes()).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed");
    // A Metadata request whose body is garbage: closed, nothing else.
    let mut s = TcpStream::connect(&kafka).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&raw_request(3, 1, 1, &[0xff, 0xff, 0xff, 0x7f, 1, 2])).unwrap();
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed");
    // Random frames with valid sizes and known api keys: whatever they get, the broker lives.
    let mut rng = fastrand::Rng::with_seed(22);
    for _ in 0..200 {
        let mut s = TcpStream::connect(&kafka).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let api = [0i16, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18, 19, 20, 22, 32][rng.usize(..16)];
        let body: Vec<u8> = (0..rng.usize(0..200)).map(|_| rng.u8(..)).collect();
        let _ = s.write_all(&raw_request(api, rng.i16(0..10), 1, &body));
        let _ = s.read(&mut buf);
    }
    // Still serving both protocols.
    let mut s = TcpStream::connect(&kafka).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&raw_request(18, 0, 5, &[])).unwrap();
    assert_eq!(i32::from_be_bytes(read_response(&mut s)[..4].try_into().unwrap()), 5);
    create_topic(&mut b.connect(), "still-alive", 1);
    assert!(!b.log_text().contains("panicked"), "{}", b.log_text());
}

#[test]
fn kafka_and_native_groups_of_one_name_share_committed_offsets() {
    require_python_clients();
    let (b, kafka) = kafka_broker(2);
    let mut conn = b.connect();
    create_topic(&mut conn, "shared-offsets", 2);
    // Committed by a Kafka client, read natively.
    run(Command::new("python3").arg(script("offsets.py")).args([
        "commit",
        &kafka,
        "shared",
        "shared-offsets",
        "1",
        "42",
    ]));
    let fetched: wire::FetchOffsetsResponse = conn.call(&wire::FetchOffsetsRequest {
        group: "shared".into(),
        topics: vec!["shared-offsets".into()],
    });
    assert_eq!(fetched.error, 0, "{}", fetched.message);
    let p = fetched.topics.iter().flat_map(|t| &t.partitions).find(|p| p.partition == 1);
    assert_eq!(p.map(|p| p.offset), Some(42), "{fetched:?}");
    // Committed natively (an administrative commit), read by a Kafka client.
    let committed: wire::CommitOffsetsResponse = conn.call(&wire::CommitOffsetsRequest {
        group: "shared".into(),
        member_id: String::new(),
        generation: 0,
        topics: vec![wire::CommitTopic {
            name: "shared-offsets".into(),
            partitions: vec![wire::CommittedOffset {
                partition: 0,
                offset: 7,
                metadata: String::new(),
            }],
        }],
    });
    assert_eq!(committed.error, 0, "{}", committed.message);
    let out = run(Command::new("python3").arg(script("offsets.py")).args([
        "committed",
        &kafka,
        "shared",
        "shared-offsets",
        "0",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["offset"], 7, "{out}");
}

/// Kafka group ids are any string: one with spaces, a colon, a slash, quotes and a backslash
/// joins, reads, commits, is listed and described through Kafka clients, its offsets read
/// natively too, and the metrics scrape escapes it in its labels (before: refused as
/// INVALID_GROUP_ID, only `[A-Za-z0-9._-]` was taken).
#[test]
fn a_kafka_group_id_may_be_any_printable_string() {
    require_python_clients();
    let (b, kafka) = kafka_broker(2);
    let mut conn = b.connect();
    create_topic(&mut conn, "any-id", 1);
    let group = r#"billing: orders/v1 "blue"\eu"#;
    let out = run(Command::new("python3")
        .arg(script("any_group_id.py"))
        .args([&kafka, "any-id", group, "5"]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!((v["read"].as_u64(), v["committed"].as_u64()), (Some(5), Some(5)), "{out}");
    assert_eq!(v["listed"], true, "{out}");
    assert_eq!(v["described_state"], "Stable", "{out}");
    let fetched: wire::FetchOffsetsResponse = conn
        .call(&wire::FetchOffsetsRequest { group: group.into(), topics: vec!["any-id".into()] });
    assert_eq!(fetched.error, 0, "{}", fetched.message);
    let offsets: Vec<u64> =
        fetched.topics.iter().flat_map(|t| &t.partitions).map(|p| p.offset).collect();
    assert_eq!(offsets, [5], "{fetched:?}");
    // A control character is still refused.
    let refused: wire::FetchOffsetsResponse = conn.call(&wire::FetchOffsetsRequest {
        group: "bell\u{7}".into(),
        topics: vec!["any-id".into()],
    });
    assert_eq!(wire::ErrorCode::from_u16(refused.error), Some(wire::ErrorCode::InvalidGroupId));
    let label = r#"group="billing: orders/v1 \"blue\"\\eu""#;
    let scrape = b.metrics_text().expect("metrics on");
    assert!(scrape.contains(label), "no {label} in:\n{scrape}");
}

/// Topic configs change through Kafka admin clients: confluent-kafka's
/// `incremental_alter_configs` (SET, DELETE back to the default; `cleanup.policy=compact`
/// refused while retention is set, `compact,delete` turns compaction on) and kafka-python's
/// older `alter_configs` (which replaces the whole
/// config, sending back the overrides DescribeConfigs reports as set on the topic), each
/// seen by `describe_configs` and by the native DescribeTopic (before:
/// AlterConfigs and IncrementalAlterConfigs were unsupported, a topic's settings could not
/// change at all).
#[test]
fn kafka_admin_clients_alter_topic_configs() {
    require_python_clients();
    let (b, kafka) = kafka_broker(2);
    let mut conn = b.connect();
    create_topic(&mut conn, "configured", 2);
    let out =
        run(Command::new("python3").arg(script("alter_configs.py")).args([&kafka, "configured"]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["after_set"]["retention.ms"], "3600000", "{out}");
    assert_eq!(v["after_set"]["segment.bytes"], "1048576", "{out}");
    assert_ne!(v["after_delete"]["segment.bytes"], "1048576", "{out}");
    assert_eq!(v["after_delete"]["retention.ms"], "3600000", "{out}");
    assert_eq!(v["refused"], "INVALID_CONFIG", "{out}");
    assert_eq!(v["after_policy"]["cleanup.policy"], "compact,delete", "{out}");
    assert_eq!(v["after_policy"]["retention.ms"], "3600000", "{out}");
    assert_eq!(v["after_replace"]["cleanup.policy"], "compact,delete", "{out}");
    assert_eq!(v["after_replace"]["retention.bytes"], "5000000", "{out}");
    // The older api replaces the whole config: the client sent the topic's override back.
    assert_eq!(v["after_replace"]["retention.ms"], "3600000", "{out}");
    let d: wire::DescribeTopicResponse =
        conn.call(&wire::DescribeTopicRequest { name: "configured".into() });
    let c = d.topic.expect("described").config;
    assert_eq!((c.retention_bytes, c.retention_ms, c.segment_bytes_max), (5_000_000, 3_600_000, 0));
    assert!(c.compact, "compaction was turned on");
}

/// DeleteRecords from confluent-kafka's and kafka-python's admin clients moves each
/// partition's log start (the low watermark consumers see, where they start reading); past
/// the end is refused as OFFSET_OUT_OF_RANGE.
#[test]
fn kafka_admin_clients_delete_records() {
    require_python_clients();
    let (b, kafka) = kafka_broker(2);
    let mut conn = b.connect();
    create_topic(&mut conn, "trimmed", 2);
    let out =
        run(Command::new("python3").arg(script("delete_records.py")).args([&kafka, "trimmed"]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["confluent"], 5, "{out}");
    assert_eq!(v["python"], 12, "{out}");
    assert_eq!(v["past_end"], "OFFSET_OUT_OF_RANGE", "{out}");
    assert_eq!(v["watermarks"], serde_json::json!([5, 20]), "{out}");
    assert_eq!(v["first_read"], 5, "{out}");
}

/// DescribeLogDirs from kafka-python's admin client: the broker's data directory with every
/// partition's size (the partitions written to are larger than an empty one), one partition
/// when asked for it, and the filesystem's total and usable bytes.
#[test]
fn kafka_admin_client_describes_log_dirs() {
    require_python_clients();
    let (b, kafka) = kafka_broker(2);
    let mut conn = b.connect();
    create_topic(&mut conn, "sized", 2);
    let mut batch = wire::BatchBuilder::new(1 << 16);
    batch.append(0, None, Some(&[7u8; 5000][..]), &[]).unwrap();
    let batch = batch.finish().unwrap();
    integration_tests::produce(&mut conn, "sized", 1, &batch, wire::AckLevel::Durable);
    let out = run(Command::new("python3").arg(script("log_dirs.py")).args([&kafka, "sized"]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let all = &v["all"];
    assert!(all["log_dir"].as_str().is_some_and(|d| !d.is_empty()), "{out}");
    let (p0, p1) = (&all["topics"]["sized"]["0"], &all["topics"]["sized"]["1"]);
    assert!(p1.as_i64().unwrap() >= 5000, "{out}");
    assert!(p0.as_i64().unwrap() < p1.as_i64().unwrap(), "{out}");
    let (total, usable) = (all["total"].as_i64().unwrap(), all["usable"].as_i64().unwrap());
    assert!(total > 0 && usable > 0 && usable <= total, "{out}");
    assert_eq!(v["one"], serde_json::json!({"sized": {"1": p1}}), "{out}");
}

/// A record as the header tests write and read it: hex bytes, `None` for null.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HeaderRecord {
    key: Option<String>,
    value: Option<String>,
    headers: Vec<(String, Option<String>)>,
}

impl HeaderRecord {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"key": self.key, "value": self.value, "headers": self.headers})
    }

    fn from_json(v: &serde_json::Value) -> HeaderRecord {
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        HeaderRecord {
            key: text(&v["key"]),
            value: text(&v["value"]),
            headers: v["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|h| (text(&h[0]).expect("header key"), text(&h[1])))
                .collect(),
        }
    }
}

/// Repeated keys, null and empty header values, a null key, an empty header key, a
/// tombstone, a record without headers.
fn header_records() -> Vec<HeaderRecord> {
    let s = |v: &str| Some(hex(v.as_bytes()));
    let h = |k: &str, v: Option<String>| (k.to_owned(), v);
    vec![
        HeaderRecord {
            key: s("k1"),
            value: s("v1"),
            headers: vec![
                h("dup", s("first")),
                h("dup", None),
                h("dup", Some(String::new())),
                h("dup", s("last")),
                h("other", None),
                h("", s("empty key")),
            ],
        },
        HeaderRecord { key: None, value: s("no key"), headers: vec![h("n", None)] },
        HeaderRecord { key: s("gone"), value: None, headers: vec![h("t", None), h("t", None)] },
        HeaderRecord { key: s("plain"), value: s(""), headers: vec![] },
    ]
}

/// Reads `count` records from `offset` with a Kafka client (`confluent` or `kafka-python`).
fn read_headers(
    client: &str,
    kafka: &str,
    topic: &str,
    offset: u64,
    count: usize,
) -> Vec<HeaderRecord> {
    let out = run(Command::new("python3").arg(script("headers.py")).args([
        "read",
        client,
        kafka,
        topic,
        "0",
        &offset.to_string(),
        &count.to_string(),
    ]));
    let got: Vec<serde_json::Value> = serde_json::from_str(out.trim()).expect("json");
    let offsets: Vec<u64> = got.iter().map(|r| r["offset"].as_u64().expect("offset")).collect();
    assert_eq!(offsets, (offset..offset + count as u64).collect::<Vec<_>>(), "{out}");
    got.iter().map(HeaderRecord::from_json).collect()
}

/// The records stored at `[offset, offset + count)` of partition 0, read natively.
fn read_native(
    conn: &mut integration_tests::Conn,
    topic: &str,
    offset: u64,
    count: usize,
) -> Vec<HeaderRecord> {
    let batches = fetch_all(conn, topic, 0, offset + count as u64);
    let bytes = wire::to_aligned(&batches.concat());
    let plain = wire::batch::decompressed(&bytes).expect("valid batches");
    let bytes = plain.as_deref().unwrap_or(&bytes);
    wire::Batches::new(bytes)
        .flat_map(|b| b.expect("valid").records().collect::<Vec<_>>())
        .filter(|r| (offset..offset + count as u64).contains(&r.offset()))
        .map(|r| HeaderRecord {
            key: r.key().map(hex),
            value: r.value().map(hex),
            headers: r
                .headers()
                .map(|h| (h.key().to_owned(), h.nullable_value().map(hex)))
                .collect(),
        })
        .collect()
}

#[test]
fn kafka_headers_with_repeated_keys_and_null_values_survive_kafka_and_native_reads() {
    require_python_clients();
    let (b, kafka) = kafka_broker(2);
    let mut conn = b.connect();
    create_topic(&mut conn, "headers", 1);
    let records = header_records();
    let json =
        serde_json::Value::from(records.iter().map(HeaderRecord::to_json).collect::<Vec<_>>())
            .to_string();
    for compression in ["none", "lz4", "zstd"] {
        let out = run(Command::new("python3").arg(script("headers.py")).args([
            "produce",
            &kafka,
            "headers",
            "0",
            compression,
            &json,
        ]));
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        let offset = v["offsets"][0].as_u64().expect("offsets");
        assert_eq!(
            read_native(&mut conn, "headers", offset, records.len()),
            records,
            "{compression}"
        );
        for client in ["confluent", "kafka-python"] {
            let got = read_headers(client, &kafka, "headers", offset, records.len());
            assert_eq!(got, records, "{client}, produced with {compression}");
        }
    }
    assert!(!b.log_text().contains("panicked"), "{}", b.log_text());
}

#[test]
fn native_headers_with_repeated_keys_and_null_values_reach_kafka_clients() {
    require_python_clients();
    let (b, kafka) = kafka_broker(2);
    let mut conn = b.connect();
    create_topic(&mut conn, "native-headers", 1);
    let records = header_records();
    let bytes = |v: &Option<String>| {
        v.as_deref().map(|v| {
            (0..v.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&v[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>()
        })
    };
    let mut builder = wire::BatchBuilder::new(1 << 20);
    for (i, r) in records.iter().enumerate() {
        let values: Vec<Option<Vec<u8>>> = r.headers.iter().map(|(_, v)| bytes(v)).collect();
        let headers: Vec<(&str, Option<&[u8]>)> =
            r.headers.iter().zip(&values).map(|((k, _), v)| (k.as_str(), v.as_deref())).collect();
        let (key, value) = (bytes(&r.key), bytes(&r.value));
        builder
            .append_nullable(TIMESTAMP_MS + i as i64, key.as_deref(), value.as_deref(), &headers)
            .unwrap();
    }
    let batch = builder.finish().unwrap();
    let r = produce(&mut conn, "native-headers", 0, &batch, wire::AckLevel::Durable);
    assert_eq!(r.error, 0);
    let offset = r.base_offset as u64;
    assert_eq!(read_native(&mut conn, "native-headers", offset, records.len()), records);
    for client in ["confluent", "kafka-python"] {
        let got = read_headers(client, &kafka, "native-headers", offset, records.len());
        assert_eq!(got, records, "{client}");
    }
}

/// The shard's `requests` counter (the native Stats api; a 1-shard broker).
fn requests_counted(conn: &mut integration_tests::Conn) -> u64 {
    let r: wire::StatsResponse = conn.call(&wire::StatsRequest {
        shards: vec![],
        group_lag: false,
        latency: false,
        reset_latency: false,
    });
    r.shards.iter().map(|s| s.requests).sum()
}

#[test]
fn a_kafka_request_counts_once_however_many_native_requests_it_runs() {
    let (b, kafka) = kafka_broker(1);
    let mut conn = b.connect();
    let mut s = TcpStream::connect(&kafka).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let before = requests_counted(&mut conn);
    // DeleteTopics v1 naming two (absent) topics: two native DeleteTopic bodies each.
    let mut body = 2i32.to_be_bytes().to_vec();
    for name in ["absent-a", "absent-b"] {
        body.extend_from_slice(&(name.len() as i16).to_be_bytes());
        body.extend_from_slice(name.as_bytes());
    }
    body.extend_from_slice(&1_000i32.to_be_bytes());
    const KAFKA_REQUESTS: u64 = 5;
    for corr in 0..KAFKA_REQUESTS as i32 {
        s.write_all(&raw_request(20, 1, corr, &body)).unwrap();
        let r = read_response(&mut s);
        assert_eq!(i32::from_be_bytes(r[..4].try_into().unwrap()), corr);
    }
    // ApiVersions runs no native request: it counts once too.
    s.write_all(&raw_request(18, 0, 99, &[])).unwrap();
    read_response(&mut s);
    let after = requests_counted(&mut conn);
    // + the second Stats request itself.
    assert_eq!(after - before, KAFKA_REQUESTS + 1 + 1, "before {before}, after {after}");
}

#[test]
fn kafka_admin_lists_and_describes_kafka_and_native_groups() {
    require_python_clients();
    let (b, kafka) = kafka_broker(2);
    let mut conn = b.connect();
    create_topic(&mut conn, "watched", 3);
    // A group known only by its committed offsets (an administrative native commit).
    let committed: wire::CommitOffsetsResponse = conn.call(&wire::CommitOffsetsRequest {
        group: "offsets-only".into(),
        member_id: String::new(),
        generation: 0,
        topics: vec![wire::CommitTopic {
            name: "watched".into(),
            partitions: vec![wire::CommittedOffset {
                partition: 0,
                offset: 5,
                metadata: String::new(),
            }],
        }],
    });
    assert_eq!(committed.error, 0, "{}", committed.message);
    let out = run(Command::new("python3").arg(script("groups.py")).args([
        &kafka,
        "watched",
        "live",
        "offsets-only",
        "nobody-here",
    ]));
    eprintln!("{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["assignment"], serde_json::json!([0, 1, 2]), "{out}");
    assert_eq!(
        v["listed"],
        serde_json::json!([["live", "consumer", "Stable"], ["offsets-only", "", "Empty"]]),
        "{out}"
    );
    assert_eq!(v["stable"], serde_json::json!([["live", "consumer", "Stable"]]), "{out}");
    let live = &v["described"]["live"];
    assert_eq!(live["error"], serde_json::Value::Null, "{out}");
    assert_eq!(
        (live["state"].as_str(), live["protocol_type"].as_str()),
        (Some("Stable"), Some("consumer"))
    );
    assert!(!live["protocol"].as_str().unwrap_or("").is_empty(), "the chosen assignor: {out}");
    let members = live["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{out}");
    assert_eq!(members[0]["client_id"], "groups-test", "{out}");
    assert_eq!(members[0]["client_host"], "/127.0.0.1", "{out}");
    assert_eq!(members[0]["topics"], serde_json::json!(["watched"]), "{out}");
    assert_eq!(members[0]["partitions"], serde_json::json!([0, 1, 2]), "{out}");
    let offsets_only = &v["described"]["offsets-only"];
    assert_eq!(
        (offsets_only["state"].as_str(), offsets_only["error"].is_null()),
        (Some("Empty"), true)
    );
    assert_eq!(offsets_only["members"], serde_json::json!([]), "{out}");
    assert_eq!(v["described"]["nobody-here"]["state"], "Dead", "{out}");
    assert!(!b.log_text().contains("panicked"), "{}", b.log_text());
}

#[test]
fn kafka_admin_deletes_groups_and_offsets_unless_members_hold_them() {
    require_python_clients();
    let (b, kafka) = kafka_broker(2);
    let mut conn = b.connect();
    create_topic(&mut conn, "dg", 2);
    let out = run(Command::new("python3").arg(script("delete_groups.py")).args([&kafka, "dg"]));
    eprintln!("{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(
        v["deleted"],
        serde_json::json!({"gone": "NONE", "live": "NonEmptyGroupError", "nobody": "GroupIdNotFoundError"}),
        "{out}"
    );
    assert_eq!(v["partly"], serde_json::json!({"0": "NONE"}), "{out}");
    assert_eq!(v["live_offsets"], serde_json::json!({"0": "GroupSubscribedToTopicError"}), "{out}");
    assert_eq!(
        v["left"],
        serde_json::json!({"gone": {}, "partly": {"1": 8}, "live": {"0": 7, "1": 8}}),
        "{out}"
    );
    // The native view agrees: "gone" is gone, the others keep their offsets.
    let listed: wire::ListGroupsResponse =
        conn.call(&wire::ListGroupsRequest { prefix: String::new() });
    let names: Vec<&str> = listed.groups.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(names, ["live", "partly"]);
}

/// Kafka consumers long-polling empty partitions (10 s waits, 50 MiB `fetch.max.bytes`
/// each, far past the shard's 64 MiB budget here) do not hold up a consumer whose partition
/// has data: they wait holding no room (`api/long_poll.rs`). Before, each waiting fetch held
/// its 50 MiB and the reader's fetches queued behind their 10 s waits.
#[test]
fn idle_kafka_long_polls_do_not_hold_up_a_consumer_with_data() {
    require_python_clients();
    let b = Broker::start_with_env(
        1,
        &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0"), ("BROKER_MEMORY_BYTES_PER_SHARD", "67108864")],
    );
    let ready = std::fs::read_to_string(b.data_dir.with_extension("ready")).expect("ready file");
    let v: serde_json::Value = serde_json::from_str(&ready).expect("ready json");
    let kafka = v["kafka"].as_str().expect("kafka listener").to_owned();
    let out = run(Command::new("python3").arg(script("idle_long_polls.py")).args([&kafka, "6"]));
    let max_ms: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("max_ms "))
        .unwrap_or_else(|| panic!("no max_ms in {out}"))
        .parse()
        .unwrap();
    // (Seconds when blocked: the idle fetches wait 10 s each.)
    assert!(max_ms < 5_000, "a record took {max_ms} ms to reach its consumer");
}

/// Static members (KIP-345) with real clients: a confluent-kafka consumer that restarts with
/// its `group.instance.id` gets its partitions back at once and its partner is not revoked
/// (no rebalance); kafka-python's DescribeGroups shows the instance ids; a second process
/// with one instance id fences the first (a fatal error); an admin removes a kafka-python
/// static member by its instance id.
#[test]
fn kafka_static_members_keep_their_place_across_a_restart() {
    require_python_clients();
    let (b, kafka) = kafka_broker(2);
    create_topic(&mut b.connect(), "statics", 4);
    let out = run(Command::new("python3")
        .arg(script("static_members.py"))
        .args([&kafka, "statics", "sg"]));
    eprintln!("{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let first = &v["first"];
    assert_eq!(
        first["s-1"].as_array().unwrap().len() + first["s-2"].as_array().unwrap().len(),
        4,
        "{out}"
    );
    assert_eq!(v["restarted"], *first, "the same partitions after the restart: {out}");
    assert!(v["restart_s"].as_f64().unwrap() < 10.0, "at once, not after a session: {out}");
    assert_eq!(v["revokes_of_s2"], 0, "no rebalance: {out}");
    assert_eq!(v["instances"], serde_json::json!(["s-1", "s-2"]), "{out}");
    let fenced = v["fenced"].as_array().expect("errors");
    assert!(
        // librdkafka reports it as _FATAL (-150): "Static consumer fenced by other consumer
        // with same group.instance.id".
        fenced.iter().any(|e| e[0] == -150 || e[1] == true),
        "the first s-2 got a fatal error once a second one joined: {out}"
    );
    assert_eq!(v["second_s2"], first["s-2"], "{out}");
    assert_eq!(v["removed"], serde_json::json!({"kp-1": "NoError"}), "{out}");
    assert!(!b.log_text().contains("panicked"), "{}", b.log_text());
}

/// Kafka admin clients grow a topic (CreatePartitions): confluent-kafka to 4, kafka-python to
/// 6, the same count again is INVALID_PARTITIONS; a confluent-kafka producer sees 6
/// partitions and writes to the last, which the native metadata lists too.
#[test]
fn kafka_admin_clients_grow_a_topic() {
    require_python_clients();
    let (b, kafka) = kafka_broker(2);
    create_topic(&mut b.connect(), "growing", 2);
    let out = run(Command::new("python3").arg(script("grow.py")).args([&kafka, "growing"]));
    eprintln!("{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["confluent"], serde_json::Value::Null, "{out}");
    assert_eq!(v["python"], serde_json::Value::Null, "{out}");
    assert_eq!(v["again"], "InvalidPartitionsError", "{out}");
    assert_eq!(v["partitions"], 6, "{out}");
    assert_eq!(v["delivered"], 5, "{out}");
    let md: wire::MetadataResponse = b.connect().call(&wire::MetadataRequest { topics: vec![] });
    let t = md.topics.iter().find(|t| t.name == "growing").expect("topic");
    assert_eq!(t.partitions.len(), 6);
}
