//! Batch compression codecs: the records archive of a batch may be stored lz4- or
//! zstd-compressed (attribute bits 0..=2); the header stays plain so the broker can route,
//! assign offsets and check sequences without decompressing.
//!
//! A compressed batch's `records_len` is the compressed length and `uncompressed_len` (header
//! offset 72) the archive's length before compression, bounded by [`BATCH_BYTES_MAX`] so a
//! reader sizes its buffer from a checked number, never from what the codec claims. The codecs
//! are well-kept crates (`lz4_flex` block format, `zstd` at level 3 by default as in Kafka);
//! zstd contexts are kept per thread so a producer or a shard compresses every batch with the
//! same context instead of allocating one per batch.

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use rkyv::util::AlignedVec;

use crate::constants::{BATCH_BYTES_MAX, BATCH_HEADER_BYTES};
use crate::error::BatchError;

/// zstd level used when a producer does not choose one (Kafka's default too).
pub const ZSTD_LEVEL_DEFAULT: i32 = 3;

/// Most bytes a records archive may have once decompressed: a decompressed batch must still be
/// a valid batch (header + archive, within [`BATCH_BYTES_MAX`]).
pub const UNCOMPRESSED_RECORDS_BYTES_MAX: u32 = BATCH_BYTES_MAX - BATCH_HEADER_BYTES as u32;

/// The codec of a batch's records archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Stored as built (the zero-copy path).
    #[default]
    None,
    /// LZ4 block format: fast, modest ratio.
    Lz4,
    /// Zstandard at the given level (1..=22; 3 by default).
    Zstd {
        /// Compression level; higher is smaller and slower. Decompression ignores it.
        level: i32,
    },
}

impl Compression {
    /// zstd at its default level.
    pub const ZSTD: Compression = Compression::Zstd { level: ZSTD_LEVEL_DEFAULT };

    /// The attribute bits that name this codec.
    pub fn bits(self) -> u16 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Zstd { .. } => 2,
        }
    }

    /// The codec named by the attribute bits 0..=2, or the bits when no codec has them.
    pub fn from_bits(bits: u16) -> Result<Compression, u16> {
        match bits {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Lz4),
            2 => Ok(Compression::ZSTD),
            other => Err(other),
        }
    }

    /// Appends `input` compressed to `out` and returns the compressed length, or `None` (with
    /// `out` unchanged) when compression would not make it smaller.
    pub fn compress_into(self, input: &[u8], out: &mut AlignedVec) -> Option<usize> {
        let start = out.len();
        let room = match self {
            Compression::None => return None,
            Compression::Lz4 => lz4_flex::block::get_maximum_output_size(input.len()),
            Compression::Zstd { .. } => zstd::zstd_safe::compress_bound(input.len()),
        };
        out.resize(start + room, 0);
        let dst = &mut out[start..];
        let written = match self {
            Compression::None => None,
            Compression::Lz4 => lz4_flex::block::compress_into(input, dst).ok(),
            Compression::Zstd { level } => ZSTD_COMPRESSOR.with(|c| {
                let mut c = c.borrow_mut();
                let (ctx, ctx_level) = match &mut *c {
                    Some(pair) => pair,
                    slot => slot.insert((zstd::bulk::Compressor::new(level).ok()?, level)),
                };
                if *ctx_level != level {
                    ctx.set_compression_level(level).ok()?;
                    *ctx_level = level;
                }
                ctx.compress_to_buffer(input, dst).ok()
            }),
        };
        match written {
            Some(n) if n < input.len() => {
                out.resize(start + n, 0);
                Some(n)
            }
            _ => {
                out.resize(start, 0);
                None
            }
        }
    }

    /// Decompresses `input` into exactly `out.len()` bytes.
    pub fn decompress_into(self, input: &[u8], out: &mut [u8]) -> Result<(), BatchError> {
        let fail = |reason: String| BatchError::Decompress { codec: self.bits(), reason };
        let written = match self {
            Compression::None => return Err(fail("the batch is not compressed".into())),
            Compression::Lz4 => {
                lz4_flex::block::decompress_into(input, out).map_err(|e| fail(e.to_string()))?
            }
            Compression::Zstd { .. } => ZSTD_DECOMPRESSOR.with(|d| {
                let mut d = d.borrow_mut();
                let ctx = match &mut *d {
                    Some(ctx) => ctx,
                    slot => slot
                        .insert(zstd::bulk::Decompressor::new().map_err(|e| fail(e.to_string()))?),
                };
                ctx.decompress_to_buffer(input, out).map_err(|e| fail(e.to_string()))
            })?,
        };
        if written != out.len() {
            return Err(fail(format!(
                "decompressed to {written} bytes where the header says {}",
                out.len()
            )));
        }
        Ok(())
    }
}

thread_local! {
    static ZSTD_COMPRESSOR: RefCell<Option<(zstd::bulk::Compressor<'static>, i32)>> =
        const { RefCell::new(None) };
    static ZSTD_DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Lz4 => f.write_str("lz4"),
            Compression::Zstd { level: ZSTD_LEVEL_DEFAULT } => f.write_str("zstd"),
            Compression::Zstd { level } => write!(f, "zstd:{level}"),
        }
    }
}

/// A codec name that is not `none`, `lz4`, `zstd` or `zstd:LEVEL`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression {0:?}: expected none, lz4, zstd or zstd:LEVEL (1..=22)")]
pub struct UnknownCompression(pub String);

impl FromStr for Compression {
    type Err = UnknownCompression;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || UnknownCompression(s.to_owned());
        match s.to_ascii_lowercase().as_str() {
            "none" | "" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::ZSTD),
            other => {
                let level = other.strip_prefix("zstd:").ok_or_else(unknown)?;
                match level.parse::<i32>() {
                    Ok(level @ 1..=22) => Ok(Compression::Zstd { level }),
                    _ => Err(unknown()),
                }
            }
        }
    }
}
