//! Authentication (SASL over native frames), users and ACLs.
//!
//! A connection authenticates with [`SaslHandshakeRequest`] (pick a mechanism) and then one
//! or more [`SaslAuthenticateRequest`]s carrying the mechanism's messages (SCRAM: two round
//! trips, see `crate::scram`; PLAIN: one, only on a TLS connection). Failures travel as error
//! frames: `UNSUPPORTED_SASL_MECHANISM`, `AUTHENTICATION_FAILED` (after which the broker
//! closes the connection). Users carry SCRAM credentials only (never a password): the client
//! derives them ([`ScramCredential`]) and the broker stores them.
//!
//! ACLs: a principal (a user name, or `*` for every authenticated user) is allowed or denied
//! an [`AclOperation`] on a resource ([`AclResourceKind`] + name). Deny wins over allow;
//! superusers bypass ACLs; with no matching allow a request is denied.

wire_type! {
    /// Choose a SASL mechanism for this connection.
    pub struct SaslHandshakeRequest {
        /// `SCRAM-SHA-256`, `SCRAM-SHA-512` or `PLAIN`.
        pub mechanism: String,
    }
}
message!(SaslHandshakeRequest, SaslHandshake);

wire_type! {
    /// The mechanism is accepted; these are the ones the broker offers on this connection.
    pub struct SaslHandshakeResponse {
        /// Every mechanism offered here.
        pub mechanisms: Vec<String>,
    }
}
message!(SaslHandshakeResponse, SaslHandshake);

wire_type! {
    /// One message of the chosen mechanism.
    pub struct SaslAuthenticateRequest {
        /// The mechanism's bytes (SCRAM client-first, then client-final; PLAIN's one message).
        pub auth_bytes: Vec<u8>,
    }
}
message!(SaslAuthenticateRequest, SaslAuthenticate);

wire_type! {
    /// The broker's answer to one message.
    pub struct SaslAuthenticateResponse {
        /// The mechanism's answer (SCRAM server-first, then server-final).
        pub auth_bytes: Vec<u8>,
        /// The connection is authenticated as `principal`.
        pub complete: bool,
        /// The authenticated user (when complete).
        pub principal: String,
    }
}
message!(SaslAuthenticateResponse, SaslAuthenticate);

wire_type! {
    /// One SCRAM credential as stored: never the password.
    pub struct ScramCredential {
        /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
        pub mechanism: String,
        /// Salt (16..=64 bytes).
        pub salt: Vec<u8>,
        /// PBKDF2 iterations (4096..=1,000,000).
        pub iterations: u32,
        /// H(ClientKey).
        pub stored_key: Vec<u8>,
        /// HMAC(SaltedPassword, "Server Key").
        pub server_key: Vec<u8>,
    }
}

wire_type! {
    /// Create a user or replace its credentials (alter on the cluster).
    pub struct UpsertUserRequest {
        /// User name: 1..=128 bytes of `[A-Za-z0-9._@-]`.
        pub name: String,
        /// Superusers bypass ACLs.
        pub superuser: bool,
        /// At least one credential; one per mechanism.
        pub credentials: Vec<ScramCredential>,
    }
}
message!(UpsertUserRequest, UpsertUser);

wire_type! {
    /// The user is stored (durably) and visible on every shard.
    pub struct UpsertUserResponse {
        /// The user did not exist before.
        pub created: bool,
    }
}
message!(UpsertUserResponse, UpsertUser);

wire_type! {
    /// Delete a user (alter on the cluster); its open connections are refused from their
    /// next request on.
    pub struct DeleteUserRequest {
        /// User name.
        pub name: String,
    }
}
message!(DeleteUserRequest, DeleteUser);

wire_type! {
    /// The user is gone.
    pub struct DeleteUserResponse {
        /// ACLs naming the user that were removed with it.
        pub acls_removed: u32,
    }
}
message!(DeleteUserResponse, DeleteUser);

wire_type! {
    /// List users (describe on the cluster).
    pub struct ListUsersRequest {
        /// Only users whose name starts with this.
        pub prefix: String,
    }
}
message!(ListUsersRequest, ListUsers);

