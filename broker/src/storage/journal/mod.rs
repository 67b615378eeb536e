//! The shard journal: one write and one device flush per commit cycle for all of a shard's
//! partitions (issue 19). On by default (`shard_journal`); without it every partition makes its
//! own appends durable (O_DSYNC writes or fdatasync of its segment).
//!
//! # Contract
//! - Partition logs joined to the journal ([`ShardJournal::join`]) hand it the stored bytes
//!   of every append at enqueue, in offset order ([`JournalLink::submit`]; no copy until the
//!   record buffer). The journal task (`writer.rs`) writes everything queued as one record
//!   (`record.rs`) with one O_DSYNC write at the end of its current file; what arrives
//!   meanwhile goes into the next record, written at once while up to
//!   [`JournalConfig::writes_in_flight_max`] records are in flight, and at most
//!   [`JournalConfig::writes_per_s_max`] start a second on average (`pace.rs`; a cycle over
//!   the rate waits and takes what arrived meanwhile). Records complete in
//!   order: once a record and every record before it completed, each member's journaled
//!   end is the end of its entries in it, and the member is notified; its log counts an
//!   append durable (acked, visible to readers) once it is journaled, before its segment
//!   write.
//! - Files: `<dir>/<20-digit sequence>.journal`, created at [`JournalConfig::file_bytes`]
//!   filled with zeros and synced (with the directory) before the first record, so the
//!   O_DSYNC writes overwrite allocated blocks (a device flush, no filesystem journal
//!   commit). Files are made in the background: the first when the journal opens (from
//!   zeros it takes ~120 ms for 64 MiB here, which the first durable append after a start
//!   waited for), the next once the active one is half full; one prepared and never
//!   written goes at close. A record holds at most half a file, or one entry however large; one larger
//!   than a file gets a file of its own size (the configured size is not raised for the
//!   largest batch). A record that does not fit ends the file: a new one is started and the old
//!   one is checkpointed: every member with entries in it is asked to sync its segment
//!   past them (`want_synced`), and the file is removed once all did (`synced`). A member
//!   that is fenced, closed without syncing or gone keeps the file until the next start
//!   replays it (`replay.rs`).
//! - Recycling (unless [`JournalConfig::recycle`] is off): a checkpointed file of the configured size is kept as a spare (at most
//!   [`SPARE_FILES_MAX`]) instead of removed, and the next file is made from it rather than
//!   from zeros: its first block is overwritten with zeros by one O_DSYNC write, then it is
//!   renamed to the next sequence number and the directory synced. Its blocks stay
//!   allocated and written, so later O_DSYNC writes still need no filesystem journal
//!   commit, and the device is spared a file of zeros per file of records. What it held
//!   before cannot be replayed as new: a crash before its first new record leaves a zero
//!   first block (nothing read from it), and after new records the old record that follows
//!   is not whole where they end or has a lower sequence number (records are numbered up
//!   from 0 by each run, and only a file this run made is recycled): replay cuts the file
//!   there. Spares go at close.
//! - Entries still queued for a member that was fenced (their appends failed) or closed
//!   or dropped (its segments hold what it kept) are dropped unwritten: they would bring a
//!   failed append back at the next start and keep their file until then.
//! - A failed journal write fences every member that had entries queued or in flight, and
//!   every member that submits later: nothing more becomes durable through this journal
//!   until the process restarts (the state of the failed record is unknown, and the O_DSYNC
//!   descriptor reports a failure once).
//! - A failed file creation (disk full) writes no record, so nothing is fenced: the record's
//!   entries go back to the head of the queue, unacked, and the file is tried again after a
//!   pause (10 ms doubling to 1 s); their acks wait and go on once a file could be made,
//!   and meanwhile members refuse new appends with `DISK_FULL` ([`JournalLink::no_space`]),
//!   so the queue does not grow and producers hear why. At close it fences instead.
//! - Dropping the [`ShardJournal`] without `close` is a crash: its tasks stop where they are,
//!   and one that runs a moment longer (glommio drops a cancelled task's future later)
//!   touches no file after the drop (the `crashed` flag, checked before each file operation).

