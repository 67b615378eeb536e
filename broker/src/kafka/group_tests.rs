//! Tests of the Kafka group state machine (`kafka/group.rs`): rebalances, expiry, joins.

use super::*;

fn member(now: Instant, protocols: &[&str]) -> Member {
    Member {
        protocols: protocols.iter().map(|p| (p.to_string(), Bytes::new())).collect(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        last_seen: now,
        joined: true,
        generation: -1,
        assignment: Bytes::new(),
        client_id: String::new(),
        client_host: String::new(),
        instance_id: None,
    }
}

/// `member` with an instance id, registered in `g`.
fn add_static(g: &mut Group, id: &str, instance: &str, now: Instant) {
    let mut m = member(now, &["range"]);
    m.instance_id = Some(instance.into());
    g.members.insert(id.into(), m);
    g.statics.insert(instance.into(), id.into());
}

#[test]
fn members_joining_together_get_one_generation_after_the_initial_delay() {
    let t0 = Instant::now();
    let mut g = Group::new();
    g.members.insert("a".into(), member(t0, &["range", "roundrobin"]));
    g.rebalance(t0);
    g.members.get_mut("a").unwrap().joined = true;
    g.try_complete(t0);
    assert!(matches!(g.phase, Phase::Joining { .. }), "waits for the initial delay");
    g.members.insert("b".into(), member(t0, &["roundrobin"]));
    g.try_complete(t0 + INITIAL_REBALANCE_DELAY);
    assert!(matches!((g.phase, g.generation), (Phase::Syncing { .. }, 1)));
    assert_eq!(g.leader, "a");
    assert_eq!(g.protocol, "roundrobin", "the leader's first protocol every member speaks");
    assert!(g.members.values().all(|m| m.generation == 1));
}

#[test]
fn a_rebalance_waits_for_every_member_or_drops_the_late_ones_at_the_deadline() {
    let t0 = Instant::now();
    let mut g = Group::new();
    g.members.insert("a".into(), member(t0, &["range"]));
    g.members.insert("b".into(), member(t0, &["range"]));
    g.phase = Phase::Stable;
    g.generation = 3;
    g.rebalance(t0);
    g.members.get_mut("a").unwrap().joined = true;
    g.try_complete(t0 + Duration::from_secs(1));
    assert!(matches!(g.phase, Phase::Joining { .. }), "b has not rejoined yet");
    g.try_complete(t0 + Duration::from_secs(31));
    assert!(matches!((g.phase, g.generation, g.members.len()), (Phase::Syncing { .. }, 4, 1)));
}

#[test]
fn silent_members_expire_and_the_last_one_leaving_empties_the_group() {
    let t0 = Instant::now();
    let mut g = Group::new();
    g.members.insert("a".into(), member(t0, &["range"]));
    g.members.insert("b".into(), member(t0 + Duration::from_secs(5), &["range"]));
    g.phase = Phase::Stable;
    g.expire(t0 + Duration::from_secs(11));
    assert_eq!(g.members.len(), 1, "a was silent past its session timeout");
    assert!(matches!(g.phase, Phase::Joining { .. }), "the rest rebalance");
    g.members.clear();
    g.after_leave(t0 + Duration::from_secs(12));
    assert_eq!(g.phase, Phase::Empty);
}

/// A member whose join waits while a new rebalance starts (another member joins before the
/// waiting one looked at the completed one) counts as rejoined: its client sends no other
/// join, so before, the rebalance waited for its deadline and then dropped it.
#[test]
fn a_waiting_join_counts_as_rejoined_in_a_rebalance_that_started_after_it() {
    let t0 = Instant::now();
    let mut g = Group::new();
    g.members.insert("a".into(), member(t0, &["range"]));
    g.members.insert("b".into(), member(t0, &["range"]));
    g.rebalance(t0);
    for m in g.members.values_mut() {
        m.joined = true;
    }
    let t1 = t0 + INITIAL_REBALANCE_DELAY;
    g.try_complete(t1);
    assert!(matches!((g.phase, g.generation), (Phase::Syncing { .. }, 1)));
    // c joins before a's waiting join saw generation 1; b (answered) rejoins.
    g.members.insert("c".into(), member(t1, &["range"]));
    g.rebalance(t1);
    g.members.get_mut("c").unwrap().joined = true;
    g.members.get_mut("b").unwrap().joined = true;
    let g = g.poll_join("a", t1 + Duration::from_millis(10)).expect("a is still a member");
    assert!(matches!((g.phase, g.generation, g.members.len()), (Phase::Syncing { .. }, 2, 3)));
}

/// A member that dies during a rebalance (no join, no heartbeat) goes at its session timeout,
/// seen by the joins that wait, not at the rebalance's deadline.
#[test]
fn a_member_silent_during_a_rebalance_goes_at_its_session_timeout() {
    let t0 = Instant::now();
    let mut g = Group::new();
    for id in ["a", "b"] {
        g.members.insert(id.into(), member(t0, &["range"]));
    }
    g.phase = Phase::Stable;
    g.generation = 1;
    g.rebalance(t0);
    g.members.get_mut("a").unwrap().joined = true;
    // a waits, polling; b is silent (its session is 10 s, the rebalance timeout 30 s).
    let mut t = t0;
    while t < t0 + Duration::from_secs(10) {
        t += Duration::from_secs(1);
        g.poll_join("a", t).expect("a waits");
        assert!(matches!(g.phase, Phase::Joining { .. }), "b's session runs until t0 + 10 s");
    }
    let g = g.poll_join("a", t0 + Duration::from_millis(10_010)).expect("a waits");
    assert!(matches!((g.phase, g.generation, g.members.len()), (Phase::Syncing { .. }, 2, 1)));
}

/// The group's upkeep runs on at most one waiting look per POLL, however many members wait
/// (each did it, O(members), on every poll: O(M²) per poll interval for M waiting members).
#[test]
fn waiting_members_share_one_upkeep_per_poll_interval() {
    let t0 = Instant::now();
    let t = t0 + Duration::from_secs(60);
    let mut g = Group::new();
    g.members.insert("a".into(), member(t, &["range"]));
    g.members.insert("b".into(), member(t, &["range"]));
    g.phase = Phase::Stable;
    g.generation = 1;
    g.rebalance(t);
    g.poll_join("a", t).expect("a waits");
    // A silent member (its session ended long ago) is seen by the next upkeep only.
    g.members.insert("old".into(), member(t0, &["range"]));
    g.poll_join("b", t + Duration::from_millis(1)).expect("b waits");
    assert!(g.members.contains_key("old"), "no upkeep within POLL of the last");
    g.poll_join("a", t + POLL).expect("a waits");
    assert!(!g.members.contains_key("old"), "dropped by the next upkeep");
}

/// A member that shares no protocol with the others is refused (the group went on with an
/// empty protocol, which every Java member failed on); the protocol is the members' vote.
#[test]
fn joins_need_a_shared_protocol_and_rebalances_choose_by_vote() {
    let t0 = Instant::now();
    let mut g = Group::new();
    g.members.insert("a".into(), member(t0, &["range", "cooperative-sticky"]));
    g.members.insert("b".into(), member(t0, &["range"]));
    assert!(!protocol::joinable(&g, "", ["cooperative-sticky"].into_iter()));
    assert!(protocol::joinable(&g, "", ["cooperative-sticky", "range"].into_iter()));
    // A member rejoining is compared with the others only.
    assert!(protocol::joinable(&g, "b", ["cooperative-sticky"].into_iter()));
    // Everyone speaks both; two prefer sticky, one range: sticky wins, though the leader
    // prefers range.
    g.members.insert("b".into(), member(t0, &["cooperative-sticky", "range"]));
    g.members.insert("c".into(), member(t0, &["cooperative-sticky", "range"]));
    g.members.insert("a".into(), member(t0, &["range", "cooperative-sticky"]));
    g.leader = "a".into();
    assert_eq!(protocol::vote(&g), "cooperative-sticky");
    // A tie goes the leader's way.
    g.members.remove("c");
    assert_eq!(protocol::vote(&g), "range");
}

/// A static member's restart takes its old place: the new member id inherits the old one's
/// assignment, generation and leadership, the instance maps to it, and requests naming the
/// instance with the old id are fenced.
#[test]
fn a_static_member_restart_takes_the_old_place_and_fences_the_old_id() {
    let t0 = Instant::now();
    let mut g = Group::new();
    add_static(&mut g, "a", "i-a", t0);
    g.members.insert("b".into(), member(t0, &["range"]));
    g.generation = 3;
    g.leader = "a".into();
    g.phase = Phase::Stable;
    for m in g.members.values_mut() {
        m.generation = 3;
    }
    g.members.get_mut("a").unwrap().assignment = Bytes::from_static(b"X");
    let before = g.replace_static("i-a", "a", "a2");
    assert_eq!(before, "a", "the leader as the restarted client must see it (a follower)");
    assert_eq!((g.leader.as_str(), g.generation, g.phase), ("a2", 3, Phase::Stable));
    assert_eq!(g.statics["i-a"], "a2");
    let m = &g.members["a2"];
    assert_eq!((m.generation, &m.assignment[..]), (3, &b"X"[..]));
    assert!(!g.members.contains_key("a"));
    assert_eq!(g.fenced(Some("i-a"), "a"), Err(K::FencedInstanceId.code()));
    assert_eq!(g.fenced(Some("i-a"), "a2"), Ok(()));
    assert_eq!(g.fenced(Some("ghost"), "a2"), Err(K::UnknownMemberId.code()));
    assert_eq!(g.fenced(None, "whoever"), Ok(()));
    assert!(g.remove_member("a2"));
    assert!(g.statics.is_empty(), "the instance goes with its member");
}

/// A rebalance keeps static members that did not rejoin (the leader assigns to them), leads
/// with one that did, and waits another timeout when none did; a static member's session
/// still ends it, and its instance with it.
#[test]
fn absent_static_members_stay_through_a_rebalance_until_their_session_ends() {
    let t0 = Instant::now();
    let mut g = Group::new();
    add_static(&mut g, "s", "i-s", t0);
    g.members.get_mut("s").unwrap().session_timeout = Duration::from_secs(60);
    g.members.insert("d".into(), member(t0, &["range"]));
    g.leader = "s".into();
    g.phase = Phase::Stable;
    g.rebalance(t0);
    g.members.get_mut("d").unwrap().joined = true;
    g.try_complete(t0 + Duration::from_secs(31));
    assert!(matches!(g.phase, Phase::Syncing { .. }), "{:?}", g.phase);
    assert!(g.members.contains_key("s"), "the absent static member stays");
    assert_eq!(g.leader, "d", "led by a member that rejoined");
    // Only absent static members: the join phase waits another rebalance timeout.
    g.remove_member("d");
    g.rebalance(t0 + Duration::from_secs(32));
    g.try_complete(t0 + Duration::from_secs(63));
    assert!(matches!(g.phase, Phase::Joining { .. }), "{:?}", g.phase);
    assert_eq!(g.members.len(), 1);
    // Its session ends it.
    g.expire(t0 + Duration::from_secs(100));
    assert!(g.members.is_empty() && g.statics.is_empty());
    assert_eq!(g.phase, Phase::Empty);
}
