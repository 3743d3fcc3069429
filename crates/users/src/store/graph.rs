//! SQL of the social graph: follows, follow requests, blocks, mutes, relationships,
//! account lists, search and fan-out. Which index serves each statement is written in
//! `migrations/users/0002_graph.sql` and checked by `tests/plans.rs`.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor};

use super::Store;
use crate::{Result, domain::AccountId};

/// A follow or a follow request.
#[derive(Debug, FromRow)]
pub struct EdgeRow {
    pub id: i64,
    pub account_id: i64,
    pub target_account_id: i64,
    pub show_reblogs: bool,
    pub notify: bool,
    pub languages: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
}

/// A block.
#[derive(Debug, FromRow)]
pub struct BlockRow {
    pub id: i64,
    pub account_id: i64,
    pub target_account_id: i64,
    pub created_at: DateTime<Utc>,
}

/// A mute.
#[derive(Debug, FromRow)]
pub struct MuteRow {
    pub id: i64,
    pub account_id: i64,
    pub target_account_id: i64,
    pub hide_notifications: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// The relationship from a viewer to one account (Mastodon's `Relationship`).
#[derive(Debug, FromRow)]
pub struct RelationshipRow {
    pub id: i64,
    pub following: bool,
    pub showing_reblogs: bool,
    pub notifying: bool,
    pub languages: Option<Vec<String>>,
    pub followed_by: bool,
    pub blocking: bool,
    pub blocked_by: bool,
    pub muting: bool,
    pub muting_notifications: bool,
    pub muting_expires_at: Option<DateTime<Utc>>,
    pub requested: bool,
    pub requested_by: bool,
}

/// What stands between two accounts before a follow.
#[derive(Debug, FromRow)]
pub struct PairState {
    pub following: bool,
    pub requested: bool,
    /// A block in either direction.
    pub blocked: bool,
}

/// One entry of an account list: the edge id (the cursor) and the other account.
#[derive(Debug, FromRow)]
pub struct EntryRow {
    pub cursor: i64,
    pub account_id: i64,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Which of some accounts a viewer must not see.
#[derive(Debug, FromRow)]
pub struct FilterRow {
    pub id: i64,
    pub blocked: bool,
    pub muted: bool,
    pub muted_notifications: bool,
}

/// Which followers a fan-out chunk lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Followers {
    All,
    /// Those who show the account's reblogs.
    ShowingReblogs,
    /// Those who asked to be notified of its posts (activity does not matter).
    Notified,
}

/// The account lists served by [`Store::list_page`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum List {
    Followers,
    Following,
    FollowRequests,
    Blocks,
    Mutes,
}

/// Keyset bounds of a page: entries with `above < id < below`, newest first unless
/// `oldest_first` (Mastodon's `min_id`: the page right after `above`).
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub below: i64,
    pub above: i64,
    pub oldest_first: bool,
    pub limit: i64,
}

/// Options of a new or updated follow (or follow request); `None` keeps the current
/// value (the default for a new edge).
#[derive(Debug, Default)]
pub struct FollowOptions<'a> {
    pub reblogs: Option<bool>,
    pub notify: Option<bool>,
    /// `Some(&[])` means every language.
    pub languages: Option<&'a [String]>,
}

macro_rules! edge_columns {
    () => {
        "id, account_id, target_account_id, show_reblogs, notify, languages, created_at"
    };
}

macro_rules! upsert_edge {
    ($table:literal) => {
        concat!(
            "INSERT INTO ",
            $table,
            " AS e (account_id, target_account_id, show_reblogs, notify, languages)
             VALUES ($1, $2, COALESCE($3, true), COALESCE($4, false),
                     NULLIF($5::text[], '{}'))
             ON CONFLICT (account_id, target_account_id) DO UPDATE SET
                 show_reblogs = COALESCE($3, e.show_reblogs),
                 notify       = COALESCE($4, e.notify),
                 languages    = CASE WHEN $5::text[] IS NULL THEN e.languages
                                     ELSE NULLIF($5::text[], '{}') END
             RETURNING ",
            edge_columns!(),
            ", (xmax = 0) AS inserted"
        )
    };
}

/// Hidden when the owner blocks the viewer (Mastodon hides an account's network from
/// those it blocks). On the owner's private lists the viewer is the owner, who cannot
/// block itself, so the filter is uniform.
macro_rules! unless_blocking_viewer {
    () => {
        "AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.account_id = $1 AND b.target_account_id = $5)"
    };
}