mod checkpoint;
mod files;
mod member;
mod pace;
mod record;
mod replay;
mod writer;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::task::JoinHandle;
use tracing::warn;

use super::bytes::ByteView;
use super::error::IoError;
use super::filesystem_sync::FilesystemSync;
use super::io::{Disk, DISK_ALIGN};
use crate::watermark::Watermark;

pub use member::Member;
use member::MemberKey;
pub use pace::PACE_BURST_US;
#[cfg(test)]
pub(crate) use record::{decode as decode_record, encode as encode_record, padded, EntryRef};
pub use replay::{JournalFiles, JournalRead, JournalReplay, Owner, ReplayEntry};
pub use writer::WRITES_IN_FLIGHT_MAX;

/// Name of a journal file with sequence number `seq`.
pub fn journal_file_name(seq: u64) -> String {
    format!("{seq:020}.journal")
}

/// The sequence number of a journal file's name.
fn parse_file_name(name: &str) -> Option<u64> {
    name.strip_suffix(".journal")?.parse().ok()
}

/// Checkpointed files kept for reuse (see the module docs).
pub const SPARE_FILES_MAX: usize = 2;

/// Bytes of zeros written per I/O while a new journal file is prepared.
const ZERO_WRITE_BYTES: usize = 1 << 20;

/// Largest journal file (`shard_journal_file_bytes` is validated against it): a record is
/// at most half a file or one batch of the wire's maximum, its length a `u32` (`record.rs`).
pub const FILE_BYTES_MAX: u64 = 4 << 30;
/// Smallest journal file (`shard_journal_file_bytes` is validated against it).
pub const FILE_BYTES_MIN: u64 = 64 << 10;

/// Settings of one shard's journal.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// Size of each journal file (a record larger than a file gets a file of its own size).
    pub file_bytes: u64,
    /// Largest batch a member appends (the broker: the wire's maximum, since a topic may
    /// allow more than the broker's default and replay takes back what an earlier limit
    /// allowed). A larger one is refused at submit: its record could outgrow the file.
    pub batch_bytes_max: usize,
    /// Keep checkpointed files as spares and make new files from them (see the module
    /// docs); false: every checkpointed file is removed and every new one filled with zeros.
    pub recycle: bool,
    /// Under load, how long a commit cycle waits for more entries before it writes: until
    /// the oldest queued entry is this old or [`GATHER_BYTES_MAX`] are queued (0: write at
    /// once). Under load means the last record held at least `gather_entries_min`
    /// entries and the oldest arrived less than this after its write started; the first
    /// entry after a quiet spell is written at once. Fewer, larger records under load: less
    /// CPU per byte with many partitions, acks up to this much later
    /// (`perf/results/2026-12-05-journal-gather`, `…-journal-gather-load`).
    pub gather_us: u64,
    /// Entries the last record must have held for a cycle to gather (the broker:
    /// [`GATHER_ENTRIES_MIN`]; the simulation also 1).
    pub gather_entries_min: usize,
    /// Checkpoints of at least `checkpoint_syncfs_members_min` members sync their segments
    /// with one syncfs of the data filesystem where the disk can be trusted to report its
    /// failure (`checkpoint.rs`); false, or fewer members: each fdatasyncs its own.
    pub checkpoint_syncfs: bool,
    /// See `checkpoint_syncfs` (the broker: [`CHECKPOINT_SYNCFS_MEMBERS_MIN`]).
    pub checkpoint_syncfs_members_min: usize,
    /// Segment writes of all members in flight at once (at least 1; the broker:
    /// [`SEGMENT_WRITES_MAX`] by default). See [`JournalLink::segment_writes`].
    pub segment_writes_max: usize,
    /// Records written at once (at least 1; the broker: [`WRITES_IN_FLIGHT_MAX`] by
    /// default): entries that arrive while a record is written go out in the next at once
    /// instead of waiting for it (`writer.rs`; they are acked in order).
    pub writes_in_flight_max: usize,
    /// Records started per second at most, on average (0: no limit; the broker:
    /// [`WRITES_PER_S_MAX`] by default): under load each O_DSYNC write then carries more,
    /// and the device sees fewer writes and flushes; below it nothing waits (`pace.rs`).
    pub writes_per_s_max: u64,
}

