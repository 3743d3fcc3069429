//! Every SQL statement of the timeline service. Runs as role `rookery_timeline` with
//! `search_path = timeline`, so table names are unqualified.

use chrono::{DateTime, Utc};
use rookery_kit::db::Db;
use rookery_proto::timeline::v1 as pb;
use sqlx::{FromRow, PgConnection, PgExecutor, Postgres, Transaction};

use crate::{
    Result,
    domain::{Bounds, StatusId},
};

/// The embedded migrations of schema `timeline`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/timeline");

/// Status columns in the shape of [`StatusRow`] (a macro so that `concat!` keeps the
/// statements static strings).
macro_rules! status_columns {
    () => {
        "id, account_id, text, content, spoiler_text, visibility, sensitive, language, \
         in_reply_to_id, in_reply_to_account_id, reblog_of_id, quote_of_id, media_ids, \
         mention_ids, tags, application, replies_count, reblogs_count, favourites_count, \
         created_at, edited_at"
    };
}

/// Statuses by id, with the statuses they reblog or quote and the statuses those quote,
/// in one statement: a page's bodies cost one round trip however it is made up.
const STATUSES: &str = concat!(
    "WITH page AS (SELECT ",
    status_columns!(),
    " FROM statuses WHERE id = ANY($1::bigint[])),
     refs AS (SELECT ",
    status_columns!(),
    " FROM statuses WHERE id = ANY(ARRAY(
                 SELECT reblog_of_id FROM page WHERE reblog_of_id IS NOT NULL
                 UNION SELECT quote_of_id FROM page WHERE quote_of_id IS NOT NULL))
           AND NOT id = ANY($1::bigint[])),
     quoted AS (SELECT ",
    status_columns!(),
    " FROM statuses WHERE id = ANY(ARRAY(
                 SELECT quote_of_id FROM refs WHERE quote_of_id IS NOT NULL))
           AND NOT id = ANY($1::bigint[]) AND NOT id IN (SELECT id FROM refs))
     SELECT * FROM page UNION ALL SELECT * FROM refs UNION ALL SELECT * FROM quoted"
);

/// What the viewer `$1` did to each of `$2`: one statement for a whole page, each flag an
/// index probe per status. Not `EXISTS (...)`: in the generic plan of a prepared
/// statement Postgres turns those into hashed subplans that read *all* of the viewer's
/// favourites and statuses once per page (18.8 ms instead of 0.2 ms for an account with
/// 10 000 of each, found by the load harness). A LATERAL subquery with LIMIT cannot be
/// hashed or pulled up: it stays a probe per id.
const VIEWER_FLAGS: &str = "SELECT t.id,
        fav.hit IS NOT NULL AS favourited,
        reb.hit IS NOT NULL AS reblogged,
        bm.hit IS NOT NULL AS bookmarked,
        pin.hit IS NOT NULL AS pinned
     FROM unnest($2::bigint[]) AS t(id)
     LEFT JOIN LATERAL (SELECT 1 AS hit FROM favourites f
                        WHERE f.account_id = $1 AND f.status_id = t.id LIMIT 1) fav ON true
     LEFT JOIN LATERAL (SELECT 1 AS hit FROM statuses r
                        WHERE r.account_id = $1 AND r.reblog_of_id = t.id LIMIT 1) reb ON true
     LEFT JOIN LATERAL (SELECT 1 AS hit FROM bookmarks b
                        WHERE b.account_id = $1 AND b.status_id = t.id LIMIT 1) bm ON true
     LEFT JOIN LATERAL (SELECT 1 AS hit FROM pins p
                        WHERE p.account_id = $1 AND p.status_id = t.id LIMIT 1) pin ON true";

const INSERT_STATUS: &str = concat!(
    "INSERT INTO statuses (account_id, text, content, spoiler_text, visibility, sensitive,
         language, in_reply_to_id, in_reply_to_account_id, quote_of_id, media_ids,
         mention_ids, tags, application)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
     RETURNING ",
    status_columns!()
);

/// A reblog: one per account and original (a repeat changes nothing and returns nothing).
const INSERT_REBLOG: &str = concat!(
    "INSERT INTO statuses (account_id, visibility, reblog_of_id) VALUES ($1, $2, $3)
     ON CONFLICT (account_id, reblog_of_id) WHERE reblog_of_id IS NOT NULL DO NOTHING
     RETURNING ",
    status_columns!()
);

const REBLOG_OF: &str = concat!(
    "SELECT ",
    status_columns!(),
    " FROM statuses WHERE account_id = $1 AND reblog_of_id = $2"
);

const DELETE_REBLOG: &str = concat!(
    "DELETE FROM statuses WHERE account_id = $1 AND reblog_of_id = $2 RETURNING ",
    status_columns!()
);

/// Reblogs go with their original (the foreign key cascades); they are deleted first,
/// explicitly, so that their deletion is announced too.
const DELETE_REBLOGS_OF: &str = concat!(
    "DELETE FROM statuses WHERE reblog_of_id = $1 RETURNING ",
    status_columns!()
);

