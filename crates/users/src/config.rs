//! Configuration of the users service, from environment variables.

use std::{net::SocketAddr, time::Duration};

use rookery_kit::{
    Result,
    config::{DatabaseConfig, RedisConfig, env_millis, env_or, env_parse},
};

/// Default database URL of the local stack (`make run`).
pub const DEFAULT_DATABASE_URL: &str =
    "postgres://rookery_users:rookery_users@127.0.0.1:15432/rookery";

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Everything the users service needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC listen address: `USERS_GRPC_ADDR` (default `127.0.0.1:50051`).
    pub grpc_addr: SocketAddr,
    /// HTTP listen address for `/health`, `/ready`, `/metrics`: `USERS_HTTP_ADDR`
    /// (default `127.0.0.1:9101`).
    pub http_addr: SocketAddr,
    /// Postgres (`USERS_DATABASE_URL`, `USERS_DATABASE_READ_URL`, ...).
    pub database: DatabaseConfig,
    /// Redis (`REDIS_URL`, `REDIS_PREFIX`, ...).
    pub redis: RedisConfig,
    /// The instance's domain, for `user@domain` lookups: `ROOKERY_DOMAIN` (default `127.0.0.1:8080`).
    pub domain: String,
    /// Lifetime of an account in this process's cache: `USERS_ACCOUNT_L1_TTL_MS` (default 60 000).
    pub account_l1_ttl: Duration,
    /// Lifetime of an account in Redis: `USERS_ACCOUNT_L2_TTL_MS` (default 3 600 000).
    pub account_l2_ttl: Duration,
    /// Accounts kept in process: `USERS_ACCOUNT_L1_CAPACITY` (default 100 000).
    pub account_l1_capacity: u64,
    /// Outbox relay poll interval: `OUTBOX_POLL_MS` (default 500). Commits wake it at once.
    pub outbox_poll: Duration,
    /// New follows and follow requests per account per window: `USERS_FOLLOW_LIMIT`
    /// (default 400, Mastodon's).
    pub follow_limit: u64,
    /// The follow limit's window: `USERS_FOLLOW_LIMIT_WINDOW_MS` (default 24 h).
    pub follow_limit_window: Duration,
    /// Failed logins per username or email per window, after which even the right
    /// password is refused (429) until the window ends: `USERS_LOGIN_LIMIT` (default 25).
    pub login_limit: u64,
    /// The login limit's window: `USERS_LOGIN_LIMIT_WINDOW_MS` (default 1 h).
    pub login_limit_window: Duration,
    /// How recently a follower must have used the service to count as active for
    /// fan-out: `USERS_ACTIVE_WINDOW_MS` (default 7 days, Mastodon's).
    pub active_window: Duration,
    /// How often expired mutes are deleted (with `mute.deleted`): `USERS_MUTE_SWEEP_MS`
    /// (default 60 000).
    pub mute_sweep: Duration,
    /// Threads hashing passwords (argon2id, 19 MiB each while it runs):
    /// `USERS_HASH_THREADS` (default: the number of CPUs).
    pub hash_threads: usize,
    /// Password checks that may wait for a hashing thread before sign-ins are refused
    /// with 503: `USERS_HASH_QUEUE` (default 256).
    pub hash_queue: usize,
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
            grpc_addr: addr("USERS_GRPC_ADDR", "127.0.0.1:50051")?,
            http_addr: addr("USERS_HTTP_ADDR", "127.0.0.1:9101")?,
            database: DatabaseConfig::from_env("USERS", DEFAULT_DATABASE_URL)?,
            redis: RedisConfig::from_env()?,
            domain: env_or("ROOKERY_DOMAIN", "127.0.0.1:8080"),
            account_l1_ttl: env_millis("USERS_ACCOUNT_L1_TTL_MS", 60_000)?,
            account_l2_ttl: env_millis("USERS_ACCOUNT_L2_TTL_MS", 3_600_000)?,
            account_l1_capacity: env_parse("USERS_ACCOUNT_L1_CAPACITY", 100_000)?,
            outbox_poll: env_millis("OUTBOX_POLL_MS", 500)?,
            follow_limit: env_parse("USERS_FOLLOW_LIMIT", 400)?,
            follow_limit_window: env_millis("USERS_FOLLOW_LIMIT_WINDOW_MS", DAY_MS)?,
            login_limit: env_parse("USERS_LOGIN_LIMIT", 25)?,
            login_limit_window: env_millis("USERS_LOGIN_LIMIT_WINDOW_MS", 3_600_000)?,
            active_window: env_millis("USERS_ACTIVE_WINDOW_MS", 7 * DAY_MS)?,
            mute_sweep: env_millis("USERS_MUTE_SWEEP_MS", 60_000)?,
            hash_threads: env_parse("USERS_HASH_THREADS", cpus())?,
            hash_queue: env_parse("USERS_HASH_QUEUE", 256)?,
        })
    }

    /// A configuration for tests: the given database and Redis, other values default.
    pub fn for_tests(database_url: &str, redis_url: &str, redis_prefix: &str) -> Self {
        Self {
            grpc_addr: ([127, 0, 0, 1], 0).into(),
            http_addr: ([127, 0, 0, 1], 0).into(),
            database: DatabaseConfig::for_url(database_url),
            redis: RedisConfig::for_url(redis_url, redis_prefix),
            domain: "rookery.test".to_owned(),
            account_l1_ttl: Duration::from_secs(60),
            account_l2_ttl: Duration::from_secs(3600),
            account_l1_capacity: 10_000,
            outbox_poll: Duration::from_millis(100),
            follow_limit: 400,
            follow_limit_window: Duration::from_millis(DAY_MS),
            login_limit: 25,
            login_limit_window: Duration::from_secs(3600),
            active_window: Duration::from_millis(7 * DAY_MS),
            mute_sweep: Duration::from_secs(60),
            hash_threads: 2,
            hash_queue: 256,
        }
    }
}
