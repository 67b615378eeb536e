//! Secure by default: a broker that would accept clients from other hosts without
//! protection refuses to start, and says how to protect it or to opt out.
//!
//! The rule, checked once at start over the native (public and shard ports), HTTP and Kafka
//! listeners: an address that is not loopback (`0.0.0.0` and `::` count as every address,
//! so not loopback) needs TLS and authentication in force: `--auth required`, `--auth auto`
//! with at least one user in the data directory, or client certificates (`--tls-client-ca`,
//! every client proves who it is in the handshake); `--insecure` (`insecure = true`, `BROKER_INSECURE=true`) accepts the risk explicitly.
//! Loopback-only brokers stay open for development. The metrics endpoint is read-only and
//! not covered.

use std::net::SocketAddr;

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

/// Checks `listeners` (name, address) against the rule in the module docs; `auth_required`:
/// every client must authenticate (a password or a client certificate).
pub fn check(
    listeners: &[(&'static str, SocketAddr)],
    tls: bool,
    auth_required: bool,
    insecure: bool,
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
    if !auth_required {
        missing.push("authentication");
        how.push(
            "--auth required, after adding an admin with `broker user add NAME --data-dir DIR \
             --superuser`; or client certificates with --tls-client-ca FILE",
        );
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
            how: how.join("; and "),
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
    }

    #[test]
    fn any_exposed_listener_needs_tls_and_authentication() {
        for exposed in ["0.0.0.0:9092", "[::]:9092", "10.1.2.3:9092"] {
            let l = [("native", a("127.0.0.1:9400")), ("kafka", a(exposed))];
            let e = check(&l, false, false, false).unwrap_err();
            assert_eq!((e.listener, e.addr), ("kafka", a(exposed)));
            assert_eq!(e.missing, "TLS and authentication");
            let text = e.to_string();
            assert!(text.contains("--tls-cert FILE --tls-key FILE"), "{text}");
            assert!(text.contains("--auth required"), "{text}");
            assert!(text.contains("--insecure"), "{text}");
            let e = check(&l, true, false, false).unwrap_err();
            assert_eq!(e.missing, "authentication", "TLS alone is not enough");
            let e = check(&l, false, true, false).unwrap_err();
            assert_eq!(e.missing, "TLS", "authentication alone sends secrets in the clear");
            assert_eq!(check(&l, true, true, false), Ok(()));
            assert_eq!(check(&l, false, false, true), Ok(()), "--insecure opts out");
        }
    }
}
