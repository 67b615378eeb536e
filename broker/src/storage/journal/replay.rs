//! Reading an earlier run's journal files at start, once for the whole broker, handing each
//! shard the entries of the partitions it owns, and removing the files once every
//! partition in them opened with its entries.
//!
//! # Contract
//! - [`JournalRead::read`] reads every journal file under the journal root, of every shard
//!   directory (`shard-<k>`; the shard count may have changed). Files are read in time
//!   order: by sequence number over all directories (a new journal numbers its files after
//!   every file under the root and after every file this read found, even one another
//!   shard has removed since, `ShardJournal::open_after`), then by shard number. Each file is
//!   cut at its first record that is not whole (magic, lengths, CRC) or whose sequence
//!   number does not grow: a torn write, or the zeros of a file never written that far.
//! - Entries are grouped by (topic id, partition) and by base offset; of two entries at one
//!   base offset the one read later (the newer) wins: the same batch may be in two files
//!   when a replayed partition journaled it again.
//! - [`JournalRead::split`] hands each shard a [`JournalReplay`] with the entries of the
//!   partitions it owns (nothing is held twice). Entries of a topic incarnation that is
//!   gone are dropped and do not keep a file; entries of a partition whose owner is beyond
//!   today's shard count are dropped from memory but keep their files (no one can open the
//!   partition, its data must not go).
//! - [`JournalReplay::entries`] hands a partition its entries, in offset order, until it
//!   opened with them ([`JournalReplay::replayed`]): a partition whose open failed gets
//!   them again at its next open, and must never open without them (its segments may end
//!   below offsets the journal acked). The partition log appends those past its recovered
//!   end, in order, and fails its open if one does not continue the log (`log/replay.rs`).
//! - Files are removed by [`JournalReplay::retire`], by whichever shard reports the last
//!   partition of a file replayed (or its topic gone): the shards share one tracker
//!   ([`JournalFiles`], thread-safe). A file goes once every partition with entries in it
//!   is done, and a directory of a shard beyond today's count goes once its files did; a
//!   file with a partition that never opened stays for the next start.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use tracing::{info, warn};

use super::record;
use crate::storage::error::IoError;
use crate::storage::io::{Disk, DiskFile};

/// Bytes read per I/O.
const READ_BYTES: usize = 1 << 20;

/// A partition: (topic incarnation id, partition index).
type Key = (u64, u32);
/// A partition's entries by base offset.
type Group = BTreeMap<u64, ReplayEntry>;

/// One batch to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayEntry {
    /// Its first offset.
    pub base_offset: u64,
    /// One past its last offset.
    pub next_offset: u64,
    /// The batch as the partition stored it.
    pub bytes: Vec<u8>,
}

/// Who opens a partition with journal entries ([`JournalRead::split`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// This shard.
    Shard(usize),
    /// No one: its topic incarnation is gone (its entries are ignored).
    Gone,
}

/// What one read of the journal files found (see the module docs).
#[derive(Debug, Default)]
pub struct JournalRead {
    groups: HashMap<Key, Group>,
    /// The files read, with the partitions that have entries in each.
    files: Vec<(PathBuf, BTreeSet<Key>)>,
    /// Every shard directory found, with its shard number.
    dirs: Vec<(usize, PathBuf)>,
    /// The highest file sequence number found.
    last_file_seq: Option<u64>,
}

