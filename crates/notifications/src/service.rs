//! The rules: which events notify whom, and the reads (pages, groups, unread counts,
//! markers).

use std::{collections::HashMap, sync::Arc};

use futures::{StreamExt, TryStreamExt};
use rookery_kit::{grpc::TracedChannel, redis::Redis, streaming};
use rookery_proto::{
    notifications::v1::{self as pb, NotificationType as Type},
    timeline::v1::{self as tl, timeline_client::TimelineClient},
    users::v1::{self as users, users_client::UsersClient},
};

use crate::{
    Config, Error, Result,
    domain::{self, GROUPABLE, SAMPLE_ACCOUNTS},
    store::{Bounds, Filter, GroupRow, NewNotification, Picked, Row, Store},
    unread::{self, CountFilter, Unread},
};

/// Default and largest page of notifications (Mastodon's).
pub const PAGE_DEFAULT: u32 = 40;
pub const PAGE_MAX: u32 = 80;
/// Default and largest unread count (Mastodon's).
const UNREAD_DEFAULT: u32 = 100;
const UNREAD_MAX: u32 = 1000;
/// Most accounts answered for one group.
const GROUP_ACCOUNTS_MAX: i64 = 80;
/// Filter checks in flight for one multi-recipient event.
const FILTER_CONCURRENCY: usize = 16;
/// Markers there are.
pub const TIMELINES: [&str; 2] = ["home", "notifications"];

/// What one event notifies.
#[derive(Clone, Debug)]
pub struct Notice<'a> {
    pub event_id: &'a str,
    pub kind: Type,
    pub recipients: Vec<i64>,
    pub from: i64,
    pub status_id: Option<i64>,
    pub activity_id: i64,
    pub created_at_ms: i64,
}

/// The parts [`Notifications`] is made of.
pub struct Parts {
    pub store: Store,
    pub redis: Redis,
    pub users: UsersClient<TracedChannel>,
    pub timeline: TimelineClient<TracedChannel>,
    pub config: Arc<Config>,
}

/// The notifications service.
pub struct Notifications {
    store: Store,
    redis: Redis,
    unread: Unread,
    users: UsersClient<TracedChannel>,
    timeline: TimelineClient<TracedChannel>,
}

