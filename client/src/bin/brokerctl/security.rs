//! `brokerctl user …` and `brokerctl acl …`: users (the password from a file or stdin; only
//! its SCRAM credentials are sent) and ACLs on a running broker.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use client::{Client, ClientError};
use wire::{AclBinding, AclOperation, AclResourceKind};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user or replace its password.
    Add {
        /// User name: 1..=128 bytes of [A-Za-z0-9._@-].
        name: String,
        /// Read the new password from this file (first line); default: stdin.
        #[arg(long)]
        new_password_file: Option<PathBuf>,
        /// Superusers bypass ACLs.
        #[arg(long)]
        superuser: bool,
    },
    /// Delete a user (its ACLs too); its open connections are refused from then on.
    Delete {
        /// User name.
        name: String,
    },
    /// List users.
    List,
}

/// Which resource an ACL names.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct AclResource {
    /// One topic (or table).
    #[arg(long)]
    topic: Option<String>,
    /// Every topic starting with this.
    #[arg(long)]
    topic_prefix: Option<String>,
    /// Every topic.
    #[arg(long)]
    all_topics: bool,
    /// One consumer group.
    #[arg(long)]
    group: Option<String>,
    /// Every consumer group starting with this.
    #[arg(long)]
    group_prefix: Option<String>,
    /// Every consumer group.
    #[arg(long)]
    all_groups: bool,
    /// The broker (create/delete any topic, users, ACLs, stats).
    #[arg(long)]
    cluster: bool,
    /// One transactional id (write: a producer may initialize with it).
    #[arg(long)]
    transactional_id: Option<String>,
    /// Every transactional id starting with this.
    #[arg(long)]
    transactional_id_prefix: Option<String>,
    /// Every transactional id.
    #[arg(long)]
    all_transactional_ids: bool,
}

#[derive(Debug, Args)]
pub struct AclRule {
    /// The user (or * for every authenticated user).
    #[arg(long = "user", id = "acl_user")]
    principal: String,
    #[command(flatten)]
    resource: AclResource,
    /// read | write | create | delete | describe | alter | all.
    #[arg(long)]
    op: String,
    /// A deny rule (deny wins over allow).
    #[arg(long)]
    deny: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an HTTP bearer token for a user; prints it once (`Authorization: Bearer …`).
    Create {
        /// The user it authenticates as.
        #[arg(long = "user", id = "token_user")]
        user: String,
        /// Lifetime in ms (0: until deleted).
        #[arg(long, default_value_t = 0)]
        ttl_ms: u64,
    },
    /// Delete a token by id.
    Delete {
        /// Token id (the part before the dot).
        id: String,
    },
    /// List tokens (ids, users, expiry; never secrets).
    List,
}

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Add a rule.
    Add(AclRule),
    /// Remove a rule (exactly as added).
    Remove(AclRule),
    /// List rules (of one user).
    List {
        /// Only this user's.
        #[arg(long = "user", id = "acl_user")]
        principal: Option<String>,
    },
}

/// The first line of `path` (or of stdin), without its line end.
pub fn read_secret(path: Option<&PathBuf>) -> Result<String, ClientError> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| ClientError::Protocol(format!("cannot read {}: {e}", p.display())))?,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| ClientError::Protocol(format!("cannot read stdin: {e}")))?;
            line
        }
    };
    let line = text.lines().next().unwrap_or("").to_owned();
    if line.is_empty() {
        return Err(ClientError::Protocol("empty password".into()));
    }
    Ok(line)
}

fn operation(op: &str) -> Result<AclOperation, ClientError> {
    Ok(match op {
        "read" => AclOperation::Read,
        "write" => AclOperation::Write,
        "create" => AclOperation::Create,
        "delete" => AclOperation::Delete,
        "describe" => AclOperation::Describe,
        "alter" => AclOperation::Alter,
        "all" => AclOperation::All,
        other => {
            return Err(ClientError::Protocol(format!(
                "unknown operation {other:?}: read, write, create, delete, describe, alter or all"
            )))
        }
    })
}

