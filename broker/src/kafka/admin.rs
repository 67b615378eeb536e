//! Cluster-level apis: ApiVersions, Metadata, FindCoordinator, CreateTopics, DeleteTopics,
//! CreatePartitions, DescribeConfigs.
//!
//! The broker is one Kafka node (id [`NODE_ID`]) that leads every partition; the
//! coordinator of every group is that node too. Topic changes go through the native
//! CreateTopic/DeleteTopic/CreatePartitions handlers (shard 0 makes them and broadcasts).

use kafka_protocol::messages::{
    api_versions_response, create_partitions_response, create_topics_response,
    delete_topics_response, describe_cluster_response, describe_configs_response,
    metadata_response, ApiKey, BrokerId, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeClusterRequest, DescribeClusterResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as K;

use super::connection::{ready, respond, Answer, Ctx, Session};
use super::error::{kafka_code_raw, KafkaError};
use super::native;
use crate::auth::acl::{Operation, Resource};
use crate::metadata::Topic;

/// The broker's node id in Kafka's eyes.
pub const NODE_ID: i32 = 0;
/// The cluster id Metadata reports.
pub const CLUSTER_ID: &str = "shard-per-core-broker";

/// Apis and versions this listener speaks (each also capped by what the codec crate knows).
/// Produce from v3 (record batch v2) and Fetch from v4 (as the issue asks); Fetch stops at
/// v12 and Metadata at v12 (later versions name topics by id only); OffsetFetch at v7 (v8
/// batches groups); FindCoordinator at v3 (v4 batches keys); ListOffsets at v6 (v7 adds
/// MAX_TIMESTAMP, -3, which has no native spec: advertised, it was read as a timestamp and
/// answered the earliest record).
const SPOKEN: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 3),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 5),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeAcls, 0, 3),
    (ApiKey::CreateAcls, 0, 3),
    (ApiKey::DeleteAcls, 0, 3),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeClientQuotas, 0, 1),
    // v0 is advertised because librdkafka looks for it to enable SASL; it then speaks v1
    // (SaslAuthenticate frames). A v0 client's raw SASL tokens do not decode: closed.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// `(min, max)` versions of `api` this listener speaks, if any.
pub fn versions(api: ApiKey) -> Option<(i16, i16)> {
    let &(_, min, max) = SPOKEN.iter().find(|(a, _, _)| *a == api)?;
    let known = api.valid_versions();
    let (min, max) = (min.max(known.min), max.min(known.max));
    (min <= max).then_some((min, max))
}

/// Whether this listener speaks `api` at `version`.
pub fn speaks(api: ApiKey, version: i16) -> bool {
    versions(api).is_some_and(|(min, max)| (min..=max).contains(&version))
}

/// ApiVersions: every api and version range this listener speaks.
pub fn api_versions(ctx: Ctx, error_code: i16) -> Option<Vec<u8>> {
    let mut out = kafka_protocol::messages::ApiVersionsResponse::default();
    out.error_code = error_code;
    for &(api, _, _) in SPOKEN {
        if let Some((min, max)) = versions(api) {
            let mut v = api_versions_response::ApiVersion::default();
            v.api_key = api as i16;
            v.min_version = min;
            v.max_version = max;
            out.api_keys.push(v);
        }
    }
    respond(ctx, &out)
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

/// Metadata: this node, and each topic asked for (all but the internal ones when none is
/// named) with every partition led by it.
pub fn metadata(s: &Session, ctx: Ctx, req: MetadataRequest) -> Option<Vec<u8>> {
    let (host, port) = s.advertised();
    let mut out = MetadataResponse::default();
    let mut broker = metadata_response::MetadataResponseBroker::default();
    broker.node_id = BrokerId(NODE_ID);
    broker.host = StrBytes::from_string(host);
    broker.port = port;
    out.brokers.push(broker);
    out.cluster_id = Some(StrBytes::from_static_str(CLUSTER_ID));
    out.controller_id = BrokerId(NODE_ID);
    let meta = s.shard.metadata();
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && ctx.version == 0,
    };
    let names: Vec<String> = if all {
        meta.topics.keys().filter(|n| !n.starts_with("__")).cloned().collect()
    } else {
        // Each topic once, as Kafka (a request naming one topic thousands of times made
        // thousands of copies of its partitions' answer).
        let mut seen = std::collections::HashSet::new();
        req.topics
            .iter()
            .flatten()
            .filter_map(|t| t.name.as_ref().map(|n| n.as_str()))
            .filter(|n| seen.insert(*n))
            .map(str::to_owned)
            .collect()
    };
    for n in names {
        let mut t = metadata_response::MetadataResponseTopic::default();
        t.name = Some(name(&n));
        t.is_internal = n.starts_with("__");
        t.topic_authorized_operations = i32::MIN;
        if !super::sasl::may_describe(s, &n) {
            if !all {
                t.error_code = K::TopicAuthorizationFailed.code();
                out.topics.push(t);
            }
            continue;
        }
        match meta.topic(&n) {
            None => t.error_code = K::UnknownTopicOrPartition.code(),
            Some(topic) => t.partitions = partitions(topic),
        }
        out.topics.push(t);
    }
    out.cluster_authorized_operations = i32::MIN;
    respond(ctx, &out)
}