/// `SELECT` of one page of a list: `$1` owner, `$2` below, `$3` above, `$4` limit,
/// `$5` viewer (lists a blocked viewer must not see come back empty).
macro_rules! page {
    ($table:literal, $owner:literal, $other:literal, $expires:literal, $filter:expr, $order:literal) => {
        concat!(
            "SELECT id AS cursor, ",
            $other,
            " AS account_id, ",
            $expires,
            " AS expires_at FROM ",
            $table,
            " e WHERE ",
            $owner,
            " = $1 AND id < $2 AND id > $3 ",
            unless_blocking_viewer!(),
            " ",
            $filter,
            " ORDER BY id ",
            $order,
            " LIMIT $4"
        )
    };
}

/// On someone else's followers/following, a signed-in viewer does not see the accounts
/// it blocks, is blocked by or mutes (Mastodon's `not_excluded_by_account`); the owner
/// and anonymous viewers see everyone. `$other` is the listed account's column.
macro_rules! not_excluded_for_viewer {
    ($other:literal) => {
        concat!(
            "AND ($5::bigint IS NULL OR $5 = $1 OR NOT (
                EXISTS (SELECT 1 FROM blocks x
                        WHERE x.account_id = $5 AND x.target_account_id = e.",
            $other,
            ")
             OR EXISTS (SELECT 1 FROM blocks x
                        WHERE x.account_id = e.",
            $other,
            " AND x.target_account_id = $5)
             OR EXISTS (SELECT 1 FROM mutes x
                        WHERE x.account_id = $5 AND x.target_account_id = e.",
            $other,
            " AND ",
            active_mute!("x"),
            ")))"
        )
    };
}

macro_rules! active_mute {
    ($alias:literal) => {
        concat!(
            "(",
            $alias,
            ".expires_at IS NULL OR ",
            $alias,
            ".expires_at > now())"
        )
    };
}

/// Every page statement, by list and direction (static strings: one prepared statement
/// each, each served by one index range scan).
fn page_sql(list: List, oldest_first: bool) -> &'static str {
    match (list, oldest_first) {
        (List::Followers, false) => page!(
            "follows",
            "target_account_id",
            "account_id",
            "NULL::timestamptz",
            not_excluded_for_viewer!("account_id"),
            "DESC"
        ),
        (List::Followers, true) => page!(
            "follows",
            "target_account_id",
            "account_id",
            "NULL::timestamptz",
            not_excluded_for_viewer!("account_id"),
            "ASC"
        ),
        (List::Following, false) => page!(
            "follows",
            "account_id",
            "target_account_id",
            "NULL::timestamptz",
            not_excluded_for_viewer!("target_account_id"),
            "DESC"
        ),
        (List::Following, true) => page!(
            "follows",
            "account_id",
            "target_account_id",
            "NULL::timestamptz",
            not_excluded_for_viewer!("target_account_id"),
            "ASC"
        ),
        (List::FollowRequests, false) => page!(
            "follow_requests",
            "target_account_id",
            "account_id",
            "NULL::timestamptz",
            "",
            "DESC"
        ),
        (List::FollowRequests, true) => page!(
            "follow_requests",
            "target_account_id",
            "account_id",
            "NULL::timestamptz",
            "",
            "ASC"
        ),
        (List::Blocks, false) => page!(
            "blocks",
            "account_id",
            "target_account_id",
            "NULL::timestamptz",
            "",
            "DESC"
        ),
        (List::Blocks, true) => page!(
            "blocks",
            "account_id",
            "target_account_id",
            "NULL::timestamptz",
            "",
            "ASC"
        ),
        (List::Mutes, false) => page!(
            "mutes",
            "account_id",
            "target_account_id",
            "expires_at",
            concat!("AND ", active_mute!("e")),
            "DESC"
        ),
        (List::Mutes, true) => page!(
            "mutes",
            "account_id",
            "target_account_id",
            "expires_at",
            concat!("AND ", active_mute!("e")),
            "ASC"
        ),
    }
}

/// `LEFT JOIN LATERAL (SELECT ... LIMIT 1) alias ON true`: a lookup of at most one row
/// per outer row. The `LIMIT` keeps the planner from flattening it into a join it could
/// hash, so even a generic (cached) plan probes the pair index once per account instead
/// of reading every edge of the viewer, which for a popular viewer is a large read.
/// Existence lookups select a constant, not a column: asking for `id` (in no two-column
/// index) makes the planner prefer an index-only scan of a covering index that has only
/// one of the two columns as a key, filtering the viewer's edges one by one.
macro_rules! probe {
    ($alias:literal, $columns:literal, $table:literal, $condition:expr) => {
        concat!(
            " LEFT JOIN LATERAL (SELECT ",
            $columns,
            " FROM ",
            $table,
            " x WHERE ",
            $condition,
            " LIMIT 1) ",
            $alias,
            " ON true"
        )
    };
}

/// Relationships from `$1` to each account of `$2` (unknown ids drop out by the join).
const RELATIONSHIPS: &str = concat!(
    "SELECT a.id,
            f.id IS NOT NULL AS following,
            COALESCE(f.show_reblogs, r.show_reblogs, false) AS showing_reblogs,
            COALESCE(f.notify, r.notify, false) AS notifying,
            COALESCE(f.languages, r.languages) AS languages,
            fb.hit IS NOT NULL AS followed_by,
            bl.hit IS NOT NULL AS blocking,
            bb.hit IS NOT NULL AS blocked_by,
            m.id IS NOT NULL AS muting,
            COALESCE(m.hide_notifications, false) AS muting_notifications,
            m.expires_at AS muting_expires_at,
            r.id IS NOT NULL AS requested,
            rb.hit IS NOT NULL AS requested_by
     FROM accounts a",
    probe!(
        "f",
        "id, show_reblogs, notify, languages",
        "follows",
        "x.account_id = $1 AND x.target_account_id = a.id"
    ),
    probe!(
        "r",
        "id, show_reblogs, notify, languages",
        "follow_requests",
        "x.account_id = $1 AND x.target_account_id = a.id"
    ),
    probe!(
        "m",
        "id, hide_notifications, expires_at",
        "mutes",
        concat!(
            "x.account_id = $1 AND x.target_account_id = a.id AND ",
            active_mute!("x")
        )
    ),
    probe!(
        "fb",
        "1 AS hit",
        "follows",
        "x.account_id = a.id AND x.target_account_id = $1"
    ),
    probe!(
        "bl",
        "1 AS hit",
        "blocks",
        "x.account_id = $1 AND x.target_account_id = a.id"
    ),
    probe!(
        "bb",
        "1 AS hit",
        "blocks",
        "x.account_id = a.id AND x.target_account_id = $1"
    ),
    probe!(
        "rb",
        "1 AS hit",
        "follow_requests",
        "x.account_id = a.id AND x.target_account_id = $1"
    ),
    "
     WHERE a.id = ANY($2)"
);

/// Follow, request and block state from `$1` to `$2`.
const PAIR_STATE: &str = "SELECT EXISTS (SELECT 1 FROM follows
                            WHERE account_id = $1 AND target_account_id = $2) AS following,
                    EXISTS (SELECT 1 FROM follow_requests
                            WHERE account_id = $1 AND target_account_id = $2) AS requested,
                    EXISTS (SELECT 1 FROM blocks
                            WHERE account_id = $1 AND target_account_id = $2)
                    OR EXISTS (SELECT 1 FROM blocks
                               WHERE account_id = $2 AND target_account_id = $1) AS blocked";

/// Deletes the follow `$1 → $2`.
const DELETE_FOLLOW: &str = concat!(
    "DELETE FROM follows WHERE account_id = $1 AND target_account_id = $2 RETURNING ",
    edge_columns!()
);

/// Deletes the edges of `$table` between `$1` and `$2`, both ways.
macro_rules! sever {
    ($table:literal) => {
        concat!(
            "DELETE FROM ",
            $table,
            " WHERE (account_id = $1 AND target_account_id = $2)
                OR (account_id = $2 AND target_account_id = $1)
             RETURNING ",
            edge_columns!()
        )
    };
}
const SEVER_FOLLOWS: &str = sever!("follows");
const SEVER_REQUESTS: &str = sever!("follow_requests");

/// Turns the requests to `$1` from the accounts `$2` into follows.
const ACCEPT_REQUESTS: &str = concat!(
    "WITH r AS (DELETE FROM follow_requests
                WHERE target_account_id = $1 AND account_id = ANY($2)
                RETURNING *),
          f AS (INSERT INTO follows (account_id, target_account_id, show_reblogs, notify, languages)
                SELECT account_id, target_account_id, show_reblogs, notify, languages FROM r
                ON CONFLICT (account_id, target_account_id) DO NOTHING
                RETURNING ",
    edge_columns!(),
    ")
     SELECT f.*, r.id AS request_id
     FROM f JOIN r ON r.account_id = f.account_id AND r.target_account_id = f.target_account_id"
);

/// Locks `$1` (two account ids) in id order.
const LOCK_PAIR: &str =
    "SELECT id, locked FROM accounts WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE";

/// Locks account `$1` and everyone with a pending request to it, in id order. (`= ANY` of
/// one array, not `OR`: an index condition, so only those rows are read.)
const LOCK_REQUESTERS: &str = "SELECT id FROM accounts
     WHERE id = ANY (ARRAY(SELECT account_id FROM follow_requests WHERE target_account_id = $1)
                     || $1::bigint)
     ORDER BY id FOR NO KEY UPDATE";

/// Account search, best match first.
const SEARCH: &str = "SELECT a.id FROM accounts a
             WHERE (lower(a.username) LIKE $1 || '%'
                    OR ($2::text IS NOT NULL
                        AND to_tsvector('simple', a.display_name) @@ to_tsquery('simple', $2)))
               AND ($4::bigint IS NULL OR EXISTS (
                        SELECT 1 FROM follows f
                        WHERE f.account_id = $4 AND f.target_account_id = a.id))
             ORDER BY lower(a.username) = $3 DESC, a.followers_count DESC, a.id
             LIMIT $5 OFFSET $6";

/// A chunk of followers for fan-out, by follow id.
const FOLLOWER_IDS: &str = "SELECT f.id, f.account_id FROM follows f
     WHERE f.target_account_id = $1 AND f.id > $2
     ORDER BY f.id LIMIT $3";

/// As [`FOLLOWER_IDS`], only followers who show `$1`'s reblogs.
const REBLOG_FOLLOWER_IDS: &str = "SELECT f.id, f.account_id FROM follows f
     WHERE f.target_account_id = $1 AND f.id > $2 AND f.show_reblogs
     ORDER BY f.id LIMIT $3";

/// As [`FOLLOWER_IDS`], only followers notified of `$1`'s posts (`follows_notified`).
const NOTIFIED_FOLLOWER_IDS: &str = "SELECT f.id, f.account_id FROM follows f
     WHERE f.target_account_id = $1 AND f.id > $2 AND f.notify
     ORDER BY f.id LIMIT $3";

/// As [`ACTIVE_FOLLOWER_IDS`], only followers who show `$1`'s reblogs.
const ACTIVE_REBLOG_FOLLOWER_IDS: &str = "SELECT f.id, f.account_id FROM follows f
     WHERE f.target_account_id = $1 AND f.id > $2 AND f.show_reblogs
       AND (SELECT c.last_active_at FROM credentials c WHERE c.account_id = f.account_id) >= $3
     ORDER BY f.id LIMIT $4";

/// A chunk of the accounts `$1` follows, by follow id (index-only on `follows_by_account`).
const FOLLOWING_IDS: &str = "SELECT f.id, f.target_account_id FROM follows f
     WHERE f.account_id = $1 AND f.id > $2
     ORDER BY f.id LIMIT $3";

/// A chunk of the followers active since `$3`. The activity check is a scalar subquery,
/// one primary-key probe per follower: an `EXISTS` here may be planned as a hash of every
/// active account on the instance, whatever the follower count.
const ACTIVE_FOLLOWER_IDS: &str = "SELECT f.id, f.account_id FROM follows f
     WHERE f.target_account_id = $1 AND f.id > $2
       AND (SELECT c.last_active_at FROM credentials c WHERE c.account_id = f.account_id) >= $3
     ORDER BY f.id LIMIT $4";

/// Deletes up to `$1` expired mutes. (`= ANY(ARRAY(...))`, not `IN (...)`: an index
/// condition on the primary key, where `IN` gets a hash join over every mute.)
const SWEEP_MUTES: &str = "DELETE FROM mutes WHERE id = ANY (ARRAY(
         SELECT id FROM mutes WHERE expires_at <= now()
         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED))
     RETURNING id, account_id, target_account_id, hide_notifications, expires_at, created_at";

