//! The user and ACL apis. Changes (`UpsertUser`, `DeleteUser`, `CreateAcl`, `DeleteAcl`) run
//! on the controller shard (placement `Controller`, like topic changes), which persists them
//! before answering (`store.rs`); the new snapshot is visible to every shard at once (one
//! shared store, its generation moved). Listings run on any shard.

use wire::{AlignedVec, ErrorCode};

use super::acl::Acl;
use super::store::{Security, SecurityError, StoredCredential, User};
use super::{error_frame, respond};
use crate::request::Request;

macro_rules! decode {
    ($req:expr, $t:ty) => {
        match wire::decode_body::<$t>($req.body()) {
            Ok(b) => b,
            Err(e) => return error_frame(&$req.header, e.code(), &e.to_string()),
        }
    };
}

fn refused(req: &Request, e: SecurityError) -> AlignedVec {
    error_frame(&req.header, e.code(), &e.to_string())
}

/// `UpsertUser`.
pub fn upsert_user(security: &Security, req: &Request) -> AlignedVec {
    let b = decode!(req, wire::UpsertUserRequest);
    let credentials: Result<Vec<_>, _> =
        b.credentials.iter().map(StoredCredential::from_wire).collect();
    let credentials = match credentials {
        Ok(c) => c,
        Err(e) => return refused(req, e),
    };
    match security.upsert_user(&b.name, User { superuser: b.superuser, credentials }) {
        Ok(created) => {
            tracing::info!(user = %b.name, superuser = b.superuser, created, "user stored");
            respond(&req.header, &wire::UpsertUserResponse { created })
        }
        Err(e) => refused(req, e),
    }
}

/// `ChangeCredentials` (`credentials.rs`).
pub fn change_credentials(security: &Security, req: &Request) -> AlignedVec {
    let b = decode!(req, wire::ChangeCredentialsRequest);
    let limits = super::credentials::Limits {
        users_max: security.config().users_max,
        users_decide_mode: security.config().mode == super::AuthMode::Auto,
    };
    // (Nothing is written when every user is refused: `Security::change`.)
    let outcomes = match security.change(|s| Ok(super::credentials::apply(s, &b.users, limits))) {
        Ok(outcomes) => outcomes,
        Err(e) => return refused(req, e),
    };
    let results = b
        .users
        .iter()
        .zip(outcomes)
        .map(|(change, outcome)| {
            let (error, message) = match outcome {
                Ok(()) => {
                    let (removed, stored): (Vec<&str>, Vec<&str>) = (
                        change.remove.iter().map(String::as_str).collect(),
                        change.upsert.iter().map(|c| c.mechanism.as_str()).collect(),
                    );
                    tracing::info!(user = %change.user, ?stored, ?removed, "user credentials changed");
                    (0, String::new())
                }
                Err((code, message)) => (code.as_u16(), message),
            };
            wire::UserCredentialResult { user: change.user.clone(), error, message }
        })
        .collect();
    respond(&req.header, &wire::ChangeCredentialsResponse { results })
}

/// `DeleteUser`.
pub fn delete_user(security: &Security, req: &Request) -> AlignedVec {
    let b = decode!(req, wire::DeleteUserRequest);
    match security.change(|s| s.delete_user(&b.name)) {
        Ok(acls_removed) => {
            tracing::info!(user = %b.name, acls_removed, "user deleted");
            respond(&req.header, &wire::DeleteUserResponse { acls_removed })
        }
        Err(e) => refused(req, e),
    }
}

/// `ListUsers`.
pub fn list_users(security: &Security, req: &Request) -> AlignedVec {
    let b = decode!(req, wire::ListUsersRequest);
    let state = security.snapshot();
    let users = state
        .users
        .range(b.prefix.clone()..)
        .take_while(|(name, _)| name.starts_with(&b.prefix))
        .map(|(name, u)| wire::UserSummary {
            name: name.clone(),
            superuser: u.superuser,
            mechanisms: u.credentials.iter().map(|c| c.mechanism.clone()).collect(),
        })
        .collect();
    respond(&req.header, &wire::ListUsersResponse { users })
}

/// `CreateAcl`.
pub fn create_acl(security: &Security, req: &Request) -> AlignedVec {
    let b = decode!(req, wire::CreateAclRequest);
    let acl = match Acl::new_from_wire(&b.acl) {
        Ok(a) => a,
        Err(e) => return error_frame(&req.header, ErrorCode::InvalidRequest, &e.to_string()),
    };
    match security.change(|s| Ok(s.acls.insert(acl.clone()))) {
        Ok(created) => {
            tracing::info!(acl = %acl, created, "acl stored");
            respond(&req.header, &wire::CreateAclResponse { created })
        }
        Err(e) => refused(req, e),
    }
}