impl JournalRead {
    /// Reads every journal file under `root` (see the module docs). A missing root is an
    /// empty read.
    pub async fn read<D: Disk>(disk: &D, root: &Path) -> Result<Self, IoError> {
        let names = match disk.list_dir(root).await {
            Ok(names) => names,
            Err(IoError::NotFound { .. }) => return Ok(JournalRead::default()),
            Err(e) => return Err(e),
        };
        let mut dirs: Vec<(usize, PathBuf)> = names
            .into_iter()
            .filter_map(|n| Some((n.strip_prefix("shard-")?.parse().ok()?, root.join(&n))))
            .collect();
        dirs.sort();
        // (sequence, shard, path): time order (see the module docs).
        let mut paths: Vec<(u64, usize, PathBuf)> = Vec::new();
        for (k, dir) in &dirs {
            for name in disk.list_dir(dir).await? {
                if let Some(seq) = super::parse_file_name(&name) {
                    paths.push((seq, *k, dir.join(name)));
                }
            }
        }
        paths.sort();
        let last_file_seq = paths.last().map(|(seq, _, _)| *seq);
        let mut groups: HashMap<Key, Group> = HashMap::new();
        let mut files = Vec::new();
        let mut entries_total = 0usize;
        for (_, _, path) in paths {
            let bytes = read_file(disk, &path).await?;
            let mut pos = 0usize;
            let mut last_seq = None;
            let mut records = 0usize;
            let mut in_file = BTreeSet::new();
            while let Some((seq, entries, len)) = record::decode(&bytes[pos..]) {
                // Within a file records follow one another exactly (written in order, even
                // when several are in flight; a failed one ends the journal): anything else is an older cycle's stale
                // bytes in a recycled file, never to be replayed — and a record forged in
                // a client's payload would have to guess the next number exactly.
                if last_seq.is_some_and(|s: u64| s.checked_add(1) != Some(seq)) {
                    break;
                }
                last_seq = Some(seq);
                records += 1;
                for e in entries {
                    entries_total += 1;
                    in_file.insert((e.topic_id, e.partition));
                    groups.entry((e.topic_id, e.partition)).or_default().insert(
                        e.base_offset,
                        ReplayEntry {
                            base_offset: e.base_offset,
                            next_offset: e.next_offset,
                            bytes: e.bytes,
                        },
                    );
                }
                pos += record::padded(len);
                if pos >= bytes.len() {
                    break;
                }
            }
            info!(path = %path.display(), records, "journal file read for replay");
            files.push((path, in_file));
        }
        if !files.is_empty() {
            info!(
                files = files.len(),
                partitions = groups.len(),
                entries = entries_total,
                "journal replay ready"
            );
        }
        Ok(JournalRead { groups, files, dirs, last_file_seq })
    }

    /// Whether no file was read.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Paths of the files read.
    pub fn files(&self) -> Vec<PathBuf> {
        self.files.iter().map(|(p, _)| p.clone()).collect()
    }

    /// Hands each of `shards` shards the entries of the partitions `owner` says it opens
    /// (see the module docs); the replays share one tracker of the files.
    pub fn split(self, shards: usize, owner: impl Fn(u64, u32) -> Owner) -> Vec<JournalReplay> {
        let mut parts: Vec<HashMap<Key, Group>> = (0..shards).map(|_| HashMap::new()).collect();
        let mut done = HashSet::new();
        for (key, group) in self.groups {
            match owner(key.0, key.1) {
                Owner::Shard(k) if k < shards => {
                    parts[k].insert(key, group);
                }
                Owner::Shard(k) => {
                    warn!(topic_id = key.0, partition = key.1, shard = k, shards, "journal entries of a partition owned by a shard beyond the shard count: its files are kept");
                }
                Owner::Gone => {
                    done.insert(key);
                }
            }
        }
        let stale_dirs = self.dirs.into_iter().filter(|(k, _)| *k >= shards).map(|(_, d)| d);
        let files = Arc::new(JournalFiles {
            state: Mutex::new(FilesState {
                files: self.files,
                done,
                stale_dirs: stale_dirs.collect(),
            }),
        });
        parts
            .into_iter()
            .map(|groups| JournalReplay {
                last_file_seq: self.last_file_seq,
                groups: RefCell::new(groups),
                replayed: RefCell::new(Vec::new()),
                files: files.clone(),
            })
            .collect()
    }
}

/// The files of one read, shared by every shard's [`JournalReplay`] (see the module docs).
#[derive(Debug)]
pub struct JournalFiles {
    state: Mutex<FilesState>,
}

#[derive(Debug)]
struct FilesState {
    /// Files not removed yet, with their partitions.
    files: Vec<(PathBuf, BTreeSet<Key>)>,
    /// Partitions replayed, or whose topic is gone.
    done: HashSet<Key>,
    /// Directories of shards beyond today's count, not removed yet.
    stale_dirs: Vec<PathBuf>,
}

