//! TLS on the real broker binary with other people's TLS stacks: `openssl s_client` (TLS 1.3
//! only on the native listener, 1.2 also on Kafka), `curl` over HTTPS to the gateway, `kcat`
//! with `security.protocol=SSL` on the Kafka listener; a plaintext client or a silent one on
//! a TLS port is cut off without hurting anyone else; and secure by default (a non-loopback
//! listener without TLS refuses to start). Certificates are made in the test (rcgen,
//! `integration_tests::certs`). The native client library's TLS tests are in
//! `client/tests/tls.rs`.
//!
//! Tools (installed by `.ci/run`): openssl, curl, kcat. A missing one fails the test and
//! says how to install it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::certs::{broker_env, Ca, Issued};
use integration_tests::{broker_binary, Broker};
use serde_json::{json, Value};

/// A TLS broker with the HTTP gateway and the Kafka listener on ephemeral ports.
struct TlsBroker {
    broker: Broker,
    http: SocketAddr,
    kafka: SocketAddr,
    ca: Ca,
    _server: Issued,
}

fn start(extra: &[(&str, &str)]) -> TlsBroker {
    start_with(extra, false)
}

/// [`start`], with `client_certificates`: clients must present one signed by the same CA.
fn start_with(extra: &[(&str, &str)], client_certificates: bool) -> TlsBroker {
    let ca = Ca::new("tls-it");
    let server = ca.server("server", "localhost");
    let mut env = broker_env(&server, client_certificates.then_some(ca.cert.as_path()));
    for (k, v) in [
        ("BROKER_HTTP", "127.0.0.1:0"),
        ("BROKER_KAFKA_LISTEN", "127.0.0.1:0"),
        ("BROKER_METRICS_LISTEN", "127.0.0.1:0"),
    ]
    .iter()
    .chain(extra)
    {
        env.push((k.to_string(), v.to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let broker = Broker::start_with_env(1, &env);
    let ready = std::fs::read_to_string(broker.data_dir.with_extension("ready")).expect("ready");
    let v: Value = serde_json::from_str(&ready).expect("ready json");
    let addr = |k: &str| v[k].as_str().expect(k).parse::<SocketAddr>().expect("addr");
    TlsBroker { http: addr("http"), kafka: addr("kafka"), broker, ca, _server: server }
}

/// Fails loudly when a tool the test needs is not installed.
fn require(cmd: &str, args: &[&str], install: &str) {
    let ok = Command::new(cmd).args(args).output().is_ok_and(|o| o.status.success());
    assert!(ok, "{cmd} is not installed (needed by this test): {install}");
}

/// `openssl s_client` against `addr` with `version` (e.g. `-tls1_3`): (handshake ok, output).
fn s_client(addr: SocketAddr, ca: &Ca, version: &str) -> (bool, String) {
    require("openssl", &["version"], "apt-get install openssl");
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), version, "-brief"])
        .args(["-servername", "localhost", "-verify_return_error", "-CAfile"])
        .arg(&ca.cert)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && text.contains("Protocol version"), text)
}

#[test]
fn openssl_negotiates_tls13_on_native_and_http_and_tls12_only_on_kafka() {
    let b = start(&[]);
    let native = b.broker.public;
    for addr in [native, b.broker.shards[0], b.http, b.kafka] {
        let (ok, out) = s_client(addr, &b.ca, "-tls1_3");
        assert!(ok && out.contains("Protocol version: TLSv1.3"), "{addr}: {out}");
        assert!(out.contains("Verification: OK"), "{addr}: {out}");
    }
    for addr in [native, b.http] {
        let (ok, out) = s_client(addr, &b.ca, "-tls1_2");
        assert!(!ok, "TLS 1.2 must be refused on {addr}: {out}");
    }
    let (ok, out) = s_client(b.kafka, &b.ca, "-tls1_2");
    assert!(ok && out.contains("Protocol version: TLSv1.2"), "kafka allows TLS 1.2: {out}");
}

