//! The social graph end to end through the gateway: follows, follow requests, blocks,
//! mutes, relationships, lists with cursor pagination, search, counters, events, rate
//! limits, races, and the batch/streaming RPCs other services use.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{collections::HashSet, time::Duration};

use rookery_e2e::{Stack, eventually, json_error, json_ok, spawn, spawn_configured, username};
use rookery_proto::users::v1::{self as pb, users_client::UsersClient};
use serde_json::Value;

/// `followers_count` and `following_count` of an account, from the public API.
async fn counts(stack: &Stack, id: &str) -> (i64, i64) {
    let a = stack.account_json(id).await;
    (
        a["followers_count"].as_i64().unwrap(),
        a["following_count"].as_i64().unwrap(),
    )
}

async fn relationship(stack: &Stack, token: &str, id: &str) -> Value {
    let res = stack
        .get(
            &format!("/api/v1/accounts/relationships?id[]={id}"),
            Some(token),
        )
        .await;
    let list = json_ok(res).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    list[0].clone()
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The `rel="next"` / `rel="prev"` target of a `Link` header, as a path.
fn link(res: &reqwest::Response, rel: &str) -> Option<String> {
    let header = res.headers().get("link")?.to_str().unwrap().to_owned();
    header.split(", ").find_map(|part| {
        let (url, r) = part.split_once("; ")?;
        (r == format!("rel=\"{rel}\"")).then(|| {
            let url = url.trim_start_matches('<').trim_end_matches('>');
            let parsed = url::Url::parse(url).unwrap();
            format!("{}?{}", parsed.path(), parsed.query().unwrap_or(""))
        })
    })
}

#[tokio::test]
async fn follow_unfollow_and_counters() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (alice, alice_id) = stack.account(&app, "alice").await;
    let (bob, bob_id) = stack.account(&app, "bob").await;
    let replica = stack.second_gateway().await;
    // The other replica has bob cached before the follow...
    json_ok(
        stack
            .get_at(&replica, &format!("/api/v1/accounts/{bob_id}"), None)
            .await,
    )
    .await;

    let rel = json_ok(stack.act(&alice, &bob_id, "follow", &[]).await).await;
    assert_eq!(rel["id"], bob_id.as_str());
    assert_eq!(rel["following"], true);
    assert_eq!(rel["showing_reblogs"], true);
    assert_eq!(rel["notifying"], false);
    assert_eq!(rel["requested"], false);
    assert_eq!(rel["languages"], Value::Null);
    assert_eq!(counts(&stack, &alice_id).await, (0, 1));
    assert_eq!(counts(&stack, &bob_id).await, (1, 0));
    // ...and sees the new counter without waiting for its TTL.
    let seen = eventually(Duration::from_secs(5), || async {
        let res = stack
            .get_at(&replica, &format!("/api/v1/accounts/{bob_id}"), None)
            .await;
        let a = json_ok(res).await;
        (a["followers_count"] == 1).then_some(())
    })
    .await;
    assert!(seen.is_some(), "replica kept a stale followers_count");

    // Following again changes options only; counters stay exact.
    let rel = json_ok(
        stack
            .act(
                &alice,
                &bob_id,
                "follow",
                &[
                    ("reblogs", "false"),
                    ("notify", "true"),
                    ("languages[]", "en"),
                ],
            )
            .await,
    )
    .await;
    assert_eq!(
        (&rel["showing_reblogs"], &rel["notifying"]),
        (&Value::Bool(false), &Value::Bool(true))
    );
    assert_eq!(rel["languages"], serde_json::json!(["en"]));
    assert_eq!(counts(&stack, &bob_id).await, (1, 0));

    // Bob's view of the same pair.
    let seen_by_bob = relationship(&stack, &bob, &alice_id).await;
    assert_eq!(seen_by_bob["followed_by"], true);
    assert_eq!(seen_by_bob["following"], false);

    let followers = json_ok(
        stack
            .get(&format!("/api/v1/accounts/{bob_id}/followers"), None)
            .await,
    )
    .await;
    assert_eq!(ids(&followers), vec![alice_id.clone()]);
    let following = json_ok(
        stack
            .get(
                &format!("/api/v1/accounts/{alice_id}/following"),
                Some(&bob),
            )
            .await,
    )
    .await;
    assert_eq!(ids(&following), vec![bob_id.clone()]);
    assert_eq!(following[0]["followers_count"], 1);

    let rel = json_ok(stack.act(&alice, &bob_id, "unfollow", &[]).await).await;
    assert_eq!(rel["following"], false);
    assert_eq!(counts(&stack, &alice_id).await, (0, 0));
    assert_eq!(counts(&stack, &bob_id).await, (0, 0));
    // Unfollowing again is harmless.
    json_ok(stack.act(&alice, &bob_id, "unfollow", &[]).await).await;
    assert_eq!(counts(&stack, &bob_id).await, (0, 0));

    // Removing a follower.
    json_ok(stack.act(&bob, &alice_id, "follow", &[]).await).await;
    assert_eq!(counts(&stack, &alice_id).await, (1, 0));
    let rel = json_ok(
        stack
            .act(&alice, &bob_id, "remove_from_followers", &[])
            .await,
    )
    .await;
    assert_eq!(rel["followed_by"], false);
    assert_eq!(counts(&stack, &alice_id).await, (0, 0));
    assert_eq!(counts(&stack, &bob_id).await, (0, 0));

    let events = stack.user_events().await;
    let topics: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics.iter().filter(|t| **t == "follow.created").count(),
        2,
        "{topics:?}"
    );
    assert_eq!(
        topics.iter().filter(|t| **t == "follow.deleted").count(),
        2,
        "{topics:?}"
    );
    assert_eq!(
        topics.iter().filter(|t| **t == "follow.updated").count(),
        1,
        "{topics:?}"
    );
}