/// Which of `$2` viewer `$1` blocks, is blocked by, or mutes (probes as in
/// [`RELATIONSHIPS`]).
const FILTER: &str = concat!(
    "SELECT t.id, bl.hit IS NOT NULL OR bb.hit IS NOT NULL AS blocked,
            m.id IS NOT NULL AS muted,
            COALESCE(m.hide_notifications, false) AS muted_notifications
     FROM unnest($2::bigint[]) AS t(id)",
    probe!(
        "bl",
        "1 AS hit",
        "blocks",
        "x.account_id = $1 AND x.target_account_id = t.id"
    ),
    probe!(
        "bb",
        "1 AS hit",
        "blocks",
        "x.account_id = t.id AND x.target_account_id = $1"
    ),
    probe!(
        "m",
        "id, hide_notifications",
        "mutes",
        concat!(
            "x.account_id = $1 AND x.target_account_id = t.id AND ",
            active_mute!("x")
        )
    ),
    "
     WHERE bl.hit IS NOT NULL OR bb.hit IS NOT NULL OR m.id IS NOT NULL"
);

/// Every account viewer `$1` blocks, is blocked by, or mutes (active mutes): three index
/// range scans, one per direction and table (`blocks_by_account` and `blocks_by_target`
/// index-only). An account may come back more than once (blocked both ways, or blocked
/// and muted).
const EXCLUSIONS: &str = concat!(
    "SELECT b.target_account_id AS id, true AS blocked, false AS muted,
            false AS muted_notifications
     FROM blocks b WHERE b.account_id = $1
     UNION ALL
     SELECT b.account_id, true, false, false
     FROM blocks b WHERE b.target_account_id = $1
     UNION ALL
     SELECT m.target_account_id, false, true, m.hide_notifications
     FROM mutes m WHERE m.account_id = $1 AND ",
    active_mute!("m")
);

