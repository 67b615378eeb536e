//! Push subscriptions: the broker sends batches as they are appended, within granted credit.

use crate::with::{AlignedBytes, AlignedPieces};

wire_type! {
    /// Where a subscription starts.
    pub enum StartPosition {
        /// The first offset still stored.
        Earliest,
        /// The next offset to be appended.
        #[default]
        Latest,
        /// This offset.
        Offset(u64),
        /// The first record with a timestamp at or after this (ms).
        Timestamp(i64),
    }
}

wire_type! {
    /// Subscribe to one partition. Pushes carry the client-chosen `subscription_id`.
    pub struct SubscribeRequest {
        /// Chosen by the client, unique per connection.
        pub subscription_id: u64,
        /// Topic name.
        pub topic: String,
        /// Partition number.
        pub partition: u32,
        /// Where to start.
        pub start: StartPosition,
        /// Initial byte credit: the broker pushes at most this many bytes before more is granted.
        pub credit_bytes: u64,
        /// Only records matching this expression are pushed ([`crate::filter`]); empty: all.
        /// Checked at subscribe (`INVALID_REQUEST` with the reason).
        pub filter: String,
    }
}
message!(SubscribeRequest, Subscribe);

wire_type! {
    /// Subscription accepted (or not).
    pub struct SubscribeResponse {
        /// The id from the request.
        pub subscription_id: u64,
        /// Error code (0 = subscribed).
        pub error: u16,
        /// Detail when `error != 0`.
        pub message: String,
        /// The offset the first push starts from.
        pub start_offset: u64,
        /// Offset the next append will get.
        pub high_watermark: u64,
    }
}
message!(SubscribeResponse, Subscribe);

wire_type! {
    /// Grant more byte credit.
    pub struct GrantCreditRequest {
        /// Which subscription.
        pub subscription_id: u64,
        /// Bytes added to the credit.
        pub credit_bytes: u64,
    }
}
message!(GrantCreditRequest, GrantCredit);

wire_type! {
    /// Credit granted.
    pub struct GrantCreditResponse {
        /// Which subscription.
        pub subscription_id: u64,
        /// Error code (`UNKNOWN_SUBSCRIPTION` if it ended).
        pub error: u16,
    }
}
message!(GrantCreditResponse, GrantCredit);

wire_type! {
    /// End a subscription.
    pub struct UnsubscribeRequest {
        /// Which subscription.
        pub subscription_id: u64,
    }
}
message!(UnsubscribeRequest, Unsubscribe);

wire_type! {
    /// Subscription ended; no pushes follow this response.
    pub struct UnsubscribeResponse {
        /// Which subscription.
        pub subscription_id: u64,
        /// Error code.
        pub error: u16,
    }
}
message!(UnsubscribeResponse, Unsubscribe);

wire_type! {
    /// Pushed by the broker (`FLAG_PUSH`): new batches for a subscription, or its end.
    pub struct SubscriptionData {
        /// Which subscription.
        pub subscription_id: u64,
        /// Error code; non-zero ends the subscription (topic deleted, corrupt data).
        pub error: u16,
        /// Offset the next append will get, for lag.
        pub high_watermark: u64,
        /// Record batches exactly as stored, back to back. With a filter: the matching records
        /// re-encoded as batches at their own offsets (one batch per run of consecutive ones).
        #[rkyv(with = AlignedBytes)]
        pub batches: Vec<u8>,
        /// The offset after the last record this push covers, delivered or skipped by the
        /// filter: the consumer's next position (a push may carry no batches, only this).
        pub next_offset: u64,
    }
}
message!(SubscriptionData, SubscriptionData, |m| m.batches.len());

/// A [`SubscriptionData`] whose batches are still in the pieces the log holds them in: it
/// encodes ([`SubscriptionDataPieces::encode_push`]) into exactly the bytes the joined
/// message does, with the batch bytes copied once, into the frame, instead of twice.
#[derive(rkyv::Archive, rkyv::Serialize, Debug)]
pub struct SubscriptionDataPieces<'a> {
    /// Which subscription.
    pub subscription_id: u64,
    /// Error code; non-zero ends the subscription.
    pub error: u16,
    /// Offset the next append will get, for lag.
    pub high_watermark: u64,
    /// Record batches exactly as stored, back to back across the pieces.
    #[rkyv(with = AlignedPieces)]
    pub batches: &'a [&'a [u8]],
    /// The consumer's next position.
    pub next_offset: u64,
}

impl SubscriptionDataPieces<'_> {
    /// The push frame (`FLAG_PUSH`), byte for byte the one `encode_push` makes of the
    /// [`SubscriptionData`] with the pieces joined.
    pub fn encode_push(&self) -> Result<rkyv::util::AlignedVec, crate::BodyError> {
        let batch_bytes: usize = self.batches.iter().map(|p| p.len()).sum();
        crate::encode_frame_sized(
            crate::ApiKey::SubscriptionData.as_u16(),
            crate::constants::FLAG_PUSH,
            0,
            self,
            256 + batch_bytes,
        )
    }

    /// The same push frame, with the batch pieces in `referenced` (some of `batches`, in
    /// their order: the same slices) referenced instead of copied, the others copied: one
    /// vectored write of its parts sends it ([`crate::FrameParts`]; `FramePart::Piece`
    /// indexes `referenced`).
    pub fn encode_push_parts(
        &self,
        referenced: &[&[u8]],
    ) -> Result<crate::FrameParts, crate::BodyError> {
        let total: usize = self.batches.iter().map(|p| p.len()).sum();
        let by_reference: usize = referenced.iter().map(|p| p.len()).sum();
        crate::frame_parts::encode_frame_parts(
            crate::ApiKey::SubscriptionData.as_u16(),
            crate::constants::FLAG_PUSH,
            0,
            self,
            referenced,
            256 + total.saturating_sub(by_reference),
        )
    }
}