/// Default of `JournalConfig::writes_per_s_max`: no limit. At fixed-rate-16p-1kb (100 MB/s,
/// ~3,500 records a second unpaced) 2,000 took 7 % less CPU per GB and 1,000 25 % less, but
/// e2e p50 went from 0.43 ms to 0.8 / 1.2 ms, and the host's stalls kept the p99 where it
/// was (`perf/results/2026-12-07-journal-pace`): a setting for devices that limit operations,
/// not a default.
pub const WRITES_PER_S_MAX: u64 = 0;

/// Default of `JournalConfig::segment_writes_max`: at partitions-1000 a checkpoint's burst of
/// ~1,000 segment writes, unlimited, held up the journal's own writes (e2e p99 31–67 ms);
/// at 64: 14–18 ms, no more CPU; at 2: 10–13 ms but 0.12 of a core more, per-write costs no
/// longer shared by a batch (`perf/results/2026-12-05-segment-write-limit`).
pub const SEGMENT_WRITES_MAX: usize = 64;

/// Members a checkpoint must have to sync the filesystem instead of each its segment: at
/// partitions-100 per-partition fdatasyncs kept e2e p99 at 2.6–3.7 ms where one syncfs
/// made it 11–12 ms (its filesystem journal commit holds up the journal's writes), while at
/// partitions-1000 the syncfs halved it and used 15 % less CPU
/// (`perf/results/2026-12-05-checkpoint-syncfs`); the crossover lies between, unmeasured.
pub const CHECKPOINT_SYNCFS_MEMBERS_MIN: usize = 256;

/// Queued bytes that end a commit cycle's wait for more entries (`JournalConfig::gather_us`).
pub const GATHER_BYTES_MAX: usize = 64 << 10;

/// Entries the last record must have held for a commit cycle to wait for more
/// (`JournalConfig::gather_us`): fewer means appends arrive too sparsely for a wait to
/// gather any (at 1,000 msg/s over 16 partitions records hold one entry, at partitions-100
/// about eleven; waiting at 1,000 msg/s raised e2e p99 from 0.9 to 1.2–1.5 ms,
/// `perf/results/2026-12-05-journal-gather-load`).
pub const GATHER_ENTRIES_MIN: usize = 4;

impl JournalConfig {
    /// Largest record of several entries: half a file (a record always takes one entry,
    /// however large: that one may get a file of its own).
    fn record_bytes_max(&self) -> usize {
        (self.file_bytes() / 2) as usize
    }

    /// Size of each file: the configured size, aligned, at most [`FILE_BYTES_MAX`]. A
    /// record that does not fit a file of this size (a batch near the largest) is written
    /// to a file made for it alone.
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes.min(FILE_BYTES_MAX).next_multiple_of(DISK_ALIGN as u64)
    }
}

/// Counters of one journal.
#[derive(Debug, Default, Clone, Copy)]
pub struct JournalStats {
    /// Records written (one O_DSYNC write each).
    pub records: u64,
    /// Entries in them.
    pub entries: u64,
    /// Bytes written for records, padding included.
    pub record_bytes: u64,
    /// Files created (filled with zeros).
    pub files_created: u64,
    /// Files made from a checkpointed spare instead of created.
    pub files_recycled: u64,
    /// Files removed after their checkpoint.
    pub files_removed: u64,
    /// Failed tries to create a file (disk full), each tried again later.
    pub file_create_failures: u64,
    /// Records whose commit cycle waited for more entries (`JournalConfig::gather_us`).
    pub records_gathered: u64,
    /// Records whose write started while an earlier record's was in flight
    /// (`JournalConfig::writes_in_flight_max`).
    pub records_overlapped: u64,
    /// Records whose commit cycle waited for its turn (`JournalConfig::writes_per_s_max`).
    pub records_paced: u64,
    /// Filesystem syncs (checkpoints' syncfs) that succeeded.
    pub filesystem_syncs: u64,
    /// 1 once a filesystem sync failed (the first failure is final).
    pub filesystem_sync_failures: u64,
}

