//! The simulated backend: an in-memory filesystem that can crash, tear writes, fill up, fail
//! with EIO, refuse opens with EMFILE and sync slowly, all decided by a seeded RNG so a failing run replays exactly.
//!
//! Model (what a real disk guarantees, and no more):
//! - Each file has its current bytes, its *durable* bytes, and the operations (writes,
//!   truncates, allocations) since then, in order, each `Pending`, `Landed` or `Doubtful`.
//! - An `fdatasync` covers the operations that completed before it was called (not those
//!   that complete while it runs): when it succeeds they have landed.
//! - A failing `fdatasync` fails at once on the device, and the operations it covered
//!   become doubtful. The error report goes to that one caller: another sync on a handle
//!   opened before the failure may still succeed, but it does not make the doubtful
//!   operations land (Linux reports a writeback error once per open file, and the failed
//!   data may be gone). A sync through a handle opened after the failure (a restart's
//!   reopen) does: the engine writes with O_DIRECT, so what it reads back after a restart
//!   is what the device holds, and a flush persists that (a page cache could instead have
//!   dropped the failed pages, which this model does not cover).
//! - `sync_filesystem` (syncfs) is an `fdatasync` of every file at once: it covers each
//!   file's operations completed before the call, fails with the same chance, and a failure
//!   makes the covered operations of every file doubtful, as a failed sync of that file
//!   would. It does not land a file's doubtful operations if that file saw a failed sync
//!   after the filesystem handle was opened. It makes no name durable (the engine syncs
//!   directories itself).
//! - [`SimDisk::crash`] rebuilds every file from its durable bytes plus, in order, its landed
//!   operations and an arbitrary subset of the others, where a persisted write may be torn at
//!   any 512-byte sector. Files whose name was never made durable by `sync_dir` disappear.
//!   Writes through a handle from `open_dsync` land whole when they complete, while the
//!   operations before them may not (as with FUA writes); with `tear_in_flight_dsync` those
//!   still in flight at the crash are lost, land whole or torn at a sector.
//! - An open may fail with EMFILE (`open_emfile_per_mille`), as when the process is out of
//!   descriptors.
//! - Removal is immediate and durable (retention only removes data it no longer needs).
//! - Space: the sum of file lengths may not exceed the capacity; beyond it writes, truncates
//!   that grow and allocations fail with ENOSPC.
//! - A write that fails with EIO may have put some of its leading sectors on the device (and
//!   so in what later reads see); they are unsynced like any other write.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::error::IoError;
use super::io::{Disk, DiskFile, DISK_ALIGN};

/// Fault rates and limits for a [`SimDisk`].
#[derive(Debug, Clone)]
pub struct SimFaults {
    /// Chance per write of failing with EIO, in parts per thousand.
    pub write_eio_per_mille: u32,
    /// Chance per fdatasync of failing with EIO, in parts per thousand.
    pub sync_eio_per_mille: u32,
    /// Chance per filesystem sync (syncfs) of failing with EIO, in parts per thousand, on top
    /// of `sync_eio_per_mille`.
    pub filesystem_sync_eio_per_mille: u32,
    /// Each fdatasync yields to other tasks up to this many times before it completes.
    pub sync_delay_yields_max: u32,
    /// Each write yields up to this many times before it lands, so concurrent writes
    /// complete out of order.
    pub write_delay_yields_max: u32,
    /// Total bytes the disk holds.
    pub capacity_bytes: u64,
    /// Chance per open of failing with EMFILE (the process is out of descriptors), in parts
    /// per thousand.
    pub open_emfile_per_mille: u32,
    /// A crash also puts O_DSYNC writes still in flight on the device: lost, whole or torn
    /// at a sector (after the file's other operations).
    pub tear_in_flight_dsync: bool,
}