const DELETE_STATUS: &str = concat!(
    "DELETE FROM statuses WHERE id = $1 RETURNING ",
    status_columns!()
);

const LOCK_STATUS: &str = concat!(
    "SELECT ",
    status_columns!(),
    " FROM statuses WHERE id = $1 FOR UPDATE"
);

const UPDATE_STATUS: &str = concat!(
    "UPDATE statuses SET text = $2, content = $3, spoiler_text = $4, sensitive = $5,
         language = $6, media_ids = $7, mention_ids = $8, tags = $9, edited_at = now()
     WHERE id = $1 RETURNING ",
    status_columns!()
);

const HAS_EDITS: &str = "SELECT EXISTS (SELECT 1 FROM status_edits WHERE status_id = $1)";

const INSERT_EDIT: &str = "INSERT INTO status_edits
         (status_id, content, spoiler_text, sensitive, media_ids, created_at)
     VALUES ($1, $2, $3, $4, $5, $6)";

const EDITS: &str = "SELECT content, spoiler_text, sensitive, media_ids, created_at
     FROM status_edits WHERE status_id = $1 ORDER BY id";

/// New tags (lower-cased names); existing ones are left alone. A concurrent insert of the
/// same name makes this wait for it, so the next statement sees the row either way.
const INSERT_TAGS: &str =
    "INSERT INTO tags (name) SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING";

const TAG_STATUS: &str = "INSERT INTO status_tags (tag_id, status_id)
     SELECT id, $2 FROM tags WHERE name = ANY($1::text[]) ON CONFLICT DO NOTHING";

const UNTAG_STATUS: &str = "DELETE FROM status_tags WHERE status_id = $1";

/// Serialises concurrent posts under the same idempotency key (transaction-scoped).
const LOCK_IDEMPOTENCY_KEY: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('idempotency:' || $1 || ':' || $2, 0))";

/// The status posted under a key in the last hour (older keys are expired, as Mastodon's).
const IDEMPOTENT_STATUS: &str = "SELECT status_id FROM idempotency_keys
     WHERE account_id = $1 AND key = $2 AND created_at > now() - interval '1 hour'";

const SAVE_IDEMPOTENCY_KEY: &str = "INSERT INTO idempotency_keys (account_id, key, status_id)
     VALUES ($1, $2, $3)
     ON CONFLICT (account_id, key)
     DO UPDATE SET status_id = EXCLUDED.status_id, created_at = now()";

const SWEEP_IDEMPOTENCY_KEYS: &str = "DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
         SELECT ctid FROM idempotency_keys WHERE created_at < now() - interval '1 hour'
         LIMIT $1))";

const INSERT_FAVOURITE: &str = "INSERT INTO favourites (account_id, status_id) VALUES ($1, $2)
     ON CONFLICT (account_id, status_id) DO NOTHING RETURNING id";
const DELETE_FAVOURITE: &str =
    "DELETE FROM favourites WHERE account_id = $1 AND status_id = $2 RETURNING id";
const INSERT_BOOKMARK: &str = "INSERT INTO bookmarks (account_id, status_id) VALUES ($1, $2)
     ON CONFLICT (account_id, status_id) DO NOTHING RETURNING id";
const DELETE_BOOKMARK: &str =
    "DELETE FROM bookmarks WHERE account_id = $1 AND status_id = $2 RETURNING id";
/// A pin, unless the account already has `$3` (the lock on the account's pins is the
/// row lock of the status being pinned: good enough for a limit of five).
const INSERT_PIN: &str = "INSERT INTO pins (account_id, status_id)
     SELECT $1, $2 WHERE (SELECT count(*) FROM pins WHERE account_id = $1) < $3
     ON CONFLICT (account_id, status_id) DO NOTHING RETURNING id";
const HAS_PIN: &str = "SELECT EXISTS (SELECT 1 FROM pins WHERE account_id = $1 AND status_id = $2)";
const DELETE_PIN: &str = "DELETE FROM pins WHERE account_id = $1 AND status_id = $2 RETURNING id";

/// A keyset page of `(cursor, item)` rows: `$1` exclusive upper bound, `$2` exclusive lower
/// bound, `$3` limit, `$4...` the list's own parameters. Two statements per list: newest
/// first, and oldest first (for `min_id`, reversed by the caller).
macro_rules! keyset {
    ($cursor:literal, $item:literal, $from:literal, $cond:literal) => {
        [
            concat!(
                "SELECT ",
                $cursor,
                " AS cursor, ",
                $item,
                " AS item FROM ",
                $from,
                " WHERE ",
                $cond,
                " AND ",
                $cursor,
                " < $1 AND ",
                $cursor,
                " > $2",
                " ORDER BY ",
                $cursor,
                " DESC LIMIT $3"
            ),
            concat!(
                "SELECT ",
                $cursor,
                " AS cursor, ",
                $item,
                " AS item FROM ",
                $from,
                " WHERE ",
                $cond,
                " AND ",
                $cursor,
                " < $1 AND ",
                $cursor,
                " > $2",
                " ORDER BY ",
                $cursor,
                " ASC LIMIT $3"
            ),
        ]
    };
}

