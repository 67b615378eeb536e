//! DescribeUserScramCredentials and AlterUserScramCredentials (v0, KIP-554): what
//! `kafka-configs --entity-type users --alter --add-config 'SCRAM-SHA-256=[password=…]'`
//! and admin clients' `alter_user_scram_credentials` send. The client salts the password
//! itself (PBKDF2 with its salt and iterations) and sends the salted password; the broker
//! derives StoredKey and ServerKey from it and never sees the password.
//!
//! As Kafka: DESCRIBE on the cluster to describe (else CLUSTER_AUTHORIZATION_FAILED for the
//! request) and ALTER on the cluster to alter (else the same code for every user); per user,
//! a mechanism other than SCRAM-SHA-256 (1) or SCRAM-SHA-512 (2) is
//! UNSUPPORTED_SASL_MECHANISM, a user named twice in a describe or a (user, mechanism) named
//! twice in an alter is DUPLICATE_RESOURCE, an empty name or a credential out of bounds
//! (iterations 4096..=16,384 as Kafka, salt 16..=64 bytes, a salted password of the
//! hash's length) is UNACCEPTABLE_CREDENTIAL, and a credential to delete or a user to describe that
//! is not stored is RESOURCE_NOT_FOUND. A user refused for any reason changes nothing; the
//! others are applied by one native `ChangeCredentials` on the controller shard (one write
//! of security.json). A user created this way is not a superuser; one whose last credential
//! is deleted is removed, its ACLs kept (`auth/credentials.rs`). With `auth.mode = "auto"`
//! neither the first user is created nor the last removed this way (either would switch
//! authentication: UNACCEPTABLE_CREDENTIAL with why). A request's entries are bounded
//! before anything is built from them (`connection.rs`: at most twice `auth.users_max` users
//! or credentials, else the request does not decode); names are kept as the request's own
//! bytes, a name over 128 bytes refused per user (UNACCEPTABLE_CREDENTIAL; not found in a
//! describe).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::{
    alter_user_scram_credentials_response, describe_user_scram_credentials_response,
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as K;
use wire::scram::{Credential, Mechanism};

use super::connection::{ready, respond, Answer, Ctx, Session};
use super::native;
use super::sasl::allowed;
use crate::auth::acl::{Operation, Resource};

/// Fewest PBKDF2 iterations Kafka accepts for an upsertion.
const ITERATIONS_MIN: i32 = 4096;
/// Most PBKDF2 iterations Kafka accepts for an upsertion (more would make each PLAIN or
/// HTTP basic login of the user cost more).
const ITERATIONS_MAX: i32 = 16_384;

/// Kafka's number for a mechanism (`ScramMechanism`).
fn number(m: Mechanism) -> i8 {
    match m {
        Mechanism::Sha256 => 1,
        Mechanism::Sha512 => 2,
    }
}

fn mechanism(number: i8) -> Option<Mechanism> {
    match number {
        1 => Some(Mechanism::Sha256),
        2 => Some(Mechanism::Sha512),
        _ => None,
    }
}

/// DescribeUserScramCredentials.
pub fn describe(s: &Session, ctx: Ctx, req: DescribeUserScramCredentialsRequest) -> Answer {
    use describe_user_scram_credentials_response::{
        CredentialInfo, DescribeUserScramCredentialsResult as Result_,
    };
    let mut out = DescribeUserScramCredentialsResponse::default();
    if !allowed(s, Operation::Describe, Resource::Cluster) {
        out.error_code = K::ClusterAuthorizationFailed.code();
        out.error_message = Some(StrBytes::from_static_str("describe on the cluster is needed"));
        return ready(respond(ctx, &out));
    }
    let state = s.shard.security.snapshot();
    // The request's names are not copied (a clone shares the request's buffer).
    let asked: Vec<StrBytes> = match &req.users {
        Some(users) if !users.is_empty() => users.iter().map(|u| u.name.clone()).collect(),
        _ => state.users.keys().map(|k| StrBytes::from_string(k.clone())).collect(),
    };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for name in &asked {
        *counts.entry(name.as_str()).or_default() += 1;
    }
    let mut answered = BTreeSet::new();
    for name in &asked {
        if !answered.insert(name.as_str()) {
            continue; // a duplicate is answered once
        }
        let mut r = Result_::default();
        r.user = name.clone();
        match state.users.get(name.as_str()) {
            _ if counts[name.as_str()] > 1 => {
                r.error_code = K::DuplicateResource.code();
                r.error_message =
                    Some(StrBytes::from_static_str("a user is described once per request"));
            }
            None => {
                r.error_code = K::ResourceNotFound.code();
                r.error_message = Some(StrBytes::from_static_str("no such user"));
            }
            Some(user) => {
                for c in user.credentials.iter().filter_map(|c| c.credential()) {
                    let mut info = CredentialInfo::default();
                    info.mechanism = number(c.mechanism);
                    info.iterations = c.iterations as i32;
                    r.credential_infos.push(info);
                }
            }
        }
        out.results.push(r);
    }
    ready(respond(ctx, &out))
}