impl Default for SimFaults {
    fn default() -> Self {
        SimFaults {
            write_eio_per_mille: 0,
            sync_eio_per_mille: 0,
            filesystem_sync_eio_per_mille: 0,
            sync_delay_yields_max: 0,
            write_delay_yields_max: 0,
            capacity_bytes: u64::MAX,
            open_emfile_per_mille: 0,
            tear_in_flight_dsync: false,
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct SimDisk {
    state: Rc<RefCell<SimState>>,
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.borrow();
        write!(f, "SimDisk({} files, {} bytes used)", s.files.len(), s.used_bytes())
    }
}

struct SimState {
    rng: fastrand::Rng,
    /// Incremented by every crash: an operation that started before it never lands.
    epoch: u64,
    files: BTreeMap<PathBuf, Rc<RefCell<SimFileData>>>,
    dirs: BTreeSet<PathBuf>,
    faults: SimFaults,
    /// O_DSYNC writes that were in flight at a crash (`tear_in_flight_dsync`).
    crashed_in_flight: u64,
    /// Failed syncs (of a file or the filesystem) so far.
    failure_clock: u64,
    /// Writes in flight now, and the most at once so far, by file extension (`log`:
    /// segments, `journal`: journal records).
    writes_in_flight: BTreeMap<String, (usize, usize)>,
}

impl SimState {
    fn used_bytes(&self) -> u64 {
        self.files.values().map(|f| f.borrow().data.len() as u64).sum()
    }

    fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.rng.u32(0..1000) < per_mille
    }
}

#[derive(Default)]
struct SimFileData {
    data: Vec<u8>,
    /// The bytes before the first operation in `unsynced`.
    durable: Vec<u8>,
    /// Operations not yet folded into `durable`, in order, with their sequence numbers.
    unsynced: VecDeque<(u64, Op, Fate)>,
    /// Sequence number of the next operation.
    next_seq: u64,
    /// Failed syncs so far.
    failures: u64,
    /// `SimState::failure_clock` at its last failed sync (0: none).
    last_failure: u64,
    name_durable: bool,
    /// O_DSYNC writes issued and not completed, by id (`tear_in_flight_dsync`).
    in_flight: BTreeMap<u64, Op>,
}

/// A write counted in `SimState::writes_in_flight` until dropped (also when the write's
/// future is dropped mid-flight, as a crash does).
struct WriteInFlight {
    state: Rc<RefCell<SimState>>,
    extension: String,
}

impl WriteInFlight {
    fn start(disk: &SimDisk, path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_string_lossy().into_owned();
        let mut s = disk.state.borrow_mut();
        let (now, peak) = s.writes_in_flight.entry(extension.clone()).or_default();
        *now += 1;
        *peak = (*peak).max(*now);
        Some(WriteInFlight { state: disk.state.clone(), extension })
    }
}

impl Drop for WriteInFlight {
    fn drop(&mut self) {
        if let Ok(mut s) = self.state.try_borrow_mut() {
            if let Some(w) = s.writes_in_flight.get_mut(&self.extension) {
                w.0 -= 1;
            }
        }
    }
}

/// What a crash does with an operation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fate {
    /// Not synced: lost, applied or torn.
    Pending,
    /// Synced, or written through O_DSYNC: applied.
    Landed,
    /// Covered by a failed sync: like `Pending`, and later syncs through handles opened
    /// before that failure leave it so.
    Doubtful,
}

impl SimFileData {
    fn push(&mut self, op: Op, fate: Fate) {
        apply(&mut self.data, &op);
        self.unsynced.push_back((self.next_seq, op, fate));
        self.next_seq += 1;
    }

    /// Moves operations below `seq_end` from one of `from` to `to`, then folds the landed
    /// ones at the front into `durable`.
    fn settle(&mut self, seq_end: u64, from: &[Fate], to: Fate) {
        for (seq, _, fate) in self.unsynced.iter_mut() {
            if *seq < seq_end && from.contains(fate) {
                *fate = to;
            }
        }
        while self.unsynced.front().is_some_and(|(_, _, f)| *f == Fate::Landed) {
            let (_, op, _) = self.unsynced.pop_front().expect("checked");
            apply(&mut self.durable, &op);
        }
    }
}

enum Op {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

fn apply(data: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write(pos, bytes) => {
            let end = *pos as usize + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[*pos as usize..end].copy_from_slice(bytes);
        }
        Op::SetLen(len) => data.resize(*len as usize, 0),
    }
}