/// Original public statuses, without replies to others (`$4`: only with media).
const PUBLIC: [&str; 2] = keyset!(
    "id",
    "id",
    "statuses",
    "visibility = 1 AND reblog_of_id IS NULL
     AND (in_reply_to_account_id IS NULL OR in_reply_to_account_id = account_id)
     AND (NOT $4 OR cardinality(media_ids) > 0)"
);

/// Statuses of account `$4` up to visibility `$5` (2: public and unlisted, 3: also
/// private, 4: everything); `$6` exclude reblogs, `$7` exclude replies to others, `$8`
/// only with media, `$9` only with this tag (NULL: any).
const ACCOUNT: [&str; 2] = keyset!(
    "id",
    "id",
    "statuses",
    "account_id = $4 AND visibility <= $5 AND (NOT $6 OR reblog_of_id IS NULL)
     AND (NOT $7 OR in_reply_to_id IS NULL OR in_reply_to_account_id = $4)
     AND (NOT $8 OR cardinality(media_ids) > 0)
     AND ($9::text IS NULL OR tags @> ARRAY[$9::text])"
);

/// Public statuses with tag `$4` (an id), all of `$5`, none of `$6`, `$7` only media.
const TAG: [&str; 2] = keyset!(
    "st.status_id",
    "st.status_id",
    "status_tags st JOIN statuses s ON s.id = st.status_id",
    "st.tag_id = $4 AND s.visibility = 1 AND s.tags @> $5::text[] AND NOT s.tags && $6::text[]
     AND (NOT $7 OR cardinality(s.media_ids) > 0)"
);

/// As [`TAG`] with any of several tags `$4` (ids): the `any` parameter.
const TAG_ANY: [&str; 2] = keyset!(
    "st.status_id",
    "st.status_id",
    "status_tags st JOIN statuses s ON s.id = st.status_id",
    "st.tag_id = ANY($4::bigint[]) AND s.visibility = 1 AND s.tags @> $5::text[]
     AND NOT s.tags && $6::text[] AND (NOT $7 OR cardinality(s.media_ids) > 0)"
);

const FAVOURITES: [&str; 2] = keyset!("id", "status_id", "favourites", "account_id = $4");
const BOOKMARKS: [&str; 2] = keyset!("id", "status_id", "bookmarks", "account_id = $4");
const FAVOURITED_BY: [&str; 2] = keyset!("id", "account_id", "favourites", "status_id = $4");
const REBLOGGED_BY: [&str; 2] = keyset!("id", "account_id", "statuses", "reblog_of_id = $4");
const FOLLOWED_TAGS: [&str; 2] = keyset!("id", "tag_id", "tag_follows", "account_id = $4");

const PINNED: &str = "SELECT status_id FROM pins WHERE account_id = $1 ORDER BY id DESC";

/// The chain of statuses `$1` answers, oldest first (at most 40 up).
const ANCESTORS: &str = "WITH RECURSIVE up (id, parent, depth) AS (
         SELECT id, in_reply_to_id, 0 FROM statuses WHERE id = $1
         UNION ALL
         SELECT s.id, s.in_reply_to_id, up.depth + 1
         FROM up JOIN statuses s ON s.id = up.parent
         WHERE up.depth < 40)
     SELECT id FROM up WHERE depth > 0 ORDER BY depth DESC";

/// The replies to `$1` and theirs, in thread order (depth first), at most `$2`.
const DESCENDANTS: &str = "WITH RECURSIVE down (id, path) AS (
         SELECT id, ARRAY[id] FROM statuses WHERE in_reply_to_id = $1
         UNION ALL
         SELECT s.id, down.path || s.id
         FROM down JOIN statuses s ON s.in_reply_to_id = down.id
         WHERE cardinality(down.path) < 40)
     SELECT id FROM down ORDER BY path LIMIT $2";

/// The newest statuses of each of the accounts `$1` that belong in a home feed (not
/// direct), at most `$2` per account and `$3` in all: a bounded index scan per account.
const RECENT_OF_ACCOUNTS: &str = "SELECT r.id, r.reblog_of_id FROM unnest($1::bigint[]) AS a(id)
     CROSS JOIN LATERAL (
         SELECT id, reblog_of_id FROM statuses
         WHERE account_id = a.id AND visibility <= 3
         ORDER BY id DESC LIMIT $2) r
     ORDER BY r.id DESC LIMIT $3";