/// curl over HTTPS: (status, JSON body).
fn curl(b: &TlsBroker, method: &str, path: &str, extra: &[&str]) -> (u16, Value) {
    require("curl", &["--version"], "apt-get install curl");
    let out = Command::new("curl")
        .args(["-s", "-S", "-X", method, "-o", "-", "-w", "\n%{http_code}", "--max-time", "30"])
        .arg("--cacert")
        .arg(&b.ca.cert)
        .args(extra)
        .arg(format!("https://localhost:{}{path}", b.http.port()))
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let (body, status) = text.rsplit_once('\n').expect("status line");
    let json = if body.is_empty() { Value::Null } else { serde_json::from_str(body).expect(body) };
    (status.parse().expect("status"), json)
}

fn post_json(b: &TlsBroker, path: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    curl(b, "POST", path, &["-H", "content-type: application/json", "--data-binary", &body])
}

#[test]
fn curl_over_https_creates_produces_and_reads() {
    let b = start(&[]);
    let (status, created) = post_json(&b, "/topics", &json!({"name": "https", "partitions": 1}));
    assert_eq!(status, 201, "{created}");
    let records = json!([{"key": "a", "value": {"n": 1}}, {"key": "b", "value": "two"}]);
    let (status, resp) = post_json(&b, "/topics/https/records?acks=durable", &records);
    assert_eq!(status, 200, "{resp}");
    let (status, read) = curl(&b, "GET", "/topics/https/records?partition=0&from=earliest", &[]);
    assert_eq!(status, 200, "{read}");
    let values: Vec<&Value> =
        read["records"].as_array().expect("records").iter().map(|r| &r["value"]).collect();
    assert_eq!(values, [&json!({"n": 1}), &json!("two")]);
    // Plain HTTP to the HTTPS port gets no answer (the handshake fails), and the gateway
    // keeps serving.
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", &format!("http://127.0.0.1:{}/health", b.http.port())])
        .output()
        .expect("curl");
    assert!(!out.status.success(), "plain HTTP on the TLS port must fail");
    assert_eq!(curl(&b, "GET", "/health", &[]).0, 200);
}

#[test]
fn kcat_over_ssl_produces_and_consumes() {
    require("kcat", &["-V"], "apt-get install kcat");
    let b = start(&[]);
    assert_eq!(post_json(&b, "/topics", &json!({"name": "kssl", "partitions": 1})).0, 201);
    let kafka = b.kafka.to_string();
    let ca = b.ca.cert.display().to_string();
    let ssl = ["-X", "security.protocol=SSL", "-X"];
    let ca_arg = format!("ssl.ca.location={ca}");
    let mut producer = Command::new("kcat")
        .args(["-b", &kafka])
        .args(ssl)
        .arg(&ca_arg)
        .args(["-t", "kssl", "-p", "0", "-P", "-K:"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat");
    producer.stdin.take().expect("stdin").write_all(b"k1:one\nk2:two\n").expect("write");
    assert!(producer.wait().expect("kcat producer").success());
    let out = Command::new("kcat")
        .args(["-b", &kafka])
        .args(ssl)
        .arg(&ca_arg)
        .args(["-t", "kssl", "-p", "0", "-C", "-o", "beginning", "-e", "-f", "%k|%s\n"])
        .output()
        .expect("kcat consumer");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text, "k1|one\nk2|two\n");
}

/// Reads until EOF or error, within `within`; returns what came and how long it took.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return (got, started.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn plaintext_and_silent_clients_on_tls_ports_are_cut_off_and_others_are_served() {
    let b = start(&[("BROKER_TLS_HANDSHAKE_TIMEOUT_MS", "500")]);
    // A native frame on the TLS port: an alert at most, then the connection closes.
    let mut plain = TcpStream::connect(b.broker.public).expect("connect");
    let hello = wire::encode_request(
        1,
        &wire::HandshakeRequest {
            client_id: "plain".into(),
            client_version: "0".into(),
            protocol_version_min: wire::constants::PROTOCOL_VERSION_MIN,
            protocol_version_max: wire::constants::PROTOCOL_VERSION,
        },
    )
    .expect("encode");
    plain.write_all(&hello).expect("write");
    let (got, took) = read_until_closed(&mut plain, Duration::from_secs(5));
    assert!(took < Duration::from_secs(3), "closed promptly ({took:?})");
    assert!(got.is_empty() || got[0] == 0x15, "nothing but a TLS alert: {got:?}");
    // A client that connects and says nothing is dropped at the handshake timeout.
    let mut silent = TcpStream::connect(b.kafka).expect("connect");
    let (_, took) = read_until_closed(&mut silent, Duration::from_secs(5));
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(3), "{took:?}");
    // Many at once hold nothing the broker needs: it keeps serving TLS clients.
    let idle: Vec<TcpStream> =
        (0..50).map(|_| TcpStream::connect(b.broker.public).expect("connect")).collect();
    let (ok, out) = s_client(b.broker.public, &b.ca, "-tls1_3");
    assert!(ok, "{out}");
    drop(idle);
    let metrics = metrics(&b);
    let failed: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("broker_tls_handshakes_failed"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(failed >= 2.0, "failed handshakes are counted:\n{metrics}");
    assert!(!b.broker.log_text().contains("panicked"));
}