/// DescribeCluster (v0–2; the Java admin client's `describeCluster`, librdkafka's
/// `describe_cluster`): this node as the one broker and the controller, never fenced. As
/// Kafka: any authenticated principal may ask; the cluster's authorized operations are
/// listed when asked for (else `i32::MIN`); asking a broker for controller endpoints (v1
/// `endpoint_type` 2) is MISMATCHED_ENDPOINT_TYPE, another type UNSUPPORTED_ENDPOINT_TYPE.
pub fn describe_cluster(s: &Session, ctx: Ctx, req: DescribeClusterRequest) -> Option<Vec<u8>> {
    let mut out = DescribeClusterResponse::default();
    out.cluster_authorized_operations = i32::MIN;
    if ctx.version >= 1 && req.endpoint_type != 1 {
        // As Kafka: the answer names its own endpoint type (brokers, 1).
        let (code, why) = match req.endpoint_type {
            2 => (K::MismatchedEndpointType, "a broker endpoint: brokers (type 1) only"),
            _ => (K::UnsupportedEndpointType, "endpoint types are 1 (brokers), 2"),
        };
        out.error_code = code.code();
        out.error_message = Some(StrBytes::from_static_str(why));
        return respond(ctx, &out);
    }
    let (host, port) = s.advertised();
    let mut broker = describe_cluster_response::DescribeClusterBroker::default();
    broker.broker_id = BrokerId(NODE_ID);
    broker.host = StrBytes::from_string(host);
    broker.port = port;
    out.brokers.push(broker);
    out.cluster_id = StrBytes::from_static_str(CLUSTER_ID);
    out.controller_id = BrokerId(NODE_ID);
    if req.include_cluster_authorized_operations {
        out.cluster_authorized_operations = cluster_operations(s);
    }
    respond(ctx, &out)
}

/// Kafka's bit field of the operations the principal may do on the cluster (bit n = Kafka's
/// operation n), 0 without DESCRIBE on it, as Kafka: CREATE 5; ALTER 7 and ALTER_CONFIGS 11
/// (alter here); DESCRIBE 8 and DESCRIBE_CONFIGS 10 (describe here); IDEMPOTENT_WRITE 12,
/// which WRITE implies here. (CLUSTER_ACTION has no native form.)
fn cluster_operations(s: &Session) -> i32 {
    use super::sasl::permits;
    if !permits(s, Operation::Describe, Resource::Cluster) {
        return 0;
    }
    let ops = [
        (Operation::Create, 1 << 5),
        (Operation::Alter, 1 << 7 | 1 << 11),
        (Operation::Describe, 1 << 8 | 1 << 10),
        (Operation::Write, 1 << 12),
    ];
    ops.iter().filter(|(op, _)| permits(s, *op, Resource::Cluster)).fold(0, |bits, (_, b)| bits | b)
}

fn partitions(topic: &Topic) -> Vec<metadata_response::MetadataResponsePartition> {
    (0..topic.settings.partition_count as i32)
        .map(|i| {
            let mut p = metadata_response::MetadataResponsePartition::default();
            p.partition_index = i;
            p.leader_id = BrokerId(NODE_ID);
            p.leader_epoch = -1;
            p.replica_nodes = vec![BrokerId(NODE_ID)];
            p.isr_nodes = vec![BrokerId(NODE_ID)];
            p
        })
        .collect()
}

