//! Feeds arbitrary bytes to the batch envelope validator, the decompressors and the record
//! iterator (with the CRC both
//! checked and forged valid, so the fuzzer gets past it to the length relations and the rkyv
//! archive).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::constants::BATCH_CRC_START;
use wire::*;

fuzz_target!(|data: &[u8]| {
    let mut buf = to_aligned(data);
    walk(&buf);
    if buf.len() > BATCH_CRC_START {
        let len = (u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize).clamp(BATCH_CRC_START, buf.len());
        let crc = wire::batch::header::covered_crc(&buf[..len]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        walk(&buf);
    }
});

fn walk(bytes: &[u8]) {
    let mut scratch = AlignedVec::new();
    for envelope in Envelopes::new(bytes) {
        let Ok(envelope) = envelope else { return };
        let Ok(view) = envelope.open(&mut scratch) else { continue };
        for r in view.records() {
            let _ = (r.offset(), r.timestamp_ms(), r.key(), r.value());
            for h in r.headers() {
                let _ = (h.key(), h.value());
            }
        }
    }
}
