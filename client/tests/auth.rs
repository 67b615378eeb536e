//! Authentication and ACLs against the real broker binary (issue 25): `broker user add` with
//! the broker stopped, SCRAM over the native protocol, refusals before authentication, wrong
//! passwords, revoked users, ACL allow and deny for every api group, filtered metadata, users
//! and ACLs through kill -9, HTTP basic auth (curl) and Kafka SASL/SCRAM (kcat).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use client::{Client, ClientConfig, ClientError, Credentials, GroupConfig, GroupConsumer};
use integration_tests::certs::{broker_env, Ca, Issued};
use integration_tests::{broker_binary, Broker, Conn};
use wire::constants::FLAG_ERROR;
use wire::*;

const ADMIN_PW: &str = "admin-secret";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// `broker user add NAME --data-dir DIR [--superuser]` with `password` on stdin.
fn user_add_offline(dir: &Path, name: &str, password: &str, superuser: bool) -> (bool, String) {
    let mut cmd = Command::new(broker_binary());
    cmd.args(["user", "add", name, "--data-dir"]).arg(dir);
    if superuser {
        cmd.arg("--superuser");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run broker user add");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A broker whose data directory got a superuser `admin` before it started, with TLS on
/// every listener (native, Kafka, HTTP gateway) and, with `mtls`, client certificates
/// required; returns the CA that signed the server's certificate.
fn tls_broker_with_admin(mtls: bool) -> (tempfile::TempDir, Broker, Ca, Issued) {
    let ca = Ca::new("auth-tls");
    let server = ca.server("server", "localhost");
    let env = broker_env(&server, mtls.then_some(ca.cert.as_path()));
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend([("BROKER_KAFKA_LISTEN", "127.0.0.1:0"), ("BROKER_HTTP", "127.0.0.1:0")]);
    let (dir, broker) = broker_with_admin(1, &env);
    (dir, broker, ca, server)
}

/// A broker whose data directory got a superuser `admin` before it started.
fn broker_with_admin(shards: usize, env: &[(&str, &str)]) -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, text) = user_add_offline(&data, "admin", ADMIN_PW, true);
    assert!(ok, "{text}");
    let mut all = vec![("BROKER_METRICS_LISTEN", "off")];
    all.extend_from_slice(env);
    let broker = Broker::start_on_dir_with_env(shards, data, &all);
    (dir, broker)
}

async fn client_as(b: &Broker, user: &str, password: &str) -> Result<Client, ClientError> {
    let config = ClientConfig {
        credentials: Some(Credentials::new(user, password)),
        retries: 0,
        ..Default::default()
    };
    Client::connect_with(&b.public.to_string(), config).await
}

/// A client over TLS (trusting `ca`), with a password and/or a client certificate.
async fn tls_client(
    b: &Broker,
    ca: &Ca,
    password: Option<(&str, &str)>,
    certificate: Option<&Issued>,
) -> Result<Client, ClientError> {
    let config = ClientConfig {
        credentials: password.map(|(user, pw)| Credentials::new(user, pw)),
        tls_ca: Some(ca.cert.clone()),
        tls_cert: certificate.map(|c| c.cert.clone()),
        tls_key: certificate.map(|c| c.key.clone()),
        retries: 0,
        ..Default::default()
    };
    Client::connect_with(&b.public.to_string(), config).await
}

fn code(r: Result<impl std::fmt::Debug, ClientError>) -> (ErrorCode, String) {
    match r {
        Err(ClientError::Broker { code, message, .. }) => (code, message),
        other => panic!("expected a broker error, got {other:?}"),
    }
}

/// The error frame `conn` gets for `req`.
fn error_of<T: Message>(conn: &mut Conn, req: &T) -> (ErrorCode, String) {
    let id = conn.send(req);
    let f = conn.wait(id);
    assert!(f.header.has_flag(FLAG_ERROR), "expected an error response");
    let e: ErrorBody = wire::decode_body(f.body()).unwrap();
    (ErrorCode::from_u16(e.code).unwrap(), e.message)
}

fn topic(partitions: u32) -> TopicConfig {
    TopicConfig {
        partition_count: partitions,
        retention_ms: -1,
        retention_bytes: -1,
        ..Default::default()
    }
}

fn batch(value: &str) -> Vec<u8> {
    let mut b = BatchBuilder::new(1 << 16);
    b.append(1, Some(b"k"), Some(value.as_bytes()), &[]).unwrap();
    b.finish().unwrap().to_vec()
}

fn acl(
    user: &str,
    resource: AclResourceKind,
    name: &str,
    op: AclOperation,
    deny: bool,
) -> AclBinding {
    AclBinding { principal: user.into(), resource, name: name.into(), operation: op, deny }
}

#[test]
fn nothing_before_authentication_wrong_passwords_are_refused_and_the_data_dir_is_locked() {
    let (_dir, broker) = broker_with_admin(2, &[]);
    // A running broker's data directory is locked: users are changed through brokerctl.
    let (ok, text) = user_add_offline(&broker.data_dir, "late", "pw", false);
    assert!(!ok && text.contains("locked"), "{text}");
    rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        admin.create_topic("secret-orders", topic(2)).await.unwrap();
    });
    // No credentials: every request but the handshake is refused, and nothing leaks.
    let mut conn = broker.connect();
    let hs: HandshakeResponse = conn.call(&HandshakeRequest {
        client_id: "anon".into(),
        client_version: "0".into(),
        protocol_version_min: wire::constants::PROTOCOL_VERSION_MIN,
        protocol_version_max: wire::constants::PROTOCOL_VERSION,
    });
    assert_eq!(hs.error, 0);
    for (c, m) in [
        error_of(&mut conn, &MetadataRequest { topics: vec![] }),
        error_of(&mut conn, &ListTopicsRequest { name_prefix: String::new() }),
        error_of(&mut conn, &DescribeTopicRequest { name: "secret-orders".into() }),
        error_of(&mut conn, &ListGroupsRequest { prefix: String::new() }),
        error_of(
            &mut conn,
            &SubscribeRequest {
                topic: "secret-orders".into(),
                subscription_id: 1,
                ..Default::default()
            },
        ),
    ] {
        assert_eq!(c, ErrorCode::AuthenticationRequired, "{m}");
        assert!(!m.contains("secret"), "{m}");
    }
    // PLAIN sends the password: refused on a plaintext connection.
    let (c, m) = error_of(&mut conn, &SaslHandshakeRequest { mechanism: "PLAIN".into() });
    assert_eq!(c, ErrorCode::UnsupportedSaslMechanism, "{m}");
    // A broken SCRAM message fails the authentication and closes the connection.
    let _: SaslHandshakeResponse =
        conn.call(&SaslHandshakeRequest { mechanism: "SCRAM-SHA-256".into() });
    let (c, _) = error_of(&mut conn, &SaslAuthenticateRequest { auth_bytes: b"garbage".to_vec() });
    assert_eq!(c, ErrorCode::AuthenticationFailed);
    conn.set_read_timeout(Some(Duration::from_secs(10)));
    assert!(conn.read_frame().is_none(), "the connection is closed after a failed authentication");

    rt().block_on(async {
        let (c, _) = code(Client::connect(&broker.public.to_string()).await);
        assert_eq!(c, ErrorCode::AuthenticationRequired);
        let (c, m) = code(client_as(&broker, "admin", "wrong").await);
        assert_eq!(c, ErrorCode::AuthenticationFailed, "{m}");
        // An unknown user fails the same way, at the same step.
        let (c, _) = code(client_as(&broker, "nobody", "wrong").await);
        assert_eq!(c, ErrorCode::AuthenticationFailed);
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        assert_eq!(admin.list_topics().await.unwrap().len(), 1);
    });
    assert!(!broker.log_text().contains("panicked"));
}

#[test]
fn failed_attempts_are_limited_per_source_address() {
    let (_dir, broker) = broker_with_admin(1, &[]);
    rt().block_on(async {
        for _ in 0..10 {
            let (c, _) = code(client_as(&broker, "admin", "wrong").await);
            assert_eq!(c, ErrorCode::AuthenticationFailed);
        }
        // Over the budget (10 per minute): even the right password is refused for a while.
        let (c, m) = code(client_as(&broker, "admin", ADMIN_PW).await);
        assert_eq!(c, ErrorCode::AuthenticationFailed);
        assert!(m.contains("too many failed authentications"), "{m}");
    });
}