/// FindCoordinator: this node coordinates every group (and would every transaction).
pub fn find_coordinator(s: &Session, ctx: Ctx, _req: FindCoordinatorRequest) -> Option<Vec<u8>> {
    let (host, port) = s.advertised();
    let mut out = FindCoordinatorResponse::default();
    out.node_id = BrokerId(NODE_ID);
    out.host = StrBytes::from_string(host);
    out.port = port;
    respond(ctx, &out)
}

/// Kafka topic configs mapped onto native topic settings (others are refused).
fn apply_config(config: &mut wire::TopicConfig, key: &str, value: &str) -> Result<(), String> {
    let int = |v: &str| v.parse::<i64>().map_err(|e| format!("{key}={v}: {e}"));
    match key {
        "retention.ms" => config.retention_ms = int(value)?,
        "retention.bytes" => config.retention_bytes = int(value)?,
        "segment.bytes" => config.segment_bytes_max = int(value)?.max(0) as u64,
        "segment.ms" => config.segment_ms = int(value)?,
        "max.message.bytes" => {
            config.batch_bytes_max = int(value)?.clamp(0, i64::from(u32::MAX)) as u32
        }
        "cleanup.policy" => match value {
            "delete" => config.compact = false,
            "compact" => config.compact = true,
            "compact,delete" | "delete,compact" => {
                config.compact = true;
                if config.retention_ms == 0 {
                    // Kafka's default retention applies as well (a compacted topic alone keeps
                    // everything by age).
                    config.retention_ms = crate::storage::LogConfig::default().retention_ms;
                }
            }
            _ => return Err(format!("cleanup.policy={value}: delete, compact or compact,delete")),
        },
        "delete.retention.ms" => config.delete_retention_ms = int(value)?,
        "min.insync.replicas" | "compression.type" | "message.timestamp.type" => {}
        _ => return Err(format!("topic config {key} is not supported")),
    }
    Ok(())
}

/// CreateTopics: each through the native create (on shard 0).
pub async fn create_topics(s: &Session, ctx: Ctx, req: CreateTopicsRequest) -> Answer {
    let mut out = CreateTopicsResponse::default();
    for t in &req.topics {
        let mut r = create_topics_response::CreatableTopicResult::default();
        r.name = t.name.clone();
        r.num_partitions = t.num_partitions;
        r.replication_factor = 1;
        let mut config = wire::TopicConfig {
            partition_count: if t.num_partitions <= 0 { 1 } else { t.num_partitions as u32 },
            ..Default::default()
        };
        let mut refused = None;
        if t.replication_factor > 1 {
            refused = Some((
                K::InvalidReplicationFactor.code(),
                "single-node cluster: replication factor 1 only".to_owned(),
            ));
        }
        for c in &t.configs {
            if let Err(e) =
                apply_config(&mut config, c.name.as_str(), c.value.as_deref().unwrap_or(""))
            {
                refused = Some((K::InvalidConfig.code(), e));
            }
        }
        if let Some((code, message)) = refused {
            r.error_code = code;
            r.error_message = Some(StrBytes::from_string(message));
        } else if req.validate_only {
            if !crate::metadata::is_valid_name(t.name.as_str()) {
                r.error_code = K::InvalidTopicException.code();
            }
        } else {
            let native_req = wire::CreateTopicRequest { name: t.name.as_str().to_owned(), config };
            let result: Result<wire::CreateTopicResponse, KafkaError> =
                native::call(s, &native_req).await;
            match result {
                Ok(resp) if resp.error != 0 => {
                    r.error_code = kafka_code_raw(resp.error);
                    r.error_message = Some(StrBytes::from_string(resp.message));
                }
                Ok(resp) => {
                    if let Some(topic) = resp.topic {
                        r.num_partitions = topic.partitions.len() as i32;
                    }
                }
                Err(e) => {
                    r.error_code = e.code();
                    r.error_message = Some(StrBytes::from_string(e.to_string()));
                }
            }
        }
        out.topics.push(r);
    }
    ready(respond(ctx, &out))
}

