//! `GET /topics/{t}/stream`: a topic's records as Server-Sent Events, live, resumable.
//!
//! The stream long-polls native `Fetch` requests (through `native::call`, so routing and
//! forwarding are the native path's) for every partition asked for (`partition=N`, or all),
//! from `from=earliest|latest|OFFSET` (default `latest`). Each record is one event:
//!
//! ```text
//! id: 0/41,1/17          <- per partition: the last offset delivered (start - 1 if none)
//! event: record
//! data: {"partition":0,"offset":41,...}
//! ```
//!
//! The stream opens with an `event: position` whose id holds every partition's start, so a
//! client that reconnects with `Last-Event-ID` (every SSE client sends the last id it saw)
//! resumes each partition right after what it received: no gap, no duplicate. A comment
//! line (`: keep-alive`) goes out after `KEEPALIVE` without records, so a vanished client is
//! noticed.
//!
//! A stream of every partition follows a topic that grows (`CreatePartitions`): the new
//! partitions join it from their start, and a stream resumed with `Last-Event-ID` starts the
//! partitions its id does not name (created since) from their start too, so nothing written
//! to them is skipped.
//!
//! `filter=EXPR` (the subscription filter language, `wire::filter`; a bad one is a 400 before
//! the stream starts) keeps only matching records; the positions in the ids move past the
//! skipped ones. The stream evaluates it on the shard serving the HTTP connection, on the
//! fetched batches (native subscriptions evaluate it on the partition's owner).
//!
//! Memory: one fetch (`http.stream_buffer_bytes_max` of batch bytes, a first batch beyond it
//! with room grown for it: `native::call_in_room`) is
//! rendered into one chunk of at most that many bytes (at least one event; what is not
//! rendered is fetched again by the next poll), and the next fetch starts only when hyper asks for the next
//! chunk, which it does once the previous one is written out; a client that stops reading
//! is cut off after `http.write_stall_ms` (`io.rs`). The log is the buffer.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::{Frame, Incoming};
use hyper::{header, Request, Response, StatusCode};
use serde_json::json;
use wire::ErrorCode;

use super::error::ApiError;
use super::native;
use super::records;
use super::routes::{partition_count, resolve, Query, StartAt};
use super::{Body, Gateway};
use crate::filter::RecordFilter;

/// How long a long-poll fetch waits for records.
const POLL_WAIT_MS: u32 = 1_000;
/// A comment goes out after this long without records.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// One partition's position in a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    partition: u32,
    /// The next offset to read.
    next: u64,
}

/// Parses a `Last-Event-ID` (`P/O,P/O,...`, O = last delivered offset, -1 = none).
fn parse_event_id(id: &str, count: u32) -> Result<Vec<Position>, ApiError> {
    let bad = || ApiError::invalid(format!("Last-Event-ID {id:?}: expected PARTITION/OFFSET,..."));
    id.split(',')
        .filter(|s| !s.is_empty())
        .map(|entry| {
            let (p, o) = entry.trim().split_once('/').ok_or_else(bad)?;
            let partition: u32 = p.parse().map_err(|_| bad())?;
            let last: i64 = o.parse().map_err(|_| bad())?;
            if partition >= count || last < -1 {
                return Err(bad());
            }
            let next = last.checked_add(1).ok_or_else(bad)?;
            Ok(Position { partition, next: next as u64 })
        })
        .collect()
}

fn event_id(positions: &[Position]) -> String {
    let mut s = String::new();
    for (i, p) in positions.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        // Offsets are below 2^63 (a `from` above is refused): wrapping only for the record.
        s.push_str(&format!("{}/{}", p.partition, (p.next as i64).wrapping_sub(1)));
    }
    s
}