#[test]
fn acls_decide_every_api_group_deny_wins_and_metadata_is_filtered() {
    let (_dir, broker) = broker_with_admin(2, &[]);
    rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        admin.create_topic("orders", topic(2)).await.unwrap();
        admin.create_topic("secret", topic(1)).await.unwrap();
        assert!(admin.upsert_user("alice", "alice-pw", false).await.unwrap());
        let alice = client_as(&broker, "alice", "alice-pw").await.unwrap();
        // Nothing granted: metadata is empty, every api group is refused.
        let visible = |md: std::sync::Arc<MetadataResponse>| -> Vec<String> {
            md.topics.iter().map(|t| t.name.clone()).filter(|n| !n.starts_with("__")).collect()
        };
        assert!(visible(alice.refresh_metadata().await.unwrap()).is_empty());
        assert!(alice.list_topics().await.unwrap().is_empty());
        let (c, m) = code(alice.produce_batches("orders", 0, &batch("x"), AckLevel::Durable).await);
        assert_eq!(c, ErrorCode::AuthorizationFailed);
        assert!(m.contains("write") && m.contains("orders"), "{m}");
        let (c, m) = code(alice.describe_topic("secret").await);
        assert_eq!(c, ErrorCode::AuthorizationFailed, "{m}");
        let (c, m) = code(alice.create_topic("alice-t", topic(1)).await);
        assert_eq!(c, ErrorCode::AuthorizationFailed);
        assert!(m.contains("create"), "{m}");
        let (c, _) = code(alice.delete_topic("secret").await);
        assert_eq!(c, ErrorCode::AuthorizationFailed);
        let (c, _) = code(alice.stats().await);
        assert_eq!(c, ErrorCode::AuthorizationFailed);
        let (c, _) = code(alice.list_users().await);
        assert_eq!(c, ErrorCode::AuthorizationFailed);
        let (c, _) = code(alice.upsert_user("mallory", "pw", true).await);
        assert_eq!(c, ErrorCode::AuthorizationFailed);
        let (c, _) = code(
            alice
                .create_acl(acl("alice", AclResourceKind::Cluster, "", AclOperation::All, false))
                .await,
        );
        assert_eq!(c, ErrorCode::AuthorizationFailed);

        // Write: produce works, reading does not; the topic shows in metadata (write implies
        // describe), the other one never.
        admin
            .create_acl(acl("alice", AclResourceKind::Topic, "orders", AclOperation::Write, false))
            .await
            .unwrap();
        let r = alice.produce_batches("orders", 0, &batch("a"), AckLevel::Durable).await.unwrap();
        assert_eq!(r.base_offset, 0);
        let names: Vec<String> = visible(alice.refresh_metadata().await.unwrap());
        assert_eq!(names, ["orders"]);
        // Changing a topic's settings needs Alter on it (Write is not enough).
        let retention = [("retention_ms".to_owned(), "60000".to_owned())];
        let (c, m) = code(alice.alter_topic_config("orders", &retention, false).await);
        assert_eq!(c, ErrorCode::AuthorizationFailed, "{m}");
        assert!(m.contains("alter") && m.contains("orders"), "{m}");
        admin
            .create_acl(acl("alice", AclResourceKind::Topic, "orders", AclOperation::Alter, false))
            .await
            .unwrap();
        let t = alice.alter_topic_config("orders", &retention, false).await.unwrap();
        assert_eq!(t.config.retention_ms, 60_000);
        let alter = acl("alice", AclResourceKind::Topic, "orders", AclOperation::Alter, false);
        assert!(admin.delete_acl(alter).await.unwrap());
        let (c, m) = code(alice.fetch("orders", 0, 0, 1 << 20, 0).await);
        assert_eq!(c, ErrorCode::AuthorizationFailed);
        assert!(m.contains("read") && m.contains("orders"), "{m}");
        // A denied long-poll (at the high watermark, 10 s wait) is refused at once: it does
        // not wait for data it may not read (`api/long_poll.rs`).
        let started = std::time::Instant::now();
        let (c, _) = code(alice.fetch("orders", 0, 1, 1 << 20, 10_000).await);
        assert_eq!(c, ErrorCode::AuthorizationFailed);
        assert!(started.elapsed() < Duration::from_secs(5), "waited {:?}", started.elapsed());
        // Table reads and key queries are reads too; list offsets needs describe (implied).
        let (c, m) = code(alice.table_get("orders", b"k", 0).await);
        assert_eq!(c, ErrorCode::AuthorizationFailed, "{m}");
        let (c, m) = code(alice.query_key("orders", b"k", 0, i64::MAX, 10).await);
        assert_eq!(c, ErrorCode::AuthorizationFailed, "{m}");
        alice.list_offsets("orders", OffsetSpec::Latest).await.unwrap();
        let mut sub = broker.connect();
        // (subscriptions are checked too; this raw connection is not even authenticated)
        let (c, _) = error_of(
            &mut sub,
            &SubscribeRequest { topic: "orders".into(), subscription_id: 1, ..Default::default() },
        );
        assert_eq!(c, ErrorCode::AuthenticationRequired);

        // Read by prefix: fetch works; a deny rule wins over it; removing the deny restores it.
        admin
            .create_acl(acl(
                "alice",
                AclResourceKind::TopicPrefix,
                "ord",
                AclOperation::Read,
                false,
            ))
            .await
            .unwrap();
        let f = alice.fetch("orders", 0, 0, 1 << 20, 0).await.unwrap();
        assert!(!f.batches.is_empty());
        let deny = acl("alice", AclResourceKind::Topic, "orders", AclOperation::Read, true);
        admin.create_acl(deny.clone()).await.unwrap();
        let (c, _) = code(alice.fetch("orders", 0, 0, 1 << 20, 0).await);
        assert_eq!(c, ErrorCode::AuthorizationFailed);
        assert!(admin.delete_acl(deny).await.unwrap());
        alice.fetch("orders", 0, 0, 1 << 20, 0).await.unwrap();

        // Groups: read on the group (and on its topics) is needed to join.
        let (c, m) = code(
            GroupConsumer::join(&alice, GroupConfig::new("g1", &["orders"])).await.map(|_| ()),
        );
        assert_eq!(c, ErrorCode::AuthorizationFailed);
        assert!(m.contains("group"), "{m}");
        admin
            .create_acl(acl("alice", AclResourceKind::Group, "g1", AclOperation::Read, false))
            .await
            .unwrap();
        let member =
            GroupConsumer::join(&alice, GroupConfig::new("g1", &["orders"])).await.unwrap();
        member.close().await.unwrap();
        // Deleting a group's offsets needs delete on the group (Kafka's DeleteGroups).
        admin.commit_offsets("g1", "", 0, &[("orders".into(), 0, 0)]).await.unwrap();
        let (c, m) = code(alice.delete_group("g1").await);
        assert_eq!(c, ErrorCode::AuthorizationFailed);
        assert!(m.contains("delete") && m.contains("g1"), "{m}");
        admin
            .create_acl(acl("alice", AclResourceKind::Group, "g1", AclOperation::Delete, false))
            .await
            .unwrap();
        assert_eq!(alice.delete_group("g1").await.unwrap(), [("orders".to_string(), 0)]);

        // Create on the cluster: any topic; delete still needs its own rule.
        admin
            .create_acl(acl("alice", AclResourceKind::Cluster, "", AclOperation::Create, false))
            .await
            .unwrap();
        alice.create_topic("alice-t", topic(1)).await.unwrap();
        let (c, _) = code(alice.delete_topic("alice-t").await);
        assert_eq!(c, ErrorCode::AuthorizationFailed);
        admin
            .create_acl(acl(
                "alice",
                AclResourceKind::TopicPrefix,
                "alice-",
                AclOperation::Delete,
                false,
            ))
            .await
            .unwrap();
        alice.delete_topic("alice-t").await.unwrap();

        let rules = admin.list_acls("alice").await.unwrap();
        assert_eq!(rules.len(), 6, "{rules:?}");
    });
    let log = broker.log_text();
    assert!(log.contains("audit") && log.contains("denied"), "audit lines: {log}");
}

#[test]
fn a_deleted_users_connections_are_refused_and_users_and_acls_survive_kill_9() {
    let (_dir, mut broker) = broker_with_admin(2, &[]);
    rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        admin.create_topic("t", topic(2)).await.unwrap();
        admin.upsert_user("alice", "pw-a", false).await.unwrap();
        admin.upsert_user("bob", "pw-b", false).await.unwrap();
        for user in ["alice", "bob"] {
            admin
                .create_acl(acl(user, AclResourceKind::Topic, "t", AclOperation::All, false))
                .await
                .unwrap();
        }
        let alice = client_as(&broker, "alice", "pw-a").await.unwrap();
        alice.produce_batches("t", 1, &batch("1"), AckLevel::Durable).await.unwrap();
        let mut sub =
            client::Consumer::subscribe(&alice, "t", 1, StartPosition::Offset(0), 1 << 20)
                .await
                .unwrap();
        assert!(sub.next_batch().await.unwrap().is_some());
        assert_eq!(admin.delete_user("alice").await.unwrap(), 1);
        // Her subscription ends (the connection closes within the revocation check's second)
        // although nothing more was asked on it.
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match sub.next_batch().await {
                    Ok(Some(_)) => continue,
                    other => return other.map(|_| ()),
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the revoked user's subscription kept running");
        // Her open connections (bootstrap and the shard's) are refused on the next request.
        let (c, m) = code(alice.produce_batches("t", 1, &batch("2"), AckLevel::Durable).await);
        assert_eq!(c, ErrorCode::AuthenticationFailed, "{m}");
        let (c, _) = code(alice.list_topics().await);
        assert_eq!(c, ErrorCode::AuthenticationFailed);
        let (c, _) = code(client_as(&broker, "alice", "pw-a").await);
        assert_eq!(c, ErrorCode::AuthenticationFailed);
        // A password change takes effect for new connections.
        admin.upsert_user("bob", "pw-b2", false).await.unwrap();
        assert!(client_as(&broker, "bob", "pw-b").await.is_err());
    });
    broker.kill();
    assert!(!broker.data_dir.join("security.json.tmp").exists());
    broker.restart();
    rt().block_on(async {
        let bob = client_as(&broker, "bob", "pw-b2").await.unwrap();
        bob.produce_batches("t", 0, &batch("3"), AckLevel::Durable).await.unwrap();
        assert!(client_as(&broker, "alice", "pw-a").await.is_err());
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        let users: Vec<String> =
            admin.list_users().await.unwrap().into_iter().map(|u| u.name).collect();
        assert_eq!(users, ["admin", "bob"]);
        assert_eq!(admin.list_acls("").await.unwrap().len(), 1);
    });
}

