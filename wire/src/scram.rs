//! SCRAM (RFC 5802, with SHA-256 / SHA-512 as in RFC 7677): the messages of the exchange and
//! the key arithmetic, for both ends. Pure computation: the caller supplies nonces and salts
//! (from its own random source) and carries the messages (native `SaslAuthenticate`, Kafka
//! SASL).
//!
//! ```text
//! client                                   server (knows salt, i, StoredKey, ServerKey)
//!   client-first  "n,,n=alice,r=<cnonce>"  ─▶
//!                                          ◀─ server-first "r=<cnonce><snonce>,s=<salt>,i=4096"
//!   client-final  "c=biws,r=<nonce>,p=<proof>" ─▶   H(proof ⊕ HMAC(StoredKey, AuthMessage)) = StoredKey?
//!                                          ◀─ server-final "v=<HMAC(ServerKey, AuthMessage)>"
//! ```
//!
//! Only [`Credential`]s are stored: salt, iterations, StoredKey = H(HMAC(SaltedPassword,
//! "Client Key")) and ServerKey = HMAC(SaltedPassword, "Server Key"). Neither gives the
//! password back; the server never runs PBKDF2 during an exchange (only HMACs), so a flood of
//! attempts costs it little. Channel binding is not offered (gs2 flag `n` or `y`).
//!
//! Contract: every parser takes untrusted text, returns [`ScramError`] for anything malformed
//! and never panics; lengths are bounded by [`SCRAM_MESSAGE_BYTES_MAX`].

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// Longest SCRAM message either side accepts.
pub const SCRAM_MESSAGE_BYTES_MAX: usize = 4096;
/// Fewest PBKDF2 iterations a stored credential may have (Kafka's minimum, RFC 7677's advice).
pub const SCRAM_ITERATIONS_MIN: u32 = 4096;
/// Most PBKDF2 iterations a stored credential may have (a client computes them per login).
pub const SCRAM_ITERATIONS_MAX: u32 = 1_000_000;
/// Iterations of credentials made by this crate's users by default.
pub const SCRAM_ITERATIONS_DEFAULT: u32 = 8192;
/// Shortest salt a stored credential may have.
pub const SCRAM_SALT_BYTES_MIN: usize = 16;
/// Longest salt a stored credential may have.
pub const SCRAM_SALT_BYTES_MAX: usize = 64;
/// Shortest client nonce the server accepts (printable characters).
pub const SCRAM_NONCE_BYTES_MIN: usize = 16;

/// The hash a SCRAM mechanism uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl Mechanism {
    /// Both, in preference order (strongest first).
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha512, Mechanism::Sha256];

    /// The SASL mechanism name.
    pub const fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism named `name` (SASL names are case-sensitive upper case).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Bytes of the hash's output (and of each stored key).
    pub const fn key_bytes(self) -> usize {
        match self {
            Mechanism::Sha256 => 32,
            Mechanism::Sha512 => 64,
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            Mechanism::Sha512 => {
                let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    /// SaltedPassword = PBKDF2-HMAC-H(password, salt, iterations).
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.key_bytes()];
        match self {
            Mechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
            }
            Mechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
            }
        }
        out
    }
}

/// What goes wrong in an exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message does not follow the grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The server's nonce does not extend the client's, or the client's final names another.
    #[error("SCRAM nonce mismatch")]
    Nonce,
    /// The proof (server side) or the server signature (client side) is wrong.
    #[error("SCRAM authentication failed")]
    Failed,
    /// The server answered `e=<reason>`.
    #[error("SCRAM server error: {0}")]
    Server(String),
    /// A credential outside the stated bounds (iterations, salt, key lengths).
    #[error("invalid SCRAM credential: {0}")]
    Credential(&'static str),
}

