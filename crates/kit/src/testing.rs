//! Test helpers: every test gets its own database (with the service's schema and role,
//! exactly as in production) and its own Redis key prefix, on the Postgres and Redis that
//! `make test` starts. No fixed ports, no shared state between tests. A
//! [`StatementCounter`] counts the SQL statements run in a test's database.

use sqlx::{
    AssertSqlSafe, Connection, Executor, PgConnection, Row,
    postgres::{PgPool, PgPoolOptions},
};

use crate::config::{DEFAULT_REDIS_URL, env_or};

/// Superuser URL of the local test cluster: `ROOKERY_TEST_ADMIN_URL`.
pub const DEFAULT_ADMIN_URL: &str =
    "postgres://rookery_admin:rookery_admin@127.0.0.1:15432/postgres";

/// Redis URL of the local stack: `REDIS_URL`.
pub fn redis_url() -> String {
    env_or("REDIS_URL", DEFAULT_REDIS_URL)
}

/// Seed nodes of the local test Redis Cluster (`ROOKERY_TEST_REDIS_CLUSTER_NODES`,
/// started by `deps.sh start redis-cluster`), comma-separated: what
/// [`RedisConfig::for_url`](crate::config::RedisConfig::for_url) takes for a cluster.
pub fn redis_cluster_nodes() -> String {
    env_or(
        "ROOKERY_TEST_REDIS_CLUSTER_NODES",
        "redis://127.0.0.1:16380,redis://127.0.0.1:16381,redis://127.0.0.1:16382",
    )
}

/// A unique Redis key prefix for one test.
pub fn redis_prefix() -> String {
    format!("test:{}", uuid::Uuid::new_v4().simple())
}

/// A fresh database holding an empty schema `service` owned by role `rookery_{service}`.
/// Databases are named `rookery_test_*`; `make test` drops leftovers before each run.
#[derive(Clone, Debug)]
pub struct TestDatabase {
    /// Database name.
    pub name: String,
    /// URL connecting as the service role (what the service is configured with).
    pub url: String,
    /// URL connecting as the superuser, to the same database.
    pub admin_url: String,
}

/// Creates a [`TestDatabase`] for `service`.
pub async fn database(service: &str) -> anyhow::Result<TestDatabase> {
    let admin = env_or("ROOKERY_TEST_ADMIN_URL", DEFAULT_ADMIN_URL);
    let role = format!("rookery_{service}");
    let name = format!("rookery_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin).await?;
    // Roles are cluster-wide; make test's deps script creates them, this covers a cluster
    // set up by hand. Concurrent tests may race on creation: a duplicate is fine.
    let create_role = format!(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
             CREATE ROLE {role} LOGIN PASSWORD '{role}';
             ALTER ROLE {role} SET search_path = {service};
           END IF;
         END $$"
    );
    if let Err(e) = conn.execute(AssertSqlSafe(create_role)).await {
        // 42710 duplicate_object, 23505 unique_violation (the loser of a creation race),
        // XX000 "tuple concurrently updated": all mean the role is there now.
        let code = e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned());
        if !matches!(code.as_deref(), Some("42710" | "23505" | "XX000")) {
            return Err(e.into());
        }
    }
    conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await?;
    conn.close().await?;

    let mut admin_url = url::Url::parse(&admin)?;
    admin_url.set_path(&name);
    let mut db = PgConnection::connect(admin_url.as_str()).await?;
    db.execute(AssertSqlSafe(format!(
        "CREATE SCHEMA {service} AUTHORIZATION {role}"
    )))
    .await?;
    db.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        .await?;
    db.close().await?;

    let mut url = admin_url.clone();
    url.set_username(&role)
        .map_err(|()| anyhow::anyhow!("cannot set user"))?;
    url.set_password(Some(&role))
        .map_err(|()| anyhow::anyhow!("cannot set password"))?;
    Ok(TestDatabase {
        name,
        url: url.to_string(),
        admin_url: admin_url.to_string(),
    })
}

/// Which `pg_stat_statements` entries [`StatementCounter`] counts: top-level statements of
/// one database (`$1`), minus the background machinery that runs on its own timers. Keep
/// the list of exclusions in step with [`StatementCounter`]'s documentation.
const COUNTED: &str = r"
    dbid = $1 AND toplevel
    -- The outbox relay: its leader lock, its read and its delete. It polls on a timer and
    -- is woken by every commit that wrote events. Writing an event is a statement of the
    -- request, so INSERT INTO outbox is counted.
    AND NOT (query ~* '\moutbox\M' AND query !~* '^\s*insert\s+into\s+outbox\M')
    AND query !~* '\mpg_try_advisory_xact_lock\M'
    -- Event consumers' deduplication (consumers read streams on their own schedule).
    AND query !~* '\mprocessed_events\M'
    -- Readiness and health pings.
    AND query !~* '^\s*select\s+(1|\$1)\s*;?\s*$'
    -- Transaction control: the relay's BEGIN/COMMIT/ROLLBACK look exactly like a request's.
    -- Savepoints (and ROLLBACK TO) are counted: only request code makes them.
    AND query !~* '^\s*(begin|start\s+transaction|commit|end|abort)\M'
    AND query !~* '^\s*rollback(\s+(work|transaction))?\s*;?\s*$'
