//! Every SQL statement of the notifications service.
//!
//! Reads of one recipient walk `notifications_by_account` (pages) or
//! `notifications_by_group` (group data) and never touch another recipient's rows.

use chrono::{DateTime, Utc};
use rookery_kit::db::Db;
use sqlx::FromRow;

use crate::Result;

/// The embedded migrations of schema `notifications`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/notifications");

/// Columns in the shape of [`Row`].
macro_rules! columns {
    () => {
        "id, type, account_id, from_account_id, status_id, group_key, created_at"
    };
}

/// One stored notification.
#[derive(Clone, Debug, FromRow)]
pub struct Row {
    pub id: i64,
    #[sqlx(rename = "type")]
    pub kind: i16,
    pub account_id: i64,
    pub from_account_id: i64,
    pub status_id: Option<i64>,
    pub group_key: String,
    pub created_at: DateTime<Utc>,
}

/// A new notification for each of `recipients`.
#[derive(Clone, Debug)]
pub struct NewNotification<'a> {
    pub recipients: &'a [i64],
    pub kind: i16,
    pub from_account_id: i64,
    pub status_id: Option<i64>,
    pub activity_id: i64,
    /// None: `ungrouped-{id}`.
    pub group_key: Option<&'a str>,
    pub event_id: &'a str,
}

/// Which notifications a read covers. Types are stored numbers; `types` None: all.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub types: Option<Vec<i16>>,
    pub exclude_types: Vec<i16>,
    pub from_account_id: Option<i64>,
}

/// A page of one recipient's notifications.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Exclusive upper bound (`max_id`).
    pub below: i64,
    /// Exclusive lower bound (`since_id` or `min_id`).
    pub above: i64,
    /// `min_id`: the page starts right above `above`.
    pub oldest_first: bool,
    pub limit: i64,
}

/// The most recent notification of a group of a page.
#[derive(Clone, Debug, FromRow)]
pub struct Picked {
    pub id: i64,
    #[sqlx(rename = "type")]
    pub kind: i16,
    pub from_account_id: i64,
    pub status_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// The key it is listed under (`ungrouped-{id}` when its type may not group).
    pub gk: String,
}

/// What a page of groups says about one of its groups.
#[derive(Clone, Debug, FromRow)]
pub struct GroupRow {
    pub group_key: String,
    pub most_recent_id: i64,
    pub most_recent_at: DateTime<Utc>,
    pub kind: i16,
    pub status_id: Option<i64>,
    pub sample_account_ids: Vec<i64>,
    pub notifications_count: i64,
    pub min_id: i64,
}

/// A reading position.
#[derive(Clone, Debug, FromRow)]
pub struct MarkerRow {
    pub timeline: String,
    pub last_read_id: i64,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

/// One notification per recipient; a recipient that already has this event's
/// notification keeps it (redelivery) and its row is returned as well, so that a retry
/// after a failed announcement announces it (the no-op update costs a row version, only
/// on redelivery).
const INSERT: &str = concat!(
    "INSERT INTO notifications
         (id, account_id, type, from_account_id, status_id, activity_id, group_key, event_id)
     SELECT n.id, r.account_id, $2, $3, $4, $5, COALESCE($6, 'ungrouped-' || n.id), $7
     FROM unnest($1::bigint[]) AS r (account_id)
     CROSS JOIN LATERAL (SELECT next_id() AS id) n
     ON CONFLICT (account_id, event_id) DO UPDATE SET event_id = EXCLUDED.event_id
     RETURNING ",
    columns!()
);

/// The filter conditions shared by pages ($4 types or NULL, $5 excluded types, $6 sender
/// or NULL).
macro_rules! filtered {
    () => {
        " AND ($4::smallint[] IS NULL OR type = ANY ($4))
          AND NOT (type = ANY ($5::smallint[]))
          AND ($6::bigint IS NULL OR from_account_id = $6)"
    };
}

/// A page, newest first ($1 recipient, $2 below, $3 above, $7 limit).
const PAGE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM notifications WHERE account_id = $1 AND id < $2 AND id > $3",
    filtered!(),
    " ORDER BY id DESC LIMIT $7"
);

/// A page right above `$3`, oldest first (`min_id`).
const PAGE_UP: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM notifications WHERE account_id = $1 AND id < $2 AND id > $3",
    filtered!(),
    " ORDER BY id ASC LIMIT $7"
);

