//! Notifications (v1 and grouped v2), unread counts and markers.
//!
//! A page costs one call to the notifications service, one batched call to the timeline
//! service for the statuses it is about, and one batched account lookup (usually this
//! replica's cache) for senders and status authors together.

use std::collections::{HashMap, HashSet};

use axum::{
    extract::{Path, State},
    http::{
        HeaderValue, Uri,
        header::{CONTENT_TYPE, LINK},
    },
    response::Response,
};
use rookery_kit::ids::parse_id;
use rookery_proto::{
    notifications::v1::{self as nt, NotificationType as Type},
    timeline::v1 as tl,
    users::v1 as pb,
};
use serde::{Deserialize, Serialize};

use crate::{
    auth::Auth,
    error::{ApiError, ApiResult},
    input::{Params, opt_string_list, string_list},
    mastodon::{
        ACCOUNT_JSON_BYTES, Account, IdStr, iso_time, json_response,
        media::MediaRefs,
        status::{self, Ctx, STATUS_JSON_BYTES, Status},
    },
    pagination::{PageParams, limit},
    state::AppState,
};

/// Default and largest page (Mastodon's: notifications in v1, groups in v2).
const PAGE_DEFAULT: u32 = 40;
const PAGE_MAX: u32 = 80;

/// The API name of a type.
fn type_name(t: Type) -> &'static str {
    match t {
        Type::Mention => "mention",
        Type::Status => "status",
        Type::Reblog => "reblog",
        Type::Follow => "follow",
        Type::FollowRequest => "follow_request",
        Type::Favourite => "favourite",
        Type::Update => "update",
        Type::Quote => "quote",
        Type::Unspecified => "unknown",
    }
}

/// The type of an API name; None for types this server never makes (`poll`,
/// `admin.sign_up`, ...), which clients may still name.
fn type_of(name: &str) -> Option<Type> {
    Some(match name.trim() {
        "mention" => Type::Mention,
        "status" => Type::Status,
        "reblog" => Type::Reblog,
        "follow" => Type::Follow,
        "follow_request" => Type::FollowRequest,
        "favourite" => Type::Favourite,
        "update" => Type::Update,
        "quote" => Type::Quote,
        _ => return None,
    })
}

/// Types that carry a status (the notification is dropped when the reader may no
/// longer see it, as Mastodon does).
fn has_status(t: Type) -> bool {
    !matches!(t, Type::Follow | Type::FollowRequest | Type::Unspecified)
}

#[derive(Deserialize, Default)]
pub struct FilterParams {
    #[serde(default, alias = "types[]", deserialize_with = "opt_string_list")]
    types: Option<Vec<String>>,
    #[serde(default, alias = "exclude_types[]", deserialize_with = "string_list")]
    exclude_types: Vec<String>,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(
        default,
        alias = "grouped_types[]",
        deserialize_with = "opt_string_list"
    )]
    grouped_types: Option<Vec<String>>,
    #[serde(flatten)]
    page: PageParams,
}

impl FilterParams {
    /// The filter asked for; None when it can match nothing (only unknown types asked).
    fn filter(&self) -> Result<Option<nt::Filter>, ApiError> {
        let from = match self.account_id.as_deref().map(str::trim) {
            None | Some("") => None,
            // An unknown account has sent nothing.
            Some(id) => Some(parse_id(id).map_err(|_| ApiError::not_found())?),
        };
        let known = |names: &[String]| -> Vec<i32> {
            names
                .iter()
                .filter_map(|n| type_of(n))
                .map(|t| t as i32)
                .collect()
        };
        let types = match &self.types {
            Some(names) if !names.is_empty() => {
                let types = known(names);
                if types.is_empty() {
                    return Ok(None);
                }
                types
            }
            _ => Vec::new(),
        };
        Ok(Some(nt::Filter {
            types,
            exclude_types: known(&self.exclude_types),
            from_account_id: from,
        }))
    }

