//! Starting and stopping the broker: sockets, one pinned executor per shard, the mesh,
//! signals.
//!
//! Startup binds every socket on the main thread first (the public port once per shard with
//! SO_REUSEPORT, and each shard's own port), so all addresses are known — and an occupied
//! port is reported — before any shard starts. Each shard then joins the channel mesh (its
//! rank there is its shard id), opens and recovers the partitions it owns, and starts
//! accepting. When every shard is ready the addresses are logged and, if asked, written to a
//! ready file. SIGINT/SIGTERM stop accepting, let in-flight requests finish, close (sync) all
//! partition logs, and exit 0.
//!
//! Before anything is bound, the secure-by-default rule is checked (`exposure.rs`) and the
//! TLS files are loaded (`tls.rs`); with TLS every accepted connection runs its handshake in
//! its own task (`ServerTls::handshake`) before the protocol's serve function, and SIGHUP
//! reloads the certificate files.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};

use socket2::{Domain, Protocol, Socket, Type};
use tracing::{info, warn};

use crate::config::{BrokerConfig, MetricsListen};
use crate::descriptors::{
    raise_open_files_limit, ConnectionSlots, DescriptorPlan, DescriptorPools, StorageFiles,
    FDS_PER_PARTITION, OPEN_FILES_RESERVED,
};
use crate::mesh::ShardMsg;
use crate::metadata::Metadata;
use crate::metrics::collect::Link;
use crate::shard::{Addresses, JournalBarrier, Shard};
use crate::watermark::Watermark;

/// Why the broker could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The data directory cannot be used.
    #[error("data directory {path}: {message}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate files cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A listener would be reachable from other hosts without protection.
    #[error(transparent)]
    Exposure(#[from] crate::exposure::ExposureError),
    /// An executor failed to start or panicked.
    #[error("shard {shard}: {message}")]
    Shard {
        /// Which.
        shard: usize,
        /// What happened.
        message: String,
    },
}

fn bind(addr: SocketAddr, reuse_port: bool) -> Result<StdListener, ServerError> {
    let err = |source| ServerError::Bind { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    if reuse_port {
        socket.set_reuse_port(true).map_err(err)?;
    }
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(4096).map_err(err)?;
    Ok(socket.into())
}

/// Waits until no listener holds `addr` (a fixed port), for at most `wait`.
///
/// A broker killed with SIGKILL keeps its listening sockets for 20–30 ms after it is reaped
/// (the io_uring teardown still holds them). A supervisor restarting it at once would get
/// `EADDRINUSE` on the shard ports, and on the public port, bound with SO_REUSEPORT, it
/// would join the dying listener's group, so connections could land in a queue nobody
/// accepts. A probe socket without SO_REUSEPORT cannot bind while any listener holds the
/// address (SO_REUSEADDR only passes TIME_WAIT), so the probe tells when the old listener
/// is gone. Logs once when it has to wait; after `wait` the bind error stands.
fn wait_for_address(addr: SocketAddr, wait: Duration) -> Result<(), ServerError> {
    if addr.port() == 0 {
        return Ok(()); // an ephemeral port cannot be held by an earlier process
    }
    let deadline = Instant::now() + wait;
    let mut backoff = Duration::from_millis(2);
    let mut logged = false;
    loop {
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .and_then(|s| s.set_reuse_address(true).map(|()| s))
            .and_then(|s| s.bind(&addr.into()).map(|()| s));
        match probe {
            Ok(_) => {
                if logged {
                    info!(%addr, "address free; binding");
                }
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                if !logged {
                    warn!(%addr, wait_ms = wait.as_millis() as u64,
                        "address in use (a previous broker's listener may still be closing); waiting");
                    logged = true;
                }
                std::thread::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())));
                backoff = (backoff * 2).min(Duration::from_millis(100));
            }
            Err(source) => return Err(ServerError::Bind { addr, source }),
        }
    }
}

/// CPUs this process may run on, in order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            let cpus: Vec<usize> =
                (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect();
            if !cpus.is_empty() {
                return cpus;
            }
        }
    }
    (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
}

/// Takes an exclusive lock on the data directory so two brokers never share it.
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File, ServerError> {
    let err = |message: String| ServerError::DataDir { path: dir.to_owned(), message };
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(crate::layout::LOCK_FILE))
        .map_err(|e| err(e.to_string()))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(err("locked by another broker process".into()));
    }
    Ok(file)
}

