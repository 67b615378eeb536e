//! The `[auth]` table: whether connections must authenticate, and the budgets of what
//! authentication may make the broker hold (users, ACLs, the failed-attempt table).

use serde::Deserialize;

/// Whether connections must authenticate (`--auth`, `BROKER_AUTH`, `auth.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// `required` once a user exists in the data directory, `off` while there is none (a
    /// fresh broker stays open for development; the first `broker user add` closes it).
    Auto,
    /// Every request before a successful authentication fails with
    /// `AUTHENTICATION_REQUIRED`; ACLs decide the rest.
    Required,
    /// Authentication is accepted but not required: unauthenticated connections act as the
    /// principal `ANONYMOUS`, which ACLs may grant (the `*` principal does not cover it).
    Optional,
    /// No authentication and no ACL checks (SASL requests are still answered, so clients
    /// with credentials work).
    Off,
}

impl std::str::FromStr for AuthMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(AuthMode::Auto),
            "required" => Ok(AuthMode::Required),
            "optional" => Ok(AuthMode::Optional),
            "off" => Ok(AuthMode::Off),
            other => Err(format!("unknown auth mode {other:?}: auto, required, optional or off")),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// [`AuthMode`].
    pub mode: AuthMode,
    /// Most users the broker stores.
    pub users_max: usize,
    /// Most ACLs the broker stores.
    pub acls_max: usize,
    /// Most HTTP bearer tokens the broker stores (expired ones are dropped first).
    pub tokens_max: usize,
    /// Failed authentications one source address may make per `failure_window_ms`; past
    /// it, its attempts are refused (and disconnected) until the window ends.
    pub failures_per_address_max: u32,
    /// The failed-attempt window.
    pub failure_window_ms: u64,
    /// Source addresses the failed-attempt table remembers (oldest forgotten first).
    pub failure_addresses_max: usize,
    /// Audit lines (target `audit`) per second, broker-wide; the rest are counted and the
    /// count is logged with the next line.
    pub audit_lines_per_s_max: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Auto,
            users_max: 10_000,
            acls_max: 100_000,
            tokens_max: 10_000,
            failures_per_address_max: 10,
            failure_window_ms: 60_000,
            failure_addresses_max: 65_536,
            audit_lines_per_s_max: 100,
        }
    }
}

impl AuthConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), String> {
        if self.users_max == 0
            || self.failures_per_address_max == 0
            || self.failure_window_ms == 0
            || self.failure_addresses_max == 0
        {
            return Err("auth.users_max, failures_per_address_max, failure_window_ms and \
                 failure_addresses_max must be positive"
                .into());
        }
        Ok(())
    }
}
