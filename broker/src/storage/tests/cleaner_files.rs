//! Compaction's files, deterministic on `SimDisk`: the persisted progress spares a restart
//! the whole-log pass (and a damaged checkpoint only costs that pass), a cleaned segment's
//! index files are written with it and serve reads by offset and by timestamp, and small
//! cleaned segments merge keeping every offset.

use super::compaction_sim::{check, check_cleaned, keyed_batch, read_records, Rec};
use super::*;

const DIR: &str = "/sim/cleaner/0";

fn config() -> LogConfig {
    let mut c = small_config();
    c.compact = true;
    c.segment_bytes_max = 8 << 10;
    c.index_interval_bytes = 256;
    c.cleaner_dirty_percent_min = 0;
    c.delete_retention_ms = i64::MAX; // tombstones stay: a pass over a clean log removes nothing
    c
}

async fn open(disk: &SimDisk, config: &LogConfig) -> PartitionLog<SimDisk> {
    let cache = ShardCache::new(0).partition();
    PartitionLog::open(disk.clone(), PathBuf::from(DIR), config.clone(), cache, unlimited_files())
        .await
        .unwrap()
}

/// Appends `batches` keyed batches over `keys` keys, acked durable, into the model.
async fn append_keyed(
    log: &PartitionLog<SimDisk>,
    rng: &mut fastrand::Rng,
    batches: usize,
    keys: u32,
    now_ms: &mut i64,
    durable: &mut BTreeMap<u64, Rec>,
) {
    for _ in 0..batches {
        *now_ms += 10;
        let (batch, recs) = keyed_batch(rng, keys, *now_ms, *now_ms as u64);
        let done = log.append(&batch, AckLevel::Durable, *now_ms).await.unwrap();
        for (i, r) in recs.into_iter().enumerate() {
            durable.insert(done.base_offset + i as u64, r);
        }
    }
}

/// Passes until none is due; (passes, segments merged).
async fn clean_all(log: &PartitionLog<SimDisk>, now_ms: i64) -> (u64, u64) {
    let (mut passes, mut merged) = (0, 0);
    while let Some(stats) = log.clean(now_ms).await.unwrap() {
        passes += 1;
        merged += stats.segments_merged;
    }
    (passes, merged)
}

/// Base offsets of the closed segments on disk (every `.log` but the last).
fn closed_bases(disk: &SimDisk) -> Vec<u64> {
    let mut bases: Vec<u64> = disk
        .paths()
        .iter()
        .filter(|p| p.parent() == Some(Path::new(DIR)))
        .filter_map(|p| segment::parse_log_name(&p.file_name()?.to_string_lossy()))
        .collect();
    bases.sort_unstable();
    bases.pop();
    bases
}

/// The `(relative offset, position)` entries of a segment's `.index` file, each checked to
/// point at the batch it names.
fn index_entries(disk: &SimDisk, base: u64) -> Vec<(u32, u32)> {
    let dir = Path::new(DIR);
    let index = disk
        .file_bytes(&dir.join(segment::file_name(base, "index")))
        .unwrap_or_else(|| panic!("segment {base} has no .index file"));
    assert!(
        disk.file_bytes(&dir.join(segment::file_name(base, "timeindex"))).is_some(),
        "segment {base} has no .timeindex file"
    );
    let log = disk.file_bytes(&dir.join(segment::file_name(base, "log"))).unwrap();
    let mut entries = Vec::new();
    for e in index.chunks_exact(8) {
        let rel = u32::from_le_bytes(e[0..4].try_into().unwrap());
        let pos = u32::from_le_bytes(e[4..8].try_into().unwrap());
        if (rel, pos) == (0, 0) {
            break; // the zero padding after the entries
        }
        let h = wire::BatchHeader::new(&log[pos as usize..]).expect("a header at the entry");
        assert_eq!(h.base_offset(), base + u64::from(rel), "index entry of {base} at {pos}");
        entries.push((rel, pos));
    }
    entries
}

#[test]
fn a_restart_resumes_cleaning_from_the_checkpoint() {
    run(|| async {
        let disk = SimDisk::new(1, SimFaults::default());
        let config = config();
        let log = open(&disk, &config).await;
        let mut rng = fastrand::Rng::with_seed(1);
        let (mut now_ms, mut durable) = (1_000_000i64, BTreeMap::new());
        append_keyed(&log, &mut rng, 300, 20, &mut now_ms, &mut durable).await;
        assert!(clean_all(&log, now_ms).await.0 > 0);
        let cleaned_to = log.cleaned_to();
        assert!(cleaned_to > 0);
        let got = read_records(&log).await;
        log.close().await.unwrap();
        // A clean restart and a crash both resume where the last pass ended: nothing is due.
        for crash in [false, true] {
            let log = open(&disk, &config).await;
            assert_eq!(log.cleaned_to(), cleaned_to, "crash {crash}");
            assert!(log.clean(now_ms).await.unwrap().is_none(), "a restart mapped the log again");
            if crash {
                drop(log);
                disk.crash();
            } else {
                log.close().await.unwrap();
            }
        }
        // A damaged checkpoint, then a missing one, cost one pass over the whole log, which
        // changes nothing.
        let path = Path::new(DIR).join("cleaner-checkpoint");
        let mut bytes = disk.file_bytes(&path).unwrap();
        bytes[9] ^= 1;
        disk.set_file_bytes(&path, bytes);
        for damaged in [true, false] {
            let log = open(&disk, &config).await;
            assert_eq!(log.cleaned_to(), 0, "damaged {damaged}");
            let stats = log.clean(now_ms).await.unwrap().expect("a pass over the whole log");
            assert_eq!(stats.records_removed, 0);
            assert_eq!(log.cleaned_to(), cleaned_to);
            assert_eq!(read_records(&log).await, got);
            log.close().await.unwrap();
            io::Disk::remove(&disk, &path).await.unwrap();
        }
    });
}

