//! `POST /topics/{t}/records`: a request body into one native `Produce`.
//!
//! A JSON body (`records.rs` says its shape) is read one record at a time straight into
//! per-partition `BatchBuilder`s (no tree of the body, no list of records); any other body
//! is one record whose value is the body. The partition is the record's `partition`, the
//! query's, its key's hash (the Rust client's partitioner), or one partition per request
//! taken round robin.
//!
//! What one request makes the broker hold, beside its body (held from the shard's budget
//! by `read_body`): the batches built from it and the native frame they are copied into,
//! and the answer's text (one `{"partition", "offset"}` per record). Each record becomes at
//! least 48 bytes of batch (`{}` is 3 bytes of JSON), so a request has at most
//! `http.produce_records_max` records, its batches at most `frame_body_bytes_max`, and what
//! they and the answer take is held from the shard's budget at once beside the body (never
//! waited for while the body is held; requests after it wait for the room it took); the
//! answer's text stays held until hyper has written it. Write on the topic is checked
//! before the body is read.

use std::collections::BTreeMap;
use std::rc::Rc;

use hyper::body::Incoming;
use hyper::{header, Request, Response, StatusCode};
use wire::{AckLevel, ApiKey, ErrorCode};

use super::error::ApiError;
use super::native::call;
use super::records::{self, InRecord};
use super::routes::{held_while_written, read_body, Query};
use super::{Body, Gateway};
use crate::auth::acl::{Operation, Resource};

/// Bytes of answer text per record held up front (`{"partition":N,"offset":N},`).
const ANSWER_BYTES_PER_RECORD: usize = 48;

/// What a partition's builder takes beside its batch (its arena and lists), counted with
/// the batches.
const PARTITION_BYTES: usize = 3 << 10;

/// One partition's part of a produce: its batches and which input records went where.
struct PartitionBatches {
    builder: wire::BatchBuilder,
    batches: Vec<u8>,
    /// Input positions of this partition's records, in append order.
    records: Vec<u32>,
}

/// The batches of one request, built as its records are read.
struct Build<'a> {
    topic: &'a str,
    partition_count: u32,
    batch_bytes_max: usize,
    records_max: usize,
    /// The batches' limit (the native frame they go in).
    bytes_max: usize,
    query_partition: Option<u32>,
    sticky: u32,
    now_ms: i64,
    parts: BTreeMap<u32, PartitionBatches>,
    /// Finished batches plus what the builders hold.
    bytes: usize,
    records: usize,
}