impl Store {
    /// Locks the rows of `a` and `b` in id order (every graph write between two accounts
    /// starts here, so concurrent writes serialise instead of deadlocking) and returns
    /// `(id, locked)` of those that exist.
    pub async fn lock_pair(
        &self,
        conn: &mut PgConnection,
        a: AccountId,
        b: AccountId,
    ) -> Result<Vec<(i64, bool)>> {
        Ok(sqlx::query_as(LOCK_PAIR)
            .bind([a.0, b.0])
            .fetch_all(conn)
            .await?)
    }

    /// Locks `account` and everyone with a pending request to it, in id order (before
    /// accepting them); returns the requesters locked. A request committed while this
    /// waited is not among them (the list is read before the wait): accept only these,
    /// then look again.
    pub async fn lock_requesters(
        &self,
        conn: &mut PgConnection,
        account: AccountId,
    ) -> Result<Vec<i64>> {
        let locked: Vec<i64> = sqlx::query_scalar(LOCK_REQUESTERS)
            .bind(account)
            .fetch_all(conn)
            .await?;
        Ok(locked.into_iter().filter(|id| *id != account.0).collect())
    }

    /// Follow, request and block state between `a` and `b`.
    pub async fn pair_state(
        &self,
        conn: &mut PgConnection,
        a: AccountId,
        b: AccountId,
    ) -> Result<PairState> {
        Ok(sqlx::query_as(PAIR_STATE)
            .bind(a)
            .bind(b)
            .fetch_one(conn)
            .await?)
    }

