//! The envelope of a batch: everything that can be checked without reading its records.
//!
//! [`BatchEnvelope::validate`] checks what came from outside the process (lengths, version,
//! CRC32C, reserved bytes, attribute bits, the codec and the lengths it announces, record
//! count and offset delta) and never reads out of bounds, panics or allocates. It accepts
//! compressed batches: the broker stores and serves them as they came, and storage recovery
//! and reads check only the envelope (the CRC covers the records, whose archive was checked
//! once at ingress). Records are read through [`BatchEnvelope::open`], in place when the batch
//! is not compressed and from a decompressed copy when it is. A producer compresses a batch it
//! built with [`BatchEnvelope::compress_into`] (off its accumulator's lock, once: a retry
//! sends the same bytes).

use std::ops::Range;

use rkyv::util::AlignedVec;

use super::compression::{Compression, UNCOMPRESSED_RECORDS_BYTES_MAX};
use super::header::{BatchHeader, OFF_ATTRIBUTES, OFF_BATCH_LEN, OFF_CRC, OFF_RECORDS_LEN};
use super::header::{OFF_UNCOMPRESSED_LEN, OFF_VERSION};
use super::reader::BatchView;
use crate::constants::{
    align_up, ATTR_COMPACTED, ATTR_COMPRESSION_MASK, ATTR_KNOWN_MASK, BATCH_BYTES_MAX,
    BATCH_CRC_START, BATCH_FORMAT_VERSION, BATCH_HEADER_BYTES, BATCH_RECORDS_MAX, BODY_ALIGN,
};
use crate::error::BatchError;

/// A batch whose envelope is valid; its records may be compressed.
#[derive(Debug, Clone, Copy)]
pub struct BatchEnvelope<'a> {
    bytes: &'a [u8],
    compression: Compression,
}

impl<'a> BatchEnvelope<'a> {
    /// Validates the envelope of the batch at the front of `bytes` (which may hold more after
    /// it) and returns a view of exactly `batch_len` bytes.
    pub fn validate(bytes: &'a [u8]) -> Result<Self, BatchError> {
        let misalignment = bytes.as_ptr() as usize % BODY_ALIGN;
        if misalignment != 0 {
            return Err(BatchError::Misaligned { misalignment });
        }
        let header = BatchHeader::new(bytes)
            .ok_or(BatchError::Truncated { needed: BATCH_HEADER_BYTES, available: bytes.len() })?;
        let batch_len = header.batch_len();
        if batch_len > BATCH_BYTES_MAX
            || (batch_len as usize) < BATCH_HEADER_BYTES
            || batch_len as usize % BODY_ALIGN != 0
        {
            return Err(BatchError::BadLength { batch_len });
        }
        if bytes.len() < batch_len as usize {
            return Err(BatchError::Truncated {
                needed: batch_len as usize,
                available: bytes.len(),
            });
        }
        let bytes = &bytes[..batch_len as usize];
        if header.version() != BATCH_FORMAT_VERSION {
            return Err(BatchError::UnsupportedVersion { version: header.version() });
        }
        let stored = header.crc();
        let computed = crc32c::crc32c(&bytes[BATCH_CRC_START..]);
        if stored != computed {
            return Err(BatchError::Checksum { stored, computed });
        }
        // The CRC matched, so what follows checks the producer's encoding, not line noise.
        let inconsistent = |what| Err(BatchError::Inconsistent { what });
        if !header.reserved_is_zero() {
            return inconsistent("reserved bytes are not zero");
        }
        let attributes = header.attributes();
        if attributes & !ATTR_KNOWN_MASK != 0 {
            return inconsistent("unknown attribute bits");
        }
        let compression = Compression::from_bits(attributes & ATTR_COMPRESSION_MASK)
            .map_err(|codec| BatchError::UnsupportedCompression { codec })?;
        let uncompressed_len = header.uncompressed_len();
        match compression {
            Compression::None if uncompressed_len != 0 => {
                return inconsistent("uncompressed_len is set on an uncompressed batch");
            }
            Compression::None => {}
            _ if uncompressed_len == 0 || uncompressed_len > UNCOMPRESSED_RECORDS_BYTES_MAX => {
                return inconsistent("uncompressed_len is 0 or over the batch maximum");
            }
            _ => {}
        }
        let records_len = header.records_len() as usize;
        let Some(records_end) = BATCH_HEADER_BYTES.checked_add(records_len) else {
            return inconsistent("records_len overflows");
        };
        if align_up(records_end) != bytes.len() {
            return inconsistent("batch_len is not records_len + header rounded up to 16");
        }
        if bytes[records_end..].iter().any(|&b| b != 0) {
            return inconsistent("padding bytes are not zero");
        }
        let count = header.record_count();
        if attributes & ATTR_COMPACTED != 0 {
            // Compaction removed records but kept the batch's offset span.
            if count > BATCH_RECORDS_MAX
                || u64::from(count) > u64::from(header.last_offset_delta()) + 1
            {
                return inconsistent("compacted record_count over the maximum or the offset span");
            }
        } else {
            if count == 0 || count > BATCH_RECORDS_MAX {
                return inconsistent("record_count is 0 or over the maximum");
            }
            if header.last_offset_delta() != count - 1 {
                return inconsistent("last_offset_delta != record_count - 1");
            }
        }
        Ok(BatchEnvelope { bytes, compression })
    }

