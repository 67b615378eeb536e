//! Frames encoded without copying their largest byte runs: a frame whose message borrows
//! pieces of bytes (a push's stored batches) comes out as the bytes the encoder wrote itself
//! (header, fields, padding) and, where each piece goes, a reference to that piece, so the
//! caller writes the frame with one vectored write of its parts instead of copying every
//! piece into a buffer first.
//!
//! Contract: joining the parts in order ([`FrameParts::join`]) gives byte for byte the frame
//! [`crate::encode_frame_sized`] makes of the same message. A piece is referenced, not
//! copied, where the serializer writes exactly that slice (the same address and length, as
//! `with::AlignedPieces` does); every other write is copied. A reference therefore always
//! stands for the bytes the copy would have held, whatever wrote them.

use std::ops::Range;

use rkyv::api::high::HighSerializer;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::ser::{Positional, Writer};
use rkyv::util::AlignedVec;
use rkyv::Serialize;

use crate::constants::{align_up, FRAME_HEADER_BYTES};
use crate::error::BodyError;

/// Where one run of a [`FrameParts`]'s bytes comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramePart {
    /// These bytes of [`FrameParts::owned`].
    Owned(Range<usize>),
    /// The whole of the piece with this index (in the slice given to the encoder).
    Piece(usize),
}

/// A frame as runs of its own bytes and references to the caller's pieces.
#[derive(Debug)]
pub struct FrameParts {
    /// The bytes the encoder wrote (the frame header first).
    pub owned: Vec<u8>,
    /// The frame's runs, in order.
    pub parts: Vec<FramePart>,
    /// The frame's length (header, body, padding).
    pub len: usize,
}

impl FrameParts {
    /// The frame's runs as slices, `pieces` being the slices given to the encoder.
    pub fn slices<'a>(&'a self, pieces: &[&'a [u8]]) -> Vec<&'a [u8]> {
        self.parts
            .iter()
            .map(|p| match p {
                FramePart::Owned(r) => &self.owned[r.clone()],
                FramePart::Piece(i) => pieces[*i],
            })
            .collect()
    }

    /// The whole frame in one 16-byte-aligned buffer (a copy of every piece).
    pub fn join(&self, pieces: &[&[u8]]) -> AlignedVec {
        let mut out = AlignedVec::with_capacity(self.len);
        for s in self.slices(pieces) {
            out.extend_from_slice(s);
        }
        out
    }
}

/// An rkyv writer that copies what it is given, except `pieces`, each of which it records
/// as a reference when it is written whole, in order (empty ones are skipped).
pub(crate) struct PartsWriter<'p> {
    owned: Vec<u8>,
    pos: usize,
    pieces: &'p [&'p [u8]],
    next_piece: usize,
    parts: Vec<FramePart>,
    /// Where the current run of owned bytes started in `owned`.
    run_start: usize,
}

impl PartsWriter<'_> {
    fn close_run(&mut self) {
        if self.owned.len() > self.run_start {
            self.parts.push(FramePart::Owned(self.run_start..self.owned.len()));
            self.run_start = self.owned.len();
        }
    }

    fn pad_to(&mut self, len: usize) {
        let more = len - self.pos;
        self.owned.resize(self.owned.len() + more, 0);
        self.pos = len;
    }
}

impl Positional for PartsWriter<'_> {
    fn pos(&self) -> usize {
        self.pos
    }
}

impl<E> Writer<E> for PartsWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        // Empty pieces have nothing to reference (and no address of their own).
        while self.pieces.get(self.next_piece).is_some_and(|p| p.is_empty()) {
            self.next_piece += 1;
        }
        let next = self.pieces.get(self.next_piece);
        if next.is_some_and(|p| {
            !bytes.is_empty() && p.as_ptr() == bytes.as_ptr() && p.len() == bytes.len()
        }) {
            self.close_run();
            self.parts.push(FramePart::Piece(self.next_piece));
            self.next_piece += 1;
        } else {
            self.owned.extend_from_slice(bytes);
        }
        self.pos += bytes.len();
        Ok(())
    }
}

/// Encodes `msg` as [`crate::encode_frame_sized`] does, referencing `pieces` (slices the
/// message borrows and serializes whole, in this order) instead of copying them; the bytes
/// it copies are about `owned_bytes_hint` (the buffer is sized for them once).
pub(crate) fn encode_frame_parts<T>(
    api_key: u16,
    flags: u16,
    correlation_id: u64,
    msg: &T,
    pieces: &[&[u8]],
    owned_bytes_hint: usize,
) -> Result<FrameParts, BodyError>
where
    T: for<'a, 'p> Serialize<HighSerializer<PartsWriter<'p>, ArenaHandle<'a>, rancor::Error>>,
{
    let mut owned = Vec::with_capacity(FRAME_HEADER_BYTES + owned_bytes_hint);
    owned.resize(FRAME_HEADER_BYTES, 0);
    let writer = PartsWriter {
        owned,
        pos: FRAME_HEADER_BYTES,
        pieces,
        next_piece: 0,
        parts: Vec::with_capacity(2 * pieces.len() + 1),
        run_start: 0,
    };
    let (mut w, body_len) = crate::body::serialize_body(msg, writer)?;
    w.pad_to(FRAME_HEADER_BYTES + align_up(body_len));
    w.close_run();
    w.owned[..FRAME_HEADER_BYTES].copy_from_slice(&crate::body::frame_header(
        api_key,
        flags,
        correlation_id,
        body_len,
    ));
    Ok(FrameParts { owned: w.owned, parts: w.parts, len: w.pos })
}
