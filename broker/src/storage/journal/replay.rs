//! Reading an earlier run's journal files at start, so each partition can append what its
//! segments lost in a crash.
//!
//! # Contract
//! - [`JournalReplay::read`] reads every journal file under the journal root, of every
//!   shard directory (`shard-<k>`): the shard count may have changed, so a partition's
//!   entries may be in another shard's files. Each file is cut at its first record that is
//!   not whole (magic, lengths, CRC) or whose sequence number does not grow: a torn write,
//!   or the zeros of a file never written that far.
//! - Entries are grouped by (topic id, partition) and by base offset; of two entries at one
//!   base offset the one read later wins (files are read in name order; the same batch may
//!   be in two files when a replayed partition journaled it again).
//! - [`JournalReplay::entries`] hands a partition its entries, in offset order, until it
//!   opened with them ([`JournalReplay::replayed`]): a partition whose open failed gets
//!   them again at its next open, and must never open without them (its segments may end
//!   below offsets the journal acked). The partition log appends those past its recovered
//!   end, in order, and fails its open if one does not continue the log (`log/replay.rs`).
//!   Entries of a topic id no partition takes (a deleted topic) are ignored.
//! - The files are removed only by [`JournalReplay::retire_confirmed`]: those whose every
//!   partition was replayed or whose topic is gone. The broker: each shard, once every
//!   partition it owns with entries opened, removes the files of its own directory so
//!   confirmed; a file with a partition that did not open, or that now lives on another
//!   shard, stays for the next start.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use tracing::{info, warn};

use super::record;
use crate::storage::error::IoError;
use crate::storage::io::{Disk, DiskFile};

/// Bytes read per I/O.
const READ_BYTES: usize = 1 << 20;

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

/// See the module docs.
#[derive(Default)]
pub struct JournalReplay {
    groups: RefCell<HashMap<(u64, u32), BTreeMap<u64, ReplayEntry>>>,
    /// The files read, with the partitions that have entries in each.
    files: Vec<(PathBuf, BTreeSet<(u64, u32)>)>,
    /// Partitions whose entries were replayed ([`JournalReplay::replayed`]).
    replayed: RefCell<HashSet<(u64, u32)>>,
}

impl std::fmt::Debug for JournalReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalReplay")
            .field("files", &self.files.len())
            .field("partitions", &self.groups.borrow().len())
            .finish()
    }
}

impl JournalReplay {
    /// Reads every journal file under `root` (see the module docs). A missing root is an
    /// empty replay.
    pub async fn read<D: Disk>(disk: &D, root: &Path) -> Result<Rc<Self>, IoError> {
        let shard_dirs = match disk.list_dir(root).await {
            Ok(names) => names,
            Err(IoError::NotFound { .. }) => return Ok(Rc::new(JournalReplay::default())),
            Err(e) => return Err(e),
        };
        // By shard number (shard-10 after shard-2), so entries read later come from a
        // later-numbered shard in a stable order.
        let mut shard_dirs: Vec<(u32, String)> = shard_dirs
            .into_iter()
            .filter_map(|n| n.strip_prefix("shard-")?.parse().ok().map(|k| (k, n)))
            .collect();
        shard_dirs.sort();
        let mut groups: HashMap<(u64, u32), BTreeMap<u64, ReplayEntry>> = HashMap::new();
        let mut files = Vec::new();
        let mut entries_total = 0usize;
        for (_, d) in shard_dirs {
            let dir = root.join(&d);
            let mut names: Vec<(u64, String)> = disk
                .list_dir(&dir)
                .await?
                .into_iter()
                .filter_map(|n| super::parse_file_name(&n).map(|s| (s, n)))
                .collect();
            names.sort();
            for (_, name) in names {
                let path = dir.join(&name);
                let bytes = read_file(disk, &path).await?;
                let mut pos = 0usize;
                let mut last_seq = None;
                let mut records = 0usize;
                let mut in_file = BTreeSet::new();
                while let Some((seq, entries, len)) = record::decode(&bytes[pos..]) {
                    if last_seq.is_some_and(|s| seq <= s) {
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
        }
        if !files.is_empty() {
            info!(
                files = files.len(),
                partitions = groups.len(),
                entries = entries_total,
                "journal replay ready"
            );
        }
        Ok(Rc::new(JournalReplay {
            groups: RefCell::new(groups),
            files,
            replayed: RefCell::new(HashSet::new()),
        }))
    }

    /// The entries of one partition, in offset order (a copy: they stay until the
    /// partition opened with them, [`JournalReplay::replayed`]).
    pub fn entries(&self, topic_id: u64, partition: u32) -> Vec<ReplayEntry> {
        self.groups
            .borrow()
            .get(&(topic_id, partition))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether a partition for which `waits` is true still has entries to replay.
    pub fn waiting(&self, waits: impl Fn(u64, u32) -> bool) -> bool {
        self.groups.borrow().keys().any(|&(t, p)| waits(t, p))
    }

    /// Whether no file was read.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Records that partition `partition` of `topic_id` opened and made its entries durable
    /// again (see [`JournalReplay::retire_confirmed`]); its entries are dropped.
    pub fn replayed(&self, topic_id: u64, partition: u32) {
        self.groups.borrow_mut().remove(&(topic_id, partition));
        self.replayed.borrow_mut().insert((topic_id, partition));
    }

    /// Paths of the files read.
    pub fn files(&self) -> Vec<PathBuf> {
        self.files.iter().map(|(p, _)| p.clone()).collect()
    }

    /// Removes the files read (from `dir` if given) whose every partition was
    /// [replayed](JournalReplay::replayed) or belongs to a topic incarnation that is gone
    /// (`topic_exists` false). Returns how many files were kept.
    pub async fn retire_confirmed<D: Disk>(
        &self,
        disk: &D,
        dir: Option<&Path>,
        topic_exists: impl Fn(u64) -> bool,
    ) -> usize {
        let replayed = self.replayed.borrow().clone();
        let (gone, kept): (Vec<_>, Vec<_>) =
            self.files.iter().filter(|(p, _)| dir.is_none() || p.parent() == dir).partition(
                |(_, groups)| groups.iter().all(|g| replayed.contains(g) || !topic_exists(g.0)),
            );
        for (path, _) in &kept {
            warn!(path = %path.display(), "journal file kept: a partition with entries in it was not replayed here");
        }
        remove_files(disk, gone.into_iter().map(|(p, _)| p.clone()).collect()).await;
        kept.len()
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
