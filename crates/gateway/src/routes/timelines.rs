//! Timelines (home, public, hashtag, account), hashtags, trends and search.

use axum::{
    extract::{Path, State},
    http::Uri,
    response::Response,
};
use rookery_kit::grpc::idempotent;
use rookery_proto::{timeline::v1 as tl, users::v1 as pb};
use serde::Deserialize;

use super::statuses::{
    PageRefs, STATUSES_DEFAULT, STATUSES_MAX, status_array, status_list, viewer_of,
};
use crate::{
    auth::{Auth, MaybeAuth},
    error::{ApiError, ApiResult},
    input::{Params, opt_bool, opt_string_list},
    mastodon::{
        ACCOUNT_JSON_BYTES, Account, json_response,
        status::{self, STATUS_JSON_BYTES},
    },
    pagination::{PageParams, limit, number},
    state::AppState,
};

/// `GET /api/v1/timelines/home`: the signed-in account's feed.
pub async fn home(
    State(state): State<AppState>,
    auth: Auth,
    uri: Uri,
    Params(params): Params<PageParams>,
) -> ApiResult<Response> {
    auth.require(&["read:statuses"])?;
    let me = auth.account()?;
    let page = params.timeline_page(STATUSES_DEFAULT, STATUSES_MAX)?;
    let limit = page.limit;
    // Reads are retried when timeline is briefly unavailable (a replica restarting).
    let statuses = idempotent(|| {
        let mut timeline = state.timeline();
        let req = tl::HomeTimelineRequest {
            viewer_id: me.0,
            page: Some(page),
        };
        async move { timeline.home_timeline(req).await }
    })
    .await?
    .into_inner();
    status_list(&state, statuses, &uri, &params, limit).await
}

#[derive(Deserialize)]
pub struct PublicParams {
    #[serde(default, deserialize_with = "opt_bool")]
    local: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    remote: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    only_media: Option<bool>,
    #[serde(default, alias = "any[]", deserialize_with = "opt_string_list")]
    any: Option<Vec<String>>,
    #[serde(default, alias = "all[]", deserialize_with = "opt_string_list")]
    all: Option<Vec<String>>,
    #[serde(default, alias = "none[]", deserialize_with = "opt_string_list")]
    none: Option<Vec<String>>,
    #[serde(flatten)]
    page: PageParams,
}

/// `GET /api/v1/timelines/public` (`local`, `remote`, `only_media`).
pub async fn public(
    State(state): State<AppState>,
    auth: MaybeAuth,
    uri: Uri,
    Params(p): Params<PublicParams>,
) -> ApiResult<Response> {
    let viewer = viewer_of(&auth, &["read:statuses"])?;
    let page = p.page.timeline_page(STATUSES_DEFAULT, STATUSES_MAX)?;
    let limit = page.limit;
    let statuses = idempotent(|| {
        let mut timeline = state.timeline();
        let req = tl::PublicTimelineRequest {
            viewer_id: viewer,
            page: Some(page),
            local: p.local.unwrap_or(false),
            remote: p.remote.unwrap_or(false),
            only_media: p.only_media.unwrap_or(false),
        };
        async move { timeline.public_timeline(req).await }
    })
    .await?
    .into_inner();
    status_list(&state, statuses, &uri, &p.page, limit).await
}

/// `GET /api/v1/timelines/tag/:hashtag` (`any[]`, `all[]`, `none[]`, `local`,
/// `only_media`).
pub async fn tag(
    State(state): State<AppState>,
    auth: MaybeAuth,
    uri: Uri,
    Path(hashtag): Path<String>,
    Params(p): Params<PublicParams>,
) -> ApiResult<Response> {
    let viewer = viewer_of(&auth, &["read:statuses"])?;
    let page = p.page.timeline_page(STATUSES_DEFAULT, STATUSES_MAX)?;
    let limit = page.limit;
    let statuses = state
        .timeline()
        .tag_timeline(tl::TagTimelineRequest {
            viewer_id: viewer,
            page: Some(page),
            tag: hashtag,
            any: p.any.unwrap_or_default(),
            all: p.all.unwrap_or_default(),
            none: p.none.unwrap_or_default(),
            local: p.local.unwrap_or(false),
            remote: p.remote.unwrap_or(false),
            only_media: p.only_media.unwrap_or(false),
        })
        .await?
        .into_inner();
    status_list(&state, statuses, &uri, &p.page, limit).await
}

#[derive(Deserialize)]
pub struct AccountStatusesParams {
    #[serde(default, deserialize_with = "opt_bool")]
    exclude_replies: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    exclude_reblogs: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    only_media: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    pinned: Option<bool>,
    #[serde(default)]
    tagged: Option<String>,
    #[serde(flatten)]
    page: PageParams,
}