#[tokio::test]
async fn locked_accounts_get_follow_requests() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (carol, carol_id) = stack.account(&app, "carol").await;
    let (alice, alice_id) = stack.account(&app, "alice").await;
    let (dave, dave_id) = stack.account(&app, "dave").await;
    let (erin, erin_id) = stack.account(&app, "erin").await;
    json_ok(
        stack
            .patch_form(
                "/api/v1/accounts/update_credentials",
                &carol,
                &[("locked", "true")],
            )
            .await,
    )
    .await;

    for token in [&alice, &dave, &erin] {
        let rel = json_ok(stack.act(token, &carol_id, "follow", &[]).await).await;
        assert_eq!(
            (rel["following"].clone(), rel["requested"].clone()),
            (Value::Bool(false), Value::Bool(true))
        );
    }
    assert_eq!(counts(&stack, &carol_id).await, (0, 0));
    let me = json_ok(stack.verify(&carol).await).await;
    assert_eq!(me["source"]["follow_requests_count"], 3);
    let requests = json_ok(stack.get("/api/v1/follow_requests", Some(&carol)).await).await;
    assert_eq!(
        ids(&requests),
        vec![erin_id.clone(), dave_id.clone(), alice_id.clone()]
    );
    assert_eq!(
        relationship(&stack, &carol, &alice_id).await["requested_by"],
        true
    );

    let rel = json_ok(
        stack
            .post_form(
                &format!("/api/v1/follow_requests/{alice_id}/authorize"),
                Some(&carol),
                &[],
            )
            .await,
    )
    .await;
    assert_eq!(rel["followed_by"], true);
    assert_eq!(
        relationship(&stack, &alice, &carol_id).await["following"],
        true
    );
    let rel = json_ok(
        stack
            .post_form(
                &format!("/api/v1/follow_requests/{dave_id}/reject"),
                Some(&carol),
                &[],
            )
            .await,
    )
    .await;
    assert_eq!(
        (rel["followed_by"].clone(), rel["requested_by"].clone()),
        (Value::Bool(false), Value::Bool(false))
    );
    // Answering a request that is not there.
    json_error(
        stack
            .post_form(
                &format!("/api/v1/follow_requests/{dave_id}/authorize"),
                Some(&carol),
                &[],
            )
            .await,
        404,
    )
    .await;
    assert_eq!(counts(&stack, &carol_id).await, (1, 0));
    assert_eq!(
        json_ok(stack.verify(&carol).await).await["source"]["follow_requests_count"],
        1
    );

    // Unlocking accepts the rest (erin).
    json_ok(
        stack
            .patch_form(
                "/api/v1/accounts/update_credentials",
                &carol,
                &[("locked", "false")],
            )
            .await,
    )
    .await;
    assert_eq!(
        relationship(&stack, &erin, &carol_id).await["following"],
        true
    );
    assert_eq!(counts(&stack, &carol_id).await, (2, 0));
    assert_eq!(counts(&stack, &erin_id).await, (0, 1));
    assert!(
        json_ok(stack.get("/api/v1/follow_requests", Some(&carol)).await)
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    let topics: Vec<String> = stack
        .user_events()
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(
        topics
            .iter()
            .filter(|t| *t == "follow_request.created")
            .count(),
        3
    );
    // Accepted (alice, erin) or rejected (dave): every request is gone.
    assert_eq!(
        topics
            .iter()
            .filter(|t| *t == "follow_request.deleted")
            .count(),
        3
    );
    assert_eq!(topics.iter().filter(|t| *t == "follow.created").count(), 2);
}

