//! The social graph: follow, unfollow, follow requests, blocks, mutes, relationships,
//! followers/following lists and account search. One call to the users service per
//! request; lists come back hydrated from its account cache.

use axum::{
    Json,
    extract::{Path, State},
    http::{Uri, header::LINK},
    response::{IntoResponse, Response},
    routing::{MethodRouter, post},
};
use rookery_kit::ids::AccountId;
use rookery_proto::users::v1 as pb;
use serde::Deserialize;

use crate::{
    auth::{Auth, MaybeAuth},
    error::{ApiError, ApiResult, rate_limit_headers},
    input::{Params, opt_bool, opt_i64, opt_string_list, string_list},
    mastodon::{ACCOUNT_JSON_BYTES, Account, Relationship, json_response},
    pagination::{PageParams, limit, number},
    state::AppState,
};

/// Default and largest page of an account list (Mastodon's).
const DEFAULT_LIMIT: u32 = 40;
const MAX_LIMIT: u32 = 80;
/// Most ids one relationships request may ask about.
const MAX_RELATIONSHIPS: usize = 200;

/// An account id from the path: malformed ids are as unknown as missing ones.
fn target(id: &str) -> Result<AccountId, ApiError> {
    id.parse().map_err(|_| ApiError::not_found())
}

/// Answers a changed relationship, dropping this replica's copies of both accounts (their
/// counters may have moved; the users service tells the other replicas).
async fn changed(
    state: &AppState,
    me: AccountId,
    target: AccountId,
    relationship: pb::Relationship,
) -> Response {
    state.forget_account(me).await;
    state.forget_account(target).await;
    Json(Relationship::new(&relationship)).into_response()
}

/// The signed-in account of a request that needs one of `scopes`, and the target.
fn pair(auth: &Auth, scopes: &[&str], id: &str) -> Result<pb::PairRequest, ApiError> {
    auth.require(scopes)?;
    Ok(pb::PairRequest {
        account_id: auth.account()?.0,
        target_id: target(id)?.0,
    })
}

#[derive(Deserialize)]
pub struct FollowParams {
    #[serde(default, deserialize_with = "opt_bool")]
    reblogs: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    notify: Option<bool>,
    #[serde(default, alias = "languages[]", deserialize_with = "opt_string_list")]
    languages: Option<Vec<String>>,
}

/// `POST /api/v1/accounts/:id/follow`: follows, requests to follow a locked account, or
/// changes the options of an existing follow.
pub async fn follow(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Params(p): Params<FollowParams>,
) -> ApiResult<Response> {
    let pair = pair(&auth, &["write:follows"], &id)?;
    let reply = state
        .users()
        .follow(pb::FollowRequest {
            account_id: pair.account_id,
            target_id: pair.target_id,
            reblogs: p.reblogs,
            notify: p.notify,
            languages: p.languages.map(|codes| pb::LanguageList { codes }),
        })
        .await?;
    // Mastodon reports the follow limit on every follow, not only on the 429.
    let limits = rate_limit_headers(reply.metadata(), false);
    let mut response = changed(
        &state,
        AccountId(pair.account_id),
        AccountId(pair.target_id),
        reply.into_inner(),
    )
    .await;
    response.headers_mut().extend(limits);
    Ok(response)
}

/// The pair mutations that take no parameters (see [`pair_route`]).
#[derive(Clone, Copy)]
pub enum PairAction {
    Unfollow,
    RemoveFromFollowers,
    Authorize,
    Reject,
    Block,
    Unblock,
    Unmute,
}

impl PairAction {
    fn scope(self) -> &'static str {
        match self {
            Self::Unfollow | Self::RemoveFromFollowers | Self::Authorize | Self::Reject => {
                "write:follows"
            }
            Self::Block | Self::Unblock => "write:blocks",
            Self::Unmute => "write:mutes",
        }
    }
}

async fn pair_action(
    state: AppState,
    auth: Auth,
    id: String,
    action: PairAction,
) -> ApiResult<Response> {
    let pair = pair(&auth, &[action.scope()], &id)?;
    let (me, other) = (AccountId(pair.account_id), AccountId(pair.target_id));
    let mut users = state.users();
    let relationship = match action {
        PairAction::Unfollow => users.unfollow(pair).await,
        PairAction::RemoveFromFollowers => users.remove_from_followers(pair).await,
        PairAction::Authorize => users.authorize_follow_request(pair).await,
        PairAction::Reject => users.reject_follow_request(pair).await,
        PairAction::Block => users.block(pair).await,
        PairAction::Unblock => users.unblock(pair).await,
        PairAction::Unmute => users.unmute(pair).await,
    }?
    .into_inner();
    Ok(changed(&state, me, other, relationship).await)
}

