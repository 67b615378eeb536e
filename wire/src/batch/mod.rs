//! Record batches: the unit on the wire, on disk and to consumers.
//!
//! A producer builds a batch once ([`BatchBuilder`]); the broker validates it once at ingress
//! ([`BatchView::validate`]), assigns the base offset and log-append time in place
//! ([`header::assign`]) and from then on moves the bytes untouched. A consumer reads records
//! straight out of the received bytes ([`BatchView::records`]) with borrowed keys, values and
//! headers.
//!
//! ```text
//!  offset  size  field                   set by    covered by CRC
//!   0      4     batch_len (u32)         producer  no (checked by length relations)
//!   4      4     crc32c (u32)            producer  no (it is the CRC)
//!   8      8     base_offset (u64)       broker    no
//!  16      8     log_append_time_ms(i64) broker    no  (-1 until assigned)
//!  24      1     format_version = 1      producer  yes  <- CRC starts here
//!  25      1     reserved = 0
//!  26      2     attributes (u16)        producer  yes  bits 0-2 codec, 3 control, 4 txn,
//!                                                         5 compacted, 6 null header values
//!  28      4     last_offset_delta (u32) producer  yes  = record_count - 1
//!  32      8     first_timestamp_ms(i64) producer  yes
//!  40      8     max_timestamp_ms (i64)  producer  yes
//!  48      8     producer_id (i64)       producer  yes  -1 = none
//!  56      2     producer_epoch (i16)    producer  yes  -1 = none
//!  58      2     reserved = 0                      yes
//!  60      4     base_sequence (i32)     producer  yes  -1 = none
//!  64      4     record_count (u32)      producer  yes
//!  68      4     records_len (u32)       producer  yes  bytes of the archive as stored
//!  72      4     uncompressed_len (u32)  producer  yes  archive bytes before compression
//!                                                         (0 when bits 0-2 are 0)
//!  76      4     reserved = 0                      yes
//!  80      records_len  rkyv archive of Vec<Record>,         yes
//!                       compressed by the codec in bits 0-2
//!  ..      zero padding to batch_len, a multiple of 16          yes
//! ```
//!
//! Every batch is a multiple of 16 bytes long and must sit at a 16-byte-aligned address when
//! validated, so batches stored back to back (in a segment, in a fetch response) stay aligned
//! for rkyv's aligned archive format.
//!
//! Null header values (bit 6, [`crate::constants::ATTR_NULL_HEADER_VALUES`]): a native header
//! value is bytes, never null, but a Kafka producer's may be. A batch where some header value
//! is null sets bit 6 and ends every record's headers with a null map (key `""`, value a
//! bitmap over the record's other headers, bit `i % 8` of byte `i / 8` = header `i` is null
//! and stored empty). [`RecordView::headers`] hides the map and [`HeaderView::nullable_value`]
//! reads it; batches without the bit (everything stored before it existed) read as before.
//!
//! Codecs (bits 0-2): 0 none, 1 lz4 (block format), 2 zstd; see [`compression`]. A compressed
//! batch is checked as an envelope ([`BatchEnvelope::validate`]: lengths, CRC, header) and
//! read through [`BatchEnvelope::open`], which decompresses it into a caller's buffer as the
//! equivalent uncompressed batch; [`BatchView::validate`] refuses it.

pub mod builder;
pub mod compact;
pub mod compression;
pub mod envelope;
pub mod header;
pub mod reader;
pub mod record;

pub use builder::BatchBuilder;
pub use compression::Compression;
pub use envelope::{decompressed, BatchEnvelope, Envelopes};
pub use header::BatchHeader;
pub use reader::{BatchView, Batches, HeaderView, RecordView};
pub use record::{Header, Record};

/// The producer sequence number `n` records after `sequence`: sequences count a producer's
/// records per partition and wrap at `i32::MAX` to 0 (as Kafka's do).
pub fn sequence_after(sequence: i32, n: u32) -> i32 {
    ((i64::from(sequence) + i64::from(n)) % (i64::from(i32::MAX) + 1)) as i32
}

#[cfg(test)]
mod compact_tests;
#[cfg(test)]
mod tests;
