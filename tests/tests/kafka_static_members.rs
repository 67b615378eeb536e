//! Static members of Kafka groups (KIP-345, `group.instance.id`) through the Kafka listener,
//! in the raw protocol: a restarted static member gets its place and assignment back without
//! a rebalance, its old incarnation is fenced (`FENCED_INSTANCE_ID`) in every request, an
//! unknown instance is `UNKNOWN_MEMBER_ID`, DescribeGroups shows instance ids, and LeaveGroup
//! v3 removes members by instance id (a leave that removes nobody starts no rebalance).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use integration_tests::{create_topic, Broker};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, GroupId, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    OffsetCommitRequest, OffsetCommitResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

mod kafka_wire;
use kafka_wire::{frame, Conn};

const FENCED_INSTANCE_ID: i16 = 82;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_owned())
}

fn join(group: &str, member: &str, instance: Option<&str>) -> JoinGroupRequest {
    let mut j = JoinGroupRequest::default();
    j.group_id = GroupId(s(group));
    j.member_id = s(member);
    j.group_instance_id = instance.map(s);
    j.session_timeout_ms = 30_000;
    j.rebalance_timeout_ms = 20_000;
    j.protocol_type = s("consumer");
    let mut p = JoinGroupRequestProtocol::default();
    p.name = s("range");
    p.metadata = bytes::Bytes::from_static(b"subscription");
    j.protocols = vec![p];
    j
}

fn sync(group: &str, j: &JoinGroupResponse, instance: &str) -> SyncGroupRequest {
    let mut r = SyncGroupRequest::default();
    r.group_id = GroupId(s(group));
    r.generation_id = j.generation_id;
    r.member_id = j.member_id.clone();
    r.group_instance_id = Some(s(instance));
    r
}

fn heartbeat(c: &mut Conn, group: &str, member: &str, generation: i32, instance: &str) -> i16 {
    let mut r = HeartbeatRequest::default();
    r.group_id = GroupId(s(group));
    r.member_id = s(member);
    r.generation_id = generation;
    r.group_instance_id = Some(s(instance));
    c.call::<_, HeartbeatResponse>(ApiKey::Heartbeat, 3, &r).error_code
}

/// Two static members i-a and i-b of `group`, joined and synced with assignments "A" and
/// "B": their connections and join answers.
fn two_static_members(b: &Broker, group: &str) -> [(Conn, JoinGroupResponse); 2] {
    let mut conns = [Conn::new(b), Conn::new(b)];
    for (c, i) in conns.iter_mut().zip(["i-a", "i-b"]) {
        c.1 += 1;
        c.0.write_all(&frame(ApiKey::JoinGroup, 5, c.1, &join(group, "", Some(i)))).unwrap();
    }
    let joined: Vec<JoinGroupResponse> = conns
        .iter_mut()
        .map(|c| {
            let mut size = [0u8; 4];
            c.0.read_exact(&mut size).unwrap();
            let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
            c.0.read_exact(&mut body).unwrap();
            JoinGroupResponse::decode(&mut bytes::Bytes::from(body).slice(4..), 5).unwrap()
        })
        .collect();
    for j in &joined {
        assert_eq!(j.error_code, 0);
        assert!(j.member_id.starts_with("i-"), "a static member's id starts with its instance");
    }
    let leader = joined.iter().position(|j| j.leader == j.member_id).expect("a leader");
    let led = &joined[leader];
    assert_eq!(led.members.len(), 2);
    for m in &led.members {
        let instance = m.group_instance_id.as_deref().expect("the leader sees instance ids");
        assert!(m.member_id.starts_with(instance), "{m:?}");
    }
    let [mut ca, mut cb] = conns;
    let (ja, jb) = (joined[0].clone(), joined[1].clone());
    let mut lead_sync = sync(group, &joined[leader], ["i-a", "i-b"][leader]);
    for (j, a) in [(&ja, "A"), (&jb, "B")] {
        let mut x = SyncGroupRequestAssignment::default();
        x.member_id = j.member_id.clone();
        x.assignment = bytes::Bytes::from(a);
        lead_sync.assignments.push(x);
    }
    let follower = 1 - leader;
    let follower_sync = sync(group, &joined[follower], ["i-a", "i-b"][follower]);
    let (lc, fc) = if leader == 0 { (&mut ca, &mut cb) } else { (&mut cb, &mut ca) };
    let synced: SyncGroupResponse = lc.call(ApiKey::SyncGroup, 3, &lead_sync);
    assert_eq!(synced.error_code, 0);
    let synced: SyncGroupResponse = fc.call(ApiKey::SyncGroup, 3, &follower_sync);
    assert_eq!(synced.error_code, 0);
    [(ca, ja), (cb, jb)]
}

