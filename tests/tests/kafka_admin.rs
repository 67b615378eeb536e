//! Kafka topic administration through the Kafka listener, in the raw protocol:
//! CreatePartitions grows a topic through the native CreatePartitions; AlterConfigs and
//! IncrementalAlterConfigs change its settings; DeleteRecords moves partitions' log start.

use integration_tests::{create_topic, Broker};
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

mod kafka_wire;
use kafka_wire::Conn;

const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
const INVALID_REQUEST: i16 = 42;
const POLICY_VIOLATION: i16 = 44;

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

/// The native settings of `topic`.
fn settings(b: &Broker, topic: &str) -> wire::TopicConfig {
    let d: wire::DescribeTopicResponse =
        b.connect().call(&wire::DescribeTopicRequest { name: topic.into() });
    d.topic.expect("the topic").config
}

/// AlterConfigs (v0 and the flexible v2) replaces a topic's whole config: what it does not
/// name goes back to the default (`cleanup.policy` too: delete); `cleanup.policy` turns
/// compaction on and off (`compact,delete` keeps Kafka's default retention); a broker
/// resource, an unknown topic and the offsets topic are refused; validate-only changes
/// nothing. IncrementalAlterConfigs v1 SETs and DELETEs one config and leaves the others; a
/// policy the retention would contradict is refused.
#[test]
fn kafka_alter_configs_replace_and_incremental_alter_configs_change_one() {
    use kafka_protocol::messages::{
        alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest,
        AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    };
    const INVALID_CONFIG: i16 = 40;
    let b = Broker::start_with_env(1, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    create_topic(&mut b.connect(), "c", 1);
    let mut c = Conn::new(&b);
    let s = |v: &str| StrBytes::from_string(v.to_owned());
    let resource = |kind: i8, name: &str, configs: &[(&str, &str)]| {
        let mut r = alter_configs_request::AlterConfigsResource::default();
        r.resource_type = kind;
        r.resource_name = s(name);
        r.configs = configs
            .iter()
            .map(|(k, v)| {
                let mut e = alter_configs_request::AlterableConfig::default();
                e.name = s(k);
                e.value = Some(s(v));
                e
            })
            .collect();
        r
    };
    let mut alter = |version: i16, resources, validate_only| {
        let mut req = AlterConfigsRequest::default();
        req.resources = resources;
        req.validate_only = validate_only;
        let answer: AlterConfigsResponse = c.call(ApiKey::AlterConfigs, version, &req);
        answer.responses.iter().map(|r| r.error_code).collect::<Vec<_>>()
    };
    let set = [("retention.ms", "60000"), ("segment.ms", "120000")];
    assert_eq!(alter(0, vec![resource(2, "c", &set)], true), [0]);
    assert_eq!(settings(&b, "c").retention_ms, -1, "validate-only changed nothing");
    assert_eq!(alter(0, vec![resource(2, "c", &set)], false), [0]);
    let now = settings(&b, "c");
    assert_eq!((now.retention_ms, now.segment_ms), (60_000, 120_000));
    // Replaced whole: segment.ms and retention.ms go back to the default.
    let only = [("retention.bytes", "9000000"), ("cleanup.policy", "delete")];
    assert_eq!(alter(2, vec![resource(2, "c", &only)], false), [0]);
    let now = settings(&b, "c");
    assert_eq!((now.retention_bytes, now.retention_ms, now.segment_ms), (9_000_000, 0, 0));
    let refused = vec![
        resource(2, "c", &[("cleanup.policy", "compact")]),
        resource(4, "0", &[("log.retention.ms", "1")]),
        resource(2, "nope", &[("retention.ms", "1")]),
        resource(2, "__consumer_offsets", &[("retention.ms", "1")]),
        resource(2, "c", &[("retention.ms", "2")]),
    ];
    // "c" named twice: both refused (the first's cleanup.policy change is too).
    let codes = alter(1, refused, false);
    let want = [INVALID_REQUEST, INVALID_REQUEST, UNKNOWN_TOPIC_OR_PARTITION, POLICY_VIOLATION];
    assert_eq!(codes, [&want[..], &[INVALID_REQUEST]].concat());
    let twice = vec![resource(2, "c", &[("retention.ms", "7")]), resource(2, "c", &[])];
    assert_eq!(alter(1, twice, false), [INVALID_REQUEST, INVALID_REQUEST]);
    assert_ne!(settings(&b, "c").retention_ms, 7, "neither was made");
    let bad = vec![resource(2, "c", &[("retention.ms", "-5"), ("cleanup.policy", "compact")])];
    assert_eq!(alter(1, bad, false), [INVALID_CONFIG]);
    let bad = vec![resource(2, "c", &[("cleanup.policy", "sometimes")])];
    assert_eq!(alter(1, bad, false), [INVALID_CONFIG]);
    let now = settings(&b, "c");
    assert_eq!((now.retention_bytes, now.compact), (9_000_000, false), "nothing refused was made");
    // Replaced whole: compacted, and without retention named Kafka's default retention.ms.
    let compact = vec![resource(2, "c", &[("cleanup.policy", "compact,delete")])];
    assert_eq!(alter(1, compact, false), [0]);
    let now = settings(&b, "c");
    assert_eq!((now.compact, now.retention_ms, now.retention_bytes), (true, 604_800_000, 0));
    // Not named: back to delete.
    assert_eq!(alter(0, vec![resource(2, "c", &[("retention.ms", "5000")])], false), [0]);
    let now = settings(&b, "c");
    assert_eq!((now.compact, now.retention_ms), (false, 5_000));
    // Incremental: SET one, DELETE another, the rest stays.
    let op = |name: &str, op: i8, value: Option<&str>| {
        let mut e = incremental_alter_configs_request::AlterableConfig::default();
        e.name = s(name);
        e.config_operation = op;
        e.value = value.map(s);
        e
    };
    let mut r = incremental_alter_configs_request::AlterConfigsResource::default();
    r.resource_type = 2;
    r.resource_name = s("c");
    r.configs = vec![op("segment.ms", 0, Some("30000")), op("retention.bytes", 1, None)];
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![r];
    let answer: IncrementalAlterConfigsResponse = c.call(ApiKey::IncrementalAlterConfigs, 1, &req);
    assert_eq!(answer.responses[0].error_code, 0, "{answer:?}");
    let now = settings(&b, "c");
    assert_eq!((now.segment_ms, now.retention_bytes), (30_000, 0));
    // On a compacted topic retention would change cleanup.policy (compact → compact,delete):
    // refused, as is a SET without a value.
    let compacted = wire::CreateTopicRequest {
        name: "kept".into(),
        config: wire::TopicConfig { partition_count: 1, compact: true, ..Default::default() },
    };
    let created: wire::CreateTopicResponse = b.connect().call(&compacted);
    assert_eq!(created.error, 0, "{}", created.message);
    let mut one = |name: &str, configs| {
        let mut r = incremental_alter_configs_request::AlterConfigsResource::default();
        (r.resource_type, r.resource_name, r.configs) = (2, s(name), configs);
        let mut req = IncrementalAlterConfigsRequest::default();
        req.resources = vec![r];
        let answer: IncrementalAlterConfigsResponse =
            c.call(ApiKey::IncrementalAlterConfigs, 1, &req);
        answer.responses[0].error_code
    };
    assert_eq!(one("kept", vec![op("retention.ms", 0, Some("1000"))]), INVALID_CONFIG);
    assert_eq!(one("c", vec![op("retention.ms", 0, None)]), INVALID_REQUEST);
    assert_eq!(settings(&b, "kept").retention_ms, 0, "the compacted topic kept its policy");
    // Named with it, the policy changes: compact,delete with retention; compact alone while
    // retention is set would be compact,delete (refused); with retention deleted, compact.
    let both =
        vec![op("retention.ms", 0, Some("1000")), op("cleanup.policy", 0, Some("compact,delete"))];
    assert_eq!(one("kept", both), 0);
    assert_eq!(settings(&b, "kept").retention_ms, 1_000);
    assert_eq!(one("kept", vec![op("cleanup.policy", 0, Some("compact"))]), INVALID_CONFIG);
    let only = vec![op("cleanup.policy", 0, Some("compact")), op("retention.ms", 1, None)];
    assert_eq!(one("kept", only), 0);
    let now = settings(&b, "kept");
    assert_eq!((now.compact, now.retention_ms), (true, 0));
    // DELETE: the default, delete.
    assert_eq!(one("kept", vec![op("cleanup.policy", 1, None)]), 0);
    assert!(!settings(&b, "kept").compact);
}

/// Each partition's (error code, low watermark), in request order, for DeleteRecords of
/// `(topic, partition, offset)`.
fn delete_records(c: &mut Conn, version: i16, asked: &[(&str, i32, i64)]) -> Vec<(i16, i64)> {
    let mut req = DeleteRecordsRequest::default();
    req.timeout_ms = 10_000;
    for &(name, partition, offset) in asked {
        let mut p = DeleteRecordsPartition::default();
        p.partition_index = partition;
        p.offset = offset;
        let mut t = DeleteRecordsTopic::default();
        t.name = TopicName(StrBytes::from_string(name.to_owned()));
        t.partitions = vec![p];
        req.topics.push(t);
    }
    let answer: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, version, &req);
    answer
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (p.error_code, p.low_watermark)))
        .collect()
}

