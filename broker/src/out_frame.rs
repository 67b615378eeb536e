//! A frame on its way to a client's socket: one buffer, or a push whose stored batches are
//! the log's own buffers, referenced rather than copied into the frame (`wire::FrameParts`):
//! the connection's writer sends its parts with the other queued frames in one vectored
//! write.
//!
//! Contract: [`OutFrame::len`] is the frame's length on the socket; [`OutFrame::held_bytes`]
//! is the memory it keeps until written, what the connection's and the shard's budgets hold
//! for it: a push in parts keeps the whole log buffers its views are in (the recent-batch
//! cache's, `unwritten`'s, or a disk read's), counted whole. A view is referenced only when
//! its buffer is at most twice its length and it is at least [`REFERENCED_BYTES_MIN`] long
//! ([`OutFrame::referenced`]); other views are copied into the frame, so a push read from a
//! large disk read buffer for a small credit does not keep the whole buffer, and a push of
//! many small batches is not hundreds of tiny writes.

use std::io::IoSlice;

use wire::{AlignedVec, FramePart, FrameParts};

use crate::storage::ByteView;

/// Views shorter than this are copied into a push frame rather than referenced.
pub const REFERENCED_BYTES_MIN: usize = 512;

/// A frame queued for a client's socket.
pub enum OutFrame {
    /// The whole frame in one buffer.
    Whole(AlignedVec),
    /// A push frame whose batch pieces are `views` (in the order encoded).
    Parts {
        /// The frame's own bytes and where each view goes.
        parts: FrameParts,
        /// The pieces the parts reference.
        views: Vec<ByteView>,
    },
}

impl OutFrame {
    /// Its length on the socket.
    pub fn len(&self) -> usize {
        match self {
            OutFrame::Whole(f) => f.len(),
            OutFrame::Parts { parts, .. } => parts.len,
        }
    }

    /// The memory it keeps until it is written: its own bytes and, for a push in parts, the
    /// whole buffers its views are in (a buffer two views share is counted twice).
    pub fn held_bytes(&self) -> usize {
        match self {
            OutFrame::Whole(f) => f.len(),
            OutFrame::Parts { parts, views } => {
                parts.owned.len() + views.iter().map(ByteView::owner_len).sum::<usize>()
            }
        }
    }

    /// Whether a push references `view` rather than copying it (see the module docs).
    pub fn referenced(view: &ByteView) -> bool {
        view.len() >= REFERENCED_BYTES_MIN && view.owner_len() <= 2 * view.len()
    }

    /// Whether it has no bytes (never: a frame has a header).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds its bytes, in order, to a vectored write.
    pub fn extend_io_slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>) {
        match self {
            OutFrame::Whole(f) => out.push(IoSlice::new(f)),
            OutFrame::Parts { parts, views } => out.extend(parts.parts.iter().map(|p| match p {
                FramePart::Owned(r) => IoSlice::new(&parts.owned[r.clone()]),
                FramePart::Piece(i) => IoSlice::new(&views[*i]),
            })),
        }
    }

    /// The whole frame in one buffer (a copy of a push's batches), for a frame that leaves
    /// the shard.
    pub fn into_whole(self) -> AlignedVec {
        match self {
            OutFrame::Whole(f) => f,
            OutFrame::Parts { parts, views } => {
                let pieces: Vec<&[u8]> = views.iter().map(|v| &v[..]).collect();
                parts.join(&pieces)
            }
        }
    }
}

impl From<AlignedVec> for OutFrame {
    fn from(frame: AlignedVec) -> Self {
        OutFrame::Whole(frame)
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;

    fn view(bytes: &[u8]) -> ByteView {
        ByteView::new(Rc::new(bytes.to_vec()))
    }

    #[test]
    fn a_push_in_parts_writes_the_bytes_of_the_whole_push() {
        // Referenced: a view of its own buffer; copied: a short one, and one that is a small
        // part of a large buffer (a disk read's).
        let read = view(&[5u8; 4096]);
        let views = [view(&[7u8; 1000]), view(&[9u8; 24]), read.slice(0, 1024)];
        let pieces: Vec<&[u8]> = views.iter().map(|v| &v[..]).collect();
        let picked: Vec<ByteView> =
            views.iter().filter(|v| OutFrame::referenced(v)).cloned().collect();
        assert_eq!(picked.len(), 1);
        let referenced: Vec<&[u8]> = picked.iter().map(|v| &v[..]).collect();
        let push = wire::SubscriptionDataPieces {
            subscription_id: 3,
            error: 0,
            high_watermark: 10,
            batches: &pieces,
            next_offset: 9,
        };
        let whole = push.encode_push().unwrap();
        let parts = push.encode_push_parts(&referenced).unwrap();
        drop(referenced);
        let out = OutFrame::Parts { parts, views: picked };
        assert_eq!(out.len(), whole.len());
        // Its own bytes (all but the referenced 1000) and the referenced view's buffer.
        assert_eq!(out.held_bytes(), whole.len());
        let mut slices = Vec::new();
        out.extend_io_slices(&mut slices);
        let written: Vec<u8> = slices.iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(written, &whole[..]);
        assert_eq!(&out.into_whole()[..], &whole[..]);
    }
}
