//! Damaged files under the real binary: the active segment cut mid-batch with garbage
//! appended, index files deleted or overwritten, a byte flipped inside a closed segment. The
//! broker must start, cut or fence the damage, say so in its log (file and offsets), serve
//! everything before it, and report the flipped batch as corrupt, never as data.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use integration_tests::{create_topic, Broker, Conn};
use wire::*;

const TOPIC: &str = "damaged";

fn batch(partition: u32, seq: u32) -> AlignedVec {
    let mut b = BatchBuilder::new(1 << 20);
    for i in 0..8u32 {
        let value = format!("p{partition}-s{seq}-r{i}-{}", "v".repeat(400));
        b.append(i64::from(seq), Some(b"key"), Some(value.as_bytes()), &[]).unwrap();
    }
    b.finish().unwrap()
}

fn produce(conn: &mut Conn, partition: u32, b: &[u8]) {
    assert_eq!(integration_tests::produce(conn, TOPIC, partition, b, AckLevel::Durable).error, 0);
}

/// Batches as (base offset, bytes), and the high watermark.
type Fetched = (Vec<(u64, Vec<u8>)>, u64);

/// One fetch at `offset`: the batches or the error code.
fn fetch(conn: &mut Conn, partition: u32, offset: u64) -> Result<Fetched, ErrorCode> {
    let resp: FetchResponse = conn.call(&FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 8 << 20,
        topics: vec![FetchTopic {
            name: TOPIC.into(),
            partitions: vec![FetchPartition { partition, offset, max_bytes: 4 << 20 }],
        }],
    });
    let p = &resp.topics[0].partitions[0];
    if p.error != 0 {
        return Err(ErrorCode::from_u16(p.error).unwrap());
    }
    let bytes = to_aligned(&p.batches);
    let batches = Batches::new(&bytes)
        .map(|b| {
            let b = b.expect("served batches validate");
            (b.header().base_offset(), b.bytes().to_vec())
        })
        .collect();
    Ok((batches, p.high_watermark))
}

/// Every batch from `from` to the high watermark, checking offsets are dense.
fn fetch_all(conn: &mut Conn, partition: u32, from: u64) -> BTreeMap<u64, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut offset = from;
    loop {
        let (batches, hw) = fetch(conn, partition, offset).expect("fetch");
        if batches.is_empty() {
            assert_eq!(offset, hw);
            return out;
        }
        for (base, bytes) in batches {
            assert_eq!(base, offset, "dense offsets");
            let view = BatchView::validate(&bytes).unwrap();
            offset = view.header().next_offset();
            out.insert(base, bytes);
        }
    }
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn base_of(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

#[test]
fn damaged_files_are_cut_or_fenced_logged_and_the_rest_is_served() {
    let mut broker = Broker::start_with_env(1, &[("BROKER_SEGMENT_BYTES_MAX", "65536")]);
    let mut conn = broker.connect();
    create_topic(&mut conn, TOPIC, 2);
    for seq in 0..80 {
        for p in 0..2 {
            produce(&mut conn, p, &batch(p, seq));
        }
    }
    let stored: Vec<BTreeMap<u64, Vec<u8>>> = (0..2).map(|p| fetch_all(&mut conn, p, 0)).collect();
    drop(conn);
    assert_eq!(broker.stop(), Some(0));

    let p0 = broker.partition_dir(TOPIC, 0);
    let p1 = broker.partition_dir(TOPIC, 1);
    let logs0 = files(&p0, "log");
    let logs1 = files(&p1, "log");
    assert!(logs0.len() >= 4 && logs1.len() >= 4, "several segments: {logs0:?}");

    // Partition 0: the active segment cut mid-batch, then garbage appended.
    let active = logs0.last().unwrap();
    let len = std::fs::metadata(active).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(active).unwrap();
    f.set_len(len - 100).unwrap();
    drop(f);
    let mut garbage = vec![0u8; 3000];
    fastrand::Rng::with_seed(7).fill(&mut garbage);
    std::fs::OpenOptions::new().append(true).open(active).unwrap().write_all(&garbage).unwrap();
    // ... and index files of closed segments deleted or overwritten with garbage.
    std::fs::remove_file(logs0[0].with_extension("index")).unwrap();
    std::fs::remove_file(logs0[0].with_extension("timeindex")).unwrap();
    std::fs::write(logs0[1].with_extension("index"), &garbage[..1000]).unwrap();
    std::fs::write(logs0[1].with_extension("timeindex"), &garbage[1000..1600]).unwrap();

    // Partition 1: a byte flipped inside the first (closed) segment's first batch.
    let mut bytes = std::fs::read(&logs1[0]).unwrap();
    bytes[300] ^= 0x20;
    std::fs::write(&logs1[0], &bytes).unwrap();

    broker.restart();
    let log = broker.log_text();
    let active_name = active.file_name().unwrap().to_str().unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("truncating torn or corrupt tail") && l.contains(active_name)),
        "the cut is logged with the file:\n{log}"
    );

    let mut conn = broker.connect();
    // Everything before the cut is served byte for byte; exactly the torn batch is gone.
    let got0 = fetch_all(&mut conn, 0, 0);
    assert_eq!(got0.len(), stored[0].len() - 1, "only the torn batch is cut");
    for (o, b) in &got0 {
        assert_eq!(stored[0].get(o), Some(b), "partition 0 batch at {o} changed");
    }
    let cut_at = *stored[0].keys().last().unwrap();
    assert!(!got0.contains_key(&cut_at));
    // Appends continue at the cut.
    produce(&mut conn, 0, &batch(0, 999));
    let (after, _) = fetch(&mut conn, 0, cut_at).unwrap();
    assert_eq!(after[0].0, cut_at);

    // The flipped batch is an error, never data; everything after its segment is served.
    assert_eq!(fetch(&mut conn, 1, 0).unwrap_err(), ErrorCode::CorruptStoredData);
    let second = base_of(&logs1[1]);
    let got1 = fetch_all(&mut conn, 1, second);
    assert_eq!(got1.len(), stored[1].range(second..).count());
    for (o, b) in &got1 {
        assert_eq!(stored[1].get(o), Some(b), "partition 1 batch at {o} changed");
    }
    let log = broker.log_text();
    let flipped_name = logs1[0].file_name().unwrap().to_str().unwrap();
    assert!(
        log.lines().any(|l| l.contains("failed validation on read") && l.contains(flipped_name)),
        "the corrupt read is logged with the file:\n{log}"
    );
    assert_eq!(broker.stop(), Some(0));
}
