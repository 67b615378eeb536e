//! Disk full on a real filesystem: the data dir on a small loop-mounted ext4 image. Produce
//! gets DISK_FULL, reads keep working, producing resumes once space is freed, nothing acked
//! is lost, the broker never crashes. Needs root (mount); skipped with a message otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use integration_tests::{create_topic, Broker};
use wire::*;

struct Mount {
    dir: PathBuf,
    image: PathBuf,
}

impl Mount {
    /// A fresh image of `mb` MiB mounted under a directory named after `name` (tests of one
    /// process run in parallel).
    fn new(mb: u64, name: &str) -> Option<Mount> {
        let base =
            std::env::temp_dir().join(format!("broker-diskfull-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&base).ok()?;
        let image = base.join("disk.ext4");
        let dir = base.join("mnt");
        std::fs::create_dir_all(&dir).ok()?;
        std::fs::File::create(&image).ok()?.set_len(mb << 20).ok()?;
        let ok = |c: &mut Command| c.output().map(|o| o.status.success()).unwrap_or(false);
        if !ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image))
            || !ok(Command::new("mount").args(["-o", "loop"]).arg(&image).arg(&dir))
        {
            let _ = std::fs::remove_dir_all(&base);
            return None;
        }
        Some(Mount { dir, image })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(self.image.parent().unwrap());
    }
}

fn big_batch(seq: u32) -> AlignedVec {
    let mut b = BatchBuilder::new(1 << 20);
    let value = vec![(seq % 251) as u8; 1000];
    let mut i = 0u32;
    while b.append(i64::from(seq), Some(&seq.to_le_bytes()), Some(&value), &[]).is_ok() {
        i += 1;
    }
    let _ = i;
    b.finish().unwrap()
}

fn produce(conn: &mut integration_tests::Conn, b: &[u8]) -> ProducePartitionResult {
    let r: ProduceResponse = conn.call(&ProduceRequest {
        ack: AckLevel::Durable,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: "full".into(),
            partitions: vec![ProducePartition {
                partition: 0,
                batches: b.to_vec(),
                expect: Default::default(),
            }],
        }],
    });
    r.topics[0].partitions[0].clone()
}

fn fetch_from(conn: &mut integration_tests::Conn, offset: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = offset;
    loop {
        let r: FetchResponse = conn.call(&FetchRequest {
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: 8 << 20,
            topics: vec![FetchTopic {
                name: "full".into(),
                partitions: vec![FetchPartition { partition: 0, offset, max_bytes: 4 << 20 }],
            }],
        });
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error, 0, "reads keep working: {:?}", ErrorCode::from_u16(p.error));
        if p.batches.is_empty() {
            return out;
        }
        let bytes = to_aligned(&p.batches);
        for b in Batches::new(&bytes) {
            let b = b.unwrap();
            offset = b.header().next_offset();
            out.push(b.bytes().to_vec());
        }
    }
}

fn same(stored: &[u8], produced: &[u8]) -> bool {
    stored.len() == produced.len() && stored[24..] == produced[24..]
}

#[test]
fn disk_full_is_an_error_reads_work_and_producing_resumes_when_space_returns() {
    disk_full_then_space_returns(false);
}

#[test]
fn with_the_shard_journal_disk_full_is_an_error_and_producing_resumes_when_space_returns() {
    disk_full_then_space_returns(true);
}

