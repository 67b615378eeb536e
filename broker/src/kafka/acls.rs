//! DescribeAcls, CreateAcls and DeleteAcls (v1–3): Kafka's ACL administration (`kafka-acls`,
//! admin clients) over the native ACLs (`auth/acl.rs`, the security state every shard
//! shares). Checked once per request as Kafka checks them (describe, alter on the cluster:
//! CLUSTER_AUTHORIZATION_FAILED; with authentication configured off, SECURITY_DISABLED, as
//! Kafka without an authorizer), then applied by one native `ChangeAcls` on the controller
//! shard (one durable write per request, none when nothing changes), each rule audited.
//!
//! The mapping: principal `User:NAME` is the user NAME (`User:*` every authenticated user);
//! host `*` only (rules are not per host here); a LITERAL topic, group or transactional-id
//! resource is the native rule of that kind, a PREFIXED one the native prefix rule, and
//! the LITERAL wildcard `*` (every resource of the type) the native prefix rule with an
//! empty prefix (described back as `*`); the cluster resource (`kafka-cluster`) is the
//! cluster rule; operations ALL, READ, WRITE, CREATE, DELETE, ALTER and DESCRIBE are the
//! native ones, ALLOW and DENY the rule's kind. What has no native equivalent is refused
//! with INVALID_REQUEST and a message: a host, other principal types, and the operations
//! CLUSTER_ACTION,
//! DESCRIBE_CONFIGS, ALTER_CONFIGS (configs are DESCRIBE and ALTER here) and IDEMPOTENT_WRITE
//! (implied by WRITE on a topic, as in Kafka 3).

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    create_acls_response, delete_acls_response, describe_acls_response, CreateAclsRequest,
    CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as K;
use wire::{AclBinding, AclOperation, AclResourceKind};

use super::connection::{ready, respond, Answer, Ctx, Session};
use super::error::KafkaError;
use super::native;
use super::sasl::allowed;
use crate::auth::acl::{Acl, Operation, Resource};
use crate::auth::config::AuthMode;

// Kafka's enum numbers (org.apache.kafka.common.resource / acl).
const RESOURCE_ANY: i8 = 1;
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_GROUP: i8 = 3;
const RESOURCE_CLUSTER: i8 = 4;
const RESOURCE_TRANSACTIONAL_ID: i8 = 5;
const PATTERN_ANY: i8 = 1;
const PATTERN_MATCH: i8 = 2;
const PATTERN_LITERAL: i8 = 3;
const PATTERN_PREFIXED: i8 = 4;
const OPERATION_ANY: i8 = 1;
const IDEMPOTENT_WRITE: i8 = 12;
const PERMISSION_ANY: i8 = 1;
const PERMISSION_DENY: i8 = 2;
const PERMISSION_ALLOW: i8 = 3;
/// The cluster resource's name in Kafka.
const CLUSTER_NAME: &str = "kafka-cluster";
const USER_PREFIX: &str = "User:";
/// Kafka's literal resource name for every resource of a type.
const WILDCARD: &str = "*";

/// A native rule as Kafka describes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct KafkaAcl {
    resource_type: i8,
    name: String,
    pattern: i8,
    principal: String,
    operation: i8,
    permission: i8,
}

fn operation_number(op: AclOperation) -> i8 {
    match op {
        AclOperation::All => 2,
        AclOperation::Read => 3,
        AclOperation::Write => 4,
        AclOperation::Create => 5,
        AclOperation::Delete => 6,
        AclOperation::Alter => 7,
        AclOperation::Describe => 8,
    }
}

fn operation_of(number: i8) -> Result<AclOperation, String> {
    Ok(match number {
        2 => AclOperation::All,
        3 => AclOperation::Read,
        4 => AclOperation::Write,
        5 => AclOperation::Create,
        6 => AclOperation::Delete,
        7 => AclOperation::Alter,
        8 => AclOperation::Describe,
        9 => return Err("CLUSTER_ACTION has no equivalent here".into()),
        10 => return Err("DESCRIBE_CONFIGS is DESCRIBE here".into()),
        11 => return Err("ALTER_CONFIGS is ALTER here".into()),
        IDEMPOTENT_WRITE => {
            return Err("IDEMPOTENT_WRITE is implied by WRITE on a topic here (allowed on the \
                        cluster only, where it is taken and nothing stored)"
                .into())
        }
        n => return Err(format!("operation {n} is not supported")),
    })
}