impl Build<'_> {
    fn add(&mut self, i: usize, r: &InRecord) -> Result<(), ApiError> {
        let headers: Vec<(&str, Option<&[u8]>)> =
            r.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        let (key, value) = (r.key.as_deref(), r.value.as_deref());
        self.append(i, r.partition, key, value, &headers, r.timestamp_ms)
    }

    fn append(
        &mut self,
        i: usize,
        partition: Option<u32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
        timestamp_ms: Option<i64>,
    ) -> Result<(), ApiError> {
        if self.records >= self.records_max {
            return Err(ApiError::new(
                ErrorCode::FrameTooLarge,
                format!(
                    "more than {} records in one request (http.produce_records_max)",
                    self.records_max
                ),
            ));
        }
        let p = match (partition.or(self.query_partition), key) {
            (Some(p), _) => p,
            (None, Some(k)) => (key_hash(k) % u64::from(self.partition_count)) as u32,
            (None, None) => self.sticky,
        };
        if p >= self.partition_count {
            return Err(ApiError::new(
                ErrorCode::UnknownPartition,
                format!(
                    "record {i}: partition {p} of {:?}, which has {}",
                    self.topic, self.partition_count
                ),
            ));
        }
        let part = match self.parts.entry(p) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                let builder = wire::BatchBuilder::new(self.batch_bytes_max);
                self.bytes += builder.estimated_bytes() + PARTITION_BYTES;
                v.insert(PartitionBatches { builder, batches: Vec::new(), records: Vec::new() })
            }
        };
        let before = part.builder.estimated_bytes() + part.batches.len();
        let ts = timestamp_ms.unwrap_or(self.now_ms);
        let b = &mut part.builder;
        let mut appended = b.append_nullable(ts, key, value, headers);
        if matches!(
            appended,
            Err(wire::BuildError::Full { .. }
                | wire::BuildError::TooManyRecords { .. }
                | wire::BuildError::TimestampOutOfRange { .. })
        ) && !b.is_empty()
        {
            finish(b, &mut part.batches)?;
            appended = b.append_nullable(ts, key, value, headers);
        }
        appended.map_err(|e| build_error(&e, &format!("record {i}: ")))?;
        part.records.push(i as u32);
        self.records += 1;
        // `before` is counted in `bytes`.
        self.bytes = self.bytes - before + part.builder.estimated_bytes() + part.batches.len();
        if self.bytes > self.bytes_max {
            return Err(ApiError::new(
                ErrorCode::FrameTooLarge,
                format!(
                    "the records make more than {} bytes of batches (frame_body_bytes_max)",
                    self.bytes_max
                ),
            ));
        }
        Ok(())
    }

    /// Each partition's batches, finished (the builders let go: only which records went
    /// where is kept for the answer).
    fn finish(&mut self) -> Result<Vec<wire::ProducePartition>, ApiError> {
        let mut partitions = Vec::with_capacity(self.parts.len());
        for (p, part) in self.parts.iter_mut() {
            let mut builder = std::mem::replace(&mut part.builder, wire::BatchBuilder::new(0));
            if !builder.is_empty() {
                finish(&mut builder, &mut part.batches)?;
            }
            partitions.push(wire::ProducePartition {
                partition: *p,
                batches: std::mem::take(&mut part.batches),
                expect: wire::ExpectedPosition::Any,
            });
        }
        Ok(partitions)
    }
}

/// `POST /topics/{t}/records` (see the module docs).
pub async fn produce(
    gw: &Rc<Gateway>,
    topic: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let q = Query::parse(&req)?;
    crate::auth::authorize::ahead(
        &gw.shard.security,
        &gw.session,
        ApiKey::Produce,
        Operation::Write,
        Resource::Topic(topic),
    )
    .map_err(|(code, message)| ApiError::new(code, message))?;
    let meta = gw.shard.metadata();
    let t = meta.topic(topic).ok_or_else(|| {
        ApiError::new(ErrorCode::UnknownTopic, format!("unknown topic {topic:?}"))
    })?;
    let ack = match q.get("acks") {
        None => t.settings.default_ack(),
        Some(a) => AckLevel::parse(a).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidAckLevel,
                format!("acks={a:?}: none, written or durable"),
            )
        })?,
    };
    let partition_count = t.shards.len() as u32;
    let sticky = gw.sticky.get() % partition_count;
    gw.sticky.set(gw.sticky.get().wrapping_add(1));
    let mut build = Build {
        topic,
        partition_count,
        batch_bytes_max: gw.shard.log_config(t).batch_bytes_max,
        records_max: gw.shard.config.http.produce_records_max as usize,
        bytes_max: gw.shard.config.frame_body_bytes_max as usize,
        query_partition: q.number::<u32>("partition")?,
        sticky,
        now_ms: 0,
        parts: BTreeMap::new(),
        bytes: 0,
        records: 0,
    };
    drop(meta);
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (_, mut body) = read_body(gw, req).await?;
    build.now_ms = crate::clock::now_ms();
    if is_json {
        records::for_each_json_record(&body.bytes, |i, r| build.add(i, &r))?;
    } else {
        let key = q.get("key").map(str::as_bytes);
        build.append(0, None, key, Some(&body.bytes), &[], None)?;
    }
    if build.records == 0 {
        return Err(ApiError::invalid("no records"));
    }
    let partitions = build.finish()?;
    // The batches, their copy in the native frame, and the answer: held at once beside the
    // body (see the module docs).
    body.held.grow(2 * build.bytes + build.records * ANSWER_BYTES_PER_RECORD);
    let req = wire::ProduceRequest {
        ack,
        timeout_ms: gw.shard.config.http.read_timeout_ms.min(u64::from(u32::MAX)) as u32,
        topics: vec![wire::ProduceTopic { name: topic.to_owned(), partitions }],
    };
    let resp: wire::ProduceResponse = call(gw, &req).await?;
    drop(req);
    let (status, text) = answer(topic, &build, &resp);
    // From here the answer's text is what the request holds, until hyper has taken it (a
    // client that reads it slowly keeps it held).
    drop(body.bytes);
    Ok(held_while_written(status, text, vec![body.held]))
}

