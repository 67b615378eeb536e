//! Helpers for cross-process tests: start the real `broker` binary on 127.0.0.1 with a temp
//! data dir, and talk to it with a small blocking client built on `wire` alone (so the tests
//! exercise the protocol, not a client library's conveniences).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wire::constants::{FLAG_ERROR, FLAG_PUSH, FRAME_HEADER_BYTES};
use wire::{AlignedVec, ErrorBody, FrameHeader, Message};

pub mod certs;

/// Path of the `broker` binary, built once per test process (same profile as the tests).
pub fn broker_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir =
            exe.parent().and_then(Path::parent).expect("target/<profile>/deps").to_owned();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "-p", "broker", "--bin", "broker"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build for the broker binary");
        assert!(status.success(), "building the broker binary failed");
        profile_dir.join("broker")
    })
    .clone()
}

/// A running broker process, killed (SIGKILL) on drop unless stopped.
pub struct Broker {
    child: Option<Child>,
    /// Its data directory (kept across restarts).
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// The public address.
    pub public: SocketAddr,
    /// Each shard's own address.
    pub shards: Vec<SocketAddr>,
    /// Its log file.
    pub log: PathBuf,
    shard_count: usize,
    env: Vec<(String, String)>,
    /// Fixed `--listen` and `--shard-port-base` (so a restart keeps its addresses).
    ports: Option<(u16, u16)>,
}

impl Broker {
    /// Starts a broker with `shards` shards on a fresh temp data dir.
    pub fn start(shards: usize) -> Broker {
        Self::start_with_env(shards, &[])
    }

    /// Starts with extra `BROKER_*` environment variables.
    pub fn start_with_env(shards: usize, env: &[(&str, &str)]) -> Broker {
        Self::start_in(shards, None, env)
    }

    /// Starts with its data in `data_dir` (e.g. on a special filesystem) and extra env.
    pub fn start_on_dir_with_env(shards: usize, data_dir: PathBuf, env: &[(&str, &str)]) -> Broker {
        Self::start_in(shards, Some(data_dir), env)
    }

    /// The log and (unless given) the data dir go in a fresh temp dir, kept when
    /// `KEEP_BROKER_DIR` is set.
    fn start_in(shards: usize, data_dir: Option<PathBuf>, env: &[(&str, &str)]) -> Broker {
        let mut tmp = tempfile::Builder::new().prefix("broker-it-").tempdir().expect("temp dir");
        if std::env::var_os("KEEP_BROKER_DIR").is_some() {
            tmp.disable_cleanup(true);
            eprintln!("broker dir kept: {}", tmp.path().display());
        }
        let mut b = Broker {
            child: None,
            data_dir: data_dir.unwrap_or_else(|| tmp.path().join("data")),
            log: tmp.path().join("broker.log"),
            _tmp: Some(tmp),
            public: "127.0.0.1:0".parse().expect("addr"),
            shards: Vec::new(),
            shard_count: shards,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ports: None,
        };
        b.spawn();
        b
    }

