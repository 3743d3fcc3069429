//! Every SQL statement of the media service.
//!
//! An attachment row is also its processing job: workers claim `processing` rows through
//! `attachments_pending` with a lease. Files that must go (a deleted upload's variants,
//! an upload once processed) are queued in `doomed_objects` by the same statement that
//! makes them unreferenced, and removed from the object store afterwards.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rookery_kit::db::Db;
use sqlx::FromRow;

use crate::Result;

/// The embedded migrations of schema `media`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/media");

/// Columns in the shape of [`Row`].
macro_rules! columns {
    () => {
        "id, account_id, kind, container, state, incoming_key, thumbnail_key, file_prefix, \
         original_key, small_key, original_webp_key, small_webp_key, original_width, \
         original_height, small_width, small_height, blurhash, duration, frame_rate, bitrate, \
         description, focus_x, focus_y, status_id, failure, attempts, created_at"
    };
}

/// The keys of every object a row may reference, for `doomed_objects`.
macro_rules! object_keys {
    () => {
        "ARRAY[incoming_key, thumbnail_key, original_key, small_key, original_webp_key, \
         small_webp_key]"
    };
}

/// One attachment.
#[derive(Clone, Debug, FromRow)]
pub struct Row {
    pub id: i64,
    pub account_id: i64,
    pub kind: Option<String>,
    pub container: String,
    pub state: String,
    pub incoming_key: Option<String>,
    pub thumbnail_key: Option<String>,
    pub file_prefix: String,
    pub original_key: Option<String>,
    pub small_key: Option<String>,
    pub original_webp_key: Option<String>,
    pub small_webp_key: Option<String>,
    pub original_width: Option<i32>,
    pub original_height: Option<i32>,
    pub small_width: Option<i32>,
    pub small_height: Option<i32>,
    pub blurhash: Option<String>,
    pub duration: Option<f64>,
    pub frame_rate: Option<String>,
    pub bitrate: Option<i64>,
    pub description: String,
    pub focus_x: Option<f64>,
    pub focus_y: Option<f64>,
    pub status_id: Option<i64>,
    pub failure: Option<String>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// A received upload, stored and waiting to be processed.
#[derive(Clone, Debug)]
pub struct NewUpload<'a> {
    pub account_id: i64,
    pub kind: Option<&'a str>,
    pub container: &'a str,
    pub incoming_key: &'a str,
    pub thumbnail_key: Option<&'a str>,
    pub file_prefix: &'a str,
    pub description: &'a str,
    pub focus: Option<(f64, f64)>,
    /// Claimed by the caller for this long (it processes the upload itself), or left
    /// for the workers.
    pub claim: Option<Duration>,
}

/// The outcome of processing, as stored.
#[derive(Clone, Debug)]
pub struct Processed<'a> {
    pub kind: &'a str,
    pub original_key: &'a str,
    pub small_key: &'a str,
    pub original_webp_key: Option<&'a str>,
    pub small_webp_key: &'a str,
    pub original: (u32, u32),
    pub small: (u32, u32),
    pub blurhash: &'a str,
    pub duration: Option<f64>,
    pub frame_rate: Option<&'a str>,
    pub bitrate: Option<u64>,
}

/// Every SQL statement of the service, on its pools.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
}

