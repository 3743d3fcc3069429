//! Statuses: post, read, edit, delete, thread, history, and what accounts do to them
//! (favourite, reblog, bookmark, pin). One call to the timeline service per request,
//! then one batched account lookup (usually served by this replica's cache) to render.

use std::collections::HashMap;

use axum::{
    extract::{Path, State},
    http::{HeaderMap, Uri, header::LINK},
    response::{IntoResponse, Response},
    routing::{MethodRouter, post},
};
use rookery_kit::ids::parse_id;
use rookery_proto::{timeline::v1 as tl, users::v1 as pb};
use serde::Deserialize;

use crate::{
    auth::{Auth, MaybeAuth},
    error::{ApiError, ApiResult},
    input::{Params, opt_bool, opt_i64, string_list},
    mastodon::{
        ACCOUNT_JSON_BYTES, Account, json_response,
        media::MediaRefs,
        status::{self, Ctx, STATUS_JSON_BYTES},
    },
    pagination::PageParams,
    state::AppState,
};

/// Default and largest page of an account list (favourited by, reblogged by).
const ACCOUNTS_DEFAULT: u32 = 40;
const ACCOUNTS_MAX: u32 = 80;
/// Default and largest page of a status list.
pub const STATUSES_DEFAULT: u32 = 20;
pub const STATUSES_MAX: u32 = 40;
/// Most attachments of a status (Mastodon's).
const MAX_MEDIA: usize = 4;
/// Most ids in `GET /api/v1/statuses?id[]=`.
const MAX_BATCH: usize = 40;

/// A status id from the path: malformed ids are as unknown as missing ones.
pub fn status_id(id: &str) -> Result<i64, ApiError> {
    parse_id(id).map_err(|_| ApiError::not_found())
}

/// The viewer id of an optional authentication (0: anonymous).
pub fn viewer_of(auth: &MaybeAuth, scopes: &[&str]) -> Result<i64, ApiError> {
    match &auth.0 {
        None => Ok(0),
        Some(auth) => {
            auth.require(scopes)?;
            // An app token reads like an anonymous visitor.
            Ok(auth.token.account_id.unwrap_or(0))
        }
    }
}

/// What a page of statuses references: its authors and mentioned accounts (users) and
/// its attachments (media), one batched lookup each, concurrently.
pub struct PageRefs {
    pub accounts: HashMap<i64, pb::Account>,
    pub media: MediaRefs,
}

impl PageRefs {
    /// Loads what `page` references.
    pub async fn load(state: &AppState, page: &tl::StatusPage) -> ApiResult<Self> {
        let (accounts, media) =
            tokio::try_join!(state.accounts(&page.authors), state.page_media(page))?;
        Ok(Self { accounts, media })
    }

    /// The rendering context of `page`.
    pub fn ctx<'a>(&'a self, page: &'a tl::StatusPage, state: &'a AppState) -> Ctx<'a> {
        Ctx {
            page,
            accounts: &self.accounts,
            media: &self.media,
            base_url: &state.config.instance.base_url,
        }
    }
}

/// Answers a list of statuses with its `Link` header.
pub async fn status_list(
    state: &AppState,
    page: tl::StatusPage,
    uri: &Uri,
    params: &PageParams,
    limit: u32,
) -> ApiResult<Response> {
    let (next, prev) = (page.next_max_id, page.prev_min_id);
    let mut response = status_array(state, &page).await?;
    let base_url = &state.config.instance.base_url;
    if let Some(link) = params.link_cursors(base_url, uri, limit, next, prev) {
        response.headers_mut().insert(LINK, link);
    }
    Ok(response)
}

/// Answers the statuses of `page` as a JSON array (authors and attachments in one
/// batched lookup each).
pub async fn status_array(state: &AppState, page: &tl::StatusPage) -> ApiResult<Response> {
    let refs = PageRefs::load(state, page).await?;
    let body = status::statuses(&refs.ctx(page, state));
    Ok(json_response(&body, body.len() * STATUS_JSON_BYTES + 2))
}

