//! Query plans of the timeline service on a realistic amount of data: every reading
//! statement of the store (`statements_for_plans`) must reach its tables through indexes,
//! even with sequential scans priced out. The plans are printed with `--no-capture`
//! (docs/TIMELINE.md quotes them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rookery_kit::testing::{self, TestDatabase};
use rookery_timeline::{Config, store::statements_for_plans};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// Tables whose full scan would grow with the instance.
const TABLES: [&str; 8] = [
    "statuses",
    "favourites",
    "bookmarks",
    "pins",
    "tags",
    "status_tags",
    "tag_follows",
    "status_edits",
];

async fn migrated() -> TestDatabase {
    let db = testing::database("timeline").await.unwrap();
    let config = Config::for_tests(
        &db.url,
        &testing::redis_url(),
        &testing::redis_prefix(),
        "http://127.0.0.1:1",
    );
    rookery_timeline::migrate(&config).await.unwrap();
    db
}

/// 2000 accounts with 100 statuses each (a fifth of them replies, a tenth reblogs, most
/// public), 100 000 favourites, bookmarks and pins, 500 hashtags on a third of the
/// statuses, hashtag follows. Loaded as the superuser with triggers and foreign keys off
/// (session_replication_role = replica), counters computed at the end. Deterministic.
async fn load(db: &TestDatabase) {
    let mut conn = PgConnection::connect(&db.admin_url).await.unwrap();
    let script = "
        SET search_path = timeline;
        SET session_replication_role = replica;
        SELECT setseed(0.42);
        INSERT INTO statuses (id, account_id, text, content, visibility, in_reply_to_id,
                              in_reply_to_account_id, reblog_of_id, tags)
        SELECT g,
               1 + g % 2000,
               CASE WHEN g % 10 = 0 THEN '' ELSE 'hello world number ' || g END,
               CASE WHEN g % 10 = 0 THEN '' ELSE '<p>hello</p>' END,
               CASE WHEN g % 7 = 0 THEN 3 WHEN g % 11 = 0 THEN 2 WHEN g % 13 = 0 THEN 4 ELSE 1 END,
               CASE WHEN g % 5 = 0 AND g > 100 THEN g - 37 END,
               CASE WHEN g % 5 = 0 AND g > 100 THEN 1 + (g - 37) % 2000 END,
               CASE WHEN g % 10 = 0 AND g > 100 THEN g - 51 END,
               CASE WHEN g % 3 = 0 THEN ARRAY['tag' || (g % 500)] ELSE '{}' END
        FROM generate_series(1, 200000) g;
        INSERT INTO tags (id, name) SELECT g, 'tag' || g FROM generate_series(0, 499) g;
        INSERT INTO status_tags (tag_id, status_id)
        SELECT g % 500, g FROM generate_series(3, 200000, 3) g;
        INSERT INTO favourites (id, account_id, status_id)
        SELECT g, 1 + g % 2000, 1 + (g::bigint * 7919) % 200000 FROM generate_series(1, 100000) g
        ON CONFLICT DO NOTHING;
        INSERT INTO bookmarks (id, account_id, status_id)
        SELECT g, 1 + g % 2000, 1 + (g::bigint * 104729) % 200000 FROM generate_series(1, 100000) g
        ON CONFLICT DO NOTHING;
        INSERT INTO pins (id, account_id, status_id)
        SELECT g, 1 + g % 2000, g FROM generate_series(1, 10000) g;
        INSERT INTO tag_follows (id, account_id, tag_id)
        SELECT g, 1 + g % 2000, g % 500 FROM generate_series(1, 20000) g
        ON CONFLICT DO NOTHING;
        UPDATE statuses s SET favourites_count = f.n
        FROM (SELECT status_id, count(*) n FROM favourites GROUP BY 1) f WHERE f.status_id = s.id;
        SET session_replication_role = origin;
    ";
    sqlx::raw_sql(AssertSqlSafe(script))
        .execute(&mut conn)
        .await
        .unwrap();
    // Outside the script's implicit transaction.
    sqlx::raw_sql(
        "VACUUM ANALYZE timeline.statuses, timeline.favourites, timeline.bookmarks, timeline.pins,
         timeline.tags, timeline.status_tags, timeline.tag_follows, timeline.status_edits",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn timeline_statements_are_served_by_indexes() {
    let db = migrated().await;
    load(&db).await;
    // As the service runs: the service role, whose search_path is `timeline`.
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

/// The viewer's flags are probed per status in every plan. With `EXISTS`, the generic
/// plan of the prepared statement hashed the subplans, reading all of the viewer's
/// favourites and statuses for every page: 100× slower for the heaviest users, who are
/// also the most active (found by the load harness).
#[tokio::test]
async fn viewer_flags_are_probed_per_status_even_in_the_generic_plan() {
    let db = migrated().await;
    load(&db).await;
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let (_, sql, args) = statements_for_plans()
        .into_iter()
        .find(|(name, _, _)| *name == "viewer flags")
        .unwrap();
    let plans = testing::explain(&mut conn, sql, args).await.unwrap();
    conn.close().await.unwrap();
    for ((label, _, _), plan) in testing::PLAN_VARIANTS.iter().zip(&plans) {
        assert!(!plan.contains("hashed SubPlan"), "{label}:\n{plan}");
        assert!(
            !plan.contains("Hash"),
            "{label}: a hash reads whole sets:\n{plan}"
        );
        assert!(!plan.contains("Seq Scan"), "{label}:\n{plan}");
        // One index probe per flag, keyed by the status of the row.
        let probes = plan
            .lines()
            .filter(|l| l.contains("Index Cond") && l.contains("= t.id"))
            .count();
        assert_eq!(probes, 4, "{label}:\n{plan}");
    }
}
