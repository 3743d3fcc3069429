//! Query and RPC budgets of the social graph, counted exactly: SQL statements from
//! `pg_stat_statements` (per test database), gRPC calls per request from the gateway's
//! `gateway_downstream_calls_total` counter.
//!
//! One test in its own binary: metrics are process-global, so nothing else may run
//! requests in this process while it counts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rookery_e2e::{Stack, json_ok, spawn};
use rookery_kit::testing::StatementCounter;
use rookery_proto::users::v1::{self as pb, users_client::UsersClient};

/// Sum of `gateway_downstream_calls_total` for `route` on the gateway's `/metrics`.
async fn downstream_calls(stack: &Stack, route: &str) -> f64 {
    let text = stack.get("/metrics", None).await.text().await.unwrap();
    let label = format!("route=\"{route}\"");
    text.lines()
        .filter(|l| l.starts_with("gateway_downstream_calls_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What one request cost: SQL statements, downstream calls, and the statements run (to
/// explain a failed assertion).
#[derive(Debug)]
struct Cost {
    statements: i64,
    calls: f64,
    breakdown: Vec<(String, i64)>,
}

impl Cost {
    fn counts(&self) -> (i64, f64) {
        (self.statements, self.calls)
    }
}

/// Runs one GET and returns what it cost.
async fn cost(
    stack: &Stack,
    counter: &StatementCounter,
    route: &str,
    path: &str,
    token: &str,
) -> Cost {
    counter.reset().await.unwrap();
    let statements = counter.total().await.unwrap();
    let calls = downstream_calls(stack, route).await;
    let res = stack.get(path, Some(token)).await;
    let body = json_ok(res).await;
    assert!(body.is_array(), "{body}");
    Cost {
        statements: counter.since(statements).await.unwrap(),
        calls: downstream_calls(stack, route).await - calls,
        breakdown: counter.breakdown().await.unwrap(),
    }
}

#[tokio::test]
async fn graph_reads_cost_constant_statements_and_one_call() {
    let stack = spawn().await;
    let counter = StatementCounter::new(&stack.db).await.unwrap();
    let app = stack.create_app().await;
    let (viewer, _) = stack.account(&app, "viewer").await;
    let (_, star) = stack.account(&app, "star").await;
    let (_, small) = stack.account(&app, "small").await;
    let mut fans = Vec::new();
    for i in 0..40 {
        let (token, id) = stack.account(&app, "fan").await;
        json_ok(stack.act(&token, &star, "follow", &[]).await).await;
        if i < 2 {
            json_ok(stack.act(&token, &small, "follow", &[]).await).await;
        }
        fans.push(id);
    }
    // The viewer's token is resolved and cached: what follows is the request itself.
    json_ok(stack.verify(&viewer).await).await;
    // Each follow invalidates both accounts now and once more 750 ms later (against a
    // reader that raced the write); let those settle so "warm" below means warm.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    let route = "/api/v1/accounts/relationships";
    let one = cost(
        &stack,
        &counter,
        route,
        &format!("{route}?id[]={}", fans[0]),
        &viewer,
    )
    .await;
    let query: Vec<String> = fans.iter().map(|id| format!("id[]={id}")).collect();
    let forty = cost(
        &stack,
        &counter,
        route,
        &format!("{route}?{}", query.join("&")),
        &viewer,
    )
    .await;
    assert_eq!(
        one.counts(),
        (1, 1.0),
        "relationships for 1 id: {:#?}",
        one.breakdown
    );
    assert_eq!(
        forty.counts(),
        (1, 1.0),
        "relationships for 40 ids: {:#?}",
        forty.breakdown
    );

    // Followers pages: the fans' cached accounts were invalidated when they followed, so
    // the first read of each page is cold (page query + one batched account query), the
    // second warm (page query only), whatever the page size.
    let route = "/api/v1/accounts/{id}/followers";
    let page_40 = format!("/api/v1/accounts/{star}/followers?limit=40");
    let page_2 = format!("/api/v1/accounts/{small}/followers?limit=40");
    let cold_40 = cost(&stack, &counter, route, &page_40, &viewer).await;
    let cold_2 = cost(&stack, &counter, route, &page_2, &viewer).await;
    let warm_40 = cost(&stack, &counter, route, &page_40, &viewer).await;
    let warm_2 = cost(&stack, &counter, route, &page_2, &viewer).await;
    assert_eq!(
        cold_40.counts(),
        (2, 1.0),
        "cold page of 40: {:#?}",
        cold_40.breakdown
    );
    assert_eq!(
        cold_2.counts(),
        (2, 1.0),
        "cold page of 2: {:#?}",
        cold_2.breakdown
    );
    assert_eq!(
        warm_40.counts(),
        (1, 1.0),
        "warm page of 40: {:#?}",
        warm_40.breakdown
    );
    assert_eq!(
        warm_2.counts(),
        (1, 1.0),
        "warm page of 2: {:#?}",
        warm_2.breakdown
    );

    // GetAccounts for 40 ids nobody has read yet: one statement.
    let mut db = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&stack.db.admin_url)
            .await
            .unwrap()
    };
    let fresh: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO users.accounts (username)
         SELECT 'cold' || g || '_' || substr(md5(random()::text), 1, 6)
         FROM generate_series(1, 40) g RETURNING id",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let channel = tonic::transport::Channel::from_shared(stack.users_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut users = UsersClient::new(channel);
    let before = counter.total().await.unwrap();
    let accounts = users
        .get_accounts(pb::GetAccountsRequest { ids: fresh.clone() })
        .await
        .unwrap()
        .into_inner()
        .accounts;
    assert_eq!(accounts.len(), 40);
    assert_eq!(
        counter.since(before).await.unwrap(),
        1,
        "cold GetAccounts(40)"
    );
    let before = counter.total().await.unwrap();
    users
        .get_accounts(pb::GetAccountsRequest { ids: fresh })
        .await
        .unwrap();
    assert_eq!(
        counter.since(before).await.unwrap(),
        0,
        "warm GetAccounts(40)"
    );
}