fn binding(rule: AclRule) -> Result<AclBinding, ClientError> {
    let r = rule.resource;
    let prefixes = [&r.topic_prefix, &r.group_prefix, &r.transactional_id_prefix];
    if prefixes.iter().any(|p| p.as_deref() == Some("")) {
        let why = "an empty prefix: use --all-topics, --all-groups or --all-transactional-ids";
        return Err(ClientError::Record(why.into()));
    }
    let (resource, name) = if let Some(t) = r.topic {
        (AclResourceKind::Topic, t)
    } else if let Some(p) = r.topic_prefix {
        (AclResourceKind::TopicPrefix, p)
    } else if r.all_topics {
        (AclResourceKind::TopicPrefix, String::new())
    } else if let Some(g) = r.group {
        (AclResourceKind::Group, g)
    } else if let Some(p) = r.group_prefix {
        (AclResourceKind::GroupPrefix, p)
    } else if r.all_groups {
        (AclResourceKind::GroupPrefix, String::new())
    } else if let Some(t) = r.transactional_id {
        (AclResourceKind::TransactionalId, t)
    } else if let Some(p) = r.transactional_id_prefix {
        (AclResourceKind::TransactionalIdPrefix, p)
    } else if r.all_transactional_ids {
        (AclResourceKind::TransactionalIdPrefix, String::new())
    } else {
        (AclResourceKind::Cluster, String::new())
    };
    Ok(AclBinding {
        principal: rule.principal,
        resource,
        name,
        operation: operation(&rule.op)?,
        deny: rule.deny,
    })
}

fn show(a: &AclBinding) -> String {
    let every = a.name.is_empty();
    let kind = match a.resource {
        AclResourceKind::Topic => "topic",
        AclResourceKind::TopicPrefix if every => "all-topics",
        AclResourceKind::TopicPrefix => "topic-prefix",
        AclResourceKind::Group => "group",
        AclResourceKind::GroupPrefix if every => "all-groups",
        AclResourceKind::GroupPrefix => "group-prefix",
        AclResourceKind::Cluster => "cluster",
        AclResourceKind::TransactionalId => "transactional-id",
        AclResourceKind::TransactionalIdPrefix if every => "all-transactional-ids",
        AclResourceKind::TransactionalIdPrefix => "transactional-id-prefix",
    };
    let verdict = if a.deny { "deny" } else { "allow" };
    let op = format!("{:?}", a.operation).to_lowercase();
    format!("{}\t{verdict}\t{op}\t{kind}\t{}", a.principal, a.name)
}

/// `brokerctl user …`.
pub async fn user(
    client: &Client,
    cmd: UserCommand,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    match cmd {
        UserCommand::Add { name, new_password_file, superuser } => {
            let password = read_secret(new_password_file.as_ref())?;
            let created = client.upsert_user(&name, &password, superuser).await?;
            let _ = writeln!(out, "user {name} {}", if created { "created" } else { "updated" });
        }
        UserCommand::Delete { name } => {
            let acls = client.delete_user(&name).await?;
            let _ = writeln!(out, "user {name} deleted ({acls} ACLs removed)");
        }
        UserCommand::List => {
            for u in client.list_users().await? {
                let su = if u.superuser { "superuser" } else { "" };
                let _ = writeln!(out, "{}\t{}\t{su}", u.name, u.mechanisms.join(","));
            }
        }
    }
    Ok(())
}

/// `brokerctl acl …`.
pub async fn acl(
    client: &Client,
    cmd: AclCommand,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    match cmd {
        AclCommand::Add(rule) => {
            let created = client.create_acl(binding(rule)?).await?;
            let _ = writeln!(out, "{}", if created { "added" } else { "already there" });
        }
        AclCommand::Remove(rule) => {
            let deleted = client.delete_acl(binding(rule)?).await?;
            let _ = writeln!(out, "{}", if deleted { "removed" } else { "no such rule" });
        }
        AclCommand::List { principal } => {
            for a in client.list_acls(principal.as_deref().unwrap_or("")).await? {
                let _ = writeln!(out, "{}", show(&a));
            }
        }
    }
    Ok(())
}

/// `brokerctl token …`.
pub async fn token(
    client: &Client,
    cmd: TokenCommand,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    match cmd {
        TokenCommand::Create { user, ttl_ms } => {
            let (token, _, _) = client.create_token(&user, ttl_ms).await?;
            let _ = writeln!(out, "{token}");
        }
        TokenCommand::Delete { id } => {
            let deleted = client.delete_token(&id).await?;
            let _ = writeln!(out, "{}", if deleted { "deleted" } else { "no such token" });
        }
        TokenCommand::List => {
            for t in client.list_tokens("").await? {
                let _ = writeln!(out, "{}\t{}\t{}", t.id, t.user, t.expires_ms);
            }
        }
    }
    Ok(())
}
