//! The harness's errors.

use thiserror::Error;

/// Why a run, a compare or a driver call failed.
#[derive(Debug, Error)]
pub enum HarnessError {
    /// A workload file is missing or invalid.
    #[error("workload: {0}")]
    Workload(String),
    /// The system under test failed (connect, create, produce, consume).
    #[error("{driver}: {message}")]
    Driver {
        /// Which driver.
        driver: &'static str,
        /// What happened.
        message: String,
    },
    /// Starting or stopping a spawned server failed.
    #[error("spawn: {0}")]
    Spawn(String),
    /// A result file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// Which file.
        path: String,
        /// What happened.
        message: String,
    },
    /// The run finished but its numbers do not add up (e.g. messages lost).
    #[error("inconsistent run: {0}")]
    Inconsistent(String),
}

impl HarnessError {
    /// A driver error.
    pub fn driver(driver: &'static str, message: impl std::fmt::Display) -> HarnessError {
        HarnessError::Driver { driver, message: message.to_string() }
    }

    /// A file error.
    pub fn file(path: &std::path::Path, message: impl std::fmt::Display) -> HarnessError {
        HarnessError::File { path: path.display().to_string(), message: message.to_string() }
    }
}