";

/// Counts the SQL statements executed in one [`TestDatabase`], so a test can pin down
/// how many statements an operation costs ("a page is one query, whatever its size") and
/// catch N+1 regressions, which no functional assertion sees.
///
/// The numbers come from `pg_stat_statements`, which `deploy/dev/deps.sh` loads with
/// `pg_stat_statements.track = top` and installs in the admin database `postgres`; the
/// counter reads it there as the superuser, filtered on the test database's oid. Its own
/// queries therefore run in another database and never count.
///
/// What counts: each execution of a top-level statement that completed in the test
/// database, by any role or connection. Statements run inside functions and triggers
/// (the graph's counter triggers) are part of the statement that fired them and do not
/// count on their own; a statement that failed does not count either.
///
/// What does not count, because it runs on its own timers rather than in a request and
/// would make counts depend on timing:
/// - the outbox relay's statements (its advisory lock, `SELECT ... FROM outbox`,
///   `DELETE FROM outbox`) and anything on `processed_events` (event consumers). Writing an
///   event (`INSERT INTO outbox`) is part of the request and does count;
/// - `SELECT 1` pings (readiness checks);
/// - transaction control (`BEGIN`, `COMMIT`, `ROLLBACK`): the relay's transactions cannot
///   be told apart from a request's. Savepoints count.
///
/// Timing: `pg_stat_statements` records a statement when it finishes. Once a call has
/// returned (an RPC answered, an HTTP response received), every statement it awaited has
/// finished and is counted. Work it spawned and did not await (fire-and-forget tasks) may
/// still be running: wait for its effect before reading the counter, or keep it out of
/// the measured window.
///
/// Also note: sqlx looks up the definitions of non-builtin types (enums, domains) the
/// first time a connection meets them, with queries on `pg_catalog` that count; and an
/// entry evicted from `pg_stat_statements` (more than `pg_stat_statements.max` distinct
/// statements in the cluster) loses its count, which is why deps.sh sets the max high.
///
/// ```ignore
/// let counter = StatementCounter::new(&db).await?;
/// let before = counter.total().await?;
/// client.list_accounts(request).await?;
/// let n = counter.since(before).await?;
/// assert_eq!(n, 2, "{:#?}", counter.breakdown().await?);
/// ```
#[derive(Clone, Debug)]
pub struct StatementCounter {
    /// One connection, as the superuser, to the admin database `postgres`.
    pool: PgPool,
    /// Oid of the test database (`pg_stat_statements.dbid`).
    dbid: sqlx::postgres::types::Oid,
}

impl StatementCounter {
    /// A counter for `db`. Fails when `pg_stat_statements` is not loaded, with the command
    /// that fixes it.
    pub async fn new(db: &TestDatabase) -> anyhow::Result<Self> {
        let mut url = url::Url::parse(&db.admin_url)?;
        url.set_path("postgres");
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(url.as_str())
            .await?;
        let dbid = sqlx::query_scalar("SELECT oid FROM pg_database WHERE datname = $1")
            .bind(&db.name)
            .fetch_one(&pool)
            .await?;
        if let Err(e) = sqlx::query("SELECT 1 FROM pg_stat_statements LIMIT 1")
            .execute(&pool)
            .await
        {
            anyhow::bail!(
                "pg_stat_statements is unavailable ({e}); restart Postgres with \
                 `deploy/dev/deps.sh start`, which loads and installs it"
            );
        }
        Ok(Self { pool, dbid })
    }

