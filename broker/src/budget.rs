//! A byte budget: memory a client can make the broker hold, counted before it is held.
//!
//! Contract: single-threaded (one shard). [`MemoryBudget::hold`] waits until the bytes fit
//! and returns a [`Held`] that gives them back when dropped, so what is counted is exactly
//! what is alive. A budget with nothing held always lets one holder in, whatever its size,
//! so a request larger than the budget still runs (alone). [`MemoryBudget::hold_now`] counts
//! without waiting, for bytes that already exist (a response larger than its reservation, a
//! push relayed from another shard): the budget can then pass its maximum, and every
//! waiting holder waits until it is back under. Closing a budget lets every waiter through.
//!
//! Two budgets exist: one per connection (`connection_send_queue_bytes_max`) and one per
//! shard (`memory_bytes_per_shard`) over all its connections; a connection holds from both.
//! A [`ResponseRoom`] is what one response holds of both, shared by the connection that
//! reserved it and the request that builds the response, so the request can take room for
//! bytes it finds it needs before it makes them (a fetch's first batch beyond `max_bytes`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::watermark::{WaitAny, Watermark};

/// See the module docs.
#[derive(Debug)]
pub struct MemoryBudget {
    held_bytes: Cell<usize>,
    held_bytes_max: usize,
    released: Watermark,
}

impl MemoryBudget {
    /// A budget of `held_bytes_max` bytes.
    pub fn new(held_bytes_max: usize) -> Rc<Self> {
        Rc::new(MemoryBudget {
            held_bytes: Cell::new(0),
            held_bytes_max,
            released: Watermark::new(0),
        })
    }

    /// Bytes held now.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes.get()
    }

    /// The maximum.
    pub fn held_bytes_max(&self) -> usize {
        self.held_bytes_max
    }

    /// Whether `bytes` more fit now: always when nothing is held, and nothing always fits (a
    /// request that reserves nothing, such as a produce, is never kept waiting).
    pub fn has_room(&self, bytes: usize) -> bool {
        let held = self.held_bytes.get();
        bytes == 0 || held == 0 || held.saturating_add(bytes) <= self.held_bytes_max
    }

    /// Whether `bytes` more fit now for a holder that already holds `own` of it: always when
    /// nothing else is held (so a holder alone can grow to any size).
    pub fn has_room_beside(&self, own: usize, bytes: usize) -> bool {
        let held = self.held_bytes.get();
        bytes == 0 || held <= own || held.saturating_add(bytes) <= self.held_bytes_max
    }

    /// Whether it holds its maximum or more.
    pub fn is_full(&self) -> bool {
        self.held_bytes.get() >= self.held_bytes_max
    }

    /// Advanced whenever bytes are given back; closed with the budget.
    pub fn released(&self) -> &Watermark {
        &self.released
    }

    /// Waits until `bytes` fit (or the budget is closed), then holds them.
    pub async fn hold(self: &Rc<Self>, bytes: usize) -> Held {
        wait_until(&[self], || self.has_room(bytes)).await;
        self.hold_now(bytes)
    }

    /// Holds `bytes` at once, even past the maximum.
    pub fn hold_now(self: &Rc<Self>, bytes: usize) -> Held {
        self.held_bytes.set(self.held_bytes.get() + bytes);
        Held { budget: self.clone(), bytes }
    }

    /// Lets every waiter through from now on (the owner is going away).
    pub fn close(&self) {
        self.released.close();
    }
}

/// Waits until `ready()` holds, checking again whenever one of `budgets` gives bytes back;
/// `false` if one of them closed first.
pub async fn wait_until(budgets: &[&MemoryBudget], ready: impl Fn() -> bool) -> bool {
    loop {
        let seen: Vec<u64> = budgets.iter().map(|b| b.released.get()).collect();
        if ready() {
            return true;
        }
        let waits = budgets.iter().zip(&seen).map(|(b, s)| b.released.wait_for(s + 1));
        if !WaitAny(waits.collect()).await {
            return false;
        }
    }
}

/// Waits until `bytes` fit every one of `budgets` (a connection's and its shard's), then
/// holds them in each: what a response may take, reserved before its request runs. A closing
/// budget lets the reservation through.
pub async fn reserve(budgets: &[&Rc<MemoryBudget>], bytes: usize) -> Vec<Held> {
    let plain: Vec<&MemoryBudget> = budgets.iter().map(|b| &***b).collect();
    wait_until(&plain, || budgets.iter().all(|b| b.has_room(bytes))).await;
    hold_all_now(budgets, bytes)
}

