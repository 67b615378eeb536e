//! The sender: one task per partition that puts its shipped batches on the wire.
//!
//! The accumulator spawns [`partition_sender`] when a partition ships its first batch and
//! feeds it [`Shipment`]s in batch order. The task keeps up to `in_flight_per_partition_max`
//! requests on the wire, all along one connection (a switch waits for the requests in
//! flight), completes the answers in send order through [`Pipeline::finished`] and tells the
//! accumulator through [`Inner::answered`]. Batches go out through the connection's
//! coalescer (`coalescer.rs`), which puts the batches of many partitions in one request. A batch that could not be sent, or whose request
//! failed with a retriable error, is resent through the client's retrying
//! `Client::produce_batches`. The task ends when its queue closes and nothing is in flight.

use std::sync::{Arc, Weak};
use std::time::Instant;

use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::sync::{mpsc, oneshot};
use wire::Compression;

use super::accumulator::{Inner, Pipeline, Shipment};
use super::coalescer::Answered;
use super::completion::BatchResult;
use super::ProducerConfig;
use crate::client::Client;
use crate::connection::Connection;
use crate::error::ClientError;

/// Sends one partition's batches in order, keeping up to `in_flight_per_partition_max` on
/// the wire.
///
/// A batch is sent the moment it arrives while there is room, not after the oldest answer:
/// the loop waits on the next shipment and the oldest response at once. Answers complete in
/// send order (`FuturesOrdered`), so a partition's records resolve in offset order.
pub(super) async fn partition_sender(
    client: Client,
    config: ProducerConfig,
    pipeline: Arc<Pipeline>,
    inner: Weak<Inner>,
    topic: Arc<str>,
    partition: u32,
    mut rx: mpsc::UnboundedReceiver<Shipment>,
) {
    // With idempotence the broker remembers a producer's last 5 batches per partition, so
    // every retry must be among them.
    let in_flight_max = match config.idempotence || config.transactional_id.is_some() {
        true => config.in_flight_per_partition_max.clamp(1, 5),
        false => config.in_flight_per_partition_max.max(1),
    };
    let mut in_flight = FuturesOrdered::new();
    // The connection the requests in flight went out on: a partition's requests are appended
    // in order only along one connection (one to the public port is forwarded and can land
    // after a later one sent straight to the owner's shard port).
    let mut on: Option<Arc<Connection>> = None;
    let mut open = true;
    // Shipments completed (in order): a retry waits until every batch shipped before its own
    // completed, so retries land in batch order (batches in flight together, all lost with
    // a connection, retried at once could land out of order: a broker that does not know
    // the producer takes any first sequence, then refuses the earlier batch).
    let (done_tx, done_rx) = tokio::sync::watch::channel(0u64);
    let mut shipped = 0u64;
    let complete = |shipment: Shipment, (result, answered): (BatchResult, Option<Instant>)| {
        // A batch that failed for good after taking its sequence (not stored as a duplicate,
        // not fenced: a fenced producer stays fenced, and must not take its epoch back).
        let lost = match &result {
            Err(ClientError::Partition {
                code: wire::ErrorCode::DuplicateSequence | wire::ErrorCode::ProducerFenced,
                ..
            }) => None,
            Err(_) => identity_of(&shipment),
            Ok(_) => None,
        };
        let unknown = matches!(
            &result,
            Err(ClientError::UnknownTopic(_))
                | Err(ClientError::Partition {
                    code: wire::ErrorCode::UnknownTopic | wire::ErrorCode::UnknownPartition,
                    ..
                })
        );
        // The reset first: a send woken by this failure must not append under the old
        // identity.
        let inner = inner.upgrade();
        if let (Some(inner), Some(lost)) = (&inner, lost) {
            inner.sequence_lost(lost);
        }
        pipeline.finished(&shipment, result, answered);
        if let Some(inner) = inner {
            inner.answered(&topic, partition);
            if unknown {
                inner.forget_topic(&topic);
            }
        }
        done_tx.send_modify(|done| *done += 1);
    };
    loop {
        let room = open && in_flight.len() < in_flight_max;
        tokio::select! {
            // Answers first: they free budget and may ship the next batch.
            biased;
            Some((shipment, result)) = in_flight.next(), if !in_flight.is_empty() => {
                complete(shipment, result);
            }
            next = rx.recv(), if room => match next {
                Some(mut shipment) => {
                    compress(&mut shipment, config.compression);
                    let conn = client.owner_conn(&topic, partition).await.ok();
                    let same = match (&conn, &on) {
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                        _ => false,
                    };
                    if !same {
                        // Switching connections: let what is in flight land first.
                        while let Some((s, r)) = in_flight.next().await {
                            complete(s, r);
                        }
                    }
                    on = conn.clone();
                    let pending = conn.map(|c| {
                        let timeout_ms = client.config().request_timeout.as_millis() as u32;
                        pipeline
                            .coalescers
                            .get(
                                &c,
                                config.ack,
                                timeout_ms,
                                config.requests_in_flight_per_connection_max,
                                client.frame_body_bytes_max(),
                                &pipeline.stages,
                            )
                            .submit(topic.clone(), partition, &shipment.batch, shipment.shipped)
                    });
                    let (client, config, topic) = (client.clone(), config.clone(), topic.clone());
                    let turn =
                        Turn { done: done_rx.clone(), before: shipped, inner: inner.clone() };
                    shipped += 1;
                    in_flight.push_back(async move {
                        let result =
                            finish_one(&client, &config, &topic, partition, &shipment, pending, turn)
                                .await;
                        (shipment, result)
                    });
                }
                None => open = false,
            },
            else => return,
        }
    }
}

