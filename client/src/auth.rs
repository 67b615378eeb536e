//! Authentication and security administration from the client side.
//!
//! - [`Credentials`] in [`crate::ClientConfig`]: every connection the client opens (the
//!   bootstrap one and one per shard) authenticates with SCRAM (SHA-512 by default) right
//!   after it connects, before any other request; the broker's signature is checked too,
//!   so a server that does not know the user's keys is not believed.
//! - [`Client`] admin calls for users (the credential is derived here: the password never
//!   leaves the client) and ACLs.

use base64::Engine as _;
use wire::scram::{ClientExchange, Credential, Mechanism, SCRAM_ITERATIONS_DEFAULT};
use wire::*;

use crate::client::Client;
use crate::connection::Connection;
use crate::error::ClientError;

/// A user name and password, and the SCRAM mechanism to prove it with.
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// SCRAM-SHA-512 by default.
    pub mechanism: Mechanism,
}

impl Credentials {
    /// SCRAM-SHA-512 credentials.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials { user: user.into(), password: password.into(), mechanism: Mechanism::Sha512 }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("mechanism", &self.mechanism)
            .finish()
    }
}

fn random(buf: &mut [u8]) -> Result<(), ClientError> {
    getrandom::getrandom(buf)
        .map_err(|e| ClientError::Protocol(format!("no random source for SCRAM: {e}")))
}

/// Authenticates `conn` (SaslHandshake, then the SCRAM exchange).
pub async fn authenticate(conn: &Connection, creds: &Credentials) -> Result<(), ClientError> {
    let addr = conn.addr();
    let _: SaslHandshakeResponse =
        conn.request(&SaslHandshakeRequest { mechanism: creds.mechanism.name().into() }).await?;
    let mut nonce = [0u8; 24];
    random(&mut nonce)?;
    let nonce = base64::engine::general_purpose::STANDARD.encode(nonce);
    let (mut exchange, first) =
        ClientExchange::start(creds.mechanism, &creds.user, creds.password.as_bytes(), &nonce);
    let server_first: SaslAuthenticateResponse =
        conn.request(&SaslAuthenticateRequest { auth_bytes: first.into_bytes() }).await?;
    let fail = |message: String| ClientError::Broker {
        code: ErrorCode::AuthenticationFailed,
        message,
        addr,
    };
    let client_final =
        exchange.respond(&server_first.auth_bytes).map_err(|e| fail(e.to_string()))?;
    let server_final: SaslAuthenticateResponse =
        conn.request(&SaslAuthenticateRequest { auth_bytes: client_final.into_bytes() }).await?;
    exchange.verify(&server_final.auth_bytes).map_err(|e| {
        fail(format!("the broker's SCRAM signature does not verify ({e}): not the real broker?"))
    })?;
    if !server_final.complete {
        return Err(fail("the broker did not complete the authentication".into()));
    }
    Ok(())
}

/// SCRAM credentials for `password` (both mechanisms, fresh salts): what the broker stores.
pub fn scram_credentials(password: &str) -> Result<Vec<ScramCredential>, ClientError> {
    Mechanism::ALL
        .iter()
        .map(|&m| {
            let mut salt = [0u8; 24];
            random(&mut salt)?;
            let c = Credential::derive(m, password.as_bytes(), &salt, SCRAM_ITERATIONS_DEFAULT);
            Ok(ScramCredential {
                mechanism: m.name().into(),
                salt: c.salt,
                iterations: c.iterations,
                stored_key: c.stored_key,
                server_key: c.server_key,
            })
        })
        .collect()
}

