//! What a listener knows about a connection before the first request: where it comes from,
//! whether it is encrypted, and who the client proved to be (mTLS).
//!
//! Every serve function gets one (`connection::serve`, `kafka::connection::serve`; the HTTP
//! gateway puts it into each request's extensions). It is fixed for the connection's life:
//! established by the accept loop after the TLS handshake and never changed afterwards.
//! Authentication and authorization read it; nothing on the data path does.

use std::net::SocketAddr;

/// See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The client's address, when the socket could tell.
    pub peer_addr: Option<SocketAddr>,
    /// Whether the connection is TLS.
    pub secure: bool,
    /// The subject CN of the client certificate verified during the TLS handshake
    /// (`tls.client_ca` set); `None` without mTLS or when the certificate has no CN.
    pub principal: Option<String>,
}

impl ConnectionInfo {
    /// A plaintext connection from `peer_addr`.
    pub fn plaintext(peer_addr: Option<SocketAddr>) -> Self {
        ConnectionInfo { peer_addr, secure: false, principal: None }
    }

    /// A TLS connection from `peer_addr` with the verified `principal`, if any.
    pub fn tls(peer_addr: Option<SocketAddr>, principal: Option<String>) -> Self {
        ConnectionInfo { peer_addr, secure: true, principal }
    }
}
