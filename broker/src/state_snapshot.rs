//! Snapshots of a partition's derived state — the idempotent producers' last batches and the
//! key → last offset index — so opening a partition reads only the log's tail, not the log.
//!
//! Contract: a snapshot covers exactly the batches before its `covered_offset` and is written
//! only once the log's high watermark has reached that offset (everything it reflects is
//! durable: a crash can never leave a snapshot that remembers a batch the log lost). The
//! producers' state is captured synchronously with the offset (no await between reading the
//! state and the offset). The key index and tables, which can hold millions of keys, are
//! written a step at a time ([`SnapshotWriter`], [`SNAPSHOT_STEP_BYTES`]): a table holds
//! still meanwhile (`table.rs`), while the key index goes on noting appends, so its snapshot
//! may name offsets after `covered_offset` — all of them made durable before it is kept, and
//! set again by the replay from `covered_offset` at load (`key_index.rs`). Stored durably
//! (temporary file, fsync, rename, directory fsync) off the reactor thread, read and decoded
//! off it too, and loaded at open only if its offset is within the recovered log. A
//! missing, stale or damaged snapshot costs a longer scan, never correctness. The shard
//! takes them every `state_snapshot_interval_ms` for partitions that changed, and at a
//! clean close.

use std::path::{Path, PathBuf};

use tracing::warn;

use crate::producer_state::ProducerStates;

/// The producers' snapshot in a partition's directory.
pub const PRODUCERS_FILE: &str = "producers.json";
/// The key index's snapshot in a partition's directory.
pub const KEYS_FILE: &str = "keys.snapshot";
/// The projection table's snapshot in a partition's directory (same format as the key
/// index's: key → offset).
pub const TABLE_FILE: &str = "table.snapshot";
/// A state table's snapshot in a partition's directory (JSON: covered offset, aggregates).
pub const AGGREGATES_FILE: &str = "aggregates.json";
/// The start of a state table over the topic's snapshot file: `table-NAME.json`.
pub const DERIVED_TABLE_PREFIX: &str = "table-";

/// The snapshot file of state table `name` declared over the partition's topic.
pub fn derived_table_file(name: &str) -> String {
    format!("{DERIVED_TABLE_PREFIX}{name}.json")
}

const KEYS_MAGIC: &[u8; 8] = b"KEYIDX01";
/// Between a snapshot's name and the number of one of its temporary files.
const TMP_INFIX: &str = ".tmp.";

/// Removes the temporary files a crash in the middle of a store left in `dir`.
pub fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let ours = [PRODUCERS_FILE, KEYS_FILE, TABLE_FILE, AGGREGATES_FILE]
            .iter()
            .any(|f| name.strip_prefix(f).is_some_and(|rest| rest.starts_with(TMP_INFIX)))
            || (name.starts_with(DERIVED_TABLE_PREFIX) && name.contains(TMP_INFIX));
        if ours {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// What `PRODUCERS_FILE` holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct ProducerSnapshot<S> {
    /// The state reflects every batch before this offset (and none after).
    covered_offset: u64,
    states: S,
}

/// The producers' state as stored: `(covered_offset, states)`.
pub fn encode_producers(covered_offset: u64, states: &ProducerStates) -> Vec<u8> {
    serde_json::to_vec(&ProducerSnapshot { covered_offset, states }).expect("plain data")
}

/// The producers' snapshot in `dir`, if there is a readable one.
pub fn load_producers(dir: &Path) -> Option<(u64, ProducerStates)> {
    let bytes = std::fs::read(dir.join(PRODUCERS_FILE)).ok()?;
    match serde_json::from_slice::<ProducerSnapshot<ProducerStates>>(&bytes) {
        Ok(s) => Some((s.covered_offset, s.states)),
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "producer-state snapshot unreadable; rebuilding from the log");
            None
        }
    }
}

