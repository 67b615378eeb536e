//! TLS for the client's connections (rustls through tokio-rustls, ring provider).
//!
//! Built once per [`crate::Client`] from [`crate::ClientConfig`]: the CA certificates that
//! may sign the broker's certificate (`tls_ca`, PEM), optionally a client certificate and
//! key for mTLS (`tls_cert`, `tls_key`), and the name the broker's certificate must carry:
//! `tls_server_name`, or else the host of the bootstrap address (a DNS name or an IP
//! address). The same name is checked on every connection the client opens (one per shard),
//! since shard addresses are IPs of the same broker. TLS 1.3 only, as the broker's native
//! listener.

use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, RootCertStore};

use crate::error::ClientError;

/// A TLS connector and the server name to verify; see the module docs.
#[derive(Clone)]
pub struct ClientTls {
    connector: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("server_name", &self.server_name).finish()
    }
}

fn tls_error(message: String) -> ClientError {
    ClientError::Tls(message)
}

fn read_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|items| items.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_error(format!("cannot read {what} from {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(tls_error(format!(
            "{} holds no certificate (expected `-----BEGIN CERTIFICATE-----`)",
            path.display()
        )));
    }
    Ok(certs)
}

/// The host part of `HOST:PORT` (`[v6]:port` too).
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl ClientTls {
    /// Loads the files; `server_name` is the name the broker's certificate must carry.
    pub fn new(
        ca: &Path,
        client_cert: Option<(&Path, &Path)>,
        server_name: &str,
    ) -> Result<ClientTls, ClientError> {
        let mut roots = RootCertStore::empty();
        for cert in read_certs("CA certificates", ca)? {
            roots
                .add(cert)
                .map_err(|e| tls_error(format!("CA certificate in {}: {e}", ca.display())))?;
        }
        // ring, as the broker: rustls 0.23.48 deprecates it (no post-quantum key exchange);
        // aws-lc-rs needs cmake and a C toolchain. See `broker/src/tls.rs`'s `provider`.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error(e.to_string()))?
            .with_root_certificates(roots);
        let config = match client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = read_certs("client certificate", cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    tls_error(format!("cannot read the client key from {}: {e}", key.display()))
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| tls_error(e.to_string()))?
            }
        };
        let server_name = ServerName::try_from(server_name.to_owned()).map_err(|e| {
            tls_error(format!("{server_name:?} is not a valid TLS server name: {e}"))
        })?;
        Ok(ClientTls { connector: tokio_rustls::TlsConnector::from(Arc::new(config)), server_name })
    }

    /// Runs the client side of the handshake on `stream`.
    pub async fn connect(
        &self,
        stream: TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        self.connector.connect(self.server_name.clone(), stream).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_the_port_and_brackets() {
        assert_eq!(host_of("localhost:9400"), "localhost");
        assert_eq!(host_of("10.0.0.1:9400"), "10.0.0.1");
        assert_eq!(host_of("[::1]:9400"), "::1");
        assert_eq!(host_of("broker"), "broker");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let e = ClientTls::new(Path::new("/nonexistent/ca.pem"), None, "localhost").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
