//! Which protocol (assignor) a Kafka group's rebalance chooses, and who may join: a member
//! must share a protocol with every other member, as Kafka checks (a rebalance let in one
//! that shared none went on with no protocol, and every Java member failed on the empty
//! name chosen); of the protocols every member speaks, each member votes for the first in
//! its own order and the most votes win.

use super::Group;

/// Whether a member (`member_id`, empty for a new one) offering `protocols` may join `g`:
/// one of them is spoken by every other member.
pub(super) fn joinable<'a>(
    g: &Group,
    member_id: &str,
    mut protocols: impl Iterator<Item = &'a str>,
) -> bool {
    protocols.any(|name| {
        g.members
            .iter()
            .filter(|(id, _)| id.as_str() != member_id)
            .all(|(_, m)| m.protocols.iter().any(|(n, _)| n == name))
    })
}

/// The protocol a rebalance of `g` chooses (a tie: the one the leader prefers). Joins refuse
/// a member that shares none, so there is one.
pub(super) fn vote(g: &Group) -> String {
    let speaks =
        |name: &str| g.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name));
    let mut votes: Vec<(&str, usize)> = Vec::new();
    for m in g.members.values() {
        let Some((name, _)) = m.protocols.iter().find(|(n, _)| speaks(n)) else { continue };
        match votes.iter_mut().find(|(n, _)| n == name) {
            Some((_, count)) => *count += 1,
            None => votes.push((name, 1)),
        }
    }
    let most = votes.iter().map(|&(_, c)| c).max().unwrap_or(0);
    let leader = g.members.get(&g.leader);
    let preferred = |name: &str| {
        leader.and_then(|l| l.protocols.iter().position(|(n, _)| n == name)).unwrap_or(usize::MAX)
    };
    votes
        .iter()
        .filter(|&&(_, c)| c == most)
        .min_by_key(|&&(name, _)| preferred(name))
        .map(|&(name, _)| name.to_owned())
        .unwrap_or_default()
}