#[test]
fn a_cleaned_segment_is_read_through_index_files_written_with_it() {
    run(|| async {
        let disk = SimDisk::new(2, SimFaults::default());
        let config = config();
        let log = open(&disk, &config).await;
        let mut rng = fastrand::Rng::with_seed(2);
        let (mut now_ms, mut durable) = (1_000_000i64, BTreeMap::new());
        append_keyed(&log, &mut rng, 300, 40, &mut now_ms, &mut durable).await;
        let before = log.segment_count();
        clean_all(&log, now_ms).await;
        assert!(log.cleaner_stats().segments_rewritten > 0);
        let got = read_records(&log).await;
        // No restart: every closed segment, rewritten ones too, has index files that match.
        let mut probes = Vec::new();
        for base in closed_bases(&disk) {
            let entries = index_entries(&disk, base);
            if entries.len() < 2 {
                continue;
            }
            // Reads from the first entry on, and a timestamp lookup that starts at an
            // entry, never need the segment's first batch.
            let (first_rel, _) = entries[0];
            let (last_rel, _) = entries[entries.len() - 1];
            // A record kept past the last entry: the lookup of its timestamp finds it.
            let r = log.read(base + u64::from(last_rel), 4096, FirstBatch::Always).await.unwrap();
            let mut scratch = wire::AlignedVec::new();
            let env = wire::Envelopes::new(&r.batches[0]).next().unwrap().unwrap();
            let view = env.open(&mut scratch).unwrap();
            let Some(rec) = view.records().next() else { continue };
            let (ts, at_ts) = (rec.timestamp_ms(), (rec.offset(), rec.timestamp_ms()));
            assert_eq!(log.offset_for_timestamp(ts).await.unwrap(), Some(at_ts));
            probes.push((base, base + u64::from(first_rel), ts, at_ts));
        }
        assert!(probes.len() >= 2, "{} of {before} segments with index entries", probes.len());
        drop(log);
        disk.crash();
        // Damage each probed segment's first batch: a restart that scanned it would fence
        // the segment there, and a read from its start fails.
        for &(base, ..) in &probes {
            let path = Path::new(DIR).join(segment::file_name(base, "log"));
            let mut bytes = disk.file_bytes(&path).unwrap();
            let len = wire::BatchHeader::new(&bytes).unwrap().batch_len() as usize;
            bytes[len - 1] ^= 0xFF;
            disk.set_file_bytes(&path, bytes);
        }
        let log = open(&disk, &config).await;
        for &(base, from, ts, at_ts) in &probes {
            assert!(log.read(base, 1 << 20, FirstBatch::Always).await.is_err(), "{base} damaged");
            let next = log.segment_after(base).unwrap();
            let mut offset = from;
            let mut scratch = wire::AlignedVec::new();
            while offset < next {
                let r = log.read(offset, 4096, FirstBatch::Always).await.unwrap();
                for view in &r.batches {
                    for env in wire::Envelopes::new(view) {
                        let env = env.unwrap();
                        for rec in env.open(&mut scratch).unwrap().records() {
                            if rec.offset() >= offset {
                                let want = &got[&rec.offset()];
                                assert_eq!(rec.key(), want.0.as_deref());
                                assert_eq!(rec.value(), want.1.as_deref());
                            }
                        }
                        offset = env.header().next_offset();
                    }
                }
            }
            assert_eq!(log.offset_for_timestamp(ts).await.unwrap(), Some(at_ts), "segment {base}");
        }
        log.close().await.unwrap();
    });
}

#[test]
fn small_cleaned_segments_merge_keeping_their_offsets() {
    run(|| async {
        let disk = SimDisk::new(3, SimFaults::default());
        let config = config();
        let log = open(&disk, &config).await;
        let mut rng = fastrand::Rng::with_seed(3);
        let (mut now_ms, mut durable) = (1_000_000i64, BTreeMap::new());
        append_keyed(&log, &mut rng, 300, 10, &mut now_ms, &mut durable).await;
        // The first pass shrinks full segments; merges come with the next (sizes before a
        // rewrite decide the groups, as in Kafka).
        clean_all(&log, now_ms).await;
        let before = log.segment_count();
        append_keyed(&log, &mut rng, 40, 10, &mut now_ms, &mut durable).await;
        let (passes, merged) = clean_all(&log, now_ms).await;
        assert!(passes > 0 && merged > 0, "{passes} passes merged {merged} segments");
        let after = log.segment_count();
        assert!(after * 2 <= before, "{before} segments before, {after} after the merges");
        let got = read_records(&log).await;
        check(&got, &durable, &BTreeMap::new());
        check_cleaned(&got, log.cleaned_to(), log.high_watermark());
        for base in closed_bases(&disk) {
            index_entries(&disk, base);
        }
        // The merged log is what a crash keeps.
        drop(log);
        disk.crash();
        let log = open(&disk, &config).await;
        assert_eq!(log.segment_count(), after);
        assert_eq!(read_records(&log).await, got);
        log.close().await.unwrap();
    });
}
