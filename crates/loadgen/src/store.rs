//! All of the harness's SQL: the bulk load into the users and timeline schemas (as their
//! own roles), and the statement counts read from `pg_stat_statements`.
//!
//! The bulk load writes what the services' own writes would have left behind (rows,
//! counters through the services' triggers); it is for benchmarks and tests only.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Rows per statement: large enough to be quick, small enough for the parameter arrays.
const BATCH: usize = 10_000;

/// Fails unless the users schema has no account: the load assumes a fresh instance.
pub async fn ensure_empty(users: &PgPool) -> anyhow::Result<()> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts")
        .fetch_one(users)
        .await?;
    anyhow::ensure!(
        n == 0,
        "the users schema already has {n} accounts: seed a fresh database"
    );
    Ok(())
}

/// The harness's OAuth app; returns its id.
pub async fn insert_app(
    users: &PgPool,
    client_id: &str,
    secret_hash: &[u8],
) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO apps (name, redirect_uris, scopes, client_id, client_secret_hash)
         VALUES ('rookery-loadgen', '{urn:ietf:wg:oauth:2.0:oob}', 'read write follow push', $1, $2)
         RETURNING id",
    )
    .bind(client_id)
    .bind(secret_hash)
    .fetch_one(users)
    .await?)
}

/// Accounts with credentials and one token each; returns their ids in input order.
pub async fn insert_accounts(
    users: &PgPool,
    app: i64,
    usernames: &[String],
    token_hashes: &[Vec<u8>],
    password_hash: &str,
    created_at: DateTime<Utc>,
) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(usernames.len());
    for (names, hashes) in usernames.chunks(BATCH).zip(token_hashes.chunks(BATCH)) {
        let mut tx = users.begin().await?;
        // WITH ORDINALITY keeps the input order (RETURNING alone does not promise one).
        let batch: Vec<i64> = sqlx::query_scalar(
            "WITH input AS (
                 SELECT name, n FROM UNNEST($1::text[]) WITH ORDINALITY AS t(name, n)
             ), inserted AS (
                 INSERT INTO accounts (username, display_name, note, created_at)
                 SELECT name, initcap(name), 'Seeded by the load harness.', $2 FROM input ORDER BY n
                 RETURNING id, username
             )
             SELECT i.id FROM inserted i JOIN input ON input.name = i.username ORDER BY input.n",
        )
        .bind(names)
        .bind(created_at)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO credentials (account_id, email, password_hash)
             SELECT id, id || '@loadgen.invalid', $2 FROM UNNEST($1::bigint[]) AS t(id)",
        )
        .bind(&batch)
        .bind(password_hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO access_tokens (app_id, account_id, token_hash, scopes)
             SELECT $1, id, hash, 'read write follow push'
             FROM UNNEST($2::bigint[], $3::bytea[]) AS t(id, hash)",
        )
        .bind(app)
        .bind(&batch)
        .bind(hashes)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        ids.extend(batch);
    }
    Ok(ids)
}

/// Follows (the users service's trigger keeps both accounts' counters).
pub async fn insert_follows(users: &PgPool, follows: &[(i64, i64)]) -> anyhow::Result<()> {
    for chunk in follows.chunks(BATCH) {
        let (from, to): (Vec<i64>, Vec<i64>) = chunk.iter().copied().unzip();
        sqlx::query(
            "INSERT INTO follows (account_id, target_account_id)
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[])",
        )
        .bind(&from)
        .bind(&to)
        .execute(users)
        .await?;
    }
    Ok(())
}

/// Authors' status counters, as the timeline's events would have set them.
pub async fn set_status_counts(
    users: &PgPool,
    ids: &[i64],
    counts: &[i64],
    last_at: &[DateTime<Utc>],
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE accounts a SET statuses_count = v.n, last_status_at = v.at
         FROM UNNEST($1::bigint[], $2::bigint[], $3::timestamptz[]) AS v(id, n, at)
         WHERE a.id = v.id",
    )
    .bind(ids)
    .bind(counts)
    .bind(last_at)
    .execute(users)
    .await?;
    Ok(())
}

