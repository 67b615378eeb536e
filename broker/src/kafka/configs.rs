//! Changing topic configs: IncrementalAlterConfigs (`kafka-configs --alter`, the admin
//! clients' `incrementalAlterConfigs`) and the older AlterConfigs (which replaces a
//! resource's whole config: what it does not name goes back to the default). Both go
//! through the native AlterTopicConfig (shard 0 persists the change and every shard's open
//! partitions take it), under Kafka's names: `retention.ms`, `retention.bytes`,
//! `segment.bytes`, `segment.ms`, `delete.retention.ms`, `cleanup.policy` (native
//! `compact`, with retention: `policy_changes`). `max.message.bytes` is fixed at creation
//! here (INVALID_CONFIG); `min.insync.replicas`, `compression.type` and
//! `message.timestamp.type` are taken and have no effect, as at creation. Broker configs are
//! set in `broker.toml`, not over the wire.

use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as K;

use super::connection::{ready, respond, Answer, Ctx, Session};
use super::error::kafka_code_raw;
use super::native;
use crate::auth::acl::{Operation, Resource};
use crate::metadata::TopicSettings;
use crate::storage::LogConfig;

/// A topic's settings and what they make of the broker's log defaults.
fn settings_of(s: &Session, topic: &str) -> Option<(TopicSettings, LogConfig)> {
    let md = s.shard.metadata();
    let t = md.topic(topic)?;
    Some((t.settings.clone(), t.settings.log_config(&s.shard.config.log)))
}

/// Kafka's resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;

/// Kafka's names of the settings a topic may change, with the native names.
const ALTERABLE: [(&str, &str); 5] = [
    ("retention.ms", "retention_ms"),
    ("retention.bytes", "retention_bytes"),
    ("segment.bytes", "segment_bytes_max"),
    ("segment.ms", "segment_ms"),
    ("delete.retention.ms", "delete_retention_ms"),
];

/// Kafka's `cleanup.policy`: carried under this name to `policy_changes`, which makes it
/// native changes (`compact`, and retention for `compact,delete`).
const POLICY: &str = "cleanup.policy";

/// Taken and without effect (one node, records stored as produced).
const IGNORED: [&str; 3] = ["min.insync.replicas", "compression.type", "message.timestamp.type"];

/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// What one resource's answer says: (error code, message).
type Outcome = (i16, Option<String>);

/// The native change of a Kafka config `name` to `value` (`None`: back to the default), or
/// `Ok(None)` for one that is taken without effect: an ignored one, or one fixed at
/// creation given the value it has (`now`: the topic's settings, if it exists; a client of
/// the older AlterConfigs sends back what the topic sets).
fn native_change(
    name: &str,
    value: Option<&str>,
    now: Option<&(TopicSettings, LogConfig)>,
) -> Result<Option<(String, String)>, Outcome> {
    if let Some((_, native)) = ALTERABLE.iter().find(|(k, _)| *k == name) {
        return Ok(Some((native.to_string(), value.unwrap_or("").to_owned())));
    }
    if name == POLICY {
        return Ok(Some((POLICY.to_owned(), value.unwrap_or("").to_owned())));
    }
    if IGNORED.contains(&name) {
        return Ok(None);
    }
    let unchanged = now.is_some_and(|(settings, _)| match name {
        "max.message.bytes" => {
            value == Some(super::admin::batch_bytes_max(settings).to_string().as_str())
        }
        _ => false,
    });
    if unchanged {
        return Ok(None);
    }
    let why = match name {
        "max.message.bytes" => format!("{name} is fixed at creation"),
        _ => format!("topic config {name} is not supported"),
    };
    Err((K::InvalidConfig.code(), Some(why)))
}

/// Runs the native change of topic `name`; what its answer says in Kafka's terms.
async fn alter(
    s: &Session,
    name: &str,
    changes: Vec<(String, String)>,
    validate_only: bool,
) -> Outcome {
    let changes =
        changes.into_iter().map(|(name, value)| wire::TopicSettingChange { name, value }).collect();
    let req = wire::AlterTopicConfigRequest { name: name.to_owned(), changes, validate_only };
    match native::call::<_, wire::AlterTopicConfigResponse>(s, &req).await {
        Ok(r) if r.error == 0 => (0, None),
        Ok(r) => {
            let code = match wire::ErrorCode::from_u16(r.error) {
                Some(wire::ErrorCode::InvalidTopicConfig) => K::InvalidConfig.code(),
                Some(wire::ErrorCode::InternalTopic) => K::PolicyViolation.code(),
                _ => kafka_code_raw(r.error),
            };
            (code, Some(r.message))
        }
        Err(e) => (e.code(), Some(e.to_string())),
    }
}

