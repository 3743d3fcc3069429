//! Query and RPC budgets of a page of notifications, counted exactly: a page of 40 costs
//! what a page of 2 costs. SQL statements from `pg_stat_statements` (the notifications,
//! timeline and users databases apart), gRPC calls from the gateway's metrics (calls it
//! makes per route).
//!
//! One test in its own binary: metrics are process-global, so nothing else may run
//! requests in this process while it counts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rookery_e2e::{Stack, eventually, json_ok, spawn};
use rookery_kit::testing::StatementCounter;

/// Sum of the samples of `metric` whose labels contain `label`, from `/metrics`.
async fn metric_sum(stack: &Stack, metric: &str, label: &str) -> f64 {
    let text = stack.get("/metrics", None).await.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What one page read cost.
#[derive(Debug, PartialEq)]
struct Cost {
    notifications: i64,
    timeline: i64,
    users: i64,
    /// Calls from the gateway (to any service) for the route.
    gateway_calls: f64,
}

struct Counters {
    notifications: StatementCounter,
    timeline: StatementCounter,
    users: StatementCounter,
}

/// Reads `path` (a route of `route`) as `token`; `entries` counts what it answered.
async fn cost(
    stack: &Stack,
    counters: &Counters,
    route: &str,
    path: &str,
    token: &str,
    expect: usize,
) -> Cost {
    let (n0, t0, u0) = (
        counters.notifications.total().await.unwrap(),
        counters.timeline.total().await.unwrap(),
        counters.users.total().await.unwrap(),
    );
    let label = format!("route=\"{route}\"");
    let g0 = metric_sum(stack, "gateway_downstream_calls_total", &label).await;
    let body = json_ok(stack.get(path, Some(token)).await).await;
    let entries = match body.get("notification_groups") {
        Some(groups) => groups.as_array().unwrap().len(),
        None => body.as_array().unwrap().len(),
    };
    assert_eq!(entries, expect, "{body}");
    Cost {
        notifications: counters.notifications.since(n0).await.unwrap(),
        timeline: counters.timeline.since(t0).await.unwrap(),
        users: counters.users.since(u0).await.unwrap(),
        gateway_calls: metric_sum(stack, "gateway_downstream_calls_total", &label).await - g0,
    }
}

/// Waits until `account` has `n` notifications, asking the database (reading them
/// through the API would warm the caches being measured).
async fn stored(stack: &Stack, account: &str, n: i64) {
    let pool = sqlx::PgPool::connect(&stack.notifications_db.url)
        .await
        .unwrap();
    let account: i64 = account.parse().unwrap();
    eventually(Duration::from_secs(15), || {
        let pool = pool.clone();
        async move {
            let have: i64 =
                sqlx::query_scalar("SELECT count(*) FROM notifications WHERE account_id = $1")
                    .bind(account)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            (have == n).then_some(())
        }
    })
    .await
    .unwrap_or_else(|| panic!("{account} never had {n} notifications"));
}

#[tokio::test]
async fn a_page_of_40_costs_what_a_page_of_2_costs() {
    let stack = spawn().await;
    let counters = Counters {
        notifications: StatementCounter::new(&stack.notifications_db)
            .await
            .unwrap(),
        timeline: StatementCounter::new(&stack.timeline_db).await.unwrap(),
        users: StatementCounter::new(&stack.db).await.unwrap(),
    };
    let app = stack.create_app().await;
    let (many, many_id) = stack.account(&app, "many").await;
    let (few, few_id) = stack.account(&app, "few").await;
    let acct = |id: String| {
        let stack = &stack;
        async move {
            stack.account_json(&id).await["acct"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (many_acct, few_acct) = (acct(many_id.clone()).await, acct(few_id.clone()).await);
    let target = json_ok(
        stack
            .post_form("/api/v1/statuses", Some(&many), &[("status", "fav me")])
            .await,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // 20 senders: each mentions `many` (20 statuses) and favourites one status of it.
    for i in 0..20 {
        let (token, _) = stack.account(&app, &format!("sender{i}")).await;
        json_ok(
            stack
                .post_form(
                    "/api/v1/statuses",
                    Some(&token),
                    &[("status", &format!("@{many_acct} number {i}"))],
                )
                .await,
        )
        .await;
        json_ok(
            stack
                .post_form(
                    &format!("/api/v1/statuses/{target}/favourite"),
                    Some(&token),
                    &[],
                )
                .await,
        )
        .await;
    }
    // Both readers have posted, so the timeline service knows both their filters (blocks
    // and mutes, read once per reader) before anything is counted.
    json_ok(
        stack
            .post_form("/api/v1/statuses", Some(&few), &[("status", "hello")])
            .await,
    )
    .await;
    let (other, _) = stack.account(&app, "other").await;
    json_ok(
        stack
            .post_form(
                "/api/v1/statuses",
                Some(&other),
                &[("status", &format!("@{few_acct} hi"))],
            )
            .await,
    )
    .await;
    json_ok(stack.act(&other, &few_id, "follow", &[]).await).await;
    stored(&stack, &many_id, 40).await;
    stored(&stack, &few_id, 2).await;
    // Let counters and their delayed cache invalidations settle.
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let v1 = "/api/v1/notifications";
    let page = "/api/v1/notifications?limit=40";
    // Cold: one call to notifications (one statement), one batched call to timeline for
    // every status (bodies and the reader's flags: two statements), one batched call to
    // users for every sender and author (one statement).
    let cold_40 = cost(&stack, &counters, v1, page, &many, 40).await;
    let cold_2 = cost(&stack, &counters, v1, page, &few, 2).await;
    let cold = Cost {
        notifications: 1,
        timeline: 2,
        users: 1,
        gateway_calls: 3.0,
    };
    assert_eq!(cold_40, cold, "cold page of 40");
    assert_eq!(cold_2, cold, "cold page of 2");
    // Warm: statuses and flags from timeline's caches, accounts from the gateway's.
    let warm = Cost {
        notifications: 1,
        timeline: 0,
        users: 0,
        gateway_calls: 2.0,
    };
    assert_eq!(
        cost(&stack, &counters, v1, page, &many, 40).await,
        warm,
        "warm page of 40"
    );
    assert_eq!(
        cost(&stack, &counters, v1, page, &few, 2).await,
        warm,
        "warm page of 2"
    );

    // Grouped: two statements (the groups' newest notifications, then the groups' data)
    // whatever the groups hold; 21 groups of 40 notifications cost what 2 groups cost.
    let v2 = "/api/v2/notifications";
    let grouped = Cost {
        notifications: 2,
        timeline: 0,
        users: 0,
        gateway_calls: 2.0,
    };
    assert_eq!(
        cost(&stack, &counters, v2, v2, &many, 21).await,
        grouped,
        "groups of 40"
    );
    assert_eq!(
        cost(&stack, &counters, v2, v2, &few, 2).await,
        grouped,
        "groups of 2"
    );
}