impl Notifications {
    pub fn new(parts: Parts) -> Self {
        Self {
            unread: Unread::new(parts.redis.clone(), parts.config.unread_ttl),
            store: parts.store,
            redis: parts.redis,
            users: parts.users,
            timeline: parts.timeline,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn users(&self) -> UsersClient<TracedChannel> {
        self.users.clone()
    }

    pub(crate) fn timeline(&self) -> TimelineClient<TracedChannel> {
        self.timeline.clone()
    }

    // ------------------------------------------------------------------ writes

    /// Creates the notifications of one event (exactly once per recipient and event),
    /// counts them unread and announces them on the recipients' streams.
    ///
    /// A recipient never hears of itself, nor of an account it blocks, is blocked by, or
    /// muted with notifications (Mastodon's rules).
    pub async fn notify(&self, n: Notice<'_>) -> Result<usize> {
        let mut recipients = n.recipients;
        recipients.sort_unstable();
        recipients.dedup();
        recipients.retain(|r| *r != n.from && *r > 0);
        let recipients = self.not_excluding(recipients, n.from).await?;
        if recipients.is_empty() {
            return Ok(0);
        }
        let group_key = match (domain::group_prefix(n.kind, n.status_id), &recipients[..]) {
            // Groupable types have one recipient (the author or the followed account).
            (Some(prefix), [recipient]) => {
                Some(self.group_key(*recipient, &prefix, n.created_at_ms).await)
            }
            _ => None,
        };
        let rows = self
            .store
            .insert(&NewNotification {
                recipients: &recipients,
                kind: domain::stored(n.kind),
                from_account_id: n.from,
                status_id: n.status_id,
                activity_id: n.activity_id,
                group_key: group_key.as_deref(),
                event_id: n.event_id,
            })
            .await?;
        // Redis failing here fails the event: it is redelivered, finds its rows, and
        // records and announces them then.
        let entries: Vec<(i64, unread::Entry)> = rows
            .iter()
            .map(|r| {
                (
                    r.account_id,
                    unread::Entry {
                        id: r.id,
                        kind: r.kind,
                        from: r.from_account_id,
                        group_key: r.group_key.clone(),
                    },
                )
            })
            .collect();
        self.unread.add(&entries).await?;
        let messages: Vec<(String, streaming::Message)> = rows
            .iter()
            .map(|r| {
                (
                    streaming::user_channel(&self.redis, r.account_id),
                    streaming::Message {
                        event: streaming::Kind::Notification,
                        id: r.id,
                        account: r.account_id,
                        version_ms: 0,
                    },
                )
            })
            .collect();
        streaming::publish_each(&self.redis, &messages).await?;
        metrics::counter!("notifications_created_total", "type" => n.kind.as_str_name())
            .increment(rows.len() as u64);
        Ok(rows.len())
    }

    /// The recipients that do not block, are not blocked by, and do not mute the
    /// notifications of `from`: one users call per recipient (usually one), a few in
    /// flight at a time.
    async fn not_excluding(&self, recipients: Vec<i64>, from: i64) -> Result<Vec<i64>> {
        let checks = futures::stream::iter(recipients.into_iter().map(|recipient| {
            let mut users = self.users();
            async move {
                let res = users
                    .filter_accounts(users::FilterAccountsRequest {
                        viewer_id: recipient,
                        ids: vec![from],
                    })
                    .await?
                    .into_inner();
                let excluded =
                    res.blocked.contains(&from) || res.muted_notifications.contains(&from);
                Ok::<_, Error>((!excluded).then_some(recipient))
            }
        }))
        .buffered(FILTER_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
        Ok(checks.into_iter().flatten().collect())
    }

    /// The group key of a groupable notification: its prefix and an hour bucket, the
    /// bucket its prefix last used while that group is younger than 12 hours (Mastodon's
    /// rule, kept in Redis). Without Redis, the plain hour bucket.
    async fn group_key(&self, recipient: i64, prefix: &str, created_at_ms: i64) -> String {
        let bucket = domain::hour_bucket(created_at_ms);
        let key = self
            .redis
            .key(&format!("nt:{{{recipient}}}:group:{prefix}"));
        let previous = self
            .redis
            .query::<Option<i64>>(redis::cmd("GET").arg(&key))
            .await;
        let bucket = match previous {
            Ok(previous) => {
                let bucket = domain::join_bucket(bucket, previous);
                let mut set = redis::cmd("SET");
                set.arg(&key)
                    .arg(bucket)
                    .arg("EX")
                    .arg(domain::MAX_GROUP_SPAN_HOURS * 3600);
                if let Err(e) = self.redis.query::<()>(&set).await {
                    tracing::warn!(error = %e, "group bucket not saved");
                }
                bucket
            }
            Err(e) => {
                tracing::warn!(error = %e, "group bucket unknown, using the hour");
                bucket
            }
        };
        format!("{prefix}-{bucket}")
    }

    /// Removes the notifications of an undone favourite, follow or follow request.
    pub async fn undo(&self, kind: Type, activity: i64) -> Result<()> {
        let recipients = self
            .store
            .delete_activity(domain::stored(kind), activity)
            .await?;
        self.unread.forget(&recipients).await
    }

    /// Removes the notifications about a deleted status (or of a deleted reblog).
    pub async fn status_deleted(&self, status: i64) -> Result<()> {
        let recipients = self.store.delete_status(status).await?;
        self.unread.forget(&recipients).await
    }

    /// `account` blocked `from`: what `from` caused goes.
    pub async fn blocked(&self, account: i64, from: i64) -> Result<()> {
        if self.store.delete_from(account, from).await? {
            self.unread.forget(&[account]).await?;
        }
        Ok(())
    }

    /// Every follower of `author` who asked to be notified of its posts.
    pub(crate) async fn notified_followers(&self, author: i64) -> Result<Vec<i64>> {
        let mut stream = self
            .users()
            .follower_ids(users::FollowerIdsRequest {
                account_id: author,
                notify_only: true,
                ..Default::default()
            })
            .await?
            .into_inner();
        let mut ids = Vec::new();
        while let Some(chunk) = stream.next().await {
            ids.extend(chunk?.ids);
        }
        Ok(ids)
    }

    /// Every account that reblogged `status` (of `author`).
    pub(crate) async fn rebloggers(&self, author: i64, status: i64) -> Result<Vec<i64>> {
        let mut ids = Vec::new();
        let mut max_id = None;
        loop {
            let page = self
                .timeline()
                .interactions(tl::InteractionsRequest {
                    viewer_id: author,
                    status_id: status,
                    list: tl::InteractionList::RebloggedBy as i32,
                    page: Some(tl::Page {
                        max_id,
                        limit: 80,
                        ..Default::default()
                    }),
                })
                .await;
            let page = match page {
                Ok(p) => p.into_inner(),
                // Deleted meanwhile: nobody to tell.
                Err(s) if s.code() == tonic::Code::NotFound => return Ok(ids),
                Err(s) => return Err(s.into()),
            };
            let done = page.ids.is_empty() || page.next_max_id.is_none();
            ids.extend(page.ids);
            if done {
                return Ok(ids);
            }
            max_id = page.next_max_id;
        }
    }

    // ------------------------------------------------------------------ reads

    /// A page of notifications, newest first.
    pub async fn list(&self, req: pb::ListRequest) -> Result<pb::ListResponse> {
        let filter = filter_of(req.filter.as_ref())?;
        let bounds = bounds_of(req.page.as_ref(), PAGE_DEFAULT, PAGE_MAX);
        let rows = self.store.page(req.account_id, &filter, &bounds).await?;
        Ok(pb::ListResponse {
            notifications: rows.iter().map(notification).collect(),
        })
    }

    pub async fn get(&self, account: i64, id: i64) -> Result<pb::Notification> {
        let row = match self.store.get(account, id).await? {
            Some(row) => row,
            // Just created (a streaming reader asks at once): the replica may lag.
            None => self
                .store
                .get_fresh(account, id)
                .await?
                .ok_or(Error::NotFound("notification"))?,
        };
        Ok(notification(&row))
    }

    pub async fn dismiss(&self, account: i64, id: i64) -> Result<()> {
        if !self.store.dismiss(account, id).await? {
            return Err(Error::NotFound("notification"));
        }
        self.unread.forget(&[account]).await
    }

    pub async fn clear(&self, account: i64) -> Result<()> {
        self.store.clear(account).await?;
        self.unread.forget(&[account]).await
    }

    /// Unread notifications (or groups) above the `notifications` marker, from Redis
    /// (loaded from Postgres once); from Postgres alone while Redis is unavailable.
    pub async fn unread_count(&self, req: pb::UnreadCountRequest) -> Result<u32> {
        let filter = filter_of(req.filter.as_ref())?;
        let limit = match req.limit {
            0 => UNREAD_DEFAULT,
            n => n.min(UNREAD_MAX),
        };
        let count_filter = CountFilter {
            types: filter.types,
            exclude_types: filter.exclude_types,
            from: filter.from_account_id,
            grouped: req.grouped.then(|| grouped_types(&req.grouped_types)),
            limit: limit as usize,
        };
        let account = req.account_id;
        match self.unread.read(account).await {
            Ok(Some((marker, entries))) => {
                return Ok(unread::count(&entries, marker, &count_filter) as u32);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "unread counts unavailable in Redis, counting in Postgres");
                let (marker, entries) = self.unread_from_store(account).await?;
                return Ok(unread::count(&entries, marker, &count_filter) as u32);
            }
        }
        let (marker, entries) = self.unread_from_store(account).await?;
        if let Err(e) = self.unread.load(account, marker, &entries).await {
            tracing::warn!(error = %e, "unread counts not cached");
        }
        Ok(unread::count(&entries, marker, &count_filter) as u32)
    }

    async fn unread_from_store(&self, account: i64) -> Result<(i64, Vec<unread::Entry>)> {
        let timelines = ["notifications".to_owned()];
        let (markers, rows) = tokio::try_join!(
            self.store.markers(account, &timelines),
            self.store.recent(account, unread::KEPT as i64),
        )?;
        let marker = markers.first().map_or(0, |m| m.last_read_id);
        let entries = rows
            .into_iter()
            .map(|r| unread::Entry {
                id: r.id,
                kind: r.kind,
                from: r.from_account_id,
                group_key: r.group_key,
            })
            .collect();
        Ok((marker, entries))
    }

    /// A page of notification groups: two statements whatever the page holds (the
    /// groups' most recent notifications, then the groups' data).
    pub async fn grouped(&self, req: pb::GroupedRequest) -> Result<pb::GroupedResponse> {
        let filter = filter_of(req.filter.as_ref())?;
        let bounds = bounds_of(req.page.as_ref(), PAGE_DEFAULT, PAGE_MAX);
        let grouped = grouped_types(&req.grouped_types);
        let picked = self
            .store
            .pick_groups(req.account_id, &filter, &grouped, &bounds)
            .await?;
        let (Some(newest), Some(oldest)) = (picked.first(), picked.last()) else {
            return Ok(pb::GroupedResponse::default());
        };
        let (max, min) = (newest.id, oldest.id);
        let keys: Vec<String> = picked
            .iter()
            .filter(|p| !p.gk.starts_with("ungrouped-"))
            .map(|p| p.gk.clone())
            .collect();
        let data: HashMap<String, GroupRow> = self
            .store
            .group_data(req.account_id, &keys, min, max, SAMPLE_ACCOUNTS as i64)
            .await?
            .into_iter()
            .map(|g| (g.group_key.clone(), g))
            .collect();
        let groups = picked
            .iter()
            .map(|p| match data.get(&p.gk) {
                Some(g) => group(g),
                None => single_group(p),
            })
            .collect();
        Ok(pb::GroupedResponse { groups })
    }

    /// One group, whole.
    pub async fn get_group(&self, account: i64, key: &str) -> Result<pb::Group> {
        if let Some(id) = ungrouped_id(key) {
            let n = self.get(account, id).await?;
            return Ok(pb::Group {
                group_key: key.to_owned(),
                r#type: n.r#type,
                notifications_count: 1,
                most_recent_notification_id: n.id,
                page_min_id: n.id,
                page_max_id: n.id,
                latest_page_notification_at_ms: n.created_at_ms,
                sample_account_ids: vec![n.from_account_id],
                status_id: n.status_id,
            });
        }
        let rows = self
            .store
            .group_data(
                account,
                &[key.to_owned()],
                0,
                i64::MAX,
                SAMPLE_ACCOUNTS as i64,
            )
            .await?;
        rows.first()
            .map(group)
            .ok_or(Error::NotFound("notification group"))
    }

    pub async fn dismiss_group(&self, account: i64, key: &str) -> Result<()> {
        let found = match ungrouped_id(key) {
            Some(id) => self.store.dismiss(account, id).await?,
            None => self.store.dismiss_group(account, key).await?,
        };
        if !found {
            return Err(Error::NotFound("notification group"));
        }
        self.unread.forget(&[account]).await
    }

    pub async fn group_accounts(&self, account: i64, key: &str) -> Result<Vec<i64>> {
        let ids = match ungrouped_id(key) {
            Some(id) => vec![self.get(account, id).await?.from_account_id],
            None => {
                self.store
                    .group_accounts(account, key, GROUP_ACCOUNTS_MAX)
                    .await?
            }
        };
        if ids.is_empty() {
            return Err(Error::NotFound("notification group"));
        }
        let mut seen = std::collections::HashSet::new();
        Ok(ids.into_iter().filter(|a| seen.insert(*a)).collect())
    }

    pub async fn markers(&self, account: i64, timelines: &[String]) -> Result<Vec<pb::Marker>> {
        let timelines: Vec<String> = timelines
            .iter()
            .filter(|t| TIMELINES.contains(&t.as_str()))
            .cloned()
            .collect();
        if timelines.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.store.markers(account, &timelines).await?;
        Ok(rows
            .into_iter()
            .map(|m| pb::Marker {
                timeline: m.timeline,
                last_read_id: m.last_read_id,
                version: m.version,
                updated_at_ms: m.updated_at.timestamp_millis(),
            })
            .collect())
    }

    /// Sets markers; answers those it set.
    pub async fn set_markers(
        &self,
        account: i64,
        markers: &[pb::Marker],
    ) -> Result<Vec<pb::Marker>> {
        for m in markers {
            if !TIMELINES.contains(&m.timeline.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "unknown timeline {:?}: use home or notifications",
                    m.timeline
                )));
            }
            if m.last_read_id <= 0 {
                return Err(Error::InvalidArgument(format!(
                    "{}[last_read_id] must be an id",
                    m.timeline
                )));
            }
        }
        for m in markers {
            self.store
                .set_marker(account, &m.timeline, m.last_read_id)
                .await?;
            if m.timeline == "notifications"
                && let Err(e) = self.unread.set_marker(account, m.last_read_id).await
            {
                // A stale cached marker would keep counting what was read: drop it.
                tracing::warn!(error = %e, "cached marker not moved");
                let _ = self.unread.forget(&[account]).await;
            }
        }
        let timelines: Vec<String> = markers.iter().map(|m| m.timeline.clone()).collect();
        self.markers(account, &timelines).await
    }
}