/// `changes` as native changes, with the topic's `cleanup.policy` what was asked, or as it
/// is when it was not named. Here the policy is compaction and retention together: a
/// compacted topic with retention set is `compact,delete`, without it `compact` (its
/// retention is "forever"), so `cleanup.policy=compact,delete` on a topic without retention
/// also sets the broker's `retention.ms` (Kafka's default by default), and a change that would leave
/// another policy than asked, or than the topic has when none is asked (`retention.ms` set
/// on a `compact` topic: Kafka ignores it there), is refused with INVALID_CONFIG saying so.
fn policy_changes(
    s: &Session,
    now: Option<&(TopicSettings, LogConfig)>,
    mut changes: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, Outcome> {
    let mut asked = None;
    changes.retain(|(name, value)| match name == POLICY {
        true => {
            asked = Some(value.clone());
            false
        }
        false => true,
    });
    // A list: its items trimmed, in any order.
    let items = asked.as_deref().map(|v| {
        let mut items: Vec<&str> = v.split(',').map(str::trim).filter(|i| !i.is_empty()).collect();
        items.sort_unstable();
        items.join(",")
    });
    let asked = match (items.as_deref(), asked.as_deref()) {
        (None, _) => None,
        (Some("" | "delete"), _) => Some("delete"),
        (Some("compact"), _) => Some("compact"),
        (Some("compact,delete"), _) => Some("compact,delete"),
        (_, other) => {
            let other = other.unwrap_or_default();
            let why = format!("cleanup.policy={other}: delete, compact or compact,delete");
            return Err((K::InvalidConfig.code(), Some(why)));
        }
    };
    if let Some(policy) = asked {
        changes.push(("compact".to_owned(), (policy != "delete").to_string()));
    }
    let Some((settings, log)) = now else { return Ok(changes) };
    // A change the native check refuses is answered by it.
    let Ok(after) = settings.altered(&changes) else { return Ok(changes) };
    // (The broker's retention: if it keeps for ever, compact,delete cannot be had without
    // naming retention, and is refused below.)
    let broker_ms = s.shard.config.log.retention_ms;
    if asked == Some("compact,delete")
        && after.retention_ms == 0
        && after.retention_bytes == 0
        && broker_ms >= 0
    {
        changes.push(("retention_ms".to_owned(), broker_ms.to_string()));
        return Ok(changes);
    }
    let before = super::admin::cleanup_policy(log);
    let after = super::admin::cleanup_policy(&after.log_config(&s.shard.config.log));
    let wanted = asked.unwrap_or(before);
    if after == wanted {
        return Ok(changes);
    }
    let why = match asked {
        Some(_) => format!(
            "cleanup.policy {wanted} with the retention this leaves makes it {after} \
             (a compacted topic with retention.ms or retention.bytes set is compact,delete)"
        ),
        None => format!(
            "the change would make cleanup.policy {after} (it is {before}; name \
             cleanup.policy to change it)"
        ),
    };
    Err((K::InvalidConfig.code(), Some(why)))
}

/// A resource that is not a topic, or named more than once (every time, as Kafka: which
/// of them would win is not said): refused without a change.
fn refused_resource(resource_type: i8, once: bool) -> Option<Outcome> {
    if resource_type != RESOURCE_TOPIC {
        let why = "only topic configs change over the wire; the broker's are set in broker.toml";
        return Some((K::InvalidRequest.code(), Some(why.to_owned())));
    }
    (!once).then(|| (K::InvalidRequest.code(), Some("the resource is named twice".to_owned())))
}

/// Each resource's outcome, in order: refused (not a topic, or named twice), its changes
/// refused, or the native change's answer. `changes(index, now)` gives resource `index`'s
/// native changes, `now` its topic's settings if it exists.
async fn alter_each(
    s: &Session,
    resources: &[(i8, &str)],
    validate_only: bool,
    mut changes: impl FnMut(
        usize,
        Option<&(TopicSettings, LogConfig)>,
    ) -> Result<Vec<(String, String)>, Outcome>,
) -> Vec<Outcome> {
    let mut named: std::collections::HashMap<(i8, &str), usize> = Default::default();
    for &resource in resources {
        *named.entry(resource).or_default() += 1;
    }
    let mut out = Vec::with_capacity(resources.len());
    for (i, &(kind, name)) in resources.iter().enumerate() {
        let denied = kind == RESOURCE_TOPIC
            && !super::sasl::allowed(s, Operation::Alter, Resource::Topic(name));
        let now = if denied { None } else { settings_of(s, name) };
        let outcome = match refused_resource(kind, named[&(kind, name)] == 1) {
            Some(refused) => refused,
            // Before the settings are looked at: a principal that may not alter the topic
            // learns nothing of them (nor whether it exists) from what is refused, as Kafka.
            None if denied => (K::TopicAuthorizationFailed.code(), None),
            None => match changes(i, now.as_ref()).and_then(|c| policy_changes(s, now.as_ref(), c))
            {
                Ok(changes) => alter(s, name, changes, validate_only).await,
                Err(refused) => refused,
            },
        };
        out.push(outcome);
    }
    out
}

/// IncrementalAlterConfigs: SET and DELETE of each topic's configs (APPEND and SUBTRACT
/// apply to list configs, which no alterable one is: INVALID_CONFIG).
pub async fn incremental_alter_configs(
    s: &Session,
    ctx: Ctx,
    req: IncrementalAlterConfigsRequest,
) -> Answer {
    let resources: Vec<(i8, &str)> =
        req.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str())).collect();
    let outcomes = alter_each(s, &resources, req.validate_only, |i, now| {
        req.resources[i]
            .configs
            .iter()
            .filter_map(|c| {
                let value = match c.config_operation {
                    OP_SET if c.value.is_none() => {
                        let why = format!("SET {} without a value", c.name.as_str());
                        return Some(Err((K::InvalidRequest.code(), Some(why))));
                    }
                    OP_SET => c.value.as_deref(),
                    OP_DELETE => None,
                    op => {
                        let why =
                            format!("operation {op} on {}: a value is not a list", c.name.as_str());
                        return Some(Err((K::InvalidConfig.code(), Some(why))));
                    }
                };
                native_change(c.name.as_str(), value, now).transpose()
            })
            .collect()
    })
    .await;
    let mut out = IncrementalAlterConfigsResponse::default();
    for (res, (code, message)) in req.resources.iter().zip(outcomes) {
        let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        (r.resource_type, r.resource_name) = (res.resource_type, res.resource_name.clone());
        (r.error_code, r.error_message) = (code, message.map(StrBytes::from_string));
        out.responses.push(r);
    }
    ready(respond(ctx, &out))
}

