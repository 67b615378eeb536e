//! The `bench-harness` command line: `run`, `compare`, `summary`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use bench_harness::affinity::{self, CpuList};
use bench_harness::driver::broker::BrokerDriver;
use bench_harness::driver::nats::NatsDriver;
use bench_harness::driver::Driver;
use bench_harness::result::Pinning;
use bench_harness::spawn::{find_binary, Spawned};
use bench_harness::workload::Ack;
use bench_harness::{report, summary, HarnessError, RunOptions, RunResult, Workload};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(version, about = "Reproducible load generator for the broker and its peers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a workload file and write <out>/<workload>-<driver>.{json,html}.
    Run(Box<RunArgs>),
    /// Render several result files side by side (table with ratios against the first, plots).
    Compare {
        /// Result JSON files; the first is the baseline of the ratios.
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// HTML report to write.
        #[arg(long, default_value = "compare.html")]
        out: PathBuf,
    },
    /// Write the perf suite's summary.md from a results directory and the machine limits.
    Summary(summary::SummaryArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum DriverKind {
    Broker,
    Nats,
    Iggy,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Workload TOML file (see bench-harness/workloads/).
    workload: PathBuf,
    /// System under test.
    #[arg(long, value_enum, default_value = "broker")]
    driver: DriverKind,
    /// Broker address (driver broker).
    #[arg(long, env = "BROKER_ADDR", default_value = "127.0.0.1:9400")]
    broker: String,
    /// CA certificates (PEM) that sign the broker's certificate: the broker driver connects
    /// over TLS. (A `--spawn`ed broker takes its certificate from BROKER_TLS_CERT and
    /// BROKER_TLS_KEY in the harness's environment.)
    #[arg(long, env = "BROKER_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// Name the broker's certificate must carry (default: the host of the address).
    #[arg(long, env = "BROKER_TLS_SERVER_NAME")]
    tls_server_name: Option<String>,
    /// NATS server URL (driver nats).
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Iggy server TCP address (driver iggy); the run is skipped when not given.
    #[arg(long, env = "IGGY_ADDR")]
    iggy: Option<String>,
    /// Iggy user.
    #[arg(long, env = "IGGY_USERNAME", default_value = "iggy")]
    iggy_username: String,
    /// Iggy password.
    #[arg(long, env = "IGGY_PASSWORD", default_value = "iggy")]
    iggy_password: String,
    /// Start the server under test (broker or nats-server) on a fresh data directory and
    /// stop it afterwards.
    #[arg(long)]
    spawn: bool,
    /// Server binary for --spawn (default: `broker` next to this executable or on PATH;
    /// `nats-server` on PATH).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Where --spawn puts the server's data directory (must support O_DIRECT for the broker:
    /// not tmpfs).
    #[arg(long, default_value = ".")]
    spawn_dir: PathBuf,
    /// Shards of a spawned broker (0 = one per core it may run on: with --server-cpus, one
    /// per CPU of the list).
    #[arg(long, default_value_t = 0)]
    shards: usize,
    /// Pin the server to these CPUs (taskset list: `1`, `0-1`, `0,2`). A spawned server is
    /// started on them; an external one needs --server-pid (all its threads are pinned).
    #[arg(long, value_name = "LIST")]
    server_cpus: Option<CpuList>,
    /// Pin the harness (producers, consumers, client or SDK threads) to these CPUs.
    #[arg(long, value_name = "LIST")]
    client_cpus: Option<CpuList>,
    /// Process id of an external server: its CPU time is measured (and it is pinned with
    /// --server-cpus). Without it (or --spawn) the server's CPU figures are "n/a".
    #[arg(long, value_name = "PID", conflicts_with = "spawn")]
    server_pid: Option<u32>,
    /// Override the workload's measured duration (s).
    #[arg(long)]
    duration: Option<f64>,
    /// Override the workload's warm-up (s).
    #[arg(long)]
    warmup: Option<f64>,
    /// Override the workload's producer rate (msgs/s over all producers; 0 = max).
    #[arg(long)]
    rate: Option<u64>,
    /// Output directory.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// No live progress on stderr.
    #[arg(long)]
    no_progress: bool,
    /// Keep the benchmark topics after the run.
    #[arg(long)]
    keep_topics: bool,
    /// Round trips of the loopback echo floor measured before the run, with the same
    /// runtime and pinning (0 = skip).
    #[arg(long, default_value_t = 2000)]
    echo_round_trips: u64,
    /// A paced producer sleeps until this long before each send is due and polls, yielding
    /// its CPU, for the rest (µs; 0 = sleep to the time): a thread's wake-up latency is the
    /// harness's, not the server's.
    #[arg(long, default_value_t = bench_harness::run::SEND_SPIN_US_DEFAULT)]
    send_spin_us: u64,
    /// The scheduler slice every harness thread asks for (µs; 0 = the kernel's default;
    /// Linux >= 6.12, EEVDF): a thread that waits for a send's time or an ack runs when it
    /// wakes instead of behind another harness thread's slice.
    #[arg(long, default_value_t = bench_harness::sched_slice::SLICE_US_DEFAULT)]
    sched_slice_us: u64,
    /// Exit non-zero when the numbers do not add up (messages lost, errors).
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(args) => run(*args),
        Command::Compare { results, out } => compare(&results, &out),
        Command::Summary(args) => summary::write(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-harness: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> Result<(), HarnessError> {
    let mut workload = Workload::load(&args.workload)?;
    if let Some(d) = args.duration {
        workload.duration_s = d;
    }
    if let Some(w) = args.warmup {
        workload.warmup_s = w;
    }
    if let Some(r) = args.rate {
        workload.producer_rate_msgs_per_s = r;
    }
    workload.check().map_err(HarnessError::Workload)?;
    if args.driver == DriverKind::Iggy && args.iggy.is_none() {
        eprintln!(
            "bench-harness: iggy skipped: no Iggy server address given (--iggy HOST:PORT or IGGY_ADDR); \
             start an Iggy server and point the harness at it"
        );
        return Ok(());
    }
    check_pinning(&args)?;
    let server_cpus = args.server_cpus.as_ref();
    let spawned =
        if args.spawn {
            Some(match args.driver {
                DriverKind::Broker => {
                    let bin = find_binary(args.server_bin.as_deref(), "broker")?;
                    Spawned::broker(&bin, &args.spawn_dir, args.shards, server_cpus)?
                }
                DriverKind::Nats => {
                    let bin = find_binary(args.server_bin.as_deref(), "nats-server")?;
                    Spawned::nats(&bin, &args.spawn_dir, workload.ack == Ack::Durable, server_cpus)?
                }
                DriverKind::Iggy => return Err(HarnessError::Spawn(
                    "--spawn is not supported for iggy: start the server yourself and pass --iggy"
                        .into(),
                )),
            })
        } else {
            None
        };
    let server_pid = spawned.as_ref().map(Spawned::pid).or(args.server_pid);
    if let (Some(pid), Some(cpus), None) = (args.server_pid, server_cpus, &spawned) {
        let n = affinity::pin_process(pid, cpus)
            .map_err(|e| HarnessError::Spawn(format!("cannot pin server pid {pid}: {e}")))?;
        eprintln!("pinned {n} threads of server pid {pid} to CPUs {cpus}");
    }
    // After the spawn: the server must not inherit the harness's CPUs. Only this thread
    // runs yet; every thread the harness starts from here inherits its affinity.
    if let Some(cpus) = &args.client_cpus {
        affinity::pin_process(std::process::id(), cpus)
            .map_err(|e| HarnessError::Spawn(format!("cannot pin the harness: {e}")))?;
    }
    let options = RunOptions {
        progress: !args.no_progress,
        keep_topics: args.keep_topics,
        server_pid,
        echo_round_trips: args.echo_round_trips,
        echo_cpus: args.server_cpus.clone(),
        send_spin_us: args.send_spin_us,
        sched_slice_us: args.sched_slice_us,
        pinning: Pinning {
            server_cpus: args.server_cpus.as_ref().map(CpuList::to_string),
            client_cpus: args.client_cpus.as_ref().map(CpuList::to_string),
            ..Pinning::default()
        },
        ..RunOptions::default()
    };
    let sched_slice_us = args.sched_slice_us;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .on_thread_start(move || {
            bench_harness::sched_slice::short_slice(sched_slice_us);
        })
        .enable_all()
        .build()
        .map_err(|e| HarnessError::Spawn(format!("tokio runtime: {e}")))?;
    let address = spawned.as_ref().map(|s| s.address.clone());
    let note = spawned.as_ref().and_then(|s| s.note.clone());
    let result = rt.block_on(async {
        match args.driver {
            DriverKind::Broker => {
                let addr = address.unwrap_or_else(|| args.broker.clone());
                let (ca, name) = (args.tls_ca.clone(), args.tls_server_name.clone());
                execute(BrokerDriver::connect(&addr, ca, name).await?, &workload, &options).await
            }
            DriverKind::Nats => {
                let url = address.unwrap_or_else(|| args.nats_url.clone());
                execute(NatsDriver::connect(&url).await?, &workload, &options).await
            }
            DriverKind::Iggy => run_iggy(&args, &workload, &options).await,
        }
    });
    drop(rt);
    if let Some(s) = spawned {
        s.stop();
    }
    let mut result = result?;
    result.notes.extend(note);
    if args.driver == DriverKind::Broker && args.tls_ca.is_some() {
        result.notes.push("broker driver over TLS 1.3 (--tls-ca; rustls with ring)".into());
    }
    if let (Some(s), Some(c)) = (&args.server_cpus, &args.client_cpus) {
        if s.overlaps(c) {
            result.notes.push(format!(
                "server CPUs {s} and harness CPUs {c} overlap: they competed for those cores"
            ));
        }
    }
    for n in &result.notes {
        eprintln!("note: {n}");
    }
    std::fs::create_dir_all(&args.out).map_err(|e| HarnessError::file(&args.out, e))?;
    let stem = format!("{}-{}", result.workload.name, result.driver);
    let json = args.out.join(format!("{stem}.json"));
    let html = args.out.join(format!("{stem}.html"));
    result.save(&json)?;
    std::fs::write(&html, report::html(std::slice::from_ref(&result)))
        .map_err(|e| HarnessError::file(&html, e))?;
    print!("{}", report::markdown(std::slice::from_ref(&result)));
    print!("{}", report::cpu_text(&result));
    println!("result: {}\nreport: {}", json.display(), html.display());
    if args.check {
        result.check_consistent()?;
    }
    Ok(())
}

/// Refuses pinning that cannot be done: CPUs this process may not use, or a server CPU list
/// for a server whose process is unknown.
fn check_pinning(args: &RunArgs) -> Result<(), HarnessError> {
    let allowed = affinity::allowed(0)
        .map_err(|e| HarnessError::Spawn(format!("cannot read this process's CPUs: {e}")))?;
    for (flag, list) in [("--server-cpus", &args.server_cpus), ("--client-cpus", &args.client_cpus)]
    {
        if let Some(list) = list {
            let outside = list.outside(&allowed);
            if !outside.is_empty() {
                return Err(HarnessError::Spawn(format!(
                    "{flag} {list}: CPUs {outside:?} are not available (this process may use {allowed})"
                )));
            }
        }
    }
    if args.server_cpus.is_some() && !args.spawn && args.server_pid.is_none() {
        return Err(HarnessError::Spawn(
            "--server-cpus needs --spawn or --server-pid PID (the server's process)".into(),
        ));
    }
    Ok(())
}

#[cfg(feature = "iggy")]
async fn run_iggy(
    args: &RunArgs,
    workload: &Workload,
    options: &RunOptions,
) -> Result<RunResult, HarnessError> {
    use bench_harness::driver::iggy::{IggyDriver, IggySettings};
    let settings = IggySettings {
        address: args.iggy.clone().unwrap_or_default(),
        username: args.iggy_username.clone(),
        password: args.iggy_password.clone(),
    };
    execute(IggyDriver::connect(&settings).await?, workload, options).await
}

#[cfg(not(feature = "iggy"))]
async fn run_iggy(
    _args: &RunArgs,
    _workload: &Workload,
    _options: &RunOptions,
) -> Result<RunResult, HarnessError> {
    Err(HarnessError::driver(
        "iggy",
        "this harness was built without the Iggy driver: cargo build --release -p bench-harness --features iggy",
    ))
}

async fn execute<D: Driver>(
    driver: D,
    workload: &Workload,
    options: &RunOptions,
) -> Result<RunResult, HarnessError> {
    eprintln!(
        "running {} against {} {} (warm-up {} s, measured {} s)",
        workload.name,
        driver.name(),
        driver.server_version(),
        workload.warmup_s,
        workload.duration_s
    );
    bench_harness::run(Arc::new(driver), workload, options).await
}

fn compare(paths: &[PathBuf], out: &Path) -> Result<(), HarnessError> {
    let results = paths.iter().map(|p| RunResult::load(p)).collect::<Result<Vec<_>, _>>()?;
    std::fs::write(out, report::html(&results)).map_err(|e| HarnessError::file(out, e))?;
    print!("{}", report::markdown(&results));
    println!("report: {}", out.display());
    Ok(())
}
