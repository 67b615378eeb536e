//! A connection's identity: who it authenticated as (SASL over native frames), whether the
//! transport is secure, and its cached ACL decisions.
//!
//! Contract:
//! - One [`Session`] per client connection (native, Kafka) or per HTTP request, on the
//!   connection's shard only (`Rc`, `Cell`/`RefCell`, never borrowed across an `.await`).
//! - `secure` is set by the listener when the stream is TLS (until the TLS listener exists
//!   every connection is plaintext): PLAIN is refused on a connection that is not secure.
//! - SASL runs in order on the connection's reader: [`Session::sasl`] answers
//!   `SaslHandshake` and `SaslAuthenticate`. A failed authentication is answered with
//!   `AUTHENTICATION_FAILED`, counted against the source address (`limiter.rs`), and the
//!   connection is closed (`close` in the answer): it holds nothing afterwards. An address
//!   over its budget is refused at the handshake the same way.
//! - An unknown user runs the whole SCRAM exchange against a made-up credential and fails at
//!   the end like a wrong password, so the answers do not tell which users exist.
//! - [`Session::principal`] re-checks the user whenever the users/ACLs generation moved: a
//!   deleted user is refused (`AUTHENTICATION_FAILED`) on its next request, a changed
//!   superuser flag takes effect, and the decision cache is emptied.
//! - The decision cache maps (operation, resource kind, name) → allowed, at most
//!   [`DECISIONS_MAX`] entries (emptied when full) of names of at most
//!   [`DECISION_NAME_BYTES_MAX`] (a longer name names no topic or group: its decision is
//!   made each time, not kept): the produce path pays one hash lookup per topic, no lock.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use base64::Engine as _;
use wire::scram::{ClientFirst, Credential, Mechanism, ServerExchange};
use wire::{
    AlignedVec, ApiKey, ErrorCode, FrameHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};

use super::acl::{self, Operation, Resource};
use super::config::AuthMode;
use super::store::Security;
use super::{error_frame, respond};

/// Most cached decisions per session.
pub const DECISIONS_MAX: usize = 1024;
/// Longest resource name whose decision is cached (topic and group names are at most 249
/// bytes): the cache holds at most `DECISIONS_MAX` × this many bytes of names.
pub const DECISION_NAME_BYTES_MAX: usize = 255;
/// The principal of an unauthenticated connection in `optional` mode.
pub const ANONYMOUS: &str = "ANONYMOUS";
/// The SASL PLAIN mechanism name.
pub const PLAIN: &str = "PLAIN";

/// The authenticated user, as of a generation.
#[derive(Debug, Clone)]
pub struct Principal {
    /// User name.
    pub user: Rc<str>,
    /// Bypasses ACLs.
    pub superuser: bool,
    /// Whether the user authenticated (false: `ANONYMOUS`).
    pub authenticated: bool,
    /// Authenticated by a verified client certificate (mTLS), not a password: the user need
    /// not exist in the user store (when it does, its superuser flag applies).
    pub certificate: bool,
}

enum Sasl {
    Idle,
    Scram(Mechanism),
    Plain,
    ScramSent { exchange: Box<ServerExchange>, user: String, known: bool },
    Done,
}

/// What a connection does after a SASL answer.
pub struct SaslAnswer {
    /// The response frame.
    pub frame: AlignedVec,
    /// Close the connection once it is written (a failed authentication).
    pub close: bool,
}

type DecisionKey = (Operation, u8);

/// See the module docs.
pub struct Session {
    peer: Option<SocketAddr>,
    secure: Cell<bool>,
    sasl: RefCell<Sasl>,
    principal: RefCell<Option<Principal>>,
    /// The generation `principal` and `decisions` were checked at.
    generation: Cell<u64>,
    decisions: RefCell<HashMap<DecisionKey, HashMap<Box<str>, bool>>>,
    decisions_len: Cell<usize>,
}