/// Statuses to insert, as parallel columns.
#[derive(Debug, Default)]
pub struct StatusRows {
    pub id: Vec<i64>,
    pub account: Vec<i64>,
    pub text: Vec<String>,
    pub content: Vec<String>,
    pub reply_to: Vec<Option<i64>>,
    pub reply_to_account: Vec<Option<i64>>,
    /// At most one hashtag per seeded status.
    pub tag: Vec<Option<String>>,
    pub created_at: Vec<DateTime<Utc>>,
}

/// Statuses with their hashtags (the timeline's trigger counts replies).
pub async fn insert_statuses(timeline: &PgPool, rows: &StatusRows) -> anyhow::Result<()> {
    let tags: Vec<String> = {
        let mut t: Vec<String> = rows.tag.iter().flatten().cloned().collect();
        t.sort_unstable();
        t.dedup();
        t
    };
    sqlx::query("INSERT INTO tags (name) SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING")
        .bind(&tags)
        .execute(timeline)
        .await?;
    let n = rows.id.len();
    for start in (0..n).step_by(BATCH) {
        let end = (start + BATCH).min(n);
        let mut tx = timeline.begin().await?;
        sqlx::query(
            "INSERT INTO statuses (id, account_id, text, content, visibility, language,
                 in_reply_to_id, in_reply_to_account_id, mention_ids, tags, created_at)
             SELECT id, account, text, content, 1, 'en', reply_to, reply_to_account,
                 CASE WHEN reply_to_account IS NULL THEN '{}' ELSE ARRAY[reply_to_account] END,
                 CASE WHEN tag IS NULL THEN '{}' ELSE ARRAY[tag] END,
                 created_at
             FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[],
                 $6::bigint[], $7::text[], $8::timestamptz[])
                 AS t(id, account, text, content, reply_to, reply_to_account, tag, created_at)",
        )
        .bind(&rows.id[start..end])
        .bind(&rows.account[start..end])
        .bind(&rows.text[start..end])
        .bind(&rows.content[start..end])
        .bind(&rows.reply_to[start..end])
        .bind(&rows.reply_to_account[start..end])
        .bind(&rows.tag[start..end])
        .bind(&rows.created_at[start..end])
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO status_tags (tag_id, status_id)
             SELECT tags.id, t.id FROM UNNEST($1::bigint[], $2::text[]) AS t(id, tag)
             JOIN tags ON tags.name = t.tag",
        )
        .bind(&rows.id[start..end])
        .bind(&rows.tag[start..end])
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Favourites (the timeline's trigger counts them).
pub async fn insert_favourites(
    timeline: &PgPool,
    favourites: &[(i64, i64)],
    created_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    for chunk in favourites.chunks(BATCH) {
        let (account, status): (Vec<i64>, Vec<i64>) = chunk.iter().copied().unzip();
        sqlx::query(
            "INSERT INTO favourites (account_id, status_id, created_at)
             SELECT a, s, $3 FROM UNNEST($1::bigint[], $2::bigint[]) AS t(a, s)",
        )
        .bind(&account)
        .bind(&status)
        .bind(created_at)
        .execute(timeline)
        .await?;
    }
    Ok(())
}

/// Fresh planner statistics after a bulk load (autovacuum would take a while).
pub async fn analyze(pool: &PgPool, tables: &[&str]) -> anyhow::Result<()> {
    for table in tables {
        // Names are the harness's constants, never input.
        sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {table}")))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Calls so far of each statement executed in database `db` (query id -> text, calls),
/// from `pg_stat_statements` (read through a superuser connection). Transaction control
/// is left out: it is not a query.
pub async fn statement_calls(
    admin: &PgPool,
    db: &str,
) -> anyhow::Result<std::collections::HashMap<i64, (String, i64)>> {
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT s.queryid, min(s.query), sum(s.calls)::bigint
         FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
         WHERE d.datname = $1 AND s.toplevel
           AND s.query !~* '^\\s*(begin|commit|rollback|set|show|discard)\\M'
           AND s.query !~* 'pg_stat_statements'
         GROUP BY s.queryid",
    )
    .bind(db)
    .fetch_all(admin)
    .await?;
    Ok(rows.into_iter().map(|(id, q, c)| (id, (q, c))).collect())
}
