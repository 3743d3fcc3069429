//! Redis is a cache and an event bus, not a dependency of correctness: with it killed,
//! reads and writes still succeed (from Postgres), and the events written meanwhile are
//! published once it is back. Runs a private `redis-server` so killing it harms no
//! other test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{process::Stdio, time::Duration};

use rookery_e2e::{eventually, json_ok, spawn_with_redis, username};
use tokio::process::{Child, Command};

async fn start_redis(port: u16) -> Child {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server must be installed (make test installs it)");
    let up = eventually(Duration::from_secs(5), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    assert!(up.is_some(), "private redis-server did not start");
    child
}

#[tokio::test]
async fn redis_down_reads_and_writes_still_work_and_events_follow_later() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut redis = start_redis(port).await;
    let stack = spawn_with_redis(&format!("redis://127.0.0.1:{port}/0")).await;
    let app = stack.create_app().await;
    let name = username("down");
    let token = stack.register(&app, &name).await;
    let me = json_ok(stack.verify(&token).await).await;
    let id = me["id"].as_str().unwrap().to_owned();

    redis.kill().await.unwrap();

    // A token the gateway has never seen: token cache miss, account cache L2 unreachable.
    let login = json_ok(
        stack
            .log_in(&app, &name, "correct horse", "read write")
            .await,
    )
    .await;
    let fresh = login["access_token"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    let me = json_ok(stack.verify(&fresh).await).await;
    assert_eq!(me["username"], name.as_str());
    // Bound on a fault path, not a benchmark: every Redis call has a 100 ms budget.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "reads stall without Redis: {:?}",
        started.elapsed()
    );

    // Writes succeed, and are visible at once through this gateway.
    let res = stack
        .patch_form(
            "/api/v1/accounts/update_credentials",
            &fresh,
            &[("display_name", "Written while Redis was down")],
        )
        .await;
    json_ok(res).await;
    let me = json_ok(stack.verify(&fresh).await).await;
    assert_eq!(me["display_name"], "Written while Redis was down");

    // Statuses too: posting, reading one back (the viewer's filters are cached in Redis:
    // loaded instead), and the home timeline (its feed lives in Redis: read from Postgres).
    let posted = json_ok(
        stack
            .post_form(
                "/api/v1/statuses",
                Some(&fresh),
                &[("status", "Posted while Redis was down")],
            )
            .await,
    )
    .await;
    let status_id = posted["id"].as_str().unwrap().to_owned();
    let shown = json_ok(
        stack
            .get(&format!("/api/v1/statuses/{status_id}"), Some(&fresh))
            .await,
    )
    .await;
    assert_eq!(shown["id"], status_id.as_str());
    let home = json_ok(stack.get("/api/v1/timelines/home", Some(&fresh)).await).await;
    assert!(
        home.as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == status_id.as_str()),
        "the home timeline without Redis lacks the new status: {home}"
    );

    // Redis comes back (empty): the outbox relay publishes what it held.
    let _redis = start_redis(port).await;
    let events = eventually(Duration::from_secs(15), || async {
        let events = stack.user_events().await;
        events
            .iter()
            .any(|(t, a)| t == "account.updated" && *a == id)
            .then_some(events)
    })
    .await;
    assert!(
        events.is_some(),
        "account.updated written during the outage was never published"
    );
}
