//! The Mastodon API through the gateway, over real HTTP, against real Postgres and Redis.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rookery_e2e::{eventually, json_error, json_ok, spawn, username};

#[tokio::test]
async fn sign_up_sign_in_verify_update_lookup_revoke() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let name = username("flow");
    let token = stack.register(&app, &name).await;

    let me = json_ok(stack.verify(&token).await).await;
    assert_eq!(me["username"], name.as_str());
    assert_eq!(me["acct"], name.as_str());
    let id = me["id"].as_str().unwrap().to_owned();
    assert!(id.parse::<i64>().unwrap() > 0, "ids are decimal strings");
    assert_eq!(me["locked"], false);
    assert_eq!(me["source"]["privacy"], "public");

    // Update, then read back: the account cache must have been invalidated.
    let res = stack
        .patch_form(
            "/api/v1/accounts/update_credentials",
            &token,
            &[
                ("display_name", "Flow Tester"),
                ("note", "hello <world>"),
                ("locked", "1"),
                ("bot", "true"),
                ("source[privacy]", "unlisted"),
            ],
        )
        .await;
    let updated = json_ok(res).await;
    assert_eq!(updated["display_name"], "Flow Tester");
    let me = json_ok(stack.verify(&token).await).await;
    assert_eq!(me["display_name"], "Flow Tester");
    assert_eq!(me["note"], "<p>hello &lt;world&gt;</p>");
    assert_eq!(me["source"]["note"], "hello <world>");
    assert_eq!(me["locked"], true);
    assert_eq!(me["bot"], true);
    assert_eq!(me["source"]["privacy"], "unlisted");

    // JSON clients send the same update as a JSON body.
    let res = stack
        .http
        .patch(format!("{}/api/v1/accounts/update_credentials", stack.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"display_name": "JSON Tester", "locked": false, "source": {"language": "de"}}))
        .send()
        .await
        .unwrap();
    let updated = json_ok(res).await;
    assert_eq!(
        (
            updated["display_name"].as_str(),
            updated["locked"].as_bool()
        ),
        (Some("JSON Tester"), Some(false))
    );
    assert_eq!(updated["source"]["language"], "de");

    // Public reads by id and by acct (with and without the local domain).
    let shown = json_ok(stack.get(&format!("/api/v1/accounts/{id}"), None).await).await;
    assert_eq!(shown["display_name"], "JSON Tester");
    assert!(
        shown.get("source").is_none(),
        "public account must not leak source"
    );
    for acct in [
        name.clone(),
        format!("{name}@rookery.test"),
        format!("@{}", name.to_uppercase()),
    ] {
        let found = json_ok(
            stack
                .get(&format!("/api/v1/accounts/lookup?acct={acct}"), None)
                .await,
        )
        .await;
        assert_eq!(found["id"], id.as_str(), "lookup {acct}");
    }
    json_error(
        stack
            .get("/api/v1/accounts/lookup?acct=nobody_here_at_all", None)
            .await,
        404,
    )
    .await;
    json_error(
        stack
            .get(
                &format!("/api/v1/accounts/lookup?acct={name}@elsewhere.example"),
                None,
            )
            .await,
        404,
    )
    .await;

    // Sign in with the password grant (email or username), then revoke: 401 at once.
    let login = json_ok(
        stack
            .log_in(
                &app,
                &format!("{name}@example.com"),
                "correct horse",
                "read write",
            )
            .await,
    )
    .await;
    assert_eq!(login["token_type"], "Bearer");
    assert_eq!(login["scope"], "read write");
    let second = login["access_token"].as_str().unwrap().to_owned();
    json_ok(stack.log_in(&app, &name, "correct horse", "read").await).await;
    json_ok(stack.verify(&second).await).await;
    let res = stack.revoke(&app, &second).await;
    assert_eq!(json_ok(res).await, serde_json::json!({}));
    json_error(stack.verify(&second).await, 401).await;
    // The other token of the same account is unaffected.
    json_ok(stack.verify(&token).await).await;

    // Both changes reached the event stream through the outbox.
    let events = eventually(Duration::from_secs(5), || async {
        let events = stack.user_events().await;
        let mine: Vec<String> = events
            .into_iter()
            .filter(|(_, a)| *a == id)
            .map(|(t, _)| t)
            .collect();
        (mine.len() >= 3).then_some(mine)
    })
    .await
    .expect("account events on the stream");
    assert_eq!(events[0], "account.created");
    assert!(events[1..].iter().all(|t| t == "account.updated"));
}

