//! The gateway's endpoints (described in `openapi.yaml`): each request is decoded, turned
//! into native request bodies, run through [`native::call`], and the answer rendered as JSON.
//!
//! | method, path                    | native request(s)                          |
//! |---------------------------------|--------------------------------------------|
//! | `GET /health`                   | none (the shard answers)                   |
//! | `GET /topics`                   | `ListTopics`                               |
//! | `POST /topics`                  | `CreateTopic`                              |
//! | `GET /topics/{t}`               | `DescribeTopic`                            |
//! | `DELETE /topics/{t}`            | `DeleteTopic`                              |
//! | `POST /topics/{t}/partitions`   | `CreatePartitions` (grow the topic)        |
//! | `PATCH /topics/{t}`             | `AlterTopicConfig` (change settings)       |
//! | `POST /topics/{t}/records`      | `Produce` (batches built with `BatchBuilder`) |
//! | `GET /topics/{t}/records`       | `ListOffsets`, `Fetch`                     |
//! | `DELETE /topics/{t}/records`    | `DeleteRecords` (before an offset)         |
//! | `GET /topics/{t}/stream`        | `ListOffsets`, long-poll `Fetch` (`stream.rs`) |
//! | `GET /tables/{t}/{key}`         | `TableRead` (get) on the key's partition, its read in room from the shard's budget |

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use wire::{AckLevel, ErrorCode};

use super::error::ApiError;
use super::io::Activity;
use super::native::{self, call};
use super::produce::{build_error, key_hash, produce};
use super::records;
use super::{stream, Body, Gateway};
use crate::budget::Held;

/// Answers one request; the connection counts as busy until the response body is done.
pub async fn handle(
    gw: &Rc<Gateway>,
    activity: &Rc<Activity>,
    conn_auth: &Rc<super::auth::ConnAuth>,
    req: Request<Incoming>,
) -> Response<Body> {
    let busy = activity.begin();
    // Health checks (load balancers) need no credentials: the answer names no resource.
    let session = if req.uri().path() == "/health" {
        Ok(crate::auth::Session::new(None))
    } else {
        conn_auth.session(&gw.shard.security, req.headers())
    };
    let response = match session {
        Ok(session) => match route(&gw.for_request(session), req).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        },
        Err(e) => error_response(&e),
    };
    response.map(move |body| -> Body {
        Box::pin(body.map_frame(move |f| {
            let _ = &busy;
            f
        }))
    })
}

/// A JSON response.
pub fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    json_text_response(status, v.to_string())
}

/// A JSON response of text already rendered.
pub fn json_text_response(status: StatusCode, text: String) -> Response<Body> {
    let mut r: Response<Body> = Response::new(Box::pin(Full::new(Bytes::from(text))));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r
}

/// The JSON error response for `e`.
pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.status(), &e.body());
    if let Some(s) = e.retry_after_s {
        r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(s));
    }
    if e.status() == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"broker\""),
        );
    }
    r
}

async fn route(gw: &Rc<Gateway>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_owned();
    let segments: Vec<String> =
        path.trim_matches('/').split('/').map(percent_decode).collect::<Result<_, _>>()?;
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["health"]) => Ok(json_response(
            StatusCode::OK,
            &json!({"status": "ok", "shard": gw.shard.id, "shards": gw.shard.shard_count}),
        )),
        (&Method::GET, ["topics"]) => list_topics(gw, &Query::parse(&req)?).await,
        (&Method::POST, ["topics"]) => create_topic(gw, req).await,
        (&Method::GET, ["topics", t]) => describe_topic(gw, t).await,
        (&Method::DELETE, ["topics", t]) => delete_topic(gw, t).await,
        (&Method::PATCH, ["topics", t]) => alter_topic(gw, t, req).await,
        (&Method::POST, ["topics", t, "partitions"]) => grow_topic(gw, t, req).await,
        (&Method::POST, ["topics", t, "records"]) => produce(gw, t, req).await,
        (&Method::GET, ["topics", t, "records"]) => read_records(gw, t, &Query::parse(&req)?).await,
        (&Method::DELETE, ["topics", t, "records"]) => {
            delete_records(gw, t, &Query::parse(&req)?).await
        }
        (&Method::GET, ["topics", t, "stream"]) => stream::open(gw, t, &req).await,
        (&Method::GET, ["tables", t, key]) => table_get(gw, t, key, &Query::parse(&req)?).await,
        (
            _,
            ["health"]
            | ["topics"]
            | ["topics", _]
            | ["topics", _, "records" | "stream" | "partitions"]
            | ["tables", _, _],
        ) => Err(ApiError::invalid(format!("{method} is not served on {path}"))
            .with_status(StatusCode::METHOD_NOT_ALLOWED)),
        _ => Err(ApiError::invalid(format!("no endpoint {path} (see openapi.yaml)"))
            .with_status(StatusCode::NOT_FOUND)),
    }
}

