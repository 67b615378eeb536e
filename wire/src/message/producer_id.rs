//! Idempotent producers: the broker hands out producer ids.
//!
//! A producer stamps every batch with its id, epoch and the sequence number of the batch's
//! first record (per partition, counting records from 0). The partition's owner remembers
//! the last few batches of each producer: a batch sent again (a retry whose answer was lost)
//! is answered with the offsets it got the first time instead of being appended twice, and
//! a batch that skips sequence numbers is refused (`OUT_OF_ORDER_SEQUENCE`, retriable: an
//! earlier batch is still on its way).

wire_type! {
    /// Ask for a producer id.
    pub struct InitProducerIdRequest {
        /// Reserved for transactional producers (a stable id whose new incarnation fences
        /// the old one); empty today.
        pub transactional_id: String,
    }
}
message!(InitProducerIdRequest, InitProducerId);

wire_type! {
    /// A producer id, never handed out before by this broker's data directory.
    pub struct InitProducerIdResponse {
        /// Error code.
        pub error: u16,
        /// Detail when `error != 0`.
        pub message: String,
        /// The id to stamp batches with.
        pub producer_id: i64,
        /// Its epoch.
        pub producer_epoch: i16,
    }
}
message!(InitProducerIdResponse, InitProducerId);