/// Runs a Python `script` with the Kafka listener's address as its argument; what it printed,
/// as JSON.
fn python_json(script: &str, kafka: &str) -> serde_json::Value {
    let out = Command::new("python3").args(["-c", script, kafka]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str::<serde_json::Value>(text.trim()).unwrap()
}

fn ready_address(b: &Broker, key: &str) -> SocketAddr {
    let ready = std::fs::read_to_string(b.data_dir.with_extension("ready")).expect("ready file");
    let v: serde_json::Value = serde_json::from_str(&ready).expect("ready json");
    v[key].as_str().unwrap_or_else(|| panic!("{key} in the ready file")).parse().unwrap()
}

fn curl(http: SocketAddr, path: &str, extra: &[&str]) -> (u16, String) {
    curl_url(&format!("http://{http}{path}"), extra)
}

/// curl `url` with `extra` arguments: (status, body).
fn curl_url(url: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "-o", "-", "-w", "\n%{http_code}", "--max-time", "30"])
        .args(extra)
        .arg(url)
        .output()
        .expect("run curl (apt-get install curl)");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_owned())
}

/// A produce to a topic the user may not write is refused from its head: the gateway used
/// to read (up to `http.body_bytes_max`, holding it from the shard's budget) and parse the
/// whole body before the native request's check refused it.
#[test]
fn an_http_produce_without_write_is_refused_before_its_body_is_read() {
    use std::io::{Read, Write};
    let (_dir, broker) = broker_with_admin(1, &[("BROKER_HTTP", "127.0.0.1:0")]);
    let http = ready_address(&broker, "http");
    rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        admin.create_topic("hidden", topic(1)).await.unwrap();
        admin.upsert_user("carol", "carol-pw", false).await.unwrap();
    });
    let mut s = std::net::TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The head only: the body (1 MB announced) never comes.
    s.write_all(
        b"POST /topics/hidden/records HTTP/1.1\r\nHost: x\r\n\
          Authorization: Basic Y2Fyb2w6Y2Fyb2wtcHc=\r\n\
          Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n",
    )
    .unwrap();
    let mut head = [0u8; 512];
    let n = s.read(&mut head).expect("an answer before the body (read_timeout_ms is 30 s)");
    let text = String::from_utf8_lossy(&head[..n]);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    let (status, body) = curl(
        http,
        "/topics/hidden/records",
        &["-u", "carol:carol-pw", "-H", "content-type: application/json", "-d", "[{}]"],
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("AUTHORIZATION_FAILED") && body.contains("write"), "{body}");
}

#[test]
fn http_basic_auth_and_acls_on_routes() {
    let (_dir, broker) = broker_with_admin(1, &[("BROKER_HTTP", "127.0.0.1:0")]);
    let http = ready_address(&broker, "http");
    rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        admin.create_topic("web", topic(1)).await.unwrap();
        admin.create_topic("hidden", topic(1)).await.unwrap();
        admin.upsert_user("carol", "carol-pw", false).await.unwrap();
        admin
            .create_acl(acl("carol", AclResourceKind::Topic, "web", AclOperation::Write, false))
            .await
            .unwrap();
    });
    let (s, body) = curl(http, "/topics", &[]);
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("AUTHENTICATION_REQUIRED") && !body.contains("hidden"), "{body}");
    let (s, body) = curl(http, "/topics", &["-u", "carol:wrong"]);
    assert_eq!(s, 401, "{body}");
    let (s, body) = curl(http, "/topics", &["-u", "carol:carol-pw"]);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("web") && !body.contains("hidden"), "{body}");
    let produce = [
        "-u",
        "carol:carol-pw",
        "-H",
        "content-type: application/json",
        "-d",
        r#"[{"value":"hi"}]"#,
    ];
    let (s, body) = curl(http, "/topics/web/records", &produce);
    assert_eq!(s, 200, "{body}");
    let (s, body) = curl(http, "/topics/web/records?from=earliest", &["-u", "carol:carol-pw"]);
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("AUTHORIZATION_FAILED") && body.contains("read"), "{body}");
    let (s, _) = curl(http, "/topics/hidden", &["-u", "carol:carol-pw", "-X", "DELETE"]);
    assert_eq!(s, 403);
    let (s, body) = curl(http, "/topics", &["-u", &format!("admin:{ADMIN_PW}")]);
    assert_eq!(s, 200);
    assert!(body.contains("hidden"), "{body}");
    assert_eq!(curl(http, "/health", &[]).0, 200, "health checks need no credentials");

    // Bearer tokens: stored hashed, carry the user's ACLs, die with deletion or expiry.
    let (token, id, short) = rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        let (token, id, expires) = admin.create_token("carol", 0).await.unwrap();
        assert_eq!(expires, 0);
        let (short, _, _) = admin.create_token("carol", 1).await.unwrap();
        assert_eq!(admin.list_tokens("carol").await.unwrap().len(), 2);
        (token, id, short)
    });
    let stored = std::fs::read_to_string(broker.data_dir.join("security.json")).unwrap();
    assert!(!stored.contains(token.split_once('.').unwrap().1), "only a digest is stored");
    let bearer = format!("Authorization: Bearer {token}");
    let (s, body) = curl(http, "/topics", &["-H", &bearer]);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("web") && !body.contains("hidden"), "{body}");
    let (s, _) = curl(
        http,
        "/topics/web/records",
        &["-H", &bearer, "-H", "content-type: application/json", "-d", r#"[{"value":"t"}]"#],
    );
    assert_eq!(s, 200);
    let (s, _) = curl(http, "/topics/hidden", &["-H", &bearer]);
    assert_eq!(s, 403);
    std::thread::sleep(Duration::from_millis(5));
    let (s, _) = curl(http, "/topics", &["-H", &format!("Authorization: Bearer {short}")]);
    assert_eq!(s, 401, "expired");
    let (s, _) = curl(http, "/topics", &["-H", &format!("Authorization: Bearer {id}.wrong")]);
    assert_eq!(s, 401);
    rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        assert!(admin.delete_token(&id).await.unwrap());
    });
    let (s, _) = curl(http, "/topics", &["-H", &bearer]);
    assert_eq!(s, 401, "deleted");

    // A stream opened with a token ends when the token is deleted (it went on for ever).
    let (token, id) = rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        let (token, id, _) = admin.create_token("admin", 0).await.unwrap();
        (token, id)
    });
    let mut sse = Command::new("curl")
        .args(["-s", "-N", "-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("http://{http}/topics/web/stream?from=earliest"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let stdout = sse.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let until = |what: &str| loop {
        let line = lines.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("{what}"));
        if line.contains(what) {
            return line;
        }
    };
    until("event: record");
    rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        assert!(admin.delete_token(&id).await.unwrap());
    });
    let ended = until("AUTHENTICATION_FAILED");
    assert!(ended.contains("deleted or expired"), "{ended}");
    let _ = sse.kill();
    let _ = sse.wait();
}

