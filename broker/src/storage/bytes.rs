//! A cheaply clonable view of stored bytes, whatever owns them (a disk read buffer or the
//! recent-batch cache), so reads hand out stored batches without copying.

use std::rc::Rc;

/// A slice of an `Rc`-shared buffer.
#[derive(Clone)]
pub struct ByteView {
    owner: Rc<dyn AsRef<[u8]>>,
    start: usize,
    end: usize,
}

impl std::fmt::Debug for ByteView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ByteView({} bytes)", self.len())
    }
}

impl ByteView {
    /// The whole of `owner`.
    pub fn new(owner: Rc<dyn AsRef<[u8]>>) -> Self {
        let end = (*owner).as_ref().len();
        ByteView { owner, start: 0, end }
    }

    /// A sub-range of this view.
    pub fn slice(&self, start: usize, end: usize) -> Self {
        assert!(start <= end && end <= self.len(), "slice {start}..{end} of {}", self.len());
        ByteView { owner: self.owner.clone(), start: self.start + start, end: self.start + end }
    }

    /// `self` followed by `next` as one view, if `next` continues the same buffer.
    pub fn extend_adjacent(&self, next: &ByteView) -> Option<ByteView> {
        if Rc::ptr_eq(&self.owner, &next.owner) && self.end == next.start {
            Some(ByteView { owner: self.owner.clone(), start: self.start, end: next.end })
        } else {
            None
        }
    }

    /// `views` with adjacent slices of one buffer merged (fewer, larger chunks: batches of
    /// one disk read, or of one produce request's frame that the log kept).
    pub fn coalesce(views: Vec<ByteView>) -> Vec<ByteView> {
        let mut out: Vec<ByteView> = Vec::with_capacity(views.len());
        for v in views {
            if let Some(merged) = out.last().and_then(|last| last.extend_adjacent(&v)) {
                *out.last_mut().expect("a last view") = merged;
                continue;
            }
            out.push(v);
        }
        out
    }

    /// Length of the whole buffer this view keeps alive.
    pub fn owner_len(&self) -> usize {
        (*self.owner).as_ref().len()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

impl AsRef<[u8]> for ByteView {
    fn as_ref(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.start..self.end]
    }
}

impl std::ops::Deref for ByteView {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_ref()
    }
}
