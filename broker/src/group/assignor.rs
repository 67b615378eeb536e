//! Assignors: which member of a group owns which partition (the group's target).
//!
//! Contract: pure functions of the members (their sort keys and topics), the partition
//! counts of the topics they read, and the previous target. Every partition of a topic
//! that some member reads goes to exactly one member that reads it; partitions of topics no
//! member reads go to nobody. The coordinator (`membership.rs`) hands the target out
//! incrementally, so an assignor never has to worry about two owners at once.

use std::collections::{BTreeMap, BTreeSet};

use wire::Assignor;

/// A partition of a topic.
pub type TopicPartition = (String, u32);

/// What an assignor knows of a member.
#[derive(Debug, Clone)]
pub struct MemberSpec<'a> {
    /// Member id (the value in the target map).
    pub id: &'a str,
    /// Order among members: the static instance id if it has one (so a restarted
    /// instance sorts where it did), else the member id.
    pub sort_key: &'a str,
    /// Topics the member reads, sorted, each once (as a join stores them).
    pub topics: &'a [String],
}

/// The target assignment: partition → member id.
pub type Target = BTreeMap<TopicPartition, String>;

/// Computes the target with `assignor`. `partitions` is topic → partition count (topics
/// missing from it have no partitions yet); `previous` is the last target (used by
/// `Sticky`).
pub fn assign(
    assignor: Assignor,
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<String, u32>,
    previous: &Target,
) -> Target {
    let mut members: Vec<&MemberSpec<'_>> = members.iter().collect();
    members.sort_by(|a, b| (a.sort_key, a.id).cmp(&(b.sort_key, b.id)));
    match assignor {
        Assignor::Range => range(&members, partitions),
        Assignor::RoundRobin => round_robin(&members, partitions),
        Assignor::Sticky => sticky(&members, partitions, previous),
    }
}