/// Decodes `%XX` escapes (and `+` as space in queries, see [`Query`]).
fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ApiError::invalid(format!("bad percent escape in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::invalid(format!("{s:?} is not UTF-8")))
}

/// A request's query parameters.
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses the query string of `req`.
    pub fn parse<B>(req: &Request<B>) -> Result<Query, ApiError> {
        let mut out = Vec::new();
        for pair in req.uri().query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            out.push((
                percent_decode(&k.replace('+', " "))?,
                percent_decode(&v.replace('+', " "))?,
            ));
        }
        Ok(Query(out))
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `name` parsed as a number, if present.
    pub fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::invalid(format!("{name}={v:?} is not a valid number")))
            })
            .transpose()
    }
}

/// Where a read starts: `earliest`, `latest` or an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The first stored offset.
    Earliest,
    /// The high watermark.
    Latest,
    /// This offset.
    Offset(u64),
}

impl StartAt {
    /// Parses the `from` parameter.
    pub fn parse(v: Option<&str>, default: StartAt) -> Result<StartAt, ApiError> {
        match v {
            None => Ok(default),
            Some("earliest") => Ok(StartAt::Earliest),
            Some("latest") => Ok(StartAt::Latest),
            // Offsets are below 2^63 (Kafka's and the stream ids' are signed).
            Some(n) => n
                .parse::<u64>()
                .ok()
                .filter(|&o| i64::try_from(o).is_ok())
                .map(StartAt::Offset)
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "from={n:?}: expected earliest, latest or an offset below 2^63"
                    ))
                }),
        }
    }
}

/// The offset `from` means in partition `partition` of `topic`.
pub async fn resolve(
    gw: &Rc<Gateway>,
    topic: &str,
    partition: u32,
    from: StartAt,
) -> Result<u64, ApiError> {
    let spec = match from {
        StartAt::Offset(o) => return Ok(o),
        StartAt::Earliest => wire::OffsetSpec::Earliest,
        StartAt::Latest => wire::OffsetSpec::Latest,
    };
    let req = wire::ListOffsetsRequest {
        topics: vec![wire::ListOffsetsTopic {
            name: topic.to_owned(),
            partitions: vec![wire::ListOffsetsPartition { partition, spec }],
        }],
    };
    let resp: wire::ListOffsetsResponse = call(gw, &req).await?;
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownServerError, "empty offsets answer"))?;
    ApiError::check(p.error, || format!("{topic}/{partition}"))?;
    Ok(p.offset)
}

/// The partition count of `topic`, or `UNKNOWN_TOPIC`.
pub fn partition_count(gw: &Gateway, topic: &str) -> Result<u32, ApiError> {
    gw.shard
        .metadata()
        .topic(topic)
        .map(|t| t.shards.len() as u32)
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownTopic, format!("unknown topic {topic:?}")))
}

/// Reads the whole body, within `body_bytes_max` and `read_timeout_ms`.
/// A request body read whole, holding its bytes of the shard's memory budget
/// (`memory_bytes_per_shard`, shared with native connections) until it is dropped.
pub struct HeldBody {
    /// The body.
    pub bytes: Bytes,
    /// Its room (a handler grows it for what it builds from the body).
    pub held: crate::budget::Held,
}