impl KafkaAcl {
    fn of(b: &AclBinding) -> KafkaAcl {
        let (resource_type, prefixed) = match b.resource {
            AclResourceKind::Topic => (RESOURCE_TOPIC, false),
            AclResourceKind::TopicPrefix => (RESOURCE_TOPIC, true),
            AclResourceKind::Group => (RESOURCE_GROUP, false),
            AclResourceKind::GroupPrefix => (RESOURCE_GROUP, true),
            AclResourceKind::Cluster => (RESOURCE_CLUSTER, false),
            AclResourceKind::TransactionalId => (RESOURCE_TRANSACTIONAL_ID, false),
            AclResourceKind::TransactionalIdPrefix => (RESOURCE_TRANSACTIONAL_ID, true),
        };
        let (pattern, name) = match (b.resource, prefixed) {
            (AclResourceKind::Cluster, _) => (PATTERN_LITERAL, CLUSTER_NAME.to_owned()),
            // Every resource of the type: Kafka's literal wildcard.
            (_, true) if b.name.is_empty() => (PATTERN_LITERAL, WILDCARD.to_owned()),
            (_, true) => (PATTERN_PREFIXED, b.name.clone()),
            (_, false) => (PATTERN_LITERAL, b.name.clone()),
        };
        KafkaAcl {
            resource_type,
            name,
            pattern,
            principal: format!("{USER_PREFIX}{}", b.principal),
            operation: operation_number(b.operation),
            permission: if b.deny { PERMISSION_DENY } else { PERMISSION_ALLOW },
        }
    }

    /// The native rule of a Kafka creation (`None`: implied here, nothing to store), or why
    /// there is none.
    fn binding(&self, host: &str) -> Result<Option<AclBinding>, String> {
        let principal = self
            .principal
            .strip_prefix(USER_PREFIX)
            .ok_or_else(|| format!("principal {:?}: only User:NAME principals", self.principal))?;
        if host != "*" {
            return Err(format!("host {host:?}: rules are not per host here (use *)"));
        }
        // `kafka-acls --producer --idempotent` asks for it beside the topic rules: WRITE on a
        // topic implies it here (as in Kafka 3), so it is taken and nothing stored.
        if self.resource_type == RESOURCE_CLUSTER && self.name != CLUSTER_NAME {
            return Err(format!(
                "the cluster resource is named {CLUSTER_NAME}, not {:?}",
                self.name
            ));
        }
        if (self.resource_type, self.pattern, self.operation, self.permission)
            == (RESOURCE_CLUSTER, PATTERN_LITERAL, IDEMPOTENT_WRITE, PERMISSION_ALLOW)
        {
            return Ok(None);
        }
        let wildcard = self.pattern == PATTERN_LITERAL && self.name == WILDCARD;
        if self.pattern == PATTERN_PREFIXED && self.name.is_empty() {
            return Err("an empty PREFIXED name: use the LITERAL * for every resource".into());
        }
        let resource = match (self.resource_type, self.pattern) {
            (RESOURCE_TOPIC, PATTERN_LITERAL) if wildcard => AclResourceKind::TopicPrefix,
            (RESOURCE_TOPIC, PATTERN_LITERAL) => AclResourceKind::Topic,
            (RESOURCE_TOPIC, PATTERN_PREFIXED) => AclResourceKind::TopicPrefix,
            (RESOURCE_GROUP, PATTERN_LITERAL) if wildcard => AclResourceKind::GroupPrefix,
            (RESOURCE_GROUP, PATTERN_LITERAL) => AclResourceKind::Group,
            (RESOURCE_GROUP, PATTERN_PREFIXED) => AclResourceKind::GroupPrefix,
            (RESOURCE_CLUSTER, PATTERN_LITERAL) => AclResourceKind::Cluster,
            (RESOURCE_TRANSACTIONAL_ID, PATTERN_LITERAL) if wildcard => {
                AclResourceKind::TransactionalIdPrefix
            }
            (RESOURCE_TRANSACTIONAL_ID, PATTERN_LITERAL) => AclResourceKind::TransactionalId,
            (RESOURCE_TRANSACTIONAL_ID, PATTERN_PREFIXED) => AclResourceKind::TransactionalIdPrefix,
            (t, p) => {
                return Err(format!("resource type {t} with pattern type {p} is not supported"))
            }
        };
        let deny = match self.permission {
            PERMISSION_ALLOW => false,
            PERMISSION_DENY => true,
            p => return Err(format!("permission type {p}: ALLOW or DENY")),
        };
        Ok(Some(AclBinding {
            principal: principal.to_owned(),
            resource,
            name: match resource == AclResourceKind::Cluster || wildcard {
                true => String::new(),
                false => self.name.clone(),
            },
            operation: operation_of(self.operation)?,
            deny,
        }))
    }
}