/// A checkpoint task, with a flag set when it ended.
type Checkpoint = (JoinHandle<()>, Rc<Cell<bool>>);

/// A log's tie to its shard's journal. Dropping it (the log is gone) closes the member's
/// `synced`: checkpoints stop waiting for it.
pub struct JournalLink<D: Disk> {
    inner: Rc<Inner<D>>,
    member: Rc<Member>,
}

impl<D: Disk> JournalLink<D> {
    /// The member this log is.
    pub(crate) fn member(&self) -> &Rc<Member> {
        &self.member
    }

    /// Permits for members' segment writes: a writer holds one while its write is in the
    /// kernel. The journal makes appends durable, so segment writes are background work;
    /// a checkpoint wants every member's written at once, and that burst, unlimited, queues
    /// ahead of the journal's own writes in the kernel (the same io_uring workers and
    /// completion work on the shard's core). No permit is held while waiting for another.
    pub(crate) fn segment_writes(&self) -> Rc<glommio::sync::Semaphore> {
        self.inner.segment_writes.clone()
    }

    /// Why appends are refused for lack of space, if they are: the journal cannot create
    /// its next file (see the module docs).
    pub(crate) fn no_space(&self) -> Option<IoError> {
        self.inner.no_space.borrow().clone()
    }

    /// Queues an append's stored bytes for the next record. Appends of one member must be
    /// submitted in offset order. An error means the journal failed: the caller fences.
    /// `enqueued`: when the append was taken (the `log_queue` stage starts there).
    pub(crate) fn submit(
        &self,
        base_offset: u64,
        next_offset: u64,
        bytes: ByteView,
        enqueued: std::time::Instant,
    ) -> Result<(), IoError> {
        if let Some(e) = self.inner.failed.borrow().clone() {
            return Err(e);
        }
        let refuse = |message: String| {
            Err(IoError::Other {
                op: "journal submit",
                path: self.inner.dir.display().to_string(),
                errno: None,
                message,
            })
        };
        if self.inner.closing.get() {
            // The journal task writes nothing more: this append would never be journaled.
            return refuse("the shard journal is closed".into());
        }
        if bytes.len() > self.inner.config.batch_bytes_max {
            return refuse(format!(
                "a batch of {} bytes is larger than the journal's {} (its record could outgrow the file)",
                bytes.len(),
                self.inner.config.batch_bytes_max
            ));
        }
        self.member.queued_bytes.set(self.member.queued_bytes.get() + bytes.len());
        self.inner.queue.borrow_mut().push_back(Queued {
            member: self.member.clone(),
            base_offset,
            next_offset,
            bytes,
            enqueued,
        });
        self.inner.signal.advance(self.inner.signal.get() + 1);
        Ok(())
    }
}

impl<D: Disk> Drop for JournalLink<D> {
    fn drop(&mut self) {
        self.member.synced.close();
    }
}

struct Queued {
    member: Rc<Member>,
    base_offset: u64,
    next_offset: u64,
    bytes: ByteView,
    /// When it was submitted (the `log_queue` stage ends when its record is written).
    enqueued: std::time::Instant,
}

