//! One consumer group's members and how the partitions reach them.
//!
//! Contract (pure state, no I/O; the coordinator calls it on the owning shard with the time):
//! - The group has a *target* (partition → member, from its assignor) and a generation that
//!   grows each time the target changes (a member joins, leaves or times out, or a topic's
//!   partition count changes).
//! - A member may own a partition only when the coordinator *granted* it. A partition the
//!   target gives to member B is granted to B only when no other member holds it (holds =
//!   was granted it and has not yet reported giving it up). So no two live members ever own
//!   one partition, and a member keeps every partition the new target leaves it: the
//!   rebalance is incremental.
//! - A member that sends nothing for its session timeout is removed; what it held is free
//!   at once. A static member (instance id) that joins again takes over its predecessor's
//!   place and partitions without a new generation; the predecessor is fenced.
//! - A member may commit offsets of partitions it is granted or is giving up (granted
//!   before, still reported owned), with a generation no older than its last change.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use wire::{Assignor, ErrorCode, GroupMemberState, TopicPartitions};

use super::assignor::{assign, MemberSpec, Target, TopicPartition};

/// Shortest session timeout a member may ask for.
pub const SESSION_TIMEOUT_MS_MIN: u32 = 100;
/// Longest session timeout a member may ask for.
pub const SESSION_TIMEOUT_MS_MAX: u32 = 30 * 60 * 1000;
/// Heartbeat interval while partitions are moving to or from a member.
pub const RECONCILE_HEARTBEAT_MS: u32 = 50;
/// Longest heartbeat interval handed out.
pub const HEARTBEAT_MS_MAX: u32 = 3_000;

/// A refusal: the wire code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    /// Wire error code.
    pub code: ErrorCode,
    /// Detail.
    pub message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into() }
}

/// One member.
#[derive(Debug, Clone)]
pub struct Member {
    /// Member id.
    pub id: String,
    /// Static instance id (empty = dynamic).
    pub instance_id: String,
    /// Topics it reads.
    pub topics: Vec<String>,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Last join or heartbeat.
    pub last_seen: Instant,
    /// Partitions it may own now.
    pub granted: BTreeSet<TopicPartition>,
    /// Partitions it was granted, lost from the target, and still reports owning.
    pub revoking: BTreeSet<TopicPartition>,
    /// Since when `revoking` is not empty: a member that holds on to a partition past
    /// [`revoke_timeout`] is removed (its heartbeats alone do not keep it; Kafka's
    /// `max.poll.interval.ms` / rebalance timeout).
    pub revoking_since: Option<Instant>,
    /// Generation of its last change of `granted`.
    pub changed_generation: u32,
    /// The client's name for itself, as of its last join (shown by DescribeGroup).
    pub client_id: String,
    /// The address it joined from last (IP, no port; shown by DescribeGroup).
    pub client_host: String,
}

/// What a member takes beside its strings and sets' contents (its entry, struct, ids).
const MEMBER_OVERHEAD_BYTES: usize = 256;
/// What one entry of a member's topic list or partition set takes beside its name.
const ENTRY_OVERHEAD_BYTES: usize = 48;

/// What one partition of a group's target takes, with its grant: the topic name twice (in
/// the target and in a member's grants) and the member id it goes to.
fn partition_bytes(topic: &str, member_id_bytes: usize) -> usize {
    2 * (topic.len() + ENTRY_OVERHEAD_BYTES) + member_id_bytes
}

impl Member {
    /// About what it holds beside its partitions: its topics and strings (its grants count in
    /// its group's [`Membership::bytes`], at the target's size).
    pub fn bytes(&self) -> usize {
        MEMBER_OVERHEAD_BYTES
            + self.topics.iter().map(|t| t.len() + ENTRY_OVERHEAD_BYTES).sum::<usize>()
            + self.id.len()
            + self.instance_id.len()
            + self.client_id.len()
            + self.client_host.len()
    }

