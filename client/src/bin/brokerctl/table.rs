//! `brokerctl table` (create, get, scan, describe) and `brokerctl query` (a key's records in
//! a time range).

use std::io::Write;

use clap::Subcommand;
use client::{Client, ClientError, KeyRange};
use wire::TopicConfig;

#[derive(Debug, Subcommand)]
pub enum TableCommand {
    /// Create a topic kept as a table (retention forever: a table needs its keys' records).
    /// With --aggregate, a state table: per group, the record count and the sum, min, max and
    /// last of a numeric field.
    Create {
        /// Name.
        name: String,
        /// Partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// A state table (aggregates) instead of a projection (latest value per key).
        #[arg(long)]
        aggregate: bool,
        /// Aggregate this existing topic (from its first stored record) instead of creating
        /// a new topic for the table.
        #[arg(long, requires = "aggregate")]
        topic: Option<String>,
        /// Group by this header's value (default: the record key).
        #[arg(long, requires = "aggregate")]
        group_by_header: Option<String>,
        /// The numeric field: a JSON path into the value, like `$.amount`.
        #[arg(long, requires = "aggregate", conflicts_with = "field_header")]
        field_json_path: Option<String>,
        /// Or the numeric field is this header's value.
        #[arg(long, requires = "aggregate")]
        field_header: Option<String>,
        /// Tumbling windows of record time (ms); 0: the whole stream.
        #[arg(long, default_value_t = 0, requires = "aggregate")]
        window_ms: u64,
        /// With windows: keep each group's newest this many (0: every window).
        #[arg(long, default_value_t = 0, requires = "aggregate")]
        windows_kept: u32,
    },
    /// Delete a state table declared over a topic (the topic stays; a table topic is
    /// deleted with `brokerctl topic delete`).
    Delete {
        /// Table name.
        name: String,
    },
    /// Print a key's latest value (exit status 1 when the key does not exist).
    Get {
        /// Table (topic) name.
        name: String,
        /// The key.
        key: String,
        /// Wait until the key's partition reflects every record before this offset.
        #[arg(long, default_value_t = 0)]
        min_offset: u64,
        /// value | json.
        #[arg(long, default_value = "value")]
        format: String,
    },
    /// Print keys and values in key order.
    Scan {
        /// Table (topic) name.
        name: String,
        /// Only keys starting with this.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        prefix: Option<String>,
        /// First key (inclusive).
        #[arg(long)]
        from: Option<String>,
        /// Stop before this key.
        #[arg(long)]
        to: Option<String>,
        /// Most entries to print.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// value | json.
        #[arg(long, default_value = "json")]
        format: String,
    },
    /// Print changes as they are applied (JSON lines: key, offset, previous_offset, value or
    /// tombstone), from now on; Ctrl-C stops.
    Watch {
        /// Table (topic) name.
        name: String,
        /// Stop after this many changes.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Each partition's applied offset (the table reflects every record before it).
    Describe {
        /// Table (topic) name.
        name: String,
    },
}

pub async fn command(
    client: &Client,
    command: TableCommand,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    match command {
        TableCommand::Create {
            name,
            partitions,
            aggregate,
            group_by_header,
            field_json_path,
            field_header,
            window_ms,
            windows_kept,
            topic,
        } => {
            let aggregate = aggregate.then_some(wire::AggregateSpec {
                group_by_header,
                field_json_path,
                field_header,
                window_ms,
                windows_kept,
            });
            if let (Some(topic), Some(spec)) = (&topic, &aggregate) {
                client.create_table(&name, topic, spec.clone()).await?;
                let _ = writeln!(out, "created state table {name} over {topic}");
                return Ok(());
            }
            // A projection table's topic is compacted: only each key's latest record is
            // needed to rebuild it. A state table's is not (its counts replay every record).
            let compact = aggregate.is_none();
            let config = TopicConfig {
                partition_count: partitions,
                retention_ms: -1,
                retention_bytes: -1,
                table: true,
                aggregate,
                compact,
                ..Default::default()
            };
            let t = client.create_topic(&name, config).await?;
            let _ =
                writeln!(out, "created table {} with {} partitions", t.name, t.partitions.len());
        }
        TableCommand::Get { name, key, min_offset: _, format: _ }
            if client.is_state_table(&name).await? =>
        {
            let got = client.state_get(&name, key.as_bytes(), &[]).await?;
            if got.entries.is_empty() {
                eprintln!("{key:?}: no such group");
                std::process::exit(1);
            }
            for e in &got.entries {
                let _ = writeln!(out, "{}", e.to_json());
            }
        }
        TableCommand::Get { name, key, min_offset, format } => {
            let json = json_format(&format)?;
            let got = client.table_get(&name, key.as_bytes(), min_offset).await?;
            match &got.entry {
                Some(e) => {
                    let _ = writeln!(out, "{}", render_entry(got.partition, e, json));
                }
                None => {
                    eprintln!(
                        "{key:?}: no such key (partition {} at offset {})",
                        got.partition, got.offset
                    );
                    std::process::exit(1);
                }
            }
        }
        TableCommand::Scan { name, prefix, from, to, limit, format } => {
            let json = json_format(&format)?;
            let mut range = match prefix {
                Some(p) => KeyRange::prefix(p.as_bytes()),
                None => KeyRange {
                    start: from.unwrap_or_default().into_bytes(),
                    end: to.map(String::into_bytes),
                },
            };
            if client.is_state_table(&name).await? {
                let scan = client.state_scan(&name, &range, limit, &[]).await?;
                for e in &scan.entries {
                    let _ = writeln!(out, "{}", e.to_json());
                }
                return Ok(());
            }
            let partitions = client.partition_count(&name).await?;
            let mut printed = 0u32;
            while printed < limit {
                let scan = client.table_scan(&name, &range, limit - printed, &[]).await?;
                for e in &scan.entries {
                    let partition =
                        (client::producer::key_hash(&e.key) % u64::from(partitions)) as u32;
                    let _ = writeln!(out, "{}", render_entry(partition, e, json));
                    printed += 1;
                }
                // A page may be empty and still name where the rest starts (its keys' records
                // were gone, or it ended on bytes): go on while the start moves forward.
                match scan.next_key {
                    Some(next) if next > range.start => range.start = next,
                    _ => break,
                }
            }
        }
        TableCommand::Delete { name } => {
            client.delete_table(&name).await?;
            let _ = writeln!(out, "deleted table {name}");
        }
        TableCommand::Watch { name, count } => {
            // From now: each partition's applied offset.
            let now = client.table_scan(&name, &KeyRange::all(), 1, &[]).await?;
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<String, ClientError>>(256);
            for (partition, from) in now.offsets {
                let (client, name, tx) = (client.clone(), name.clone(), tx.clone());
                tokio::spawn(async move {
                    let mut from = from;
                    loop {
                        let changes =
                            match client.table_changes(&name, partition, from, 1_000).await {
                                Ok(c) => c,
                                Err(e) => {
                                    let _ = tx.send(Err(e)).await;
                                    return;
                                }
                            };
                        for e in &changes.entries {
                            let line = serde_json::json!({
                                "partition": partition,
                                "key": String::from_utf8_lossy(&e.key),
                                "offset": e.offset,
                                "previous_offset": e.previous_offset,
                                "tombstone": e.tombstone,
                                "value": (!e.tombstone).then(|| String::from_utf8_lossy(&e.value).into_owned()),
                            });
                            if tx.send(Ok(line.to_string())).await.is_err() {
                                return;
                            }
                        }
                        from = changes.next_offset;
                    }
                });
            }
            drop(tx);
            let mut printed = 0u64;
            while let Some(line) = rx.recv().await {
                let _ = writeln!(out, "{}", line?);
                let _ = out.flush();
                printed += 1;
                if count.is_some_and(|c| printed >= c) {
                    break;
                }
            }
        }
        TableCommand::Describe { name } => {
            let scan = client.table_scan(&name, &KeyRange::all(), 1, &[]).await?;
            let _ = writeln!(out, "partition\tapplied_offset");
            for (p, o) in scan.offsets {
                let _ = writeln!(out, "{p}\t{o}");
            }
        }
    }
    Ok(())
}

fn render_entry(partition: u32, e: &wire::TableEntry, json: bool) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if !json {
        return text(&e.value);
    }
    let headers: serde_json::Map<String, serde_json::Value> = e
        .headers
        .iter()
        .map(|h| match h.null {
            true => (h.key.clone(), serde_json::Value::Null),
            false => (h.key.clone(), serde_json::Value::String(text(&h.value))),
        })
        .collect();
    serde_json::json!({
        "partition": partition,
        "offset": e.offset,
        "timestamp": e.timestamp_ms,
        "key": text(&e.key),
        "value": text(&e.value),
        "headers": headers,
    })
    .to_string()
}