/// Why a request is refused before it runs.
pub struct Refusal {
    /// The wire code.
    pub code: ErrorCode,
    /// For a person: names the operation and resource.
    pub message: String,
}

impl Session {
    /// A new, unauthenticated session for a connection from `peer`.
    pub fn new(peer: Option<SocketAddr>) -> Rc<Session> {
        Rc::new(Session {
            peer,
            secure: Cell::new(false),
            sasl: RefCell::new(Sasl::Idle),
            principal: RefCell::new(None),
            generation: Cell::new(0),
            decisions: RefCell::new(HashMap::new()),
            decisions_len: Cell::new(0),
        })
    }

    /// Marks the transport secure (TLS): PLAIN becomes acceptable.
    pub fn set_secure(&self, secure: bool) {
        self.secure.set(secure);
    }

    /// Whether the transport is secure.
    pub fn is_secure(&self) -> bool {
        self.secure.get()
    }

    /// The client's address.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Whether a user authenticated on this session.
    pub fn is_authenticated(&self) -> bool {
        self.principal.borrow().as_ref().is_some_and(|p| p.authenticated)
    }

    /// Whether this session's user was deleted (or its session otherwise refused) since it
    /// authenticated.
    pub fn revoked(&self, security: &Security) -> bool {
        let mode = security.mode();
        mode != AuthMode::Off
            && matches!(self.principal(security, mode), Err(r) if r.code == ErrorCode::AuthenticationFailed)
    }

    /// Authenticates as `user` without SASL (HTTP basic auth checked by the caller).
    pub fn set_authenticated(&self, user: &str, superuser: bool, generation: u64) {
        *self.principal.borrow_mut() = Some(Principal {
            user: user.into(),
            superuser,
            authenticated: true,
            certificate: false,
        });
        *self.sasl.borrow_mut() = Sasl::Done;
        self.generation.set(generation);
    }

    /// Authenticates as the subject CN of the client certificate the TLS handshake verified
    /// (mTLS). The name is a principal for ACLs whether or not a user of that name exists;
    /// when one does, its superuser flag applies. SASL may still follow and replace it.
    pub fn set_certificate_principal(&self, security: &Security, name: &str) {
        let generation = security.generation();
        let superuser = security.snapshot().users.get(name).is_some_and(|u| u.superuser);
        *self.principal.borrow_mut() = Some(Principal {
            user: name.into(),
            superuser,
            authenticated: true,
            certificate: true,
        });
        self.generation.set(generation);
    }

    /// Who this session acts as now: `Ok(None)` when nobody (and the mode lets nobody in
    /// only for SASL), `Err` when its user was deleted.
    pub fn principal(&self, security: &Security, mode: AuthMode) -> Result<Principal, Refusal> {
        let generation = security.generation();
        if generation != self.generation.get() {
            self.generation.set(generation);
            self.decisions.borrow_mut().clear();
            self.decisions_len.set(0);
            let mut slot = self.principal.borrow_mut();
            if let Some(p) = slot.as_mut().filter(|p| p.authenticated) {
                match security.snapshot().users.get(&*p.user) {
                    Some(u) => p.superuser = u.superuser,
                    // A certificate principal is not a stored user: it stays, unprivileged.
                    None if p.certificate => p.superuser = false,
                    None => {
                        let user = p.user.clone();
                        *slot = None;
                        *self.sasl.borrow_mut() = Sasl::Done; // no second try on this connection
                        return Err(Refusal {
                            code: ErrorCode::AuthenticationFailed,
                            message: format!("user {user:?} no longer exists"),
                        });
                    }
                }
            }
        }
        if let Some(p) = self.principal.borrow().as_ref() {
            return Ok(p.clone());
        }
        if matches!(*self.sasl.borrow(), Sasl::Done) {
            return Err(Refusal {
                code: ErrorCode::AuthenticationFailed,
                message: "this connection's user no longer exists; reconnect".into(),
            });
        }
        match mode {
            AuthMode::Optional => Ok(Principal {
                user: ANONYMOUS.into(),
                superuser: false,
                authenticated: false,
                certificate: false,
            }),
            _ => Err(Refusal {
                code: ErrorCode::AuthenticationRequired,
                message: "this broker requires authentication: send SaslHandshake and \
                          SaslAuthenticate first (SCRAM-SHA-256 or SCRAM-SHA-512)"
                    .into(),
            }),
        }
    }