#[tokio::test]
async fn bad_input_gets_clear_client_errors() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let name = username("bad");
    let token = stack.register(&app, &name).await;

    // Duplicate username: 422 naming the problem, in Mastodon's details format.
    let app_token = stack.app_token(&app, "write").await;
    let res = stack
        .post_form(
            "/api/v1/accounts",
            Some(&app_token),
            &[
                ("username", &name.to_uppercase()),
                ("email", "other@example.com"),
                ("password", "correct horse"),
                ("agreement", "1"),
            ],
        )
        .await;
    let body = json_error(res, 422).await;
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Username has already been taken"),
        "{body}"
    );
    assert_eq!(body["details"]["username"][0]["error"], "ERR_TAKEN");
    // Several invalid fields are reported together.
    let res = stack
        .post_form(
            "/api/v1/accounts",
            Some(&app_token),
            &[
                ("username", "no spaces"),
                ("email", "nope"),
                ("password", "short"),
            ],
        )
        .await;
    let body = json_error(res, 422).await;
    for field in ["username", "email", "password", "agreement"] {
        assert!(
            body["details"][field].is_array(),
            "{field} missing in {body}"
        );
    }

    // Wrong password: invalid_grant. Unknown client: invalid_client. Unknown grant type.
    let body = json_error(
        stack.log_in(&app, &name, "wrong password", "read").await,
        400,
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");
    let res = stack
        .post_form(
            "/oauth/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "nope"),
                ("client_secret", "nope"),
            ],
        )
        .await;
    assert_eq!(json_error(res, 401).await["error"], "invalid_client");
    let res = stack
        .post_form(
            "/oauth/token",
            None,
            &[
                ("grant_type", "magic"),
                ("client_id", &app.client_id),
                ("client_secret", &app.client_secret),
            ],
        )
        .await;
    assert_eq!(
        json_error(res, 400).await["error"],
        "unsupported_grant_type"
    );
    // A scope the app was not registered for.
    let body = json_error(
        stack
            .log_in(&app, &name, "correct horse", "read admin:read")
            .await,
        400,
    )
    .await;
    assert_eq!(body["error"], "invalid_scope");

    // Missing, malformed and unknown tokens: 401.
    json_error(
        stack.get("/api/v1/accounts/verify_credentials", None).await,
        401,
    )
    .await;
    json_error(stack.verify("not-a-real-token").await, 401).await;
    let res = stack
        .http
        .get(format!("{}/api/v1/accounts/verify_credentials", stack.base))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    json_error(res, 401).await;

    // Missing scope: a read-only token cannot update: 403.
    let read_only =
        json_ok(stack.log_in(&app, &name, "correct horse", "read").await).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
    let res = stack
        .patch_form(
            "/api/v1/accounts/update_credentials",
            &read_only,
            &[("display_name", "x")],
        )
        .await;
    json_error(res, 403).await;
    // An app token (with the right scope) where a user is required: 422.
    let read_app_token = stack.app_token(&app, "read").await;
    json_error(stack.verify(&read_app_token).await, 422).await;

    // Invalid field values are 422 and change nothing.
    let res = stack
        .patch_form(
            "/api/v1/accounts/update_credentials",
            &token,
            &[
                ("display_name", "x".repeat(31).as_str()),
                ("locked", "maybe"),
            ],
        )
        .await;
    json_error(res, 422).await;
    let res = stack
        .patch_form(
            "/api/v1/accounts/update_credentials",
            &token,
            &[("display_name", "x".repeat(31).as_str())],
        )
        .await;
    assert_eq!(
        json_error(res, 422).await["details"]["display_name"][0]["error"],
        "ERR_TOO_LONG"
    );
    let me = json_ok(stack.verify(&token).await).await;
    assert_eq!(me["display_name"], "");

    // Malformed JSON: 400. Oversized body: 413. Unknown route: 404 JSON. Bad id: 404.
    let res = stack
        .http
        .post(format!("{}/api/v1/apps", stack.base))
        .header("content-type", "application/json")
        .body("{\"client_name\": ")
        .send()
        .await
        .unwrap();
    json_error(res, 400).await;
    let res = stack
        .http
        .post(format!("{}/api/v1/apps", stack.base))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    json_error(res, 413).await;
    json_error(stack.get("/api/v1/no/such/route", None).await, 404).await;
    json_error(stack.get("/api/v1/accounts/not-a-number", None).await, 404).await;
    json_error(stack.get("/api/v1/accounts/99999999999", None).await, 404).await;
    let res = stack
        .http
        .delete(format!("{}/api/v1/apps", stack.base))
        .send()
        .await
        .unwrap();
    json_error(res, 405).await;
    // Apps need a name and redirect URIs.
    json_error(
        stack
            .post_form("/api/v1/apps", None, &[("client_name", "x")])
            .await,
        422,
    )
    .await;
    json_error(
        stack
            .post_form(
                "/api/v1/apps",
                None,
                &[("client_name", "x"), ("redirect_uris", "not a uri")],
            )
            .await,
        422,
    )
    .await;
    json_error(
        stack
            .post_form(
                "/api/v1/apps",
                None,
                &[
                    ("client_name", "x"),
                    ("redirect_uris", "urn:ietf:wg:oauth:2.0:oob"),
                    ("scopes", "root"),
                ],
            )
            .await,
        422,
    )
    .await;
}

