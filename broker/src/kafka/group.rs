//! Kafka consumer groups (the classic protocol: JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup); their committed offsets (OffsetCommit, OffsetFetch) are `group_offsets.rs`.
//!
//! Kafka's groups assign on the client: the coordinator gathers the members (JoinGroup),
//! hands the leader every member's subscription, and passes the leader's assignment to each
//! member (SyncGroup). The native coordinator assigns on the broker, so Kafka groups keep
//! their own membership here, in one table for the whole process ([`Groups`], behind a
//! mutex: membership is the control path, a few requests per member per heartbeat interval,
//! and a Kafka connection to any shard must see the same group). The mutex is never held
//! across an await; a request that waits for the group (a join waiting for the others, a
//! sync waiting for the leader's assignment) re-checks it every [`POLL`], and the group's
//! upkeep (silent members, completing a rebalance) runs on at most one such look per
//! [`POLL`] (`Group::upkeep_due`).
//!
//! Committed offsets are the native ones: once the member and generation are checked here,
//! a commit goes to the native CommitOffsets handler as an administrative commit (empty
//! member, generation 0), on the group's native coordinator, into the offsets log. So a
//! native consumer and a Kafka consumer of the same group name read the same offsets (the
//! native handler refuses the commit while native members are in the group).
//!
//! States: Empty → Joining (a member joined or left; wait until every member rejoined, or the
//! rebalance timeout dropped those that did not) → Syncing (new generation; waiting for the
//! leader's assignment) → Stable. A member silent for its session timeout is dropped and the
//! group rebalances.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as K;

use super::connection::{ready, respond, Answer, Ctx, Session};

/// How often a waiting join or sync looks at its group again.
pub const POLL: Duration = Duration::from_millis(10);
/// A group that was empty waits this long for more members before its first generation
/// (Kafka's `group.initial.rebalance.delay.ms`, shorter), so members starting together get
/// one rebalance, not one each.
pub const INITIAL_REBALANCE_DELAY: Duration = Duration::from_millis(300);
/// Session timeouts accepted (Kafka's `group.min/max.session.timeout.ms`).
pub const SESSION_TIMEOUT_MS_MIN: i32 = 1_000;
/// See [`SESSION_TIMEOUT_MS_MIN`].
pub const SESSION_TIMEOUT_MS_MAX: i32 = 1_800_000;

/// Largest protocol metadata (names and bytes, summed) a member may join with, and largest
/// assignment a leader may hand one member: both are kept while the member lives, copied
/// out of the request (a slice would keep the whole request frame, up to
/// `frame_body_bytes_max`, alive). A consumer's subscription or assignment over thousands
/// of topics stays far below it.
pub const MEMBER_METADATA_BYTES_MAX: usize = 1 << 20;
/// Most protocols a member may join with (Kafka clients send a handful): an empty name and
/// metadata count nothing against [`MEMBER_METADATA_BYTES_MAX`], and choosing a group's
/// protocol compares every member's list with the leader's.
pub const MEMBER_PROTOCOLS_MAX: usize = 64;

#[derive(Debug)]
struct Member {
    protocols: Vec<(String, Bytes)>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    last_seen: Instant,
    /// Rejoined in the current rebalance.
    joined: bool,
    /// The generation this member last joined.
    generation: i32,
    assignment: Bytes,
    /// The client id of its last JoinGroup's header, and where it came from (Kafka's
    /// `/ip` form), for DescribeGroups.
    client_id: String,
    client_host: String,
    /// Its `group.instance.id` if static (`group_static.rs`).
    instance_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Empty,
    Joining {
        not_before: Instant,
        deadline: Instant,
    },
    /// Waiting for the leader's assignment, at most the members' longest rebalance timeout
    /// (Kafka's pending sync): a leader that heartbeats and never syncs held its followers'
    /// SyncGroup for ever.
    Syncing {
        deadline: Instant,
    },
    Stable,
}

#[derive(Debug)]
struct Group {
    generation: i32,
    phase: Phase,
    protocol_type: String,
    protocol: String,
    leader: String,
    members: BTreeMap<String, Member>,
    /// Static members' instance ids → their member ids (`group_static.rs`).
    statics: HashMap<String, String>,
    /// When a waiting request last did the group's upkeep ([`Group::upkeep_due`]).
    upkept_at: Option<Instant>,
    /// Its members' data ([`Member::bytes`] summed) as of its last change.
    bytes: usize,
}

