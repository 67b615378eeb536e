//! A one-shard broker inside the calling process, fed byte streams instead of sockets: the
//! server's whole frame handling (frame reader, header checks, body validation, every API
//! handler, the partition log on real DMA files) without the network. The fuzz target
//! (`broker/fuzz`) and the hostile-stream test drive it.
//!
//! The shard runs on its own glommio executor thread; [`InProcessBroker::serve`] hands it
//! one byte stream as one connection's input and returns what the connection wrote back
//! once the stream ended and the responses drained (or a time limit passed: long-poll
//! fetches may keep answering in the background).

use std::cell::RefCell;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::BrokerConfig;
use crate::connection;
use crate::mesh::ShardMsg;
use crate::metadata::{Metadata, TopicSettings};
use crate::shard::{Addresses, Shard};
use crate::watermark::Watermark;

/// The topic that exists from the start (4 partitions).
pub const TOPIC: &str = "fuzz";

type Job = (Vec<u8>, mpsc::Sender<Vec<u8>>);

/// See the module docs.
#[derive(Debug)]
pub struct InProcessBroker {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<glommio::ExecutorJoinHandle<()>>,
    serve_time_max: Duration,
}

impl InProcessBroker {
    /// Starts the shard with its data in `data_dir` and topic [`TOPIC`] created.
    pub fn start(data_dir: PathBuf) -> io::Result<InProcessBroker> {
        std::fs::create_dir_all(&data_dir)?;
        let data_dir = std::fs::canonicalize(&data_dir)?;
        let mut config = BrokerConfig { data_dir, ..BrokerConfig::default() };
        config.shards = 1;
        config.frame_read_timeout_ms = 200;
        config.connection_idle_ms = 1_000;
        config.log.segment_bytes_max = 1 << 20;
        config.log.retention_bytes = 16 << 20;
        // Hostile streams create topics; keep them within this process's descriptors.
        config.partitions_max = 64;
        // A hostile stream may store a user (UpsertUser); authentication stays off so the
        // streams after it still reach every handler.
        config.auth.mode = crate::auth::AuthMode::Off;
        let config = Arc::new(config);
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let io_memory = config.io_memory_bytes;
        let thread = LocalExecutorBuilder::new(Placement::Unbound)
            .name("in-process-shard")
            .io_memory(io_memory)
            .spawn(move || async move { run(config, rx, ready_tx).await })
            .map_err(|e| io::Error::other(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(io::Error::other(e)),
            Err(_) => return Err(io::Error::other("the shard thread ended while starting")),
        }
        Ok(InProcessBroker {
            jobs: Some(jobs),
            thread: Some(thread),
            serve_time_max: Duration::from_millis(500),
        })
    }

    /// Feeds `input` as one connection's bytes (then end of stream) and returns the bytes
    /// the broker wrote back. Panics if the shard thread died (a panic in the server).
    pub fn serve(&self, input: &[u8]) -> Vec<u8> {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .as_ref()
            .expect("running")
            .send((input.to_vec(), tx))
            .expect("the in-process shard thread is gone (did the server panic?)");
        match rx.recv_timeout(self.serve_time_max + Duration::from_secs(10)) {
            Ok(out) => out,
            Err(e) => panic!("the in-process shard did not answer: {e}"),
        }
    }
}

impl Drop for InProcessBroker {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn run(
    config: Arc<BrokerConfig>,
    jobs: mpsc::Receiver<Job>,
    ready: mpsc::Sender<Result<(), String>>,
) {
    let mesh = MeshBuilder::<ShardMsg, _>::full(1, 16);
    let (senders, _receivers) = match mesh.join().await {
        Ok(m) => m,
        Err(e) => {
            let _ = ready.send(Err(format!("channel mesh: {e}")));
            return;
        }
    };
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let addresses = Arc::new(Addresses { public: loopback, shards: vec![loopback] });
    let pools = crate::descriptors::DescriptorPools {
        connections: crate::descriptors::ConnectionSlots::new(config.connections_per_shard_max),
        storage: crate::descriptors::StorageFiles::new(
            crate::descriptors::StorageFiles::files_for_partitions(config.partitions_max),
            config.partitions_max,
        ),
    };
    let security = match crate::auth::Security::open(&config.data_dir, &config.auth) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(format!("users and ACLs: {e}")));
            return;
        }
    };
    let shard = Shard::new(0, 0, config, addresses, senders, pools, security);
    let settings = TopicSettings::from_wire(&wire::TopicConfig {
        partition_count: 4,
        retention_ms: -1,
        retention_bytes: 0,
        ..Default::default()
    });
    let metadata = match Metadata::default().with_topic(TOPIC, settings, 1) {
        Ok(m) => m,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    shard.apply_metadata(Arc::new(metadata)).await;
    let _ = ready.send(Ok(()));
    let stop = Watermark::new(0);
    loop {
        let job = match jobs.try_recv() {
            Ok(job) => job,
            Err(mpsc::TryRecvError::Empty) => {
                glommio::timer::sleep(Duration::from_micros(100)).await;
                continue;
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
        };
        let (input, reply) = job;
        let output = Rc::new(RefCell::new(Vec::new()));
        let stream = MemoryStream { input, read: 0, output: output.clone() };
        let task = glommio::spawn_local(connection::serve(
            shard.clone(),
            stream,
            crate::connection_info::ConnectionInfo::default(),
            stop.clone(),
            crate::auth::Session::new(None),
        ));
        futures_lite::future::or(task, async {
            glommio::timer::sleep(Duration::from_millis(500)).await;
        })
        .await;
        let _ = reply.send(output.borrow().clone());
    }
    stop.advance(1);
    for p in shard.partitions() {
        let _ = p.log.close().await;
    }
}

/// One connection's bytes: reads `input` then end of stream; collects what is written.
struct MemoryStream {
    input: Vec<u8>,
    read: usize,
    output: Rc<RefCell<Vec<u8>>>,
}

impl AsyncRead for MemoryStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = buf.len().min(self.input.len() - self.read);
        let start = self.read;
        buf[..n].copy_from_slice(&self.input[start..start + n]);
        self.read += n;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for MemoryStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.output.borrow_mut().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Frames `input` for the structure-aware mode of the fuzz target and the hostile-stream
/// test: the input is cut into chunks (a 2-byte little-endian length before each); each
/// chunk's first byte picks the api key and the rest is the body, sent with a valid header
/// (CRC included) so the bytes reach the body validators and the handlers.
pub fn frame_chunks(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = input;
    let mut id = 1u64;
    while rest.len() >= 3 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let chunk = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let Some((&api, body)) = chunk.split_first() else { continue };
        // Every api key, and a few past the last (unknown keys).
        let keys = wire::ApiKey::ALL.len() as u8 + 4;
        out.extend_from_slice(&frame(u16::from(api % keys), id, body));
        id += 1;
    }
    out
}