/// A Kafka ACL filter (DescribeAcls, a DeleteAcls filter).
struct Filter {
    resource_type: i8,
    name: Option<String>,
    pattern: i8,
    principal: Option<String>,
    host: Option<String>,
    operation: i8,
    permission: i8,
}

impl Filter {
    fn matches(&self, a: &KafkaAcl) -> bool {
        let name_ok = match (self.pattern, &self.name) {
            (_, None) => true,
            // The rules that apply to a resource of this name.
            (PATTERN_MATCH, Some(n)) => match a.pattern {
                PATTERN_PREFIXED => n.starts_with(&a.name),
                _ => a.name == *n || a.name == WILDCARD,
            },
            (_, Some(n)) => a.name == *n,
        };
        let pattern_ok =
            matches!(self.pattern, PATTERN_ANY | PATTERN_MATCH) || self.pattern == a.pattern;
        (self.resource_type == RESOURCE_ANY || self.resource_type == a.resource_type)
            && name_ok
            && pattern_ok
            && self.principal.as_ref().is_none_or(|p| *p == a.principal)
            && self.host.as_ref().is_none_or(|h| h == "*")
            && (self.operation == OPERATION_ANY || self.operation == a.operation)
            && (self.permission == PERMISSION_ANY || self.permission == a.permission)
    }
}

/// The [`Filter`] of a DescribeAcls request or a DeleteAcls filter (the same fields).
macro_rules! filter {
    ($f:expr) => {
        Filter {
            resource_type: $f.resource_type_filter,
            name: text(&$f.resource_name_filter),
            pattern: $f.pattern_type_filter,
            principal: text(&$f.principal_filter),
            host: text(&$f.host_filter),
            operation: $f.operation,
            permission: $f.permission_type,
        }
    };
}

fn text(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.as_str().to_owned())
}

/// Why an ACL request is answered before any rule is looked at: authentication is
/// configured off (SECURITY_DISABLED, as Kafka without an authorizer: rules stored then would
/// look in force and not be), or the principal may not `op` the cluster
/// (CLUSTER_AUTHORIZATION_FAILED; checked once per request, as Kafka checks it).
fn refused(s: &Session, op: Operation) -> Option<(i16, String)> {
    if s.shard.security.config().mode == AuthMode::Off {
        return Some((K::SecurityDisabled.code(), "authentication is off (auth.mode)".into()));
    }
    if !allowed(s, op, Resource::Cluster) {
        let why = format!("{} on the cluster is needed", op.name());
        return Some((K::ClusterAuthorizationFailed.code(), why));
    }
    None
}

/// Every native rule, with its Kafka form.
fn all_acls(s: &Session) -> Vec<(Acl, KafkaAcl)> {
    let state = s.shard.security.snapshot();
    state.acls.iter().map(|a| (a.clone(), KafkaAcl::of(&a.to_wire()))).collect()
}

