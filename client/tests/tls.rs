//! TLS on the native listener through the client library and `brokerctl`, against the real
//! broker binary with certificates made in the test (`integration_tests::certs`): produce
//! and consume over TLS on every shard's connection, mTLS (a client without a certificate is
//! refused, the principal is the certificate's CN), a plaintext client on a TLS port, and
//! certificate reload on SIGHUP without dropping connections.

use std::process::Command;
use std::time::{Duration, Instant};

use client::{Client, ClientConfig, ClientError, Consumer, Producer, ProducerConfig};
use integration_tests::certs::{broker_env, Ca};
use integration_tests::Broker;
use wire::{AckLevel, StartPosition, TopicConfig};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn start(shards: usize, env: &[(String, String)]) -> Broker {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Broker::start_with_env(shards, &env)
}

fn tls_config(ca: &Ca) -> ClientConfig {
    ClientConfig {
        tls_ca: Some(ca.cert.clone()),
        retries: 0,
        request_timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

fn topic(partitions: u32) -> TopicConfig {
    TopicConfig {
        partition_count: partitions,
        retention_ms: -1,
        retention_bytes: -1,
        ..Default::default()
    }
}

/// Produces `n` records to `name` (created with `partitions`), then reads every partition
/// back; returns the values read.
async fn round_trip(client: &Client, name: &str, partitions: u32, n: u32) -> Vec<String> {
    client.create_topic(name, topic(partitions)).await.unwrap();
    let producer = Producer::new(
        client.clone(),
        ProducerConfig { ack: AckLevel::Written, ..Default::default() },
    );
    let mut sent = Vec::new();
    for i in 0..n {
        let key = format!("k{i}");
        sent.push(
            producer.send(name, Some(key.as_bytes()), Some(&i.to_le_bytes()), &[]).await.unwrap(),
        );
    }
    producer.flush().await.unwrap();
    let mut per_partition = vec![0u64; partitions as usize];
    for f in sent {
        let (p, _) = f.await.unwrap();
        per_partition[p as usize] += 1;
    }
    let mut values = Vec::new();
    for (p, want) in per_partition.iter().enumerate() {
        let mut consumer =
            Consumer::subscribe(client, name, p as u32, StartPosition::Earliest, 1 << 20)
                .await
                .unwrap();
        let mut got = 0;
        while got < *want {
            let batch = tokio::time::timeout(Duration::from_secs(10), consumer.next_batch())
                .await
                .expect("records in time")
                .unwrap()
                .unwrap();
            for r in batch.records() {
                let v = u32::from_le_bytes(r.value().unwrap().try_into().unwrap());
                values.push(v.to_string());
                got += 1;
            }
        }
        consumer.close().await.unwrap();
    }
    values
}

#[test]
fn produce_and_consume_over_tls_on_every_shard() {
    let ca = Ca::new("tls-native");
    let server = ca.server("server", "localhost");
    let broker = start(2, &broker_env(&server, None));
    // By IP (the certificate carries 127.0.0.1) and by name with the shard connections
    // opened to IPs: both verify.
    let bootstraps = [broker.public.to_string(), format!("localhost:{}", broker.public.port())];
    for (i, bootstrap) in bootstraps.into_iter().enumerate() {
        let ca_path = ca.cert.clone();
        rt().block_on(async move {
            let config = ClientConfig { tls_ca: Some(ca_path), retries: 0, ..Default::default() };
            let client = Client::connect_with(&bootstrap, config).await.unwrap();
            let topic = format!("t{i}");
            let values = round_trip(&client, &topic, 4, 2_000).await;
            assert_eq!(values.len(), 2_000);
            let stats = client.stats().await.unwrap();
            assert!(stats.iter().map(|s| s.forwards_in).sum::<u64>() <= 4, "shard-aware over TLS");
        });
    }
    let log = broker.log_text();
    assert!(log.contains("TLS on every listener"), "{log}");
}

#[test]
fn a_wrong_ca_or_name_is_refused_by_the_client() {
    let ca = Ca::new("tls-real");
    let other = Ca::new("tls-other");
    let server = ca.server("server", "localhost");
    let broker = start(1, &broker_env(&server, None));
    let addr = broker.public.to_string();
    rt().block_on(async move {
        let e = Client::connect_with(&addr, tls_config(&other)).await.unwrap_err();
        assert!(matches!(e, ClientError::Tls(_)), "{e}");
        assert!(e.to_string().contains("handshake"), "{e}");
        let wrong_name =
            ClientConfig { tls_server_name: Some("broker.example.com".into()), ..tls_config(&ca) };
        let e = Client::connect_with(&addr, wrong_name).await.unwrap_err();
        assert!(matches!(e, ClientError::Tls(_)), "{e}");
        // The broker is unaffected: a correct client works.
        let client = Client::connect_with(&addr, tls_config(&ca)).await.unwrap();
        client.create_topic("ok", topic(1)).await.unwrap();
    });
}

#[test]
fn a_plaintext_client_on_a_tls_port_gets_a_clear_error_and_the_broker_serves_others() {
    let ca = Ca::new("tls-plain");
    let server = ca.server("server", "localhost");
    let mut env = broker_env(&server, None);
    env.push(("BROKER_METRICS_LISTEN".into(), "127.0.0.1:0".into()));
    let broker = start(1, &env);
    let addr = broker.public.to_string();
    rt().block_on(async move {
        let plain = ClientConfig { retries: 0, ..Default::default() };
        let e = Client::connect_with(&addr, plain).await.unwrap_err();
        assert!(e.to_string().contains("may require TLS"), "{e}");
        let client = Client::connect_with(&addr, tls_config(&ca)).await.unwrap();
        assert_eq!(round_trip(&client, "after-plain", 1, 10).await.len(), 10);
    });
    // The failed handshake is counted.
    let metrics = broker_metrics(&broker);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("broker_tls_handshakes_failed") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

fn broker_metrics(broker: &Broker) -> String {
    let ready = std::fs::read_to_string(broker.data_dir.with_extension("ready")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&ready).unwrap();
    let addr = v["metrics"].as_str().expect("metrics endpoint").to_string();
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn mtls_requires_a_client_certificate_and_names_the_principal() {
    let ca = Ca::new("tls-mtls");
    let server = ca.server("server", "localhost");
    let alice = ca.client("alice", "alice");
    let stranger_ca = Ca::new("tls-stranger");
    let mallory = stranger_ca.client("mallory", "mallory");
    let mut env = broker_env(&server, Some(&ca.cert));
    env.push(("RUST_LOG".into(), "info,broker::tls=debug".into()));
    let broker = start(1, &env);
    let addr = broker.public.to_string();
    let (alice_cert, alice_key) = (alice.cert.clone(), alice.key.clone());
    rt().block_on(async move {
        // No certificate: refused (TLS 1.3 reports it at the first read, so the handshake
        // request fails).
        let e = Client::connect_with(&addr, tls_config(&ca)).await.unwrap_err();
        assert!(!matches!(e, ClientError::Broker { .. }), "{e}");
        // A certificate from another CA: refused.
        let config = ClientConfig {
            tls_cert: Some(mallory.cert.clone()),
            tls_key: Some(mallory.key.clone()),
            ..tls_config(&ca)
        };
        assert!(Client::connect_with(&addr, config).await.is_err());
        // Alice's certificate: served.
        let config = ClientConfig {
            tls_cert: Some(alice_cert),
            tls_key: Some(alice_key),
            ..tls_config(&ca)
        };
        let client = Client::connect_with(&addr, config).await.unwrap();
        assert_eq!(round_trip(&client, "mtls", 1, 10).await.len(), 10);
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = broker.log_text();
        if log.contains("TLS connection established") && log.contains("principal=\"alice\"")
            || log.contains("principal=alice")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no principal in the log:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_reloads_the_certificate_and_open_connections_keep_working() {
    let old_ca = Ca::new("tls-old");
    let new_ca = Ca::new("tls-new");
    let server = old_ca.server("server", "localhost");
    let broker = start(1, &broker_env(&server, None));
    let addr = broker.public.to_string();
    let pid = broker.pid();
    let runtime = rt();
    let _context = runtime.enter();
    let old_client = runtime.block_on(async {
        let c = Client::connect_with(&addr, tls_config(&old_ca)).await.unwrap();
        c.create_topic("reload", topic(1)).await.unwrap();
        c
    });
    let producer = Producer::new(
        old_client.clone(),
        ProducerConfig { ack: AckLevel::Written, ..Default::default() },
    );
    runtime.block_on(async {
        producer.send("reload", None, Some(b"before"), &[]).await.unwrap().await.unwrap();
    });

    // A broken file first: the reload fails, the old certificate stays.
    std::fs::write(&server.cert, "garbage\n").unwrap();
    sighup(pid);
    wait_for_log(&broker, "TLS reload failed");
    runtime.block_on(async {
        Client::connect_with(&addr, tls_config(&old_ca))
            .await
            .expect("old certificate still served");
    });

    // Replace the files with a certificate from the new CA, then SIGHUP.
    let replacement = new_ca.server("server-2", "localhost");
    std::fs::copy(&replacement.cert, &server.cert).unwrap();
    std::fs::copy(&replacement.key, &server.key).unwrap();
    sighup(pid);
    wait_for_log(&broker, "TLS certificate reloaded");
    runtime.block_on(async {
        // New connections see the new certificate: the old CA no longer verifies it...
        let e = Client::connect_with(&addr, tls_config(&old_ca)).await.unwrap_err();
        assert!(matches!(e, ClientError::Tls(_)), "{e}");
        // ... the new one does.
        let fresh = Client::connect_with(&addr, tls_config(&new_ca)).await.unwrap();
        assert_eq!(fresh.partition_count("reload").await.unwrap(), 1);
        // The connection opened before the reload still works.
        producer.send("reload", None, Some(b"after"), &[]).await.unwrap().await.unwrap();
        let mut consumer =
            Consumer::subscribe(&old_client, "reload", 0, StartPosition::Earliest, 1 << 20)
                .await
                .unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            let batch = tokio::time::timeout(Duration::from_secs(10), consumer.next_batch())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            got.extend(batch.records().map(|r| r.value().unwrap().to_vec()));
        }
        assert_eq!(got, [b"before".to_vec(), b"after".to_vec()]);
    });
}

fn sighup(pid: u32) {
    let ok = Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill -HUP {pid}");
}

fn wait_for_log(broker: &Broker, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !broker.log_text().contains(text) {
        assert!(Instant::now() < deadline, "{text:?} not logged:\n{}", broker.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn brokerctl_speaks_tls() {
    let ca = Ca::new("tls-ctl");
    let server = ca.server("server", "localhost");
    let broker = start(1, &broker_env(&server, None));
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_brokerctl"))
            .args(args)
            .env("BROKER_ADDR", format!("localhost:{}", broker.public.port()))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ca_path = ca.cert.display().to_string();
    let (ok, out, err) =
        run(&["--tls-ca", &ca_path, "topic", "create", "ctl", "--partitions", "1"]);
    assert!(ok, "{err}");
    assert!(out.contains("created ctl"), "{out}");
    let (ok, _, err) = run(&["topic", "list"]);
    assert!(!ok && err.contains("TLS"), "plaintext brokerctl says what to do: {err}");
}

#[test]
fn megabytes_stream_both_ways_over_tls_without_stalling() {
    // Large pushes fill the socket again and again: every encrypted byte must still leave
    // (a write that finds the socket full keeps bytes in the TLS session until a flush).
    let ca = Ca::new("tls-bulk");
    let server = ca.server("server", "localhost");
    let broker = start(1, &broker_env(&server, None));
    let addr = broker.public.to_string();
    rt().block_on(async move {
        let client = Client::connect_with(&addr, tls_config(&ca)).await.unwrap();
        client.create_topic("bulk", topic(1)).await.unwrap();
        let producer = Producer::new(
            client.clone(),
            ProducerConfig { ack: AckLevel::Written, ..Default::default() },
        );
        let value = vec![0x5au8; 16 << 10];
        let n = 1_000u64; // 16 MiB
        let mut acks = Vec::new();
        for _ in 0..n {
            acks.push(producer.send("bulk", None, Some(&value), &[]).await.unwrap());
        }
        producer.flush().await.unwrap();
        for a in acks {
            a.await.unwrap();
        }
        let mut consumer =
            Consumer::subscribe(&client, "bulk", 0, StartPosition::Earliest, 8 << 20)
                .await
                .unwrap();
        let mut got = 0u64;
        while got < n {
            let batch = tokio::time::timeout(Duration::from_secs(20), consumer.next_batch())
                .await
                .expect("pushes keep coming")
                .unwrap()
                .unwrap();
            for r in batch.records() {
                assert_eq!(r.value().unwrap().len(), value.len());
                got += 1;
            }
        }
        consumer.close().await.unwrap();
    });
}
