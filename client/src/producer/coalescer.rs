//! One produce request per shard connection for many partitions' batches.
//!
//! Contract: every partition sender of a producer hands its batches for a connection to that
//! connection's coalescer (`submit`), in its own batch order. The coalescer keeps at most
//! `requests_in_flight_max` produce requests on the connection; while they are all out,
//! batches wait in its queue and the next request carries them (one `ProducePartition`
//! entry per batch, in queue order, grouped by topic), up to seven eighths of the broker's
//! `frame_body_bytes_max` of batches (at least one): a bigger frame closes the connection,
//! which every task of the client shares; the rest go in the next request. So under light
//! load a batch goes out at once, alone, and under load the batching adapts to the round
//! trip: a producer writing to 100 partitions sends one request per round trip per shard
//! instead of one per batch (the broker then reads, routes and answers once for all of
//! them). A queue is taken and sent under its lock, so requests leave in queue order and a
//! partition's batches reach the broker in the order they were submitted. Each batch gets
//! its own partition result; a request-level failure (an error frame, a closed connection,
//! a timeout) is every batch's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;
use wire::{
    AckLevel, ErrorCode, ProducePartition, ProducePartitionResult, ProduceRequest, ProduceResponse,
    ProduceTopic,
};

use crate::connection::{Callback, Connection, Frame};
use crate::error::ClientError;

use super::stages::{ProducerStage, ProducerStages};

/// What a submitted batch resolves to.
pub(super) type PartitionAnswer = Result<ProducePartitionResult, ClientError>;

/// A submitted batch's answer and when it was decoded (`stages.rs`'s `completion` starts
/// there).
pub(super) type Answered = (PartitionAnswer, Instant);

struct Item {
    topic: Arc<str>,
    partition: u32,
    batch: Vec<u8>,
    /// When the producer shipped it (`send_queue` starts there).
    shipped: Instant,
    tx: oneshot::Sender<Answered>,
}

#[derive(Default)]
struct Queue {
    items: Vec<Item>,
    in_flight: usize,
}

/// The coalescer of one connection (see the module docs).
pub(super) struct Coalescer {
    conn: Arc<Connection>,
    ack: AckLevel,
    timeout_ms: u32,
    requests_in_flight_max: usize,
    /// Batch bytes one request carries at most (at least one batch): within the broker's
    /// `frame_body_bytes_max`, or it closes the connection every client task shares.
    request_bytes_max: usize,
    queue: Mutex<Queue>,
    stages: Arc<ProducerStages>,
}

/// What a request's entries take besides their batches (topic, partition, lengths): a bound.
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// Batch bytes one request carries at most, for a broker that reads request bodies of up to
/// `frame_body_bytes_max`: an eighth is kept for the request's own fields.
pub(super) fn request_bytes_max(frame_body_bytes_max: u32) -> usize {
    frame_body_bytes_max as usize / 8 * 7
}

/// The largest batch a producer builds for such a broker: one that fits a request alone with
/// its entry (a topic name of up to 249 bytes). A bigger one would go in a frame over the
/// broker's limit, which closes the connection every client task shares.
pub(super) fn batch_bytes_cap(frame_body_bytes_max: u32) -> usize {
    request_bytes_max(frame_body_bytes_max).saturating_sub(ENTRY_OVERHEAD_BYTES + 256).max(1)
}

impl Coalescer {
    fn new(
        conn: Arc<Connection>,
        ack: AckLevel,
        timeout_ms: u32,
        requests_in_flight_max: usize,
        frame_body_bytes_max: u32,
        stages: Arc<ProducerStages>,
    ) -> Arc<Coalescer> {
        let request_bytes_max = request_bytes_max(frame_body_bytes_max);
        Arc::new(Coalescer {
            conn,
            ack,
            timeout_ms,
            requests_in_flight_max: requests_in_flight_max.max(1),
            request_bytes_max,
            queue: Mutex::new(Queue::default()),
            stages,
        })
    }

    /// Queues `batch` for `topic`/`partition` and sends it now if a request may go out.
    pub(super) fn submit(
        self: &Arc<Self>,
        topic: Arc<str>,
        partition: u32,
        batch: &[u8],
        shipped: Instant,
    ) -> oneshot::Receiver<Answered> {
        let (tx, rx) = oneshot::channel();
        let mut q = self.queue.lock().expect("coalescer lock");
        q.items.push(Item { topic, partition, batch: batch.to_vec(), shipped, tx });
        self.send_queued(&mut q);
        rx
    }

    /// Sends what is queued, as requests of at most `request_bytes_max` of batches, while
    /// fewer than `requests_in_flight_max` are in flight (under the queue's lock: requests
    /// leave in queue order).
    fn send_queued(self: &Arc<Self>, q: &mut Queue) {
        while !q.items.is_empty() && q.in_flight < self.requests_in_flight_max {
            let mut bytes = 0usize;
            let n = q
                .items
                .iter()
                .take_while(|i| {
                    bytes += i.batch.len() + i.topic.len() + ENTRY_OVERHEAD_BYTES;
                    bytes <= self.request_bytes_max
                })
                .count()
                .max(1);
            let items: Vec<Item> = q.items.drain(..n).collect();
            self.send_request(q, items);
        }
    }

