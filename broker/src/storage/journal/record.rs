//! The on-disk form of one journal record: what one commit cycle of a shard wrote.
//!
//! # Contract
//! - A record starts on a page boundary and is padded with zeros to the next one; the next
//!   record starts there. Little-endian throughout.
//! - Header ([`HEADER_BYTES`]): magic `u32`, CRC32C `u32`, `len` `u32` (header and entries,
//!   without the padding), entry count `u32`, sequence number `u64` (one more than the
//!   record before it, across files), reserved `u64` (zero).
//! - Entry ([`ENTRY_HEADER_BYTES`] + bytes): topic id `u64` (unique per topic incarnation,
//!   `metadata.rs`), partition `u32`, length `u32`, base offset `u64`, next offset `u64`,
//!   then the batch exactly as the partition stores it (offsets and append time assigned).
//! - What the CRC covers depends on the magic. [`MAGIC`] ("JRN2", written since 2026-12-06):
//!   the header after the CRC, then each entry's header and its batch's first
//!   `BATCH_CRC_START` bytes (the broker-assigned fields and the batch's own CRC32C, which
//!   covers the rest of the batch): the batch bytes are not summed a second time on the
//!   write path (they were about 4 % of the broker's CPU at max rate). [`MAGIC_V1`]
//!   ("JRNL", older files, still read): every byte after the CRC up to `len`.
//! - [`decode`] accepts a record only whole: magic, lengths, the record's CRC and (JRN2)
//!   every batch's own CRC check out. A torn or never-written record (zeros) is `None`:
//!   the file's valid records end there. Replay also ends a file's records at one not
//!   numbered exactly one more than the record before it (`replay.rs`).

use wire::batch::header as batch_header;
use wire::constants::BATCH_CRC_START;

use crate::storage::io::DISK_ALIGN;

/// "JRN2": the record's CRC covers headers, each batch's own CRC the batch.
pub(crate) const MAGIC: u32 = 0x324E_524A;
/// "JRNL": the record's CRC covers every byte (files written before 2026-12-06).
pub(crate) const MAGIC_V1: u32 = 0x4C4E_524A;
/// Bytes of the record header.
pub(crate) const HEADER_BYTES: usize = 32;
/// Bytes of an entry's header.
pub(crate) const ENTRY_HEADER_BYTES: usize = 32;

/// One entry as [`decode`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodedEntry {
    pub(crate) topic_id: u64,
    pub(crate) partition: u32,
    pub(crate) base_offset: u64,
    pub(crate) next_offset: u64,
    pub(crate) bytes: Vec<u8>,
}

/// The key and offsets of an entry to encode, with its bytes.
pub(crate) struct EntryRef<'a> {
    pub(crate) topic_id: u64,
    pub(crate) partition: u32,
    pub(crate) base_offset: u64,
    pub(crate) next_offset: u64,
    pub(crate) bytes: &'a [u8],
}

/// Bytes of a record holding entries of these lengths, without padding.
pub(crate) fn record_len(entry_lens: impl Iterator<Item = usize>) -> usize {
    HEADER_BYTES + entry_lens.map(|l| ENTRY_HEADER_BYTES + l).sum::<usize>()
}

/// `len` rounded up to whole pages.
pub(crate) fn padded(len: usize) -> usize {
    len.div_ceil(DISK_ALIGN) * DISK_ALIGN
}

