//! Test support for the cross-service suite: the whole stack (users + gateway, real
//! Postgres, real Redis) started in-process on ephemeral ports, with its own database
//! and Redis key prefix, and a client that talks to it over real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use reqwest::{Client, Response, StatusCode};
use rookery_kit::testing::{self, TestDatabase};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A running stack. Dropping it shuts everything down.
pub struct Stack {
    /// Gateway base URL.
    pub base: String,
    /// Users gRPC URL (for extra gateways).
    pub users_url: String,
    /// Timeline gRPC URL.
    pub timeline_url: String,
    /// HTTP client (no redirects followed, gzip allowed).
    pub http: Client,
    /// The users service's database.
    pub db: TestDatabase,
    /// The timeline service's database.
    pub timeline_db: TestDatabase,
    /// The notifications service's database.
    pub notifications_db: TestDatabase,
    /// Notifications gRPC URL.
    pub notifications_url: String,
    /// The notifications service (tests stop and restart it).
    pub notifications: tokio::sync::Mutex<NotificationsProcess>,
    /// The media service's database.
    pub media_db: TestDatabase,
    /// Media gRPC URL.
    pub media_url: String,
    /// The media service (tests stop and restart it).
    pub media: tokio::sync::Mutex<MediaProcess>,
    /// Where the media service stores files (deleted with the stack).
    pub media_dir: tempfile::TempDir,
    /// The stack's Redis URL and key prefix.
    pub redis_url: String,
    pub redis_prefix: String,
    shutdown: CancellationToken,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An OAuth app as the API returned it.
#[derive(Clone, Debug)]
pub struct App {
    pub client_id: String,
    pub client_secret: String,
}

/// Starts users + gateway on the shared test Redis.
pub async fn spawn() -> Stack {
    spawn_with_redis(&testing::redis_url()).await
}

/// Starts users + gateway against `redis_url`.
pub async fn spawn_with_redis(redis_url: &str) -> Stack {
    spawn_configured(redis_url, |_| {}).await
}

/// Starts users + gateway against `redis_url`, with `configure` applied to the users
/// service's test configuration.
pub async fn spawn_configured(
    redis_url: &str,
    configure: impl FnOnce(&mut rookery_users::Config),
) -> Stack {
    spawn_with(redis_url, configure, |_| {}).await
}

/// Starts users + timeline + gateway against `redis_url`, with the test configurations
/// of users and timeline adjusted by `configure_users` and `configure_timeline`.
pub async fn spawn_with(
    redis_url: &str,
    configure: impl FnOnce(&mut rookery_users::Config),
    configure_timeline: impl FnOnce(&mut rookery_timeline::Config),
) -> Stack {
    spawn_full(redis_url, configure, configure_timeline, |_| {}).await
}

/// Starts the whole stack on the shared test Redis with the media service's test
/// configuration adjusted by `configure_media`.
pub async fn spawn_with_media(configure_media: impl FnOnce(&mut rookery_media::Config)) -> Stack {
    spawn_full(&testing::redis_url(), |_| {}, |_| {}, configure_media).await
}

/// Starts the whole stack, each service's test configuration adjusted by its closure.
pub async fn spawn_full(
    redis_url: &str,
    configure: impl FnOnce(&mut rookery_users::Config),
    configure_timeline: impl FnOnce(&mut rookery_timeline::Config),
    configure_media: impl FnOnce(&mut rookery_media::Config),
) -> Stack {
    let (db, timeline_db, notifications_db, media_db) = tokio::join!(
        testing::database("users"),
        testing::database("timeline"),
        testing::database("notifications"),
        testing::database("media")
    );
    let (db, timeline_db, notifications_db, media_db) = (
        db.expect("test database"),
        timeline_db.expect("test database"),
        notifications_db.expect("test database"),
        media_db.expect("test database"),
    );
    let prefix = testing::redis_prefix();
    let shutdown = CancellationToken::new();

    let mut users_config = rookery_users::Config::for_tests(&db.url, redis_url, &prefix);
    configure(&mut users_config);
    rookery_users::migrate(&users_config)
        .await
        .expect("migrations");
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let users_url = format!("http://{}", grpc.local_addr().unwrap());
    tokio::spawn(rookery_users::run(
        grpc,
        ops,
        users_config,
        shutdown.clone(),
    ));

    let mut timeline_config =
        rookery_timeline::Config::for_tests(&timeline_db.url, redis_url, &prefix, &users_url);
    configure_timeline(&mut timeline_config);
    rookery_timeline::migrate(&timeline_config)
        .await
        .expect("timeline migrations");
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let timeline_url = format!("http://{}", grpc.local_addr().unwrap());
    tokio::spawn(rookery_timeline::run(
        grpc,
        ops,
        timeline_config,
        shutdown.clone(),
    ));

    let notifications_config = rookery_notifications::Config::for_tests(
        &notifications_db.url,
        redis_url,
        &prefix,
        &users_url,
        &timeline_url,
    );
    rookery_notifications::migrate(&notifications_config)
        .await
        .expect("notifications migrations");
    let notifications = NotificationsProcess::start(
        run_notifications,
        notifications_config,
        "127.0.0.1:0".parse().unwrap(),
        &shutdown,
    )
    .await;
    let notifications_url = notifications.url();

    let media_dir = tempfile::tempdir().expect("media directory");
    let mut media_config = rookery_media::Config::for_tests(
        &media_db.url,
        redis_url,
        &prefix,
        media_dir.path().to_owned(),
    );
    configure_media(&mut media_config);
    rookery_media::migrate(&media_config)
        .await
        .expect("media migrations");
    let media = MediaProcess::start(
        run_media,
        media_config,
        "127.0.0.1:0".parse().unwrap(),
        &shutdown,
    )
    .await;
    let media_url = media.url();

    let urls = ServiceUrls {
        users: users_url.clone(),
        timeline: timeline_url.clone(),
        notifications: notifications_url.clone(),
        media: media_url.clone(),
    };
    let base = spawn_gateway(&urls, redis_url, &prefix, &shutdown).await;
    let stack = Stack {
        base,
        users_url,
        timeline_url,
        timeline_db,
        notifications_db,
        notifications_url,
        notifications: tokio::sync::Mutex::new(notifications),
        media_db,
        media_url,
        media: tokio::sync::Mutex::new(media),
        media_dir,
        http: Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        db,
        redis_url: redis_url.to_owned(),
        redis_prefix: prefix,
        shutdown,
    };
    stack.wait_ready(&stack.base).await;
    stack
}

/// How a service is run: `run(grpc, ops, config, shutdown)` of its crate.
type RunFn<C> = fn(
    TcpListener,
    TcpListener,
    C,
    CancellationToken,
) -> futures::future::BoxFuture<'static, Result<(), String>>;

/// A running service of a stack (notifications, media), which a test may stop and
/// restart on the same address.
pub struct Process<C: Clone + Send + 'static> {
    config: C,
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    run: RunFn<C>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

/// The notifications service of a stack.
pub type NotificationsProcess = Process<rookery_notifications::Config>;
/// The media service of a stack.
pub type MediaProcess = Process<rookery_media::Config>;

impl<C: Clone + Send + 'static> Process<C> {
    /// Starts a service with `config` (already migrated) on `addr` (port 0: any),
    /// stopped by `shutdown` or [`Self::stop`].
    pub async fn start(
        run: RunFn<C>,
        config: C,
        addr: std::net::SocketAddr,
        shutdown: &CancellationToken,
    ) -> Self {
        let grpc = TcpListener::bind(addr).await.unwrap();
        let ops = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = grpc.local_addr().unwrap();
        let stop = shutdown.child_token();
        let task = tokio::spawn(run(grpc, ops, config.clone(), stop.clone()));
        Self {
            config,
            addr,
            stop,
            run,
            task: Some(task),
        }
    }