    /// Sends `items` as one request and has the connection hand out its answers
    /// (`answered`).
    fn send_request(self: &Arc<Self>, q: &mut Queue, mut items: Vec<Item>) {
        let mut topics: Vec<ProduceTopic> = Vec::new();
        // Where each item's result is: (topic index, partition index).
        let mut places = Vec::with_capacity(items.len());
        let mut by_topic: HashMap<Arc<str>, usize> = HashMap::new();
        for item in &mut items {
            let t = *by_topic.entry(item.topic.clone()).or_insert_with(|| {
                topics.push(ProduceTopic { name: item.topic.to_string(), partitions: Vec::new() });
                topics.len() - 1
            });
            places.push((t, topics[t].partitions.len()));
            // The batch moves into the request: copied once, at `submit`.
            topics[t].partitions.push(ProducePartition {
                partition: item.partition,
                batches: std::mem::take(&mut item.batch),
                expect: Default::default(),
            });
        }
        let request = ProduceRequest { ack: self.ack, timeout_ms: self.timeout_ms, topics };
        let sent = Instant::now();
        self.stages.record_each(ProducerStage::SendQueue, items.iter().map(|i| (i.shipped, sent)));
        // Counted before it goes: `answered` gives it back, however the request ends.
        q.in_flight += 1;
        let me = self.clone();
        let addr = self.conn.addr();
        // The answer is handed out on the connection's reader task, as it arrives (no task
        // of its own to wake).
        let answered: Callback = Box::new(move |frame: Result<Frame, ClientError>| {
            let answer = frame.and_then(|frame| decode(&frame, addr));
            me.answered(items, places, sent, answer);
        });
        if let Err((e, answered)) = self.conn.send_then(&request, answered) {
            // Not sent: answered with the error outside this queue's lock, which it takes.
            tokio::spawn(async move { answered(Err(e)) });
        }
    }

    /// Hands out a request's answer to its batches, then sends what queued meanwhile.
    fn answered(
        self: &Arc<Self>,
        items: Vec<Item>,
        places: Vec<(usize, usize)>,
        sent: Instant,
        answer: Result<ProduceResponse, ClientError>,
    ) {
        let answered = Instant::now();
        self.stages.record_each(ProducerStage::InFlight, items.iter().map(|_| (sent, answered)));
        for (item, (t, p)) in items.into_iter().zip(places) {
            let result = match &answer {
                Ok(resp) => resp
                    .topics
                    .get(t)
                    .and_then(|topic| topic.partitions.get(p))
                    .cloned()
                    .ok_or_else(|| ClientError::Protocol("produce response is short".into())),
                Err(e) => Err(e.clone()),
            };
            let result = result.and_then(|r| match ErrorCode::from_u16(r.error) {
                Some(ErrorCode::None) => Ok(r),
                code => Err(ClientError::Partition {
                    topic: item.topic.to_string(),
                    partition: item.partition,
                    code: code.unwrap_or(ErrorCode::UnknownServerError),
                }),
            });
            let _ = item.tx.send((result, answered));
        }
        let mut q = self.queue.lock().expect("coalescer lock");
        q.in_flight -= 1;
        self.send_queued(&mut q);
    }
}

fn decode(frame: &Frame, addr: std::net::SocketAddr) -> Result<ProduceResponse, ClientError> {
    if frame.header.has_flag(wire::constants::FLAG_ERROR) {
        let e: wire::ErrorBody =
            wire::decode_body(frame.body()).map_err(|e| ClientError::Protocol(e.to_string()))?;
        return Err(ClientError::Broker {
            code: ErrorCode::from_u16(e.code).unwrap_or(ErrorCode::UnknownServerError),
            message: e.message,
            addr,
        });
    }
    wire::decode_body(frame.body()).map_err(|e| ClientError::Protocol(e.to_string()))
}

/// A producer's coalescers, one per connection.
///
/// Keyed by the connection itself, not its address: a partition sender keeps its batches
/// in order by sending them all along one connection (and waiting for its requests in flight
/// before it switches), which only holds if every batch it sends on a connection goes
/// through that connection's one coalescer. Coalescers of closed connections are dropped
/// (their requests in flight still answer: each request's callback holds its coalescer).
#[derive(Default)]
pub(super) struct Coalescers {
    by_conn: Mutex<HashMap<ConnKey, Arc<Coalescer>>>,
}

/// A connection's identity: its address in memory, unique while its coalescer (which holds
/// the connection) is in the map.
type ConnKey = usize;

impl std::fmt::Debug for Coalescers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescers").finish_non_exhaustive()
    }
}

impl Coalescers {
    /// The coalescer of `conn`.
    pub(super) fn get(
        &self,
        conn: &Arc<Connection>,
        ack: AckLevel,
        timeout_ms: u32,
        requests_in_flight_max: usize,
        frame_body_bytes_max: u32,
        stages: &Arc<ProducerStages>,
    ) -> Arc<Coalescer> {
        let mut map = self.by_conn.lock().expect("coalescers lock");
        let key = Arc::as_ptr(conn) as ConnKey;
        if let Some(c) = map.get(&key) {
            return c.clone();
        }
        map.retain(|_, c| c.conn.is_open());
        let c = Coalescer::new(
            conn.clone(),
            ack,
            timeout_ms,
            requests_in_flight_max,
            frame_body_bytes_max,
            stages.clone(),
        );
        map.insert(key, c.clone());
        c
    }
}
