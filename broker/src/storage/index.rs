//! Sparse indexes of one segment: offset → file position (`.index`) and timestamp → offset
//! (`.timeindex`). One entry per `index_interval_bytes` of log.
//!
//! On disk each index is an array of fixed-size little-endian entries:
//! `.index` 8 bytes `(relative offset u32, position u32)`; `.timeindex` 16 bytes
//! `(max timestamp so far i64, relative offset u32, zero u32)`. The first batch of a segment
//! (relative offset 0, position 0) is implicit, so an all-zero entry always means "end"
//! (preallocated or torn space). Indexes are rebuildable hints: a loaded index keeps only its
//! longest valid prefix (strictly increasing, inside the log) and the log is the truth.

/// Bytes per `.index` entry.
pub const OFFSET_ENTRY_BYTES: usize = 8;
/// Bytes per `.timeindex` entry.
pub const TIME_ENTRY_BYTES: usize = 16;

/// Offset → position entries of one segment, sorted, both strictly increasing.
#[derive(Debug, Clone, Default)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// Appends an entry; ignores one that would not increase both fields.
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        if let Some(&(o, p)) = self.entries.last() {
            if relative_offset <= o || position <= p {
                return;
            }
        } else if relative_offset == 0 || position == 0 {
            return; // implicit first entry
        }
        self.entries.push((relative_offset, position));
    }

    /// `(relative offset, position)` of the last indexed batch starting at or before
    /// `relative_offset` ((0, 0) when none).
    pub fn lookup(&self, relative_offset: u32) -> (u32, u32) {
        let i = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        if i == 0 {
            (0, 0)
        } else {
            self.entries[i - 1]
        }
    }

    /// The last entry, or (0, 0).
    pub fn last(&self) -> (u32, u32) {
        self.entries.last().copied().unwrap_or((0, 0))
    }

    /// Number of explicit entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no explicit entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many entries from index `from` on have a relative offset below `relative_end`.
    pub fn count_below(&self, from: usize, relative_end: u64) -> usize {
        self.entries.get(from..).map_or(0, |rest| {
            rest.iter().take_while(|&&(o, _)| u64::from(o) < relative_end).count()
        })
    }

    /// Drops entries at or after `position` (after the log was truncated there).
    pub fn truncate_at_position(&mut self, position: u64) {
        self.entries.retain(|&(_, p)| u64::from(p) < position);
    }

    /// Encodes entries `[from..]`.
    pub fn encode_from(&self, from: usize, out: &mut Vec<u8>) {
        for &(o, p) in &self.entries[from.min(self.entries.len())..] {
            out.extend_from_slice(&o.to_le_bytes());
            out.extend_from_slice(&p.to_le_bytes());
        }
    }

    /// Decodes the longest valid prefix of `bytes`, keeping only entries inside a log of
    /// `log_bytes` bytes.
    pub fn decode(bytes: &[u8], log_bytes: u64) -> Self {
        let mut index = OffsetIndex::default();
        for chunk in bytes.chunks_exact(OFFSET_ENTRY_BYTES) {
            let o = u32::from_le_bytes(chunk[0..4].try_into().expect("4"));
            let p = u32::from_le_bytes(chunk[4..8].try_into().expect("4"));
            let before = index.entries.len();
            if u64::from(p) >= log_bytes {
                break;
            }
            index.push(o, p);
            if index.entries.len() == before {
                break; // zero (end) or not increasing (damaged)
            }
        }
        index
    }
}