/// A key → offset map (the key index, a projection table) as stored: magic, covered offset,
/// entry count, entries (`u32` key length, key, `u64` offset), CRC32C of everything before
/// it. Little-endian throughout. `count` is the number of entries `keys` yields.
pub fn encode_keys<'a>(
    covered_offset: u64,
    count: usize,
    keys: impl Iterator<Item = (&'a Vec<u8>, &'a u64)> + Clone,
) -> Vec<u8> {
    let bytes: usize = keys.clone().map(|(k, _)| k.len() + 12).sum();
    let mut out = keys_header(covered_offset, count);
    out.reserve(bytes + 4);
    for (key, offset) in keys {
        push_key_entry(&mut out, key, *offset);
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Why a key snapshot cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySnapshotError {
    /// Shorter than its fixed parts, or its entries run past the end.
    #[error("truncated")]
    Truncated,
    /// Not a key snapshot (or another version of one).
    #[error("bad magic")]
    Magic,
    /// The CRC32C does not match.
    #[error("checksum mismatch")]
    Checksum,
    /// Bytes left after the announced entries.
    #[error("{0} bytes after the last entry")]
    Trailing(usize),
}

/// Reads what [`encode_keys`] wrote: `(covered_offset, keys)`. Never trusts a length before
/// the CRC has matched, and never allocates by one beyond the bytes present.
pub fn decode_keys<M: Default + Extend<(Vec<u8>, u64)>>(
    bytes: &[u8],
) -> Result<(u64, M), KeySnapshotError> {
    let (body, crc) = bytes.split_last_chunk::<4>().ok_or(KeySnapshotError::Truncated)?;
    if body.len() < 24 {
        return Err(KeySnapshotError::Truncated);
    }
    if &body[..8] != KEYS_MAGIC {
        return Err(KeySnapshotError::Magic);
    }
    if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
        return Err(KeySnapshotError::Checksum);
    }
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    let covered_offset = u64_at(8);
    let count = u64_at(16);
    // Nothing is allocated by `count`: entries are added as the bytes present yield them.
    let mut keys = M::default();
    let mut at = 24usize;
    for _ in 0..count {
        let len_bytes = body.get(at..at + 4).ok_or(KeySnapshotError::Truncated)?;
        let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
        let key = body.get(at + 4..at + 4 + len).ok_or(KeySnapshotError::Truncated)?;
        let offset = body.get(at + 4 + len..at + 12 + len).ok_or(KeySnapshotError::Truncated)?;
        keys.extend([(key.to_vec(), u64::from_le_bytes(offset.try_into().expect("8 bytes")))]);
        at += 12 + len;
    }
    if at != body.len() {
        return Err(KeySnapshotError::Trailing(body.len() - at));
    }
    Ok((covered_offset, keys))
}

/// The key → offset snapshot `name` ([`KEYS_FILE`], [`TABLE_FILE`]) in `dir`, if there is a
/// readable one (read off the reactor).
pub async fn load_keys<M: Default + Extend<(Vec<u8>, u64)> + Send + 'static>(
    dir: PathBuf,
    name: &'static str,
) -> Option<(u64, M)> {
    load(dir, name.to_owned(), |bytes| decode_keys(bytes).map_err(|e| e.to_string())).await
}

/// The JSON snapshot `name` in `dir`, if there is a readable one (read off the reactor).
pub async fn load_json<T: serde::de::DeserializeOwned + Send + 'static>(
    dir: PathBuf,
    name: String,
) -> Option<T> {
    load(dir, name, |bytes| serde_json::from_slice(bytes).map_err(|e| e.to_string())).await
}

/// Reads `dir/name` and decodes it, off the reactor; a missing file is `None`, an
/// undecodable one is `None` with a warning (the caller rebuilds from the log).
async fn load<T: Send + 'static>(
    dir: PathBuf,
    name: String,
    decode: impl FnOnce(&[u8]) -> Result<T, String> + Send + 'static,
) -> Option<T> {
    // Decoded off the reactor too: a snapshot of millions of keys takes seconds.
    let read = glommio::executor()
        .spawn_blocking({
            let path = dir.join(&name);
            move || std::fs::read(path).map(|bytes| decode(&bytes))
        })
        .await;
    match read.ok()? {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(dir = %dir.display(), file = name, error = %e, "snapshot unreadable; rebuilding from the log");
            None
        }
    }
}

/// Bytes a snapshot written as it is encoded ([`SnapshotWriter`]) takes per step: encoding
/// a step of a large table or key index holds the shard's thread for about a millisecond
/// (a whole table of a million keys took 80 ms, ten million 1.7 s, as JSON 7 s), and one
/// step is what the snapshot holds in memory.
pub const SNAPSHOT_STEP_BYTES: usize = 256 << 10;

/// A snapshot stored as it is encoded, step by step, so neither the encoding nor the bytes
/// need the whole state at once: a temporary file in `dir` takes each step off the reactor
/// thread; [`SnapshotWriter::finish`] syncs it, renames it to its name and syncs the
/// directory; dropped unfinished (abandoned, or a crash), the temporary file is left for
/// [`SnapshotWriter::abandon`] or the next start ([`remove_leftovers`]) to remove.
pub struct SnapshotWriter {
    dir: PathBuf,
    name: String,
    tmp: PathBuf,
    file: std::sync::Arc<std::fs::File>,
    /// CRC32C of everything written.
    crc: u32,
}

impl SnapshotWriter {
    /// A new temporary file for snapshot `name` in `dir`.
    pub async fn create(dir: PathBuf, name: String) -> std::io::Result<Self> {
        let tmp = dir.join(temporary_name(&name));
        let file = glommio::executor()
            .spawn_blocking({
                let tmp = tmp.clone();
                move || std::fs::File::create(tmp)
            })
            .await?;
        Ok(SnapshotWriter { dir, name, tmp, file: std::sync::Arc::new(file), crc: 0 })
    }

    /// Appends `step` (off the reactor thread).
    pub async fn write(&mut self, step: Vec<u8>) -> std::io::Result<()> {
        use std::io::Write;
        self.crc = crc32c::crc32c_append(self.crc, &step);
        let file = self.file.clone();
        glommio::executor().spawn_blocking(move || (&*file).write_all(&step)).await
    }

