//! The timeline service end to end through the gateway, as a Mastodon client sees it:
//! posting and rendering, visibility, interactions and their counters, idempotent posts,
//! threads, edits and deletes, home feeds (fan-out, mutes, blocks, reblog de-duplication,
//! follows and unfollows, inactive followers, celebrities), pagination, hashtags, trends
//! and search.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures::{FutureExt, future::join_all};
use reqwest::Response;
use rookery_e2e::{Stack, eventually, json_error, json_ok, spawn, spawn_with};
use serde_json::{Value, json};

/// How long asynchronous effects (fan-out, counters, trends) may take.
const WAIT: Duration = Duration::from_secs(10);

/// `POST /api/v1/statuses` with `form` by `token`: the status (200 asserted).
async fn post(stack: &Stack, token: &str, form: &[(&str, &str)]) -> Value {
    json_ok(stack.post_form("/api/v1/statuses", Some(token), form).await).await
}

/// Posts `text` with `visibility`; returns the id.
async fn say_as(stack: &Stack, token: &str, text: &str, visibility: &str) -> String {
    let s = post(
        stack,
        token,
        &[("status", text), ("visibility", visibility)],
    )
    .await;
    assert_eq!(s["visibility"], visibility, "{s}");
    s["id"].as_str().unwrap().to_owned()
}

/// Posts a public `text`; returns the id.
async fn say(stack: &Stack, token: &str, text: &str) -> String {
    say_as(stack, token, text, "public").await
}

/// A JSON array from a `GET` (200 asserted).
async fn list(stack: &Stack, path: &str, token: Option<&str>) -> Vec<Value> {
    json_ok(stack.get(path, token).await)
        .await
        .as_array()
        .unwrap()
        .clone()
}