    fn grouped_types(&self) -> Vec<i32> {
        match &self.grouped_types {
            None => Vec::new(),
            Some(names) => {
                let types: Vec<i32> = names
                    .iter()
                    .filter_map(|n| type_of(n))
                    .map(|t| t as i32)
                    .collect();
                // Asked, but none groupable: nothing groups (`Unspecified` groups nothing).
                if types.is_empty() {
                    vec![Type::Unspecified as i32]
                } else {
                    types
                }
            }
        }
    }

    fn page(&self) -> Result<nt::Page, ApiError> {
        let p = self.page.page(PAGE_DEFAULT, PAGE_MAX)?;
        Ok(nt::Page {
            max_id: p.max_id,
            since_id: p.since_id,
            min_id: p.min_id,
            limit: p.limit,
        })
    }
}

/// What a set of notifications references, fetched in one batched call per service.
struct Hydrated {
    page: tl::StatusPage,
    accounts: HashMap<i64, pb::Account>,
    media: MediaRefs,
}

impl Hydrated {
    /// The statuses (as `viewer` sees them) and accounts `notifications` reference.
    async fn load(
        state: &AppState,
        viewer: i64,
        senders: impl IntoIterator<Item = i64>,
        statuses: Vec<i64>,
    ) -> ApiResult<Self> {
        let page = if statuses.is_empty() {
            tl::StatusPage::default()
        } else {
            state
                .timeline()
                .get_statuses(tl::GetStatusesRequest {
                    viewer_id: viewer,
                    ids: statuses,
                })
                .await?
                .into_inner()
        };
        let mut ids: Vec<i64> = senders
            .into_iter()
            .chain(page.authors.iter().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let (accounts, media) = tokio::try_join!(state.accounts(&ids), state.page_media(&page))?;
        Ok(Self {
            page,
            accounts,
            media,
        })
    }
}

/// The `Notification` entity.
#[derive(Serialize)]
struct Notification<'a> {
    id: IdStr,
    r#type: &'static str,
    created_at: String,
    group_key: &'a str,
    account: Account<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status<'a>>,
}

/// Renders `n`; None when its sender or (for types with one) its status is gone.
fn render<'a>(
    n: &'a nt::Notification,
    accounts: &'a HashMap<i64, pb::Account>,
    ctx: &Ctx<'a>,
    base_url: &'a str,
) -> Option<Notification<'a>> {
    let kind = Type::try_from(n.r#type).unwrap_or(Type::Unspecified);
    let account = Account::new(accounts.get(&n.from_account_id)?, base_url);
    let status = match n.status_id {
        Some(id) if has_status(kind) => Some(status::status(ctx, id)?),
        _ => None,
    };
    Some(Notification {
        id: IdStr(n.id),
        r#type: type_name(kind),
        created_at: iso_time(n.created_at_ms),
        group_key: &n.group_key,
        account,
        status,
    })
}

/// Renders a list of notifications with one batched hydration.
async fn render_list(
    state: &AppState,
    viewer: i64,
    notifications: &[nt::Notification],
) -> ApiResult<Response> {
    let statuses: Vec<i64> = notifications.iter().filter_map(|n| n.status_id).collect();
    let hydrated = Hydrated::load(
        state,
        viewer,
        notifications.iter().map(|n| n.from_account_id),
        statuses,
    )
    .await?;
    let base_url = state.config.instance.base_url.as_str();
    let ctx = Ctx {
        page: &hydrated.page,
        accounts: &hydrated.accounts,
        media: &hydrated.media,
        base_url,
    };
    let entities: Vec<Notification<'_>> = notifications
        .iter()
        .filter_map(|n| render(n, &hydrated.accounts, &ctx, base_url))
        .collect();
    let hint = entities.len() * (STATUS_JSON_BYTES + ACCOUNT_JSON_BYTES) + 2;
    Ok(json_response(&entities, hint))
}

/// The reader, page and filter of a list (filter None: it can match nothing).
fn list_request(auth: &Auth, p: &FilterParams) -> ApiResult<(i64, nt::Page, Option<nt::Filter>)> {
    auth.require(&["read:notifications"])?;
    Ok((auth.account()?.0, p.page()?, p.filter()?))
}