fn metrics(b: &TlsBroker) -> String {
    let ready = std::fs::read_to_string(b.broker.data_dir.with_extension("ready")).expect("ready");
    let v: Value = serde_json::from_str(&ready).expect("json");
    let mut s = TcpStream::connect(v["metrics"].as_str().expect("metrics")).expect("connect");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// Runs the broker binary with `args` and a fresh data dir; waits for it to exit (or, with
/// `ready`, to be ready, then stops it). Returns (exited with success or became ready,
/// stderr).
fn run_broker(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ready = dir.path().join("ready");
    let log = dir.path().join("log");
    let mut child = Command::new(broker_binary())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--ready-file")
        .arg(&ready)
        .args(["--shards", "1", "--shard-port-base", "0", "--metrics", "off"])
        .args(args)
        .envs(env.iter().copied())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn broker");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ok = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.success();
        }
        if ready.exists() {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        assert!(Instant::now() < deadline, "broker neither ready nor exited");
        std::thread::sleep(Duration::from_millis(20));
    };
    (ok, std::fs::read_to_string(&log).unwrap_or_default())
}

#[test]
fn secure_by_default_refuses_exposed_plaintext_listeners() {
    // Every listener counts: native, HTTP, Kafka.
    for (args, listener) in [
        (vec!["--listen", "0.0.0.0:0"], "native"),
        (vec!["--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"], "http"),
        (vec!["--listen", "127.0.0.1:0", "--kafka-listen", "0.0.0.0:0"], "kafka"),
    ] {
        let (ok, err) = run_broker(&args, &[]);
        assert!(!ok, "{listener}: must refuse to start:\n{err}");
        assert!(err.contains(&format!("({listener})")), "{err}");
        for needed in ["--tls-cert FILE --tls-key FILE", "--auth required", "--insecure"] {
            assert!(err.contains(needed), "{listener}: the error names {needed}:\n{err}");
        }
    }
    // Loopback stays open; --insecure (or BROKER_INSECURE) opts out.
    assert!(run_broker(&["--listen", "127.0.0.1:0"], &[]).0);
    let (ok, err) = run_broker(&["--listen", "0.0.0.0:0", "--insecure"], &[]);
    assert!(ok && err.contains("--insecure"), "{err}");
    assert!(run_broker(&["--listen", "0.0.0.0:0"], &[("BROKER_INSECURE", "true")]).0);
    // TLS alone is not enough: clients must authenticate too (a password or a certificate).
    let ca = Ca::new("tls-exposed");
    let server = ca.server("server", "localhost");
    let (cert, key) = (server.cert.display().to_string(), server.key.display().to_string());
    let tls = ["--listen", "0.0.0.0:0", "--tls-cert", &cert, "--tls-key", &key];
    let (ok, err) = run_broker(&tls, &[]);
    assert!(!ok && err.contains("without authentication"), "{err}");
    let (ok, err) = run_broker(&[&tls[..], &["--auth", "required"]].concat(), &[]);
    assert!(ok, "{err}");
    let client_ca = ca.cert.display().to_string();
    let (ok, err) = run_broker(&[&tls[..], &["--tls-client-ca", &client_ca]].concat(), &[]);
    assert!(ok, "{err}");
    // Authentication alone is not enough either: passwords would cross the network in clear.
    let (ok, err) = run_broker(&["--listen", "0.0.0.0:0", "--auth", "required"], &[]);
    assert!(!ok && err.contains("without TLS"), "{err}");
    // A key that does not belong to the certificate, or a missing file, is a clear error.
    let other = ca.server("other", "localhost");
    let other_key = other.key.display().to_string();
    let (ok, err) = run_broker(&["--tls-cert", &cert, "--tls-key", &other_key], &[]);
    assert!(!ok && err.contains("TLS"), "{err}");
    let (ok, err) = run_broker(&["--tls-cert", "/nonexistent.pem", "--tls-key", &key], &[]);
    assert!(!ok && err.contains("/nonexistent.pem"), "{err}");
}