impl SimDisk {
    /// An empty disk whose faults are drawn from `seed`.
    pub fn new(seed: u64, faults: SimFaults) -> Self {
        SimDisk {
            state: Rc::new(RefCell::new(SimState {
                rng: fastrand::Rng::with_seed(seed),
                epoch: 0,
                files: BTreeMap::new(),
                dirs: BTreeSet::new(),
                faults,
                crashed_in_flight: 0,
                writes_in_flight: BTreeMap::new(),
                failure_clock: 0,
            })),
        }
    }

    /// Counts a failed sync; returns the new clock.
    fn tick_failure_clock(&self) -> u64 {
        let mut s = self.state.borrow_mut();
        s.failure_clock += 1;
        s.failure_clock
    }

    /// Changes the fault rates and capacity.
    pub fn set_faults(&self, faults: SimFaults) {
        self.state.borrow_mut().faults = faults;
    }

    /// Current fault settings.
    pub fn faults(&self) -> SimFaults {
        self.state.borrow().faults.clone()
    }

    /// Bytes stored across all files.
    pub fn used_bytes(&self) -> u64 {
        self.state.borrow().used_bytes()
    }

    /// Power loss: see the module docs. Handles opened before the crash must not be used
    /// after it (the engine above is dropped first, as a killed process would be).
    pub fn crash(&self) {
        let mut s = self.state.borrow_mut();
        s.epoch += 1;
        let SimState { rng, files, crashed_in_flight, .. } = &mut *s;
        files.retain(|_, f| f.borrow().name_durable);
        for file in files.values() {
            let mut f = file.borrow_mut();
            let mut data = f.durable.clone();
            for (_, op, fate) in std::mem::take(&mut f.unsynced) {
                if fate == Fate::Landed {
                    apply(&mut data, &op);
                    continue;
                }
                match rng.u8(0..3) {
                    0 => {} // lost
                    1 => apply(&mut data, &op),
                    _ => match op {
                        // Torn: only the first few sectors reached the platter.
                        Op::Write(pos, bytes) => {
                            let sectors = bytes.len() / 512;
                            let keep = rng.usize(0..=sectors) * 512;
                            apply(&mut data, &Op::Write(pos, bytes[..keep].to_vec()));
                        }
                        op @ Op::SetLen(_) => apply(&mut data, &op),
                    },
                }
            }
            for (_, op) in std::mem::take(&mut f.in_flight) {
                *crashed_in_flight += 1;
                match (rng.u8(0..3), op) {
                    (0, _) => {} // lost
                    (1, op) => apply(&mut data, &op),
                    (_, Op::Write(pos, bytes)) => {
                        let keep = rng.usize(0..=bytes.len() / 512) * 512;
                        apply(&mut data, &Op::Write(pos, bytes[..keep].to_vec()));
                    }
                    (_, op) => apply(&mut data, &op),
                }
            }
            f.data = data.clone();
            f.durable = data;
        }
    }

    /// O_DSYNC writes in flight now (`tear_in_flight_dsync`).
    pub fn dsync_in_flight(&self) -> usize {
        self.state.borrow().files.values().map(|f| f.borrow().in_flight.len()).sum()
    }

    /// The most writes to files named `*.{extension}` in flight at once so far.
    pub fn writes_peak(&self, extension: &str) -> usize {
        self.state.borrow().writes_in_flight.get(extension).map_or(0, |w| w.1)
    }

    /// O_DSYNC writes in flight at crashes so far (`tear_in_flight_dsync`).
    pub fn crashed_in_flight(&self) -> u64 {
        self.state.borrow().crashed_in_flight
    }

    /// The current bytes of a file, for tests that damage files on purpose.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        self.state.borrow().files.get(path).map(|f| f.borrow().data.clone())
    }

    /// Replaces a file's bytes (current and durable), for tests that damage files on purpose.
    pub fn set_file_bytes(&self, path: &Path, bytes: Vec<u8>) {
        let s = self.state.borrow();
        let f = s.files.get(path).expect("file exists");
        let mut f = f.borrow_mut();
        f.data = bytes.clone();
        f.durable = bytes;
        f.unsynced.clear();
    }

    /// Every file path, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.state.borrow().files.keys().cloned().collect()
    }
}

/// Yields to the executor `n` times: a deterministic "slow" operation.
struct YieldTimes(u32);