/// Holds `bytes` of every one of `budgets` now, room or not.
pub fn hold_all_now(budgets: &[&Rc<MemoryBudget>], bytes: usize) -> Vec<Held> {
    budgets.iter().map(|b| b.hold_now(bytes)).collect()
}

/// Bytes held from a [`MemoryBudget`]; given back on drop.
#[derive(Debug)]
pub struct Held {
    budget: Rc<MemoryBudget>,
    bytes: usize,
}

impl Held {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Waits until `bytes` more fit its budget beside what others hold, then holds them too
    /// (a holder alone grows at once, to any size: a frame larger than the budget is read
    /// alone, as the module docs promise).
    pub async fn grow_when_room(&mut self, bytes: usize) {
        let (budget, own) = (self.budget.clone(), self.bytes);
        wait_until(&[&budget], || budget.has_room_beside(own, bytes)).await;
        self.grow(bytes);
    }

    /// How many more bytes fit its budget now beside what others hold (`usize::MAX` when it
    /// is the only holder: a holder alone grows to any size).
    pub fn room_beside(&self) -> usize {
        let b = &self.budget;
        let held = b.held_bytes.get();
        if held <= self.bytes {
            usize::MAX
        } else {
            b.held_bytes_max.saturating_sub(held)
        }
    }

    /// Gives back `bytes` of what it holds (at most all of it).
    pub fn shrink(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        let b = &self.budget;
        b.held_bytes.set(b.held_bytes.get() - bytes);
        self.bytes -= bytes;
        b.released.advance(b.released.get() + 1);
    }

    /// Holds `bytes` more at once (the thing held grew past its reservation).
    pub fn grow(&mut self, bytes: usize) {
        let b = &self.budget;
        b.held_bytes.set(b.held_bytes.get() + bytes);
        self.bytes += bytes;
    }

    /// Holds exactly `bytes` from now: what a response's reservation comes to once the
    /// response is made (grown past it, or given back down to it).
    pub fn fit(&mut self, bytes: usize) {
        if self.bytes > bytes {
            self.shrink(self.bytes - bytes);
        } else {
            self.grow(bytes - self.bytes);
        }
    }

    /// One of `holds` (of one budget) holding exactly `bytes`, the others given back: what
    /// a response's room comes to once the response is made (`None`: there was none).
    pub fn sized(mut holds: Vec<Held>, bytes: usize) -> Option<Held> {
        let mut kept = holds.pop()?;
        drop(holds);
        kept.fit(bytes);
        Some(kept)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let b = &self.budget;
        assert!(b.held_bytes.get() >= self.bytes, "budget gives back more than it holds");
        b.held_bytes.set(b.held_bytes.get() - self.bytes);
        b.released.advance(b.released.get() + 1);
    }
}

/// What one response holds of several budgets at once (its connection's and its shard's),
/// shared by the connection and the request that builds the response (see the module docs).
/// Empty for a request no connection reserved for (forwarded from a peer shard): it then
/// grows by nothing.
#[derive(Debug, Default)]
pub struct ResponseRoom {
    held: RefCell<Vec<Held>>,
}

impl ResponseRoom {
    /// Holds `held` for the response (its reservation).
    pub fn put(&self, held: Vec<Held>) {
        *self.held.borrow_mut() = held;
    }

    /// What it holds, taken out (to go with the response to the socket).
    pub fn take(&self) -> Vec<Held> {
        std::mem::take(&mut *self.held.borrow_mut())
    }

    /// Gives back `bytes` of what it holds in every budget (room taken for more than was made).
    pub fn shrink(&self, bytes: usize) {
        self.held.borrow_mut().iter_mut().for_each(|h| h.shrink(bytes));
    }

    /// Holds `bytes` more of every budget if they fit beside what it holds now; whether it did.
    pub fn try_grow(&self, bytes: usize) -> bool {
        let mut held = self.held.borrow_mut();
        if !held.iter().all(|h| h.budget.has_room_beside(h.bytes, bytes)) {
            return false;
        }
        held.iter_mut().for_each(|h| h.grow(bytes));
        true
    }