struct Inner<D: Disk> {
    disk: D,
    dir: PathBuf,
    config: JournalConfig,
    queue: RefCell<VecDeque<Queued>>,
    signal: Watermark,
    failed: RefCell<Option<IoError>>,
    /// The last try to create a file failed (disk full): members refuse new appends until
    /// one succeeds.
    no_space: RefCell<Option<IoError>>,
    closing: Cell<bool>,
    /// Bytes of the entries of the records being written.
    in_flight_bytes: Cell<usize>,
    /// When the last record's write started, and its entry count (whether a commit cycle
    /// gathers, `JournalConfig::gather_us`).
    last_write: Cell<Option<(std::time::Instant, usize)>>,
    next_file_seq: Cell<u64>,
    next_record_seq: Cell<u64>,
    stats: Cell<JournalStats>,
    /// Checkpoints running, each with a flag set when it ended.
    checkpoints: RefCell<Vec<Checkpoint>>,
    /// Checkpointed files of the configured size, kept for reuse (see the module docs).
    spare: RefCell<Vec<PathBuf>>,
    /// Set when the journal is dropped without `close` (a crash): a task that outlives the
    /// drop for a moment (a file being prepared, a checkpoint) touches no file after it.
    crashed: Cell<bool>,
    /// The data filesystem's sync, shared by the members on it (`checkpoint_syncfs`).
    fs_sync: Option<FilesystemSync<D>>,
    /// See [`JournalLink::segment_writes`].
    segment_writes: Rc<glommio::sync::Semaphore>,
}

/// The file records go to now.
struct ActiveFile<D: Disk> {
    file: Rc<D::File>,
    path: PathBuf,
    pos: u64,
    /// Its size (records end at or before it).
    size: u64,
    /// Members with entries in it, with the end of their entries (ordered by key, so a
    /// seeded simulation replays exactly).
    members: BTreeMap<MemberKey, (Rc<Member>, u64)>,
}

/// See the module docs. Owned by one shard; dropping it without `close` is a crash.
pub struct ShardJournal<D: Disk> {
    inner: Rc<Inner<D>>,
    task: RefCell<Option<JoinHandle<()>>>,
}

impl<D: Disk> ShardJournal<D> {
    /// Starts the journal in `dir` (created if missing). Files already there (an earlier
    /// run's, replayed by [`JournalRead`]) are left alone; new files number after every
    /// file in `dir` and in its sibling shard directories, so sequence numbers follow time
    /// across shards (a partition that moved keeps its newest entries in the newest file).
    pub async fn open(disk: D, dir: PathBuf, config: JournalConfig) -> Result<Self, IoError> {
        Self::open_after(disk, dir, config, None).await
    }

    /// [`ShardJournal::open`], numbering new files after `seen` as well: the highest
    /// sequence an earlier read found ([`JournalReplay::last_file_seq`]). Other shards may
    /// already have removed those files (`JournalReplay::retire`); without it a new file
    /// could take the name of a removed one of the earlier run.
    pub async fn open_after(
        disk: D,
        dir: PathBuf,
        config: JournalConfig,
        seen: Option<u64>,
    ) -> Result<Self, IoError> {
        disk.create_dir_all(&dir).await?;
        let mut dirs = vec![dir.clone()];
        if let Some(root) = dir.parent() {
            for name in disk.list_dir(root).await? {
                if name.starts_with("shard-") && root.join(&name) != dir {
                    dirs.push(root.join(name));
                }
            }
        }
        let mut last = seen;
        for d in &dirs {
            let names = match disk.list_dir(d).await {
                Ok(names) => names,
                // Another shard's directory, just removed (stale, `JournalReplay::retire`).
                Err(IoError::NotFound { .. }) if d != &dir => continue,
                Err(e) => return Err(e),
            };
            last = last.max(names.iter().filter_map(|n| parse_file_name(n)).max());
        }
        let fs_sync = match config.checkpoint_syncfs {
            true => {
                disk.open_filesystem(&dir).await?.map(|fs| FilesystemSync::new(disk.clone(), fs))
            }
            false => None,
        };
        let segment_writes =
            Rc::new(glommio::sync::Semaphore::new(config.segment_writes_max.max(1) as u64));
        let inner = Rc::new(Inner {
            segment_writes,
            disk,
            dir,
            config,
            queue: RefCell::new(VecDeque::new()),
            signal: Watermark::new(0),
            failed: RefCell::new(None),
            no_space: RefCell::new(None),
            closing: Cell::new(false),
            in_flight_bytes: Cell::new(0),
            last_write: Cell::new(None),
            next_file_seq: Cell::new(last.map_or(0, |s| s + 1)),
            next_record_seq: Cell::new(0),
            stats: Cell::new(JournalStats::default()),
            checkpoints: RefCell::new(Vec::new()),
            spare: RefCell::new(Vec::new()),
            crashed: Cell::new(false),
            fs_sync,
        });
        let task = glommio::spawn_local(writer::journal_loop(inner.clone())).detach();
        Ok(ShardJournal { inner, task: RefCell::new(Some(task)) })
    }

