//! Accounts: registration, verify/update credentials, show and lookup.

use axum::{
    Json,
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use rookery_kit::ids::AccountId;
use rookery_proto::users::v1 as pb;
use serde::Deserialize;

use crate::{
    auth::{Auth, MaybeAuth},
    error::{ApiError, ApiResult},
    input::{Params, opt_bool},
    mastodon::{Account, CredentialAccount, Token},
    state::AppState,
};

#[derive(Deserialize)]
pub struct Register {
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default, deserialize_with = "opt_bool")]
    agreement: Option<bool>,
    #[serde(default)]
    locale: String,
    #[serde(default)]
    reason: String,
}

/// `POST /api/v1/accounts`: an app token creates an account and gets its user token.
pub async fn register(
    State(state): State<AppState>,
    auth: Auth,
    Params(p): Params<Register>,
) -> ApiResult<Response> {
    auth.require(&["write:accounts"])?;
    if !state.config.instance.registrations_open {
        return Err(ApiError::new(
            http::StatusCode::FORBIDDEN,
            "Registrations are closed on this server",
        ));
    }
    let res = state
        .users()
        .register(pb::RegisterRequest {
            app_id: auth.token.app_id,
            username: p.username,
            email: p.email,
            password: p.password,
            agreement: p.agreement.unwrap_or(false),
            locale: p.locale,
            reason: p.reason,
            scopes: auth.token.scopes.clone(),
        })
        .await?
        .into_inner();
    match res.result {
        Some(pb::register_response::Result::Token(t)) => Ok(Json(Token::new(&t)).into_response()),
        Some(pb::register_response::Result::Invalid(v)) => Err(ApiError::validation(&v.errors)),
        None => Err(ApiError::new(
            http::StatusCode::BAD_GATEWAY,
            "Empty answer from the users service",
        )),
    }
}

/// `GET /api/v1/accounts/verify_credentials`
pub async fn verify_credentials(State(state): State<AppState>, auth: Auth) -> ApiResult<Response> {
    auth.require(&["read:accounts", "profile"])?;
    let account = state.account(auth.account()?).await.map_err(|e| {
        if e.status == 404 {
            ApiError::invalid_token()
        } else {
            e
        }
    })?;
    Ok(Json(CredentialAccount::new(
        &account,
        &state.config.instance.base_url,
    ))
    .into_response())
}

#[derive(Deserialize, Default)]
pub struct SourceParams {
    privacy: Option<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    sensitive: Option<bool>,
    language: Option<String>,
}

#[derive(Deserialize)]
pub struct UpdateCredentials {
    display_name: Option<String>,
    note: Option<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    locked: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    bot: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    discoverable: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    indexable: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    hide_collections: Option<bool>,
    /// JSON clients nest the posting defaults...
    #[serde(default)]
    source: Option<SourceParams>,
    /// ...form clients flatten them.
    #[serde(rename = "source[privacy]")]
    source_privacy: Option<String>,
    #[serde(default, rename = "source[sensitive]", deserialize_with = "opt_bool")]
    source_sensitive: Option<bool>,
    #[serde(rename = "source[language]")]
    source_language: Option<String>,
}

/// `PATCH /api/v1/accounts/update_credentials`
pub async fn update_credentials(
    State(state): State<AppState>,
    auth: Auth,
    Params(p): Params<UpdateCredentials>,
) -> ApiResult<Response> {
    auth.require(&["write:accounts"])?;
    let account_id = auth.account()?;
    let source = p.source.unwrap_or_default();
    let res = state
        .users()
        .update_credentials(pb::UpdateCredentialsRequest {
            account_id: account_id.0,
            display_name: p.display_name,
            note: p.note,
            locked: p.locked,
            bot: p.bot,
            discoverable: p.discoverable,
            indexable: p.indexable,
            hide_collections: p.hide_collections,
            default_privacy: p.source_privacy.or(source.privacy),
            default_sensitive: p.source_sensitive.or(source.sensitive),
            default_language: p.source_language.or(source.language),
        })
        .await?
        .into_inner();
    match res.result {
        Some(pb::update_credentials_response::Result::Account(a)) => {
            state.forget_account(account_id).await;
            Ok(Json(CredentialAccount::new(&a, &state.config.instance.base_url)).into_response())
        }
        Some(pb::update_credentials_response::Result::Invalid(v)) => {
            Err(ApiError::validation(&v.errors))
        }
        None => Err(ApiError::new(
            http::StatusCode::BAD_GATEWAY,
            "Empty answer from the users service",
        )),
    }
}

/// A public read's token, when one is given, must have `read:accounts` (Mastodon's
/// `authorize_if_got_token!`): a `write`-only token reads nothing.
fn require_read_accounts(auth: &MaybeAuth) -> Result<(), ApiError> {
    match &auth.0 {
        Some(auth) => auth.require(&["read:accounts"]),
        None => Ok(()),
    }
}

/// `GET /api/v1/accounts/:id` (public).
pub async fn show(
    State(state): State<AppState>,
    auth: MaybeAuth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    require_read_accounts(&auth)?;
    let id: AccountId = id.parse().map_err(|_| ApiError::not_found())?;
    let account = state.account(id).await?;
    Ok(Json(Account::new(&account, &state.config.instance.base_url)).into_response())
}

#[derive(Deserialize)]
pub struct Lookup {
    #[serde(default)]
    acct: String,
}

/// `GET /api/v1/accounts/lookup?acct=` (public).
pub async fn lookup(
    State(state): State<AppState>,
    auth: MaybeAuth,
    Params(p): Params<Lookup>,
) -> ApiResult<Response> {
    require_read_accounts(&auth)?;
    if p.acct.trim().is_empty() {
        return Err(ApiError::bad_request("Missing required parameter: acct"));
    }
    let account = state
        .users()
        .lookup_account(pb::LookupAccountRequest { acct: p.acct })
        .await?
        .into_inner();
    Ok(Json(Account::new(&account, &state.config.instance.base_url)).into_response())
}