/// `wait` (which waits for room in the shard's memory budget, and for up to `also_ms` more
/// that it may wait on purpose), or 429 `RESOURCE_LIMIT` with `Retry-After: 1` once
/// `http.memory_wait_ms` + `also_ms` passed without it ending (dropping it gives back what
/// it held).
async fn within_memory_wait<T>(
    gw: &Gateway,
    also_ms: u32,
    wait: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let wait_ms = gw.shard.config.http.memory_wait_ms;
    let refused = || {
        Err(ApiError::new(
            ErrorCode::ResourceLimit,
            format!("no room in the shard's memory budget within {wait_ms} ms (http.memory_wait_ms); retry later"),
        )
        .with_retry_after(1))
    };
    crate::timeout::or_after(Duration::from_millis(wait_ms + u64::from(also_ms)), wait, refused)
        .await
}

/// Reads the whole body, within `body_bytes_max` and `read_timeout_ms`, once the shard's
/// memory budget has room for it (its Content-Length, or `body_bytes_max` when chunked).
pub async fn read_body(
    gw: &Gateway,
    req: Request<Incoming>,
) -> Result<(hyper::http::request::Parts, HeldBody), ApiError> {
    let max = gw.shard.config.http.body_bytes_max;
    let too_large =
        || ApiError::new(ErrorCode::FrameTooLarge, format!("request body over {max} bytes"));
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let timeout = Duration::from_millis(gw.shard.config.http.read_timeout_ms);
    let reserve = announced.map_or(max, |n| n as usize);
    let collected = futures_lite::future::or(
        async {
            let held = gw.shard.memory.hold(reserve).await;
            Some((Limited::new(body, max).collect().await, held))
        },
        async {
            glommio::timer::sleep(timeout).await;
            None
        },
    )
    .await;
    match collected {
        None => Err(ApiError::new(ErrorCode::Timeout, "request body not received in time")
            .with_status(StatusCode::REQUEST_TIMEOUT)),
        Some((Ok(c), held)) => Ok((parts, HeldBody { bytes: c.to_bytes(), held })),
        Some((Err(e), _)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Some((Err(e), _)) => Err(ApiError::invalid(format!("request body: {e}"))),
    }
}

async fn list_topics(gw: &Rc<Gateway>, q: &Query) -> Result<Response<Body>, ApiError> {
    let req = wire::ListTopicsRequest { name_prefix: q.get("prefix").unwrap_or("").to_owned() };
    let resp: wire::ListTopicsResponse = call(gw, &req).await?;
    let topics: Vec<Value> = resp
        .topics
        .iter()
        .map(|t| json!({"name": t.name, "partitions": t.partition_count}))
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "topics": topics })))
}

fn config_json(c: &wire::TopicConfig) -> Value {
    json!({
        "partitions": c.partition_count,
        "retention_ms": c.retention_ms,
        "retention_bytes": c.retention_bytes,
        "segment_bytes_max": c.segment_bytes_max,
        "segment_ms": c.segment_ms,
        "default_ack": c.default_ack.name(),
        "batch_bytes_max": c.batch_bytes_max,
        "table": c.table,
        "compact": c.compact,
        "delete_retention_ms": c.delete_retention_ms,
    })
}

/// A request body that must be one JSON object (an admin request's), read within the
/// body limits; a body that is not is a 400.
async fn read_object(
    gw: &Rc<Gateway>,
    req: Request<Incoming>,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let (_, body) = read_body(gw, req).await?;
    let v: Value = serde_json::from_slice(&body.bytes)
        .map_err(|e| ApiError::invalid(format!("malformed JSON body: {e}")))?;
    match v {
        Value::Object(o) => Ok(o),
        _ => Err(ApiError::invalid("the body must be a JSON object")),
    }
}

