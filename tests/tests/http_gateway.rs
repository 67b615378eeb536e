//! The HTTP gateway of the real broker binary on 127.0.0.1 (`--http`, here `BROKER_HTTP`),
//! driven by real HTTP clients: `curl` (produce, read, Server-Sent Events with `curl -N`)
//! and raw sockets where a test needs to misbehave (a client that never reads). Records
//! cross between HTTP and the native protocol both ways.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use integration_tests::{create_topic, fetch_all, produce, Broker};
use serde_json::{json, Value};

/// A broker with the gateway on an ephemeral port, plus extra env.
fn start(shards: usize, env: &[(&str, &str)]) -> (Broker, SocketAddr) {
    let mut all = vec![("BROKER_HTTP", "127.0.0.1:0"), ("BROKER_METRICS_LISTEN", "off")];
    all.extend_from_slice(env);
    let b = Broker::start_with_env(shards, &all);
    let ready = std::fs::read_to_string(b.data_dir.with_extension("ready")).expect("ready file");
    let v: Value = serde_json::from_str(&ready).expect("ready json");
    let http = v["http"].as_str().expect("http address in the ready file").parse().expect("addr");
    (b, http)
}

/// Runs curl with `args` against `http` + `path`; (status, body as JSON).
fn curl(http: SocketAddr, method: &str, path: &str, extra: &[&str]) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-s", "-S", "-X", method, "-o", "-", "-w", "\n%{http_code}", "--max-time", "120"])
        .args(extra)
        .arg(format!("http://{http}{path}"))
        .output()
        .expect("run curl (apt-get install curl)");
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8 response");
    let (body, status) = text.rsplit_once('\n').expect("status line");
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    };
    (status.parse().expect("status"), json)
}

fn post_json(http: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    curl(
        http,
        "POST",
        path,
        &["-H", "content-type: application/json", "--data-binary", &body.to_string()],
    )
}

/// `curl -N` on a stream: its events (id, data) arrive on the returned channel.
struct SseClient {
    child: Child,
    events: mpsc::Receiver<(String, String, Value)>,
}