/// The native earliest offset of `topic`'s partition 0.
fn earliest(b: &Broker, topic: &str) -> u64 {
    let r: wire::ListOffsetsResponse = b.connect().call(&wire::ListOffsetsRequest {
        topics: vec![wire::ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![wire::ListOffsetsPartition {
                partition: 0,
                spec: wire::OffsetSpec::Earliest,
            }],
        }],
    });
    r.topics[0].partitions[0].offset
}

/// DeleteRecords (v0 and the flexible v2) moves each partition's log start and answers it as
/// the low watermark; -1 is the high watermark; past it, below -1, an unknown partition, a
/// compacted topic and the offsets topic are refused with Kafka's codes.
#[test]
fn kafka_delete_records_moves_the_log_start() {
    let b = Broker::start_with_env(2, &[("BROKER_KAFKA_LISTEN", "127.0.0.1:0")]);
    create_topic(&mut b.connect(), "d", 2);
    for p in 0..2 {
        let mut batch = wire::BatchBuilder::new(1 << 16);
        for i in 0..10 {
            batch.append(i, None, Some(&b"v"[..]), &[]).unwrap();
        }
        let batch = batch.finish().unwrap();
        let r =
            integration_tests::produce(&mut b.connect(), "d", p, &batch, wire::AckLevel::Durable);
        assert_eq!(r.error, 0);
    }
    let compacted: wire::CreateTopicResponse = b.connect().call(&wire::CreateTopicRequest {
        name: "c".into(),
        config: wire::TopicConfig { partition_count: 1, compact: true, ..Default::default() },
    });
    assert_eq!(compacted.error, 0);
    let mut c = Conn::new(&b);
    let asked = [("d", 0, 4), ("d", 1, -1), ("d", 9, 1), ("nope", 0, 1), ("c", 0, -1)];
    assert_eq!(
        delete_records(&mut c, 0, &asked),
        [
            (0, 4),
            (0, 10),
            (UNKNOWN_TOPIC_OR_PARTITION, -1),
            (UNKNOWN_TOPIC_OR_PARTITION, -1),
            (POLICY_VIOLATION, -1)
        ]
    );
    assert_eq!(earliest(&b, "d"), 4);
    let asked = [("d", 0, 11), ("d", 0, -2), ("__consumer_offsets", 0, -1)];
    assert_eq!(
        delete_records(&mut c, 2, &asked),
        [(OFFSET_OUT_OF_RANGE, -1), (OFFSET_OUT_OF_RANGE, -1), (TOPIC_AUTHORIZATION_FAILED, -1)]
    );
    assert_eq!(delete_records(&mut c, 2, &[("d", 0, 2)]), [(0, 4)], "below the start: no change");
    assert_eq!(delete_records(&mut c, 1, &[("d", 0, 7)]), [(0, 7)]);
    assert_eq!(earliest(&b, "d"), 7);
}

