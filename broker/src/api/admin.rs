//! Handshake, metadata, topic administration and stats.

use std::rc::Rc;
use std::sync::Arc;

use wire::{
    AlterTopicConfigRequest, AlterTopicConfigResponse, ApiKey, ApiVersionRange,
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicRequest, CreateTopicResponse,
    DeleteTopicRequest, DeleteTopicResponse, DescribeTopicRequest, DescribeTopicResponse,
    ErrorCode, GroupPartitionLag, HandshakeRequest, HandshakeResponse, ListOffsetsPartition,
    ListOffsetsRequest, ListOffsetsResponse, ListOffsetsTopic, ListTopicsRequest,
    ListTopicsResponse, MetadataRequest, MetadataResponse, OffsetSpec, PartitionDescription,
    PartitionMetadata, ShardAddress, StatsRequest, StatsResponse, TopicMetadata, TopicSummary,
    GROUP_LAG_ENTRIES_MAX,
};

use super::forward::decode_reply;
use super::{error_frame, respond, Origin};
use crate::descriptors::FDS_PER_PARTITION;
use crate::group::OFFSETS_TOPIC;
use crate::metadata::{validate_name, Metadata, Topic, TopicSettings};
use crate::request::Request;
use crate::shard::Shard;

/// Agrees on a protocol version and reports the broker's limits.
pub fn handshake(shard: &Shard, request: &Request) -> wire::AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<HandshakeRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    let ours = (wire::constants::PROTOCOL_VERSION_MIN, wire::constants::PROTOCOL_VERSION);
    let version = req.protocol_version_max.min(ours.1);
    let error = if version < req.protocol_version_min.max(ours.0) {
        ErrorCode::UnsupportedVersion
    } else {
        ErrorCode::None
    };
    respond(
        &header,
        &HandshakeResponse {
            error: error.as_u16(),
            protocol_version: version,
            broker_version: env!("CARGO_PKG_VERSION").to_owned(),
            apis: ApiKey::ALL
                .iter()
                .map(|k| ApiVersionRange {
                    api_key: k.as_u16(),
                    version_min: k.versions().0,
                    version_max: k.versions().1,
                })
                .collect(),
            frame_body_bytes_max: shard.config.frame_body_bytes_max,
            batch_bytes_max: shard.config.log.batch_bytes_max as u32,
            shard_id: shard.id,
        },
    )
}

fn topic_metadata(t: &Topic) -> TopicMetadata {
    TopicMetadata {
        name: t.name.clone(),
        error: 0,
        config: t.settings.to_wire(),
        partitions: t
            .shards
            .iter()
            .enumerate()
            .map(|(p, &s)| PartitionMetadata { partition: p as u32, shard: s })
            .collect(),
    }
}

/// Shards, their addresses, and partition → shard for the topics asked.
pub fn metadata(shard: &Shard, request: &Request) -> wire::AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<MetadataRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    let md = shard.metadata();
    let topics = if req.topics.is_empty() {
        md.topics.values().map(topic_metadata).collect()
    } else {
        req.topics
            .iter()
            .map(|name| match md.topic(name) {
                Some(t) => topic_metadata(t),
                None => TopicMetadata {
                    name: name.clone(),
                    error: ErrorCode::UnknownTopic.as_u16(),
                    ..Default::default()
                },
            })
            .collect()
    };
    let shards = shard
        .addresses
        .shards
        .iter()
        .enumerate()
        .map(|(i, a)| ShardAddress { shard_id: i as u32, host: a.ip().to_string(), port: a.port() })
        .collect();
    let tables = md.tables.values().map(crate::metadata::DerivedTable::to_wire).collect();
    respond(&header, &MetadataResponse { shard_count: shard.shard_count, shards, topics, tables })
}

/// Topic names (with a prefix filter).
pub fn list_topics(shard: &Shard, request: &Request) -> wire::AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<ListTopicsRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    let md = shard.metadata();
    let topics = md
        .topics
        .values()
        .filter(|t| t.name.starts_with(&req.name_prefix))
        // Internal topics are listed only when asked for by a prefix (as Kafka lists them
        // only on request); metadata always has them (clients find coordinators there).
        .filter(|t| t.name != OFFSETS_TOPIC || !req.name_prefix.is_empty())
        .map(|t| TopicSummary { name: t.name.clone(), partition_count: t.shards.len() as u32 })
        .collect();
    respond(&header, &ListTopicsResponse { topics })
}

