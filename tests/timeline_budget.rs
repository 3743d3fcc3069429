//! Query and RPC budgets of the home timeline, counted exactly: SQL statements from
//! `pg_stat_statements` (the users and timeline databases apart), gRPC calls from the
//! metrics of the gateway (calls it makes per route) and of the users service (calls it
//! serves per method; the timeline service is its only other caller here).
//!
//! One test in its own binary: metrics are process-global, so nothing else may run
//! requests in this process while it counts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rookery_e2e::{Stack, eventually, json_ok, spawn};
use rookery_kit::testing::StatementCounter;

const HOME: &str = "/api/v1/timelines/home";

/// Sum of the samples of `metric` whose labels contain `label`, from `/metrics`.
async fn metric_sum(stack: &Stack, metric: &str, label: &str) -> f64 {
    let text = stack.get("/metrics", None).await.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Calls the users service served, all methods.
async fn users_calls(stack: &Stack) -> f64 {
    metric_sum(
        stack,
        "grpc_server_duration_seconds_count",
        "method=\"rookery.users.v1.Users/",
    )
    .await
}

/// What one home timeline read cost.
#[derive(Debug, PartialEq)]
struct Cost {
    /// Statements in the timeline database.
    timeline: i64,
    /// Statements in the users database.
    users: i64,
    /// Calls from the gateway (to any service).
    gateway_calls: f64,
    /// Calls the users service served (from the gateway or the timeline service).
    users_calls: f64,
}

struct Counters {
    timeline: StatementCounter,
    users: StatementCounter,
}

async fn home_cost(stack: &Stack, counters: &Counters, token: &str, expect: usize) -> Cost {
    counters.timeline.reset().await.unwrap();
    let (t0, u0) = (
        counters.timeline.total().await.unwrap(),
        counters.users.total().await.unwrap(),
    );
    let g0 = metric_sum(
        stack,
        "gateway_downstream_calls_total",
        &format!("route=\"{HOME}\""),
    )
    .await;
    let c0 = users_calls(stack).await;
    let body = json_ok(stack.get(&format!("{HOME}?limit=40"), Some(token)).await).await;
    assert_eq!(body.as_array().unwrap().len(), expect, "{body}");
    let cost = Cost {
        timeline: counters.timeline.since(t0).await.unwrap(),
        users: counters.users.since(u0).await.unwrap(),
        gateway_calls: metric_sum(
            stack,
            "gateway_downstream_calls_total",
            &format!("route=\"{HOME}\""),
        )
        .await
            - g0,
        users_calls: users_calls(stack).await - c0,
    };
    if cost.timeline + cost.users > 4 {
        eprintln!(
            "timeline: {:#?}\nusers: {:#?}",
            counters.timeline.breakdown().await.unwrap(),
            counters.users.breakdown().await.unwrap()
        );
    }
    cost
}

/// Posts `n` statuses as `token`.
async fn post_many(stack: &Stack, token: &str, n: usize) {
    for i in 0..n {
        json_ok(
            stack
                .post_form(
                    "/api/v1/statuses",
                    Some(token),
                    &[("status", &format!("post {i}"))],
                )
                .await,
        )
        .await;
    }
}

/// Waits until `token`'s home timeline holds `n` statuses.
async fn wait_home(stack: &Stack, token: &str, n: usize) {
    eventually(Duration::from_secs(15), || async {
        let body = json_ok(stack.get(&format!("{HOME}?limit=40"), Some(token)).await).await;
        (body.as_array().unwrap().len() == n).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("home never reached {n} statuses"));
}

#[tokio::test]
async fn home_timeline_costs_the_same_for_2_and_40_statuses() {
    let stack = spawn().await;
    let counters = Counters {
        timeline: StatementCounter::new(&stack.timeline_db).await.unwrap(),
        users: StatementCounter::new(&stack.db).await.unwrap(),
    };
    let app = stack.create_app().await;
    let (many_reader, many_id) = stack.account(&app, "reader").await;
    let (few_reader, few_id) = stack.account(&app, "reader").await;
    let (rebuilt_reader, _) = stack.account(&app, "reader").await;
    let (prolific, prolific_id) = stack.account(&app, "prolific").await;
    let (quiet, quiet_id) = stack.account(&app, "quiet").await;
    json_ok(stack.act(&many_reader, &prolific_id, "follow", &[]).await).await;
    json_ok(stack.act(&few_reader, &quiet_id, "follow", &[]).await).await;
    // Reading makes the feeds live (rebuilt, empty): from now on posts are fanned out.
    for reader in [&many_reader, &few_reader] {
        wait_home(&stack, reader, 0).await;
    }
    post_many(&stack, &prolific, 40).await;
    post_many(&stack, &quiet, 2).await;
    // Fanned out: checked in Redis, since reading the timeline would warm the caches.
    feed_holds(&stack, &many_id, 40).await;
    feed_holds(&stack, &few_id, 2).await;
    json_ok(
        stack
            .act(&rebuilt_reader, &prolific_id, "follow", &[])
            .await,
    )
    .await;
    eventually(Duration::from_secs(15), || async {
        let counted = stack.account_json(&prolific_id).await["statuses_count"].as_i64() == Some(40);
        counted.then_some(())
    })
    .await
    .expect("statuses_count never reached 40");
    // Let the fan-out, counters and their delayed cache invalidations settle, so that
    // nothing in the background runs while we count.
    tokio::time::sleep(Duration::from_millis(2000)).await;

    // Cold: status bodies never read (one statement for all of them), authors not in the
    // gateway's cache (one batched call, one statement), the reader's flags (one
    // statement). Warm: everything from caches, one call from the gateway.
    let cold_40 = home_cost(&stack, &counters, &many_reader, 40).await;
    let cold_2 = home_cost(&stack, &counters, &few_reader, 2).await;
    let warm_40 = home_cost(&stack, &counters, &many_reader, 40).await;
    let warm_2 = home_cost(&stack, &counters, &few_reader, 2).await;
    let cold = Cost {
        timeline: 2,
        users: 1,
        gateway_calls: 2.0,
        users_calls: 1.0,
    };
    let warm = Cost {
        timeline: 0,
        users: 0,
        gateway_calls: 1.0,
        users_calls: 0.0,
    };
    assert_eq!(cold_40, cold, "cold home of 40");
    assert_eq!(cold_2, cold, "cold home of 2");
    assert_eq!(warm_40, warm, "warm home of 40");
    assert_eq!(warm_2, warm, "warm home of 2");

    // A reader whose feed was never built: the rebuild reads the follows (one streamed
    // call, one statement) and the filters (one call, one statement) from users, then one
    // bounded statement for the feed; bodies are warm now, flags one statement.
    let rebuilt = home_cost(&stack, &counters, &rebuilt_reader, 40).await;
    assert_eq!(
        rebuilt,
        Cost {
            timeline: 2,
            users: 2,
            gateway_calls: 1.0,
            users_calls: 2.0,
        },
        "home of 40 rebuilt from Postgres"
    );
}

/// Waits until the home feed of account `id` holds `n` statuses in Redis.
async fn feed_holds(stack: &Stack, id: &str, n: usize) {
    let client = redis::Client::open(stack.redis_url.as_str()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}:tl:{{{id}}}:feed", stack.redis_prefix);
    eventually(Duration::from_secs(15), || {
        let mut conn = conn.clone();
        let key = key.clone();
        async move {
            let len: usize = redis::cmd("ZCARD")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            (len == n).then_some(())
        }
    })
    .await
    .unwrap_or_else(|| panic!("feed {key} never held {n} statuses"));
}
