//! Rate limits as Mastodon's: counted in Redis, so two gateway replicas share them; every
//! counted response says where the client stands (`X-RateLimit-*`), a refused one is a
//! 429 in Mastodon's error format with `Retry-After`; failed logins per account are
//! limited by the users service. The stack's gateways here safelist nobody (by default
//! loopback clients, like these tests, are never limited).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use reqwest::Response;
use rookery_e2e::{Stack, json_error, json_ok, spawn_configured, username};
use rookery_gateway::config::{Limit, RateLimitConfig};

fn limit(count: u64) -> Limit {
    Limit {
        count,
        window: Duration::from_secs(600),
    }
}

/// Limits that loopback clients are subject to, with `adjust` applied.
fn strict(adjust: impl FnOnce(&mut RateLimitConfig)) -> RateLimitConfig {
    let mut config = RateLimitConfig {
        safelist: Vec::new(),
        ..RateLimitConfig::default()
    };
    adjust(&mut config);
    config
}

async fn gateway(stack: &Stack, limits: RateLimitConfig) -> String {
    stack
        .gateway_with(|c| c.rate_limits = Some(limits.clone()))
        .await
}

fn header(res: &Response, name: &str) -> String {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn requests_per_token_are_shared_across_replicas_and_refused_with_429() {
    let stack = spawn_configured(&rookery_kit::testing::redis_url(), |_| {}).await;
    let app = stack.create_app().await;
    let token = stack.register(&app, &username("rl")).await;
    let other = stack.register(&app, &username("rl")).await;
    let limits = strict(|c| c.api = limit(5));
    let (a, b) = (
        gateway(&stack, limits.clone()).await,
        gateway(&stack, limits).await,
    );

    // Five requests, alternating replicas: one count.
    for (i, base) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let res = stack.verify_at(base, &token).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-ratelimit-limit"), "5");
        assert_eq!(header(&res, "x-ratelimit-remaining"), (4 - i).to_string());
        // ISO 8601, in the future.
        let reset =
            chrono::DateTime::parse_from_rfc3339(&header(&res, "x-ratelimit-reset")).unwrap();
        assert!(reset > chrono::Utc::now());
    }
    // The sixth is refused on either replica, and says when to come back.
    for base in [&b, &a] {
        let res = stack.verify_at(base, &token).await;
        assert_eq!(res.status(), 429);
        assert_eq!(header(&res, "x-ratelimit-remaining"), "0");
        let wait: u64 = header(&res, "retry-after").parse().unwrap();
        assert!((1..=600).contains(&wait), "{wait}");
        let body = json_error(res, 429).await;
        assert_eq!(body["error"], "Too many requests");
    }
    // Another token has its own allowance.
    let res = stack.verify_at(&a, &other).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-ratelimit-remaining"), "4");
}

#[tokio::test]
async fn unauthenticated_requests_sign_ups_and_deletes_have_their_own_limits() {
    let stack = spawn_configured(&rookery_kit::testing::redis_url(), |_| {}).await;
    let app = stack.create_app().await;
    let app_token = stack.app_token(&app, "read write follow push").await;
    let user = stack.register(&app, &username("rl")).await;
    let base = gateway(
        &stack,
        strict(|c| {
            c.unauthenticated = limit(3);
            c.sign_ups = limit(2);
            c.deletes = limit(1);
        }),
    )
    .await;

    // Per address without a token.
    for remaining in ["2", "1", "0"] {
        let res = stack.get_at(&base, "/api/v1/instance", None).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-ratelimit-remaining"), remaining);
    }
    let res = stack.get_at(&base, "/api/v1/instance", None).await;
    json_error(res, 429).await;

    // Two sign-ups per address; the headers show the tighter limit.
    for remaining in ["1", "0"] {
        let name = username("su");
        let email = format!("{name}@example.com");
        let res = stack
            .post_form_at(
                &base,
                "/api/v1/accounts",
                Some(&app_token),
                &[
                    ("username", &name),
                    ("email", &email),
                    ("password", "correct horse"),
                    ("agreement", "true"),
                    ("locale", "en"),
                ],
            )
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-ratelimit-limit"), "2");
        assert_eq!(header(&res, "x-ratelimit-remaining"), remaining);
    }
    let name = username("su");
    let email = format!("{name}@example.com");
    let form = [
        ("username", name.as_str()),
        ("email", email.as_str()),
        ("password", "correct horse"),
        ("agreement", "true"),
        ("locale", "en"),
    ];
    let res = stack
        .post_form_at(&base, "/api/v1/accounts", Some(&app_token), &form)
        .await;
    json_error(res, 429).await;
    // Nothing was created by the refused sign-up: the name is still free.
    let res = stack
        .get(&format!("/api/v1/accounts/lookup?acct={name}"), None)
        .await;
    assert_eq!(res.status(), 404);

    // One delete; the second is refused and the status stays.
    let mut ids = Vec::new();
    for text in ["one", "two"] {
        let res = stack
            .post_form_at(&base, "/api/v1/statuses", Some(&user), &[("status", text)])
            .await;
        ids.push(json_ok(res).await["id"].as_str().unwrap().to_owned());
    }
    let http = reqwest::Client::new();
    let delete = |id: &str| {
        http.delete(format!("{base}/api/v1/statuses/{id}"))
            .bearer_auth(&user)
            .send()
    };
    assert_eq!(delete(&ids[0]).await.unwrap().status(), 200);
    json_error(delete(&ids[1]).await.unwrap(), 429).await;
    let res = stack
        .get(&format!("/api/v1/statuses/{}", ids[1]), Some(&user))
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn failed_logins_per_account_are_limited_even_with_the_right_password() {
    let stack = spawn_configured(&rookery_kit::testing::redis_url(), |c| {
        c.login_limit = 3;
    })
    .await;
    let app = stack.create_app().await;
    let (victim, bystander) = (username("lg"), username("lg"));
    stack.register(&app, &victim).await;
    stack.register(&app, &bystander).await;

    // A successful login gives its attempt back.
    for _ in 0..4 {
        let res = stack.log_in(&app, &victim, "correct horse", "read").await;
        assert_eq!(res.status(), 200);
    }
    for _ in 0..3 {
        let res = stack.log_in(&app, &victim, "wrong horse", "read").await;
        assert_eq!(res.status(), 400);
        assert_eq!(json_error(res, 400).await["error"], "invalid_grant");
    }
    // Locked for the window, whatever the password (and whatever the case of the name).
    for (login, password) in [
        (victim.clone(), "wrong horse"),
        (victim.to_uppercase(), "correct horse"),
    ] {
        let res = stack.log_in(&app, &login, password, "read").await;
        assert_eq!(res.status(), 429);
        assert!(res.headers().contains_key("retry-after"));
    }
    // Someone else's account is not affected.
    let res = stack
        .log_in(&app, &bystander, "correct horse", "read")
        .await;
    assert_eq!(res.status(), 200);
}