    /// Creates the follow `a → b` or updates its options; true when it is new.
    pub async fn upsert_follow(
        &self,
        conn: &mut PgConnection,
        a: AccountId,
        b: AccountId,
        options: &FollowOptions<'_>,
    ) -> Result<(EdgeRow, bool)> {
        upsert_edge(conn, upsert_edge!("follows"), a, b, options).await
    }

    /// Creates the follow request `a → b` or updates its options; true when it is new.
    pub async fn upsert_follow_request(
        &self,
        conn: &mut PgConnection,
        a: AccountId,
        b: AccountId,
        options: &FollowOptions<'_>,
    ) -> Result<(EdgeRow, bool)> {
        upsert_edge(conn, upsert_edge!("follow_requests"), a, b, options).await
    }

    /// Deletes the follow `a → b`.
    pub async fn delete_follow(
        &self,
        conn: &mut PgConnection,
        a: AccountId,
        b: AccountId,
    ) -> Result<Option<EdgeRow>> {
        Ok(sqlx::query_as(DELETE_FOLLOW)
            .bind(a)
            .bind(b)
            .fetch_optional(conn)
            .await?)
    }

    /// Deletes the follow request `a → b`.
    pub async fn delete_follow_request(
        &self,
        conn: &mut PgConnection,
        a: AccountId,
        b: AccountId,
    ) -> Result<Option<EdgeRow>> {
        Ok(sqlx::query_as(concat!(
            "DELETE FROM follow_requests WHERE account_id = $1 AND target_account_id = $2
             RETURNING ",
            edge_columns!()
        ))
        .bind(a)
        .bind(b)
        .fetch_optional(conn)
        .await?)
    }