/// What a member takes beside its data (its map entry, struct and id), counted with it.
const MEMBER_OVERHEAD_BYTES: usize = 256;
/// What each of a member's protocols takes beside its name and metadata.
const PROTOCOL_OVERHEAD_BYTES: usize = 64;

/// Bytes of member data `all` holds: each group's count as of its last change
/// ([`Group::recount`]), O(groups).
fn held_bytes(all: &HashMap<String, Group>) -> usize {
    all.values().map(|g| g.bytes).sum()
}

impl Member {
    /// What it holds: its protocols, assignment and ids.
    fn bytes(&self) -> usize {
        let protocols: usize =
            self.protocols.iter().map(|(n, m)| PROTOCOL_OVERHEAD_BYTES + n.len() + m.len()).sum();
        MEMBER_OVERHEAD_BYTES
            + protocols
            + self.assignment.len()
            + self.client_id.len()
            + self.client_host.len()
            + 2 * self.instance_id.as_ref().map_or(0, String::len)
    }

    /// Heard from within its session timeout.
    fn alive(&self, now: Instant) -> bool {
        now.duration_since(self.last_seen) <= self.session_timeout
    }
}

impl Group {
    fn new() -> Self {
        Group {
            generation: 0,
            phase: Phase::Empty,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: String::new(),
            members: BTreeMap::new(),
            statics: HashMap::new(),
            upkept_at: None,
            bytes: 0,
        }
    }

    /// Counts its members' data again (after members, their protocols or their assignments
    /// changed): O(its members).
    fn recount(&mut self) {
        self.bytes = self.members.values().map(Member::bytes).sum();
    }

    /// Whether a waiting join or sync that looks at the group now should also do its upkeep
    /// (drop silent members, complete a rebalance, both O(members)): at most once per
    /// [`POLL`] per group however many members wait, so a rebalance of M waiting members
    /// costs O(M) per poll interval, not O(M²) (each waiting member did it on every poll).
    fn upkeep_due(&mut self, now: Instant) -> bool {
        if self.upkept_at.is_some_and(|t| now.saturating_duration_since(t) < POLL) {
            return false;
        }
        self.upkept_at = Some(now);
        true
    }

    /// The deadline of a rebalance phase starting `now`: its members' longest rebalance
    /// timeout (at least [`POLL`]).
    fn phase_deadline(&self, now: Instant) -> Instant {
        let timeout = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default();
        now + timeout.max(POLL)
    }

    fn rebalance(&mut self, now: Instant) {
        let not_before =
            if self.phase == Phase::Empty { now + INITIAL_REBALANCE_DELAY } else { now };
        self.phase = Phase::Joining { not_before, deadline: self.phase_deadline(now) };
        for m in self.members.values_mut() {
            m.joined = false;
        }
    }