async fn create_topic(
    gw: &Rc<Gateway>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let o = read_object(gw, req).await?;
    const FIELDS: [&str; 11] = [
        "table",
        "compact",
        "delete_retention_ms",
        "name",
        "partitions",
        "retention_ms",
        "retention_bytes",
        "segment_bytes_max",
        "segment_ms",
        "default_ack",
        "batch_bytes_max",
    ];
    if let Some(unknown) = o.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!("unknown field {unknown:?}")));
    }
    let name = o
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("name (a string) is required"))?;
    let int = |f: &str| -> Result<i64, ApiError> {
        match o.get(f) {
            None | Some(Value::Null) => Ok(0),
            Some(v) => {
                v.as_i64().ok_or_else(|| ApiError::invalid(format!("{f} must be an integer")))
            }
        }
    };
    let unsigned = |f: &str| -> Result<u64, ApiError> {
        u64::try_from(int(f)?).map_err(|_| ApiError::invalid(format!("{f} must not be negative")))
    };
    let default_ack = match o.get("default_ack") {
        None | Some(Value::Null) => AckLevel::Durable,
        Some(v) => v.as_str().and_then(AckLevel::parse).ok_or_else(|| {
            ApiError::new(ErrorCode::InvalidAckLevel, "default_ack: none, written or durable")
        })?,
    };
    let narrow = |f: &str| -> Result<u32, ApiError> {
        u32::try_from(unsigned(f)?).map_err(|_| ApiError::invalid(format!("{f} is too large")))
    };
    let flag = |f: &str| -> Result<bool, ApiError> {
        match o.get(f) {
            None | Some(Value::Null) => Ok(false),
            Some(v) => {
                v.as_bool().ok_or_else(|| ApiError::invalid(format!("{f} must be true or false")))
            }
        }
    };
    let config = wire::TopicConfig {
        partition_count: match narrow("partitions")? {
            0 => 1,
            n => n,
        },
        retention_ms: int("retention_ms")?,
        retention_bytes: int("retention_bytes")?,
        segment_bytes_max: unsigned("segment_bytes_max")?,
        segment_ms: int("segment_ms")?,
        default_ack,
        batch_bytes_max: narrow("batch_bytes_max")?,
        table: flag("table")?,
        // State tables (aggregates) are created with brokerctl or the Rust client.
        aggregate: None,
        compact: flag("compact")?,
        delete_retention_ms: int("delete_retention_ms")?,
    };
    let req = wire::CreateTopicRequest { name: name.to_owned(), config };
    let resp: wire::CreateTopicResponse = call(gw, &req).await?;
    ApiError::check(resp.error, || resp.message.clone())?;
    let config = resp.topic.as_ref().map(|t| config_json(&t.config)).unwrap_or(Value::Null);
    Ok(json_response(StatusCode::CREATED, &json!({"name": name, "config": config})))
}

async fn describe_topic(gw: &Rc<Gateway>, name: &str) -> Result<Response<Body>, ApiError> {
    let req = wire::DescribeTopicRequest { name: name.to_owned() };
    let resp: wire::DescribeTopicResponse = call(gw, &req).await?;
    ApiError::check(resp.error, || resp.message.clone())?;
    let partitions: Vec<Value> = resp
        .partitions
        .iter()
        .map(|p| {
            json!({
                "partition": p.partition,
                "shard": p.shard,
                "log_start_offset": p.log_start_offset,
                "high_watermark": p.high_watermark,
                "size_bytes": p.size_bytes,
                "segment_count": p.segment_count,
            })
        })
        .collect();
    let config = resp.topic.as_ref().map(|t| config_json(&t.config)).unwrap_or(Value::Null);
    Ok(json_response(
        StatusCode::OK,
        &json!({"name": name, "config": config, "partitions": partitions}),
    ))
}

async fn delete_topic(gw: &Rc<Gateway>, name: &str) -> Result<Response<Body>, ApiError> {
    let req = wire::DeleteTopicRequest { name: name.to_owned() };
    let resp: wire::DeleteTopicResponse = call(gw, &req).await?;
    ApiError::check(resp.error, || resp.message.clone())?;
    Ok(json_response(StatusCode::OK, &json!({"deleted": name})))
}