/// Creates a topic (on the controller shard, which owns metadata changes; `api::start`
/// forwards it there).
pub async fn create_topic(shard: &Rc<Shard>, request: &Request) -> wire::AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<CreateTopicRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    let settings = TopicSettings::from_wire(&req.config);
    // A bad name or config is the answer whatever the broker holds.
    if let Err(e) = validate_name(&req.name).and_then(|()| settings.validate()) {
        return respond(
            &header,
            &CreateTopicResponse { error: e.code().as_u16(), message: e.to_string(), topic: None },
        );
    }
    let _permit = shard.admin_lock.acquire_permit(1).await;
    let md = shard.metadata();
    if let Some(message) = no_room_for(shard, &md, req.config.partition_count) {
        let error = ErrorCode::ResourceLimit.as_u16();
        return respond(&header, &CreateTopicResponse { error, message, topic: None });
    }
    let next = match md.with_topic(&req.name, settings, shard.shard_count) {
        Ok(next) => next,
        Err(e) => {
            return respond(
                &header,
                &CreateTopicResponse {
                    error: e.code().as_u16(),
                    message: e.to_string(),
                    topic: None,
                },
            )
        }
    };
    if let Err(e) = persist(shard, &next) {
        return respond(
            &header,
            &CreateTopicResponse { error: ErrorCode::StorageIo.as_u16(), message: e, topic: None },
        );
    }
    let next = Arc::new(next);
    shard.broadcast_metadata(next.clone()).await;
    tracing::info!(topic = %req.name, partitions = req.config.partition_count, "topic created");
    let topic = next.topic(&req.name).map(topic_metadata);
    respond(&header, &CreateTopicResponse { error: 0, message: String::new(), topic })
}

/// Why the broker, holding what `md` says, has no room for `more` partitions (`None`: it has).
fn no_room_for(shard: &Shard, md: &Metadata, more: u32) -> Option<String> {
    let held: u64 = md.topics.values().map(|t| t.shards.len() as u64).sum();
    let files = &shard.storage_files;
    let partitions_max = shard.config.partitions_max.min(files.partitions_max());
    if held + u64::from(more) <= u64::from(partitions_max) {
        return None;
    }
    let why = if files.partitions_max() < shard.config.partitions_max {
        format!(
            "the storage descriptor budget ({} files: {FDS_PER_PARTITION} per partition, {} \
             for index files and reads; raise the open-files limit or storage_files_max)",
            files.files_max(),
            files.optional_max()
        )
    } else {
        "the configured limit".to_owned()
    };
    Some(format!(
        "the broker holds {held} partitions; {more} more would pass partitions_max \
         ({partitions_max}), set by {why}"
    ))
}

/// The metadata with topic `name` grown to `partition_count` partitions, or why it cannot
/// grow: the offsets topic, what `Metadata::with_partitions` refuses, no room. What the
/// change checks, shared with Kafka's validate-only CreatePartitions.
pub(crate) fn grown(
    shard: &Shard,
    md: &Metadata,
    name: &str,
    partition_count: u32,
) -> Result<Metadata, (ErrorCode, String)> {
    if name == OFFSETS_TOPIC {
        // A group's offsets partition is `crc32c(group) % count`: a new count loses them.
        return Err(internal_topic());
    }
    let now = md.topic(name).map_or(0, |t| t.settings.partition_count);
    let next = md
        .with_partitions(name, partition_count, shard.shard_count)
        .map_err(|e| (e.code(), e.to_string()))?;
    match no_room_for(shard, md, partition_count - now) {
        Some(message) => Err((ErrorCode::ResourceLimit, message)),
        None => Ok(next),
    }
}

/// Grows a topic to more partitions (on the controller shard): the new ones are placed on
/// the least loaded shards and opened there as the metadata is applied; the others stay.
pub async fn create_partitions(shard: &Rc<Shard>, request: &Request) -> wire::AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<CreatePartitionsRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    let refuse = |error: ErrorCode, message: String| {
        respond(&header, &CreatePartitionsResponse { error: error.as_u16(), message, topic: None })
    };
    let _permit = shard.admin_lock.acquire_permit(1).await;
    let md = shard.metadata();
    let now = md.topic(&req.name).map_or(0, |t| t.settings.partition_count);
    let next = match grown(shard, &md, &req.name, req.partition_count) {
        Ok(next) => next,
        Err((error, message)) => return refuse(error, message),
    };
    if let Err(e) = persist(shard, &next) {
        return refuse(ErrorCode::StorageIo, e);
    }
    let next = Arc::new(next);
    shard.broadcast_metadata(next.clone()).await;
    tracing::info!(topic = %req.name, from = now, to = req.partition_count, "topic grown");
    let topic = next.topic(&req.name).map(topic_metadata);
    respond(&header, &CreatePartitionsResponse { error: 0, message: String::new(), topic })
}