    /// Starts on fixed free ports, so clients can reconnect to the same addresses after a
    /// restart.
    pub fn start_fixed_ports(shards: usize) -> Broker {
        let mut b = Self::start_with_env(shards, &[]);
        b.kill();
        let free = |n: u16| -> u16 {
            // A base port with `n` free ports after it.
            for _ in 0..100 {
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                let base = l.local_addr().expect("addr").port();
                drop(l);
                if base < 60000
                    && (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
                {
                    return base;
                }
            }
            panic!("no free ports");
        };
        let public = free(1);
        let mut shard_base = free(shards as u16);
        while (shard_base..shard_base + shards as u16).contains(&public) {
            shard_base = free(shards as u16);
        }
        b.ports = Some((public, shard_base));
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let ready = self.data_dir.with_extension("ready");
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(broker_binary());
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .args(match self.ports {
                Some((p, s)) => [
                    "--listen".to_string(),
                    format!("127.0.0.1:{p}"),
                    "--shard-port-base".into(),
                    s.to_string(),
                ],
                None => [
                    "--listen".to_string(),
                    "127.0.0.1:0".into(),
                    "--shard-port-base".into(),
                    "0".into(),
                ],
            })
            .args(["--shards", &self.shard_count.to_string()])
            .arg("--ready-file")
            .arg(&ready)
            .env("RUST_LOG", std::env::var("BROKER_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(log)
            // Each test broker's metrics endpoint on a port of its own (the default, 9644, is
            // taken by the first broker of a parallel run: the others ran without metrics).
            .env("BROKER_METRICS_LISTEN", "127.0.0.1:0");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn broker");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                let v: serde_json::Value = serde_json::from_str(&text).expect("ready file json");
                self.public = v["public"].as_str().expect("public").parse().expect("addr");
                self.shards = v["shards"]
                    .as_array()
                    .expect("shards")
                    .iter()
                    .map(|a| a.as_str().expect("addr").parse().expect("addr"))
                    .collect();
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "broker exited with {status} before it was ready; log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "broker not ready in 60 s; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// The metrics endpoint's address from the broker's ready file (`None`: metrics off).
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        let text =
            std::fs::read_to_string(self.data_dir.with_extension("ready")).expect("ready file");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        v["metrics"].as_str().map(|a| a.parse().expect("address"))
    }

    /// The value of metric `name` for shard `shard` (`name{shard="N"}`) from the metrics
    /// endpoint, if it is there.
    pub fn metric(&self, name: &str, shard: u32) -> Option<f64> {
        let text = self.metrics_text()?;
        let prefix = format!("{name}{{shard=\"{shard}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.parse().expect("a number"))
    }

    /// The metrics endpoint's answer (headers and the scrape), if metrics are on.
    pub fn metrics_text(&self) -> Option<String> {
        let addr = self.metrics_address()?;
        let mut s = TcpStream::connect(addr).expect("metrics endpoint");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .expect("metrics request");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("metrics answer");
        Some(text)
    }

    /// The broker's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Resident memory of the broker process in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.status_bytes("VmRSS")
    }

    /// A memory figure of the broker process from `/proc/PID/status` in bytes: `VmRSS`,
    /// `VmHWM` (peak resident), `VmPeak` (peak virtual).
    pub fn status_bytes(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/PID/status"));
        kb * 1024
    }

    /// Descriptors the broker process holds open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).expect("/proc/PID/fd").count()
    }

    /// SIGTERM and wait: a graceful stop. Returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        // SAFETY: sending SIGTERM to the child process we spawned and still own.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().expect("wait broker");
        status.code()
    }

    /// SIGKILL and wait: a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same data dir (after `stop` or `kill`) with `shards` shards.
    pub fn restart_with_shards(&mut self, shards: usize) {
        self.shard_count = shards;
        self.restart();
    }

    /// Starts again on the same data dir (after `stop` or `kill`).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running broker");
        self.spawn();
    }

    /// Where a topic's partitions live: `<data>/topics~/<topic>` (`broker::layout`).
    pub fn topic_dir(&self, topic: &str) -> PathBuf {
        self.data_dir.join("topics~").join(topic)
    }

    /// Where one partition's segments live: `<data>/topics~/<topic>/<partition>`.
    pub fn partition_dir(&self, topic: &str, partition: u32) -> PathBuf {
        self.topic_dir(topic).join(partition.to_string())
    }

    /// A connection to the public address.
    pub fn connect(&self) -> Conn {
        Conn::connect(self.public)
    }

    /// A connection to shard `i`'s own address.
    pub fn connect_shard(&self, i: usize) -> Conn {
        Conn::connect(self.shards[i])
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A response or push frame.
pub struct Frame {
    /// Its header.
    pub header: FrameHeader,
    /// Header and body.
    pub bytes: AlignedVec,
}

impl Frame {
    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.bytes[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + self.header.body_len as usize]
    }

    /// Decodes the body.
    pub fn decode<T>(&self) -> T
    where
        T: rkyv::Archive,
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>,
            > + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        assert!(
            !self.header.has_flag(FLAG_ERROR),
            "error response: {:?}",
            wire::decode_body::<ErrorBody>(self.body())
        );
        wire::decode_body::<T>(self.body()).expect("valid body")
    }
}

