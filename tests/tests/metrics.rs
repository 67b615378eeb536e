//! The Prometheus endpoint and JSON logs of the real broker binary on 127.0.0.1.
//!
//! Scrapes are checked by a strict parser of the text format below (every sample belongs to
//! the family its `# TYPE` line announced, labels are well formed and not repeated,
//! histogram buckets are cumulative and end at `+Inf` = `_count`, the text ends with
//! `# EOF`), so a scrape that Prometheus would reject fails here.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use integration_tests::{create_topic, Broker, Conn};
use wire::*;

/// Labels of a series, sorted.
type Labels = Vec<(String, String)>;

/// A series: metric name and its labels.
type Series = (String, Labels);

/// A parsed scrape: every sample's value, and each family's type.
#[derive(Debug, Default)]
struct Exposition {
    samples: BTreeMap<Series, f64>,
    types: BTreeMap<String, String>,
}

impl Exposition {
    /// Sum of the samples named `name` whose labels include all of `with`.
    fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|((n, labels), _)| {
                n == name && with.iter().all(|(k, v)| labels.iter().any(|(a, b)| a == k && b == v))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Whether any sample is named `name`.
    fn has(&self, name: &str) -> bool {
        self.samples.keys().any(|(n, _)| n == name)
    }
}

/// Parses `key="value",...` (the text between braces), unescaping values.
fn parse_labels(text: &str, line: &str) -> Labels {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let eq = rest.find("=\"").unwrap_or_else(|| panic!("label without =\" in {line:?}"));
        let key = &rest[..eq];
        assert!(
            !key.is_empty()
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !key.starts_with(|c: char| c.is_ascii_digit()),
            "bad label name {key:?} in {line:?}"
        );
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break eq + 2 + i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        assert!(
            labels.iter().all(|(k, _): &(String, String)| k != key),
            "repeated label in {line:?}"
        );
        labels.push((key.to_owned(), value));
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else {
            assert!(rest.is_empty(), "junk after label in {line:?}");
        }
    }
    labels.sort();
    labels
}

/// A strict parser of the OpenMetrics text format as far as this broker uses it.
fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.last(), Some(&""), "text ends with a newline");
    let lines = &lines[..lines.len() - 1];
    assert_eq!(lines.last(), Some(&"# EOF"), "text ends with # EOF");
    let mut family: Option<(String, String)> = None;
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap(), parts.next().expect("a name"));
            match kind {
                "TYPE" => {
                    let t = parts.next().expect("a type").to_owned();
                    assert!(["counter", "gauge", "histogram"].contains(&t.as_str()), "{line}");
                    assert!(
                        out.types.insert(name.to_owned(), t.clone()).is_none(),
                        "family twice: {line}"
                    );
                    family = Some((name.to_owned(), t));
                }
                "HELP" | "UNIT" => {}
                _ => panic!("unknown comment {line:?}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, parse_labels(l.strip_suffix('}').expect("closing brace"), line)),
            None => (series, Vec::new()),
        };
        let (fam, t) = family.as_ref().unwrap_or_else(|| panic!("sample before # TYPE: {line}"));
        let suffixes: &[&str] = match t.as_str() {
            "counter" => &["_total"],
            "gauge" => &[""],
            _ => &["_bucket", "_sum", "_count"],
        };
        assert!(
            suffixes.iter().any(|s| name == format!("{fam}{s}")),
            "sample {name} outside its family {fam} ({t})"
        );
        if t == "counter" {
            assert!(value >= 0.0, "negative counter: {line}");
        }
        let key = (name.to_owned(), labels);
        assert!(out.samples.insert(key, value).is_none(), "series twice: {line}");
    }
    check_histograms(&out);
    out
}

/// Buckets never decrease with `le`, and `+Inf` equals `_count`.
fn check_histograms(e: &Exposition) {
    for (fam, _) in e.types.iter().filter(|(_, t)| *t == "histogram") {
        let mut by_series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for ((name, labels), v) in &e.samples {
            if *name != format!("{fam}_bucket") {
                continue;
            }
            let le = labels.iter().find(|(k, _)| k == "le").expect("le label");
            let le = if le.1 == "+Inf" { f64::INFINITY } else { le.1.parse().expect("le") };
            let rest: Vec<_> = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
            by_series.entry(rest).or_default().push((le, *v));
        }
        for (labels, mut buckets) in by_series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{fam} {labels:?} not cumulative"
            );
            let count = e.samples[&(format!("{fam}_count"), labels.clone())];
            assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count), "{fam} {labels:?}");
        }
    }
}