#[test]
fn sighup_without_tls_is_logged_and_the_broker_keeps_running() {
    let mut b = Broker::start(1);
    let ok = Command::new("kill").args(["-HUP", &b.pid().to_string()]).status().expect("kill");
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.log_text().contains("nothing to reload") {
        assert!(Instant::now() < deadline, "SIGHUP not logged:\n{}", b.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    integration_tests::create_topic(&mut b.connect(), "still-up", 1);
    assert_eq!(b.stop(), Some(0), "a clean stop after SIGHUP");
}

#[test]
fn mtls_on_the_gateway_and_the_kafka_listener() {
    require("curl", &["--version"], "apt-get install curl");
    require("kcat", &["-V"], "apt-get install kcat");
    let b = start_with(&[], true);
    let client = b.ca.client("client", "gateway-user");
    let (cert, key) = (client.cert.display().to_string(), client.key.display().to_string());
    // Without a certificate the handshake fails: curl gets no HTTP answer at all.
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--cacert"])
        .arg(&b.ca.cert)
        .arg(format!("https://localhost:{}/health", b.http.port()))
        .output()
        .expect("curl");
    assert!(!out.status.success(), "no client certificate: refused");
    // With one, served.
    let (status, _) = curl(&b, "GET", "/health", &["--cert", &cert, "--key", &key]);
    assert_eq!(status, 200);
    let body = json!({"name": "mtls", "partitions": 1}).to_string();
    let create = ["--cert", &cert, "--key", &key, "-H", "content-type: application/json"];
    let (status, _) =
        curl(&b, "POST", "/topics", &[&create[..], &["--data-binary", &body]].concat());
    assert_eq!(status, 201);
    // kcat: refused without a certificate, served with one.
    let kafka = b.kafka.to_string();
    let ca = format!("ssl.ca.location={}", b.ca.cert.display());
    let meta = |with_cert: bool| {
        let mut cmd = Command::new("kcat");
        cmd.args(["-b", &kafka, "-X", "security.protocol=SSL", "-X", &ca, "-L", "-t", "mtls"]);
        cmd.args(["-m", "5"]);
        if with_cert {
            cmd.args(["-X", &format!("ssl.certificate.location={cert}")]);
            cmd.args(["-X", &format!("ssl.key.location={key}")]);
        }
        let out = cmd.output().expect("kcat");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, out) = meta(false);
    assert!(!ok || !out.contains("topic \"mtls\""), "no client certificate: {out}");
    let (ok, out) = meta(true);
    assert!(ok && out.contains("topic \"mtls\" with 1 partitions"), "{out}");
}
