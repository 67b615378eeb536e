//! Unit tests of tables: snapshots written in steps read back whole.

use super::snapshot::Cursor;
use super::*;

fn table(contents: Contents) -> Table {
    Table {
        snapshot_file: String::new(),
        closed: Cell::new(false),
        contents: RefCell::new(contents),
        applied: Watermark::new(0),
        memory: TableMemory::new(usize::MAX),
        over_budget: Cell::new(false),
        snapshot_offset: Cell::new(0),
        changes: RefCell::new(VecDeque::new()),
        changes_from: Cell::new(0),
        swept_to: Cell::new(0),
        snapshotting: Cell::new(0),
        snapshot_ends: Watermark::new(0),
    }
}

/// The bytes `write_snapshot` writes, step by step; and how many steps.
fn stepped(t: &Table, covered: u64) -> (Vec<u8>, usize) {
    let (mut out, mut step, mut cursor, mut steps) =
        (Vec::new(), t.snapshot_head(covered), Cursor::Start, 0);
    loop {
        let done = t.snapshot_step(&mut cursor, &mut step);
        steps += 1;
        if done {
            t.snapshot_tail(&mut step, crc32c::crc32c(&out));
        }
        out.append(&mut step);
        if done {
            return (out, steps);
        }
    }
}

#[test]
fn snapshots_written_in_steps_read_back_whole() {
    // A projection of 60,000 keys (the empty key too): many steps.
    let mut keys: BTreeMap<Vec<u8>, u64> =
        (0..60_000u64).map(|i| (format!("key-{i:06}").into_bytes(), i * 2)).collect();
    keys.insert(Vec::new(), 7);
    let t = table(Contents::Latest(keys.clone()));
    let (bytes, steps) = stepped(&t, 120_001);
    assert!(steps > 3, "{steps} steps");
    let read: (u64, BTreeMap<Vec<u8>, u64>) = state_snapshot::decode_keys(&bytes).unwrap();
    assert_eq!(read, (120_001, keys));
    // Empty.
    let (bytes, _) = stepped(&table(Contents::Latest(BTreeMap::new())), 5);
    let read: (u64, BTreeMap<Vec<u8>, u64>) = state_snapshot::decode_keys(&bytes).unwrap();
    assert_eq!(read, (5, BTreeMap::new()));

    // A state table of 20,000 groups of 3 windows each.
    let settings = AggregateSettings {
        group_by_header: None,
        field_json_path: Some("$.amount".into()),
        field_header: None,
        window_ms: 60_000,
        windows_kept: 0,
    };
    let mut groups = BTreeMap::new();
    for g in 0..20_000u64 {
        for w in 0..3i64 {
            let mut a = Aggregate::default();
            a.add(Some(g as f64 * 1.5 - 7.0), g * 3 + w as u64, w * 60_000);
            a.add(None, g * 3 + w as u64 + 1, w * 60_000 + 1);
            groups.insert((format!("g-{g}").into_bytes(), w * 60_000), a);
        }
    }
    let aggregator = Aggregator::new(&settings).unwrap();
    let t = table(Contents::Aggregates { aggregator, groups: groups.clone() });
    let (bytes, steps) = stepped(&t, 99);
    assert!(steps > 3, "{steps} steps");
    let read: AggregatesSnapshot = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(read.covered_offset, 99);
    assert_eq!(read.settings, Some(settings.clone()));
    let read: BTreeMap<(Vec<u8>, i64), Aggregate> =
        read.groups.into_iter().map(|(k, w, a)| ((k, w), a)).collect();
    assert_eq!(read, groups);
    let aggregator = Aggregator::new(&settings).unwrap();
    let empty = table(Contents::Aggregates { aggregator, groups: BTreeMap::new() });
    let read: AggregatesSnapshot = serde_json::from_slice(&stepped(&empty, 3).0).unwrap();
    assert!(read.groups.is_empty());
}