/// The answer: each input record's partition and offset (or its partition's error), in
/// input order, rendered as text (a JSON tree of them would take ~10× the text).
fn answer(topic: &str, build: &Build<'_>, resp: &wire::ProduceResponse) -> (StatusCode, String) {
    // Each record's entry, by input position: its partition's result and its place there.
    let mut entries: Vec<(u32, u32)> = vec![(u32::MAX, 0); build.records];
    let mut failure = None;
    let mut results: Vec<(u32, Result<i64, String>)> = Vec::new();
    for result in resp.topics.iter().flat_map(|t| &t.partitions) {
        let Some(part) = build.parts.get(&result.partition) else { continue };
        let slot = results.len() as u32;
        match ApiError::check(result.error, || format!("{topic}/{}", result.partition)) {
            Ok(()) => results.push((result.partition, Ok(result.base_offset))),
            Err(e) => {
                results.push((result.partition, Err(e.body()["error"].to_string())));
                failure.get_or_insert(e);
            }
        }
        for (n, &i) in part.records.iter().enumerate() {
            entries[i as usize] = (slot, n as u32);
        }
    }
    let mut offsets = String::with_capacity(build.records * ANSWER_BYTES_PER_RECORD / 2);
    offsets.push_str(r#"{"offsets":["#);
    for (n, &(slot, place)) in entries.iter().enumerate() {
        use std::fmt::Write as _;
        if n > 0 {
            offsets.push(',');
        }
        let Some((p, result)) = results.get(slot as usize) else {
            offsets.push_str("null");
            continue;
        };
        let _ = match result {
            Ok(base) if *base >= 0 => {
                write!(offsets, r#"{{"partition":{p},"offset":{}}}"#, base + i64::from(place))
            }
            Ok(_) => write!(offsets, r#"{{"partition":{p},"offset":null}}"#),
            Err(error) => write!(offsets, r#"{{"partition":{p},"error":{error}}}"#),
        };
    }
    offsets.push(']');
    match failure {
        None => {
            offsets.push('}');
            (StatusCode::OK, offsets)
        }
        Some(e) => {
            // The error's fields beside the offsets.
            let error = e.body().to_string();
            offsets.push(',');
            offsets.push_str(&error[1..]);
            (e.status(), offsets)
        }
    }
}

fn finish(b: &mut wire::BatchBuilder, out: &mut Vec<u8>) -> Result<(), ApiError> {
    let batch = b.finish().map_err(|e| build_error(&e, ""))?;
    out.extend_from_slice(&batch);
    Ok(())
}

/// A batch that does not build, as the gateway answers it.
pub fn build_error(e: &wire::BuildError, context: &str) -> ApiError {
    let code = match e {
        wire::BuildError::RecordTooLarge { .. } => ErrorCode::BatchTooLarge,
        wire::BuildError::Serialize { .. } => ErrorCode::UnknownServerError,
        _ => ErrorCode::InvalidRequest,
    };
    ApiError::new(code, format!("{context}{e}"))
}

/// FNV-1a 64-bit of a key: the same partition as the Rust client's key partitioner.
pub fn key_hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
