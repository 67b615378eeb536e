//! Who an HTTP request is: `Authorization: Basic` checked against the user's SCRAM
//! credential (PBKDF2 with the stored salt and iterations: the password is never stored), or
//! `Authorization: Bearer <id>.<secret>`, a token made by `CreateToken` (`brokerctl token
//! create --user U`), checked against its stored SHA-256 and expiry.
//!
//! Contract:
//! - Each request gets its own `auth::Session` (the same one check as native requests,
//!   `api::start_client`, runs on it: ACLs on every route, metadata filtered).
//! - With authentication in force, a request without credentials, or with wrong ones, is
//!   answered 401 (`AUTHENTICATION_REQUIRED` / `AUTHENTICATION_FAILED`) with
//!   `WWW-Authenticate: Basic realm="broker"`; failures count against the source address
//!   like native ones (`auth/limiter.rs`).
//! - Under mTLS a request without `Authorization` is the client certificate's subject CN
//!   (authenticated; ACLs apply to that name); `Authorization` still overrides it.
//! - Basic auth and bearer tokens send the secret itself: they are accepted only on a secure
//!   (TLS) connection or from a loopback address (development); elsewhere they are refused
//!   with a message saying so.
//! - A connection remembers the last credentials it verified (until users change), so a
//!   keep-alive client pays PBKDF2 once, not per request.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;

use base64::Engine as _;
use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;
use wire::ErrorCode;

use super::error::ApiError;
use crate::auth::{AuthMode, Security, Session};
use crate::connection_info::ConnectionInfo;

/// One HTTP connection's authentication state.
pub struct ConnAuth {
    peer: Option<SocketAddr>,
    /// The transport is TLS (set by the listener).
    pub secure: Cell<bool>,
    /// The credentials last verified on this connection.
    verified: RefCell<Option<Verified>>,
    /// The subject CN of the client certificate the TLS handshake verified (mTLS): who a
    /// request without an `Authorization` header is.
    certificate: Option<String>,
}

/// Basic credentials a connection verified, as of a users generation.
struct Verified {
    user: String,
    password: Vec<u8>,
    generation: u64,
    superuser: bool,
}

/// The bearer token an `Authorization` header carries, if it carries one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::trim)
}

impl ConnAuth {
    /// For the connection `info` describes.
    pub fn new(info: &ConnectionInfo) -> Rc<ConnAuth> {
        Rc::new(ConnAuth {
            peer: info.peer_addr,
            secure: Cell::new(info.secure),
            verified: RefCell::new(None),
            certificate: info.principal.clone(),
        })
    }

    /// The session for one request with `headers`.
    pub fn session(
        &self,
        security: &Security,
        headers: &HeaderMap,
    ) -> Result<Rc<Session>, ApiError> {
        let session = Session::new(self.peer);
        session.set_secure(self.secure.get());
        let mode = security.mode();
        let Some(value) = headers.get(AUTHORIZATION) else {
            if let Some(name) = &self.certificate {
                session.set_certificate_principal(security, name);
                return Ok(session);
            }
            return match mode {
                AuthMode::Required => Err(ApiError::new(
                    ErrorCode::AuthenticationRequired,
                    "this broker requires authentication: send Authorization: Basic",
                )),
                _ => Ok(session),
            };
        };
        let loopback = self.peer.is_some_and(|p| p.ip().is_loopback());
        if !self.secure.get() && !loopback {
            return Err(ApiError::new(
                ErrorCode::AuthenticationFailed,
                "basic and bearer authentication send the secret itself: use HTTPS",
            ));
        }
        let ip = self.peer.map(|p| p.ip());
        let generation = security.generation();
        if let Some(token) = bearer_token(headers) {
            if security.limiter.blocked(ip).is_some() {
                return Err(ApiError::new(
                    ErrorCode::AuthenticationFailed,
                    "too many failed authentications from this address; retry later",
                ));
            }
            return match security.check_token(token) {
                Some((user, superuser)) => {
                    session.set_authenticated(&user, superuser, generation);
                    Ok(session)
                }
                None => {
                    security.limiter.record_failure(ip);
                    security.audit.record("-", "authenticate", &"http bearer", false);
                    Err(ApiError::new(
                        ErrorCode::AuthenticationFailed,
                        "unknown, expired or revoked bearer token",
                    ))
                }
            };
        }
        let (user, password) = parse_basic(value.as_bytes())?;
        if let Some(v) = self.verified.borrow().as_ref() {
            if v.user == user
                && v.generation == generation
                && wire::scram::constant_time_eq(&v.password, &password)
            {
                session.set_authenticated(&user, v.superuser, generation);
                return Ok(session);
            }
        }
        if security.limiter.blocked(ip).is_some() {
            return Err(ApiError::new(
                ErrorCode::AuthenticationFailed,
                "too many failed authentications from this address; retry later",
            ));
        }
        match security.check_password(&user, &password) {
            Some(superuser) => {
                session.set_authenticated(&user, superuser, generation);
                *self.verified.borrow_mut() =
                    Some(Verified { user, password, generation, superuser });
                Ok(session)
            }
            None => {
                security.limiter.record_failure(ip);
                security.audit.record("-", "authenticate", &"http basic", false);
                Err(ApiError::new(ErrorCode::AuthenticationFailed, "wrong user or password"))
            }
        }
    }
}

fn parse_basic(value: &[u8]) -> Result<(String, Vec<u8>), ApiError> {
    let bad = || {
        ApiError::new(
            ErrorCode::AuthenticationFailed,
            "Authorization: Basic <base64 user:password> expected",
        )
    };
    let text = std::str::from_utf8(value).map_err(|_| bad())?;
    let (scheme, b64) = text.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|_| bad())?;
    let colon = raw.iter().position(|&b| b == b':').ok_or_else(bad)?;
    let user = String::from_utf8(raw[..colon].to_vec()).map_err(|_| bad())?;
    Ok((user, raw[colon + 1..].to_vec()))
}