fn kcat(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat is not installed (apt-get install kcat)");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn kcat_sasl_scram_produces_and_consumes_and_wrong_passwords_fail() {
    let (_dir, broker) = broker_with_admin(2, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let kafka = ready_address(&broker, "kafka").to_string();
    rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        admin.create_topic("kc", topic(2)).await.unwrap();
        admin.create_topic("kc-hidden", topic(1)).await.unwrap();
        admin.upsert_user("dave", "dave-pw", false).await.unwrap();
        admin
            .create_acl(acl("dave", AclResourceKind::Topic, "kc", AclOperation::All, false))
            .await
            .unwrap();
    });
    let sasl = |mech: &str, user: &str, pw: &str| -> Vec<String> {
        [
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            &format!("sasl.mechanisms={mech}"),
            "-X",
            &format!("sasl.username={user}"),
            "-X",
            &format!("sasl.password={pw}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let with = |base: &[&str], extra: &[String]| -> Vec<String> {
        base.iter().map(|s| s.to_string()).chain(extra.iter().cloned()).collect()
    };
    let args256 = sasl("SCRAM-SHA-256", "dave", "dave-pw");
    let produce = with(&["-b", &kafka, "-t", "kc", "-p", "0", "-P", "-K:"], &args256);
    let refs: Vec<&str> = produce.iter().map(String::as_str).collect();
    let (ok, out) = kcat(&refs, Some("k1:v1\nk2:v2\n"));
    assert!(ok, "{out}");
    let args512 = sasl("SCRAM-SHA-512", "dave", "dave-pw");
    let consume = with(
        &[
            "-b",
            &kafka,
            "-t",
            "kc",
            "-p",
            "0",
            "-C",
            "-o",
            "beginning",
            "-c",
            "2",
            "-e",
            "-f",
            "%k=%s\n",
        ],
        &args512,
    );
    let refs: Vec<&str> = consume.iter().map(String::as_str).collect();
    let (ok, out) = kcat(&refs, None);
    assert!(ok && out.contains("k1=v1") && out.contains("k2=v2"), "{out}");
    let list = with(&["-b", &kafka, "-L"], &args256);
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    let (ok, out) = kcat(&refs, None);
    assert!(ok && out.contains("\"kc\"") && !out.contains("kc-hidden"), "{out}");
    // Wrong password and no SASL at all: refused, nothing listed.
    let bad = with(&["-b", &kafka, "-L", "-m", "5"], &sasl("SCRAM-SHA-256", "dave", "nope"));
    let refs: Vec<&str> = bad.iter().map(String::as_str).collect();
    let (ok, out) = kcat(&refs, None);
    assert!(!ok && !out.contains("\"kc\""), "{out}");
    let (ok, out) = kcat(&["-b", &kafka, "-L", "-m", "5"], None);
    assert!(!ok && !out.contains("\"kc\""), "{out}");
    assert!(!broker.log_text().contains("panicked"));
}

#[test]
fn confluent_kafka_sasl_scram_512_produces_and_consumes_in_a_group() {
    let (_dir, broker) = broker_with_admin(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let kafka = ready_address(&broker, "kafka").to_string();
    rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        admin.create_topic("ck", topic(2)).await.unwrap();
        admin.upsert_user("erin", "erin-pw", false).await.unwrap();
        for (kind, name) in [(AclResourceKind::Topic, "ck"), (AclResourceKind::Group, "ck-group")] {
            admin.create_acl(acl("erin", kind, name, AclOperation::Read, false)).await.unwrap();
        }
        admin
            .create_acl(acl("erin", AclResourceKind::Topic, "ck", AclOperation::Write, false))
            .await
            .unwrap();
    });
    let script = r#"
import json, sys
from confluent_kafka import Producer, Consumer
conf = {"bootstrap.servers": sys.argv[1], "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "erin", "sasl.password": sys.argv[2]}
p = Producer(conf)
for i in range(100):
    p.produce("ck", key=str(i).encode(), value=b"v%d" % i)
left = p.flush(float(sys.argv[3]))
c = Consumer(dict(conf, **{"group.id": "ck-group", "auto.offset.reset": "earliest"}))
c.subscribe(["ck"])
seen, errors = set(), []
for _ in range(int(sys.argv[4])):
    m = c.poll(0.2)
    if m is None:
        if len(seen) >= 100: break
        continue
    if m.error():
        errors.append(str(m.error())); break
    seen.add(m.key())
c.close()
print(json.dumps({"unflushed": left, "seen": len(seen), "errors": errors}))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &kafka, "erin-pw", "30", "300"])
        .output()
        .expect("python3 with confluent-kafka");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["unflushed"], 0, "{text}");
    assert_eq!(v["seen"], 100, "{text}");
    // A wrong password: the producer never gets its records acknowledged.
    let bad = Command::new("python3")
        .args(["-c", script, &kafka, "wrong", "3", "5"])
        .output()
        .expect("python3 with confluent-kafka");
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(!text.contains("\"seen\": 100"), "{text}");
}

/// Kafka's group apis that run native requests are checked as Kafka checks them, the group
/// first: a user without delete on a live group learned it was live (NON_EMPTY_GROUP) and
/// which topics its members subscribe to (GROUP_SUBSCRIBED_TO_TOPIC); an OffsetFetch for
/// every topic answered topics the user may not describe; a group denial was
/// TOPIC_AUTHORIZATION_FAILED; a commit naming one denied topic committed nothing.
#[test]
fn kafka_group_apis_check_the_group_first_and_each_topic() {
    let (_dir, broker) = broker_with_admin(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let kafka = ready_address(&broker, "kafka").to_string();
    rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        admin.create_topic("open", topic(1)).await.unwrap();
        admin.create_topic("secret", topic(1)).await.unwrap();
        admin.upsert_user("frank", "frank-pw", false).await.unwrap();
        for (kind, name) in [
            (AclResourceKind::Topic, "open"),
            (AclResourceKind::Group, "fg"),
            (AclResourceKind::Group, "fg2"),
        ] {
            admin.create_acl(acl("frank", kind, name, AclOperation::Read, false)).await.unwrap();
        }
        let offsets = [("open".to_string(), 0, 5), ("secret".to_string(), 0, 7)];
        admin.commit_offsets("fg", "", 0, &offsets).await.unwrap();
    });
    let script = r#"
import json, sys, time
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
def conf(user, pw):
    return dict(bootstrap_servers=sys.argv[1], security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="SCRAM-SHA-256", sasl_plain_username=user,
                sasl_plain_password=pw)
def outcome(f):
    try:
        return f()
    except Exception as e:
        return type(e).__name__
out = {}
# A live Kafka member of "fg" (the admin), subscribed to "open".
member = KafkaConsumer("open", group_id="fg", **conf("admin", sys.argv[2]))
deadline = time.time() + 30
while not member.assignment() and time.time() < deadline:
    member.poll(200)
out["member"] = sorted(tp.topic for tp in member.assignment())
frank = KafkaAdminClient(**conf("frank", "frank-pw"))
out["all"] = outcome(lambda: sorted(tp.topic for tp in frank.list_group_offsets("fg")["fg"]))
both = [TopicPartition("open", 0), TopicPartition("secret", 0)]
out["named"] = outcome(lambda: frank.list_group_offsets({"fg": both}))
out["other_group"] = outcome(lambda: frank.list_group_offsets("other"))
out["other_group_secret"] = outcome(
    lambda: frank.list_group_offsets({"other": [TopicPartition("secret", 0)]}))
out["delete"] = outcome(lambda: frank.delete_groups(["fg"]))
out["offset_delete"] = outcome(
    lambda: {str(k): v.__name__ for k, v in
             frank.delete_group_offsets("fg", [TopicPartition("open", 0)]).items()})
c = KafkaConsumer(group_id="fg2", enable_auto_commit=False, **conf("frank", "frank-pw"))
out["commit"] = outcome(lambda: c.commit({tp: OffsetAndMetadata(3, "", -1) for tp in both}))
c.close()
member.close()
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &kafka, ADMIN_PW])
        .output()
        .expect("python3 with kafka-python");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["member"], serde_json::json!(["open"]), "{text}");
    assert_eq!(v["all"], serde_json::json!(["open"]), "only what frank may describe: {text}");
    assert_eq!(v["named"], "TopicAuthorizationFailedError", "{text}");
    assert_eq!(v["other_group"], "GroupAuthorizationFailedError", "{text}");
    assert_eq!(v["other_group_secret"], "GroupAuthorizationFailedError", "the group first: {text}");
    assert_eq!(v["delete"], serde_json::json!({"fg": "GroupAuthorizationFailedError"}), "{text}");
    assert_eq!(v["offset_delete"], "GroupAuthorizationFailedError", "{text}");
    assert_eq!(v["commit"], "TopicAuthorizationFailedError", "{text}");
    // The readable topic of the commit was committed, the denied one not.
    rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        let committed = admin.fetch_offsets("fg2", &[]).await.unwrap();
        assert_eq!(committed, [("open".to_string(), 0, 3)]);
    });
}

/// Kafka Produce, Fetch and ListOffsets check each topic, as Kafka does: a request naming a
/// topic the principal may describe but not write (read) answers that topic's partitions
/// TOPIC_AUTHORIZATION_FAILED and serves the others (before, the native check refused the
/// whole request: one producer batch for a denied topic failed the allowed topic's records
/// sent with it, for good).
#[test]
fn kafka_data_apis_refuse_only_the_denied_topics_of_a_request() {
    let (_dir, broker) = broker_with_admin(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let kafka = ready_address(&broker, "kafka").to_string();
    rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        admin.create_topic("open", topic(1)).await.unwrap();
        admin.create_topic("secret", topic(1)).await.unwrap();
        admin.upsert_user("gina", "gina-pw", false).await.unwrap();
        for (name, op) in [
            ("open", AclOperation::Write),
            ("open", AclOperation::Read),
            ("secret", AclOperation::Describe),
        ] {
            admin.create_acl(acl("gina", AclResourceKind::Topic, name, op, false)).await.unwrap();
        }
    });
    let script = r#"
import json, sys, time
from kafka import KafkaProducer, KafkaConsumer, TopicPartition
conf = dict(bootstrap_servers=sys.argv[1], security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="gina",
            sasl_plain_password="gina-pw")
def outcome(f):
    try:
        return f()
    except Exception as e:
        return type(e).__name__
