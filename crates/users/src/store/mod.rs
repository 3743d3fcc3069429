//! Every SQL statement of the users service. Runs as role `rookery_users` with
//! `search_path = users`, so table names are unqualified. Accounts, apps and tokens are
//! here; the social graph is in [`graph`].

pub mod graph;

use chrono::{DateTime, Utc};
use rookery_kit::db::Db;
use rookery_proto::users::v1 as pb;
use sqlx::{FromRow, PgConnection, Postgres, Transaction};

use crate::{
    Result,
    domain::{AccountId, AppId, FieldError, TokenId},
};

/// The embedded migrations of schema `users`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/users");

/// Account columns in the shape of [`AccountRow`] (a macro so that `concat!` keeps the
/// statements static strings).
macro_rules! account_columns {
    () => {
        "id, username, display_name, note, locked, bot, discoverable, indexable, \
         hide_collections, default_privacy, default_sensitive, default_language, \
         followers_count, following_count, statuses_count, last_status_at, created_at, \
         follow_requests_count"
    };
}

/// Local accounts whose lower-cased username is in `$1` (already lower-case): one probe
/// per name of an index on `lower(username)` (the planner picks the pattern-ops
/// `accounts_username_prefix` over the unique `accounts_username_key`; same keys).
pub(crate) const ACCOUNTS_BY_USERNAMES: &str = concat!(
    "SELECT ",
    account_columns!(),
    " FROM accounts WHERE lower(username) = ANY($1::text[])"
);

/// A status of `$1` was created at `$2` (Unix milliseconds; 0 when unknown: now).
/// `greatest` ignores NULL, so the first status sets `last_status_at`, and an event
/// delivered late never moves it back.
const STATUS_CREATED: &str = "UPDATE accounts SET
         statuses_count = statuses_count + 1,
         last_status_at = greatest(last_status_at,
                                   COALESCE(to_timestamp(NULLIF($2::bigint, 0) / 1000.0), now()))
     WHERE id = $1";

/// A status of `$1` was deleted; the count never goes below zero (a deletion of a status
/// counted before this consumer existed).
const STATUS_DELETED: &str =
    "UPDATE accounts SET statuses_count = greatest(statuses_count - 1, 0) WHERE id = $1";

/// One account as stored.
#[derive(Debug, FromRow)]
pub struct AccountRow {
    id: i64,
    username: String,
    display_name: String,
    note: String,
    locked: bool,
    bot: bool,
    discoverable: bool,
    indexable: bool,
    hide_collections: bool,
    default_privacy: String,
    default_sensitive: bool,
    default_language: String,
    followers_count: i64,
    following_count: i64,
    statuses_count: i64,
    last_status_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    follow_requests_count: i64,
}

impl AccountRow {
    /// The cache key of the account.
    pub fn id_key(&self) -> String {
        self.id.to_string()
    }
}

impl From<AccountRow> for pb::Account {
    fn from(r: AccountRow) -> Self {
        pb::Account {
            id: r.id,
            note_html: crate::domain::note_html(&r.note),
            username: r.username,
            display_name: r.display_name,
            note_source: r.note,
            locked: r.locked,
            bot: r.bot,
            discoverable: r.discoverable,
            indexable: r.indexable,
            hide_collections: r.hide_collections,
            created_at_ms: r.created_at.timestamp_millis(),
            followers_count: r.followers_count,
            following_count: r.following_count,
            statuses_count: r.statuses_count,
            last_status_at_ms: r.last_status_at.map(|t| t.timestamp_millis()),
            fields: Vec::new(),
            default_privacy: r.default_privacy,
            default_sensitive: r.default_sensitive,
            default_language: r.default_language,
            follow_requests_count: r.follow_requests_count,
        }
    }
}

