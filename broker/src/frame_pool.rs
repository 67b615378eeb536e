//! A shard's few spare buffers for large request frames, so a frame over the connection's
//! read buffer is read into memory that is already allocated and filled instead of a fresh
//! buffer zeroed before each read (3 % of the broker's CPU at max rate, 64 KiB produce
//! frames: `perf/results/2026-12-06-push-parts`).
//!
//! Contract: at most [`SPARE_FRAMES_MAX`] buffers per shard (thread), each of at most
//! [`SPARE_FRAME_BYTES_MAX`] of capacity, so the pool holds at most 1 MiB per shard. A
//! request's frame comes back to the pool of the shard that drops the request
//! (`request.rs`; a frame forwarded whole comes back on the shard that served it; a produce
//! frame the log keeps when its last view goes: [`KeptFrame`]). A buffer keeps
//! the length it had (bytes written before, never read as a frame's: the reader fills every
//! byte of a frame before it hands it out), so a frame no longer than that needs no zeroing.
//! Its memory may have been filled beyond that length by an earlier, longer frame (a frame
//! cut to its size keeps its buffer's pages), so a reader that takes a spare holds its whole
//! capacity from the shard's budget ([`spare_held`], at most twice the frame:
//! `frame_reader.rs`): spares in use are counted there, spares here by the bound above.

use std::cell::RefCell;

use wire::AlignedVec;

/// Spare buffers kept per shard.
pub const SPARE_FRAMES_MAX: usize = 4;

/// Largest buffer kept (larger ones are freed), also what the frame reader reserves at most
/// for a large frame at once (`frame_reader.rs`).
pub const SPARE_FRAME_BYTES_MAX: usize = 256 << 10;

thread_local! {
    static SPARE: RefCell<Vec<AlignedVec>> = const { RefCell::new(Vec::new()) };
}

/// A spare is given for a frame only if its capacity is at most this many times the
/// frame's: the reader holds the whole of what a spare holds filled from the budget, so a
/// much larger spare would cost a small frame a large hold (and it stays for a larger frame).
pub const SPARE_FIT_MAX: usize = 2;

/// The spare [`take`] would give for `capacity`: the smallest with at least that capacity
/// and at most [`SPARE_FIT_MAX`] times it. A produce frame the log keeps must be at least
/// 7/8 of its buffer (`api/produce.rs` `KEPT_FRAME_SHARE`), so new buffers are allocated at
/// the frame's size and a spare larger than that makes the produce copy its batches; it
/// still saves zeroing a new buffer, which costs more across mixed frame sizes
/// (`perf/results/2026-12-06-kept-frames`).
fn best_fit(spares: &[AlignedVec], capacity: usize) -> Option<usize> {
    (0..spares.len())
        .filter(|&i| (capacity..=capacity * SPARE_FIT_MAX).contains(&spares[i].capacity()))
        .min_by_key(|&i| spares[i].capacity())
}

/// The memory the spare [`take`] would give for `capacity` keeps, if there is one: its
/// capacity (up to [`SPARE_FIT_MAX`] times `capacity`), all of which an earlier frame may
/// have filled.
pub fn spare_held(capacity: usize) -> Option<usize> {
    SPARE.with(|s| {
        let s = s.borrow();
        best_fit(&s, capacity).map(|i| s[i].capacity())
    })
}

/// A buffer with at least `capacity` bytes of capacity: the best fitting spare (its length
/// is the last frame's, filled; its memory is [`spare_held`]), or a new empty one of exactly
/// `capacity`.
pub fn take(capacity: usize) -> AlignedVec {
    let spare = SPARE.with(|s| {
        let mut s = s.borrow_mut();
        let i = best_fit(&s, capacity)?;
        Some(s.remove(i))
    });
    spare.unwrap_or_else(|| AlignedVec::with_capacity(capacity))
}

/// Keeps `frame` as a spare if it is a large frame's buffer; the oldest spare goes when
/// there are [`SPARE_FRAMES_MAX`] (the pool follows the sizes of recent frames).
pub fn give_back(frame: AlignedVec) {
    let cap = frame.capacity();
    if cap <= 16 << 10 || cap > SPARE_FRAME_BYTES_MAX {
        return;
    }
    // (While the thread's locals are being torn down there is no pool: the frame goes.)
    let _ = SPARE.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.len() == SPARE_FRAMES_MAX {
            s.remove(0);
        }
        s.push(frame);
    });
}

/// A request frame whose batches the log keeps (`api/produce.rs` stores a produce request's
/// batches as views of its frame): its buffer comes back to the pool once the last view goes.
pub struct KeptFrame(AlignedVec);

impl KeptFrame {
    /// Keeps `frame`.
    pub fn new(frame: AlignedVec) -> Self {
        KeptFrame(frame)
    }
}

impl AsRef<[u8]> for KeptFrame {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for KeptFrame {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.0));
    }
}

/// Spare buffers held now (tests).
pub fn spares() -> usize {
    SPARE.with(|s| s.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spares_are_bounded_reused_with_their_length_and_fit_closely() {
        for _ in 0..SPARE_FRAMES_MAX + 2 {
            let mut b = AlignedVec::with_capacity(64 << 10);
            b.resize(64 << 10, 7);
            give_back(b);
        }
        assert_eq!(spares(), SPARE_FRAMES_MAX);
        // Small and huge buffers are not kept.
        give_back(AlignedVec::with_capacity(1024));
        give_back(AlignedVec::with_capacity(SPARE_FRAME_BYTES_MAX + 1));
        assert_eq!(spares(), SPARE_FRAMES_MAX);
        // The smallest spare that fits, up to twice the size asked, held whole.
        assert_eq!(spare_held(56 << 10), Some(64 << 10));
        assert_eq!(spare_held(16 << 10), None, "64 KiB is more than twice 16 KiB");
        let b = take(60 << 10);
        assert_eq!((b.len(), b.capacity() >= 60 << 10), (64 << 10, true));
        assert_eq!(spares(), SPARE_FRAMES_MAX - 1);
        assert_eq!(spare_held(100 << 10), None);
        // None fits: a new one, of exactly that capacity.
        let big = take(100 << 10);
        assert_eq!((big.len(), big.capacity(), spares()), (0, 100 << 10, SPARE_FRAMES_MAX - 1));
        // A full pool lets its oldest spare go for a newer one.
        give_back(big);
        give_back(AlignedVec::with_capacity(200 << 10));
        assert_eq!(spares(), SPARE_FRAMES_MAX);
        assert!(spare_held(100 << 10).is_some() && spare_held(200 << 10).is_some());
        // A frame the log kept comes back when it goes.
        let mut kept = AlignedVec::with_capacity(30 << 10);
        kept.resize(30 << 10, 1);
        drop(KeptFrame::new(kept));
        assert_eq!(spare_held(30 << 10), Some(30 << 10));
    }
}