/// The `POST` route of a parameterless pair mutation: `/api/v1/accounts/:id/unfollow`,
/// `remove_from_followers`, `block` (also removes follows both ways), `unblock`, `unmute`,
/// and `/api/v1/follow_requests/:id/authorize`, `reject`.
pub fn pair_route(action: PairAction) -> MethodRouter<AppState> {
    post(
        move |State(state): State<AppState>, auth: Auth, Path(id): Path<String>| {
            pair_action(state, auth, id, action)
        },
    )
}

#[derive(Deserialize)]
pub struct MuteParams {
    #[serde(default, deserialize_with = "opt_bool")]
    notifications: Option<bool>,
    #[serde(default, deserialize_with = "opt_i64")]
    duration: Option<i64>,
}

/// `POST /api/v1/accounts/:id/mute` (`notifications` default true, `duration` seconds,
/// 0 for indefinitely).
pub async fn mute(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Params(p): Params<MuteParams>,
) -> ApiResult<Response> {
    let pair = pair(&auth, &["write:mutes"], &id)?;
    let duration = p.duration.unwrap_or(0);
    if duration < 0 {
        return Err(ApiError::unprocessable("duration must not be negative"));
    }
    let relationship = state
        .users()
        .mute(pb::MuteRequest {
            account_id: pair.account_id,
            target_id: pair.target_id,
            notifications: p.notifications,
            duration_seconds: duration,
        })
        .await?
        .into_inner();
    Ok(changed(
        &state,
        AccountId(pair.account_id),
        AccountId(pair.target_id),
        relationship,
    )
    .await)
}

#[derive(Deserialize)]
pub struct RelationshipsParams {
    #[serde(default, alias = "id[]", deserialize_with = "string_list")]
    id: Vec<String>,
}

/// `GET /api/v1/accounts/relationships?id[]=…`: one call, one query, any number of ids.
pub async fn relationships(
    State(state): State<AppState>,
    auth: Auth,
    Params(p): Params<RelationshipsParams>,
) -> ApiResult<Response> {
    auth.require(&["read:follows"])?;
    let viewer = auth.account()?;
    let mut ids: Vec<i64> = Vec::with_capacity(p.id.len());
    for raw in &p.id {
        let id: AccountId = raw
            .parse()
            .map_err(|_| ApiError::unprocessable(format!("id: {raw:?} is not an account id")))?;
        if !ids.contains(&id.0) {
            ids.push(id.0);
        }
    }
    if ids.len() > MAX_RELATIONSHIPS {
        return Err(ApiError::unprocessable(format!(
            "at most {MAX_RELATIONSHIPS} ids per request"
        )));
    }
    if ids.is_empty() {
        return Ok(Json(Vec::<Relationship>::new()).into_response());
    }
    let found = state
        .users()
        .relationships(pb::RelationshipsRequest {
            viewer_id: viewer.0,
            ids,
        })
        .await?
        .into_inner()
        .relationships;
    let body: Vec<Relationship> = found.iter().map(Relationship::new).collect();
    Ok(json_response(&body, body.len() * 384))
}

/// Fetches one page of `list` of `account` and answers it with a `Link` header.
async fn account_list(
    state: &AppState,
    uri: &Uri,
    list: pb::AccountList,
    account: AccountId,
    viewer: Option<AccountId>,
    params: &PageParams,
) -> ApiResult<Response> {
    let page = params.page(DEFAULT_LIMIT, MAX_LIMIT)?;
    let entries = state
        .users()
        .list_accounts(pb::ListAccountsRequest {
            list: list.into(),
            account_id: account.0,
            viewer_id: viewer.map(|v| v.0),
            page: Some(page),
        })
        .await?
        .into_inner()
        .entries;
    let base_url = &state.config.instance.base_url;
    let body: Vec<Account> = entries
        .iter()
        .filter_map(|e| {
            let account = e.account.as_ref()?;
            Some(if list == pb::AccountList::Mutes {
                Account::muted(account, base_url, e.mute_expires_at_ms)
            } else {
                Account::new(account, base_url)
            })
        })
        .collect();
    let link = params.link(
        base_url,
        uri,
        &page,
        entries.len(),
        entries.first().map(|e| e.cursor),
        entries.last().map(|e| e.cursor),
    );
    let mut response = json_response(&body, body.len() * ACCOUNT_JSON_BYTES);
    if let Some(link) = link {
        response.headers_mut().insert(LINK, link);
    }
    Ok(response)
}

