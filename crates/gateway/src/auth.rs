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

/// The credentials of an `Authorization` value with the given scheme. Schemes are
/// case-insensitive (RFC 9110 §11.1): `BEARER x` is as good as `Bearer x`, which only
/// `Bearer ` and `bearer ` used to be.
pub(crate) fn credentials<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (name, rest) = value.split_once(' ')?;
    name.eq_ignore_ascii_case(scheme).then_some(rest)
}

fn bearer(parts: &Parts) -> Option<Result<&str, ApiError>> {
    let header = parts.headers.get(http::header::AUTHORIZATION)?;
    let token = header
        .to_str()
        .ok()
        .and_then(|v| credentials(v, "Bearer"))
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

#[cfg(test)]
mod proptests {
    //! Properties of `Authorization: Bearer` parsing: any header bytes are a token or a
    //! 401, never a panic; well-formed headers give their token back.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use axum::http::{HeaderValue, Request};
    use proptest::prelude::*;

    use super::*;

    fn parts(value: Option<HeaderValue>) -> Parts {
        let mut req = Request::new(());
        if let Some(v) = value {
            req.headers_mut().insert(http::header::AUTHORIZATION, v);
        }
        req.into_parts().0
    }

    /// What OAuth servers hand out (RFC 6750's b64token characters).
    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._~+/=-]{1,512}"
    }

    /// The scheme in any case.
    fn scheme() -> impl Strategy<Value = String> {
        prop::collection::vec(any::<bool>(), 6).prop_map(|upper| {
            "bearer"
                .chars()
                .zip(upper)
                .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
                .collect()
        })
    }

    /// Found by `any_case_scheme_gives_the_token`: `BEARER x` was a 401.
    #[test]
    fn scheme_is_case_insensitive() {
        let p = parts(Some(HeaderValue::from_static("BEARER abc")));
        assert_eq!(bearer(&p).unwrap().unwrap(), "abc");
        let p = parts(Some(HeaderValue::from_static("Bearer  abc ")));
        assert_eq!(bearer(&p).unwrap().unwrap(), "abc");
        let p = parts(Some(HeaderValue::from_static("Basic abc")));
        assert_eq!(bearer(&p).unwrap().unwrap_err().status, 401);
        assert!(bearer(&parts(None)).is_none());
    }

    proptest! {
        #[test]
        fn any_header_bytes_are_a_token_or_a_401(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            // Bytes no `HeaderValue` can hold never get this far.
            let Ok(value) = HeaderValue::from_bytes(&bytes) else {
                return Ok(());
            };
            let p = parts(Some(value));
            match bearer(&p) {
                None => prop_assert!(false, "a header that is there is an answer"),
                Some(Ok(token)) => {
                    prop_assert!(!token.is_empty() && token.len() <= 512);
                    prop_assert_eq!(token, token.trim());
                    let text = std::str::from_utf8(&bytes).unwrap();
                    prop_assert!(text[..7].eq_ignore_ascii_case("bearer "));
                    prop_assert_eq!(text[7..].trim(), token);
                }
                Some(Err(e)) => prop_assert_eq!(e.status, 401),
            }
        }

        #[test]
        fn any_case_scheme_gives_the_token(
            scheme in scheme(),
            spaces in " {1,3}",
            token in token(),
            trailing in " {0,2}",
        ) {
            let value = HeaderValue::from_str(&format!("{scheme}{spaces}{token}{trailing}")).unwrap();
            let p = parts(Some(value));
            prop_assert_eq!(bearer(&p).unwrap().unwrap(), token.as_str());
        }

        #[test]
        fn other_schemes_and_long_tokens_are_401(
            scheme in "(Basic|Token|Bearer:|Bearer_|MAC|)",
            token in "[A-Za-z0-9]{0,600}",
        ) {
            let value = HeaderValue::from_str(&format!("{scheme} {token}")).unwrap();
            let p = parts(Some(value));
            prop_assert_eq!(bearer(&p).unwrap().map_err(|e| e.status.as_u16()), Err(401));
            let long = "a".repeat(513);
            let p = parts(Some(HeaderValue::from_str(&format!("Bearer {long}")).unwrap()));
            prop_assert_eq!(bearer(&p).unwrap().map_err(|e| e.status.as_u16()), Err(401));
        }

        #[test]
        fn scopes_never_panic_and_include_themselves(
            granted in prop::collection::vec("[a-z:]{0,16}", 0..5),
            required in "[a-z:]{0,16}",
        ) {
            let granted = granted.join(" ");
            let _ = has_scope(&granted, &required);
            let with_it = format!("{granted} {required}");
            prop_assert!(has_scope(&with_it, &required), "{:?} in {:?}", required, with_it);
        }
    }
}