impl SseClient {
    fn open(http: SocketAddr, path: &str, last_event_id: Option<&str>) -> SseClient {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-N"]);
        if let Some(id) = last_event_id {
            cmd.args(["-H", &format!("Last-Event-ID: {id}")]);
        }
        let mut child = cmd
            .arg(format!("http://{http}{path}"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn curl -N");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut id, mut event) = (String::new(), String::new());
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.to_owned();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    let data = serde_json::from_str(v).expect("event data is JSON");
                    if tx.send((event.clone(), id.clone(), data)).is_err() {
                        return;
                    }
                }
            }
        });
        SseClient { child, events }
    }

    /// The next `record` event (skipping `position`), within 10 s: (id, data).
    fn next_record(&self) -> (String, Value) {
        loop {
            let (event, id, data) =
                self.events.recv_timeout(Duration::from_secs(10)).expect("an event within 10 s");
            match event.as_str() {
                "record" => return (id, data),
                "position" => continue,
                other => panic!("unexpected event {other}: {data}"),
            }
        }
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn records_cross_between_http_and_the_native_protocol_both_ways() {
    let (broker, http) = start(2, &[]);
    let (status, created) = post_json(http, "/topics", &json!({"name": "orders", "partitions": 4}));
    assert_eq!(status, 201, "{created}");
    let (status, listed) = curl(http, "GET", "/topics", &[]);
    assert_eq!((status, &listed["topics"][0]["name"]), (200, &json!("orders")));

    // HTTP in, native out: JSON values, binary values, headers, explicit partitions.
    let records = json!([
        {"key": "a", "value": {"n": 1}, "headers": {"trace": "t1"}, "partition": 1},
        {"key": "b", "value": [1, 2, 3], "partition": 1},
        {"key_base64": "/wA=", "value_base64": "AAEC", "partition": 1},
        {"key": "tomb", "partition": 1},
    ]);
    let (status, resp) = post_json(http, "/topics/orders/records?acks=durable", &records);
    assert_eq!(status, 200, "{resp}");
    let offsets: Vec<u64> =
        resp["offsets"].as_array().unwrap().iter().map(|o| o["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, [0, 1, 2, 3]);
    let mut native = broker.connect();
    let batches = fetch_all(&mut native, "orders", 1, 4);
    let mut seen = Vec::new();
    for b in &batches {
        let view = wire::BatchView::validate(b).unwrap();
        for r in view.records() {
            let headers: Vec<(String, Vec<u8>)> =
                r.headers().map(|h| (h.key().to_owned(), h.value().to_vec())).collect();
            seen.push((
                r.offset(),
                r.key().map(<[u8]>::to_vec),
                r.value().map(<[u8]>::to_vec),
                headers,
            ));
        }
    }
    assert_eq!(
        seen,
        vec![
            (
                0,
                Some(b"a".to_vec()),
                Some(br#"{"n":1}"#.to_vec()),
                vec![("trace".into(), b"t1".to_vec())]
            ),
            (1, Some(b"b".to_vec()), Some(b"[1,2,3]".to_vec()), vec![]),
            (2, Some(vec![0xff, 0]), Some(vec![0, 1, 2]), vec![]),
            (3, Some(b"tomb".to_vec()), None, vec![]),
        ]
    );
    // A raw body is one record's value; the key comes from the query.
    let (status, resp) = curl(
        http,
        "POST",
        "/topics/orders/records?partition=2&key=k1&acks=written",
        &["-H", "content-type: application/octet-stream", "--data-binary", "plain bytes"],
    );
    assert_eq!((status, resp["offsets"][0]["offset"].as_u64()), (200, Some(0)));
    let raw = fetch_all(&mut native, "orders", 2, 1);
    let view = wire::BatchView::validate(&raw[0]).unwrap();
    let r = view.records().next().unwrap();
    assert_eq!((r.key(), r.value()), (Some(&b"k1"[..]), Some(&b"plain bytes"[..])));

    // Native in, HTTP out.
    let mut builder = wire::BatchBuilder::new(1 << 20);
    builder
        .append(1_700_000_000_000, Some(b"n1"), Some(br#"{"from":"native"}"#), &[("h", b"v")])
        .unwrap();
    // A null header value (as Kafka producers may send) next to an empty one.
    let nullable: &[(&str, Option<&[u8]>)] = &[("gone", None), ("empty", Some(b""))];
    builder.append_nullable(1_700_000_000_001, None, Some(&[0xfe, 0xff]), nullable).unwrap();
    let result =
        produce(&mut native, "orders", 3, &builder.finish().unwrap(), wire::AckLevel::Durable);
    assert_eq!(result.error, 0);
    let (status, read) =
        curl(http, "GET", "/topics/orders/records?partition=3&from=earliest&limit=10", &[]);
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["next_offset"], 2);
    let recs = read["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["key"], "n1");
    assert_eq!(recs[0]["value"], json!({"from": "native"}));
    assert_eq!(recs[0]["headers"], json!({"h": "v"}));
    assert_eq!(recs[0]["timestamp_ms"], 1_700_000_000_000i64);
    assert_eq!(recs[1]["key"], Value::Null);
    assert_eq!(recs[1]["value_base64"], "/v8=");
    assert_eq!(recs[1]["headers"], json!({"gone": null, "empty": ""}), "null stays null");
    // `from` and `limit` page through a partition.
    let (_, page) = curl(http, "GET", "/topics/orders/records?partition=1&from=1&limit=2", &[]);
    let page_offsets: Vec<u64> =
        page["records"].as_array().unwrap().iter().map(|r| r["offset"].as_u64().unwrap()).collect();
    assert_eq!((page_offsets, &page["next_offset"]), (vec![1, 2], &json!(3)));

    // Admin: describe and delete.
    let (status, described) = curl(http, "GET", "/topics/orders", &[]);
    assert_eq!(status, 200);
    assert_eq!(described["partitions"][1]["high_watermark"], 4);
    assert_eq!(curl(http, "DELETE", "/topics/orders", &[]).0, 200);
    let (status, gone) = curl(http, "GET", "/topics/orders", &[]);
    assert_eq!((status, &gone["error"]["name"]), (404, &json!("UNKNOWN_TOPIC")));
    let (status, health) = curl(http, "GET", "/health", &[]);
    assert_eq!((status, &health["status"]), (200, &json!("ok")));
}

#[test]
fn server_sent_events_deliver_live_records_and_resume_without_gap_or_duplicate() {
    let (broker, http) = start(2, &[]);
    create_topic(&mut broker.connect(), "events", 3);
    let post = |from: usize, to: usize| {
        let recs: Vec<Value> =
            (from..to).map(|i| json!({"key": format!("k{i}"), "value": {"i": i}})).collect();
        let (status, resp) =
            post_json(http, "/topics/events/records?acks=written", &Value::Array(recs));
        assert_eq!(status, 200, "{resp}");
    };
    let sse = SseClient::open(http, "/topics/events/stream?from=earliest", None);
    // Live: records posted after the stream opened.
    std::thread::sleep(Duration::from_millis(300));
    post(0, 30);
    let mut got = Vec::new();
    let mut last_id = String::new();
    while got.len() < 30 {
        let (id, data) = sse.next_record();
        got.push(data["value"]["i"].as_u64().unwrap());
        last_id = id;
    }
    drop(sse); // the client disconnects...
    post(30, 60); // ...records arrive meanwhile...
    let resumed = SseClient::open(http, "/topics/events/stream?from=earliest", Some(&last_id));
    post(60, 70); // ...and after it is back.
    while got.len() < 70 {
        got.push(resumed.next_record().1["value"]["i"].as_u64().unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, (0..70).collect::<Vec<u64>>(), "every record exactly once");
    // Nothing more is pending (no duplicate delivered late).
    std::thread::sleep(Duration::from_millis(1500));
    assert!(resumed.events.try_recv().is_err(), "no event past the 70 records after the resume");
    // One partition, from an offset: only that partition's records at or after it.
    let one = SseClient::open(http, "/topics/events/stream?partition=2&from=3", None);
    let (id, data) = one.next_record();
    assert_eq!((data["partition"].as_u64(), data["offset"].as_u64()), (Some(2), Some(3)));
    assert_eq!(id, "2/3");
}

/// A stream of every partition follows a topic that grows: the new partition's records come
/// (before, the stream kept the partitions it opened with), and a stream resumed with an id
/// naming only the partitions it had reads the ones created since from their start (before,
/// from `from`, here latest: their records were skipped).
#[test]
fn a_stream_follows_a_topic_that_grows() {
    let (broker, http) = start(1, &[]);
    create_topic(&mut broker.connect(), "growing", 1);
    let grow = |count: u32| {
        let req = wire::CreatePartitionsRequest { name: "growing".into(), partition_count: count };
        let r: wire::CreatePartitionsResponse = broker.connect().call(&req);
        assert_eq!(r.error, 0, "{}", r.message);
    };
    let post = |partition: u32| {
        let recs = json!([{"key": "k", "value": {"p": partition}, "partition": partition}]);
        let (status, resp) = post_json(http, "/topics/growing/records?acks=written", &recs);
        assert_eq!(status, 200, "{resp}");
    };
    let sse = SseClient::open(http, "/topics/growing/stream?from=latest", None);
    std::thread::sleep(Duration::from_millis(300));
    grow(2);
    post(1);
    let (id, data) = sse.next_record();
    assert_eq!((data["partition"].as_u64(), data["offset"].as_u64()), (Some(1), Some(0)));
    assert_eq!(id, "0/-1,1/0");
    drop(sse);
    grow(3);
    post(0);
    post(2);
    // Resumed with the id of a stream that knew only partition 0.
    let resumed = SseClient::open(http, "/topics/growing/stream?from=latest", Some("0/-1"));
    let mut got: Vec<(u64, u64)> = (0..3)
        .map(|_| {
            let (_, d) = resumed.next_record();
            (d["partition"].as_u64().unwrap(), d["offset"].as_u64().unwrap())
        })
        .collect();
    got.sort_unstable();
    assert_eq!(got, [(0, 0), (1, 0), (2, 0)]);
    // The topic deleted and made again under the stream: the stream ends (its positions mean
    // nothing in the new topic).
    let mut admin = broker.connect();
    let r: wire::DeleteTopicResponse =
        admin.call(&wire::DeleteTopicRequest { name: "growing".into() });
    assert_eq!(r.error, 0, "{}", r.message);
    create_topic(&mut admin, "growing", 4);
    loop {
        let (event, _, data) =
            resumed.events.recv_timeout(Duration::from_secs(10)).expect("an event within 10 s");
        if event == "error" {
            assert!(data.to_string().contains("UNKNOWN_TOPIC"), "{data}");
            break;
        }
    }
}

/// `POST /topics/{t}/partitions` grows a topic (native `CreatePartitions`): the new
/// partitions take records at once and existing ones keep theirs; a count no larger than
/// now, an unknown topic, a malformed body and another method are refused with the native
/// code.
#[test]
fn a_topic_grows_over_http() {
    let (_broker, http) = start(2, &[]);
    let (status, resp) = post_json(http, "/topics", &json!({"name": "g", "partitions": 1}));
    assert_eq!(status, 201, "{resp}");
    let recs = json!([{"key": "k", "value": 1, "partition": 0}]);
    assert_eq!(post_json(http, "/topics/g/records", &recs).0, 200);
    let (status, resp) = post_json(http, "/topics/g/partitions", &json!({"partitions": 3}));
    assert_eq!((status, &resp), (200, &json!({"name": "g", "partitions": 3})));
    let (status, resp) = curl(http, "GET", "/topics/g", &[]);
    assert_eq!(status, 200, "{resp}");
    let partitions = resp["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 3, "{resp}");
    assert_eq!(partitions[0]["high_watermark"], 1, "{resp}");
    let recs = json!([{"key": "k", "value": 2, "partition": 2}]);
    let (status, resp) = post_json(http, "/topics/g/records", &recs);
    assert_eq!(status, 200, "{resp}");
    let (status, resp) = curl(http, "GET", "/topics/g/records?partition=2&offset=0", &[]);
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["records"][0]["value"], 2, "{resp}");
    // Refusals.
    let (status, resp) = post_json(http, "/topics/g/partitions", &json!({"partitions": 3}));
    assert_eq!(status, 400, "{resp}");
    assert_eq!(resp["error"]["name"], "INVALID_TOPIC_CONFIG", "{resp}");
    let (status, resp) = post_json(http, "/topics/nope/partitions", &json!({"partitions": 3}));
    assert_eq!((status, resp["error"]["name"].as_str()), (404, Some("UNKNOWN_TOPIC")), "{resp}");
    for bad in [json!({}), json!({"partitions": -1}), json!({"partitions": 4, "x": 1})] {
        let (status, resp) = post_json(http, "/topics/g/partitions", &bad);
        assert_eq!(status, 400, "{bad}: {resp}");
    }
    assert_eq!(curl(http, "GET", "/topics/g/partitions", &[]).0, 405);
}

/// `PATCH /topics/{t}` changes a topic's settings (native `AlterTopicConfig`): the answer
/// and GET show them; `null` goes back to the default; a setting fixed at creation, a bad
/// value and an unknown topic are refused with the native code, and nothing of a refused
/// request is made.
#[test]
fn a_topics_settings_change_over_http() {
    let (_broker, http) = start(1, &[]);
    let (status, resp) = post_json(http, "/topics", &json!({"name": "s", "retention_ms": -1}));
    assert_eq!(status, 201, "{resp}");
    let patch = |path: &str, body: &Value| {
        let data = body.to_string();
        curl(http, "PATCH", path, &["-H", "content-type: application/json", "--data-binary", &data])
    };
    let (status, resp) =
        patch("/topics/s", &json!({"retention_ms": 3600000, "default_ack": "written"}));
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["config"]["retention_ms"], 3600000, "{resp}");
    assert_eq!(resp["config"]["default_ack"], "written", "{resp}");
    let (_, got) = curl(http, "GET", "/topics/s", &[]);
    assert_eq!(got["config"]["retention_ms"], 3600000, "{got}");
    let (status, resp) = patch("/topics/s", &json!({"default_ack": null}));
    assert_eq!((status, &resp["config"]["default_ack"]), (200, &json!("durable")), "{resp}");
    let (status, resp) = patch("/topics/s", &json!({"retention_ms": 5, "table": true}));
    assert_eq!((status, resp["error"]["name"].as_str()), (400, Some("INVALID_TOPIC_CONFIG")));
    let (status, _) = patch("/topics/s", &json!({"retention_ms": -9}));
    assert_eq!(status, 400);
    let (_, got) = curl(http, "GET", "/topics/s", &[]);
    assert_eq!(got["config"]["retention_ms"], 3600000, "nothing refused was made: {got}");
    let (status, resp) = patch("/topics/nope", &json!({"retention_ms": 5}));
    assert_eq!((status, resp["error"]["name"].as_str()), (404, Some("UNKNOWN_TOPIC")));
}

/// `DELETE /topics/{t}/records?before=…` deletes records before an offset (native
/// `DeleteRecords`) in one partition or all; reads below the new start get 416; past the
/// end, a compacted topic, a missing `before` and an unknown topic are refused.
#[test]
fn records_are_deleted_over_http() {
    let (_broker, http) = start(2, &[]);
    let (status, resp) = post_json(http, "/topics", &json!({"name": "d", "partitions": 2}));
    assert_eq!(status, 201, "{resp}");
    for p in 0..2 {
        let recs: Vec<Value> = (0..5).map(|i| json!({"value": i, "partition": p})).collect();
        assert_eq!(post_json(http, "/topics/d/records", &json!(recs)).0, 200);
    }
    let (status, resp) = curl(http, "DELETE", "/topics/d/records?partition=0&before=3", &[]);
    let want = json!({"name": "d", "partitions": [{"partition": 0, "log_start_offset": 3}]});
    assert_eq!((status, &resp), (200, &want));
    let (status, resp) = curl(http, "GET", "/topics/d/records?partition=0&from=1", &[]);
    assert_eq!((status, resp["error"]["name"].as_str()), (416, Some("OFFSET_OUT_OF_RANGE")));
    let (_, resp) = curl(http, "GET", "/topics/d/records?partition=0", &[]);
    assert_eq!(resp["records"][0]["value"], 3, "from earliest: {resp}");
    let (status, resp) = curl(http, "DELETE", "/topics/d/records?before=hw", &[]);
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["partitions"][0]["log_start_offset"], 5, "{resp}");
    assert_eq!(resp["partitions"][1]["log_start_offset"], 5, "{resp}");
    // Refusals.
    let (status, resp) = curl(http, "DELETE", "/topics/d/records?partition=1&before=9", &[]);
    assert_eq!((status, resp["error"]["name"].as_str()), (416, Some("OFFSET_OUT_OF_RANGE")));
    let (status, _) = curl(http, "DELETE", "/topics/d/records", &[]);
    assert_eq!(status, 400);
    let (status, _) = curl(http, "DELETE", "/topics/d/records?before=soon", &[]);
    assert_eq!(status, 400);
    let (status, _) = curl(http, "DELETE", "/topics/nope/records?before=hw", &[]);
    assert_eq!(status, 404);
    let body = json!({"name": "c", "compact": true});
    assert_eq!(post_json(http, "/topics", &body).0, 201);
    let (status, resp) = curl(http, "DELETE", "/topics/c/records?before=hw", &[]);
    assert_eq!((status, resp["error"]["name"].as_str()), (409, Some("POLICY_VIOLATION")));
}

#[test]
fn bad_requests_get_4xx_with_a_json_error_carrying_the_native_code() {
    let (broker, http) = start(1, &[("BROKER_HTTP_BODY_BYTES_MAX", "65536")]);
    create_topic(&mut broker.connect(), "t", 1);
    let check = |(status, body): (u16, Value), want_status: u16, want: &str| {
        assert_eq!(status, want_status, "{body}");
        assert_eq!(body["error"]["name"], want, "{body}");
        let code = body["error"]["code"].as_u64().unwrap() as u16;
        assert_eq!(wire::ErrorCode::from_u16(code).unwrap().name(), want, "same number as native");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    };
    let json = ["-H", "content-type: application/json", "--data-binary"];
    check(
        curl(http, "POST", "/topics/t/records", &[&json[..], &["{nope"]].concat()),
        400,
        "INVALID_REQUEST",
    );
    check(
        curl(http, "POST", "/topics/t/records", &[&json[..], &[r#"{"vaule":1}"#]].concat()),
        400,
        "INVALID_REQUEST",
    );
    check(
        curl(http, "POST", "/topics/missing/records", &[&json[..], &["{}"]].concat()),
        404,
        "UNKNOWN_TOPIC",
    );
    check(curl(http, "GET", "/topics/missing/records", &[]), 404, "UNKNOWN_TOPIC");
    check(curl(http, "GET", "/topics/missing/stream", &[]), 404, "UNKNOWN_TOPIC");
    check(
        curl(http, "POST", "/topics/t/records?acks=maybe", &[&json[..], &["{}"]].concat()),
        400,
        "INVALID_ACK_LEVEL",
    );
    check(
        curl(http, "POST", "/topics/t/records?partition=7", &["--data-binary", "x"]),
        404,
        "UNKNOWN_PARTITION",
    );
    check(
        curl(http, "GET", "/topics/t/records?partition=0&from=99", &[]),
        416,
        "OFFSET_OUT_OF_RANGE",
    );
    // Offsets are below 2^63: a stream's event ids would overflow past it.
    check(
        curl(http, "GET", "/topics/t/stream?from=9223372036854775808", &[]),
        400,
        "INVALID_REQUEST",
    );
    check(post_json(http, "/topics", &json!({"name": "t"})), 409, "TOPIC_ALREADY_EXISTS");
    check(post_json(http, "/topics", &json!({"name": "bad/name"})), 400, "INVALID_TOPIC_NAME");
    check(curl(http, "GET", "/no/such/path", &[]), 404, "INVALID_REQUEST");
    check(curl(http, "PUT", "/topics", &[]), 405, "INVALID_REQUEST");
    // Oversized: refused by its Content-Length before it is read...
    let big = "x".repeat(100_000);
    check(
        curl(http, "POST", "/topics/t/records", &["--data-binary", &big]),
        413,
        "FRAME_TOO_LARGE",
    );
    // ...and when chunked (no length announced), as soon as it passes the limit.
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "POST /topics/t/records HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = vec![b'y'; 16 * 1024];
    for _ in 0..5 {
        write!(s, "{:x}\r\n", chunk.len()).unwrap();
        if s.write_all(&chunk).and_then(|_| s.write_all(b"\r\n")).is_err() {
            break; // the broker answered and closed already
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("FRAME_TOO_LARGE"), "{answer}");
    // Nothing of the refused bodies was stored, and the broker still serves.
    let (_, read) = curl(http, "GET", "/topics/t/records?partition=0", &[]);
    assert_eq!(read["records"], json!([]));
}

#[test]
fn a_client_that_never_reads_a_stream_is_cut_off_without_growing_memory() {
    let (broker, http) = start(
        1,
        &[
            ("BROKER_HTTP_WRITE_STALL_MS", "1000"),
            ("BROKER_HTTP_STREAM_BUFFER_BYTES_MAX", "262144"),
        ],
    );
    let mut native = broker.connect();
    create_topic(&mut native, "big", 1);
    // 64 MiB of stored records, far more than any socket buffer.
    let value = vec![b'v'; 60_000];
    for _ in 0..64 {
        let mut b = wire::BatchBuilder::new(4 << 20);
        for _ in 0..17 {
            b.append(1, None, Some(&value), &[]).unwrap();
        }
        assert_eq!(
            produce(&mut native, "big", 0, &b.finish().unwrap(), wire::AckLevel::Written).error,
            0
        );
    }
    let rss_before = broker.rss_bytes();
    let fds_before = broker.open_fds();
    // Ten readers that ask for everything and never read.
    let mut sockets: Vec<TcpStream> = (0..10)
        .map(|_| {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.set_recv_buffer_size(4096).unwrap();
            s.connect(&http.into()).unwrap();
            let mut s: TcpStream = s.into();
            write!(s, "GET /topics/big/stream?from=earliest HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
            s
        })
        .collect();
    // The broker closes each once its writes made no progress for a second (the sockets
    // are its descriptors: back to where they were).
    let deadline = Instant::now() + Duration::from_secs(60);
    std::thread::sleep(Duration::from_secs(2));
    while broker.open_fds() > fds_before {
        assert!(Instant::now() < deadline, "stalled streams still open after 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rss_after = broker.rss_bytes();
    eprintln!("broker RSS {rss_before} -> {rss_after} bytes with 10 stalled streams");
    // Unbounded buffering would hold 10 x 64 MiB; bounded, each stream holds about one
    // fetch (256 KiB of batches and their JSON) plus hyper's write buffer.
    assert!(
        rss_after < rss_before + (64 << 20),
        "memory grew from {rss_before} to {rss_after} bytes with 10 stalled streams"
    );
    // Each was closed by the broker: reading drains what was in flight, then ends.
    for s in &mut sockets {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0usize;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("the stalled stream was not closed ({total} bytes read): {e}"),
            }
            assert!(started.elapsed() < Duration::from_secs(20), "stream still open");
        }
        eprintln!("stalled stream: {total} bytes reached the client before it was cut off");
        assert!(total < 16 << 20, "{total} bytes were sent to a client that never read");
    }
    // The broker serves on.
    assert_eq!(curl(http, "GET", "/health", &[]).0, 200);
}

#[test]
fn the_native_listener_is_unaffected_under_http_load() {
    let (broker, http) = start(2, &[]);
    let mut native = broker.connect();
    create_topic(&mut native, "load", 2);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let recs: Vec<Value> = (0..100).map(|i| json!({"value": {"i": i}})).collect();
                    assert_eq!(
                        post_json(http, "/topics/load/records?acks=none", &Value::Array(recs)).0,
                        200
                    );
                    n += 1;
                }
                n
            })
        })
        .collect();
    // Native produce + fetch round trips keep working, each well under a second.
    let mut slowest = Duration::ZERO;
    for i in 0..50u64 {
        let mut b = wire::BatchBuilder::new(1 << 20);
        b.append(1, Some(b"native"), Some(&i.to_le_bytes()), &[]).unwrap();
        let started = Instant::now();
        let r = produce(&mut native, "load", 1, &b.finish().unwrap(), wire::AckLevel::Written);
        assert_eq!(r.error, 0);
        slowest = slowest.max(started.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let requests: usize = loaders.into_iter().map(|l| l.join().unwrap()).sum();
    assert!(requests > 0);
    assert!(slowest < Duration::from_secs(1), "a native produce took {slowest:?} under HTTP load");
}

#[test]
fn a_stream_with_a_filter_delivers_only_matching_records() {
    let (broker, http) = start(1, &[]);
    create_topic(&mut broker.connect(), "f", 2);
    let recs: Vec<Value> = (0..40)
        .map(|i| json!({"key": format!("k{}", i % 4), "value": {"i": i}, "partition": i % 2}))
        .collect();
    assert_eq!(post_json(http, "/topics/f/records", &Value::Array(recs)).0, 200);
    // `value.i > 29 and key = "k2"`, URL-encoded.
    let filter = "value.i%20%3E%2029%20and%20key%20%3D%20%22k2%22";
    let sse =
        SseClient::open(http, &format!("/topics/f/stream?from=earliest&filter={filter}"), None);
    let mut got: Vec<u64> =
        (0..3).map(|_| sse.next_record().1["value"]["i"].as_u64().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, [30, 34, 38]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sse.events.try_recv().is_err(), "nothing that does not match");
    let (status, e) = curl(http, "GET", "/topics/f/stream?filter=key%20%3D", &[]);
    assert_eq!((status, &e["error"]["name"]), (400, &json!("INVALID_REQUEST")));
    assert!(e["error"]["message"].as_str().unwrap().contains("invalid filter"), "{e}");
}

/// Path of the `brokerctl` binary, built once (same profile as the tests).
fn brokerctl() -> std::path::PathBuf {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let broker = integration_tests::broker_binary();
        let profile_dir = broker.parent().expect("profile dir").to_owned();
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "-p", "client", "--bin", "brokerctl"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(cmd.status().expect("cargo build brokerctl").success());
        profile_dir.join("brokerctl")
    })
    .clone()
}

fn run_brokerctl(broker: &Broker, args: &[&str], stdin: &str) -> Vec<Value> {
    let mut child = Command::new(brokerctl())
        .arg("--broker")
        .arg(broker.public.to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn brokerctl");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "brokerctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.to_owned())))
        .collect()
}

#[test]
fn curl_and_brokerctl_read_each_others_records() {
    let (broker, http) = start(2, &[]);
    assert_eq!(post_json(http, "/topics", &json!({"name": "cli", "partitions": 1})).0, 201);
    let recs: Vec<Value> =
        (0..5).map(|i| json!({"key": format!("k{i}"), "value": {"n": i}})).collect();
    assert_eq!(post_json(http, "/topics/cli/records", &Value::Array(recs)).0, 200);
    // curl → brokerctl.
    let lines = run_brokerctl(
        &broker,
        &["consume", "cli", "--from", "earliest", "--count", "5", "--format", "json"],
        "",
    );
    let got: Vec<(Value, Value)> =
        lines.iter().map(|l| (l["key"].clone(), l["value"].clone())).collect();
    let want: Vec<(Value, Value)> =
        (0..5).map(|i| (json!(format!("k{i}")), json!(format!("{{\"n\":{i}}}")))).collect();
    assert_eq!(got, want);
    // brokerctl --filter: the broker sends only the match; the CLI stops at the end.
    let filtered = run_brokerctl(
        &broker,
        &["consume", "cli", "--format", "json", "--filter", "value.n > 3"],
        "",
    );
    assert_eq!(filtered.len(), 1, "{filtered:?}");
    assert_eq!(filtered[0]["offset"], 4);
    // brokerctl → curl.
    run_brokerctl(
        &broker,
        &["produce", "cli", "--key-separator", ":"],
        "a:{\"from\":\"cli\"}\nb:plain\n",
    );
    let (status, read) = curl(http, "GET", "/topics/cli/records?from=5", &[]);
    assert_eq!(status, 200, "{read}");
    let recs = read["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!((&recs[0]["key"], &recs[0]["value"]), (&json!("a"), &json!({"from": "cli"})));
    assert_eq!((&recs[1]["key"], &recs[1]["value_base64"]), (&json!("b"), &json!("cGxhaW4=")));
}

#[test]
fn a_request_head_that_never_finishes_and_an_idle_connection_are_closed() {
    let (_broker, http) = start(1, &[("BROKER_HTTP_READ_TIMEOUT_MS", "500")]);
    let closed_within = |s: &mut TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return started.elapsed(),
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return started.elapsed()
                }
                Err(e) => panic!("not closed: {e}"),
            }
        }
    };
    // Slowloris: a head that starts and trickles.
    let mut slow = TcpStream::connect(http).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = slow.write_all(b"x-a: 1\r\n");
    assert!(closed_within(&mut slow) < Duration::from_secs(3));
    // Idle: connected, nothing sent.
    let mut idle = TcpStream::connect(http).unwrap();
    assert!(closed_within(&mut idle) < Duration::from_secs(3));
    // A keep-alive connection is served, then closes after idling.
    let mut kept = TcpStream::connect(http).unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 512];
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = kept.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut kept) < Duration::from_secs(3));
}