/// The key a notification groups under when the types `$8` may group.
macro_rules! listed_key {
    () => {
        "CASE WHEN type = ANY ($8::smallint[]) THEN group_key ELSE 'ungrouped-' || id END"
    };
}

/// The most recent notification of each of up to `$7` groups, from a recursive walk
/// down (`DESC`, below `$2`) or up (`ASC`, above `$3`) `notifications_by_account` that
/// skips groups already picked, so a group with thousands of notifications costs one
/// probe, not a page of its own (as Mastodon's `paginate_groups`). `$next` is the step's
/// bound on the id, past the previous pick.
macro_rules! pick_groups {
    ($order:literal, $next:literal) => {
        concat!(
            "WITH RECURSIVE pick AS (
                 (SELECT id, type, from_account_id, status_id, created_at, ",
            listed_key!(),
            " AS gk, 1 AS depth, ARRAY[",
            listed_key!(),
            "] AS seen
                  FROM notifications WHERE account_id = $1 AND id < $2 AND id > $3",
            filtered!(),
            " ORDER BY id ",
            $order,
            " LIMIT 1)
                 UNION ALL
                 SELECT n.id, n.type, n.from_account_id, n.status_id, n.created_at, n.gk,
                        p.depth + 1, p.seen || n.gk
                 FROM pick p CROSS JOIN LATERAL (
                     SELECT * FROM (
                         SELECT id, type, from_account_id, status_id, created_at, ",
            listed_key!(),
            " AS gk FROM notifications WHERE account_id = $1 AND ",
            $next,
            filtered!(),
            " ORDER BY id ",
            $order,
            ") c
                     WHERE gk <> ALL (p.seen) LIMIT 1) n
                 WHERE p.depth < $7
             )
             SELECT id, type, from_account_id, status_id, created_at, gk FROM pick ORDER BY id ",
            $order
        )
    };
}

/// Groups of a page, newest first.
const PICK_GROUPS: &str = pick_groups!("DESC", "id < p.id AND id > $3");

/// Groups of a page right above `$3` (`min_id`), oldest first.
const PICK_GROUPS_UP: &str = pick_groups!("ASC", "id > p.id AND id < $2");

/// For each stored group key `$2` of recipient `$1`, as of a page spanning ids `$3` to
/// `$4`: its most recent notification up to `$4`, that one's type and status, up to `$5`
/// senders newest first, how many notifications it has up to `$4`, and its oldest id from
/// `$3` (Mastodon's `load_groups_data`). Probes of `notifications_by_group` per key.
const GROUP_DATA: &str = "
    SELECT g.key AS group_key, latest.id AS most_recent_id, latest.created_at AS most_recent_at,
           latest.type AS kind, latest.status_id,
           ARRAY(SELECT from_account_id FROM notifications
                 WHERE account_id = $1 AND group_key = g.key AND id <= $4
                 ORDER BY id DESC LIMIT $5) AS sample_account_ids,
           (SELECT count(*) FROM notifications
            WHERE account_id = $1 AND group_key = g.key AND id <= $4) AS notifications_count,
           COALESCE((SELECT id FROM notifications
                     WHERE account_id = $1 AND group_key = g.key AND id >= $3
                     ORDER BY id ASC LIMIT 1), latest.id) AS min_id
    FROM unnest($2::text[]) AS g (key)
    CROSS JOIN LATERAL (
        SELECT id, created_at, type, status_id FROM notifications
        WHERE account_id = $1 AND group_key = g.key AND id <= $4
        ORDER BY id DESC LIMIT 1) latest";

const GET: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM notifications WHERE id = $2 AND account_id = $1"
);

const DISMISS: &str = "DELETE FROM notifications WHERE id = $2 AND account_id = $1";

const CLEAR: &str = "DELETE FROM notifications WHERE account_id = $1";

const DISMISS_GROUP: &str = "DELETE FROM notifications WHERE account_id = $1 AND group_key = $2";

/// Senders of a group, newest first.
const GROUP_ACCOUNTS: &str = "SELECT from_account_id FROM notifications
     WHERE account_id = $1 AND group_key = $2 ORDER BY id DESC LIMIT $3";

/// Undo: the notifications of one favourite, follow or request ($1 type, $2 activity).
const DELETE_ACTIVITY: &str = "DELETE FROM notifications WHERE activity_id = $2 AND type = $1
     RETURNING account_id";

/// A deleted status takes every notification about it (and, for a reblog, the reblog's).
const DELETE_STATUS: &str = "DELETE FROM notifications WHERE id = ANY (ARRAY(
         SELECT id FROM notifications WHERE status_id = $1
         UNION SELECT id FROM notifications WHERE activity_id = $1))
     RETURNING account_id";

