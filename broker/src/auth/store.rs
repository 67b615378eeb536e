//! Users and ACLs: one immutable [`SecurityState`] snapshot, persisted as
//! `<data>/security.json` and shared by every shard through [`Security`].
//!
//! Contract:
//! - Durable like the topic metadata: a change is written with `durable_file::write_checked`
//!   (temp file, fsync, rename, fsync the directory, a CRC32C line in front) *before* it is
//!   installed and answered, so after a crash (kill -9, power loss) the file holds the state
//!   before or after the change, never a mix; a damaged file refuses the start, naming it.
//! - Changes are serialized (one writer at a time: the controller shard for client requests,
//!   `broker user add` with the broker stopped) and installed by swapping the snapshot; the
//!   [`Security::generation`] counter moves with every change, so sessions drop their cached
//!   decisions and re-check their user (a deleted user's connections are refused on their
//!   next request).
//! - Only SCRAM credentials are stored (salt, iterations, StoredKey, ServerKey), never a
//!   password. Users and ACLs are bounded by `auth.users_max` / `auth.acls_max`.
//! - Readers take the lock only to clone the `Arc` (a session does it when the generation
//!   moved, not per request); nothing holds it across an `.await`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use wire::scram::{Credential, Mechanism};

use super::acl::Acl;
use super::audit::Audit;
use super::config::{AuthConfig, AuthMode};
use super::limiter::FailureLimiter;

/// Name of the users-and-ACLs file inside the data directory.
pub const SECURITY_FILE: &str = "security.json";
/// Longest user name.
pub const USER_NAME_BYTES_MAX: usize = 128;

/// Why a change to users or ACLs was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// The user name is not 1..=128 bytes of `[A-Za-z0-9._@-]`.
    #[error("invalid user name {0:?}: 1..=128 bytes of [A-Za-z0-9._@-]")]
    UserName(String),
    /// No such user.
    #[error("no user {0:?}")]
    UnknownUser(String),
    /// A credential is out of bounds or names an unknown mechanism.
    #[error("invalid credential: {0}")]
    Credential(String),
    /// `auth.users_max` or `auth.acls_max` reached.
    #[error("{what} limit of {max} reached (auth.{what}_max)")]
    Limit {
        /// `users` or `acls`.
        what: &'static str,
        /// The configured maximum.
        max: usize,
    },
    /// The ACL is malformed.
    #[error(transparent)]
    Acl(#[from] super::acl::AclError),
    /// Persisting failed; nothing changed.
    #[error("cannot store {SECURITY_FILE}: {0}")]
    Io(#[from] std::io::Error),
}

impl SecurityError {
    /// The wire code that reports it.
    pub fn code(&self) -> wire::ErrorCode {
        match self {
            SecurityError::UnknownUser(_) => wire::ErrorCode::UnknownUser,
            SecurityError::Limit { .. } => wire::ErrorCode::ResourceLimit,
            SecurityError::Io(_) => wire::ErrorCode::StorageIo,
            _ => wire::ErrorCode::InvalidRequest,
        }
    }
}

/// Whether `name` may name a user.
pub fn is_valid_user_name(name: &str) -> bool {
    (1..=USER_NAME_BYTES_MAX).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A SCRAM credential as stored (base64 bytes in the JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredential {
    /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// Salt, base64.
    pub salt: String,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// StoredKey, base64.
    pub stored_key: String,
    /// ServerKey, base64.
    pub server_key: String,
}

impl StoredCredential {
    /// From a checked credential.
    pub fn new(c: &Credential) -> StoredCredential {
        StoredCredential {
            mechanism: c.mechanism.name().to_owned(),
            salt: b64().encode(&c.salt),
            iterations: c.iterations,
            stored_key: b64().encode(&c.stored_key),
            server_key: b64().encode(&c.server_key),
        }
    }

    /// From the wire, checked against the bounds (`Credential::validate`).
    pub fn from_wire(c: &wire::ScramCredential) -> Result<StoredCredential, SecurityError> {
        let mechanism = Mechanism::from_name(&c.mechanism)
            .ok_or_else(|| SecurityError::Credential(format!("mechanism {:?}", c.mechanism)))?;
        let credential = Credential {
            mechanism,
            salt: c.salt.clone(),
            iterations: c.iterations,
            stored_key: c.stored_key.clone(),
            server_key: c.server_key.clone(),
        };
        credential.validate().map_err(|e| SecurityError::Credential(e.to_string()))?;
        Ok(StoredCredential::new(&credential))
    }

    /// The credential, `None` if the stored text is damaged (refused at load).
    pub fn credential(&self) -> Option<Credential> {
        let c = Credential {
            mechanism: Mechanism::from_name(&self.mechanism)?,
            salt: b64().decode(&self.salt).ok()?,
            iterations: self.iterations,
            stored_key: b64().decode(&self.stored_key).ok()?,
            server_key: b64().decode(&self.server_key).ok()?,
        };
        c.validate().ok().map(|()| c)
    }
}

/// One user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Bypasses ACLs.
    pub superuser: bool,
    /// One per mechanism.
    pub credentials: Vec<StoredCredential>,
}

impl User {
    /// The user's credential for `mechanism`.
    pub fn credential(&self, mechanism: Mechanism) -> Option<Credential> {
        self.credentials
            .iter()
            .filter_map(StoredCredential::credential)
            .find(|c| c.mechanism == mechanism)
    }
}

/// An HTTP bearer token as stored: its SHA-256, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The user it authenticates as.
    pub user: String,
    /// SHA-256 of the token's secret part, base64.
    pub digest: String,
    /// Expiry, ms since the epoch (0: never).
    pub expires_ms: i64,
}

/// Users and ACLs (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityState {
    /// By name.
    pub users: BTreeMap<String, User>,
    /// Every rule.
    pub acls: BTreeSet<Acl>,
    /// Bearer tokens by id.
    #[serde(default)]
    pub tokens: BTreeMap<String, Token>,
}