#[test]
fn table_reads_over_http_see_what_was_posted() {
    let (_broker, http) = start(2, &[]);
    let (status, t) =
        post_json(http, "/topics", &json!({"name": "users", "partitions": 3, "table": true}));
    assert_eq!((status, &t["config"]["table"]), (201, &json!(true)), "{t}");
    let recs = json!([
        {"key": "ann", "value": {"age": 30}},
        {"key": "bob", "value": {"age": 40}},
        {"key": "ann", "value": {"age": 31}, "headers": {"src": "web", "trace": null}},
    ]);
    let (status, produced) = post_json(http, "/topics/users/records", &recs);
    assert_eq!(status, 200, "{produced}");
    let ann = &produced["offsets"][2];
    let min = ann["offset"].as_u64().unwrap() + 1;
    let (status, got) = curl(http, "GET", &format!("/tables/users/ann?min_offset={min}"), &[]);
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["value"], json!({"age": 31}));
    assert_eq!(got["headers"], json!({"src": "web", "trace": null}), "a null header stays null");
    assert_eq!((&got["partition"], &got["offset"]), (&ann["partition"], &ann["offset"]));
    let (status, missing) = curl(http, "GET", "/tables/users/carol", &[]);
    assert_eq!((status, &missing["found"]), (404, &json!(false)));
    assert_eq!(post_json(http, "/topics", &json!({"name": "plain"})).0, 201);
    let (status, e) = curl(http, "GET", "/tables/plain/x", &[]);
    assert_eq!((status, &e["error"]["name"]), (400, &json!("NOT_A_TABLE")));
}

