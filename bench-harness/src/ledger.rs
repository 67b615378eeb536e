//! Which messages the consumers received, per producer: equal counts can hide a lost message
//! plus a duplicated one, identities cannot.
//!
//! Every payload carries an identity (bytes 8..16): the producer's index in the top 24 bits,
//! its sequence number in the low 40. A producer issues sequences densely from 0 (recorded
//! here before the send), consumers mark what they receive in one bitmap per producer, and
//! at the end every issued sequence must have been received exactly once.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

const SEQUENCE_BITS: u32 = 40;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;

/// The identity stamped into a payload.
pub fn identity(producer: usize, sequence: u64) -> u64 {
    ((producer as u64) << SEQUENCE_BITS) | (sequence & SEQUENCE_MASK)
}

/// The identity stamped into a received payload, if it is long enough to have one.
pub fn identity_of(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?))
}

/// What one batch of received identities added.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Identities received before.
    pub duplicates: u64,
    /// Identities no producer issued (an unknown producer or a sequence not yet issued).
    pub foreign: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct Ledger {
    producers: Vec<ProducerLedger>,
}

#[derive(Debug, Default)]
struct ProducerLedger {
    /// Sequences issued so far (the next one to issue).
    issued: AtomicU64,
    /// Bit `s` set once sequence `s` was received; grows only up to `issued`.
    received: Mutex<Vec<u64>>,
}

impl Ledger {
    /// A ledger for `producers` producers.
    pub fn new(producers: usize) -> Ledger {
        Ledger { producers: (0..producers).map(|_| ProducerLedger::default()).collect() }
    }

    /// Records that `producer` is about to send `sequence` (call before the send, so a
    /// consumer never sees an identity that is not issued yet).
    pub fn issue(&self, producer: usize, sequence: u64) {
        if let Some(p) = self.producers.get(producer) {
            p.issued.fetch_max(sequence + 1, Relaxed);
        }
    }

    /// Marks `ids` as received.
    pub fn receive(&self, ids: &[u64]) -> Tally {
        let mut tally = Tally::default();
        let mut i = 0;
        while i < ids.len() {
            let producer = (ids[i] >> SEQUENCE_BITS) as usize;
            // One lock per run of identities from the same producer.
            let run = ids[i..].iter().take_while(|id| (**id >> SEQUENCE_BITS) as usize == producer);
            let run_len = run.clone().count();
            match self.producers.get(producer) {
                None => tally.foreign += run_len as u64,
                Some(p) => {
                    let issued = p.issued.load(Relaxed);
                    let mut bits = p.received.lock().expect("not poisoned");
                    for id in run {
                        let sequence = id & SEQUENCE_MASK;
                        if sequence >= issued {
                            // Bounded growth: never by an identity nobody issued.
                            tally.foreign += 1;
                            continue;
                        }
                        let (word, bit) = ((sequence / 64) as usize, sequence % 64);
                        if bits.len() <= word {
                            bits.resize(word + 1, 0);
                        }
                        if bits[word] & (1 << bit) != 0 {
                            tally.duplicates += 1;
                        }
                        bits[word] |= 1 << bit;
                    }
                }
            }
            i += run_len;
        }
        tally
    }

    /// Issued sequences never received, over all producers.
    pub fn gaps(&self) -> u64 {
        self.producers
            .iter()
            .map(|p| {
                let issued = p.issued.load(Relaxed);
                let bits = p.received.lock().expect("not poisoned");
                let received: u64 = bits.iter().map(|w| u64::from(w.count_ones())).sum();
                issued.saturating_sub(received)
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_message_and_a_duplicate_do_not_cancel_out() {
        let ledger = Ledger::new(2);
        for s in 0..100 {
            ledger.issue(0, s);
            ledger.issue(1, s);
        }
        let mut ids: Vec<u64> = (0..100).map(|s| identity(0, s)).collect();
        ids.extend((0..100).filter(|s| *s != 42).map(|s| identity(1, s)));
        ids.push(identity(1, 7)); // a duplicate: the count is 200 either way
        assert_eq!(ids.len(), 200);
        assert_eq!(ledger.receive(&ids), Tally { duplicates: 1, foreign: 0 });
        assert_eq!(ledger.gaps(), 1);
    }

    #[test]
    fn identities_nobody_issued_are_foreign_and_allocate_nothing() {
        let ledger = Ledger::new(1);
        ledger.issue(0, 0);
        let t = ledger.receive(&[identity(0, 0), identity(0, SEQUENCE_MASK), identity(9, 0)]);
        assert_eq!(t, Tally { duplicates: 0, foreign: 2 });
        assert_eq!(ledger.gaps(), 0);
        assert!(ledger.producers[0].received.lock().unwrap().len() <= 1);
        let mut payload = vec![0u8; 16];
        payload[8..16].copy_from_slice(&identity(0, 5).to_le_bytes());
        assert_eq!(identity_of(&payload), Some(identity(0, 5)));
        assert_eq!(identity_of(&payload[..15]), None);
    }
}