out = {}
# Both records in one Produce request (one broker, one linger).
p = KafkaProducer(linger_ms=300, retries=0, **conf)
for t in ["open", "secret"]:
    p.partitions_for(t)
sent = {t: p.send(t, b"v-" + t.encode(), partition=0) for t in ["open", "secret"]}
p.flush()
out["produce"] = {t: outcome(lambda f=f: f.get(timeout=10).offset) for t, f in sent.items()}
c = KafkaConsumer(enable_auto_commit=False, **conf)
both = [TopicPartition("open", 0), TopicPartition("secret", 0)]
c.assign(both)
for tp in both:
    c.seek(tp, 0)
got, errors = [], set()
deadline = time.time() + 15
while not got and time.time() < deadline:
    try:
        for tp, records in c.poll(300).items():
            got += [r.value.decode() for r in records]
    except Exception as e:
        errors.add(type(e).__name__)
out["fetched"] = got
out["fetch_errors"] = sorted(errors)
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &kafka])
        .output()
        .expect("python3 with kafka-python");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(
        v["produce"],
        serde_json::json!({"open": 0, "secret": "TopicAuthorizationFailedError"}),
        "{text}"
    );
    assert_eq!(v["fetched"], serde_json::json!(["v-open"]), "the readable topic's: {text}");
}

/// A transactional id is a resource: initializing with it fences the producer before it
/// with that id, so it needs write on it (any user could fence any other's producer).
#[test]
fn initializing_a_transactional_id_needs_write_on_it() {
    let (_dir, broker) = broker_with_admin(1, &[]);
    rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        admin.upsert_user("gina", "gina-pw", false).await.unwrap();
        let gina = client_as(&broker, "gina", "gina-pw").await.unwrap();
        let (id, epoch) = admin.init_producer_id(Some("billing-1")).await.unwrap();
        let (c, m) = code(gina.init_producer_id(Some("billing-1")).await.map(|_| ()));
        assert_eq!(c, ErrorCode::AuthorizationFailed);
        assert!(m.contains("transactional id \"billing-1\""), "{m}");
        // Not fenced: the owner's next initialization is the next epoch of its id.
        assert_eq!(admin.init_producer_id(Some("billing-1")).await.unwrap(), (id, epoch + 1));
        // An idempotent producer (no transactional id) needs an identity only.
        gina.init_producer_id(None).await.unwrap();
        let rule = acl(
            "gina",
            AclResourceKind::TransactionalIdPrefix,
            "billing-",
            AclOperation::Write,
            false,
        );
        admin.create_acl(rule).await.unwrap();
        gina.init_producer_id(Some("billing-2")).await.unwrap();
        let (c, _) = code(gina.init_producer_id(Some("payroll-1")).await.map(|_| ()));
        assert_eq!(c, ErrorCode::AuthorizationFailed);
        let listed = admin.list_acls("gina").await.unwrap();
        assert_eq!(listed[0].resource, AclResourceKind::TransactionalIdPrefix);
    });
    // Through a restart: the rule is stored.
    let mut broker = broker;
    broker.kill();
    broker.restart();
    rt().block_on(async {
        let gina = client_as(&broker, "gina", "gina-pw").await.unwrap();
        gina.init_producer_id(Some("billing-3")).await.unwrap();
    });
}

#[test]
fn optional_mode_lets_anonymous_in_as_anonymous_under_acls() {
    let (_dir, broker) = broker_with_admin(1, &[("BROKER_AUTH", "optional")]);
    rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        admin.create_topic("public", topic(1)).await.unwrap();
        admin.create_topic("members", topic(1)).await.unwrap();
        // `*` is every authenticated user, not the anonymous one.
        admin
            .create_acl(acl("*", AclResourceKind::Topic, "members", AclOperation::All, false))
            .await
            .unwrap();
        let anon = Client::connect_with(
            &broker.public.to_string(),
            ClientConfig { retries: 0, ..Default::default() },
        )
        .await
        .unwrap();
        assert!(anon.list_topics().await.unwrap().is_empty());
        let (c, m) = code(anon.produce_batches("public", 0, &batch("x"), AckLevel::Durable).await);
        assert_eq!(c, ErrorCode::AuthorizationFailed);
        assert!(m.contains("ANONYMOUS"), "{m}");
        let (c, _) = code(anon.produce_batches("members", 0, &batch("x"), AckLevel::Durable).await);
        assert_eq!(c, ErrorCode::AuthorizationFailed);
        admin
            .create_acl(acl(
                "ANONYMOUS",
                AclResourceKind::Topic,
                "public",
                AclOperation::Write,
                false,
            ))
            .await
            .unwrap();
        anon.produce_batches("public", 0, &batch("x"), AckLevel::Durable).await.unwrap();
        let names: Vec<String> =
            anon.list_topics().await.unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["public"]);
        // A user with no rule of its own gets what `*` grants.
        admin.upsert_user("frank", "frank-pw", false).await.unwrap();
        let frank = client_as(&broker, "frank", "frank-pw").await.unwrap();
        frank.produce_batches("members", 0, &batch("y"), AckLevel::Durable).await.unwrap();
    });
}

/// kcat arguments for SASL over TLS with `mechanism`.
fn sasl_ssl(ca: &Ca, mechanism: &str, user: &str, password: &str) -> Vec<String> {
    [
        "security.protocol=SASL_SSL".to_string(),
        format!("ssl.ca.location={}", ca.cert.display()),
        format!("sasl.mechanisms={mechanism}"),
        format!("sasl.username={user}"),
        format!("sasl.password={password}"),
    ]
    .into_iter()
    .flat_map(|x| ["-X".to_string(), x])
    .collect()
}

#[test]
fn sasl_over_tls_scram_and_plain_with_kcat_and_bearer_over_https() {
    let (_dir, broker, ca, _server) = tls_broker_with_admin(false);
    let kafka = ready_address(&broker, "kafka").to_string();
    let http = ready_address(&broker, "http");
    let token = rt().block_on(async {
        // Plaintext SCRAM on a TLS port fails; SCRAM over TLS works.
        assert!(client_as(&broker, "admin", ADMIN_PW).await.is_err());
        let admin = tls_client(&broker, &ca, Some(("admin", ADMIN_PW)), None).await.unwrap();
        admin.create_topic("ks", topic(1)).await.unwrap();
        admin.create_topic("ks-hidden", topic(1)).await.unwrap();
        admin.upsert_user("dave", "dave-pw", false).await.unwrap();
        admin
            .create_acl(acl("dave", AclResourceKind::Topic, "ks", AclOperation::All, false))
            .await
            .unwrap();
        admin.create_token("dave", 0).await.unwrap().0
    });
    let run = |base: &[&str], sasl: &[String], stdin: Option<&str>| {
        let args: Vec<&str> = base.iter().copied().chain(sasl.iter().map(String::as_str)).collect();
        kcat(&args, stdin)
    };
    // kcat: SCRAM-SHA-256 over TLS produces, PLAIN over TLS consumes and lists.
    let scram = sasl_ssl(&ca, "SCRAM-SHA-256", "dave", "dave-pw");
    let (ok, out) =
        run(&["-b", &kafka, "-t", "ks", "-p", "0", "-P", "-K:"], &scram, Some("k1:v1\nk2:v2\n"));
    assert!(ok, "{out}");
    let plain = sasl_ssl(&ca, "PLAIN", "dave", "dave-pw");
    let consume = ["-b", &kafka, "-t", "ks", "-p", "0", "-C", "-o", "beginning", "-c", "2", "-e"];
    let (ok, out) = run(&[&consume[..], &["-f", "%k=%s\n"]].concat(), &plain, None);
    assert!(ok && out.contains("k1=v1") && out.contains("k2=v2"), "{out}");
    let (ok, out) = run(&["-b", &kafka, "-L"], &plain, None);
    assert!(ok && out.contains("\"ks\"") && !out.contains("ks-hidden"), "{out}");
    // Wrong passwords fail with either mechanism; nothing is listed.
    for mechanism in ["SCRAM-SHA-256", "PLAIN"] {
        let bad = sasl_ssl(&ca, mechanism, "dave", "nope");
        let (ok, out) = run(&["-b", &kafka, "-L", "-m", "5"], &bad, None);
        assert!(!ok && !out.contains("\"ks\""), "{mechanism}: {out}");
    }
    // The bearer token over HTTPS carries dave's ACLs.
    let url = |path: &str| format!("https://localhost:{}{path}", http.port());
    let cacert = ca.cert.display().to_string();
    let bearer = format!("Authorization: Bearer {token}");
    let (s, body) = curl_url(&url("/topics"), &["--cacert", &cacert, "-H", &bearer]);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("ks") && !body.contains("ks-hidden"), "{body}");
    let (s, body) = curl_url(&url("/topics"), &["--cacert", &cacert]);
    assert_eq!(s, 401, "{body}");
    assert!(!broker.log_text().contains("panicked"));
}