#[test]
fn a_restarted_static_member_gets_its_place_back_and_the_old_one_is_fenced() {
    let b = Broker::start_with_env(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    create_topic(&mut b.connect(), "static-t", 1);
    let group = "static-g";
    let [(mut ca, ja), (mut cb, jb)] = two_static_members(&b, group);
    let leader_before = ja.leader.to_string();
    // i-a restarts: a new connection, no member id.
    let mut ca2 = Conn::new(&b);
    let asked = Instant::now();
    let rejoined: JoinGroupResponse = ca2.call(ApiKey::JoinGroup, 5, &join(group, "", Some("i-a")));
    assert!(asked.elapsed() < Duration::from_secs(2), "answered at once: no rebalance");
    assert_eq!(rejoined.error_code, 0);
    assert_eq!(rejoined.generation_id, ja.generation_id, "the same generation");
    assert_ne!(rejoined.member_id, ja.member_id, "a new member id");
    assert_eq!(rejoined.leader.as_str(), leader_before, "the leader as it was");
    assert!(rejoined.members.is_empty(), "it syncs as a follower");
    let synced: SyncGroupResponse = ca2.call(ApiKey::SyncGroup, 3, &sync(group, &rejoined, "i-a"));
    assert_eq!((synced.error_code, &synced.assignment[..]), (0, &b"A"[..]), "its assignment back");
    assert_eq!(
        heartbeat(&mut cb, group, &jb.member_id, jb.generation_id, "i-b"),
        0,
        "no rebalance"
    );
    assert_eq!(heartbeat(&mut ca2, group, &rejoined.member_id, ja.generation_id, "i-a"), 0);
    // The old incarnation is fenced in every request.
    let old = ja.member_id.to_string();
    assert_eq!(heartbeat(&mut ca, group, &old, ja.generation_id, "i-a"), FENCED_INSTANCE_ID);
    let refused: SyncGroupResponse = ca.call(ApiKey::SyncGroup, 3, &sync(group, &ja, "i-a"));
    assert_eq!(refused.error_code, FENCED_INSTANCE_ID);
    let mut commit = OffsetCommitRequest::default();
    commit.group_id = GroupId(s(group));
    commit.generation_id_or_member_epoch = ja.generation_id;
    commit.member_id = s(&old);
    commit.group_instance_id = Some(s("i-a"));
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(s("static-t"));
    let mut p = OffsetCommitRequestPartition::default();
    p.committed_offset = 1;
    t.partitions = vec![p];
    commit.topics = vec![t];
    let answer: OffsetCommitResponse = ca.call(ApiKey::OffsetCommit, 7, &commit);
    assert_eq!(answer.topics[0].partitions[0].error_code, FENCED_INSTANCE_ID);
    let refused: JoinGroupResponse = ca.call(ApiKey::JoinGroup, 5, &join(group, &old, Some("i-a")));
    assert_eq!(refused.error_code, FENCED_INSTANCE_ID);
    // The new one commits; an instance the group does not know is UNKNOWN_MEMBER_ID.
    commit.member_id = rejoined.member_id.clone();
    let answer: OffsetCommitResponse = ca2.call(ApiKey::OffsetCommit, 7, &commit);
    assert_eq!(answer.topics[0].partitions[0].error_code, 0);
    let ghost = heartbeat(&mut cb, group, &jb.member_id, jb.generation_id, "ghost");
    assert_eq!(ghost, UNKNOWN_MEMBER_ID);
    // After all that, still no rebalance.
    assert_eq!(heartbeat(&mut cb, group, &jb.member_id, jb.generation_id, "i-b"), 0);
}

#[test]
fn static_members_are_described_and_leave_by_instance_id() {
    let b = Broker::start_with_env(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let group = "static-leave";
    let [(mut ca, ja), (mut cb, jb)] = two_static_members(&b, group);
    let mut describe = DescribeGroupsRequest::default();
    describe.groups = vec![GroupId(s(group))];
    let d: DescribeGroupsResponse = ca.call(ApiKey::DescribeGroups, 4, &describe);
    let mut instances: Vec<String> = d.groups[0]
        .members
        .iter()
        .map(|m| m.group_instance_id.as_deref().unwrap_or("-").to_owned())
        .collect();
    instances.sort();
    assert_eq!(instances, ["i-a", "i-b"]);
    // A leave that removes nobody (an unknown member) starts no rebalance.
    let mut nobody = LeaveGroupRequest::default();
    nobody.group_id = GroupId(s(group));
    nobody.member_id = s("nobody");
    let answer: LeaveGroupResponse = ca.call(ApiKey::LeaveGroup, 0, &nobody);
    assert_eq!(answer.error_code, UNKNOWN_MEMBER_ID);
    assert_eq!(heartbeat(&mut cb, group, &jb.member_id, jb.generation_id, "i-b"), 0);
    // v3: by instance id alone, an unknown instance, and a member id the instance is not.
    let mut leave = LeaveGroupRequest::default();
    leave.group_id = GroupId(s(group));
    for (member, instance) in [("", "i-a"), ("", "ghost"), ("wrong", "i-b")] {
        let mut m = MemberIdentity::default();
        m.member_id = s(member);
        m.group_instance_id = Some(s(instance));
        leave.members.push(m);
    }
    let answer: LeaveGroupResponse = ca.call(ApiKey::LeaveGroup, 3, &leave);
    assert_eq!(answer.error_code, 0);
    let codes: Vec<(i16, Option<String>)> = answer
        .members
        .iter()
        .map(|m| (m.error_code, m.group_instance_id.as_deref().map(str::to_owned)))
        .collect();
    assert_eq!(
        codes,
        [
            (0, Some("i-a".into())),
            (UNKNOWN_MEMBER_ID, Some("ghost".into())),
            (FENCED_INSTANCE_ID, Some("i-b".into()))
        ]
    );
    assert_eq!(
        heartbeat(&mut ca, group, &ja.member_id, ja.generation_id, "i-a"),
        UNKNOWN_MEMBER_ID
    );
    let rebalancing = heartbeat(&mut cb, group, &jb.member_id, jb.generation_id, "i-b");
    assert_eq!(rebalancing, REBALANCE_IN_PROGRESS, "i-a left: the rest rebalance");
}

/// A static member that restarts after its session ended (nobody looked at the group
/// meanwhile) joins as a new static member of its instance: before, the join made a member
/// without the instance and then refused its own join UNKNOWN_MEMBER_ID, leaving that
/// member in the group (holding partitions nobody read until its session ended).
#[test]
fn a_static_member_back_after_its_session_joins_as_itself() {
    let b = Broker::start_with_env(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    let group = "static-late";
    let mut short = join(group, "", Some("i-late"));
    short.session_timeout_ms = 1_000;
    short.rebalance_timeout_ms = 1_000;
    let mut c = Conn::new(&b);
    let first: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &short);
    assert_eq!(first.error_code, 0);
    let synced: SyncGroupResponse = c.call(ApiKey::SyncGroup, 3, &sync(group, &first, "i-late"));
    assert_eq!(synced.error_code, 0);
    std::thread::sleep(Duration::from_millis(1_500));
    let mut c2 = Conn::new(&b);
    let back: JoinGroupResponse = c2.call(ApiKey::JoinGroup, 5, &short);
    assert_eq!(back.error_code, 0, "{back:?}");
    assert_ne!(back.member_id, first.member_id);
    assert_eq!(back.leader, back.member_id, "the only member leads");
    let synced: SyncGroupResponse = c2.call(ApiKey::SyncGroup, 3, &sync(group, &back, "i-late"));
    assert_eq!(synced.error_code, 0);
    assert_eq!(heartbeat(&mut c2, group, &back.member_id, back.generation_id, "i-late"), 0);
    let mut describe = DescribeGroupsRequest::default();
    describe.groups = vec![GroupId(s(group))];
    let d: DescribeGroupsResponse = c2.call(ApiKey::DescribeGroups, 4, &describe);
    let members: Vec<_> = d.groups[0].members.iter().map(|m| m.group_instance_id.clone()).collect();
    assert_eq!(members, [Some(s("i-late"))], "one member, of its instance");
}

/// JoinGroup v9 (KIP-814): a restarted static leader of a Stable group learns that it leads
/// (the leader is its new id, with every member's metadata) and is told to skip the
/// assignment; its SyncGroup with no assignments gets its own back, and nobody rebalances. A
/// restarted follower is answered the current leader and no members. Before v9 the leader
/// was answered as a follower and never learned it led (KAFKA-13435).
#[test]
fn a_restarted_static_leader_learns_it_leads_from_join_group_v9() {
    let b = Broker::start_with_env(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    create_topic(&mut b.connect(), "static-t", 1);
    let group = "static-v9";
    let [(ca, ja), (cb, jb)] = two_static_members(&b, group);
    let a_leads = ja.leader == ja.member_id;
    let (instance, assignment, mut partner, partner_join, partner_instance) =
        if a_leads { ("i-a", &b"A"[..], cb, jb, "i-b") } else { ("i-b", &b"B"[..], ca, ja, "i-a") };
    let mut restarted = Conn::new(&b);
    let mut v9 = join(group, "", Some(instance));
    v9.reason = Some(s("restarted"));
    let rejoined: JoinGroupResponse = restarted.call(ApiKey::JoinGroup, 9, &v9);
    assert_eq!(rejoined.error_code, 0);
    assert_eq!(rejoined.leader, rejoined.member_id, "it learns it leads");
    assert!(rejoined.skip_assignment, "and that the assignment stands");
    let mut ids: Vec<&str> = rejoined.members.iter().map(|m| m.member_id.as_str()).collect();
    ids.sort();
    let mut want = vec![rejoined.member_id.as_str(), partner_join.member_id.as_str()];
    want.sort();
    assert_eq!(ids, want, "every member, under its current id");
    let mut leader_sync = sync(group, &rejoined, instance);
    leader_sync.assignments.clear();
    let synced: SyncGroupResponse = restarted.call(ApiKey::SyncGroup, 5, &leader_sync);
    assert_eq!((synced.error_code, &synced.assignment[..]), (0, assignment), "its own back");
    let generation = partner_join.generation_id;
    assert_eq!(rejoined.generation_id, generation, "the same generation");
    let beat =
        heartbeat(&mut partner, group, &partner_join.member_id, generation, partner_instance);
    assert_eq!(beat, 0, "no rebalance");
    // The follower restarts at v9: the current leader, no members, nothing to skip.
    let mut again = Conn::new(&b);
    let follower: JoinGroupResponse =
        again.call(ApiKey::JoinGroup, 9, &join(group, "", Some(partner_instance)));
    assert_eq!(follower.error_code, 0);
    assert_eq!(follower.leader, rejoined.member_id);
    assert!(!follower.skip_assignment && follower.members.is_empty(), "{follower:?}");
}