/// A home feed rebuilt: the newest statuses of each account `$1` follows (and its own),
/// `$2` per account, and of each hashtag `$4` follows, `$2` per tag; `$3` in all. Each
/// part is a bounded index scan per account or tag.
const REBUILD: &str = "(SELECT r.id, r.reblog_of_id FROM unnest($1::bigint[]) AS a(id)
         CROSS JOIN LATERAL (
             SELECT id, reblog_of_id FROM statuses
             WHERE account_id = a.id AND visibility <= 3
             ORDER BY id DESC LIMIT $2) r)
     UNION
     (SELECT st.status_id, NULL::bigint FROM tag_follows tf
         CROSS JOIN LATERAL (
             SELECT x.status_id FROM status_tags x JOIN statuses s ON s.id = x.status_id
             WHERE x.tag_id = tf.tag_id AND s.visibility = 1
             ORDER BY x.status_id DESC LIMIT $2) st
         WHERE tf.account_id = $4)
     ORDER BY 1 DESC LIMIT $3";

/// Statuses of `$1` at or after id `$2` (what a feed may hold of them), for unmerging.
const STATUSES_OF_SINCE: &str =
    "SELECT id FROM statuses WHERE account_id = $1 AND id >= $2 ORDER BY id DESC LIMIT $3";

const TAG_BY_NAME: &str = "SELECT t.id, t.name,
        EXISTS (SELECT 1 FROM tag_follows f WHERE f.account_id = $2 AND f.tag_id = t.id)
            AS following
     FROM tags t WHERE t.name = $1";

const TAGS_BY_NAMES: &str = "SELECT id, name FROM tags WHERE name = ANY($1::text[])";

const TAGS_BY_IDS: &str = "SELECT t.id, t.name,
        EXISTS (SELECT 1 FROM tag_follows f WHERE f.account_id = $2 AND f.tag_id = t.id)
            AS following
     FROM tags t WHERE t.id = ANY($1::bigint[])";

const FOLLOW_TAG: &str = "INSERT INTO tag_follows (account_id, tag_id)
     SELECT $1, id FROM tags WHERE name = $2 ON CONFLICT (account_id, tag_id) DO NOTHING";

const UNFOLLOW_TAG: &str = "DELETE FROM tag_follows f USING tags t
     WHERE f.tag_id = t.id AND f.account_id = $1 AND t.name = $2";

/// Accounts following any of the hashtags `$1` (names). The tag ids come first (an
/// init plan), so even the generic plan probes `tag_follows_by_tag`.
const TAG_FOLLOWERS: &str = "SELECT DISTINCT account_id FROM tag_follows
     WHERE tag_id = ANY(ARRAY(SELECT id FROM tags WHERE name = ANY($1::text[])))";

/// Hashtags starting with `$1`, shortest first. A byte-wise range rather than LIKE, so
/// that generic plans can use the `text_pattern_ops` index too.
const SEARCH_TAGS: &str = "SELECT id, name, false AS following FROM tags
     WHERE name ~>=~ $1 AND name ~<~ ($1 || chr(1114111))
     ORDER BY length(name), name LIMIT $2 OFFSET $3";

/// Statuses matching the web-search query `$1` that `$2` may find: public ones and their
/// own (`$3`: only by this account), newest first.
const SEARCH_STATUSES: &str = "SELECT id FROM statuses
     WHERE search @@ websearch_to_tsquery('simple', $1) AND reblog_of_id IS NULL
       AND (visibility = 1 OR account_id = $2)
       AND ($3::bigint IS NULL OR account_id = $3)
       AND id < $4 AND id > $5
     ORDER BY id DESC LIMIT $6 OFFSET $7";

/// One status as stored.
#[derive(Debug, Clone, FromRow)]
pub struct StatusRow {
    id: i64,
    account_id: i64,
    text: String,
    content: String,
    spoiler_text: String,
    visibility: i16,
    sensitive: bool,
    language: String,
    in_reply_to_id: Option<i64>,
    in_reply_to_account_id: Option<i64>,
    reblog_of_id: Option<i64>,
    quote_of_id: Option<i64>,
    media_ids: Vec<i64>,
    mention_ids: Vec<i64>,
    tags: Vec<String>,
    application: String,
    replies_count: i64,
    reblogs_count: i64,
    favourites_count: i64,
    created_at: DateTime<Utc>,
    edited_at: Option<DateTime<Utc>>,
}

impl From<StatusRow> for pb::Status {
    fn from(r: StatusRow) -> Self {
        pb::Status {
            id: r.id,
            account_id: r.account_id,
            content: r.content,
            text: r.text,
            spoiler_text: r.spoiler_text,
            visibility: i32::from(r.visibility),
            sensitive: r.sensitive,
            language: r.language,
            in_reply_to_id: r.in_reply_to_id,
            in_reply_to_account_id: r.in_reply_to_account_id,
            reblog_of_id: r.reblog_of_id,
            quote_of_id: r.quote_of_id,
            media_ids: r.media_ids,
            mention_ids: r.mention_ids,
            tags: r.tags,
            replies_count: r.replies_count,
            reblogs_count: r.reblogs_count,
            favourites_count: r.favourites_count,
            created_at_ms: r.created_at.timestamp_millis(),
            edited_at_ms: r.edited_at.map(|t| t.timestamp_millis()),
            application: r.application,
        }
    }
}