fn disk_full_then_space_returns(journal: bool) {
    let Some(mount) = Mount::new(48, if journal { "journal" } else { "plain" }) else {
        eprintln!(
            "skipping: cannot create and mount an ext4 image here (needs root and mkfs.ext4)"
        );
        return;
    };
    // Take most of the space with a file we can delete later.
    let filler = mount.dir.join("filler");
    std::fs::write(&filler, vec![1u8; 20 << 20]).unwrap();
    let data_dir: &Path = &mount.dir;
    let mut broker = Broker::start_on_dir_with_env(
        1,
        data_dir.join("data"),
        &[
            ("BROKER_SEGMENT_BYTES_MAX", "4194304"),
            ("BROKER_CACHE_BYTES_PER_SHARD", "1048576"),
            ("BROKER_SHARD_JOURNAL", if journal { "true" } else { "false" }),
            ("BROKER_SHARD_JOURNAL_FILE_BYTES", "4194304"),
        ],
    );
    let mut conn = broker.connect();
    create_topic(&mut conn, "full", 1);
    let mut acked: Vec<AlignedVec> = Vec::new();
    let mut full_errors = 0;
    for seq in 0..200u32 {
        let b = big_batch(seq);
        let r = produce(&mut conn, &b);
        match ErrorCode::from_u16(r.error) {
            Some(ErrorCode::None) => acked.push(b),
            Some(ErrorCode::DiskFull) => {
                full_errors += 1;
                if full_errors >= 3 {
                    break;
                }
            }
            other => panic!("unexpected error {other:?}; log:\n{}", broker.log_text()),
        }
    }
    assert!(full_errors >= 1, "the disk never filled ({} batches acked)", acked.len());
    assert!(!acked.is_empty());
    // Reads keep working while the disk is full, and return every acked batch.
    let stored = fetch_from(&mut conn, 0);
    assert_eq!(stored.len(), acked.len());
    assert!(stored.iter().zip(&acked).all(|(s, a)| same(s, a)));
    // Free space: producing resumes.
    std::fs::remove_file(&filler).unwrap();
    // (With the journal, writes that waited for space are tried again after a pause of up
    // to a second, and appends are refused until one succeeded.)
    let mut resumed = false;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    for seq in 1000..1010u32 {
        let b = big_batch(seq);
        loop {
            let r = produce(&mut conn, &b);
            if r.error == 0 {
                acked.push(b);
                resumed = true;
                break;
            }
            assert_eq!(ErrorCode::from_u16(r.error), Some(ErrorCode::DiskFull));
            if std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    assert!(resumed, "producing did not resume after space was freed; log:\n{}", broker.log_text());
    // Nothing acked is lost, also across a restart.
    assert_eq!(broker.stop(), Some(0), "the broker never crashed");
    broker.restart();
    let mut conn = broker.connect();
    let stored = fetch_from(&mut conn, 0);
    assert_eq!(stored.len(), acked.len());
    assert!(stored.iter().zip(&acked).all(|(s, a)| same(s, a)));
    drop(broker);
    drop(mount);
}

/// `count` records of key `key`, 1,000-byte values.
fn keyed_batch(key: &[u8], count: usize) -> AlignedVec {
    let mut b = BatchBuilder::new(4 << 20);
    for _ in 0..count {
        b.append(0, Some(key), Some(&[9u8; 1000]), &[]).unwrap();
    }
    b.finish().unwrap()
}

fn produce_expecting(
    conn: &mut integration_tests::Conn,
    b: &[u8],
    expect: ExpectedPosition,
) -> ProducePartitionResult {
    let r: ProduceResponse = conn.call(&ProduceRequest {
        ack: AckLevel::Durable,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: "full".into(),
            partitions: vec![ProducePartition { partition: 0, batches: b.to_vec(), expect }],
        }],
    });
    r.topics[0].partitions[0].clone()
}

/// A key-conditional append that fails for lack of space (its offsets were claimed and noted
/// in the key index, then the write failed and the end rolled back) leaves no trace in the
/// index: once space returns and another key takes those offsets, the key's real last offset
/// is still what a condition must name (before: the index named the failed append's offset,
/// now another key's record, so the true position was refused).
#[test]
fn a_conditional_append_that_failed_for_lack_of_space_leaves_no_trace_in_the_key_index() {
    let Some(mount) = Mount::new(48, "keys") else {
        eprintln!(
            "skipping: cannot create and mount an ext4 image here (needs root and mkfs.ext4)"
        );
        return;
    };
    let filler = mount.dir.join("filler");
    std::fs::write(&filler, vec![1u8; 20 << 20]).unwrap();
    let broker = Broker::start_on_dir_with_env(
        1,
        mount.dir.join("data"),
        &[
            ("BROKER_SEGMENT_BYTES_MAX", "4194304"),
            ("BROKER_CACHE_BYTES_PER_SHARD", "1048576"),
            ("BROKER_SHARD_JOURNAL", "false"),
        ],
    );
    let mut conn = broker.connect();
    create_topic(&mut conn, "full", 1);
    let first =
        produce_expecting(&mut conn, &keyed_batch(b"k", 1), ExpectedPosition::KeyNeverWritten);
    assert_eq!(first.error, 0);
    let k_at = first.base_offset as u64;
    // Fill the disk with other keys.
    let mut full = false;
    for seq in 0..200u32 {
        if produce(&mut conn, &big_batch(seq)).error == ErrorCode::DiskFull.as_u16() {
            full = true;
            break;
        }
    }
    assert!(full, "the disk never filled");
    let failed = produce_expecting(
        &mut conn,
        &keyed_batch(b"k", 1000),
        ExpectedPosition::KeyLastOffset(k_at),
    );
    assert_eq!(ErrorCode::from_u16(failed.error), Some(ErrorCode::DiskFull));
    std::fs::remove_file(&filler).unwrap();
    // Another key takes the offsets the failed append had claimed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while produce(&mut conn, &keyed_batch(b"x", 10)).error != 0 {
        assert!(std::time::Instant::now() < deadline, "producing did not resume");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let again =
        produce_expecting(&mut conn, &keyed_batch(b"k", 1), ExpectedPosition::KeyLastOffset(k_at));
    assert_eq!(
        again.error, 0,
        "k's last offset is still {k_at} (current {})",
        again.current_offset
    );
    drop(broker);
    drop(mount);
}