/// With authentication configured off, Kafka's ACL administration answers SECURITY_DISABLED
/// (as Kafka without an authorizer): rules stored then would look in force and not be.
#[test]
fn kafka_acl_requests_with_authentication_off_are_security_disabled() {
    use kafka_protocol::messages::create_acls_request::AclCreation;
    use kafka_protocol::messages::{
        CreateAclsRequest, CreateAclsResponse, DescribeAclsRequest, DescribeAclsResponse,
    };
    const SECURITY_DISABLED: i16 = 54;
    let env = [("BROKER_KAFKA_LISTEN", "127.0.0.1:0"), ("BROKER_AUTH", "off")];
    let b = Broker::start_with_env(1, &env);
    let mut c = Conn::new(&b);
    let mut creation = AclCreation::default();
    creation.resource_type = 2;
    creation.resource_name = StrBytes::from_static_str("t");
    creation.resource_pattern_type = 3;
    creation.principal = StrBytes::from_static_str("User:alice");
    creation.host = StrBytes::from_static_str("*");
    creation.operation = 3;
    creation.permission_type = 3;
    let mut req = CreateAclsRequest::default();
    req.creations = vec![creation];
    let answer: CreateAclsResponse = c.call(ApiKey::CreateAcls, 1, &req);
    assert_eq!(answer.results[0].error_code, SECURITY_DISABLED);
    let mut req = DescribeAclsRequest::default();
    req.resource_type_filter = 1;
    req.resource_name_filter = None;
    req.pattern_type_filter = 1;
    req.principal_filter = None;
    req.host_filter = None;
    req.operation = 1;
    req.permission_type = 1;
    let answer: DescribeAclsResponse = c.call(ApiKey::DescribeAcls, 2, &req);
    assert_eq!(answer.error_code, SECURITY_DISABLED);
    let acls: wire::ListAclsResponse =
        b.connect().call(&wire::ListAclsRequest { principal: String::new() });
    assert!(acls.acls.is_empty(), "nothing stored: {:?}", acls.acls);
}

