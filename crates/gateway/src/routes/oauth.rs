//! OAuth 2: app registration, the token endpoint (password, client_credentials,
//! authorization_code with PKCE, refresh_token), revocation, a minimal authorize form,
//! and the RFC 8414 server metadata clients discover it from.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use rookery_proto::users::v1::{self as pb, issue_token_request::Grant};
use serde::Deserialize;
use serde_json::json;

use crate::{
    error::{ApiError, ApiResult},
    input::{Params, string_list},
    mastodon::{Application, Token, escape_html},
    state::AppState,
};

const OOB: &str = "urn:ietf:wg:oauth:2.0:oob";

#[derive(Deserialize)]
pub struct CreateApp {
    #[serde(default)]
    client_name: String,
    #[serde(default, alias = "redirect_uris[]", deserialize_with = "string_list")]
    redirect_uris: Vec<String>,
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    website: String,
}

/// `POST /api/v1/apps`
pub async fn create_app(
    State(state): State<AppState>,
    Params(p): Params<CreateApp>,
) -> ApiResult<Response> {
    if p.client_name.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "Validation failed: Application name can't be blank",
        ));
    }
    if p.redirect_uris.is_empty() {
        return Err(ApiError::unprocessable(
            "Validation failed: Redirect URI can't be blank",
        ));
    }
    let app = state
        .users()
        .create_app(pb::CreateAppRequest {
            name: p.client_name,
            website: p.website,
            redirect_uris: p.redirect_uris,
            scopes: p.scopes,
        })
        .await?
        .into_inner();
    Ok(Json(Application::new(&app, true)).into_response())
}

#[derive(Deserialize)]
pub struct TokenParams {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    code_verifier: String,
    #[serde(default)]
    refresh_token: String,
}

/// Client credentials from HTTP Basic (`client_secret_basic`), else from the body.
fn client_credentials(headers: &HeaderMap, p: &TokenParams) -> (String, String) {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // Schemes are case-insensitive (RFC 9110 §11.1).
        .and_then(|v| crate::auth::credentials(v, "Basic"))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(i, s)| (i.to_owned(), s.to_owned()))
        });
    basic.unwrap_or_else(|| (p.client_id.clone(), p.client_secret.clone()))
}

/// `POST /oauth/token`
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Params(p): Params<TokenParams>,
) -> ApiResult<Response> {
    let (client_id, client_secret) = client_credentials(&headers, &p);
    let grant = match p.grant_type.as_str() {
        "password" => {
            if p.username.is_empty() || p.password.is_empty() {
                return Err(ApiError::oauth(
                    "invalid_request",
                    "Missing required parameter: username and password.",
                ));
            }
            Grant::Password(pb::PasswordGrant {
                username: p.username,
                password: p.password,
            })
        }
        "client_credentials" => Grant::ClientCredentials(pb::ClientCredentialsGrant {}),
        "authorization_code" => {
            if p.code.is_empty() {
                return Err(ApiError::oauth(
                    "invalid_request",
                    "Missing required parameter: code.",
                ));
            }
            Grant::AuthorizationCode(pb::AuthorizationCodeGrant {
                code: p.code,
                redirect_uri: p.redirect_uri,
                code_verifier: p.code_verifier,
            })
        }
        "refresh_token" => {
            if p.refresh_token.is_empty() {
                return Err(ApiError::oauth(
                    "invalid_request",
                    "Missing required parameter: refresh_token.",
                ));
            }
            Grant::RefreshToken(pb::RefreshTokenGrant {
                refresh_token: p.refresh_token,
            })
        }
        "" => {
            return Err(ApiError::oauth(
                "invalid_request",
                "Missing required parameter: grant_type.",
            ));
        }
        _ => {
            return Err(ApiError::oauth(
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server.",
            ));
        }
    };
    let res = state
        .users()
        .issue_token(pb::IssueTokenRequest {
            client_id,
            client_secret,
            scopes: p.scope,
            grant: Some(grant),
        })
        .await?
        .into_inner();
    match res.result {
        Some(pb::issue_token_response::Result::Token(t)) => Ok((
            // RFC 6749 §5.1: token responses must not be cached.
            [(header::CACHE_CONTROL, "no-store")],
            Json(Token::new(&t)),
        )
            .into_response()),
        Some(pb::issue_token_response::Result::Error(e)) => {
            Err(ApiError::oauth(&e.error, &e.description))
        }
        None => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "Empty answer from the users service",
        )),
    }
}

