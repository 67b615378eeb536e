//! The journal task: one commit cycle after another, each taking what is queued as one
//! record and writing it with one O_DSYNC write at the end of the active file, with up to
//! `JournalConfig::writes_in_flight_max` records in flight at once, and at most
//! `JournalConfig::writes_per_s_max` started a second on average (`pace.rs`: a cycle over
//! the rate waits, gathering what arrives meanwhile into its record). The contract is the
//! journal module's (`mod.rs`).
//!
//! Records in flight together complete in order: a record's entries count as journaled
//! (members notified, acks sent) only once it and every record before it were written.
//! Replay reads a file's records in order and stops at the first that is not whole, so an
//! entry whose record landed after an earlier one that did not would be lost at the next
//! start: it must not have been acked. A record that needs a new file waits until every
//! record in flight completed (the old file's checkpoint needs their members' ends). A
//! failed write waits for the others in flight, then fails the journal with all of their
//! entries: whether a record written after the failed one landed does not matter, replay
//! stops before it.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Instant;

use glommio::task::JoinHandle;
use tracing::{info, warn};

use super::member::{Member, MemberKey};
use super::pace::WritePace;
use super::record;
use super::{closed_error, distinct_members, ActiveFile, Inner, Queued};
use crate::storage::error::IoError;
use crate::storage::io::{Disk, DiskFile, DISK_ALIGN};
use crate::storage::retry_pause::{RetryPause, RETRY_PAUSE_MS_MIN};
use crate::watermark::Watermark;

/// A file being prepared; cancelled if the journal task is (a crash).
struct Prepared<D: Disk>(Option<JoinHandle<Result<ActiveFile<D>, IoError>>>);

impl<D: Disk> Drop for Prepared<D> {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.cancel();
        }
    }
}

/// A record in flight: its entries and its write, which sets `done` and advances the
/// loop's `written` when it completes. Dropped unfinished (a crash), the write's task is
/// cancelled.
struct Flight {
    batch: Vec<Queued>,
    padded: u64,
    /// The commit cycle waited for more entries (`JournalConfig::gather_us`).
    gathered: bool,
    /// Its write started while an earlier record's was in flight.
    overlapped: bool,
    /// The commit cycle waited for its turn (`JournalConfig::writes_per_s_max`).
    paced: bool,
    done: Rc<RefCell<Option<Result<(), IoError>>>>,
    task: Option<JoinHandle<()>>,
}

impl Flight {
    fn is_done(&self) -> bool {
        self.done.borrow().is_some()
    }

    fn failed(&self) -> bool {
        matches!(*self.done.borrow(), Some(Err(_)))
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.cancel();
        }
    }
}

