//! Test helpers: every test gets its own database (with the service's schema and role,
//! exactly as in production) and its own Redis key prefix, on the Postgres and Redis that
//! `make test` starts. No fixed ports, no shared state between tests.

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use crate::config::{DEFAULT_REDIS_URL, env_or};

/// Superuser URL of the local test cluster: `ROOKERY_TEST_ADMIN_URL`.
pub const DEFAULT_ADMIN_URL: &str =
    "postgres://rookery_admin:rookery_admin@127.0.0.1:55432/postgres";

/// Redis URL of the local stack: `REDIS_URL`.
pub fn redis_url() -> String {
    env_or("REDIS_URL", DEFAULT_REDIS_URL)
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