    /// Turns the follow requests to `target` from `requesters` into follows; returns the
    /// follows created with the ids of their requests.
    pub async fn accept_requests(
        &self,
        conn: &mut PgConnection,
        target: AccountId,
        requesters: &[i64],
    ) -> Result<Vec<(EdgeRow, i64)>> {
        #[derive(FromRow)]
        struct Accepted {
            #[sqlx(flatten)]
            follow: EdgeRow,
            request_id: i64,
        }
        let rows: Vec<Accepted> = sqlx::query_as(ACCEPT_REQUESTS)
            .bind(target)
            .bind(requesters)
            .fetch_all(conn)
            .await?;
        Ok(rows.into_iter().map(|r| (r.follow, r.request_id)).collect())
    }

    /// Deletes follows and follow requests between `a` and `b` in both directions;
    /// returns (follows, requests) deleted.
    pub async fn sever(
        &self,
        conn: &mut PgConnection,
        a: AccountId,
        b: AccountId,
    ) -> Result<(Vec<EdgeRow>, Vec<EdgeRow>)> {
        let follows = sqlx::query_as(SEVER_FOLLOWS)
            .bind(a)
            .bind(b)
            .fetch_all(&mut *conn)
            .await?;
        let requests = sqlx::query_as(SEVER_REQUESTS)
            .bind(a)
            .bind(b)
            .fetch_all(conn)
            .await?;
        Ok((follows, requests))
    }

    /// Creates the block `a → b`; `None` when it already existed.
    pub async fn insert_block(
        &self,
        conn: &mut PgConnection,
        a: AccountId,
        b: AccountId,
    ) -> Result<Option<BlockRow>> {
        Ok(sqlx::query_as(
            "INSERT INTO blocks (account_id, target_account_id) VALUES ($1, $2)
             ON CONFLICT (account_id, target_account_id) DO NOTHING
             RETURNING id, account_id, target_account_id, created_at",
        )
        .bind(a)
        .bind(b)
        .fetch_optional(conn)
        .await?)
    }

    /// Deletes the block `a → b`.
    pub async fn delete_block(
        &self,
        conn: &mut PgConnection,
        a: AccountId,
        b: AccountId,
    ) -> Result<Option<BlockRow>> {
        Ok(sqlx::query_as(
            "DELETE FROM blocks WHERE account_id = $1 AND target_account_id = $2
             RETURNING id, account_id, target_account_id, created_at",
        )
        .bind(a)
        .bind(b)
        .fetch_optional(conn)
        .await?)
    }