/// Answers the first status of `page` (404 when the viewer may not see it).
pub async fn one_status(
    state: &AppState,
    page: tl::StatusPage,
    source: bool,
) -> ApiResult<Response> {
    let refs = PageRefs::load(state, &page).await?;
    let ctx = refs.ctx(&page, state);
    let id = page.ids.first().copied().ok_or_else(ApiError::not_found)?;
    let entity = status::status(&ctx, id).ok_or_else(ApiError::not_found)?;
    let entity = if source { entity.with_source() } else { entity };
    Ok(json_response(&entity, STATUS_JSON_BYTES))
}

fn visibility(v: Option<&str>) -> Result<Option<tl::Visibility>, ApiError> {
    Ok(match v.map(str::trim) {
        None | Some("") => None,
        Some("public") => Some(tl::Visibility::Public),
        Some("unlisted") => Some(tl::Visibility::Unlisted),
        Some("private") => Some(tl::Visibility::Private),
        Some("direct") => Some(tl::Visibility::Direct),
        Some(other) => {
            return Err(ApiError::unprocessable(format!(
                "Validation failed: Visibility {other:?} is not one of public, unlisted, private, direct"
            )));
        }
    })
}

fn media_ids(raw: &[String]) -> Result<Vec<i64>, ApiError> {
    raw.iter()
        .filter(|m| !m.trim().is_empty())
        .map(|m| {
            parse_id(m.trim())
                .map_err(|_| ApiError::unprocessable(format!("media_ids: {m:?} is not an id")))
        })
        .collect()
}

/// The attachments a status of `me` may use, in the order given: Mastodon's rule keeps
/// the author's own uploads that no other status uses (`status`: the status being
/// edited) and drops other ids; one still processing is refused. One batched lookup
/// (which also warms the cache the response is rendered from).
async fn attachable(
    state: &AppState,
    me: i64,
    status: Option<i64>,
    requested: Vec<i64>,
) -> ApiResult<Vec<i64>> {
    if requested.len() > MAX_MEDIA {
        return Err(ApiError::unprocessable(format!(
            "Cannot attach more than {MAX_MEDIA} files"
        )));
    }
    if requested.is_empty() {
        return Ok(requested);
    }
    let found = state.attachments(&requested).await?;
    let mut usable = Vec::with_capacity(requested.len());
    for id in requested {
        let Some(a) = found.get(&id) else { continue };
        if a.account_id != me || a.status_id.is_some_and(|s| Some(s) != status) {
            continue;
        }
        if a.state() != rookery_proto::media::v1::State::Ready {
            return Err(ApiError::unprocessable(
                "Cannot attach files that have not finished processing. Try again in a moment!",
            ));
        }
        if !usable.contains(&id) {
            usable.push(id);
        }
    }
    Ok(usable)
}

#[derive(Deserialize)]
pub struct PostParams {
    #[serde(default)]
    status: Option<String>,
    #[serde(default, alias = "media_ids[]", deserialize_with = "string_list")]
    media_ids: Vec<String>,
    #[serde(default, deserialize_with = "opt_i64")]
    in_reply_to_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    quoted_status_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_bool")]
    sensitive: Option<bool>,
    #[serde(default)]
    spoiler_text: Option<String>,
    #[serde(default)]
    visibility: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    scheduled_at: Option<String>,
    #[serde(default)]
    poll: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "poll[options][]", deserialize_with = "string_list")]
    poll_options: Vec<String>,
}