/// AlterConfigs: each topic's configs replaced whole: what the request does not name goes
/// back to the default.
pub async fn alter_configs(s: &Session, ctx: Ctx, req: AlterConfigsRequest) -> Answer {
    let resources: Vec<(i8, &str)> =
        req.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str())).collect();
    let outcomes = alter_each(s, &resources, req.validate_only, |i, now| {
        // Every alterable setting back to its default first (`cleanup.policy` too:
        // `delete`), then what is named.
        let reset =
            ALTERABLE.iter().map(|(k, _)| *k).chain([POLICY]).map(|k| native_change(k, None, None));
        let configs = &req.resources[i].configs;
        let named = configs.iter().map(|c| native_change(c.name.as_str(), c.value.as_deref(), now));
        reset.chain(named).filter_map(Result::transpose).collect()
    })
    .await;
    let mut out = AlterConfigsResponse::default();
    for (res, (code, message)) in req.resources.iter().zip(outcomes) {
        let mut r = alter_configs_response::AlterConfigsResourceResponse::default();
        (r.resource_type, r.resource_name) = (res.resource_type, res.resource_name.clone());
        (r.error_code, r.error_message) = (code, message.map(StrBytes::from_string));
        out.responses.push(r);
    }
    ready(respond(ctx, &out))
}
