//! ACLs: who may do what to which resource, and the decision for one (principal, operation,
//! resource).
//!
//! Rules: a rule matches a check when its principal is the user (or `*`, every authenticated
//! user), its operation is the one checked (or `all`; an *allow* of read, write, delete or
//! alter also allows describe, as in Kafka, so a producer sees its topic in metadata), and its
//! resource covers the checked one: a topic rule names the topic, a prefix rule any topic
//! starting with it (an empty prefix: every topic), a group rule (or prefix) the group, a
//! transactional-id rule (or prefix) the
//! transactional ids a producer initializes with (write: fencing the producer before it
//! with that id); a cluster rule covers the cluster, and for
//! create and delete every topic too (`create` on the cluster may create any topic). Any
//! matching deny wins; otherwise a matching allow allows; otherwise the request is denied.
//! Superusers are not checked here (the caller skips them).

use serde::{Deserialize, Serialize};
use wire::{AclBinding, AclOperation, AclResourceKind};

/// Longest resource name or principal in an ACL.
pub const ACL_NAME_BYTES_MAX: usize = 249;

/// The principal `*`: every authenticated user.
pub const ANY_USER: &str = "*";

/// An operation, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Fetch, subscribe, tables, key queries, groups.
    Read,
    /// Produce.
    Write,
    /// Create topics and tables.
    Create,
    /// Delete topics and tables.
    Delete,
    /// Metadata, describe, list.
    Describe,
    /// Users, ACLs, configuration.
    Alter,
    /// Everything.
    All,
}

impl Operation {
    /// Lower-case name (CLI, audit lines, messages).
    pub const fn name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Create => "create",
            Operation::Delete => "delete",
            Operation::Describe => "describe",
            Operation::Alter => "alter",
            Operation::All => "all",
        }
    }

    /// From the wire.
    pub fn from_wire(op: AclOperation) -> Operation {
        match op {
            AclOperation::Read => Operation::Read,
            AclOperation::Write => Operation::Write,
            AclOperation::Create => Operation::Create,
            AclOperation::Delete => Operation::Delete,
            AclOperation::Describe => Operation::Describe,
            AclOperation::Alter => Operation::Alter,
            AclOperation::All => Operation::All,
        }
    }

    /// To the wire.
    pub fn to_wire(self) -> AclOperation {
        match self {
            Operation::Read => AclOperation::Read,
            Operation::Write => AclOperation::Write,
            Operation::Create => AclOperation::Create,
            Operation::Delete => AclOperation::Delete,
            Operation::Describe => AclOperation::Describe,
            Operation::Alter => AclOperation::Alter,
            Operation::All => AclOperation::All,
        }
    }

    /// Whether an allow rule for `self` allows `checked`.
    fn allows(self, checked: Operation) -> bool {
        self == checked
            || self == Operation::All
            || (checked == Operation::Describe
                && matches!(
                    self,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ))
    }

    /// Whether a deny rule for `self` denies `checked`.
    fn denies(self, checked: Operation) -> bool {
        self == checked || self == Operation::All
    }
}

/// A resource kind, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// One topic (or table) by name.
    Topic,
    /// Topics whose name starts with the rule's name.
    TopicPrefix,
    /// One consumer group.
    Group,
    /// The broker.
    Cluster,
    /// One transactional id.
    TransactionalId,
    /// Transactional ids that start with the rule's name.
    TransactionalIdPrefix,
    /// Consumer groups whose id starts with the rule's name.
    GroupPrefix,
}

impl ResourceKind {
    /// From the wire.
    pub fn from_wire(k: AclResourceKind) -> ResourceKind {
        match k {
            AclResourceKind::Topic => ResourceKind::Topic,
            AclResourceKind::TopicPrefix => ResourceKind::TopicPrefix,
            AclResourceKind::Group => ResourceKind::Group,
            AclResourceKind::Cluster => ResourceKind::Cluster,
            AclResourceKind::TransactionalId => ResourceKind::TransactionalId,
            AclResourceKind::TransactionalIdPrefix => ResourceKind::TransactionalIdPrefix,
            AclResourceKind::GroupPrefix => ResourceKind::GroupPrefix,
        }
    }

