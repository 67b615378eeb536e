//! Kafka topic administration through the Kafka listener, in the raw protocol:
//! CreatePartitions grows a topic through the native CreatePartitions.

use integration_tests::{create_topic, Broker};
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

mod kafka_wire;
use kafka_wire::Conn;

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
const INVALID_REQUEST: i16 = 42;

fn grow(name: &str, count: i32) -> CreatePartitionsTopic {
    let mut t = CreatePartitionsTopic::default();
    t.name = TopicName(StrBytes::from_string(name.to_owned()));
    t.count = count;
    t
}

/// Each topic's error code, in request order.
fn codes(
    c: &mut Conn,
    version: i16,
    topics: Vec<CreatePartitionsTopic>,
    validate: bool,
) -> Vec<i16> {
    let mut req = CreatePartitionsRequest::default();
    req.topics = topics;
    req.timeout_ms = 10_000;
    req.validate_only = validate;
    let answer: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, version, &req);
    answer.results.iter().map(|r| r.error_code).collect()
}

/// The partition count the native metadata gives `topic`.
fn partitions(b: &Broker, topic: &str) -> usize {
    let md: wire::MetadataResponse = b.connect().call(&wire::MetadataRequest { topics: vec![] });
    md.topics.iter().find(|t| t.name == topic).map_or(0, |t| t.partitions.len())
}

/// CreatePartitions grows a topic (v0 and the flexible v3); validate-only changes nothing;
/// the same count, an unknown topic, replica assignments and a topic named twice are
/// refused with Kafka's codes.
#[test]
fn kafka_create_partitions_grows_a_topic() {
    let b = Broker::start_with_env(2, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    create_topic(&mut b.connect(), "k", 2);
    create_topic(&mut b.connect(), "j", 1);
    create_topic(&mut b.connect(), "k2", 2);
    let mut c = Conn::new(&b);
    let dry = vec![grow("k", 6), grow("k2", 2), grow("nope", 3), grow("__consumer_offsets", 99)];
    let answer = codes(&mut c, 0, dry, true);
    assert_eq!(
        answer,
        [0, INVALID_PARTITIONS, UNKNOWN_TOPIC_OR_PARTITION, TOPIC_AUTHORIZATION_FAILED]
    );
    assert_eq!(partitions(&b, "k"), 2, "validate-only grew it");
    let mut assigned = grow("j", 2);
    let mut a = CreatePartitionsAssignment::default();
    a.broker_ids = vec![BrokerId(0)];
    assigned.assignments = Some(vec![a]);
    let answer = codes(&mut c, 0, vec![grow("k", 4), grow("nope", 3), assigned], false);
    assert_eq!(answer, [0, UNKNOWN_TOPIC_OR_PARTITION, INVALID_REPLICA_ASSIGNMENT]);
    assert_eq!(partitions(&b, "k"), 4);
    assert_eq!(partitions(&b, "j"), 1, "an assignment grew it");
    assert_eq!(codes(&mut c, 3, vec![grow("k", 4)], false), [INVALID_PARTITIONS]);
    assert_eq!(codes(&mut c, 3, vec![grow("j", 3), grow("j", 4)], false), [0, INVALID_REQUEST]);
    assert_eq!(partitions(&b, "j"), 3);
}