/// DeleteTopics (by name).
pub async fn delete_topics(s: &Session, ctx: Ctx, req: DeleteTopicsRequest) -> Answer {
    let mut out = DeleteTopicsResponse::default();
    for n in &req.topic_names {
        let mut r = delete_topics_response::DeletableTopicResult::default();
        r.name = Some(n.clone());
        let result: Result<wire::DeleteTopicResponse, KafkaError> =
            native::call(s, &wire::DeleteTopicRequest { name: n.as_str().to_owned() }).await;
        match result {
            Ok(resp) if resp.error != 0 => {
                r.error_code = kafka_code_raw(resp.error);
                r.error_message = Some(StrBytes::from_string(resp.message));
            }
            Ok(_) => {}
            Err(e) => r.error_code = e.code(),
        }
        out.responses.push(r);
    }
    ready(respond(ctx, &out))
}

/// CreatePartitions: each topic grown by the native CreatePartitions (the new partitions go
/// to the least loaded shards). Replica assignments are refused: one node holds every
/// partition and places them itself.
pub async fn create_partitions(s: &Session, ctx: Ctx, req: CreatePartitionsRequest) -> Answer {
    let mut out = CreatePartitionsResponse::default();
    let mut seen = std::collections::HashSet::new();
    for t in &req.topics {
        let mut r = create_partitions_response::CreatePartitionsTopicResult::default();
        r.name = t.name.clone();
        let refused = if !seen.insert(t.name.as_str()) {
            Some((K::InvalidRequest.code(), "the topic is named twice".to_owned()))
        } else if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            let why = "replica assignments: one node holds every partition and places them";
            Some((K::InvalidReplicaAssignment.code(), why.to_owned()))
        } else if t.count < 1 {
            Some((K::InvalidPartitions.code(), format!("{} partitions", t.count)))
        } else {
            None
        };
        if let Some((code, message)) = refused {
            r.error_code = code;
            r.error_message = Some(StrBytes::from_string(message));
        } else if req.validate_only {
            // The checks the change would make, changing nothing.
            let name = t.name.as_str();
            let md = s.shard.metadata();
            if !super::sasl::allowed(s, Operation::Alter, Resource::Topic(name)) {
                r.error_code = K::TopicAuthorizationFailed.code();
            } else if let Err((code, message)) =
                crate::api::admin::grown(&s.shard, &md, name, t.count as u32)
            {
                r.error_code = partitions_code(code);
                r.error_message = Some(StrBytes::from_string(message));
            }
        } else {
            let native_req = wire::CreatePartitionsRequest {
                name: t.name.as_str().to_owned(),
                partition_count: t.count as u32,
            };
            let result: Result<wire::CreatePartitionsResponse, KafkaError> =
                native::call(s, &native_req).await;
            match result {
                Ok(resp) if resp.error != 0 => {
                    let code = wire::ErrorCode::from_u16(resp.error);
                    r.error_code = code.map_or(kafka_code_raw(resp.error), partitions_code);
                    r.error_message = Some(StrBytes::from_string(resp.message));
                }
                Ok(_) => {}
                Err(e) => {
                    r.error_code = e.code();
                    r.error_message = Some(StrBytes::from_string(e.to_string()));
                }
            }
        }
        out.results.push(r);
    }
    ready(respond(ctx, &out))
}

/// A native refusal of CreatePartitions in Kafka's terms (a count it cannot take is
/// INVALID_PARTITIONS there).
fn partitions_code(code: wire::ErrorCode) -> i16 {
    match code {
        wire::ErrorCode::InvalidTopicConfig => K::InvalidPartitions.code(),
        code => super::error::kafka_code(code),
    }
}

/// Kafka's resource type numbers in DescribeConfigs.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Kafka's `cleanup.policy` of a topic's log settings.
pub(super) fn cleanup_policy(c: &crate::storage::LogConfig) -> &'static str {
    match (c.compact, c.retention_ms >= 0 || c.retention_bytes >= 0) {
        (false, _) => "delete",
        (true, false) => "compact",
        (true, true) => "compact,delete",
    }
}

/// Kafka's `max.message.bytes` of a topic: its batch limit.
pub(super) fn batch_bytes_max(settings: &crate::metadata::TopicSettings) -> u32 {
    match settings.batch_bytes_max {
        0 => wire::constants::BATCH_BYTES_MAX,
        b => b,
    }
}