/// HTTP connections count toward `connections_per_shard_max` with the native ones: past
/// the limit a new HTTP or native connection is closed at once; one closing makes room.
#[test]
fn http_connections_count_toward_the_shards_connection_limit() {
    let (broker, http) = start(1, &[("BROKER_CONNECTIONS_PER_SHARD_MAX", "2")]);
    let served = |s: &mut TcpStream| {
        s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 512];
        matches!(s.read(&mut buf), Ok(n) if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"))
    };
    let mut a = TcpStream::connect(http).unwrap();
    let mut b = TcpStream::connect(http).unwrap();
    assert!(served(&mut a) && served(&mut b));
    let mut c = TcpStream::connect(http).unwrap();
    assert!(!served(&mut c), "a third connection past a limit of 2 is closed");
    let mut native = TcpStream::connect(broker.public).unwrap();
    native.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    let closed = match native.read(&mut buf) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    assert!(closed, "the native listener is full too: the connection is closed at once");
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut d = TcpStream::connect(http).unwrap();
        if served(&mut d) {
            break;
        }
        assert!(Instant::now() < deadline, "a closed connection's place was not given back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What one answer renders is bounded by `http.stream_buffer_bytes_max`, not by how many
/// records fit in it: a `GET .../records` page stops at that much text (at least one record)
/// and says where to go on, and a stream's chunk too — each event's id names every partition,
/// so tiny records of a topic with many partitions used to render into many times the bytes
/// fetched (one chunk of ~300 KiB here).
#[test]
fn answers_render_at_most_the_stream_buffer_and_go_on_from_there() {
    const BUFFER_BYTES: usize = 65_536;
    let (broker, http) = start(1, &[("BROKER_HTTP_STREAM_BUFFER_BYTES_MAX", "65536")]);
    let mut native = broker.connect();
    create_topic(&mut native, "wide", 200);
    // Partition 0: 20 records of 10 KB; before, one page of limit 100 carried all 20.
    let value = vec![b'x'; 10_000];
    for _ in 0..20 {
        let mut b = wire::BatchBuilder::new(1 << 20);
        b.append(1, None, Some(&value), &[]).unwrap();
        assert_eq!(
            produce(&mut native, "wide", 0, &b.finish().unwrap(), wire::AckLevel::Written).error,
            0
        );
    }
    let mut next = 0u64;
    let mut pages = 0;
    while next < 20 {
        let (status, page) = curl(
            http,
            "GET",
            &format!("/topics/wide/records?partition=0&from={next}&limit=100"),
            &[],
        );
        assert_eq!(status, 200, "{page}");
        let recs = page["records"].as_array().unwrap();
        assert!(!recs.is_empty(), "every page makes progress");
        assert!(page.to_string().len() <= BUFFER_BYTES + 20_000, "a page stops at the buffer");
        assert_eq!(recs[0]["offset"].as_u64(), Some(next), "pages follow each other");
        next = page["next_offset"].as_u64().unwrap();
        assert_eq!(next, recs.last().unwrap()["offset"].as_u64().unwrap() + 1);
        pages += 1;
    }
    assert!(pages >= 3, "20 records of 10 KB take several 64 KiB pages, took {pages}");

    // One small record in each of partitions 1..200, read as a stream over raw HTTP/1.1:
    // each chunk is one poll's rendering.
    for p in 1..200u32 {
        let mut b = wire::BatchBuilder::new(1 << 16);
        b.append(1, None, Some(b"{}"), &[]).unwrap();
        assert_eq!(
            produce(&mut native, "wide", p, &b.finish().unwrap(), wire::AckLevel::Written).error,
            0
        );
    }
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /topics/wide/stream?from=earliest HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break; // end of the head
        }
    }
    let (mut offsets, mut largest_chunk) = (Vec::new(), 0usize);
    while offsets.len() < 219 {
        line.clear();
        r.read_line(&mut line).unwrap();
        let size = usize::from_str_radix(line.trim(), 16).expect("chunk size");
        let mut chunk = vec![0u8; size + 2];
        r.read_exact(&mut chunk).unwrap();
        largest_chunk = largest_chunk.max(size);
        for data in
            String::from_utf8(chunk).unwrap().lines().filter_map(|l| l.strip_prefix("data: "))
        {
            let v: Value = serde_json::from_str(data).unwrap();
            if v.get("offset").is_some() {
                offsets.push((v["partition"].as_u64().unwrap(), v["offset"].as_u64().unwrap()));
            }
        }
    }
    offsets.sort_unstable();
    let expected: Vec<(u64, u64)> =
        (0..20).map(|o| (0, o)).chain((1..200).map(|p| (p, 0))).collect();
    assert_eq!(offsets, expected, "every record exactly once");
    assert!(largest_chunk <= BUFFER_BYTES + 20_000, "a chunk of {largest_chunk} bytes");
}

