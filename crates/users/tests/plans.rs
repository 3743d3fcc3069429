//! Query plans of the social graph, on a realistic amount of data: every reading
//! statement of `store::graph` (`statements_for_plans`) must reach the graph tables
//! through indexes, even with sequential scans priced out. The plans printed here
//! (`--no-capture`) are the ones reproduced in docs/SOCIAL-GRAPH.md.
//!
//! Also checks the statement counter of `rookery_kit::testing` against the graph store:
//! a page or a batch of relationships is one statement, and the outbox relay's polling
//! does not count.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use rookery_kit::{
    config::{DatabaseConfig, RedisConfig},
    db::Db,
    events,
    redis::Redis,
    testing::{self, StatementCounter, TestDatabase},
};
use rookery_users::{
    Config,
    domain::AccountId,
    store::{
        Store,
        graph::{Bounds, List, statements_for_plans},
    },
};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

/// Accounts in the test data set; ids are 1..=ACCOUNTS so that the example arguments of
/// `statements_for_plans` (accounts 1 to 4) exist.
const ACCOUNTS: i64 = 5000;

/// Tables whose full scan would grow with the instance.
const TABLES: [&str; 6] = [
    "follows",
    "follow_requests",
    "blocks",
    "mutes",
    "accounts",
    "credentials",
];

/// A fresh database with the users schema migrated.
async fn migrated() -> TestDatabase {
    let db = testing::database("users").await.unwrap();
    let config = Config::for_tests(&db.url, &testing::redis_url(), &testing::redis_prefix());
    rookery_users::migrate(&config).await.unwrap();
    db
}

/// Loads the data set as the superuser, in one go: triggers and foreign-key checks are off
/// while loading (session_replication_role = replica) and the counters the triggers keep
/// are computed at the end, which gives the same rows much faster. Deterministic
/// (setseed). Account 1 is a locked celebrity that follows 1000 accounts, blocks 100,
/// mutes 100 and has requests pending from the last 300 accounts that do not follow it
/// yet; 1 in 20 accounts is locked; follow targets are skewed towards low ids, as
/// popularity is; 1 in 60 accounts was active each of the last 60 days.
const LOAD: &str = "
-- The dev cluster runs with synchronous_commit = off; VACUUM can only mark pages
-- all-visible once the load's commit is flushed, so flush it.
SET synchronous_commit = on;
SET search_path = users;
SET session_replication_role = replica;
SELECT setseed(0.42);

INSERT INTO accounts (id, username, display_name, locked, created_at)
SELECT i,
       CASE WHEN i % 50 = 0 THEN 'alice' || i ELSE 'user' || i END,
       (ARRAY['Alice', 'Bob', 'Carol', 'Dave', 'Erin', 'Frank', 'Grace', 'Heidi', 'Ivan',
              'Judy', 'Mallory', 'Niaj', 'Olivia', 'Peggy', 'Rupert', 'Sybil', 'Trent',
              'Victor', 'Walter', 'Alina'])[1 + i % 20]
           || ' ' || (ARRAY['Smith', 'Jones', 'Alias', 'Brown', 'Taylor'])[1 + i % 5],
       i = 1 OR i % 20 = 0,
       now() - (ACCOUNTS - i) * interval '1 hour'
FROM generate_series(1, ACCOUNTS) i;

INSERT INTO credentials (account_id, email, password_hash, last_active_at)
SELECT i, 'user' || i || '@example.test', 'x', now() - (i % 60) * interval '1 day'
FROM generate_series(1, ACCOUNTS) i;

INSERT INTO follows (account_id, target_account_id, show_reblogs, notify)
SELECT DISTINCT a, t, a % 7 <> 0, a % 11 = 0
FROM (SELECT a, 1 + floor((ACCOUNTS - 1) * power(random(), 3))::bigint AS t
      FROM generate_series(1, ACCOUNTS) a, generate_series(1, 15) j) s
WHERE a <> t
ON CONFLICT DO NOTHING;
INSERT INTO follows (account_id, target_account_id)
SELECT 1, t FROM generate_series(2, 1001) t
ON CONFLICT DO NOTHING;

INSERT INTO follow_requests (account_id, target_account_id)
SELECT DISTINCT r, t
FROM (SELECT t, 1 + floor(ACCOUNTS * random())::bigint AS r
      FROM generate_series(20, ACCOUNTS, 20) t, generate_series(1, 8) j
      UNION ALL
      SELECT 1, r FROM generate_series(ACCOUNTS - 299, ACCOUNTS) r) s
WHERE r <> t
  AND NOT EXISTS (SELECT 1 FROM follows f WHERE f.account_id = r AND f.target_account_id = t)
ON CONFLICT DO NOTHING;

INSERT INTO blocks (account_id, target_account_id)
SELECT DISTINCT a, t
FROM (SELECT 1 + floor(ACCOUNTS * random())::bigint AS a,
             1 + floor(ACCOUNTS * random())::bigint AS t
      FROM generate_series(1, 3000)
      UNION ALL
      SELECT 1, t FROM generate_series(ACCOUNTS - 399, ACCOUNTS - 300) t) s
WHERE a <> t
ON CONFLICT DO NOTHING;

INSERT INTO mutes (account_id, target_account_id, hide_notifications, expires_at)
SELECT DISTINCT ON (a, t) a, t, a % 2 = 0,
       CASE a % 3 WHEN 0 THEN NULL ELSE now() + (a % 30 - 10) * interval '1 day' END