    /// What a member joining with `topics`, `owned` partitions and `strings` will take at
    /// first ([`Member::bytes`], and the partitions it says it owns).
    pub fn joining_bytes<'a>(
        topics: impl Iterator<Item = &'a str>,
        owned: impl Iterator<Item = &'a str>,
        strings: usize,
    ) -> usize {
        MEMBER_OVERHEAD_BYTES
            + topics.chain(owned).map(|t| t.len() + ENTRY_OVERHEAD_BYTES).sum::<usize>()
            + strings
    }
}

/// One group's membership state.
#[derive(Debug, Clone)]
pub struct Membership {
    /// Group id.
    pub group: String,
    /// Generation: grows each time the target changes.
    pub generation: u32,
    /// The assignor all members use.
    pub assignor: Assignor,
    /// Members by id.
    pub members: BTreeMap<String, Member>,
    /// The target assignment.
    pub target: Target,
    /// Grows with every change another member may be waiting for (target, grants,
    /// releases, members leaving): held heartbeats wake on it.
    pub version: u64,
    /// Partition counts the target was computed with.
    partitions: BTreeMap<String, u32>,
    next_member: u64,
}

/// What a join asks for.
#[derive(Debug, Clone)]
pub struct Join {
    /// Member id (empty on a first join).
    pub member_id: String,
    /// Static instance id (empty = dynamic).
    pub instance_id: String,
    /// Session timeout asked for.
    pub session_timeout_ms: u32,
    /// Topics to read.
    pub topics: Vec<String>,
    /// Assignor asked for.
    pub assignor: Assignor,
    /// Partitions owned now.
    pub owned: BTreeSet<TopicPartition>,
}

impl Membership {
    /// An empty group.
    pub fn new(group: &str) -> Self {
        Membership {
            group: group.to_owned(),
            generation: 0,
            assignor: Assignor::default(),
            members: BTreeMap::new(),
            target: Target::new(),
            version: 0,
            partitions: BTreeMap::new(),
            next_member: 0,
        }
    }

    /// Whether the group has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// About what the group holds: its members' topics and strings, its target (a topic
    /// name and a member id per partition) and the grants, counted at the target's size (a
    /// partition is granted to one member at a time, and so heartbeats, which move grants
    /// toward the target, do not change it).
    pub fn bytes(&self) -> usize {
        let members: usize = self.members.values().map(Member::bytes).sum();
        let target = self.target.iter().map(|(tp, id)| partition_bytes(&tp.0, id.len()));
        members + target.sum::<usize>()
    }