/// `POST /api/v1/statuses`. Defaults (visibility, sensitivity, language) come from the
/// account's posting preferences; `Idempotency-Key` makes retries safe.
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Params(p): Params<PostParams>,
) -> ApiResult<Response> {
    auth.require(&["write:statuses"])?;
    let me = auth.account()?;
    if p.poll.is_some() || !p.poll_options.is_empty() {
        return Err(ApiError::unprocessable(
            "Polls are not supported on this server",
        ));
    }
    if p.scheduled_at
        .as_deref()
        .is_some_and(|s| !s.trim().is_empty())
    {
        return Err(ApiError::unprocessable(
            "Scheduled statuses are not supported on this server",
        ));
    }
    let account = state.account(me).await?;
    let default_visibility = visibility(Some(&account.default_privacy))?;
    let visibility = visibility(p.visibility.as_deref())?.or(default_visibility);
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let language = p
        .language
        .filter(|l| !l.trim().is_empty())
        .unwrap_or_else(|| account.default_language.clone());
    let media_ids = attachable(&state, me.0, None, media_ids(&p.media_ids)?).await?;
    let page = state
        .timeline()
        .create_status(tl::CreateStatusRequest {
            account_id: me.0,
            text: p.status.unwrap_or_default(),
            visibility: visibility.unwrap_or(tl::Visibility::Public).into(),
            in_reply_to_id: p.in_reply_to_id,
            sensitive: p.sensitive.unwrap_or(account.default_sensitive),
            spoiler_text: p.spoiler_text.unwrap_or_default(),
            language,
            media_ids,
            quoted_status_id: p.quoted_status_id,
            idempotency_key,
            application: String::new(),
        })
        .await?
        .into_inner();
    // The author's statuses count moves when users applies the event; drop our copy.
    state.forget_account(me).await;
    one_status(&state, page, false).await
}

#[derive(Deserialize)]
pub struct EditParams {
    #[serde(default)]
    status: Option<String>,
    #[serde(default, alias = "media_ids[]", deserialize_with = "string_list")]
    media_ids: Vec<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    sensitive: Option<bool>,
    #[serde(default)]
    spoiler_text: Option<String>,
    #[serde(default)]
    language: Option<String>,
}

/// `PUT /api/v1/statuses/:id`: a new version; the old one stays in the history.
pub async fn edit(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Params(p): Params<EditParams>,
) -> ApiResult<Response> {
    auth.require(&["write:statuses"])?;
    let me = auth.account()?;
    let id = status_id(&id)?;
    let media_ids = attachable(&state, me.0, Some(id), media_ids(&p.media_ids)?).await?;
    let page = state
        .timeline()
        .edit_status(tl::EditStatusRequest {
            account_id: me.0,
            status_id: id,
            text: p.status.unwrap_or_default(),
            spoiler_text: p.spoiler_text.unwrap_or_default(),
            sensitive: p.sensitive.unwrap_or(false),
            language: p.language.filter(|l| !l.trim().is_empty()),
            media_ids,
        })
        .await?
        .into_inner();
    one_status(&state, page, false).await
}

/// `GET /api/v1/statuses/:id`.
pub async fn show(
    State(state): State<AppState>,
    auth: MaybeAuth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let viewer = viewer_of(&auth, &["read:statuses"])?;
    let page = state
        .timeline()
        .get_statuses(tl::GetStatusesRequest {
            viewer_id: viewer,
            ids: vec![status_id(&id)?],
        })
        .await?
        .into_inner();
    one_status(&state, page, false).await
}

#[derive(Deserialize)]
pub struct BatchParams {
    #[serde(default, alias = "id[]", deserialize_with = "string_list")]
    id: Vec<String>,
}

/// `GET /api/v1/statuses?id[]=…`: several statuses in one request (unknown ones left out).
pub async fn batch(
    State(state): State<AppState>,
    auth: MaybeAuth,
    Params(p): Params<BatchParams>,
) -> ApiResult<Response> {
    let viewer = viewer_of(&auth, &["read:statuses"])?;
    if p.id.len() > MAX_BATCH {
        return Err(ApiError::unprocessable(format!(
            "at most {MAX_BATCH} ids per request"
        )));
    }
    let ids: Vec<i64> =
        p.id.iter()
            .filter_map(|i| parse_id(i.trim()).ok())
            .collect();
    let page = state
        .timeline()
        .get_statuses(tl::GetStatusesRequest {
            viewer_id: viewer,
            ids,
        })
        .await?
        .into_inner();
    status_array(&state, &page).await
}

/// `DELETE /api/v1/statuses/:id`: answers the deleted status with its `text`, for
/// "delete and redraft".
pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    auth.require(&["write:statuses"])?;
    let me = auth.account()?;
    let page = state
        .timeline()
        .delete_status(tl::StatusRequest {
            viewer_id: me.0,
            status_id: status_id(&id)?,
        })
        .await?
        .into_inner();
    state.forget_account(me).await;
    one_status(&state, page, true).await
}