/// A 1 MiB shard budget (`memory_bytes_per_shard`), a table topic `big` holding key `k`
/// with a 300 KiB value, and the path of a table read that needs it (`min_offset` past it).
fn start_with_a_big_table_value(env: &[(&str, &str)]) -> (Broker, SocketAddr, String) {
    let budget = (1u32 << 20).to_string();
    let mut all = vec![("BROKER_MEMORY_BYTES_PER_SHARD", budget.as_str())];
    all.extend_from_slice(env);
    let (broker, http) = start(1, &all);
    let (status, t) =
        post_json(http, "/topics", &json!({"name": "big", "partitions": 1, "table": true}));
    assert_eq!(status, 201, "{t}");
    // A 300 KiB value, posted from a file (too long for one command-line argument).
    let value = "v".repeat(300 << 10);
    let body = json!([{"key": "k", "value": value}]).to_string();
    let file = broker.data_dir.with_extension("table-body.json");
    std::fs::write(&file, body).unwrap();
    let data = format!("@{}", file.display());
    let (status, produced) = curl(
        http,
        "POST",
        "/topics/big/records",
        &["-H", "content-type: application/json", "--data-binary", &data],
    );
    assert_eq!(status, 200, "{produced}");
    let _ = std::fs::remove_file(file);
    let min = produced["offsets"][0]["offset"].as_u64().unwrap() + 1;
    (broker, http, format!("/tables/big/k?min_offset={min}"))
}