    /// About what the group will hold more once a member with `instance_id` reading `topics`
    /// joined, beside the member itself ([`Member::joining_bytes`]): for each topic no member
    /// reads yet, its partitions in the target and in grants ([`Membership::bytes`];
    /// `partition_count` gives them now; the member id at the length it will have).
    pub fn joining_growth<'a>(
        &self,
        topics: impl Iterator<Item = &'a str>,
        instance_id: &str,
        partition_count: &dyn Fn(&str) -> u32,
    ) -> usize {
        // `new_member_id`: the instance id (or "member"), a dash and up to 20 hex digits.
        let id_bytes = instance_id.len().max("member".len()) + 21;
        let topics: BTreeSet<&str> = topics.filter(|t| !self.partitions.contains_key(*t)).collect();
        let bytes = |t: &str| partition_count(t) as usize * partition_bytes(t, id_bytes);
        topics.into_iter().map(bytes).sum()
    }

    /// Removes every member (the group's holdings passed the shard's budget); returns their
    /// ids.
    pub fn remove_all(&mut self) -> Vec<String> {
        let gone: Vec<String> = self.members.keys().cloned().collect();
        if !gone.is_empty() {
            self.members.clear();
            self.target.clear();
            self.partitions.clear();
            self.generation += 1;
            self.version += 1;
        }
        gone
    }

    /// A member joins (or rejoins). `partitions` gives the partition counts of every topic
    /// a member reads (`partition_count`). Returns the member's state.
    pub fn join(
        &mut self,
        req: Join,
        now: Instant,
        partition_count: &dyn Fn(&str) -> u32,
    ) -> Result<GroupMemberState, Refusal> {
        if !(SESSION_TIMEOUT_MS_MIN..=SESSION_TIMEOUT_MS_MAX).contains(&req.session_timeout_ms) {
            return Err(refuse(
                ErrorCode::InvalidRequest,
                format!(
                    "session_timeout_ms {} outside {SESSION_TIMEOUT_MS_MIN}..={SESSION_TIMEOUT_MS_MAX}",
                    req.session_timeout_ms
                ),
            ));
        }
        if req.topics.is_empty() {
            return Err(refuse(ErrorCode::InvalidRequest, "a member must read at least one topic"));
        }
        if !self.members.is_empty() && req.assignor != self.assignor {
            return Err(refuse(
                ErrorCode::InconsistentAssignor,
                format!(
                    "the group uses {:?}, the member asked for {:?}",
                    self.assignor, req.assignor
                ),
            ));
        }
        let mut topics = req.topics.clone();
        topics.sort();
        topics.dedup();
        let session_timeout = Duration::from_millis(u64::from(req.session_timeout_ms));
        let id = if !req.member_id.is_empty() {
            // A rejoin: the member must exist.
            let Some(m) = self.members.get_mut(&req.member_id) else {
                return Err(refuse(
                    ErrorCode::UnknownMember,
                    format!("member {} is not in group {}", req.member_id, self.group),
                ));
            };
            if m.instance_id != req.instance_id {
                return Err(refuse(ErrorCode::FencedInstance, "instance id differs from the join"));
            }
            m.last_seen = now;
            m.session_timeout = session_timeout;
            let changed = m.topics != topics;
            m.topics = topics;
            let id = m.id.clone();
            if changed {
                self.retarget(partition_count);
            }
            id
        } else if let Some(old) = (!req.instance_id.is_empty())
            .then(|| self.members.values().find(|m| m.instance_id == req.instance_id))
            .flatten()
            .cloned()
        {
            // A static member's new incarnation: it takes its predecessor's place (and
            // partitions), the predecessor is fenced, and the generation stays.
            self.members.remove(&old.id);
            let id = self.new_member_id(&req.instance_id);
            let same_topics = old.topics == topics;
            for tp in self.target.values_mut() {
                if *tp == old.id {
                    tp.clone_from(&id);
                }
            }
            self.add_member(&id, &req.instance_id, topics, session_timeout, now);
            if !same_topics {
                self.retarget(partition_count);
            }
            id
        } else {
            if self.members.is_empty() {
                self.assignor = req.assignor;
            }
            let id = self.new_member_id(&req.instance_id);
            self.add_member(&id, &req.instance_id, topics, session_timeout, now);
            self.retarget(partition_count);
            id
        };
        Ok(self.reconcile(&id, &req.owned, now))
    }

    /// A heartbeat: the member reports what it owns and learns what it may own.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: &str,
        generation: u32,
        owned: &BTreeSet<TopicPartition>,
        now: Instant,
    ) -> Result<GroupMemberState, Refusal> {
        let current = self.generation;
        let m = self.member(member_id, instance_id)?;
        if generation > current {
            return Err(refuse(
                ErrorCode::InvalidRequest,
                format!("generation {generation} is newer than the group's {current}"),
            ));
        }
        m.last_seen = m.last_seen.max(now);
        Ok(self.reconcile(member_id, owned, now))
    }

    /// A member leaves: what it held is free at once.
    pub fn leave(
        &mut self,
        member_id: &str,
        partition_count: &dyn Fn(&str) -> u32,
    ) -> Result<(), Refusal> {
        self.member(member_id, "")?;
        self.members.remove(member_id);
        self.version += 1;
        self.retarget(partition_count);
        Ok(())
    }

    /// Removes members whose session timed out, and members that kept a partition the
    /// group took from them past [`revoke_timeout`] (a consumer that heartbeats but does not
    /// poll held the next owner off for ever); returns their ids.
    pub fn expire(&mut self, now: Instant, partition_count: &dyn Fn(&str) -> u32) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                now.saturating_duration_since(m.last_seen) > m.session_timeout
                    || m.revoking_since.is_some_and(|since| {
                        now.saturating_duration_since(since) > revoke_timeout(m.session_timeout)
                    })
            })
            .map(|m| m.id.clone())
            .collect();
        if !gone.is_empty() {
            for id in &gone {
                self.members.remove(id);
            }
            self.version += 1;
            self.retarget(partition_count);
        }
        gone
    }

    /// Recomputes the target if a topic's partition count changed.
    pub fn refresh_partitions(&mut self, partition_count: &dyn Fn(&str) -> u32) {
        let changed = self.partitions.iter().any(|(t, &n)| partition_count(t) != n);
        if changed {
            self.retarget(partition_count);
        }
    }

    /// Checks a commit of `tps` by `member_id` at `generation`: `Ok` with a per-partition
    /// verdict, or a refusal of the whole request. An administrative commit (empty member
    /// id, generation 0) is allowed only while the group has no members.
    pub fn check_commit(
        &self,
        member_id: &str,
        generation: u32,
        tps: &[TopicPartition],
    ) -> Result<Vec<ErrorCode>, Refusal> {
        if member_id.is_empty() {
            if !self.members.is_empty() {
                return Err(refuse(
                    ErrorCode::GroupNotEmpty,
                    format!(
                        "group {} has {} members; only they commit",
                        self.group,
                        self.members.len()
                    ),
                ));
            }
            return Ok(vec![ErrorCode::None; tps.len()]);
        }
        let Some(m) = self.members.get(member_id) else {
            return Err(refuse(
                ErrorCode::UnknownMember,
                format!("member {member_id} is not in group {}", self.group),
            ));
        };
        if generation < m.changed_generation || generation > self.generation {
            return Err(refuse(
                ErrorCode::StaleGeneration,
                format!(
                    "generation {generation}: the member's assignment is of generation {} (group at {})",
                    m.changed_generation, self.generation
                ),
            ));
        }
        Ok(tps
            .iter()
            .map(|tp| {
                if m.granted.contains(tp) || m.revoking.contains(tp) {
                    ErrorCode::None
                } else {
                    ErrorCode::NotAssigned
                }
            })
            .collect())
    }

    /// The session timeout of a member.
    pub fn session_of(&self, member_id: &str) -> Option<Duration> {
        self.members.get(member_id).map(|m| m.session_timeout)
    }

    /// Whether some partition of the target is not yet granted to its member.
    pub fn rebalancing(&self) -> bool {
        self.target
            .iter()
            .any(|(tp, id)| self.members.get(id).is_none_or(|m| !m.granted.contains(tp)))
            || self.members.values().any(|m| !m.revoking.is_empty())
    }

    fn member(&mut self, member_id: &str, instance_id: &str) -> Result<&mut Member, Refusal> {
        let group = self.group.clone();
        let fenced = !instance_id.is_empty()
            && self.members.values().any(|m| m.instance_id == instance_id && m.id != member_id);
        match self.members.get_mut(member_id) {
            Some(m) => Ok(m),
            None if fenced => Err(refuse(
                ErrorCode::FencedInstance,
                format!("instance {instance_id} of group {group} joined again as another member"),
            )),
            None => Err(refuse(
                ErrorCode::UnknownMember,
                format!("member {member_id} is not in group {group}"),
            )),
        }
    }

    /// Records the client id and address `member_id` joined with (no-op for an unknown id).
    pub fn set_client(&mut self, member_id: &str, client_id: &str, client_host: &str) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.client_id = client_id.to_owned();
            m.client_host = client_host.to_owned();
        }
    }

    fn add_member(
        &mut self,
        id: &str,
        instance_id: &str,
        topics: Vec<String>,
        session_timeout: Duration,
        now: Instant,
    ) {
        let member = Member {
            id: id.to_owned(),
            instance_id: instance_id.to_owned(),
            topics,
            session_timeout,
            last_seen: now,
            granted: BTreeSet::new(),
            revoking: BTreeSet::new(),
            revoking_since: None,
            changed_generation: self.generation,
            client_id: String::new(),
            client_host: String::new(),
        };
        self.members.insert(id.to_owned(), member);
    }

    fn new_member_id(&mut self, instance_id: &str) -> String {
        self.next_member += 1;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let prefix = if instance_id.is_empty() { "member" } else { instance_id };
        format!("{prefix}-{:x}{:04x}", nanos, self.next_member & 0xffff)
    }

    /// Recomputes the target; a new generation if it changed.
    fn retarget(&mut self, partition_count: &dyn Fn(&str) -> u32) {
        let topics: BTreeSet<&String> = self.members.values().flat_map(|m| &m.topics).collect();
        let partitions: BTreeMap<String, u32> =
            topics.into_iter().map(|t| (t.clone(), partition_count(t))).collect();
        let specs: Vec<MemberSpec<'_>> = self
            .members
            .values()
            .map(|m| MemberSpec {
                id: &m.id,
                sort_key: if m.instance_id.is_empty() { &m.id } else { &m.instance_id },
                topics: &m.topics,
            })
            .collect();
        let target = assign(self.assignor, &specs, &partitions, &self.target);
        self.partitions = partitions;
        if target != self.target {
            self.target = target;
            self.generation += 1;
            self.version += 1;
        }
    }

    /// Brings `member_id`'s grant toward the target: takes away what the target no longer
    /// gives it, and grants what it gives it that nobody else holds.
    fn reconcile(
        &mut self,
        member_id: &str,
        owned: &BTreeSet<TopicPartition>,
        now: Instant,
    ) -> GroupMemberState {
        let held_by_others: BTreeSet<TopicPartition> = self
            .members
            .values()
            .filter(|m| m.id != member_id)
            .flat_map(|m| m.granted.iter().chain(m.revoking.iter()).cloned())
            .collect();
        let mine: BTreeSet<TopicPartition> = self
            .target
            .iter()
            .filter(|(_, id)| id.as_str() == member_id)
            .map(|(tp, _)| tp.clone())
            .collect();
        let generation = self.generation;
        let m = self.members.get_mut(member_id).expect("reconcile of a member");
        // Given up: what was held and is no longer reported owned or wanted.
        let was: BTreeSet<TopicPartition> = m.granted.union(&m.revoking).cloned().collect();
        let granted: BTreeSet<TopicPartition> =
            mine.iter().filter(|tp| !held_by_others.contains(*tp)).cloned().collect();
        let revoking: BTreeSet<TopicPartition> =
            was.iter().filter(|tp| !mine.contains(*tp) && owned.contains(*tp)).cloned().collect();
        let pending = mine.len() - granted.len();
        let released = revoking != m.revoking;
        m.revoking = revoking;
        m.revoking_since = match m.revoking.is_empty() {
            true => None,
            false => Some(m.revoking_since.unwrap_or(now)),
        };
        let regranted = granted != m.granted;
        if regranted {
            m.granted = granted;
            m.changed_generation = generation;
        }
        let moving = pending > 0 || !m.revoking.is_empty() || *owned != m.granted;
        let interval = heartbeat_interval_ms(m.session_timeout);
        if released || regranted {
            self.version += 1;
        }
        GroupMemberState {
            error: 0,
            message: String::new(),
            member_id: m.id.clone(),
            generation,
            heartbeat_interval_ms: if moving { RECONCILE_HEARTBEAT_MS } else { interval },
            assignment: to_wire(&m.granted),
            pending: pending as u32,
        }
    }
}

