//! The coordinator's members side: expiry and the member budget's sweep, what a join will
//! add, the per-group change watermarks held heartbeats wait on, listings.

use std::time::Instant;

use super::membership::{self, Membership};
use super::Coordinator;
use crate::watermark::Watermark;

/// Why [`Coordinator::expire`] removed a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// No heartbeat within its session, or it kept a revoked partition too long.
    Expired,
    /// Its group's holdings grew past the shard's budget for group members.
    OverBudget,
}

impl Coordinator {
    /// What `group`'s held heartbeats wait on (`None`: this coordinator does not know it).
    pub fn changes_of(&self, group: &str) -> Option<Watermark> {
        self.groups.borrow().get(group).map(|g| g.changes.clone())
    }

    /// Removes members whose session timed out, in every group, and takes on partition
    /// counts that changed; a group whose holdings grew since the last sweep (a topic its
    /// members read grew or was created; grants) while all groups together hold more than
    /// `bytes_max` (`group_member_bytes_per_shard_max`) loses every member: a join checks its
    /// own growth, but a topic's growth reaches every group reading it at once. Returns
    /// (group, member, why).
    pub fn expire(
        &self,
        now: Instant,
        partition_count: &dyn Fn(&str) -> u32,
        bytes_max: usize,
    ) -> Vec<(String, String, Removal)> {
        let mut gone = Vec::new();
        let mut groups = self.groups.borrow_mut();
        let mut held: usize = groups.values().map(|g| g.member_bytes).sum();
        for (id, g) in groups.iter_mut() {
            if g.membership.is_empty() {
                continue;
            }
            let (version, before) = (g.membership.version, g.member_bytes);
            for member in g.membership.expire(now, partition_count) {
                gone.push((id.clone(), member, Removal::Expired));
            }
            g.membership.refresh_partitions(partition_count);
            if g.membership.version != version {
                g.note_membership(now);
            }
            held = held - before + g.member_bytes;
            if g.member_bytes > g.swept_bytes && held > bytes_max {
                held -= g.member_bytes;
                for member in g.membership.remove_all() {
                    gone.push((id.clone(), member, Removal::OverBudget));
                }
                g.note_membership(now);
                held += g.member_bytes;
            }
            g.swept_bytes = g.member_bytes;
            if g.membership.version != version {
                g.changes.advance(g.changes.get() + 1);
            }
        }
        groups.retain(|_, g| !(g.membership.is_empty() && g.offsets.is_empty()));
        gone
    }

    /// What `group` will hold more once a member reading `topics` joined
    /// ([`Membership::joining_growth`]).
    pub fn joining_growth<'a>(
        &self,
        group: &str,
        topics: impl Iterator<Item = &'a str>,
        instance_id: &str,
        partition_count: &dyn Fn(&str) -> u32,
    ) -> usize {
        let groups = self.groups.borrow();
        match groups.get(group) {
            Some(g) => g.membership.joining_growth(topics, instance_id, partition_count),
            None => Membership::new(group).joining_growth(topics, instance_id, partition_count),
        }
    }

    /// Members of all groups this coordinator holds.
    pub fn member_count(&self) -> usize {
        self.groups.borrow().values().map(|g| g.membership.members.len()).sum()
    }

    /// About what the members of all groups this coordinator holds take (each group's
    /// count as of its last membership change: O(groups)), and of them what `member` of
    /// `group` takes.
    pub fn member_bytes(&self, group: &str, member: &str) -> (usize, usize) {
        let groups = self.groups.borrow();
        let own = groups
            .get(group)
            .and_then(|g| g.membership.members.get(member))
            .map_or(0, membership::Member::bytes);
        let all: usize = groups.values().map(|g| g.member_bytes).sum();
        (all.max(own), own)
    }

    /// Groups whose id starts with `prefix`: (id, members, generation).
    pub fn list(&self, prefix: &str) -> Vec<(String, u32, u32)> {
        self.groups
            .borrow()
            .iter()
            .filter(|(id, _)| id.starts_with(prefix))
            .map(|(id, g)| (id.clone(), g.membership.members.len() as u32, g.membership.generation))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeSet;

    use wire::Assignor;

    use super::*;
    use crate::group::membership::Join;

    fn join(c: &Coordinator, group: &str, topic: &str, counts: &dyn Fn(&str) -> u32) {
        let join = Join {
            member_id: String::new(),
            instance_id: String::new(),
            session_timeout_ms: 30_000,
            topics: vec![topic.into()],
            assignor: Assignor::Range,
            owned: BTreeSet::new(),
        };
        c.with_group(group, |g| g.membership.join(join, Instant::now(), counts).unwrap());
    }

    /// A held heartbeat waits on its own group's changes: another group's join does not
    /// wake it (before, every change on the shard woke every held heartbeat).
    #[test]
    fn one_groups_change_leaves_the_others_watermark_alone() {
        let c = Coordinator::default();
        join(&c, "a", "t", &|_| 4);
        let a = c.changes_of("a").expect("group a");
        let seen = a.get();
        join(&c, "b", "t", &|_| 4);
        assert_eq!(a.get(), seen, "b's join woke a's heartbeats");
        join(&c, "a", "t", &|_| 4);
        assert!(a.get() > seen, "a's own join must wake them");
    }

    /// A topic that grows reaches every group reading it at once: the sweep keeps the groups
    /// that fit the budget and removes the members of those that grew past it.
    #[test]
    fn groups_that_grow_past_the_member_budget_lose_their_members() {
        let c = Coordinator::default();
        let partitions = Cell::new(1u32);
        let counts = |_: &str| partitions.get();
        for g in ["a", "b", "c"] {
            join(&c, g, "t", &counts);
        }
        let small = c.member_bytes("", "").0;
        assert!(c.expire(Instant::now(), &counts, small).is_empty());
        partitions.set(1_000);
        let wide = |g: &str| c.read_group(g, |g| g.unwrap().membership.bytes());
        // ~142 KB each now (a 1,000-partition target and its grants): one fits in 200 KB more.
        let gone = c.expire(Instant::now(), &counts, small + 200_000);
        assert!(wide("a") > 100_000, "the target grew with the topic: {}", wide("a"));
        let removed: Vec<&str> = gone.iter().map(|(g, _, _)| g.as_str()).collect();
        assert_eq!(removed, ["b", "c"], "{gone:?}");
        assert!(gone.iter().all(|(_, _, why)| *why == Removal::OverBudget));
        assert_eq!(c.member_count(), 1);
        // Nothing grew since: the next sweep removes nobody, even past the budget.
        assert!(c.expire(Instant::now(), &counts, 0).is_empty());
    }
}