/// DescribeCluster (v0–2) names this node as the one broker and the controller, with the
/// cluster's authorized operations when asked (all of them with authentication off) and
/// MISMATCHED_ENDPOINT_TYPE for controller endpoints; DescribeClientQuotas answers that none
/// are configured; a SCRAM credential alteration naming a user longer than any user name can
/// be is refused for that user, one naming more users than twice `auth.users_max` is refused
/// whole (the connection closes), and the broker goes on serving.
#[test]
fn kafka_describe_cluster_client_quotas_and_bounded_credential_requests() {
    use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialDeletion;
    use kafka_protocol::messages::{
        AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
        DescribeClientQuotasRequest, DescribeClientQuotasResponse, DescribeClusterRequest,
        DescribeClusterResponse,
    };
    use std::io::{Read, Write};
    const MISMATCHED_ENDPOINT_TYPE: i16 = 114;
    const UNSUPPORTED_ENDPOINT_TYPE: i16 = 115;
    const UNACCEPTABLE_CREDENTIAL: i16 = 93;
    let env = [("BROKER_KAFKA_LISTEN", "127.0.0.1:0"), ("BROKER_AUTH", "off")];
    let b = Broker::start_with_env(1, &env);
    let mut c = Conn::new(&b);
    let addr = kafka_wire::kafka_addr(&b);
    for version in 0..=2 {
        let mut req = DescribeClusterRequest::default();
        req.include_cluster_authorized_operations = true;
        req.endpoint_type = 1;
        let answer: DescribeClusterResponse = c.call(ApiKey::DescribeCluster, version, &req);
        assert_eq!(answer.error_code, 0, "v{version}");
        assert_eq!(answer.brokers.len(), 1);
        assert_eq!(answer.controller_id, answer.brokers[0].broker_id);
        assert_eq!(format!("{}:{}", answer.brokers[0].host.as_str(), answer.brokers[0].port), addr);
        assert!(!answer.cluster_id.is_empty());
        let all = 1 << 5 | 1 << 7 | 1 << 8 | 1 << 10 | 1 << 11 | 1 << 12;
        assert_eq!(answer.cluster_authorized_operations, all, "v{version}");
    }
    let mut req = DescribeClusterRequest::default();
    req.endpoint_type = 2;
    let answer: DescribeClusterResponse = c.call(ApiKey::DescribeCluster, 1, &req);
    assert_eq!(answer.error_code, MISMATCHED_ENDPOINT_TYPE);
    req.endpoint_type = 0;
    let answer: DescribeClusterResponse = c.call(ApiKey::DescribeCluster, 2, &req);
    assert_eq!((answer.error_code, answer.endpoint_type), (UNSUPPORTED_ENDPOINT_TYPE, 1));
    let answer: DescribeClientQuotasResponse =
        c.call(ApiKey::DescribeClientQuotas, 1, &DescribeClientQuotasRequest::default());
    assert_eq!((answer.error_code, answer.entries), (0, Some(Vec::new())));
    // A user name of 4 KiB is refused for that user (the request's names are not copied).
    let mut req = AlterUserScramCredentialsRequest::default();
    let mut deletion = ScramCredentialDeletion::default();
    deletion.name = StrBytes::from_string("u".repeat(4096));
    deletion.mechanism = 1;
    req.deletions = vec![deletion];
    let answer: AlterUserScramCredentialsResponse =
        c.call(ApiKey::AlterUserScramCredentials, 0, &req);
    assert_eq!(answer.results.len(), 1);
    assert_eq!(answer.results[0].error_code, UNACCEPTABLE_CREDENTIAL);
    assert_eq!(answer.results[0].user.len(), 4096);
    // More entries than twice `auth.users_max` (10,000): refused whole, the connection closed.
    let mut req = AlterUserScramCredentialsRequest::default();
    let mut deletion = ScramCredentialDeletion::default();
    deletion.name = StrBytes::from_static_str("u");
    deletion.mechanism = 1;
    req.deletions = vec![deletion; 20_001];
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    s.write_all(&kafka_wire::frame(ApiKey::AlterUserScramCredentials, 0, 7, &req)).unwrap();
    let mut rest = Vec::new();
    assert!(matches!(s.read_to_end(&mut rest), Ok(0)) || rest.is_empty(), "refused whole");
    let answer: DescribeClientQuotasResponse =
        c.call(ApiKey::DescribeClientQuotas, 0, &DescribeClientQuotasRequest::default());
    assert_eq!(answer.error_code, 0, "still serving");
}
