//! Certificates for the TLS tests, made on the spot with rcgen: a CA, server certificates
//! for `localhost` and `127.0.0.1`, and client certificates (mTLS) with a chosen subject CN.
//! Everything is written as PEM into a temp directory that lives as long as the [`Ca`].

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority and the directory its files go to.
pub struct Ca {
    /// The CA certificate, PEM (what clients trust, or what the broker checks clients with).
    pub cert: PathBuf,
    issuer: rcgen::Certificate,
    key: KeyPair,
    dir: tempfile::TempDir,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate chain (leaf first).
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

impl Ca {
    /// A new CA whose certificate's subject CN is `name`.
    pub fn new(name: &str) -> Ca {
        let dir = tempfile::Builder::new().prefix("tls-it-").tempdir().expect("temp dir");
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = params.self_signed(&key).expect("self-signed CA");
        let cert = dir.path().join(format!("{name}-ca.pem"));
        std::fs::write(&cert, issuer.pem()).expect("write CA");
        Ca { cert, issuer, key, dir }
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn issue(
        &self,
        file: &str,
        cn: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> Issued {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer, &self.key).expect("sign");
        let issued = Issued {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}.key")),
        };
        // The chain: the leaf, then the CA (as servers usually send it).
        std::fs::write(&issued.cert, format!("{}{}", cert.pem(), self.issuer.pem()))
            .expect("write cert");
        std::fs::write(&issued.key, key.serialize_pem()).expect("write key");
        issued
    }

    /// A server certificate for `localhost` and `127.0.0.1` with subject CN `cn`, in files
    /// named after `file`.
    pub fn server(&self, file: &str, cn: &str) -> Issued {
        self.issue(file, cn, &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate whose subject CN is `cn` (the principal under mTLS).
    pub fn client(&self, file: &str, cn: &str) -> Issued {
        self.issue(file, cn, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// The `BROKER_*` variables that start a broker with `server`'s certificate (and client
/// verification against `client_ca`, if given).
pub fn broker_env(server: &Issued, client_ca: Option<&Path>) -> Vec<(String, String)> {
    let mut env = vec![
        ("BROKER_TLS_CERT".to_string(), server.cert.display().to_string()),
        ("BROKER_TLS_KEY".to_string(), server.key.display().to_string()),
    ];
    if let Some(ca) = client_ca {
        env.push(("BROKER_TLS_CLIENT_CA".into(), ca.display().to_string()));
    }
    env
}
