//! Configuration of the notifications service, from environment variables.

use std::{net::SocketAddr, time::Duration};

use rookery_kit::{
    Result,
    config::{DatabaseConfig, RedisConfig, env_millis, env_or},
};

/// Default database URL of the local stack (`make run`).
pub const DEFAULT_DATABASE_URL: &str =
    "postgres://rookery_notifications:rookery_notifications@127.0.0.1:15432/rookery";

/// Everything the notifications service needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC listen address: `NOTIFICATIONS_GRPC_ADDR` (default `127.0.0.1:50053`).
    pub grpc_addr: SocketAddr,
    /// HTTP listen address for `/health`, `/ready`, `/metrics`:
    /// `NOTIFICATIONS_HTTP_ADDR` (default `127.0.0.1:9103`).
    pub http_addr: SocketAddr,
    /// Postgres (`NOTIFICATIONS_DATABASE_URL`, `NOTIFICATIONS_DATABASE_READ_URL`, ...).
    pub database: DatabaseConfig,
    /// Redis (`REDIS_URL`, `REDIS_PREFIX`, ...).
    pub redis: RedisConfig,
    /// The users service: `USERS_URL` (default `http://127.0.0.1:50051`).
    pub users_url: String,
    /// The timeline service: `TIMELINE_URL` (default `http://127.0.0.1:50052`).
    pub timeline_url: String,
    /// Deadline of a call to another service: `GRPC_TIMEOUT_MS` (default 5 000).
    pub grpc_timeout: Duration,
    /// Event entries left unacknowledged this long by a consumer (it died) are taken
    /// over by another: `NOTIFICATIONS_CLAIM_IDLE_MS` (default 30 000).
    pub claim_idle: Duration,
    /// Lifetime of an account's unread-count set in Redis, refreshed by writes:
    /// `NOTIFICATIONS_UNREAD_TTL_MS` (default 7 days).
    pub unread_ttl: Duration,
}

impl Config {
    /// Reads the configuration; a malformed value stops the process with its name.
    pub fn from_env() -> Result<Self> {
        let addr = |name: &str, default: &str| {
            env_or(name, default)
                .parse()
                .map_err(|_| rookery_kit::Error::Config(format!("{name}: not a socket address")))
        };
        Ok(Self {
            grpc_addr: addr("NOTIFICATIONS_GRPC_ADDR", "127.0.0.1:50053")?,
            http_addr: addr("NOTIFICATIONS_HTTP_ADDR", "127.0.0.1:9103")?,
            database: DatabaseConfig::from_env("NOTIFICATIONS", DEFAULT_DATABASE_URL)?,
            redis: RedisConfig::from_env()?,
            users_url: env_or("USERS_URL", "http://127.0.0.1:50051"),
            timeline_url: env_or("TIMELINE_URL", "http://127.0.0.1:50052"),
            grpc_timeout: env_millis("GRPC_TIMEOUT_MS", 5_000)?,
            claim_idle: env_millis("NOTIFICATIONS_CLAIM_IDLE_MS", 30_000)?,
            unread_ttl: env_millis("NOTIFICATIONS_UNREAD_TTL_MS", 7 * 24 * 3_600_000)?,
        })
    }

    /// A configuration for tests: the given database, Redis and services.
    pub fn for_tests(
        database_url: &str,
        redis_url: &str,
        redis_prefix: &str,
        users_url: &str,
        timeline_url: &str,
    ) -> Self {
        Self {
            grpc_addr: ([127, 0, 0, 1], 0).into(),
            http_addr: ([127, 0, 0, 1], 0).into(),
            database: DatabaseConfig::for_url(database_url),
            redis: RedisConfig::for_url(redis_url, redis_prefix),
            users_url: users_url.to_owned(),
            timeline_url: timeline_url.to_owned(),
            grpc_timeout: Duration::from_secs(5),
            claim_idle: Duration::from_secs(2),
            unread_ttl: Duration::from_secs(3600),
        }
    }
}