/// The journal task: see the module docs.
pub(super) async fn journal_loop<D: Disk>(j: Rc<Inner<D>>) {
    let mut active: Option<ActiveFile<D>> = None;
    // The next file, prepared in the background once the active one is half full, so a
    // commit cycle rarely waits for a file of zeros. The first is prepared at once: made
    // from zeros it takes ~120 ms here (64 MiB), which the first durable append after a
    // start waited for.
    let mut next = Prepared::<D>(Some(prepare(&j)));
    // The pause before the next try to create a file.
    let mut create_pause = RetryPause::default();
    // The next record's cycle waited for more entries.
    let mut gathered = false;
    // The pace of the writes, and whether the next record's cycle waited for it.
    let mut pace = WritePace::new(j.config.writes_per_s_max);
    let mut paced = false;
    let mut flights: VecDeque<Flight> = VecDeque::new();
    let flights_max = j.config.writes_in_flight_max.max(1);
    // Advanced by each record's write when it completes. A wait for a write does not wake
    // at every append queued meanwhile (each wake re-armed the gather timer: 11 % more CPU
    // at partitions-100).
    let written = Watermark::new(0);
    loop {
        let seen = j.signal.get();
        let written_seen = written.get();
        // Records complete in order.
        while flights.front().is_some_and(Flight::is_done) {
            let flight = flights.pop_front().expect("front exists");
            let result = flight.done.borrow_mut().take().expect("done");
            match result {
                Ok(()) => {
                    j.finish(flight, active.as_mut().expect("a record in flight has its file"))
                }
                Err(e) => {
                    while flights.iter().any(|f| !f.is_done()) {
                        written.wait_for(written.get() + 1).await;
                    }
                    let mut batch = Vec::new();
                    for mut f in std::iter::once(flight).chain(flights.drain(..)) {
                        batch.append(&mut f.batch);
                    }
                    j.fail(e, batch);
                    return;
                }
            }
        }
        if j.queue.borrow().is_empty() {
            if !flights.is_empty() {
                // An append (for the next record) or a completed write.
                futures_lite::future::or(
                    j.signal.wait_for(seen + 1),
                    written.wait_for(written_seen + 1),
                )
                .await;
                continue;
            }
            if j.closing.get() {
                if let Some(f) = active.take() {
                    j.start_checkpoint(f);
                }
                if let Some(Some(Ok(f))) = match next.0.take() {
                    Some(t) => Some(t.await),
                    None => None,
                } {
                    // Prepared and never written: it goes.
                    let ActiveFile { file, path, .. } = f;
                    let _ = file.close().await;
                    j.remove_quietly(&path, "an unused journal file").await;
                }
                return;
            }
            j.signal.wait_for(seen + 1).await;
            continue;
        }
        if !flights.is_empty()
            && (flights.len() >= flights_max
                || !j.next_record_fits(active.as_ref())
                || flights.iter().any(Flight::failed))
        {
            // Wait for a write to complete (a record that needs a new file waits for all;
            // nothing more is written after a failed write: the journal fails once the
            // records before it completed).
            written.wait_for(written_seen + 1).await;
            continue;
        }
        let pace_wait = if j.closing.get() { None } else { pace.wait(Instant::now()) };
        if pace_wait.is_some() {
            paced = true;
        }
        if let Some(wait) = pace_wait.or_else(|| j.gather_wait().inspect(|_| gathered = true)) {
            if flights.is_empty() {
                glommio::timer::sleep(wait).await;
            } else {
                // A write that completes meanwhile is finished at once.
                futures_lite::future::or(async { glommio::timer::sleep(wait).await }, async {
                    written.wait_for(written_seen + 1).await;
                })
                .await;
            }
            continue;
        }
        let batch = j.take_record();
        if batch.is_empty() {
            // Only entries of fenced or gone members were queued: no record, so its cycle's
            // waits count for none.
            (gathered, paced) = (false, false);
            continue;
        }
        let batch_bytes: usize = batch.iter().map(|q| q.bytes.len()).sum();
        j.in_flight_bytes.set(j.in_flight_bytes.get() + batch_bytes);
        let len = record::record_len(batch.iter().map(|q| q.bytes.len()));
        let padded = record::padded(len) as u64;
        if active.as_ref().is_none_or(|f| f.pos + padded > f.size) {
            debug_assert!(flights.is_empty(), "a new file while records are in flight");
            if let Some(old) = active.take() {
                j.start_checkpoint(old);
            }
            let created = if padded > j.config.file_bytes() {
                // Larger than a file: a file of its own (the prepared one waits).
                j.create_file(padded.next_multiple_of(DISK_ALIGN as u64)).await
            } else {
                match next.0.take() {
                    // A preparation that failed (a full disk at the start, say) is tried
                    // again now rather than reported: the disk may have room by now.
                    Some(t) => match t.await {
                        Some(Ok(f)) => Ok(f),
                        Some(Err(_)) if !j.crashed.get() => {
                            j.create_file(j.config.file_bytes()).await
                        }
                        Some(Err(e)) => Err(e),
                        None => Err(closed_error(&j.dir)),
                    },
                    None => j.create_file(j.config.file_bytes()).await,
                }
            };
            match created {
                Ok(f) => {
                    if create_pause.succeeded() {
                        info!(dir = %j.dir.display(), "journal file created again: appends are journaled again");
                        *j.no_space.borrow_mut() = None;
                    }
                    active = Some(f);
                }
                Err(e) if j.closing.get() => {
                    // Closing: no later try; what is queued is not journaled.
                    j.fail(e, batch);
                    return;
                }
                Err(e) => {
                    // Nothing of this record was written: it goes back to the head of the
                    // queue, unacked, and the file is tried again after a pause.
                    if !create_pause.failing() {
                        warn!(dir = %j.dir.display(), error = %e, "cannot create a journal file (disk full?); durable appends wait until it can be created");
                    }
                    let mut s = j.stats.get();
                    s.file_create_failures += 1;
                    j.stats.set(s);
                    j.in_flight_bytes.set(0);
                    // (Whatever failed: disk full is `DISK_FULL`, out of descriptors
                    // `RESOURCE_LIMIT`.)
                    *j.no_space.borrow_mut() = Some(e);
                    let waiting = {
                        let mut q = j.queue.borrow_mut();
                        for entry in batch.into_iter().rev() {
                            q.push_front(entry);
                        }
                        distinct_members(q.iter())
                    };
                    // Their producers waiting for room go on to be refused.
                    for m in waiting {
                        m.notify();
                    }
                    let until = std::time::Instant::now() + create_pause.failed();
                    while !j.closing.get() && std::time::Instant::now() < until {
                        glommio::timer::sleep(std::time::Duration::from_millis(RETRY_PAUSE_MS_MIN))
                            .await;
                    }
                    continue;
                }
            }
        }
        let f = active.as_mut().expect("opened above");
        let mut buf = f.file.alloc_write_buf(padded as usize);
        let seq = j.next_record_seq.get();
        {
            let refs: Vec<record::EntryRef<'_>> = batch
                .iter()
                .map(|q| record::EntryRef {
                    topic_id: q.member.topic_id,
                    partition: q.member.partition,
                    base_offset: q.base_offset,
                    next_offset: q.next_offset,
                    bytes: &q.bytes,
                })
                .collect();
            record::encode(buf.as_mut(), seq, &refs);
        }
        let started = Instant::now();
        pace.started(started);
        for q in &batch {
            // With the journal an append waits for its record, not its segment write.
            let queued = started.saturating_duration_since(q.enqueued);
            crate::stage_latency::record(crate::stage_latency::Stage::LogQueue, queued);
        }
        j.last_write.set(Some((started, batch.len())));
        let done = Rc::new(RefCell::new(None));
        let task = {
            let (jj, written, file, done, pos) =
                (j.clone(), written.clone(), f.file.clone(), done.clone(), f.pos);
            glommio::spawn_local(async move {
                // Not after a crash (the journal dropped before this task first ran).
                let result = match jj.alive() {
                    Ok(()) => file.write_at(buf, pos).await,
                    Err(e) => Err(e),
                };
                if result.is_ok() {
                    crate::stage_latency::record_since(
                        crate::stage_latency::Stage::WriteDsync,
                        started,
                    );
                }
                *done.borrow_mut() = Some(result);
                written.advance(written.get() + 1);
            })
            .detach()
        };
        f.pos += padded;
        j.next_record_seq.set(seq + 1);
        if next.0.is_none() && f.pos > f.size / 2 {
            next.0 = Some(prepare(&j));
        }
        let gathered = std::mem::take(&mut gathered);
        let paced = std::mem::take(&mut paced);
        let overlapped = !flights.is_empty();
        flights.push_back(Flight {
            batch,
            padded,
            gathered,
            overlapped,
            paced,
            done,
            task: Some(task),
        });
    }
}