/// The refusal of a change to [`OFFSETS_TOPIC`].
fn internal_topic() -> (ErrorCode, String) {
    (ErrorCode::InternalTopic, format!("{OFFSETS_TOPIC} is the broker's internal topic"))
}

/// Changes settings of a topic (on the controller shard): persisted, then applied by every
/// shard to its open partitions as the metadata is (`Shard::apply_metadata`).
pub async fn alter_topic_config(shard: &Rc<Shard>, request: &Request) -> wire::AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<AlterTopicConfigRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    let refuse = |error: ErrorCode, message: String| {
        respond(&header, &AlterTopicConfigResponse { error: error.as_u16(), message, topic: None })
    };
    let changes: Vec<(String, String)> =
        req.changes.iter().map(|c| (c.name.clone(), c.value.clone())).collect();
    if req.name == OFFSETS_TOPIC {
        // Retention would delete groups' offsets.
        let (error, message) = internal_topic();
        return refuse(error, message);
    }
    let _permit = shard.admin_lock.acquire_permit(1).await;
    let next = match shard.metadata().with_settings(&req.name, &changes) {
        Ok(next) => Arc::new(next),
        Err(e) => return refuse(e.code(), e.to_string()),
    };
    if !req.validate_only {
        if let Err(e) = persist(shard, &next) {
            return refuse(ErrorCode::StorageIo, e);
        }
        shard.broadcast_metadata(next.clone()).await;
        tracing::info!(topic = %req.name, ?changes, "topic settings changed");
    }
    let topic = next.topic(&req.name).map(topic_metadata);
    respond(&header, &AlterTopicConfigResponse { error: 0, message: String::new(), topic })
}

/// Deletes a topic and its data (on the controller shard).
pub async fn delete_topic(shard: &Rc<Shard>, request: &Request) -> wire::AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<DeleteTopicRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    if req.name == OFFSETS_TOPIC {
        let (error, message) = internal_topic();
        return respond(&header, &DeleteTopicResponse { error: error.as_u16(), message });
    }
    let _permit = shard.admin_lock.acquire_permit(1).await;
    let next = match shard.metadata().without_topic(&req.name) {
        Ok(next) => next,
        Err(e) => {
            return respond(
                &header,
                &DeleteTopicResponse { error: e.code().as_u16(), message: e.to_string() },
            )
        }
    };
    if let Err(e) = persist(shard, &next) {
        return respond(
            &header,
            &DeleteTopicResponse { error: ErrorCode::StorageIo.as_u16(), message: e },
        );
    }
    shard.broadcast_metadata(Arc::new(next)).await;
    // Every shard moved its partitions to the trash while applying the metadata; what is left
    // of the topic's directory goes too (shard 0 frees the trash in the background).
    let dir = crate::layout::topic_dir(&shard.config.data_dir, &req.name);
    if let Err(e) = crate::trash::move_to_trash(&shard.config.data_dir, &dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot move topic directory to the trash");
    }
    tracing::info!(topic = %req.name, "topic deleted");
    respond(&header, &DeleteTopicResponse { error: 0, message: String::new() })
}

pub(super) fn persist(shard: &Shard, next: &Metadata) -> Result<(), String> {
    next.store(&shard.config.data_dir).map_err(|e| format!("cannot persist topic metadata: {e}"))
}

/// Config, layout and per-partition state. Partitions on other shards are described by
/// them (a forwarded describe answers for the receiving shard's partitions only).
pub async fn describe_topic(
    shard: &Rc<Shard>,
    request: &Request,
    origin: Origin,
) -> wire::AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<DescribeTopicRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    let md = shard.metadata();
    let Some(topic) = md.topic(&req.name) else {
        let e = ErrorCode::UnknownTopic;
        return respond(
            &header,
            &DescribeTopicResponse {
                error: e.as_u16(),
                message: format!("unknown topic {:?}", req.name),
                ..Default::default()
            },
        );
    };
    // The topic's partitions this shard owns, looked up one by one (not every partition of
    // the shard scanned: DescribeLogDirs describes every topic, O(topics x partitions)).
    let mut partitions: Vec<PartitionDescription> = (0..topic.shards.len() as u32)
        .filter(|&i| topic.shards[i as usize] == shard.id)
        .filter_map(|i| shard.partition(&req.name, i))
        .map(|p| PartitionDescription {
            partition: p.index,
            shard: shard.id,
            log_start_offset: p.log.log_start_offset(),
            high_watermark: p.log.high_watermark(),
            size_bytes: p.log.size_bytes(),
            segment_count: p.log.segment_count() as u32,
        })
        .collect();
    if origin == Origin::Client {
        let mut owners: Vec<u32> =
            topic.shards.iter().copied().filter(|&s| s != shard.id).collect();
        owners.sort_unstable();
        owners.dedup();
        for owner in owners {
            let Ok(f) = wire::encode_request(0, &req) else { continue };
            if let Some(resp) = shard
                .mesh
                .forward(owner, f)
                .await
                .and_then(|f| decode_reply::<DescribeTopicResponse>(&f))
            {
                partitions.extend(resp.partitions);
            }
        }
    }
    partitions.sort_by_key(|p| p.partition);
    respond(
        &header,
        &DescribeTopicResponse {
            error: 0,
            message: String::new(),
            topic: Some(topic_metadata(topic)),
            partitions,
        },
    )
}

