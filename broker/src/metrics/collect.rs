//! Gathering every shard's [`ShardSnapshot`] on shard 0 at scrape time.
//!
//! Each shard i ≥ 1 has a pair of glommio shared channels with shard 0 (built on the main
//! thread by [`links`], connected on the shards): asks from shard 0 to i, answers back. A
//! responder task on shard i copies its counters when asked ([`super::snapshot`]); nothing
//! runs between scrapes. Asks carry a scrape number so an answer that arrives after its
//! scrape gave up ([`GATHER_TIMEOUT`]) is recognised and dropped by the next one, never
//! taken for a newer answer. A shard that does not answer in time is reported as missing
//! (`broker_metrics_shard_up 0`), and the scrape still answers.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};

use super::ShardSnapshot;
use crate::shard::Shard;

/// How long a scrape waits for the other shards' snapshots.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks (and answers) one shard may have queued; a shard that stopped answering misses
/// scrapes instead of queueing more.
const LINK_CAPACITY: usize = 4;

/// A scrape number and, on the way back, the snapshot taken for it.
type Answer = (u64, ShardSnapshot);

/// A shard's end of the metrics links.
pub enum Link {
    /// Shard 0: one (asks, answers) pair per other shard, in shard order from 1.
    Gatherer(Vec<(SharedSender<u64>, SharedReceiver<Answer>)>),
    /// Shard i ≥ 1.
    Responder(SharedReceiver<u64>, SharedSender<Answer>),
}

/// The links of `shards` shards, index = shard id.
pub fn links(shards: usize) -> Vec<Link> {
    let mut to_gatherer = Vec::with_capacity(shards.saturating_sub(1));
    let mut out = vec![];
    let mut responders = Vec::with_capacity(shards.saturating_sub(1));
    for _ in 1..shards {
        let (ask_tx, ask_rx) = shared_channel::new_bounded::<u64>(LINK_CAPACITY);
        let (answer_tx, answer_rx) = shared_channel::new_bounded::<Answer>(LINK_CAPACITY);
        to_gatherer.push((ask_tx, answer_rx));
        responders.push(Link::Responder(ask_rx, answer_tx));
    }
    out.push(Link::Gatherer(to_gatherer));
    out.extend(responders);
    out
}

/// Answers shard 0's asks until shard 0 goes away. Spawned on each shard i ≥ 1.
pub async fn respond(shard: Rc<Shard>, asks: SharedReceiver<u64>, answers: SharedSender<Answer>) {
    let (asks, answers) = (asks.connect().await, answers.connect().await);
    while let Some(scrape) = asks.recv().await {
        if answers.send((scrape, super::snapshot(&shard))).await.is_err() {
            return;
        }
    }
}

/// Shard 0's connected link to one other shard: its id, asks out, answers in.
type Peer = (u32, ConnectedSender<u64>, ConnectedReceiver<Answer>);

/// Shard 0's side: asks every shard and collects the answers.
pub struct Gatherer {
    shard: Rc<Shard>,
    peers: RefCell<Option<Vec<Peer>>>,
    unconnected: RefCell<Vec<(SharedSender<u64>, SharedReceiver<Answer>)>>,
    scrape: Cell<u64>,
}

/// What a gather found: a snapshot per shard that answered, and the ids of those that did
/// not.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Snapshots in shard order.
    pub shards: Vec<ShardSnapshot>,
    /// Shards that did not answer within [`GATHER_TIMEOUT`].
    pub missing: Vec<u32>,
}

impl Gatherer {
    /// Shard 0's gatherer over the channel ends from [`links`].
    pub fn new(shard: Rc<Shard>, ends: Vec<(SharedSender<u64>, SharedReceiver<Answer>)>) -> Self {
        Gatherer {
            shard,
            peers: RefCell::new(None),
            unconnected: RefCell::new(ends),
            scrape: Cell::new(0),
        }
    }

    /// Connects the channel ends (waits until every other shard connected its end).
    pub async fn connect(&self) {
        let ends: Vec<_> = self.unconnected.borrow_mut().drain(..).collect();
        let mut peers = Vec::with_capacity(ends.len());
        for (i, (ask, answer)) in ends.into_iter().enumerate() {
            peers.push((i as u32 + 1, ask.connect().await, answer.connect().await));
        }
        *self.peers.borrow_mut() = Some(peers);
    }

    /// Every shard's snapshot, this one's taken here. One gather at a time (the endpoint
    /// serves one scrape at a time).
    pub async fn gather(&self) -> Gathered {
        let scrape = self.scrape.get() + 1;
        self.scrape.set(scrape);
        let mut out = Gathered { shards: vec![super::snapshot(&self.shard)], missing: vec![] };
        // The peers are taken out for the gather (no RefCell borrow across an await).
        let Some(peers) = self.peers.borrow_mut().take() else {
            out.missing.extend(1..self.shard.shard_count);
            return out;
        };
        let mut asked = Vec::with_capacity(peers.len());
        for (id, ask, _) in &peers {
            asked.push(ask.try_send(scrape).is_ok());
            if !asked.last().copied().unwrap_or(false) {
                out.missing.push(*id);
            }
        }
        let deadline = std::time::Instant::now() + GATHER_TIMEOUT;
        for ((id, _, answers), asked) in peers.iter().zip(asked) {
            if !asked {
                continue;
            }
            match receive(answers, scrape, deadline).await {
                Some(s) => out.shards.push(s),
                None => out.missing.push(*id),
            }
        }
        *self.peers.borrow_mut() = Some(peers);
        out.missing.sort_unstable();
        out
    }
}

/// The answer to scrape `scrape`, dropping older ones, or `None` at the deadline.
async fn receive(
    answers: &ConnectedReceiver<Answer>,
    scrape: u64,
    deadline: std::time::Instant,
) -> Option<ShardSnapshot> {
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let next = futures_lite::future::or(async { answers.recv().await.map(Some) }, async {
            glommio::timer::sleep(left).await;
            Some(None)
        })
        .await;
        match next {
            Some(Some((n, snapshot))) if n == scrape => return Some(snapshot),
            Some(Some(_)) => continue, // a late answer to an earlier scrape
            Some(None) | None => return None,
        }
    }
}