/// What the server stores for one user and mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// Random salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// H(ClientKey).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl Credential {
    /// The credential for `password` with `salt` and `iterations`.
    pub fn derive(mechanism: Mechanism, password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let salted = mechanism.salted_password(password, salt, iterations);
        Credential::from_salted(mechanism, &salted, salt, iterations)
    }

    /// The credential for a password already salted with `salt` and `iterations`
    /// (`Mechanism::salted_password`; Kafka's AlterUserScramCredentials sends it so).
    pub fn from_salted(mechanism: Mechanism, salted: &[u8], salt: &[u8], iterations: u32) -> Self {
        let client_key = mechanism.hmac(salted, b"Client Key");
        Credential {
            mechanism,
            salt: salt.to_vec(),
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted, b"Server Key"),
        }
    }

    /// Whether `password` is this credential's (runs PBKDF2: slow on purpose).
    pub fn verify_password(&self, password: &[u8]) -> bool {
        let other = Credential::derive(self.mechanism, password, &self.salt, self.iterations);
        constant_time_eq(&other.stored_key, &self.stored_key)
    }

    /// Checks the bounds a stored credential must keep.
    pub fn validate(&self) -> Result<(), ScramError> {
        if !(SCRAM_ITERATIONS_MIN..=SCRAM_ITERATIONS_MAX).contains(&self.iterations) {
            return Err(ScramError::Credential("iterations out of range 4096..=1000000"));
        }
        if !(SCRAM_SALT_BYTES_MIN..=SCRAM_SALT_BYTES_MAX).contains(&self.salt.len()) {
            return Err(ScramError::Credential("salt must be 16..=64 bytes"));
        }
        let n = self.mechanism.key_bytes();
        if self.stored_key.len() != n || self.server_key.len() != n {
            return Err(ScramError::Credential("key length does not match the mechanism"));
        }
        Ok(())
    }
}