    /// Drops members silent past their session timeout; rebalances if that changed the group,
    /// or if the leader's assignment is overdue.
    fn expire(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Syncing { deadline } if now >= deadline) {
            self.rebalance(now);
        }
        if self.retain_members(|m| m.alive(now)) {
            self.after_leave(now);
            self.recount();
        }
    }

    fn after_leave(&mut self, now: Instant) {
        if self.members.is_empty() {
            self.phase = Phase::Empty;
        } else if !matches!(self.phase, Phase::Joining { .. }) {
            self.rebalance(now);
        }
    }

    fn state(&self, id: &str) -> GroupState {
        let members = self
            .members
            .iter()
            .map(|(member_id, m)| MemberState {
                member_id: member_id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m
                    .protocols
                    .iter()
                    .find(|(name, _)| *name == self.protocol)
                    .map(|(_, meta)| meta.clone())
                    .unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect();
        GroupState {
            group: id.to_owned(),
            state: state_name(self.phase),
            protocol_type: self.protocol_type.clone(),
            // Chosen at the end of a rebalance: none while one runs.
            protocol: if matches!(self.phase, Phase::Joining { .. }) {
                String::new()
            } else {
                self.protocol.clone()
            },
            members,
        }
    }

    /// A member's waiting join looks at the group: members silent past their session go (a
    /// member killed during a rebalance must not hold it to its deadline: members waiting in
    /// a join are not silent, and Kafka clients do not heartbeat then), the waiting member
    /// counts as rejoined in a rebalance that started after its join (its client sends no
    /// other), and the rebalance completes if it can. `None` if the member is gone.
    fn poll_join(&mut self, member_id: &str, now: Instant) -> Option<&mut Self> {
        let m = self.members.get_mut(member_id)?;
        m.last_seen = now;
        let due = self.upkeep_due(now);
        if due {
            self.expire(now);
        }
        if matches!(self.phase, Phase::Joining { .. }) {
            self.members.get_mut(member_id)?.joined = true;
        }
        if due {
            self.try_complete(now);
        }
        self.members.contains_key(member_id).then_some(self)
    }

    /// Ends a rebalance once every member rejoined (or the deadline passed).
    fn try_complete(&mut self, now: Instant) {
        let Phase::Joining { not_before, deadline } = self.phase else { return };
        let all = self.members.values().all(|m| m.joined);
        if !(all && now >= not_before) && now < deadline {
            return;
        }
        // Static members that did not rejoin stay (their session or a LeaveGroup ends them).
        self.retain_members(|m| m.joined || m.instance_id.is_some());
        if self.members.is_empty() {
            self.phase = Phase::Empty;
            return;
        }
        if !self.members.get(&self.leader).is_some_and(|m| m.joined) {
            let Some(first) = self.members.iter().find(|(_, m)| m.joined) else {
                // Only absent static members: wait for them another rebalance timeout.
                self.phase = Phase::Joining { not_before: now, deadline: self.phase_deadline(now) };
                return;
            };
            self.leader = first.0.clone();
        }
        self.generation = self.generation.wrapping_add(1).max(1);
        self.protocol = protocol::vote(self);
        for m in self.members.values_mut() {
            m.generation = self.generation;
            m.assignment = Bytes::new();
            m.last_seen = now;
        }
        self.phase = Phase::Syncing { deadline: self.phase_deadline(now) };
        self.recount();
    }
}

/// Kafka's name for a group's state (DescribeGroups, ListGroups).
fn state_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Empty => "Empty",
        Phase::Joining { .. } => "PreparingRebalance",
        Phase::Syncing { .. } => "CompletingRebalance",
        Phase::Stable => "Stable",
    }
}

/// What DescribeGroups and ListGroups show of one Kafka group (a copy, taken under the lock).
#[derive(Debug, Clone)]
pub struct GroupState {
    /// Group id.
    pub group: String,
    /// Kafka's state name: Empty, PreparingRebalance, CompletingRebalance, Stable.
    pub state: &'static str,
    /// The members' protocol type (`consumer` for Kafka consumers).
    pub protocol_type: String,
    /// The protocol (assignor) chosen for the current generation.
    pub protocol: String,
    /// The members, by id.
    pub members: Vec<MemberState>,
}

/// One member in a [`GroupState`].
#[derive(Debug, Clone)]
pub struct MemberState {
    /// Member id.
    pub member_id: String,
    /// Its `group.instance.id` if static.
    pub instance_id: Option<String>,
    /// Its client id.
    pub client_id: String,
    /// Where it connected from (`/ip`).
    pub client_host: String,
    /// Its subscription for the group's protocol.
    pub metadata: Bytes,
    /// Its assignment in the current generation (empty until the leader's SyncGroup).
    pub assignment: Bytes,
}

/// Every Kafka group of the process (see the module docs).
#[derive(Debug)]
pub struct Groups {
    groups: Mutex<HashMap<String, Group>>,
    members_max: usize,
    /// Most bytes of member data over all groups (`Member::bytes`; `kafka_group_bytes_max`).
    bytes_max: usize,
    next_member: std::sync::atomic::AtomicU64,
}