#[tokio::test]
async fn blocks_sever_follows_and_forbid_new_ones() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (alice, alice_id) = stack.account(&app, "alice").await;
    let (bob, bob_id) = stack.account(&app, "bob").await;
    json_ok(stack.act(&alice, &bob_id, "follow", &[]).await).await;
    json_ok(stack.act(&bob, &alice_id, "follow", &[]).await).await;
    assert_eq!(counts(&stack, &alice_id).await, (1, 1));

    let rel = json_ok(stack.act(&alice, &bob_id, "block", &[]).await).await;
    assert_eq!(rel["blocking"], true);
    assert_eq!(
        (rel["following"].clone(), rel["followed_by"].clone()),
        (Value::Bool(false), Value::Bool(false))
    );
    assert_eq!(counts(&stack, &alice_id).await, (0, 0));
    assert_eq!(counts(&stack, &bob_id).await, (0, 0));
    assert_eq!(
        relationship(&stack, &bob, &alice_id).await["blocked_by"],
        true
    );

    // Neither side can follow while the block stands; nothing changes.
    json_error(stack.act(&bob, &alice_id, "follow", &[]).await, 403).await;
    json_error(stack.act(&alice, &bob_id, "follow", &[]).await, 403).await;
    assert_eq!(counts(&stack, &alice_id).await, (0, 0));
    // A blocked viewer does not see the blocker's network.
    let (carol, carol_id) = stack.account(&app, "carol").await;
    json_ok(stack.act(&carol, &alice_id, "follow", &[]).await).await;
    let seen = json_ok(
        stack
            .get(
                &format!("/api/v1/accounts/{alice_id}/followers"),
                Some(&bob),
            )
            .await,
    )
    .await;
    assert!(seen.as_array().unwrap().is_empty());
    let seen = json_ok(
        stack
            .get(&format!("/api/v1/accounts/{alice_id}/followers"), None)
            .await,
    )
    .await;
    assert_eq!(ids(&seen), vec![carol_id]);

    let blocks = json_ok(stack.get("/api/v1/blocks", Some(&alice)).await).await;
    assert_eq!(ids(&blocks), vec![bob_id.clone()]);
    let rel = json_ok(stack.act(&alice, &bob_id, "unblock", &[]).await).await;
    assert_eq!(rel["blocking"], false);
    json_ok(stack.act(&bob, &alice_id, "follow", &[]).await).await;
    assert_eq!(counts(&stack, &alice_id).await, (2, 0));
    let topics: Vec<String> = stack
        .user_events()
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert!(topics.contains(&"block.created".to_owned()), "{topics:?}");
    assert!(topics.contains(&"block.deleted".to_owned()), "{topics:?}");
}