/// SHA-256 of `data` (bearer tokens are stored as this digest, never as themselves).
pub fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// Compares without stopping at the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// `saslname` (RFC 5802 §5.1): `,` and `=` are escaped as `=2C` and `=3D`.
fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn unescape_name(raw: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The attribute `key` (`x=value`) at the front of `part`.
fn attr(part: Option<&str>, key: char) -> Result<&str, ScramError> {
    let part = part.ok_or(ScramError::Malformed("missing attribute"))?;
    let mut chars = part.chars();
    if chars.next() != Some(key) || chars.next() != Some('=') {
        return Err(ScramError::Malformed("unexpected attribute"));
    }
    Ok(&part[2..])
}

fn checked_text(bytes: &[u8]) -> Result<&str, ScramError> {
    if bytes.len() > SCRAM_MESSAGE_BYTES_MAX {
        return Err(ScramError::Malformed("message too long"));
    }
    std::str::from_utf8(bytes).map_err(|_| ScramError::Malformed("not UTF-8"))
}

fn valid_nonce(nonce: &str) -> bool {
    // printable ASCII except ','
    !nonce.is_empty() && nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// A parsed client-first message (server side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user the client claims to be.
    pub user: String,
    /// The client's nonce.
    pub nonce: String,
    /// `client-first-message-bare` (for the AuthMessage).
    pub bare: String,
}

impl ClientFirst {
    /// Parses `n,,n=<user>,r=<nonce>` (gs2 `n` or `y`, no authzid other than empty or the user).
    pub fn parse(bytes: &[u8]) -> Result<ClientFirst, ScramError> {
        let text = checked_text(bytes)?;
        let mut parts = text.splitn(3, ',');
        match parts.next() {
            Some("n") | Some("y") => {}
            Some(p) if p.starts_with("p=") => {
                return Err(ScramError::Malformed("channel binding is not supported"))
            }
            _ => return Err(ScramError::Malformed("bad gs2 header")),
        }
        let authzid = parts.next().ok_or(ScramError::Malformed("bad gs2 header"))?;
        let bare = parts.next().ok_or(ScramError::Malformed("missing client-first-bare"))?;
        let mut attrs = bare.split(',');
        let first = attrs.next();
        if first.is_some_and(|p| p.starts_with("m=")) {
            return Err(ScramError::Malformed("mandatory extensions are not supported"));
        }
        let user = unescape_name(attr(first, 'n')?)?;
        let nonce = attr(attrs.next(), 'r')?;
        if user.is_empty() || !valid_nonce(nonce) || nonce.len() < SCRAM_NONCE_BYTES_MIN {
            return Err(ScramError::Malformed("empty user or bad nonce"));
        }
        if !authzid.is_empty() && unescape_name(attr(Some(authzid), 'a')?)? != user {
            return Err(ScramError::Malformed("authzid differs from the user"));
        }
        Ok(ClientFirst { user, nonce: nonce.to_owned(), bare: bare.to_owned() })
    }
}

/// The server's side of one exchange after the client-first message.
#[derive(Debug, Clone)]
pub struct ServerExchange {
    credential: Credential,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    client_nonce_len: usize,
}

impl ServerExchange {
    /// Starts an exchange for `first` with the user's `credential`; `server_nonce` comes from
    /// the caller's random source (printable, no ','). Returns the server-first message too.
    pub fn start(
        first: &ClientFirst,
        credential: Credential,
        server_nonce: &str,
    ) -> (ServerExchange, String) {
        let nonce = format!("{}{}", first.nonce, server_nonce);
        let server_first =
            format!("r={nonce},s={},i={}", b64().encode(&credential.salt), credential.iterations);
        let ex = ServerExchange {
            credential,
            client_first_bare: first.bare.clone(),
            server_first: server_first.clone(),
            nonce,
            client_nonce_len: first.nonce.len(),
        };
        (ex, server_first)
    }

    /// Checks the client-final message; on success returns the server-final message.
    pub fn finish(&self, client_final: &[u8]) -> Result<String, ScramError> {
        let text = checked_text(client_final)?;
        let (without_proof, proof) =
            text.rsplit_once(",p=").ok_or(ScramError::Malformed("missing proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attr(attrs.next(), 'c')?;
        if binding != "biws" && binding != "eSws" {
            return Err(ScramError::Malformed("channel binding is not supported"));
        }
        // librdkafka (up to at least 2.x) sends the client nonce followed by the whole server
        // nonce (which already starts with the client nonce); Kafka accepts it, so do we.
        // Either way the proof covers exactly what was sent.
        let r = attr(attrs.next(), 'r')?;
        let librdkafka_form = r.len() == self.client_nonce_len + self.nonce.len()
            && r.ends_with(&self.nonce)
            && r[..self.client_nonce_len] == self.nonce[..self.client_nonce_len];
        if r != self.nonce && !librdkafka_form {
            return Err(ScramError::Nonce);
        }
        let proof = b64().decode(proof).map_err(|_| ScramError::Malformed("proof not base64"))?;
        let m = self.credential.mechanism;
        if proof.len() != m.key_bytes() {
            return Err(ScramError::Failed);
        }
        let auth_message =
            format!("{},{},{}", self.client_first_bare, self.server_first, without_proof);
        let client_signature = m.hmac(&self.credential.stored_key, auth_message.as_bytes());
        let client_key = xor(&proof, &client_signature);
        if !constant_time_eq(&m.hash(&client_key), &self.credential.stored_key) {
            return Err(ScramError::Failed);
        }
        let server_signature = m.hmac(&self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", b64().encode(server_signature)))
    }
}

/// The client's side of one exchange.
#[derive(Debug, Clone)]
pub struct ClientExchange {
    mechanism: Mechanism,
    password: Vec<u8>,
    client_first_bare: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

impl ClientExchange {
    /// Starts an exchange for `user`; `client_nonce` comes from the caller's random source.
    /// Returns the client-first message too.
    pub fn start(
        mechanism: Mechanism,
        user: &str,
        password: &[u8],
        client_nonce: &str,
    ) -> (ClientExchange, String) {
        let bare = format!("n={},r={client_nonce}", escape_name(user));
        let first = format!("n,,{bare}");
        let ex = ClientExchange {
            mechanism,
            password: password.to_vec(),
            client_first_bare: bare,
            nonce: client_nonce.to_owned(),
            server_signature: None,
        };
        (ex, first)
    }

    /// Answers the server-first message with the client-final one.
    pub fn respond(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        let text = checked_text(server_first)?;
        if let Some(reason) = text.strip_prefix("e=") {
            return Err(ScramError::Server(reason.to_owned()));
        }
        let mut attrs = text.split(',');
        let nonce = attr(attrs.next(), 'r')?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Nonce);
        }
        let salt = b64()
            .decode(attr(attrs.next(), 's')?)
            .map_err(|_| ScramError::Malformed("salt not base64"))?;
        let iterations: u32 = attr(attrs.next(), 'i')?
            .parse()
            .map_err(|_| ScramError::Malformed("iterations not a number"))?;
        if !(SCRAM_ITERATIONS_MIN..=SCRAM_ITERATIONS_MAX).contains(&iterations) {
            return Err(ScramError::Credential("server asks for iterations out of range"));
        }
        let m = self.mechanism;
        let salted = m.salted_password(&self.password, &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{},{}", self.client_first_bare, text, without_proof);
        let client_signature = m.hmac(&stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &client_signature);
        let server_key = m.hmac(&salted, b"Server Key");
        self.server_signature = Some(m.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", b64().encode(proof)))
    }

    /// Checks the server-final message (the server proves it knew the ServerKey).
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = checked_text(server_final)?;
        if let Some(reason) = text.strip_prefix("e=") {
            return Err(ScramError::Server(reason.to_owned()));
        }
        let v = b64()
            .decode(attr(text.split(',').next(), 'v')?)
            .map_err(|_| ScramError::Malformed("signature not base64"))?;
        match &self.server_signature {
            Some(expected) if constant_time_eq(expected, &v) => Ok(()),
            _ => Err(ScramError::Failed),
        }
    }
}

/// SASL PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd` → (user, password).
pub fn parse_plain(bytes: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
    if bytes.len() > SCRAM_MESSAGE_BYTES_MAX {
        return Err(ScramError::Malformed("message too long"));
    }
    let mut parts = bytes.split(|&b| b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ScramError::Malformed("PLAIN needs authzid NUL user NUL password"));
    };
    let user = std::str::from_utf8(user).map_err(|_| ScramError::Malformed("user not UTF-8"))?;
    if user.is_empty() || (!authzid.is_empty() && authzid != user.as_bytes()) {
        return Err(ScramError::Malformed("empty user or authzid differs"));
    }
    Ok((user.to_owned(), password.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3's example exchange (SCRAM-SHA-256, user "user", password "pencil").
    #[test]
    fn rfc7677_example() {
        let (mut client, first) =
            ClientExchange::start(Mechanism::Sha256, "user", b"pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(first, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let parsed = ClientFirst::parse(first.as_bytes()).unwrap();
        let salt = b64().decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = Credential::derive(Mechanism::Sha256, b"pencil", &salt, 4096);
        let (server, server_first) =
            ServerExchange::start(&parsed, cred, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(
            server_first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let fin = client.respond(server_first.as_bytes()).unwrap();
        assert_eq!(
            fin,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let server_final = server.finish(fin.as_bytes()).unwrap();
        assert_eq!(server_final, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        client.verify(server_final.as_bytes()).unwrap();
    }

    #[test]
    fn wrong_password_fails_on_both_mechanisms() {
        for m in Mechanism::ALL {
            let salt = [7u8; 16];
            let cred = Credential::derive(m, b"right", &salt, SCRAM_ITERATIONS_MIN);
            cred.validate().unwrap();
            assert!(cred.verify_password(b"right"));
            assert!(!cred.verify_password(b"wrong"));
            let (mut client, first) =
                ClientExchange::start(m, "a,b=c", b"wrong", "0123456789abcdef");
            let parsed = ClientFirst::parse(first.as_bytes()).unwrap();
            assert_eq!(parsed.user, "a,b=c");
            let (server, sf) = ServerExchange::start(&parsed, cred, "SERVERNONCE");
            let fin = client.respond(sf.as_bytes()).unwrap();
            assert_eq!(server.finish(fin.as_bytes()), Err(ScramError::Failed));
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"n",
            b"n,,",
            b"n,,n=,r=x",
            b"p=tls,,n=u,r=0123456789abcdef",
            b"n,,n=u=zz,r=0123456789abcdef",
            b"n,,m=x,n=u,r=0123456789abcdef",
            b"n,,n=u,r=short",
            b"\xff\xfe",
        ] {
            assert!(ClientFirst::parse(bad).is_err(), "{bad:?}");
        }
        let first = ClientFirst::parse(b"n,,n=u,r=0123456789abcdef").unwrap();
        let cred = Credential::derive(Mechanism::Sha512, b"pw", &[1; 16], 4096);
        let (server, _) = ServerExchange::start(&first, cred, "S");
        for bad in [&b""[..], b"c=biws", b"c=biws,r=x,p=AAAA", b"c=biws,r=0123456789abcdefS,p=!!"] {
            assert!(server.finish(bad).is_err());
        }
        assert!(parse_plain(b"\0user\0pw").is_ok());
        assert!(parse_plain(b"user\0pw").is_err());
        assert!(parse_plain(b"x\0user\0pw").is_err());
    }
}