/// The id in an `ungrouped-{id}` key.
fn ungrouped_id(key: &str) -> Option<i64> {
    key.strip_prefix("ungrouped-")?.parse().ok()
}

/// The stored numbers of the types that may group (`grouped_types`, default all).
fn grouped_types(asked: &[i32]) -> Vec<i16> {
    let all = GROUPABLE.iter().map(|t| domain::stored(*t));
    if asked.is_empty() {
        return all.collect();
    }
    all.filter(|t| asked.contains(&i32::from(*t))).collect()
}

fn types_of(raw: &[i32]) -> Result<Vec<i16>> {
    raw.iter()
        .map(|t| match Type::try_from(*t) {
            Ok(Type::Unspecified) | Err(_) => {
                Err(Error::InvalidArgument("unknown notification type".into()))
            }
            Ok(t) => Ok(domain::stored(t)),
        })
        .collect()
}

fn filter_of(f: Option<&pb::Filter>) -> Result<Filter> {
    let Some(f) = f else {
        return Ok(Filter::default());
    };
    Ok(Filter {
        types: (!f.types.is_empty())
            .then(|| types_of(&f.types))
            .transpose()?,
        exclude_types: types_of(&f.exclude_types)?,
        from_account_id: f.from_account_id,
    })
}

fn bounds_of(page: Option<&pb::Page>, default: u32, max: u32) -> Bounds {
    let page = page.cloned().unwrap_or_default();
    let limit = match page.limit {
        0 => default,
        n => n.min(max),
    };
    Bounds {
        below: page.max_id.unwrap_or(i64::MAX),
        above: page.min_id.or(page.since_id).unwrap_or(0),
        oldest_first: page.min_id.is_some(),
        limit: i64::from(limit),
    }
}