#[tokio::test]
async fn mutes_with_duration_and_notifications() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (alice, _) = stack.account(&app, "alice").await;
    let (_, bob_id) = stack.account(&app, "bob").await;
    let (_, carol_id) = stack.account(&app, "carol").await;
    let (_, dave_id) = stack.account(&app, "dave").await;

    // JSON clients send numbers and booleans.
    let mute_json = |id: &str, body: Value| {
        stack
            .http
            .post(format!("{}/api/v1/accounts/{id}/mute", stack.base))
            .bearer_auth(&alice)
            .json(&body)
            .send()
    };
    let res = mute_json(
        &bob_id,
        serde_json::json!({"notifications": false, "duration": 3600}),
    )
    .await
    .unwrap();
    let rel = json_ok(res).await;
    assert_eq!(rel["muting"], true);
    assert_eq!(rel["muting_notifications"], false);
    let expires =
        chrono::DateTime::parse_from_rfc3339(rel["muting_expires_at"].as_str().unwrap()).unwrap();
    let left = expires.timestamp() - chrono::Utc::now().timestamp();
    assert!((3500..=3600).contains(&left), "expires in {left}s");
    let rel = json_ok(stack.act(&alice, &carol_id, "mute", &[]).await).await;
    assert_eq!(
        (
            rel["muting_notifications"].clone(),
            rel["muting_expires_at"].clone()
        ),
        (Value::Bool(true), Value::Null)
    );

    let mutes = json_ok(stack.get("/api/v1/mutes", Some(&alice)).await).await;
    assert_eq!(ids(&mutes), vec![carol_id.clone(), bob_id.clone()]);
    assert_eq!(mutes[0]["mute_expires_at"], Value::Null);
    assert!(mutes[1]["mute_expires_at"].is_string());

    let rel = json_ok(stack.act(&alice, &bob_id, "unmute", &[]).await).await;
    assert_eq!(rel["muting"], false);
    assert_eq!(
        ids(&json_ok(stack.get("/api/v1/mutes", Some(&alice)).await).await),
        vec![carol_id.clone()]
    );

    // A mute that ran out is no mute; muting again is a new, newest mute.
    let res = mute_json(&dave_id, serde_json::json!({"duration": 1}))
        .await
        .unwrap();
    json_ok(res).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        relationship(&stack, &alice, &dave_id).await["muting"],
        false
    );
    assert_eq!(
        ids(&json_ok(stack.get("/api/v1/mutes", Some(&alice)).await).await),
        vec![carol_id.clone()]
    );
    json_ok(stack.act(&alice, &dave_id, "mute", &[]).await).await;
    assert_eq!(
        ids(&json_ok(stack.get("/api/v1/mutes", Some(&alice)).await).await),
        vec![dave_id, carol_id]
    );
    let topics: Vec<String> = stack
        .user_events()
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(topics.iter().filter(|t| *t == "mute.created").count(), 4);
    assert_eq!(topics.iter().filter(|t| *t == "mute.deleted").count(), 1);
}

#[tokio::test]
async fn expired_mutes_are_swept_and_announced() {
    let stack = spawn_configured(&rookery_kit::testing::redis_url(), |c| {
        c.mute_sweep = Duration::from_millis(100);
    })
    .await;
    let app = stack.create_app().await;
    let (alice, _) = stack.account(&app, "alice").await;
    let (_, bob_id) = stack.account(&app, "bob").await;
    let (_, carol_id) = stack.account(&app, "carol").await;
    json_ok(
        stack
            .act(&alice, &bob_id, "mute", &[("duration", "1")])
            .await,
    )
    .await;
    json_ok(stack.act(&alice, &carol_id, "mute", &[]).await).await;
    let swept = eventually(Duration::from_secs(5), || async {
        let deleted = stack
            .user_events()
            .await
            .into_iter()
            .filter(|(t, _)| t == "mute.deleted")
            .count();
        (deleted > 0).then_some(deleted)
    })
    .await;
    assert_eq!(swept, Some(1), "the expired mute was not announced once");
    assert_eq!(relationship(&stack, &alice, &bob_id).await["muting"], false);
    // The mute without an end stays.
    assert_eq!(
        ids(&json_ok(stack.get("/api/v1/mutes", Some(&alice)).await).await),
        vec![carol_id]
    );
}