    /// Creates or replaces the mute `a → b`.
    pub async fn upsert_mute(
        &self,
        conn: &mut PgConnection,
        a: AccountId,
        b: AccountId,
        hide_notifications: bool,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<MuteRow> {
        Ok(sqlx::query_as(
            "INSERT INTO mutes (account_id, target_account_id, hide_notifications, expires_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (account_id, target_account_id) DO UPDATE SET
                 hide_notifications = EXCLUDED.hide_notifications,
                 expires_at = EXCLUDED.expires_at,
                 -- Muting again after a mute ran out is a new mute (new place in the list).
                 id = CASE WHEN mutes.expires_at <= now() THEN next_id() ELSE mutes.id END,
                 created_at = CASE WHEN mutes.expires_at <= now() THEN now()
                                   ELSE mutes.created_at END
             RETURNING id, account_id, target_account_id, hide_notifications, expires_at,
                       created_at",
        )
        .bind(a)
        .bind(b)
        .bind(hide_notifications)
        .bind(expires_at)
        .fetch_one(conn)
        .await?)
    }

    /// Deletes up to `limit` mutes that ran out, oldest expiry first. Rows a concurrent
    /// re-mute holds are skipped (that write replaces them), and so are those another
    /// replica's sweeper is deleting.
    pub async fn sweep_expired_mutes(
        &self,
        conn: &mut PgConnection,
        limit: i64,
    ) -> Result<Vec<MuteRow>> {
        Ok(sqlx::query_as(SWEEP_MUTES)
            .bind(limit)
            .fetch_all(conn)
            .await?)
    }

    /// Deletes the mute `a → b` (an expired one too, but reports only an active one).
    pub async fn delete_mute(
        &self,
        conn: &mut PgConnection,
        a: AccountId,
        b: AccountId,
    ) -> Result<Option<MuteRow>> {
        let deleted: Option<MuteRow> = sqlx::query_as(
            "DELETE FROM mutes WHERE account_id = $1 AND target_account_id = $2
             RETURNING id, account_id, target_account_id, hide_notifications, expires_at,
                       created_at",
        )
        .bind(a)
        .bind(b)
        .fetch_optional(conn)
        .await?;
        Ok(deleted.filter(|m| m.expires_at.is_none_or(|t| t > Utc::now())))
    }

    /// Relationships from `viewer` to `ids`, inside a write transaction.
    pub async fn relationships_in(
        &self,
        conn: &mut PgConnection,
        viewer: AccountId,
        ids: &[i64],
    ) -> Result<Vec<RelationshipRow>> {
        relationships(conn, viewer, ids).await
    }

    /// Relationships from `viewer` to `ids`: one statement for any number of ids. On the
    /// primary: clients read them right after changing them.
    pub async fn relationships(
        &self,
        viewer: AccountId,
        ids: &[i64],
    ) -> Result<Vec<RelationshipRow>> {
        relationships(self.db.primary(), viewer, ids).await
    }

    /// One page of `list` of `owner`, as seen by `viewer`.
    pub async fn list_page(
        &self,
        list: List,
        owner: AccountId,
        viewer: Option<AccountId>,
        bounds: Bounds,
    ) -> Result<Vec<EntryRow>> {
        // Owners read their own lists right after changing them (block, then open the
        // blocks list): the primary for them, the replica for everyone else.
        let pool = if viewer == Some(owner) {
            self.db.primary()
        } else {
            self.db.replica()
        };
        let mut rows: Vec<EntryRow> = sqlx::query_as(page_sql(list, bounds.oldest_first))
            .bind(owner)
            .bind(bounds.below)
            .bind(bounds.above)
            .bind(bounds.limit)
            .bind(viewer)
            .fetch_all(pool)
            .await?;
        if bounds.oldest_first {
            rows.reverse();
        }
        Ok(rows)
    }

    /// Accounts whose username starts with `username_prefix` (already lower-case and
    /// LIKE-escaped) or whose display name has words starting with `words` (a prefix
    /// tsquery), best match first: exact username, then most followed.
    #[allow(clippy::too_many_arguments)]
    pub async fn search_accounts(
        &self,
        username_prefix: &str,
        words: Option<&str>,
        exact: &str,
        following_of: Option<AccountId>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<i64>> {
        let rows: Vec<(i64,)> = sqlx::query_as(SEARCH)
            .bind(username_prefix)
            .bind(words)
            .bind(exact)
            .bind(following_of)
            .bind(limit)
            .bind(offset)
            .fetch_all(self.db.replica())
            .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Up to `limit` followers of `account` after follow id `after`, oldest first, as
    /// `(follow id, follower)`; with `active_since`, only followers active since then.
    pub async fn follower_ids(
        &self,
        account: AccountId,
        after: i64,
        active_since: Option<DateTime<Utc>>,
        which: Followers,
        limit: i64,
    ) -> Result<Vec<(i64, i64)>> {
        let (all, active) = match which {
            Followers::All => (FOLLOWER_IDS, ACTIVE_FOLLOWER_IDS),
            Followers::ShowingReblogs => (REBLOG_FOLLOWER_IDS, ACTIVE_REBLOG_FOLLOWER_IDS),
            // Notifications go to every follower who asked, active or not.
            Followers::Notified => (NOTIFIED_FOLLOWER_IDS, NOTIFIED_FOLLOWER_IDS),
        };
        let query = match active_since {
            Some(since) if which != Followers::Notified => {
                sqlx::query_as(active).bind(account).bind(after).bind(since)
            }
            _ => sqlx::query_as(all).bind(account).bind(after),
        };
        Ok(query.bind(limit).fetch_all(self.db.replica()).await?)
    }

    /// Up to `limit` accounts `account` follows after follow id `after`, oldest follow
    /// first, as `(follow id, followed account)`.
    pub async fn following_ids(
        &self,
        account: AccountId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, i64)>> {
        Ok(sqlx::query_as(FOLLOWING_IDS)
            .bind(account)
            .bind(after)
            .bind(limit)
            .fetch_all(self.db.replica())
            .await?)
    }

    /// Every account `viewer` blocks or is blocked by, or mutes; an account may appear in
    /// more than one row. On the primary: a block must take effect as soon as it commits.
    pub async fn exclusions(&self, viewer: AccountId) -> Result<Vec<FilterRow>> {
        Ok(sqlx::query_as(EXCLUSIONS)
            .bind(viewer)
            .fetch_all(self.db.primary())
            .await?)
    }

    /// Of `ids`, those `viewer` blocks or is blocked by, or mutes.
    pub async fn filter_accounts(&self, viewer: AccountId, ids: &[i64]) -> Result<Vec<FilterRow>> {
        Ok(sqlx::query_as(FILTER)
            .bind(viewer)
            .bind(ids)
            .fetch_all(self.db.primary())
            .await?)
    }
}

async fn upsert_edge(
    conn: &mut PgConnection,
    sql: &'static str,
    a: AccountId,
    b: AccountId,
    options: &FollowOptions<'_>,
) -> Result<(EdgeRow, bool)> {
    #[derive(FromRow)]
    struct Upserted {
        #[sqlx(flatten)]
        edge: EdgeRow,
        inserted: bool,
    }
    let row: Upserted = sqlx::query_as(sql)
        .bind(a)
        .bind(b)
        .bind(options.reblogs)
        .bind(options.notify)
        .bind(options.languages)
        .fetch_one(conn)
        .await?;
    Ok((row.edge, row.inserted))
}

async fn relationships<'c>(
    exec: impl PgExecutor<'c>,
    viewer: AccountId,
    ids: &[i64],
) -> Result<Vec<RelationshipRow>> {
    Ok(sqlx::query_as(RELATIONSHIPS)
        .bind(viewer)
        .bind(ids)
        .fetch_all(exec)
        .await?)
}

/// The reading statements on the graph tables (and the username lookup of mentions),
/// each with example arguments (SQL literals, for `EXECUTE`): what `tests/plans.rs`
/// EXPLAINs.
#[doc(hidden)]
pub fn statements_for_plans() -> Vec<(&'static str, &'static str, &'static str)> {
    const PAGE: &str = "(1, 9223372036854775807, 0, 40, 2)";
    vec![
        (
            "relationships",
            RELATIONSHIPS,
            "(1, ARRAY[2, 3, 4]::bigint[])",
        ),
        ("pair state", PAIR_STATE, "(1, 2)"),
        ("followers page", page_sql(List::Followers, false), PAGE),
        (
            "followers page, min_id",
            page_sql(List::Followers, true),
            PAGE,
        ),
        ("following page", page_sql(List::Following, false), PAGE),
        (
            "following page, min_id",
            page_sql(List::Following, true),
            PAGE,
        ),
        (
            "follow requests page",
            page_sql(List::FollowRequests, false),
            PAGE,
        ),
        ("blocks page", page_sql(List::Blocks, false), PAGE),
        ("mutes page", page_sql(List::Mutes, false), PAGE),
        ("fan-out chunk", FOLLOWER_IDS, "(1, 0, 1000)"),
        (
            "fan-out chunk, reblogs",
            REBLOG_FOLLOWER_IDS,
            "(1, 0, 1000)",
        ),
        (
            "fan-out chunk, reblogs, active only",
            ACTIVE_REBLOG_FOLLOWER_IDS,
            "(1, 0, now() - interval '7 days', 1000)",
        ),
        (
            "fan-out chunk, active only",
            ACTIVE_FOLLOWER_IDS,
            "(1, 0, now() - interval '7 days', 1000)",
        ),
        ("following chunk", FOLLOWING_IDS, "(1, 0, 1000)"),
        (
            "notified followers chunk",
            NOTIFIED_FOLLOWER_IDS,
            "(1, 0, 1000)",
        ),
        ("filter", FILTER, "(1, ARRAY[2, 3, 4]::bigint[])"),
        ("exclusions", EXCLUSIONS, "(1)"),
        (
            "accounts by usernames",
            super::ACCOUNTS_BY_USERNAMES,
            "(ARRAY['user2', 'alice50', 'nobody']::text[])",
        ),
        ("unfollow", DELETE_FOLLOW, "(1, 2)"),
        ("block: sever follows", SEVER_FOLLOWS, "(1, 2)"),
        ("block: sever requests", SEVER_REQUESTS, "(1, 2)"),
        ("lock pair", LOCK_PAIR, "(ARRAY[1, 2]::bigint[])"),
        ("expired mutes sweep", SWEEP_MUTES, "(500)"),
        ("lock requesters", LOCK_REQUESTERS, "(1)"),
        (
            "accept requests",
            ACCEPT_REQUESTS,
            "(1, ARRAY[2, 3]::bigint[])",
        ),
        ("search", SEARCH, "('ali', 'ali:*', 'ali', NULL, 40, 0)"),
    ]
}