wire_type! {
    /// One user in a listing.
    pub struct UserSummary {
        /// Name.
        pub name: String,
        /// Bypasses ACLs.
        pub superuser: bool,
        /// Mechanisms it has credentials for.
        pub mechanisms: Vec<String>,
    }
}

wire_type! {
    /// Users, by name.
    pub struct ListUsersResponse {
        /// Users.
        pub users: Vec<UserSummary>,
    }
}
message!(ListUsersResponse, ListUsers);

wire_type! {
    /// What an ACL's resource names.
    #[repr(u8)]
    pub enum AclResourceKind {
        /// One topic (or table) by name.
        #[default]
        Topic,
        /// Every topic whose name starts with the resource name (an empty name: every topic;
        /// likewise for the other prefix kinds).
        TopicPrefix,
        /// One consumer group by id.
        Group,
        /// The broker itself (create/delete topics, users, ACLs, stats); name is empty.
        Cluster,
        /// One transactional id (InitProducerId with it: write), so a producer cannot fence
        /// another's.
        TransactionalId,
        /// Every transactional id starting with the resource name.
        TransactionalIdPrefix,
        /// Every consumer group whose id starts with the resource name.
        GroupPrefix,
    }
}

wire_type! {
    /// What an ACL allows or denies.
    #[repr(u8)]
    pub enum AclOperation {
        /// Fetch, subscribe, table reads, key queries, group membership and commits.
        #[default]
        Read,
        /// Produce.
        Write,
        /// Create topics and tables.
        Create,
        /// Delete topics and tables.
        Delete,
        /// See a topic in metadata and describe it; list groups; stats.
        Describe,
        /// Users, ACLs, configuration.
        Alter,
        /// Every operation.
        All,
    }
}

wire_type! {
    /// One ACL.
    pub struct AclBinding {
        /// A user name, or `*` for every authenticated user.
        pub principal: String,
        /// Resource kind.
        pub resource: AclResourceKind,
        /// Resource name (topic, prefix, group; empty for the cluster).
        pub name: String,
        /// Operation.
        pub operation: AclOperation,
        /// A deny rule (deny wins over allow).
        pub deny: bool,
    }
}

wire_type! {
    /// Add and remove ACLs in one change of the broker's security state (alter on the
    /// cluster), persisted once: every rule is checked first and none is changed if one is
    /// refused. Rules to add that are stored already, and rules to remove that are not, are
    /// left as they are.
    pub struct ChangeAclsRequest {
        /// Rules to add.
        pub add: Vec<AclBinding>,
        /// Rules to remove, exactly as added.
        pub remove: Vec<AclBinding>,
    }
}
message!(ChangeAclsRequest, ChangeAcls);

wire_type! {
    /// What changed.
    pub struct ChangeAclsResponse {
        /// Rules that were not stored before.
        pub added: u32,
        /// Rules that were stored and are gone.
        pub removed: u32,
    }
}
message!(ChangeAclsResponse, ChangeAcls);

wire_type! {
    /// One user's SCRAM credential changes (see [`ChangeCredentialsRequest`]).
    pub struct UserCredentialChange {
        /// The user.
        pub user: String,
        /// Mechanisms whose credential goes (`SCRAM-SHA-256`, `SCRAM-SHA-512`); each must
        /// be stored.
        pub remove: Vec<String>,
        /// Credentials to store, each replacing the user's credential of its mechanism.
        pub upsert: Vec<ScramCredential>,
    }
}

wire_type! {
    /// Change users' SCRAM credentials one mechanism at a time (alter on the cluster), as
    /// Kafka's AlterUserScramCredentials: each user's changes are made or refused together,
    /// apart from the other users', and all that are made are persisted once. A user not
    /// stored yet is created (not a superuser); a user whose last credential goes is
    /// removed with its bearer tokens (its ACLs stay, as Kafka keeps them). A user named
    /// twice is refused (`INVALID_REQUEST`), as is a mechanism named twice for one user.
    pub struct ChangeCredentialsRequest {
        /// One entry per user.
        pub users: Vec<UserCredentialChange>,
    }
}
message!(ChangeCredentialsRequest, ChangeCredentials);