#[tokio::test]
async fn followers_paginate_by_cursor_with_link_headers() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (_, star_id) = stack.account(&app, "star").await;
    let mut followers = Vec::new();
    for _ in 0..5 {
        let (token, id) = stack.account(&app, "fan").await;
        json_ok(stack.act(&token, &star_id, "follow", &[]).await).await;
        followers.push(id);
    }
    followers.reverse(); // newest follow first

    let mut seen = Vec::new();
    let mut next = Some(format!("/api/v1/accounts/{star_id}/followers?limit=2"));
    let mut pages = 0;
    while let Some(path) = next {
        let res = stack.get(&path, None).await;
        next = link(&res, "next");
        let page = json_ok(res).await;
        seen.extend(ids(&page));
        pages += 1;
        assert!(pages <= 4, "pagination does not end");
    }
    assert_eq!(seen, followers);
    assert_eq!(pages, 3, "2 + 2 + 1, the short page has no next link");

    // prev (min_id) from the last page gives the entries right before it.
    let res = stack
        .get(
            &format!("/api/v1/accounts/{star_id}/followers?limit=2"),
            None,
        )
        .await;
    let next = link(&res, "next").unwrap();
    let res = stack.get(&next, None).await;
    let prev = link(&res, "prev").unwrap();
    assert!(prev.contains("min_id="), "{prev}");
    let back = json_ok(stack.get(&prev, None).await).await;
    assert_eq!(ids(&back), followers[..2].to_vec());

    // Hidden collections: empty to others, full to the owner.
    let (star2, star2_id) = stack.account(&app, "shy").await;
    let (fan, _) = stack.account(&app, "fan").await;
    json_ok(stack.act(&fan, &star2_id, "follow", &[]).await).await;
    json_ok(
        stack
            .patch_form(
                "/api/v1/accounts/update_credentials",
                &star2,
                &[("hide_collections", "true")],
            )
            .await,
    )
    .await;
    let path = format!("/api/v1/accounts/{star2_id}/followers");
    assert!(
        json_ok(stack.get(&path, Some(&fan)).await)
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        json_ok(stack.get(&path, Some(&star2)).await)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (alice, alice_id) = stack.account(&app, "alice").await;
    let (_, bob_id) = stack.account(&app, "bob").await;

    json_error(stack.act(&alice, &alice_id, "follow", &[]).await, 422).await;
    json_error(stack.act(&alice, &alice_id, "block", &[]).await, 422).await;
    json_error(stack.act(&alice, &alice_id, "mute", &[]).await, 422).await;
    json_error(stack.act(&alice, "999999999999", "follow", &[]).await, 404).await;
    json_error(stack.act(&alice, "not-an-id", "follow", &[]).await, 404).await;
    json_error(
        stack
            .act(&alice, &bob_id, "mute", &[("duration", "-5")])
            .await,
        422,
    )
    .await;
    json_error(
        stack
            .act(&alice, &bob_id, "mute", &[("duration", "soon")])
            .await,
        422,
    )
    .await;
    json_error(
        stack
            .act(&alice, &bob_id, "follow", &[("reblogs", "maybe")])
            .await,
        422,
    )
    .await;
    json_error(
        stack
            .act(&alice, &bob_id, "follow", &[("languages[]", "english!")])
            .await,
        422,
    )
    .await;
    json_error(stack.act("bogus", &bob_id, "follow", &[]).await, 401).await;
    let app_token = stack.app_token(&app, "read write follow").await;
    json_error(stack.act(&app_token, &bob_id, "follow", &[]).await, 422).await;
    let read_only = json_ok(
        stack
            .log_in(
                &app,
                &username_of(&stack, &alice_id).await,
                "correct horse",
                "read",
            )
            .await,
    )
    .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    json_error(stack.act(&read_only, &bob_id, "follow", &[]).await, 403).await;
    json_error(
        stack
            .get("/api/v1/accounts/relationships?id[]=abc", Some(&alice))
            .await,
        422,
    )
    .await;
    json_error(
        stack
            .get(
                &format!("/api/v1/accounts/{bob_id}/followers?limit=lots"),
                None,
            )
            .await,
        422,
    )
    .await;
    json_error(
        stack
            .get(
                &format!("/api/v1/accounts/{bob_id}/followers?max_id=x"),
                None,
            )
            .await,
        422,
    )
    .await;
    json_error(
        stack
            .get("/api/v1/accounts/999999999999/followers", None)
            .await,
        404,
    )
    .await;
    json_error(stack.get("/api/v1/blocks", None).await, 401).await;
    // Unknown ids are left out of relationships, as Mastodon does.
    let list = json_ok(
        stack
            .get(
                &format!("/api/v1/accounts/relationships?id[]={bob_id}&id[]=999999999999"),
                Some(&alice),
            )
            .await,
    )
    .await;
    assert_eq!(ids(&list), vec![bob_id.clone()]);
    // Text Postgres cannot store is the client's mistake, not a 500.
    json_error(
        stack
            .get("/api/v1/accounts/search?q=a%00b", Some(&alice))
            .await,
        422,
    )
    .await;
    // There is never a follow request from oneself.
    json_error(
        stack
            .post_form(
                &format!("/api/v1/follow_requests/{alice_id}/authorize"),
                Some(&alice),
                &[],
            )
            .await,
        404,
    )
    .await;
    let empty = json_ok(stack.get("/api/v1/accounts/search?q=", Some(&alice)).await).await;
    assert!(empty.as_array().unwrap().is_empty());

    assert_eq!(counts(&stack, &alice_id).await, (0, 0));
    assert_eq!(counts(&stack, &bob_id).await, (0, 0));
    assert!(
        !stack
            .user_events()
            .await
            .iter()
            .any(|(t, _)| t.starts_with("follow")
                || t.starts_with("mute")
                || t.starts_with("block")),
        "a refused request published an event"
    );
}