/// An OAuth application as stored.
#[derive(Debug, FromRow)]
pub struct AppRow {
    pub id: i64,
    pub name: String,
    pub website: String,
    pub redirect_uris: Vec<String>,
    pub scopes: String,
    pub client_id: String,
    pub client_secret_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

/// A live access token.
#[derive(Debug, FromRow)]
pub struct TokenRow {
    pub id: i64,
    pub app_id: i64,
    pub account_id: Option<i64>,
    pub scopes: String,
    pub token_hash: Vec<u8>,
}

/// A consumed authorization code.
#[derive(Debug, FromRow)]
pub struct CodeRow {
    pub account_id: i64,
    pub redirect_uri: String,
    pub scopes: String,
    pub code_challenge: Option<String>,
}

/// Profile changes; `None` leaves a column as it is.
#[derive(Debug, Default)]
pub struct AccountChanges {
    pub display_name: Option<String>,
    pub note: Option<String>,
    pub locked: Option<bool>,
    pub bot: Option<bool>,
    pub discoverable: Option<bool>,
    pub indexable: Option<bool>,
    pub hide_collections: Option<bool>,
    pub default_privacy: Option<String>,
    pub default_sensitive: Option<bool>,
    pub default_language: Option<String>,
}

/// A new account with its credentials.
#[derive(Debug)]
pub struct NewAccount<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub locale: &'a str,
}

/// A new token row.
#[derive(Debug)]
pub struct NewToken<'a> {
    pub app_id: AppId,
    pub account_id: Option<AccountId>,
    pub token_hash: &'a [u8],
    pub refresh_hash: Option<&'a [u8]>,
    pub scopes: &'a str,
}

/// Database access of the users service.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
}

