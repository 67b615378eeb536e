//! `brokerctl`: topics, tables, produce, consume, key queries, offsets and stats from the
//! command line.

use std::io::{BufRead, Write};
use std::process::ExitCode;

mod security;
mod table;
mod topic;

use clap::{Parser, Subcommand};
use client::{Client, ClientError, Consumer, GroupConfig, GroupConsumer, Producer, ProducerConfig};
use wire::{AckLevel, OffsetSpec, RecordView, StartPosition};

#[derive(Debug, Parser)]
#[command(version, about = "Command-line client for the broker")]
struct Cli {
    /// Broker address HOST:PORT.
    #[arg(long, env = "BROKER_ADDR", default_value = "127.0.0.1:9400", global = true)]
    broker: String,
    /// Authenticate as this user (SCRAM-SHA-512); given before the subcommand
    /// (`brokerctl --user admin --password-file F acl add --user alice …`).
    #[arg(long, env = "BROKER_USER")]
    user: Option<String>,
    /// The user's password: the first line of this file.
    #[arg(long)]
    password_file: Option<std::path::PathBuf>,
    /// The user's password (prefer --password-file: the environment leaks to child processes).
    #[arg(long = "password-from-env", env = "BROKER_PASSWORD", hide = true)]
    password: Option<String>,
    /// CA certificates (PEM) that sign the broker's certificate: connect over TLS.
    #[arg(long, env = "BROKER_TLS_CA", global = true)]
    tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for a broker that requires one (mTLS); with --tls-key.
    #[arg(long, env = "BROKER_CLIENT_TLS_CERT", global = true, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "BROKER_CLIENT_TLS_KEY", global = true, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Name the broker's certificate must carry (default: the host of --broker).
    #[arg(long, env = "BROKER_TLS_SERVER_NAME", global = true)]
    tls_server_name: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, delete, list or describe topics.
    Topic {
        #[command(subcommand)]
        command: topic::TopicCommand,
    },
    /// Produce one record per line of stdin (or --file).
    Produce {
        /// Topic.
        topic: String,
        /// Read records from this file instead of stdin.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// Split each line into key SEP value.
        #[arg(long)]
        key_separator: Option<String>,
        /// A header k=v on every record (repeatable).
        #[arg(long = "header")]
        headers: Vec<String>,
        /// none | written | durable.
        #[arg(long, default_value = "durable")]
        acks: String,
        /// Print `partition offset` for every acked record.
        #[arg(long)]
        report: bool,
        /// Codec for the batches: none | lz4 | zstd | zstd:LEVEL.
        #[arg(long, default_value = "none")]
        compression: wire::Compression,
    },
    /// Print records.
    Consume {
        /// Topic.
        topic: String,
        /// Only this partition (default: all).
        #[arg(long)]
        partition: Option<u32>,
        /// earliest | latest | OFFSET | @TIMESTAMP_MS.
        #[arg(long, default_value = "earliest")]
        from: String,
        /// Stop after this many records.
        #[arg(long)]
        count: Option<u64>,
        /// Keep waiting for new records.
        #[arg(long)]
        follow: bool,
        /// value | json.
        #[arg(long, default_value = "value")]
        format: String,
        /// Read as a member of this consumer group: the broker assigns partitions, positions
        /// are committed, and `--from` applies only where the group has no committed offset.
        #[arg(long)]
        group: Option<String>,
        /// Only records matching this expression, evaluated by the broker, e.g.
        /// `key prefix "user-" and value.amount > 100` (see README, Filters).
        #[arg(long, default_value = "")]
        filter: String,
    },
    /// Create a table, read a key's latest value, or scan keys.
    Table {
        #[command(subcommand)]
        command: table::TableCommand,
    },
    /// Every record of one key with a timestamp in a range (any topic), in offset order.
    Query {
        /// Topic.
        topic: String,
        /// The key.
        key: String,
        /// Records at or after this timestamp (ms since the epoch).
        #[arg(long, default_value_t = 0)]
        from_ms: i64,
        /// Records at or before this timestamp (default: no end).
        #[arg(long, default_value_t = i64::MAX)]
        to_ms: i64,
        /// Most records to print.
        #[arg(long, default_value_t = 1_000)]
        limit: usize,
        /// value | json.
        #[arg(long, default_value = "json")]
        format: String,
    },
    /// List, describe or reset consumer groups.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Earliest and latest offset of every partition.
    Offsets {
        /// Topic.
        topic: String,
    },
    /// Add, delete or list users.
    User {
        #[command(subcommand)]
        command: security::UserCommand,
    },
    /// Add, remove or list ACLs.
    Acl {
        #[command(subcommand)]
        command: security::AclCommand,
    },
    /// Create, delete or list HTTP bearer tokens.
    Token {
        #[command(subcommand)]
        command: security::TokenCommand,
    },
    /// Per-shard counters.
    Stats {
        /// Also list every consumer group's committed offset, high watermark and lag.
        #[arg(long)]
        group_lag: bool,
        /// Print each shard's per-stage latency (microseconds) instead of the counters.
        #[arg(long)]
        latency: bool,
        /// With --latency: start the histograms afresh after reading them.
        #[arg(long, requires = "latency")]
        reset: bool,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// Groups with members or committed offsets.
    List,
    /// Members, assignments, committed offsets, high watermarks and lag.
    Describe {
        /// Group id.
        group: String,
    },
    /// Set a group's committed offsets for a topic (refused while the group has members).
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic.
        #[arg(long)]
        topic: String,
        /// earliest | latest | OFFSET | @TIMESTAMP_MS.
        #[arg(long)]
        to: String,
    },
    /// Delete a group: forget all its committed offsets (refused while it has members).
    Delete {
        /// Group id.
        group: String,
    },
    /// Forget a group's committed offsets of one topic (refused while a member reads it).
    DeleteOffsets {
        /// Group id.
        group: String,
        /// Topic (it need not exist any more).
        #[arg(long)]
        topic: String,
        /// Only these partitions (repeatable; default: every partition with an offset).
        #[arg(long)]
        partition: Vec<u32>,
    },
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    let credentials = match (&cli.user, &cli.password_file, &cli.password) {
        (None, _, _) => None,
        (Some(user), Some(file), _) => {
            Some(client::Credentials::new(user, security::read_secret(Some(file))?))
        }
        (Some(user), None, Some(password)) => Some(client::Credentials::new(user, password)),
        (Some(_), None, None) => {
            return Err(ClientError::Protocol(
                "--user needs --password-file FILE (or BROKER_PASSWORD)".into(),
            ))
        }
    };
    let config = client::ClientConfig {
        credentials,
        tls_ca: cli.tls_ca.clone(),
        tls_cert: cli.tls_cert.clone(),
        tls_key: cli.tls_key.clone(),
        tls_server_name: cli.tls_server_name.clone(),
        ..Default::default()
    };
    let client = Client::connect_with(&cli.broker, config).await?;
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Topic { command } => topic::command(&client, command, &mut out).await?,
        Command::Produce { topic, file, key_separator, headers, acks, report, compression } => {
            let ack = AckLevel::parse(&acks).ok_or_else(|| {
                ClientError::Record(format!("--acks {acks:?}: use none, written or durable"))
            })?;
            let headers: Vec<(String, Vec<u8>)> = headers
                .iter()
                .map(|h| {
                    h.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
                        .ok_or_else(|| ClientError::Record(format!("--header {h:?}: use k=v")))
                })
                .collect::<Result<_, _>>()?;
            let hs: Vec<(&str, &[u8])> =
                headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
            let producer = Producer::new(
                client.clone(),
                ProducerConfig { ack, compression, ..Default::default() },
            );
            let reader: Box<dyn BufRead> = match file {
                Some(f) => Box::new(std::io::BufReader::new(
                    std::fs::File::open(&f)
                        .map_err(|e| ClientError::Record(format!("{}: {e}", f.display())))?,
                )),
                None => Box::new(std::io::stdin().lock()),
            };
            let mut acks_pending = std::collections::VecDeque::new();
            let mut n = 0u64;
            for line in reader.lines() {
                let line = line.map_err(|e| ClientError::Record(e.to_string()))?;
                let (key, value) = match &key_separator {
                    Some(sep) => match line.split_once(sep.as_str()) {
                        Some((k, v)) => (Some(k.as_bytes().to_vec()), v.as_bytes().to_vec()),
                        None => (None, line.as_bytes().to_vec()),
                    },
                    None => (None, line.as_bytes().to_vec()),
                };
                acks_pending
                    .push_back(producer.send(&topic, key.as_deref(), Some(&value), &hs).await?);
                n += 1;
                while acks_pending.len() > 10_000 {
                    let (p, o) = acks_pending.pop_front().expect("nonempty").await?;
                    if report {
                        let _ = writeln!(out, "{p} {o}");
                    }
                }
                if n % 100_000 == 0 {
                    eprintln!("{n} records sent");
                }
            }
            producer.flush().await?;
            for a in acks_pending {
                let (p, o) = a.await?;
                if report {
                    let _ = writeln!(out, "{p} {o}");
                }
            }
        }
        Command::Consume { topic, partition, from, count, follow, format, group, filter } => {
            let json = match format.as_str() {
                "value" => false,
                "json" => true,
                f => return Err(ClientError::Record(format!("--format {f:?}: use value or json"))),
            };
            if let Some(group) = group {
                let config = GroupConfig {
                    reset: parse_start(&from)?,
                    filter,
                    ..GroupConfig::new(&group, &[topic.as_str()])
                };
                return consume_group(&client, config, count.unwrap_or(u64::MAX), json, &mut out)
                    .await;
            }
            let partitions: Vec<u32> = match partition {
                Some(p) => vec![p],
                None => (0..client.partition_count(&topic).await?).collect(),
            };
            let mut printed = 0u64;
            let limit = count.unwrap_or(u64::MAX);
            if follow {
                let start = parse_start(&from)?;
                let (tx, mut rx) = tokio::sync::mpsc::channel::<(u32, Vec<String>)>(64);
                for p in partitions {
                    let mut consumer = Consumer::subscribe_filtered(
                        &client,
                        &topic,
                        p,
                        start,
                        client::consumer::CREDIT_WINDOW_BYTES_DEFAULT,
                        &filter,
                    )
                    .await?;
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        while let Ok(Some(batch)) = consumer.next_batch().await {
                            let lines: Vec<String> =
                                batch.records().map(|r| render(p, &r, json)).collect();
                            if tx.send((p, lines)).await.is_err() {
                                break;
                            }
                        }
                    });
                }
                drop(tx);
                while let Some((_, lines)) = rx.recv().await {
                    for l in lines {
                        let _ = writeln!(out, "{l}");
                        let _ = out.flush();
                        printed += 1;
                        if printed >= limit {
                            return Ok(());
                        }
                    }
                }
            } else if !filter.is_empty() {
                // The broker filters pushes only: read each partition up to its end as of
                // now through a filtered subscription (its position passes skipped records).
                let ends = client.list_offsets(&topic, OffsetSpec::Latest).await?;
                for p in partitions {
                    let end = ends.iter().find(|(q, _, _)| *q == p).map_or(0, |e| e.1);
                    let start = parse_start(&from)?;
                    let mut consumer = Consumer::subscribe_filtered(
                        &client,
                        &topic,
                        p,
                        start,
                        client::consumer::CREDIT_WINDOW_BYTES_DEFAULT,
                        &filter,
                    )
                    .await?;
                    while consumer.position() < end && printed < limit {
                        let Some(batch) = consumer.next_batch().await? else { break };
                        for rec in batch.records().filter(|r| r.offset() < end) {
                            if printed >= limit {
                                break;
                            }
                            let _ = writeln!(out, "{}", render(p, &rec, json));
                            printed += 1;
                        }
                    }
                    consumer.close().await?;
                }
            } else {
                for p in partitions {
                    let ends = client.list_offsets(&topic, OffsetSpec::Latest).await?;
                    let end = ends.iter().find(|(q, _, _)| *q == p).map_or(0, |e| e.1);
                    let mut offset = start_offset(&client, &topic, p, &from).await?;
                    while offset < end && printed < limit {
                        let r = client.fetch(&topic, p, offset, 1 << 20, 0).await?;
                        // One batch open at a time (a compressed one may open to 16 MiB).
                        let mut progressed = false;
                        client::consumer::for_each_batch(&r.batches, |b| {
                            for rec in b.records().filter(|r| r.offset() >= offset) {
                                if printed >= limit {
                                    break;
                                }
                                let _ = writeln!(out, "{}", render(p, &rec, json));
                                printed += 1;
                            }
                            offset = b.header().next_offset();
                            progressed = true;
                            printed < limit
                        })?;
                        if !progressed {
                            break;
                        }
                    }
                }
            }
        }
        Command::Table { command } => return table::command(&client, command, &mut out).await,
        Command::Query { topic, key, from_ms, to_ms, limit, format } => {
            table::query(&client, &topic, &key, (from_ms, to_ms), limit, &format, &mut out).await?
        }
        Command::Group { command } => group_command(&client, command, &mut out).await?,
        Command::User { command } => security::user(&client, command, &mut out).await?,
        Command::Acl { command } => security::acl(&client, command, &mut out).await?,
        Command::Token { command } => security::token(&client, command, &mut out).await?,
        Command::Offsets { topic } => {
            let earliest = client.list_offsets(&topic, OffsetSpec::Earliest).await?;
            let latest = client.list_offsets(&topic, OffsetSpec::Latest).await?;
            let _ = writeln!(out, "partition\tearliest\tlatest");
            for ((p, e, _), (_, l, _)) in earliest.iter().zip(&latest) {
                let _ = writeln!(out, "{p}\t{e}\t{l}");
            }
        }
        Command::Stats { group_lag: _, latency: true, reset } => {
            let stats = client.stats_with_latency(reset).await?;
            let _ = writeln!(out, "shard\tstage\tcount\tp50_us\tp90_us\tp99_us\tp99.9_us\tmax_us");
            for s in &stats {
                for l in &s.latency {
                    let _ = writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        s.shard_id,
                        l.stage,
                        l.count,
                        l.p50_us,
                        l.p90_us,
                        l.p99_us,
                        l.p999_us,
                        l.max_us
                    );
                }
            }
        }
        Command::Stats { group_lag, .. } => {
            let stats = client.stats_with(group_lag).await?;
            let _ = writeln!(out, "shard\tcpu\tpartitions\tbytes_in\tbytes_out\tbatches_in\tbatches_out\trequests\tconnections\tforwards_out\tforwards_in\tsubscriptions\tsyncs");
            for s in &stats {
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    s.shard_id,
                    s.cpu,
                    s.partitions,
                    s.bytes_in,
                    s.bytes_out,
                    s.batches_in,
                    s.batches_out,
                    s.requests,
                    s.connections,
                    s.forwards_out,
                    s.forwards_in,
                    s.subscriptions,
                    s.syncs
                );
            }
            if group_lag {
                let _ = writeln!(out, "group\ttopic\tpartition\tcommitted\thigh_watermark\tlag");
                for l in stats.iter().flat_map(|s| &s.group_lag) {
                    let _ = writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        l.group, l.topic, l.partition, l.committed, l.high_watermark, l.lag
                    );
                }
            }
        }
    }
    Ok(())
}