/// One request frame with a valid header around `body`.
pub fn frame(api_key: u16, correlation_id: u64, body: &[u8]) -> Vec<u8> {
    let header = wire::FrameHeader {
        version: wire::constants::PROTOCOL_VERSION,
        api_key,
        flags: 0,
        correlation_id,
        body_len: body.len() as u32,
    };
    let mut out = header.encode().to_vec();
    out.extend_from_slice(body);
    out.resize(wire::constants::FRAME_HEADER_BYTES + header.body_padded_len(), 0);
    out
}

/// Checks that `output` is a sequence of well-formed frames (header magic, version, CRC,
/// lengths) ending on a frame boundary; returns how many.
pub fn check_output(output: &[u8]) -> Result<usize, String> {
    let mut rest = output;
    let mut n = 0;
    while !rest.is_empty() {
        let head: &[u8; wire::constants::FRAME_HEADER_BYTES] = rest
            .get(..wire::constants::FRAME_HEADER_BYTES)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| format!("output ends inside a frame header after {n} frames"))?;
        let header = wire::FrameHeader::decode(head, u32::MAX)
            .map_err(|e| format!("frame {n}: broken header: {e}"))?;
        let len = header.frame_len();
        if rest.len() < len {
            return Err(format!("frame {n}: {len} bytes announced, {} left", rest.len()));
        }
        rest = &rest[len..];
        n += 1;
    }
    Ok(n)
}
