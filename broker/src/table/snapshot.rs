//! Writing a table's snapshot a step at a time ([`Table::write_snapshot`]): the table holds
//! still while its entries are walked (`Resume`), so the file is the table at one offset;
//! each step is written off the reactor thread (`state_snapshot::SnapshotWriter`).

use std::ops::Bound;

use super::{Contents, Table};
use crate::state_snapshot;

impl Table {
    /// Stores the table's snapshot in `dir` as of what it applied, unless nothing changed
    /// since the last one (or the table is unavailable): a step of
    /// [`state_snapshot::SNAPSHOT_STEP_BYTES`] at a time, each written off the reactor
    /// thread, so a large table neither holds the shard for the whole encoding nor needs a
    /// copy of itself in memory. Meanwhile the table holds still (`snapshotting`: [`follow`]
    /// waits to apply more, nothing is forgotten; reads go on), so the snapshot is the table
    /// at one offset, as a state table's aggregates (not idempotent) and a projection's
    /// change feed (each change's previous offset) need. Everything it covers is durable:
    /// the table applies visible records only.
    pub async fn write_snapshot(&self, dir: std::path::PathBuf) -> std::io::Result<()> {
        let covered = self.applied.get();
        if covered == self.snapshot_offset.get() || self.over_budget.get() || self.closed.get() {
            return Ok(());
        }
        let resume = Resume::new(self);
        let file_path = dir.join(&self.snapshot_file);
        let mut file =
            state_snapshot::SnapshotWriter::create(dir, self.snapshot_file.clone()).await?;
        let mut step = self.snapshot_head(covered);
        let mut cursor = Cursor::Start;
        loop {
            if self.closed.get() || self.over_budget.get() {
                file.abandon().await;
                return Ok(());
            }
            let done = self.snapshot_step(&mut cursor, &mut step);
            if done {
                self.snapshot_tail(&mut step, file.crc());
            }
            if let Err(e) = file.write(std::mem::take(&mut step)).await {
                file.abandon().await;
                return Err(e);
            }
            if done {
                break;
            }
        }
        // Every byte is written: the table moves on while the file is synced and renamed.
        drop(resume);
        let marked = self.snapshot_offset.get();
        file.finish().await?;
        if self.closed.get() {
            // Closed meanwhile (a state table deleted): its snapshot goes with it (`close`
            // may have removed the file before the rename).
            let _ = std::fs::remove_file(file_path);
            return Ok(());
        }
        // Unless keys were forgotten meanwhile (`forget_before` marked it for another).
        if self.snapshot_offset.get() == marked {
            self.snapshot_offset.set(covered);
        }
        Ok(())
    }

    /// What a snapshot covering `covered` starts with: a key snapshot's header (binary,
    /// `state_snapshot::encode_keys`), or `AggregatesSnapshot`'s JSON up to its groups.
    pub(super) fn snapshot_head(&self, covered: u64) -> Vec<u8> {
        match &*self.contents.borrow() {
            Contents::Latest(keys) => state_snapshot::keys_header(covered, keys.len()),
            Contents::Aggregates { aggregator, .. } => {
                let settings = serde_json::to_string(aggregator.settings()).expect("plain data");
                format!("{{\"covered_offset\":{covered},\"settings\":{settings},\"groups\":[")
                    .into_bytes()
            }
        }
    }

    /// Ends the last step of a snapshot: the CRC32C of everything (`crc_before`: of what
    /// the steps before it held), or the end of the JSON.
    pub(super) fn snapshot_tail(&self, step: &mut Vec<u8>, crc_before: u32) {
        match &*self.contents.borrow() {
            Contents::Latest(_) => {
                let crc = crc32c::crc32c_append(crc_before, step);
                step.extend_from_slice(&crc.to_le_bytes());
            }
            Contents::Aggregates { .. } => step.extend_from_slice(b"]}"),
        }
    }

    /// Appends the entries after `cursor` to `step` until it holds
    /// [`state_snapshot::SNAPSHOT_STEP_BYTES`], and moves `cursor` past them; true once the
    /// last entry is in.
    pub(super) fn snapshot_step(&self, cursor: &mut Cursor, step: &mut Vec<u8>) -> bool {
        let full = |step: &Vec<u8>| step.len() >= state_snapshot::SNAPSHOT_STEP_BYTES;
        match (&*self.contents.borrow(), &mut *cursor) {
            (Contents::Latest(keys), Cursor::Start | Cursor::Key(_)) => {
                let from = match &*cursor {
                    Cursor::Key(k) => Bound::Excluded(k.as_slice()),
                    _ => Bound::Unbounded,
                };
                for (key, offset) in keys.range::<[u8], _>((from, Bound::Unbounded)) {
                    state_snapshot::push_key_entry(step, key, *offset);
                    if full(step) {
                        *cursor = Cursor::Key(key.clone());
                        return false;
                    }
                }
                true
            }
            (Contents::Aggregates { groups, .. }, Cursor::Start | Cursor::Group(..)) => {
                let from = match &*cursor {
                    Cursor::Group(k, w) => Bound::Excluded((k.clone(), *w)),
                    _ => Bound::Unbounded,
                };
                let mut first = matches!(cursor, Cursor::Start);
                for (group, a) in groups.range((from, Bound::Unbounded)) {
                    if !std::mem::take(&mut first) {
                        step.push(b',');
                    }
                    serde_json::to_writer(&mut *step, &(&group.0, group.1, a)).expect("plain data");
                    if full(step) {
                        *cursor = Cursor::Group(group.0.clone(), group.1);
                        return false;
                    }
                }
                true
            }
            _ => unreachable!("a table's contents keep their kind"),
        }
    }
}

/// Where a snapshot being written goes on ([`Table::write_snapshot`]).
pub(super) enum Cursor {
    /// At the first entry.
    Start,
    /// After this key (a projection).
    Key(Vec<u8>),
    /// After this group and window (a state table).
    Group(Vec<u8>, i64),
}

/// One snapshot walking the table: counted in `snapshotting` until dropped (its last step
/// written, or its task cancelled), which lets the table move again once none is.
struct Resume<'a>(&'a Table);

impl<'a> Resume<'a> {
    fn new(table: &'a Table) -> Self {
        table.snapshotting.set(table.snapshotting.get() + 1);
        Resume(table)
    }
}

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        self.0.snapshotting.set(self.0.snapshotting.get() - 1);
        self.0.snapshot_ends.advance(self.0.snapshot_ends.get() + 1);
    }
}
