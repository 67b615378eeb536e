//! The frame header: the fixed 32 bytes in front of every request, response and push.
//!
//! ```text
//!  0        4        6        8        10       12                16
//!  +--------+--------+--------+--------+--------+----------------+
//!  | magic  |version |api key | flags  |reserved|   body_len     |
//!  | "EVBK" |  u16   |  u16   |  u16   |   0    |      u32       |
//!  +--------+--------+--------+--------+--------+----------------+
//!  16                               24                28       32
//!  +--------------------------------+----------------+--------+
//!  |         correlation id  u64    | header crc32c  |reserved|
//!  |                                | of bytes 0..24 |   0    |
//!  +--------------------------------+----------------+--------+
//!  32: body (an rkyv archive, `body_len` bytes), then zero padding to a multiple of 16
//! ```
//!
//! All integers are little-endian. A frame occupies `32 + align_up(body_len, 16)` bytes, so
//! back-to-back frames in a 16-byte-aligned stream buffer all start (and their bodies all
//! start) 16-byte aligned, which rkyv's aligned archives need.
//!
//! [`FrameHeader::decode`] checks magic, checksum, reserved bits and the body length against the
//! caller's maximum, so a reader can size its buffer from `body_len` without trusting the
//! peer. It does *not* reject an unknown api key or protocol version: those are answered with
//! an error response by the layer that dispatches requests.

use crate::constants::{
    align_up, BODY_ALIGN, FLAG_KNOWN_MASK, FRAME_BODY_BYTES_LIMIT, FRAME_HEADER_BYTES, FRAME_MAGIC,
};
use crate::error::FrameError;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Protocol version the sender speaks in this frame.
    pub version: u16,
    /// Raw api key; see [`crate::ApiKey::from_u16`].
    pub api_key: u16,
    /// Flag bits (`FLAG_RESPONSE`, `FLAG_ERROR`, `FLAG_PUSH`).
    pub flags: u16,
    /// Matches a response to its request. Responses may arrive in any order.
    pub correlation_id: u64,
    /// Bytes of the rkyv archive that follows (padding not included).
    pub body_len: u32,
}

impl FrameHeader {
    /// Decodes and checks a header. `body_bytes_max` is the configured maximum body length;
    /// it is checked here, before anyone allocates a buffer for the body.
    pub fn decode(
        bytes: &[u8; FRAME_HEADER_BYTES],
        body_bytes_max: u32,
    ) -> Result<Self, FrameError> {
        let magic = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
        if magic != FRAME_MAGIC {
            return Err(FrameError::BadMagic { found: magic });
        }
        let crc_stored = u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes"));
        let crc_computed = crc32c::crc32c(&bytes[0..24]);
        if crc_stored != crc_computed {
            return Err(FrameError::HeaderChecksum { stored: crc_stored, computed: crc_computed });
        }
        let reserved_a = u16::from_le_bytes([bytes[10], bytes[11]]);
        let reserved_b = u32::from_le_bytes(bytes[28..32].try_into().expect("4 bytes"));
        if reserved_a != 0 || reserved_b != 0 {
            return Err(FrameError::ReservedNotZero);
        }
        let flags = u16::from_le_bytes([bytes[8], bytes[9]]);
        if flags & !FLAG_KNOWN_MASK != 0 {
            return Err(FrameError::UnknownFlags { flags });
        }
        let body_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
        let limit = body_bytes_max.min(FRAME_BODY_BYTES_LIMIT);
        if body_len > limit {
            return Err(FrameError::BodyTooLarge { body_len, body_bytes_max: limit });
        }
        Ok(FrameHeader {
            version: u16::from_le_bytes([bytes[4], bytes[5]]),
            api_key: u16::from_le_bytes([bytes[6], bytes[7]]),
            flags,
            correlation_id: u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes")),
            body_len,
        })
    }

    /// Encodes the header, computing its checksum.
    pub fn encode(&self) -> [u8; FRAME_HEADER_BYTES] {
        assert!(
            self.body_len <= FRAME_BODY_BYTES_LIMIT,
            "body_len {} over the format limit",
            self.body_len
        );
        let mut out = [0u8; FRAME_HEADER_BYTES];
        out[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&self.version.to_le_bytes());
        out[6..8].copy_from_slice(&self.api_key.to_le_bytes());
        out[8..10].copy_from_slice(&self.flags.to_le_bytes());
        out[12..16].copy_from_slice(&self.body_len.to_le_bytes());
        out[16..24].copy_from_slice(&self.correlation_id.to_le_bytes());
        let crc = crc32c::crc32c(&out[0..24]);
        out[24..28].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Bytes the body occupies on the wire, padding included.
    pub fn body_padded_len(&self) -> usize {
        align_up(self.body_len as usize)
    }

    /// Bytes the whole frame occupies on the wire.
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_BYTES + self.body_padded_len()
    }