    /// The batch's header.
    pub fn header(&self) -> BatchHeader<'a> {
        BatchHeader::new(self.bytes).expect("validated batch has a header")
    }

    /// The batch's bytes, exactly `batch_len` long, as stored (compressed or not).
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The codec of the records.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Whether the records are compressed.
    pub fn is_compressed(&self) -> bool {
        self.compression != Compression::None
    }

    /// The records' archive as stored (compressed or not).
    fn stored_records(&self) -> &'a [u8] {
        let len = self.header().records_len() as usize;
        &self.bytes[BATCH_HEADER_BYTES..BATCH_HEADER_BYTES + len]
    }

    /// Validates the records and returns a readable view: in place when the batch is not
    /// compressed, else decompressed into `scratch` (cleared first) as the equivalent
    /// uncompressed batch.
    pub fn open<'s>(&self, scratch: &'s mut AlignedVec) -> Result<BatchView<'s>, BatchError>
    where
        'a: 's,
    {
        if !self.is_compressed() {
            return BatchView::check_records(self.bytes, self.header());
        }
        scratch.clear();
        let range = self.decompress_into(scratch)?;
        let bytes: &'s [u8] = &scratch[range];
        BatchView::check_records(bytes, BatchHeader::new(bytes).expect("a header was written"))
    }

    /// Appends the equivalent batch with its records compressed by `compression` (same header
    /// fields, codec bits and lengths set, CRC recomputed) to `out`, whose length must be a
    /// multiple of 16, and returns where it landed; `None` (and `out` unchanged) when the
    /// batch is compressed already or its records would not shrink.
    pub fn compress_into(
        &self,
        compression: Compression,
        out: &mut AlignedVec,
    ) -> Option<Range<usize>> {
        assert!(out.len() % BODY_ALIGN == 0, "compress_into at unaligned length {}", out.len());
        if self.is_compressed() {
            return None;
        }
        let start = out.len();
        out.extend_from_slice(&self.bytes[..BATCH_HEADER_BYTES]);
        let archive = self.stored_records();
        let Some(records_len) = compression.compress_into(archive, out) else {
            out.resize(start, 0);
            return None;
        };
        let end = start + align_up(BATCH_HEADER_BYTES + records_len);
        out.resize(end, 0);
        let b = &mut out[start..end];
        let put = |b: &mut [u8], off: usize, bytes: &[u8]| {
            b[off..off + bytes.len()].copy_from_slice(bytes)
        };
        put(b, OFF_BATCH_LEN, &((end - start) as u32).to_le_bytes());
        let attributes = self.header().attributes() | compression.bits();
        put(b, OFF_ATTRIBUTES, &attributes.to_le_bytes());
        put(b, OFF_RECORDS_LEN, &(records_len as u32).to_le_bytes());
        put(b, OFF_UNCOMPRESSED_LEN, &(archive.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c(&b[OFF_VERSION..]);
        put(b, OFF_CRC, &crc.to_le_bytes());
        Some(start..end)
    }

    /// Appends the equivalent uncompressed batch (same header fields, codec bits cleared, CRC
    /// recomputed) to `out`, whose length must be a multiple of 16, and returns where it
    /// landed. Records are not validated here (see [`BatchView::validate`]).
    pub fn decompress_into(&self, out: &mut AlignedVec) -> Result<Range<usize>, BatchError> {
        assert!(out.len() % BODY_ALIGN == 0, "decompress_into at unaligned length {}", out.len());
        let header = self.header();
        let archive_len = header.uncompressed_len() as usize;
        let start = out.len();
        let end = start + align_up(BATCH_HEADER_BYTES + archive_len);
        out.resize(end, 0);
        let b = &mut out[start..end];
        let records = &mut b[BATCH_HEADER_BYTES..BATCH_HEADER_BYTES + archive_len];
        if let Err(e) = self.compression.decompress_into(self.stored_records(), records) {
            out.resize(start, 0);
            return Err(e);
        }
        b[..BATCH_HEADER_BYTES].copy_from_slice(&self.bytes[..BATCH_HEADER_BYTES]);
        let put = |b: &mut [u8], off: usize, bytes: &[u8]| {
            b[off..off + bytes.len()].copy_from_slice(bytes)
        };
        put(b, OFF_BATCH_LEN, &((end - start) as u32).to_le_bytes());
        let attributes = header.attributes() & !ATTR_COMPRESSION_MASK;
        put(b, OFF_ATTRIBUTES, &attributes.to_le_bytes());
        put(b, OFF_RECORDS_LEN, &(archive_len as u32).to_le_bytes());
        put(b, OFF_UNCOMPRESSED_LEN, &0u32.to_le_bytes());
        let crc = crc32c::crc32c(&b[OFF_VERSION..]);
        put(b, OFF_CRC, &crc.to_le_bytes());
        Ok(start..end)
    }
}

/// Iterates the envelopes of batches stored back to back (a produce request, a fetch
/// response, a segment read). Stops after the first error; a trailing partial batch is
/// reported as `Truncated`.
#[derive(Debug, Clone)]
pub struct Envelopes<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Envelopes<'a> {
    /// Envelopes in `bytes`, which must start 16-byte aligned.
    pub fn new(bytes: &'a [u8]) -> Self {
        Envelopes { rest: bytes, failed: false }
    }
}

