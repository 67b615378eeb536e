//! Message payloads. The first 16 bytes carry the intended send time (so a consumer can
//! measure end-to-end latency) and the message's identity (producer and sequence, see
//! [`crate::ledger`]), binary; the rest is what the workload's `payload` says:
//!
//! - `random`: seeded random bytes, incompressible;
//! - `json`: order events as a shop's services emit them, values varying per message, keys
//!   and vocabulary repeating, so a batch compresses as real JSON events do: a 64 KiB batch of
//!   1 KiB documents deflates 5.4× (the test below keeps it within 2.5–8×) and `zstd -3`
//!   gives 5.4× too:
//!
//! ```text
//! [stamp: 16 bytes]{"order_id":1000417,"customer":"cust-04231","status":"paid","currency":"EUR",
//! "channel":"web","ts":1764720000123,"shipping":{"country":"DE","zip":"10115","method":"standard"},
//! "items":[{"sku":"SKU-00042","qty":2,"price_cents":1999},...],"total_cents":12345,
//! "note":"leave at front door gift wrap ..."}
//! ```
//!
//! Each document is exactly `message_bytes` long (items are added while they fit, then the
//! `note` pads to the byte), so byte counts stay `messages × message_bytes` as for `random`.
//!
//! Each producer pregenerates a ring of distinct payloads ([`RING_PAYLOADS_MAX`], at most
//! [`RING_BYTES_MAX`] bytes) and cycles through it, restamping: generation costs nothing on
//! the hot path, and consecutive messages differ, so a compressing client cannot shrink a
//! batch of "random" messages to one copy.

use std::fmt::Write;

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::workload::{PayloadKind, JSON_MESSAGE_BYTES_MIN, PAYLOAD_HEADER_BYTES};

/// Distinct payloads a producer cycles through.
pub const RING_PAYLOADS_MAX: usize = 1024;
/// Bytes of one producer's ring at most (large messages get fewer distinct payloads).
pub const RING_BYTES_MAX: usize = 16 << 20;

/// One producer's payloads, restamped for every message.
#[derive(Debug)]
pub struct Payload {
    ring: Vec<Vec<u8>>,
    next: usize,
}

impl Payload {
    /// A ring of `len`-byte payloads of `kind`, generated from `seed`.
    pub fn new(kind: PayloadKind, len: usize, seed: u64) -> Payload {
        assert!(len >= PAYLOAD_HEADER_BYTES, "checked by Workload::check");
        let count = (RING_BYTES_MAX / len).clamp(1, RING_PAYLOADS_MAX);
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut order = OrderSequence::new(&mut rng);
        let ring = (0..count)
            .map(|_| {
                let mut bytes = vec![0u8; len];
                match kind {
                    PayloadKind::Random => rng.fill_bytes(&mut bytes[PAYLOAD_HEADER_BYTES..]),
                    PayloadKind::Json => {
                        let doc = order.next_document(&mut rng, len - PAYLOAD_HEADER_BYTES);
                        bytes[PAYLOAD_HEADER_BYTES..].copy_from_slice(doc.as_bytes());
                    }
                }
                bytes
            })
            .collect();
        Payload { ring, next: 0 }
    }

    /// Bytes of every payload.
    pub fn len(&self) -> usize {
        self.ring[0].len()
    }

    /// Never: payloads hold at least the stamp.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Distinct payloads in the ring.
    pub fn distinct(&self) -> usize {
        self.ring.len()
    }

    /// Writes the stamp into the next payload of the ring and returns it.
    pub fn stamp(&mut self, intended_ns: u64, identity: u64) -> &[u8] {
        let i = self.next;
        self.next = (i + 1) % self.ring.len();
        let bytes = &mut self.ring[i];
        bytes[..8].copy_from_slice(&intended_ns.to_le_bytes());
        bytes[8..16].copy_from_slice(&identity.to_le_bytes());
        bytes
    }
}

