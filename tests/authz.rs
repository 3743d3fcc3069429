//! The authorization matrix: every gateway route that names a resource (or acts for the
//! signed-in account) sent by every kind of caller, with the answer Mastodon gives.
//!
//! Callers: nobody (no token), an app-only token, the owner's `read`-only and
//! `write`-only tokens, another user (B), and the owner (A) with every scope. A owns
//! statuses of each visibility with media, unattached uploads and notifications. Each
//! row is one request; a new route is one more row of [`routes`].
//!
//! Besides each row's status, every answer is checked for:
//! - the error format: non-2xx answers are Mastodon's `{"error": "..."}` JSON;
//! - leaks: what a caller may not see (private and direct statuses, their media and
//!   text, A's uploads and notifications) appears in none of its answers, lists
//!   (timelines, search, account statuses, contexts) included.
//!
//! Then a token cached by two gateway replicas is revoked through one, and the whole
//! matrix is replayed with it on both: 401 everywhere.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{collections::HashMap, time::Duration};

use reqwest::{
    Method, Response, StatusCode,
    multipart::{Form, Part},
};
use rookery_e2e::*;
use serde_json::Value;

const JPEG: &[u8] = include_bytes!("fixtures/exif-gps-rotated.jpg");

/// The callers of the matrix, in the order of [`Route::expect`] (and the order a row's
/// requests are sent in: the owner last, so its writes never hide another's refusal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Actor {
    /// No `Authorization` header.
    Anon,
    /// An app-only token (client_credentials, `read write follow push`).
    App,
    /// A's token with scope `read`.
    Read,
    /// A's token with scope `write`.
    Write,
    /// B: another user, with every scope, who follows nobody.
    Other,
    /// A, the owner, with every scope.
    Owner,
}

const ACTORS: [Actor; 6] = [
    Actor::Anon,
    Actor::App,
    Actor::Read,
    Actor::Write,
    Actor::Other,
    Actor::Owner,
];

/// Not sent by that caller (a write that would succeed and change the fixture, or one of
/// the caller's own business that says nothing about A's resources).
const S: u16 = 0;

/// A request body.
enum Body {
    None,
    /// A form; values may hold `{placeholders}`.
    Form(Vec<(&'static str, &'static str)>),
    /// A multipart upload of a small JPEG as `file`.
    Upload,
}

/// One row of the matrix.
struct Route {
    method: Method,
    /// The path and query, with `{placeholders}` (see [`Fixture`]).
    path: &'static str,
    body: Body,
    /// The status each caller gets, in [`ACTORS`] order; [`S`]: not sent.
    expect: [u16; 6],
    /// A streaming endpoint: a 2xx answer is an endless body, not read.
    stream: bool,
}

fn row(method: Method, path: &'static str, expect: [u16; 6]) -> Route {
    Route {
        method,
        path,
        body: Body::None,
        expect,
        stream: false,
    }
}

fn form(
    method: Method,
    path: &'static str,
    fields: &[(&'static str, &'static str)],
    expect: [u16; 6],
) -> Route {
    Route {
        body: Body::Form(fields.to_vec()),
        ..row(method, path, expect)
    }
}

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PUT: Method = Method::PUT;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;

// Columns: anon, app, read, write, other (B), owner (A).
/// A status A may see and B may not, through a read that takes an optional token
/// (`read:statuses` or `read:accounts` when one is given).
const HIDDEN_READ: [u16; 6] = [404, 404, 200, 403, 404, 200];
/// The same read of a status everyone may see.
const PUBLIC_READ: [u16; 6] = [200, 200, 200, 403, 200, 200];
/// A read of the signed-in user's own things (a token of a user is required).
const OWN_READ: [u16; 6] = [401, 422, 200, 403, 200, 200];
/// A read of one of A's own things by id: B finds nothing.
const OWNER_READ: [u16; 6] = [401, 422, 200, 403, 404, 200];
/// A write B may not make to A's resource: 404 (Mastodon: `Record not found`, the same
/// answer as for a missing resource); the owner's request is not sent.
const FOREIGN_WRITE: [u16; 6] = [401, 422, 403, S, 404, S];
/// A write the owner makes to its own resource (sent last in its row).
const OWNER_WRITE: [u16; 6] = [401, 422, 403, S, 404, 200];
/// A write for the signed-in account only (its own timeline, relationships...): only
/// the scope and the kind of token are checked.
const SELF_WRITE: [u16; 6] = [401, 422, 403, S, S, S];