    /// Holds `bytes` more of every budget: gives back what it holds and waits until that and
    /// `bytes` more fit as a new holder's, then holds them. Giving back first is what keeps
    /// two growing responses of one connection from waiting for each other: with nothing
    /// held, one holder always fits. The caller drops what it made before it calls this.
    pub async fn grow(&self, bytes: usize) {
        if self.try_grow(bytes) {
            return;
        }
        let wants: Vec<(Rc<MemoryBudget>, usize)> =
            self.take().iter().map(|h| (h.budget.clone(), h.bytes + bytes)).collect();
        let budgets: Vec<&MemoryBudget> = wants.iter().map(|(b, _)| &**b).collect();
        wait_until(&budgets, || wants.iter().all(|(b, n)| b.has_room(*n))).await;
        self.put(wants.iter().map(|(b, n)| b.hold_now(*n)).collect());
    }
}

/// Where a response gathered a piece at a time takes its room.
#[derive(Debug, Clone, Copy)]
pub enum RoomFrom<'a> {
    /// Its connection's and its shard's budgets, through the response's room.
    Connection(&'a ResponseRoom),
    /// What the shard that forwarded the request lent for the answer (that shard holds it of
    /// its own budgets): pieces are admitted while it lasts, and a reader that finds it too
    /// small cannot wait for more: it answers `ROOM_SHORT`, and the lender asks again with
    /// more (`api/forward.rs`).
    Lent(&'a Cell<usize>),
    /// Nothing to take it from: every piece is admitted.
    Unbounded,
}

/// Room taken entry by entry for a response gathered a piece at a time (a table read's
/// entries, a key query's records, and what reading them takes): [`EntryRoom::admit`] takes
/// room for the next piece if it fits now; a reader whose answer is still empty instead lets
/// the piece go, waits ([`EntryRoom::wait`], holding nothing it made) and reads it again;
/// one with pieces answers with those (partial, with where to continue). What a wait granted
/// and no piece took is given back on drop.
#[derive(Debug)]
pub struct EntryRoom<'a> {
    from: RoomFrom<'a>,
    granted_bytes: usize,
}

impl<'a> EntryRoom<'a> {
    /// Takes room from `from`.
    pub fn new(from: RoomFrom<'a>) -> Self {
        EntryRoom { from, granted_bytes: 0 }
    }

    /// Whether a piece of `bytes` may join the response: room taken now, or granted by a wait.
    pub fn admit(&mut self, bytes: usize) -> bool {
        match self.from {
            RoomFrom::Unbounded => true,
            RoomFrom::Lent(left) if left.get() >= bytes => {
                left.set(left.get() - bytes);
                true
            }
            RoomFrom::Lent(_) => false,
            RoomFrom::Connection(_) if self.granted_bytes >= bytes => {
                self.granted_bytes -= bytes;
                true
            }
            RoomFrom::Connection(room) if room.try_grow(bytes - self.granted_bytes) => {
                self.granted_bytes = 0;
                true
            }
            RoomFrom::Connection(_) => false,
        }
    }

    /// Gives back `bytes` of what it took (a piece turned out smaller than its room).
    pub fn give_back(&mut self, bytes: usize) {
        match self.from {
            RoomFrom::Connection(room) => room.shrink(bytes),
            RoomFrom::Lent(left) => left.set(left.get() + bytes),
            RoomFrom::Unbounded => {}
        }
    }

    /// Waits until room for a piece of `bytes` is granted (the caller let the piece go);
    /// `false` (at once) if the room was lent and is too small: no wait can grow it.
    #[must_use]
    pub async fn wait(&mut self, bytes: usize) -> bool {
        match self.from {
            RoomFrom::Connection(room) => {
                let more = bytes.saturating_sub(self.granted_bytes);
                room.grow(more).await;
                self.granted_bytes += more;
                true
            }
            RoomFrom::Lent(_) => false,
            RoomFrom::Unbounded => true,
        }
    }
}

