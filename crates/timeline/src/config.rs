//! Configuration of the timeline service, from environment variables.

use std::{net::SocketAddr, time::Duration};

use rookery_kit::{
    Result,
    config::{DatabaseConfig, RedisConfig, env_millis, env_or, env_parse},
};

/// Default database URL of the local stack (`make run`).
pub const DEFAULT_DATABASE_URL: &str =
    "postgres://rookery_timeline:rookery_timeline@127.0.0.1:15432/rookery";

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Everything the timeline service needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC listen address: `TIMELINE_GRPC_ADDR` (default `127.0.0.1:50052`).
    pub grpc_addr: SocketAddr,
    /// HTTP listen address for `/health`, `/ready`, `/metrics`: `TIMELINE_HTTP_ADDR`
    /// (default `127.0.0.1:9102`).
    pub http_addr: SocketAddr,
    /// Postgres (`TIMELINE_DATABASE_URL`, `TIMELINE_DATABASE_READ_URL`, ...).
    pub database: DatabaseConfig,
    /// Redis (`REDIS_URL`, `REDIS_PREFIX`, ...).
    pub redis: RedisConfig,
    /// The users service: `USERS_URL` (default `http://127.0.0.1:50051`).
    pub users_url: String,
    /// Deadline of a call to the users service: `GRPC_TIMEOUT_MS` (default 5 000).
    pub grpc_timeout: Duration,
    /// The instance's domain (for `@user@domain` mentions): `ROOKERY_DOMAIN`.
    pub domain: String,
    /// Public base URL (links in rendered statuses): `ROOKERY_BASE_URL`
    /// (default `http://{domain}`).
    pub base_url: String,
    /// Entries kept per home feed: `TIMELINE_FEED_LENGTH` (default 800).
    pub feed_length: usize,
    /// A home feed not read for this long is dropped and no longer fanned out to; it is
    /// rebuilt from Postgres on the next read: `TIMELINE_FEED_TTL_MS` (default 6 days:
    /// keep it below the users service's `USERS_ACTIVE_WINDOW_MS`, so that a feed never
    /// outlives its owner's activity and misses posts).
    pub feed_ttl: Duration,
    /// Authors with at least this many followers are not fanned out; their statuses are
    /// merged into their followers' feeds at read time: `TIMELINE_CELEBRITY_FOLLOWERS`
    /// (default 10 000).
    pub celebrity_followers: i64,
    /// Statuses of each followed account read when a feed is rebuilt or a follow merges
    /// an account in: `TIMELINE_MERGE_PER_ACCOUNT` (default 40).
    pub merge_per_account: i64,
    /// Statuses kept in this process's cache: `TIMELINE_STATUS_L1_CAPACITY` (default 200 000).
    pub status_l1_capacity: u64,
    /// Lifetime of a status in this process's cache: `TIMELINE_STATUS_L1_TTL_MS`
    /// (default 300 000; writes invalidate, this is a safety net).
    pub status_l1_ttl: Duration,
    /// Lifetime of a status in Redis: `TIMELINE_STATUS_L2_TTL_MS` (default 1 day).
    pub status_l2_ttl: Duration,
    /// Outbox relay poll interval: `OUTBOX_POLL_MS` (default 500).
    pub outbox_poll: Duration,
    /// Half-life of trend scores: `TIMELINE_TREND_HALF_LIFE_MS` (default 6 hours).
    pub trend_half_life: Duration,
}

impl Config {
    /// Reads the configuration; a malformed value stops the process with its name.
    pub fn from_env() -> Result<Self> {
        let addr = |name: &str, default: &str| {
            env_or(name, default)
                .parse()
                .map_err(|_| rookery_kit::Error::Config(format!("{name}: not a socket address")))
        };
        let domain = env_or("ROOKERY_DOMAIN", "127.0.0.1:8080");
        Ok(Self {
            grpc_addr: addr("TIMELINE_GRPC_ADDR", "127.0.0.1:50052")?,
            http_addr: addr("TIMELINE_HTTP_ADDR", "127.0.0.1:9102")?,
            database: DatabaseConfig::from_env("TIMELINE", DEFAULT_DATABASE_URL)?,
            redis: RedisConfig::from_env()?,
            users_url: env_or("USERS_URL", "http://127.0.0.1:50051"),
            grpc_timeout: env_millis("GRPC_TIMEOUT_MS", 5_000)?,
            base_url: env_or("ROOKERY_BASE_URL", &format!("http://{domain}")),
            domain,
            feed_length: env_parse("TIMELINE_FEED_LENGTH", 800)?,
            feed_ttl: env_millis("TIMELINE_FEED_TTL_MS", 6 * DAY_MS)?,
            celebrity_followers: env_parse("TIMELINE_CELEBRITY_FOLLOWERS", 10_000)?,
            merge_per_account: env_parse("TIMELINE_MERGE_PER_ACCOUNT", 40)?,
            status_l1_capacity: env_parse("TIMELINE_STATUS_L1_CAPACITY", 200_000)?,
            status_l1_ttl: env_millis("TIMELINE_STATUS_L1_TTL_MS", 300_000)?,
            status_l2_ttl: env_millis("TIMELINE_STATUS_L2_TTL_MS", DAY_MS)?,
            outbox_poll: env_millis("OUTBOX_POLL_MS", 500)?,
            trend_half_life: env_millis("TIMELINE_TREND_HALF_LIFE_MS", 6 * 3_600_000)?,
        })
    }

    /// A configuration for tests: the given database, Redis and users service.
    pub fn for_tests(
        database_url: &str,
        redis_url: &str,
        redis_prefix: &str,
        users_url: &str,
    ) -> Self {
        Self {
            grpc_addr: ([127, 0, 0, 1], 0).into(),
            http_addr: ([127, 0, 0, 1], 0).into(),
            database: DatabaseConfig::for_url(database_url),
            redis: RedisConfig::for_url(redis_url, redis_prefix),
            users_url: users_url.to_owned(),
            grpc_timeout: Duration::from_secs(5),
            domain: "rookery.test".to_owned(),
            base_url: "http://rookery.test".to_owned(),
            feed_length: 800,
            feed_ttl: Duration::from_millis(6 * DAY_MS),
            celebrity_followers: 10_000,
            merge_per_account: 40,
            status_l1_capacity: 10_000,
            status_l1_ttl: Duration::from_secs(300),
            status_l2_ttl: Duration::from_secs(3600),
            outbox_poll: Duration::from_millis(100),
            trend_half_life: Duration::from_secs(6 * 3600),
        }
    }
}
