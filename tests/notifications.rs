//! The notifications service end to end through the gateway: every type made from its
//! event, undo, blocks and mutes, exactly-once delivery (a redelivered event, a service
//! down while 200 mentions are posted, entries a crashed consumer left pending), pages
//! and filters, grouped notifications (v2), unread counts and markers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{collections::HashSet, time::Duration};

use futures::future::join_all;
use rookery_e2e::{Stack, eventually, json_error, json_ok, spawn};
use serde_json::Value;

/// How long asynchronous effects (events, consumers) may take.
const WAIT: Duration = Duration::from_secs(15);

async fn post(stack: &Stack, token: &str, form: &[(&str, &str)]) -> Value {
    json_ok(stack.post_form("/api/v1/statuses", Some(token), form).await).await
}

async fn say(stack: &Stack, token: &str, text: &str) -> String {
    post(stack, token, &[("status", text)]).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn notifications(stack: &Stack, token: &str, query: &str) -> Vec<Value> {
    json_ok(
        stack
            .get(&format!("/api/v1/notifications{query}"), Some(token))
            .await,
    )
    .await
    .as_array()
    .unwrap()
    .clone()
}

/// Waits until `query` lists exactly `n` notifications; returns them.
async fn wait_for_n(stack: &Stack, token: &str, query: &str, n: usize) -> Vec<Value> {
    let found = eventually(WAIT, || async {
        let list = notifications(stack, token, query).await;
        (list.len() == n).then_some(list)
    })
    .await;
    match found {
        Some(list) => list,
        None => panic!(
            "expected {n} notifications at {query}, have {:?}",
            notifications(stack, token, query).await
        ),
    }
}

fn types(list: &[Value]) -> Vec<&str> {
    list.iter().map(|n| n["type"].as_str().unwrap()).collect()
}

/// Lets the consumers catch up, so that "nothing arrived" means nothing will.
async fn settle(stack: &Stack, token: &str) {
    // A mention from a fresh account is the last event in line: once it is there, the
    // consumer has passed everything before it.
    let app = stack.create_app().await;
    let (probe, _) = stack.account(&app, "probe").await;
    let me = json_ok(stack.verify(token).await).await;
    let acct = me["acct"].as_str().unwrap().to_owned();
    let id = say(stack, &probe, &format!("@{acct} settle")).await;
    eventually(WAIT, || async {
        notifications(stack, token, "?types[]=mention&limit=80")
            .await
            .iter()
            .any(|n| n["status"]["id"] == id.as_str())
            .then_some(())
    })
    .await
    .expect("the probe mention never arrived");
    let list = notifications(stack, token, "?types[]=mention&limit=80").await;
    let n = list
        .iter()
        .find(|n| n["status"]["id"] == id.as_str())
        .unwrap();
    let path = format!(
        "/api/v1/notifications/{}/dismiss",
        n["id"].as_str().unwrap()
    );
    json_ok(stack.post_form(&path, Some(token), &[]).await).await;
}

#[tokio::test]
async fn every_type_from_its_event_and_undo() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (alice, alice_id) = stack.account(&app, "alice").await;
    let (bob, bob_id) = stack.account(&app, "bob").await;
    let alice_acct = stack.account_json(&alice_id).await["acct"]
        .as_str()
        .unwrap()
        .to_owned();

    // follow
    json_ok(
        stack
            .act(&bob, &alice_id, "follow", &[("notify", "true")])
            .await,
    )
    .await;
    let list = wait_for_n(&stack, &alice, "", 1).await;
    assert_eq!(types(&list), ["follow"]);
    assert_eq!(list[0]["account"]["id"], bob_id.as_str());
    assert!(list[0].get("status").is_none(), "{list:?}");
    assert!(
        list[0]["group_key"]
            .as_str()
            .unwrap()
            .starts_with("follow-"),
        "{list:?}"
    );

    // mention
    let mention = say(&stack, &bob, &format!("hello @{alice_acct}")).await;
    let list = wait_for_n(&stack, &alice, "", 2).await;
    assert_eq!(types(&list), ["mention", "follow"]);
    assert_eq!(list[0]["status"]["id"], mention.as_str());
    assert_eq!(list[0]["account"]["id"], bob_id.as_str());
    assert_eq!(
        list[0]["group_key"],
        format!("ungrouped-{}", list[0]["id"].as_str().unwrap()).as_str()
    );

    // status: alice follows bob with notify and hears of his posts
    json_ok(
        stack
            .act(&alice, &bob_id, "follow", &[("notify", "true")])
            .await,
    )
    .await;
    let post_id = say(&stack, &bob, "a post for notified followers").await;
    let list = wait_for_n(&stack, &alice, "?types[]=status", 1).await;
    assert_eq!(list[0]["status"]["id"], post_id.as_str());

    // favourite, reblog
    let own = say(&stack, &alice, "alice's own").await;
    json_ok(
        stack
            .post_form(
                &format!("/api/v1/statuses/{own}/favourite"),
                Some(&bob),
                &[],
            )
            .await,
    )
    .await;
    json_ok(
        stack
            .post_form(&format!("/api/v1/statuses/{own}/reblog"), Some(&bob), &[])
            .await,
    )
    .await;
    let list = wait_for_n(&stack, &alice, "?types[]=favourite&types[]=reblog", 2).await;
    assert_eq!(types(&list), ["reblog", "favourite"]);
    for n in &list {
        assert_eq!(n["status"]["id"], own.as_str(), "{n}");
        assert_eq!(
            n["group_key"].as_str().unwrap().split('-').nth(1),
            Some(own.as_str())
        );
    }

    // update: the reblogger hears of alice's edit
    let edit = stack
        .http
        .put(format!("{}/api/v1/statuses/{own}", stack.base))
        .bearer_auth(&alice)
        .form(&[("status", "alice's own, edited")])
        .send()
        .await
        .unwrap();
    json_ok(edit).await;
    let list = wait_for_n(&stack, &bob, "?types[]=update", 1).await;
    assert_eq!(list[0]["status"]["id"], own.as_str());
    assert_eq!(list[0]["account"]["id"], alice_id.as_str());

    // quote
    let quote = post(
        &stack,
        &bob,
        &[("status", "quoting"), ("quoted_status_id", &own)],
    )
    .await;
    let list = wait_for_n(&stack, &alice, "?types[]=quote", 1).await;
    assert_eq!(list[0]["status"]["id"], quote["id"]);

    // Undo: unfavourite, unreblog, unfollow, deleting the mention take theirs away.
    for action in ["unfavourite", "unreblog"] {
        json_ok(
            stack
                .post_form(&format!("/api/v1/statuses/{own}/{action}"), Some(&bob), &[])
                .await,
        )
        .await;
    }
    wait_for_n(&stack, &alice, "?types[]=favourite&types[]=reblog", 0).await;
    json_ok(stack.act(&bob, &alice_id, "unfollow", &[]).await).await;
    wait_for_n(&stack, &alice, "?types[]=follow", 0).await;
    let deleted = stack
        .http
        .delete(format!("{}/api/v1/statuses/{mention}", stack.base))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    json_ok(deleted).await;
    wait_for_n(&stack, &alice, "?types[]=mention", 0).await;
}