#[derive(Deserialize)]
pub struct RevokeParams {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    token: String,
}

/// `POST /oauth/revoke` (RFC 7009): 200 `{}` whether or not the token existed.
pub async fn revoke(
    State(state): State<AppState>,
    Params(p): Params<RevokeParams>,
) -> ApiResult<Response> {
    if p.token.is_empty() {
        return Err(ApiError::oauth(
            "invalid_request",
            "Missing required parameter: token.",
        ));
    }
    let res = state
        .users()
        .revoke_token(pb::RevokeTokenRequest {
            client_id: p.client_id,
            client_secret: p.client_secret,
            token: p.token.clone(),
        })
        .await?
        .into_inner();
    if !res.client_ok {
        // 403, as Doorkeeper (Mastodon) answers a revocation by another client (found by
        // schemathesis: was a 400, which Mastodon's spec does not list here).
        let mut error = ApiError::oauth(
            "unauthorized_client",
            "You are not authorized to revoke this token.",
        );
        error.status = StatusCode::FORBIDDEN;
        return Err(error);
    }
    state.forget_token(&p.token).await;
    Ok(Json(json!({})).into_response())
}

#[derive(Deserialize)]
pub struct AuthorizeParams {
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    code_challenge_method: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

fn page(title: &str, body: &str) -> Response {
    (
        [
            // The form takes credentials: never inside someone else's frame.
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
             <title>{}</title><style>body{{font-family:sans-serif;max-width:28em;margin:3em auto;padding:0 1em}}\
             input{{display:block;width:100%;margin:.4em 0 1em;padding:.5em}}</style></head><body>{body}</body></html>",
            escape_html(title)
        )),
    )
        .into_response()
}

/// `GET /oauth/authorize`: a sign-in-and-approve form.
pub async fn authorize_form(
    State(state): State<AppState>,
    Params(p): Params<AuthorizeParams>,
) -> ApiResult<Response> {
    if p.response_type != "code" {
        return Err(ApiError::oauth(
            "unsupported_response_type",
            "The authorization server does not support this response type.",
        ));
    }
    let app = match state
        .users()
        .get_app(pb::GetAppRequest {
            client_id: p.client_id.clone(),
        })
        .await
    {
        Ok(app) => app.into_inner(),
        Err(s) if s.code() == tonic::Code::NotFound => {
            return Err(ApiError::oauth(
                "invalid_client",
                "Client authentication failed due to unknown client.",
            ));
        }
        Err(s) => return Err(s.into()),
    };
    if !app.redirect_uris.contains(&p.redirect_uri) {
        return Err(ApiError::oauth(
            "invalid_redirect_uri",
            "The redirect uri included is not valid.",
        ));
    }
    let hidden: String = [
        ("response_type", "code"),
        ("client_id", p.client_id.as_str()),
        ("redirect_uri", p.redirect_uri.as_str()),
        ("scope", p.scope.as_str()),
        ("state", p.state.as_str()),
        ("code_challenge", p.code_challenge.as_str()),
        ("code_challenge_method", p.code_challenge_method.as_str()),
    ]
    .iter()
    .map(|(k, v)| {
        format!(
            "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
            escape_html(v)
        )
    })
    .collect();
    let scopes = if p.scope.is_empty() {
        app.scopes.clone()
    } else {
        p.scope.clone()
    };
    Ok(page(
        "Authorize",
        &format!(
            "<h1>Authorize {}</h1><p>This application asks for: <b>{}</b></p>\
             <form method=\"post\" action=\"/oauth/authorize\">{hidden}\
             <label>Email or username<input name=\"username\" autocomplete=\"username\" required></label>\
             <label>Password<input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
             <button type=\"submit\">Authorize</button></form>",
            escape_html(&app.name),
            escape_html(&scopes)
        ),
    ))
}