    /// Its gRPC URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it (gracefully) and waits until it has.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Starts it again on the same address (a new process: a new consumer name).
    pub async fn restart(&mut self, shutdown: &CancellationToken) {
        self.stop().await;
        *self = Self::start(self.run, self.config.clone(), self.addr, shutdown).await;
    }
}

fn run_notifications(
    grpc: TcpListener,
    ops: TcpListener,
    config: rookery_notifications::Config,
    shutdown: CancellationToken,
) -> futures::future::BoxFuture<'static, Result<(), String>> {
    Box::pin(async move {
        rookery_notifications::run(grpc, ops, config, shutdown)
            .await
            .map_err(|e| e.to_string())
    })
}

fn run_media(
    grpc: TcpListener,
    ops: TcpListener,
    config: rookery_media::Config,
    shutdown: CancellationToken,
) -> futures::future::BoxFuture<'static, Result<(), String>> {
    Box::pin(async move {
        rookery_media::run(grpc, ops, config, shutdown)
            .await
            .map_err(|e| e.to_string())
    })
}

/// The gRPC URLs of a stack's services.
#[derive(Clone, Debug)]
pub struct ServiceUrls {
    pub users: String,
    pub timeline: String,
    pub notifications: String,
    pub media: String,
}

/// The gateway's test configuration for a stack's services.
pub fn gateway_config(
    urls: &ServiceUrls,
    redis_url: &str,
    prefix: &str,
) -> rookery_gateway::Config {
    let mut config =
        rookery_gateway::Config::for_tests(&urls.users, &urls.timeline, redis_url, prefix);
    config.notifications_url = urls.notifications.clone();
    config.media_url = urls.media.clone();
    config
}