/// Every route of the gateway that names a resource or acts for the signed-in account.
/// Rows whose owner request deletes something come last and use resources of their own.
fn routes() -> Vec<Route> {
    vec![
        // ---------------------------------------------------------------- statuses
        row(GET, "/api/v1/statuses/{pub}", PUBLIC_READ),
        row(GET, "/api/v1/statuses/{unl}", PUBLIC_READ),
        row(GET, "/api/v1/statuses/{quote}", PUBLIC_READ),
        row(GET, "/api/v1/statuses/{priv}", HIDDEN_READ),
        row(GET, "/api/v1/statuses/{dir}", HIDDEN_READ),
        row(GET, "/api/v1/statuses/{priv_reply}", HIDDEN_READ),
        // Direct to B: B sees it, nobody else.
        row(
            GET,
            "/api/v1/statuses/{dir_b}",
            [404, 404, 200, 403, 200, 200],
        ),
        // Unknown and malformed ids answer like hidden ones.
        row(
            GET,
            "/api/v1/statuses/{missing}",
            [404, 404, 404, 403, 404, 404],
        ),
        row(
            GET,
            "/api/v1/statuses/not-an-id",
            [404, 404, 404, 403, 404, 404],
        ),
        row(
            GET,
            "/api/v1/statuses?id[]={pub}&id[]={priv}&id[]={dir}&id[]={dir_b}",
            PUBLIC_READ,
        ),
        row(GET, "/api/v1/statuses/{pub}/context", PUBLIC_READ),
        row(GET, "/api/v1/statuses/{priv}/context", HIDDEN_READ),
        row(GET, "/api/v1/statuses/{dir}/context", HIDDEN_READ),
        row(GET, "/api/v1/statuses/{pub}/history", PUBLIC_READ),
        row(GET, "/api/v1/statuses/{priv}/history", HIDDEN_READ),
        row(GET, "/api/v1/statuses/{dir}/history", HIDDEN_READ),
        row(GET, "/api/v1/statuses/{pub}/favourited_by", PUBLIC_READ),
        row(GET, "/api/v1/statuses/{priv}/favourited_by", HIDDEN_READ),
        row(GET, "/api/v1/statuses/{dir}/favourited_by", HIDDEN_READ),
        row(GET, "/api/v1/statuses/{pub}/reblogged_by", PUBLIC_READ),
        row(GET, "/api/v1/statuses/{priv}/reblogged_by", HIDDEN_READ),
        row(GET, "/api/v1/statuses/{dir}/reblogged_by", HIDDEN_READ),
        // The source is the author's only (Mastodon: `Status.where(account:
        // current_account)`), whoever else may see the status.
        row(GET, "/api/v1/statuses/{pub}/source", OWNER_READ),
        row(GET, "/api/v1/statuses/{priv}/source", OWNER_READ),
        row(GET, "/api/v1/statuses/{dir}/source", OWNER_READ),
        row(GET, "/api/v1/statuses/{dir_b}/source", OWNER_READ),
        // Posting: a read token cannot; B cannot answer or quote what it cannot see.
        form(POST, "/api/v1/statuses", &[("status", "hello")], SELF_WRITE),
        form(
            POST,
            "/api/v1/statuses",
            &[("status", "a reply"), ("in_reply_to_id", "{priv}")],
            FOREIGN_WRITE,
        ),
        form(
            POST,
            "/api/v1/statuses",
            &[("status", "a reply"), ("in_reply_to_id", "{dir}")],
            FOREIGN_WRITE,
        ),
        form(
            POST,
            "/api/v1/statuses",
            &[("status", "a quote"), ("quoted_status_id", "{priv}")],
            FOREIGN_WRITE,
        ),
        // Editing: only the author, whatever the visibility.
        form(
            PUT,
            "/api/v1/statuses/{pub}",
            &[("status", "edited #authzmatrix zebraquill")],
            OWNER_WRITE,
        ),
        form(
            PUT,
            "/api/v1/statuses/{priv}",
            &[("status", "pwned")],
            FOREIGN_WRITE,
        ),
        form(
            PUT,
            "/api/v1/statuses/{dir_b}",
            &[("status", "pwned")],
            FOREIGN_WRITE,
        ),
        form(
            PUT,
            "/api/v1/statuses/{unl}",
            &[("status", "pwned"), ("media_ids[]", "{m_free}")],
            FOREIGN_WRITE,
        ),
        row(DELETE, "/api/v1/statuses/{pub}", FOREIGN_WRITE),
        row(DELETE, "/api/v1/statuses/{priv}", FOREIGN_WRITE),
        row(DELETE, "/api/v1/statuses/{dir_b}", FOREIGN_WRITE),
        // Interactions with statuses B cannot see: as if they did not exist.
        row(POST, "/api/v1/statuses/{priv}/favourite", FOREIGN_WRITE),
        row(POST, "/api/v1/statuses/{priv}/unfavourite", FOREIGN_WRITE),
        row(POST, "/api/v1/statuses/{priv}/reblog", FOREIGN_WRITE),
        row(POST, "/api/v1/statuses/{priv}/unreblog", FOREIGN_WRITE),
        row(POST, "/api/v1/statuses/{priv}/bookmark", FOREIGN_WRITE),
        row(POST, "/api/v1/statuses/{priv}/unbookmark", FOREIGN_WRITE),
        row(POST, "/api/v1/statuses/{priv}/pin", FOREIGN_WRITE),
        row(POST, "/api/v1/statuses/{priv}/unpin", FOREIGN_WRITE),
        row(POST, "/api/v1/statuses/{dir}/favourite", FOREIGN_WRITE),
        row(POST, "/api/v1/statuses/{dir}/reblog", FOREIGN_WRITE),
        row(POST, "/api/v1/statuses/{dir}/bookmark", FOREIGN_WRITE),
        // Seen but not B's to pin; a direct status is nobody's to reblog. Rookery answers
        // 422 (validation); Mastodon 422 for the pin, 403 for the reblog.
        row(
            POST,
            "/api/v1/statuses/{pub}/pin",
            [401, 422, 403, S, 422, S],
        ),
        row(
            POST,
            "/api/v1/statuses/{dir_b}/reblog",
            [401, 422, 403, S, 422, S],
        ),
        // Own lists.
        row(GET, "/api/v1/favourites", OWN_READ),
        row(GET, "/api/v1/bookmarks", OWN_READ),
        // --------------------------------------------------------------- timelines
        row(GET, "/api/v1/timelines/home", OWN_READ),
        row(GET, "/api/v1/timelines/public", PUBLIC_READ),
        row(GET, "/api/v1/timelines/public?local=true", PUBLIC_READ),
        row(GET, "/api/v1/timelines/tag/authzmatrix", PUBLIC_READ),
        row(GET, "/api/v1/accounts/{a}/statuses", PUBLIC_READ),
        row(
            GET,
            "/api/v1/accounts/{a}/statuses?pinned=true",
            PUBLIC_READ,
        ),
        row(
            GET,
            "/api/v1/accounts/{a}/statuses?only_media=true",
            PUBLIC_READ,
        ),
        row(
            GET,
            "/api/v1/accounts/{a}/statuses?tagged=authzmatrix",
            PUBLIC_READ,
        ),
        row(GET, "/api/v2/search?q=zebraquill", PUBLIC_READ),
        row(
            GET,
            "/api/v2/search?q=privsecret&type=statuses",
            PUBLIC_READ,
        ),
        row(
            GET,
            "/api/v2/search?q=authzmatrix&type=hashtags",
            PUBLIC_READ,
        ),
        row(GET, "/api/v1/tags/authzmatrix", PUBLIC_READ),
        row(POST, "/api/v1/tags/authzmatrix/follow", SELF_WRITE),
        row(POST, "/api/v1/tags/authzmatrix/unfollow", SELF_WRITE),
        row(GET, "/api/v1/followed_tags", OWN_READ),
        // Rookery asks `read` of a token here; Mastodon asks nothing (public data).
        row(GET, "/api/v1/trends/statuses", PUBLIC_READ),
        row(GET, "/api/v1/trends/tags", PUBLIC_READ),
        // ---------------------------------------------------------------- accounts
        row(GET, "/api/v1/accounts/{a}", PUBLIC_READ),
        row(GET, "/api/v1/accounts/lookup?acct={a_name}", PUBLIC_READ),
        row(
            GET,
            "/api/v1/accounts/{missing}",
            [404, 404, 404, 403, 404, 404],
        ),
        row(GET, "/api/v1/accounts/{a}/followers", PUBLIC_READ),
        row(GET, "/api/v1/accounts/{a}/following", PUBLIC_READ),
        row(GET, "/api/v1/accounts/relationships?id[]={a}", OWN_READ),
        row(GET, "/api/v1/accounts/search?q={a_name}", OWN_READ),
        row(GET, "/api/v1/accounts/verify_credentials", OWN_READ),
        form(
            PATCH,
            "/api/v1/accounts/update_credentials",
            &[("display_name", "pwned")],
            SELF_WRITE,
        ),
        row(GET, "/api/v1/follow_requests", OWN_READ),
        row(GET, "/api/v1/blocks", OWN_READ),
        row(GET, "/api/v1/mutes", OWN_READ),
        // Relationship changes (aimed at C, whom nothing else involves).
        row(POST, "/api/v1/accounts/{c}/follow", SELF_WRITE),
        row(POST, "/api/v1/accounts/{c}/unfollow", SELF_WRITE),
        row(
            POST,
            "/api/v1/accounts/{c}/remove_from_followers",
            SELF_WRITE,
        ),
        row(POST, "/api/v1/accounts/{c}/block", SELF_WRITE),
        row(POST, "/api/v1/accounts/{c}/unblock", SELF_WRITE),
        row(POST, "/api/v1/accounts/{c}/mute", SELF_WRITE),
        row(POST, "/api/v1/accounts/{c}/unmute", SELF_WRITE),
        // B has no follow request from C to accept or reject.
        row(POST, "/api/v1/follow_requests/{c}/authorize", FOREIGN_WRITE),
        row(POST, "/api/v1/follow_requests/{c}/reject", FOREIGN_WRITE),
        // ------------------------------------------------------------------- media
        // Mastodon asks `write:media` even to read an upload.
        row(
            GET,
            "/api/v1/media/{m_free}",
            [401, 422, 403, 200, 404, 200],
        ),
        row(GET, "/api/v1/media/{m_pub}", [401, 422, 403, 200, 404, 200]),
        form(
            PUT,
            "/api/v1/media/{m_free}",
            &[("description", "pwned")],
            FOREIGN_WRITE,
        ),
        form(
            PUT,
            "/api/v1/media/{m_priv}",
            &[("description", "pwned")],
            FOREIGN_WRITE,
        ),
        row(DELETE, "/api/v1/media/{m_free}", FOREIGN_WRITE),
        row(DELETE, "/api/v1/media/{m_priv}", FOREIGN_WRITE),
        Route {
            body: Body::Upload,
            ..row(POST, "/api/v2/media", SELF_WRITE)
        },
        Route {
            body: Body::Upload,
            ..row(POST, "/api/v1/media", SELF_WRITE)
        },
        // ----------------------------------------------------------- notifications
        row(GET, "/api/v1/notifications", OWN_READ),
        row(
            GET,
            "/api/v1/notifications?types[]=mention&exclude_types[]=follow",
            OWN_READ,
        ),
        row(GET, "/api/v1/notifications/{n_keep}", OWNER_READ),
        row(GET, "/api/v1/notifications/unread_count", OWN_READ),
        row(GET, "/api/v2/notifications", OWN_READ),
        row(GET, "/api/v2/notifications/unread_count", OWN_READ),
        row(GET, "/api/v2/notifications/{g_keep}", OWNER_READ),
        row(GET, "/api/v2/notifications/{g_follow}", OWNER_READ),
        row(GET, "/api/v2/notifications/{g_keep}/accounts", OWNER_READ),
        row(GET, "/api/v2/notifications/{g_follow}/accounts", OWNER_READ),
        row(
            POST,
            "/api/v1/notifications/{n_keep}/dismiss",
            FOREIGN_WRITE,
        ),
        // Mastodon answers 200 and deletes nothing here (it scopes the delete to the
        // caller); Rookery 404s. Either way A's notifications stay (checked after).
        row(
            POST,
            "/api/v2/notifications/{g_keep}/dismiss",
            FOREIGN_WRITE,
        ),
        row(
            POST,
            "/api/v2/notifications/{g_follow}/dismiss",
            FOREIGN_WRITE,
        ),
        row(
            GET,
            "/api/v1/markers?timeline[]=home&timeline[]=notifications",
            OWN_READ,
        ),
        form(
            POST,
            "/api/v1/markers",
            &[("home[last_read_id]", "{pub}")],
            SELF_WRITE,
        ),
        row(POST, "/api/v1/notifications/clear", SELF_WRITE),
        // --------------------------------------------------------------- streaming
        // Mastodon's streaming server answers 401 for a token without the scope too.
        Route {
            stream: true,
            ..row(
                GET,
                "/api/v1/streaming/user",
                [401, 401, 200, 401, 200, 200],
            )
        },
        Route {
            stream: true,
            ..row(
                GET,
                "/api/v1/streaming/user/notification",
                [401, 401, 200, 401, 200, 200],
            )
        },
        // ------------------------------------ the owner's deletions (resources of their own)
        form(
            PUT,
            "/api/v1/media/{m_doomed}",
            &[("description", "owner-set")],
            OWNER_WRITE,
        ),
        row(DELETE, "/api/v1/media/{m_doomed}", OWNER_WRITE),
        row(
            POST,
            "/api/v1/notifications/{n_doomed}/dismiss",
            OWNER_WRITE,
        ),
        row(DELETE, "/api/v1/statuses/{doomed}", OWNER_WRITE),
    ]
}