impl JournalFiles {
    /// Records partitions as done; returns the files now free to go, the directories that
    /// go once those did, and how many files stay.
    fn settle(&self, done: Vec<Key>) -> (Vec<PathBuf>, Vec<PathBuf>, usize) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.done.extend(done);
        let FilesState { files, done, stale_dirs } = &mut *s;
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(files)
            .into_iter()
            .partition(|(_, keys)| keys.iter().all(|k| done.contains(k)));
        *files = kept;
        let (dirs, stale): (Vec<_>, Vec<_>) = std::mem::take(stale_dirs)
            .into_iter()
            .partition(|d| !files.iter().any(|(p, _)| p.parent() == Some(d.as_path())));
        *stale_dirs = stale;
        (gone.into_iter().map(|(p, _)| p).collect(), dirs, files.len())
    }
}

/// One shard's part of an earlier run's journal (see the module docs).
pub struct JournalReplay {
    groups: RefCell<HashMap<Key, Group>>,
    /// Partitions replayed since the last [`JournalReplay::retire`].
    replayed: RefCell<Vec<Key>>,
    files: Arc<JournalFiles>,
    /// The highest file sequence number of the read.
    last_file_seq: Option<u64>,
}

impl std::fmt::Debug for JournalReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalReplay").field("partitions", &self.groups.borrow().len()).finish()
    }
}

impl JournalReplay {
    /// The entries of one partition, in offset order (a copy: they stay until the
    /// partition opened with them, [`JournalReplay::replayed`]).
    pub fn entries(&self, topic_id: u64, partition: u32) -> Vec<ReplayEntry> {
        self.groups
            .borrow()
            .get(&(topic_id, partition))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The highest sequence number of the files read: a new journal numbers its files
    /// after it ([`super::ShardJournal::open_after`]) even once those files are gone.
    pub fn last_file_seq(&self) -> Option<u64> {
        self.last_file_seq
    }

    /// Whether no partition here still waits to open with its entries.
    pub fn is_empty(&self) -> bool {
        self.groups.borrow().is_empty()
    }

    /// Records that partition `partition` of `topic_id` opened and made its entries durable
    /// again (reported at the next [`JournalReplay::retire`]); its entries are dropped.
    pub fn replayed(&self, topic_id: u64, partition: u32) {
        self.groups.borrow_mut().remove(&(topic_id, partition));
        self.replayed.borrow_mut().push((topic_id, partition));
    }

    /// Reports the partitions replayed since the last call, and drops (as done) those whose
    /// topic incarnation is gone (`topic_exists` false); removes the files (and stale shard
    /// directories) every partition of which is now done, whichever shard's they are.
    /// Returns how many files of the read stay.
    pub async fn retire<D: Disk>(&self, disk: &D, topic_exists: impl Fn(u64) -> bool) -> usize {
        let mut done: Vec<Key> = self.replayed.borrow_mut().drain(..).collect();
        self.groups.borrow_mut().retain(|key, _| {
            let keep = topic_exists(key.0);
            if !keep {
                done.push(*key);
            }
            keep
        });
        let (files, dirs, kept) = self.files.settle(done);
        remove_files(disk, files).await;
        for dir in dirs {
            match disk.remove_dir(&dir).await {
                Ok(()) | Err(IoError::NotFound { .. }) => {
                    info!(dir = %dir.display(), "journal directory of a shard beyond the shard count removed")
                }
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "cannot remove the journal directory of a shard beyond the shard count")
                }
            }
        }
        kept
    }
}

async fn remove_files<D: Disk>(disk: &D, files: Vec<PathBuf>) {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for path in &files {
        match disk.remove(path).await {
            Ok(()) | Err(IoError::NotFound { .. }) => {}
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot remove a replayed journal file")
            }
        }
        if let Some(dir) = path.parent() {
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_owned());
            }
        }
    }
    for dir in dirs {
        if let Err(e) = disk.sync_dir(&dir).await {
            warn!(dir = %dir.display(), error = %e, "cannot sync a journal directory");
        }
    }
}

/// The whole of a file.
async fn read_file<D: Disk>(disk: &D, path: &Path) -> Result<Vec<u8>, IoError> {
    let file = Rc::new(disk.open(path, false).await?);
    let size = file.size().await?;
    let mut out = Vec::with_capacity(size as usize);
    while (out.len() as u64) < size {
        let n = ((size - out.len() as u64) as usize).min(READ_BYTES);
        let got = file.read_at(out.len() as u64, n).await?;
        let got = got.as_ref();
        if got.is_empty() {
            break;
        }
        out.extend_from_slice(&got[..got.len().min(n)]);
    }
    let _ = file.close().await;
    Ok(out)
}
