//! A frame on its way to a client's socket: one buffer, or a push whose stored batches are
//! the log's own buffers, referenced rather than copied into the frame (`wire::FrameParts`):
//! the connection's writer sends its parts with the other queued frames in one vectored
//! write.
//!
//! Contract: [`OutFrame::len`] is the frame's length on the socket, what the connection's
//! and the shard's budgets hold for it. A push in parts also keeps the log buffers its views
//! are in (the recent-batch cache's, or a disk read's) until it is written; those hold no
//! more than the push's own bytes plus what a read buffer holds beyond its last whole batch.

use std::io::IoSlice;

use wire::{AlignedVec, FramePart, FrameParts};

use crate::storage::ByteView;

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
        let (a, b) = (view(&[7u8; 1000]), view(&[9u8; 24]));
        let views = vec![a, b];
        let pieces: Vec<&[u8]> = views.iter().map(|v| &v[..]).collect();
        let push = wire::SubscriptionDataPieces {
            subscription_id: 3,
            error: 0,
            high_watermark: 10,
            batches: &pieces,
            next_offset: 9,
        };
        let whole = push.encode_push().unwrap();
        let parts = push.encode_push_parts().unwrap();
        drop(pieces);
        let out = OutFrame::Parts { parts, views };
        assert_eq!(out.len(), whole.len());
        let mut slices = Vec::new();
        out.extend_io_slices(&mut slices);
        let written: Vec<u8> = slices.iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(written, &whole[..]);
        assert_eq!(&out.into_whole()[..], &whole[..]);
    }
}