async fn listed(stack: &Stack, token: &str, id: &str, kind: &str) -> i64 {
    let path = format!("/api/v1/accounts/{id}/{kind}");
    let list = json_ok(stack.get(&path, Some(token)).await).await;
    list.as_array().unwrap().len() as i64
}

async fn username_of(stack: &Stack, id: &str) -> String {
    stack.account_json(id).await["username"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn concurrent_duplicate_follows_make_one_follow() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (alice, alice_id) = stack.account(&app, "alice").await;
    let (bob, bob_id) = stack.account(&app, "bob").await;

    let requests = (0..24).map(|i| {
        let (token, target) = if i % 2 == 0 {
            (&alice, &bob_id)
        } else {
            (&bob, &alice_id)
        };
        stack.act(token, target, "follow", &[])
    });
    for res in futures::future::join_all(requests).await {
        json_ok(res).await;
    }
    assert_eq!(counts(&stack, &alice_id).await, (1, 1));
    assert_eq!(counts(&stack, &bob_id).await, (1, 1));
    let created = stack
        .user_events()
        .await
        .into_iter()
        .filter(|(t, _)| t == "follow.created")
        .count();
    assert_eq!(created, 2);

    // Follows racing a block: the block wins and the counters agree with the lists.
    let mixed = (0..16).map(|i| match i % 4 {
        0 => stack.act(&alice, &bob_id, "block", &[]),
        1 => stack.act(&alice, &bob_id, "unblock", &[]),
        2 => stack.act(&bob, &alice_id, "follow", &[]),
        _ => stack.act(&alice, &bob_id, "unfollow", &[]),
    });
    for res in futures::future::join_all(mixed).await {
        assert!(
            res.status() == 200 || res.status() == 403,
            "unexpected {}",
            res.status()
        );
    }
    for id in [&alice_id, &bob_id] {
        let (followers, following) = counts(&stack, id).await;
        assert_eq!(followers, listed(&stack, &alice, id, "followers").await);
        assert_eq!(following, listed(&stack, &alice, id, "following").await);
    }
}

#[tokio::test]
async fn follows_are_rate_limited() {
    let stack = spawn_configured(&rookery_kit::testing::redis_url(), |c| c.follow_limit = 2).await;
    let app = stack.create_app().await;
    let (alice, _) = stack.account(&app, "alice").await;
    let mut targets = Vec::new();
    for _ in 0..3 {
        targets.push(stack.account(&app, "target").await.1);
    }
    // Every follow says where the caller stands (as Mastodon does).
    let res = stack.act(&alice, &targets[0], "follow", &[]).await;
    let remaining = |res: &reqwest::Response| {
        res.headers()
            .get("x-ratelimit-remaining")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(remaining(&res).as_deref(), Some("1"));
    assert!(res.headers().get("retry-after").is_none());
    json_ok(res).await;
    json_ok(stack.act(&alice, &targets[1], "follow", &[]).await).await;
    let res = stack.act(&alice, &targets[2], "follow", &[]).await;
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header("x-ratelimit-limit").as_deref(), Some("2"));
    assert_eq!(header("x-ratelimit-remaining").as_deref(), Some("0"));
    assert!(chrono::DateTime::parse_from_rfc3339(&header("x-ratelimit-reset").unwrap()).is_ok());
    let retry: i64 = header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 24 * 3600);
    json_error(res, 429).await;
    assert_eq!(counts(&stack, &targets[2]).await, (0, 0));
    // Changing the options of an existing follow is not a new follow (and the refused
    // one above was given back: still nothing left, not less than nothing).
    let res = stack
        .act(&alice, &targets[0], "follow", &[("notify", "true")])
        .await;
    assert_eq!(remaining(&res).as_deref(), Some("0"));
    json_ok(res).await;
}

