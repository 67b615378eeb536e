//! Users made outside a running broker: `broker user add NAME --data-dir DIR [--superuser]`
//! (the password on stdin) bootstraps the first admin. The caller (`main.rs`) holds the data
//! directory's lock (`server::lock_data_dir`) first, so this refuses while a broker runs
//! there (the running broker would not see the change); with the broker stopped it writes
//! `security.json` the same crash-safe way the broker does.

use std::path::Path;

use wire::scram::{Credential, Mechanism, SCRAM_ITERATIONS_DEFAULT};

use super::config::AuthConfig;
use super::store::{Security, StoredCredential, User};

/// Credentials for `password`, one per mechanism, each with a fresh random salt.
pub fn credentials(password: &[u8]) -> Vec<StoredCredential> {
    Mechanism::ALL
        .iter()
        .map(|&m| {
            let mut salt = [0u8; 24];
            super::random_bytes(&mut salt);
            StoredCredential::new(&Credential::derive(m, password, &salt, SCRAM_ITERATIONS_DEFAULT))
        })
        .collect()
}

/// Why `broker user add` failed.
#[derive(Debug, thiserror::Error)]
pub enum UserAddError {
    /// The stored users cannot be read.
    #[error("cannot read the users file (security.json): {0}")]
    Load(std::io::Error),
    /// The change was refused.
    #[error(transparent)]
    Refused(#[from] super::store::SecurityError),
    /// An empty password.
    #[error("the password (read from stdin) is empty")]
    EmptyPassword,
}

/// Adds (or replaces) user `name` in `data_dir`, whose lock the caller holds; true if it is
/// new.
pub fn add_offline(
    data_dir: &Path,
    config: &AuthConfig,
    name: &str,
    password: &[u8],
    superuser: bool,
) -> Result<bool, UserAddError> {
    if password.is_empty() {
        return Err(UserAddError::EmptyPassword);
    }
    let security = Security::open(data_dir, config).map_err(UserAddError::Load)?;
    Ok(security.upsert_user(name, User { superuser, credentials: credentials(password) })?)
}