/// `POST /oauth/authorize`: checks the credentials, then redirects with a code (or shows
/// it, for the out-of-band redirect URI).
pub async fn authorize(
    State(state): State<AppState>,
    Params(p): Params<AuthorizeParams>,
) -> ApiResult<Response> {
    let res = state
        .users()
        .create_authorization_code(pb::CreateAuthorizationCodeRequest {
            client_id: p.client_id.clone(),
            redirect_uri: p.redirect_uri.clone(),
            scopes: p.scope.clone(),
            username: p.username,
            password: p.password,
            code_challenge: p.code_challenge,
            code_challenge_method: p.code_challenge_method,
        })
        .await?
        .into_inner();
    let code = match res.result {
        Some(pb::create_authorization_code_response::Result::Code(code)) => code,
        Some(pb::create_authorization_code_response::Result::Error(e))
            if e.error == "access_denied" =>
        {
            return Ok((StatusCode::UNAUTHORIZED, page("Sign-in failed", "<h1>Sign-in failed</h1><p>Wrong email, username or password. Go back and try again.</p>")).into_response());
        }
        Some(pb::create_authorization_code_response::Result::Error(e)) => {
            return Err(ApiError::oauth(&e.error, &e.description));
        }
        None => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "Empty answer from the users service",
            ));
        }
    };
    if p.redirect_uri == OOB {
        return Ok(page(
            "Authorization code",
            &format!(
                "<h1>Authorization code</h1><p>Copy this code into the application:</p><pre>{}</pre>",
                escape_html(&code)
            ),
        ));
    }
    let mut target = url::Url::parse(&p.redirect_uri).map_err(|_| {
        ApiError::oauth(
            "invalid_redirect_uri",
            "The redirect uri included is not valid.",
        )
    })?;
    target.query_pairs_mut().append_pair("code", &code);
    if !p.state.is_empty() {
        target.query_pairs_mut().append_pair("state", &p.state);
    }
    Ok(Redirect::to(target.as_str()).into_response())
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414, Mastodon 4.3+).
pub async fn metadata(State(state): State<AppState>) -> Json<serde_json::Value> {
    let base = &state.config.instance.base_url;
    Json(json!({
        "issuer": format!("{base}/"),
        "service_documentation": "https://docs.joinmastodon.org/",
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "app_registration_endpoint": format!("{base}/api/v1/apps"),
        "scopes_supported": [
            "read", "write", "follow", "push", "profile",
            "read:accounts", "read:blocks", "read:bookmarks", "read:favourites", "read:filters",
            "read:follows", "read:lists", "read:mutes", "read:notifications", "read:search",
            "read:statuses", "write:accounts", "write:blocks", "write:bookmarks",
            "write:conversations", "write:favourites", "write:filters", "write:follows",
            "write:lists", "write:media", "write:mutes", "write:notifications", "write:reports",
            "write:statuses"
        ],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "grant_types_supported": ["authorization_code", "password", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

#[cfg(test)]
mod proptests {
    //! Properties of HTTP Basic client credentials (`client_secret_basic`): any header is
    //! the credentials it encodes or the body's, never a panic.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use axum::http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn body() -> TokenParams {
        serde_html_form::from_str("client_id=body-id&client_secret=body-secret").unwrap()
    }

    fn headers(value: HeaderValue) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value);
        h
    }

    proptest! {
        #[test]
        fn any_header_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let Ok(value) = HeaderValue::from_bytes(&bytes) else {
                return Ok(());
            };
            let (id, secret) = client_credentials(&headers(value), &body());
            if (id.as_str(), secret.as_str()) != ("body-id", "body-secret") {
                // Only a Basic header can have given other credentials.
                let text = std::str::from_utf8(&bytes).unwrap();
                prop_assert!(text[..6].eq_ignore_ascii_case("basic "));
            }
        }

        #[test]
        fn basic_credentials_round_trip(
            scheme in "(Basic|basic|BASIC|bAsIc)",
            id in "[^:]{0,40}",
            secret in any::<String>(),
            spaces in " {1,2}",
        ) {
            let encoded = STANDARD.encode(format!("{id}:{secret}"));
            let value = HeaderValue::from_str(&format!("{scheme}{spaces}{encoded}")).unwrap();
            prop_assert_eq!(client_credentials(&headers(value), &body()), (id, secret));
        }

        #[test]
        fn broken_basic_falls_back_to_the_body(
            junk in "[A-Za-z0-9+/=!*]{0,40}",
            no_colon in "[^:]{0,40}",
        ) {
            let expected = ("body-id".to_owned(), "body-secret".to_owned());
            // Not base64, or base64 of something without a `:`.
            if STANDARD.decode(&junk).is_err() {
                let value = HeaderValue::from_str(&format!("Basic {junk}")).unwrap();
                prop_assert_eq!(client_credentials(&headers(value), &body()), expected.clone());
            }
            let value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(&no_colon))).unwrap();
            prop_assert_eq!(client_credentials(&headers(value), &body()), expected);
        }
    }
}