/// Records one rule an ACL request stored or removed in the audit log, under the connection's
/// principal (the native `ChangeAcls` logs each rule it changes, without one).
fn audit(s: &Session, api: &str, what: &dyn std::fmt::Display) {
    let security = &s.shard.security;
    let user = match s.auth.principal(security, security.mode()) {
        Ok(p) => p.user.to_string(),
        Err(_) => "-".to_owned(),
    };
    security.audit.record(&user, api, what, true);
}

/// DescribeAcls.
pub async fn describe_acls(s: &Session, ctx: Ctx, req: DescribeAclsRequest) -> Answer {
    let filter = filter!(req);
    let mut out = DescribeAclsResponse::default();
    if let Some((code, why)) = refused(s, Operation::Describe) {
        out.error_code = code;
        out.error_message = Some(StrBytes::from_string(why));
        return ready(respond(ctx, &out));
    }
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<KafkaAcl>> = BTreeMap::new();
    for (_, a) in all_acls(s).into_iter().filter(|(_, a)| filter.matches(a)) {
        by_resource.entry((a.resource_type, a.name.clone(), a.pattern)).or_default().push(a);
    }
    for ((resource_type, name, pattern), acls) in by_resource {
        let mut r = describe_acls_response::DescribeAclsResource::default();
        r.resource_type = resource_type;
        r.resource_name = StrBytes::from_string(name);
        r.pattern_type = pattern;
        for a in acls {
            let mut d = describe_acls_response::AclDescription::default();
            d.principal = StrBytes::from_string(a.principal);
            d.host = StrBytes::from_static_str("*");
            d.operation = a.operation;
            d.permission_type = a.permission;
            r.acls.push(d);
        }
        out.resources.push(r);
    }
    ready(respond(ctx, &out))
}

/// CreateAcls: every creation with a native form is stored in one change of the security
/// state (one durable write, whatever their number; nothing written when all are there
/// already); the others are refused one by one.
pub async fn create_acls(s: &Session, ctx: Ctx, req: CreateAclsRequest) -> Answer {
    let mut out = CreateAclsResponse::default();
    let refusal = refused(s, Operation::Alter);
    let mut wanted: Vec<(usize, Acl)> = Vec::new();
    for (i, c) in req.creations.iter().enumerate() {
        let mut r = create_acls_response::AclCreationResult::default();
        let asked = KafkaAcl {
            resource_type: c.resource_type,
            name: c.resource_name.as_str().to_owned(),
            pattern: c.resource_pattern_type,
            principal: c.principal.as_str().to_owned(),
            operation: c.operation,
            permission: c.permission_type,
        };
        let binding = asked.binding(c.host.as_str());
        let acl = binding
            .and_then(|b| b.map(|b| Acl::from_wire(&b).map_err(|e| e.to_string())).transpose());
        match (&refusal, acl) {
            (Some((code, why)), _) => {
                r.error_code = *code;
                r.error_message = Some(StrBytes::from_string(why.clone()));
            }
            (None, Err(why)) => {
                r.error_code = K::InvalidRequest.code();
                r.error_message = Some(StrBytes::from_string(why));
            }
            (None, Ok(None)) => {} // implied here: nothing to store
            (None, Ok(Some(acl))) => wanted.push((i, acl)),
        }
        out.results.push(r);
    }
    // Rules already stored are taken as they are; only new ones are written (one change).
    let known = s.shard.security.snapshot();
    wanted.retain(|(_, a)| !known.acls.contains(a));
    if !wanted.is_empty() {
        let add = wanted.iter().map(|(_, a)| a.to_wire()).collect();
        let stored = change(s, add, Vec::new()).await;
        for (i, acl) in &wanted {
            match &stored {
                Ok(()) => audit(s, "CreateAcls", acl),
                Err(e) => {
                    out.results[*i].error_code = failure(e);
                    out.results[*i].error_message = Some(StrBytes::from_string(e.to_string()));
                }
            }
        }
    }
    ready(respond(ctx, &out))
}