wire_type! {
    /// One user's outcome.
    pub struct UserCredentialResult {
        /// The user.
        pub user: String,
        /// 0, or why nothing of this user's changed: `UNKNOWN_USER` (a credential to
        /// remove is not stored), `INVALID_REQUEST` (a credential out of bounds, an unknown
        /// mechanism, a name named twice), `RESOURCE_LIMIT` (`auth.users_max`),
        /// `STORAGE_IO` (nothing was persisted).
        pub error: u16,
        /// Why, for a person.
        pub message: String,
    }
}

wire_type! {
    /// Each user's outcome, in request order.
    pub struct ChangeCredentialsResponse {
        /// One per user of the request.
        pub results: Vec<UserCredentialResult>,
    }
}
message!(ChangeCredentialsResponse, ChangeCredentials);

wire_type! {
    /// Add an ACL (alter on the cluster).
    pub struct CreateAclRequest {
        /// The rule.
        pub acl: AclBinding,
    }
}
message!(CreateAclRequest, CreateAcl);

wire_type! {
    /// The rule is stored and in force on every shard.
    pub struct CreateAclResponse {
        /// It was not there before.
        pub created: bool,
    }
}
message!(CreateAclResponse, CreateAcl);

wire_type! {
    /// Remove an ACL (alter on the cluster).
    pub struct DeleteAclRequest {
        /// The rule, exactly as added.
        pub acl: AclBinding,
    }
}
message!(DeleteAclRequest, DeleteAcl);

wire_type! {
    /// The rule is gone.
    pub struct DeleteAclResponse {
        /// It existed.
        pub deleted: bool,
    }
}
message!(DeleteAclResponse, DeleteAcl);

wire_type! {
    /// List ACLs (describe on the cluster).
    pub struct ListAclsRequest {
        /// Only this principal's (empty: all).
        pub principal: String,
    }
}
message!(ListAclsRequest, ListAcls);

wire_type! {
    /// ACLs in force.
    pub struct ListAclsResponse {
        /// Rules.
        pub acls: Vec<AclBinding>,
    }
}
message!(ListAclsResponse, ListAcls);

wire_type! {
    /// Create a bearer token for `user` (HTTP `Authorization: Bearer`; alter on the cluster).
    /// The broker keeps only its SHA-256; the token is shown once, in the response.
    pub struct CreateTokenRequest {
        /// The user the token authenticates as.
        pub user: String,
        /// Lifetime in ms (0: until deleted).
        pub ttl_ms: u64,
    }
}
message!(CreateTokenRequest, CreateToken);

wire_type! {
    /// A new token.
    pub struct CreateTokenResponse {
        /// `<id>.<secret>`: send as `Authorization: Bearer <token>`.
        pub token: String,
        /// Its id (to list or delete it).
        pub id: String,
        /// When it stops working (ms since the epoch; 0: never).
        pub expires_ms: i64,
    }
}
message!(CreateTokenResponse, CreateToken);

wire_type! {
    /// Delete a token (alter on the cluster).
    pub struct DeleteTokenRequest {
        /// Its id.
        pub id: String,
    }
}
message!(DeleteTokenRequest, DeleteToken);

wire_type! {
    /// The token is gone.
    pub struct DeleteTokenResponse {
        /// It existed.
        pub deleted: bool,
    }
}
message!(DeleteTokenResponse, DeleteToken);

wire_type! {
    /// List tokens (describe on the cluster).
    pub struct ListTokensRequest {
        /// Only this user's (empty: all).
        pub user: String,
    }
}
message!(ListTokensRequest, ListTokens);

wire_type! {
    /// One token in a listing (never its secret).
    pub struct TokenSummary {
        /// Id.
        pub id: String,
        /// The user it authenticates as.
        pub user: String,
        /// Expiry (ms since the epoch; 0: never).
        pub expires_ms: i64,
    }
}

wire_type! {
    /// Tokens.
    pub struct ListTokensResponse {
        /// Tokens.
        pub tokens: Vec<TokenSummary>,
    }
}
message!(ListTokensResponse, ListTokens);