/// Timestamp → offset entries of one segment: the largest timestamp seen up to and
/// including the batch at a relative offset. Both fields non-decreasing / increasing.
#[derive(Debug, Clone, Default)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Appends an entry; ignores one that does not move forward.
    pub fn push(&mut self, max_timestamp_ms: i64, relative_offset: u32) {
        if let Some(&(t, o)) = self.entries.last() {
            // Same offset with a newer timestamp replaces nothing but records the new maximum
            // (the final entry written when a segment closes).
            if max_timestamp_ms < t
                || relative_offset < o
                || (relative_offset == o && max_timestamp_ms == t)
            {
                return;
            }
        }
        self.entries.push((max_timestamp_ms, relative_offset));
    }

    /// Relative offset from which a scan for the first record with timestamp >= `ts` may
    /// start: every batch before it has only older timestamps.
    pub fn scan_start(&self, timestamp_ms: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < timestamp_ms);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// Largest timestamp recorded, if any.
    pub fn max_timestamp_ms(&self) -> Option<i64> {
        self.entries.last().map(|&(t, _)| t)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many entries from index `from` on have a relative offset below `relative_end`.
    pub fn count_below(&self, from: usize, relative_end: u64) -> usize {
        self.entries.get(from..).map_or(0, |rest| {
            rest.iter().take_while(|&&(_, o)| u64::from(o) < relative_end).count()
        })
    }

    /// Drops entries for relative offsets at or after `relative_offset`.
    pub fn truncate_at_offset(&mut self, relative_offset: u32) {
        self.entries.retain(|&(_, o)| o < relative_offset);
    }

    /// Encodes entries `[from..]`.
    pub fn encode_from(&self, from: usize, out: &mut Vec<u8>) {
        for &(t, o) in &self.entries[from.min(self.entries.len())..] {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&o.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
        }
    }

    /// Decodes the longest valid prefix, keeping entries below `relative_offset_end`.
    pub fn decode(bytes: &[u8], relative_offset_end: u64) -> Self {
        let mut index = TimeIndex::default();
        for chunk in bytes.chunks_exact(TIME_ENTRY_BYTES) {
            let t = i64::from_le_bytes(chunk[0..8].try_into().expect("8"));
            let o = u32::from_le_bytes(chunk[8..12].try_into().expect("4"));
            let pad = u32::from_le_bytes(chunk[12..16].try_into().expect("4"));
            if chunk.iter().all(|&b| b == 0) || pad != 0 || u64::from(o) >= relative_offset_end {
                break;
            }
            let before = index.entries.len();
            index.push(t, o);
            if index.entries.len() == before {
                break;
            }
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_finds_floor_entry() {
        let mut ix = OffsetIndex::default();
        ix.push(0, 0); // implicit, ignored
        ix.push(10, 4096);
        ix.push(20, 8192);
        ix.push(15, 9000); // not increasing, ignored
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.lookup(5), (0, 0));
        assert_eq!(ix.lookup(10), (10, 4096));
        assert_eq!(ix.lookup(19), (10, 4096));
        assert_eq!(ix.lookup(1000), (20, 8192));
    }

    #[test]
    fn offset_round_trip_and_damage() {
        let mut ix = OffsetIndex::default();
        for i in 1..100u32 {
            ix.push(i * 3, i * 4096);
        }
        let mut bytes = Vec::new();
        ix.encode_from(0, &mut bytes);
        bytes.extend_from_slice(&[0; 64]); // preallocated tail
        assert_eq!(OffsetIndex::decode(&bytes, u64::MAX).len(), 99);
        // Entries beyond the log are dropped.
        assert_eq!(OffsetIndex::decode(&bytes, 50 * 4096).len(), 49);
        // A damaged entry ends the valid prefix.
        bytes[8 * 30..8 * 30 + 4].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(OffsetIndex::decode(&bytes, u64::MAX).len(), 30);
    }

    #[test]
    fn time_scan_start_and_round_trip() {
        let mut ix = TimeIndex::default();
        ix.push(100, 0);
        ix.push(200, 10);
        ix.push(200, 20);
        ix.push(300, 30);
        assert_eq!(ix.scan_start(50), 0);
        assert_eq!(ix.scan_start(100), 0);
        assert_eq!(ix.scan_start(250), 20);
        assert_eq!(ix.scan_start(1000), 30);
        let mut bytes = Vec::new();
        ix.encode_from(0, &mut bytes);
        assert_eq!(TimeIndex::decode(&bytes, 100).len(), 4);
        assert_eq!(TimeIndex::decode(&bytes, 25).len(), 3);
    }
}