impl Groups {
    /// An empty table holding at most `members_max` members and `bytes_max` bytes of their
    /// data over all groups.
    pub fn new(members_max: usize, bytes_max: usize) -> Self {
        Groups {
            groups: Mutex::new(HashMap::new()),
            members_max,
            bytes_max,
            next_member: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Every group with members (silent members dropped first) as (id, protocol type,
    /// Kafka state name), sorted by id: what ListGroups shows, without copying members.
    pub fn summaries(&self) -> Vec<(String, String, &'static str)> {
        let now = Instant::now();
        let mut out: Vec<(String, String, &'static str)> = self.with(|all| {
            all.iter_mut()
                .filter_map(|(id, g)| {
                    g.expire(now);
                    (!g.members.is_empty())
                        .then(|| (id.clone(), g.protocol_type.clone(), state_name(g.phase)))
                })
                .collect()
        });
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The state of `group` if it has members (silent members dropped first).
    pub fn state(&self, group: &str) -> Option<GroupState> {
        let now = Instant::now();
        self.with(|all| {
            let g = all.get_mut(group)?;
            g.expire(now);
            (!g.members.is_empty()).then(|| g.state(group))
        })
    }

    /// Whether `group` has a member not silent past its session (its committed offsets do
    /// not expire meanwhile, as in Kafka: `api/offsets_expiry.rs`).
    pub fn has_members(&self, group: &str) -> bool {
        let now = Instant::now();
        self.with(|all| all.get(group).is_some_and(|g| g.members.values().any(|m| m.alive(now))))
    }

    /// Whether `member` is in `group` at `generation` (refreshing its liveness), as a
    /// Kafka error code when not.
    pub fn check(
        &self,
        group: &str,
        member: &str,
        instance: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), i16> {
        self.with(|all| check_member(all, group, member, instance, generation, now))
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Group>) -> R) -> R {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(&mut groups);
        // Groups whose members all left or expired stay until the table passes the member
        // budget; then the empty ones go (a group holds nothing worth keeping once empty:
        // its offsets are in the offsets log).
        if groups.len() > self.members_max {
            groups.retain(|_, g| !g.members.is_empty());
        }
        out
    }
}

pub(super) fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_owned())
}

/// Checks `member` of `group_id` at `generation`; the error code if it is not current.
fn check_member(
    all: &mut HashMap<String, Group>,
    group_id: &str,
    member: &str,
    instance: Option<&str>,
    generation: i32,
    now: Instant,
) -> Result<(), i16> {
    let g = all.get_mut(group_id).ok_or(K::UnknownMemberId.code())?;
    // The group's upkeep (O(members)) at most once per POLL, not per heartbeat or commit;
    // a member past its session is not current either way.
    if g.upkeep_due(now) {
        g.expire(now);
    }
    g.fenced(instance, member)?;
    let m = g.members.get_mut(member).ok_or(K::UnknownMemberId.code())?;
    if !m.alive(now) {
        return Err(K::UnknownMemberId.code());
    }
    m.last_seen = now;
    if generation != g.generation {
        return Err(K::IllegalGeneration.code());
    }
    Ok(())
}