    /// Whether `principal` may do `op` on `resource` (cached; superusers always may).
    pub fn allowed(
        &self,
        security: &Security,
        principal: &Principal,
        op: Operation,
        resource: Resource<'_>,
    ) -> bool {
        if principal.superuser {
            return true;
        }
        let (kind, name) = match resource {
            Resource::Topic(t) => (0u8, t),
            Resource::Group(g) => (1, g),
            Resource::Cluster => (2, ""),
            Resource::TransactionalId(t) => (3, t),
        };
        if let Some(&d) = self.decisions.borrow().get(&(op, kind)).and_then(|m| m.get(name)) {
            return d;
        }
        let state = security.snapshot();
        let decision =
            acl::allowed(&state.acls, &principal.user, principal.authenticated, op, resource);
        if name.len() > DECISION_NAME_BYTES_MAX {
            return decision;
        }
        let mut decisions = self.decisions.borrow_mut();
        if self.decisions_len.get() >= DECISIONS_MAX {
            decisions.clear();
            self.decisions_len.set(0);
        }
        decisions.entry((op, kind)).or_default().insert(name.into(), decision);
        self.decisions_len.set(self.decisions_len.get() + 1);
        decision
    }

    /// Answers a native `SaslHandshake` / `SaslAuthenticate` (see the module docs).
    pub fn sasl(
        &self,
        security: &Security,
        api: ApiKey,
        header: &FrameHeader,
        body: &[u8],
    ) -> SaslAnswer {
        let refused = |f: SaslFailure| SaslAnswer {
            frame: error_frame(header, f.code, &f.message),
            close: f.close,
        };
        match api {
            ApiKey::SaslHandshake => match wire::decode_body::<SaslHandshakeRequest>(body) {
                Err(e) => refused(SaslFailure::invalid(e.code(), e.to_string())),
                Ok(req) => match self.handshake(security, &req.mechanism) {
                    Ok(mechanisms) => SaslAnswer {
                        frame: respond(header, &SaslHandshakeResponse { mechanisms }),
                        close: false,
                    },
                    Err(f) => refused(f),
                },
            },
            ApiKey::SaslAuthenticate => match wire::decode_body::<SaslAuthenticateRequest>(body) {
                Err(e) => refused(SaslFailure::invalid(e.code(), e.to_string())),
                Ok(req) => match self.authenticate(security, &req.auth_bytes) {
                    Ok(step) => SaslAnswer {
                        frame: respond(
                            header,
                            &SaslAuthenticateResponse {
                                auth_bytes: step.auth_bytes,
                                complete: step.complete,
                                principal: step.principal,
                            },
                        ),
                        close: false,
                    },
                    Err(f) => refused(f),
                },
            },
            _ => refused(SaslFailure::invalid(
                ErrorCode::InvalidRequest,
                "not a SASL request".into(),
            )),
        }
    }

    /// The mechanisms offered on this connection: SCRAM always, PLAIN when secure.
    pub fn mechanisms(&self) -> Vec<String> {
        let mut offered: Vec<String> = Mechanism::ALL.iter().map(|m| m.name().to_owned()).collect();
        if self.secure.get() {
            offered.push(PLAIN.to_owned());
        }
        offered
    }