#[tokio::test]
async fn revocation_reaches_every_gateway_replica_at_once() {
    let stack = spawn().await;
    let other = stack.second_gateway().await;
    let app = stack.create_app().await;
    let name = username("rev");
    let token = stack.register(&app, &name).await;
    // Both replicas have resolved (and cached) the token.
    for base in [&stack.base, &other] {
        json_ok(stack.verify_at(base, &token).await).await;
    }
    let res = stack.revoke(&app, &token).await;
    json_ok(res).await;
    json_error(stack.verify(&token).await, 401).await;
    // The other replica learns through Redis pub/sub, long before its cache TTL (60 s).
    let revoked = eventually(Duration::from_secs(2), || async {
        let res = stack.verify_at(&other, &token).await;
        (res.status() == 401).then_some(())
    })
    .await;
    assert!(
        revoked.is_some(),
        "the second gateway still accepts a revoked token"
    );
}

#[tokio::test]
async fn profile_changes_reach_every_replica() {
    let stack = spawn().await;
    let other = stack.second_gateway().await;
    let app = stack.create_app().await;
    let token = stack.register(&app, &username("upd")).await;
    json_ok(stack.verify_at(&other, &token).await).await;
    let res = stack
        .patch_form(
            "/api/v1/accounts/update_credentials",
            &token,
            &[("display_name", "Everywhere")],
        )
        .await;
    json_ok(res).await;
    // The other replica cached the old entity; the users service's broadcast evicts it
    // within milliseconds (not at the 30 s TTL).
    let seen = eventually(Duration::from_secs(2), || async {
        let res = stack.verify_at(&other, &token).await;
        let me = json_ok(res).await;
        (me["display_name"] == "Everywhere").then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "the second gateway kept serving the old profile"
    );
}

#[tokio::test]
async fn authorization_code_with_pkce_and_refresh_rotation() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let name = username("code");
    stack.register(&app, &name).await;
    // Pair computed independently: base64url(sha256(verifier)) with Python hashlib.pair.
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gXFwnW-cM";
    let challenge = "fYKGoS0IHq7dSHU7i6ZesqB_cepvnw2ymGmVyylQY8s";
    let redirect = "https://client.example/cb";

    let form = stack
        .get(
            &format!(
                "/oauth/authorize?response_type=code&client_id={}&redirect_uri={redirect}&scope=read+write&state=xyz&code_challenge={challenge}&code_challenge_method=S256",
                app.client_id
            ),
            None,
        )
        .await;
    assert_eq!(form.status(), 200);
    assert_eq!(form.headers()["x-frame-options"], "DENY");
    assert!(form.text().await.unwrap().contains("<form"));

    let authorize = |password: &'static str| {
        let (client_id, name) = (app.client_id.clone(), name.clone());
        let stack = &stack;
        async move {
            stack
                .post_form(
                    "/oauth/authorize",
                    None,
                    &[
                        ("response_type", "code"),
                        ("client_id", &client_id),
                        ("redirect_uri", redirect),
                        ("scope", "read write"),
                        ("state", "xyz"),
                        ("code_challenge", challenge),
                        ("code_challenge_method", "S256"),
                        ("username", &name),
                        ("password", password),
                    ],
                )
                .await
        }
    };
    assert_eq!(authorize("wrong password").await.status(), 401);
    let res = authorize("correct horse").await;
    assert_eq!(res.status(), 303, "redirect expected");
    let location = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(redirect));
    let params: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(params["state"], "xyz");
    let code = params["code"].clone();

    let exchange = |verifier: &'static str| {
        let (app, code) = (app.clone(), code.clone());
        let stack = &stack;
        async move {
            stack
                .post_form(
                    "/oauth/token",
                    None,
                    &[
                        ("grant_type", "authorization_code"),
                        ("client_id", &app.client_id),
                        ("client_secret", &app.client_secret),
                        ("code", &code),
                        ("redirect_uri", redirect),
                        ("code_verifier", verifier),
                    ],
                )
                .await
        }
    };
    // A wrong verifier fails without burning... no: codes are single-use; a failed
    // exchange consumes it, as Doorkeeper does. Use the right verifier first.
    let token = json_ok(exchange(verifier).await).await;
    assert_eq!(token["scope"], "read write");
    let access = token["access_token"].as_str().unwrap().to_owned();
    let refresh = token["refresh_token"].as_str().unwrap().to_owned();
    json_ok(stack.verify(&access).await).await;
    // Codes are single-use.
    assert_eq!(
        json_error(exchange(verifier).await, 400).await["error"],
        "invalid_grant"
    );

    // Refresh rotates: new access token works, the old one stops at once, and the
    // refresh token cannot be used twice.
    let res = stack
        .post_form(
            "/oauth/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &app.client_id),
                ("client_secret", &app.client_secret),
                ("refresh_token", &refresh),
            ],
        )
        .await;
    let rotated = json_ok(res).await;
    let new_access = rotated["access_token"].as_str().unwrap();
    json_ok(stack.verify(new_access).await).await;
    json_error(stack.verify(&access).await, 401).await;
    let res = stack
        .post_form(
            "/oauth/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &app.client_id),
                ("client_secret", &app.client_secret),
                ("refresh_token", &refresh),
            ],
        )
        .await;
    assert_eq!(json_error(res, 400).await["error"], "invalid_grant");
}