/// Milliseconds for an interval parameter.
fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// An image dimension as stored.
fn dim(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl Store {
    /// A store over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The pools (readiness checks).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Records an upload.
    pub async fn insert(&self, u: &NewUpload<'_>) -> Result<Row> {
        let row = sqlx::query_as::<_, Row>(concat!(
            "INSERT INTO attachments (account_id, kind, container, incoming_key, thumbnail_key, \
             file_prefix, description, focus_x, focus_y, attempts, locked_until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                     CASE WHEN $10::bigint IS NULL THEN 0 ELSE 1 END, \
                     now() + make_interval(secs => $10::bigint / 1000.0)) \
             RETURNING ",
            columns!()
        ))
        .bind(u.account_id)
        .bind(u.kind)
        .bind(u.container)
        .bind(u.incoming_key)
        .bind(u.thumbnail_key)
        .bind(u.file_prefix)
        .bind(u.description)
        .bind(u.focus.map(|f| f.0))
        .bind(u.focus.map(|f| f.1))
        .bind(u.claim.map(ms))
        .fetch_one(self.db.primary())
        .await?;
        Ok(row)
    }

    /// One attachment, from the primary (an upload is polled right after it was made).
    pub async fn get(&self, id: i64) -> Result<Option<Row>> {
        let row = sqlx::query_as::<_, Row>(concat!(
            "SELECT ",
            columns!(),
            " FROM attachments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.db.primary())
        .await?;
        Ok(row)
    }

    /// Attachments by id, any order, unknown ids left out.
    pub async fn get_many(&self, ids: &[i64]) -> Result<Vec<Row>> {
        let rows = sqlx::query_as::<_, Row>(concat!(
            "SELECT ",
            columns!(),
            " FROM attachments WHERE id = ANY($1)"
        ))
        .bind(ids)
        .fetch_all(self.db.primary())
        .await?;
        Ok(rows)
    }

    /// Takes the oldest due job for `lease`: the row's lease lapsed or never was.
    pub async fn claim(&self, lease: Duration) -> Result<Option<Row>> {
        let row = sqlx::query_as::<_, Row>(concat!(
            "UPDATE attachments SET attempts = attempts + 1, \
                    locked_until = now() + make_interval(secs => $1::bigint / 1000.0) \
             WHERE id = (SELECT id FROM attachments \
                         WHERE state = 'processing' AND run_at <= now() \
                           AND (locked_until IS NULL OR locked_until < now()) \
                         ORDER BY run_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING ",
            columns!()
        ))
        .bind(ms(lease))
        .fetch_optional(self.db.primary())
        .await?;
        Ok(row)
    }

    /// Extends the lease of a job still being worked on; false when it is no longer ours
    /// to extend (finished by someone else, or deleted).
    pub async fn renew(&self, id: i64, lease: Duration) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE attachments \
             SET locked_until = now() + make_interval(secs => $2::bigint / 1000.0) \
             WHERE id = $1 AND state = 'processing'",
        )
        .bind(id)
        .bind(ms(lease))
        .execute(self.db.primary())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Hands a claimed job back untouched (the worker is shutting down): due at once,
    /// and the attempt does not count.
    pub async fn release(&self, id: i64) -> Result<()> {
        sqlx::query(
            "UPDATE attachments SET locked_until = NULL, attempts = greatest(attempts - 1, 0) \
             WHERE id = $1 AND state = 'processing'",
        )
        .bind(id)
        .execute(self.db.primary())
        .await?;
        Ok(())
    }

    /// Stores the outcome of a job and queues the files it no longer needs (`obsolete`:
    /// the upload as received). `None` when the job was finished by another worker, or
    /// deleted meanwhile.
    pub async fn finish(
        &self,
        id: i64,
        p: &Processed<'_>,
        obsolete: &[&str],
    ) -> Result<Option<Row>> {
        let row = sqlx::query_as::<_, Row>(concat!(
            "WITH done AS ( \
               UPDATE attachments SET state = 'ready', kind = $2, original_key = $3, \
                 small_key = $4, original_webp_key = $5, small_webp_key = $6, \
                 original_width = $7, original_height = $8, small_width = $9, \
                 small_height = $10, blurhash = $11, duration = $12, frame_rate = $13, \
                 bitrate = $14, incoming_key = NULL, thumbnail_key = NULL, \
                 locked_until = NULL, processed_at = now() \
               WHERE id = $1 AND state = 'processing' RETURNING *), \
             doomed AS ( \
               INSERT INTO doomed_objects (key) \
               SELECT k FROM unnest($15::text[]) k WHERE EXISTS (SELECT 1 FROM done) \
               ON CONFLICT DO NOTHING) \
             SELECT ",
            columns!(),
            " FROM done"
        ))
        .bind(id)
        .bind(p.kind)
        .bind(p.original_key)
        .bind(p.small_key)
        .bind(p.original_webp_key)
        .bind(p.small_webp_key)
        .bind(dim(p.original.0))
        .bind(dim(p.original.1))
        .bind(dim(p.small.0))
        .bind(dim(p.small.1))
        .bind(p.blurhash)
        .bind(p.duration)
        .bind(p.frame_rate)
        .bind(p.bitrate.map(|b| i64::try_from(b).unwrap_or(i64::MAX)))
        .bind(obsolete)
        .fetch_optional(self.db.primary())
        .await?;
        Ok(row)
    }

    /// A failed attempt: due again after `backoff`, or failed for good when `give_up`,
    /// its upload (`obsolete`) then queued for deletion.
    pub async fn fail(
        &self,
        id: i64,
        reason: &str,
        backoff: Duration,
        give_up: bool,
        obsolete: &[&str],
    ) -> Result<()> {
        sqlx::query(
            "WITH failed AS ( \
               UPDATE attachments SET failure = $2, locked_until = NULL, \
                 run_at = now() + make_interval(secs => $3::bigint / 1000.0), \
                 state = CASE WHEN $4 THEN 'failed' ELSE state END, \
                 incoming_key = CASE WHEN $4 THEN NULL ELSE incoming_key END, \
                 thumbnail_key = CASE WHEN $4 THEN NULL ELSE thumbnail_key END \
               WHERE id = $1 AND state = 'processing' RETURNING id) \
             INSERT INTO doomed_objects (key) \
             SELECT k FROM unnest($5::text[]) k \
             WHERE $4 AND EXISTS (SELECT 1 FROM failed) \
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(reason)
        .bind(ms(backoff))
        .bind(give_up)
        .bind(obsolete)
        .execute(self.db.primary())
        .await?;
        Ok(())
    }

    /// Changes the description and focus of an unattached upload of `account_id`.
    pub async fn update(
        &self,
        account_id: i64,
        id: i64,
        description: Option<&str>,
        focus: Option<(f64, f64)>,
    ) -> Result<Option<Row>> {
        let row = sqlx::query_as::<_, Row>(concat!(
            "UPDATE attachments SET description = COALESCE($3, description), \
               focus_x = CASE WHEN $4 THEN $5 ELSE focus_x END, \
               focus_y = CASE WHEN $4 THEN $6 ELSE focus_y END \
             WHERE id = $1 AND account_id = $2 AND status_id IS NULL RETURNING ",
            columns!()
        ))
        .bind(id)
        .bind(account_id)
        .bind(description)
        .bind(focus.is_some())
        .bind(focus.map(|f| f.0))
        .bind(focus.map(|f| f.1))
        .fetch_optional(self.db.primary())
        .await?;
        Ok(row)
    }

    /// Deletes an unattached upload of `account_id` and queues its files; returns the
    /// files' keys, or `None` when there is no such upload.
    pub async fn delete(&self, account_id: i64, id: i64) -> Result<Option<Vec<String>>> {
        let keys: Option<Vec<Option<String>>> = sqlx::query_scalar(concat!(
            "WITH gone AS ( \
               DELETE FROM attachments WHERE id = $1 AND account_id = $2 AND status_id IS NULL \
               RETURNING ",
            object_keys!(),
            " AS keys), \
             doomed AS ( \
               INSERT INTO doomed_objects (key) \
               SELECT k FROM gone, unnest(gone.keys) k WHERE k IS NOT NULL \
               ON CONFLICT DO NOTHING) \
             SELECT keys FROM gone"
        ))
        .bind(id)
        .bind(account_id)
        .fetch_optional(self.db.primary())
        .await?;
        Ok(keys.map(|k| k.into_iter().flatten().collect()))
    }

    /// Marks `ids` (uploads of `account_id`, unattached or already this status's) as used
    /// by `status_id`, and releases the status's other attachments (an edit removed them;
    /// they are cleaned up with the unattached ones unless attached again). Returns
    /// every id whose row changed.
    pub async fn attach(&self, status_id: i64, account_id: i64, ids: &[i64]) -> Result<Vec<i64>> {
        let changed = sqlx::query_scalar(
            "WITH attached AS ( \
               UPDATE attachments SET status_id = $1 \
               WHERE id = ANY($3) AND account_id = $2 AND status_id IS NULL RETURNING id), \
             released AS ( \
               UPDATE attachments SET status_id = NULL, unattached_since = now() \
               WHERE status_id = $1 AND NOT id = ANY($3) RETURNING id) \
             SELECT id FROM attached UNION ALL SELECT id FROM released",
        )
        .bind(status_id)
        .bind(account_id)
        .bind(ids)
        .fetch_all(self.db.primary())
        .await?;
        Ok(changed)
    }

    /// Deletes up to `limit` uploads never attached within `ttl` (and failed ones as
    /// old), queueing their files; returns how many went.
    pub async fn expire_unattached(&self, ttl: Duration, limit: i64) -> Result<u64> {
        let gone: i64 = sqlx::query_scalar(concat!(
            "WITH gone AS ( \
               DELETE FROM attachments WHERE id IN ( \
                 SELECT id FROM attachments \
                 WHERE status_id IS NULL \
                   AND unattached_since < now() - make_interval(secs => $1::bigint / 1000.0) \
                 ORDER BY unattached_since LIMIT $2) \
               RETURNING ",
            object_keys!(),
            " AS keys), \
             doomed AS ( \
               INSERT INTO doomed_objects (key) \
               SELECT k FROM gone, unnest(gone.keys) k WHERE k IS NOT NULL \
               ON CONFLICT DO NOTHING) \
             SELECT count(*) FROM gone"
        ))
        .bind(ms(ttl))
        .bind(limit)
        .fetch_one(self.db.primary())
        .await?;
        Ok(u64::try_from(gone).unwrap_or(0))
    }

    /// The oldest queued object keys to delete.
    pub async fn doomed(&self, limit: i64) -> Result<Vec<String>> {
        let keys = sqlx::query_scalar("SELECT key FROM doomed_objects ORDER BY queued_at LIMIT $1")
            .bind(limit)
            .fetch_all(self.db.primary())
            .await?;
        Ok(keys)
    }

    /// Forgets keys the object store has deleted.
    pub async fn forget_doomed(&self, keys: &[String]) -> Result<()> {
        sqlx::query("DELETE FROM doomed_objects WHERE key = ANY($1)")
            .bind(keys)
            .execute(self.db.primary())
            .await?;
        Ok(())
    }
}