    /// Chooses `mechanism` (any listener's SASL handshake): the mechanisms offered, or why not.
    pub fn handshake(
        &self,
        security: &Security,
        mechanism: &str,
    ) -> Result<Vec<String>, SaslFailure> {
        let ip = self.peer.map(|p| p.ip());
        if let Some(left) = security.limiter.blocked(ip) {
            return Err(SaslFailure {
                code: ErrorCode::AuthenticationFailed,
                message: format!(
                    "too many failed authentications from this address; retry in {} s",
                    left.as_secs() + 1
                ),
                close: true,
            });
        }
        if !matches!(*self.sasl.borrow(), Sasl::Idle) {
            return Err(SaslFailure::invalid(
                ErrorCode::InvalidRequest,
                "this connection has already authenticated (or failed to)".into(),
            ));
        }
        let offered = self.mechanisms();
        let next = match (Mechanism::from_name(mechanism), mechanism) {
            (Some(m), _) => Sasl::Scram(m),
            (None, PLAIN) if self.secure.get() => Sasl::Plain,
            (None, PLAIN) => {
                return Err(SaslFailure::invalid(
                    ErrorCode::UnsupportedSaslMechanism,
                    "PLAIN sends the password itself: it is offered only on TLS connections; \
                     use SCRAM-SHA-256 or SCRAM-SHA-512"
                        .into(),
                ))
            }
            (None, other) => {
                return Err(SaslFailure::invalid(
                    ErrorCode::UnsupportedSaslMechanism,
                    format!("mechanism {other:?} is not offered; offered: {offered:?}"),
                ))
            }
        };
        *self.sasl.borrow_mut() = next;
        Ok(offered)
    }

    /// One message of the chosen mechanism (any listener's SASL authenticate).
    pub fn authenticate(&self, security: &Security, bytes: &[u8]) -> Result<SaslStep, SaslFailure> {
        let fail = |message: String| {
            security.limiter.record_failure(self.peer.map(|p| p.ip()));
            let from = self.peer.map_or("in-process".to_owned(), |p| p.to_string());
            security.audit.record("-", "authenticate", &format!("from {from}"), false);
            *self.sasl.borrow_mut() = Sasl::Done;
            SaslFailure { code: ErrorCode::AuthenticationFailed, message, close: true }
        };
        let state = std::mem::replace(&mut *self.sasl.borrow_mut(), Sasl::Done);
        match state {
            Sasl::Scram(m) => {
                let first = match ClientFirst::parse(bytes) {
                    Ok(f) => f,
                    Err(e) => return Err(fail(e.to_string())),
                };
                let users = security.snapshot();
                let known = users.users.get(&first.user).and_then(|u| u.credential(m));
                let (credential, known) = match known {
                    Some(c) => (c, true),
                    None => (decoy_credential(m, &first.user), false),
                };
                let (exchange, server_first) = ServerExchange::start(&first, credential, &nonce());
                *self.sasl.borrow_mut() =
                    Sasl::ScramSent { exchange: Box::new(exchange), user: first.user, known };
                Ok(SaslStep {
                    auth_bytes: server_first.into_bytes(),
                    complete: false,
                    principal: String::new(),
                })
            }
            Sasl::ScramSent { exchange, user, known } => {
                let server_final = match exchange.finish(bytes) {
                    Ok(f) if known => f,
                    outcome => {
                        tracing::debug!(user, known, ?outcome, msg = %String::from_utf8_lossy(bytes), "SCRAM final refused");
                        return Err(fail(format!("authentication of {user:?} failed")));
                    }
                };
                self.complete(security, &user, server_final.into_bytes())
                    .ok_or_else(|| fail(format!("user {user:?} was deleted")))
            }
            Sasl::Plain => {
                let (user, password) = match wire::scram::parse_plain(bytes) {
                    Ok(p) => p,
                    Err(e) => return Err(fail(e.to_string())),
                };
                if security.check_password(&user, &password).is_none() {
                    return Err(fail(format!("authentication of {user:?} failed")));
                }
                self.complete(security, &user, Vec::new())
                    .ok_or_else(|| fail(format!("user {user:?} was deleted")))
            }
            Sasl::Idle => {
                *self.sasl.borrow_mut() = Sasl::Idle;
                Err(SaslFailure::invalid(
                    ErrorCode::InvalidRequest,
                    "send SaslHandshake (choose a mechanism) first".into(),
                ))
            }
            Sasl::Done => Err(SaslFailure::invalid(
                ErrorCode::InvalidRequest,
                "this connection has already authenticated (or failed to)".into(),
            )),
        }
    }