/// `PATCH /topics/{t}` with settings to change, `{"retention_ms": 86400000, "default_ack":
/// "written"}` (native `AlterTopicConfig`; `null` sets one back to the broker default; all or
/// none are made). The answer is the topic's settings now.
async fn alter_topic(
    gw: &Rc<Gateway>,
    name: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let o = read_object(gw, req).await?;
    let mut changes = Vec::with_capacity(o.len());
    for (field, value) in &o {
        let value = match value {
            Value::Null => String::new(),
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            // Refused as fixed at creation (`compact`, `table`) by the native check.
            Value::Bool(b) => b.to_string(),
            _ => return Err(ApiError::invalid(format!("{field}: a number, a string or null"))),
        };
        changes.push(wire::TopicSettingChange { name: field.clone(), value });
    }
    if changes.is_empty() {
        return Err(ApiError::invalid("no setting to change"));
    }
    let req =
        wire::AlterTopicConfigRequest { name: name.to_owned(), changes, validate_only: false };
    let resp: wire::AlterTopicConfigResponse = call(gw, &req).await?;
    ApiError::check(resp.error, || resp.message.clone())?;
    let config = resp.topic.as_ref().map(|t| config_json(&t.config)).unwrap_or(Value::Null);
    Ok(json_response(StatusCode::OK, &json!({"name": name, "config": config})))
}

/// `POST /topics/{t}/partitions` with `{"partitions": N}`: grows the topic to N partitions
/// (native `CreatePartitions`; new partitions start empty, existing ones keep their data).
async fn grow_topic(
    gw: &Rc<Gateway>,
    name: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let o = read_object(gw, req).await?;
    if let Some(unknown) = o.keys().find(|k| k.as_str() != "partitions") {
        return Err(ApiError::invalid(format!("unknown field {unknown:?}")));
    }
    let partition_count = o
        .get("partitions")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| ApiError::invalid("partitions (a count of at most 2^32-1) is required"))?;
    let req = wire::CreatePartitionsRequest { name: name.to_owned(), partition_count };
    let resp: wire::CreatePartitionsResponse = call(gw, &req).await?;
    ApiError::check(resp.error, || resp.message.clone())?;
    let partitions = resp.topic.as_ref().map_or(partition_count, |t| t.partitions.len() as u32);
    Ok(json_response(StatusCode::OK, &json!({"name": name, "partitions": partitions})))
}

/// `DELETE /topics/{t}/records?before=N|hw[&partition=P]`: every record before `before` goes
/// (native `DeleteRecords`), in partition `P` or in every partition; answers each
/// partition's log start, durable once answered. The first partition refused fails the
/// request (the others are done).
async fn delete_records(
    gw: &Rc<Gateway>,
    topic: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let before = match q.get("before") {
        Some("hw") => wire::DeleteBefore::HighWatermark,
        Some(o) => o
            .parse()
            .map(wire::DeleteBefore::Offset)
            .map_err(|_| ApiError::invalid(format!("before={o:?}: an offset or hw")))?,
        None => return Err(ApiError::invalid("before (an offset or hw) is required")),
    };
    let partitions = match q.number::<u32>("partition")? {
        Some(p) => vec![p],
        None => (0..partition_count(gw, topic)?).collect(),
    };
    let req = wire::DeleteRecordsRequest {
        topics: vec![wire::DeleteRecordsTopic {
            name: topic.to_owned(),
            partitions: partitions
                .into_iter()
                .map(|partition| wire::DeleteRecordsPartition { partition, before })
                .collect(),
        }],
    };
    let resp: wire::DeleteRecordsResponse = call(gw, &req).await?;
    let mut out = Vec::new();
    for p in resp.topics.iter().flat_map(|t| &t.partitions) {
        ApiError::check(p.error, || format!("deleting records of {topic}/{}", p.partition))?;
        out.push(json!({"partition": p.partition, "log_start_offset": p.log_start_offset}));
    }
    Ok(json_response(StatusCode::OK, &json!({"name": topic, "partitions": out})))
}