/// The viewer's flags on one status.
#[derive(Debug, FromRow)]
pub struct FlagsRow {
    pub id: i64,
    pub favourited: bool,
    pub reblogged: bool,
    pub bookmarked: bool,
    pub pinned: bool,
}

/// A hashtag, with whether the viewer follows it.
#[derive(Debug, FromRow)]
pub struct TagRow {
    pub id: i64,
    pub name: String,
    pub following: bool,
}

/// One version of an edited status.
#[derive(Debug, FromRow)]
pub struct EditRow {
    pub content: String,
    pub spoiler_text: String,
    pub sensitive: bool,
    pub media_ids: Vec<i64>,
    pub created_at: DateTime<Utc>,
}

/// A new status, validated and rendered.
#[derive(Debug)]
pub struct NewStatus<'a> {
    pub account_id: i64,
    pub text: &'a str,
    pub content: &'a str,
    pub spoiler_text: &'a str,
    pub visibility: i16,
    pub sensitive: bool,
    pub language: &'a str,
    pub in_reply_to: Option<(i64, i64)>,
    pub quote_of_id: Option<i64>,
    pub media_ids: &'a [i64],
    pub mention_ids: &'a [i64],
    pub tags: &'a [String],
    pub application: &'a str,
}

/// New contents of an edited status.
#[derive(Debug)]
pub struct StatusChange<'a> {
    pub text: &'a str,
    pub content: &'a str,
    pub spoiler_text: &'a str,
    pub sensitive: bool,
    pub language: &'a str,
    pub media_ids: &'a [i64],
    pub mention_ids: &'a [i64],
    pub tags: &'a [String],
}

/// Which keyset list to page through.
#[derive(Clone, Copy, Debug)]
pub enum List {
    Favourites,
    Bookmarks,
    FavouritedBy,
    RebloggedBy,
    FollowedTags,
}

/// Options of an account's statuses.
#[derive(Clone, Copy, Debug)]
pub struct AccountFilter<'a> {
    /// Highest visibility shown (2: public and unlisted, 3: private, 4: direct).
    pub max_visibility: i16,
    pub exclude_reblogs: bool,
    pub exclude_replies: bool,
    pub only_media: bool,
    pub tagged: Option<&'a str>,
}

/// A hashtag timeline's query.
#[derive(Clone, Copy, Debug)]
pub struct TagFilter<'a> {
    /// The tag and the `any` tags, as ids (unknown names left out).
    pub tag_ids: &'a [i64],
    pub all: &'a [String],
    pub none: &'a [String],
    pub only_media: bool,
}

/// The Postgres side of the timeline service.
#[derive(Clone)]
pub struct Store {
    db: Db,
}

