//! `bench-harness`: the reproducible load generator (workload files, HDR latency, HTML
//! reports, peer drivers). Not built yet — it is issue 6 and builds on the `client` crate.
//!
//! Until it lands, end-to-end figures come from
//! `cargo run --release -p integration-tests --example produce_bench` and the partition-log
//! figures from `perf/log_bench.sh`; both record their results under `perf/results/`.