#[tokio::test]
async fn follow_requests_blocks_and_mutes() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (alice, alice_id) = stack.account(&app, "alice").await;
    let (bob, bob_id) = stack.account(&app, "bob").await;
    let (carol, carol_id) = stack.account(&app, "carol").await;
    let (dave, dave_id) = stack.account(&app, "dave").await;
    let acct = |id: &str| {
        let id = id.to_owned();
        let stack = &stack;
        async move {
            stack.account_json(&id).await["acct"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let alice_acct = acct(&alice_id).await;

    // A locked account hears of the request, not of the follow its acceptance makes.
    json_ok(
        stack
            .patch_form(
                "/api/v1/accounts/update_credentials",
                &alice,
                &[("locked", "true")],
            )
            .await,
    )
    .await;
    json_ok(stack.act(&bob, &alice_id, "follow", &[]).await).await;
    let list = wait_for_n(&stack, &alice, "", 1).await;
    assert_eq!(types(&list), ["follow_request"]);
    json_ok(
        stack
            .post_form(
                &format!("/api/v1/follow_requests/{bob_id}/authorize"),
                Some(&alice),
                &[],
            )
            .await,
    )
    .await;
    // The request's notification goes with the request; no follow notification comes.
    wait_for_n(&stack, &alice, "", 0).await;

    // Blocked (either way) and muted accounts notify nobody; a mute that keeps
    // notifications does.
    json_ok(stack.act(&alice, &carol_id, "block", &[]).await).await;
    json_ok(stack.act(&alice, &dave_id, "mute", &[]).await).await;
    let (erin, erin_id) = stack.account(&app, "erin").await;
    json_ok(
        stack
            .act(&alice, &erin_id, "mute", &[("notifications", "false")])
            .await,
    )
    .await;
    say(
        &stack,
        &carol,
        &format!("@{alice_acct} from a blocked account"),
    )
    .await;
    say(
        &stack,
        &dave,
        &format!("@{alice_acct} from a muted account"),
    )
    .await;
    let kept = say(
        &stack,
        &erin,
        &format!("@{alice_acct} muted, notifications kept"),
    )
    .await;
    let list = wait_for_n(&stack, &alice, "?types[]=mention", 1).await;
    assert_eq!(list[0]["status"]["id"], kept.as_str());
    settle(&stack, &alice).await;
    let list = notifications(&stack, &alice, "?types[]=mention").await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(
        notifications(&stack, &alice, "?types[]=follow")
            .await
            .is_empty()
    );

    // A block clears what the blocked account caused.
    let (frank, frank_id) = stack.account(&app, "frank").await;
    say(&stack, &frank, &format!("@{alice_acct} soon blocked")).await;
    wait_for_n(&stack, &alice, &format!("?account_id={frank_id}"), 1).await;
    json_ok(stack.act(&alice, &frank_id, "block", &[]).await).await;
    wait_for_n(&stack, &alice, &format!("?account_id={frank_id}"), 0).await;
}

/// The consumer's name in the stream's group is per process, so a replayed entry is a
/// second delivery to the same group, as after a crash.
#[tokio::test]
async fn a_redelivered_event_notifies_once() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (alice, alice_id) = stack.account(&app, "alice").await;
    let (bob, _) = stack.account(&app, "bob").await;
    let acct = stack.account_json(&alice_id).await["acct"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = say(&stack, &bob, &format!("@{acct} once")).await;
    wait_for_n(&stack, &alice, "", 1).await;

    // Deliver the very same `mention.created` entry again.
    let client = redis::Client::open(stack.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}:events:timeline", stack.redis_prefix);
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mention = entries
        .ids
        .iter()
        .find(|e| e.get::<String>("topic").as_deref() == Some("mention.created"))
        .expect("the mention event");
    let mut replay = redis::cmd("XADD");
    replay.arg(&key).arg("*");
    for (field, value) in &mention.map {
        let redis::Value::BulkString(bytes) = value else {
            panic!("unexpected stream field {field}: {value:?}")
        };
        replay.arg(field).arg(bytes.as_slice());
    }
    let _: String = replay.query_async(&mut conn).await.unwrap();

    settle(&stack, &alice).await;
    let list = notifications(&stack, &alice, "").await;
    assert_eq!(types(&list), ["mention"], "{list:?}");
    assert_eq!(list[0]["status"]["id"], id.as_str());
}

#[tokio::test]
async fn nothing_lost_nothing_doubled_while_notifications_is_down() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (alice, alice_id) = stack.account(&app, "alice").await;
    let (bob, _) = stack.account(&app, "bob").await;
    let acct = stack.account_json(&alice_id).await["acct"]
        .as_str()
        .unwrap()
        .to_owned();
    // The consumer group exists (the service ran) before it goes down.
    say(&stack, &bob, &format!("@{acct} before")).await;
    wait_for_n(&stack, &alice, "", 1).await;

    stack.stop_notifications().await;
    // Reading notifications needs the service: a fast 503, not a hang.
    let started = std::time::Instant::now();
    json_error(stack.get("/api/v1/notifications", Some(&alice)).await, 503).await;
    assert!(started.elapsed() < Duration::from_secs(5));

    // Posting does not need it.
    let posts = join_all((0..200).map(|i| {
        let (stack, bob, acct) = (&stack, &bob, &acct);
        async move { say(stack, bob, &format!("@{acct} mention {i}")).await }
    }))
    .await;
    let posted: HashSet<String> = posts.into_iter().collect();
    assert_eq!(posted.len(), 200);

    // A consumer that read a batch and died before acknowledging it: its entries stay
    // pending until a live consumer claims them.
    let client = redis::Client::open(stack.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}:events:timeline", stack.redis_prefix);
    let read: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("notifications")
        .arg("crashed-consumer")
        .arg("COUNT")
        .arg(50)
        .arg("STREAMS")
        .arg(&key)
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    let stolen: usize = read.keys.iter().map(|k| k.ids.len()).sum();
    assert_eq!(stolen, 50);

    stack.restart_notifications().await;
    let mut seen = HashSet::new();
    let all = eventually(Duration::from_secs(30), || async {
        let mut list = Vec::new();
        let mut query = "?types[]=mention&limit=80".to_owned();
        loop {
            let res = stack
                .get(&format!("/api/v1/notifications{query}"), Some(&alice))
                .await;
            if res.status() != 200 {
                return None;
            }
            let link = res
                .headers()
                .get("link")
                .map(|l| l.to_str().unwrap().to_owned());
            let page: Vec<Value> = res.json().await.unwrap();
            let done = page.is_empty();
            list.extend(page);
            match link.and_then(|l| {
                l.split(',')
                    .find(|p| p.contains("rel=\"next\""))
                    .and_then(|p| p.split("max_id=").nth(1))
                    .map(|rest| rest.split(['&', '>']).next().unwrap().to_owned())
            }) {
                Some(max_id) if !done => {
                    query = format!("?types[]=mention&limit=80&max_id={max_id}")
                }
                _ => break,
            }
        }
        (list.len() >= 201).then_some(list)
    })
    .await
    .expect("mentions never all arrived");
    settle(&stack, &alice).await;
    for n in &all {
        assert!(seen.insert(n["id"].as_str().unwrap().to_owned()), "{n}");
    }
    let statuses: HashSet<String> = all
        .iter()
        .map(|n| n["status"]["id"].as_str().unwrap().to_owned())
        .filter(|id| posted.contains(id))
        .collect();
    assert_eq!(statuses.len(), 200, "every posted mention, once");
    assert_eq!(all.len(), 201, "no duplicates");
    // And in the database: one row per mention.
    let pool = sqlx::PgPool::connect(&stack.notifications_db.url)
        .await
        .unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications WHERE type = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 201);
}