/// How long a member may keep reporting a partition the group took from it: six session
/// timeouts, at least 30 s (a minute at the default 10 s session), time for the batch in
/// hand to be processed and committed.
pub fn revoke_timeout(session_timeout: Duration) -> Duration {
    (session_timeout * 6).max(Duration::from_secs(30))
}

/// The regular heartbeat interval for a session timeout: a third of it, within
/// `RECONCILE_HEARTBEAT_MS..=HEARTBEAT_MS_MAX`.
pub fn heartbeat_interval_ms(session_timeout: Duration) -> u32 {
    (session_timeout.as_millis() as u32 / 3).clamp(RECONCILE_HEARTBEAT_MS, HEARTBEAT_MS_MAX)
}

/// Partitions grouped by topic, for the wire.
pub fn to_wire(tps: &BTreeSet<TopicPartition>) -> Vec<TopicPartitions> {
    TopicPartitions::group(tps.iter().map(|(t, p)| (t.as_str(), *p)))
}

/// Partitions from the wire.
pub fn from_wire(tps: &[TopicPartitions]) -> BTreeSet<TopicPartition> {
    TopicPartitions::flatten(tps).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(g: &mut Membership, now: Instant, instance: &str) -> GroupMemberState {
        g.join(
            Join {
                member_id: String::new(),
                instance_id: instance.into(),
                session_timeout_ms: 1_000,
                topics: vec!["t".into()],
                assignor: Assignor::Sticky,
                owned: BTreeSet::new(),
            },
            now,
            &|_| 12,
        )
        .unwrap()
    }

    /// Heartbeats every member (each reporting what it was last told) until nothing moves;
    /// checks after every step that no partition is granted to two members.
    fn settle(
        g: &mut Membership,
        now: Instant,
        owned: &mut BTreeMap<String, BTreeSet<TopicPartition>>,
    ) {
        for _ in 0..10 {
            let ids: Vec<String> = g.members.keys().cloned().collect();
            for id in ids {
                let mine = owned.entry(id.clone()).or_default().clone();
                let s = g.heartbeat(&id, "", g.generation, &mine, now).unwrap();
                owned.insert(id, from_wire(&s.assignment));
                let mut seen = BTreeSet::new();
                for m in g.members.values() {
                    for tp in m.granted.iter().chain(&m.revoking) {
                        assert!(seen.insert(tp.clone()), "{tp:?} held by two members");
                    }
                }
            }
        }
    }

    #[test]
    fn members_share_partitions_disjointly_and_a_newcomer_gets_its_share_incrementally() {
        let now = Instant::now();
        let mut g = Membership::new("g");
        let mut owned = BTreeMap::new();
        for _ in 0..3 {
            join(&mut g, now, "");
        }
        settle(&mut g, now, &mut owned);
        assert!(owned.values().all(|s| s.len() == 4), "{owned:?}");
        let before = owned.clone();
        let d = join(&mut g, now, "");
        assert!(d.assignment.is_empty() && d.pending == 3, "the newcomer waits for releases");
        settle(&mut g, now, &mut owned);
        assert!(owned.values().all(|s| s.len() == 3), "{owned:?}");
        for (id, had) in &before {
            assert!(owned[id].is_subset(had), "old members only gave partitions up");
        }
        assert!(!g.rebalancing());
    }

    #[test]
    fn a_silent_member_is_removed_after_its_session_and_its_partitions_move() {
        let now = Instant::now();
        let mut g = Membership::new("g");
        let mut owned = BTreeMap::new();
        let a = join(&mut g, now, "").member_id;
        let b = join(&mut g, now, "").member_id;
        settle(&mut g, now, &mut owned);
        let later = now + Duration::from_millis(900);
        g.heartbeat(&a, "", g.generation, &owned[&a], later).unwrap();
        let gone = g.expire(now + Duration::from_millis(1_500), &|_| 12);
        assert_eq!(gone, vec![b.clone()]);
        owned.remove(&b);
        settle(&mut g, later, &mut owned);
        assert_eq!(owned[&a].len(), 12);
    }

    /// A member that heartbeats but never gives up a partition the group took from it (a
    /// consumer that stopped polling) is removed after the revocation timeout, and the
    /// newcomer gets its share: before, the rebalance never completed.
    #[test]
    fn a_member_that_never_releases_a_partition_is_removed_after_the_revoke_timeout() {
        let now = Instant::now();
        let mut g = Membership::new("g");
        let mut owned = BTreeMap::new();
        let a = join(&mut g, now, "").member_id;
        settle(&mut g, now, &mut owned);
        let held = owned[&a].clone();
        assert_eq!(held.len(), 12);
        let b = join(&mut g, now, "").member_id;
        // a keeps heartbeating with everything it had; b waits.
        let timeout = revoke_timeout(Duration::from_millis(1_000));
        let mut t = now;
        while t < now + timeout {
            t += Duration::from_millis(500);
            g.heartbeat(&a, "", g.generation, &held, t).unwrap();
            let s = g.heartbeat(&b, "", g.generation, &BTreeSet::new(), t).unwrap();
            assert!(s.assignment.is_empty(), "b gets nothing while a holds on");
            assert!(g.expire(t, &|_| 12).is_empty() || t > now + timeout);
        }
        let gone = g.expire(t + Duration::from_secs(1), &|_| 12);
        assert_eq!(gone, vec![a.clone()], "a held on past the revocation timeout");
        let s = g.heartbeat(&b, "", g.generation, &BTreeSet::new(), t).unwrap();
        assert_eq!(from_wire(&s.assignment).len(), 12, "b gets the partitions");
        assert!(g.heartbeat(&a, "", g.generation, &held, t).is_err(), "a must rejoin");
    }

    #[test]
    fn commits_need_the_partition_and_a_current_generation() {
        let now = Instant::now();
        let mut g = Membership::new("g");
        let mut owned = BTreeMap::new();
        let a = join(&mut g, now, "").member_id;
        settle(&mut g, now, &mut owned);
        let gen_a = g.generation;
        let tp = ("t".to_string(), 0);
        assert_eq!(
            g.check_commit(&a, gen_a, std::slice::from_ref(&tp)).unwrap(),
            vec![ErrorCode::None]
        );
        join(&mut g, now, "");
        settle(&mut g, now, &mut owned);
        // a's assignment changed in the new generation: the old generation is stale.
        let e = g.check_commit(&a, gen_a, std::slice::from_ref(&tp)).unwrap_err();
        assert_eq!(e.code, ErrorCode::StaleGeneration);
        let lost = ("t".to_string(), 11);
        let v = g.check_commit(&a, g.generation, &[tp, lost]).unwrap();
        assert_eq!(v[1], ErrorCode::NotAssigned);
        assert_eq!(
            g.check_commit("nobody", g.generation, &[]).unwrap_err().code,
            ErrorCode::UnknownMember
        );
        assert_eq!(g.check_commit("", 0, &[]).unwrap_err().code, ErrorCode::GroupNotEmpty);
    }

    #[test]
    fn a_static_member_comes_back_to_its_partitions_without_a_new_generation() {
        let now = Instant::now();
        let mut g = Membership::new("g");
        let mut owned = BTreeMap::new();
        let a = join(&mut g, now, "svc-a").member_id;
        join(&mut g, now, "svc-b");
        settle(&mut g, now, &mut owned);
        let generation = g.generation;
        let had = owned.remove(&a).unwrap();
        let again = join(&mut g, now, "svc-a");
        assert_eq!(g.generation, generation, "no rebalance");
        assert_eq!(from_wire(&again.assignment), had, "the same partitions, at once");
        let e = g.heartbeat(&a, "svc-a", generation, &had, now).unwrap_err();
        assert_eq!(e.code, ErrorCode::FencedInstance);
    }
}