    /// Joins partition `partition` of topic incarnation `topic_id`, whose log ends (durable
    /// in its segments) at `end_offset`.
    pub fn join(&self, topic_id: u64, partition: u32, end_offset: u64) -> JournalLink<D> {
        let member = Rc::new(Member {
            topic_id,
            partition,
            journaled: Cell::new(end_offset),
            queued_bytes: Cell::new(0),
            synced: Watermark::new(end_offset),
            want_synced: Watermark::new(end_offset),
            by_filesystem: Cell::new(false),
            notify: RefCell::new(None),
            on_failed: RefCell::new(None),
        });
        JournalLink { inner: self.inner.clone(), member }
    }

    /// The filesystem sync a member whose segments are in `dir` uses, if checkpoints sync
    /// the filesystem and `dir` is on it.
    pub(crate) async fn filesystem_sync_for(
        &self,
        dir: &Path,
    ) -> Result<Option<FilesystemSync<D>>, IoError> {
        match &self.inner.fs_sync {
            Some(fs) if fs.covers(dir).await? => Ok(Some(fs.clone())),
            _ => Ok(None),
        }
    }

    /// Counters.
    pub fn stats(&self) -> JournalStats {
        let mut stats = self.inner.stats.get();
        if let Some(fs) = &self.inner.fs_sync {
            stats.filesystem_syncs = fs.completed();
            stats.filesystem_sync_failures = u64::from(fs.failed().is_some());
        }
        stats
    }

    /// Bytes of entries queued or in flight.
    pub fn queued_bytes(&self) -> usize {
        self.inner.queue_bytes() + self.inner.in_flight_bytes.get()
    }

    /// The directory of its files.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Writes what is queued and checkpoints the last file (removed if every member in it
    /// synced: close the partition logs first). Returns the journal's failure, if any.
    pub async fn close(&self) -> Result<(), IoError> {
        self.inner.closing.set(true);
        self.inner.signal.advance(self.inner.signal.get() + 1);
        let task = self.task.borrow_mut().take();
        if let Some(t) = task {
            t.await;
        }
        let checkpoints: Vec<_> = self.inner.checkpoints.borrow_mut().drain(..).collect();
        for (t, _) in checkpoints {
            t.await;
        }
        let spare: Vec<PathBuf> = self.inner.spare.borrow_mut().drain(..).collect();
        if !spare.is_empty() {
            for path in &spare {
                self.inner.remove_quietly(path, "a spare journal file").await;
            }
            if let Err(e) = self.inner.disk.sync_dir(&self.inner.dir).await {
                warn!(dir = %self.inner.dir.display(), error = %e, "cannot sync the journal directory");
            }
        }
        match self.inner.failed.borrow().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl<D: Disk> Drop for ShardJournal<D> {
    fn drop(&mut self) {
        self.inner.crashed.set(true);
        if let Some(t) = self.task.borrow_mut().take() {
            t.cancel();
        }
        for (t, _) in self.inner.checkpoints.borrow_mut().drain(..) {
            t.cancel();
        }
    }
}

/// The members of `entries`, each once, in the order they first appear.
fn distinct_members<'a>(entries: impl IntoIterator<Item = &'a Queued>) -> Vec<Rc<Member>> {
    let mut members: Vec<Rc<Member>> = Vec::new();
    for q in entries {
        if !members.iter().any(|m| Rc::ptr_eq(m, &q.member)) {
            members.push(q.member.clone());
        }
    }
    members
}

fn closed_error(dir: &Path) -> IoError {
    IoError::Other {
        op: "create journal file",
        path: dir.display().to_string(),
        errno: None,
        message: "cancelled".into(),
    }
}

impl<D: Disk> Inner<D> {
    /// Bytes of the entries queued (not those in flight).
    fn queue_bytes(&self) -> usize {
        self.queue.borrow().iter().map(|q| q.bytes.len()).sum()
    }

