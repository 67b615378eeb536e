//! Message payloads: random (incompressible) bytes whose first 16 bytes carry the intended
//! send time (so a consumer can measure end-to-end latency) and the message's identity
//! (producer and sequence, see [`crate::ledger`]).

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use crate::workload::PAYLOAD_HEADER_BYTES;

/// One producer's payload buffer, restamped for every message.
#[derive(Debug)]
pub struct Payload {
    bytes: Vec<u8>,
}

impl Payload {
    /// `len` random bytes (seeded).
    pub fn new(len: usize, seed: u64) -> Payload {
        assert!(len >= PAYLOAD_HEADER_BYTES, "checked by Workload::check");
        let mut bytes = vec![0u8; len];
        SmallRng::seed_from_u64(seed).fill_bytes(&mut bytes);
        Payload { bytes }
    }

    /// Writes the stamp and returns the payload.
    pub fn stamp(&mut self, intended_ns: u64, identity: u64) -> &[u8] {
        self.bytes[..8].copy_from_slice(&intended_ns.to_le_bytes());
        self.bytes[8..16].copy_from_slice(&identity.to_le_bytes());
        &self.bytes
    }
}

/// The intended send time stamped into a received payload, if it is long enough to have one.
pub fn intended_ns(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips() {
        let mut p = Payload::new(64, 7);
        let b = p.stamp(123_456_789, 42).to_vec();
        assert_eq!(b.len(), 64);
        assert_eq!(intended_ns(&b), Some(123_456_789));
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 42);
        assert_eq!(intended_ns(&b[..7]), None);
    }
}
