//! The consumer: a push subscription on one partition, with credit granted back
//! automatically (half a window at a time) as the application takes batches, and records
//! read in place from the received bytes.

use std::sync::Arc;

use tokio::sync::mpsc;
use wire::{
    AlignedVec, BatchView, Batches, ErrorCode, GrantCreditRequest, RecordView, StartPosition,
    SubscribeRequest, SubscribeResponse, UnsubscribeRequest, UnsubscribeResponse,
};

use crate::client::Client;
use crate::connection::{Connection, Frame};
use crate::error::ClientError;

/// Bytes the broker may push ahead of the application by default.
pub const CREDIT_WINDOW_BYTES_DEFAULT: u64 = 4 << 20;

/// One batch pushed for a subscription (a push carries several: the consumer hands them
/// out one at a time), held in the received frame; records borrow from it. A compressed
/// batch is opened when it is handed out, alone: a push of many small batches that
/// decompress to 16 MiB each never holds more than one of them open (per `ConsumerBatch`
/// the application keeps).
#[derive(Debug)]
pub struct ConsumerBatch {
    frame: Arc<Frame>,
    range: std::ops::Range<usize>,
    /// The batch decompressed, when it was compressed.
    opened: Option<AlignedVec>,
    skip_below: u64,
}

impl ConsumerBatch {
    /// The batch, readable: exactly as the broker stored it, or its decompressed
    /// equivalent when it was compressed. Empty for a push that only moved the position
    /// (a filter skipped records).
    pub fn bytes(&self) -> &[u8] {
        match &self.opened {
            Some(plain) => plain,
            None => &self.frame.bytes[self.range.clone()],
        }
    }

    /// Bytes received for this batch (compressed as sent).
    pub fn received_bytes(&self) -> usize {
        self.range.len()
    }

    /// The records at or after the subscription's position, in offset order. Keys, values and
    /// headers borrow from the received bytes (no copy per record).
    pub fn records(&self) -> impl Iterator<Item = RecordView<'_>> {
        let skip = self.skip_below;
        Batches::new(self.bytes())
            .filter_map(Result::ok)
            .flat_map(|b: BatchView<'_>| b.records())
            .filter(move |r| r.offset() >= skip)
    }
}

/// The rest of a push not yet handed out.
#[derive(Debug)]
struct Push {
    frame: Arc<Frame>,
    /// The next batch's place in the frame, and the batches' end.
    at: usize,
    end: usize,
    /// Where the push says the subscription goes on (past records a filter skipped).
    next_offset: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct Consumer {
    conn: Arc<Connection>,
    subscription_id: u64,
    pushes: mpsc::UnboundedReceiver<Frame>,
    /// The push whose batches are being handed out.
    push: Option<Push>,
    position: u64,
    high_watermark: u64,
    topic: String,
    partition: u32,
    /// The credit window asked for at subscribe.
    credit_window_bytes: u64,
    /// Bytes taken by the application and not yet granted back to the broker.
    ungranted_bytes: u64,
    /// Unsubscribed by [`Consumer::close`] (else dropping it unsubscribes).
    closed: bool,
}

impl Consumer {
    /// Subscribes to `topic`/`partition` from `start`, letting the broker push up to
    /// `credit_window_bytes` ahead of what the application has taken.
    pub async fn subscribe(
        client: &Client,
        topic: &str,
        partition: u32,
        start: StartPosition,
        credit_window_bytes: u64,
    ) -> Result<Consumer, ClientError> {
        Self::subscribe_filtered(client, topic, partition, start, credit_window_bytes, "").await
    }

