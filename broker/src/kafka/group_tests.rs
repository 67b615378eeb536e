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
    }
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
