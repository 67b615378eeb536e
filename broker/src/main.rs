//! The `broker` binary: serve (default) or `check`.

use std::path::PathBuf;
use std::process::ExitCode;

use broker::config::{BrokerConfig, LogFormat, MetricsListen};
use clap::{Parser, Subcommand};

/// The allocator (see the dependency's note in `Cargo.toml`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A shard-per-core event-streaming broker.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML config file (overridden by BROKER_* variables, overridden by flags).
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Public address HOST:PORT (every shard accepts here).
    #[arg(long, global = true)]
    listen: Option<std::net::SocketAddr>,
    /// Number of shards (0 = one per core).
    #[arg(long, global = true)]
    shards: Option<usize>,
    /// First shard port (shard i uses base + i; 0 = ephemeral).
    #[arg(long, global = true)]
    shard_port_base: Option<u16>,
    /// Write the broker's addresses as JSON to this file once it accepts connections.
    #[arg(long, global = true)]
    ready_file: Option<PathBuf>,
    /// Prometheus endpoint HOST:PORT (`GET /metrics`), or `off`.
    #[arg(long, global = true)]
    metrics: Option<MetricsListen>,
    /// HTTP gateway HOST:PORT (REST + Server-Sent Events, `openapi.yaml`), or `off` (default).
    #[arg(long, global = true)]
    http: Option<MetricsListen>,
    /// Kafka wire-protocol listener HOST:PORT (e.g. 127.0.0.1:9092), or `off` (the default).
    #[arg(long, global = true)]
    kafka_listen: Option<MetricsListen>,
    /// Log lines as `text` or `json` (levels per module from RUST_LOG, e.g.
    /// `RUST_LOG=info,broker::storage=debug`).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Authentication: `auto` (required once a user exists), `required`, `optional`, `off`.
    #[arg(long, global = true, value_enum)]
    auth: Option<broker::auth::AuthMode>,
    /// TLS certificate chain, PEM: turns TLS on for every listener (with --tls-key).
    #[arg(long, global = true)]
    tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert, PEM.
    #[arg(long, global = true)]
    tls_key: Option<PathBuf>,
    /// CA certificates, PEM: require client certificates signed by them (mTLS); the
    /// certificate's subject CN is the connection's principal (authenticated; ACLs apply).
    #[arg(long, global = true)]
    tls_client_ca: Option<PathBuf>,
    /// Listen on non-loopback addresses without TLS and authentication (not recommended:
    /// anyone who can reach the port can read and write every topic).
    #[arg(long, global = true)]
    insecure: bool,
    /// Run the preflight checks instead of serving.
    #[arg(long, global = true)]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the host (io_uring, memlock, transparent huge pages, open files, data dir
    /// O_DIRECT, cores, metrics port), print the fix for each problem, and exit.
    Check,
    /// Users, with the broker stopped (the first admin): `broker user add NAME --data-dir DIR
    /// [--superuser]`, the password on stdin. A running broker is changed with
    /// `brokerctl user`.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add or replace a user; its password is the first line of stdin.
    Add {
        /// User name: 1..=128 bytes of [A-Za-z0-9._@-].
        name: String,
        /// Superusers bypass ACLs.
        #[arg(long)]
        superuser: bool,
    },
}

/// Log lines to stderr: levels from `RUST_LOG` (default `info`), as text or one JSON object
/// per line (`timestamp`, `level`, `fields.message`, the event's fields, `target`, and the
/// thread name: `shard-<i>` on the shards).
fn init_logs(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
        }
        LogFormat::Json => logs.json().with_thread_names(true).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = std::env::vars().filter(|(k, _)| k.starts_with("BROKER_"));
    let mut config = match BrokerConfig::load(cli.config.as_deref(), env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(m) = cli.metrics {
        config.metrics_listen = m;
    }
    if let Some(h) = cli.http {
        config.http.listen = h;
    }
    if let Some(k) = cli.kafka_listen {
        config.kafka_listen = k;
    }
    if let Some(f) = cli.log_format {
        config.log_format = f;
    }
    init_logs(config.log_format);
    if let Some(d) = cli.data_dir {
        config.data_dir = d;
    }
    if let Some(l) = cli.listen {
        config.listen = l;
    }
    if let Some(s) = cli.shards {
        config.shards = s;
    }
    if let Some(p) = cli.shard_port_base {
        config.shard_port_base = p;
    }
    if let Some(c) = cli.tls_cert {
        config.tls.cert = Some(c);
    }
    if let Some(k) = cli.tls_key {
        config.tls.key = Some(k);
    }
    if let Some(ca) = cli.tls_client_ca {
        config.tls.client_ca = Some(ca);
    }
    if cli.insecure {
        config.insecure = true;
    }
    if let Some(mode) = cli.auth {
        config.auth.mode = mode;
    }
    if let Some(Command::User { command: UserCommand::Add { name, superuser } }) = &cli.command {
        return user_add(&config, name, *superuser);
    }
    if cli.check || matches!(cli.command, Some(Command::Check)) {
        let findings = broker::check::run(&config);
        let mut fatal = false;
        for f in &findings {
            println!("{:4}  {:10} {}", f.verdict(), f.what, f.detail);
            if let Some(fix) = &f.fix {
                println!("{:4}  {:10} fix: {fix}", "", "");
            }
            fatal |= f.fatal;
        }
        return if fatal { ExitCode::FAILURE } else { ExitCode::SUCCESS };
    }
    let stop = match broker::server::install_signal_handlers() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    match broker::server::run(config, cli.ready_file, stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `broker user add`: the password is the first line of stdin (without its newline).
fn user_add(config: &BrokerConfig, name: &str, superuser: bool) -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("error: cannot read the password from stdin: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    // The data directory's lock: a running broker would not see the change.
    let _lock = match broker::server::lock_data_dir(&config.data_dir) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("error: {e} (change users of a running broker with brokerctl user)");
            return ExitCode::FAILURE;
        }
    };
    match broker::auth::users::add_offline(
        &config.data_dir,
        &config.auth,
        name,
        password.as_bytes(),
        superuser,
    ) {
        Ok(created) => {
            let what = if created { "added" } else { "replaced" };
            println!("user {name:?} {what} in {}", config.data_dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
