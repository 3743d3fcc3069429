//! Scaling past one machine, end to end:
//! - the whole stack on a Redis Cluster (`REDIS_CLUSTER_NODES`; the three-node cluster
//!   `deps.sh start redis-cluster` runs): feeds and their fan-out, the two-tier caches and
//!   their invalidations, events between services, notifications and unread counts, blocks;
//! - read replicas (`*_DATABASE_READ_URL`) that lag: lag-tolerant lists come from the
//!   replica, and caches are never filled from it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rookery_e2e::{Stack, eventually, json_ok, spawn_full, spawn_with_redis};
use rookery_kit::testing;
use serde_json::Value;

/// How long asynchronous effects (events, fan-out) may take.
const WAIT: Duration = Duration::from_secs(15);

async fn home(stack: &Stack, token: &str) -> Vec<Value> {
    json_ok(
        stack
            .get("/api/v1/timelines/home?limit=40", Some(token))
            .await,
    )
    .await
    .as_array()
    .unwrap()
    .clone()
}

/// Waits until `token`'s home timeline shows `status`; returns that entry.
async fn wait_in_home(stack: &Stack, token: &str, status: &str) -> Value {
    eventually(WAIT, || async {
        home(stack, token)
            .await
            .into_iter()
            .find(|s| s["id"] == status)
    })
    .await
    .unwrap_or_else(|| panic!("status {status} never reached the home timeline"))
}

async fn notification_types(stack: &Stack, token: &str) -> Vec<String> {
    json_ok(stack.get("/api/v1/notifications", Some(token)).await)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_social_day_on_a_redis_cluster() {
    let stack = spawn_with_redis(&testing::redis_cluster_nodes()).await;
    let app = stack.create_app().await;
    let (alice, alice_id) = stack.account(&app, "alice").await;
    let (bob, _) = stack.account(&app, "bob").await;
    let (carol, carol_id) = stack.account(&app, "carol").await;
    let bob_acct = json_ok(stack.verify(&bob).await).await["acct"]
        .as_str()
        .unwrap()
        .to_owned();

    for token in [&bob, &carol] {
        let rel = json_ok(stack.act(token, &alice_id, "follow", &[]).await).await;
        assert_eq!(rel["following"], true);
    }

    // Fan-out into two feeds (keys in different slots), rendered with cached accounts.
    let post = json_ok(
        stack
            .post_form(
                "/api/v1/statuses",
                Some(&alice),
                &[("status", &format!("hello @{bob_acct} #rookery"))],
            )
            .await,
    )
    .await;
    let id = post["id"].as_str().unwrap().to_owned();
    for token in [&bob, &carol] {
        let entry = wait_in_home(&stack, token, &id).await;
        assert_eq!(entry["account"]["id"], alice_id.as_str());
    }

    // A favourite: the counter and the viewer's flag (caches invalidated across
    // services), and a notification for alice from the event stream.
    let path = format!("/api/v1/statuses/{id}/favourite");
    let fav = json_ok(stack.post_form(&path, Some(&bob), &[]).await).await;
    assert_eq!(fav["favourited"], true);
    assert_eq!(fav["favourites_count"], 1);
    let seen = wait_in_home(&stack, &bob, &id).await;
    assert_eq!(seen["favourited"], true);
    assert_eq!(seen["favourites_count"], 1);
    eventually(WAIT, || async {
        let types = notification_types(&stack, &alice).await;
        (types == ["favourite", "follow", "follow"]).then_some(())
    })
    .await
    .expect("alice's notifications: a favourite and two follows");
    let unread = json_ok(
        stack
            .get("/api/v1/notifications/unread_count", Some(&alice))
            .await,
    )
    .await;
    assert_eq!(unread["count"], 3);
    // bob was mentioned.
    eventually(WAIT, || async {
        (notification_types(&stack, &bob).await == ["mention"]).then_some(())
    })
    .await
    .expect("bob's mention notification");

    // A profile change reaches every cached copy: the next home read shows the new name.
    json_ok(
        stack
            .patch_form(
                "/api/v1/accounts/update_credentials",
                &alice,
                &[("display_name", "Alice Cluster")],
            )
            .await,
    )
    .await;
    eventually(WAIT, || async {
        let entry = wait_in_home(&stack, &carol, &id).await;
        (entry["account"]["display_name"] == "Alice Cluster").then_some(())
    })
    .await
    .expect("carol's home timeline still shows the old display name");

    // Blocks are kept per feed (hash-tagged sets next to the feed): once alice blocks
    // carol, carol's home timeline no longer shows alice.
    json_ok(stack.act(&alice, &carol_id, "block", &[]).await).await;
    eventually(WAIT, || async {
        let entries = home(&stack, &carol).await;
        (!entries.iter().any(|s| s["id"] == id.as_str())).then_some(())
    })
    .await
    .expect("a blocked account's post stayed in the blocker's follower's home");
    // bob still sees it.
    wait_in_home(&stack, &bob, &id).await;
}

/// A "replica" that never catches up: an empty copy of `service`'s schema.
async fn stale_replica(service: &str) -> String {
    let db = testing::database(service).await.unwrap();
    let prefix = testing::redis_prefix();
    match service {
        "users" => rookery_users::migrate(&rookery_users::Config::for_tests(
            &db.url,
            &testing::redis_url(),
            &prefix,
        ))
        .await
        .unwrap(),
        "timeline" => rookery_timeline::migrate(&rookery_timeline::Config::for_tests(
            &db.url,
            &testing::redis_url(),
            &prefix,
            "http://127.0.0.1:1",
        ))
        .await
        .unwrap(),
        other => panic!("no replica for {other}"),
    }
    db.url
}

#[tokio::test]
async fn lagging_replicas_serve_lists_and_never_fill_caches() {
    let users_replica = stale_replica("users").await;
    let timeline_replica = stale_replica("timeline").await;
    let stack = spawn_full(
        &testing::redis_url(),
        |users| users.database.read_url = Some(users_replica),
        |timeline| timeline.database.read_url = Some(timeline_replica),
        |_| {},
    )
    .await;
    let app = stack.create_app().await;
    let (alice, alice_id) = stack.account(&app, "alice").await;

    // The account exists only on the primary: lookups by id fill the accounts cache from
    // the primary, so a fresh account is found (and cached) at once.
    let account = stack.account_json(&alice_id).await;
    assert_eq!(account["id"], alice_id.as_str());
    let post = json_ok(
        stack
            .post_form("/api/v1/statuses", Some(&alice), &[("status", "fresh")])
            .await,
    )
    .await;
    let id = post["id"].as_str().unwrap();
    // The status itself (a cache fill) comes from the primary...
    let fetched = json_ok(stack.get(&format!("/api/v1/statuses/{id}"), None).await).await;
    assert_eq!(fetched["content"], "<p>fresh</p>");
    assert_eq!(fetched["account"]["id"], alice_id.as_str());
    // ...while the public timeline, a lag-tolerant list, is read from the replica, which
    // has not seen it.
    let public = json_ok(stack.get("/api/v1/timelines/public", None).await).await;
    assert_eq!(public, serde_json::json!([]));
}
