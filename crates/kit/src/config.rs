//! Typed configuration from environment variables (12-factor), with defaults that run
//! locally against `make run`'s Postgres and Redis.

use std::{str::FromStr, time::Duration};

use crate::{Error, Result};

/// Default Redis URL of the local stack (`make run`).
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:16379/0";

/// Reads `name`, or `default` when unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => default.to_owned(),
    }
}

/// Reads and parses `name`, or `default` when unset; a malformed value is an error naming
/// the variable, so a typo stops the process at start-up instead of being ignored.
pub fn env_parse<T: FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| Error::Config(format!("{name}: cannot parse {v:?}"))),
        _ => Ok(default),
    }
}

/// Reads a duration given in milliseconds.
pub fn env_millis(name: &str, default_ms: u64) -> Result<Duration> {
    env_parse(name, default_ms).map(Duration::from_millis)
}

/// Postgres settings of one service.
#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    /// Primary (read-write) URL: `{SERVICE}_DATABASE_URL`.
    pub url: String,
    /// Optional read replica for reads that tolerate lag: `{SERVICE}_DATABASE_READ_URL`.
    pub read_url: Option<String>,
    /// Pool size per pool: `{SERVICE}_DATABASE_MAX_CONNECTIONS` (default 16).
    pub max_connections: u32,
    /// How long a request may wait for a pooled connection: `DATABASE_ACQUIRE_TIMEOUT_MS` (2000).
    pub acquire_timeout: Duration,
    /// Statements slower than this are logged with their duration: `DATABASE_SLOW_STATEMENT_MS` (100).
    pub slow_statement: Duration,
    /// Server-side cap on any statement: `DATABASE_STATEMENT_TIMEOUT_MS` (5000).
    pub statement_timeout: Duration,
}

impl DatabaseConfig {
    /// Reads the settings of `service` (e.g. `USERS`), defaulting the URL to `default_url`.
    pub fn from_env(service: &str, default_url: &str) -> Result<Self> {
        let read_url = env_or(&format!("{service}_DATABASE_READ_URL"), "");
        Ok(Self {
            url: env_or(&format!("{service}_DATABASE_URL"), default_url),
            read_url: (!read_url.is_empty()).then_some(read_url),
            max_connections: env_parse(&format!("{service}_DATABASE_MAX_CONNECTIONS"), 16)?,
            acquire_timeout: env_millis("DATABASE_ACQUIRE_TIMEOUT_MS", 2000)?,
            slow_statement: env_millis("DATABASE_SLOW_STATEMENT_MS", 100)?,
            statement_timeout: env_millis("DATABASE_STATEMENT_TIMEOUT_MS", 5000)?,
        })
    }

    /// Settings for `url` with the defaults above (tests, tools).
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            read_url: None,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(2),
            slow_statement: Duration::from_millis(100),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// Redis settings shared by every process.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `REDIS_URL` (default [`DEFAULT_REDIS_URL`]).
    pub url: String,
    /// Prefix of every key and channel: `REDIS_PREFIX` (default `rk`). Lets several
    /// deployments (or tests) share one Redis without seeing each other.
    pub prefix: String,
    /// Upper bound of any single Redis call, connection included: `REDIS_TIMEOUT_MS` (100).
    /// Redis is a cache and an event bus: when it is slow we go without it.
    pub timeout: Duration,
    /// Pool size: `REDIS_POOL_SIZE` (default 32).
    pub pool_size: usize,
    /// Seed nodes of a Redis Cluster: `REDIS_CLUSTER_NODES`, comma-separated URLs
    /// (`redis://redis-0.redis:6379,redis://redis-1.redis:6379`). When set, the process
    /// talks to the cluster (slot routing, redirects, failover) and `url` is not used.
    pub cluster_nodes: Vec<String>,
}

impl RedisConfig {
    /// Reads `REDIS_URL`, `REDIS_PREFIX`, `REDIS_TIMEOUT_MS`, `REDIS_POOL_SIZE`,
    /// `REDIS_CLUSTER_NODES`.
    pub fn from_env() -> Result<Self> {
        Ok(Self {
            url: env_or("REDIS_URL", DEFAULT_REDIS_URL),
            prefix: env_or("REDIS_PREFIX", "rk"),
            timeout: env_millis("REDIS_TIMEOUT_MS", 100)?,
            pool_size: env_parse("REDIS_POOL_SIZE", 32)?,
            cluster_nodes: node_list(&env_or("REDIS_CLUSTER_NODES", "")),
        })
    }

    /// Settings for `url` and `prefix` with the defaults above (tests, tools). A
    /// comma-separated list of node URLs means a Redis Cluster.
    pub fn for_url(url: impl Into<String>, prefix: impl Into<String>) -> Self {
        let url = url.into();
        let cluster_nodes = if url.contains(',') {
            node_list(&url)
        } else {
            Vec::new()
        };
        Self {
            url,
            prefix: prefix.into(),
            timeout: Duration::from_millis(100),
            pool_size: 32,
            cluster_nodes,
        }
    }
}

fn node_list(nodes: &str) -> Vec<String> {
    nodes
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}
