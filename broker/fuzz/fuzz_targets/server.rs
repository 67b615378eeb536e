//! The server's frame handling in process: each input is one connection's byte stream,
//! served by a one-shard broker on real DMA files (`broker::in_process`). Nothing may panic
//! and everything written back must be well-formed frames.
//!
//! The first input byte picks the mode: even = the rest as raw bytes (frame splitting and
//! header checks); odd = the rest as length-prefixed chunks sent with valid headers, so the
//! bytes reach body validation and every API handler.
#![no_main]

use std::sync::OnceLock;

use broker::in_process::{check_output, frame_chunks, InProcessBroker};
use libfuzzer_sys::fuzz_target;

fn broker() -> &'static InProcessBroker {
    static BROKER: OnceLock<InProcessBroker> = OnceLock::new();
    BROKER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("broker-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        InProcessBroker::start(dir).expect("start the in-process broker")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let input = if mode % 2 == 0 { rest.to_vec() } else { frame_chunks(rest) };
    let out = broker().serve(&input);
    if let Err(e) = check_output(&out) {
        panic!("malformed output: {e}");
    }
});