/// The metrics address from the broker's ready file.
fn metrics_address(b: &Broker) -> Option<SocketAddr> {
    b.metrics_address()
}

/// Sends `request` and returns the status line and body.
fn http(addr: SocketAddr, request: &[u8]) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).expect("send");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    let status = head.lines().next().unwrap_or_default().to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("content length")
        .parse()
        .unwrap();
    assert_eq!(body.len(), length, "Content-Length matches the body");
    (status, body.to_owned())
}

fn scrape_text(addr: SocketAddr) -> String {
    let (status, body) = http(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    body
}

fn scrape(addr: SocketAddr) -> Exposition {
    parse(&scrape_text(addr))
}

/// Scrapes until `done` holds or `timeout` passed; returns the last scrape.
fn scrape_until(
    addr: SocketAddr,
    timeout: Duration,
    done: impl Fn(&Exposition) -> bool,
) -> Exposition {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let e = scrape(addr);
        if done(&e) || std::time::Instant::now() > deadline {
            return e;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Parses `text` with Prometheus' own Python parser (prometheus-client's OpenMetrics
/// parser, installed by `.ci/run`): the number of samples it read.
fn python_parse(text: &str) -> usize {
    const SCRIPT: &str = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        n = sum(len(f.samples) for f in text_string_to_metric_families(sys.stdin.read()))\n\
        print(n)\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (apt-get install python3)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "prometheus_client rejected the scrape (pip install prometheus-client): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a sample count")
}

fn batch(partition: u32, seq: u32, records: u32) -> AlignedVec {
    let mut b = BatchBuilder::new(1 << 20);
    for i in 0..records {
        let value = format!("p{partition}-s{seq}-r{i}-{}", "x".repeat((i % 40) as usize));
        b.append(1_700_000_000_000, None, Some(value.as_bytes()), &[]).unwrap();
    }
    b.finish().unwrap()
}

fn start(shards: usize, env: &[(&str, &str)]) -> (Broker, SocketAddr) {
    let mut env = env.to_vec();
    env.push(("BROKER_METRICS_LISTEN", "127.0.0.1:0"));
    let b = Broker::start_with_env(shards, &env);
    let addr = metrics_address(&b).expect("metrics endpoint bound");
    (b, addr)
}

#[test]
fn counters_move_by_exactly_what_was_produced_and_consumed() {
    let (b, addr) = start(2, &[]);
    let mut conn = b.connect();
    const TOPIC: &str = "metered";
    const PARTITIONS: u32 = 4;
    let owners = create_topic(&mut conn, TOPIC, PARTITIONS);
    let before = scrape(addr);

    // Produced through the public port: some requests are forwarded to the owning shard.
    let (mut records, mut bytes, mut batches, mut requests) = (0u64, 0u64, 0u64, 0u64);
    let mut per_partition = BTreeMap::<u32, (u64, u64)>::new();
    for round in 0..5u32 {
        for p in 0..PARTITIONS {
            let n = 1 + (round * 7 + p * 3) % 20;
            let one = batch(p, round, n);
            let two = batch(p, round + 100, 3);
            let both = [one.as_slice(), two.as_slice()].concat();
            let r = integration_tests::produce(&mut conn, TOPIC, p, &both, AckLevel::Durable);
            assert_eq!(r.error, 0, "produce");
            records += u64::from(n) + 3;
            bytes += both.len() as u64;
            batches += 2;
            requests += 1;
            let e = per_partition.entry(p).or_default();
            e.0 += u64::from(n) + 3;
            e.1 += both.len() as u64;
        }
    }
    // With the shard journal segment writes (`bytes_written`) trail the acks by up to
    // `journal_segment_write_delay_ms`: scrape until they caught up.
    let after = scrape_until(addr, Duration::from_secs(5), |after| {
        per_partition.iter().all(|(p, (_, byts))| {
            let labels = [("topic", TOPIC), ("partition", &p.to_string())];
            after.sum("broker_partition_bytes_written_total", &labels) >= *byts as f64
        })
    });
    let delta = |name: &str| after.sum(name, &[]) - before.sum(name, &[]);
    assert_eq!(delta("broker_records_in_total"), records as f64);
    assert_eq!(delta("broker_bytes_in_total"), bytes as f64);
    assert_eq!(delta("broker_batches_in_total"), batches as f64);
    assert_eq!(delta("broker_produce_latency_seconds_count"), requests as f64);
    assert_eq!(
        after.sum("broker_requests_total", &[("api", ApiKey::Produce.name())]),
        requests as f64,
        "every produce request counted once, on the shard that answered the client"
    );
    for (p, (recs, byts)) in &per_partition {
        let labels = [("topic", TOPIC), ("partition", &p.to_string())];
        assert_eq!(after.sum("broker_partition_log_end_offset", &labels), *recs as f64, "p{p}");
        assert_eq!(after.sum("broker_partition_high_watermark", &labels), *recs as f64, "p{p}");
        assert_eq!(after.sum("broker_partition_bytes_written_total", &labels), *byts as f64);
        assert!(after.sum("broker_partition_disk_bytes", &labels) >= *byts as f64);
        assert_eq!(after.sum("broker_partition_segments", &labels), 1.0);
        assert_eq!(after.sum("broker_partition_records_in_total", &labels), *recs as f64, "p{p}");
    }
    // Every write I/O is in the write-size histogram, whose bytes cover the batches.
    let writes = after.sum("broker_log_writes_total", &[]);
    assert!(writes > 0.0);
    assert_eq!(after.sum("broker_log_write_size_bytes_count", &[]), writes);
    assert!(after.sum("broker_log_write_size_bytes_sum", &[]) >= bytes as f64);
    // (With the shard journal through its records, each one O_DSYNC write.)
    let durable = after.sum("broker_partition_fdatasyncs_total", &[("topic", TOPIC)])
        + after.sum("broker_partition_dsync_writes_total", &[("topic", TOPIC)])
        + after.sum("broker_journal_records_total", &[]);
    assert!(durable > 0.0, "durable appends were synced (fdatasync, O_DSYNC or the journal)");
    assert!(
        after.sum("broker_journal_records_gathered_total", &[])
            <= after.sum("broker_journal_records_total", &[]),
        "gathered records are journal records"
    );
    assert!(after.has("broker_journal_records_gathered_total"));
    assert!(after.has("broker_journal_records_paced_total"));
    assert!(
        after.sum("broker_journal_records_overlapped_total", &[])
            <= after.sum("broker_journal_records_total", &[]),
        "overlapped records are journal records"
    );
    if after.sum("broker_fdatasyncs_total", &[]) > 0.0 {
        assert!(after.sum("broker_fdatasync_seconds_total", &[]) > 0.0, "fdatasyncs take time");
    }
    assert!(
        after.sum("broker_fdatasyncs_total", &[])
            >= after.sum("broker_partition_fdatasyncs_total", &[])
    );
    assert!(delta("broker_forwards_out_total") > 0.0, "one shard forwarded to the other");
    // Per-stage latency: every batch passed the log queue, every owner-side produce acked.
    assert!(
        delta("broker_stage_samples_total") >= batches as f64,
        "stage samples counted per shard and stage"
    );
    let ack_max =
        after.sum("broker_stage_latency_seconds", &[("stage", "produce_ack"), ("quantile", "1")]);
    let ack_p50 =
        after.sum("broker_stage_latency_seconds", &[("stage", "produce_ack"), ("quantile", "0.5")]);
    assert!(ack_max > 0.0 && ack_p50 <= ack_max, "produce_ack quantiles: {ack_p50} .. {ack_max}");
    assert_eq!(after.sum("broker_connections", &[]), 1.0, "this test's connection");

    // Consume everything back through each owner's fetch.
    for (p, (recs, _)) in &per_partition {
        integration_tests::fetch_all(&mut conn, TOPIC, *p, *recs);
    }
    let consumed = scrape(addr);
    let delta = |name: &str| consumed.sum(name, &[]) - after.sum(name, &[]);
    assert_eq!(delta("broker_records_out_total"), records as f64);
    assert_eq!(delta("broker_bytes_out_total"), bytes as f64);
    assert_eq!(delta("broker_batches_out_total"), batches as f64);
    for (p, (recs, byts)) in &per_partition {
        let labels = [("topic", TOPIC), ("partition", &p.to_string())];
        let out = consumed.sum("broker_partition_records_out_total", &labels);
        assert_eq!(out, *recs as f64, "p{p}: counted once, on the shard that answered");
        assert_eq!(consumed.sum("broker_partition_bytes_out_total", &labels), *byts as f64);
    }
    // Tailing reads of fresh batches come from the cache, not the disk.
    let reads = delta("broker_cache_reads_total") + delta("broker_log_disk_reads_total");
    assert!(reads >= PARTITIONS as f64, "every fetch that returned data read the log");
    assert!(delta("broker_cache_reads_total") > 0.0, "fresh batches are served from the cache");

    // A subscription with one byte of credit gets one batch pushed, then stalls on credit.
    let mut sub = b.connect_shard(owners[2] as usize);
    let r: SubscribeResponse = sub.call(&SubscribeRequest {
        subscription_id: 1,
        topic: TOPIC.into(),
        partition: 2,
        start: StartPosition::Earliest,
        credit_bytes: 1,
        filter: String::new(),
    });
    assert_eq!(r.error, 0, "{}", r.message);
    let push: SubscriptionData = sub.next_push().decode();
    let pushed = wire::to_aligned(&push.batches);
    let pushed_records: u64 =
        wire::Batches::new(&pushed).map(|b| u64::from(b.unwrap().header().record_count())).sum();
    assert!(pushed_records > 0);
    let mut stalled = scrape(addr);
    for _ in 0..100 {
        if stalled.sum("broker_credit_stalls_total", &[]) > 0.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        stalled = scrape(addr);
    }
    assert!(
        stalled.sum("broker_credit_stalls_total", &[]) >= 1.0,
        "the push loop waited for credit"
    );
    assert_eq!(stalled.sum("broker_subscriptions", &[]), 1.0);
    let pushed_delta = stalled.sum("broker_records_out_total", &[])
        - consumed.sum("broker_records_out_total", &[]);
    assert_eq!(pushed_delta, pushed_records as f64, "pushed records count as records out");
    let labels = [("topic", TOPIC), ("partition", "2")];
    let pushed_delta = stalled.sum("broker_partition_records_out_total", &labels)
        - consumed.sum("broker_partition_records_out_total", &labels);
    assert_eq!(pushed_delta, pushed_records as f64, "and as the partition's records out");

    // A group's lag is the high watermark minus its committed offset.
    let committed = 3u64;
    let resp: CommitOffsetsResponse = conn.call(&CommitOffsetsRequest {
        group: "metered-group".into(),
        member_id: String::new(),
        generation: 0,
        topics: vec![CommitTopic {
            name: TOPIC.into(),
            partitions: vec![CommittedOffset {
                partition: 1,
                offset: committed,
                metadata: String::new(),
            }],
        }],
    });
    assert_eq!(resp.error, 0, "commit: {}", resp.message);
    let lagged = scrape(addr);
    let labels = [("group", "metered-group"), ("topic", TOPIC), ("partition", "1")];
    assert_eq!(lagged.sum("broker_group_partition_committed_offset", &labels), committed as f64);
    assert_eq!(
        lagged.sum("broker_group_partition_lag_records", &labels),
        (per_partition[&1].0 - committed) as f64
    );
    // Prometheus' own parser reads every sample the strict parser here read.
    let text = scrape_text(addr);
    assert_eq!(python_parse(&text), parse(&text).samples.len());
    assert!(lagged.sum("process_resident_memory_bytes", &[]) > 0.0);
    assert!(lagged.sum("process_open_fds", &[]) > 0.0);
    assert!(lagged.has("process_cpu_seconds_total"));
    assert_eq!(lagged.sum("broker_metrics_shard_up", &[]), 2.0, "both shards answered");

    // Deleting the topic takes its partitions' series away, but not their counts out of
    // the shards' totals: a counter that went down would read as a restart.
    drop(sub);
    let resp: DeleteTopicResponse = conn.call(&DeleteTopicRequest { name: TOPIC.into() });
    assert_eq!(resp.error, 0, "delete: {}", resp.message);
    let deleted = scrape_until(addr, Duration::from_secs(5), |e| {
        e.sum("broker_partition_log_end_offset", &[("topic", TOPIC)]) == 0.0
    });
    assert_eq!(deleted.sum("broker_partition_log_end_offset", &[("topic", TOPIC)]), 0.0);
    for name in [
        "broker_log_writes_total",
        "broker_log_write_size_bytes_count",
        "broker_log_write_size_bytes_sum",
        "broker_fdatasyncs_total",
        "broker_fdatasync_seconds_total",
        "broker_cache_reads_total",
        "broker_log_disk_reads_total",
    ] {
        assert!(
            deleted.sum(name, &[]) >= lagged.sum(name, &[]),
            "{name} went down when the topic went: {} -> {}",
            lagged.sum(name, &[]),
            deleted.sum(name, &[])
        );
    }
    assert!(deleted.sum("broker_log_writes_total", &[]) >= writes);
}

#[test]
fn retention_deletions_and_compaction_are_counted() {
    let env = [("BROKER_RETENTION_CHECK_MS", "100"), ("BROKER_CLEANER_DIRTY_PERCENT_MIN", "0")];
    let (b, addr) = start(1, &env);
    let mut conn = b.connect();
    for (name, compact, retention_bytes) in [("aged", false, 8192), ("kv", true, -1)] {
        let resp: CreateTopicResponse = conn.call(&CreateTopicRequest {
            name: name.into(),
            config: TopicConfig {
                partition_count: 1,
                segment_bytes_max: 4096,
                retention_bytes,
                retention_ms: -1,
                compact,
                ..Default::default()
            },
        });
        assert_eq!(resp.error, 0, "create {name}: {}", resp.message);
    }
    // ~40 KiB into 4 KiB segments: retention keeps about 8 KiB of "aged"; "kv" rewrites one
    // key over and over, which compaction folds into its latest value.
    let mut append = |topic: &str, key: Option<&[u8]>, value: &[u8]| {
        let mut b = BatchBuilder::new(1 << 20);
        b.append(1, key, Some(value), &[]).unwrap();
        let r = integration_tests::produce(
            &mut conn,
            topic,
            0,
            &b.finish().unwrap(),
            AckLevel::Durable,
        );
        assert_eq!(r.error, 0, "{topic}");
    };
    for i in 0..40u32 {
        append("aged", None, &[b'a'; 1000]);
        append("kv", Some(b"the-key"), format!("{i:01000}").as_bytes());
    }
    let e = scrape_until(addr, Duration::from_secs(30), |e| {
        e.sum("broker_retention_segments_deleted_total", &[]) > 0.0
            && e.sum("broker_cleaner_records_removed_total", &[]) > 0.0
    });
    let aged = [("topic", "aged"), ("partition", "0")];
    let deleted = e.sum("broker_partition_segments_deleted_total", &aged);
    assert!(deleted > 0.0, "retention deleted segments of the aged topic");
    assert_eq!(e.sum("broker_retention_segments_deleted_total", &[]), deleted);
    assert!(e.sum("broker_retention_deleted_bytes_total", &[]) >= deleted * 1000.0);
    assert!(e.sum("broker_partition_log_start_offset", &aged) > 0.0);
    let kv = [("topic", "kv"), ("partition", "0")];
    assert!(e.sum("broker_partition_cleaner_records_removed_total", &kv) > 0.0);
    assert!(e.sum("broker_cleaner_reclaimed_bytes_total", &[]) > 0.0);
    assert!(e.sum("broker_cleaner_passes_total", &[]) > 0.0);
}

#[test]
fn partition_series_past_the_cap_are_summed_per_topic_and_the_scrape_stays_bounded() {
    // 8 offsets partitions + 40 = 48 > 20: per topic from the start.
    // Few connections, so the descriptor budget leaves room for 10,000 partitions.
    let env =
        [("BROKER_METRICS_PARTITIONS_MAX", "20"), ("BROKER_CONNECTIONS_PER_SHARD_MAX", "100")];
    let (b, addr) = start(2, &env);
    let mut conn = b.connect();
    create_topic(&mut conn, "wide", 40);
    let r = integration_tests::produce(&mut conn, "wide", 7, &batch(7, 0, 5), AckLevel::Durable);
    assert_eq!(r.error, 0);
    let text = scrape_text(addr);
    let e = parse(&text);
    assert_eq!(e.sum("broker_metrics_partition_series_capped", &[]), 1.0);
    assert!(!text.contains("broker_partition_"), "no per-partition series past the cap");
    assert_eq!(e.sum("broker_topic_log_end_offset", &[("topic", "wide")]), 5.0);
    assert_eq!(e.sum("broker_partitions", &[]), 48.0);

    // Ten times the partitions: the scrape grows by one topic's series, not by partitions.
    create_topic(&mut conn, "wider", 400);
    let more = scrape_text(addr);
    parse(&more);
    // (Stage latency series, per shard and stage, appear with their first sample: with
    // the shard journal the deferred segment write of the produce above may land between
    // the scrapes. They do not grow with partitions.)
    let lines = |t: &str| t.lines().filter(|l| !l.contains("broker_stage_")).count();
    assert!(
        lines(&more) <= lines(&text) + 18,
        "{} lines with 448 partitions, {} with 48",
        lines(&more),
        lines(&text)
    );
    assert!(more.len() < 64 << 10, "a capped scrape of 448 partitions is {} bytes", more.len());

    // 10,000 partitions more: still one topic's series more, and a scrape in tens of KiB.
    create_topic(&mut conn, "widest", 10_000);
    let most = scrape_text(addr);
    let e = parse(&most);
    assert_eq!(e.sum("broker_partitions", &[]), 10_448.0);
    assert!(lines(&most) <= lines(&more) + 18, "{} lines with 10,448 partitions", lines(&most));
    assert!(most.len() < 64 << 10, "a capped scrape of 10,448 partitions is {} bytes", most.len());

    // Every metric the Grafana dashboard plots exists (group lag is per partition or per
    // group depending on how many group partitions there are: checked in the test above).
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana-dashboard.json"),
    )
    .expect("dashboard");
    let e = parse(&more);
    let mut checked = 0;
    for start in dashboard.match_indices("broker_").chain(dashboard.match_indices("process_")) {
        let name: String = dashboard[start.0..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.starts_with("broker_group_") {
            continue;
        }
        // This scrape is capped: per-partition families are there as per-topic ones.
        let name = name.replacen("broker_partition_", "broker_topic_", 1);
        let family = ["_bucket", "_total"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| e.types.contains_key(*f))
            .unwrap_or(&name);
        assert!(e.types.contains_key(family), "the dashboard plots {name}, which the broker lacks");
        checked += 1;
    }
    assert!(checked > 20);
}

#[test]
fn the_endpoint_refuses_what_it_does_not_serve() {
    let (b, addr) = start(1, &[]);
    assert!(http(addr, b"GET / HTTP/1.1\r\n\r\n").0.starts_with("HTTP/1.1 404"));
    assert!(http(addr, b"POST /metrics HTTP/1.1\r\n\r\n").0.starts_with("HTTP/1.1 405"));
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "y".repeat(20_000));
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(huge.as_bytes()); // the server may close before taking it all
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 431"), "{response:.80}");

    // An error frame is counted by api and code.
    let mut c = b.connect();
    let unknown = encode_frame(
        999,
        0,
        5,
        &StatsRequest { shards: vec![], group_lag: false, latency: false, reset_latency: false },
    );
    c.send_raw(&unknown.unwrap()).unwrap();
    assert!(c.wait(5).header.has_flag(wire::constants::FLAG_ERROR));
    let e = scrape(addr);
    let labels = [("api", "999"), ("code", "UNKNOWN_API_KEY")];
    assert_eq!(e.sum("broker_request_errors_total", &labels), 1.0);
    assert_eq!(e.sum("broker_requests_total", &[("api", "other")]), 1.0);
}

#[test]
fn json_logs_parse_line_by_line_and_name_each_lifecycle_event() {
    let mut b = Broker::start_with_env(
        2,
        &[("BROKER_LOG_FORMAT", "json"), ("BROKER_METRICS_LISTEN", "off")],
    );
    assert_eq!(metrics_address(&b), None, "metrics off: no endpoint");
    let mut conn: Conn = b.connect();
    create_topic(&mut conn, "logged", 2);
    let resp: DeleteTopicResponse = conn.call(&DeleteTopicRequest { name: "logged".into() });
    assert_eq!(resp.error, 0);
    drop(conn);
    assert_eq!(b.stop(), Some(0));
    let mut messages = Vec::new();
    for line in b.log_text().lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{line}");
        messages.push(v["fields"]["message"].as_str().expect("message").to_owned());
    }
    for event in [
        "broker starting",
        "shard ready",
        "broker ready",
        "topic created",
        "topic deleted",
        "shutting down",
        "shard stopped",
        "broker stopped",
    ] {
        assert!(messages.iter().any(|m| m == event), "no {event:?} line in {messages:#?}");
    }
}
