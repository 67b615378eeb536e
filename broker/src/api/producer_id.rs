//! InitProducerId: hands out idempotent producer ids, on the controller shard.
//!
//! Ids are never handed out twice by one data directory: the controller reserves them in
//! blocks of `PRODUCER_ID_BLOCK` and persists the end of the reserved range in the topic
//! metadata (`Metadata::producer_ids_reserved`, stored durably before an id of the block is
//! given); after a restart it continues from that end, so a crash skips at most the rest of
//! a block. Epochs are 0 until transactional ids (a stable id whose new incarnation fences
//! the old) exist.

use std::rc::Rc;
use std::sync::Arc;

use wire::{ErrorCode, InitProducerIdRequest, InitProducerIdResponse};

use super::{error_frame, respond};
use crate::request::Request;
use crate::shard::Shard;

/// Producer ids reserved (and persisted) at a time.
pub const PRODUCER_ID_BLOCK: i64 = 1_000_000;

/// Serves InitProducerId (the caller routed it to the controller shard).
pub async fn init_producer_id(shard: &Rc<Shard>, request: &Request) -> wire::AlignedVec {
    let header = request.header;
    let req = match wire::decode_body::<InitProducerIdRequest>(request.body()) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    let refuse = |code: ErrorCode, message: String| {
        respond(
            &header,
            &InitProducerIdResponse { error: code.as_u16(), message, ..Default::default() },
        )
    };
    if !req.transactional_id.is_empty() {
        return refuse(
            ErrorCode::InvalidRequest,
            "transactional ids are not supported yet; send an empty one".into(),
        );
    }
    let _permit = shard.admin_lock.acquire_permit(1).await;
    let md = shard.metadata();
    let next = match shard.next_producer_id.get() {
        Some(n) => n,
        None => md.producer_ids_reserved,
    };
    if next >= md.producer_ids_reserved {
        let mut reserved = (*md).clone();
        reserved.version += 1;
        reserved.producer_ids_reserved = next + PRODUCER_ID_BLOCK;
        if let Err(e) = reserved.store(&shard.config.data_dir) {
            return refuse(ErrorCode::StorageIo, format!("cannot reserve producer ids: {e}"));
        }
        shard.broadcast_metadata(Arc::new(reserved)).await;
    }
    shard.next_producer_id.set(Some(next + 1));
    respond(
        &header,
        &InitProducerIdResponse {
            error: 0,
            message: String::new(),
            producer_id: next,
            producer_epoch: 0,
        },
    )
}