/// The `Link` header of a page whose cursors `ids` run newest first: `next` when the
/// page is full, `prev` when it is not empty.
fn add_link(
    response: &mut Response,
    state: &AppState,
    p: &FilterParams,
    uri: &Uri,
    limit: u32,
    ids: &[i64],
) {
    let newest = ids.first().copied();
    let oldest = ids.last().copied().filter(|_| ids.len() >= limit as usize);
    let base_url = &state.config.instance.base_url;
    if let Some(link) = p.page.link_cursors(base_url, uri, limit, oldest, newest) {
        response.headers_mut().insert(LINK, link);
    }
}

/// `GET /api/v1/notifications`.
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    uri: Uri,
    Params(p): Params<FilterParams>,
) -> ApiResult<Response> {
    let (me, page, filter) = list_request(&auth, &p)?;
    let limit = page.limit;
    let Some(filter) = filter else {
        return Ok(json_response(&[(); 0], 2));
    };
    let res = state
        .notifications()
        .list(nt::ListRequest {
            account_id: me,
            filter: Some(filter),
            page: Some(page),
        })
        .await?
        .into_inner();
    let mut response = render_list(&state, me, &res.notifications).await?;
    let ids: Vec<i64> = res.notifications.iter().map(|n| n.id).collect();
    add_link(&mut response, &state, &p, &uri, limit, &ids);
    Ok(response)
}

fn raw_json(body: Vec<u8>) -> Response {
    use axum::response::IntoResponse;
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

fn notification_id(id: &str) -> Result<i64, ApiError> {
    parse_id(id).map_err(|_| ApiError::not_found())
}

/// `GET /api/v1/notifications/:id`.
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    auth.require(&["read:notifications"])?;
    let me = auth.account()?.0;
    let body = render_notification(&state, me, notification_id(&id)?)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(raw_json(body.into_bytes()))
}

/// The `Notification` entity of notification `id` of `account`, serialised (also what
/// the streaming API sends); `None` when it no longer exists or no longer renders.
pub async fn render_notification(
    state: &AppState,
    account: i64,
    id: i64,
) -> ApiResult<Option<String>> {
    let n = match state
        .notifications()
        .get(nt::GetRequest {
            account_id: account,
            id,
        })
        .await
    {
        Ok(n) => n.into_inner(),
        Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
        Err(s) => return Err(s.into()),
    };
    let hydrated = Hydrated::load(
        state,
        account,
        [n.from_account_id],
        n.status_id.into_iter().collect(),
    )
    .await?;
    let base_url = state.config.instance.base_url.as_str();
    let ctx = Ctx {
        page: &hydrated.page,
        accounts: &hydrated.accounts,
        media: &hydrated.media,
        base_url,
    };
    Ok(render(&n, &hydrated.accounts, &ctx, base_url)
        .and_then(|entity| serde_json::to_string(&entity).ok()))
}

/// `POST /api/v1/notifications/:id/dismiss`.
pub async fn dismiss(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    auth.require(&["write:notifications"])?;
    let me = auth.account()?.0;
    state
        .notifications()
        .dismiss(nt::GetRequest {
            account_id: me,
            id: notification_id(&id)?,
        })
        .await?;
    Ok(json_response(&serde_json::json!({}), 2))
}

/// `POST /api/v1/notifications/clear`.
pub async fn clear(State(state): State<AppState>, auth: Auth) -> ApiResult<Response> {
    auth.require(&["write:notifications"])?;
    let me = auth.account()?.0;
    state
        .notifications()
        .clear(nt::AccountRequest { account_id: me })
        .await?;
    Ok(json_response(&serde_json::json!({}), 2))
}

#[derive(Serialize)]
struct Count {
    count: u32,
}

/// `GET /api/v1/notifications/unread_count` and `/api/v2/...` (groups).
async fn unread_count(
    state: &AppState,
    auth: &Auth,
    p: &FilterParams,
    grouped: bool,
) -> ApiResult<Response> {
    auth.require(&["read:notifications"])?;
    let me = auth.account()?.0;
    // Validated before the early answer below (found by schemathesis: a malformed limit
    // passed when every asked type was unknown).
    let limit = limit(p.page.raw_limit(), 100, 1000)?;
    let Some(filter) = p.filter()? else {
        return Ok(json_response(&Count { count: 0 }, 16));
    };
    let res = state
        .notifications()
        .unread_count(nt::UnreadCountRequest {
            account_id: me,
            filter: Some(filter),
            limit,
            grouped,
            grouped_types: p.grouped_types(),
        })
        .await?
        .into_inner();
    Ok(json_response(&Count { count: res.count }, 16))
}

