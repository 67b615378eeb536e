//! A fetch's wait for data, before it reserves room for its response.
//!
//! A connection reserves what a fetch's response may take (`max_bytes`, at most
//! `fetch_response_bytes_max`) from its own and the shard's budgets before the fetch runs.
//! A long-poll that held that reservation while it waited made the budgets a limit on
//! *waiting* consumers: with Kafka clients' default 50 MiB `fetch.max.bytes`, ten idle
//! long-polls filled a shard's 512 MiB, and every further fetch on the shard — including
//! one whose partition had data — queued behind their `max_wait_ms` (30 consumers: a record
//! took 0.8 s at the median to reach its consumer instead of ~1 ms;
//! `perf/results/2026-12-05-idle-long-polls`). So a fetch that would only wait first
//! waits here holding nothing, then reserves and runs.
//!
//! Contract: [`LongPoll::of`] is `Some` only for a fetch that would read nothing now and
//! wait: every partition it names is this shard's, named once, of a topic the client may
//! read, each asked from exactly its high watermark (no data past it, no out-of-range
//! error), and it may wait (`max_wait_ms` > 0 and `min_bytes` > 0: [`fetch_wait_ms`]). Any
//! other fetch (refused, invalid) is answered as soon as before.
//! [`LongPoll::wait`] returns once any of those partitions has data past its offset, the
//! fetch's deadline (`received` + `max_wait_ms`) passed, the client's connection stopped
//! reading (native connections), or the shard stops; the fetch then
//! runs as it would have, to the same deadline (it counts from `received`), so waiting here
//! never lengthens a long-poll. Anything else (a partition elsewhere, data already there)
//! reserves first, as before.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use wire::ApiKey;

use crate::auth::authorize::may_read;
use crate::auth::Session;
use crate::request::Request;
use crate::shard::Shard;
use crate::watermark::{WaitAny, Watermark};

/// Longest long-poll a client may ask for.
pub const FETCH_WAIT_MS_MAX: u32 = 60_000;

/// How long a fetch asking for `min_bytes` may wait: `max_wait_ms`, or nothing when it asks
/// for no bytes at all (`min_bytes` 0 answers at once, as a Kafka broker does; it waited
/// like 1 until 2026-12-06).
pub fn fetch_wait_ms(max_wait_ms: u32, min_bytes: u32) -> u32 {
    if min_bytes == 0 {
        0
    } else {
        max_wait_ms
    }
}

/// The deadline of a fetch received at `received` that may wait `max_wait_ms`.
pub fn fetch_deadline(received: Instant, max_wait_ms: u32) -> Instant {
    received + Duration::from_millis(u64::from(max_wait_ms.min(FETCH_WAIT_MS_MAX)))
}

/// See the module docs.
pub struct LongPoll {
    /// Each named partition's high-watermark mark and the offset asked.
    marks: Vec<(Watermark, u64)>,
    deadline: Instant,
}

impl LongPoll {
    /// The wait of a fetch received at `received` asking `partitions` (topic, partition,
    /// offset) with `max_wait_ms`, if it would only wait (see the module docs).
    pub fn of<'a>(
        shard: &Shard,
        received: Instant,
        max_wait_ms: u32,
        partitions: impl IntoIterator<Item = (&'a str, u32, u64)>,
        may_read: impl Fn(&str) -> bool,
    ) -> Option<LongPoll> {
        if max_wait_ms == 0 {
            return None;
        }
        let mut marks = Vec::new();
        let mut named: HashSet<(&str, u32)> = HashSet::new();
        for (topic, index, offset) in partitions {
            if !named.insert((topic, index)) || !may_read(topic) {
                return None;
            }
            let part = shard.partition(topic, index)?;
            if part.log.high_watermark() != offset {
                return None;
            }
            marks.push((part.log.high_watermark_mark().clone(), offset));
        }
        if marks.is_empty() {
            return None;
        }
        Some(LongPoll { marks, deadline: fetch_deadline(received, max_wait_ms) })
    }

    /// [`LongPoll::of`] a native fetch request of `session` (`None` for any other request).
    pub fn of_request(shard: &Shard, session: &Session, request: &Request) -> Option<LongPoll> {
        if request.header.api_key != ApiKey::Fetch.as_u16() {
            return None;
        }
        let fetch = wire::access_body::<wire::FetchRequest>(request.body()).ok()?;
        let partitions = fetch.topics.iter().flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.as_str(), p.partition.to_native(), p.offset.to_native()))
        });
        let may_read = |topic: &str| may_read(&shard.security, session, topic);
        let wait_ms = fetch_wait_ms(fetch.max_wait_ms.to_native(), fetch.min_bytes.to_native());
        LongPoll::of(shard, request.received, wait_ms, partitions, may_read)
    }

    /// Waits for data, the deadline, `end_wait` reaching 1 (the client's connection stopped
    /// reading) or the shard's stop (checked every second).
    pub async fn wait(self, shard: &Shard, end_wait: Option<&Watermark>) {
        loop {
            let now = Instant::now();
            let ended = end_wait.is_some_and(|w| w.get() >= 1);
            if now >= self.deadline || shard.stopping.get() || ended {
                return;
            }
            let data = self.marks.iter().map(|(m, offset)| m.wait_for(offset + 1));
            let waits = data.chain(end_wait.map(|w| w.wait_for(1))).collect();
            let slice = (self.deadline - now).min(Duration::from_secs(1));
            // Data came, or a partition closed (the fetch then answers its error).
            let moved = futures_lite::future::or(
                async {
                    WaitAny(waits).await;
                    true
                },
                async {
                    glommio::timer::sleep(slice).await;
                    false
                },
            )
            .await;
            if moved {
                return;
            }
        }
    }
}