impl Future for YieldTimes {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Disk for SimDisk {
    type File = SimFile;

    async fn open(&self, path: &Path, create: bool) -> Result<SimFile, IoError> {
        let mut s = self.state.borrow_mut();
        let parent = path.parent().unwrap_or(Path::new("")).to_owned();
        if !s.dirs.contains(&parent) {
            return Err(IoError::NotFound { path: parent.display().to_string() });
        }
        let emfile = s.faults.open_emfile_per_mille;
        if s.chance(emfile) {
            let message = "simulated errno EMFILE".to_owned();
            return Err(IoError::from_errno("open", path, Some(libc::EMFILE), message));
        }
        let data = match s.files.get(path) {
            Some(f) => f.clone(),
            None if create => {
                let f = Rc::new(RefCell::new(SimFileData::default()));
                s.files.insert(path.to_owned(), f.clone());
                f
            }
            None => return Err(IoError::NotFound { path: path.display().to_string() }),
        };
        let failures_at_open = data.borrow().failures;
        Ok(SimFile {
            disk: self.clone(),
            path: path.to_owned(),
            data,
            dsync: false,
            failures_at_open,
        })
    }

    async fn open_dsync(&self, path: &Path) -> Result<SimFile, IoError> {
        let mut f = self.open(path, false).await?;
        f.dsync = true;
        Ok(f)
    }

    async fn remove(&self, path: &Path) -> Result<(), IoError> {
        match self.state.borrow_mut().files.remove(path) {
            Some(_) => Ok(()),
            None => Err(IoError::NotFound { path: path.display().to_string() }),
        }
    }

    /// Immediately durable, like `remove` (the engine syncs the directory after either).
    async fn rename(&self, from: &Path, to: &Path) -> Result<(), IoError> {
        let mut s = self.state.borrow_mut();
        let f = s
            .files
            .remove(from)
            .ok_or_else(|| IoError::NotFound { path: from.display().to_string() })?;
        s.files.insert(to.to_owned(), f);
        Ok(())
    }

    async fn create_dir_all(&self, path: &Path) -> Result<(), IoError> {
        let mut s = self.state.borrow_mut();
        for p in path.ancestors() {
            s.dirs.insert(p.to_owned());
        }
        Ok(())
    }

    /// Immediately durable, like `remove`.
    async fn remove_dir(&self, path: &Path) -> Result<(), IoError> {
        let mut s = self.state.borrow_mut();
        let full = s.files.keys().chain(s.dirs.iter()).any(|p| p.parent() == Some(path));
        if full {
            return Err(IoError::Other {
                op: "rmdir",
                path: path.display().to_string(),
                errno: Some(libc::ENOTEMPTY),
                message: "directory not empty".into(),
            });
        }
        match s.dirs.remove(path) {
            true => Ok(()),
            false => Err(IoError::NotFound { path: path.display().to_string() }),
        }
    }