type Tx = Transaction<'static, Postgres>;

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub async fn begin(&self) -> Result<Tx> {
        Ok(self.db.primary().begin().await?)
    }

    /// Statuses by id plus what they reblog and quote (one statement; unknown ids are
    /// left out). From the primary: bodies are cached, and a cache must not be filled
    /// with a replica's stale row right after a write.
    pub async fn statuses(&self, ids: &[i64]) -> Result<Vec<StatusRow>> {
        Ok(sqlx::query_as(STATUSES)
            .bind(ids)
            .fetch_all(self.db.primary())
            .await?)
    }

    /// The viewer's flags on each of `ids` (one statement).
    pub async fn viewer_flags(&self, viewer: i64, ids: &[i64]) -> Result<Vec<FlagsRow>> {
        Ok(sqlx::query_as(VIEWER_FLAGS)
            .bind(viewer)
            .bind(ids)
            .fetch_all(self.db.primary())
            .await?)
    }

    pub async fn lock_idempotency_key(
        tx: &mut PgConnection,
        account: i64,
        key: &str,
    ) -> Result<()> {
        sqlx::query(LOCK_IDEMPOTENCY_KEY)
            .bind(account.to_string())
            .bind(key)
            .execute(tx)
            .await?;
        Ok(())
    }

    pub async fn idempotent_status(
        tx: &mut PgConnection,
        account: i64,
        key: &str,
    ) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(IDEMPOTENT_STATUS)
            .bind(account)
            .bind(key)
            .fetch_optional(tx)
            .await?)
    }

    pub async fn save_idempotency_key(
        tx: &mut PgConnection,
        account: i64,
        key: &str,
        status: i64,
    ) -> Result<()> {
        sqlx::query(SAVE_IDEMPOTENCY_KEY)
            .bind(account)
            .bind(key)
            .bind(status)
            .execute(tx)
            .await?;
        Ok(())
    }

    /// Deletes up to `limit` expired idempotency keys; returns how many.
    pub async fn sweep_idempotency_keys(&self, limit: i64) -> Result<u64> {
        Ok(sqlx::query(SWEEP_IDEMPOTENCY_KEYS)
            .bind(limit)
            .execute(self.db.primary())
            .await?
            .rows_affected())
    }

    pub async fn insert_status(tx: &mut PgConnection, s: &NewStatus<'_>) -> Result<StatusRow> {
        let row = sqlx::query_as(INSERT_STATUS)
            .bind(s.account_id)
            .bind(s.text)
            .bind(s.content)
            .bind(s.spoiler_text)
            .bind(s.visibility)
            .bind(s.sensitive)
            .bind(s.language)
            .bind(s.in_reply_to.map(|(id, _)| id))
            .bind(s.in_reply_to.map(|(_, account)| account))
            .bind(s.quote_of_id)
            .bind(s.media_ids)
            .bind(s.mention_ids)
            .bind(s.tags)
            .bind(s.application)
            .fetch_one(&mut *tx)
            .await?;
        Ok(row)
    }

    /// Links a status to its hashtags, creating the ones that are new.
    pub async fn tag_status(tx: &mut PgConnection, status: i64, tags: &[String]) -> Result<()> {
        if tags.is_empty() {
            return Ok(());
        }
        sqlx::query(INSERT_TAGS)
            .bind(tags)
            .execute(&mut *tx)
            .await?;
        sqlx::query(TAG_STATUS)
            .bind(tags)
            .bind(status)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    pub async fn untag_status(tx: &mut PgConnection, status: i64) -> Result<()> {
        sqlx::query(UNTAG_STATUS).bind(status).execute(tx).await?;
        Ok(())
    }

    pub async fn lock_status(tx: &mut PgConnection, id: StatusId) -> Result<Option<StatusRow>> {
        Ok(sqlx::query_as(LOCK_STATUS)
            .bind(id)
            .fetch_optional(tx)
            .await?)
    }

    /// Applies an edit, keeping the version it replaces (and, at the first edit, the
    /// original) in the history.
    pub async fn edit_status(
        tx: &mut PgConnection,
        old: &StatusRow,
        change: &StatusChange<'_>,
    ) -> Result<StatusRow> {
        let has_edits: bool = sqlx::query_scalar(HAS_EDITS)
            .bind(old.id)
            .fetch_one(&mut *tx)
            .await?;
        if !has_edits {
            sqlx::query(INSERT_EDIT)
                .bind(old.id)
                .bind(&old.content)
                .bind(&old.spoiler_text)
                .bind(old.sensitive)
                .bind(&old.media_ids)
                .bind(old.created_at)
                .execute(&mut *tx)
                .await?;
        }
        let row: StatusRow = sqlx::query_as(UPDATE_STATUS)
            .bind(old.id)
            .bind(change.text)
            .bind(change.content)
            .bind(change.spoiler_text)
            .bind(change.sensitive)
            .bind(change.language)
            .bind(change.media_ids)
            .bind(change.mention_ids)
            .bind(change.tags)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(INSERT_EDIT)
            .bind(row.id)
            .bind(&row.content)
            .bind(&row.spoiler_text)
            .bind(row.sensitive)
            .bind(&row.media_ids)
            .bind(row.edited_at.unwrap_or(row.created_at))
            .execute(&mut *tx)
            .await?;
        Ok(row)
    }

    pub async fn edits(&self, status: StatusId) -> Result<Vec<EditRow>> {
        Ok(sqlx::query_as(EDITS)
            .bind(status)
            .fetch_all(self.db.primary())
            .await?)
    }

    /// Deletes a status and its reblogs; returns the reblogs, then the status.
    pub async fn delete_status(tx: &mut PgConnection, id: StatusId) -> Result<Vec<StatusRow>> {
        let mut rows: Vec<StatusRow> = sqlx::query_as(DELETE_REBLOGS_OF)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        rows.extend(
            sqlx::query_as::<_, StatusRow>(DELETE_STATUS)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?,
        );
        Ok(rows)
    }

    /// Reblogs `original` as `account`; None if it already had.
    pub async fn insert_reblog(
        tx: &mut PgConnection,
        account: i64,
        original: i64,
        visibility: i16,
    ) -> Result<Option<StatusRow>> {
        Ok(sqlx::query_as(INSERT_REBLOG)
            .bind(account)
            .bind(visibility)
            .bind(original)
            .fetch_optional(tx)
            .await?)
    }

    pub async fn reblog_of(
        exec: impl PgExecutor<'_>,
        account: i64,
        original: i64,
    ) -> Result<Option<StatusRow>> {
        Ok(sqlx::query_as(REBLOG_OF)
            .bind(account)
            .bind(original)
            .fetch_optional(exec)
            .await?)
    }

    pub async fn delete_reblog(
        tx: &mut PgConnection,
        account: i64,
        original: i64,
    ) -> Result<Option<StatusRow>> {
        Ok(sqlx::query_as(DELETE_REBLOG)
            .bind(account)
            .bind(original)
            .fetch_optional(tx)
            .await?)
    }

    /// Adds or removes a favourite, bookmark or pin; returns the new row's id when it
    /// changed something.
    pub async fn toggle(
        tx: &mut PgConnection,
        what: Toggle,
        account: i64,
        status: i64,
    ) -> Result<Option<i64>> {
        let sql = match what {
            Toggle::Favourite => INSERT_FAVOURITE,
            Toggle::Unfavourite => DELETE_FAVOURITE,
            Toggle::Bookmark => INSERT_BOOKMARK,
            Toggle::Unbookmark => DELETE_BOOKMARK,
            Toggle::Pin => INSERT_PIN,
            Toggle::Unpin => DELETE_PIN,
        };
        let mut query = sqlx::query_scalar(sql).bind(account).bind(status);
        if matches!(what, Toggle::Pin) {
            query = query.bind(crate::domain::MAX_PINS);
        }
        Ok(query.fetch_optional(tx).await?)
    }

    pub async fn has_pin(tx: &mut PgConnection, account: i64, status: i64) -> Result<bool> {
        Ok(sqlx::query_scalar(HAS_PIN)
            .bind(account)
            .bind(status)
            .fetch_one(tx)
            .await?)
    }

    /// One page of a keyset list, newest first, as `(cursor, item)`.
    pub async fn list(&self, list: List, owner: i64, b: &Bounds) -> Result<Vec<(i64, i64)>> {
        let sql = match list {
            List::Favourites => FAVOURITES,
            List::Bookmarks => BOOKMARKS,
            List::FavouritedBy => FAVOURITED_BY,
            List::RebloggedBy => REBLOGGED_BY,
            List::FollowedTags => FOLLOWED_TAGS,
        }[usize::from(b.oldest_first)];
        let rows = sqlx::query_as(sql)
            .bind(b.below)
            .bind(b.above)
            .bind(b.limit)
            .bind(owner)
            .fetch_all(self.db.replica())
            .await?;
        Ok(b.newest_first(rows))
    }

    pub async fn public(&self, only_media: bool, b: &Bounds) -> Result<Vec<(i64, i64)>> {
        let rows = sqlx::query_as(PUBLIC[usize::from(b.oldest_first)])
            .bind(b.below)
            .bind(b.above)
            .bind(b.limit)
            .bind(only_media)
            .fetch_all(self.db.replica())
            .await?;
        Ok(b.newest_first(rows))
    }

    pub async fn account(
        &self,
        account: i64,
        f: &AccountFilter<'_>,
        b: &Bounds,
    ) -> Result<Vec<(i64, i64)>> {
        let rows = sqlx::query_as(ACCOUNT[usize::from(b.oldest_first)])
            .bind(b.below)
            .bind(b.above)
            .bind(b.limit)
            .bind(account)
            .bind(f.max_visibility)
            .bind(f.exclude_reblogs)
            .bind(f.exclude_replies)
            .bind(f.only_media)
            .bind(f.tagged)
            .fetch_all(self.db.replica())
            .await?;
        Ok(b.newest_first(rows))
    }

    pub async fn tag(&self, f: &TagFilter<'_>, b: &Bounds) -> Result<Vec<(i64, i64)>> {
        let dir = usize::from(b.oldest_first);
        let query = match f.tag_ids {
            [one] => sqlx::query_as(TAG[dir])
                .bind(b.below)
                .bind(b.above)
                .bind(b.limit)
                .bind(*one),
            many => sqlx::query_as(TAG_ANY[dir])
                .bind(b.below)
                .bind(b.above)
                .bind(b.limit)
                .bind(many),
        };
        let mut rows: Vec<(i64, i64)> = query
            .bind(f.all)
            .bind(f.none)
            .bind(f.only_media)
            .fetch_all(self.db.replica())
            .await?;
        // With several tags a status can match more than once.
        rows.dedup();
        Ok(b.newest_first(rows))
    }

    pub async fn pinned(&self, account: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(PINNED)
            .bind(account)
            .fetch_all(self.db.replica())
            .await?)
    }

    pub async fn ancestors(&self, id: StatusId) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(ANCESTORS)
            .bind(id)
            .fetch_all(self.db.replica())
            .await?)
    }

    pub async fn descendants(&self, id: StatusId, limit: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(DESCENDANTS)
            .bind(id)
            .bind(limit)
            .fetch_all(self.db.replica())
            .await?)
    }

    /// `(id, reblog_of_id)` of the newest home-feed statuses of `accounts`.
    pub async fn recent_of_accounts(
        &self,
        accounts: &[i64],
        per_account: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Option<i64>)>> {
        Ok(sqlx::query_as(RECENT_OF_ACCOUNTS)
            .bind(accounts)
            .bind(per_account)
            .bind(limit)
            .fetch_all(self.db.primary())
            .await?)
    }

    /// `(id, reblog_of_id)` of a rebuilt home feed of `account` following `accounts`.
    pub async fn rebuild(
        &self,
        account: i64,
        accounts: &[i64],
        per_source: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Option<i64>)>> {
        Ok(sqlx::query_as(REBUILD)
            .bind(accounts)
            .bind(per_source)
            .bind(limit)
            .bind(account)
            .fetch_all(self.db.primary())
            .await?)
    }

    pub async fn statuses_of_since(
        &self,
        account: i64,
        since: i64,
        limit: i64,
    ) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(STATUSES_OF_SINCE)
            .bind(account)
            .bind(since)
            .bind(limit)
            .fetch_all(self.db.primary())
            .await?)
    }

    pub async fn tag_by_name(&self, name: &str, viewer: i64) -> Result<Option<TagRow>> {
        Ok(sqlx::query_as(TAG_BY_NAME)
            .bind(name)
            .bind(viewer)
            .fetch_optional(self.db.primary())
            .await?)
    }

    /// `(id, name)` of the known tags among `names`.
    pub async fn tags_by_names(&self, names: &[String]) -> Result<Vec<(i64, String)>> {
        Ok(sqlx::query_as(TAGS_BY_NAMES)
            .bind(names)
            .fetch_all(self.db.replica())
            .await?)
    }

    pub async fn tags_by_ids(&self, ids: &[i64], viewer: i64) -> Result<Vec<TagRow>> {
        Ok(sqlx::query_as(TAGS_BY_IDS)
            .bind(ids)
            .bind(viewer)
            .fetch_all(self.db.replica())
            .await?)
    }

    /// Follows a hashtag (creating it if new).
    pub async fn follow_tag(&self, account: i64, name: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(INSERT_TAGS)
            .bind([name])
            .execute(&mut *tx)
            .await?;
        sqlx::query(FOLLOW_TAG)
            .bind(account)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn unfollow_tag(&self, account: i64, name: &str) -> Result<()> {
        sqlx::query(UNFOLLOW_TAG)
            .bind(account)
            .bind(name)
            .execute(self.db.primary())
            .await?;
        Ok(())
    }

    pub async fn tag_followers(&self, names: &[String]) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(TAG_FOLLOWERS)
            .bind(names)
            .fetch_all(self.db.replica())
            .await?)
    }

    pub async fn search_tags(&self, prefix: &str, limit: i64, offset: i64) -> Result<Vec<TagRow>> {
        Ok(sqlx::query_as(SEARCH_TAGS)
            .bind(prefix)
            .bind(limit)
            .bind(offset)
            .fetch_all(self.db.replica())
            .await?)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn search_statuses(
        &self,
        q: &str,
        viewer: i64,
        account: Option<i64>,
        below: i64,
        above: i64,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(SEARCH_STATUSES)
            .bind(q)
            .bind(viewer)
            .bind(account)
            .bind(below)
            .bind(above)
            .bind(limit)
            .bind(offset)
            .fetch_all(self.db.replica())
            .await?)
    }
}