/// Every (topic, partition) some member reads, in order.
fn wanted(members: &[&MemberSpec<'_>], partitions: &BTreeMap<String, u32>) -> Vec<TopicPartition> {
    let topics: BTreeSet<&String> = members.iter().flat_map(|m| m.topics.iter()).collect();
    topics
        .into_iter()
        .flat_map(|t| (0..partitions.get(t).copied().unwrap_or(0)).map(move |p| (t.clone(), p)))
        .collect()
}

fn reads(m: &MemberSpec<'_>, topic: &str) -> bool {
    m.topics.binary_search_by(|t| t.as_str().cmp(topic)).is_ok()
}

fn range(members: &[&MemberSpec<'_>], partitions: &BTreeMap<String, u32>) -> Target {
    let mut out = Target::new();
    let topics: BTreeSet<&String> = members.iter().flat_map(|m| m.topics.iter()).collect();
    for topic in topics {
        let n = partitions.get(topic).copied().unwrap_or(0);
        let readers: Vec<_> = members.iter().filter(|m| reads(m, topic)).collect();
        let m = readers.len() as u32;
        let (each, extra) = (n / m, n % m);
        let mut next = 0;
        for (i, member) in readers.iter().enumerate() {
            let count = each + u32::from((i as u32) < extra);
            for p in next..next + count {
                out.insert((topic.clone(), p), member.id.to_owned());
            }
            next += count;
        }
    }
    out
}

fn round_robin(members: &[&MemberSpec<'_>], partitions: &BTreeMap<String, u32>) -> Target {
    let mut out = Target::new();
    let mut turn = 0usize;
    for tp in wanted(members, partitions) {
        // The next member in turn that reads the topic (one does: the topic is wanted).
        for step in 0..members.len() {
            let m = members[(turn + step) % members.len()];
            if reads(m, &tp.0) {
                out.insert(tp, m.id.to_owned());
                turn = (turn + step + 1) % members.len();
                break;
            }
        }
    }
    out
}

fn sticky(
    members: &[&MemberSpec<'_>],
    partitions: &BTreeMap<String, u32>,
    previous: &Target,
) -> Target {
    let wanted = wanted(members, partitions);
    if members.is_empty() {
        return Target::new();
    }
    let quota = wanted.len().div_ceil(members.len());
    let index: BTreeMap<&str, usize> = members.iter().enumerate().map(|(i, m)| (m.id, i)).collect();
    let mut owned: Vec<BTreeSet<TopicPartition>> = vec![BTreeSet::new(); members.len()];
    let mut free = Vec::new();
    // Keep what each member had, up to the quota.
    for tp in wanted {
        match previous.get(&tp).and_then(|id| index.get(id.as_str()).copied()) {
            Some(i) if reads(members[i], &tp.0) && owned[i].len() < quota => {
                owned[i].insert(tp);
            }
            _ => free.push(tp),
        }
    }
    // Hand out the rest, each to the eligible member with the fewest.
    for tp in free {
        let best = (0..members.len())
            .filter(|&i| reads(members[i], &tp.0))
            .min_by_key(|&i| (owned[i].len(), i))
            .expect("a wanted topic has a reader");
        owned[best].insert(tp);
    }
    // Even out (different subscriptions can leave one member heavy): move one partition at
    // a time from the fullest to an emptier member that reads it, while counts differ by
    // more than one.
    for _ in 0..partitions.values().map(|&n| n as usize).sum::<usize>() + 1 {
        let mut moved = false;
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(owned[i].len()));
        let emptiest = order.last().map_or(0, |&i| owned[i].len());
        'outer: for &from in &order {
            if owned[from].len() <= emptiest + 1 {
                break; // no member from here on is heavy enough to give
            }
            for &to in order.iter().rev() {
                if owned[from].len() <= owned[to].len() + 1 {
                    break; // the members after this one are fuller still
                }
                let candidate = owned[from].iter().rev().find(|tp| reads(members[to], &tp.0));
                if let Some(tp) = candidate.cloned() {
                    owned[from].remove(&tp);
                    owned[to].insert(tp);
                    moved = true;
                    break 'outer;
                }
            }
        }
        if !moved {
            break;
        }
    }
    let mut out = Target::new();
    for (i, set) in owned.into_iter().enumerate() {
        for tp in set {
            out.insert(tp, members[i].id.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(id: &'a str, topics: &'a [String]) -> MemberSpec<'a> {
        MemberSpec { id, sort_key: id, topics }
    }

    fn counts(t: &Target) -> BTreeMap<String, usize> {
        let mut c = BTreeMap::new();
        for m in t.values() {
            *c.entry(m.clone()).or_default() += 1;
        }
        c
    }

    #[test]
    fn every_assignor_covers_every_partition_once_and_balances() {
        let topics = vec!["t".to_string()];
        let parts = BTreeMap::from([("t".to_string(), 12)]);
        for assignor in [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky] {
            let ms = [spec("a", &topics), spec("b", &topics), spec("c", &topics)];
            let t = assign(assignor, &ms, &parts, &Target::new());
            assert_eq!(t.len(), 12, "{assignor:?}");
            assert!(counts(&t).values().all(|&n| n == 4), "{assignor:?}: {:?}", counts(&t));
        }
    }

    #[test]
    fn range_gives_contiguous_ranges_and_round_robin_deals() {
        let topics = vec!["t".to_string()];
        let parts = BTreeMap::from([("t".to_string(), 5)]);
        let ms = [spec("a", &topics), spec("b", &topics)];
        let r = assign(Assignor::Range, &ms, &parts, &Target::new());
        let owners: Vec<&str> = r.values().map(String::as_str).collect();
        assert_eq!(owners, ["a", "a", "a", "b", "b"]);
        let rr = assign(Assignor::RoundRobin, &ms, &parts, &Target::new());
        let owners: Vec<&str> = rr.values().map(String::as_str).collect();
        assert_eq!(owners, ["a", "b", "a", "b", "a"]);
    }

    #[test]
    fn sticky_moves_only_what_a_new_member_needs() {
        let topics = vec!["t".to_string()];
        let parts = BTreeMap::from([("t".to_string(), 12)]);
        let three = [spec("a", &topics), spec("b", &topics), spec("c", &topics)];
        let before = assign(Assignor::Sticky, &three, &parts, &Target::new());
        let four = [spec("a", &topics), spec("b", &topics), spec("c", &topics), spec("d", &topics)];
        let after = assign(Assignor::Sticky, &four, &parts, &before);
        assert!(counts(&after).values().all(|&n| n == 3), "{:?}", counts(&after));
        let moved = before.iter().filter(|(tp, m)| after[*tp] != **m).count();
        assert_eq!(moved, 3, "only the new member's share moves");
    }

    #[test]
    fn members_only_get_topics_they_read() {
        let ab = vec!["a".to_string(), "b".to_string()];
        let b = vec!["b".to_string()];
        let parts = BTreeMap::from([("a".to_string(), 4), ("b".to_string(), 4)]);
        for assignor in [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky] {
            let ms = [spec("x", &ab), spec("y", &b)];
            let t = assign(assignor, &ms, &parts, &Target::new());
            assert_eq!(t.len(), 8, "{assignor:?}");
            assert!(t.iter().all(|((topic, _), m)| m == "x" || topic == "b"), "{assignor:?}");
        }
        // Sticky evens out: y takes all of b, x all of a.
        let ms = [spec("x", &ab), spec("y", &b)];
        let t = assign(Assignor::Sticky, &ms, &parts, &Target::new());
        assert_eq!(counts(&t).values().copied().collect::<Vec<_>>(), [4, 4]);
    }

    #[test]
    fn no_members_no_target() {
        let parts = BTreeMap::from([("t".to_string(), 3)]);
        for assignor in [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky] {
            assert!(assign(assignor, &[], &parts, &Target::new()).is_empty());
        }
    }
}
