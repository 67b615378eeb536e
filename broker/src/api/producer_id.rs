//! InitProducerId: hands out idempotent producer ids, on the controller shard.
//!
//! Ids are never handed out twice by one data directory: the controller reserves them in
//! blocks of `PRODUCER_ID_BLOCK` and persists the end of the reserved range in the topic
//! metadata (`Metadata::producer_ids_reserved`, stored durably before an id of the block is
//! given); after a restart it continues from that end, so a crash skips at most the rest of
//! a block.
//!
//! A transactional id is a producer's stable name: its first InitProducerId gets a fresh id
//! at epoch 0, every later one the same id at the next epoch. The pair is persisted in the
//! metadata (`Metadata::transactional_ids`, and `producer_epochs` id → current epoch) and
//! broadcast to every shard before the answer, so from then on every partition refuses the
//! older epoch's batches (`PRODUCER_FENCED`), even partitions the new incarnation has not
//! written to; the fencing survives restarts. The metadata holds at most
//! `transactional_ids_max` ids; a new one past that takes the place of every id whose
//! producer has not initialized for `transactional_id_expiration_ms` (7 days; when
//! it initialized last is kept in `Metadata::transactional_ids_used_ms`), or is refused with
//! RESOURCE_LIMIT. Below the limit nothing is forgotten, so a producer that initialized once
//! and runs for weeks stays fenced against its zombies.

use std::rc::Rc;
use std::sync::Arc;

use wire::{ErrorCode, InitProducerIdRequest, InitProducerIdResponse};

use super::{error_frame, respond};
use crate::request::Request;
use crate::shard::Shard;

/// Producer ids reserved (and persisted) at a time.
pub const PRODUCER_ID_BLOCK: i64 = 1_000_000;
/// Longest transactional id.
pub const TRANSACTIONAL_ID_BYTES_MAX: usize = 249;

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
    if !req.transactional_id.is_empty() && !crate::metadata::is_valid_id(&req.transactional_id) {
        return refuse(
            ErrorCode::InvalidRequest,
            format!(
                "invalid transactional id {:?}: use 1..={TRANSACTIONAL_ID_BYTES_MAX} bytes without control characters",
                req.transactional_id
            ),
        );
    }
    let _permit = shard.admin_lock.acquire_permit(1).await;
    let md = shard.metadata();
    let mut next_md = (*md).clone();
    let mut changed = false;
    // A known transactional id keeps its producer id with the next epoch (fencing the
    // incarnation before it everywhere); an exhausted epoch gets a fresh id.
    let known = (!req.transactional_id.is_empty())
        .then(|| md.transactional_ids.get(&req.transactional_id).copied())
        .flatten()
        .filter(|&(_, epoch)| epoch < i16::MAX);
    let max = shard.config.transactional_ids_max;
    let now_ms = crate::clock::now_ms();
    let new_name = !req.transactional_id.is_empty()
        && !md.transactional_ids.contains_key(&req.transactional_id);
    if new_name && md.transactional_ids.len() >= max {
        let expiration_ms = shard.config.transactional_id_expiration_ms;
        let forgotten = forget_expired(&mut next_md, now_ms, expiration_ms);
        if next_md.transactional_ids.len() >= max {
            return refuse(
                ErrorCode::ResourceLimit,
                format!(
                    "the broker remembers {max} transactional ids (transactional_ids_max), \
                     none unused for {expiration_ms} ms (transactional_id_expiration_ms)"
                ),
            );
        }
        tracing::info!(forgotten, expiration_ms, "transactional ids unused too long forgotten");
    }
    let (producer_id, producer_epoch) = match known {
        Some((id, epoch)) => (id, epoch + 1),
        None => {
            let next = match shard.next_producer_id.get() {
                Some(n) => n,
                None => md.producer_ids_reserved,
            };
            if next >= md.producer_ids_reserved {
                next_md.producer_ids_reserved = next + PRODUCER_ID_BLOCK;
                changed = true;
            }
            shard.next_producer_id.set(Some(next + 1));
            (next, 0)
        }
    };
    if !req.transactional_id.is_empty() {
        if let Some((old, _)) = next_md.transactional_ids.get(&req.transactional_id) {
            next_md.producer_epochs.remove(old);
        }
        next_md
            .transactional_ids
            .insert(req.transactional_id.clone(), (producer_id, producer_epoch));
        next_md.transactional_ids_used_ms.insert(req.transactional_id.clone(), now_ms);
        next_md.producer_epochs.insert(producer_id, producer_epoch);
        changed = true;
    }
    if changed {
        next_md.version += 1;
        if let Err(e) = next_md.store(&shard.config.data_dir) {
            return refuse(ErrorCode::StorageIo, format!("cannot store producer ids: {e}"));
        }
        shard.broadcast_metadata(Arc::new(next_md)).await;
    }
    respond(
        &header,
        &InitProducerIdResponse { error: 0, message: String::new(), producer_id, producer_epoch },
    )
}

/// Forgets every transactional id (and its producer's epoch) whose producer last
/// initialized more than `expiration_ms` before `now_ms`; returns how many.
fn forget_expired(md: &mut crate::metadata::Metadata, now_ms: i64, expiration_ms: u64) -> usize {
    let oldest_kept_ms = now_ms.saturating_sub(i64::try_from(expiration_ms).unwrap_or(i64::MAX));
    let expired: Vec<String> = md
        .transactional_ids
        .keys()
        .filter(|name| {
            md.transactional_ids_used_ms.get(*name).copied().unwrap_or(0) < oldest_kept_ms
        })
        .cloned()
        .collect();
    for name in &expired {
        if let Some((producer_id, _)) = md.transactional_ids.remove(name) {
            md.producer_epochs.remove(&producer_id);
        }
        md.transactional_ids_used_ms.remove(name);
    }
    expired.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Metadata;

    #[test]
    fn only_ids_unused_past_the_expiration_are_forgotten_with_their_epochs() {
        let mut md = Metadata::default();
        for (name, id, used_ms) in [("old", 1, 1_000), ("fresh", 2, 9_500), ("legacy", 3, -1)] {
            md.transactional_ids.insert(name.into(), (id, 4));
            md.producer_epochs.insert(id, 4);
            if used_ms >= 0 {
                md.transactional_ids_used_ms.insert(name.into(), used_ms);
            }
        }
        assert_eq!(forget_expired(&mut md, 10_000, 1_000), 2);
        assert_eq!(md.transactional_ids.keys().collect::<Vec<_>>(), ["fresh"]);
        assert_eq!(md.producer_epochs.keys().collect::<Vec<_>>(), [&2]);
        assert_eq!(md.transactional_ids_used_ms.keys().collect::<Vec<_>>(), ["fresh"]);
        assert_eq!(forget_expired(&mut md, 10_000, 1_000), 0);
    }
}
