//! Which protocol (assignor) a Kafka group's rebalance chooses, and who may join: a member
//! must share a protocol with every other member, as Kafka checks (a rebalance let in one
//! that shared none went on with no protocol, and every Java member failed on the empty
//! name chosen); of the protocols every member speaks, each member votes for the first in
//! its own order and the most votes win.

use std::collections::HashMap;

use super::Group;

/// How many of `g`'s members (but `except`) speak each protocol: O(members × protocols),
/// counted once (comparing every member with every other was O(members²), under the lock
/// every shard's Kafka group calls take).
fn speakers<'a>(g: &'a Group, except: &str) -> (HashMap<&'a str, usize>, usize) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut members = 0;
    for (id, m) in &g.members {
        if id.as_str() == except {
            continue;
        }
        members += 1;
        for (i, (name, _)) in m.protocols.iter().enumerate() {
            // A name a member lists twice counts once.
            if !m.protocols[..i].iter().any(|(n, _)| n == name) {
                *counts.entry(name.as_str()).or_default() += 1;
            }
        }
    }
    (counts, members)
}

/// Whether a member (`member_id`, empty for a new one) offering `protocols` may join `g`:
/// one of them is spoken by every other member.
pub(super) fn joinable<'a>(
    g: &Group,
    member_id: &str,
    mut protocols: impl Iterator<Item = &'a str>,
) -> bool {
    let (counts, others) = speakers(g, member_id);
    protocols.any(|name| others == 0 || counts.get(name) == Some(&others))
}

/// The protocol a rebalance of `g` chooses (a tie: the one the leader prefers). Joins refuse
/// a member that shares none, so there is one.
pub(super) fn vote(g: &Group) -> String {
    let (counts, members) = speakers(g, "");
    let speaks = |name: &str| counts.get(name) == Some(&members);
    let mut votes: HashMap<&str, usize> = HashMap::new();
    for m in g.members.values() {
        if let Some((name, _)) = m.protocols.iter().find(|(n, _)| speaks(n)) {
            *votes.entry(name.as_str()).or_default() += 1;
        }
    }
    let most = votes.values().copied().max().unwrap_or(0);
    let leader = g.members.get(&g.leader);
    let preferred = |name: &str| {
        leader.and_then(|l| l.protocols.iter().position(|(n, _)| n == name)).unwrap_or(usize::MAX)
    };
    votes
        .iter()
        .filter(|&(_, &c)| c == most)
        .min_by_key(|&(&name, _)| (preferred(name), name))
        .map(|(&name, _)| name.to_owned())
        .unwrap_or_default()
}