fn notification(r: &Row) -> pb::Notification {
    pb::Notification {
        id: r.id,
        r#type: domain::from_stored(r.kind) as i32,
        account_id: r.account_id,
        from_account_id: r.from_account_id,
        status_id: r.status_id,
        group_key: r.group_key.clone(),
        created_at_ms: r.created_at.timestamp_millis(),
    }
}

fn group(g: &GroupRow) -> pb::Group {
    pb::Group {
        group_key: g.group_key.clone(),
        r#type: domain::from_stored(g.kind) as i32,
        notifications_count: g.notifications_count,
        most_recent_notification_id: g.most_recent_id,
        page_min_id: g.min_id,
        page_max_id: g.most_recent_id,
        latest_page_notification_at_ms: g.most_recent_at.timestamp_millis(),
        sample_account_ids: g.sample_account_ids.clone(),
        status_id: g.status_id,
    }
}

fn single_group(p: &Picked) -> pb::Group {
    pb::Group {
        group_key: p.gk.clone(),
        r#type: domain::from_stored(p.kind) as i32,
        notifications_count: 1,
        most_recent_notification_id: p.id,
        page_min_id: p.id,
        page_max_id: p.id,
        latest_page_notification_at_ms: p.created_at.timestamp_millis(),
        sample_account_ids: vec![p.from_account_id],
        status_id: p.status_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_clamped_like_mastodon() {
        let b = bounds_of(None, PAGE_DEFAULT, PAGE_MAX);
        assert_eq!((b.below, b.above, b.limit), (i64::MAX, 0, 40));
        let b = bounds_of(
            Some(&pb::Page {
                min_id: Some(5),
                since_id: Some(3),
                limit: 500,
                ..Default::default()
            }),
            PAGE_DEFAULT,
            PAGE_MAX,
        );
        assert!(b.oldest_first);
        assert_eq!((b.above, b.limit), (5, 80));
    }

    #[test]
    fn grouped_types_default_to_all_groupable_ones() {
        assert_eq!(grouped_types(&[]), vec![6, 3, 4]);
        assert_eq!(
            grouped_types(&[Type::Reblog as i32, Type::Mention as i32]),
            vec![3]
        );
        assert_eq!(ungrouped_id("ungrouped-42"), Some(42));
        assert_eq!(ungrouped_id("favourite-1-2"), None);
    }
}