#[tokio::test]
async fn search_matches_username_and_display_name_prefixes() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let stem = username("zq");
    let (viewer, _) = stack.account(&app, "viewer").await;
    let marple = stack.register(&app, &format!("{stem}marple")).await;
    let marple_id = json_ok(stack.verify(&marple).await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (poirot, poirot_id) = stack.account(&app, "hercule").await;
    json_ok(
        stack
            .patch_form(
                "/api/v1/accounts/update_credentials",
                &poirot,
                &[("display_name", &format!("Hercule {stem}Poirot"))],
            )
            .await,
    )
    .await;

    let search = |q: String, extra: &'static str| {
        let viewer = viewer.clone();
        let stack = &stack;
        async move {
            let res = stack
                .get(
                    &format!("/api/v1/accounts/search?q={q}{extra}"),
                    Some(&viewer),
                )
                .await;
            ids(&json_ok(res).await).into_iter().collect::<HashSet<_>>()
        }
    };
    let both = search(stem.clone(), "").await;
    assert_eq!(both, HashSet::from([marple_id.clone(), poirot_id.clone()]));
    let just_marple = search(format!("{stem}mar"), "").await;
    assert_eq!(just_marple, HashSet::from([marple_id.clone()]));
    let by_word = search(format!("{stem}poi"), "").await;
    assert_eq!(by_word, HashSet::from([poirot_id.clone()]));
    assert!(
        search(format!("@{stem}marple@rookery.test"), "")
            .await
            .contains(&marple_id)
    );
    assert!(
        search(format!("{stem}marple@elsewhere.example"), "")
            .await
            .is_empty()
    );
    // LIKE wildcards are literal.
    assert!(search("%25".to_owned(), "").await.is_empty());
    // Only accounts the viewer follows.
    assert!(search(stem.clone(), "&following=true").await.is_empty());
    json_ok(stack.act(&viewer, &poirot_id, "follow", &[]).await).await;
    assert_eq!(
        search(stem.clone(), "&following=true").await,
        HashSet::from([poirot_id])
    );
}

