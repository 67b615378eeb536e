//! Key → last offset for one partition: what a key-conditional append compares with.
//!
//! Contract: built the first time a key-conditional append reaches the partition (a scan of
//! the whole log, in the background of that request), then kept current by every append on
//! the owning shard (`note`, called right after enqueue, so it counts appends not yet
//! acked, as the condition must). Appends that land while the scan runs are queued and
//! applied after it. Persisted: once built, the shard snapshots it with the partition's other
//! derived state (`state_snapshot.rs`, covering a durable offset), and after a restart the
//! first conditional append loads the snapshot and scans only the log after it. It holds
//! every key the partition ever stored, so it belongs on partitions used as event streams per
//! key (an aggregate per key); a memory-bounded index shared with compaction and tables is
//! the next step (issue 18).

use std::collections::HashMap;

use wire::{AlignedVec, Envelopes};

use tracing::info;

use crate::state_snapshot;
use crate::storage::{DmaDisk, FirstBatch, PartitionLog, StorageError};
use crate::watermark::Watermark;

/// Bytes read per step while building.
const BUILD_READ_BYTES: usize = 4 << 20;

enum State {
    Absent,
    Building { tail: Vec<(Vec<u8>, u64)> },
    Ready(HashMap<Vec<u8>, u64>),
}

/// See the module docs.
pub struct KeyIndex {
    state: std::cell::RefCell<State>,
    /// Advanced each time a build ends (ready or failed).
    ready: Watermark,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex { state: std::cell::RefCell::new(State::Absent), ready: Watermark::new(0) }
    }
}

impl KeyIndex {
    /// Records the keys of a batch just enqueued at `base_offset` (once the index exists).
    pub fn note(&self, batch: &[u8], base_offset: u64) {
        let mut state = self.state.borrow_mut();
        if matches!(*state, State::Absent) {
            return;
        }
        // `batch` is readable: the produce path passes compressed batches decompressed.
        let Ok(view) = wire::BatchView::validate(batch) else { return };
        for (i, r) in view.records().enumerate() {
            let Some(key) = r.key() else { continue };
            let offset = base_offset + i as u64;
            match &mut *state {
                State::Building { tail } => tail.push((key.to_vec(), offset)),
                State::Ready(map) => {
                    map.insert(key.to_vec(), offset);
                }
                State::Absent => {}
            }
        }
    }

    /// Builds the index from `log` unless it exists (or is being built: then waits).
    pub async fn ensure(&self, log: &PartitionLog<DmaDisk>) -> Result<(), StorageError> {
        loop {
            let seen = self.ready.get();
            match &*self.state.borrow() {
                State::Ready(_) => return Ok(()),
                State::Building { .. } => {}
                State::Absent => break,
            }
            // A build ends (ready, or failed and absent again): look again.
            self.ready.wait_for(seen + 1).await;
        }
        *self.state.borrow_mut() = State::Building { tail: Vec::new() };
        let built = self.scan(log).await;
        let mut state = self.state.borrow_mut();
        let tail = match std::mem::replace(&mut *state, State::Absent) {
            State::Building { tail } => tail,
            _ => Vec::new(),
        };
        let result = match built {
            Ok(mut map) => {
                for (key, offset) in tail {
                    map.insert(key, offset);
                }
                *state = State::Ready(map);
                Ok(())
            }
            // Absent again: the next conditional append tries anew.
            Err(e) => Err(e),
        };
        drop(state);
        self.ready.advance(self.ready.get() + 1);
        result
    }

    /// The last offset written for `key` (`None`: never); the index must be ready.
    pub fn last_offset(&self, key: &[u8]) -> Option<u64> {
        match &*self.state.borrow() {
            State::Ready(map) => map.get(key).copied(),
            _ => panic!("key index read before it was built"),
        }
    }

    /// The last offset written for `key` if the index is built: `Some(None)` for a key never
    /// written, `None` while the index does not exist (nothing is known).
    pub fn known_last_offset(&self, key: &[u8]) -> Option<Option<u64>> {
        match &*self.state.borrow() {
            State::Ready(map) => Some(map.get(key).copied()),
            _ => None,
        }
    }

    /// The index as a snapshot covering `covered_offset` (see `state_snapshot.rs`), if built.
    pub fn encode(&self, covered_offset: u64) -> Option<Vec<u8>> {
        match &*self.state.borrow() {
            State::Ready(map) => {
                Some(state_snapshot::encode_keys(covered_offset, map.len(), map.iter()))
            }
            _ => None,
        }
    }

    /// Keys known (0 until built).
    pub fn len(&self) -> usize {
        match &*self.state.borrow() {
            State::Ready(map) => map.len(),
            _ => 0,
        }
    }

    /// Whether no key is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys of everything appended before the scan started: waits until that is readable
    /// (appends become readable when synced), then reads what the snapshot (if any) does not
    /// cover.
    async fn scan(
        &self,
        log: &PartitionLog<DmaDisk>,
    ) -> Result<HashMap<Vec<u8>, u64>, StorageError> {
        let end = log.next_offset();
        if !log.high_watermark_mark().wait_for(end).await {
            return Err(StorageError::Closed);
        }
        let (covered, mut map) = match state_snapshot::load_keys(
            log.dir().to_owned(),
            state_snapshot::KEYS_FILE,
        )
        .await
        {
            Some((covered, map)) if covered <= end => (covered, map),
            _ => (0, HashMap::new()),
        };
        let mut scratch = AlignedVec::new();
        let start = log.log_start_offset().max(covered);
        let mut offset = start;
        while offset < end {
            let out = log.read(offset, BUILD_READ_BYTES, FirstBatch::Always).await?;
            if out.batches.is_empty() {
                break;
            }
            for view in &out.batches {
                for envelope in Envelopes::new(view).filter_map(Result::ok) {
                    offset = offset.max(envelope.header().next_offset());
                    let Ok(batch) = envelope.open(&mut scratch) else { continue };
                    for r in batch.records() {
                        if let (Some(key), true) = (r.key(), r.offset() < end) {
                            map.insert(key.to_vec(), r.offset());
                        }
                    }
                }
            }
        }
        info!(dir = %log.dir().display(), keys = map.len(), snapshot_offset = covered, scanned_offsets = end.saturating_sub(start), "key index built");
        Ok(map)
    }
}
