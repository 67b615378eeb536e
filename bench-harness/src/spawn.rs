//! `--spawn`: start the server under test on a fresh data directory, and stop it (and remove
//! the directory) afterwards, so one command reproduces a result on a fresh machine.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::affinity::{self, CpuList};
use crate::error::HarnessError;

/// A server process this harness started. Dropping it kills the process and removes its
/// data directory.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    data_dir: PathBuf,
    log: PathBuf,
    /// Where clients connect (`HOST:PORT` or a URL).
    pub address: String,
    /// A caveat for the report (e.g. weaker durability than asked for).
    pub note: Option<String>,
}

impl Spawned {
    /// Starts `broker` (the binary at `bin`) with `shards` shards on a fresh directory under
    /// `parent`, on `cpus` when given, and waits for its ready file.
    pub fn broker(
        bin: &Path,
        parent: &Path,
        shards: usize,
        cpus: Option<&CpuList>,
    ) -> Result<Spawned, HarnessError> {
        let data_dir = fresh_dir(parent, "broker")?;
        let ready = data_dir.with_extension("ready");
        let log = data_dir.with_extension("log");
        let mut cmd = Command::new(bin);
        cmd.arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", "127.0.0.1:0", "--shard-port-base", "0"])
            .args(["--shards", &shards.to_string()])
            .arg("--ready-file")
            .arg(&ready);
        let child = start(cmd, bin, &log, cpus)?;
        let mut s = Spawned { child, data_dir, log, address: String::new(), note: None };
        s.address = s.wait(|| {
            let text = std::fs::read_to_string(&ready).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            v["public"].as_str().map(str::to_owned)
        })?;
        let _ = std::fs::remove_file(&ready);
        Ok(s)
    }

    /// Starts `nats-server` with JetStream (file storage) on a free loopback port. With
    /// `fsync_always` the server fsyncs every write (`sync_interval: always`, nats-server
    /// 2.10+) so `durable` runs compare like with like; older servers (Debian 12 ships 2.9)
    /// do not know the setting and run with their default (fsync every 2 minutes), which the
    /// returned note says. On `cpus` when given.
    pub fn nats(
        bin: &Path,
        parent: &Path,
        fsync_always: bool,
        cpus: Option<&CpuList>,
    ) -> Result<Spawned, HarnessError> {
        if fsync_always {
            match Self::nats_with(bin, parent, true, cpus) {
                Ok(s) => return Ok(s),
                Err(HarnessError::Spawn(m)) if m.contains("sync_interval") => {
                    let mut s = Self::nats_with(bin, parent, false, cpus)?;
                    s.note = Some(
                        "nats-server does not support `sync_interval: always` (needs 2.10+): it ran \
                         with its default fsync every 2 minutes, weaker durability than the broker's \
                         durable acks"
                            .into(),
                    );
                    return Ok(s);
                }
                Err(e) => return Err(e),
            }
        }
        Self::nats_with(bin, parent, false, cpus)
    }

    fn nats_with(
        bin: &Path,
        parent: &Path,
        fsync_always: bool,
        cpus: Option<&CpuList>,
    ) -> Result<Spawned, HarnessError> {
        let data_dir = fresh_dir(parent, "nats")?;
        let log = data_dir.with_extension("log");
        let config = data_dir.with_extension("conf");
        let port = free_port()?;
        let sync = if fsync_always { "  sync_interval: always\n" } else { "" };
        let text = format!(
            "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: {:?}\n{sync}}}\n",
            data_dir.display().to_string()
        );
        std::fs::write(&config, text)
            .map_err(|e| HarnessError::Spawn(format!("{}: {e}", config.display())))?;
        let mut cmd = Command::new(bin);
        cmd.arg("-c").arg(&config);
        let child = start(cmd, bin, &log, cpus)?;
        let mut s = Spawned { child, data_dir, log, address: String::new(), note: None };
        let r = s.wait(|| {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| format!("nats://127.0.0.1:{port}"))
        });
        let _ = std::fs::remove_file(&config);
        s.address = r?;
        Ok(s)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `ready` until it answers, the process exits, or 60 s pass.
    fn wait(&mut self, ready: impl Fn() -> Option<String>) -> Result<String, HarnessError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(address) = ready() {
                return Ok(address);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(HarnessError::Spawn(format!(
                    "server exited with {status} before it was ready; log {}:\n{}",
                    self.log.display(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )));
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Spawn(format!(
                    "server not ready after 60 s; log {}",
                    self.log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 30 s) and removes its data.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = self.child.id() as libc::pid_t;
            // SAFETY: kill(2) with the pid of a child we started and have not reaped yet, so
            // the pid cannot have been reused.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn start(
    mut cmd: Command,
    bin: &Path,
    log: &Path,
    cpus: Option<&CpuList>,
) -> Result<Child, HarnessError> {
    let log_file = std::fs::File::create(log)
        .map_err(|e| HarnessError::Spawn(format!("{}: {e}", log.display())))?;
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log_file);
    if let Some(cpus) = cpus {
        affinity::pin_command(&mut cmd, cpus);
    }
    cmd.spawn().map_err(|e| HarnessError::Spawn(format!("cannot start {}: {e}", bin.display())))
}

fn fresh_dir(parent: &Path, what: &str) -> Result<PathBuf, HarnessError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = parent.join(format!("bench-{what}-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| HarnessError::Spawn(format!("cannot create {}: {e}", dir.display())))?;
    std::fs::canonicalize(&dir)
        .map_err(|e| HarnessError::Spawn(format!("cannot resolve {}: {e}", dir.display())))
}

fn free_port() -> Result<u16, HarnessError> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| HarnessError::Spawn(format!("no free port: {e}")))?;
    Ok(l.local_addr().map_err(|e| HarnessError::Spawn(e.to_string()))?.port())
}

/// Finds a server binary: an explicit path, else next to this executable (a cargo target
/// directory), else on `PATH`.
pub fn find_binary(explicit: Option<&Path>, name: &str) -> Result<PathBuf, HarnessError> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    if let Some(dir) = std::env::current_exe().ok().as_deref().and_then(Path::parent) {
        let sibling = dir.join(name);
        if sibling.is_file() {
            return Ok(sibling);
        }
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            HarnessError::Spawn(format!(
                "cannot find `{name}` next to the harness or on PATH (build it: cargo build --release -p broker; for nats: apt-get install nats-server)"
            ))
        })
}