impl<'a> Iterator for Envelopes<'a> {
    type Item = Result<BatchEnvelope<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        match BatchEnvelope::validate(self.rest) {
            Ok(envelope) => {
                self.rest = &self.rest[envelope.bytes().len()..];
                Some(Ok(envelope))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// The batches in `bytes` (back to back, 16-byte aligned) with every compressed one replaced
/// by its uncompressed equivalent, or `None` when none is compressed (read `bytes` as they
/// are). This is how a consumer reads compressed batches transparently.
pub fn decompressed(bytes: &[u8]) -> Result<Option<AlignedVec>, BatchError> {
    // Headers only, unchecked: where none names a codec the bytes are read as they are (and
    // validated by whoever reads them), so plain batches cost no second CRC here.
    let codec_named =
        super::header::trusted_headers(bytes).any(|h| h.attributes() & ATTR_COMPRESSION_MASK != 0);
    if !codec_named {
        return Ok(None);
    }
    let mut out: Option<AlignedVec> = None;
    let mut copied = 0usize;
    let mut at = 0usize;
    for envelope in Envelopes::new(bytes) {
        let envelope = envelope?;
        let len = envelope.bytes().len();
        if envelope.is_compressed() {
            let out = out.get_or_insert_with(|| AlignedVec::with_capacity(bytes.len() * 4));
            out.extend_from_slice(&bytes[copied..at]);
            envelope.decompress_into(out)?;
            copied = at + len;
        }
        at += len;
    }
    if let Some(out) = &mut out {
        out.extend_from_slice(&bytes[copied..at]);
    }
    Ok(out)
}