pub async fn unread_count_v1(
    State(state): State<AppState>,
    auth: Auth,
    Params(p): Params<FilterParams>,
) -> ApiResult<Response> {
    unread_count(&state, &auth, &p, false).await
}

pub async fn unread_count_v2(
    State(state): State<AppState>,
    auth: Auth,
    Params(p): Params<FilterParams>,
) -> ApiResult<Response> {
    unread_count(&state, &auth, &p, true).await
}

/// A `NotificationGroup` entity.
#[derive(Serialize)]
struct Group<'a> {
    group_key: &'a str,
    notifications_count: i64,
    r#type: &'static str,
    most_recent_notification_id: i64,
    page_min_id: IdStr,
    page_max_id: IdStr,
    latest_page_notification_at: String,
    sample_account_ids: Vec<IdStr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_id: Option<IdStr>,
}

/// `GroupedNotificationsResults`.
#[derive(Serialize)]
struct Grouped<'a> {
    accounts: Vec<Account<'a>>,
    statuses: Vec<Status<'a>>,
    notification_groups: Vec<Group<'a>>,
}

/// Renders groups with their accounts and statuses, each once.
async fn render_groups(state: &AppState, viewer: i64, groups: &[nt::Group]) -> ApiResult<Response> {
    let mut statuses: Vec<i64> = groups.iter().filter_map(|g| g.status_id).collect();
    statuses.sort_unstable();
    statuses.dedup();
    let senders: Vec<i64> = groups
        .iter()
        .flat_map(|g| g.sample_account_ids.iter().copied())
        .collect();
    let hydrated = Hydrated::load(state, viewer, senders, statuses).await?;
    let base_url = state.config.instance.base_url.as_str();
    let ctx = Ctx {
        page: &hydrated.page,
        accounts: &hydrated.accounts,
        media: &hydrated.media,
        base_url,
    };
    let mut shown_statuses = HashSet::new();
    let mut shown_accounts = HashSet::new();
    let mut out = Grouped {
        accounts: Vec::new(),
        statuses: Vec::new(),
        notification_groups: Vec::with_capacity(groups.len()),
    };
    for g in groups {
        let kind = Type::try_from(g.r#type).unwrap_or(Type::Unspecified);
        let status = match g.status_id {
            Some(id) if has_status(kind) => match status::status(&ctx, id) {
                Some(s) => Some((id, s)),
                // The reader may no longer see it: the group goes, as in v1.
                None => continue,
            },
            _ => None,
        };
        let samples: Vec<i64> = g
            .sample_account_ids
            .iter()
            .copied()
            .filter(|a| hydrated.accounts.contains_key(a))
            .collect();
        if samples.is_empty() {
            continue;
        }
        if let Some((id, s)) = status
            && shown_statuses.insert(id)
        {
            out.statuses.push(s);
        }
        for a in &samples {
            if shown_accounts.insert(*a)
                && let Some(account) = hydrated.accounts.get(a)
            {
                out.accounts.push(Account::new(account, base_url));
            }
        }
        out.notification_groups.push(Group {
            group_key: &g.group_key,
            notifications_count: g.notifications_count,
            r#type: type_name(kind),
            most_recent_notification_id: g.most_recent_notification_id,
            page_min_id: IdStr(g.page_min_id),
            page_max_id: IdStr(g.page_max_id),
            latest_page_notification_at: iso_time(g.latest_page_notification_at_ms),
            sample_account_ids: samples.into_iter().map(IdStr).collect(),
            status_id: g.status_id.filter(|_| has_status(kind)).map(IdStr),
        });
    }
    let hint =
        out.statuses.len() * STATUS_JSON_BYTES + out.accounts.len() * ACCOUNT_JSON_BYTES + 512;
    Ok(json_response(&out, hint))
}

/// `GET /api/v2/notifications`: grouped notifications.
pub async fn grouped(
    State(state): State<AppState>,
    auth: Auth,
    uri: Uri,
    Params(p): Params<FilterParams>,
) -> ApiResult<Response> {
    let (me, page, filter) = list_request(&auth, &p)?;
    let limit = page.limit;
    let Some(filter) = filter else {
        let empty = Grouped {
            accounts: Vec::new(),
            statuses: Vec::new(),
            notification_groups: Vec::new(),
        };
        return Ok(json_response(&empty, 64));
    };
    let res = state
        .notifications()
        .grouped(nt::GroupedRequest {
            account_id: me,
            filter: Some(filter),
            page: Some(page),
            grouped_types: p.grouped_types(),
        })
        .await?
        .into_inner();
    let mut response = render_groups(&state, me, &res.groups).await?;
    let ids: Vec<i64> = res
        .groups
        .iter()
        .map(|n| n.most_recent_notification_id)
        .collect();
    add_link(&mut response, &state, &p, &uri, limit, &ids);
    Ok(response)
}

/// `GET /api/v2/notifications/:group_key`.
pub async fn group(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
) -> ApiResult<Response> {
    auth.require(&["read:notifications"])?;
    let me = auth.account()?.0;
    let g = state
        .notifications()
        .get_group(nt::GroupRequest {
            account_id: me,
            group_key: key,
        })
        .await?
        .into_inner();
    render_groups(&state, me, &[g]).await
}

/// `POST /api/v2/notifications/:group_key/dismiss`.
pub async fn dismiss_group(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
) -> ApiResult<Response> {
    auth.require(&["write:notifications"])?;
    let me = auth.account()?.0;
    state
        .notifications()
        .dismiss_group(nt::GroupRequest {
            account_id: me,
            group_key: key,
        })
        .await?;
    Ok(json_response(&serde_json::json!({}), 2))
}

/// `GET /api/v2/notifications/:group_key/accounts`.
pub async fn group_accounts(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
) -> ApiResult<Response> {
    auth.require(&["read:notifications"])?;
    let me = auth.account()?.0;
    let ids = state
        .notifications()
        .group_accounts(nt::GroupRequest {
            account_id: me,
            group_key: key,
        })
        .await?
        .into_inner()
        .account_ids;
    let accounts = state.accounts(&ids).await?;
    let base_url = state.config.instance.base_url.as_str();
    let body: Vec<Account<'_>> = ids
        .iter()
        .filter_map(|id| accounts.get(id))
        .map(|a| Account::new(a, base_url))
        .collect();
    Ok(json_response(&body, body.len() * ACCOUNT_JSON_BYTES + 2))
}

#[derive(Deserialize)]
pub struct MarkersQuery {
    #[serde(default, alias = "timeline[]", deserialize_with = "string_list")]
    timeline: Vec<String>,
}

/// A marker's position as clients send it: a string id (or a JSON number).
#[derive(Deserialize)]
#[serde(untagged)]
enum LastRead {
    Text(String),
    Number(i64),
}

#[derive(Deserialize)]
struct MarkerParam {
    last_read_id: Option<LastRead>,
}

/// `POST /api/v1/markers`: JSON (`{"home": {"last_read_id": "1"}}`) or form
/// (`home[last_read_id]=1`).
#[derive(Deserialize)]
pub struct MarkersBody {
    #[serde(default)]
    home: Option<MarkerParam>,
    #[serde(default)]
    notifications: Option<MarkerParam>,
    #[serde(default, rename = "home[last_read_id]")]
    home_form: Option<String>,
    #[serde(default, rename = "notifications[last_read_id]")]
    notifications_form: Option<String>,
}

/// The `Marker` entity.
#[derive(Serialize)]
struct Marker {
    last_read_id: IdStr,
    version: i64,
    updated_at: String,
}

fn markers_json(markers: &[nt::Marker]) -> Response {
    let body: HashMap<&str, Marker> = markers
        .iter()
        .map(|m| {
            (
                m.timeline.as_str(),
                Marker {
                    last_read_id: IdStr(m.last_read_id),
                    version: m.version,
                    updated_at: iso_time(m.updated_at_ms),
                },
            )
        })
        .collect();
    json_response(&body, 256)
}

/// `GET /api/v1/markers?timeline[]=home&timeline[]=notifications`.
pub async fn markers(
    State(state): State<AppState>,
    auth: Auth,
    Params(q): Params<MarkersQuery>,
) -> ApiResult<Response> {
    auth.require(&["read:statuses", "read:notifications"])?;
    let me = auth.account()?.0;
    let res = state
        .notifications()
        .get_markers(nt::GetMarkersRequest {
            account_id: me,
            timelines: q.timeline,
        })
        .await?
        .into_inner();
    Ok(markers_json(&res.markers))
}

/// `POST /api/v1/markers`.
pub async fn set_markers(
    State(state): State<AppState>,
    auth: Auth,
    Params(body): Params<MarkersBody>,
) -> ApiResult<Response> {
    auth.require(&["write:statuses"])?;
    let me = auth.account()?.0;
    let position = |timeline: &str,
                    json: Option<MarkerParam>,
                    form: Option<String>|
     -> Result<Option<nt::Marker>, ApiError> {
        let raw = match (json.and_then(|m| m.last_read_id), form) {
            (Some(LastRead::Number(n)), _) => Some(n.to_string()),
            (Some(LastRead::Text(s)), _) | (None, Some(s)) => Some(s),
            (None, None) => None,
        };
        let Some(raw) = raw else { return Ok(None) };
        let id = parse_id(raw.trim()).map_err(|_| {
            ApiError::unprocessable(format!("{timeline}[last_read_id] must be an id"))
        })?;
        Ok(Some(nt::Marker {
            timeline: timeline.to_owned(),
            last_read_id: id,
            ..Default::default()
        }))
    };
    let markers: Vec<nt::Marker> = [
        position("home", body.home, body.home_form)?,
        position("notifications", body.notifications, body.notifications_form)?,
    ]
    .into_iter()
    .flatten()
    .collect();
    if markers.is_empty() {
        // Nothing to set: Mastodon answers the current markers (clients rely on it:
        // Mastodon.py documents that an unknown timeline "silently does nothing").
        let res = state
            .notifications()
            .get_markers(nt::GetMarkersRequest {
                account_id: me,
                timelines: vec!["home".to_owned(), "notifications".to_owned()],
            })
            .await?
            .into_inner();
        return Ok(markers_json(&res.markers));
    }
    let res = state
        .notifications()
        .set_markers(nt::SetMarkersRequest {
            account_id: me,
            markers,
        })
        .await?
        .into_inner();
    Ok(markers_json(&res.markers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_name_parses_back() {
        for t in [
            Type::Mention,
            Type::Status,
            Type::Reblog,
            Type::Follow,
            Type::FollowRequest,
            Type::Favourite,
            Type::Update,
            Type::Quote,
        ] {
            assert_eq!(type_of(type_name(t)), Some(t));
        }
        assert_eq!(type_of("admin.sign_up"), None);
    }

    #[test]
    fn only_unknown_types_match_nothing() {
        let p = FilterParams {
            types: Some(vec!["poll".into()]),
            ..FilterParams::default()
        };
        assert!(p.filter().unwrap_or_default().is_none());
        let p = FilterParams {
            types: Some(vec!["poll".into(), "mention".into()]),
            exclude_types: vec!["admin.report".into(), "follow".into()],
            ..FilterParams::default()
        };
        let f = p.filter().ok().flatten().unwrap_or_default();
        assert_eq!(f.types, vec![Type::Mention as i32]);
        assert_eq!(f.exclude_types, vec![Type::Follow as i32]);
    }
}

#[cfg(test)]
mod params_tests {
    use super::*;

    #[test]
    fn paging_parameters_reach_the_flattened_page() {
        let p: FilterParams =
            serde_html_form::from_str("limit=ten&types[]=mention&max_id=5").unwrap_or_default();
        assert!(p.page().is_err(), "{:?}", p.page());
        let p: FilterParams =
            serde_html_form::from_str("limit=2&types[]=mention&max_id=5").unwrap_or_default();
        assert_eq!(p.page().unwrap_or_default().limit, 2);
    }
}
