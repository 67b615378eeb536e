//! A shard's few spare buffers for large request frames, so a frame over the connection's
//! read buffer is read into memory that is already allocated and filled instead of a fresh
//! buffer zeroed before each read (3 % of the broker's CPU at max rate, 64 KiB produce
//! frames: `perf/results/2026-12-06-push-parts`).
//!
//! Contract: at most [`SPARE_FRAMES_MAX`] buffers per shard (thread), each of at most
//! [`SPARE_FRAME_BYTES_MAX`] of capacity, so the pool holds at most 1 MiB per shard. A
//! request's frame comes back to the pool of the shard that drops the request
//! (`request.rs`; a frame forwarded whole comes back on the shard that served it). A buffer keeps
//! the length it had (bytes written before, never read as a frame's: the reader fills every
//! byte of a frame before it hands it out), so a frame no longer than the last one needs no
//! zeroing. A reader that takes a spare holds its filled length from the shard's budget
//! (`frame_reader.rs`): spares in use are counted there, spares here by the bound above.

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

/// The spare [`take`] would give for `capacity`: the smallest with at least that capacity.
fn best_fit(spares: &[AlignedVec], capacity: usize) -> Option<usize> {
    (0..spares.len())
        .filter(|&i| spares[i].capacity() >= capacity)
        .min_by_key(|&i| spares[i].capacity())
}

/// How many bytes the spare [`take`] would give for `capacity` holds filled, if there is one.
pub fn spare_filled(capacity: usize) -> Option<usize> {
    SPARE.with(|s| {
        let s = s.borrow();
        best_fit(&s, capacity).map(|i| s[i].len().min(capacity))
    })
}

/// A buffer with at least `capacity` bytes of capacity: the smallest spare that has it (its
/// length is what it held filled before, at most `capacity`), or a new empty one (reserving
/// the next power of two up to [`SPARE_FRAME_BYTES_MAX`], so the next frame of about the
/// same size fits the spare this one leaves).
pub fn take(capacity: usize) -> AlignedVec {
    let spare = SPARE.with(|s| {
        let mut s = s.borrow_mut();
        let i = best_fit(&s, capacity)?;
        Some(s.swap_remove(i))
    });
    match spare {
        Some(mut b) => {
            if b.len() > capacity {
                b.resize(capacity, 0);
            }
            b
        }
        None => AlignedVec::with_capacity(
            capacity.next_power_of_two().min(SPARE_FRAME_BYTES_MAX).max(capacity),
        ),
    }
}

/// Keeps `frame` as a spare if it is a large frame's buffer and there is room.
pub fn give_back(frame: AlignedVec) {
    let cap = frame.capacity();
    if cap <= 16 << 10 || cap > SPARE_FRAME_BYTES_MAX {
        return;
    }
    // (While the thread's locals are being torn down there is no pool: the frame goes.)
    let _ = SPARE.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SPARE_FRAMES_MAX {
            s.push(frame);
        }
    });
}

/// Spare buffers held now (tests).
pub fn spares() -> usize {
    SPARE.with(|s| s.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spares_are_bounded_and_reused_with_their_length() {
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
        assert_eq!(spare_filled(48 << 10), Some(48 << 10));
        let b = take(48 << 10);
        assert_eq!((b.len(), b.capacity() >= 48 << 10), (48 << 10, true));
        assert_eq!(spares(), SPARE_FRAMES_MAX - 1);
        assert_eq!(spare_filled(100 << 10), None);
        // None large enough: a new one, of the next power of two.
        let big = take(100 << 10);
        assert_eq!((big.len(), big.capacity(), spares()), (0, 128 << 10, SPARE_FRAMES_MAX - 1));
    }
}
