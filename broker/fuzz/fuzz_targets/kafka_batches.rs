//! Kafka record batches from an untrusted producer: `kafka::convert::to_native` must refuse or
//! convert any bytes without panicking or allocating by a forged length, and what it converts
//! must read back through `to_kafka` (the fetch path).
//!
//! `cargo fuzz run kafka_batches` (from `broker/fuzz`).

#![no_main]

use broker::kafka::convert::{to_kafka, to_native};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let records = bytes::Bytes::copy_from_slice(data);
    if let Ok(converted) = to_native(&records, 1 << 20) {
        let mut out = bytes::BytesMut::new();
        to_kafka(&converted.batches, &mut out).expect("converted batches read back");
    }
});