/// Runs the broker until SIGINT/SIGTERM (or `stop` is set). Writes the addresses as JSON to
/// `ready_file` once every shard accepts connections.
pub fn run(
    config: BrokerConfig,
    ready_file: Option<PathBuf>,
    stop: Arc<AtomicBool>,
) -> Result<(), ServerError> {
    config.validate()?;
    // Before the shards allocate anything (`huge_pages.rs`).
    if let Err(e) = crate::huge_pages::apply(config.transparent_huge_pages) {
        warn!(error = %e, "cannot turn transparent huge pages off: a shard may stall while the kernel zeroes a 2 MiB page");
    }
    let tls = crate::tls::ServerTls::load(&config.tls)?;
    if let Some(tls) = &tls {
        info!(
            cert = ?config.tls.cert,
            client_certificates = tls.verifies_clients(),
            "TLS on every listener (native and HTTP: TLS 1.3; Kafka: TLS 1.2 and 1.3); SIGHUP reloads the files"
        );
    }
    // SIGHUP reloads the certificate files while the broker runs (`tls.rs`); without TLS it
    // is logged and ignored (never the default action, which would end the process).
    let reloader = crate::tls::spawn_reloader(tls.clone()).map_err(|e| ServerError::Shard {
        shard: 0,
        message: format!("cannot install the SIGHUP handler: {e}"),
    })?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        pid = std::process::id(),
        data_dir = %config.data_dir.display(),
        listen = %config.listen,
        shards = config.shard_count(),
        metrics = %config.metrics_listen,
        "broker starting"
    );
    let open_files = raise_open_files_limit();
    let mut config = config;
    // Descriptors are split between connections and storage up front, so neither can
    // starve the other: partitions past the storage budget are refused at create
    // (RESOURCE_LIMIT) instead of failing to open, their optional files fail soft when the
    // budget is spent, and connections keep theirs however busy the partitions are.
    let plan = DescriptorPlan::new(
        open_files,
        config.shard_count(),
        config.connections_per_shard_max,
        config.partitions_max,
        config.storage_files_max,
    );
    let wanted_connections = config.connections_per_shard_max * config.shard_count();
    if plan.connections < wanted_connections || plan.partitions < config.partitions_max {
        warn!(
            open_files,
            connections_max = plan.connections,
            storage_files_max = plan.storage_files,
            partitions_max = plan.partitions,
            configured_connections = wanted_connections,
            configured_partitions = config.partitions_max,
            "limits lowered to what the open-files limit allows ({FDS_PER_PARTITION} per partition and a quarter of the storage budget for index files and reads, one per connection, {OPEN_FILES_RESERVED} reserved)"
        );
    }
    let pools = DescriptorPools {
        connections: ConnectionSlots::new(plan.connections),
        storage: StorageFiles::new(plan.storage_files, config.partitions_max),
    };
    let n = config.shard_count();
    let _lock = lock_data_dir(&config.data_dir)?;
    // Partition directories are opened by path on the shard threads (glommio cannot open a
    // relative path there): settle the directory once, absolute.
    config.data_dir = std::fs::canonicalize(&config.data_dir).map_err(|e| {
        ServerError::DataDir { path: config.data_dir.clone(), message: e.to_string() }
    })?;
    // Secure by default: no listener reachable from other hosts without TLS and
    // authentication, unless asked (`exposure.rs`). Whether authentication is in force
    // depends on the users in the data directory (`--auth auto`), read before anything binds.
    let security = crate::auth::Security::open(&config.data_dir, &config.auth).map_err(|e| {
        ServerError::DataDir { path: config.data_dir.clone(), message: e.to_string() }
    })?;
    let auth_required =
        security.mode() == crate::auth::AuthMode::Required || config.tls.client_ca.is_some();
    crate::exposure::check(
        &config.client_listeners(),
        config.tls.enabled(),
        auth_required,
        config.insecure,
    )?;
    if config.insecure && !(config.tls.enabled() && auth_required) {
        warn!("--insecure: listeners may be reachable from other hosts without TLS and authentication");
    }
    let metadata = crate::startup_metadata::load(&config, n as u32)
        .map_err(|message| ServerError::DataDir { path: config.data_dir.clone(), message })?;
    info!(mode = ?security.config().mode, in_force = ?security.mode(), users = security.snapshot().users.len(), "authentication");
    crate::layout::migrate_flat_layout(&config.data_dir).map_err(|e| ServerError::DataDir {
        path: config.data_dir.clone(),
        message: e.to_string(),
    })?;
    crate::trash::sweep_orphans(&config.data_dir, &metadata).map_err(|e| ServerError::DataDir {
        path: config.data_dir.clone(),
        message: e.to_string(),
    })?;

    // Every socket first, on this thread: ports are known (and conflicts reported) up front.
    // Fixed ports a killed predecessor still holds are waited for, not shared.
    let bind_wait = Duration::from_millis(config.bind_wait_ms);
    wait_for_address(config.listen, bind_wait)?;
    if config.shard_port_base != 0 {
        for i in 0..n {
            let port = config.shard_port_base + i as u16;
            wait_for_address(SocketAddr::new(config.listen.ip(), port), bind_wait)?;
        }
    }
    let first = bind(config.listen, true)?;
    let public =
        first.local_addr().map_err(|source| ServerError::Bind { addr: config.listen, source })?;
    let mut public_fds: Vec<RawFd> = vec![first.into_raw_fd()];
    for _ in 1..n {
        public_fds.push(bind(public, true)?.into_raw_fd());
    }
    let mut shard_fds = Vec::with_capacity(n);
    let mut shard_addrs = Vec::with_capacity(n);
    for i in 0..n {
        let port = if config.shard_port_base == 0 { 0 } else { config.shard_port_base + i as u16 };
        let addr = SocketAddr::new(config.listen.ip(), port);
        let l = bind(addr, false)?;
        shard_addrs.push(l.local_addr().map_err(|source| ServerError::Bind { addr, source })?);
        shard_fds.push(l.into_raw_fd());
    }
    // The metrics endpoint is optional: an address that cannot be bound (another broker on
    // this host holds the default port) is logged and the broker serves without it.
    let metrics_listener = match config.metrics_listen {
        MetricsListen::On(addr) => {
            bind(addr, false).map_err(|e| warn!(error = %e, "metrics endpoint disabled")).ok()
        }
        MetricsListen::Off => None,
    };
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let mut metrics_fd = metrics_listener.map(IntoRawFd::into_raw_fd);
    let mut metrics_links: Vec<Option<Link>> = match metrics_fd {
        Some(_) => crate::metrics::collect::links(n).into_iter().map(Some).collect(),
        None => (0..n).map(|_| None).collect(),
    };
    // The HTTP gateway (off by default): one SO_REUSEPORT listener per shard, like the public
    // port.
    let mut http_fds: Vec<Option<RawFd>> = (0..n).map(|_| None).collect();
    let mut http_addr = None;
    if let MetricsListen::On(addr) = config.http.listen {
        wait_for_address(addr, bind_wait)?;
        let first = bind(addr, true)?;
        let bound = first.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
        http_fds[0] = Some(first.into_raw_fd());
        for fd in http_fds.iter_mut().skip(1) {
            *fd = Some(bind(bound, true)?.into_raw_fd());
        }
        http_addr = Some(bound);
    }
    // The Kafka listener (off by default): one SO_REUSEPORT socket per shard, like the public
    // port.
    let mut kafka_fds: Vec<RawFd> = Vec::new();
    let kafka = match config.kafka_listen {
        MetricsListen::On(addr) => {
            wait_for_address(addr, bind_wait)?;
            let first = bind(addr, true)?;
            let bound = first.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
            kafka_fds.push(first.into_raw_fd());
            for _ in 1..n {
                kafka_fds.push(bind(bound, true)?.into_raw_fd());
            }
            Some(crate::kafka::Kafka::new(
                bound,
                config.group_members_per_shard_max,
                config.kafka_group_bytes_max,
            ))
        }
        MetricsListen::Off => None,
    };
    let kafka_addr = kafka.as_ref().map(|k| k.listen);
    let addresses = Arc::new(Addresses { public, shards: shard_addrs });
    let fds = Arc::new((public_fds, shard_fds, kafka_fds));
    let config = Arc::new(config);
    let cpus = allowed_cpus();
    let mesh = MeshBuilder::<ShardMsg, _>::full(n, 1024);
    let (ready_tx, ready_rx) = mpsc::channel::<(u32, u32)>();
    let journal_barrier = JournalBarrier::new(n);

    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let cpu = cpus[i % cpus.len()];
        let metrics = (metrics_links[i].take(), if i == 0 { metrics_fd.take() } else { None });
        let http_fd = http_fds[i].take();
        let kafka = kafka.clone();
        let security = security.clone();
        let tls = tls.clone();
        let journal_barrier = journal_barrier.clone();
        let (config, addresses, fds, mesh, metadata, stop, ready_tx, slots) = (
            config.clone(),
            addresses.clone(),
            fds.clone(),
            mesh.clone(),
            metadata.clone(),
            stop.clone(),
            ready_tx.clone(),
            pools.clone(),
        );
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{i}"))
            .io_memory(config.io_memory_bytes)
            .spawn(move || async move {
                shard_main(
                    config,
                    addresses,
                    fds,
                    mesh,
                    metadata,
                    stop,
                    ready_tx,
                    cpu as u32,
                    slots,
                    metrics,
                    http_fd,
                    kafka,
                    security,
                    tls,
                    journal_barrier,
                )
                .await
            })
            .map_err(|e| ServerError::Shard { shard: i, message: e.to_string() })?;
        handles.push(handle);
    }
    drop(ready_tx);
    let mut map = Vec::new();
    for _ in 0..n {
        match ready_rx.recv() {
            Ok(r) => map.push(r),
            Err(_) => break, // a shard died; join reports it
        }
    }
    if map.len() == n {
        map.sort_unstable();
        for (shard, cpu) in &map {
            info!(shard, cpu, address = %addresses.shards[*shard as usize], "shard ready");
        }
        info!(public = %addresses.public, shards = n, data_dir = %config.data_dir.display(), http = ?http_addr, "broker ready");
        if let Some(addr) = kafka_addr {
            info!(kafka = %addr, "kafka listener ready");
        }
        if let Some(path) = &ready_file {
            let json = serde_json::json!({
                "public": addresses.public.to_string(),
                "shards": addresses.shards.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "pid": std::process::id(),
                "metrics": metrics_addr.map(|a| a.to_string()),
                "http": http_addr.map(|a| a.to_string()),
                "kafka": kafka_addr.map(|a| a.to_string()),
            });
            let tmp = path.with_extension("tmp");
            if let Err(e) =
                std::fs::write(&tmp, json.to_string()).and_then(|_| std::fs::rename(&tmp, path))
            {
                warn!(path = %path.display(), error = %e, "cannot write ready file");
            }
        }
    } else {
        stop.store(true, Ordering::SeqCst);
    }
    let mut failure = None;
    for (i, h) in handles.into_iter().enumerate() {
        let message = match h.join() {
            Ok(Ok(())) => continue,
            Ok(Err(message)) => message,
            Err(e) => e.to_string(),
        };
        stop.store(true, Ordering::SeqCst);
        failure.get_or_insert(ServerError::Shard { shard: i, message });
    }
    reloader.close();
    match failure {
        Some(e) => Err(e),
        None => {
            info!("broker stopped");
            Ok(())
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn shard_main(
    config: Arc<BrokerConfig>,
    addresses: Arc<Addresses>,
    fds: Arc<(Vec<RawFd>, Vec<RawFd>, Vec<RawFd>)>,
    mesh: MeshBuilder<ShardMsg, glommio::channels::channel_mesh::Full>,
    metadata: Arc<Metadata>,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<(u32, u32)>,
    cpu: u32,
    pools: DescriptorPools,
    metrics: (Option<Link>, Option<RawFd>),
    http_fd: Option<RawFd>,
    kafka: Option<Arc<crate::kafka::Kafka>>,
    security: Arc<crate::auth::Security>,
    tls: Option<Arc<crate::tls::ServerTls>>,
    journal_barrier: Arc<JournalBarrier>,
) -> Result<(), String> {
    let arrival = journal_barrier.arrival();
    let (senders, mut receivers) = mesh.join().await.expect("channel mesh");
    let id = senders.peer_id() as u32;
    let shard = Shard::new(id, cpu, config.clone(), addresses.clone(), senders, pools, security);
    for (_, rx) in receivers.streams() {
        glommio::spawn_local(crate::peer::receive_from(shard.clone(), rx)).detach();
    }
    // Recover the partitions this shard owns before accepting anything, replaying what an
    // earlier run's journals hold for them.
    shard.recover(metadata, arrival).await?;

    // SAFETY: each fd was created by `bind` on the main thread, is a listening TCP socket, and
    // is handed to exactly one shard (index = shard id), which takes sole ownership of it.
    let public = unsafe { TcpListener::from_raw_fd(fds.0[id as usize]) };
    // SAFETY: as above, for the shard's own listener.
    let own = unsafe { TcpListener::from_raw_fd(fds.1[id as usize]) };
    let stop_mark = Watermark::new(0);
    let gate = Rc::new(glommio::sync::Gate::new());
    // Request handling (accept loops, connections and everything they spawn) runs in a
    // latency-sensitive queue; retention runs in a background queue with a small share.
    let requests = glommio::executor().create_task_queue(
        Shares::Static(1000),
        Latency::Matters(Duration::from_millis(1)),
        "requests",
    );
    let background = glommio::executor().create_task_queue(
        Shares::Static(100),
        Latency::NotImportant,
        "background",
    );
    let _ = shard.background.set(background);
    // The Kafka listener's groups: their members keep their offsets from expiring.
    let kafka_groups = kafka.clone().map(|k| {
        Arc::new(move |group: &str| k.groups.has_members(group))
            as crate::api::offsets_expiry::MembersElsewhere
    });
    let mut accepters: Vec<_> = [(public, None), (own, None)]
        .into_iter()
        .chain(kafka.clone().map(|k| {
            // SAFETY: as above: created by `bind` on the main thread, a listening TCP socket,
            // handed to this shard only (index = shard id), which takes sole ownership.
            (unsafe { TcpListener::from_raw_fd(fds.2[id as usize]) }, Some(k))
        }))
        .map(|(listener, kafka)| {
            glommio::spawn_local_into(
                accept_loop(
                    shard.clone(),
                    listener,
                    stop_mark.clone(),
                    gate.clone(),
                    kafka,
                    tls.clone(),
                ),
                requests,
            )
            .expect("requests task queue")
            .detach()
        })
        .collect();
    let http = http_fd.map(|fd| {
        // SAFETY: `fd` was created by `bind` on the main thread, is a listening TCP socket,
        // and is handed to this shard only, which takes sole ownership of it.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        let serve = crate::http::serve(
            shard.clone(),
            listener,
            stop_mark.clone(),
            gate.clone(),
            tls.clone(),
        );
        glommio::spawn_local_into(serve, requests).expect("requests task queue").detach()
    });
    glommio::spawn_local_into(crate::api::group::expiry_loop(shard.clone()), requests)
        .expect("requests task queue")
        .detach();
    glommio::spawn_local_into(
        crate::api::offsets_expiry::expiry_loop(shard.clone(), kafka_groups),
        requests,
    )
    .expect("requests task queue")
    .detach();
    let retention = {
        let shard = shard.clone();
        let every = Duration::from_millis(shard.config.retention_check_ms.max(100));
        glommio::spawn_local_into(
            async move {
                loop {
                    glommio::timer::sleep(every).await;
                    shard.apply_retention(crate::clock::now_ms()).await;
                    shard.clean_logs(crate::clock::now_ms()).await;
                }
            },
            background,
        )
        .expect("background task queue")
        .detach()
    };
    let snapshots = {
        let shard = shard.clone();
        let every = Duration::from_millis(shard.config.state_snapshot_interval_ms.max(10));
        glommio::spawn_local_into(
            async move {
                loop {
                    glommio::timer::sleep(every).await;
                    shard.snapshot_partitions().await;
                }
            },
            background,
        )
        .expect("background task queue")
        .detach()
    };
    // Shard 0 frees deleted topics' data, paced, in the background queue.
    let trash = (id == 0).then(|| {
        let shard = shard.clone();
        glommio::spawn_local_into(
            async move {
                let stopping = || shard.stopping.get();
                loop {
                    crate::trash::empty(
                        &shard.config.data_dir,
                        shard.config.log.delete_pace(),
                        &stopping,
                    )
                    .await;
                    glommio::timer::sleep(Duration::from_secs(1)).await;
                }
            },
            background,
        )
        .expect("background task queue")
        .detach()
    });
    // The metrics endpoint (shard 0) and every other shard's snapshot responder
    // (`metrics/collect.rs`), in the background queue: scrapes yield to requests.
    let metrics_task = match metrics {
        (Some(Link::Gatherer(ends)), Some(fd)) => {
            // SAFETY: `fd` was created by `bind` on the main thread, is a listening TCP
            // socket, and is handed to shard 0 only, which takes sole ownership of it.
            let listener = unsafe { TcpListener::from_raw_fd(fd) };
            let gatherer = crate::metrics::collect::Gatherer::new(shard.clone(), ends);
            let serve = crate::metrics::http::serve(shard.clone(), listener, gatherer);
            Some(glommio::spawn_local_into(serve, background).expect("background task queue"))
        }
        (Some(Link::Responder(asks, answers)), _) => {
            let respond = crate::metrics::collect::respond(shard.clone(), asks, answers);
            Some(glommio::spawn_local_into(respond, background).expect("background task queue"))
        }
        _ => None,
    }
    .map(|t| t.detach());
    let _ = ready.send((id, cpu));
    while !stop.load(Ordering::SeqCst) {
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
    // Graceful stop: no new connections, readers stop between requests, in-flight requests
    // finish, logs flush and sync.
    shard.stopping.set(true);
    for a in accepters.drain(..) {
        a.cancel();
    }
    if let Some(h) = http {
        h.cancel();
    }
    retention.cancel();
    snapshots.cancel();
    if let Some(t) = trash {
        t.cancel();
    }
    if let Some(t) = metrics_task {
        t.cancel();
    }
    stop_mark.advance(1);
    // Connections finish their in-flight requests, but a stuck one cannot hold the stop.
    let drained = futures_lite::future::or(async { gate.close().await.is_ok() }, async {
        glommio::timer::sleep(Duration::from_secs(10)).await;
        false
    })
    .await;
    if !drained {
        warn!(shard = id, "connections did not finish within 10 s; stopping anyway");
    }
    shard.close_partitions().await;
    info!(shard = id, "shard stopped");
    Ok(())
}

async fn accept_loop(
    shard: Rc<Shard>,
    listener: TcpListener,
    stop: Watermark,
    gate: Rc<glommio::sync::Gate>,
    kafka: Option<Arc<crate::kafka::Kafka>>,
    tls: Option<Arc<crate::tls::ServerTls>>,
) {
    // Failing accepts (EMFILE when descriptors run out) back off up to a second and log at
    // most every ACCEPT_LOG_EVERY, with how many were not logged: never a tight loop.
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut failures = Occasional::default();
    let mut refusals = Occasional::default();
    loop {
        let stream = match listener.accept().await {
            Ok(s) => {
                backoff = ACCEPT_BACKOFF_MIN;
                s
            }
            Err(e) => {
                if let Some(more) = failures.due() {
                    warn!(shard = shard.id, error = %e, not_logged = more, backoff_ms = backoff.as_millis() as u64, "accept failed");
                }
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        // One descriptor per connection out of the broker-wide pool, and at most
        // `connections_per_shard_max` on this shard.
        let slot = (shard.counters.connections.get()
            < shard.config.connections_per_shard_max as u64)
            .then(|| shard.connection_slots.take())
            .flatten();
        let Some(slot) = slot else {
            if let Some(more) = refusals.due() {
                warn!(
                    shard = shard.id,
                    not_logged = more,
                    open = shard.connection_slots.open(),
                    connections_max = shard.connection_slots.max(),
                    "connection limit reached; refusing connections"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shard, stop, kafka, tls) = (shard.clone(), stop.clone(), kafka.clone(), tls.clone());
        match gate.spawn(async move {
            crate::accepted::serve_accepted(shard, stream, stop, kafka, tls.as_deref()).await;
            drop(slot);
        }) {
            Ok(task) => {
                task.detach();
            }
            Err(_) => return, // the gate is closing: the shard is stopping
        }
    }
}

/// First wait after a failed accept.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest wait between failed accepts.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line per kind of accept trouble this often.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// A log line that repeats: due at most every `ACCEPT_LOG_EVERY`, counting the ones skipped.
#[derive(Default)]
struct Occasional {
    last: Option<Instant>,
    skipped: u64,
}

impl Occasional {
    /// `Some(skipped since the last line)` when a line is due now.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < ACCEPT_LOG_EVERY) {
            self.skipped += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.skipped))
    }
}

/// Installs SIGINT/SIGTERM handlers that set the returned flag; a second signal exits at once.
pub fn install_signal_handlers() -> std::io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let flag = stop.clone();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            if flag.swap(true, Ordering::SeqCst) {
                eprintln!("second signal {sig}: exiting without a clean shutdown");
                std::process::exit(130);
            }
            info!(signal = sig, "shutting down");
        }
    })?;
    Ok(stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_accept_trouble_is_logged_once_per_period_with_a_count() {
        let mut o = Occasional::default();
        assert_eq!(o.due(), Some(0), "the first one is logged");
        for _ in 0..1000 {
            assert_eq!(o.due(), None, "a tight loop of failures logs nothing more");
        }
        o.last = Some(Instant::now() - ACCEPT_LOG_EVERY);
        assert_eq!(o.due(), Some(1000), "the next line says how many were not logged");
    }
}
