//! Users' SCRAM credentials changed one mechanism at a time (native `ChangeCredentials`,
//! which Kafka's AlterUserScramCredentials runs through): each user's changes are checked
//! against the state and made or refused together, apart from the other users', inside one
//! `Security::change`, so all that are made are persisted with one write.
//!
//! A user not stored yet is created (not a superuser; `auth.users_max` applies); a user
//! whose last credential goes is removed with its bearer tokens (nothing could authenticate
//! as it, and a token must not outlive its user's credentials), while its ACLs stay, as
//! Kafka keeps ACLs apart from credentials. A user is refused as a whole when one of its
//! changes is: a credential to remove that is not stored (`UNKNOWN_USER`), a mechanism
//! named twice or unknown, a credential out of bounds, a bad name (`INVALID_REQUEST`).

use std::collections::BTreeSet;

use wire::scram::Mechanism;
use wire::ErrorCode;

use super::store::{SecurityError, SecurityState, StoredCredential, User};

/// One user's outcome: `Ok` or why nothing of it changed.
pub type Outcome = Result<(), (ErrorCode, String)>;

/// What one user's change does, checked against the request alone (not the state).
struct Checked {
    remove: Vec<Mechanism>,
    upsert: Vec<StoredCredential>,
}

fn invalid(message: String) -> (ErrorCode, String) {
    (ErrorCode::InvalidRequest, message)
}

fn check(change: &wire::UserCredentialChange) -> Result<Checked, (ErrorCode, String)> {
    if !super::store::is_valid_user_name(&change.user) {
        let e = SecurityError::UserName(change.user.clone());
        return Err((e.code(), e.to_string()));
    }
    let mut named = BTreeSet::new();
    let mut remove = Vec::new();
    for name in &change.remove {
        let m = Mechanism::from_name(name)
            .ok_or_else(|| invalid(format!("unknown mechanism {name:?}")))?;
        remove.push(m);
        if !named.insert(m.name()) {
            return Err(invalid(format!("mechanism {name} named twice for one user")));
        }
    }
    let mut upsert = Vec::new();
    for c in &change.upsert {
        let stored = StoredCredential::from_wire(c).map_err(|e| (e.code(), e.to_string()))?;
        if !named.insert(Mechanism::from_name(&c.mechanism).expect("checked").name()) {
            return Err(invalid(format!("mechanism {} named twice for one user", c.mechanism)));
        }
        upsert.push(stored);
    }
    Ok(Checked { remove, upsert })
}

/// The bounds a change is made within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `auth.users_max`: users created stop there.
    pub users_max: usize,
    /// `auth.mode = "auto"`: the first user decides whether authentication is on, so a
    /// change may neither create the first user (one that is no superuser would lock every
    /// client out, the admin included) nor remove the last one (authentication would go
    /// off); `broker user add --superuser` and `brokerctl user` do those on purpose.
    pub users_decide_mode: bool,
}

/// Applies `changes` to `state`; one outcome per change, in order.
pub fn apply(
    state: &mut SecurityState,
    changes: &[wire::UserCredentialChange],
    limits: Limits,
) -> Vec<Outcome> {
    let mut seen = BTreeSet::new();
    let twice: BTreeSet<&str> =
        changes.iter().filter(|c| !seen.insert(c.user.as_str())).map(|c| c.user.as_str()).collect();
    let mut removed = BTreeSet::new();
    let outcomes = changes
        .iter()
        .map(|change| {
            if twice.contains(change.user.as_str()) {
                return Err(invalid(format!("user {:?} named twice", change.user)));
            }
            if change.remove.is_empty() && change.upsert.is_empty() {
                return Err(invalid(format!("nothing to change for user {:?}", change.user)));
            }
            let checked = check(change)?;
            let outcome = apply_one(state, &change.user, checked, limits);
            if outcome.is_ok() && !state.users.contains_key(&change.user) {
                removed.insert(change.user.as_str());
            }
            outcome
        })
        .collect();
    // The removed users' tokens, in one pass.
    if !removed.is_empty() {
        state.tokens.retain(|_, t| !removed.contains(t.user.as_str()));
    }
    outcomes
}