/// `brokerctl query`: prints every record of `key` with a timestamp in `from_ms..=to_ms`.
pub async fn query(
    client: &Client,
    topic: &str,
    key: &str,
    (from_ms, to_ms): (i64, i64),
    limit: usize,
    format: &str,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let json = json_format(format)?;
    let partitions = client.partition_count(topic).await?;
    let partition = (client::producer::key_hash(key.as_bytes()) % u64::from(partitions)) as u32;
    for e in client.query_key(topic, key.as_bytes(), from_ms, to_ms, limit).await? {
        let _ = writeln!(out, "{}", render_entry(partition, &e, json));
    }
    Ok(())
}

fn json_format(format: &str) -> Result<bool, ClientError> {
    match format {
        "value" => Ok(false),
        "json" => Ok(true),
        f => Err(ClientError::Record(format!("--format {f:?}: use value or json"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_header_value_is_json_null_and_an_empty_one_an_empty_string() {
        let header = |key: &str, null: bool| wire::TableEntryHeader {
            key: key.into(),
            value: Vec::new(),
            null,
        };
        let e = wire::TableEntry {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            offset: 7,
            timestamp_ms: 1,
            previous_offset: None,
            tombstone: false,
            headers: vec![header("gone", true), header("empty", false)],
        };
        let json: serde_json::Value = serde_json::from_str(&render_entry(2, &e, true)).unwrap();
        assert_eq!(json["headers"], serde_json::json!({"gone": null, "empty": ""}));
        assert_eq!(render_entry(2, &e, false), "v");
    }
}
