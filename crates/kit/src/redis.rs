//! The Redis pool. Every call is bounded by [`RedisConfig::timeout`]: Redis is a cache and
//! an event bus, so a slow Redis must never make a request slow.
//!
//! Pooled connections are multiplexed: one connection carries any number of concurrent
//! calls. Checking one out of the pool costs a PING round trip (deadpool-redis's health
//! check), so calls do not check out: they share clones of a few pooled connections,
//! round robin, and only go back to the pool (for a checked, fresh connection) after a
//! connection failed them. Concurrency is therefore never bounded by the pool size.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use deadpool_redis::{Config, Pool, Runtime};
use redis::{Cmd, FromRedisValue, Pipeline, aio::MultiplexedConnection};

use crate::{Error, Result, config::RedisConfig};

/// A Redis pool plus the key prefix of this deployment.
#[derive(Clone)]
pub struct Redis {
    pool: Pool,
    shared: Arc<Shared>,
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
        let slots = (0..config.pool_size.max(1))
            .map(|_| Mutex::new(None))
            .collect();
        Ok(Self {
            pool,
            shared: Arc::new(Shared {
                slots,
                next: AtomicUsize::new(0),
            }),
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

    /// A shared connection (see the module docs) and its slot.
    async fn conn(&self) -> Result<(usize, MultiplexedConnection)> {
        let slot = self.shared.next.fetch_add(1, Ordering::Relaxed) % self.shared.slots.len();
        if let Some(conn) = self.shared.get(slot) {
            return Ok((slot, conn));
        }
        let pooled = self.pool.get().await.map_err(|e| match e {
            deadpool_redis::PoolError::Timeout(_) => Error::RedisTimeout(self.timeout),
            deadpool_redis::PoolError::Backend(e) => Error::Redis(e),
            other => Error::RedisPool(other.to_string()),
        })?;
        // The clone shares the pooled connection, which stays in the pool.
        let conn: MultiplexedConnection = (*pooled).clone();
        self.shared.set(slot, Some(conn.clone()));
        Ok((slot, conn))
    }

    /// Runs one command within the time budget.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        self.bounded(async {
            let (slot, mut conn) = self.conn().await?;
            let out = cmd.query_async(&mut conn).await;
            self.settle(slot, out)
        })
        .await
    }

    /// Runs a pipeline (one round trip) within the time budget.
    pub async fn pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T> {
        self.bounded(async {
            let (slot, mut conn) = self.conn().await?;
            let out = pipe.query_async(&mut conn).await;
            self.settle(slot, out)
        })
        .await
    }

    /// Drops a slot's connection when it failed at the connection level (not for errors
    /// Redis answered with), so the next call there gets a checked one from the pool.
    fn settle<T>(&self, slot: usize, out: redis::RedisResult<T>) -> Result<T> {
        if let Err(e) = &out
            && (e.is_io_error()
                || e.is_connection_dropped()
                || e.is_timeout()
                || e.is_unrecoverable_error())
        {
            self.shared.set(slot, None);
        }
        Ok(out?)
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

/// The shared connections: one slot per configured connection, filled lazily.
struct Shared {
    slots: Vec<Mutex<Option<MultiplexedConnection>>>,
    next: AtomicUsize,
}

impl Shared {
    fn get(&self, slot: usize) -> Option<MultiplexedConnection> {
        self.slots[slot].lock().ok()?.clone()
    }

    fn set(&self, slot: usize, conn: Option<MultiplexedConnection>) {
        if let Ok(mut guard) = self.slots[slot].lock() {
            *guard = conn;
        }
    }
}
