//! Static members of a Kafka group (KIP-345, `group.instance.id`): a member that names its
//! instance keeps its place across restarts. As Kafka's classic coordinator does:
//! - A join with no member id and a known instance id takes the old member's place under a
//!   new member id (its assignment, generation and leadership move with it). In a Stable
//!   group whose protocol the join does not change, the group does not rebalance: the join
//!   is answered at once with the current generation and the leader as it was, so the client
//!   syncs as a follower and gets its old assignment back. Otherwise the group rebalances
//!   (while the leader assigns, it may be assigning to the old id).
//! - A request naming an instance id whose member is another (the instance restarted, or
//!   two processes share one id) is refused `FENCED_INSTANCE_ID` (fatal to the client); one
//!   naming an instance id the group does not know, `UNKNOWN_MEMBER_ID`.
//! - A rebalance keeps static members that did not rejoin (the leader assigns to them):
//!   only their session timeout or a LeaveGroup naming them removes them. Clients do not
//!   leave on close when static.
//! - LeaveGroup (v3+) may name members by instance id alone.

use super::{Group, Member};
use kafka_protocol::ResponseError as K;

/// Longest instance id kept (a Kafka client's own limit for ids, as for group ids): each
/// is held twice while its member lives (the member and the group's map).
pub const INSTANCE_ID_BYTES_MAX: usize = 249;

impl Group {
    /// Whether a request naming `instance` may act as `member`: `UNKNOWN_MEMBER_ID` if the
    /// group has no such instance, `FENCED_INSTANCE_ID` if the instance is another member.
    /// A request that names no instance passes.
    pub(super) fn fenced(&self, instance: Option<&str>, member: &str) -> Result<(), i16> {
        let Some(instance) = instance else { return Ok(()) };
        match self.statics.get(instance) {
            None => Err(K::UnknownMemberId.code()),
            Some(m) if m != member => Err(K::FencedInstanceId.code()),
            Some(_) => Ok(()),
        }
    }

    /// Removes a member (and its instance id); whether it was there.
    pub(super) fn remove_member(&mut self, member: &str) -> bool {
        let Some(m) = self.members.remove(member) else { return false };
        if let Some(instance) = m.instance_id {
            self.statics.remove(&instance);
        }
        true
    }

    /// Keeps the members `keep` says (and the instance ids of those kept); whether any went.
    pub(super) fn retain_members(&mut self, mut keep: impl FnMut(&Member) -> bool) -> bool {
        let before = self.members.len();
        self.members.retain(|_, m| keep(m));
        if self.members.len() == before {
            return false;
        }
        let members = &self.members;
        self.statics.retain(|_, m| members.contains_key(m));
        true
    }

    /// The member of `instance` (`old`) takes the id `new`: its data, assignment and
    /// generation move, and the leadership if it led. Returns the leader before.
    pub(super) fn replace_static(&mut self, instance: &str, old: &str, new: &str) -> String {
        let leader = self.leader.clone();
        if let Some(m) = self.members.remove(old) {
            self.members.insert(new.to_owned(), m);
        }
        if self.leader == old {
            self.leader = new.to_owned();
        }
        self.statics.insert(instance.to_owned(), new.to_owned());
        leader
    }
}
