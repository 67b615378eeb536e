//! The data directory: which names are the broker's own and where topics live.
//!
//! ```text
//! <data>/
//!   .lock                 flock: one broker per directory (server.rs)
//!   topics.json           the metadata snapshot (metadata.rs); topics.json.tmp while replaced
//!   topics~/              every topic, and nothing else
//!     <topic>/<partition>/<20-digit base>.log|.index|.timeindex   (partition.rs, storage/)
//!   trash~/               deleted partitions until they are freed (trash.rs)
//!   journal~/shard-<k>/<20-digit seq>.journal   the shard journals (`shard_journal`,
//!                         storage/journal/)
//!   .odirect-probe        `broker check`, for a moment
//! ```
//!
//! Contract: a topic's directory is always `topics~/<topic>`, and the broker keeps nothing
//! else in `topics~/`. A topic name (Kafka's rule, [`crate::metadata::validate_name`]: 1–249
//! bytes of `[A-Za-z0-9._-]`, not `.` or `..`) is therefore one path component inside that
//! folder and can never name a file of the broker, whatever files the broker adds to the
//! root later: `.lock`, `topics.json` and `topics.json.tmp` are ordinary topic names.
//!
//! Before this folder existed topics lived in the root (`<data>/<topic>/<partition>`), where
//! a topic called `topics.json.tmp` made every later metadata change fail, and `.lock` or
//! `topics.json` could not open. [`migrate_flat_layout`] runs at every start, before the
//! partitions open: each directory in the root whose name is a valid topic name is renamed
//! into `topics~/` (one atomic rename each, then both directories synced), so a crash in
//! the middle is finished by the next start. Directories the broker puts in the root must
//! therefore never be valid topic names: they end in `~`, which a topic name cannot contain
//! (a `lost+found` is left alone for the same reason). Files are never moved. If a topic
//! has a directory in both places (an older broker run on a migrated directory) the start
//! is refused and both paths are named: which one holds the records only an operator can
//! tell.

use std::path::{Path, PathBuf};

use tracing::info;

use crate::metadata::validate_name;

/// The folder that holds every topic's directory.
pub const TOPICS_DIR: &str = "topics~";
/// The trash directory's name inside the data dir.
pub const TRASH_DIR: &str = "trash~";
/// The shard journals' directory inside the data dir (`storage/journal/`).
pub const JOURNAL_DIR: &str = "journal~";

/// The folder of every shard's journal.
pub fn journal_root(data_dir: &Path) -> PathBuf {
    data_dir.join(JOURNAL_DIR)
}
/// The lock file that keeps a second broker off the directory.
pub const LOCK_FILE: &str = ".lock";

/// Why the data directory cannot be laid out as this broker expects.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A file-system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A topic's directory exists in the old place and in the new one.
    #[error(
        "topic {topic:?} has data in {old} (the layout before {TOPICS_DIR}/) and in {new}; \
         keep the one with the records, move the other out of the data directory, and start again"
    )]
    Both {
        /// The topic.
        topic: String,
        /// Its directory in the root.
        old: PathBuf,
        /// Its directory under `topics~/`.
        new: PathBuf,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LayoutError + 'a {
    move |source| LayoutError::Io { op, path: path.to_owned(), source }
}

/// Where every topic's directory is: `<data>/topics~`.
pub fn topics_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(TOPICS_DIR)
}

/// Directory of one topic: `<data>/topics~/<topic>`.
pub fn topic_dir(data_dir: &Path, topic: &str) -> PathBuf {
    topics_dir(data_dir).join(topic)
}

/// Directory of one partition: `<data>/topics~/<topic>/<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    topic_dir(data_dir, topic).join(partition.to_string())
}

fn sync_dir(dir: &Path) -> Result<(), LayoutError> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io("fsync", dir))
}