#[tokio::test]
async fn batch_and_streaming_rpcs_for_other_services() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (_, star_id) = stack.account(&app, "star").await;
    let (viewer, viewer_id) = stack.account(&app, "viewer").await;
    let star: i64 = star_id.parse().unwrap();
    let viewer_n: i64 = viewer_id.parse().unwrap();

    // 2,500 followers (more than two fan-out chunks), inserted in bulk; about a fifth of them
    // have not used the service for a month.
    let mut db = sqlx_connect(&stack.db.admin_url).await;
    let inserted: i64 = sqlx::query_scalar(
        "WITH a AS (
             INSERT INTO users.accounts (username)
             SELECT 'bulk' || g || '_' || substr(md5(random()::text), 1, 6)
             FROM generate_series(1, 2500) g RETURNING id),
         c AS (
             INSERT INTO users.credentials (account_id, email, password_hash, last_active_at)
             SELECT id, id || '@bulk.test', 'x',
                    CASE WHEN id % 5 = 0 THEN now() - interval '30 days' ELSE now() END
             FROM a),
         f AS (
             INSERT INTO users.follows (account_id, target_account_id) SELECT id, $1 FROM a)
         SELECT count(*) FROM a",
    )
    .bind(star)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(inserted, 2500);

    let channel = tonic::transport::Channel::from_shared(stack.users_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let users = UsersClient::new(channel);
    let collect = |only_active: bool| {
        let mut users = users.clone();
        async move {
            let mut stream = users
                .follower_ids(pb::FollowerIdsRequest {
                    account_id: star,
                    only_active,
                    following: false,
                    reblogs_only: false,
                    notify_only: false,
                })
                .await
                .unwrap()
                .into_inner();
            let (mut ids, mut chunks) = (Vec::new(), 0);
            while let Some(chunk) = stream.message().await.unwrap() {
                chunks += 1;
                ids.extend(chunk.ids);
            }
            (ids, chunks)
        }
    };
    let (all, chunks) = collect(false).await;
    assert_eq!((all.len(), chunks), (2500, 3));
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 2500);
    let (active, _) = collect(true).await;
    let expected: HashSet<i64> = all.iter().copied().filter(|id| id % 5 != 0).collect();
    assert!(expected.len() > 1500 && expected.len() < 2500);
    assert_eq!(active.into_iter().collect::<HashSet<_>>(), expected);

    // Filter: blocks both ways and mutes, in one call.
    let some: Vec<i64> = all[..4].to_vec();
    json_ok(stack.act(&viewer, &some[0].to_string(), "block", &[]).await).await;
    json_ok(
        stack
            .act(
                &viewer,
                &some[1].to_string(),
                "mute",
                &[("notifications", "false")],
            )
            .await,
    )
    .await;
    sqlx::query("INSERT INTO users.blocks (account_id, target_account_id) VALUES ($1, $2)")
        .bind(some[2])
        .bind(viewer_n)
        .execute(&mut db)
        .await
        .unwrap();
    let mut users = users;
    let filter = users
        .filter_accounts(pb::FilterAccountsRequest {
            viewer_id: viewer_n,
            ids: some.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        filter.blocked.iter().copied().collect::<HashSet<_>>(),
        HashSet::from([some[0], some[2]])
    );
    assert_eq!(filter.muted, vec![some[1]]);
    assert!(filter.muted_notifications.is_empty());

    // Relationships and accounts in batch: order follows the request, unknown ids drop out.
    let mut ids = some.clone();
    ids.push(1);
    let rels = users
        .relationships(pb::RelationshipsRequest {
            viewer_id: viewer_n,
            ids: ids.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .relationships;
    assert_eq!(rels.iter().map(|r| r.id).collect::<Vec<_>>(), some);
    assert!(rels[0].blocking && rels[2].blocked_by && rels[1].muting);
    let accounts = users
        .get_accounts(pb::GetAccountsRequest { ids })
        .await
        .unwrap()
        .into_inner()
        .accounts;
    assert_eq!(accounts.iter().map(|a| a.id).collect::<Vec<_>>(), some);
}

async fn sqlx_connect(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await.unwrap()
}