/// `GET /api/v1/statuses/:id/context`.
pub async fn context(
    State(state): State<AppState>,
    auth: MaybeAuth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let viewer = viewer_of(&auth, &["read:statuses"])?;
    let resp = state
        .timeline()
        .context(tl::StatusRequest {
            viewer_id: viewer,
            status_id: status_id(&id)?,
        })
        .await?
        .into_inner();
    let empty = tl::StatusPage::default();
    let page = resp.statuses.as_ref().unwrap_or(&empty);
    let refs = PageRefs::load(&state, page).await?;
    let body = status::context(
        &resp,
        &refs.accounts,
        &refs.media,
        &state.config.instance.base_url,
    );
    let n = resp.ancestors.len() + resp.descendants.len();
    Ok(json_response(&body, n * STATUS_JSON_BYTES + 32))
}

/// `GET /api/v1/statuses/:id/history`: every version, oldest first.
pub async fn history(
    State(state): State<AppState>,
    auth: MaybeAuth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let viewer = viewer_of(&auth, &["read:statuses"])?;
    let resp = state
        .timeline()
        .history(tl::StatusRequest {
            viewer_id: viewer,
            status_id: status_id(&id)?,
        })
        .await?
        .into_inner();
    let mut media_ids: Vec<i64> = resp
        .versions
        .iter()
        .flat_map(|v| v.media_ids.iter().copied())
        .collect();
    media_ids.sort_unstable();
    media_ids.dedup();
    let (account, attachments) = tokio::try_join!(
        state.account(rookery_kit::ids::AccountId(resp.account_id)),
        state.attachments(&media_ids)
    )?;
    let media = MediaRefs {
        attachments,
        base: state.config.media_base_url.clone(),
    };
    let body = status::history(&resp, &account, &media, &state.config.instance.base_url);
    Ok(json_response(&body, body.len() * 1024 + 2))
}

/// `GET /api/v1/statuses/:id/source`: the text as typed, for editing.
pub async fn source(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    auth.require(&["read:statuses"])?;
    let me = auth.account()?;
    let id = status_id(&id)?;
    let page = state
        .timeline()
        .get_statuses(tl::GetStatusesRequest {
            viewer_id: me.0,
            ids: vec![id],
        })
        .await?
        .into_inner();
    let s = page.statuses.get(&id).ok_or_else(ApiError::not_found)?;
    // The text as typed is the author's only (Mastodon: `Status.where(account:
    // current_account).find`): others who may see the status get its rendered content,
    // and a 404 here, as for a status that does not exist.
    if s.account_id != me.0 {
        return Err(ApiError::not_found());
    }
    Ok(axum::Json(serde_json::json!({
        "id": s.id.to_string(),
        "text": s.text,
        "spoiler_text": s.spoiler_text,
    }))
    .into_response())
}

#[derive(Deserialize)]
pub struct InteractParams {
    #[serde(default)]
    visibility: Option<String>,
}

fn interaction_scope(i: tl::Interaction) -> &'static str {
    use tl::Interaction as I;
    match i {
        I::Favourite | I::Unfavourite => "write:favourites",
        I::Bookmark | I::Unbookmark => "write:bookmarks",
        I::Pin | I::Unpin => "write:accounts",
        I::Reblog | I::Unreblog | I::Unspecified => "write:statuses",
    }
}

async fn interact(
    state: AppState,
    auth: Auth,
    id: String,
    p: InteractParams,
    interaction: tl::Interaction,
) -> ApiResult<Response> {
    auth.require(&[interaction_scope(interaction)])?;
    let me = auth.account()?;
    let visibility = match interaction {
        tl::Interaction::Reblog => visibility(p.visibility.as_deref())?,
        _ => None,
    };
    let page = state
        .timeline()
        .interact(tl::InteractRequest {
            account_id: me.0,
            status_id: status_id(&id)?,
            interaction: interaction.into(),
            visibility: visibility.unwrap_or(tl::Visibility::Unspecified).into(),
        })
        .await?
        .into_inner();
    if matches!(
        interaction,
        tl::Interaction::Reblog | tl::Interaction::Unreblog
    ) {
        state.forget_account(me).await;
    }
    one_status(&state, page, false).await
}