/// Per-shard counters, gathered from every shard asked for.
pub async fn stats(shard: &Rc<Shard>, request: &Request, origin: Origin) -> wire::AlignedVec {
    let (header, body) = (request.header, request.body());
    let req = match wire::decode_body::<StatsRequest>(body) {
        Ok(r) => r,
        Err(e) => return error_frame(&header, e.code(), &e.to_string()),
    };
    let wanted: Vec<u32> =
        if req.shards.is_empty() { (0..shard.shard_count).collect() } else { req.shards.clone() };
    let mut shards = Vec::new();
    for id in wanted {
        if id == shard.id {
            let mut own = shard.stats();
            if req.latency {
                own.latency = crate::stage_latency::summaries(req.reset_latency);
            }
            if req.group_lag {
                super::group::load_owned(shard).await;
                let md = shard.metadata();
                own.group_lag = shard
                    .groups
                    .committed(GROUP_LAG_ENTRIES_MAX, &|t| md.topic_id(t))
                    .into_iter()
                    .map(|(group, topic, partition, committed)| GroupPartitionLag {
                        group,
                        topic,
                        partition,
                        committed,
                        ..Default::default()
                    })
                    .collect();
            }
            shards.push(own);
        } else if origin == Origin::Client && id < shard.shard_count {
            let one = StatsRequest { shards: vec![id], ..req.clone() };
            let Ok(f) = wire::encode_request(0, &one) else {
                continue;
            };
            if let Some(resp) =
                shard.mesh.forward(id, f).await.and_then(|f| decode_reply::<StatsResponse>(&f))
            {
                shards.extend(resp.shards);
            }
        }
    }
    if req.group_lag && origin == Origin::Client {
        fill_high_watermarks(shard, &mut shards).await;
    }
    respond(&header, &StatsResponse { shards })
}

/// Looks up the high watermark of every partition a group-lag entry names (one ListOffsets,
/// routed to the owners like a client's) and computes the lag.
async fn fill_high_watermarks(shard: &Rc<Shard>, shards: &mut [wire::ShardStats]) {
    let mut wanted: std::collections::BTreeMap<String, std::collections::BTreeSet<u32>> =
        Default::default();
    for e in shards.iter().flat_map(|s| &s.group_lag) {
        wanted.entry(e.topic.clone()).or_default().insert(e.partition);
    }
    if wanted.is_empty() {
        return;
    }
    let lookup = ListOffsetsRequest {
        topics: wanted
            .into_iter()
            .map(|(name, parts)| ListOffsetsTopic {
                name,
                partitions: parts
                    .into_iter()
                    .map(|partition| ListOffsetsPartition { partition, spec: OffsetSpec::Latest })
                    .collect(),
            })
            .collect(),
    };
    let Ok(frame) = wire::encode_request(0, &lookup) else { return };
    let answer = super::offsets::handle(shard, &Request::forwarded(frame), Origin::Client).await;
    let Some(found) = decode_reply::<ListOffsetsResponse>(&answer) else { return };
    let mut hw = std::collections::BTreeMap::new();
    for t in found.topics {
        for p in t.partitions.into_iter().filter(|p| p.error == 0) {
            hw.insert((t.name.clone(), p.partition), p.offset);
        }
    }
    for e in shards.iter_mut().flat_map(|s| s.group_lag.iter_mut()) {
        if let Some(&h) = hw.get(&(e.topic.clone(), e.partition)) {
            e.high_watermark = h;
            e.lag = h.saturating_sub(e.committed);
        }
    }
}