#[test]
fn plain_is_refused_without_tls() {
    let (_dir, broker) = broker_with_admin(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let kafka = ready_address(&broker, "kafka").to_string();
    let args = [
        "-b",
        &kafka,
        "-L",
        "-m",
        "5",
        "-X",
        "security.protocol=SASL_PLAINTEXT",
        "-X",
        "sasl.mechanisms=PLAIN",
        "-X",
        "sasl.username=admin",
        "-X",
        &format!("sasl.password={ADMIN_PW}"),
    ];
    let (ok, out) = kcat(&args, None);
    assert!(!ok && !out.contains("__"), "PLAIN over plaintext must fail: {out}");
}

#[test]
fn a_client_certificate_is_an_authenticated_principal_governed_by_acls() {
    let (_dir, broker, ca, _server) = tls_broker_with_admin(true);
    let alice = ca.client("alice", "alice");
    let ops = ca.client("ops", "admin"); // same name as the superuser: its flag applies
    let http = ready_address(&broker, "http");
    rt().block_on(async {
        // The superuser by certificate alone, no password.
        let admin = tls_client(&broker, &ca, None, Some(&ops)).await.unwrap();
        admin.create_topic("granted", topic(1)).await.unwrap();
        admin.create_topic("other", topic(1)).await.unwrap();
        admin
            .create_acl(acl("alice", AclResourceKind::Topic, "granted", AclOperation::All, false))
            .await
            .unwrap();
        // alice (no such user in the store) is authenticated by her certificate; ACLs decide.
        let a = tls_client(&broker, &ca, None, Some(&alice)).await.unwrap();
        a.produce_batches("granted", 0, &batch("ok"), AckLevel::Durable).await.unwrap();
        let (c, m) = code(a.produce_batches("other", 0, &batch("no"), AckLevel::Durable).await);
        assert_eq!(c, ErrorCode::AuthorizationFailed, "{m}");
        let names: Vec<String> =
            a.list_topics().await.unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names, vec!["granted".to_string()]);
        let (c, m) = code(a.create_topic("mine", topic(1)).await);
        assert_eq!(c, ErrorCode::AuthorizationFailed, "{m}");
        // A password still works on top of a certificate and replaces its principal.
        admin.upsert_user("bob", "bob-pw", true).await.unwrap();
        let bob = tls_client(&broker, &ca, Some(("bob", "bob-pw")), Some(&alice)).await.unwrap();
        bob.create_topic("bobs", topic(1)).await.unwrap();
        // Taking the grant away applies to alice's open connection on its next request.
        admin
            .delete_acl(acl("alice", AclResourceKind::Topic, "granted", AclOperation::All, false))
            .await
            .unwrap();
        let (c, m) = code(a.produce_batches("granted", 0, &batch("late"), AckLevel::Durable).await);
        assert_eq!(c, ErrorCode::AuthorizationFailed, "{m}");
    });
    // The gateway: the certificate is the principal when no Authorization header is sent.
    let url = format!("https://localhost:{}/topics", http.port());
    let cacert = ca.cert.display().to_string();
    let (cert, key) = (alice.cert.display().to_string(), alice.key.display().to_string());
    let (s, body) = curl_url(&url, &["--cacert", &cacert, "--cert", &cert, "--key", &key]);
    assert_eq!(s, 200, "{body}");
    assert!(!body.contains("granted") && !body.contains("other"), "grant removed: {body}");
    let (cert, key) = (ops.cert.display().to_string(), ops.key.display().to_string());
    let (s, body) = curl_url(&url, &["--cacert", &cacert, "--cert", &cert, "--key", &key]);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("granted") && body.contains("other"), "{body}");
}

/// Kafka's ACL administration (confluent-kafka's AdminClient: CreateAcls, DescribeAcls,
/// DeleteAcls over SASL/SCRAM) changes the native ACLs: a rule created there lets its user
/// produce, is listed natively and described back as Kafka names it; rules with no native
/// form (a host) are refused one by one, a literal `*` is every topic, IDEMPOTENT_WRITE on
/// the cluster is taken (implied by WRITE); a user without
/// describe on the cluster is refused; a deleted rule no longer lets its user produce.
#[test]
fn kafka_admin_clients_create_describe_and_delete_acls() {
    let (_dir, broker) = broker_with_admin(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let kafka = ready_address(&broker, "kafka").to_string();
    rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        admin.create_topic("fk", topic(1)).await.unwrap();
        admin.upsert_user("frank", "frank-pw", false).await.unwrap();
    });
    let script = r#"
import json, sys
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, ResourcePatternType, ResourceType)
conf = {"bootstrap.servers": sys.argv[1], "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "SCRAM-SHA-256"}
admin = AdminClient(dict(conf, **{"sasl.username": "admin", "sasl.password": sys.argv[2]}))
frank = dict(conf, **{"sasl.username": "frank", "sasl.password": "frank-pw"})
out = {}
def name(e):
    return e.args[0].name() if e.args and hasattr(e.args[0], "name") else str(e)
def binding(restype, res, pattern, host, op, perm):
    return AclBinding(restype, res, pattern, "User:frank", host, op, perm)
wanted = [
    binding(ResourceType.TOPIC, "fk", ResourcePatternType.LITERAL, "*", AclOperation.WRITE,
            AclPermissionType.ALLOW),
    binding(ResourceType.TOPIC, "fk-", ResourcePatternType.PREFIXED, "*", AclOperation.READ,
            AclPermissionType.ALLOW),
    binding(ResourceType.GROUP, "fg", ResourcePatternType.LITERAL, "*", AclOperation.READ,
            AclPermissionType.DENY),
    binding(ResourceType.TOPIC, "fk", ResourcePatternType.LITERAL, "10.0.0.1",
            AclOperation.READ, AclPermissionType.ALLOW),
    binding(ResourceType.TOPIC, "*", ResourcePatternType.LITERAL, "*", AclOperation.READ,
            AclPermissionType.ALLOW),
    binding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, "*",
            AclOperation.IDEMPOTENT_WRITE, AclPermissionType.ALLOW),
]
futures = admin.create_acls(wanted, request_timeout=30)
created = []
for b in wanted:
    try:
        futures[b].result()
        created.append("NONE")
    except KafkaException as e:
        created.append(name(e))
out["created"] = created
def produce():
    p = Producer(dict(frank, **{"message.timeout.ms": 4000}))
    errors = []
    p.produce("fk", b"v", on_delivery=lambda err, msg: errors.append(err and err.name()))
    p.flush(10)
    return errors
out["produced"] = produce()
everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                              AclOperation.ANY, AclPermissionType.ANY)
described = admin.describe_acls(everything, request_timeout=30).result()
out["described"] = sorted("%s %s %s %s %s %s %s" % (b.restype.name, b.name,
    b.resource_pattern_type.name, b.principal, b.host, b.operation.name,
    b.permission_type.name) for b in described)
# (librdkafka ignores DescribeAcls' error code: kafka-python's client raises it.)
from kafka import KafkaAdminClient
from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                         ResourcePatternFilter)
from kafka.admin import ResourceType as PyResourceType
from kafka.errors import KafkaError
py = KafkaAdminClient(bootstrap_servers=sys.argv[1], security_protocol="SASL_PLAINTEXT",
                      sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="frank",
                      sasl_plain_password="frank-pw")
py_everything = ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                          permission_type=ACLPermissionType.ANY,
                          resource_pattern=ResourcePatternFilter(PyResourceType.ANY, None,
                                                                 ACLResourcePatternType.ANY))
try:
    py.describe_acls(py_everything)
    out["frank_describes"] = "NONE"
except KafkaError as e:
    out["frank_describes"] = type(e).__name__
py.close()
writes = AclBindingFilter(ResourceType.TOPIC, None, ResourcePatternType.ANY, "User:frank", None,
                          AclOperation.WRITE, AclPermissionType.ANY)
(future,) = admin.delete_acls([writes], request_timeout=30).values()
out["deleted"] = ["%s %s" % (b.name, b.operation.name) for b in future.result()]
out["produced_after"] = produce()
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &kafka, ADMIN_PW])
        .output()
        .expect("python3 with confluent-kafka");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    let invalid = "INVALID_REQUEST";
    // IDEMPOTENT_WRITE on the cluster: implied by WRITE here, taken and nothing stored.
    let created = serde_json::json!(["NONE", "NONE", "NONE", invalid, "NONE", "NONE"]);
    assert_eq!(v["created"], created, "{text}");
    assert_eq!(v["produced"], serde_json::json!([null]), "frank may write: {text}");
    let described = serde_json::json!([
        "GROUP fg LITERAL User:frank * READ DENY",
        "TOPIC * LITERAL User:frank * READ ALLOW",
        "TOPIC fk LITERAL User:frank * WRITE ALLOW",
        "TOPIC fk- PREFIXED User:frank * READ ALLOW",
    ]);
    assert_eq!(v["described"], described, "{text}");
    assert_eq!(v["frank_describes"], "ClusterAuthorizationFailedError", "{text}");
    assert_eq!(v["deleted"], serde_json::json!(["fk WRITE"]), "{text}");
    assert_ne!(v["produced_after"], serde_json::json!([null]), "the write rule is gone: {text}");
    rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        let mut left = admin.list_acls("frank").await.unwrap();
        left.sort_by_key(|a| a.name.clone());
        let want = vec![
            acl("frank", AclResourceKind::TopicPrefix, "", AclOperation::Read, false),
            acl("frank", AclResourceKind::Group, "fg", AclOperation::Read, true),
            acl("frank", AclResourceKind::TopicPrefix, "fk-", AclOperation::Read, false),
        ];
        assert_eq!(left, want);
    });
}