/// Encodes a record into `buf` (at least `padded(record_len)` bytes; the rest is zeroed).
pub(crate) fn encode(buf: &mut [u8], seq: u64, entries: &[EntryRef<'_>]) -> usize {
    let len = record_len(entries.iter().map(|e| e.bytes.len()));
    assert!(buf.len() >= len, "journal record of {len} bytes in a {} byte buffer", buf.len());
    let mut at = HEADER_BYTES;
    for e in entries {
        buf[at..at + 8].copy_from_slice(&e.topic_id.to_le_bytes());
        buf[at + 8..at + 12].copy_from_slice(&e.partition.to_le_bytes());
        buf[at + 12..at + 16].copy_from_slice(&(e.bytes.len() as u32).to_le_bytes());
        buf[at + 16..at + 24].copy_from_slice(&e.base_offset.to_le_bytes());
        buf[at + 24..at + 32].copy_from_slice(&e.next_offset.to_le_bytes());
        at += ENTRY_HEADER_BYTES;
        buf[at..at + e.bytes.len()].copy_from_slice(e.bytes);
        at += e.bytes.len();
    }
    debug_assert_eq!(at, len);
    buf[len..].fill(0);
    buf[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    buf[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    buf[12..16].copy_from_slice(&(entries.len() as u32).to_le_bytes());
    buf[16..24].copy_from_slice(&seq.to_le_bytes());
    buf[24..32].fill(0);
    let crc = headers_crc(buf, entries.iter().map(|e| e.bytes.len()));
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    len
}

/// The CRC32C of a [`MAGIC`] record in `buf` whose entries have these lengths: over the
/// header after the CRC and each entry's header and first `BATCH_CRC_START` batch bytes.
fn headers_crc(buf: &[u8], entry_lens: impl Iterator<Item = usize>) -> u32 {
    let mut crc = crc32c::crc32c(&buf[8..HEADER_BYTES]);
    let mut at = HEADER_BYTES;
    for n in entry_lens {
        let covered = ENTRY_HEADER_BYTES + n.min(BATCH_CRC_START);
        crc = crc32c::crc32c_append(crc, &buf[at..at + covered]);
        at += ENTRY_HEADER_BYTES + n;
    }
    crc
}

/// The record at the front of `bytes`: its sequence number, entries and unpadded length;
/// `None` unless it is whole and its CRC matches.
pub(crate) fn decode(bytes: &[u8]) -> Option<(u64, Vec<DecodedEntry>, usize)> {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if bytes.len() < HEADER_BYTES || (u32_at(0) != MAGIC && u32_at(0) != MAGIC_V1) {
        return None;
    }
    let v1 = u32_at(0) == MAGIC_V1;
    let len = u32_at(8) as usize;
    if len < HEADER_BYTES || len > bytes.len() {
        return None;
    }
    if v1 && crc32c::crc32c(&bytes[8..len]) != u32_at(4) {
        return None;
    }
    let count = u32_at(12) as usize;
    let seq = u64_at(16);
    let mut entries = Vec::with_capacity(count.min(len / ENTRY_HEADER_BYTES));
    let mut at = HEADER_BYTES;
    for _ in 0..count {
        if at + ENTRY_HEADER_BYTES > len {
            return None;
        }
        let n = u32_at(at + 12) as usize;
        let start = at + ENTRY_HEADER_BYTES;
        if start + n > len {
            return None;
        }
        let batch = &bytes[start..start + n];
        let stored_crc = batch_header::BatchHeader::new(batch).map(|h| h.crc());
        if !v1 && stored_crc != Some(batch_header::covered_crc(batch)) {
            return None;
        }
        entries.push(DecodedEntry {
            topic_id: u64_at(at),
            partition: u32_at(at + 8),
            base_offset: u64_at(at + 16),
            next_offset: u64_at(at + 24),
            bytes: bytes[start..start + n].to_vec(),
        });
        at = start + n;
    }
    if at != len {
        return None;
    }
    let lens = entries.iter().map(|e| e.bytes.len());
    if !v1 && headers_crc(&bytes[..len], lens) != u32_at(4) {
        return None;
    }
    Some((seq, entries, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch as a partition stores it, `records` records of `value_bytes` each.
    fn batch(records: u32, value_bytes: usize) -> Vec<u8> {
        let mut b = wire::BatchBuilder::new(1 << 20);
        for i in 0..records {
            b.append(i64::from(i), None, Some(&vec![i as u8; value_bytes]), &[]).unwrap();
        }
        let mut bytes = b.finish().unwrap().to_vec();
        batch_header::assign(&mut bytes, 10, 1_700_000_000_000);
        bytes
    }

    type Encode = fn(&mut [u8], u64, &[EntryRef<'_>]) -> usize;

    /// `entries` as a record of the format before JRN2 (every byte under the record's CRC).
    fn encode_v1(buf: &mut [u8], seq: u64, entries: &[EntryRef<'_>]) -> usize {
        let len = encode(buf, seq, entries);
        buf[0..4].copy_from_slice(&MAGIC_V1.to_le_bytes());
        let crc = crc32c::crc32c(&buf[8..len]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        len
    }

    #[test]
    fn round_trip_and_torn_records_in_both_formats() {
        let a = batch(2, 30);
        let b = batch(5, 1000);
        let entries = [
            EntryRef { topic_id: 3, partition: 1, base_offset: 10, next_offset: 12, bytes: &a },
            EntryRef { topic_id: 4, partition: 0, base_offset: 0, next_offset: 5, bytes: &b },
        ];
        let len = record_len(entries.iter().map(|e| e.bytes.len()));
        let encoders: [Encode; 2] = [encode, encode_v1];
        for encode in encoders {
            let mut buf = vec![0xAAu8; padded(len)];
            assert_eq!(encode(&mut buf, 42, &entries), len);
            assert!(buf[len..].iter().all(|&x| x == 0), "padding is zeroed");
            let (seq, got, n) = decode(&buf).expect("a whole record decodes");
            assert_eq!((seq, n), (42, len));
            assert_eq!(got.len(), 2);
            assert_eq!(got[0].bytes, a);
            assert_eq!((got[1].topic_id, got[1].partition, got[1].base_offset), (4, 0, 0));
            assert_eq!(got[1].next_offset, 5);
            assert_eq!(got[1].bytes, b);
            // Torn at a sector: a CRC fails.
            let mut torn = buf.clone();
            torn[4096..].fill(0);
            assert!(decode(&torn).is_none());
            // Any flipped byte fails: record header, entry header, batch header, batch body
            // (the last caught by the batch's own CRC in JRN2).
            let second = HEADER_BYTES + ENTRY_HEADER_BYTES + a.len();
            for at in [16, HEADER_BYTES + 8, HEADER_BYTES + 40, second + 50, len - 1] {
                let mut flipped = buf.clone();
                flipped[at] ^= 1;
                assert!(decode(&flipped).is_none(), "byte {at} of {len} flipped");
            }
            // Zeros (a never-written page) are no record.
            assert!(decode(&vec![0u8; 4096]).is_none());
        }
    }
}
