//! Bearer tokens and OAuth scopes. A token resolves through an in-process cache (short
//! TTL) in front of the users service; revocations evict it on every replica at once
//! (the users service broadcasts them over Redis).

use std::sync::Arc;

use axum::{extract::FromRequestParts, http::request::Parts};
use rookery_kit::ids::AccountId;
use rookery_proto::users::v1 as pb;
use sha2::{Digest, Sha256};

use crate::{error::ApiError, state::AppState};

/// Children of the legacy `follow` scope.
const FOLLOW_CHILDREN: &[&str] = &[
    "read:blocks",
    "write:blocks",
    "read:follows",
    "write:follows",
    "read:mutes",
    "write:mutes",
];

/// True when the space-separated `granted` scopes include `required`, directly or
/// through a parent (`read` ⊃ `read:accounts`, `follow` ⊃ `write:follows`, ...).
pub fn has_scope(granted: &str, required: &str) -> bool {
    granted.split(' ').any(|g| {
        g == required
            || required
                .strip_prefix(g)
                .is_some_and(|rest| rest.starts_with(':'))
            || (g == "follow" && FOLLOW_CHILDREN.contains(&required))
    })
}

/// Hex SHA-256 of a token: the cache key, the same key the users service revokes under.
pub fn token_key(token: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(token.as_bytes());
    let mut key = String::with_capacity(64);
    for b in digest.iter() {
        key.push(char::from(HEX[usize::from(b >> 4)]));
        key.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    key
}

/// An authenticated request (app or user token).
#[derive(Clone, Debug)]
pub struct Auth {
    /// What the token resolved to.
    pub token: Arc<pb::Authentication>,
}

impl Auth {
    /// Succeeds when the token has any of `scopes`; 403 otherwise.
    pub fn require(&self, scopes: &[&str]) -> Result<(), ApiError> {
        if scopes.iter().any(|s| has_scope(&self.token.scopes, s)) {
            Ok(())
        } else {
            Err(ApiError::new(
                http::StatusCode::FORBIDDEN,
                "This action is outside the authorized scopes",
            ))
        }
    }

    /// The signed-in account; 422 for app-only tokens (Mastodon's answer).
    pub fn account(&self) -> Result<AccountId, ApiError> {
        self.token
            .account_id
            .map(AccountId)
            .ok_or_else(|| ApiError::unprocessable("This method requires an authenticated user"))
    }
}

fn bearer(parts: &Parts) -> Option<Result<&str, ApiError>> {
    let header = parts.headers.get(http::header::AUTHORIZATION)?;
    let token = header
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 512);
    Some(token.ok_or_else(ApiError::invalid_token))
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).unwrap_or_else(|| Err(ApiError::invalid_token()))?;
        state.authenticate(token).await
    }
}

/// Authentication for public endpoints: none without a token, 401 with a bad one.
#[derive(Clone, Debug)]
pub struct MaybeAuth(pub Option<Auth>);

impl FromRequestParts<AppState> for MaybeAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(parts) {
            None => Ok(MaybeAuth(None)),
            Some(token) => Ok(MaybeAuth(Some(state.authenticate(token?).await?))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_imply_their_children() {
        assert!(has_scope("read write", "read:accounts"));
        assert!(has_scope("read:accounts", "read:accounts"));
        assert!(!has_scope("read:accounts", "read"));
        assert!(!has_scope("read", "write:accounts"));
        assert!(!has_scope("read", "reader:x"));
        assert!(has_scope("follow", "write:follows"));
        assert!(!has_scope("follow", "write:statuses"));
        assert!(has_scope("profile", "profile"));
        assert!(!has_scope("", "read"));
    }

    #[test]
    fn token_key_is_hex_sha256() {
        assert_eq!(
            token_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
