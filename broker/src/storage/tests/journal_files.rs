//! The shard journal's files across shards (review finding 5): one read for the broker, each
//! shard handed only its partitions' entries, a file removed once every partition in it is
//! done whichever shard reports last, stale shard directories removed, and file numbers
//! following time across shard directories; checkpointed files recycled without their old
//! records ever replaying.

use super::*;
use crate::storage::io::Disk;
use crate::storage::journal::{
    JournalConfig, JournalLink, JournalRead, JournalReplay, Owner, ShardJournal,
};

/// 64 KiB files, 4 KiB batches.
fn small_journal() -> JournalConfig {
    journal_config(64 << 10, 4 << 10)
}

fn journal_files(disk: &SimDisk) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = disk
        .paths()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "journal"))
        .collect();
    files.sort();
    files
}

/// Journals `(topic id, partition, offset, fill byte)` entries in one record each and
/// leaves the files as a crash would.
async fn journal(disk: &SimDisk, dir: PathBuf, entries: &[(u64, u32, u64, u8)]) {
    let config = small_journal();
    let j = ShardJournal::open(disk.clone(), dir, config).await.unwrap();
    let mut links = Vec::new();
    for &(topic_id, partition, offset, fill) in entries {
        let link = j.join(topic_id, partition, offset);
        link.submit(offset, offset + 1, journal_entry(fill, 100), std::time::Instant::now())
            .unwrap();
        while link.member().journaled() <= offset {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        links.push(link);
    }
    drop(links);
    drop(j);
}

/// Journals one 3,000-byte entry (filled with its offset's low byte) per offset, each in
/// a record of its own, and marks it synced as soon as it is journaled.
async fn journal_synced(link: &JournalLink<SimDisk>, offsets: std::ops::Range<u64>) {
    for offset in offsets {
        link.submit(
            offset,
            offset + 1,
            journal_entry(offset as u8, 3000),
            std::time::Instant::now(),
        )
        .unwrap();
        while link.member().journaled() <= offset {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        link.member().synced.advance(offset + 1);
    }
}

fn fills(r: &JournalReplay, topic_id: u64, partition: u32) -> Vec<(u64, u8)> {
    r.entries(topic_id, partition).iter().map(|e| (e.base_offset, e.bytes[0])).collect()
}

/// Three earlier shards' files, read once for two shards: partition (1,0) now on shard 0
/// has entries in shard-0's and shard-1's files, (1,1) on shard 1 shares shard-0's file,
/// (9,0)'s topic is gone. Each shard gets only its entries (the newer of two at one offset
/// wins: shard-1's file was written later); a shared file goes only once both shards
/// reported, whichever is last; shard-2's directory (beyond the count) goes with its file.
#[test]
fn journal_files_are_retired_across_shards_once_every_owner_replayed() {
    run(|| async {
        let disk = SimDisk::new(21, SimFaults::default());
        let root = PathBuf::from("/j");
        journal(&disk, root.join("shard-0"), &[(1, 0, 0, 10), (1, 1, 0, 11)]).await;
        journal(&disk, root.join("shard-2"), &[(9, 0, 0, 90)]).await;
        // Each journal opened later numbers after every directory's files.
        journal(&disk, root.join("shard-1"), &[(1, 0, 0, 20), (1, 0, 1, 21)]).await;
        let files = journal_files(&disk);
        assert_eq!(
            files,
            [
                root.join("shard-0/00000000000000000000.journal"),
                root.join("shard-1/00000000000000000002.journal"),
                root.join("shard-2/00000000000000000001.journal"),
            ],
            "a new journal numbers its files after every shard directory's"
        );
        let read = JournalRead::read(&disk, &root).await.unwrap();
        let owner = |topic_id: u64, partition: u32| match (topic_id, partition) {
            (1, p) => Owner::Shard(p as usize),
            _ => Owner::Gone,
        };
        let mut replays = read.split(2, owner).into_iter();
        let (r0, r1) = (replays.next().unwrap(), replays.next().unwrap());
        assert_eq!(fills(&r0, 1, 0), [(0, 20), (1, 21)], "newest entry at an offset wins");
        assert!(fills(&r0, 1, 1).is_empty() && fills(&r0, 9, 0).is_empty());
        assert_eq!(fills(&r1, 1, 1), [(0, 11)]);
        assert!(fills(&r1, 1, 0).is_empty());

        // Shard 1 first: shard-0's file still holds (1,0), not yet replayed on shard 0.
        r1.replayed(1, 1);
        assert_eq!(r1.retire(&disk, |_| true).await, 2);
        assert!(r1.is_empty());
        // The gone topic's file went with shard-2's directory, at the first report.
        assert_eq!(journal_files(&disk), files[..2]);
        assert!(disk.list_dir(&root.join("shard-2")).await.is_err(), "stale directory removed");
        r0.replayed(1, 0);
        assert_eq!(r0.retire(&disk, |_| true).await, 0);
        assert!(journal_files(&disk).is_empty(), "every file went once both shards reported");
    });
}

/// A shard that opens its journal after another shard already removed the files of the
/// earlier run (all of them replayed there) still numbers its files after them: no file of
/// the new run takes the name of one of the old.
#[test]
fn journal_files_number_after_the_read_even_once_its_files_are_gone() {
    run(|| async {
        let disk = SimDisk::new(25, SimFaults::default());
        let root = PathBuf::from("/j");
        journal(&disk, root.join("shard-0"), &[(1, 0, 0, 10)]).await;
        journal(&disk, root.join("shard-1"), &[(1, 1, 0, 11)]).await;
        let read = JournalRead::read(&disk, &root).await.unwrap();
        let mut replays = read.split(2, |_, p| Owner::Shard(p as usize)).into_iter();
        let (r0, r1) = (replays.next().unwrap(), replays.next().unwrap());
        assert_eq!(r1.last_file_seq(), Some(1));
        r1.replayed(1, 1);
        assert_eq!(r1.retire(&disk, |_| true).await, 1);
        r0.replayed(1, 0);
        assert_eq!(r0.retire(&disk, |_| true).await, 0);
        assert!(journal_files(&disk).is_empty(), "every file of the read replayed and gone");
        let config = small_journal();
        let j = ShardJournal::open_after(
            disk.clone(),
            root.join("shard-1"),
            config,
            r1.last_file_seq(),
        )
        .await
        .unwrap();
        let link = j.join(1, 1, 1);
        link.submit(1, 2, journal_entry(12, 100), std::time::Instant::now()).unwrap();
        while link.member().journaled() <= 1 {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(journal_files(&disk), [root.join("shard-1/00000000000000000002.journal")]);
    });
}

/// A partition whose topic is deleted before it opened does not keep its files: its
/// shard drops its entries at the next retire.
#[test]
fn journal_entries_of_a_topic_deleted_before_its_open_do_not_keep_files() {
    run(|| async {
        let disk = SimDisk::new(22, SimFaults::default());
        let root = PathBuf::from("/j");
        journal(&disk, root.join("shard-0"), &[(3, 0, 0, 30), (4, 0, 0, 40)]).await;
        let read = JournalRead::read(&disk, &root).await.unwrap();
        let r = read.split(1, |_, _| Owner::Shard(0)).pop().unwrap();
        r.replayed(4, 0);
        // Topic 3 still exists but did not open: the file stays.
        assert_eq!(r.retire(&disk, |_| true).await, 1);
        assert!(!r.is_empty());
        // Topic 3 deleted.
        assert_eq!(r.retire(&disk, |id| id != 3).await, 0);
        assert!(r.is_empty());
        assert!(journal_files(&disk).is_empty());
    });
}

/// A checkpointed file is recycled as the next file, and nothing it held before is read
/// back as new: entries of 3,000 bytes, one record (4 KiB) each, 16 to a 64 KiB file, the
/// member syncing as soon as it is journaled. Files 0 and 1 come back as files 2 and 3;
/// after a crash with file 2 holding offsets 32..=40 (its old records, offsets 0..=15,
/// after them) and file 3 just recycled (offsets 16..=31 in it, its first block zeroed),
/// replay finds exactly offsets 32..=40.
#[test]
fn journal_files_are_recycled_and_their_old_records_never_replay() {
    run(|| async {
        let disk = SimDisk::new(23, SimFaults::default());
        let root = PathBuf::from("/j");
        let config = small_journal();
        let j = ShardJournal::open(disk.clone(), root.join("shard-0"), config).await.unwrap();
        let link = j.join(1, 0, 0);
        journal_synced(&link, 0..41).await;
        while j.stats().files_recycled < 2 {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        let stats = j.stats();
        assert_eq!((stats.files_created, stats.files_removed), (2, 0), "{stats:?}");
        assert_eq!(
            journal_files(&disk),
            [
                root.join("shard-0/00000000000000000002.journal"),
                root.join("shard-0/00000000000000000003.journal"),
            ],
            "files 0 and 1 recycled as 2 and 3"
        );
        drop(link);
        drop(j);
        let read = JournalRead::read(&disk, &root).await.unwrap();
        let r = read.split(1, |_, _| Owner::Shard(0)).pop().unwrap();
        let want: Vec<(u64, u8)> = (32..=40u64).map(|o| (o, o as u8)).collect();
        assert_eq!(fills(&r, 1, 0), want, "only the records written since the recycling");
    });
}

/// The first file is made when the journal opens, not by the first record: a file made
/// from zeros took ~120 ms (64 MiB here), which the first durable append after every start
/// waited for. Unused, it goes at a clean close.
#[test]
fn journal_first_file_is_ready_before_the_first_record() {
    run(|| async {
        let disk = SimDisk::new(25, SimFaults::default());
        let config = small_journal();
        let j = ShardJournal::open(disk.clone(), PathBuf::from("/j/shard-0"), config.clone())
            .await
            .unwrap();
        for _ in 0..1000 {
            if j.stats().files_created == 1 {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(j.stats().files_created, 1, "made before any record: {:?}", j.stats());
        assert_eq!(journal_files(&disk).len(), 1);
        let link = j.join(1, 0, 0);
        journal_synced(&link, 0..3).await;
        assert_eq!(j.stats().files_created, 1, "the prepared file took the records");
        drop(link);
        j.close().await.unwrap();
        assert!(journal_files(&disk).is_empty(), "{:?}", journal_files(&disk));
        let unused =
            ShardJournal::open(disk.clone(), PathBuf::from("/j/shard-0"), config).await.unwrap();
        while unused.stats().files_created == 0 {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        unused.close().await.unwrap();
        assert!(journal_files(&disk).is_empty(), "an unused file goes at close");
    });
}

/// A clean close removes the spares with the last file.
#[test]
fn journal_spare_files_go_at_close() {
    run(|| async {
        let disk = SimDisk::new(24, SimFaults::default());
        let config = small_journal();
        let j =
            ShardJournal::open(disk.clone(), PathBuf::from("/j/shard-0"), config).await.unwrap();
        let link = j.join(1, 0, 0);
        journal_synced(&link, 0..40).await;
        drop(link);
        j.close().await.unwrap();
        assert!(j.stats().files_recycled >= 1, "{:?}", j.stats());
        assert!(journal_files(&disk).is_empty(), "{:?}", journal_files(&disk));
    });
}

/// A file's records replay only while each is numbered one more than the one before: a valid
/// record further on with another number (an older cycle's stale bytes in a recycled file,
/// or a record forged inside a client's payload) is not replayed, where the next number
/// would be.
#[test]
fn journal_replay_stops_at_a_record_out_of_sequence() {
    use crate::storage::journal::{decode_record, encode_record, padded, EntryRef};
    run(|| async {
        let disk = SimDisk::new(31, SimFaults::default());
        let root = PathBuf::from("/j");
        journal(&disk, root.join("shard-0"), &[(3, 0, 0, 30), (3, 0, 1, 31)]).await;
        let path = journal_files(&disk)[0].clone();
        let bytes = disk.file_bytes(&path).expect("the journal file");
        let (mut pos, mut last) = (0usize, 0u64);
        while let Some((seq, _, len)) = decode_record(&bytes[pos..]) {
            (last, pos) = (seq, pos + padded(len));
        }
        assert!(pos > 0, "the entries were journaled");
        for (seq, replayed) in [(last + 2, false), (last + 1, true)] {
            let mut crafted = bytes.clone();
            let entry = journal_entry(99, 100);
            let refs = [EntryRef {
                topic_id: 3,
                partition: 0,
                base_offset: 2,
                next_offset: 3,
                bytes: &entry,
            }];
            encode_record(&mut crafted[pos..pos + 4096], seq, &refs);
            disk.set_file_bytes(&path, crafted);
            let read = JournalRead::read(&disk, &root).await.unwrap();
            let r = read.split(1, |_, _| Owner::Shard(0)).pop().unwrap();
            let got = fills(&r, 3, 0);
            let mut want = vec![(0, 30), (1, 31)];
            if replayed {
                want.push((2, 99));
            }
            assert_eq!(got, want, "a record numbered {seq} after {last}");
        }
    });
}