/// DeleteAcls: the rules any filter matches are deleted in one change of the security state
/// (each reported under the first filter that matched it, as Kafka does).
pub async fn delete_acls(s: &Session, ctx: Ctx, req: DeleteAclsRequest) -> Answer {
    let mut out = DeleteAclsResponse::default();
    if let Some((code, why)) = refused(s, Operation::Alter) {
        for _ in &req.filters {
            let mut r = delete_acls_response::DeleteAclsFilterResult::default();
            r.error_code = code;
            r.error_message = Some(StrBytes::from_string(why.clone()));
            out.filter_results.push(r);
        }
        return ready(respond(ctx, &out));
    }
    let mut left = all_acls(s);
    let mut doomed: Vec<Acl> = Vec::new();
    let mut matched: Vec<Vec<KafkaAcl>> = Vec::with_capacity(req.filters.len());
    for f in &req.filters {
        let filter = filter!(f);
        let (hit, rest): (Vec<_>, Vec<_>) = left.into_iter().partition(|(_, a)| filter.matches(a));
        left = rest;
        matched.push(hit.iter().map(|(_, a)| a.clone()).collect());
        doomed.extend(hit.into_iter().map(|(acl, _)| acl));
    }
    let deleted = match doomed.is_empty() {
        true => Ok(()),
        false => change(s, Vec::new(), doomed.iter().map(Acl::to_wire).collect()).await,
    };
    if deleted.is_ok() {
        for acl in &doomed {
            audit(s, "DeleteAcls", acl);
        }
    }
    for acls in matched {
        let mut r = delete_acls_response::DeleteAclsFilterResult::default();
        for a in acls {
            let mut m = delete_acls_response::DeleteAclsMatchingAcl::default();
            if let Err(e) = &deleted {
                m.error_code = failure(e);
                m.error_message = Some(StrBytes::from_string(e.to_string()));
            }
            m.resource_type = a.resource_type;
            m.resource_name = StrBytes::from_string(a.name);
            m.pattern_type = a.pattern;
            m.principal = StrBytes::from_string(a.principal);
            m.host = StrBytes::from_static_str("*");
            m.operation = a.operation;
            m.permission_type = a.permission;
            r.matching_acls.push(m);
        }
        out.filter_results.push(r);
    }
    ready(respond(ctx, &out))
}

/// Adds and removes rules in one change of the security state, on the controller shard
/// (the native `ChangeAcls`: persisted once there, so no other shard waits on the write).
async fn change(
    s: &Session,
    add: Vec<AclBinding>,
    remove: Vec<AclBinding>,
) -> Result<(), KafkaError> {
    let request = wire::ChangeAclsRequest { add, remove };
    native::call::<_, wire::ChangeAclsResponse>(s, &request).await.map(drop)
}