    /// How long the commit cycle still waits for more entries (`JournalConfig::gather_us`):
    /// until the oldest queued entry is that old. Only under load: `None` (write now) when
    /// the last record held fewer than `gather_entries_min` entries, when the oldest entry
    /// arrived `gather_us` or more after that record's write started (a quiet spell), when
    /// no record was written yet, once `GATHER_BYTES_MAX` are queued, or when the journal
    /// closes. An entry so waits at most `gather_us`.
    fn gather_wait(&self) -> Option<std::time::Duration> {
        if self.config.gather_us == 0 || self.closing.get() {
            return None;
        }
        let oldest = self.queue.borrow().front()?.enqueued;
        let gather = std::time::Duration::from_micros(self.config.gather_us);
        let (last, entries) = self.last_write.get()?;
        if entries < self.config.gather_entries_min
            || oldest.saturating_duration_since(last) >= gather
            || self.queue_bytes() >= GATHER_BYTES_MAX
        {
            return None;
        }
        gather.checked_sub(oldest.elapsed()).filter(|d| !d.is_zero())
    }

    /// The next record as [`Inner::take_record`] takes it: how many queued entries it spans
    /// (from the front, dropped ones included) and its length (`record::record_len` of the
    /// entries it keeps).
    pub(super) fn next_record(&self) -> (usize, usize) {
        let max = self.config.record_bytes_max();
        let (mut spans, mut kept, mut len) = (0, 0, record::HEADER_BYTES);
        for q in self.queue.borrow().iter() {
            if !q.member.synced.is_closed() {
                let add = record::ENTRY_HEADER_BYTES + q.bytes.len();
                if kept > 0 && len + add > max {
                    break;
                }
                len += add;
                kept += 1;
            }
            spans += 1;
        }
        (spans, len)
    }

    /// Takes queued entries for one record: at most `record_bytes_max`, at least one unless
    /// none is left. Entries of a member whose `synced` closed (fenced: their appends
    /// failed; or closed or gone: its segments hold what it kept) are dropped, not
    /// journaled: a failed append must not come back at the next start, and a file must
    /// not be kept for a member that will never sync.
    fn take_record(&self) -> Vec<Queued> {
        let (spans, _) = self.next_record();
        let mut taken = Vec::new();
        for q in self.queue.borrow_mut().drain(..spans) {
            if q.member.synced.is_closed() {
                q.member.dequeued(q.bytes.len());
            } else {
                taken.push(q);
            }
        }
        taken
    }

    /// An error once the journal was dropped without `close` (see `crashed`).
    fn alive(&self) -> Result<(), IoError> {
        match self.crashed.get() {
            true => Err(closed_error(&self.dir)),
            false => Ok(()),
        }
    }

    /// The journal failed: fence every member depending on it, now and later.
    fn fail(&self, e: IoError, batch: Vec<Queued>) {
        warn!(dir = %self.dir.display(), error = %e, "journal write failed; its partitions are fenced until restart");
        *self.failed.borrow_mut() = Some(e.clone());
        self.in_flight_bytes.set(0);
        let queued: Vec<Queued> = self.queue.borrow_mut().drain(..).collect();
        let entries: Vec<Queued> = batch.into_iter().chain(queued).collect();
        for q in &entries {
            q.member.dequeued(q.bytes.len());
        }
        for m in distinct_members(&entries) {
            m.failed(e.clone());
        }
    }
}