impl SecurityState {
    /// Loads `<data_dir>/security.json`, empty if there is none.
    pub fn load(data_dir: &Path) -> std::io::Result<SecurityState> {
        let Some(bytes) = crate::durable_file::read_checked(data_dir, SECURITY_FILE)? else {
            return Ok(SecurityState::default());
        };
        let state: SecurityState = serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{SECURITY_FILE}: {e}"))
        })?;
        for (name, user) in &state.users {
            if user.credentials.iter().any(|c| c.credential().is_none()) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{SECURITY_FILE}: user {name:?} has a damaged credential"),
                ));
            }
        }
        Ok(state)
    }

    /// Persists atomically and durably.
    pub fn store(&self, data_dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::durable_file::write_checked(data_dir, SECURITY_FILE, &json)
    }

    /// Creates or replaces `name`; true if it is new.
    pub fn upsert_user(
        &mut self,
        name: &str,
        user: User,
        users_max: usize,
    ) -> Result<bool, SecurityError> {
        if !is_valid_user_name(name) {
            return Err(SecurityError::UserName(name.to_owned()));
        }
        if user.credentials.is_empty() {
            return Err(SecurityError::Credential("a user needs at least one credential".into()));
        }
        let created = !self.users.contains_key(name);
        if created && self.users.len() >= users_max {
            return Err(SecurityError::Limit { what: "users", max: users_max });
        }
        self.users.insert(name.to_owned(), user);
        Ok(created)
    }

    /// Deletes `name` and the ACLs naming it; how many ACLs went with it.
    pub fn delete_user(&mut self, name: &str) -> Result<u32, SecurityError> {
        if self.users.remove(name).is_none() {
            return Err(SecurityError::UnknownUser(name.to_owned()));
        }
        let before = self.acls.len();
        self.acls.retain(|a| a.principal != name);
        self.tokens.retain(|_, t| t.user != name);
        Ok((before - self.acls.len()) as u32)
    }
}

/// The broker-wide users and ACLs, shared by every shard (see the module docs).
pub struct Security {
    config: AuthConfig,
    data_dir: PathBuf,
    state: RwLock<Arc<SecurityState>>,
    generation: AtomicU64,
    has_users: AtomicBool,
    writer: Mutex<()>,
    /// Failed authentications per source address.
    pub limiter: FailureLimiter,
    /// The audit log's rate limit.
    pub audit: Audit,
}

