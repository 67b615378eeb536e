//! `bench-harness`: the reproducible load generator.
//!
//! `bench-harness run WORKLOAD.toml` creates fresh topics, runs producers and consumers as the
//! workload says against a driver (this broker, NATS JetStream, or Apache Iggy), measures
//! publish and consume rates and publish / end-to-end latency in HDR histograms (corrected for
//! coordinated omission), and writes a JSON result and a self-contained HTML report.
//! `bench-harness compare` renders several results side by side with ratios, and
//! `bench-harness summary` writes the perf suite's `summary.md` (see `perf/README.md`).
//!
//! Layout: [`workload`] (the TOML files), [`driver`] (the systems under test), [`run`] (the
//! phases, pacing and measurement), [`result`] (the JSON), [`ledger`] (who received what), [`report`] + [`svg`] (HTML and
//! Markdown), [`spawn`] (`--spawn`), [`summary`] (the suite's ratios), [`affinity`]
//! (`--server-cpus`, `--client-cpus`), [`process`] (CPU time and memory from `/proc`).

pub mod affinity;
pub mod driver;
pub mod echo;
pub mod environment;
pub mod error;
pub mod keys;
pub mod ledger;
pub mod payload;
pub mod process;
pub mod progress;
pub mod report;
pub mod result;
pub mod run;
pub mod sched_slice;
pub mod spawn;
pub mod summary;
pub mod svg;
pub mod workload;

pub use error::HarnessError;
pub use result::RunResult;
pub use run::{run, RunOptions};
pub use workload::Workload;