/// One user's alterations, checked, or why the user is refused.
type UserChange = Result<wire::UserCredentialChange, (i16, String)>;

fn refuse(change: &mut UserChange, code: K, why: String) {
    if change.is_ok() {
        *change = Err((code.code(), why));
    }
}

/// AlterUserScramCredentials.
pub async fn alter(s: &Session, ctx: Ctx, req: AlterUserScramCredentialsRequest) -> Answer {
    if !allowed(s, Operation::Alter, Resource::Cluster) {
        // Answered from the request's names (no copies), each user once, as Kafka does.
        let mut out = AlterUserScramCredentialsResponse::default();
        let mut seen = BTreeSet::new();
        let names =
            req.deletions.iter().map(|d| &d.name).chain(req.upsertions.iter().map(|u| &u.name));
        for name in names.filter(|n| seen.insert(n.as_str())) {
            let mut r =
                alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default();
            r.user = name.clone();
            r.error_code = K::ClusterAuthorizationFailed.code();
            r.error_message = Some(StrBytes::from_static_str("alter on the cluster is needed"));
            out.results.push(r);
        }
        return ready(respond(ctx, &out));
    }
    let (order, mut changes) = collect(&req);
    let valid: Vec<wire::UserCredentialChange> =
        order.iter().filter_map(|u| changes[u].as_ref().ok().cloned()).collect();
    if !valid.is_empty() {
        let request = wire::ChangeCredentialsRequest { users: valid };
        match native::call::<_, wire::ChangeCredentialsResponse>(s, &request).await {
            Ok(answer) => {
                for r in answer.results {
                    if r.error != 0 {
                        let code = native_code(r.error);
                        let user = StrBytes::from_string(r.user);
                        if let Some(c) = changes.get_mut(&user) {
                            *c = Err((code, r.message));
                        }
                    }
                }
            }
            Err(e) => {
                let code = super::acls::failure(&e);
                for c in changes.values_mut() {
                    if c.is_ok() {
                        *c = Err((code, e.to_string()));
                    }
                }
            }
        }
    }
    let mut out = AlterUserScramCredentialsResponse::default();
    for user in order {
        let mut r =
            alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default();
        if let Err((code, why)) = &changes[&user] {
            r.error_code = *code;
            r.error_message = Some(StrBytes::from_string(why.clone()));
        }
        r.user = user;
        out.results.push(r);
    }
    ready(respond(ctx, &out))
}

/// The request's users in first-appearance order, each with its checked change.
fn collect(
    req: &AlterUserScramCredentialsRequest,
) -> (Vec<StrBytes>, BTreeMap<StrBytes, UserChange>) {
    let mut users = Users::default();
    for d in &req.deletions {
        if let (Ok(c), Some(m)) = users.entry(&d.name, d.mechanism) {
            c.remove.push(m.name().to_owned());
        }
    }
    for u in &req.upsertions {
        let (change, m) = users.entry(&u.name, u.mechanism);
        let Some(m) = m else { continue };
        match credential(m, u) {
            Ok(c) => {
                if let Ok(change) = change {
                    change.upsert.push(c);
                }
            }
            Err(why) => refuse(change, K::UnacceptableCredential, why),
        }
    }
    (users.order, users.changes)
}

/// The users of an alter request as they are collected, by the request's own names (a clone
/// shares the request's buffer: nothing of a name is copied but a valid one, once).
#[derive(Default)]
struct Users {
    order: Vec<StrBytes>,
    changes: BTreeMap<StrBytes, UserChange>,
    named: BTreeSet<(StrBytes, i8)>,
}

impl Users {
    /// `name`'s change (new if first named), refused if this (user, mechanism) was named
    /// before, the name is empty or longer than a user name can be, or the mechanism is
    /// unknown; and the mechanism.
    fn entry(&mut self, name: &StrBytes, number: i8) -> (&mut UserChange, Option<Mechanism>) {
        if !self.changes.contains_key(name) {
            self.order.push(name.clone());
        }
        let twice = !self.named.insert((name.clone(), number));
        let change = self.changes.entry(name.clone()).or_insert_with(|| {
            if name.len() > crate::auth::store::USER_NAME_BYTES_MAX {
                let why = format!("a user name of {} bytes (at most 128)", name.len());
                return Err((K::UnacceptableCredential.code(), why));
            }
            let user = name.as_str().to_owned();
            Ok(wire::UserCredentialChange { user, ..Default::default() })
        });
        if twice {
            refuse(change, K::DuplicateResource, "a credential is altered once per request".into());
        }
        if name.is_empty() {
            refuse(change, K::UnacceptableCredential, "the user name is empty".into());
        }
        let m = mechanism(number);
        if m.is_none() {
            refuse(
                change,
                K::UnsupportedSaslMechanism,
                format!("unknown SCRAM mechanism {number}"),
            );
        }
        (change, m)
    }
}