impl Drop for EntryRoom<'_> {
    fn drop(&mut self) {
        if let RoomFrom::Connection(room) = self.from {
            room.shrink(self.granted_bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `held` grew by `bytes` within `ms`.
    async fn grown_within(held: &mut Held, bytes: usize, ms: u64) -> bool {
        let grow = async {
            held.grow_when_room(bytes).await;
            true
        };
        futures_lite::future::or(grow, async {
            glommio::timer::sleep(std::time::Duration::from_millis(ms)).await;
            false
        })
        .await
    }

    #[test]
    fn holds_wait_for_room_and_drops_give_it_back() {
        let run = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .spawn(|| async {
                let budget = MemoryBudget::new(100);
                let big = budget.hold(500).await; // nothing held: one holder always fits
                assert_eq!(budget.held_bytes(), 500);
                assert!(!budget.has_room(1));
                let waiter = {
                    let budget = budget.clone();
                    glommio::spawn_local(async move { budget.hold(60).await.bytes() })
                };
                futures_lite::future::yield_now().await;
                drop(big);
                assert_eq!(waiter.await, 60);
                let mut a = budget.hold(40).await;
                a.grow(200); // past the maximum, at once
                assert_eq!(budget.held_bytes(), 240);
                drop(a);
                assert_eq!(budget.held_bytes(), 0);
                // A holder alone grows past the maximum when room comes (a frame larger than
                // the budget, read alone; before, it waited forever); beside another it waits.
                let mut alone = budget.hold(80).await;
                assert!(grown_within(&mut alone, 50, 2_000).await, "alone, it waited");
                assert_eq!(budget.held_bytes(), 130);
                let other = budget.hold_now(10);
                assert!(!grown_within(&mut alone, 10, 20).await, "grew beside another holder");
                drop(other);
            });
        run.expect("executor").join().expect("test body");
    }

    #[test]
    fn responses_growing_together_do_not_wait_for_each_other() {
        let run = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .spawn(|| async {
                let (connection, shard) = (MemoryBudget::new(100), MemoryBudget::new(1000));
                let room = |bytes| {
                    let r = Rc::new(ResponseRoom::default());
                    r.put(vec![connection.hold_now(bytes), shard.hold_now(bytes)]);
                    r
                };
                let (a, b) = (room(50), room(50));
                assert!(!a.try_grow(60), "150 of 100 with another holder");
                // Both want 60 more: neither fits beside the other, yet both get it in turn.
                let grow = |r: Rc<ResponseRoom>| {
                    glommio::spawn_local(async move {
                        r.grow(60).await;
                        let held = r.take(); // its response is written: room given back
                        held.iter().map(Held::bytes).collect::<Vec<_>>()
                    })
                };
                let (ga, gb) = (grow(a), grow(b));
                assert_eq!(ga.await, vec![110, 110]);
                assert_eq!(gb.await, vec![110, 110]);
                assert_eq!((connection.held_bytes(), shard.held_bytes()), (0, 0));
                let alone = room(50);
                assert!(alone.try_grow(500), "a holder alone grows to any size");
                assert_eq!(connection.held_bytes(), 550);
                alone.shrink(520);
                assert_eq!((connection.held_bytes(), shard.held_bytes()), (30, 30));
            });
        run.expect("executor").join().expect("test body");
    }

    #[test]
    fn entries_take_room_one_by_one_and_a_wait_grants_it() {
        let run = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .spawn(|| async {
                let budget = MemoryBudget::new(100);
                let other = budget.hold_now(60); // a queued answer of the same connection
                let room = ResponseRoom::default();
                room.put(vec![budget.hold_now(0)]);
                {
                    let mut entries = EntryRoom::new(RoomFrom::Connection(&room));
                    assert!(entries.admit(30));
                    assert!(!entries.admit(30), "100 held: no room for more now");
                    let waiter = glommio::spawn_local(async move {
                        futures_lite::future::yield_now().await;
                        drop(other); // the queued answer is written
                    });
                    assert!(entries.wait(50).await);
                    waiter.await;
                    assert!(entries.admit(20), "taken from what the wait granted");
                    assert_eq!(budget.held_bytes(), 80);
                } // 30 granted and not taken: given back
                assert_eq!(budget.held_bytes(), 50);
                let mut unbounded = EntryRoom::new(RoomFrom::Unbounded);
                assert!(unbounded.admit(usize::MAX), "nothing reserved for it: no room taken");
                // Lent room: admitted while it lasts, given back to it, never waited for.
                let lent = Cell::new(100);
                let mut entries = EntryRoom::new(RoomFrom::Lent(&lent));
                assert!(entries.admit(70));
                assert!(!entries.admit(40), "30 left");
                assert!(!entries.wait(40).await, "a lent room cannot grow by waiting");
                entries.give_back(20);
                assert!(entries.admit(50));
                assert_eq!(lent.get(), 0);
            });
        run.expect("executor").join().expect("test body");
    }
}