/// Opens a stream (errors before the first byte are plain JSON errors).
pub async fn open(
    gw: &Rc<Gateway>,
    topic: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let q = Query::parse(req)?;
    let count = partition_count(gw, topic)?;
    let partitions: Vec<u32> = match q.number::<u32>("partition")? {
        Some(p) if p >= count => {
            return Err(ApiError::new(
                ErrorCode::UnknownPartition,
                format!("partition {p} of {topic:?}, which has {count}"),
            ))
        }
        Some(p) => vec![p],
        None => (0..count).collect(),
    };
    let from = StartAt::parse(q.get("from"), StartAt::Latest)?;
    let filter = RecordFilter::parse(q.get("filter").unwrap_or(""))
        .map_err(|e| ApiError::new(e.code(), format!("invalid filter: {e}")))?;
    let resumed = match req.headers().get("last-event-id").map(|v| v.to_str()) {
        None => Vec::new(),
        Some(Ok(id)) => parse_event_id(id, count)?,
        Some(Err(_)) => return Err(ApiError::invalid("Last-Event-ID is not text")),
    };
    let resuming = !resumed.is_empty();
    let resumed: std::collections::HashMap<u32, u64> =
        resumed.into_iter().map(|r| (r.partition, r.next)).collect();
    let mut positions = Vec::with_capacity(partitions.len());
    for &partition in &partitions {
        let next = match resumed.get(&partition) {
            Some(&next) => next,
            // A partition the resumed stream did not have was created since: all of it.
            // (From 0: a fetch below the log start moves to it.)
            None if resuming => 0,
            None => resolve(gw, topic, partition, from).await?,
        };
        positions.push(Position { partition, next });
    }
    let every_partition = q.number::<u32>("partition")?.is_none();
    let topic_id = gw.shard.metadata().topic(topic).map_or(0, |t| t.id);
    // A stream opened with a bearer token lives as long as the token does.
    let bearer = super::auth::bearer_token(req.headers()).map(str::to_owned);
    let state = Stream {
        gw: gw.clone(),
        bearer,
        topic: topic.to_owned(),
        opened_with: positions.len(),
        positions,
        every_partition,
        topic_id,
        filter,
        opened: false,
        ended: false,
        rotate: 0,
        last_sent: Instant::now(),
        chunk_held: None,
    };
    let events = futures_lite::stream::unfold(state, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((Ok::<_, std::convert::Infallible>(Frame::data(chunk)), s))
    });
    let mut r: Response<Body> = Response::new(Box::pin(StreamBody::new(events)));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    *r.status_mut() = StatusCode::OK;
    Ok(r)
}

/// A stream's state between chunks.
struct Stream {
    gw: Rc<Gateway>,
    /// The bearer token it was opened with, checked again before every fetch: deleting a
    /// token (or its expiry) ends the streams it opened, as it ends its requests.
    bearer: Option<String>,
    topic: String,
    positions: Vec<Position>,
    /// Opened without `partition=`: partitions the topic gains join from their start.
    every_partition: bool,
    /// How many positions it opened with (those past it were added by a growth).
    opened_with: usize,
    /// The topic's id when it opened: a topic deleted and made again ends the stream.
    topic_id: u64,
    filter: Option<RecordFilter>,
    opened: bool,
    ended: bool,
    /// Which partition leads the next fetch (fetches fill in request order).
    rotate: usize,
    last_sent: Instant,
    /// The room of the chunk hyper is writing (given back when the next is polled for).
    chunk_held: Option<crate::budget::Held>,
}