/// The favourite/bookmark/pin changes of [`Store::toggle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toggle {
    Favourite,
    Unfavourite,
    Bookmark,
    Unbookmark,
    Pin,
    Unpin,
}

/// The reading statements with example arguments (SQL literals, for `EXECUTE`): what
/// `tests/plans.rs` EXPLAINs.
#[doc(hidden)]
pub fn statements_for_plans() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("statuses", STATUSES, "(ARRAY[1, 2, 3]::bigint[])"),
        ("viewer flags", VIEWER_FLAGS, "(1, ARRAY[2, 3]::bigint[])"),
        ("public", PUBLIC[0], "(9223372036854775807, 0, 20, false)"),
        (
            "public, min_id",
            PUBLIC[1],
            "(9223372036854775807, 0, 20, false)",
        ),
        (
            "account",
            ACCOUNT[0],
            "(9223372036854775807, 0, 20, 1, 2, false, false, false, NULL)",
        ),
        (
            "tag",
            TAG[0],
            "(9223372036854775807, 0, 20, 1, '{}'::text[], '{}'::text[], false)",
        ),
        (
            "favourites",
            FAVOURITES[0],
            "(9223372036854775807, 0, 20, 1)",
        ),
        ("bookmarks", BOOKMARKS[0], "(9223372036854775807, 0, 20, 1)"),
        (
            "favourited by",
            FAVOURITED_BY[0],
            "(9223372036854775807, 0, 20, 1)",
        ),
        (
            "reblogged by",
            REBLOGGED_BY[0],
            "(9223372036854775807, 0, 20, 1)",
        ),
        (
            "followed tags",
            FOLLOWED_TAGS[0],
            "(9223372036854775807, 0, 20, 1)",
        ),
        ("pinned", PINNED, "(1)"),
        ("ancestors", ANCESTORS, "(1)"),
        ("descendants", DESCENDANTS, "(1, 4096)"),
        ("rebuild", REBUILD, "(ARRAY[1, 2, 3]::bigint[], 40, 800, 1)"),
        (
            "follow merge",
            RECENT_OF_ACCOUNTS,
            "(ARRAY[1]::bigint[], 40, 40)",
        ),
        ("unmerge", STATUSES_OF_SINCE, "(1, 0, 10000)"),
        ("reblog of", REBLOG_OF, "(1, 2)"),
        ("tag followers", TAG_FOLLOWERS, "(ARRAY['rust']::text[])"),
        ("search tags", SEARCH_TAGS, "('ru', 20, 0)"),
        (
            "search statuses",
            SEARCH_STATUSES,
            "('hello', 1, NULL, 9223372036854775807, 0, 20, 0)",
        ),
    ]
}