    async fn list_dir(&self, path: &Path) -> Result<Vec<String>, IoError> {
        let s = self.state.borrow();
        if !s.dirs.contains(path) {
            return Err(IoError::NotFound { path: path.display().to_string() });
        }
        let mut names: Vec<String> = s
            .files
            .keys()
            .chain(s.dirs.iter())
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn sync_dir(&self, path: &Path) -> Result<(), IoError> {
        let s = self.state.borrow();
        for (p, f) in &s.files {
            if p.parent() == Some(path) {
                f.borrow_mut().name_durable = true;
            }
        }
        Ok(())
    }

    type Filesystem = SimFilesystem;

    async fn open_filesystem(&self, dir: &Path) -> Result<Option<SimFilesystem>, IoError> {
        if !self.state.borrow().dirs.contains(dir) {
            return Err(IoError::NotFound { path: dir.display().to_string() });
        }
        let (opened_at, epoch) = (self.state.borrow().failure_clock, self.state.borrow().epoch);
        Ok(Some(SimFilesystem { path: dir.to_owned(), opened_at, epoch }))
    }

    /// One filesystem holds everything.
    async fn on_filesystem(&self, _fs: &SimFilesystem, _path: &Path) -> Result<bool, IoError> {
        Ok(true)
    }

    async fn sync_filesystem(&self, fs: &SimFilesystem) -> Result<(), IoError> {
        let eio = || {
            let message = "simulated errno EIO".to_owned();
            Err(IoError::from_errno("syncfs", &fs.path, Some(libc::EIO), message))
        };
        if self.state.borrow().epoch != fs.epoch {
            return eio(); // a handle of a process that crashed
        }
        let (delay, fail, epoch, covered) = {
            let mut s = self.state.borrow_mut();
            let max = s.faults.sync_delay_yields_max;
            let delay = if max > 0 { s.rng.u32(0..=max) } else { 0 };
            let per_mille = s.faults.sync_eio_per_mille + s.faults.filesystem_sync_eio_per_mille;
            let fail = s.chance(per_mille);
            // It covers what completed before the call, in every file.
            let covered: Vec<_> =
                s.files.values().map(|f| (f.clone(), f.borrow().next_seq)).collect();
            (delay, fail, s.epoch, covered)
        };
        if fail {
            let clock = self.tick_failure_clock();
            for (f, seq_end) in &covered {
                let mut f = f.borrow_mut();
                f.failures += 1;
                f.last_failure = clock;
                f.settle(*seq_end, &[Fate::Pending], Fate::Doubtful);
            }
        }
        YieldTimes(delay).await;
        if fail || self.state.borrow().epoch != epoch {
            return eio();
        }
        for (f, seq_end) in &covered {
            let mut f = f.borrow_mut();
            if f.last_failure <= fs.opened_at {
                f.settle(*seq_end, &[Fate::Pending, Fate::Doubtful], Fate::Landed);
            } else {
                f.settle(*seq_end, &[Fate::Pending], Fate::Landed);
            }
        }
        Ok(())
    }
}

/// The simulated filesystem, open for `sync_filesystem`.
pub struct SimFilesystem {
    path: PathBuf,
    /// `SimState::failure_clock` when it was opened.
    opened_at: u64,
    /// `SimState::epoch` when it was opened.
    epoch: u64,
}

/// An open simulated file.
pub struct SimFile {
    disk: SimDisk,
    path: PathBuf,
    data: Rc<RefCell<SimFileData>>,
    /// Opened O_DSYNC: each write is durable when it returns.
    dsync: bool,
    /// The file's failed syncs when this handle was opened.
    failures_at_open: u64,
}

impl SimFile {
    fn err(&self, op: &'static str, errno: i32) -> IoError {
        IoError::from_errno(op, &self.path, Some(errno), format!("simulated errno {errno}"))
    }

    fn check_space(&self, new_len: u64) -> Result<(), IoError> {
        let s = self.disk.state.borrow();
        let cur = self.data.borrow().data.len() as u64;
        if new_len > cur && s.used_bytes() + (new_len - cur) > s.faults.capacity_bytes {
            return Err(self.err("write", libc::ENOSPC));
        }
        Ok(())
    }
}

/// A plain zeroed byte buffer.
pub struct SimBuf(Vec<u8>);

impl AsRef<[u8]> for SimBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl AsMut<[u8]> for SimBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// Read results live in 16-byte-aligned memory, like DMA buffers, so batches validate in place.
pub struct SimRead(wire::AlignedVec);

impl AsRef<[u8]> for SimRead {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl DiskFile for SimFile {
    type WriteBuf = SimBuf;
    type ReadBuf = SimRead;

    fn alignment(&self) -> usize {
        DISK_ALIGN
    }

    fn alloc_write_buf(&self, len: usize) -> SimBuf {
        assert!(len % DISK_ALIGN == 0 && len > 0, "unaligned buffer of {len} bytes");
        // Not zeros: a caller that leaves bytes unset must show up in the simulation.
        SimBuf(vec![0xA5; len])
    }