impl Stream {
    /// The next chunk of events; `None` ends the stream.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        if !self.opened {
            self.opened = true;
            let start = json!({"topic": self.topic, "positions": self.positions.iter()
                .map(|p| json!({"partition": p.partition, "next_offset": p.next})).collect::<Vec<_>>()});
            return Some(Bytes::from(format!(
                "retry: 1000\nid: {}\nevent: position\ndata: {start}\n\n",
                event_id(&self.positions)
            )));
        }
        loop {
            if let Some(token) = &self.bearer {
                if self.gw.shard.security.check_token(token).is_none() {
                    self.ended = true;
                    let e = ApiError::new(
                        ErrorCode::AuthenticationFailed,
                        "the stream's bearer token was deleted or expired",
                    );
                    return Some(Bytes::from(format!("event: error\ndata: {}\n\n", e.body())));
                }
            }
            match self.poll_once().await {
                Ok(Some(chunk)) => {
                    self.last_sent = Instant::now();
                    return Some(chunk);
                }
                Ok(None) if self.last_sent.elapsed() >= KEEPALIVE => {
                    self.last_sent = Instant::now();
                    return Some(Bytes::from_static(b": keep-alive\n\n"));
                }
                Ok(None) => {
                    if self.gw.shard.stopping.get() {
                        self.ended = true;
                        return None;
                    }
                    // Fetches served from memory, none of whose records render (a filter
                    // that matches nothing, compacted empty batches), do not wait: let the
                    // shard's other work run between them.
                    glommio::yield_if_needed().await;
                }
                Err(e) => {
                    self.ended = true;
                    return Some(Bytes::from(format!("event: error\ndata: {}\n\n", e.body())));
                }
            }
        }
    }

    /// One long-poll fetch over every partition: the events it yielded, if any.
    async fn poll_once(&mut self) -> Result<Option<Bytes>, ApiError> {
        let topic_id = self.gw.shard.metadata().topic(&self.topic).map(|t| t.id);
        if topic_id != Some(self.topic_id) {
            // Deleted (and maybe made again): its positions mean nothing in a new topic.
            let why = format!("topic {:?} was deleted", self.topic);
            return Err(ApiError::new(ErrorCode::UnknownTopic, why));
        }
        if self.every_partition {
            // From their start (a fetch below it moves to the log start): no lookup, which
            // could find a new partition not yet open on its shard.
            let count = partition_count(&self.gw, &self.topic)?;
            for partition in self.positions.len() as u32..count {
                self.positions.push(Position { partition, next: 0 });
            }
        }
        let max_bytes = self.gw.shard.config.http.stream_buffer_bytes_max;
        let n = self.positions.len();
        let order: Vec<usize> = (0..n).map(|i| (i + self.rotate) % n).collect();
        self.rotate = (self.rotate + 1) % n.max(1);
        let req = wire::FetchRequest {
            max_wait_ms: POLL_WAIT_MS,
            min_bytes: 1,
            max_bytes,
            topics: vec![wire::FetchTopic {
                name: self.topic.clone(),
                partitions: order
                    .iter()
                    .map(|&i| wire::FetchPartition {
                        partition: self.positions[i].partition,
                        offset: self.positions[i].next,
                        max_bytes,
                    })
                    .collect(),
            }],
        };
        // The fetched bytes and their rendering count in the shard's memory budget, like a
        // native fetch's response. The rendering stops once it reaches `max_bytes` (at least
        // one event): an event's id names every partition, so tiny records of a topic with
        // many partitions would render into many times the bytes fetched. Records not
        // rendered are not consumed: the next poll fetches them again.
        // The previous chunk is written out (hyper asked for the next): its room goes back
        // first. This fetch's grows for a first batch beyond `max_bytes` (a wait for that
        // gives it back meanwhile), and what the chunk renders stays held until the next poll.
        let rendered_bytes_max = max_bytes as usize;
        self.chunk_held = None;
        let held = self.gw.shard.memory.hold(max_bytes as usize + rendered_bytes_max).await;
        let (resp, held): (wire::FetchResponse, _) =
            native::call_in_room(&self.gw, &req, vec![held]).await?;
        let mut out = String::new();
        for result in resp.topics.into_iter().flat_map(|t| t.partitions) {
            if !out.is_empty() && out.len() >= rendered_bytes_max {
                break;
            }
            // Positions are in partition order (one, or all of the topic's).
            let Ok(i) = self.positions.binary_search_by_key(&result.partition, |p| p.partition)
            else {
                continue;
            };
            if result.error == ErrorCode::UnknownPartition.as_u16() && i >= self.opened_with {
                // Added by a growth its owner has not finished opening: the next poll.
                continue;
            }
            if result.error == ErrorCode::OffsetOutOfRange.as_u16()
                && self.positions[i].next < result.log_start_offset
            {
                // Retention removed records this stream had not read: go on from the start.
                self.positions[i].next = result.log_start_offset;
                continue;
            }
            ApiError::check(result.error, || format!("{}/{}", self.topic, result.partition))?;
            let from = self.positions[i].next;
            let filter = self.filter.as_ref();
            let visited = records::for_each_record(&result.batches, from, |r| {
                if !out.is_empty() && out.len() >= rendered_bytes_max {
                    return false;
                }
                self.positions[i].next = r.offset() + 1;
                if filter.is_some_and(|f| !f.matches(r)) {
                    return true;
                }
                out.push_str("id: ");
                out.push_str(&event_id(&self.positions));
                out.push_str("\nevent: record\ndata: ");
                records::write_json(result.partition, r, &mut out);
                out.push_str("\n\n");
                true
            })?;
            // Past batches whose records compaction removed (no record moved the position).
            if let Some(end) = visited {
                let p = &mut self.positions[i];
                p.next = p.next.max(end);
            }
        }
        self.chunk_held = crate::budget::Held::sized(held, out.len());
        Ok((!out.is_empty()).then(|| Bytes::from(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip_and_bad_ones_are_refused() {
        let ps = vec![Position { partition: 0, next: 0 }, Position { partition: 2, next: 42 }];
        let id = event_id(&ps);
        assert_eq!(id, "0/-1,2/41");
        assert_eq!(parse_event_id(&id, 3).unwrap(), ps);
        // The last one overflowed `last + 1` (a debug build's panic from a request header).
        for bad in ["x", "0/", "5/1", "0/-2", "0:1", "0/9223372036854775807"] {
            assert!(parse_event_id(bad, 3).is_err(), "{bad}");
        }
    }
}