    /// To the wire.
    pub fn to_wire(self) -> AclResourceKind {
        match self {
            ResourceKind::Topic => AclResourceKind::Topic,
            ResourceKind::TopicPrefix => AclResourceKind::TopicPrefix,
            ResourceKind::Group => AclResourceKind::Group,
            ResourceKind::Cluster => AclResourceKind::Cluster,
            ResourceKind::TransactionalId => AclResourceKind::TransactionalId,
            ResourceKind::TransactionalIdPrefix => AclResourceKind::TransactionalIdPrefix,
            ResourceKind::GroupPrefix => AclResourceKind::GroupPrefix,
        }
    }

    /// Name for messages and the CLI.
    pub const fn name(self) -> &'static str {
        match self {
            ResourceKind::Topic => "topic",
            ResourceKind::TopicPrefix => "topic-prefix",
            ResourceKind::Group => "group",
            ResourceKind::Cluster => "cluster",
            ResourceKind::TransactionalId => "transactional-id",
            ResourceKind::TransactionalIdPrefix => "transactional-id-prefix",
            ResourceKind::GroupPrefix => "group-prefix",
        }
    }
}

/// What a request touches: a topic, a group, or the cluster (never a prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource<'a> {
    /// A topic or table by name.
    Topic(&'a str),
    /// A consumer group by id.
    Group(&'a str),
    /// The broker.
    Cluster,
    /// A producer's transactional id.
    TransactionalId(&'a str),
}

impl std::fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Topic(t) => write!(f, "topic {t:?}"),
            Resource::Group(g) => write!(f, "group {g:?}"),
            Resource::Cluster => f.write_str("the cluster"),
            Resource::TransactionalId(t) => write!(f, "transactional id {t:?}"),
        }
    }
}

/// One rule, as stored in `security.json`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct Acl {
    /// A user name or `*`.
    pub principal: String,
    /// Resource kind.
    pub resource: ResourceKind,
    /// Resource name (empty for the cluster).
    pub name: String,
    /// Operation.
    pub operation: Operation,
    /// Deny instead of allow.
    pub deny: bool,
}

/// Why an ACL from a client cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// Principal empty or too long.
    #[error("ACL principal must be 1..=249 bytes (a user name or *)")]
    Principal,
    /// Name empty (for topic, prefix, group, transactional id), set for the cluster, or too
    /// long.
    #[error("ACL resource name: {0}")]
    Name(&'static str),
}

impl Acl {
    /// From the wire, checked.
    pub fn from_wire(b: &AclBinding) -> Result<Acl, AclError> {
        let acl = Acl {
            principal: b.principal.clone(),
            resource: ResourceKind::from_wire(b.resource),
            name: b.name.clone(),
            operation: Operation::from_wire(b.operation),
            deny: b.deny,
        };
        if acl.principal.is_empty() || acl.principal.len() > ACL_NAME_BYTES_MAX {
            return Err(AclError::Principal);
        }
        match acl.resource {
            ResourceKind::Cluster if !acl.name.is_empty() => {
                Err(AclError::Name("a cluster rule has no name"))
            }
            // A prefix rule may be empty: it covers every resource of its kind.
            ResourceKind::Topic | ResourceKind::Group | ResourceKind::TransactionalId
                if acl.name.is_empty() =>
            {
                Err(AclError::Name("topic, group and transactional-id rules need a name"))
            }
            _ if acl.name.len() > ACL_NAME_BYTES_MAX => Err(AclError::Name("longer than 249")),
            _ => Ok(acl),
        }
    }

    /// [`Acl::from_wire`] for a rule to be stored: a name `*` is refused too (Kafka's spelling
    /// of "every one", which here is the empty prefix: a rule named `*` would look like the
    /// wildcard and cover nothing). Rules stored before this check can still be removed.
    pub fn new_from_wire(b: &AclBinding) -> Result<Acl, AclError> {
        let acl = Acl::from_wire(b)?;
        let named = matches!(
            acl.resource,
            ResourceKind::Topic | ResourceKind::Group | ResourceKind::TransactionalId
        );
        if named && acl.name == "*" {
            return Err(AclError::Name(
                "* is not a wildcard here: use an empty prefix for every one",
            ));
        }
        Ok(acl)
    }

