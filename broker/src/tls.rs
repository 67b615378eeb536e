//! TLS on the listeners (rustls): the certificate files, the server configs built from them,
//! the handshake, and reload on SIGHUP.
//!
//! - One certificate chain and key (`tls.cert`, `tls.key`, PEM) serve every listener: the
//!   native one (public and shard ports) and the HTTP gateway speak TLS 1.3 only; the Kafka
//!   listener also TLS 1.2 (many Kafka clients still default to it). The gateway offers ALPN
//!   `http/1.1` (hyper's HTTP/1 is all it speaks).
//! - With `tls.client_ca` every client must present a certificate chaining to that CA
//!   (mTLS); the subject CN of the verified certificate is the connection's principal
//!   ([`ConnectionInfo::principal`]).
//! - The configs live in an [`ArcSwap`]: each accept loads the current one (one atomic load,
//!   no lock; nothing on the data path touches it afterwards), and [`ServerTls::reload`]
//!   (SIGHUP, [`spawn_reloader`]) builds new ones from the files and swaps them in whole. New
//!   handshakes use the new certificate; established connections keep the session they
//!   have. A file that does not load on reload is logged and the old configs stay.
//! - Handshake budget: a handshake must finish within `tls.handshake_timeout_ms` or the
//!   connection is dropped. Until then the connection holds only rustls' own buffers (it
//!   caps a handshake message at 64 KiB and a record at 16 KiB plus overhead; a plaintext
//!   client is refused at its first bytes, which are not a TLS record). Failures are
//!   counted per shard (`broker_tls_handshakes_failed`).
//!
//! Contract: everything here is `Send + Sync`; [`ServerTls`] is shared by all shards.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_lite::{AsyncRead, AsyncWrite};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;
use tracing::{debug, error, info};

pub use crate::connection_info::ConnectionInfo;
use crate::counters::Counters;

/// The `[tls]` table (`--tls-cert`, `--tls-key`, `--tls-client-ca`, `BROKER_TLS_*`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM (the server's certificate first). TLS is on when set.
    pub cert: Option<PathBuf>,
    /// The private key of the certificate, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// CA certificates, PEM: when set, every client must present a certificate signed by
    /// one of them (mTLS); its subject CN becomes the connection's principal.
    pub client_ca: Option<PathBuf>,
    /// A TLS handshake must complete within this long after the connection is accepted.
    pub handshake_timeout_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig { cert: None, key: None, client_ca: None, handshake_timeout_ms: 10_000 }
    }
}

impl TlsConfig {
    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }

    /// Checks that the settings go together.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.cert, &self.key) {
            (Some(_), None) => return Err("tls.cert is set without tls.key (--tls-key)".into()),
            (None, Some(_)) => return Err("tls.key is set without tls.cert (--tls-cert)".into()),
            _ => {}
        }
        if self.client_ca.is_some() && self.cert.is_none() {
            return Err(
                "tls.client_ca needs tls.cert and tls.key (the server's certificate)".into()
            );
        }
        if self.handshake_timeout_ms == 0 {
            return Err("tls.handshake_timeout_ms must be positive".into());
        }
        Ok(())
    }
}

/// Why certificate files could not be turned into a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or is not PEM.
    #[error("cannot read {what} from {path}: {message}")]
    Read {
        /// Which file: "certificate chain", "private key", "client CA".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A PEM file holds no item of the kind wanted.
    #[error("{path} holds no {what} (expected a PEM block such as `-----BEGIN {pem}-----`)")]
    Empty {
        /// What was looked for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The PEM label expected.
        pem: &'static str,
    },
    /// rustls refused the combination (e.g. the key does not match the certificate).
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA cannot verify clients.
    #[error("client CA {path}: {message}")]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// Why a TLS handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Not finished within `tls.handshake_timeout_ms`.
    #[error("TLS handshake not finished within {0:?}")]
    Timeout(Duration),
    /// The peer sent something that is not TLS, an alert, a bad certificate, or left.
    #[error("TLS handshake failed: {0}")]
    Failed(std::io::Error),
}