    fn complete(&self, security: &Security, user: &str, auth_bytes: Vec<u8>) -> Option<SaslStep> {
        let generation = security.generation();
        let superuser = security.snapshot().users.get(user)?.superuser;
        self.set_authenticated(user, superuser, generation);
        self.decisions.borrow_mut().clear();
        self.decisions_len.set(0);
        Some(SaslStep { auth_bytes, complete: true, principal: user.into() })
    }
}

/// A SASL message's answer.
pub struct SaslStep {
    /// The mechanism's bytes for the client.
    pub auth_bytes: Vec<u8>,
    /// The connection is now authenticated.
    pub complete: bool,
    /// As whom (when complete).
    pub principal: String,
}

/// A refused SASL message.
pub struct SaslFailure {
    /// Wire code.
    pub code: ErrorCode,
    /// For a person.
    pub message: String,
    /// Close the connection after answering (a failed authentication).
    pub close: bool,
}

impl SaslFailure {
    fn invalid(code: ErrorCode, message: String) -> SaslFailure {
        SaslFailure { code, message, close: false }
    }
}

/// A credential for a user that does not exist: the exchange looks the same and fails at
/// the end. Its salt is derived from the name so asking twice gives the same answer.
fn decoy_credential(m: Mechanism, user: &str) -> Credential {
    let salt = crc32c::crc32c(user.as_bytes()).to_le_bytes().repeat(4);
    Credential {
        mechanism: m,
        salt,
        iterations: wire::scram::SCRAM_ITERATIONS_DEFAULT,
        stored_key: vec![0; m.key_bytes()],
        server_key: vec![0; m.key_bytes()],
    }
}

/// A server nonce: 18 random bytes, base64 (printable, no ',').
fn nonce() -> String {
    let mut bytes = [0u8; 18];
    crate::auth::random_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// How often an authenticated connection checks that its user still exists, for what flows
/// without requests (subscription pushes): a deleted user's subscriptions stop within this.
pub const REVOCATION_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Watches `session` (one task per authenticated native connection, ending with it): when
/// its user is deleted, `revoked` reaches 1 and the connection closes (its subscriptions with
/// it). Requests are refused at once anyway (`Session::principal`); this covers pushes.
pub fn watch_revocation(
    session: &Rc<Session>,
    security: std::sync::Arc<Security>,
    revoked: crate::watermark::Watermark,
) {
    let session = Rc::downgrade(session);
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(REVOCATION_CHECK).await;
            let Some(session) = session.upgrade() else { return };
            if session.revoked(&security) {
                revoked.advance(1);
                return;
            }
        }
    })
    .detach();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::config::AuthConfig;

    #[test]
    fn decisions_about_overlong_names_are_made_but_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let security = Security::open(dir.path(), &AuthConfig::default()).unwrap();
        let principal = Principal {
            user: "u".into(),
            superuser: false,
            authenticated: true,
            certificate: false,
        };
        let session = Session::new(None);
        let long = "t".repeat(1 << 20);
        for _ in 0..3 {
            assert!(!session.allowed(
                &security,
                &principal,
                Operation::Read,
                Resource::Topic(&long)
            ));
        }
        assert_eq!(session.decisions_len.get(), 0, "a 1 MiB name is not cached");
        assert!(!session.allowed(
            &security,
            &principal,
            Operation::Read,
            Resource::Topic("orders")
        ));
        assert_eq!(session.decisions_len.get(), 1);
    }
}