/// The intended send time stamped into a received payload, if it is long enough to have one.
pub fn intended_ns(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

const STATUSES: &[&str] = &["paid", "paid", "paid", "shipped", "pending", "refunded"];
const CURRENCIES: &[&str] = &["EUR", "EUR", "USD", "GBP"];
const CHANNELS: &[&str] = &["web", "web", "mobile", "store"];
const COUNTRIES: &[&str] = &["DE", "FR", "US", "GB", "NL", "SE", "IT", "ES"];
const METHODS: &[&str] = &["standard", "express", "pickup"];
const NOTE_WORDS: &[&str] = &[
    "please",
    "leave",
    "at",
    "the",
    "front",
    "door",
    "gift",
    "wrap",
    "call",
    "on",
    "arrival",
    "fragile",
    "handle",
    "with",
    "care",
    "ring",
    "bell",
    "twice",
    "back",
    "entrance",
    "no",
    "signature",
    "needed",
    "deliver",
    "after",
    "6pm",
    "neighbour",
    "can",
    "accept",
    "parcel",
    "thank",
    "you",
];
/// Longest tail after the items: `],"total_cents":<10 digits>,"note":"` and `"}`.
const TAIL_BYTES_MAX: usize = 2 + 16 + 10 + 9 + 2;

/// Order ids and timestamps advancing from document to document, as in one event stream.
struct OrderSequence {
    order_id: u64,
    ts_ms: u64,
}

impl OrderSequence {
    fn new(rng: &mut SmallRng) -> OrderSequence {
        // 2025-12-03T00:00:00Z plus up to a day: fixed, so a seed gives the same documents.
        OrderSequence {
            order_id: 1_000_000 + rng.random_range(0..1_000_000),
            ts_ms: 1_764_720_000_000 + rng.random_range(0..86_400_000),
        }
    }

    /// One order event of exactly `len` bytes (`len` ≥ what [`JSON_MESSAGE_BYTES_MIN`]
    /// leaves after the stamp).
    fn next_document(&mut self, rng: &mut SmallRng, len: usize) -> String {
        assert!(len + PAYLOAD_HEADER_BYTES >= JSON_MESSAGE_BYTES_MIN, "checked by Workload::check");
        self.order_id += rng.random_range(1..20);
        self.ts_ms += rng.random_range(0..50);
        let pick =
            |rng: &mut SmallRng, list: &[&'static str]| list[rng.random_range(0..list.len())];
        let mut s = String::with_capacity(len);
        let _ = write!(
            s,
            "{{\"order_id\":{},\"customer\":\"cust-{:05}\",\"status\":\"{}\",\"currency\":\"{}\",\
             \"channel\":\"{}\",\"ts\":{},\"shipping\":{{\"country\":\"{}\",\"zip\":\"{:05}\",\
             \"method\":\"{}\"}},\"items\":[",
            self.order_id,
            rng.random_range(0..100_000),
            pick(rng, STATUSES),
            pick(rng, CURRENCIES),
            pick(rng, CHANNELS),
            self.ts_ms,
            pick(rng, COUNTRIES),
            rng.random_range(1000..99_999),
            pick(rng, METHODS),
        );
        let mut total_cents = 0u64;
        let mut item = String::new();
        loop {
            item.clear();
            let (qty, price_cents) = (rng.random_range(1..=5u64), rng.random_range(99..=49_999u64));
            let _ = write!(
                item,
                "{}{{\"sku\":\"SKU-{:05}\",\"qty\":{qty},\"price_cents\":{price_cents}}}",
                if s.ends_with('[') { "" } else { "," },
                rng.random_range(0..50_000),
            );
            if s.len() + item.len() + TAIL_BYTES_MAX > len {
                break;
            }
            s.push_str(&item);
            total_cents += qty * price_cents;
        }
        let _ = write!(s, "],\"total_cents\":{total_cents},\"note\":\"");
        assert!(s.len() + 2 <= len, "order head and tail fit in {len} bytes: {s}");
        let note_bytes = len - s.len() - 2;
        let note_start = s.len();
        while s.len() - note_start < note_bytes {
            if s.len() > note_start {
                s.push(' ');
            }
            s.push_str(pick(rng, NOTE_WORDS));
        }
        s.truncate(note_start + note_bytes);
        s.push_str("\"}");
        assert_eq!(s.len(), len, "order event of the asked length");
        s
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn stamp_round_trips() {
        for kind in [PayloadKind::Random, PayloadKind::Json] {
            let mut p = Payload::new(kind, 512, 7);
            let b = p.stamp(123_456_789, 42).to_vec();
            assert_eq!(b.len(), 512);
            assert_eq!(intended_ns(&b), Some(123_456_789));
            assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 42);
            assert_eq!(crate::ledger::identity_of(&b), Some(42));
            assert_eq!(intended_ns(&b[..7]), None);
        }
    }

    #[test]
    fn rings_are_distinct_and_bounded() {
        let mut p = Payload::new(PayloadKind::Random, 1024, 1);
        assert_eq!(p.distinct(), RING_PAYLOADS_MAX);
        let a = p.stamp(0, 0)[16..].to_vec();
        let b = p.stamp(0, 0)[16..].to_vec();
        assert_ne!(a, b, "consecutive payloads differ");
        for _ in 0..RING_PAYLOADS_MAX - 2 {
            p.stamp(0, 0);
        }
        assert_eq!(p.stamp(0, 0)[16..], a[..], "the ring wraps");
        assert_eq!(Payload::new(PayloadKind::Random, 8 << 20, 1).distinct(), 2);
        assert_eq!(Payload::new(PayloadKind::Json, 64 << 10, 1).distinct(), 256);
        // Seeded: the same documents every run.
        let mut x = Payload::new(PayloadKind::Json, 1024, 3);
        let mut y = Payload::new(PayloadKind::Json, 1024, 3);
        assert_eq!(x.stamp(1, 1), y.stamp(1, 1));
    }

    #[test]
    fn json_documents_have_the_size_and_shape_asked() {
        for len in [JSON_MESSAGE_BYTES_MIN, 300, 1000, 1024, 4096, 65_536] {
            let mut p = Payload::new(PayloadKind::Json, len, len as u64);
            for _ in 0..50 {
                let b = p.stamp(9, 9);
                assert_eq!(b.len(), len);
                let doc: serde_json::Value = serde_json::from_slice(&b[16..]).unwrap_or_else(|e| {
                    panic!("{len} bytes: {e}: {}", String::from_utf8_lossy(&b[16..]))
                });
                assert!(doc["order_id"].as_u64().unwrap() > 1_000_000);
                assert!(doc["customer"].as_str().unwrap().starts_with("cust-"));
                let items = doc["items"].as_array().unwrap();
                if len >= 1024 {
                    assert!(items.len() >= 10, "{len} bytes: {} items", items.len());
                }
                let total: u64 = items
                    .iter()
                    .map(|i| i["qty"].as_u64().unwrap() * i["price_cents"].as_u64().unwrap())
                    .sum();
                assert_eq!(doc["total_cents"].as_u64(), Some(total));
            }
        }
    }

    /// Deflate over a 64 KiB batch (what a producer ships) of each kind.
    fn batch_ratio(kind: PayloadKind) -> f64 {
        let mut p = Payload::new(kind, 1024, 5);
        let mut batch = Vec::new();
        for i in 0..64 {
            batch.extend_from_slice(p.stamp(1_000_000 + i * 20_000, i));
        }
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&batch).unwrap();
        batch.len() as f64 / z.finish().unwrap().len() as f64
    }

    #[test]
    fn json_compresses_like_events_and_random_does_not() {
        let json = batch_ratio(PayloadKind::Json);
        assert!((2.5..=8.0).contains(&json), "json batch compresses {json:.2}×");
        let random = batch_ratio(PayloadKind::Random);
        eprintln!("deflate over a 64 KiB batch: json {json:.2}×, random {random:.3}×");
        assert!(random < 1.05, "random batch compresses {random:.2}×");
    }
}