    /// To the wire.
    pub fn to_wire(&self) -> AclBinding {
        AclBinding {
            principal: self.principal.clone(),
            resource: self.resource.to_wire(),
            name: self.name.clone(),
            operation: self.operation.to_wire(),
            deny: self.deny,
        }
    }

    fn covers(&self, resource: Resource<'_>, op: Operation) -> bool {
        match (self.resource, resource) {
            (ResourceKind::Topic, Resource::Topic(t)) => self.name == t,
            (ResourceKind::TopicPrefix, Resource::Topic(t)) => t.starts_with(&self.name),
            (ResourceKind::Group, Resource::Group(g)) => self.name == g,
            (ResourceKind::GroupPrefix, Resource::Group(g)) => g.starts_with(&self.name),
            (ResourceKind::TransactionalId, Resource::TransactionalId(t)) => self.name == t,
            (ResourceKind::TransactionalIdPrefix, Resource::TransactionalId(t)) => {
                t.starts_with(&self.name)
            }
            (ResourceKind::Cluster, Resource::Cluster) => true,
            (ResourceKind::Cluster, Resource::Topic(_)) => {
                matches!(op, Operation::Create | Operation::Delete)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Acl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {}{}",
            if self.deny { "deny" } else { "allow" },
            self.principal,
            self.operation.name(),
            self.resource.name(),
            if self.name.is_empty() { String::new() } else { format!(" {:?}", self.name) }
        )
    }
}

/// The decision for `user` doing `op` on `resource` under `acls` (see the module docs).
pub fn allowed<'a>(
    acls: impl IntoIterator<Item = &'a Acl>,
    user: &str,
    authenticated: bool,
    op: Operation,
    res: Resource<'_>,
) -> bool {
    let mut allow = false;
    for acl in acls {
        let who = acl.principal == user || (authenticated && acl.principal == ANY_USER);
        if !who || !acl.covers(res, op) {
            continue;
        }
        if acl.deny {
            if acl.operation.denies(op) {
                return false;
            }
        } else if acl.operation.allows(op) {
            allow = true;
        }
    }
    allow
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(p: &str, kind: ResourceKind, name: &str, op: Operation, deny: bool) -> Acl {
        Acl { principal: p.into(), resource: kind, name: name.into(), operation: op, deny }
    }

    #[test]
    fn transactional_id_rules_cover_ids_only() {
        let acls = vec![
            rule("alice", ResourceKind::TransactionalIdPrefix, "billing-", Operation::Write, false),
            rule("alice", ResourceKind::TransactionalId, "billing-x", Operation::Write, true),
            rule("bob", ResourceKind::TransactionalId, "etl", Operation::All, false),
            rule("carol", ResourceKind::TopicPrefix, "billing-", Operation::All, false),
        ];
        let x = Resource::TransactionalId;
        assert!(allowed(&acls, "alice", true, Operation::Write, x("billing-1")));
        assert!(!allowed(&acls, "alice", true, Operation::Write, x("billing-x")), "deny wins");
        assert!(!allowed(&acls, "alice", true, Operation::Write, x("payroll")));
        assert!(!allowed(&acls, "alice", true, Operation::Write, Resource::Topic("billing-1")));
        assert!(allowed(&acls, "bob", true, Operation::Write, x("etl")));
        assert!(!allowed(&acls, "bob", true, Operation::Write, x("etl2")));
        assert!(!allowed(&acls, "carol", true, Operation::Write, x("billing-1")), "topics only");
        let b = rule("a", ResourceKind::TransactionalId, "", Operation::Write, false).to_wire();
        assert!(Acl::from_wire(&b).is_err(), "a transactional-id rule needs a name");
    }

    #[test]
    fn group_prefixes_cover_groups_and_empty_prefixes_cover_every_resource_of_their_kind() {
        let acls = vec![
            rule("dan", ResourceKind::GroupPrefix, "etl-", Operation::Read, false),
            rule("eve", ResourceKind::TopicPrefix, "", Operation::Read, false),
            rule("eve", ResourceKind::GroupPrefix, "", Operation::Read, false),
        ];
        let g = Resource::Group;
        assert!(allowed(&acls, "dan", true, Operation::Read, g("etl-daily")));
        assert!(!allowed(&acls, "dan", true, Operation::Read, g("billing")));
        assert!(!allowed(&acls, "dan", true, Operation::Read, Resource::Topic("etl-daily")));
        assert!(allowed(&acls, "eve", true, Operation::Read, Resource::Topic("anything")));
        assert!(allowed(&acls, "eve", true, Operation::Read, g("any-group")));
        assert!(!allowed(&acls, "eve", true, Operation::Write, Resource::Topic("anything")));
        assert!(!allowed(&acls, "eve", true, Operation::Read, Resource::TransactionalId("x")));
        for kind in [
            ResourceKind::TopicPrefix,
            ResourceKind::GroupPrefix,
            ResourceKind::TransactionalIdPrefix,
        ] {
            let b = rule("a", kind, "", Operation::Read, false).to_wire();
            assert!(Acl::from_wire(&b).is_ok(), "{kind:?} may be empty");
        }
        let b = rule("a", ResourceKind::Group, "", Operation::Read, false).to_wire();
        assert!(Acl::from_wire(&b).is_err(), "a group rule needs a name");
        let b = rule("a", ResourceKind::Topic, "*", Operation::Read, false).to_wire();
        assert!(Acl::new_from_wire(&b).is_err(), "* is not a name for a new rule");
        assert!(Acl::from_wire(&b).is_ok(), "an old one can still be removed");
    }

    #[test]
    fn deny_wins_prefix_matches_and_writers_may_describe() {
        let acls = vec![
            rule("alice", ResourceKind::TopicPrefix, "orders.", Operation::All, false),
            rule("alice", ResourceKind::Topic, "orders.secret", Operation::Read, true),
            rule("*", ResourceKind::Topic, "public", Operation::Read, false),
            rule("bob", ResourceKind::Topic, "logs", Operation::Write, false),
            rule("ops", ResourceKind::Cluster, "", Operation::Create, false),
        ];
        let t = Resource::Topic;
        assert!(allowed(&acls, "alice", true, Operation::Write, t("orders.eu")));
        assert!(allowed(&acls, "alice", true, Operation::Write, t("orders.secret")));
        assert!(!allowed(&acls, "alice", true, Operation::Read, t("orders.secret")));
        assert!(!allowed(&acls, "alice", true, Operation::Read, t("order")));
        assert!(allowed(&acls, "carol", true, Operation::Read, t("public")));
        assert!(!allowed(&acls, "ANONYMOUS", false, Operation::Read, t("public")));
        assert!(allowed(&acls, "bob", true, Operation::Describe, t("logs")));
        assert!(!allowed(&acls, "bob", true, Operation::Read, t("logs")));
        assert!(allowed(&acls, "ops", true, Operation::Create, t("anything")));
        assert!(!allowed(&acls, "ops", true, Operation::Delete, t("anything")));
        assert!(!allowed(&acls, "ops", true, Operation::Describe, Resource::Cluster));
        assert!(!allowed(&acls, "bob", true, Operation::Read, Resource::Group("logs")));
    }

    #[test]
    fn bad_rules_are_refused() {
        let mut b = AclBinding { principal: "".into(), ..Default::default() };
        assert_eq!(Acl::from_wire(&b), Err(AclError::Principal));
        b.principal = "a".into();
        assert!(Acl::from_wire(&b).is_err()); // topic without a name
        b.resource = AclResourceKind::Cluster;
        assert!(Acl::from_wire(&b).is_ok());
        b.name = "x".into();
        assert!(Acl::from_wire(&b).is_err());
    }
}
