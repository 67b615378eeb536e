//! `wire`: the pure codec of the broker's native protocol. No I/O, no async, no runtime.
//!
//! - [`FrameHeader`] / [`split_frame`]: the 32-byte header in front of every message, with the
//!   body length checked against a maximum before anything is allocated (layout in [`frame`]).
//! - Bodies are rkyv 0.8 archives at 16-byte alignment ([`message`] holds every request,
//!   response and push type). [`encode_request`], [`encode_response`], [`encode_push`] and
//!   [`encode_error`] build frames; [`access_body`] validates an untrusted body in place
//!   (bytecheck) and [`decode_body`] also deserializes it. [`FrameParts`] is a push frame
//!   whose stored batches are referenced, not copied (one vectored write sends it).
//! - Record batches ([`batch`]): the unit on the wire, on disk and to consumers.
//!   [`BatchBuilder`] builds them, [`BatchView::validate`] checks length, CRC32C and archive,
//!   [`batch::header::assign`] sets the broker-owned fields in place, and
//!   [`BatchView::records`] iterates records with borrowed keys, values and headers.
//! - [`ErrorCode`]: stable wire error numbers. [`FrameError`], [`BodyError`], [`BatchError`]
//!   and [`BuildError`] are the typed decode/encode failures, each mapping to a code.
//!
//! A produced record travels as: `BatchBuilder` → `ProduceRequest` frame → broker validates
//! with `BatchView::validate`, assigns the offset in place, writes the same bytes to the
//! segment → `FetchResponse`/`SubscriptionData` carries those bytes → the consumer iterates
//! them with `BatchView::records`.

#![deny(unsafe_code)]

pub mod api;
pub mod batch;
pub mod body;
pub mod constants;
pub mod error;
pub mod error_code;
pub mod filter;
pub mod frame;
pub mod frame_parts;
pub mod message;
pub mod scram;
pub mod with;

pub use api::ApiKey;
pub use batch::{
    BatchBuilder, BatchEnvelope, BatchHeader, BatchView, Batches, Compression, Envelopes,
    RecordView,
};
pub use body::{
    access_body, decode_body, encode_error, encode_frame, encode_frame_sized, encode_push,
    encode_request, encode_response, to_aligned, Message,
};
pub use error::{BatchError, BodyError, BuildError, FrameError};
pub use error_code::ErrorCode;
pub use frame::{split_frame, FrameHeader, RawFrame};
pub use frame_parts::{FramePart, FrameParts};
pub use message::ack_level::*;
pub use message::auth::*;
pub use message::committed_offsets::*;
pub use message::delete_records::*;
pub use message::error_body::ErrorBody;
pub use message::fetch::*;
pub use message::group::*;
pub use message::group_admin::*;
pub use message::handshake::*;
pub use message::key_query::*;
pub use message::metadata::*;
pub use message::offsets::*;
pub use message::produce::*;
pub use message::producer_id::*;
pub use message::stats::*;
pub use message::subscribe::*;
pub use message::table::*;
pub use message::topic::*;
pub use message::topic_config::*;
pub use rkyv::util::AlignedVec;