fn apply_one(state: &mut SecurityState, name: &str, c: Checked, limits: Limits) -> Outcome {
    let existing = state.users.get(name);
    let mut user = existing.cloned().unwrap_or(User { superuser: false, credentials: Vec::new() });
    for m in &c.remove {
        let before = user.credentials.len();
        user.credentials.retain(|s| s.mechanism != m.name());
        if user.credentials.len() == before {
            return Err((
                ErrorCode::UnknownUser,
                format!("user {name:?} has no {} credential", m.name()),
            ));
        }
    }
    for stored in c.upsert {
        user.credentials.retain(|s| s.mechanism != stored.mechanism);
        user.credentials.push(stored);
    }
    user.credentials.sort_by(|a, b| a.mechanism.cmp(&b.mechanism));
    let mode_decided = |what: &str| {
        Err(invalid(format!(
            "{what} would turn authentication {} (auth.mode = \"auto\"); use `broker user add` \
             or `brokerctl user` for that",
            if what.starts_with("creating") { "on without a superuser" } else { "off" }
        )))
    };
    if user.credentials.is_empty() {
        if existing.is_some() {
            if limits.users_decide_mode && state.users.len() == 1 {
                return mode_decided("removing the last user");
            }
            state.users.remove(name);
        }
        return Ok(());
    }
    if existing.is_none() {
        if limits.users_decide_mode && state.users.is_empty() {
            return mode_decided("creating the first user");
        }
        if state.users.len() >= limits.users_max {
            let e = SecurityError::Limit { what: "users", max: limits.users_max };
            return Err((e.code(), e.to_string()));
        }
    }
    state.users.insert(name.to_owned(), user);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::scram::{Credential, SCRAM_ITERATIONS_DEFAULT};

    fn credential(m: Mechanism, password: &str) -> wire::ScramCredential {
        let c = Credential::derive(m, password.as_bytes(), &[7u8; 16], SCRAM_ITERATIONS_DEFAULT);
        wire::ScramCredential {
            mechanism: m.name().to_owned(),
            salt: c.salt,
            iterations: c.iterations,
            stored_key: c.stored_key,
            server_key: c.server_key,
        }
    }

    fn change(
        user: &str,
        remove: &[&str],
        upsert: Vec<wire::ScramCredential>,
    ) -> wire::UserCredentialChange {
        wire::UserCredentialChange {
            user: user.into(),
            remove: remove.iter().map(|m| m.to_string()).collect(),
            upsert,
        }
    }

    fn limits(users_max: usize) -> Limits {
        Limits { users_max, users_decide_mode: false }
    }

    fn codes(outcomes: &[Outcome]) -> Vec<Option<ErrorCode>> {
        outcomes.iter().map(|o| o.as_ref().err().map(|e| e.0)).collect()
    }

    #[test]
    fn users_are_created_changed_per_mechanism_and_removed_with_their_last_credential() {
        let mut s = SecurityState::default();
        let out = apply(
            &mut s,
            &[change("alice", &[], vec![credential(Mechanism::Sha256, "a")])],
            limits(10),
        );
        assert_eq!(codes(&out), [None]);
        let alice = &s.users["alice"];
        assert!(!alice.superuser);
        assert!(alice.credential(Mechanism::Sha256).unwrap().verify_password(b"a"));
        assert!(alice.credential(Mechanism::Sha512).is_none());

        // A second mechanism joins the first; a new password replaces the old one.
        let out = apply(
            &mut s,
            &[change(
                "alice",
                &[],
                vec![credential(Mechanism::Sha512, "b"), credential(Mechanism::Sha256, "c")],
            )],
            limits(10),
        );
        assert_eq!(codes(&out), [None]);
        let alice = &s.users["alice"];
        assert!(alice.credential(Mechanism::Sha256).unwrap().verify_password(b"c"));
        assert!(alice.credential(Mechanism::Sha512).unwrap().verify_password(b"b"));

        // Tokens and ACLs: the last credential takes the user and its tokens, not its ACLs.
        s.tokens.insert(
            "t1".into(),
            super::super::store::Token { user: "alice".into(), digest: "x".into(), expires_ms: 0 },
        );
        let acl = super::super::acl::Acl::from_wire(&wire::AclBinding {
            principal: "alice".into(),
            resource: wire::AclResourceKind::Topic,
            name: "orders".into(),
            operation: wire::AclOperation::Read,
            deny: false,
        })
        .unwrap();
        s.acls.insert(acl.clone());
        let out = apply(&mut s, &[change("alice", &["SCRAM-SHA-256"], vec![])], limits(10));
        assert_eq!(codes(&out), [None]);
        assert!(s.users["alice"].credential(Mechanism::Sha256).is_none());
        assert_eq!(s.tokens.len(), 1);
        let out = apply(&mut s, &[change("alice", &["SCRAM-SHA-512"], vec![])], limits(10));
        assert_eq!(codes(&out), [None]);
        assert!(!s.users.contains_key("alice"));
        assert!(s.tokens.is_empty());
        assert!(s.acls.contains(&acl));
    }

    #[test]
    fn a_refused_user_changes_nothing_of_its_own_and_others_go_on() {
        let mut s = SecurityState::default();
        apply(&mut s, &[change("bob", &[], vec![credential(Mechanism::Sha256, "b")])], limits(10));
        let before = s.users["bob"].clone();
        let mut weak = credential(Mechanism::Sha512, "w");
        weak.iterations = 10;
        let out = apply(
            &mut s,
            &[
                // Removing a credential bob does not have refuses bob's upsert too.
                change("bob", &["SCRAM-SHA-512"], vec![credential(Mechanism::Sha256, "new")]),
                change("carol", &[], vec![credential(Mechanism::Sha256, "c")]),
                change("dave", &[], vec![weak]),
                change("erin", &["SCRAM-SHA-256"], vec![credential(Mechanism::Sha256, "e")]),
                change("fred", &["MD5"], vec![]),
                change("bad name!", &[], vec![credential(Mechanism::Sha256, "x")]),
                change("gina", &[], vec![credential(Mechanism::Sha256, "g")]),
                change("gina", &[], vec![credential(Mechanism::Sha512, "g")]),
            ],
            limits(10),
        );
        let invalid = Some(ErrorCode::InvalidRequest);
        assert_eq!(
            codes(&out),
            [
                Some(ErrorCode::UnknownUser),
                None,
                invalid,
                invalid,
                invalid,
                invalid,
                invalid,
                invalid
            ]
        );
        assert_eq!(s.users["bob"], before);
        assert!(s.users.contains_key("carol"));
        for gone in ["dave", "erin", "fred", "gina"] {
            assert!(!s.users.contains_key(gone), "{gone}");
        }
    }

    #[test]
    fn with_auth_mode_auto_the_first_user_is_not_created_nor_the_last_removed() {
        let auto = Limits { users_max: 10, users_decide_mode: true };
        let mut s = SecurityState::default();
        let out =
            apply(&mut s, &[change("first", &[], vec![credential(Mechanism::Sha256, "f")])], auto);
        assert_eq!(codes(&out), [Some(ErrorCode::InvalidRequest)]);
        assert!(s.users.is_empty());
        apply(
            &mut s,
            &[change("first", &[], vec![credential(Mechanism::Sha256, "f")])],
            limits(10),
        );
        let out =
            apply(&mut s, &[change("second", &[], vec![credential(Mechanism::Sha256, "s")])], auto);
        assert_eq!(codes(&out), [None], "a second user is fine");
        let out = apply(
            &mut s,
            &[
                change("first", &["SCRAM-SHA-256"], vec![]),
                change("second", &["SCRAM-SHA-256"], vec![]),
            ],
            auto,
        );
        assert_eq!(codes(&out), [None, Some(ErrorCode::InvalidRequest)], "the last one stays");
        assert_eq!(s.users.keys().collect::<Vec<_>>(), ["second"]);
        let out = apply(&mut s, &[change("second", &[], vec![])], auto);
        assert_eq!(codes(&out), [Some(ErrorCode::InvalidRequest)], "an empty change");
    }

    #[test]
    fn new_users_stop_at_the_limit_and_existing_ones_still_change() {
        let mut s = SecurityState::default();
        let out = apply(
            &mut s,
            &[
                change("a", &[], vec![credential(Mechanism::Sha256, "a")]),
                change("b", &[], vec![credential(Mechanism::Sha256, "b")]),
                change("a", &[], vec![]),
            ],
            limits(1),
        );
        // "a" named twice: both refused; then "b" is the first user.
        assert_eq!(
            codes(&out),
            [Some(ErrorCode::InvalidRequest), None, Some(ErrorCode::InvalidRequest)]
        );
        let out = apply(
            &mut s,
            &[
                change("c", &[], vec![credential(Mechanism::Sha256, "c")]),
                change("b", &[], vec![credential(Mechanism::Sha512, "b")]),
            ],
            limits(1),
        );
        assert_eq!(codes(&out), [Some(ErrorCode::ResourceLimit), None]);
        assert_eq!(s.users["b"].credentials.len(), 2);
    }
}
