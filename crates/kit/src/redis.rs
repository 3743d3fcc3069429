//! The Redis pool. Every call is bounded by [`RedisConfig::timeout`]: Redis is a cache and
//! an event bus, so a slow Redis must never make a request slow.

use std::{sync::Arc, time::Duration};

use deadpool_redis::{Config, Connection, Pool, Runtime};
use redis::{Cmd, FromRedisValue, Pipeline};

use crate::{Error, Result, config::RedisConfig};

/// A Redis pool plus the key prefix of this deployment.
#[derive(Clone)]
pub struct Redis {
    pool: Pool,
    client: redis::Client,
    prefix: Arc<str>,
    timeout: Duration,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Redis {
    /// Creates the pool; connections are opened on first use.
    pub fn new(config: &RedisConfig) -> Result<Self> {
        let mut pool_config = Config::from_url(config.url.clone());
        let mut pool = deadpool_redis::PoolConfig::new(config.pool_size);
        pool.timeouts.wait = Some(config.timeout);
        pool.timeouts.create = Some(config.timeout);
        pool.timeouts.recycle = Some(config.timeout);
        pool_config.pool = Some(pool);
        let pool = pool_config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| Error::Config(format!("REDIS_URL: {e}")))?;
        let client = redis::Client::open(config.url.as_str())?;
        Ok(Self {
            pool,
            client,
            prefix: config.prefix.as_str().into(),
            timeout: config.timeout,
        })
    }

    /// `{prefix}:{suffix}`: every key and channel goes through here.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }

    /// The time budget of one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A client for dedicated connections (pub/sub, blocking stream reads).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    async fn conn(&self) -> Result<Connection> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_redis::PoolError::Timeout(_) => Error::RedisTimeout(self.timeout),
            deadpool_redis::PoolError::Backend(e) => Error::Redis(e),
            other => Error::RedisPool(other.to_string()),
        })
    }

    /// Runs one command within the time budget.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            Ok(cmd.query_async(&mut conn).await?)
        })
        .await
    }

    /// Runs a pipeline (one round trip) within the time budget.
    pub async fn pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            Ok(pipe.query_async(&mut conn).await?)
        })
        .await
    }

    async fn bounded<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let out = tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or(Err(Error::RedisTimeout(self.timeout)));
        if out.is_err() {
            metrics::counter!("redis_errors_total").increment(1);
        }
        out
    }

    /// Round trip (readiness, recovery probes).
    pub async fn ping(&self) -> Result<()> {
        self.query::<String>(&redis::cmd("PING")).await.map(|_| ())
    }
}
