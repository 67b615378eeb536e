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

/// Batches pushed for a subscription, held in the received frame; records borrow from it.
#[derive(Debug)]
pub struct ConsumerBatch {
    frame: Frame,
    range: std::ops::Range<usize>,
    /// The batches with every compressed one decompressed, when any was.
    decompressed: Option<AlignedVec>,
    skip_below: u64,
}

impl ConsumerBatch {
    /// The batches, readable: exactly as the broker stored them, except that compressed
    /// batches are replaced by their decompressed equivalents.
    pub fn bytes(&self) -> &[u8] {
        match &self.decompressed {
            Some(plain) => plain,
            None => &self.frame.bytes[self.range.clone()],
        }
    }

    /// Bytes received for these batches (compressed ones as sent).
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

/// See the module docs.
#[derive(Debug)]
pub struct Consumer {
    conn: Arc<Connection>,
    subscription_id: u64,
    pushes: mpsc::UnboundedReceiver<Frame>,
    position: u64,
    high_watermark: u64,
    topic: String,
    partition: u32,
    /// The credit window asked for at subscribe.
    credit_window_bytes: u64,
    /// Bytes taken by the application and not yet granted back to the broker.
    ungranted_bytes: u64,
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
            position: r.start_offset,
            high_watermark: r.high_watermark,
            topic: topic.into(),
            partition,
            credit_window_bytes,
            ungranted_bytes: 0,
        })
    }

    /// The next pushed batch (waiting for one); `None` when the subscription ended.
    pub async fn next_batch(&mut self) -> Result<Option<ConsumerBatch>, ClientError> {
        let Some(frame) = self.pushes.recv().await else { return Ok(None) };
        let (error, hw, range, next, decompressed) = {
            let data = wire::access_body::<wire::SubscriptionData>(frame.body())
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            let body_start = frame.body().as_ptr() as usize - frame.bytes.as_ptr() as usize;
            let batches = data.batches.as_slice();
            let start = body_start + (batches.as_ptr() as usize - frame.body().as_ptr() as usize);
            let invalid = |e| ClientError::Protocol(format!("pushed batch invalid: {e}"));
            let decompressed = wire::batch::decompressed(batches).map_err(invalid)?;
            // Past the records a filter skipped too (0 from a broker that does not say).
            let mut next = self.position.max(data.next_offset.to_native());
            for b in Batches::new(decompressed.as_deref().unwrap_or(batches)) {
                next = next.max(b.map_err(invalid)?.header().next_offset());
            }
            (
                data.error.to_native(),
                data.high_watermark.to_native(),
                start..start + batches.len(),
                next,
                decompressed,
            )
        };
        if error != 0 {
            return Err(ClientError::Partition {
                topic: self.topic.clone(),
                partition: self.partition,
                code: ErrorCode::from_u16(error).unwrap_or(ErrorCode::UnknownServerError),
            });
        }
        self.high_watermark = hw;
        let batch = ConsumerBatch { frame, range, decompressed, skip_below: self.position };
        self.position = next;
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

    /// The offset of the next record this consumer will see.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Records written but not yet received.
    pub fn lag(&self) -> u64 {
        self.high_watermark.saturating_sub(self.position)
    }

    /// Ends the subscription.
    pub async fn close(self) -> Result<(), ClientError> {
        self.conn.unregister_pushes(self.subscription_id);
        let _: UnsubscribeResponse = self
            .conn
            .request(&UnsubscribeRequest { subscription_id: self.subscription_id })
            .await?;
        Ok(())
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

/// Batches obtained from `Client::fetch`, readable: copied into aligned memory, with every
/// compressed batch decompressed.
pub fn readable(bytes: &[u8]) -> Result<AlignedVec, ClientError> {
    let aligned = wire::to_aligned(bytes);
    wire::batch::decompressed(&aligned)
        .map(|plain| plain.unwrap_or(aligned))
        .map_err(|e| ClientError::Protocol(format!("fetched batch invalid: {e}")))
}