/// Starts one more gateway replica of the stack; returns its base URL.
pub async fn spawn_gateway(
    urls: &ServiceUrls,
    redis_url: &str,
    prefix: &str,
    shutdown: &CancellationToken,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = gateway_config(urls, redis_url, prefix);
    config.media_base_url = format!("{base}/system/media");
    tokio::spawn(rookery_gateway::run(listener, config, shutdown.clone()));
    base
}

impl Stack {
    /// Stops the notifications service.
    pub async fn stop_notifications(&self) {
        self.notifications.lock().await.stop().await;
    }

    /// Starts the notifications service again, on the same address.
    pub async fn restart_notifications(&self) {
        self.notifications
            .lock()
            .await
            .restart(&self.shutdown)
            .await;
    }

    /// Stops the media service.
    pub async fn stop_media(&self) {
        self.media.lock().await.stop().await;
    }

    /// Starts the media service again, on the same address.
    pub async fn restart_media(&self) {
        self.media.lock().await.restart(&self.shutdown).await;
    }

    /// The gRPC URLs of the stack's services.
    pub fn urls(&self) -> ServiceUrls {
        ServiceUrls {
            users: self.users_url.clone(),
            timeline: self.timeline_url.clone(),
            notifications: self.notifications_url.clone(),
            media: self.media_url.clone(),
        }
    }

    /// Another gateway replica sharing this stack's users service and Redis.
    pub async fn second_gateway(&self) -> String {
        let base = spawn_gateway(
            &self.urls(),
            &self.redis_url,
            &self.redis_prefix,
            &self.shutdown,
        )
        .await;
        self.wait_ready(&base).await;
        base
    }

