//! Secure by default: a broker that would accept clients from other hosts without
//! protection refuses to start, and says how to protect it or to opt out.
//!
//! The rule, checked once at start over the native (public and shard ports), HTTP and Kafka
//! listeners: an address that is not loopback (`0.0.0.0` and `::` count as every address,
//! so not loopback) needs TLS and, once authentication exists, required authentication;
//! `--insecure` (`insecure = true`, `BROKER_INSECURE=true`) accepts the risk explicitly.
//! Loopback-only brokers stay open for development. The metrics endpoint is read-only and
//! not covered.

use std::net::SocketAddr;

/// Whether required authentication is part of the rule. Off until authentication lands:
/// then the lead turns it on and `auth_required` is the broker's `--auth required`.
pub const AUTH_NEEDED_OFF_LOOPBACK: bool = false;

/// A listener that would be exposed unprotected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "refusing to listen on {addr} ({listener}) without {missing}: clients on other hosts could \
     read and write every topic. Enable it ({how}), listen on a loopback address \
     (127.0.0.1, ::1), or accept the risk with --insecure (BROKER_INSECURE=true)"
)]
pub struct ExposureError {
    /// Which listener: "native", "http", "kafka".
    pub listener: &'static str,
    /// Its address.
    pub addr: SocketAddr,
    /// What is missing, e.g. "TLS".
    pub missing: String,
    /// The flags that enable it.
    pub how: String,
}

/// Checks `listeners` (name, address) against the rule in the module docs.
pub fn check(
    listeners: &[(&'static str, SocketAddr)],
    tls: bool,
    auth_required: bool,
    insecure: bool,
) -> Result<(), ExposureError> {
    check_with(listeners, tls, auth_required, insecure, AUTH_NEEDED_OFF_LOOPBACK)
}

fn check_with(
    listeners: &[(&'static str, SocketAddr)],
    tls: bool,
    auth_required: bool,
    insecure: bool,
    auth_needed: bool,
) -> Result<(), ExposureError> {
    if insecure {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut how = Vec::new();
    if !tls {
        missing.push("TLS");
        how.push("--tls-cert FILE --tls-key FILE");
    }
    if auth_needed && !auth_required {
        missing.push("authentication");
        how.push("--auth required");
    }
    if missing.is_empty() {
        return Ok(());
    }
    match listeners.iter().find(|(_, addr)| !addr.ip().is_loopback()) {
        None => Ok(()),
        Some(&(listener, addr)) => Err(ExposureError {
            listener,
            addr,
            missing: missing.join(" and "),
            how: how.join(" "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn loopback_stays_open() {
        let l = [("native", a("127.0.0.1:9400")), ("http", a("[::1]:8080"))];
        assert_eq!(check(&l, false, false, false), Ok(()));
        assert_eq!(check_with(&l, false, false, false, true), Ok(()));
    }

    #[test]
    fn any_exposed_listener_needs_tls() {
        for exposed in ["0.0.0.0:9092", "[::]:9092", "10.1.2.3:9092"] {
            let l = [("native", a("127.0.0.1:9400")), ("kafka", a(exposed))];
            let e = check(&l, false, false, false).unwrap_err();
            assert_eq!((e.listener, e.addr), ("kafka", a(exposed)));
            let text = e.to_string();
            assert!(text.contains("--tls-cert FILE --tls-key FILE"), "{text}");
            assert!(text.contains("--insecure"), "{text}");
            assert_eq!(check(&l, true, false, false), Ok(()), "TLS is enough for now");
            assert_eq!(check(&l, false, false, true), Ok(()), "--insecure opts out");
        }
    }

    #[test]
    fn with_authentication_in_the_rule_both_are_needed() {
        let l = [("native", a("0.0.0.0:9400"))];
        let e = check_with(&l, true, false, false, true).unwrap_err();
        assert_eq!(e.missing, "authentication");
        assert!(e.to_string().contains("--auth required"));
        let e = check_with(&l, false, false, false, true).unwrap_err();
        assert_eq!(e.missing, "TLS and authentication");
        assert_eq!(check_with(&l, true, true, false, true), Ok(()));
        assert_eq!(check_with(&l, false, false, true, true), Ok(()));
    }
}