/// The Kafka code of an admin change that failed as a whole (a denial is the cluster's):
/// ACL changes, SCRAM credential changes.
pub(super) fn failure(e: &KafkaError) -> i16 {
    match e {
        KafkaError::Native { code: wire::ErrorCode::AuthorizationFailed, .. } => {
            K::ClusterAuthorizationFailed.code()
        }
        e => e.code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(resource_type: i8, name: &str, pattern: i8, operation: i8) -> KafkaAcl {
        KafkaAcl {
            resource_type,
            name: name.into(),
            pattern,
            principal: "User:alice".into(),
            operation,
            permission: PERMISSION_ALLOW,
        }
    }

    #[test]
    fn rules_map_both_ways_and_what_has_no_native_form_is_refused() {
        for (resource_type, name, pattern) in [
            (RESOURCE_TOPIC, "t", PATTERN_LITERAL),
            (RESOURCE_TOPIC, "t-", PATTERN_PREFIXED),
            (RESOURCE_TOPIC, "*", PATTERN_LITERAL),
            (RESOURCE_GROUP, "g", PATTERN_LITERAL),
            (RESOURCE_GROUP, "g-", PATTERN_PREFIXED),
            (RESOURCE_GROUP, "*", PATTERN_LITERAL),
            (RESOURCE_TRANSACTIONAL_ID, "*", PATTERN_LITERAL),
            (RESOURCE_CLUSTER, CLUSTER_NAME, PATTERN_LITERAL),
            (RESOURCE_TRANSACTIONAL_ID, "x", PATTERN_LITERAL),
            (RESOURCE_TRANSACTIONAL_ID, "x-", PATTERN_PREFIXED),
        ] {
            for operation in 2..=8 {
                let k = kafka(resource_type, name, pattern, operation);
                let b = k.binding("*").unwrap().expect("a native rule");
                assert_eq!(KafkaAcl::of(&b), k);
            }
        }
        let refused = [
            (kafka(RESOURCE_TOPIC, "", PATTERN_PREFIXED, 3), "LITERAL *"),
            (kafka(RESOURCE_CLUSTER, CLUSTER_NAME, PATTERN_PREFIXED, 3), "not supported"),
            (kafka(RESOURCE_TOPIC, "t", PATTERN_LITERAL, IDEMPOTENT_WRITE), "IDEMPOTENT_WRITE"),
            (kafka(RESOURCE_TOPIC, "t", PATTERN_LITERAL, 10), "DESCRIBE_CONFIGS"),
            (KafkaAcl { principal: "Group:x".into(), ..kafka(RESOURCE_TOPIC, "t", 3, 3) }, "User:"),
        ];
        for (k, says) in refused {
            let why = k.binding("*").unwrap_err();
            assert!(why.contains(says), "{k:?}: {why}");
        }
        assert!(kafka(RESOURCE_TOPIC, "t", 3, 3).binding("10.0.0.1").unwrap_err().contains("host"));
        // Implied by WRITE: taken, nothing stored.
        assert_eq!(
            kafka(RESOURCE_CLUSTER, CLUSTER_NAME, 3, IDEMPOTENT_WRITE).binding("*"),
            Ok(None)
        );
        let other = kafka(RESOURCE_CLUSTER, "my-cluster", PATTERN_LITERAL, 7);
        assert!(other.binding("*").unwrap_err().contains(CLUSTER_NAME));
    }

    #[test]
    fn filters_match_as_kafkas() {
        let literal = kafka(RESOURCE_TOPIC, "orders", PATTERN_LITERAL, 3);
        let prefixed = kafka(RESOURCE_TOPIC, "ord", PATTERN_PREFIXED, 4);
        let group = kafka(RESOURCE_GROUP, "orders", PATTERN_LITERAL, 3);
        let every_topic = kafka(RESOURCE_TOPIC, WILDCARD, PATTERN_LITERAL, 3);
        let any = |pattern, name: Option<&str>| Filter {
            resource_type: RESOURCE_ANY,
            name: name.map(str::to_owned),
            pattern,
            principal: None,
            host: None,
            operation: OPERATION_ANY,
            permission: PERMISSION_ANY,
        };
        let hits = |f: &Filter| {
            let acls = [&literal, &prefixed, &group, &every_topic];
            acls.iter().map(|a| f.matches(a)).collect::<Vec<_>>()
        };
        assert_eq!(hits(&any(PATTERN_ANY, None)), [true, true, true, true]);
        assert_eq!(hits(&any(PATTERN_ANY, Some("orders"))), [true, false, true, false]);
        assert_eq!(hits(&any(PATTERN_MATCH, Some("orders"))), [true, true, true, true]);
        assert_eq!(hits(&any(PATTERN_LITERAL, Some("orders"))), [true, false, true, false]);
        assert_eq!(hits(&any(PATTERN_LITERAL, Some("*"))), [false, false, false, true]);
        assert_eq!(hits(&any(PATTERN_PREFIXED, None)), [false, true, false, false]);
        let topics_only = Filter { resource_type: RESOURCE_TOPIC, ..any(PATTERN_ANY, None) };
        assert_eq!(hits(&topics_only), [true, true, false, true]);
        let writes = Filter { operation: 4, ..any(PATTERN_ANY, None) };
        assert_eq!(hits(&writes), [false, true, false, false]);
        let bob = Filter { principal: Some("User:bob".into()), ..any(PATTERN_ANY, None) };
        assert_eq!(hits(&bob), [false, false, false, false]);
        let denies = Filter { permission: PERMISSION_DENY, ..any(PATTERN_ANY, None) };
        assert_eq!(hits(&denies), [false, false, false, false]);
    }
}