/// The `POST` route of a status interaction: `favourite`, `unfavourite`, `reblog`
/// (`visibility`), `unreblog`, `bookmark`, `unbookmark`, `pin`, `unpin`.
pub fn interaction_route(interaction: tl::Interaction) -> MethodRouter<AppState> {
    post(
        move |State(state): State<AppState>,
              auth: Auth,
              Path(id): Path<String>,
              Params(p): Params<InteractParams>| {
            interact(state, auth, id, p, interaction)
        },
    )
}

async fn interactions(
    state: AppState,
    auth: MaybeAuth,
    uri: Uri,
    id: String,
    params: PageParams,
    list: tl::InteractionList,
) -> ApiResult<Response> {
    let viewer = viewer_of(&auth, &["read:accounts"])?;
    let page = params.timeline_page(ACCOUNTS_DEFAULT, ACCOUNTS_MAX)?;
    let limit = page.limit;
    let ids = state
        .timeline()
        .interactions(tl::InteractionsRequest {
            viewer_id: viewer,
            status_id: status_id(&id)?,
            list: list.into(),
            page: Some(page),
        })
        .await?
        .into_inner();
    let accounts = state.accounts(&ids.ids).await?;
    let base_url = &state.config.instance.base_url;
    let body: Vec<Account> = ids
        .ids
        .iter()
        .filter_map(|id| accounts.get(id))
        .map(|a| Account::new(a, base_url))
        .collect();
    let mut response = json_response(&body, body.len() * ACCOUNT_JSON_BYTES + 2);
    if let Some(link) = params.link_cursors(base_url, &uri, limit, ids.next_max_id, ids.prev_min_id)
    {
        response.headers_mut().insert(LINK, link);
    }
    Ok(response)
}

/// `GET /api/v1/statuses/:id/favourited_by`.
pub async fn favourited_by(
    State(state): State<AppState>,
    auth: MaybeAuth,
    uri: Uri,
    Path(id): Path<String>,
    Params(params): Params<PageParams>,
) -> ApiResult<Response> {
    interactions(
        state,
        auth,
        uri,
        id,
        params,
        tl::InteractionList::FavouritedBy,
    )
    .await
}

/// `GET /api/v1/statuses/:id/reblogged_by`.
pub async fn reblogged_by(
    State(state): State<AppState>,
    auth: MaybeAuth,
    uri: Uri,
    Path(id): Path<String>,
    Params(params): Params<PageParams>,
) -> ApiResult<Response> {
    interactions(
        state,
        auth,
        uri,
        id,
        params,
        tl::InteractionList::RebloggedBy,
    )
    .await
}

async fn saved(
    state: AppState,
    auth: Auth,
    uri: Uri,
    params: PageParams,
    list: tl::SavedList,
    scope: &str,
) -> ApiResult<Response> {
    auth.require(&[scope])?;
    let me = auth.account()?;
    let page = params.timeline_page(STATUSES_DEFAULT, STATUSES_MAX)?;
    let limit = page.limit;
    let statuses = state
        .timeline()
        .saved_statuses(tl::SavedStatusesRequest {
            viewer_id: me.0,
            list: list.into(),
            page: Some(page),
        })
        .await?
        .into_inner();
    status_list(&state, statuses, &uri, &params, limit).await
}

/// `GET /api/v1/favourites`.
pub async fn favourites(
    State(state): State<AppState>,
    auth: Auth,
    uri: Uri,
    Params(params): Params<PageParams>,
) -> ApiResult<Response> {
    saved(
        state,
        auth,
        uri,
        params,
        tl::SavedList::Favourites,
        "read:favourites",
    )
    .await
}

/// `GET /api/v1/bookmarks`.
pub async fn bookmarks(
    State(state): State<AppState>,
    auth: Auth,
    uri: Uri,
    Params(params): Params<PageParams>,
) -> ApiResult<Response> {
    saved(
        state,
        auth,
        uri,
        params,
        tl::SavedList::Bookmarks,
        "read:bookmarks",
    )
    .await
}