FROM (SELECT 1 + floor(ACCOUNTS * random())::bigint AS a,
             1 + floor(ACCOUNTS * random())::bigint AS t
      FROM generate_series(1, 3000)
      UNION ALL
      SELECT 1, t FROM generate_series(ACCOUNTS - 499, ACCOUNTS - 400) t) s
WHERE a <> t
ON CONFLICT DO NOTHING;

UPDATE accounts a SET followers_count = c.n
FROM (SELECT target_account_id AS id, count(*) AS n FROM follows GROUP BY 1) c WHERE a.id = c.id;
UPDATE accounts a SET following_count = c.n
FROM (SELECT account_id AS id, count(*) AS n FROM follows GROUP BY 1) c WHERE a.id = c.id;
UPDATE accounts a SET follow_requests_count = c.n
FROM (SELECT target_account_id AS id, count(*) AS n FROM follow_requests GROUP BY 1) c
WHERE a.id = c.id;

SET session_replication_role = DEFAULT;
";

async fn load(db: &TestDatabase) {
    let mut admin = PgConnection::connect(&db.admin_url).await.unwrap();
    let sql = LOAD.replace("ACCOUNTS", &ACCOUNTS.to_string());
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut admin)
        .await
        .unwrap();
    // VACUUM as well as ANALYZE: a live database has its visibility map set, which makes
    // index-only scans attractive and changes plans (a covering index with one key column
    // and a filter on the other can win over a two-column probe). Plan what production
    // runs. VACUUM cannot run in the load's implicit transaction, hence a statement alone.
    sqlx::raw_sql("VACUUM ANALYZE accounts, credentials, follows, follow_requests, blocks, mutes")
        .execute(&mut admin)
        .await
        .unwrap();
    let sizes = sqlx::raw_sql(
        "SELECT format('%s accounts, %s follows, %s follow requests, %s blocks, %s mutes',
                       (SELECT count(*) FROM users.accounts),
                       (SELECT count(*) FROM users.follows),
                       (SELECT count(*) FROM users.follow_requests),
                       (SELECT count(*) FROM users.blocks),
                       (SELECT count(*) FROM users.mutes))",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    println!("Data: {}.", sizes[0].get::<String, _>(0));
    admin.close().await.unwrap();
}

#[tokio::test]
async fn graph_statements_are_served_by_indexes() {
    let db = migrated().await;
    load(&db).await;
    // As the service runs: the service role, whose search_path is `users`.
    let mut conn = PgConnection::connect(&db.url).await.unwrap();

    // The assertion: with sequential scans priced out, every table is reached through an
    // index. The other variants are printed for the documentation.
    let failures = testing::check_plans(&mut conn, &statements_for_plans(), &TABLES)
        .await
        .unwrap();
    conn.close().await.unwrap();
    assert!(
        failures.is_empty(),
        "statements not served by indexes:\n\n{}",
        failures.join("\n\n")
    );
}

#[tokio::test]
async fn statement_counter_counts_request_statements_only() {
    let db = migrated().await;
    let mut admin = PgConnection::connect(&db.admin_url).await.unwrap();
    sqlx::raw_sql(
        "SET search_path = users;
         INSERT INTO accounts (id, username) SELECT i, 'user' || i FROM generate_series(1, 50) i;
         INSERT INTO follows (account_id, target_account_id)
         SELECT 1, i FROM generate_series(2, 50) i;",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();

    let pool = Db::connect_lazy(&DatabaseConfig::for_url(&db.url)).unwrap();
    let store = Store::new(pool.clone());
    let counter = StatementCounter::new(&db).await.unwrap();

    // One statement for a batch of relationships, whatever its size.
    let ids: Vec<i64> = (2..=50).collect();
    let before = counter.total().await.unwrap();
    let found = store.relationships(AccountId(1), &ids).await.unwrap();
    assert_eq!(found.len(), ids.len());
    assert_eq!(
        counter.since(before).await.unwrap(),
        1,
        "{:#?}",
        counter.breakdown().await.unwrap()
    );

    // One statement for a page of a list.
    counter.reset().await.unwrap();
    let bounds = Bounds {
        below: i64::MAX,
        above: 0,
        oldest_first: false,
        limit: 40,
    };
    let page = store
        .list_page(List::Following, AccountId(1), Some(AccountId(1)), bounds)
        .await
        .unwrap();
    assert_eq!(page.len(), 40);
    let breakdown = counter.breakdown().await.unwrap();
    assert_eq!(counter.total().await.unwrap(), 1, "{breakdown:#?}");
    assert!(breakdown[0].0.contains("FROM follows"), "{breakdown:#?}");

    // A write transaction counts its statements, events included, but not BEGIN/COMMIT;
    // the relay that publishes the event, on its own schedule, does not count at all.
    let outbox = events::Outbox::new("users");
    let before = counter.total().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    outbox
        .enqueue(&mut tx, "test.event", Some(1), b"payload")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        counter.since(before).await.unwrap(),
        1,
        "{:#?}",
        counter.breakdown().await.unwrap()
    );
    let redis = Redis::new(&RedisConfig::for_url(
        testing::redis_url(),
        testing::redis_prefix(),
    ))
    .unwrap();
    let before = counter.total().await.unwrap();
    assert_eq!(
        events::relay_once(pool.primary(), &redis, "users")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        events::relay_once(pool.primary(), &redis, "users")
            .await
            .unwrap(),
        0
    );
    pool.ping().await.unwrap();
    assert_eq!(
        counter.since(before).await.unwrap(),
        0,
        "{:#?}",
        counter.breakdown().await.unwrap()
    );
}