fn ids(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The ids a `GET` of a list answers.
async fn ids_at(stack: &Stack, path: &str, token: Option<&str>) -> Vec<String> {
    ids(&list(stack, path, token).await)
}

/// The home timeline's entries as `(id, id of the reblogged status)`.
async fn home(stack: &Stack, token: &str) -> Vec<(String, Option<String>)> {
    list(stack, "/api/v1/timelines/home?limit=40", Some(token))
        .await
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["reblog"]["id"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// The ids of the home timeline's entries.
async fn home_ids(stack: &Stack, token: &str) -> Vec<String> {
    home(stack, token)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// Waits until `check` holds (at most [`WAIT`]); panics with `what` otherwise.
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let done = eventually(WAIT, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await;
    assert!(done.is_some(), "timed out waiting for: {what}");
}

/// Waits until `id` is in the home timeline of `token`.
async fn reaches_home(stack: &Stack, token: &str, id: &str) {
    wait_for(&format!("{id} in a home timeline"), || async {
        home_ids(stack, token).await.iter().any(|i| i == id)
    })
    .await;
}

/// `POST /api/v1/statuses/:id/{action}` by `token`.
async fn interact(stack: &Stack, token: &str, id: &str, action: &str) -> Response {
    stack
        .post_form(&format!("/api/v1/statuses/{id}/{action}"), Some(token), &[])
        .await
}

/// [`interact`] as a client does it: a 503 (contention on a loaded machine) is retried
/// (the interactions are idempotent); the status answered (200 asserted).
async fn interact_retrying(stack: &Stack, token: &str, id: &str, action: &str) -> Value {
    for _ in 0..5 {
        let res = interact(stack, token, id, action).await;
        if res.status() != 503 {
            return json_ok(res).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    json_ok(interact(stack, token, id, action).await).await
}

/// `GET /api/v1/statuses/:id`: the status, or None on a 404.
async fn status(stack: &Stack, id: &str, token: Option<&str>) -> Option<Value> {
    let res = stack.get(&format!("/api/v1/statuses/{id}"), token).await;
    if res.status() == 404 {
        json_error(res, 404).await;
        return None;
    }
    Some(json_ok(res).await)
}

/// The `rel="next"` / `rel="prev"` target of a `Link` header, as a path.
fn link(res: &Response, rel: &str) -> Option<String> {
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

/// A page of statuses with its `Link` targets: (ids, next, prev).
async fn page(
    stack: &Stack,
    path: &str,
    token: Option<&str>,
) -> (Vec<String>, Option<String>, Option<String>) {
    let res = stack.get(path, token).await;
    let (next, prev) = (link(&res, "next"), link(&res, "prev"));
    let body = json_ok(res).await;
    (ids(body.as_array().unwrap()), next, prev)
}

/// The status without the author's counters that move with events.
fn settled(mut s: Value) -> Value {
    for field in ["statuses_count", "last_status_at"] {
        s["account"].as_object_mut().unwrap().remove(field);
    }
    s
}

/// Direct access to the stack's Redis keys.
struct Keys {
    conn: redis::aio::MultiplexedConnection,
    prefix: String,
}

impl Keys {
    async fn new(stack: &Stack) -> Self {
        let client = redis::Client::open(stack.redis_url.as_str()).unwrap();
        Self {
            conn: client.get_multiplexed_async_connection().await.unwrap(),
            prefix: stack.redis_prefix.clone(),
        }
    }

    /// `tl:{account}:{part}`: a home feed's keys.
    fn feed_key(&self, account: &str, part: &str) -> String {
        format!("{}:tl:{{{account}}}:{part}", self.prefix)
    }

    /// Members of a sorted set, lowest score first.
    async fn zset(&self, key: &str) -> Vec<String> {
        redis::cmd("ZRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn.clone())
            .await
            .unwrap()
    }

    /// The status ids of `account`'s home feed in Redis.
    async fn feed(&self, account: &str) -> Vec<String> {
        let key = self.feed_key(account, "feed");
        self.zset(&key).await
    }

    async fn exists(&self, key: &str) -> bool {
        let n: i64 = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await
            .unwrap();
        n == 1
    }

    async fn del(&self, keys: &[String]) {
        let _: i64 = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut self.conn.clone())
            .await
            .unwrap();
    }
}

/// `statuses_count` of an account, from the public API.
async fn statuses_count(stack: &Stack, id: &str) -> i64 {
    stack.account_json(id).await["statuses_count"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn post_render_and_read() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (alice, alice_id) = stack.account(&app, "alice").await;
    let (bob, bob_id) = stack.account(&app, "bob").await;
    let bob_name = stack.account_json(&bob_id).await["username"]
        .as_str()
        .unwrap()
        .to_owned();

    let text =
        format!("Hello @{bob_name}, see #Hashtag at https://example.com/docs <script>x</script>");
    let s = post(
        &stack,
        &alice,
        &[
            ("status", &text),
            ("visibility", "unlisted"),
            ("language", "en"),
            ("spoiler_text", "cw"),
        ],
    )
    .await;
    let id = s["id"].as_str().unwrap().to_owned();
    assert_eq!(
        s["content"],
        format!(
            "<p>Hello <span class=\"h-card\" translate=\"no\"><a href=\"http://rookery.test/@{bob_name}\" \
             class=\"u-url mention\">@<span>{bob_name}</span></a></span>, see \
             <a href=\"http://rookery.test/tags/hashtag\" class=\"mention hashtag\" rel=\"tag\">#<span>Hashtag</span></a> at \
             <a href=\"https://example.com/docs\" target=\"_blank\" rel=\"nofollow noopener\" translate=\"no\">\
             <span class=\"invisible\">https://</span><span class=\"\">example.com/docs</span>\
             <span class=\"invisible\"></span></a> &lt;script&gt;x&lt;/script&gt;</p>"
        )
    );
    assert_eq!(
        s["mentions"],
        json!([{
            "id": bob_id,
            "username": bob_name,
            "url": format!("http://rookery.test/@{bob_name}"),
            "acct": bob_name,
        }])
    );
    assert_eq!(
        s["tags"],
        json!([{"name": "hashtag", "url": "http://rookery.test/tags/hashtag"}])
    );
    assert_eq!(s["visibility"], "unlisted");
    assert_eq!(s["language"], "en");
    assert_eq!(s["spoiler_text"], "cw");
    assert_eq!(s["sensitive"], true);
    assert_eq!(s["account"]["id"], alice_id.as_str());
    assert_eq!(s["in_reply_to_id"], Value::Null);
    assert_eq!(s["reblog"], Value::Null);
    assert_eq!(s["edited_at"], Value::Null);
    assert_eq!(
        (
            &s["replies_count"],
            &s["reblogs_count"],
            &s["favourites_count"]
        ),
        (&json!(0), &json!(0), &json!(0))
    );
    assert_eq!(
        (&s["favourited"], &s["reblogged"], &s["bookmarked"]),
        (&json!(false), &json!(false), &json!(false))
    );
    assert_eq!(
        s["url"],
        format!(
            "http://rookery.test/@{}/{id}",
            s["account"]["username"].as_str().unwrap()
        )
    );
    assert!(s.get("text").is_none(), "{s}");

    // Reading it back gives the same entity (the author's counters move with events).
    let read = status(&stack, &id, Some(&alice)).await.unwrap();
    assert_eq!(settled(read), settled(s.clone()));
    // Anonymous readers get it without the viewer's flags.
    let anonymous = status(&stack, &id, None).await.unwrap();
    assert_eq!(anonymous["content"], s["content"]);
    for absent in ["favourited", "reblogged", "bookmarked", "muted", "filtered"] {
        assert!(anonymous.get(absent).is_none(), "{absent}: {anonymous}");
    }
    // Bob, mentioned, sees it too; its source is for the author only.
    assert_eq!(
        status(&stack, &id, Some(&bob)).await.unwrap()["id"],
        id.as_str()
    );
    let source = json_ok(
        stack
            .get(&format!("/api/v1/statuses/{id}/source"), Some(&alice))
            .await,
    )
    .await;
    assert_eq!(
        source,
        json!({"id": id, "text": text, "spoiler_text": "cw"})
    );

    // Without spoiler text nor sensitive, not sensitive; no language: null.
    let plain = post(&stack, &alice, &[("status", "plain & simple")]).await;
    assert_eq!(plain["content"], "<p>plain &amp; simple</p>");
    assert_eq!(plain["sensitive"], false);
    assert_eq!(plain["spoiler_text"], "");
    assert_eq!(plain["visibility"], "public");
    assert_eq!(plain["language"], Value::Null);
    assert_eq!(plain["mentions"], json!([]));
    assert_eq!(plain["tags"], json!([]));

    // 500 characters are fine (a URL counts 23 whatever its length), 501 are not.
    let exactly = "a".repeat(500);
    json_ok(
        stack
            .post_form("/api/v1/statuses", Some(&alice), &[("status", &exactly)])
            .await,
    )
    .await;
    let long_url = format!(
        "{} https://example.com/{}",
        "a".repeat(476),
        "x".repeat(100)
    );
    json_ok(
        stack
            .post_form("/api/v1/statuses", Some(&alice), &[("status", &long_url)])
            .await,
    )
    .await;
    let too_long = "a".repeat(501);
    let err = json_error(
        stack
            .post_form("/api/v1/statuses", Some(&alice), &[("status", &too_long)])
            .await,
        422,
    )
    .await;
    assert_eq!(
        err["error"],
        "Validation failed: Text character limit of 500 exceeded"
    );
    // The spoiler text counts too.
    json_error(
        stack
            .post_form(
                "/api/v1/statuses",
                Some(&alice),
                &[
                    ("status", &"a".repeat(490)),
                    ("spoiler_text", &"b".repeat(11)),
                ],
            )
            .await,
        422,
    )
    .await;
    for blank in [&[("status", "")][..], &[("status", "  \n ")], &[]] {
        let err = json_error(
            stack
                .post_form("/api/v1/statuses", Some(&alice), blank)
                .await,
            422,
        )
        .await;
        assert_eq!(err["error"], "Validation failed: Text can't be blank");
    }
    json_error(
        stack
            .post_form(
                "/api/v1/statuses",
                Some(&alice),
                &[("status", "hi"), ("visibility", "everyone")],
            )
            .await,
        422,
    )
    .await;
    json_error(
        stack
            .post_form(
                "/api/v1/statuses",
                Some(&alice),
                &[("status", "hi"), ("language", "English")],
            )
            .await,
        422,
    )
    .await;
    // Posting needs a user token.
    json_error(
        stack
            .post_form("/api/v1/statuses", None, &[("status", "hi")])
            .await,
        401,
    )
    .await;
    // None of the rejected posts exist.
    let own = ids_at(
        &stack,
        &format!("/api/v1/accounts/{alice_id}/statuses"),
        Some(&alice),
    )
    .await;
    assert_eq!(own.len(), 4, "{own:?}");

    // Unknown and malformed ids are 404s with Mastodon's error body.
    for bad in ["1", "999999999999999999", "abc", "12abc", "-5"] {
        let err = json_error(
            stack
                .get(&format!("/api/v1/statuses/{bad}"), Some(&alice))
                .await,
            404,
        )
        .await;
        assert_eq!(err, json!({"error": "Record not found"}), "{bad}");
    }
    json_error(
        stack
            .get("/api/v1/statuses/123/context", Some(&alice))
            .await,
        404,
    )
    .await;
}

#[tokio::test]
async fn visibility_rules() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (author, author_id) = stack.account(&app, "author").await;
    let (follower, _) = stack.account(&app, "follower").await;
    let (stranger, _) = stack.account(&app, "stranger").await;
    let (mentioned, mentioned_id) = stack.account(&app, "mentioned").await;
    let mentioned_name = stack.account_json(&mentioned_id).await["username"]
        .as_str()
        .unwrap()
        .to_owned();
    json_ok(stack.act(&follower, &author_id, "follow", &[]).await).await;

    let public = say(&stack, &author, "for everyone").await;
    let unlisted = say_as(&stack, &author, "quietly public", "unlisted").await;
    let private = say_as(&stack, &author, "followers only", "private").await;
    let direct = say_as(
        &stack,
        &author,
        &format!("@{mentioned_name} just us"),
        "direct",
    )
    .await;

    let sees = |id: &str, token: Option<&str>| {
        let (id, token) = (id.to_owned(), token.map(str::to_owned));
        let stack = &stack;
        async move { status(stack, &id, token.as_deref()).await.is_some() }
    };
    // Private: the author and followers.
    assert!(sees(&private, Some(&author)).await);
    assert!(sees(&private, Some(&follower)).await);
    assert!(!sees(&private, Some(&stranger)).await);
    assert!(!sees(&private, Some(&mentioned)).await);
    assert!(!sees(&private, None).await);
    // Direct: the author and the mentioned account.
    assert!(sees(&direct, Some(&author)).await);
    assert!(sees(&direct, Some(&mentioned)).await);
    assert!(!sees(&direct, Some(&follower)).await);
    assert!(!sees(&direct, Some(&stranger)).await);
    assert!(!sees(&direct, None).await);
    // Public and unlisted: everyone.
    for id in [&public, &unlisted] {
        for token in [Some(&stranger), None] {
            assert!(sees(id, token.map(String::as_str)).await);
        }
    }
    // Hidden statuses are as absent in a thread, a batch and the interaction lists.
    json_error(
        stack
            .get(
                &format!("/api/v1/statuses/{private}/context"),
                Some(&stranger),
            )
            .await,
        404,
    )
    .await;
    json_error(
        stack
            .get(
                &format!("/api/v1/statuses/{private}/favourited_by"),
                Some(&stranger),
            )
            .await,
        404,
    )
    .await;
    json_error(
        interact(&stack, &stranger, &private, "favourite").await,
        404,
    )
    .await;
    let batch = ids_at(
        &stack,
        &format!("/api/v1/statuses?id[]={public}&id[]={private}&id[]={direct}"),
        Some(&stranger),
    )
    .await;
    assert_eq!(batch, vec![public.clone()]);

    // An account's statuses: private ones for followers (and the author) only.
    let path = format!("/api/v1/accounts/{author_id}/statuses");
    assert_eq!(
        ids_at(&stack, &path, Some(&author)).await,
        vec![
            direct.clone(),
            private.clone(),
            unlisted.clone(),
            public.clone()
        ]
    );
    assert_eq!(
        ids_at(&stack, &path, Some(&follower)).await,
        vec![private.clone(), unlisted.clone(), public.clone()]
    );
    for token in [Some(stranger.as_str()), None] {
        assert_eq!(
            ids_at(&stack, &path, token).await,
            vec![unlisted.clone(), public.clone()]
        );
    }

    // The public timeline: original public statuses only, no reblogs.
    let reblog = json_ok(interact(&stack, &follower, &public, "reblog").await).await;
    assert_eq!(reblog["reblog"]["id"], public.as_str());
    for token in [Some(stranger.as_str()), None, Some(author.as_str())] {
        assert_eq!(
            ids_at(&stack, "/api/v1/timelines/public", token).await,
            vec![public.clone()]
        );
    }
    assert_eq!(
        ids_at(&stack, "/api/v1/timelines/public?local=true", None).await,
        vec![public.clone()]
    );
    assert_eq!(
        ids_at(&stack, "/api/v1/timelines/public?remote=true", None).await,
        Vec::<String>::new()
    );
    // Replies to others stay out of it; threads of one's own do not.
    let (other, _) = stack.account(&app, "other").await;
    let elsewhere = say(&stack, &other, "elsewhere").await;
    let to_other = post(
        &stack,
        &author,
        &[("status", "answering"), ("in_reply_to_id", &elsewhere)],
    )
    .await;
    // A reply to a reblog answers the original.
    let to_self = post(
        &stack,
        &author,
        &[
            ("status", "and another thing"),
            ("in_reply_to_id", reblog["id"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(to_self["in_reply_to_id"], public.as_str());
    let to_self = to_self["id"].as_str().unwrap().to_owned();
    let to_author = post(
        &stack,
        &other,
        &[("status", "to the author"), ("in_reply_to_id", &public)],
    )
    .await;
    assert_eq!(
        ids_at(&stack, "/api/v1/timelines/public", None).await,
        vec![to_self.clone(), elsewhere.clone(), public.clone()],
        "replies to others: {} {}",
        to_other["id"],
        to_author["id"]
    );

    // Blocks hide statuses both ways: the blocker does not see the blocked account's...
    let (blocker, _) = stack.account(&app, "blocker").await;
    assert!(sees(&public, Some(&blocker)).await);
    json_ok(stack.act(&blocker, &author_id, "block", &[]).await).await;
    wait_for(
        "the blocker no longer sees the blocked author's status",
        || sees(&public, Some(&blocker)).map(|seen| !seen),
    )
    .await;
    assert_eq!(
        ids_at(&stack, &path, Some(&blocker)).await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids_at(&stack, "/api/v1/timelines/public", Some(&blocker)).await,
        vec![elsewhere.clone()]
    );
    // ...and the blocked account does not see the blocker's.
    let (blocked, blocked_id) = stack.account(&app, "blocked").await;
    let (blocker2, blocker2_id) = stack.account(&app, "blocker").await;
    let theirs = say(&stack, &blocker2, "not for blocked").await;
    assert!(sees(&theirs, Some(&blocked)).await);
    json_ok(stack.act(&blocker2, &blocked_id, "block", &[]).await).await;
    wait_for(
        "the blocked account no longer sees the blocker's status",
        || sees(&theirs, Some(&blocked)).map(|seen| !seen),
    )
    .await;
    assert_eq!(
        ids_at(
            &stack,
            &format!("/api/v1/accounts/{blocker2_id}/statuses"),
            Some(&blocked)
        )
        .await,
        Vec::<String>::new()
    );
    assert!(
        !ids_at(&stack, "/api/v1/timelines/public", Some(&blocked))
            .await
            .contains(&theirs)
    );
    // Others still see it.
    assert!(sees(&theirs, Some(&stranger)).await);
    assert!(sees(&theirs, None).await);
    // Unblocking shows it again.
    json_ok(stack.act(&blocker2, &blocked_id, "unblock", &[]).await).await;
    wait_for("the unblocked account sees the status again", || {
        sees(&theirs, Some(&blocked))
    })
    .await;
}

#[tokio::test]
async fn interactions_and_counters() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (alice, alice_id) = stack.account(&app, "alice").await;
    let (bob, bob_id) = stack.account(&app, "bob").await;
    let id = say(&stack, &alice, "like me").await;

    // Favourite, twice: one favourite.
    for _ in 0..2 {
        let s = json_ok(interact(&stack, &bob, &id, "favourite").await).await;
        assert_eq!(s["id"], id.as_str());
        assert_eq!(s["favourited"], true);
        assert_eq!(s["favourites_count"], 1);
    }
    // Others see the count, not bob's flag.
    let seen = status(&stack, &id, Some(&alice)).await.unwrap();
    assert_eq!(
        (&seen["favourites_count"], &seen["favourited"]),
        (&json!(1), &json!(false))
    );

    // A reblog answers the reblog, wrapping the original.
    let reblog = json_ok(interact(&stack, &bob, &id, "reblog").await).await;
    let reblog_id = reblog["id"].as_str().unwrap().to_owned();
    assert_ne!(reblog_id, id);
    assert_eq!(reblog["account"]["id"], bob_id.as_str());
    assert_eq!(reblog["content"], "");
    assert_eq!(reblog["visibility"], "public");
    assert_eq!(reblog["reblog"]["id"], id.as_str());
    assert_eq!(reblog["reblog"]["account"]["id"], alice_id.as_str());
    assert_eq!(reblog["reblog"]["reblogged"], true);
    assert_eq!(reblog["reblog"]["favourited"], true);
    assert_eq!(reblog["reblog"]["reblogs_count"], 1);
    assert_eq!(reblog["reblog"]["content"], "<p>like me</p>");
    // Reblogging again is the same reblog.
    let again = json_ok(interact(&stack, &bob, &id, "reblog").await).await;
    assert_eq!(again["id"], reblog_id.as_str());
    assert_eq!(again["reblog"]["reblogs_count"], 1);
    // The reblog reads back; acting on it acts on the original.
    let read = status(&stack, &reblog_id, None).await.unwrap();
    assert_eq!(read["reblog"]["id"], id.as_str());

    let s = json_ok(interact(&stack, &bob, &id, "bookmark").await).await;
    assert_eq!(
        (&s["bookmarked"], &s["favourited"], &s["reblogged"]),
        (&json!(true), &json!(true), &json!(true))
    );
    let s = json_ok(interact(&stack, &bob, &reblog_id, "bookmark").await).await;
    assert_eq!(s["id"], id.as_str());

    let accounts = |path: String| {
        let stack = &stack;
        async move { ids_at(stack, &path, None).await }
    };
    assert_eq!(
        accounts(format!("/api/v1/statuses/{id}/favourited_by")).await,
        vec![bob_id.clone()]
    );
    assert_eq!(
        accounts(format!("/api/v1/statuses/{id}/reblogged_by")).await,
        vec![bob_id.clone()]
    );
    assert_eq!(
        ids_at(&stack, "/api/v1/favourites", Some(&bob)).await,
        vec![id.clone()]
    );
    assert_eq!(
        ids_at(&stack, "/api/v1/bookmarks", Some(&bob)).await,
        vec![id.clone()]
    );
    assert_eq!(
        ids_at(&stack, "/api/v1/favourites", Some(&alice)).await,
        Vec::<String>::new()
    );
    json_error(stack.get("/api/v1/favourites", None).await, 401).await;

    // And back.
    let s = json_ok(interact(&stack, &bob, &id, "unfavourite").await).await;
    assert_eq!(
        (&s["favourited"], &s["favourites_count"]),
        (&json!(false), &json!(0))
    );
    let s = json_ok(interact(&stack, &bob, &id, "unfavourite").await).await;
    assert_eq!(s["favourites_count"], 0);
    let s = json_ok(interact(&stack, &bob, &id, "unreblog").await).await;
    assert_eq!(s["id"], id.as_str());
    assert_eq!(
        (&s["reblogged"], &s["reblogs_count"]),
        (&json!(false), &json!(0))
    );
    assert!(status(&stack, &reblog_id, None).await.is_none());
    let s = json_ok(interact(&stack, &bob, &id, "unbookmark").await).await;
    assert_eq!(s["bookmarked"], false);
    for path in [
        format!("/api/v1/statuses/{id}/favourited_by"),
        format!("/api/v1/statuses/{id}/reblogged_by"),
    ] {
        assert_eq!(accounts(path).await, Vec::<String>::new());
    }
    for path in ["/api/v1/favourites", "/api/v1/bookmarks"] {
        assert_eq!(ids_at(&stack, path, Some(&bob)).await, Vec::<String>::new());
    }

    // Pins: own statuses only.
    let s = json_ok(interact(&stack, &alice, &id, "pin").await).await;
    assert_eq!(s["pinned"], true);
    let pinned = format!("/api/v1/accounts/{alice_id}/statuses?pinned=true");
    assert_eq!(ids_at(&stack, &pinned, None).await, vec![id.clone()]);
    assert_eq!(
        status(&stack, &id, Some(&alice)).await.unwrap()["pinned"],
        true
    );
    json_error(interact(&stack, &bob, &id, "pin").await, 422).await;
    let s = json_ok(interact(&stack, &alice, &id, "unpin").await).await;
    // Rookery leaves `pinned` out when the viewer has not pinned the status.
    assert!(s.get("pinned").is_none(), "{s}");
    assert_eq!(ids_at(&stack, &pinned, None).await, Vec::<String>::new());

    // Private statuses: only their author may reblog them.
    json_ok(stack.act(&bob, &alice_id, "follow", &[]).await).await;
    let private = say_as(&stack, &alice, "between us", "private").await;
    let err = json_error(interact(&stack, &bob, &private, "reblog").await, 422).await;
    assert_eq!(
        err["error"],
        "Validation failed: this status cannot be reblogged"
    );
    let own = json_ok(interact(&stack, &alice, &private, "reblog").await).await;
    assert_eq!(own["visibility"], "private");
    assert_eq!(own["reblog"]["id"], private.as_str());
    // A reblog never reaches further than its original.
    let unlisted = say_as(&stack, &alice, "quiet", "unlisted").await;
    let r = stack
        .post_form(
            &format!("/api/v1/statuses/{unlisted}/reblog"),
            Some(&bob),
            &[("visibility", "public")],
        )
        .await;
    assert_eq!(json_ok(r).await["visibility"], "unlisted");

    // Twenty accounts favourite at once: exactly twenty.
    let mut fans: Vec<(String, String)> = Vec::new();
    for _ in 0..4 {
        fans.extend(join_all((0..5).map(|_| stack.account(&app, "fan"))).await);
    }
    let answers = join_all(
        fans.iter()
            .map(|(token, _)| interact_retrying(&stack, token, &id, "favourite")),
    )
    .await;
    for s in answers {
        assert_eq!(s["favourited"], true);
    }
    assert_eq!(
        status(&stack, &id, None).await.unwrap()["favourites_count"],
        20
    );
    // Favouriting again changes nothing.
    let s = json_ok(interact(&stack, &fans[0].0, &id, "favourite").await).await;
    assert_eq!(s["favourites_count"], 20);
    let by = ids_at(
        &stack,
        &format!("/api/v1/statuses/{id}/favourited_by?limit=80"),
        None,
    )
    .await;
    assert_eq!(by.len(), 20);
    let mut expected: Vec<String> = fans.iter().map(|(_, id)| id.clone()).collect();
    let mut got = by.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    // Twenty reblogs at once, too.
    let answers = join_all(
        fans.iter()
            .map(|(token, _)| interact_retrying(&stack, token, &id, "reblog")),
    )
    .await;
    for s in answers {
        assert_eq!(s["reblog"]["id"], id.as_str());
    }
    assert_eq!(
        status(&stack, &id, None).await.unwrap()["reblogs_count"],
        20
    );
}

#[tokio::test]
async fn idempotency_key() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (alice, alice_id) = stack.account(&app, "alice").await;
    let (bob, _) = stack.account(&app, "bob").await;
    let send = |token: &str, key: &str, text: &str| {
        stack
            .http
            .post(format!("{}/api/v1/statuses", stack.base))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .form(&[("status", text)])
            .send()
    };

    let answers = join_all((0..10).map(|_| send(&alice, "key-1", "only once"))).await;
    let mut posted = Vec::new();
    for res in answers {
        posted.push(
            json_ok(res.unwrap()).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    posted.dedup();
    assert_eq!(posted.len(), 1, "{posted:?}");
    let first = posted[0].clone();
    let path = format!("/api/v1/accounts/{alice_id}/statuses");
    assert_eq!(ids_at(&stack, &path, None).await, vec![first.clone()]);

    // Later retries too, whatever their text.
    let retry = json_ok(send(&alice, "key-1", "changed my mind").await.unwrap()).await;
    assert_eq!(retry["id"], first.as_str());
    assert_eq!(retry["content"], "<p>only once</p>");
    // Another key is another status; so is the same key of another account.
    let other = json_ok(send(&alice, "key-2", "only once").await.unwrap()).await;
    assert_ne!(other["id"], first.as_str());
    let bobs = json_ok(send(&bob, "key-1", "only once").await.unwrap()).await;
    assert_ne!(bobs["id"], first.as_str());
    assert_ne!(bobs["id"], other["id"]);
    assert_eq!(ids_at(&stack, &path, None).await.len(), 2);
    // The counter moved once per status.
    wait_for("statuses_count 2", || async {
        statuses_count(&stack, &alice_id).await == 2
    })
    .await;
}

#[tokio::test]
async fn replies_context_edit_delete() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (alice, alice_id) = stack.account(&app, "alice").await;
    let (bob, bob_id) = stack.account(&app, "bob").await;
    let (carol, carol_id) = stack.account(&app, "carol").await;
    assert_eq!(statuses_count(&stack, &alice_id).await, 0);

    let a = say(&stack, &alice, "the root").await;
    wait_for("alice's statuses_count 1", || async {
        statuses_count(&stack, &alice_id).await == 1
    })
    .await;
    let b = post(
        &stack,
        &bob,
        &[("status", "a reply"), ("in_reply_to_id", &a)],
    )
    .await;
    assert_eq!(b["in_reply_to_id"], a.as_str());
    assert_eq!(b["in_reply_to_account_id"], alice_id.as_str());
    let b = b["id"].as_str().unwrap().to_owned();
    let c = post(
        &stack,
        &carol,
        &[("status", "deeper"), ("in_reply_to_id", &b)],
    )
    .await;
    assert_eq!(c["in_reply_to_account_id"], bob_id.as_str());
    let c = c["id"].as_str().unwrap().to_owned();
    // Replying to what one cannot see is replying to nothing.
    json_error(
        stack
            .post_form(
                "/api/v1/statuses",
                Some(&bob),
                &[("status", "x"), ("in_reply_to_id", "12345")],
            )
            .await,
        404,
    )
    .await;

    let context = json_ok(
        stack
            .get(&format!("/api/v1/statuses/{b}/context"), None)
            .await,
    )
    .await;
    assert_eq!(
        ids(context["ancestors"].as_array().unwrap()),
        vec![a.clone()]
    );
    assert_eq!(
        ids(context["descendants"].as_array().unwrap()),
        vec![c.clone()]
    );
    let context = json_ok(
        stack
            .get(&format!("/api/v1/statuses/{a}/context"), Some(&carol))
            .await,
    )
    .await;
    assert_eq!(context["ancestors"], json!([]));
    assert_eq!(
        ids(context["descendants"].as_array().unwrap()),
        vec![b.clone(), c.clone()]
    );
    let count = |id: String| {
        let stack = &stack;
        async move { status(stack, &id, None).await.unwrap()["replies_count"].clone() }
    };
    assert_eq!(count(a.clone()).await, 1);
    assert_eq!(count(b.clone()).await, 1);
    assert_eq!(count(c.clone()).await, 0);

    // Edits: new content, edited_at, and the history oldest first.
    let edit = |token: &str, id: &str, form: &[(&str, &str)]| {
        stack
            .http
            .put(format!("{}/api/v1/statuses/{id}", stack.base))
            .bearer_auth(token)
            .form(form)
            .send()
    };
    let edited = json_ok(
        edit(
            &alice,
            &a,
            &[("status", "the root, #edited"), ("spoiler_text", "cw")],
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(edited["id"], a.as_str());
    assert_eq!(
        edited["content"],
        "<p>the root, <a href=\"http://rookery.test/tags/edited\" class=\"mention hashtag\" \
         rel=\"tag\">#<span>edited</span></a></p>"
    );
    assert_eq!(
        edited["tags"],
        json!([{"name": "edited", "url": "http://rookery.test/tags/edited"}])
    );
    assert_eq!(
        (&edited["spoiler_text"], &edited["sensitive"]),
        (&json!("cw"), &json!(true))
    );
    assert!(edited["edited_at"].is_string(), "{edited}");
    assert_eq!(edited["replies_count"], 1);
    let read = status(&stack, &a, None).await.unwrap();
    assert_eq!(read["content"], edited["content"]);
    assert_eq!(read["edited_at"], edited["edited_at"]);
    let history = json_ok(
        stack
            .get(&format!("/api/v1/statuses/{a}/history"), None)
            .await,
    )
    .await;
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["content"], "<p>the root</p>");
    assert_eq!(
        (&history[0]["spoiler_text"], &history[0]["sensitive"]),
        (&json!(""), &json!(false))
    );
    assert_eq!(history[0]["created_at"], read["created_at"]);
    assert_eq!(history[1]["content"], edited["content"]);
    assert_eq!(history[1]["spoiler_text"], "cw");
    assert_eq!(history[1]["created_at"], edited["edited_at"]);
    assert_eq!(history[1]["account"]["id"], alice_id.as_str());
    // An unedited status has a history of one.
    let one = json_ok(
        stack
            .get(&format!("/api/v1/statuses/{c}/history"), None)
            .await,
    )
    .await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    // Others cannot edit it (it is as absent), nor delete it.
    json_error(
        edit(&bob, &a, &[("status", "mine now")]).await.unwrap(),
        404,
    )
    .await;
    json_error(
        stack
            .http
            .delete(format!("{}/api/v1/statuses/{a}", stack.base))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    json_error(edit(&alice, &a, &[("status", "")]).await.unwrap(), 422).await;

    // Delete: the status with its source, then gone; the parent's counter goes back.
    wait_for("carol's statuses_count 1", || async {
        statuses_count(&stack, &carol_id).await == 1
    })
    .await;
    let deleted = json_ok(
        stack
            .http
            .delete(format!("{}/api/v1/statuses/{c}", stack.base))
            .bearer_auth(&carol)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(deleted["id"], c.as_str());
    assert_eq!(deleted["text"], "deeper");
    assert_eq!(deleted["content"], "<p>deeper</p>");
    assert!(status(&stack, &c, Some(&carol)).await.is_none());
    assert_eq!(count(b.clone()).await, 0);
    let context = json_ok(
        stack
            .get(&format!("/api/v1/statuses/{b}/context"), None)
            .await,
    )
    .await;
    assert_eq!(context["descendants"], json!([]));
    wait_for("carol's statuses_count back to 0", || async {
        statuses_count(&stack, &carol_id).await == 0
    })
    .await;
    // Deleting again: gone.
    json_error(
        stack
            .http
            .delete(format!("{}/api/v1/statuses/{c}", stack.base))
            .bearer_auth(&carol)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_eq!(statuses_count(&stack, &alice_id).await, 1);
}

#[tokio::test]
async fn home_fan_out() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let keys = Keys::new(&stack).await;
    let (author, author_id) = stack.account(&app, "author").await;
    let (f1, f1_id) = stack.account(&app, "fone").await;
    let (f2, f2_id) = stack.account(&app, "ftwo").await;
    let (muter, muter_id) = stack.account(&app, "muter").await;
    let (blocker, blocker_id) = stack.account(&app, "blocker").await;
    let (carl, carl_id) = stack.account(&app, "carl").await;
    let (dora, dora_id) = stack.account(&app, "dora").await;
    let (watcher, _) = stack.account(&app, "watcher").await;
    let (yves, yves_id) = stack.account(&app, "yves").await;
    let (xena, _) = stack.account(&app, "xena").await;
    let (seer, _) = stack.account(&app, "seer").await;

    for token in [&f1, &f2, &muter] {
        json_ok(stack.act(token, &author_id, "follow", &[]).await).await;
    }
    json_ok(stack.act(&muter, &author_id, "mute", &[]).await).await;
    // The blocker follows carl, who will reblog the author.
    json_ok(stack.act(&blocker, &carl_id, "follow", &[]).await).await;
    json_ok(stack.act(&blocker, &author_id, "block", &[]).await).await;
    for target in [&carl_id, &dora_id] {
        json_ok(stack.act(&f1, target, "follow", &[]).await).await;
    }
    json_ok(stack.act(&watcher, &dora_id, "follow", &[]).await).await;
    json_ok(stack.act(&seer, &carl_id, "follow", &[]).await).await;
    let older = say(&stack, &yves, "posted before the follow").await;
    // Every home is read once: live feeds from now on.
    for token in [&f1, &f2, &muter, &blocker, &watcher, &seer, &author] {
        assert_eq!(home_ids(&stack, token).await, Vec::<String>::new());
    }

    let s = say(&stack, &author, "to my followers").await;
    reaches_home(&stack, &f1, &s).await;
    reaches_home(&stack, &f2, &s).await;
    reaches_home(&stack, &author, &s).await;
    assert!(keys.feed(&f1_id).await.contains(&s));
    // The muter's feed got it; the home timeline leaves it out.
    assert!(keys.feed(&muter_id).await.contains(&s));
    assert_eq!(home_ids(&stack, &muter).await, Vec::<String>::new());
    // The blocker was not a follower (the block ended it) and never sees it, not even
    // reblogged by someone they follow.
    let by_carl = json_ok(interact(&stack, &carl, &s, "reblog").await).await;
    let by_carl = by_carl["id"].as_str().unwrap().to_owned();
    // The seer follows carl only: once it has carl's reblog, so would the blocker.
    reaches_home(&stack, &seer, &by_carl).await;
    // f1 already had the original: carl's reblog is not repeated.
    assert_eq!(home(&stack, &f1).await, vec![(s.clone(), None)]);
    let blocker_home = home_ids(&stack, &blocker).await;
    assert!(
        !blocker_home.contains(&s) && !blocker_home.contains(&by_carl),
        "{blocker_home:?}"
    );

    // Two followed accounts reblog the same status: it shows once.
    let t = say(&stack, &xena, "worth sharing").await;
    let r1 = json_ok(interact(&stack, &carl, &t, "reblog").await).await;
    let r1 = r1["id"].as_str().unwrap().to_owned();
    reaches_home(&stack, &f1, &r1).await;
    let r2 = json_ok(interact(&stack, &dora, &t, "reblog").await).await;
    let r2 = r2["id"].as_str().unwrap().to_owned();
    // The watcher follows dora only: once it has her reblog, so would f1.
    reaches_home(&stack, &watcher, &r2).await;
    let entries = home(&stack, &f1).await;
    assert_eq!(
        entries,
        vec![(r1.clone(), Some(t.clone())), (s.clone(), None)],
        "r2 = {r2}"
    );

    // An unfollow takes the author's statuses out.
    json_ok(stack.act(&f2, &author_id, "unfollow", &[]).await).await;
    wait_for("the unfollowed author's status leaves the feed", || async {
        !home_ids(&stack, &f2).await.contains(&s)
    })
    .await;
    assert!(!keys.feed(&f2_id).await.contains(&s));
    // A follow merges the followed account's recent statuses in.
    json_ok(stack.act(&f2, &yves_id, "follow", &[]).await).await;
    reaches_home(&stack, &f2, &older).await;
    assert_eq!(home_ids(&stack, &f2).await, vec![older.clone()]);

    // A delete takes the status out of every feed.
    json_ok(
        stack
            .http
            .delete(format!("{}/api/v1/statuses/{s}", stack.base))
            .bearer_auth(&author)
            .send()
            .await
            .unwrap(),
    )
    .await;
    wait_for("the deleted status leaves the feeds", || async {
        !keys.feed(&f1_id).await.contains(&s) && !keys.feed(&muter_id).await.contains(&s)
    })
    .await;
    assert_eq!(home(&stack, &f1).await, vec![(r1.clone(), Some(t.clone()))]);
    assert!(!keys.feed(&blocker_id).await.contains(&s));
}

#[tokio::test]
async fn inactive_follower_rebuilt_on_return() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let keys = Keys::new(&stack).await;
    let (author, author_id) = stack.account(&app, "author").await;
    let (away, away_id) = stack.account(&app, "away").await;
    let (stale, stale_id) = stack.account(&app, "stale").await;
    let (active, _) = stack.account(&app, "active").await;
    for token in [&away, &stale, &active] {
        json_ok(stack.act(token, &author_id, "follow", &[]).await).await;
        assert_eq!(home_ids(&stack, token).await, Vec::<String>::new());
    }
    let before = say(&stack, &author, "while they were here").await;
    for token in [&away, &stale, &active] {
        reaches_home(&stack, token, &before).await;
    }

    // Both followers go inactive. "away" is in the state a feed TTL leaves (its feed
    // dropped); "stale" keeps a live feed, to see that fan-out skips inactive followers.
    // The users service records a token's first use off the request path; give that
    // write time to land so that it cannot undo ours.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let db = sqlx::PgPool::connect(&stack.db.admin_url).await.unwrap();
    let inactive = |id: &str| {
        let (db, id) = (db.clone(), id.parse::<i64>().unwrap());
        async move {
            sqlx::query(
                "UPDATE users.credentials SET last_active_at = now() - interval '30 days'
                 WHERE account_id = $1",
            )
            .bind(id)
            .execute(&db)
            .await
            .unwrap()
            .rows_affected()
        }
    };
    assert_eq!(inactive(&away_id).await, 1);
    assert_eq!(inactive(&stale_id).await, 1);
    keys.del(&[
        keys.feed_key(&away_id, "live"),
        keys.feed_key(&away_id, "feed"),
    ])
    .await;

    let after = say(&stack, &author, "while they were away").await;
    reaches_home(&stack, &active, &after).await;
    // Still inactive (nothing touched the column meanwhile).
    let still_inactive: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM users.credentials
         WHERE account_id = ANY($1) AND last_active_at < now() - interval '29 days'",
    )
    .bind(vec![
        away_id.parse::<i64>().unwrap(),
        stale_id.parse::<i64>().unwrap(),
    ])
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(still_inactive, 2, "something recorded activity meanwhile");

    // Fan-out went to the active follower only.
    assert!(!keys.exists(&keys.feed_key(&away_id, "feed")).await);
    assert!(!keys.exists(&keys.feed_key(&away_id, "live")).await);
    let stale_feed = keys.feed(&stale_id).await;
    assert!(stale_feed.contains(&before), "{stale_feed:?}");
    assert!(!stale_feed.contains(&after), "{stale_feed:?}");
    // Coming back: the first read rebuilds the feed from Postgres.
    assert_eq!(
        home_ids(&stack, &away).await,
        vec![after.clone(), before.clone()]
    );
    assert!(keys.exists(&keys.feed_key(&away_id, "live")).await);
    let mut rebuilt = keys.feed(&away_id).await;
    rebuilt.sort();
    let mut expected = vec![after.clone(), before.clone()];
    expected.sort();
    assert_eq!(rebuilt, expected);
    // Signing in again records the activity: the feed is fanned out to again.
    let name = stack.account_json(&away_id).await["username"]
        .as_str()
        .unwrap()
        .to_owned();
    let back = json_ok(stack.log_in(&app, &name, "correct horse", "read").await).await;
    let back = back["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        home_ids(&stack, &back).await,
        vec![after.clone(), before.clone()]
    );
    let next = say(&stack, &author, "welcome back").await;
    reaches_home(&stack, &active, &next).await;
    reaches_home(&stack, &back, &next).await;
    assert!(keys.feed(&away_id).await.contains(&next));
    db.close().await;
}

#[tokio::test]
async fn celebrity_merge() {
    let stack = spawn_with(
        &rookery_kit::testing::redis_url(),
        |_| {},
        |timeline| timeline.celebrity_followers = 2,
    )
    .await;
    let app = stack.create_app().await;
    let keys = Keys::new(&stack).await;
    let (star, star_id) = stack.account(&app, "star").await;
    let mut fans = Vec::new();
    for _ in 0..3 {
        let (token, id) = stack.account(&app, "fan").await;
        json_ok(stack.act(&token, &star_id, "follow", &[]).await).await;
        assert_eq!(home_ids(&stack, &token).await, Vec::<String>::new());
        fans.push((token, id));
    }
    assert_eq!(stack.account_json(&star_id).await["followers_count"], 3);

    let s = say(&stack, &star, "hello, all of you").await;
    for (token, _) in &fans {
        reaches_home(&stack, token, &s).await;
    }
    let author_key = format!("{}:tl:author:{star_id}", stack.redis_prefix);
    assert_eq!(keys.zset(&author_key).await, vec![s.clone()]);
    for (_, id) in &fans {
        assert!(!keys.feed(id).await.contains(&s), "fan {id} got a fan-out");
    }
    // The star's own home has it.
    reaches_home(&stack, &star, &s).await;

    // A second post: merged the same way, newest first.
    let s2 = say(&stack, &star, "and again").await;
    for (token, _) in &fans {
        reaches_home(&stack, token, &s2).await;
        assert_eq!(home_ids(&stack, token).await, vec![s2.clone(), s.clone()]);
    }
    // A new follower with a live feed merges the star in too.
    let (late, late_id) = stack.account(&app, "late").await;
    assert_eq!(home_ids(&stack, &late).await, Vec::<String>::new());
    json_ok(stack.act(&late, &star_id, "follow", &[]).await).await;
    wait_for("a new follower's home merges the star in", || async {
        home_ids(&stack, &late).await == vec![s2.clone(), s.clone()]
    })
    .await;
    assert!(!keys.feed(&late_id).await.contains(&s));
    // Deleting takes it out of the merged list.
    json_ok(
        stack
            .http
            .delete(format!("{}/api/v1/statuses/{s}", stack.base))
            .bearer_auth(&star)
            .send()
            .await
            .unwrap(),
    )
    .await;
    wait_for("the deleted status leaves the star's list", || async {
        keys.zset(&author_key).await == vec![s2.clone()]
    })
    .await;
    for (token, _) in &fans {
        assert_eq!(home_ids(&stack, token).await, vec![s2.clone()]);
    }
    // An unfollow stops the merge.
    json_ok(stack.act(&fans[0].0, &star_id, "unfollow", &[]).await).await;
    wait_for("an unfollower's home no longer merges the star", || async {
        home_ids(&stack, &fans[0].0).await.is_empty()
    })
    .await;
}

#[tokio::test]
async fn pagination() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (author, author_id) = stack.account(&app, "author").await;
    let (reader, _) = stack.account(&app, "reader").await;
    json_ok(stack.act(&reader, &author_id, "follow", &[]).await).await;
    let mut posted = Vec::new();
    for n in 1..=5 {
        posted.push(say(&stack, &author, &format!("number {n}")).await);
    }
    // Newest first: s5 … s1.
    let s: Vec<String> = posted.iter().rev().cloned().collect();

    for base in [
        "/api/v1/timelines/home".to_owned(),
        "/api/v1/timelines/public".to_owned(),
        format!("/api/v1/accounts/{author_id}/statuses"),
    ] {
        let get = |path: String| {
            let stack = &stack;
            let reader = reader.clone();
            async move { page(stack, &path, Some(&reader)).await }
        };
        if base.ends_with("home") {
            // Posts reach the (rebuilt on first read) feed asynchronously.
            reaches_home(&stack, &reader, &s[0]).await;
        }
        let (first, next, prev) = get(format!("{base}?limit=2")).await;
        assert_eq!(first, s[0..2].to_vec(), "{base}");
        assert_eq!(next, Some(format!("{base}?limit=2&max_id={}", s[1])));
        assert_eq!(prev, Some(format!("{base}?limit=2&min_id={}", s[0])));
        let (second, next, _) = get(next.unwrap()).await;
        assert_eq!(second, s[2..4].to_vec(), "{base}");
        let (third, next, prev) = get(next.unwrap()).await;
        assert_eq!(third, s[4..5].to_vec(), "{base}");
        assert_eq!(next, None, "{base}: a short page is the last");
        // Going back up from the last page: the two right after it.
        let (back, _, _) = get(prev.unwrap()).await;
        assert_eq!(back, s[2..4].to_vec(), "{base}");
        // min_id: the ones right after it (newest first); since_id: the newest ones.
        let (after, _, _) = get(format!("{base}?limit=2&min_id={}", s[4])).await;
        assert_eq!(after, s[2..4].to_vec(), "{base}");
        let (since, _, _) = get(format!("{base}?limit=2&since_id={}", s[4])).await;
        assert_eq!(since, s[0..2].to_vec(), "{base}");
        let (between, _, _) = get(format!("{base}?max_id={}&since_id={}", s[0], s[4])).await;
        assert_eq!(between, s[1..4].to_vec(), "{base}");
        // Nothing newer than the newest: empty, no Link.
        let (empty, next, prev) = get(format!("{base}?min_id={}", s[0])).await;
        assert_eq!(
            (empty, next, prev),
            (Vec::<String>::new(), None, None),
            "{base}"
        );
        // Limits clamp to 40 (the Link header tells); malformed ones are a 422.
        let (all, _, prev) = get(format!("{base}?limit=100")).await;
        assert_eq!(all, s, "{base}");
        assert_eq!(prev, Some(format!("{base}?limit=40&min_id={}", s[0])));
        for bad in ["limit=abc", "max_id=abc", "min_id=1e3"] {
            json_error(
                stack.get(&format!("{base}?{bad}"), Some(&reader)).await,
                422,
            )
            .await;
        }
    }
}

#[tokio::test]
async fn hashtags() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (alice, alice_id) = stack.account(&app, "alice").await;
    let (bob, _) = stack.account(&app, "bob").await;
    let (carol, _) = stack.account(&app, "carol").await;
    let (fan, _) = stack.account(&app, "fan").await;

    let a1 = say(&stack, &alice, "I love #Rust").await;
    let b1 = say(&stack, &bob, "#rust and #tokio").await;
    let hidden = [
        say_as(&stack, &alice, "#rust quietly", "unlisted").await,
        say_as(&stack, &alice, "#rust privately", "private").await,
    ];
    let c1 = say(&stack, &carol, "#RUST #async").await;
    let t1 = say(&stack, &carol, "only #tokio").await;

    let tag = |path: &str| {
        let path = path.to_owned();
        let stack = &stack;
        async move { ids_at(stack, &path, None).await }
    };
    let rust = vec![c1.clone(), b1.clone(), a1.clone()];
    assert_eq!(tag("/api/v1/timelines/tag/rust").await, rust);
    assert_eq!(tag("/api/v1/timelines/tag/RUST").await, rust);
    assert_eq!(tag("/api/v1/timelines/tag/%23Rust").await, rust);
    assert!(!rust.iter().any(|id| hidden.contains(id)));
    assert_eq!(
        tag("/api/v1/timelines/tag/rust?any[]=tokio").await,
        vec![t1.clone(), c1.clone(), b1.clone(), a1.clone()]
    );
    assert_eq!(
        tag("/api/v1/timelines/tag/rust?all[]=tokio").await,
        vec![b1.clone()]
    );
    assert_eq!(
        tag("/api/v1/timelines/tag/rust?none[]=tokio&none[]=async").await,
        vec![a1.clone()]
    );
    assert_eq!(
        tag("/api/v1/timelines/tag/rust?limit=1&max_id=").await,
        vec![c1.clone()]
    );
    assert_eq!(
        tag("/api/v1/timelines/tag/nosuchtag").await,
        Vec::<String>::new()
    );

    // The tag, with a week of history (counted as fan-out processes the posts).
    wait_for("3 uses of #rust today", || async {
        let t = json_ok(stack.get("/api/v1/tags/rust", Some(&fan)).await).await;
        t["history"][0]["uses"] == "3"
    })
    .await;
    let t = json_ok(stack.get("/api/v1/tags/Rust", Some(&fan)).await).await;
    assert_eq!(t["name"], "rust");
    assert_eq!(t["url"], "http://rookery.test/tags/rust");
    assert_eq!(t["following"], false);
    let history = t["history"].as_array().unwrap();
    assert_eq!(history.len(), 7);
    assert_eq!(
        (&history[0]["uses"], &history[0]["accounts"]),
        (&json!("3"), &json!("3"))
    );
    for day in &history[1..] {
        assert_eq!((&day["uses"], &day["accounts"]), (&json!("0"), &json!("0")));
    }
    let days: Vec<i64> = history
        .iter()
        .map(|d| d["day"].as_str().unwrap().parse().unwrap())
        .collect();
    for pair in days.windows(2) {
        assert_eq!(pair[0] - pair[1], 86_400, "{days:?}");
    }
    let anonymous = json_ok(stack.get("/api/v1/tags/rust", None).await).await;
    assert!(anonymous.get("following").is_none(), "{anonymous}");
    // A hashtag nobody used yet is a Tag all the same (as in Mastodon), unused.
    let unused = json_ok(stack.get("/api/v1/tags/NoSuchTag", Some(&fan)).await).await;
    assert_eq!(
        (&unused["name"], &unused["url"], &unused["following"]),
        (
            &json!("nosuchtag"),
            &json!("http://rookery.test/tags/nosuchtag"),
            &json!(false)
        )
    );
    let days = unused["history"].as_array().unwrap();
    assert_eq!(days.len(), 7);
    assert!(
        days.iter()
            .all(|d| d["uses"] == "0" && d["accounts"] == "0"),
        "{unused}"
    );
    // Not a hashtag at all: 404.
    json_error(stack.get("/api/v1/tags/no-such", None).await, 404).await;

    // Following a tag: its public statuses join the home timeline.
    assert_eq!(home_ids(&stack, &fan).await, Vec::<String>::new());
    let followed = json_ok(
        stack
            .post_form("/api/v1/tags/Rust/follow", Some(&fan), &[])
            .await,
    )
    .await;
    assert_eq!(
        (&followed["name"], &followed["following"]),
        (&json!("rust"), &json!(true))
    );
    let listed = list(&stack, "/api/v1/followed_tags", Some(&fan)).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (&listed[0]["name"], &listed[0]["following"]),
        (&json!("rust"), &json!(true))
    );
    let (dave, _) = stack.account(&app, "dave").await;
    let news = say(&stack, &dave, "#Rust news").await;
    let quiet = say_as(&stack, &dave, "#rust but unlisted", "unlisted").await;
    reaches_home(&stack, &fan, &news).await;
    assert!(!home_ids(&stack, &fan).await.contains(&quiet));
    // Unfollowing it.
    let unfollowed = json_ok(
        stack
            .post_form("/api/v1/tags/rust/unfollow", Some(&fan), &[])
            .await,
    )
    .await;
    assert_eq!(unfollowed["following"], false);
    assert_eq!(
        list(&stack, "/api/v1/followed_tags", Some(&fan)).await,
        Vec::<Value>::new()
    );
    json_error(
        stack
            .post_form("/api/v1/tags/no-such/follow", Some(&fan), &[])
            .await,
        422,
    )
    .await;

    // Trends: most used first.
    wait_for("#rust trends first", || async {
        let trends = list(&stack, "/api/v1/trends/tags", None).await;
        trends.first().is_some_and(|t| t["name"] == "rust")
    })
    .await;
    let trends = list(&stack, "/api/v1/trends/tags", None).await;
    let names: Vec<&str> = trends.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["rust", "tokio", "async"]);
    assert_eq!(trends[0]["history"][0]["uses"], "4");

    // Search: hashtags by prefix, statuses by word (public ones and one's own).
    let found = json_ok(stack.get("/api/v2/search?q=rus&type=hashtags", None).await).await;
    assert_eq!(found["hashtags"][0]["name"], "rust");
    assert_eq!(found["accounts"], json!([]));
    assert_eq!(found["statuses"], json!([]));
    let word = format!("zebra{}", &alice_id[alice_id.len() - 6..]);
    let public = say(&stack, &alice, &format!("a {word} appears")).await;
    let secret = say_as(&stack, &bob, &format!("a private {word}"), "private").await;
    let search = |token: Option<&str>| {
        let (stack, word) = (&stack, word.clone());
        let token = token.map(str::to_owned);
        async move {
            let found = json_ok(
                stack
                    .get(
                        &format!("/api/v2/search?q={word}&type=statuses"),
                        token.as_deref(),
                    )
                    .await,
            )
            .await;
            ids(found["statuses"].as_array().unwrap())
        }
    };
    assert_eq!(search(Some(&fan)).await, vec![public.clone()]);
    assert_eq!(
        search(Some(&bob)).await,
        vec![secret.clone(), public.clone()]
    );
    // Statuses are searched for signed-in users only.
    assert_eq!(search(None).await, Vec::<String>::new());
    json_error(
        stack.get("/api/v2/search?q=x&type=nonsense", None).await,
        422,
    )
    .await;
}

#[tokio::test]
async fn reblog_after_unreblog_reaches_home() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (reader, _) = stack.account(&app, "reader").await;
    let (carl, carl_id) = stack.account(&app, "carl").await;
    let (dora, dora_id) = stack.account(&app, "dora").await;
    let (xena, _) = stack.account(&app, "xena").await;
    let (watcher, _) = stack.account(&app, "watcher").await;
    for target in [&carl_id, &dora_id] {
        json_ok(stack.act(&reader, target, "follow", &[]).await).await;
    }
    json_ok(stack.act(&watcher, &dora_id, "follow", &[]).await).await;
    for token in [&reader, &watcher] {
        assert_eq!(home_ids(&stack, token).await, Vec::<String>::new());
    }
    let t = say(&stack, &xena, "share me").await;
    let r1 = json_ok(interact(&stack, &carl, &t, "reblog").await).await;
    reaches_home(&stack, &reader, r1["id"].as_str().unwrap()).await;
    json_ok(interact(&stack, &carl, &t, "unreblog").await).await;
    wait_for(
        "the unreblogged status leaves the home timeline",
        || async { home_ids(&stack, &reader).await.is_empty() },
    )
    .await;
    // Dora reblogs it afterwards: the reader follows her, so it shows.
    let r2 = json_ok(interact(&stack, &dora, &t, "reblog").await).await;
    let r2 = r2["id"].as_str().unwrap().to_owned();
    // The watcher follows dora too: once it has her reblog, the reader's feed was
    // written in the same pipeline.
    reaches_home(&stack, &watcher, &r2).await;
    assert_eq!(home(&stack, &reader).await, vec![(r2, Some(t))]);
}

#[tokio::test]
async fn follow_without_reblogs_hides_reblogs() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (reader, _) = stack.account(&app, "reader").await;
    let (carl, carl_id) = stack.account(&app, "carl").await;
    let (xena, _) = stack.account(&app, "xena").await;
    let rel = json_ok(
        stack
            .act(&reader, &carl_id, "follow", &[("reblogs", "false")])
            .await,
    )
    .await;
    assert_eq!(rel["showing_reblogs"], false);
    assert_eq!(home_ids(&stack, &reader).await, Vec::<String>::new());
    let t = say(&stack, &xena, "share me").await;
    json_ok(interact(&stack, &carl, &t, "reblog").await).await;
    // Events are handled in order: once carl's next post is there, the reblog was done.
    let own = say(&stack, &carl, "mine").await;
    reaches_home(&stack, &reader, &own).await;
    assert_eq!(home_ids(&stack, &reader).await, vec![own]);
}

#[tokio::test]
async fn replies_to_unfollowed_accounts_stay_out_of_home() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (reader, _) = stack.account(&app, "reader").await;
    let (carl, carl_id) = stack.account(&app, "carl").await;
    let (xena, _) = stack.account(&app, "xena").await;
    json_ok(stack.act(&reader, &carl_id, "follow", &[]).await).await;
    assert_eq!(home_ids(&stack, &reader).await, Vec::<String>::new());
    let t = say(&stack, &xena, "hi").await;
    let reply = post(&stack, &carl, &[("status", "re"), ("in_reply_to_id", &t)]).await;
    let own = say(&stack, &carl, "mine").await;
    reaches_home(&stack, &reader, &own).await;
    assert_eq!(
        home_ids(&stack, &reader).await,
        vec![own],
        "reply {} shown",
        reply["id"]
    );
}
