//! State tables over existing topics, on the controller shard: create and delete. Like topic
//! administration: the change is made by shard 0 alone, persisted in the metadata, and
//! broadcast; every shard opens (or drops) the table on the topic's partitions it owns
//! before the answer (`Shard::apply_metadata`), and the table replays the topic's stored
//! records from its first offset.

use std::rc::Rc;
use std::sync::Arc;

use wire::{
    CreateTableRequest, CreateTableResponse, DeleteTableRequest, DeleteTableResponse, ErrorCode,
};

use super::admin::persist;
use super::{error_frame, respond};
use crate::aggregate::AggregateSettings;
use crate::request::Request;
use crate::shard::Shard;

/// Creates a state table over a topic.
pub async fn create_table(shard: &Rc<Shard>, request: &Request) -> wire::AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<CreateTableRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    let answer =
        |error: ErrorCode, message: String| CreateTableResponse { error: error.as_u16(), message };
    let _permit = shard.admin_lock.acquire_permit(1).await;
    let aggregate = AggregateSettings::from_wire(&req.aggregate);
    let next = match shard.metadata().with_table(&req.name, &req.topic, aggregate) {
        Ok(next) => next,
        Err(e) => return respond(&header, &answer(e.code(), e.to_string())),
    };
    if let Err(e) = persist(shard, &next) {
        return respond(&header, &answer(ErrorCode::StorageIo, e));
    }
    shard.broadcast_metadata(Arc::new(next)).await;
    tracing::info!(table = %req.name, topic = %req.topic, "state table created");
    respond(&header, &answer(ErrorCode::None, String::new()))
}

/// Deletes a state table (its topic stays).
pub async fn delete_table(shard: &Rc<Shard>, request: &Request) -> wire::AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<DeleteTableRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    let answer =
        |error: ErrorCode, message: String| DeleteTableResponse { error: error.as_u16(), message };
    let _permit = shard.admin_lock.acquire_permit(1).await;
    let next = match shard.metadata().without_table(&req.name) {
        Ok(next) => next,
        Err(e) => return respond(&header, &answer(e.code(), e.to_string())),
    };
    if let Err(e) = persist(shard, &next) {
        return respond(&header, &answer(ErrorCode::StorageIo, e));
    }
    shard.broadcast_metadata(Arc::new(next)).await;
    tracing::info!(table = %req.name, "state table deleted");
    respond(&header, &answer(ErrorCode::None, String::new()))
}