    /// Another gateway replica like [`Stack::second_gateway`], with its test
    /// configuration adjusted by `configure` (e.g. streaming limits).
    pub async fn gateway_with(
        &self,
        configure: impl FnOnce(&mut rookery_gateway::Config),
    ) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut config = gateway_config(&self.urls(), &self.redis_url, &self.redis_prefix);
        config.media_base_url = format!("{base}/system/media");
        configure(&mut config);
        tokio::spawn(rookery_gateway::run(
            listener,
            config,
            self.shutdown.clone(),
        ));
        self.wait_ready(&base).await;
        base
    }

    /// Polls `/ready` until it answers 200 (10 s at most).
    pub async fn wait_ready(&self, base: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = self.http.get(format!("{base}/ready")).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway at {base} never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `POST` a form to the gateway.
    pub async fn post_form(
        &self,
        path: &str,
        token: Option<&str>,
        form: &[(&str, &str)],
    ) -> Response {
        self.post_form_at(&self.base, path, token, form).await
    }

    /// `POST` a form to a given gateway.
    pub async fn post_form_at(
        &self,
        base: &str,
        path: &str,
        token: Option<&str>,
        form: &[(&str, &str)],
    ) -> Response {
        let mut req = self.http.post(format!("{base}{path}")).form(form);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    /// `PATCH` a form to the gateway.
    pub async fn patch_form(&self, path: &str, token: &str, form: &[(&str, &str)]) -> Response {
        self.http
            .patch(format!("{}{path}", self.base))
            .bearer_auth(token)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// `GET /api/v1/accounts/verify_credentials` on the gateway at `base`.
    pub async fn verify_at(&self, base: &str, token: &str) -> Response {
        self.get_at(base, "/api/v1/accounts/verify_credentials", Some(token))
            .await
    }

    /// `GET /api/v1/accounts/verify_credentials`.
    pub async fn verify(&self, token: &str) -> Response {
        self.verify_at(&self.base, token).await
    }

    /// `POST /oauth/revoke` for `token` with `app`'s credentials.
    pub async fn revoke(&self, app: &App, token: &str) -> Response {
        let form = [
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.client_secret.as_str()),
            ("token", token),
        ];
        self.post_form("/oauth/revoke", None, &form).await
    }

    /// `GET` from the gateway.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.get_at(&self.base, path, token).await
    }

    /// `GET` from a given gateway.
    pub async fn get_at(&self, base: &str, path: &str, token: Option<&str>) -> Response {
        let mut req = self.http.get(format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    /// Registers an app with all top-level scopes.
    pub async fn create_app(&self) -> App {
        let res = self
            .post_form(
                "/api/v1/apps",
                None,
                &[
                    ("client_name", "e2e"),
                    (
                        "redirect_uris",
                        "urn:ietf:wg:oauth:2.0:oob https://client.example/cb",
                    ),
                    ("scopes", "read write follow push"),
                ],
            )
            .await;
        let body = json_ok(res).await;
        App {
            client_id: body["client_id"].as_str().unwrap().to_owned(),
            client_secret: body["client_secret"].as_str().unwrap().to_owned(),
        }
    }

    /// An app-only token (client_credentials) with `scope`.
    pub async fn app_token(&self, app: &App, scope: &str) -> String {
        let res = self
            .post_form(
                "/oauth/token",
                None,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &app.client_id),
                    ("client_secret", &app.client_secret),
                    ("scope", scope),
                ],
            )
            .await;
        json_ok(res).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Registers `username` (email `{username}@example.com`, password `correct horse`)
    /// and returns the user token.
    pub async fn register(&self, app: &App, username: &str) -> String {
        let app_token = self.app_token(app, "read write follow push").await;
        let email = format!("{username}@example.com");
        let res = self
            .post_form(
                "/api/v1/accounts",
                Some(&app_token),
                &[
                    ("username", username),
                    ("email", &email),
                    ("password", "correct horse"),
                    ("agreement", "true"),
                    ("locale", "en"),
                ],
            )
            .await;
        json_ok(res).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Registers `stem` + a unique suffix; returns (token, account id).
    pub async fn account(&self, app: &App, stem: &str) -> (String, String) {
        let token = self.register(app, &username(stem)).await;
        let id = json_ok(self.verify(&token).await).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        (token, id)
    }

    /// `GET /api/v1/accounts/:id` as JSON (200 asserted).
    pub async fn account_json(&self, id: &str) -> Value {
        json_ok(self.get(&format!("/api/v1/accounts/{id}"), None).await).await
    }

    /// `POST /api/v1/accounts/:id/{action}` (follow, block, ...) by `token`.
    pub async fn act(
        &self,
        token: &str,
        id: &str,
        action: &str,
        form: &[(&str, &str)],
    ) -> Response {
        self.post_form(
            &format!("/api/v1/accounts/{id}/{action}"),
            Some(token),
            form,
        )
        .await
    }

    /// Password grant; returns the raw response.
    pub async fn log_in(&self, app: &App, login: &str, password: &str, scope: &str) -> Response {
        self.post_form(
            "/oauth/token",
            None,
            &[
                ("grant_type", "password"),
                ("client_id", &app.client_id),
                ("client_secret", &app.client_secret),
                ("username", login),
                ("password", password),
                ("scope", scope),
            ],
        )
        .await
    }

    /// Entries of the users service's event stream as (topic, aggregate id): every event
    /// committed before the call (the outbox relay publishes them asynchronously, so this
    /// first waits, at most 5 s, for the outbox to be empty).
    pub async fn user_events(&self) -> Vec<(String, String)> {
        self.outbox_drained().await;
        let client = redis::Client::open(self.redis_url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let key = format!("{}:events:users", self.redis_prefix);
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap();
        reply
            .ids
            .into_iter()
            .map(|e| {
                let text = |k: &str| e.get::<String>(k).unwrap_or_default();
                (text("topic"), text("aggregate"))
            })
            .collect()
    }

    /// Waits until the users service's outbox holds nothing, or 5 s have passed (the
    /// caller's assertions then say what is missing).
    async fn outbox_drained(&self) {
        use sqlx::Connection;
        let mut db = sqlx::PgConnection::connect(&self.db.url).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
                .fetch_one(&mut db)
                .await
                .unwrap();
            if left == 0 || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Asserts a 200 and returns the JSON body.
pub async fn json_ok(res: Response) -> Value {
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "unexpected status, body: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Asserts `status` and a Mastodon error body; returns the body.
pub async fn json_error(res: Response, status: u16) -> Value {
    let got = res.status();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = res.text().await.unwrap();
    assert_eq!(got.as_u16(), status, "unexpected status, body: {body}");
    assert!(
        content_type.starts_with("application/json"),
        "error is not JSON ({content_type}): {body}"
    );
    let json: Value = serde_json::from_str(&body).unwrap();
    assert!(
        json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "no error message: {body}"
    );
    json
}

/// A unique, valid username.
pub fn username(stem: &str) -> String {
    format!("{stem}{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// Polls `check` until it returns `Some`, for at most `within`.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