/// Prints records as a group member until `count` are printed or the process is stopped
/// (Ctrl-C / SIGINT closes the member: positions are committed and the group is left).
async fn consume_group(
    client: &Client,
    config: GroupConfig,
    count: u64,
    json: bool,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let mut member = GroupConsumer::join(client, config).await?;
    let mut printed = 0u64;
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    while printed < count {
        let batch = tokio::select! {
            b = member.next() => b?,
            _ = &mut stop => break,
        };
        for r in batch.batch.records() {
            let _ = writeln!(out, "{}", render(batch.partition, &r, json));
            printed += 1;
            if printed >= count {
                break;
            }
        }
        let _ = out.flush();
    }
    member.close().await
}

async fn group_command(
    client: &Client,
    command: GroupCommand,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    match command {
        GroupCommand::List => {
            let _ = writeln!(out, "group\tmembers\tgeneration");
            for g in client.list_groups().await? {
                let _ = writeln!(out, "{}\t{}\t{}", g.group, g.members, g.generation);
            }
        }
        GroupCommand::Describe { group } => {
            let d = client.describe_group(&group).await?;
            let _ = writeln!(
                out,
                "group {} generation {} assignor {:?}{}",
                d.group,
                d.generation,
                d.assignor,
                if d.rebalancing { " (rebalancing)" } else { "" }
            );
            let _ =
                writeln!(out, "member\tinstance\tclient_id\thost\tlast_heartbeat_ms\tassignment");
            let mut owner = std::collections::BTreeMap::new();
            for m in &d.members {
                let parts: Vec<String> = m
                    .assignment
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(move |p| format!("{}/{p}", t.topic)))
                    .collect();
                for t in &m.assignment {
                    for p in &t.partitions {
                        owner.insert((t.topic.clone(), *p), m.member_id.clone());
                    }
                }
                fn dash(s: &str) -> &str {
                    if s.is_empty() {
                        "-"
                    } else {
                        s
                    }
                }
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    m.member_id,
                    dash(&m.instance_id),
                    dash(&m.client_id),
                    dash(&m.client_host),
                    m.since_heartbeat_ms,
                    parts.join(",")
                );
            }
            let _ = writeln!(out, "topic\tpartition\tcommitted\thigh_watermark\tlag\tmember");
            for l in client.group_lag(&group).await? {
                let committed = l.committed.map_or("-".to_string(), |c| c.to_string());
                let member = owner.get(&(l.topic.clone(), l.partition)).map_or("-", String::as_str);
                let _ = writeln!(
                    out,
                    "{}\t{}\t{committed}\t{}\t{}\t{member}",
                    l.topic, l.partition, l.high_watermark, l.lag
                );
            }
        }
        GroupCommand::ResetOffsets { group, topic, to } => {
            let n = client.partition_count(&topic).await?;
            let offsets: Vec<(String, u32, u64)> = match parse_start(&to)? {
                StartPosition::Offset(o) => (0..n).map(|p| (topic.clone(), p, o)).collect(),
                start => {
                    let spec = match start {
                        StartPosition::Earliest => OffsetSpec::Earliest,
                        StartPosition::Timestamp(t) => OffsetSpec::Timestamp(t),
                        _ => OffsetSpec::Latest,
                    };
                    let found = client.list_offsets(&topic, spec).await?;
                    found.into_iter().map(|(p, o, _)| (topic.clone(), p, o)).collect()
                }
            };
            client.commit_offsets(&group, "", 0, &offsets).await?;
            for (t, p, o) in offsets {
                let _ = writeln!(out, "{t}\t{p}\t{o}");
            }
        }
        GroupCommand::Delete { group } => {
            let forgotten = client.delete_group(&group).await?;
            let _ = writeln!(out, "deleted group {group} ({} committed offsets)", forgotten.len());
        }
        GroupCommand::DeleteOffsets { group, topic, partition } => {
            for (t, p) in client.delete_group_offsets(&group, &[(topic, partition)]).await? {
                let _ = writeln!(out, "{t}\t{p}\tdeleted");
            }
        }
    }
    Ok(())
}