/// Makes the journal's next file in the background.
fn prepare<D: Disk>(j: &Rc<Inner<D>>) -> JoinHandle<Result<ActiveFile<D>, IoError>> {
    let jj = j.clone();
    let size = j.config.file_bytes();
    glommio::spawn_local(async move { jj.create_file(size).await }).detach()
}

impl<D: Disk> Inner<D> {
    /// Whether the record taken next would fit the active file after the records in flight.
    fn next_record_fits(&self, active: Option<&ActiveFile<D>>) -> bool {
        let Some(f) = active else { return false };
        let (_, len) = self.next_record();
        f.pos + record::padded(len) as u64 <= f.size
    }

    /// A record was written and every record before it: its entries are journaled.
    fn finish(&self, mut flight: Flight, f: &mut ActiveFile<D>) {
        let mut s = self.stats.get();
        s.records += 1;
        s.entries += flight.batch.len() as u64;
        s.records_gathered += u64::from(flight.gathered);
        s.records_overlapped += u64::from(flight.overlapped);
        s.records_paced += u64::from(flight.paced);
        s.record_bytes += flight.padded;
        self.stats.set(s);
        let mut touched: BTreeMap<MemberKey, Rc<Member>> = BTreeMap::new();
        for q in std::mem::take(&mut flight.batch) {
            self.in_flight_bytes.set(self.in_flight_bytes.get() - q.bytes.len());
            q.member.dequeued(q.bytes.len());
            let key = q.member.key();
            q.member.journaled.set(q.member.journaled.get().max(q.next_offset));
            let slot = f.members.entry(key).or_insert_with(|| (q.member.clone(), 0));
            slot.1 = slot.1.max(q.next_offset);
            touched.entry(key).or_insert(q.member);
        }
        for m in touched.into_values() {
            m.notify();
        }
    }
}

/// The default of `JournalConfig::writes_in_flight_max`.
pub const WRITES_IN_FLIGHT_MAX: usize = 2;