/// Creates `topics~/` if needed and moves the topic directories of the flat layout into it
/// (see the module doc). Returns how many were moved. Runs before any partition opens.
pub fn migrate_flat_layout(data_dir: &Path) -> Result<usize, LayoutError> {
    let topics = topics_dir(data_dir);
    if !topics.is_dir() {
        std::fs::create_dir_all(&topics).map_err(io("mkdir", &topics))?;
        sync_dir(data_dir)?;
    }
    let mut old = Vec::new();
    for entry in std::fs::read_dir(data_dir).map_err(io("list", data_dir))? {
        let entry = entry.map_err(io("list", data_dir))?;
        let is_dir = entry.file_type().map_err(io("stat", &entry.path()))?.is_dir();
        let name = entry.file_name();
        // Broker directories end in `~` and fail the name rule; so does anything not UTF-8.
        if is_dir && name.to_str().is_some_and(|n| validate_name(n).is_ok()) {
            old.push((name.to_string_lossy().into_owned(), entry.path()));
        }
    }
    old.sort();
    for (topic, from) in &old {
        let to = topics.join(topic);
        if to.exists() {
            return Err(LayoutError::Both { topic: topic.clone(), old: from.clone(), new: to });
        }
    }
    for (topic, from) in &old {
        let to = topics.join(topic);
        std::fs::rename(from, &to).map_err(io("rename", from))?;
        info!(from = %from.display(), to = %to.display(), "topic directory moved into {TOPICS_DIR}/");
    }
    if !old.is_empty() {
        sync_dir(&topics)?;
        sync_dir(data_dir)?;
    }
    Ok(old.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn broker_directories_are_never_topic_names() {
        // Otherwise the migration would take them for topics of the flat layout.
        for name in [TOPICS_DIR, TRASH_DIR] {
            assert!(validate_name(name).is_err(), "{name} must fail the topic name rule");
        }
    }

    #[test]
    fn every_topic_name_is_one_component_under_the_topics_folder() {
        let data = Path::new("/d");
        for name in [".lock", "topics.json", "topics.json.tmp", "trash", ".x", "..a", "a..b"] {
            assert!(validate_name(name).is_ok(), "{name}");
            assert_eq!(partition_dir(data, name, 3), Path::new("/d/topics~").join(name).join("3"));
            assert_eq!(topic_dir(data, name).parent(), Some(topics_dir(data).as_path()));
        }
    }

    #[test]
    fn the_flat_layout_moves_into_the_topics_folder_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        touch(&data.join("orders/0/00000000000000000000.log"));
        touch(&data.join("topics.json.tmp/0/00000000000000000000.log"));
        touch(&data.join("topics.json"));
        touch(&data.join(LOCK_FILE));
        touch(&data.join("trash~/orders_1-5-0/00000000000000000000.log"));
        touch(&data.join("lost+found/x"));
        assert_eq!(migrate_flat_layout(data).unwrap(), 2);
        for kept in ["topics.json", LOCK_FILE, "trash~/orders_1-5-0", "lost+found/x"] {
            assert!(data.join(kept).exists(), "{kept} stays");
        }
        for topic in ["orders", "topics.json.tmp"] {
            assert!(!data.join(topic).exists());
            assert!(partition_dir(data, topic, 0).join("00000000000000000000.log").is_file());
        }
        // Idempotent: a second start finds nothing to move.
        assert_eq!(migrate_flat_layout(data).unwrap(), 0);
        // A fresh directory gets the folder.
        let fresh = tempfile::tempdir().unwrap();
        assert_eq!(migrate_flat_layout(fresh.path()).unwrap(), 0);
        assert!(topics_dir(fresh.path()).is_dir());
    }

    #[test]
    fn a_topic_in_both_places_refuses_to_start_and_moves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        touch(&data.join("a/0/00000000000000000000.log"));
        touch(&data.join("b/0/00000000000000000000.log"));
        touch(&partition_dir(data, "b", 0).join("00000000000000000000.log"));
        let err = migrate_flat_layout(data).unwrap_err();
        assert!(matches!(&err, LayoutError::Both { topic, .. } if topic == "b"), "{err}");
        assert!(data.join("a").exists() && data.join("b").exists(), "nothing moved");
    }
}