/// A native client that declares a 900 KiB frame and sends 600 KiB of it: its reader holds
/// (twice what arrived, up to the frame) all but ~100 KiB of the 1 MiB budget until the
/// frame ends (the connection is dropped).
fn hold_most_of_the_budget(broker: &Broker) -> TcpStream {
    let header = wire::FrameHeader {
        version: 1,
        api_key: wire::ApiKey::Produce.as_u16(),
        flags: 0,
        correlation_id: 1,
        body_len: 900 << 10,
    };
    let mut stalled = TcpStream::connect(broker.public).unwrap();
    stalled.write_all(&header.encode()).unwrap();
    stalled.write_all(&vec![0u8; 600 << 10]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stalled
}

/// An HTTP table read takes room for what it reads from the shard's budget (`memory_bytes_per_shard`),
/// as a native reader does from its connection's: while that is held by others it waits
/// (before, the gateway's reads were bounded by nothing), and it goes on once room returns.
#[test]
fn an_http_table_read_waits_for_room_in_the_shards_budget() {
    let (broker, http, get) = start_with_a_big_table_value(&[]);
    assert_eq!(curl(http, "GET", &get, &[]).0, 200, "read with the budget free");
    let stalled = hold_most_of_the_budget(&broker);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(curl(http, "GET", &get, &[]));
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "a read needing 300 KiB answered while the budget had ~100 KiB of room"
    );
    drop(stalled);
    let (status, got) =
        rx.recv_timeout(Duration::from_secs(20)).expect("answered once room returned");
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["value"].as_str().map(str::len), Some(300 << 10));
}