/// `GET /api/v1/accounts/:id/statuses`.
pub async fn account_statuses(
    State(state): State<AppState>,
    auth: MaybeAuth,
    uri: Uri,
    Path(id): Path<String>,
    Params(p): Params<AccountStatusesParams>,
) -> ApiResult<Response> {
    let viewer = viewer_of(&auth, &["read:statuses"])?;
    let account: rookery_kit::ids::AccountId = id.parse().map_err(|_| ApiError::not_found())?;
    // Unknown accounts are a 404, not an empty list.
    state.account(account).await?;
    let page = p.page.timeline_page(STATUSES_DEFAULT, STATUSES_MAX)?;
    let limit = page.limit;
    let statuses = state
        .timeline()
        .account_statuses(tl::AccountStatusesRequest {
            viewer_id: viewer,
            account_id: account.0,
            page: Some(page),
            exclude_replies: p.exclude_replies.unwrap_or(false),
            exclude_reblogs: p.exclude_reblogs.unwrap_or(false),
            only_media: p.only_media.unwrap_or(false),
            pinned: p.pinned.unwrap_or(false),
            tagged: p.tagged.unwrap_or_default(),
        })
        .await?
        .into_inner();
    status_list(&state, statuses, &uri, &p.page, limit).await
}

fn tag_json(state: &AppState, t: &tl::Tag, signed_in: bool) -> Response {
    json_response(
        &status::tag(t, &state.config.instance.base_url, signed_in),
        512,
    )
}

/// Answers hashtags as a JSON array.
fn tag_array(state: &AppState, tags: &[tl::Tag], signed_in: bool) -> Response {
    let base_url = &state.config.instance.base_url;
    let body: Vec<_> = tags
        .iter()
        .map(|t| status::tag(t, base_url, signed_in))
        .collect();
    json_response(&body, body.len() * 512 + 2)
}

/// `GET /api/v1/tags/:name`.
pub async fn show_tag(
    State(state): State<AppState>,
    auth: MaybeAuth,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let viewer = viewer_of(&auth, &["read:statuses"])?;
    let t = state
        .timeline()
        .get_tag(tl::TagRequest {
            viewer_id: viewer,
            name,
        })
        .await?
        .into_inner();
    Ok(tag_json(&state, &t, viewer != 0))
}

async fn follow_tag(
    state: AppState,
    auth: Auth,
    name: String,
    follow: bool,
) -> ApiResult<Response> {
    auth.require(&["write:follows"])?;
    let me = auth.account()?;
    let req = tl::TagRequest {
        viewer_id: me.0,
        name,
    };
    let mut timeline = state.timeline();
    let t = if follow {
        timeline.follow_tag(req).await
    } else {
        timeline.unfollow_tag(req).await
    }?
    .into_inner();
    Ok(tag_json(&state, &t, true))
}

/// `POST /api/v1/tags/:name/follow`: its statuses join the home timeline.
pub async fn follow(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    follow_tag(state, auth, name, true).await
}

/// `POST /api/v1/tags/:name/unfollow`.
pub async fn unfollow(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    follow_tag(state, auth, name, false).await
}

/// `GET /api/v1/followed_tags`.
pub async fn followed_tags(
    State(state): State<AppState>,
    auth: Auth,
    uri: Uri,
    Params(params): Params<PageParams>,
) -> ApiResult<Response> {
    auth.require(&["read:follows"])?;
    let me = auth.account()?;
    let page = params.timeline_page(100, 200)?;
    let limit = page.limit;
    let tags = state
        .timeline()
        .followed_tags(tl::FollowedTagsRequest {
            viewer_id: me.0,
            page: Some(page),
        })
        .await?
        .into_inner();
    let base_url = &state.config.instance.base_url;
    let mut response = tag_array(&state, &tags.tags, true);
    if let Some(link) =
        params.link_cursors(base_url, &uri, limit, tags.next_max_id, tags.prev_min_id)
    {
        response.headers_mut().insert(http::header::LINK, link);
    }
    Ok(response)
}

#[derive(Deserialize)]
pub struct TrendsParams {
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    offset: Option<String>,
}

fn offset(raw: Option<&str>) -> Result<u32, ApiError> {
    Ok(number("offset", raw)?
        .unwrap_or(0)
        .clamp(0, i64::from(u32::MAX)) as u32)
}