    /// [`Consumer::subscribe`] receiving only the records that match `filter` (a
    /// [`wire::filter`] expression, evaluated by the broker; empty: every record). The
    /// consumer's position still moves past the records the filter skipped. A filter that
    /// does not parse is refused here, before anything is sent.
    pub async fn subscribe_filtered(
        client: &Client,
        topic: &str,
        partition: u32,
        start: StartPosition,
        credit_window_bytes: u64,
        filter: &str,
    ) -> Result<Consumer, ClientError> {
        wire::filter::parse(filter).map_err(|e| ClientError::InvalidFilter(e.to_string()))?;
        client.partition_count(topic).await?;
        let conn = client.owner_conn(topic, partition).await?;
        let subscription_id = rand_id();
        let pushes = conn.register_pushes(subscription_id);
        let r: SubscribeResponse = conn
            .request(&SubscribeRequest {
                subscription_id,
                topic: topic.into(),
                partition,
                start,
                credit_bytes: credit_window_bytes,
                filter: filter.to_owned(),
            })
            .await?;
        if r.error != 0 {
            conn.unregister_pushes(subscription_id);
            return Err(ClientError::Partition {
                topic: topic.into(),
                partition,
                code: ErrorCode::from_u16(r.error).unwrap_or(ErrorCode::UnknownServerError),
            });
        }
        Ok(Consumer {
            conn,
            subscription_id,
            pushes,
            push: None,
            position: r.start_offset,
            high_watermark: r.high_watermark,
            topic: topic.into(),
            partition,
            credit_window_bytes,
            ungranted_bytes: 0,
            closed: false,
        })
    }

    /// The next pushed batch (waiting for a push when the last one's are all handed out);
    /// `None` when the subscription ended.
    pub async fn next_batch(&mut self) -> Result<Option<ConsumerBatch>, ClientError> {
        let push = match self.push.take() {
            Some(push) => push,
            None => {
                let Some(frame) = self.pushes.recv().await else { return Ok(None) };
                self.received(frame)?
            }
        };
        let invalid = |e| ClientError::Protocol(format!("pushed batch invalid: {e}"));
        let frame = push.frame.clone();
        let rest = &frame.bytes[push.at..push.end];
        let (len, opened, next) = match wire::Envelopes::new(rest).next() {
            // A progress-only push (a filter skipped records): no batch, the position moves.
            None => (0, None, push.next_offset),
            Some(envelope) => {
                let envelope = envelope.map_err(invalid)?;
                // Its records checked now (a plain batch in place: `scratch` stays empty), so
                // a batch whose records do not validate is an error, not skipped.
                let mut scratch = AlignedVec::new();
                envelope.open(&mut scratch).map_err(invalid)?;
                let opened = envelope.is_compressed().then_some(scratch);
                (envelope.bytes().len(), opened, envelope.header().next_offset())
            }
        };
        let range = push.at..push.at + len;
        let batch = ConsumerBatch { frame, range, opened, skip_below: self.position };
        self.position = self.position.max(next);
        if push.at + len < push.end {
            self.push = Some(Push { at: push.at + len, ..push });
        } else {
            self.position = self.position.max(push.next_offset);
        }
        // The application has this batch now: let the broker send as much again, once half
        // the window was taken (a grant per batch was a request and an answer per push: at
        // many small batches most of the consumer's and the broker's frames; the broker
        // still holds at least half a window of credit). The grant is not waited for (a
        // round trip per grant would cap the consumer at one window per RTT); a
        // subscription the broker dropped shows up as the push stream ending. A
        // progress-only push (a filter skipped records) carries no bytes to grant.
        self.ungranted_bytes += batch.range.len() as u64;
        if self.ungranted_bytes > 0 && self.ungranted_bytes >= self.credit_window_bytes / 2 {
            drop(self.conn.send(&GrantCreditRequest {
                subscription_id: self.subscription_id,
                credit_bytes: self.ungranted_bytes,
            })?);
            self.ungranted_bytes = 0;
        }
        Ok(Some(batch))
    }

    /// A push received: its error, or its batches to hand out.
    fn received(&mut self, frame: Frame) -> Result<Push, ClientError> {
        let data = wire::access_body::<wire::SubscriptionData>(frame.body())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let error = data.error.to_native();
        if error != 0 {
            return Err(ClientError::Partition {
                topic: self.topic.clone(),
                partition: self.partition,
                code: ErrorCode::from_u16(error).unwrap_or(ErrorCode::UnknownServerError),
            });
        }
        self.high_watermark = data.high_watermark.to_native();
        let batches = data.batches.as_slice();
        let at = batches.as_ptr() as usize - frame.bytes.as_ptr() as usize;
        let (end, next_offset) = (at + batches.len(), data.next_offset.to_native());
        Ok(Push { frame: Arc::new(frame), at, end, next_offset })
    }