/// Waits for a request's answer; a batch that was not sent (`pending` is `None`: no
/// connection to the owner, or the request could not go out on it) or that failed retriably
/// is sent again through the client, which refreshes metadata and retries. Returns the
/// outcome and, for an answer from the coalescer, when it was decoded.
async fn finish_one(
    client: &Client,
    config: &ProducerConfig,
    topic: &str,
    partition: u32,
    shipment: &Shipment,
    pending: Option<oneshot::Receiver<Answered>>,
    mut turn: Turn,
) -> (BatchResult, Option<Instant>) {
    let answer = match pending {
        // A dropped sender means the coalescer's task ended without answering: resend.
        Some(rx) => rx.await.ok(),
        None => None,
    };
    let (base, answered) = match answer {
        Some((Ok(r), at)) => (r.base_offset, Some(at)),
        Some((Err(e), at)) if !e.is_retriable() => return (Err(e), Some(at)),
        Some((Err(_), _)) | None => {
            // Batches shipped before this one first (see `partition_sender`).
            let before = turn.before;
            let _ = turn.done.wait_for(|&done| done >= before).await;
            // An earlier batch's failure replaced the identity this one carries: behind the
            // lost sequence, it could only be refused out of order, retry after retry.
            if stale(shipment, &turn) {
                let code = wire::ErrorCode::OutOfOrderSequence;
                return (
                    Err(ClientError::Partition { topic: topic.into(), partition, code }),
                    None,
                );
            }
            match client.produce_batches(topic, partition, &shipment.batch, config.ack).await {
                Ok(r) => (r.base_offset, None),
                Err(e) => return (Err(e), None),
            }
        }
    };
    (Ok((partition, u64::try_from(base).unwrap_or(u64::MAX))), answered)
}

/// Where a shipment stands among its partition's: `before` shipments went out before it, and
/// `done` counts those completed.
struct Turn {
    done: tokio::sync::watch::Receiver<u64>,
    before: u64,
    /// The producer, for its identity now.
    inner: Weak<Inner>,
}

/// The producer id and epoch a shipped batch carries, if any.
fn identity_of(shipment: &Shipment) -> Option<(i64, i16)> {
    let envelope = wire::BatchEnvelope::validate(&shipment.batch).ok()?;
    let h = envelope.header();
    (h.producer_id() >= 0).then(|| (h.producer_id(), h.producer_epoch()))
}

/// Whether a shipment carries an identity the producer no longer holds (reset after an
/// earlier batch failed for good).
fn stale(shipment: &Shipment, turn: &Turn) -> bool {
    let Some(carried) = identity_of(shipment) else { return false };
    turn.inner.upgrade().is_some_and(|inner| inner.identity() != Some(carried))
}

/// Compresses a shipment's batch (once: a retry sends the same bytes, as an idempotent
/// producer's must). Runs in the partition's sender task, off the accumulator's lock.
fn compress(shipment: &mut Shipment, compression: Compression) {
    if compression == Compression::None {
        return;
    }
    let Ok(envelope) = wire::BatchEnvelope::validate(&shipment.batch) else { return };
    let mut out = wire::AlignedVec::with_capacity(shipment.batch.len());
    if envelope.compress_into(compression, &mut out).is_some() {
        shipment.batch = out;
    }
}