/// A blocking protocol connection.
pub struct Conn {
    stream: TcpStream,
    next_id: u64,
    early: HashMap<u64, Frame>,
    /// Pushes received while waiting for a response.
    pub pushes: Vec<Frame>,
}

impl Conn {
    /// Connects (with a 30 s read timeout).
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        Conn { stream, next_id: 1, early: HashMap::new(), pushes: Vec::new() }
    }

    /// Sends a request and returns its correlation id.
    pub fn send<T: Message>(&mut self, req: &T) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let frame = wire::encode_request(id, req).expect("encode");
        self.stream.write_all(&frame).expect("write");
        id
    }

    /// Sends a request and decodes its response; `None` if the connection broke (the broker
    /// was killed) before the response arrived.
    pub fn try_call<Req: Message, Resp>(&mut self, req: &Req) -> Option<Resp>
    where
        Resp: rkyv::Archive,
        Resp::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>,
            > + rkyv::Deserialize<Resp, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        let id = self.next_id;
        self.next_id += 1;
        let frame = wire::encode_request(id, req).expect("encode");
        self.stream.write_all(&frame).ok()?;
        loop {
            let mut head = [0u8; FRAME_HEADER_BYTES];
            self.stream.read_exact(&mut head).ok()?;
            let header = FrameHeader::decode(&head, u32::MAX).ok()?;
            let mut bytes = AlignedVec::with_capacity(header.frame_len());
            bytes.extend_from_slice(&head);
            bytes.resize(header.frame_len(), 0);
            self.stream.read_exact(&mut bytes[FRAME_HEADER_BYTES..]).ok()?;
            if header.correlation_id == id && !header.has_flag(FLAG_PUSH) {
                let f = Frame { header, bytes };
                if header.has_flag(FLAG_ERROR) {
                    return None;
                }
                return wire::decode_body::<Resp>(f.body()).ok();
            }
        }
    }

    /// Closes the sending half (the broker sees the end of the stream; answers still come).
    pub fn shutdown_write(&self) {
        self.stream.shutdown(std::net::Shutdown::Write).expect("shutdown");
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads the next frame; `None` at end of stream.
    pub fn read_frame(&mut self) -> Option<Frame> {
        let mut head = [0u8; FRAME_HEADER_BYTES];
        match self.stream.read_exact(&mut head) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                return None
            }
            Err(e) => panic!("read: {e}"),
        }
        let header = FrameHeader::decode(&head, u32::MAX).expect("valid header from the broker");
        let mut bytes = AlignedVec::with_capacity(header.frame_len());
        bytes.extend_from_slice(&head);
        bytes.resize(header.frame_len(), 0);
        self.stream.read_exact(&mut bytes[FRAME_HEADER_BYTES..]).expect("read body");
        Some(Frame { header, bytes })
    }

    /// Waits for the response with correlation id `id` (pushes are kept in `pushes`).
    pub fn wait(&mut self, id: u64) -> Frame {
        if let Some(f) = self.early.remove(&id) {
            return f;
        }
        loop {
            let f = self.read_frame().expect("connection closed while waiting for a response");
            if f.header.has_flag(FLAG_PUSH) {
                self.pushes.push(f);
            } else if f.header.correlation_id == id {
                return f;
            } else {
                self.early.insert(f.header.correlation_id, f);
            }
        }
    }

    /// Sends a request and decodes its response.
    pub fn call<Req: Message, Resp>(&mut self, req: &Req) -> Resp
    where
        Resp: rkyv::Archive,
        Resp::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>,
            > + rkyv::Deserialize<Resp, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        let id = self.send(req);
        self.wait(id).decode()
    }

    /// The next push (waiting for it).
    pub fn next_push(&mut self) -> Frame {
        if !self.pushes.is_empty() {
            return self.pushes.remove(0);
        }
        loop {
            let f = self.read_frame().expect("connection closed while waiting for a push");
            if f.header.has_flag(FLAG_PUSH) {
                return f;
            }
            self.early.insert(f.header.correlation_id, f);
        }
    }

    /// Sets the read timeout.
    pub fn set_read_timeout(&self, d: Option<Duration>) {
        self.stream.set_read_timeout(d).expect("timeout");
    }

    /// The socket itself, for reading raw bytes.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}

