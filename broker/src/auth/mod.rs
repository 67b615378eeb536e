//! Who a connection is and what it may do: users with SCRAM credentials, SASL
//! authentication, ACLs, and the audit log.
//!
//! - `store.rs`: users and ACLs, durable in `<data>/security.json`, one snapshot shared by
//!   every shard ([`Security`]), a generation counter that moves with every change.
//! - `session.rs`: one connection's identity ([`Session`]): SASL (SCRAM-SHA-256/512, PLAIN
//!   on TLS only), the `secure` flag the listener sets, the cached ACL decisions.
//! - `authorize.rs`: the one check every client request of every listener passes
//!   (`api::start_client`), and the metadata filter.
//! - `acl.rs`: rules and the decision; `admin.rs`: the user and ACL apis;
//!   `credentials.rs`: users' SCRAM credentials changed one mechanism at a time;
//!   `limiter.rs`: failed attempts per source address; `audit.rs`: the audit lines;
//!   `config.rs`: the `[auth]` table and [`AuthMode`]; `users.rs`: the offline
//!   `broker user add` and credential derivation.
//!
//! Modes (`--auth`): `auto` (the default: `required` once a user exists, `off` before, so a
//! fresh loopback broker stays open for development), `required`, `optional` (unauthenticated
//! = `ANONYMOUS`, subject to ACLs), `off`.

pub mod acl;
pub mod admin;
pub mod audit;
pub mod authorize;
pub mod config;
pub mod credentials;
pub mod limiter;
pub mod session;
pub mod store;
pub mod users;

pub use config::{AuthConfig, AuthMode};
pub use session::Session;
pub use store::Security;

/// An error response to `header`'s request (the api layer's `error_frame`; `auth` sits
/// below `api`, which calls into it).
pub(crate) fn error_frame(
    header: &wire::FrameHeader,
    code: wire::ErrorCode,
    message: &str,
) -> wire::AlignedVec {
    wire::encode_error(header.api_key, header.correlation_id, code, message)
}

/// A response to `header`'s request, or an error response if it cannot be encoded.
pub(crate) fn respond<T: wire::Message>(header: &wire::FrameHeader, msg: &T) -> wire::AlignedVec {
    wire::encode_response(header.correlation_id, msg).unwrap_or_else(|e| {
        error_frame(header, wire::ErrorCode::UnknownServerError, &e.to_string())
    })
}

/// Fills `buf` from the operating system's random source (salts, nonces).
pub fn random_bytes(buf: &mut [u8]) {
    // A broker that cannot read the kernel's random source cannot make a safe nonce.
    getrandom::getrandom(buf).expect("the kernel's random source (getrandom) failed");
}