impl Store {
    /// A store over the service's pools.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Starts a transaction on the primary.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.db.primary().begin().await?)
    }

    pub async fn create_app(
        &self,
        name: &str,
        website: &str,
        redirect_uris: &[String],
        scopes: &str,
        client_id: &str,
        client_secret_hash: &[u8],
    ) -> Result<AppRow> {
        Ok(sqlx::query_as(
            "INSERT INTO apps (name, website, redirect_uris, scopes, client_id, client_secret_hash)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        )
        .bind(name)
        .bind(website)
        .bind(redirect_uris)
        .bind(scopes)
        .bind(client_id)
        .bind(client_secret_hash)
        .fetch_one(self.db.primary())
        .await?)
    }

    pub async fn app_by_client_id(&self, client_id: &str) -> Result<Option<AppRow>> {
        Ok(sqlx::query_as("SELECT * FROM apps WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(self.db.primary())
            .await?)
    }

    pub async fn app_by_id(&self, id: AppId) -> Result<Option<AppRow>> {
        Ok(sqlx::query_as("SELECT * FROM apps WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.primary())
            .await?)
    }

    /// Finds an account's id and password hash by username or email (case-insensitive).
    pub async fn login(&self, login: &str) -> Result<Option<(AccountId, String)>> {
        Ok(sqlx::query_as(
            "SELECT c.account_id, c.password_hash FROM credentials c
             JOIN accounts a ON a.id = c.account_id
             WHERE lower(c.email) = lower($1) OR lower(a.username) = lower($1)
             LIMIT 1",
        )
        .bind(login)
        .fetch_optional(self.db.primary())
        .await?)
    }

    /// Records sign-in activity (for the instance's active-user figures).
    pub async fn touch_active(&self, account: AccountId) -> Result<()> {
        sqlx::query(
            "UPDATE credentials SET last_active_at = now()
             WHERE account_id = $1 AND last_active_at < now() - interval '1 hour'",
        )
        .bind(account)
        .execute(self.db.primary())
        .await?;
        Ok(())
    }

    /// Which of a username and an email are already taken (case-insensitive).
    pub async fn taken(&self, username: &str, email: &str) -> Result<(bool, bool)> {
        Ok(sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM accounts WHERE lower(username) = lower($1)),
                    EXISTS (SELECT 1 FROM credentials WHERE lower(email) = lower($2))",
        )
        .bind(username)
        .bind(email)
        .fetch_one(self.db.primary())
        .await?)
    }

    /// Inserts an account and its credentials. A uniqueness race lost to a concurrent
    /// registration comes back as the field error the client would have got anyway.
    pub async fn insert_account(
        &self,
        tx: &mut PgConnection,
        new: &NewAccount<'_>,
    ) -> Result<Result<AccountRow, FieldError>> {
        let inserted = sqlx::query_as(concat!(
            "WITH a AS (INSERT INTO accounts (username) VALUES ($1) RETURNING *),
                  c AS (INSERT INTO credentials (account_id, email, password_hash, locale)
                        SELECT id, $2, $3, $4 FROM a)
             SELECT ",
            account_columns!(),
            " FROM a"
        ))
        .bind(new.username)
        .bind(new.email)
        .bind(new.password_hash)
        .bind(new.locale)
        .fetch_one(tx)
        .await;
        match inserted {
            Ok(row) => Ok(Ok(row)),
            Err(sqlx::Error::Database(db)) => match db.constraint() {
                Some("accounts_username_key") => Ok(Err(crate::service::taken("username"))),
                Some("credentials_email_key") => Ok(Err(crate::service::taken("email"))),
                _ => Err(sqlx::Error::Database(db).into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Inserts a token; returns its id and creation time.
    pub async fn insert_token(
        &self,
        conn: &mut PgConnection,
        new: &NewToken<'_>,
    ) -> Result<(TokenId, DateTime<Utc>)> {
        Ok(sqlx::query_as(
            "INSERT INTO access_tokens (app_id, account_id, token_hash, refresh_hash, scopes)
             VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at",
        )
        .bind(new.app_id)
        .bind(new.account_id)
        .bind(new.token_hash)
        .bind(new.refresh_hash)
        .bind(new.scopes)
        .fetch_one(conn)
        .await?)
    }

    /// A live (not revoked) token by the hash of its value.
    pub async fn token_by_hash(&self, hash: &[u8]) -> Result<Option<TokenRow>> {
        Ok(sqlx::query_as(
            "SELECT id, app_id, account_id, scopes, token_hash FROM access_tokens
             WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(self.db.primary())
        .await?)
    }

    /// Revokes the live token of `app` whose refresh value, or (unless `refresh_only`)
    /// access value, hashes to `hash`; returns it when there was one. In the caller's
    /// transaction, so that rotating a refresh token is all-or-nothing.
    pub async fn revoke_token(
        &self,
        conn: &mut PgConnection,
        app: AppId,
        hash: &[u8],
        refresh_only: bool,
    ) -> Result<Option<TokenRow>> {
        Ok(sqlx::query_as(
            "UPDATE access_tokens SET revoked_at = now()
             WHERE app_id = $1 AND revoked_at IS NULL
               AND (refresh_hash = $2 OR (NOT $3 AND token_hash = $2))
             RETURNING id, app_id, account_id, scopes, token_hash",
        )
        .bind(app)
        .bind(hash)
        .bind(refresh_only)
        .fetch_optional(conn)
        .await?)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn insert_code(
        &self,
        code_hash: &[u8],
        app: AppId,
        account: AccountId,
        redirect_uri: &str,
        scopes: &str,
        code_challenge: Option<&str>,
        ttl_seconds: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO authorization_codes
                 (code_hash, app_id, account_id, redirect_uri, scopes, code_challenge, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))",
        )
        .bind(code_hash)
        .bind(app)
        .bind(account)
        .bind(redirect_uri)
        .bind(scopes)
        .bind(code_challenge)
        .bind(ttl_seconds as f64)
        .execute(self.db.primary())
        .await?;
        Ok(())
    }

    /// Consumes an unexpired, unused code of `app` (one use only, even under races).
    pub async fn take_code(
        &self,
        conn: &mut PgConnection,
        app: AppId,
        code_hash: &[u8],
    ) -> Result<Option<CodeRow>> {
        Ok(sqlx::query_as(
            "UPDATE authorization_codes SET used_at = now()
             WHERE code_hash = $1 AND app_id = $2 AND used_at IS NULL AND expires_at > now()
             RETURNING account_id, redirect_uri, scopes, code_challenge",
        )
        .bind(code_hash)
        .bind(app)
        .fetch_optional(conn)
        .await?)
    }

    /// Accounts by id, in one query; unknown ids are left out. From the primary: this
    /// fills the accounts cache, which a write has just invalidated, and a lagging
    /// replica's row would be cached (and served everywhere) until its TTL.
    pub async fn accounts_by_ids(&self, ids: &[i64]) -> Result<Vec<AccountRow>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            account_columns!(),
            " FROM accounts WHERE id = ANY($1)"
        ))
        .bind(ids)
        .fetch_all(self.db.primary())
        .await?)
    }

    /// An account by username (case-insensitive).
    pub async fn account_by_username(&self, username: &str) -> Result<Option<AccountRow>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            account_columns!(),
            " FROM accounts WHERE lower(username) = lower($1)"
        ))
        .bind(username)
        .fetch_optional(self.db.replica())
        .await?)
    }

    /// Local accounts by lower-cased username, in one statement; unknown names are left
    /// out, in no particular order.
    pub async fn accounts_by_usernames(&self, lowered: &[String]) -> Result<Vec<AccountRow>> {
        Ok(sqlx::query_as(ACCOUNTS_BY_USERNAMES)
            .bind(lowered)
            .fetch_all(self.db.replica())
            .await?)
    }

    /// Counts a new status of `account` (created at `created_at_ms`), in the caller's
    /// transaction; false when the account does not exist.
    pub async fn count_status_created(
        &self,
        conn: &mut PgConnection,
        account: AccountId,
        created_at_ms: i64,
    ) -> Result<bool> {
        let done = sqlx::query(STATUS_CREATED)
            .bind(account)
            .bind(created_at_ms)
            .execute(conn)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Uncounts a deleted status of `account`, in the caller's transaction; false when the
    /// account does not exist.
    pub async fn count_status_deleted(
        &self,
        conn: &mut PgConnection,
        account: AccountId,
    ) -> Result<bool> {
        let done = sqlx::query(STATUS_DELETED)
            .bind(account)
            .execute(conn)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Applies profile changes; returns the new row (None if the account is gone).
    pub async fn update_account(
        &self,
        conn: &mut PgConnection,
        id: AccountId,
        c: &AccountChanges,
    ) -> Result<Option<AccountRow>> {
        Ok(sqlx::query_as(concat!(
            "UPDATE accounts SET
                 display_name      = COALESCE($2, display_name),
                 note              = COALESCE($3, note),
                 locked            = COALESCE($4, locked),
                 bot               = COALESCE($5, bot),
                 discoverable      = COALESCE($6, discoverable),
                 indexable         = COALESCE($7, indexable),
                 hide_collections  = COALESCE($8, hide_collections),
                 default_privacy   = COALESCE($9, default_privacy),
                 default_sensitive = COALESCE($10, default_sensitive),
                 default_language  = COALESCE($11, default_language),
                 updated_at        = now()
             WHERE id = $1
             RETURNING ",
            account_columns!(),
            ""
        ))
        .bind(id)
        .bind(&c.display_name)
        .bind(&c.note)
        .bind(c.locked)
        .bind(c.bot)
        .bind(c.discoverable)
        .bind(c.indexable)
        .bind(c.hide_collections)
        .bind(&c.default_privacy)
        .bind(c.default_sensitive)
        .bind(&c.default_language)
        .fetch_optional(conn)
        .await?)
    }

    /// User counts for the instance documents.
    pub async fn stats(&self) -> Result<(i64, i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT count(*),
                    count(*) FILTER (WHERE last_active_at > now() - interval '30 days'),
                    count(*) FILTER (WHERE last_active_at > now() - interval '180 days')
             FROM credentials",
        )
        .fetch_one(self.db.replica())
        .await?)
    }
}