/// Which listener a connection came in on: it decides the protocol versions and ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The native protocol (public and shard ports): TLS 1.3.
    Native,
    /// The HTTP gateway: TLS 1.3, ALPN `http/1.1`.
    Http,
    /// The Kafka listener: TLS 1.2 and 1.3.
    Kafka,
}

/// The three server configs built from one set of files.
struct Configs {
    native: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
    kafka: Arc<ServerConfig>,
}

/// The broker's TLS state, shared by every shard; see the module docs.
pub struct ServerTls {
    files: TlsConfig,
    current: ArcSwap<Configs>,
    /// Successful loads so far (1 after start); reloads bump it.
    generation: AtomicU64,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .field("generation", &self.generation())
            .finish()
    }
}

/// The crypto provider: ring (no C toolchain needed; the same one the workspace builds).
/// rustls 0.23.48 deprecates it for lacking post-quantum key exchange; aws-lc-rs, which has
/// it, needs cmake and a C toolchain at build time. Allowed here (and in the client) until
/// the build takes that on: a deprecation must not fail `clippy -D warnings` on a lock update.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Read { what, path: path.to_owned(), message };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Empty { what, path: path.to_owned(), pem: "CERTIFICATE" });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            TlsError::Empty { what: "private key", path: path.to_owned(), pem: "PRIVATE KEY" }
        }
        e => TlsError::Read { what: "private key", path: path.to_owned(), message: e.to_string() },
    })
}

impl Configs {
    fn load(files: &TlsConfig) -> Result<Configs, TlsError> {
        let (Some(cert), Some(key)) = (&files.cert, &files.key) else {
            unreachable!("ServerTls is built only when tls.cert and tls.key are set");
        };
        let chain = read_certs("certificate chain", cert)?;
        let key = read_key(key)?;
        let verifier = match &files.client_ca {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for ca in read_certs("client CA", path)? {
                    roots.add(ca).map_err(|e| TlsError::ClientCa {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| TlsError::ClientCa {
                            path: path.clone(),
                            message: e.to_string(),
                        })?;
                Some(verifier)
            }
            None => None,
        };
        let build = |versions: &[&'static rustls::SupportedProtocolVersion],
                     alpn: &[&[u8]]|
         -> Result<Arc<ServerConfig>, TlsError> {
            let builder =
                ServerConfig::builder_with_provider(provider()).with_protocol_versions(versions)?;
            let builder = match &verifier {
                Some(v) => builder.with_client_cert_verifier(v.clone()),
                None => builder.with_no_client_auth(),
            };
            let mut config = builder.with_single_cert(chain.clone(), key.clone_key())?;
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Arc::new(config))
        };
        Ok(Configs {
            native: build(&[&rustls::version::TLS13], &[])?,
            http: build(&[&rustls::version::TLS13], &[b"http/1.1"])?,
            kafka: build(&[&rustls::version::TLS13, &rustls::version::TLS12], &[])?,
        })
    }
}

impl ServerTls {
    /// Loads the files of `config`; `None` when TLS is not configured.
    pub fn load(config: &TlsConfig) -> Result<Option<Arc<ServerTls>>, TlsError> {
        if !config.enabled() {
            return Ok(None);
        }
        let configs = Configs::load(config)?;
        Ok(Some(Arc::new(ServerTls {
            files: config.clone(),
            current: ArcSwap::from_pointee(configs),
            generation: AtomicU64::new(1),
            handshake_timeout: Duration::from_millis(config.handshake_timeout_ms),
        })))
    }