/// `GET /api/v1/trends/tags` (and `/api/v1/trends`).
pub async fn trending_tags(
    State(state): State<AppState>,
    auth: MaybeAuth,
    Params(p): Params<TrendsParams>,
) -> ApiResult<Response> {
    let viewer = viewer_of(&auth, &["read"])?;
    let tags = state
        .timeline()
        .trending_tags(tl::TrendsRequest {
            viewer_id: viewer,
            limit: limit(p.limit.as_deref(), 10, 20)?,
            offset: offset(p.offset.as_deref())?,
        })
        .await?
        .into_inner();
    Ok(tag_array(&state, &tags.tags, viewer != 0))
}

/// `GET /api/v1/trends/statuses`.
pub async fn trending_statuses(
    State(state): State<AppState>,
    auth: MaybeAuth,
    Params(p): Params<TrendsParams>,
) -> ApiResult<Response> {
    let viewer = viewer_of(&auth, &["read"])?;
    let page = state
        .timeline()
        .trending_statuses(tl::TrendsRequest {
            viewer_id: viewer,
            limit: limit(p.limit.as_deref(), 20, 40)?,
            offset: offset(p.offset.as_deref())?,
        })
        .await?
        .into_inner();
    status_array(&state, &page).await
}

#[derive(Deserialize)]
pub struct SearchParams {
    #[serde(default)]
    q: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    following: Option<bool>,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    max_id: Option<String>,
    #[serde(default)]
    min_id: Option<String>,
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    offset: Option<String>,
}

/// `GET /api/v2/search`: accounts (users service), hashtags and statuses (timeline
/// service), asked of both services at once.
pub async fn search(
    State(state): State<AppState>,
    auth: MaybeAuth,
    Params(p): Params<SearchParams>,
) -> ApiResult<Response> {
    let viewer = viewer_of(&auth, &["read:search"])?;
    let q = p.q.unwrap_or_default();
    let kind = p.kind.as_deref().unwrap_or("");
    if !matches!(kind, "" | "accounts" | "hashtags" | "statuses") {
        return Err(ApiError::unprocessable(
            "type must be one of accounts, hashtags, statuses",
        ));
    }
    let limit = limit(p.limit.as_deref(), 20, 40)?;
    let offset = offset(p.offset.as_deref())?;
    // Mastodon pages past the first only for signed-in users.
    if viewer == 0 && offset > 0 {
        return Err(ApiError::new(
            http::StatusCode::UNAUTHORIZED,
            "Search queries with offset require a signed-in user",
        ));
    }
    let account_id = number("account_id", p.account_id.as_deref())?;
    // Every parameter is checked whatever `type` asks for (found by schemathesis: the
    // cursors were only read, and refused, when statuses were searched).
    let max_id = number("max_id", p.max_id.as_deref())?;
    let min_id = number("min_id", p.min_id.as_deref())?;
    let want = |k: &str| kind.is_empty() || kind == k;
    let accounts = async {
        if !want("accounts") || q.trim().is_empty() {
            return Ok(Vec::new());
        }
        let res = state
            .users()
            .search_accounts(pb::SearchAccountsRequest {
                query: q.clone(),
                viewer_id: (viewer != 0).then_some(viewer),
                following: p.following.unwrap_or(false),
                limit,
                offset,
            })
            .await?;
        Ok::<_, ApiError>(res.into_inner().accounts)
    };
    let timeline = async {
        if !(want("hashtags") || want("statuses")) {
            return Ok(tl::SearchResponse::default());
        }
        let res = state
            .timeline()
            .search(tl::SearchRequest {
                viewer_id: viewer,
                q: q.clone(),
                hashtags: want("hashtags"),
                statuses: want("statuses"),
                account_id,
                limit,
                offset,
                max_id,
                min_id,
            })
            .await?;
        Ok::<_, ApiError>(res.into_inner())
    };
    let (accounts, found) = tokio::try_join!(accounts, timeline)?;
    let empty = tl::StatusPage::default();
    let page = found.statuses.as_ref().unwrap_or(&empty);
    let refs = PageRefs::load(&state, page).await?;
    let base_url = &state.config.instance.base_url;
    let ctx = refs.ctx(page, &state);
    let body = serde_json::json!({
        "accounts": accounts.iter().map(|a| Account::new(a, base_url)).collect::<Vec<_>>(),
        "statuses": status::statuses(&ctx),
        "hashtags": found.hashtags.iter().map(|t| status::tag(t, base_url, viewer != 0)).collect::<Vec<_>>(),
    });
    let size = accounts.len() * ACCOUNT_JSON_BYTES + page.ids.len() * STATUS_JSON_BYTES + 64;
    Ok(json_response(&body, size))
}