impl Client {
    async fn admin<Q: Message, R>(&self, req: &Q) -> Result<R, ClientError>
    where
        R: rkyv::Archive,
        R::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>,
            > + rkyv::Deserialize<R, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        self.bootstrap_conn().await?.request(req).await
    }

    /// Creates a user or replaces its password (alter on the cluster); true if it is new.
    pub async fn upsert_user(
        &self,
        name: &str,
        password: &str,
        superuser: bool,
    ) -> Result<bool, ClientError> {
        let credentials = scram_credentials(password)?;
        let r: UpsertUserResponse =
            self.admin(&UpsertUserRequest { name: name.into(), superuser, credentials }).await?;
        Ok(r.created)
    }

    /// Deletes a user and its ACLs; how many ACLs went with it.
    pub async fn delete_user(&self, name: &str) -> Result<u32, ClientError> {
        let r: DeleteUserResponse = self.admin(&DeleteUserRequest { name: name.into() }).await?;
        Ok(r.acls_removed)
    }

    /// Users (describe on the cluster).
    pub async fn list_users(&self) -> Result<Vec<UserSummary>, ClientError> {
        let r: ListUsersResponse = self.admin(&ListUsersRequest { prefix: String::new() }).await?;
        Ok(r.users)
    }

    /// Adds an ACL; true if it was not there.
    pub async fn create_acl(&self, acl: AclBinding) -> Result<bool, ClientError> {
        let r: CreateAclResponse = self.admin(&CreateAclRequest { acl }).await?;
        Ok(r.created)
    }

    /// Removes an ACL; true if it was there.
    pub async fn delete_acl(&self, acl: AclBinding) -> Result<bool, ClientError> {
        let r: DeleteAclResponse = self.admin(&DeleteAclRequest { acl }).await?;
        Ok(r.deleted)
    }

    /// Adds and removes ACLs in one change, persisted once; none is made if one is refused.
    /// Returns (how many were added, how many removed): rules already stored or not stored
    /// are left as they are.
    pub async fn change_acls(
        &self,
        add: Vec<AclBinding>,
        remove: Vec<AclBinding>,
    ) -> Result<(u32, u32), ClientError> {
        let r: ChangeAclsResponse = self.admin(&ChangeAclsRequest { add, remove }).await?;
        Ok((r.added, r.removed))
    }

    /// Stores and removes users' SCRAM credentials one mechanism at a time (Kafka's
    /// AlterUserScramCredentials natively): each user's changes are made or refused
    /// together, apart from the others', persisted once. One result per user, in order (a
    /// non-zero `error` says why that user changed nothing).
    pub async fn change_credentials(
        &self,
        users: Vec<UserCredentialChange>,
    ) -> Result<Vec<UserCredentialResult>, ClientError> {
        let r: ChangeCredentialsResponse = self.admin(&ChangeCredentialsRequest { users }).await?;
        Ok(r.results)
    }

    /// Creates an HTTP bearer token for `user` (0: no expiry): (token, id, expiry ms).
    pub async fn create_token(
        &self,
        user: &str,
        ttl_ms: u64,
    ) -> Result<(String, String, i64), ClientError> {
        let r: CreateTokenResponse =
            self.admin(&CreateTokenRequest { user: user.into(), ttl_ms }).await?;
        Ok((r.token, r.id, r.expires_ms))
    }

    /// Deletes a bearer token; true if it existed.
    pub async fn delete_token(&self, id: &str) -> Result<bool, ClientError> {
        let r: DeleteTokenResponse = self.admin(&DeleteTokenRequest { id: id.into() }).await?;
        Ok(r.deleted)
    }

    /// Bearer tokens (of one user, or all).
    pub async fn list_tokens(&self, user: &str) -> Result<Vec<TokenSummary>, ClientError> {
        let r: ListTokensResponse = self.admin(&ListTokensRequest { user: user.into() }).await?;
        Ok(r.tokens)
    }

    /// ACLs, of one principal or (empty) all.
    pub async fn list_acls(&self, principal: &str) -> Result<Vec<AclBinding>, ClientError> {
        let r: ListAclsResponse =
            self.admin(&ListAclsRequest { principal: principal.into() }).await?;
        Ok(r.acls)
    }
}