/// `GET /tables/{t}/{key}`: a table's latest value of `key` (native `TableRead`, on the
/// partition the key hashes to), waiting up to `wait_ms` for `min_offset` when given.
async fn table_get(
    gw: &Rc<Gateway>,
    topic: &str,
    key: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let count = partition_count(gw, topic)?;
    let partition = (key_hash(key.as_bytes()) % u64::from(count)) as u32;
    let min_offset = q.number::<u64>("min_offset")?;
    let req = wire::TableReadRequest {
        // Waiting is for `min_offset` only (a read that may wait lends its owner no room
        // up front: without one, the first ask carries room).
        wait_ms: match min_offset {
            Some(o) if o > 0 => q.number::<u32>("wait_ms")?.unwrap_or(1_000),
            _ => 0,
        },
        topics: vec![wire::TableReadTopic {
            name: topic.to_owned(),
            partitions: vec![wire::TableReadPartition {
                partition,
                kind: wire::TableReadKind::Get,
                start_key: key.as_bytes().to_vec(),
                end_key: None,
                limit: 1,
                min_offset: min_offset.unwrap_or(0),
            }],
        }],
    };
    // The entry read takes room from the shard's budget (HTTP has no connection budget),
    // held until the answer is rendered. Bounded whole (its wait for room is inside the
    // native handler): `wait_ms` for `min_offset` (504 `TIMEOUT` past it) plus the wait for
    // room.
    let (resp, held): (wire::TableReadResponse, _) =
        within_memory_wait(gw, req.wait_ms, native::call_in_room(gw, &req, Vec::new())).await?;
    let p = resp
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .next()
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownServerError, "empty table answer"))?;
    ApiError::check(p.error, || format!("table {topic}/{partition}"))?;
    let Some(entry) = p.entries.into_iter().next() else {
        return Ok(json_response(
            StatusCode::NOT_FOUND,
            &json!({"key": key, "found": false, "partition": partition, "table_offset": p.offset}),
        ));
    };
    // Rendered like a record (value as JSON when it is JSON), through a one-record batch.
    let headers: Vec<(&str, Option<&[u8]>)> = entry
        .headers
        .iter()
        .map(|h| (h.key.as_str(), (!h.null).then_some(h.value.as_slice())))
        .collect();
    let mut b = wire::BatchBuilder::new(wire::constants::BATCH_BYTES_MAX as usize);
    b.append_nullable(entry.timestamp_ms, Some(&entry.key), Some(&entry.value), &headers)
        .map_err(|e| build_error(&e, ""))?;
    let mut batch = b.finish().map_err(|e| build_error(&e, ""))?;
    wire::batch::header::assign(&mut batch, entry.offset, wire::constants::NO_TIMESTAMP);
    let mut out = String::new();
    records::for_each_record(&batch, 0, |r| {
        records::write_json(partition, r, &mut out);
        false
    })?;
    // The record's object, and two fields more.
    out.pop();
    out.push_str(&format!(r#","found":true,"table_offset":{}}}"#, p.offset));
    Ok(held_while_written(StatusCode::OK, out, held))
}

async fn read_records(
    gw: &Rc<Gateway>,
    topic: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let partition = q.number::<u32>("partition")?.unwrap_or(0);
    let limit_max = gw.shard.config.http.records_limit_max;
    let limit = q.number::<u32>("limit")?.unwrap_or(100);
    if limit == 0 || limit > limit_max {
        return Err(ApiError::invalid(format!("limit={limit}: 1..={limit_max}")));
    }
    partition_count(gw, topic)?;
    let mut next =
        resolve(gw, topic, partition, StartAt::parse(q.get("from"), StartAt::Earliest)?).await?;
    // Records are rendered as they are read (a parsed JSON tree takes many times its text),
    // and the answer stops once its text reaches `stream_buffer_bytes_max` (at least one
    // record; `next_offset` says where to go on): what one request makes the broker hold is
    // that, not `limit` records of any size.
    let rendered_bytes_max = gw.shard.config.http.stream_buffer_bytes_max as usize;
    let (mut out, mut count, mut high_watermark) = (String::new(), 0usize, next);
    // One hold for both the fetched batches and the text, as much of each (a second hold
    // taken per fetch while this one is held could wait for room such holds of others keep);
    // a first batch beyond it grows it (the fetch's room) before it is read.
    let mut held = vec![
        within_memory_wait(gw, 0, async { Ok(gw.shard.memory.hold(2 * rendered_bytes_max).await) })
            .await?,
    ];
    'fetches: while count < limit as usize {
        let fetched = fetch_once(gw, topic, partition, next, 0, held);
        let (batches, hw, room) = within_memory_wait(gw, 0, fetched).await?;
        held = room;
        high_watermark = hw;
        let next_before = next;
        let visited = records::for_each_record(&batches, next, |r| {
            if count > 0 && out.len() >= rendered_bytes_max {
                return false;
            }
            if count > 0 {
                out.push(',');
            }
            records::write_json(partition, r, &mut out);
            (count, next) = (count + 1, r.offset() + 1);
            count < limit as usize
        })?;
        // Past batches whose records compaction removed: no record moved `next` over them.
        if let Some(end) = visited {
            next = next.max(end);
        }
        if next == next_before || next >= hw || out.len() >= rendered_bytes_max {
            break 'fetches;
        }
    }
    let body =
        format!(r#"{{"records":[{out}],"next_offset":{next},"high_watermark":{high_watermark}}}"#);
    drop(out);
    Ok(held_while_written(StatusCode::OK, body, held))
}

/// A JSON response of `text` that stays held (`held`, resized to the text) until hyper has
/// taken it: the text goes to hyper 64 KiB at a time, each piece given back as it goes, and
/// hyper asks for the next only once its write buffer (~400 KiB) has room, so a client that
/// reads slowly keeps the rest counted in the shard's budget.
pub fn held_while_written(status: StatusCode, text: String, held: Vec<Held>) -> Response<Body> {
    const PIECE_BYTES: usize = 64 << 10;
    let text = Bytes::from(text);
    let len = text.len();
    let room = Held::sized(held, len);
    let pieces = futures_lite::stream::unfold((text, room), |(mut rest, mut room)| async move {
        if rest.is_empty() {
            return None;
        }
        let piece = rest.split_to(rest.len().min(PIECE_BYTES));
        if let Some(r) = &mut room {
            r.shrink(piece.len());
        }
        Some((Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(piece)), (rest, room)))
    });
    let mut r: Response<Body> = Response::new(Box::pin(http_body_util::StreamBody::new(pieces)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    r
}

/// One fetch of one partition from `offset`: its batch bytes, high watermark, and `held`
/// (the caller's room for it, `http.stream_buffer_bytes_max` or more) grown for a first
/// batch beyond that (`native::call_in_room`).
pub async fn fetch_once(
    gw: &Rc<Gateway>,
    topic: &str,
    partition: u32,
    offset: u64,
    max_wait_ms: u32,
    held: Vec<Held>,
) -> Result<(Vec<u8>, u64, Vec<Held>), ApiError> {
    let max_bytes = gw.shard.config.http.stream_buffer_bytes_max;
    let req = wire::FetchRequest {
        max_wait_ms,
        min_bytes: 1,
        max_bytes,
        topics: vec![wire::FetchTopic {
            name: topic.to_owned(),
            partitions: vec![wire::FetchPartition { partition, offset, max_bytes }],
        }],
    };
    let (resp, held): (wire::FetchResponse, _) = native::call_in_room(gw, &req, held).await?;
    let p = resp
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .next()
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownServerError, "empty fetch answer"))?;
    ApiError::check(p.error, || format!("{topic}/{partition} at offset {offset}"))?;
    Ok((p.batches, p.high_watermark, held))
}
