//! The partitioner: which partition of its topic a record goes to.
//!
//! Keyed records go to FNV-1a of the key modulo the partition count ([`key_hash`], public so
//! other code can predict the partition: stable across runs and clients). Unkeyed records go
//! to the topic's sticky partition; the accumulator moves it on when that partition's batch
//! ships, so unkeyed records stick to one partition until its batch ships.

/// FNV-1a 64-bit: the key partitioner's hash.
pub fn key_hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The partition, of `count`, a record with `key` goes to while the topic's sticky counter
/// is `sticky`.
pub(super) fn partition_for(key: Option<&[u8]>, sticky: u32, count: u32) -> u32 {
    match key {
        Some(k) => (key_hash(k) % u64::from(count)) as u32,
        None => sticky % count,
    }
}