    /// Reads the files again and, if they load, uses them for every new handshake. On error
    /// the configs in use stay.
    pub fn reload(&self) -> Result<u64, TlsError> {
        let configs = Configs::load(&self.files)?;
        self.current.store(Arc::new(configs));
        Ok(self.generation.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// How many times the files were loaded (1 after start).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Whether clients must present a certificate.
    pub fn verifies_clients(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// Runs the server side of a handshake on `stream` within the handshake timeout.
    /// Returns the encrypted stream and the principal (the client certificate's subject CN
    /// under mTLS).
    pub async fn accept<S>(
        &self,
        listener: Listener,
        stream: S,
    ) -> Result<(futures_rustls::server::TlsStream<S>, Option<String>), HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let configs = self.current.load();
        let config = match listener {
            Listener::Native => &configs.native,
            Listener::Http => &configs.http,
            Listener::Kafka => &configs.kafka,
        };
        let acceptor = futures_rustls::TlsAcceptor::from(config.clone());
        drop(configs);
        let timeout = self.handshake_timeout;
        let handshake = async { acceptor.accept(stream).await.map_err(HandshakeError::Failed) };
        let expired = async {
            glommio::timer::sleep(timeout).await;
            Err(HandshakeError::Timeout(timeout))
        };
        let stream = futures_lite::future::or(handshake, expired).await?;
        let principal = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| subject_common_name(cert));
        Ok((stream, principal))
    }
}

impl ServerTls {
    /// [`ServerTls::accept`] for a listener: the encrypted stream and what it tells about the
    /// client, or `None` (counted in `tls_handshakes_failed`, logged at debug) when the
    /// handshake fails or times out.
    pub async fn handshake<S>(
        &self,
        counters: &Counters,
        listener: Listener,
        stream: S,
        peer: Option<SocketAddr>,
    ) -> Option<(futures_rustls::server::TlsStream<S>, ConnectionInfo)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match self.accept(listener, stream).await {
            Ok((stream, principal)) => {
                let session = &stream.get_ref().1;
                debug!(
                    ?peer,
                    ?listener,
                    principal = principal.as_deref().unwrap_or("-"),
                    version = ?session.protocol_version(),
                    cipher = ?session.negotiated_cipher_suite().map(|s| s.suite()),
                    "TLS connection established"
                );
                Some((stream, ConnectionInfo::tls(peer, principal)))
            }
            Err(e) => {
                Counters::add(&counters.tls_handshakes_failed, 1);
                debug!(?peer, ?listener, error = %e, "TLS handshake failed; connection closed");
                None
            }
        }
    }
}

/// The subject CN of a (verified) certificate, if it has one that is valid UTF-8.
pub fn subject_common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// Reloads `tls` on every SIGHUP from a small thread; a failed reload is logged and the old
/// certificate stays. Without TLS the signal is logged and ignored. Returns the handle that
/// stops the thread (closed when the broker stops).
pub fn spawn_reloader(
    tls: Option<Arc<ServerTls>>,
) -> std::io::Result<signal_hook::iterator::Handle> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    let handle = signals.handle();
    std::thread::Builder::new().name("sighup".into()).spawn(move || {
        for _ in signals.forever() {
            let Some(tls) = &tls else {
                info!("SIGHUP: nothing to reload (TLS is off)");
                continue;
            };
            match tls.reload() {
                Ok(generation) => info!(
                    generation,
                    cert = ?tls.files.cert,
                    "SIGHUP: TLS certificate reloaded; new handshakes use it"
                ),
                Err(e) => error!(
                    error = %e,
                    generation = tls.generation(),
                    "SIGHUP: TLS reload failed; keeping the certificate in use"
                ),
            }
        }
    })?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_and_key_go_together() {
        let mut c = TlsConfig::default();
        assert!(c.validate().is_ok() && !c.enabled());
        c.cert = Some("c.pem".into());
        assert!(c.validate().unwrap_err().contains("--tls-key"));
        c.key = Some("k.pem".into());
        assert!(c.validate().is_ok() && c.enabled());
        c.cert = None;
        assert!(c.validate().unwrap_err().contains("--tls-cert"));
        let ca_only = TlsConfig { client_ca: Some("ca.pem".into()), ..Default::default() };
        assert!(ca_only.validate().is_err());
    }

    #[test]
    fn missing_or_empty_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem\n").expect("write");
        let config = TlsConfig {
            cert: Some(dir.path().join("missing.pem")),
            key: Some(empty.clone()),
            ..Default::default()
        };
        let e = ServerTls::load(&config).unwrap_err().to_string();
        assert!(e.contains("missing.pem") && e.contains("certificate chain"), "{e}");
        let config = TlsConfig { cert: Some(empty.clone()), ..config };
        let e = ServerTls::load(&config).unwrap_err().to_string();
        assert!(e.contains("empty.pem") && e.contains("BEGIN CERTIFICATE"), "{e}");
    }
}