/// A's resources and everyone's tokens, by placeholder name.
struct Fixture {
    values: HashMap<&'static str, String>,
    tokens: HashMap<&'static str, String>,
    /// What each caller must never be shown (ids and secret words).
    forbidden: HashMap<&'static str, Vec<String>>,
}

impl Fixture {
    fn fill(&self, template: &str) -> String {
        let mut out = template.to_owned();
        for (k, v) in &self.values {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        assert!(!out.contains('{'), "unknown placeholder in {template}");
        out
    }

    fn token(&self, actor: Actor) -> Option<&str> {
        let name = match actor {
            Actor::Anon => return None,
            Actor::App => "app",
            Actor::Read => "read",
            Actor::Write => "write",
            Actor::Other => "other",
            Actor::Owner => "owner",
        };
        Some(self.tokens[name].as_str())
    }

    fn forbidden(&self, actor: Actor) -> &[String] {
        let name = match actor {
            Actor::Anon | Actor::App => "stranger",
            Actor::Other => "other",
            Actor::Read | Actor::Write | Actor::Owner => return &[],
        };
        &self.forbidden[name]
    }
}

/// Sends one request of the matrix to the gateway at `base`.
async fn send(
    stack: &Stack,
    base: &str,
    fx: &Fixture,
    route: &Route,
    token: Option<&str>,
) -> Response {
    let url = format!("{base}{}", fx.fill(route.path));
    let mut req = stack.http.request(route.method.clone(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req = match &route.body {
        Body::None => req,
        Body::Form(fields) => {
            let filled: Vec<(&str, String)> =
                fields.iter().map(|(k, v)| (*k, fx.fill(v))).collect();
            req.form(&filled)
        }
        Body::Upload => req.multipart(jpeg_form()),
    };
    req.send().await.unwrap()
}

fn jpeg_form() -> Form {
    let part = Part::bytes(JPEG.to_vec())
        .file_name("a.jpg")
        .mime_str("image/jpeg")
        .unwrap();
    Form::new().part("file", part)
}

/// Checks one answer: its status, the error format, and that it shows nothing of
/// `forbidden`. Returns the problems found.
async fn check(res: Response, route: &Route, expected: u16, forbidden: &[String]) -> Vec<String> {
    let what = format!("{} {}", route.method, route.path);
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut problems = Vec::new();
    if route.stream && res.status().is_success() {
        if status != expected {
            problems.push(format!("{what}: {status}, expected {expected} (a stream)"));
        }
        return problems;
    }
    let body = res.text().await.unwrap_or_default();
    if status != expected {
        let shown: String = body.chars().take(300).collect();
        problems.push(format!("{what}: {status}, expected {expected}: {shown}"));
    }
    if !(200..300).contains(&status) {
        let error = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned));
        if !content_type.starts_with("application/json") || error.is_none_or(|e| e.is_empty()) {
            problems.push(format!(
                "{what}: {status} is not a Mastodon error ({content_type}): {body}"
            ));
        }
    }
    for secret in forbidden {
        if body.contains(secret.as_str()) {
            problems.push(format!("{what}: {status} shows {secret:?}"));
        }
    }
    problems
}

/// `POST /api/v2/media` of a small JPEG by `token`; the attachment id.
async fn upload(stack: &Stack, token: &str, description: &str) -> String {
    let form = jpeg_form().text("description", description.to_owned());
    let res = stack
        .http
        .post(format!("{}/api/v2/media", stack.base))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    json_ok(res).await["id"].as_str().unwrap().to_owned()
}

/// Posts a status of `token`; its id.
async fn post(stack: &Stack, token: &str, form: &[(&str, &str)]) -> String {
    let res = stack.post_form("/api/v1/statuses", Some(token), form).await;
    json_ok(res).await["id"].as_str().unwrap().to_owned()
}

/// A with statuses of every visibility (each with an upload), uploads of its own, two
/// notifications; B and C; tokens of every kind.
async fn fixture(stack: &Stack) -> Fixture {
    let app = stack.create_app().await;
    let a_name = username("owner");
    let b_name = username("other");
    let c_name = username("third");
    let owner = stack.register(&app, &a_name).await;
    let other = stack.register(&app, &b_name).await;
    let third = stack.register(&app, &c_name).await;
    let id_of = |token: String| async move {
        json_ok(stack.verify(&token).await).await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let a = id_of(owner.clone()).await;
    let c = id_of(third.clone()).await;
    let scoped = |scope: &'static str| {
        let (app, a_name) = (&app, &a_name);
        async move {
            let res = stack.log_in(app, a_name, "correct horse", scope).await;
            json_ok(res).await["access_token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let read = scoped("read").await;
    let write = scoped("write").await;
    let app_token = stack.app_token(&app, "read write follow push").await;

    let mut values: HashMap<&'static str, String> = HashMap::new();
    let mut media = Vec::new();
    for name in ["m_pub", "m_unl", "m_priv", "m_dir", "m_dir_b"] {
        let id = upload(stack, &owner, "attached").await;
        values.insert(name, id.clone());
        media.push(id);
    }
    let m_free = upload(stack, &owner, "free").await;
    let m_doomed = upload(stack, &owner, "doomed").await;
    let text = |s: &str| format!("{s} #authzmatrix zebraquill");
    let pub_ = post(
        stack,
        &owner,
        &[("status", &text("public")), ("media_ids[]", &media[0])],
    )
    .await;
    let unl = post(
        stack,
        &owner,
        &[
            ("status", &text("unlisted")),
            ("visibility", "unlisted"),
            ("media_ids[]", &media[1]),
        ],
    )
    .await;
    let priv_ = post(
        stack,
        &owner,
        &[
            ("status", &text("privsecret")),
            ("visibility", "private"),
            ("media_ids[]", &media[2]),
        ],
    )
    .await;
    let dir = post(
        stack,
        &owner,
        &[
            ("status", &text(&format!("@{c_name} dirsecret"))),
            ("visibility", "direct"),
            ("media_ids[]", &media[3]),
        ],
    )
    .await;
    let dir_b = post(
        stack,
        &owner,
        &[
            ("status", &text(&format!("@{b_name} dirbsecret"))),
            ("visibility", "direct"),
            ("media_ids[]", &media[4]),
        ],
    )
    .await;
    // A private answer in the thread of the public status (context must hide it), and a
    // public quote of the private status (the quote must stay hidden).
    let priv_reply = post(
        stack,
        &owner,
        &[
            ("status", &text("replysecret")),
            ("visibility", "private"),
            ("in_reply_to_id", &pub_),
        ],
    )
    .await;
    let quote = post(
        stack,
        &owner,
        &[("status", &text("quoting")), ("quoted_status_id", &priv_)],
    )
    .await;
    let doomed = post(stack, &owner, &[("status", "doomed")]).await;
    // Pinned, so the pinned list has something to hide.
    for id in [&pub_, &priv_] {
        let res = stack
            .post_form(&format!("/api/v1/statuses/{id}/pin"), Some(&owner), &[])
            .await;
        json_ok(res).await;
    }

    // Notifications of A: a mention (ungrouped) and a follow (grouped), both from C.
    post(stack, &third, &[("status", &format!("@{a_name} hello"))]).await;
    json_ok(stack.act(&third, &a, "follow", &[]).await).await;
    let notifications = eventually(Duration::from_secs(15), || async {
        let list = json_ok(stack.get("/api/v1/notifications", Some(&owner)).await).await;
        let find = |kind: &str| {
            list.as_array()?
                .iter()
                .find(|n| n["type"] == kind)
                .map(|n| {
                    (
                        n["id"].as_str().unwrap().to_owned(),
                        n["group_key"].as_str().unwrap().to_owned(),
                    )
                })
        };
        Some((find("mention")?, find("follow")?))
    })
    .await
    .expect("A's notifications arrive");
    let ((n_keep, g_keep), (n_doomed, g_follow)) = notifications;

    let mut secret = |name: &'static str, value: &str| {
        values.insert(name, value.to_owned());
    };
    secret("pub", &pub_);
    secret("unl", &unl);
    secret("priv", &priv_);
    secret("dir", &dir);
    secret("dir_b", &dir_b);
    secret("priv_reply", &priv_reply);
    secret("quote", &quote);
    secret("doomed", &doomed);
    secret("m_free", &m_free);
    secret("m_doomed", &m_doomed);
    secret("n_keep", &n_keep);
    secret("n_doomed", &n_doomed);
    secret("g_keep", &g_keep);
    secret("g_follow", &g_follow);
    secret("a", &a);
    secret("c", &c);
    secret("a_name", &a_name);
    // Never a status id (ids are snowflakes from the clock).
    secret("missing", "1000");

    // B may see dir_b; strangers (no user) see neither direct status.
    let mut other_forbidden: Vec<String> = [
        &priv_,
        &dir,
        &priv_reply,
        &values["m_priv"],
        &values["m_dir"],
        &m_free,
        &m_doomed,
        &n_keep,
        &n_doomed,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    other_forbidden.extend(["privsecret", "dirsecret", "replysecret"].map(str::to_owned));
    let mut stranger_forbidden = other_forbidden.clone();
    stranger_forbidden.extend([dir_b.clone(), values["m_dir_b"].clone()]);
    stranger_forbidden.push("dirbsecret".to_owned());

    Fixture {
        values,
        tokens: HashMap::from([
            ("app", app_token),
            ("read", read),
            ("write", write),
            ("other", other),
            ("owner", owner),
        ]),
        forbidden: HashMap::from([("other", other_forbidden), ("stranger", stranger_forbidden)]),
    }
}

#[tokio::test]
async fn every_route_answers_every_caller_as_mastodon_does() {
    let stack = spawn().await;
    let replica = stack.second_gateway().await;
    let fx = fixture(&stack).await;
    let routes = routes();

    let mut problems = Vec::new();
    let mut sent = 0;
    for route in &routes {
        for (actor, expected) in ACTORS.iter().zip(route.expect) {
            if expected == S {
                continue;
            }
            let res = send(&stack, &stack.base, &fx, route, fx.token(*actor)).await;
            sent += 1;
            for p in check(res, route, expected, fx.forbidden(*actor)).await {
                problems.push(format!("[{actor:?}] {p}"));
            }
        }
    }
    eprintln!("{} routes, {sent} requests", routes.len());
    for p in &problems {
        eprintln!("{p}");
    }

    // B's refusals changed nothing: A still has everything, as it was.
    let owner = Some(fx.tokens["owner"].as_str());
    for (name, word) in [
        ("priv", "privsecret"),
        ("dir", "dirsecret"),
        ("dir_b", "dirbsecret"),
        ("unl", "unlisted"),
    ] {
        let path = format!("/api/v1/statuses/{}", fx.values[name]);
        let status = json_ok(stack.get(&path, owner).await).await;
        assert!(
            status["content"].as_str().unwrap().contains(word),
            "{name} changed: {status}"
        );
        assert_eq!(
            status["media_attachments"].as_array().unwrap().len(),
            1,
            "{name} lost or gained media: {status}"
        );
    }
    let edited = json_ok(
        stack
            .get(&format!("/api/v1/statuses/{}", fx.values["pub"]), owner)
            .await,
    )
    .await;
    assert!(edited["content"].as_str().unwrap().contains("edited"));
    let free = json_ok(
        stack
            .get(&format!("/api/v1/media/{}", fx.values["m_free"]), owner)
            .await,
    )
    .await;
    assert_eq!(free["description"], "free");
    assert!(free["url"].is_string(), "{free}");
    // (The follow group held only `n_doomed`: that the owner could still dismiss it at
    // the end shows B's dismissal of the group removed nothing.)
    for path in [
        format!("/api/v1/notifications/{}", fx.values["n_keep"]),
        format!("/api/v2/notifications/{}", fx.values["g_keep"]),
    ] {
        json_ok(stack.get(&path, owner).await).await;
    }
    // The owner's deletions took.
    for path in [
        format!("/api/v1/notifications/{}", fx.values["n_doomed"]),
        format!("/api/v2/notifications/{}", fx.values["g_follow"]),
    ] {
        json_error(stack.get(&path, owner).await, 404).await;
    }
    json_error(
        stack
            .get(&format!("/api/v1/statuses/{}", fx.values["doomed"]), owner)
            .await,
        404,
    )
    .await;
    json_error(
        stack
            .get(&format!("/api/v1/media/{}", fx.values["m_doomed"]), owner)
            .await,
        404,
    )
    .await;
    // No existence oracle: B's answer for A's private status is the one for no status.
    let other = Some(fx.tokens["other"].as_str());
    let hidden = stack
        .get(&format!("/api/v1/statuses/{}", fx.values["priv"]), other)
        .await
        .text()
        .await
        .unwrap();
    let missing = stack
        .get("/api/v1/statuses/1000", other)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(hidden, missing);
    // B cannot attach A's upload to its own status: the id is dropped, as Mastodon does.
    let res = stack
        .post_form(
            "/api/v1/statuses",
            other,
            &[
                ("status", "mine now"),
                ("media_ids[]", &fx.values["m_free"]),
            ],
        )
        .await;
    assert_eq!(
        json_ok(res).await["media_attachments"],
        serde_json::json!([])
    );

    // Revocation: a token both replicas resolved (and cached) fails on both after it is
    // revoked through one, on every route. The replica that took the revocation evicts
    // at once; the other learns through the users service's Redis broadcast (pub/sub,
    // delivered asynchronously: milliseconds, long before the 60 s cache TTL).
    let app = stack.create_app().await;
    let name = username("revoked");
    stack.register(&app, &name).await;
    let res = stack
        .log_in(&app, &name, "correct horse", "read write follow push")
        .await;
    let token = json_ok(res).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for base in [&stack.base, &replica] {
        json_ok(stack.verify_at(base, &token).await).await;
        let path = format!("/api/v1/statuses/{}", fx.values["pub"]);
        json_ok(stack.get_at(base, &path, Some(&token)).await).await;
    }
    json_ok(stack.revoke(&app, &token).await).await;
    json_error(stack.verify(&token).await, 401).await;
    let revoked = eventually(Duration::from_secs(2), || async {
        (stack.verify_at(&replica, &token).await.status() == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    assert!(revoked.is_some(), "the replica still takes a revoked token");
    for base in [&stack.base, &replica] {
        for route in &routes {
            let res = send(&stack, base, &fx, route, Some(&token)).await;
            for p in check(res, route, 401, &[]).await {
                problems.push(format!("[revoked at {base}] {p}"));
            }
        }
    }

    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
