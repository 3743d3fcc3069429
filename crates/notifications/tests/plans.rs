//! Query plans of the notifications service on a realistic amount of data: every
//! statement of the store (`statements_for_plans`) must reach its tables through indexes,
//! even with sequential scans priced out. The plans are printed with `--no-capture`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rookery_kit::testing::{self, TestDatabase};
use rookery_notifications::{Config, store::statements_for_plans};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// Tables whose full scan would grow with the instance.
const TABLES: [&str; 2] = ["notifications", "markers"];

async fn migrated() -> TestDatabase {
    let db = testing::database("notifications").await.unwrap();
    let config = Config::for_tests(
        &db.url,
        &testing::redis_url(),
        &testing::redis_prefix(),
        "http://127.0.0.1:1",
        "http://127.0.0.1:1",
    );
    rookery_notifications::migrate(&config).await.unwrap();
    db
}

/// 500 000 notifications over 2 000 recipients from 5 000 senders, of every type:
/// favourites and reblogs of a few statuses per recipient (so groups are large), follows,
/// mentions; markers for every recipient. Deterministic.
async fn load(db: &TestDatabase) {
    let mut conn = PgConnection::connect(&db.admin_url).await.unwrap();
    let script = "
        SET search_path = notifications;
        INSERT INTO notifications (id, account_id, type, from_account_id, status_id,
                                   activity_id, group_key, event_id)
        SELECT g,
               1 + g % 2000,
               1 + g % 8,
               1 + (g * 7919) % 5000,
               CASE WHEN 1 + g % 8 IN (4, 5) THEN NULL ELSE 1 + (g / 2000) % 50 END,
               g,
               CASE 1 + g % 8
                   WHEN 3 THEN 'reblog-' || (1 + (g / 2000) % 50) || '-1'
                   WHEN 6 THEN 'favourite-' || (1 + (g / 2000) % 50) || '-1'
                   WHEN 4 THEN 'follow-1'
                   ELSE 'ungrouped-' || g END,
               'timeline:' || g
        FROM generate_series(1::bigint, 500000) g;
        INSERT INTO markers (account_id, timeline, last_read_id)
        SELECT a, t, a * 100 FROM generate_series(1, 2000) a,
               unnest(ARRAY['home', 'notifications']) t;
    ";
    sqlx::raw_sql(AssertSqlSafe(script))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql("VACUUM ANALYZE notifications.notifications, notifications.markers")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn notification_statements_are_served_by_indexes() {
    let db = migrated().await;
    load(&db).await;
    // As the service runs: the service role, whose search_path is `notifications`.
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
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