/// A read that finds no room waits at most `http.memory_wait_ms`, then is refused with 429
/// `RESOURCE_LIMIT` and `Retry-After` (before, it waited as long as others held the room,
/// and its client with it); once room returns, the same reads answer.
#[test]
fn an_http_read_without_room_is_refused_with_429_after_memory_wait_ms() {
    let (broker, http, get) = start_with_a_big_table_value(&[
        ("BROKER_HTTP_MEMORY_WAIT_MS", "1000"),
        ("BROKER_HTTP_STREAM_BUFFER_BYTES_MAX", "131072"),
    ]);
    // `GET .../records` holds twice the stream buffer (256 KiB) for its fetch and text.
    let records = "/topics/big/records?from=earliest&limit=1";
    let stalled = hold_most_of_the_budget(&broker);
    for path in [get.as_str(), records] {
        let started = Instant::now();
        let out = Command::new("curl")
            .args(["-s", "-S", "-i", "--max-time", "120"])
            .arg(format!("http://{http}{path}"))
            .output()
            .expect("run curl");
        let took = started.elapsed();
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(text.starts_with("http/1.1 429"), "{path}: {text}");
        assert!(text.contains("retry-after: 1"), "{path}: {text}");
        assert!(text.contains("resource_limit"), "{path}: {text}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(10),
            "{path}: refused after {took:?}, not after the 1 s wait"
        );
    }
    drop(stalled);
    std::thread::sleep(Duration::from_millis(500));
    let (status, got) = curl(http, "GET", &get, &[]);
    assert_eq!(status, 200, "{got}");
    let (status, got) = curl(http, "GET", records, &[]);
    assert_eq!(status, 200, "{got}");
    // A read-your-writes wait longer than the memory wait still ends in its own 504.
    let far = "/tables/big/k?min_offset=1000000&wait_ms=1500";
    let started = Instant::now();
    let (status, got) = curl(http, "GET", far, &[]);
    assert_eq!((status, got["error"]["name"].as_str()), (504, Some("TIMEOUT")), "{got}");
    assert!(started.elapsed() >= Duration::from_millis(1400), "{:?}", started.elapsed());
}