    async fn write_at(&self, buf: SimBuf, pos: u64) -> Result<(), IoError> {
        assert!(pos % DISK_ALIGN as u64 == 0, "unaligned write at {pos}");
        let (delay, epoch, tear) = {
            let mut s = self.disk.state.borrow_mut();
            let max = s.faults.write_delay_yields_max;
            let tear = s.faults.tear_in_flight_dsync && self.dsync;
            (if max > 0 { s.rng.u32(0..=max) } else { 0 }, s.epoch, tear)
        };
        let in_flight = tear.then(|| {
            let mut f = self.data.borrow_mut();
            let id = f.in_flight.keys().next_back().map_or(0, |k| k + 1);
            f.in_flight.insert(id, Op::Write(pos, buf.0.clone()));
            id
        });
        let counted = WriteInFlight::start(&self.disk, &self.path);
        YieldTimes(delay).await;
        drop(counted);
        if let Some(id) = in_flight {
            if self.disk.state.borrow().epoch == epoch {
                self.data.borrow_mut().in_flight.remove(&id);
            }
        }
        if self.disk.state.borrow().epoch != epoch {
            return Err(self.err("write", libc::EIO)); // issued by a process that crashed
        }
        let faults = self.disk.faults();
        // An O_DSYNC write also fails the way a sync does.
        let per_mille =
            faults.write_eio_per_mille + if self.dsync { faults.sync_eio_per_mille } else { 0 };
        if self.disk.state.borrow_mut().chance(per_mille) {
            // A failed write may still have put some of its leading sectors on the device.
            let keep = {
                let mut s = self.disk.state.borrow_mut();
                if s.rng.bool() {
                    s.rng.usize(1..=buf.0.len() / 512) * 512
                } else {
                    0
                }
            };
            if keep > 0 && self.check_space(pos + keep as u64).is_ok() {
                self.data.borrow_mut().push(Op::Write(pos, buf.0[..keep].to_vec()), Fate::Pending);
            }
            return Err(self.err("write", libc::EIO));
        }
        self.check_space(pos + buf.0.len() as u64)?;
        let fate = if self.dsync { Fate::Landed } else { Fate::Pending };
        self.data.borrow_mut().push(Op::Write(pos, buf.0), fate);
        Ok(())
    }

    async fn read_at(&self, pos: u64, len: usize) -> Result<SimRead, IoError> {
        let f = self.data.borrow();
        let start = (pos as usize).min(f.data.len());
        let end = (start + len).min(f.data.len());
        Ok(SimRead(wire::to_aligned(&f.data[start..end])))
    }

    async fn allocate(&self, len: u64) -> Result<(), IoError> {
        if len <= self.data.borrow().data.len() as u64 {
            return Ok(());
        }
        self.check_space(len)?;
        self.data.borrow_mut().push(Op::SetLen(len), Fate::Pending);
        Ok(())
    }

    async fn truncate(&self, len: u64) -> Result<(), IoError> {
        self.check_space(len)?;
        self.data.borrow_mut().push(Op::SetLen(len), Fate::Pending);
        Ok(())
    }

    async fn fdatasync(&self) -> Result<(), IoError> {
        let (delay, fail, epoch) = {
            let mut s = self.disk.state.borrow_mut();
            let max = s.faults.sync_delay_yields_max;
            let delay = if max > 0 { s.rng.u32(0..=max) } else { 0 };
            let per_mille = s.faults.sync_eio_per_mille;
            (delay, s.chance(per_mille), s.epoch)
        };
        // It covers what completed before the call.
        let seq_end = self.data.borrow().next_seq;
        if fail {
            // The device fails now; the caller hears of it when the sync returns.
            let clock = self.disk.tick_failure_clock();
            let mut f = self.data.borrow_mut();
            f.failures += 1;
            f.last_failure = clock;
            f.settle(seq_end, &[Fate::Pending], Fate::Doubtful);
        }
        YieldTimes(delay).await;
        if fail || self.disk.state.borrow().epoch != epoch {
            return Err(self.err("fdatasync", libc::EIO));
        }
        let mut f = self.data.borrow_mut();
        if f.failures == self.failures_at_open {
            f.settle(seq_end, &[Fate::Pending, Fate::Doubtful], Fate::Landed);
        } else {
            f.settle(seq_end, &[Fate::Pending], Fate::Landed);
        }
        Ok(())
    }

    async fn size(&self) -> Result<u64, IoError> {
        Ok(self.data.borrow().data.len() as u64)
    }

    async fn close(self: Rc<Self>) -> Result<(), IoError> {
        Ok(())
    }
}