    /// Statements executed in the database so far (see the type's documentation for what
    /// counts). Diff two readings, or use [`StatementCounter::since`].
    pub async fn total(&self) -> anyhow::Result<i64> {
        let sql =
            format!("SELECT COALESCE(sum(calls), 0)::int8 FROM pg_stat_statements WHERE {COUNTED}");
        Ok(sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(self.dbid)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Statements executed since `before`, a reading of [`StatementCounter::total`].
    pub async fn since(&self, before: i64) -> anyhow::Result<i64> {
        Ok(self.total().await? - before)
    }

    /// The counted statements so far, as (normalised query text, executions), most
    /// executed first: what to print when a count assertion fails. Call
    /// [`StatementCounter::reset`] before the operation to see only its statements.
    pub async fn breakdown(&self) -> anyhow::Result<Vec<(String, i64)>> {
        let sql = format!(
            "SELECT query, calls FROM pg_stat_statements WHERE {COUNTED}
             ORDER BY calls DESC, query"
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(self.dbid)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Forgets the statements of this database counted so far (other databases keep
    /// theirs), so that [`StatementCounter::breakdown`] shows only what follows.
    pub async fn reset(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT pg_stat_statements_reset(0, $1, 0)")
            .bind(self.dbid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------- query plans

/// Planner settings a plan is made with: (label, `SET LOCAL`s, asserted). Custom plans
/// are what the first executions of a prepared statement get, planned for the example
/// arguments; after five, Postgres may switch to the generic plan when it does not look
/// costlier than the custom ones.
pub const PLAN_VARIANTS: [(&str, &str, bool); 3] = [
    (
        "enable_seqscan = off",
        "SET LOCAL enable_seqscan = off; SET LOCAL plan_cache_mode = force_custom_plan;",
        true,
    ),
    (
        "default settings",
        "SET LOCAL enable_seqscan = on; SET LOCAL plan_cache_mode = force_custom_plan;",
        false,
    ),
    (
        "generic plan, default settings",
        "SET LOCAL enable_seqscan = on; SET LOCAL plan_cache_mode = force_generic_plan;",
        false,
    ),
];

/// `EXPLAIN (COSTS OFF)` of a statement with parameters (`args`: SQL literals such as
/// `(1, ARRAY[2]::bigint[])`), through a prepared statement as a service runs it, once
/// per [`PLAN_VARIANTS`] entry. One transaction, rolled back: writing statements are
/// only planned, and `now()` in the arguments is the same in every variant.
pub async fn explain(
    conn: &mut PgConnection,
    sql: &str,
    args: &str,
) -> anyhow::Result<Vec<String>> {
    let run = |sql: String| sqlx::raw_sql(AssertSqlSafe(sql));
    run("BEGIN".to_owned()).execute(&mut *conn).await?;
    let mut plans = Vec::new();
    for (_, settings, _) in PLAN_VARIANTS {
        run(format!("{settings} PREPARE p AS {sql}"))
            .execute(&mut *conn)
            .await?;
        let rows = run(format!("EXPLAIN (COSTS OFF) EXECUTE p{args}"))
            .fetch_all(&mut *conn)
            .await?;
        run("DEALLOCATE p".to_owned()).execute(&mut *conn).await?;
        let lines: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        plans.push(lines.join("\n"));
    }
    run("ROLLBACK".to_owned()).execute(&mut *conn).await?;
    Ok(plans)
}

/// The tables of `tables` that `plan` reads with a sequential scan.
pub fn seq_scanned<'a>(plan: &str, tables: &[&'a str]) -> Vec<&'a str> {
    tables
        .iter()
        .copied()
        .filter(|table| {
            plan.lines().any(|line| {
                line.split_once("Seq Scan on ")
                    .is_some_and(|(_, rest)| rest.split_whitespace().next() == Some(table))
            })
        })
        .collect()
}

/// Explains every `(name, sql, args)` statement, prints the plans as Markdown (for the
/// docs; visible with `--no-capture`), and returns a description of every asserted
/// variant that reads one of `tables` with a sequential scan.
pub async fn check_plans(
    conn: &mut PgConnection,
    statements: &[(&str, &str, &str)],
    tables: &[&str],
) -> anyhow::Result<Vec<String>> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let mut failures = Vec::new();
    for (name, sql, args) in statements {
        writeln!(out, "### {name}\n\nArguments: `{args}`\n")?;
        let plans = explain(conn, sql, args).await?;
        let mut previous = "";
        for ((label, _, asserted), plan) in PLAN_VARIANTS.into_iter().zip(&plans) {
            let scanned = seq_scanned(plan, tables);
            if asserted && !scanned.is_empty() {
                failures.push(format!("{name}: Seq Scan on {scanned:?}\n{plan}"));
            }
            if plan == previous {
                writeln!(out, "{label}: same plan.\n")?;
            } else {
                writeln!(out, "{label}:\n\n```text\n{plan}\n```\n")?;
            }
            previous = plan;
        }
    }
    Ok(failures)
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    #[test]
    fn seq_scans_are_found() {
        let plan = "Limit\n  ->  Sort\n        ->  Seq Scan on accounts a\n              SubPlan 2\n                ->  Parallel Seq Scan on follows f\n                ->  Seq Scan on follows_archive";
        assert_eq!(
            seq_scanned(plan, &["follows", "accounts"]),
            ["follows", "accounts"]
        );
        assert!(
            seq_scanned(
                "Index Only Scan using follows_pair on follows",
                &["follows"]
            )
            .is_empty()
        );
    }
}
