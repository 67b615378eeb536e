//! The settings of a log that its topic may change while the log is open (`AlterTopicConfig`,
//! Kafka's IncrementalAlterConfigs): retention by age and size, rolling by age and size,
//! compaction, and how long a compacted key's tombstone stays. The writer, retention and the
//! cleaner read them here at each use, so a change applies from the next append, retention
//! pass or cleaning without reopening the log; every other setting of `LogConfig` is fixed
//! when the log opens.

use std::cell::Cell;

use crate::storage::config::LogConfig;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct LiveConfig {
    retention_ms: Cell<i64>,
    retention_bytes: Cell<i64>,
    segment_ms: Cell<i64>,
    segment_bytes_max: Cell<u64>,
    delete_retention_ms: Cell<i64>,
    compact: Cell<bool>,
}

impl LiveConfig {
    /// `config`'s values of the settings that may change.
    pub(crate) fn new(config: &LogConfig) -> Self {
        let live = LiveConfig {
            retention_ms: Cell::new(0),
            retention_bytes: Cell::new(0),
            segment_ms: Cell::new(0),
            segment_bytes_max: Cell::new(0),
            delete_retention_ms: Cell::new(0),
            compact: Cell::new(false),
        };
        live.set(config);
        live
    }

    /// Takes `config`'s values of the settings that may change.
    pub(crate) fn set(&self, config: &LogConfig) {
        self.retention_ms.set(config.retention_ms);
        self.retention_bytes.set(config.retention_bytes);
        self.segment_ms.set(config.segment_ms);
        self.segment_bytes_max.set(config.segment_bytes_max);
        self.delete_retention_ms.set(config.delete_retention_ms);
        self.compact.set(config.compact);
    }

    /// Compaction passes run (`cleaner.rs`). Turned on for a log that was not compacted,
    /// the first pass maps it from its start; turned off, the next pass does not run (one
    /// running ends) and what was compacted stays so.
    pub(crate) fn compact(&self) -> bool {
        self.compact.get()
    }

    /// Closed segments older than this are deleted (-1: never).
    pub(crate) fn retention_ms(&self) -> i64 {
        self.retention_ms.get()
    }

    /// The oldest closed segments are deleted while the log is larger (-1: no limit).
    pub(crate) fn retention_bytes(&self) -> i64 {
        self.retention_bytes.get()
    }

    /// The active segment rolls at this age (0: never by age).
    pub(crate) fn segment_ms(&self) -> i64 {
        self.segment_ms.get()
    }

    /// The active segment rolls at this size.
    pub(crate) fn segment_bytes_max(&self) -> u64 {
        self.segment_bytes_max.get()
    }

    /// A compacted key's tombstone that is its latest record is removed once this old.
    pub(crate) fn delete_retention_ms(&self) -> i64 {
        self.delete_retention_ms.get()
    }
}