#[tokio::test]
async fn pages_filters_dismiss_and_clear() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (alice, alice_id) = stack.account(&app, "alice").await;
    let (bob, bob_id) = stack.account(&app, "bob").await;
    let (carol, _) = stack.account(&app, "carol").await;
    let acct = stack.account_json(&alice_id).await["acct"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..5 {
        say(&stack, &bob, &format!("@{acct} bob {i}")).await;
    }
    for i in 0..3 {
        say(&stack, &carol, &format!("@{acct} carol {i}")).await;
    }
    json_ok(stack.act(&bob, &alice_id, "follow", &[]).await).await;
    let all = wait_for_n(&stack, &alice, "", 9).await;
    let all_ids: Vec<&str> = all.iter().map(|n| n["id"].as_str().unwrap()).collect();
    let mut sorted = all_ids.clone();
    sorted.sort_by_key(|id| std::cmp::Reverse(id.parse::<i64>().unwrap()));
    assert_eq!(all_ids, sorted, "newest first");

    // Filters.
    assert_eq!(
        notifications(&stack, &alice, "?exclude_types[]=mention")
            .await
            .len(),
        1
    );
    assert_eq!(
        notifications(&stack, &alice, &format!("?account_id={bob_id}"))
            .await
            .len(),
        6
    );
    assert!(
        notifications(&stack, &alice, "?types[]=poll")
            .await
            .is_empty()
    );
    json_error(
        stack
            .get("/api/v1/notifications?limit=ten", Some(&alice))
            .await,
        422,
    )
    .await;

    // Pages with Link headers, both ways.
    let res = stack
        .get("/api/v1/notifications?limit=4", Some(&alice))
        .await;
    let link = res.headers()["link"].to_str().unwrap().to_owned();
    let first: Vec<Value> = res.json().await.unwrap();
    assert_eq!(first.len(), 4);
    assert!(link.contains(&format!("max_id={}", all_ids[3])), "{link}");
    assert!(link.contains(&format!("min_id={}", all_ids[0])), "{link}");
    let second = notifications(&stack, &alice, &format!("?limit=4&max_id={}", all_ids[3])).await;
    assert_eq!(
        second
            .iter()
            .map(|n| n["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        all_ids[4..8]
    );
    let newer = notifications(&stack, &alice, &format!("?limit=2&min_id={}", all_ids[5])).await;
    assert_eq!(
        newer
            .iter()
            .map(|n| n["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        all_ids[3..5]
    );
    let since = notifications(&stack, &alice, &format!("?limit=2&since_id={}", all_ids[5])).await;
    assert_eq!(
        since
            .iter()
            .map(|n| n["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        all_ids[0..2]
    );

    // One, someone else's, dismiss, clear.
    let one = json_ok(
        stack
            .get(
                &format!("/api/v1/notifications/{}", all_ids[0]),
                Some(&alice),
            )
            .await,
    )
    .await;
    assert_eq!(one["id"], all_ids[0]);
    json_error(
        stack
            .get(&format!("/api/v1/notifications/{}", all_ids[0]), Some(&bob))
            .await,
        404,
    )
    .await;
    json_error(
        stack
            .get("/api/v1/notifications/not-an-id", Some(&alice))
            .await,
        404,
    )
    .await;
    json_error(stack.get("/api/v1/notifications", None).await, 401).await;
    json_ok(
        stack
            .post_form(
                &format!("/api/v1/notifications/{}/dismiss", all_ids[0]),
                Some(&alice),
                &[],
            )
            .await,
    )
    .await;
    assert_eq!(notifications(&stack, &alice, "").await.len(), 8);
    json_ok(
        stack
            .post_form("/api/v1/notifications/clear", Some(&alice), &[])
            .await,
    )
    .await;
    assert!(notifications(&stack, &alice, "").await.is_empty());
}

#[tokio::test]
async fn grouped_notifications() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (alice, alice_id) = stack.account(&app, "alice").await;
    let acct = stack.account_json(&alice_id).await["acct"]
        .as_str()
        .unwrap()
        .to_owned();
    let own = say(&stack, &alice, "favourite me").await;
    let mut fans = Vec::new();
    for i in 0..3 {
        fans.push(stack.account(&app, &format!("fan{i}")).await);
    }
    // Favourites (timeline's stream), then follows (users' stream), then a mention: each
    // kind waited for, since the two streams are consumed independently and the
    // notifications' order is the order they are made in.
    for (token, _) in &fans {
        json_ok(
            stack
                .post_form(
                    &format!("/api/v1/statuses/{own}/favourite"),
                    Some(token),
                    &[],
                )
                .await,
        )
        .await;
    }
    wait_for_n(&stack, &alice, "", 3).await;
    for (token, _) in &fans {
        json_ok(stack.act(token, &alice_id, "follow", &[]).await).await;
    }
    wait_for_n(&stack, &alice, "", 6).await;
    let mention = say(&stack, &fans[0].0, &format!("@{acct} hi")).await;
    wait_for_n(&stack, &alice, "", 7).await;

    let v2 = json_ok(stack.get("/api/v2/notifications", Some(&alice)).await).await;
    let groups = v2["notification_groups"].as_array().unwrap();
    let kinds: Vec<&str> = groups.iter().map(|g| g["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["mention", "follow", "favourite"], "{v2}");
    let favourites = &groups[2];
    assert_eq!(favourites["notifications_count"], 3);
    assert_eq!(favourites["status_id"], own.as_str());
    let samples: HashSet<&str> = favourites["sample_account_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let fan_ids: HashSet<&str> = fans.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(samples, fan_ids);
    assert_eq!(groups[1]["notifications_count"], 3);
    assert_eq!(groups[0]["notifications_count"], 1);
    assert_eq!(groups[0]["status_id"], mention.as_str());
    assert!(
        groups[0]["group_key"]
            .as_str()
            .unwrap()
            .starts_with("ungrouped-")
    );
    // Accounts and statuses once each.
    let accounts: Vec<&str> = v2["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(accounts.len(), 3, "{v2}");
    assert_eq!(accounts.iter().copied().collect::<HashSet<_>>(), fan_ids);
    let statuses: Vec<&str> = v2["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.len(), 2, "{v2:#}");

    // Only follows may group: the favourites come one by one.
    let v2 = json_ok(
        stack
            .get("/api/v2/notifications?grouped_types[]=follow", Some(&alice))
            .await,
    )
    .await;
    let kinds: Vec<&str> = v2["notification_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["mention", "follow", "favourite", "favourite", "favourite"]
    );

    // Pages of groups: two groups (the mention, the follows), then the rest.
    let res = stack
        .get("/api/v2/notifications?limit=2", Some(&alice))
        .await;
    let link = res.headers()["link"].to_str().unwrap().to_owned();
    let page: Value = res.json().await.unwrap();
    assert_eq!(page["notification_groups"].as_array().unwrap().len(), 2);
    let max_id = link
        .split("max_id=")
        .nth(1)
        .unwrap()
        .split(['&', '>'])
        .next()
        .unwrap();
    let rest = json_ok(
        stack
            .get(
                &format!("/api/v2/notifications?limit=2&max_id={max_id}"),
                Some(&alice),
            )
            .await,
    )
    .await;
    // Older members of a group shown already come back with the page they are on (as
    // Mastodon's pages: clients merge groups by key); counts stop at the page.
    let rest_groups = rest["notification_groups"].as_array().unwrap();
    let kinds: Vec<&str> = rest_groups
        .iter()
        .map(|g| g["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["follow", "favourite"], "{rest}");
    assert_eq!(rest_groups[0]["notifications_count"], 2);
    assert_eq!(rest_groups[0]["group_key"], groups[1]["group_key"]);
    assert_eq!(rest_groups[1]["notifications_count"], 3);

    // One group, its accounts, unread groups, dismissing it.
    let key = groups[2]["group_key"].as_str().unwrap().to_owned();
    let one = json_ok(
        stack
            .get(&format!("/api/v2/notifications/{key}"), Some(&alice))
            .await,
    )
    .await;
    assert_eq!(one["notification_groups"][0]["notifications_count"], 3);
    let accounts = json_ok(
        stack
            .get(
                &format!("/api/v2/notifications/{key}/accounts"),
                Some(&alice),
            )
            .await,
    )
    .await;
    assert_eq!(accounts.as_array().unwrap().len(), 3);
    let unread = json_ok(
        stack
            .get("/api/v2/notifications/unread_count", Some(&alice))
            .await,
    )
    .await;
    assert_eq!(unread["count"], 3, "three groups");
    let unread = json_ok(
        stack
            .get("/api/v1/notifications/unread_count", Some(&alice))
            .await,
    )
    .await;
    assert_eq!(unread["count"], 7, "seven notifications");
    json_ok(
        stack
            .post_form(
                &format!("/api/v2/notifications/{key}/dismiss"),
                Some(&alice),
                &[],
            )
            .await,
    )
    .await;
    json_error(
        stack
            .get(&format!("/api/v2/notifications/{key}"), Some(&alice))
            .await,
        404,
    )
    .await;
    assert_eq!(notifications(&stack, &alice, "").await.len(), 4);
}

#[tokio::test]
async fn unread_counts_follow_the_marker() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (alice, alice_id) = stack.account(&app, "alice").await;
    let (bob, _) = stack.account(&app, "bob").await;
    let acct = stack.account_json(&alice_id).await["acct"]
        .as_str()
        .unwrap()
        .to_owned();
    let count = |query: &'static str| {
        let stack = &stack;
        let alice = &alice;
        async move {
            json_ok(
                stack
                    .get(
                        &format!("/api/v1/notifications/unread_count{query}"),
                        Some(alice),
                    )
                    .await,
            )
            .await["count"]
                .as_i64()
                .unwrap()
        }
    };
    assert_eq!(count("").await, 0);
    for i in 0..5 {
        say(&stack, &bob, &format!("@{acct} {i}")).await;
    }
    let list = wait_for_n(&stack, &alice, "", 5).await;
    // Counted from Redis once loaded; new notifications are added to it.
    assert_eq!(count("").await, 5);
    say(&stack, &bob, &format!("@{acct} sixth")).await;
    let list6 = wait_for_n(&stack, &alice, "", 6).await;
    assert_eq!(count("").await, 6);
    assert_eq!(count("?limit=2").await, 2);
    assert_eq!(count("?exclude_types[]=mention").await, 0);

    // Markers: set by JSON and by form, read back, versions counted.
    let third = list[2]["id"].as_str().unwrap().to_owned();
    let set = stack
        .http
        .post(format!("{}/api/v1/markers", stack.base))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"notifications": {"last_read_id": third}}))
        .send()
        .await
        .unwrap();
    let set = json_ok(set).await;
    assert_eq!(set["notifications"]["last_read_id"], third.as_str());
    assert_eq!(set["notifications"]["version"], 1);
    // The sixth and the two newer than the third of five.
    assert_eq!(count("").await, 3);
    let newest = list6[0]["id"].as_str().unwrap().to_owned();
    let set = json_ok(
        stack
            .post_form(
                "/api/v1/markers",
                Some(&alice),
                &[
                    ("notifications[last_read_id]", newest.as_str()),
                    ("home[last_read_id]", "12345"),
                ],
            )
            .await,
    )
    .await;
    assert_eq!(set["notifications"]["version"], 2);
    assert_eq!(set["home"]["last_read_id"], "12345");
    assert_eq!(count("").await, 0);
    let read = json_ok(
        stack
            .get(
                "/api/v1/markers?timeline[]=home&timeline[]=notifications",
                Some(&alice),
            )
            .await,
    )
    .await;
    assert_eq!(read["home"]["last_read_id"], "12345");
    assert_eq!(read["notifications"]["last_read_id"], newest.as_str());
    assert!(read["home"]["updated_at"].as_str().unwrap().ends_with('Z'));
    let none = json_ok(stack.get("/api/v1/markers", Some(&alice)).await).await;
    assert_eq!(none, serde_json::json!({}));
    // Nothing to set: the current markers, as Mastodon answers.
    let unchanged = json_ok(stack.post_form("/api/v1/markers", Some(&alice), &[]).await).await;
    assert_eq!(unchanged["home"]["last_read_id"], "12345");
    assert_eq!(unchanged["notifications"]["version"], 2);
    json_error(
        stack
            .post_form(
                "/api/v1/markers",
                Some(&alice),
                &[("home[last_read_id]", "abc")],
            )
            .await,
        422,
    )
    .await;

    // Dismissing drops the cached set; the count reloads from Postgres.
    say(&stack, &bob, &format!("@{acct} seventh")).await;
    let list7 = wait_for_n(&stack, &alice, "", 7).await;
    assert_eq!(count("").await, 1);
    json_ok(
        stack
            .post_form(
                &format!(
                    "/api/v1/notifications/{}/dismiss",
                    list7[0]["id"].as_str().unwrap()
                ),
                Some(&alice),
                &[],
            )
            .await,
    )
    .await;
    assert_eq!(count("").await, 0);
}