/// A block clears what the blocked account caused.
const DELETE_FROM: &str =
    "DELETE FROM notifications WHERE account_id = $1 AND from_account_id = $2";

/// The newest `$2` notifications of a recipient, for its unread-count set.
const RECENT: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM notifications WHERE account_id = $1 ORDER BY id DESC LIMIT $2"
);

const MARKERS: &str = "SELECT timeline, last_read_id, version, updated_at FROM markers
     WHERE account_id = $1 AND timeline = ANY ($2)";

/// Sets a marker; every change counts a version (clients use it to detect conflicts).
const SET_MARKER: &str = "INSERT INTO markers (account_id, timeline, last_read_id)
     VALUES ($1, $2, $3)
     ON CONFLICT (account_id, timeline) DO UPDATE
         SET last_read_id = EXCLUDED.last_read_id, version = markers.version + 1,
             updated_at = now()
     RETURNING timeline, last_read_id, version, updated_at";

/// The service's SQL.
#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub async fn ping(&self) -> Result<()> {
        Ok(self.db.ping().await?)
    }

    /// Creates the notifications of `n` (exactly once per recipient and event); returns
    /// them, created now or before.
    pub async fn insert(&self, n: &NewNotification<'_>) -> Result<Vec<Row>> {
        if n.recipients.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(INSERT)
            .bind(n.recipients)
            .bind(n.kind)
            .bind(n.from_account_id)
            .bind(n.status_id)
            .bind(n.activity_id)
            .bind(n.group_key)
            .bind(n.event_id)
            .fetch_all(self.db.primary())
            .await?)
    }

    /// A page of `account`'s notifications, newest first.
    pub async fn page(&self, account: i64, filter: &Filter, b: &Bounds) -> Result<Vec<Row>> {
        let sql = if b.oldest_first { PAGE_UP } else { PAGE };
        let mut rows: Vec<Row> = sqlx::query_as(sql)
            .bind(account)
            .bind(b.below)
            .bind(b.above)
            .bind(filter.types.as_deref())
            .bind(&filter.exclude_types)
            .bind(filter.from_account_id)
            .bind(b.limit)
            .fetch_all(self.db.replica())
            .await?;
        if b.oldest_first {
            rows.reverse();
        }
        Ok(rows)
    }

    /// The most recent notification of each group of a page with the key it is listed
    /// under, newest first.
    pub async fn pick_groups(
        &self,
        account: i64,
        filter: &Filter,
        grouped: &[i16],
        b: &Bounds,
    ) -> Result<Vec<Picked>> {
        let sql = if b.oldest_first {
            PICK_GROUPS_UP
        } else {
            PICK_GROUPS
        };
        let mut rows: Vec<Picked> = sqlx::query_as(sql)
            .bind(account)
            .bind(b.below)
            .bind(b.above)
            .bind(filter.types.as_deref())
            .bind(&filter.exclude_types)
            .bind(filter.from_account_id)
            .bind(b.limit)
            .bind(grouped)
            .fetch_all(self.db.replica())
            .await?;
        if b.oldest_first {
            rows.reverse();
        }
        Ok(rows)
    }

    /// Data of stored groups `keys` as of a page spanning `min..=max`.
    pub async fn group_data(
        &self,
        account: i64,
        keys: &[String],
        min: i64,
        max: i64,
        samples: i64,
    ) -> Result<Vec<GroupRow>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(GROUP_DATA)
            .bind(account)
            .bind(keys)
            .bind(min)
            .bind(max)
            .bind(samples)
            .fetch_all(self.db.replica())
            .await?)
    }

    pub async fn get(&self, account: i64, id: i64) -> Result<Option<Row>> {
        Ok(sqlx::query_as(GET)
            .bind(account)
            .bind(id)
            .fetch_optional(self.db.replica())
            .await?)
    }

    /// Reads one notification from the primary (just created, not yet on a replica).
    pub async fn get_fresh(&self, account: i64, id: i64) -> Result<Option<Row>> {
        Ok(sqlx::query_as(GET)
            .bind(account)
            .bind(id)
            .fetch_optional(self.db.primary())
            .await?)
    }

    pub async fn dismiss(&self, account: i64, id: i64) -> Result<bool> {
        let done = sqlx::query(DISMISS)
            .bind(account)
            .bind(id)
            .execute(self.db.primary())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn clear(&self, account: i64) -> Result<()> {
        sqlx::query(CLEAR)
            .bind(account)
            .execute(self.db.primary())
            .await?;
        Ok(())
    }

    pub async fn dismiss_group(&self, account: i64, key: &str) -> Result<bool> {
        let done = sqlx::query(DISMISS_GROUP)
            .bind(account)
            .bind(key)
            .execute(self.db.primary())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn group_accounts(&self, account: i64, key: &str, limit: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(GROUP_ACCOUNTS)
            .bind(account)
            .bind(key)
            .bind(limit)
            .fetch_all(self.db.replica())
            .await?)
    }

    /// Deletes the notifications of an undone activity; returns their recipients.
    pub async fn delete_activity(&self, kind: i16, activity: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(DELETE_ACTIVITY)
            .bind(kind)
            .bind(activity)
            .fetch_all(self.db.primary())
            .await?)
    }

    /// Deletes the notifications about a deleted status; returns their recipients.
    pub async fn delete_status(&self, status: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(DELETE_STATUS)
            .bind(status)
            .fetch_all(self.db.primary())
            .await?)
    }

    /// Deletes what `from` caused `account` to be notified of; true when any.
    pub async fn delete_from(&self, account: i64, from: i64) -> Result<bool> {
        let done = sqlx::query(DELETE_FROM)
            .bind(account)
            .bind(from)
            .execute(self.db.primary())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The newest `limit` notifications of `account` (from the primary: the unread set
    /// must not miss what was just written).
    pub async fn recent(&self, account: i64, limit: i64) -> Result<Vec<Row>> {
        Ok(sqlx::query_as(RECENT)
            .bind(account)
            .bind(limit)
            .fetch_all(self.db.primary())
            .await?)
    }

    pub async fn markers(&self, account: i64, timelines: &[String]) -> Result<Vec<MarkerRow>> {
        Ok(sqlx::query_as(MARKERS)
            .bind(account)
            .bind(timelines)
            .fetch_all(self.db.primary())
            .await?)
    }

    pub async fn set_marker(&self, account: i64, timeline: &str, last_read: i64) -> Result<()> {
        sqlx::query(SET_MARKER)
            .bind(account)
            .bind(timeline)
            .bind(last_read)
            .execute(self.db.primary())
            .await?;
        Ok(())
    }
}

/// Every reading statement with sample arguments, for the query-plan test.
pub fn statements_for_plans() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        (
            "page",
            PAGE,
            "(1, 9223372036854775807, 0, NULL::smallint[], '{}'::smallint[], NULL::bigint, 40)",
        ),
        (
            "page, min_id",
            PAGE_UP,
            "(1, 9223372036854775807, 0, NULL::smallint[], '{}'::smallint[], NULL::bigint, 40)",
        ),
        (
            "page, only mentions",
            PAGE,
            "(1, 9223372036854775807, 0, ARRAY[1]::smallint[], '{}'::smallint[], NULL::bigint, 40)",
        ),
        (
            "page, from one account",
            PAGE,
            "(1, 9223372036854775807, 0, NULL::smallint[], '{}'::smallint[], 2::bigint, 40)",
        ),
        (
            "groups",
            PICK_GROUPS,
            "(1, 9223372036854775807, 0, NULL::smallint[], '{}'::smallint[], NULL::bigint, 40, ARRAY[3, 4, 6]::smallint[])",
        ),
        (
            "groups, min_id",
            PICK_GROUPS_UP,
            "(1, 9223372036854775807, 0, NULL::smallint[], '{}'::smallint[], NULL::bigint, 40, ARRAY[3, 4, 6]::smallint[])",
        ),
        (
            "group data",
            GROUP_DATA,
            "(1, ARRAY['follow-1', 'favourite-2-1']::text[], 0, 9223372036854775807, 8)",
        ),
        ("one", GET, "(1, 2)"),
        ("group accounts", GROUP_ACCOUNTS, "(1, 'follow-1', 80)"),
        ("recent", RECENT, "(1, 1000)"),
        ("markers", MARKERS, "(1, ARRAY['home', 'notifications'])"),
        ("delete activity", DELETE_ACTIVITY, "(6::smallint, 2)"),
        ("delete status", DELETE_STATUS, "(2)"),
        ("delete from", DELETE_FROM, "(1, 2)"),
        ("dismiss group", DISMISS_GROUP, "(1, 'follow-1')"),
        ("clear", CLEAR, "(1)"),
    ]
}