    /// CRC32C of everything written so far.
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// Makes the snapshot durable under its name: fsync, rename, directory fsync.
    pub async fn finish(self) -> std::io::Result<()> {
        let SnapshotWriter { dir, name, tmp, file, .. } = self;
        glommio::executor().spawn_blocking(move || install(&file, &tmp, &dir, &name)).await
    }

    /// Removes the temporary file: the snapshot is not stored.
    pub async fn abandon(self) {
        let tmp = self.tmp;
        let _ = glommio::executor().spawn_blocking(move || std::fs::remove_file(tmp)).await;
    }
}

/// A unique temporary file name for snapshot `name`: two stores of one snapshot (a periodic
/// one abandoned at shutdown still running on its thread, and the close's) never write one
/// file together, and the last rename wins, whole.
fn temporary_name(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{name}{TMP_INFIX}{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The fixed start of a key → offset snapshot ([`encode_keys`]) of `count` entries.
pub fn keys_header(covered_offset: u64, count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(KEYS_MAGIC);
    out.extend_from_slice(&covered_offset.to_le_bytes());
    out.extend_from_slice(&(count as u64).to_le_bytes());
    out
}

/// Appends one entry of a key → offset snapshot to `out`.
pub fn push_key_entry(out: &mut Vec<u8>, key: &[u8], offset: u64) {
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&offset.to_le_bytes());
}

/// Removes snapshot `dir/name` durably (the directory synced), off the reactor thread; a
/// missing one is fine.
pub async fn remove(dir: PathBuf, name: &'static str) -> std::io::Result<()> {
    glommio::executor()
        .spawn_blocking(move || {
            match std::fs::remove_file(dir.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
}

/// Stores `bytes` as `dir/name` durably, off the reactor thread.
pub async fn store(dir: PathBuf, name: String, bytes: Vec<u8>) -> std::io::Result<()> {
    glommio::executor().spawn_blocking(move || store_blocking(&dir, &name, &bytes)).await
}

/// Temporary file, fsync, rename, directory fsync. The temporary file's name is unique, so
/// two stores of one snapshot (a periodic one abandoned at shutdown still running on its
/// thread, and the close's) never write one file together: the last rename wins, whole.
pub fn store_blocking(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(temporary_name(name));
    let mut file = std::fs::File::create(&tmp)?;
    if let Err(e) = file.write_all(bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    install(&file, &tmp, dir, name)
}

/// Makes temporary file `tmp` (written through `file`) snapshot `dir/name` durably: fsync,
/// rename, directory fsync. On failure the temporary file is removed, not left for the next
/// start: a disk that keeps failing would collect one per snapshot.
fn install(file: &std::fs::File, tmp: &Path, dir: &Path, name: &str) -> std::io::Result<()> {
    let installed = file.sync_all().and_then(|()| std::fs::rename(tmp, dir.join(name)));
    if installed.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    installed?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn keys_round_trip_and_damage_is_refused() {
        let mut keys = HashMap::new();
        for i in 0..1000u64 {
            keys.insert(format!("key-{i}").into_bytes(), i * 3);
        }
        keys.insert(Vec::new(), 7); // the empty key is a key
        let bytes = encode_keys(4242, keys.len(), keys.iter());
        assert_eq!(decode_keys(&bytes), Ok((4242, keys.clone())));
        let empty = HashMap::new();
        assert_eq!(decode_keys(&encode_keys(0, 0, empty.iter())), Ok((0, empty)));
        // The same bytes read as an ordered map (a projection table's).
        let ordered: (u64, std::collections::BTreeMap<Vec<u8>, u64>) = decode_keys(&bytes).unwrap();
        assert_eq!(ordered.1.len(), keys.len());
        for cut in [0, 3, 27, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode_keys::<HashMap<_, _>>(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for flip in [0, 9, 30, bytes.len() - 2] {
            let mut bad = bytes.clone();
            bad[flip] ^= 1;
            assert!(decode_keys::<HashMap<_, _>>(&bad).is_err(), "flip at {flip}");
        }
        // A forged count with a matching CRC: refused without allocating by it.
        let mut forged = bytes[..bytes.len() - 4].to_vec();
        forged[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        let crc = crc32c::crc32c(&forged);
        forged.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_keys::<HashMap<_, _>>(&forged), Err(KeySnapshotError::Truncated));
    }

    #[test]
    fn producers_round_trip() {
        let mut states = ProducerStates::default();
        states.record(7, 0, 0, 10, 100, 1_000);
        let bytes = encode_producers(110, &states);
        let dir = tempfile::tempdir().unwrap();
        store_blocking(dir.path(), PRODUCERS_FILE, &bytes).unwrap();
        let (covered, back) = load_producers(dir.path()).unwrap();
        assert_eq!((covered, back.len()), (110, 1));
    }
}