fn parse_start(from: &str) -> Result<StartPosition, ClientError> {
    Ok(match from {
        "earliest" => StartPosition::Earliest,
        "latest" => StartPosition::Latest,
        s if s.starts_with('@') => StartPosition::Timestamp(
            s[1..]
                .parse()
                .map_err(|_| ClientError::Record(format!("--from {s:?}: @ needs milliseconds")))?,
        ),
        s => StartPosition::Offset(s.parse().map_err(|_| {
            ClientError::Record(format!("--from {s:?}: use earliest, latest, OFFSET or @TIMESTAMP"))
        })?),
    })
}

async fn start_offset(
    client: &Client,
    topic: &str,
    partition: u32,
    from: &str,
) -> Result<u64, ClientError> {
    let spec = match parse_start(from)? {
        StartPosition::Offset(o) => return Ok(o),
        StartPosition::Earliest => OffsetSpec::Earliest,
        StartPosition::Latest => OffsetSpec::Latest,
        StartPosition::Timestamp(t) => OffsetSpec::Timestamp(t),
    };
    let offsets = client.list_offsets(topic, spec).await?;
    Ok(offsets.iter().find(|(p, _, _)| *p == partition).map_or(0, |o| o.1))
}

fn render(partition: u32, r: &RecordView<'_>, json: bool) -> String {
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    if !json {
        return text(r.value()).unwrap_or_default();
    }
    let headers: serde_json::Map<String, serde_json::Value> = r
        .headers()
        .map(|h| {
            // A null header value (Kafka's may be null) is JSON null, not "".
            let value = h.nullable_value().map_or(serde_json::Value::Null, |v| {
                serde_json::Value::String(String::from_utf8_lossy(v).into_owned())
            });
            (h.key().to_owned(), value)
        })
        .collect();
    serde_json::json!({
        "partition": partition,
        "offset": r.offset(),
        "timestamp": r.timestamp_ms(),
        "key": text(r.key()),
        "value": text(r.value()),
        "headers": headers,
    })
    .to_string()
}