    /// Whether `flag` is set.
    pub fn has_flag(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }
}

/// One complete frame found in a buffer by [`split_frame`].
#[derive(Clone, Copy)]
pub struct RawFrame<'a> {
    /// The checked header.
    pub header: FrameHeader,
    /// The body archive (padding stripped). Validate it with [`crate::access_body`].
    pub body: &'a [u8],
}

impl std::fmt::Debug for RawFrame<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawFrame")
            .field("header", &self.header)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Splits the first complete frame off the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some((frame, consumed)))` for a whole
/// frame, and an error for a header that can never become valid (the connection should be
/// answered with an error and closed). Padding bytes after the body must be zero.
pub fn split_frame(
    buf: &[u8],
    body_bytes_max: u32,
) -> Result<Option<(RawFrame<'_>, usize)>, FrameError> {
    let Some(head) = buf.first_chunk::<FRAME_HEADER_BYTES>() else {
        return Ok(None);
    };
    let header = FrameHeader::decode(head, body_bytes_max)?;
    let frame_len = header.frame_len();
    if buf.len() < frame_len {
        return Ok(None);
    }
    let body_end = FRAME_HEADER_BYTES + header.body_len as usize;
    if buf[body_end..frame_len].iter().any(|&b| b != 0) {
        return Err(FrameError::PaddingNotZero);
    }
    Ok(Some((RawFrame { header, body: &buf[FRAME_HEADER_BYTES..body_end] }, frame_len)))
}

/// Whether `bytes` starts at a [`BODY_ALIGN`]-byte boundary.
#[inline]
pub fn is_body_aligned(bytes: &[u8]) -> bool {
    (bytes.as_ptr() as usize) % BODY_ALIGN == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::PROTOCOL_VERSION;

    fn header(body_len: u32) -> FrameHeader {
        FrameHeader {
            version: PROTOCOL_VERSION,
            api_key: 7,
            flags: 0,
            correlation_id: 0xDEAD_BEEF_0102_0304,
            body_len,
        }
    }

    #[test]
    fn round_trip() {
        let h = header(100);
        let bytes = h.encode();
        assert_eq!(FrameHeader::decode(&bytes, 1 << 20).unwrap(), h);
        assert_eq!(h.frame_len(), 32 + 112);
    }

    #[test]
    fn body_length_checked_before_allocation() {
        let bytes = header(u32::MAX).encode_unchecked_for_test();
        assert!(matches!(
            FrameHeader::decode(&bytes, 1 << 20),
            Err(FrameError::BodyTooLarge { body_len: u32::MAX, .. })
        ));
        let bytes = header(2 << 20).encode();
        assert!(matches!(
            FrameHeader::decode(&bytes, 1 << 20),
            Err(FrameError::BodyTooLarge { .. })
        ));
    }

    #[test]
    fn every_flipped_header_byte_is_rejected() {
        let good = header(64).encode();
        for i in 0..FRAME_HEADER_BYTES {
            for bit in 0..8 {
                let mut bad = good;
                bad[i] ^= 1 << bit;
                assert!(FrameHeader::decode(&bad, 1 << 20).is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn split_needs_whole_frame_and_zero_padding() {
        let h = header(5);
        let mut buf = h.encode().to_vec();
        buf.extend_from_slice(&[1, 2, 3, 4, 5]);
        assert!(split_frame(&buf, 1024).unwrap().is_none());
        buf.resize(32 + 16, 0);
        let (frame, used) = split_frame(&buf, 1024).unwrap().unwrap();
        assert_eq!(used, 48);
        assert_eq!(frame.body, &[1, 2, 3, 4, 5]);
        buf[40] = 9;
        assert!(matches!(split_frame(&buf, 1024), Err(FrameError::PaddingNotZero)));
        assert!(split_frame(&buf[..31], 1024).unwrap().is_none());
    }

    impl FrameHeader {
        /// Like `encode` but without the format-limit assertion, to forge hostile headers.
        fn encode_unchecked_for_test(&self) -> [u8; FRAME_HEADER_BYTES] {
            let mut h = *self;
            h.body_len = 0;
            let mut out = h.encode();
            out[12..16].copy_from_slice(&self.body_len.to_le_bytes());
            let crc = crc32c::crc32c(&out[0..24]);
            out[24..28].copy_from_slice(&crc.to_le_bytes());
            out
        }
    }
}