impl Security {
    /// Loads the data directory's users and ACLs.
    pub fn open(data_dir: &Path, config: &AuthConfig) -> std::io::Result<Arc<Security>> {
        let state = SecurityState::load(data_dir)?;
        Ok(Arc::new(Security {
            limiter: FailureLimiter::new(config),
            audit: Audit::new(config.audit_lines_per_s_max),
            config: config.clone(),
            data_dir: data_dir.to_owned(),
            has_users: AtomicBool::new(!state.users.is_empty()),
            state: RwLock::new(Arc::new(state)),
            generation: AtomicU64::new(1),
            writer: Mutex::new(()),
        }))
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<SecurityState> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Moves with every change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The configured mode.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The mode in force now (`auto` resolved by whether a user exists).
    pub fn mode(&self) -> AuthMode {
        match self.config.mode {
            AuthMode::Auto if !self.has_users.load(Ordering::Acquire) => AuthMode::Off,
            AuthMode::Auto => AuthMode::Required,
            m => m,
        }
    }

    /// Applies `change` to a copy of the state, persists it, then installs it. Nothing is
    /// installed when `change` or the write fails, and nothing is written (nor the
    /// generation moved) when it left the state as it was.
    pub fn change<T>(
        &self,
        change: impl FnOnce(&mut SecurityState) -> Result<T, SecurityError>,
    ) -> Result<T, SecurityError> {
        let _one_writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.snapshot();
        let mut next = (*now).clone();
        let out = change(&mut next)?;
        if next == *now {
            return Ok(out);
        }
        if next.acls.len() > self.config.acls_max {
            return Err(SecurityError::Limit { what: "acls", max: self.config.acls_max });
        }
        next.store(&self.data_dir)?;
        self.has_users.store(!next.users.is_empty(), Ordering::Release);
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(out)
    }

    /// `Some(superuser)` if `password` is `user`'s (PBKDF2: slow on purpose; PLAIN and HTTP
    /// basic auth).
    pub fn check_password(&self, user: &str, password: &[u8]) -> Option<bool> {
        let state = self.snapshot();
        let u = state.users.get(user)?;
        let c = Mechanism::ALL.iter().find_map(|&m| u.credential(m))?;
        c.verify_password(password).then_some(u.superuser)
    }

    /// The user a bearer token `id.secret` authenticates as, and whether it is a superuser:
    /// `None` for an unknown, expired or wrong token, or a deleted user.
    pub fn check_token(&self, token: &str) -> Option<(String, bool)> {
        let (id, secret) = token.split_once('.')?;
        let state = self.snapshot();
        let t = state.tokens.get(id)?;
        let digest = b64().decode(&t.digest).ok()?;
        if !wire::scram::constant_time_eq(&digest, &wire::scram::sha256(secret.as_bytes())) {
            return None;
        }
        if t.expires_ms != 0 && crate::clock::now_ms() >= t.expires_ms {
            return None;
        }
        let user = state.users.get(&t.user)?;
        Some((t.user.clone(), user.superuser))
    }

    /// Creates a bearer token for `user` (bounded by `auth.tokens_max`): the token, shown
    /// once, its id and expiry.
    pub fn create_token(
        &self,
        user: &str,
        ttl_ms: u64,
    ) -> Result<(String, String, i64), SecurityError> {
        let mut id = [0u8; 8];
        let mut secret = [0u8; 32];
        super::random_bytes(&mut id);
        super::random_bytes(&mut secret);
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        let expires_ms = match ttl_ms {
            0 => 0,
            ttl => crate::clock::now_ms().saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
        };
        let max = self.config.tokens_max;
        let token = Token {
            user: user.to_owned(),
            digest: b64().encode(wire::scram::sha256(secret.as_bytes())),
            expires_ms,
        };
        self.change(|s| {
            if !s.users.contains_key(user) {
                return Err(SecurityError::UnknownUser(user.to_owned()));
            }
            let now = crate::clock::now_ms();
            s.tokens.retain(|_, t| t.expires_ms == 0 || t.expires_ms > now);
            if s.tokens.len() >= max {
                return Err(SecurityError::Limit { what: "tokens", max });
            }
            s.tokens.insert(id.clone(), token);
            Ok(())
        })?;
        Ok((format!("{id}.{secret}"), id, expires_ms))
    }

    /// Creates or replaces a user (bounded by `auth.users_max`); true if it is new.
    pub fn upsert_user(&self, name: &str, user: User) -> Result<bool, SecurityError> {
        let max = self.config.users_max;
        self.change(|s| s.upsert_user(name, user, max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(superuser: bool) -> User {
        let c = Credential::derive(Mechanism::Sha256, b"pw", &[3; 16], 4096);
        User { superuser, credentials: vec![StoredCredential::new(&c)] }
    }

    #[test]
    fn changes_persist_bounded_and_a_failed_change_installs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let config = AuthConfig { users_max: 2, acls_max: 1, ..AuthConfig::default() };
        let s = Security::open(dir.path(), &config).unwrap();
        assert_eq!(s.mode(), AuthMode::Off, "auto without users");
        let g0 = s.generation();
        assert!(s.upsert_user("alice", user(false)).unwrap());
        assert!(!s.upsert_user("alice", user(true)).unwrap());
        assert_eq!(s.mode(), AuthMode::Required, "auto with a user");
        assert!(s.generation() > g0);
        assert!(matches!(s.upsert_user("bad name", user(false)), Err(SecurityError::UserName(_))));
        s.upsert_user("bob", user(false)).unwrap();
        assert!(matches!(
            s.upsert_user("carol", user(false)),
            Err(SecurityError::Limit { what: "users", .. })
        ));
        let acl = |name: &str| Acl {
            principal: "bob".into(),
            resource: super::super::acl::ResourceKind::Topic,
            name: name.into(),
            operation: super::super::acl::Operation::Read,
            deny: false,
        };
        s.change(|st| Ok(st.acls.insert(acl("a")))).unwrap();
        let g = s.generation();
        assert!(s.change(|st| Ok(st.acls.insert(acl("b")))).is_err(), "acls_max");
        assert_eq!(s.generation(), g, "nothing installed");
        assert_eq!(s.snapshot().acls.len(), 1);
        assert_eq!(s.check_password("alice", b"pw"), Some(true));
        assert_eq!(s.check_password("alice", b"no"), None);
        // What was answered is what a restart reads.
        let again = Security::open(dir.path(), &config).unwrap();
        assert_eq!(*again.snapshot(), *s.snapshot());
        assert_eq!(s.change(|st| st.delete_user("bob")).unwrap(), 1);
        assert!(matches!(s.change(|st| st.delete_user("bob")), Err(SecurityError::UnknownUser(_))));
        let again = Security::open(dir.path(), &config).unwrap();
        assert!(again.snapshot().acls.is_empty());
        assert!(!dir.path().join("security.json.tmp").exists());
    }
}