/// `ChangeAcls`: every rule checked first, then one change (persisted once; not at all
/// when nothing would change).
pub fn change_acls(security: &Security, req: &Request) -> AlignedVec {
    let b = decode!(req, wire::ChangeAclsRequest);
    let add: Result<Vec<Acl>, _> = b.add.iter().map(Acl::new_from_wire).collect();
    let remove: Result<Vec<Acl>, _> = b.remove.iter().map(Acl::from_wire).collect();
    let (add, remove) = match (add, remove) {
        (Ok(add), Ok(remove)) => (add, remove),
        (Err(e), _) | (_, Err(e)) => {
            return error_frame(&req.header, ErrorCode::InvalidRequest, &e.to_string())
        }
    };
    // (Nothing is written when nothing changes: `Security::change`.)
    let changed = security.change(|s| {
        let added: Vec<&Acl> = add.iter().filter(|a| s.acls.insert((*a).clone())).collect();
        let removed: Vec<&Acl> = remove.iter().filter(|a| s.acls.remove(a)).collect();
        Ok((added, removed))
    });
    match changed {
        Ok((added, removed)) => {
            for acl in &added {
                tracing::info!(acl = %acl, "acl stored");
            }
            for acl in &removed {
                tracing::info!(acl = %acl, "acl removed");
            }
            let (added, removed) = (added.len() as u32, removed.len() as u32);
            respond(&req.header, &wire::ChangeAclsResponse { added, removed })
        }
        Err(e) => refused(req, e),
    }
}

/// `DeleteAcl`.
pub fn delete_acl(security: &Security, req: &Request) -> AlignedVec {
    let b = decode!(req, wire::DeleteAclRequest);
    let acl = match Acl::from_wire(&b.acl) {
        Ok(a) => a,
        Err(e) => return error_frame(&req.header, ErrorCode::InvalidRequest, &e.to_string()),
    };
    match security.change(|s| Ok(s.acls.remove(&acl))) {
        Ok(deleted) => {
            tracing::info!(acl = %acl, deleted, "acl removed");
            respond(&req.header, &wire::DeleteAclResponse { deleted })
        }
        Err(e) => refused(req, e),
    }
}

/// `ListAcls`.
pub fn list_acls(security: &Security, req: &Request) -> AlignedVec {
    let b = decode!(req, wire::ListAclsRequest);
    let state = security.snapshot();
    let acls = state
        .acls
        .iter()
        .filter(|a| b.principal.is_empty() || a.principal == b.principal)
        .map(Acl::to_wire)
        .collect();
    respond(&req.header, &wire::ListAclsResponse { acls })
}

/// `CreateToken`.
pub fn create_token(security: &Security, req: &Request) -> AlignedVec {
    let b = decode!(req, wire::CreateTokenRequest);
    match security.create_token(&b.user, b.ttl_ms) {
        Ok((token, id, expires_ms)) => {
            tracing::info!(user = %b.user, id, expires_ms, "token created");
            respond(&req.header, &wire::CreateTokenResponse { token, id, expires_ms })
        }
        Err(e) => refused(req, e),
    }
}

/// `DeleteToken`.
pub fn delete_token(security: &Security, req: &Request) -> AlignedVec {
    let b = decode!(req, wire::DeleteTokenRequest);
    match security.change(|s| Ok(s.tokens.remove(&b.id).is_some())) {
        Ok(deleted) => {
            tracing::info!(id = %b.id, deleted, "token deleted");
            respond(&req.header, &wire::DeleteTokenResponse { deleted })
        }
        Err(e) => refused(req, e),
    }
}

/// `ListTokens`.
pub fn list_tokens(security: &Security, req: &Request) -> AlignedVec {
    let b = decode!(req, wire::ListTokensRequest);
    let state = security.snapshot();
    let tokens = state
        .tokens
        .iter()
        .filter(|(_, t)| b.user.is_empty() || t.user == b.user)
        .map(|(id, t)| wire::TokenSummary {
            id: id.clone(),
            user: t.user.clone(),
            expires_ms: t.expires_ms,
        })
        .collect();
    respond(&req.header, &wire::ListTokensResponse { tokens })
}