/// `brokerctl acl add` with `--all-topics`/`--all-groups` stores rules covering every topic
/// or group (listed under those names, in force); an empty prefix (an unset shell variable)
/// is refused instead of granting everything.
#[test]
fn brokerctl_grants_every_topic_and_group_only_when_asked_in_so_many_words() {
    let (dir, broker) = broker_with_admin(1, &[]);
    let pw = dir.path().join("admin.pw");
    std::fs::write(&pw, ADMIN_PW).unwrap();
    let ctl = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_brokerctl"))
            .args(["--user", "admin", "--password-file"])
            .arg(&pw)
            .args(args)
            .env("BROKER_ADDR", broker.public.to_string())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    for kind in ["--all-topics", "--all-groups"] {
        let (ok, out) = ctl(&["acl", "add", "--user", "gina", kind, "--op", "read"]);
        assert!(ok, "{kind}: {out}");
    }
    let (ok, out) = ctl(&["acl", "add", "--user", "gina", "--group-prefix", "", "--op", "all"]);
    assert!(!ok && out.contains("--all-groups"), "{out}");
    let (ok, out) = ctl(&["acl", "list", "--user", "gina"]);
    assert!(ok && out.contains("all-topics") && out.contains("all-groups"), "{out}");
    assert!(!out.contains("\tall\t"), "the refused rule is not stored: {out}");
    rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        admin.create_topic("any-topic", topic(1)).await.unwrap();
        admin.upsert_user("gina", "gina-pw", false).await.unwrap();
        let gina = client_as(&broker, "gina", "gina-pw").await.unwrap();
        gina.fetch("any-topic", 0, 0, 1 << 20, 0).await.unwrap();
        let topics = ["any-topic".to_owned()];
        let fetched = gina.fetch_offsets("any-group", &topics).await;
        assert!(fetched.is_ok(), "read on every group: {fetched:?}");
        let mut b = BatchBuilder::new(1 << 10);
        b.append(0, None, Some(&b"v"[..]), &[]).unwrap();
        let batch = b.finish().unwrap();
        let err = gina.produce_batches("any-topic", 0, &batch, AckLevel::Durable).await;
        assert!(err.is_err(), "read only");
    });
}

/// `ChangeAcls` adds and removes rules in one change: counts what changed, leaves stored
/// rules as they are, and changes nothing when one rule is refused.
#[test]
fn acls_change_together_or_not_at_all() {
    let (_dir, broker) = broker_with_admin(2, &[]);
    rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        let read = |name: &str| acl("hal", AclResourceKind::Topic, name, AclOperation::Read, false);
        let (added, removed) = admin.change_acls(vec![read("a"), read("b")], vec![]).await.unwrap();
        assert_eq!((added, removed), (2, 0));
        let changed = admin.change_acls(vec![read("b"), read("c")], vec![read("a"), read("z")]);
        assert_eq!(changed.await.unwrap(), (1, 1), "b is there already, z never was");
        let named = |acls: Vec<AclBinding>| acls.into_iter().map(|a| a.name).collect::<Vec<_>>();
        assert_eq!(named(admin.list_acls("hal").await.unwrap()), ["b", "c"]);
        // A refused rule (a topic rule without a name) refuses the whole change.
        let err = admin.change_acls(vec![read("d"), read("")], vec![read("b")]).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Broker { code: ErrorCode::InvalidRequest, .. }),
            "{err}"
        );
        assert_eq!(named(admin.list_acls("hal").await.unwrap()), ["b", "c"], "nothing changed");
        // Alter on the cluster is needed.
        admin.upsert_user("hal", "hal-pw", false).await.unwrap();
        let hal = client_as(&broker, "hal", "hal-pw").await.unwrap();
        let err = hal.change_acls(vec![read("x")], vec![]).await.unwrap_err();
        assert!(matches!(err, ClientError::Broker { code: ErrorCode::AuthorizationFailed, .. }));
    });
}

/// Kafka DeleteRecords needs delete on the topic and DescribeLogDirs describe on the
/// cluster (kafka-python over SASL/SCRAM): refused with Kafka's codes, then allowed once
/// granted, and a refused deletion deleted nothing.
#[test]
fn kafka_delete_records_and_log_dirs_are_authorized_as_kafkas() {
    let (_dir, broker) = broker_with_admin(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let kafka = ready_address(&broker, "kafka").to_string();
    let admin = rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        admin.create_topic("kept", topic(1)).await.unwrap();
        admin.upsert_user("ivy", "ivy-pw", false).await.unwrap();
        let read = acl("ivy", AclResourceKind::Topic, "kept", AclOperation::Describe, false);
        admin.create_acl(read).await.unwrap();
        let mut b = BatchBuilder::new(1 << 10);
        for i in 0..5 {
            b.append(i, None, Some(&b"v"[..]), &[]).unwrap();
        }
        admin.produce_batches("kept", 0, &b.finish().unwrap(), AckLevel::Durable).await.unwrap();
        admin
    });
    let script = r#"
import json, sys
from kafka import KafkaAdminClient
from kafka.errors import KafkaError
from kafka.structs import TopicPartition
py = KafkaAdminClient(bootstrap_servers=sys.argv[1], security_protocol="SASL_PLAINTEXT",
                      sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="ivy",
                      sasl_plain_password="ivy-pw")
out = {}
def attempt(key, f):
    try:
        r = f()
        out[key] = "NONE"
        return r
    except KafkaError as e:
        out[key] = type(e).__name__
attempt("delete", lambda: py.delete_records({TopicPartition("kept", 0): 3}, timeout_ms=10000))
dirs = attempt("log_dirs", lambda: py.describe_log_dirs())
if dirs is not None:
    # kafka-python returns the answer rather than raising its error code.
    out["log_dirs"] = [{k: v for k, v in b.items() if k != "broker"} for b in dirs]
print(json.dumps(out))
"#;
    let run = || python_json(script, &kafka);
    let denied = run();
    assert_eq!(denied["delete"], "TopicAuthorizationFailedError", "{denied}");
    // Denied: no log dirs (kafka-python does not raise the response's error code).
    assert_eq!(denied["log_dirs"], serde_json::json!([{"log_dirs": []}]), "{denied}");
    rt().block_on(async {
        let earliest = admin.list_offsets("kept", OffsetSpec::Earliest).await.unwrap();
        assert_eq!(earliest[0].1, 0, "a refused deletion deleted nothing");
        let grants = [
            acl("ivy", AclResourceKind::Topic, "kept", AclOperation::Delete, false),
            acl("ivy", AclResourceKind::Cluster, "", AclOperation::Describe, false),
        ];
        admin.change_acls(grants.to_vec(), vec![]).await.unwrap();
    });
    let allowed = run();
    assert_eq!(allowed["delete"], "NONE", "{allowed}");
    let dirs = &allowed["log_dirs"][0]["log_dirs"];
    assert_eq!(dirs[0]["topics"][0]["name"], "kept", "{allowed}");
    rt().block_on(async {
        let earliest = admin.list_offsets("kept", OffsetSpec::Earliest).await.unwrap();
        assert_eq!(earliest[0].1, 3);
    });
}

/// Kafka's AlterUserScramCredentials and DescribeUserScramCredentials from confluent-kafka's
/// admin client (what `kafka-configs --entity-type users` sends): a user created with one
/// mechanism authenticates with it and not another, is described with its iterations, is no
/// superuser; refusals per user (unknown credential, weak iterations, an unauthorized
/// principal) change nothing; deleting the last credential removes the user (it can no
/// longer authenticate) and keeps its ACLs.
#[test]
fn kafka_admin_client_alters_and_describes_scram_credentials() {
    let (_dir, broker) = broker_with_admin(2, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let kafka = ready_address(&broker, "kafka").to_string();
    let rt = rt();
    // Connected first: the failed authentications below (librdkafka retries them) put this
    // address over the broker's failure limit for a minute.
    let admin = rt.block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        admin.create_topic("sc", topic(1)).await.unwrap();
        admin.upsert_user("frank", "frank-pw", false).await.unwrap();
        admin
    });
    let script = r#"
import json, sys
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType, ScramCredentialInfo,
                                   ScramMechanism, UserScramCredentialDeletion,
                                   UserScramCredentialUpsertion)
conf = {"bootstrap.servers": sys.argv[1], "security.protocol": "SASL_PLAINTEXT"}
def user(name, password, mechanism="SCRAM-SHA-256"):
    return dict(conf, **{"sasl.mechanisms": mechanism, "sasl.username": name,
                         "sasl.password": password})
admin = AdminClient(user("admin", sys.argv[2]))
frank = AdminClient(user("frank", "frank-pw"))
out = {}
def name(e):
    return e.args[0].name() if e.args and hasattr(e.args[0], "name") else str(e)
def outcomes(futures):
    res = {}
    for u, f in futures.items():
        try:
            f.result()
            res[u] = "NONE"
        except KafkaException as e:
            res[u] = name(e)
    return res
