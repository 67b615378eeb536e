//! `brokerctl topic` (create, grow, alter, delete, delete-records, list, describe).

use std::io::Write;

use clap::Subcommand;
use client::{Client, ClientError};
use wire::{DeleteBefore, TopicConfig};

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Name.
        name: String,
        /// Partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Retention by time (-1 = forever).
        #[arg(long, default_value_t = -1)]
        retention_ms: i64,
        /// Retention by size (-1 = unlimited).
        #[arg(long, default_value_t = -1)]
        retention_bytes: i64,
        /// Segment size (0 = broker default).
        #[arg(long, default_value_t = 0)]
        segment_bytes: u64,
        /// Keep a projection table: each key's latest value (`brokerctl table get|scan`).
        #[arg(long)]
        table: bool,
        /// Compact the log: closed segments keep each key's latest record (cleanup.policy =
        /// compact; with --retention-ms/--retention-bytes also compact,delete).
        #[arg(long)]
        compact: bool,
        /// With --compact: remove a key's tombstone this long after it was appended (0 =
        /// broker default, 1 day; -1 = never).
        #[arg(long, default_value_t = 0)]
        delete_retention_ms: i64,
    },
    /// Grow a topic to more partitions (the others and their data stay; keyed records map
    /// by the new count from then on).
    Grow {
        /// Name.
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        partitions: u32,
    },
    /// Change settings of a topic: `--set retention_ms=86400000 --set default_ack=written`
    /// (retention_ms, retention_bytes, segment_bytes_max, segment_ms, delete_retention_ms,
    /// default_ack; `NAME=` sets one back to the broker default). Its partitions take the
    /// change at once.
    Alter {
        /// Name.
        name: String,
        /// A setting and its new value, `NAME=VALUE`; repeat for more.
        #[arg(long = "set", value_name = "NAME=VALUE", required = true)]
        set: Vec<String>,
        /// Check the changes and show the result without making them.
        #[arg(long)]
        validate_only: bool,
    },
    /// Delete a topic and its data.
    Delete {
        /// Name.
        name: String,
    },
    /// Delete the records of a topic's partitions before an offset: each partition's log
    /// start moves there (reads below it fail with OFFSET_OUT_OF_RANGE, whole segments below
    /// it free their space), durably once answered.
    DeleteRecords {
        /// Name.
        name: String,
        /// The partition; repeat for more (default: every partition).
        #[arg(long = "partition")]
        partitions: Vec<u32>,
        /// The records before this offset go; `hw` for every record written so far.
        #[arg(long, value_name = "OFFSET|hw")]
        before: String,
    },
    /// List topics.
    List,
    /// Describe a topic.
    Describe {
        /// Name.
        name: String,
    },
}

/// Runs one `brokerctl topic` command, writing what it shows to `out`.
pub async fn command(
    client: &Client,
    command: TopicCommand,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    match command {
        TopicCommand::Create {
            name,
            partitions,
            retention_ms,
            retention_bytes,
            segment_bytes,
            table,
            compact,
            delete_retention_ms,
        } => {
            let t = client
                .create_topic(
                    &name,
                    TopicConfig {
                        partition_count: partitions,
                        retention_ms,
                        retention_bytes,
                        segment_bytes_max: segment_bytes,
                        table,
                        compact,
                        delete_retention_ms,
                        ..Default::default()
                    },
                )
                .await?;
            let _ = writeln!(out, "created {} with {} partitions", t.name, t.partitions.len());
        }
        TopicCommand::Grow { name, partitions } => {
            let t = client.create_partitions(&name, partitions).await?;
            let _ = writeln!(out, "{} has {} partitions", t.name, t.partitions.len());
        }
        TopicCommand::Alter { name, set, validate_only } => {
            let changes = set
                .iter()
                .map(|s| {
                    let (k, v) = s.split_once('=').ok_or_else(|| {
                        ClientError::Record(format!("--set {s:?}: use NAME=VALUE"))
                    })?;
                    Ok((k.trim().to_owned(), v.trim().to_owned()))
                })
                .collect::<Result<Vec<_>, ClientError>>()?;
            let t = client.alter_topic_config(&name, &changes, validate_only).await?;
            let c = &t.config;
            let verb = if validate_only { "would have" } else { "has" };
            let _ = writeln!(
                out,
                "{} {verb} retention_ms {} retention_bytes {} segment_bytes_max {} segment_ms {} \
                 delete_retention_ms {} default_ack {} compact {}",
                t.name,
                c.retention_ms,
                c.retention_bytes,
                c.segment_bytes_max,
                c.segment_ms,
                c.delete_retention_ms,
                c.default_ack.name(),
                c.compact
            );
        }
        TopicCommand::Delete { name } => {
            client.delete_topic(&name).await?;
            let _ = writeln!(out, "deleted {name}");
        }
        TopicCommand::DeleteRecords { name, partitions, before } => {
            let before = match before.as_str() {
                "hw" => DeleteBefore::HighWatermark,
                o => DeleteBefore::Offset(o.parse().map_err(|_| {
                    ClientError::Record(format!("--before {o:?}: an offset or hw"))
                })?),
            };
            let partitions = match partitions.is_empty() {
                true => (0..client.partition_count(&name).await?).collect(),
                false => partitions,
            };
            let asked: Vec<_> = partitions.iter().map(|&p| (p, before)).collect();
            for (partition, start) in client.delete_records(&name, &asked).await? {
                let _ = writeln!(out, "{name}/{partition} starts at {start}");
            }
        }
        TopicCommand::List => {
            for t in client.list_topics().await? {
                let _ = writeln!(out, "{}\t{}", t.name, t.partition_count);
            }
        }
        TopicCommand::Describe { name } => {
            let d = client.describe_topic(&name).await?;
            if let Some(t) = &d.topic {
                let c = &t.config;
                let _ = writeln!(out, "topic {} partitions {} retention_ms {} retention_bytes {} segment_bytes {} table {} compact {}", t.name, c.partition_count, c.retention_ms, c.retention_bytes, c.segment_bytes_max, c.table, c.compact);
            }
            let _ =
                writeln!(out, "partition\tshard\tlog_start\thigh_watermark\tsize_bytes\tsegments");
            for p in d.partitions {
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    p.partition,
                    p.shard,
                    p.log_start_offset,
                    p.high_watermark,
                    p.size_bytes,
                    p.segment_count
                );
            }
        }
    }
    Ok(())
}