/// Whether Kafka config `key` of a topic is set on the topic (DescribeConfigs source
/// TOPIC_CONFIG) rather than the broker's default (DEFAULT_CONFIG).
fn set_on_topic(settings: &crate::metadata::TopicSettings, key: &str) -> bool {
    match key {
        "cleanup.policy" => settings.compact,
        "delete.retention.ms" => settings.delete_retention_ms != 0,
        "retention.ms" => settings.retention_ms != 0,
        "retention.bytes" => settings.retention_bytes != 0,
        "segment.bytes" => settings.segment_bytes_max != 0,
        "segment.ms" => settings.segment_ms != 0,
        "max.message.bytes" => settings.batch_bytes_max != 0,
        _ => false,
    }
}

/// DescribeConfigs: a topic's settings under Kafka's names (what clients and tools read);
/// a broker resource answers with the few broker-wide values clients look at.
pub fn describe_configs(s: &Session, ctx: Ctx, req: DescribeConfigsRequest) -> Option<Vec<u8>> {
    let shard = &s.shard;
    let meta = shard.metadata();
    let log = &shard.config.log;
    let mut out = DescribeConfigsResponse::default();
    // Each resource once (a request repeating one made as many copies of its answer).
    let mut seen = std::collections::HashSet::new();
    let resources =
        req.resources.iter().filter(|r| seen.insert((r.resource_type, r.resource_name.as_str())));
    for res in resources {
        let mut r = describe_configs_response::DescribeConfigsResult::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let entries: Vec<(&str, String)> = match res.resource_type {
            RESOURCE_TOPIC if !super::sasl::may_describe(s, res.resource_name.as_str()) => {
                r.error_code = K::TopicAuthorizationFailed.code();
                Vec::new()
            }
            RESOURCE_TOPIC => match meta.topic(res.resource_name.as_str()) {
                None => {
                    r.error_code = K::UnknownTopicOrPartition.code();
                    Vec::new()
                }
                Some(topic) => {
                    let c = topic.settings.log_config(log);
                    let batch = batch_bytes_max(&topic.settings);
                    vec![
                        ("cleanup.policy", cleanup_policy(&c).into()),
                        ("delete.retention.ms", c.delete_retention_ms.to_string()),
                        ("retention.ms", c.retention_ms.to_string()),
                        ("retention.bytes", c.retention_bytes.to_string()),
                        ("segment.bytes", c.segment_bytes_max.to_string()),
                        (
                            "segment.ms",
                            (if c.segment_ms == 0 { -1 } else { c.segment_ms }).to_string(),
                        ),
                        ("max.message.bytes", batch.to_string()),
                        ("min.insync.replicas", "1".into()),
                        ("compression.type", "producer".into()),
                        ("message.timestamp.type", "CreateTime".into()),
                    ]
                }
            },
            RESOURCE_BROKER => vec![
                ("auto.create.topics.enable", "false".into()),
                ("default.replication.factor", "1".into()),
                ("num.partitions", "1".into()),
                ("message.max.bytes", wire::constants::BATCH_BYTES_MAX.to_string()),
            ],
            _ => {
                r.error_code = K::InvalidRequest.code();
                Vec::new()
            }
        };
        for (k, v) in entries {
            let wanted = res
                .configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.is_empty() || keys.iter().any(|w| w.as_str() == k));
            if wanted {
                let mut e = describe_configs_response::DescribeConfigsResourceResult::default();
                e.name = StrBytes::from_static_str(k);
                e.value = Some(StrBytes::from_string(v));
                e.read_only = res.resource_type == RESOURCE_BROKER;
                // TOPIC_CONFIG (1) for what the topic sets, DEFAULT_CONFIG (5) otherwise:
                // tools show the overrides, and a client of the older AlterConfigs sends
                // them back along with its change.
                let topic = meta.topic(res.resource_name.as_str());
                let overridden = res.resource_type == RESOURCE_TOPIC
                    && topic.is_some_and(|t| set_on_topic(&t.settings, k));
                e.config_source = if overridden { 1 } else { 5 };
                r.configs.push(e);
            }
        }
        out.results.push(r);
    }
    respond(ctx, &out)
}