/// Says (at most every 10 s) that a group's assignments did not fit `kafka_group_bytes_max`:
/// its members rejoin until they do, and consume nothing meanwhile.
fn over_budget_warning(group: &str, bytes: usize, bytes_max: usize) {
    static LAST_S: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now_s = crate::clock::now_ms().max(0) as u64 / 1000;
    let last = LAST_S.load(std::sync::atomic::Ordering::Relaxed);
    if now_s >= last + 10
        && LAST_S
            .compare_exchange(
                last,
                now_s,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_ok()
    {
        tracing::warn!(group, assignment_bytes = bytes, kafka_group_bytes_max = bytes_max, "a Kafka group's assignments do not fit kafka_group_bytes_max: its leader is told to rejoin (REBALANCE_IN_PROGRESS) until they fit");
    }
}

/// The part of a member's client id a group keeps.
const CLIENT_ID_CHARS_MAX: usize = 255;

/// SyncGroup: the leader hands in the assignment; every member waits for its own.
pub fn sync(sess: &Session, ctx: Ctx, req: SyncGroupRequest) -> Answer {
    let kafka = sess.kafka.clone();
    let group_id = req.group_id.as_str().to_owned();
    let member_id = req.member_id.as_str().to_owned();
    let generation = req.generation_id;
    let instance = instance_of(req.group_instance_id.as_deref());
    let now = Instant::now();
    let checked = kafka.groups.with(|all| {
        check_member(all, &group_id, &member_id, instance.as_deref(), generation, now)?;
        let g = all.get_mut(&group_id).ok_or(K::UnknownMemberId.code())?;
        match g.phase {
            Phase::Joining { .. } => return Err(K::RebalanceInProgress.code()),
            Phase::Syncing { .. } if g.leader == member_id => {
                if req.assignments.iter().any(|a| a.assignment.len() > MEMBER_METADATA_BYTES_MAX) {
                    return Err(K::InvalidRequest.code());
                }
                // The assignments replace the group's, within `bytes_max` over every group
                // (once silent members of every group are dropped). Past it the leader hears
                // REBALANCE_IN_PROGRESS and joins again (INVALID_REQUEST, answered before,
                // is fatal to a Java consumer, for a bound others' groups filled).
                let old: usize = g.members.values().map(|m| m.assignment.len()).sum();
                let new: usize = req
                    .assignments
                    .iter()
                    .filter(|a| g.members.contains_key(a.member_id.as_str()))
                    .map(|a| a.assignment.len())
                    .sum();
                let over = |all: &HashMap<String, Group>| {
                    held_bytes(all).saturating_sub(old) + new > kafka.groups.bytes_max
                };
                if over(all) {
                    for (id, g) in all.iter_mut() {
                        if *id != group_id {
                            g.expire(now);
                        }
                    }
                    all.retain(|id, g| !g.members.is_empty() || *id == group_id);
                    if over(all) {
                        over_budget_warning(&group_id, new, kafka.groups.bytes_max);
                        return Err(K::RebalanceInProgress.code());
                    }
                }
                let g = all.get_mut(&group_id).ok_or(K::UnknownMemberId.code())?;
                for a in &req.assignments {
                    if let Some(m) = g.members.get_mut(a.member_id.as_str()) {
                        m.assignment = Bytes::copy_from_slice(&a.assignment);
                    }
                }
                g.recount();
                g.phase = Phase::Stable;
            }
            _ => {}
        }
        Ok(())
    });
    if let Err(code) = checked {
        let mut out = SyncGroupResponse::default();
        out.error_code = code;
        return ready(respond(ctx, &out));
    }
    let left = sess.left.clone();
    Box::pin(async move {
        loop {
            if left.get() > 0 {
                return None; // the client left: nobody reads the answer, nothing keeps it alive
            }
            let now = Instant::now();
            let state: Option<Result<(String, String, Bytes), i16>> = kafka.groups.with(|all| {
                let Some(g) = all.get_mut(&group_id) else {
                    return Some(Err(K::UnknownMemberId.code()));
                };
                if g.upkeep_due(now) {
                    g.expire(now);
                }
                // The instance restarted meanwhile (its new member took this one's place).
                if let Err(code) = g.fenced(instance.as_deref(), &member_id) {
                    return Some(Err(code));
                }
                if g.generation != generation || matches!(g.phase, Phase::Joining { .. }) {
                    return Some(Err(K::RebalanceInProgress.code()));
                }
                let (phase, pt, p) = (g.phase, g.protocol_type.clone(), g.protocol.clone());
                let Some(m) = g.members.get_mut(&member_id) else {
                    return Some(Err(K::UnknownMemberId.code()));
                };
                m.last_seen = now;
                (phase == Phase::Stable).then(|| Ok((pt, p, m.assignment.clone())))
            });
            match state {
                None => glommio::timer::sleep(POLL).await,
                Some(result) => {
                    let mut out = SyncGroupResponse::default();
                    match result {
                        Ok((pt, p, assignment)) => {
                            out.protocol_type = Some(s(&pt));
                            out.protocol_name = Some(s(&p));
                            out.assignment = assignment;
                        }
                        Err(code) => out.error_code = code,
                    }
                    return respond(ctx, &out);
                }
            }
        }
    })
}

#[path = "group_join.rs"]
mod joining;
pub use joining::join;

#[path = "group_presence.rs"]
mod presence;
pub use presence::{heartbeat, leave};

#[path = "group_protocol.rs"]
mod protocol;

#[path = "group_static.rs"]
mod statics;
pub use statics::INSTANCE_ID_BYTES_MAX;

/// A request's `group_instance_id` (an empty one names no instance).
pub(super) fn instance_of(id: Option<&str>) -> Option<String> {
    id.filter(|i| !i.is_empty()).map(str::to_owned)
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