/// Creates a topic and returns its partition → shard map.
pub fn create_topic(conn: &mut Conn, name: &str, partitions: u32) -> Vec<u32> {
    let resp: wire::CreateTopicResponse = conn.call(&wire::CreateTopicRequest {
        name: name.into(),
        config: wire::TopicConfig {
            partition_count: partitions,
            retention_ms: -1,
            retention_bytes: -1,
            ..Default::default()
        },
    });
    assert_eq!(resp.error, 0, "create topic: {}", resp.message);
    resp.topic.expect("topic").partitions.iter().map(|p| p.shard).collect()
}

/// Appends `batches` (back to back) to `topic`/`partition` at `ack`; that partition's result.
pub fn produce(
    conn: &mut Conn,
    topic: &str,
    partition: u32,
    batches: &[u8],
    ack: wire::AckLevel,
) -> wire::ProducePartitionResult {
    let resp: wire::ProduceResponse = conn.call(&wire::ProduceRequest {
        ack,
        timeout_ms: 10_000,
        topics: vec![wire::ProduceTopic {
            name: topic.into(),
            partitions: vec![wire::ProducePartition {
                partition,
                batches: batches.to_vec(),
                expect: Default::default(),
            }],
        }],
    });
    resp.topics[0].partitions[0].clone()
}

/// Every stored batch of `topic`/`partition` from offset 0 up to `end` (broker-assigned
/// fields included), fetched in order; asserts the offsets are dense.
pub fn fetch_all(conn: &mut Conn, topic: &str, partition: u32, end: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < end {
        let resp: wire::FetchResponse = conn.call(&wire::FetchRequest {
            max_wait_ms: 1000,
            min_bytes: 1,
            max_bytes: 4 << 20,
            topics: vec![wire::FetchTopic {
                name: topic.into(),
                partitions: vec![wire::FetchPartition { partition, offset, max_bytes: 1 << 20 }],
            }],
        });
        let p = &resp.topics[0].partitions[0];
        assert_eq!(
            p.error,
            0,
            "fetch {topic}/{partition}: {:?}",
            wire::ErrorCode::from_u16(p.error)
        );
        let bytes = wire::to_aligned(&p.batches);
        for b in wire::Batches::new(&bytes) {
            let b = b.expect("fetched batch validates");
            assert_eq!(b.header().base_offset(), offset, "dense offsets");
            offset = b.header().next_offset();
            out.push(b.bytes().to_vec());
        }
    }
    out
}

/// One native batch of one record (key `k`) whose value is `value_bytes` zeros,
/// zstd-compressed: a few KiB that open to `value_bytes` (a decompression bomb).
pub fn zeros_batch_compressed(value_bytes: usize) -> Vec<u8> {
    let mut b = wire::BatchBuilder::new(wire::constants::BATCH_BYTES_MAX as usize);
    b.append(0, Some(b"k"), Some(&vec![0u8; value_bytes]), &[]).expect("append");
    let plain = b.finish().expect("batch");
    let envelope = wire::BatchEnvelope::validate(&plain).expect("valid");
    let mut out = wire::AlignedVec::new();
    let zstd = wire::Compression::Zstd { level: 1 };
    let range = envelope.compress_into(zstd, &mut out).expect("zeros shrink");
    out[range].to_vec()
}