/// `GET /api/v1/accounts/:id/followers` (public; empty when the owner hides it).
pub async fn followers(
    State(state): State<AppState>,
    auth: MaybeAuth,
    uri: Uri,
    Path(id): Path<String>,
    Params(p): Params<PageParams>,
) -> ApiResult<Response> {
    public_list(state, auth, uri, id, p, pb::AccountList::Followers).await
}

/// `GET /api/v1/accounts/:id/following` (public; empty when the owner hides it).
pub async fn following(
    State(state): State<AppState>,
    auth: MaybeAuth,
    uri: Uri,
    Path(id): Path<String>,
    Params(p): Params<PageParams>,
) -> ApiResult<Response> {
    public_list(state, auth, uri, id, p, pb::AccountList::Following).await
}

async fn public_list(
    state: AppState,
    auth: MaybeAuth,
    uri: Uri,
    id: String,
    p: PageParams,
    list: pb::AccountList,
) -> ApiResult<Response> {
    let viewer = match &auth.0 {
        Some(auth) => {
            auth.require(&["read:accounts"])?;
            auth.token.account_id.map(AccountId)
        }
        None => None,
    };
    account_list(&state, &uri, list, target(&id)?, viewer, &p).await
}

/// The signed-in account's own lists.
async fn own_list(
    state: AppState,
    auth: Auth,
    uri: Uri,
    p: PageParams,
    list: pb::AccountList,
    scope: &str,
) -> ApiResult<Response> {
    auth.require(&[scope])?;
    let me = auth.account()?;
    account_list(&state, &uri, list, me, Some(me), &p).await
}

/// `GET /api/v1/follow_requests`
pub async fn follow_requests(
    State(state): State<AppState>,
    auth: Auth,
    uri: Uri,
    Params(p): Params<PageParams>,
) -> ApiResult<Response> {
    own_list(
        state,
        auth,
        uri,
        p,
        pb::AccountList::FollowRequests,
        "read:follows",
    )
    .await
}

/// `GET /api/v1/blocks`
pub async fn blocks(
    State(state): State<AppState>,
    auth: Auth,
    uri: Uri,
    Params(p): Params<PageParams>,
) -> ApiResult<Response> {
    own_list(state, auth, uri, p, pb::AccountList::Blocks, "read:blocks").await
}

/// `GET /api/v1/mutes`
pub async fn mutes(
    State(state): State<AppState>,
    auth: Auth,
    uri: Uri,
    Params(p): Params<PageParams>,
) -> ApiResult<Response> {
    own_list(state, auth, uri, p, pb::AccountList::Mutes, "read:mutes").await
}

#[derive(Deserialize)]
pub struct SearchParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    offset: Option<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    following: Option<bool>,
    // `resolve` (WebFinger lookups of remote accounts) is accepted and ignored: this
    // server does not federate.
}

/// `GET /api/v1/accounts/search?q=`: username and display-name prefixes.
pub async fn search(
    State(state): State<AppState>,
    auth: Auth,
    Params(p): Params<SearchParams>,
) -> ApiResult<Response> {
    auth.require(&["read:accounts"])?;
    let viewer = auth.account()?;
    let limit = limit(p.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    // As the other searches and the trends read it: a negative offset is 0, a huge one
    // the largest (found by schemathesis: this one alone answered 422 to both).
    let offset = number("offset", p.offset.as_deref())?
        .unwrap_or(0)
        .clamp(0, i64::from(u32::MAX));
    let offset = u32::try_from(offset).unwrap_or(u32::MAX);
    if p.q.trim().is_empty() {
        return Ok(Json(Vec::<Account>::new()).into_response());
    }
    let accounts = state
        .users()
        .search_accounts(pb::SearchAccountsRequest {
            query: p.q,
            limit,
            offset,
            following: p.following.unwrap_or(false),
            viewer_id: Some(viewer.0),
        })
        .await?
        .into_inner()
        .accounts;
    let base_url = &state.config.instance.base_url;
    let body: Vec<Account> = accounts.iter().map(|a| Account::new(a, base_url)).collect();
    Ok(json_response(&body, body.len() * ACCOUNT_JSON_BYTES))
}