    /// The offset of the next record this consumer will see.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Records written but not yet received.
    pub fn lag(&self) -> u64 {
        self.high_watermark.saturating_sub(self.position)
    }

    /// Ends the subscription.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.closed = true;
        self.conn.unregister_pushes(self.subscription_id);
        let _: UnsubscribeResponse = self
            .conn
            .request(&UnsubscribeRequest { subscription_id: self.subscription_id })
            .await?;
        Ok(())
    }
}

/// A consumer dropped without [`Consumer::close`] (a task aborted, an error path that
/// subscribes again) unsubscribes without waiting for the answer: before, the broker kept
/// the subscription (and the connection its push route) until the connection closed, and a
/// group consumer that resubscribed after a bad push left one behind each time.
impl Drop for Consumer {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        self.conn.unregister_pushes(self.subscription_id);
        let req = UnsubscribeRequest { subscription_id: self.subscription_id };
        // Not awaited: the answer is dropped when it comes (a closed connection has no
        // subscription to end).
        drop(self.conn.send(&req));
    }
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (t << 16) ^ NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Calls `each` with every batch of `bytes` (as `Client::fetch` returns them), readable,
/// until it returns `false`: a compressed batch is opened alone into one scratch buffer
/// reused for the next, so a fetch of many small batches that open to 16 MiB each holds one
/// of them, not all (as [`readable`] does).
pub fn for_each_batch(
    bytes: &[u8],
    mut each: impl FnMut(&BatchView<'_>) -> bool,
) -> Result<(), ClientError> {
    let invalid =
        |e: wire::BatchError| ClientError::Protocol(format!("fetched batch invalid: {e}"));
    let aligned = wire::to_aligned(bytes);
    let mut scratch = AlignedVec::new();
    for envelope in wire::Envelopes::new(&aligned) {
        let batch = envelope.map_err(invalid)?.open(&mut scratch).map_err(invalid)?;
        if !each(&batch) {
            break;
        }
    }
    Ok(())
}

/// Batches obtained from `Client::fetch`, readable: copied into aligned memory, with every
/// compressed batch decompressed (all at once: [`for_each_batch`] opens one at a time).
pub fn readable(bytes: &[u8]) -> Result<AlignedVec, ClientError> {
    let aligned = wire::to_aligned(bytes);
    wire::batch::decompressed(&aligned)
        .map(|plain| plain.unwrap_or(aligned))
        .map_err(|e| ClientError::Protocol(format!("fetched batch invalid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches of `values` (one record each), the odd ones zstd-compressed, back to back.
    fn fetched(values: &[&[u8]]) -> Vec<u8> {
        let mut out = AlignedVec::new();
        for (i, v) in values.iter().enumerate() {
            let mut b = wire::BatchBuilder::new(1 << 20);
            b.append(0, None, Some(v), &[]).unwrap();
            let mut plain = b.finish().unwrap();
            wire::batch::header::assign(&mut plain, i as u64, wire::constants::NO_TIMESTAMP);
            let envelope = wire::BatchEnvelope::validate(&plain).unwrap();
            let zstd = wire::Compression::Zstd { level: 1 };
            if i % 2 == 0 || envelope.compress_into(zstd, &mut out).is_none() {
                out.extend_from_slice(&plain);
            }
        }
        out.to_vec()
    }

    #[test]
    fn fetched_batches_open_one_at_a_time_and_stop_when_asked() {
        let big = vec![0u8; 64 << 10];
        let bytes = fetched(&[b"a", &big, b"c", &big]);
        let mut seen = Vec::new();
        for_each_batch(&bytes, |b| {
            seen.extend(b.records().map(|r| (r.offset(), r.value().map_or(0, <[u8]>::len))));
            true
        })
        .unwrap();
        assert_eq!(seen, [(0, 1), (1, 64 << 10), (2, 1), (3, 64 << 10)]);
        let mut visited = 0;
        for_each_batch(&bytes, |_| {
            visited += 1;
            visited < 2
        })
        .unwrap();
        assert_eq!(visited, 2, "stops when asked");
        let mut broken = bytes.clone();
        broken.truncate(bytes.len() - 7);
        assert!(for_each_batch(&broken, |_| true).is_err(), "a cut batch is an error");
    }
}