def alter(client, alterations):
    return outcomes(client.alter_user_scram_credentials(alterations, request_timeout=30))
sha256, sha512 = ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512
out["created"] = alter(admin, [
    UserScramCredentialUpsertion("gina", ScramCredentialInfo(sha512, 10000), b"gina-pw"),
    UserScramCredentialDeletion("nobody", sha256),
    UserScramCredentialUpsertion("weak", ScramCredentialInfo(sha256, 100), b"weak-pw"),
])
out["frank_alters"] = alter(frank, [
    UserScramCredentialUpsertion("admin", ScramCredentialInfo(sha256, 4096), b"stolen")])
# A new connection as the admin: its password is still its own.
again = AdminClient(user("admin", sys.argv[2]))
d = again.describe_user_scram_credentials(["admin"], request_timeout=30)["admin"].result()
out["admin_again"] = sorted("%s %d" % (i.mechanism.name, i.iterations)
                            for i in d.scram_credential_infos)
described = admin.describe_user_scram_credentials(["gina", "nobody"], request_timeout=30)
out["described"] = {}
for u, f in described.items():
    try:
        d = f.result()
        out["described"][u] = ["%s %d" % (i.mechanism.name, i.iterations)
                               for i in d.scram_credential_infos]
    except KafkaException as e:
        out["described"][u] = name(e)
for b in [AclBinding(ResourceType.TOPIC, "sc", ResourcePatternType.LITERAL, "User:gina", "*",
                     AclOperation.WRITE, AclPermissionType.ALLOW)]:
    admin.create_acls([b], request_timeout=30)[b].result()
def produce(conf):
    p = Producer(dict(conf, **{"message.timeout.ms": 4000}))
    errors = []
    p.produce("sc", b"v", on_delivery=lambda err, msg: errors.append(err and err.name()))
    p.flush(10)
    return errors
out["gina_512"] = produce(user("gina", "gina-pw", "SCRAM-SHA-512"))
out["gina_256"] = produce(user("gina", "gina-pw", "SCRAM-SHA-256"))
out["deleted"] = alter(admin, [UserScramCredentialDeletion("gina", sha512)])
out["gina_after"] = produce(user("gina", "gina-pw", "SCRAM-SHA-512"))
d = admin.describe_user_scram_credentials(["gina"], request_timeout=30)["gina"]
try:
    d.result()
    out["described_after"] = "NONE"
except KafkaException as e:
    out["described_after"] = name(e)
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &kafka, ADMIN_PW])
        .output()
        .expect("python3 with confluent-kafka");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    let created = serde_json::json!({
        "gina": "NONE", "nobody": "RESOURCE_NOT_FOUND", "weak": "UNACCEPTABLE_CREDENTIAL"
    });
    assert_eq!(v["created"], created, "{text}");
    assert_eq!(
        v["frank_alters"],
        serde_json::json!({"admin": "CLUSTER_AUTHORIZATION_FAILED"}),
        "{text}"
    );
    let both = serde_json::json!(["SCRAM_SHA_256 8192", "SCRAM_SHA_512 8192"]);
    assert_eq!(v["admin_again"], both, "{text}");
    let described =
        serde_json::json!({"gina": ["SCRAM_SHA_512 10000"], "nobody": "RESOURCE_NOT_FOUND"});
    assert_eq!(v["described"], described, "{text}");
    assert_eq!(v["gina_512"], serde_json::json!([null]), "gina authenticates: {text}");
    assert_ne!(v["gina_256"], serde_json::json!([null]), "no SHA-256 credential: {text}");
    assert_eq!(v["deleted"], serde_json::json!({"gina": "NONE"}), "{text}");
    assert_ne!(v["gina_after"], serde_json::json!([null]), "gina is gone: {text}");
    assert_eq!(v["described_after"], "RESOURCE_NOT_FOUND", "{text}");
    rt.block_on(async {
        let users = admin.list_users().await.unwrap();
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["admin", "frank"], "weak and gina are not stored");
        let kept = admin.list_acls("gina").await.unwrap();
        assert_eq!(kept.len(), 1, "gina's ACL stays: {kept:?}");
    });
}

/// The native `ChangeCredentials` through `Client::change_credentials`: a user created with
/// one mechanism authenticates with it (and not with the other), a user refused changes
/// nothing while the others go on, the change holds across a restart, and the last
/// credential's removal removes the user.
#[test]
fn credentials_change_per_user_and_mechanism() {
    use wire::scram::{Credential, Mechanism};
    let (_dir, mut broker) = broker_with_admin(1, &[]);
    let credential = |m: Mechanism, password: &str| {
        let c = Credential::derive(m, password.as_bytes(), &[9u8; 16], 4096);
        ScramCredential {
            mechanism: m.name().to_owned(),
            salt: c.salt,
            iterations: c.iterations,
            stored_key: c.stored_key,
            server_key: c.server_key,
        }
    };
    let change = |user: &str, remove: &[&str], upsert: Vec<ScramCredential>| UserCredentialChange {
        user: user.into(),
        remove: remove.iter().map(|m| m.to_string()).collect(),
        upsert,
    };
    let as_user = |b: &Broker, m: Mechanism| {
        let config = ClientConfig {
            credentials: Some(Credentials {
                user: "hank".into(),
                password: "hank-pw".into(),
                mechanism: m,
            }),
            retries: 0,
            ..Default::default()
        };
        let address = b.public.to_string();
        async move { Client::connect_with(&address, config).await.map(drop) }
    };
    let rt = rt();
    rt.block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        let results = admin
            .change_credentials(vec![
                change("hank", &[], vec![credential(Mechanism::Sha256, "hank-pw")]),
                change("ivy", &["SCRAM-SHA-512"], vec![]),
                change("admin", &["SCRAM-SHA-512"], vec![credential(Mechanism::Sha256, "x")]),
                change("admin", &[], vec![]),
            ])
            .await
            .unwrap();
        let errors: Vec<u16> = results.iter().map(|r| r.error).collect();
        let (unknown, invalid) =
            (ErrorCode::UnknownUser.as_u16(), ErrorCode::InvalidRequest.as_u16());
        assert_eq!(errors, [0, unknown, invalid, invalid], "{results:?}");
    });
    broker.kill();
    broker.restart();
    rt.block_on(async {
        as_user(&broker, Mechanism::Sha256).await.unwrap();
        assert!(as_user(&broker, Mechanism::Sha512).await.is_err(), "no SHA-512 credential");
        // The admin named twice changed nothing: its password still works.
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        let results = admin
            .change_credentials(vec![change("hank", &["SCRAM-SHA-256"], vec![])])
            .await
            .unwrap();
        assert_eq!(results[0].error, 0, "{results:?}");
        let names: Vec<String> =
            admin.list_users().await.unwrap().into_iter().map(|u| u.name).collect();
        assert_eq!(names, ["admin"]);
    });
}

/// Kafka AlterConfigs by a principal that may not alter the topic is TOPIC_AUTHORIZATION_FAILED
/// before its settings are looked at (before, a change to a compacted topic's fixed policy
/// answered INVALID_CONFIG naming the policy to anyone, and a missing topic answered as
/// missing); once alter is granted the same change meets the fixed batch limit.
#[test]
fn kafka_alter_configs_refuses_an_unauthorized_principal_before_looking_at_the_topic() {
    let (_dir, broker) = broker_with_admin(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let kafka = ready_address(&broker, "kafka").to_string();
    let admin = rt().block_on(async {
        let admin = client_as(&broker, "admin", ADMIN_PW).await.unwrap();
        admin.create_topic("compacted", TopicConfig { compact: true, ..topic(1) }).await.unwrap();
        admin.upsert_user("jill", "jill-pw", false).await.unwrap();
        admin
    });
    let script = r#"
import json, sys
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
py = KafkaAdminClient(bootstrap_servers=sys.argv[1], security_protocol="SASL_PLAINTEXT",
                      sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="jill",
                      sasl_plain_password="jill-pw")
out = {}
for name in ["compacted", "missing"]:
    r = py.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name,
                                         configs={"max.message.bytes": "1000"})],
                         raise_on_unknown=False)
    (v,) = [v for d in r.values() for v in d.values()]
    out[name] = str(v)
print(json.dumps(out))
"#;
    let run = || python_json(script, &kafka);
    let denied = run();
    let refused = "[Error 29] TopicAuthorizationFailedError: None";
    assert_eq!(denied["compacted"], refused, "nothing said of the policy: {denied}");
    assert_eq!(denied["missing"], refused, "{denied}");
    rt().block_on(async {
        let grant = acl("jill", AclResourceKind::Topic, "compacted", AclOperation::Alter, false);
        admin.create_acl(grant).await.unwrap();
    });
    let allowed = run();
    let fixed = allowed["compacted"].as_str().unwrap();
    assert!(fixed.starts_with("[Error 40] InvalidConfigurationError"), "{allowed}");
    assert!(fixed.contains("fixed at creation"), "the batch limit is fixed: {allowed}");
    assert_eq!(allowed["missing"], refused, "{allowed}");
}