/// The stored credential for an upsertion's salted password (checked against the bounds).
fn credential(
    m: Mechanism,
    u: &kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion,
) -> Result<wire::ScramCredential, String> {
    if u.salted_password.len() != m.key_bytes() {
        return Err(format!("a {} salted password is {} bytes", m.name(), m.key_bytes()));
    }
    // Kafka's bounds (`ScramMechanism`: 4,096..=16,384); the native ones allow more.
    if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&u.iterations) {
        return Err(format!("iterations must be {ITERATIONS_MIN}..={ITERATIONS_MAX}"));
    }
    let iterations = u.iterations as u32;
    let c = Credential::from_salted(m, &u.salted_password, &u.salt, iterations);
    c.validate().map_err(|e| e.to_string())?;
    Ok(wire::ScramCredential {
        mechanism: m.name().to_owned(),
        salt: c.salt,
        iterations,
        stored_key: c.stored_key,
        server_key: c.server_key,
    })
}

/// The Kafka code of a user the native change refused.
fn native_code(code: u16) -> i16 {
    use wire::ErrorCode as E;
    match E::from_u16(code) {
        Some(E::UnknownUser) => K::ResourceNotFound.code(),
        Some(E::InvalidRequest) => K::UnacceptableCredential.code(),
        Some(c) => super::error::kafka_code(c),
        None => K::UnknownServerError.code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::alter_user_scram_credentials_request::{
        ScramCredentialDeletion, ScramCredentialUpsertion,
    };

    fn upsert(
        name: &str,
        mechanism: i8,
        iterations: i32,
        password: &str,
    ) -> ScramCredentialUpsertion {
        let salt = [3u8; 16];
        let m = super::mechanism(mechanism).unwrap_or(Mechanism::Sha256);
        let mut u = ScramCredentialUpsertion::default();
        u.name = StrBytes::from_string(name.into());
        u.mechanism = mechanism;
        u.iterations = iterations;
        u.salt = salt.to_vec().into();
        u.salted_password =
            m.salted_password(password.as_bytes(), &salt, iterations.max(1) as u32).into();
        u
    }

    fn delete(name: &str, mechanism: i8) -> ScramCredentialDeletion {
        let mut d = ScramCredentialDeletion::default();
        d.name = StrBytes::from_string(name.into());
        d.mechanism = mechanism;
        d
    }

    #[test]
    fn a_salted_password_becomes_the_credential_a_password_derives() {
        let u = upsert("alice", 2, 4096, "secret");
        let c = credential(Mechanism::Sha512, &u).unwrap();
        let derived = Credential::derive(Mechanism::Sha512, b"secret", &[3u8; 16], 4096);
        assert_eq!((c.stored_key, c.server_key), (derived.stored_key, derived.server_key));
        assert!(credential(Mechanism::Sha256, &u).is_err(), "a 64-byte key is not SHA-256's");
    }

    #[test]
    fn users_are_checked_as_kafka_checks_them() {
        let mut req = AlterUserScramCredentialsRequest::default();
        req.upsertions = vec![
            upsert("ok", 1, 4096, "p"),
            upsert("twice", 1, 4096, "p"),
            upsert("weak", 1, 1000, "p"),
            upsert("slow", 1, 20_000, "p"),
            upsert("md5", 7, 4096, "p"),
            upsert("", 1, 4096, "p"),
            upsert("both", 2, 4096, "p"),
        ];
        req.deletions = vec![delete("twice", 1), delete("both", 1), delete("gone", 2)];
        let (order, changes) = collect(&req);
        let order: Vec<&str> = order.iter().map(|n| n.as_str()).collect();
        assert_eq!(order, ["twice", "both", "gone", "ok", "weak", "slow", "md5", ""]);
        let change = |u: &'static str| &changes[&StrBytes::from_static_str(u)];
        let code = |u: &'static str| change(u).as_ref().err().map(|e| e.0);
        assert_eq!(code("ok"), None);
        assert_eq!(code("gone"), None, "the native change finds it missing");
        assert_eq!(code("both"), None, "a deletion and an upsertion of other mechanisms");
        assert_eq!(code("twice"), Some(K::DuplicateResource.code()));
        assert_eq!(code("weak"), Some(K::UnacceptableCredential.code()));
        assert_eq!(code("slow"), Some(K::UnacceptableCredential.code()));
        assert_eq!(code("md5"), Some(K::UnsupportedSaslMechanism.code()));
        assert_eq!(code(""), Some(K::UnacceptableCredential.code()));
        let both = change("both").as_ref().unwrap();
        assert_eq!(both.remove, ["SCRAM-SHA-256"]);
        assert_eq!(both.upsert[0].mechanism, "SCRAM-SHA-512");
        assert_eq!(native_code(wire::ErrorCode::UnknownUser.as_u16()), K::ResourceNotFound.code());
    }
}
