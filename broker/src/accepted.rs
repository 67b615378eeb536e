//! One accepted native or Kafka connection, from the socket to its protocol loop: the TLS
//! handshake when TLS is on (`tls.rs`), the connection's `auth::Session` (marked secure
//! after a handshake, authenticated as the client certificate's subject CN under mTLS), then `connection::serve` or `kafka::connection::serve`. Called by
//! `server.rs`'s accept loops in the connection's own task, so a slow handshake never holds
//! the accept loop.

use std::rc::Rc;
use std::sync::Arc;

use crate::connection_info::ConnectionInfo;
use crate::shard::Shard;
use crate::tls::Listener;
use crate::watermark::Watermark;

/// Serves one accepted native or Kafka connection, after the TLS handshake when TLS is on.
pub async fn serve_accepted(
    shard: Rc<Shard>,
    stream: glommio::net::TcpStream,
    stop: Watermark,
    kafka: Option<Arc<crate::kafka::Kafka>>,
    tls: Option<&crate::tls::ServerTls>,
) {
    let peer = stream.peer_addr().ok();
    // Who the client authenticates as (`auth/`); a TLS connection counts as secure (PLAIN
    // and HTTP basic auth are accepted only there).
    let session = crate::auth::Session::new(peer);
    // The Kafka listener's connections speak Kafka (`kafka/connection.rs`).
    let local = kafka.as_ref().map(|k| stream.local_addr().unwrap_or(k.listen));
    let Some(tls) = tls else {
        let info = ConnectionInfo::plaintext(peer);
        return match (kafka, local) {
            (Some(kafka), Some(local)) => {
                crate::kafka::connection::serve(shard, kafka, stream, local, info, stop, session)
                    .await
            }
            _ => crate::connection::serve(shard, stream, info, stop, session).await,
        };
    };
    let listener = if kafka.is_some() { Listener::Kafka } else { Listener::Native };
    let counters = &shard.counters;
    let Some((stream, info)) = tls.handshake(counters, listener, stream, peer).await else {
        return;
    };
    session.set_secure(info.secure);
    // mTLS: the verified certificate's subject CN is who the connection is (SASL may follow).
    if let Some(name) = &info.principal {
        session.set_certificate_principal(&shard.security, name);
    }
    match (kafka, local) {
        (Some(kafka), Some(local)) => {
            crate::kafka::connection::serve(shard, kafka, stream, local, info, stop, session).await
        }
        _ => crate::connection::serve(shard, stream, info, stop, session).await,
    }
}