/// A compacted topic (created over HTTP: `compact` and `delete_retention_ms` were refused as
/// unknown fields before) whose cleaned segments hold only empty batches: reads over HTTP
/// go past them. Before, GET records answered no record and the same `next_offset` for ever
/// and a stream fetched the empty batch again and again without sending anything (no record
/// moved its position; a native consumer moves by the batch's end).
#[test]
fn http_reads_go_past_batches_compaction_emptied() {
    let (_broker, http) = start(
        1,
        &[("BROKER_RETENTION_CHECK_MS", "100"), ("BROKER_CLEANER_DIRTY_PERCENT_MIN", "0")],
    );
    let topic = json!({"name": "kv", "compact": true, "delete_retention_ms": 1,
        "segment_bytes_max": 4096});
    let (status, created) = post_json(http, "/topics", &topic);
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["config"]["compact"], json!(true), "{created}");
    // One key overwritten in many batches (one per POST): cleaning leaves its last record.
    let filler = "x".repeat(300);
    for i in 0..60 {
        let rec = json!([{"key": "k", "value": {"i": i, "filler": filler}}]);
        assert_eq!(post_json(http, "/topics/kv/records", &rec).0, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, page) = curl(http, "GET", "/topics/kv/records?partition=0&from=0", &[]);
        assert_eq!(status, 200, "{page}");
        let records = page["records"].as_array().unwrap();
        // Compacted: the first records are gone, so the answer starts past them.
        if records.first().is_some_and(|r| r["offset"].as_u64().unwrap() > 0) {
            // Followed to the end: the last value is there.
            let mut next = page["next_offset"].as_u64().unwrap();
            let mut last = records.last().unwrap()["value"]["i"].as_u64().unwrap();
            while next < 60 {
                let path = format!("/topics/kv/records?partition=0&from={next}");
                let (_, page) = curl(http, "GET", &path, &[]);
                let n = page["next_offset"].as_u64().unwrap();
                assert!(n > next, "GET records moves on: {page}");
                if let Some(r) = page["records"].as_array().unwrap().last() {
                    last = r["value"]["i"].as_u64().unwrap();
                }
                next = n;
            }
            assert_eq!(last, 59);
            break;
        }
        assert!(Instant::now() < deadline, "compaction never emptied the first batches: {page}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let sse = SseClient::open(http, "/topics/kv/stream?from=earliest", None);
    let (_, first) = sse.next_record();
    assert!(first["offset"].as_u64().unwrap() > 0, "{first}");
}

/// A JSON body of tiny records (`{}` is 3 bytes; each became a parsed tree node, an owned
/// record, 48+ bytes of batch, a frame copy and an answer object): a 4 MiB body made the
/// broker hold ~1 GB. Now the body is read one record at a time into the batches, a request
/// has at most `http.produce_records_max` records, and the answer is rendered as text.
#[test]
fn a_body_of_tiny_records_is_bounded_in_count_and_memory() {
    let (broker, http) = start(1, &[("BROKER_HTTP_PRODUCE_RECORDS_MAX", "50000")]);
    let (status, created) = post_json(http, "/topics", &json!({"name": "tiny", "partitions": 2}));
    assert_eq!(status, 201, "{created}");
    let dir = tempfile::tempdir().unwrap();
    let body_of = |records: usize| {
        let mut body = String::from("[");
        for i in 0..records {
            body.push_str(if i == 0 { "{}" } else { ",{}" });
        }
        body.push(']');
        let path = dir.path().join(format!("{records}.json"));
        std::fs::write(&path, body).unwrap();
        format!("@{}", path.display())
    };
    let post = |records: usize| {
        let data = body_of(records);
        curl(
            http,
            "POST",
            "/topics/tiny/records",
            &["-H", "content-type: application/json", "--data-binary", &data],
        )
    };
    let before = broker.status_bytes("VmHWM");
    let (status, refused) = post((4 << 20) / 3 - 1);
    let text: String = refused.to_string().chars().take(300).collect();
    assert_eq!(status, 413, "{text}");
    assert_eq!(refused["error"]["name"], "FRAME_TOO_LARGE", "{text}");
    assert!(text.contains("produce_records_max"), "{text}");
    let grown = broker.status_bytes("VmHWM").saturating_sub(before);
    eprintln!("peak resident memory grew by {} MiB", grown >> 20);
    assert!(grown < 48 << 20, "peak resident memory grew by {} MiB", grown >> 20);

    // Within the limit: every record's partition and offset, in order.
    let (status, answer) = post(50_000);
    assert_eq!(status, 200);
    let offsets = answer["offsets"].as_array().unwrap();
    assert_eq!(offsets.len(), 50_000);
    assert_eq!(offsets[0], json!({"partition": offsets[0]["partition"], "offset": 0}));
    assert_eq!(offsets[49_999]["offset"], json!(49_999), "one partition per request");
    let (_, page) =
        curl(http, "GET", "/topics/tiny/records?partition=0&from=earliest&limit=1", &[]);
    let (_, other) =
        curl(http, "GET", "/topics/tiny/records?partition=1&from=earliest&limit=1", &[]);
    let total =
        page["high_watermark"].as_u64().unwrap() + other["high_watermark"].as_u64().unwrap();
    assert_eq!(total, 50_000, "nothing of the refused body was written: {page} {other}");
}

/// A stored value that is JSON is shown as JSON by checking and copying its text: every
/// read parsed it into a tree first (a 12 MiB array of zeros: ~200 MB per `GET .../records`
/// and per SSE chunk). A pretty-printed value still renders on one `data:` line.
#[test]
fn a_big_json_value_is_rendered_without_a_tree() {
    let (broker, http) = start(1, &[]);
    let mut native = broker.connect();
    create_topic(&mut native, "big", 1);
    let zeros = format!("[{}0]", "0,".repeat(6 << 20));
    let pretty = "{\n  \"a\": [1,\n 2],\r\n\t\"b\": \"x y\"\n}";
    let mut b = wire::BatchBuilder::new(wire::constants::BATCH_BYTES_MAX as usize);
    b.append(0, Some(b"k"), Some(zeros.as_bytes()), &[]).unwrap();
    b.append(0, Some(b"p"), Some(pretty.as_bytes()), &[]).unwrap();
    assert_eq!(
        produce(&mut native, "big", 0, &b.finish().unwrap(), wire::AckLevel::Durable).error,
        0
    );
    let before = broker.status_bytes("VmHWM");
    let (status, page) = curl(http, "GET", "/topics/big/records?partition=0&from=0&limit=1", &[]);
    assert_eq!(status, 200);
    let grown = broker.status_bytes("VmHWM").saturating_sub(before);
    eprintln!("peak resident memory grew by {} MiB", grown >> 20);
    let value = page["records"][0]["value"].as_array().expect("the value as JSON");
    assert_eq!(value.len(), (6 << 20) + 1);
    assert!(grown < 100 << 20, "peak resident memory grew by {} MiB", grown >> 20);
    let sse = SseClient::open(http, "/topics/big/stream?from=1", None);
    let (_, record) = sse.next_record();
    assert_eq!(record["value"], json!({"a": [1, 2], "b": "x y"}));
}

/// What an answer renders stays held from the shard's budget until the client has read it
/// (a reader that does not read kept a `GET .../records` page of a 12 MiB record, 16 MiB of
/// base64, uncounted once hyper had it), and all of it comes back once read.
#[test]
fn an_unread_answer_stays_held_until_it_is_read() {
    let (broker, http) = start(1, &[("BROKER_METRICS_LISTEN", "127.0.0.1:0")]);
    let mut native = broker.connect();
    create_topic(&mut native, "big", 1);
    let value = vec![0xffu8; 12 << 20]; // not JSON: shown as base64
    let mut b = wire::BatchBuilder::new(wire::constants::BATCH_BYTES_MAX as usize);
    b.append(0, Some(b"k"), Some(&value), &[]).unwrap();
    assert_eq!(
        produce(&mut native, "big", 0, &b.finish().unwrap(), wire::AckLevel::Durable).error,
        0
    );
    let held = || broker.metric("broker_memory_held_bytes", 0).expect("metrics on");
    let mut s = TcpStream::connect(http).unwrap();
    s.write_all(b"GET /topics/big/records?partition=0&from=0&limit=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Not read: the kernel's buffers take a few MiB, hyper keeps the rest.
    let deadline = Instant::now() + Duration::from_secs(10);
    while held() < f64::from(12 << 20) {
        assert!(Instant::now() < deadline, "the answer is not held: {} bytes", held());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(held() >= f64::from(12 << 20), "still held while unread: {}", held());
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut answer = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    while !answer.ends_with(b"}") {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "the whole answer arrives");
        answer.extend_from_slice(&chunk[..n]);
    }
    assert!(answer.len() > 16 << 20, "{} bytes", answer.len());
    let deadline = Instant::now() + Duration::from_secs(10);
    while held() > 0.0 {
        assert!(Instant::now() < deadline, "room held after the answer was read: {}", held());
        std::thread::sleep(Duration::from_millis(50));
    }
}