#[tokio::test]
async fn pkce_verifier_must_match() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let name = username("pkce");
    stack.register(&app, &name).await;
    let res = stack
        .post_form(
            "/oauth/authorize",
            None,
            &[
                ("response_type", "code"),
                ("client_id", &app.client_id),
                ("redirect_uri", "urn:ietf:wg:oauth:2.0:oob"),
                (
                    "code_challenge",
                    "fYKGoS0IHq7dSHU7i6ZesqB_cepvnw2ymGmVyylQY8s",
                ),
                ("code_challenge_method", "S256"),
                ("username", &name),
                ("password", "correct horse"),
            ],
        )
        .await;
    assert_eq!(
        res.status(),
        200,
        "out-of-band codes are shown, not redirected"
    );
    let html = res.text().await.unwrap();
    let code = html
        .split("<pre>")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .unwrap()
        .to_owned();
    let res = stack
        .post_form(
            "/oauth/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &app.client_id),
                ("client_secret", &app.client_secret),
                ("code", &code),
                ("redirect_uri", "urn:ietf:wg:oauth:2.0:oob"),
                ("code_verifier", "not-the-verifier"),
            ],
        )
        .await;
    assert_eq!(json_error(res, 400).await["error"], "invalid_grant");
}

#[tokio::test]
async fn instance_documents_nodeinfo_compression_and_metrics() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    stack.register(&app, &username("inst")).await;

    for path in [
        "/api/v1/instance",
        "/api/v1/instance/",
        "/api/v2/instance",
        "/api/v2/instance/",
    ] {
        let doc = json_ok(stack.get(path, None).await).await;
        assert!(doc["version"].as_str().unwrap().starts_with("4."), "{path}");
    }
    let v1 = json_ok(stack.get("/api/v1/instance", None).await).await;
    assert!(v1["stats"]["user_count"].as_i64().unwrap() >= 1);
    assert_eq!(v1["uri"], "rookery.test");
    let v2 = json_ok(stack.get("/api/v2/instance", None).await).await;
    assert_eq!(v2["domain"], "rookery.test");
    assert!(
        v2["configuration"]["statuses"]["max_characters"]
            .as_i64()
            .unwrap()
            > 0
    );
    let discovery = json_ok(stack.get("/.well-known/nodeinfo", None).await).await;
    assert!(
        discovery["links"][0]["href"]
            .as_str()
            .unwrap()
            .ends_with("/nodeinfo/2.0")
    );
    let nodeinfo = stack.get("/nodeinfo/2.0", None).await;
    assert_eq!(nodeinfo.status(), 200);
    let nodeinfo: serde_json::Value =
        serde_json::from_str(&nodeinfo.text().await.unwrap()).unwrap();
    assert_eq!(nodeinfo["version"], "2.0");
    let oauth = json_ok(
        stack
            .get("/.well-known/oauth-authorization-server", None)
            .await,
    )
    .await;
    assert!(
        oauth["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "password")
    );

    // Large bodies are compressed with the negotiated encoding; tiny ones are not.
    for encoding in ["gzip", "br", "zstd"] {
        let res = stack
            .http
            .get(format!("{}/api/v2/instance", stack.base))
            .header("accept-encoding", encoding)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap()),
            Some(encoding)
        );
    }
    let res = stack
        .http
        .get(format!("{}/health", stack.base))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("content-encoding").is_none());
    assert!(
        res.headers().get("x-request-id").is_some(),
        "every response carries a request id"
    );

    let metrics = stack.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("http_server_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains("route=\"/api/v1/accounts/verify_credentials\"")
            || metrics.contains("route=\"/api/v2/instance\"")
    );
    assert!(metrics.contains("grpc_client_duration_seconds"));
    assert!(metrics.contains("cache_requests_total"));
    let avatar = stack.get("/avatars/original/missing.png", None).await;
    assert_eq!(avatar.headers()["content-type"], "image/png");
}
