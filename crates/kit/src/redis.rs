//! The Redis client. Every call is bounded by [`RedisConfig::timeout`]: Redis is a cache and
//! an event bus, so a slow Redis must never make a request slow.
//!
//! Two deployments are supported, chosen by configuration:
//!
//! - **One server** (`REDIS_URL`). Pooled connections are multiplexed: one connection
//!   carries any number of concurrent calls. Checking one out of the pool costs a PING
//!   round trip (deadpool-redis's health check), so calls do not check out: they share
//!   clones of a few pooled connections, round robin, and only go back to the pool (for a
//!   checked, fresh connection) after a connection failed them. Concurrency is therefore
//!   never bounded by the pool size.
//! - **Redis Cluster** (`REDIS_CLUSTER_NODES`). One multiplexed cluster connection routes
//!   each command to the node owning its key's slot, follows redirects and fails over.
//!   Multi-key commands (`MGET`, `DEL`, `UNLINK`, `EXISTS`) are split by slot by the
//!   client. A cluster rejects a pipeline whose keys span slots, so [`Redis::pipe`] splits
//!   pipelines by slot (see [`Pipeline`]). Keys that a script or a one-round-trip read must
//!   find together share a hash tag: `tl:{account}:…`, `nt:{account}:…`.
//!
//! Pub/sub needs no routing: a cluster broadcasts `PUBLISH` to every node, so a subscriber
//! on any node hears every channel.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use deadpool_redis::{Config, Pool, Runtime};
use redis::{
    AsyncConnectionConfig, Cmd, FromRedisValue, RedisFuture, Value,
    aio::{ConnectionLike, MultiplexedConnection},
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
    cluster_routing::Slot,
};

use crate::{Error, Result, config::RedisConfig};

/// A Redis client (one server or a cluster) plus the key prefix of this deployment.
#[derive(Clone)]
pub struct Redis {
    backend: Backend,
    prefix: Arc<str>,
    timeout: Duration,
    breaker: Arc<Breaker>,
}

/// Fails calls at once for a moment after Redis stopped answering: a request touches
/// Redis several times (cache reads, invalidations, events), and without it each touch
/// would wait the whole timeout while Redis is paused or unreachable, turning a 100 ms
/// budget into a second per request. Opens after [`Breaker::TRIP_AFTER`] consecutive
/// connection-level failures (one slow reply under load does not trip it), stays open
/// for [`Breaker::OPEN_FOR`], then lets calls try again.
#[derive(Debug, Default)]
struct Breaker {
    consecutive_failures: AtomicU32,
    /// Milliseconds since `epoch` until which calls fail at once.
    open_until_ms: AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

impl Breaker {
    const TRIP_AFTER: u32 = 3;
    const OPEN_FOR: Duration = Duration::from_millis(500);

    fn now_ms(&self) -> u64 {
        self.epoch.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    fn is_open(&self) -> bool {
        self.now_ms() < self.open_until_ms.load(Ordering::Relaxed)
    }

    fn record(&self, failed_at_connection_level: bool) {
        if !failed_at_connection_level {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            return;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= Self::TRIP_AFTER {
            let until = self.now_ms() + Self::OPEN_FOR.as_millis() as u64;
            self.open_until_ms.store(until, Ordering::Relaxed);
            metrics::counter!("redis_breaker_opened_total").increment(1);
        }
    }
}

/// Whether `e` says Redis itself is unreachable or unresponsive (as opposed to Redis
/// answering with an error, such as a wrong type or a missing script).
fn is_connection_level(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error()
}

#[derive(Clone)]
enum Backend {
    Single {
        pool: Pool,
        shared: Arc<Shared<MultiplexedConnection>>,
        client: redis::Client,
    },
    Cluster(Arc<Cluster>),
}

/// A cluster: its client, the shared connection (it multiplexes and routes on its own),
/// and a client per seed node for pub/sub.
struct Cluster {
    client: ClusterClient,
    shared: Shared<ClusterConnection>,
    nodes: Vec<redis::Client>,
    next_node: AtomicUsize,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.backend {
            Backend::Single { .. } => "single",
            Backend::Cluster(_) => "cluster",
        };
        f.debug_struct("Redis")
            .field("mode", &mode)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Redis {
    /// Creates the client; connections are opened on first use.
    pub fn new(config: &RedisConfig) -> Result<Self> {
        let backend = if config.cluster_nodes.is_empty() {
            Self::single(config)?
        } else {
            Self::cluster(config)?
        };
        Ok(Self {
            backend,
            prefix: config.prefix.as_str().into(),
            timeout: config.timeout,
            breaker: Arc::default(),
        })
    }

    fn single(config: &RedisConfig) -> Result<Backend> {
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
        Ok(Backend::Single {
            pool,
            shared: Arc::new(Shared::new(config.pool_size.max(1))),
            client,
        })
    }

    fn cluster(config: &RedisConfig) -> Result<Backend> {
        let nodes = config
            .cluster_nodes
            .iter()
            .map(|url| redis::Client::open(url.as_str()))
            .collect::<redis::RedisResult<Vec<_>>>()
            .map_err(|e| Error::Config(format!("REDIS_CLUSTER_NODES: {e}")))?;
        // The outer budget (`bounded`) caps every call; these keep one slow node from
        // holding a call for the whole budget when a redirect or retry could still make it.
        let client = ClusterClient::builder(config.cluster_nodes.clone())
            .connection_timeout(config.timeout)
            .response_timeout(config.timeout)
            .retries(2)
            .build()
            .map_err(|e| Error::Config(format!("REDIS_CLUSTER_NODES: {e}")))?;
        Ok(Backend::Cluster(Arc::new(Cluster {
            client,
            shared: Shared::new(1),
            nodes,
            next_node: AtomicUsize::new(0),
        })))
    }

    /// Whether this client talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster(_))
    }

    /// `{prefix}:{suffix}`: every key and channel goes through here.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }

    /// The time budget of one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A client for a dedicated pub/sub connection. On a cluster, each call names the next
    /// seed node, so a subscriber that reconnects after losing its node tries another one.
    pub fn pubsub_client(&self) -> redis::Client {
        match &self.backend {
            Backend::Single { client, .. } => client.clone(),
            Backend::Cluster(cluster) => {
                let i = cluster.next_node.fetch_add(1, Ordering::Relaxed) % cluster.nodes.len();
                cluster.nodes[i].clone()
            }
        }
    }

    /// Opens a dedicated connection for blocking reads (`XREADGROUP … BLOCK`), whose
    /// response timeout is `response_timeout`: a blocking read must not hold up the
    /// shared connections' other calls.
    pub async fn blocking_connection(&self, response_timeout: Duration) -> Result<Connection> {
        let connect = self.timeout.max(Duration::from_secs(1));
        match &self.backend {
            Backend::Single { client, .. } => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(connect))
                    .set_response_timeout(Some(response_timeout));
                Ok(Connection(Conn::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )))
            }
            Backend::Cluster(cluster) => {
                let client = ClusterClient::builder(
                    cluster
                        .nodes
                        .iter()
                        .map(|n| n.get_connection_info().clone())
                        .collect::<Vec<_>>(),
                )
                .connection_timeout(connect)
                .response_timeout(response_timeout)
                .build()?;
                Ok(Connection(Conn::Cluster(
                    client.get_async_connection().await?,
                )))
            }
        }
    }

    /// Runs one command within the time budget.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        self.bounded(async {
            match &self.backend {
                Backend::Single { pool, shared, .. } => {
                    let (slot, mut conn) = single_conn(pool, shared, self.timeout).await?;
                    let out = cmd.query_async(&mut conn).await;
                    settle(shared, slot, out)
                }
                Backend::Cluster(cluster) => {
                    let mut conn = cluster.conn().await?;
                    let out = cmd.query_async(&mut conn).await;
                    settle(&cluster.shared, 0, out)
                }
            }
        })
        .await
    }

    /// Runs a pipeline within the time budget: one round trip on a single server; on a
    /// cluster, one round trip per slot its keys fall in, concurrently (see [`Pipeline`]).
    pub async fn pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T> {
        self.bounded(async {
            match &self.backend {
                Backend::Single { pool, shared, .. } => {
                    let (slot, mut conn) = single_conn(pool, shared, self.timeout).await?;
                    let out = pipe.inner.query_async(&mut conn).await;
                    settle(shared, slot, out)
                }
                Backend::Cluster(cluster) => {
                    let conn = cluster.conn().await?;
                    let out = pipe.query_cluster(conn).await;
                    settle(&cluster.shared, 0, out)
                }
            }
        })
        .await
    }

    async fn bounded<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        if self.breaker.is_open() {
            metrics::counter!("redis_errors_total").increment(1);
            return Err(Error::RedisUnavailable);
        }
        let out = tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or(Err(Error::RedisTimeout(self.timeout)));
        let unreachable = match &out {
            Ok(_) => false,
            Err(Error::Redis(e)) => is_connection_level(e),
            Err(_) => true,
        };
        self.breaker.record(unreachable);
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

/// A shared connection of a single server (see the module docs) and its slot.
async fn single_conn(
    pool: &Pool,
    shared: &Shared<MultiplexedConnection>,
    timeout: Duration,
) -> Result<(usize, MultiplexedConnection)> {
    let slot = shared.next.fetch_add(1, Ordering::Relaxed) % shared.slots.len();
    if let Some(conn) = shared.get(slot) {
        return Ok((slot, conn));
    }
    let pooled = pool.get().await.map_err(|e| match e {
        deadpool_redis::PoolError::Timeout(_) => Error::RedisTimeout(timeout),
        deadpool_redis::PoolError::Backend(e) => Error::Redis(e),
        other => Error::RedisPool(other.to_string()),
    })?;
    // The clone shares the pooled connection, which stays in the pool.
    let conn: MultiplexedConnection = (*pooled).clone();
    shared.set(slot, Some(conn.clone()));
    Ok((slot, conn))
}

impl Cluster {
    /// The shared cluster connection, opened on first use and again after it failed.
    async fn conn(&self) -> Result<ClusterConnection> {
        if let Some(conn) = self.shared.get(0) {
            return Ok(conn);
        }
        let conn = self.client.get_async_connection().await?;
        self.shared.set(0, Some(conn.clone()));
        Ok(conn)
    }
}

/// Drops the shared connections when one failed at the connection level (not for errors
/// Redis answered with), so the next calls open fresh ones. All of them, not just the
/// failed slot: a server that went away broke every connection to it, and a slot that
/// a quiet caller uses rarely would otherwise fail on its next use long after Redis is
/// back.
fn settle<C: Clone, T>(shared: &Shared<C>, slot: usize, out: redis::RedisResult<T>) -> Result<T> {
    if let Err(e) = &out
        && is_connection_level(e)
    {
        shared.set(slot, None);
        shared.clear();
    }
    Ok(out?)
}

/// Shared connections: one slot per configured connection, filled lazily.
struct Shared<C> {
    slots: Vec<Mutex<Option<C>>>,
    next: AtomicUsize,
}

impl<C: Clone> Shared<C> {
    fn new(slots: usize) -> Self {
        Self {
            slots: (0..slots).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    fn get(&self, slot: usize) -> Option<C> {
        self.slots[slot].lock().ok()?.clone()
    }

    fn set(&self, slot: usize, conn: Option<C>) {
        if let Ok(mut guard) = self.slots[slot].lock() {
            *guard = conn;
        }
    }

    fn clear(&self) {
        for slot in 0..self.slots.len() {
            self.set(slot, None);
        }
    }
}

/// A dedicated connection (see [`Redis::blocking_connection`]).
pub struct Connection(Conn);

enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A new, empty [`Pipeline`].
pub fn pipe() -> Pipeline {
    Pipeline::default()
}

/// A pipeline of commands, built like [`redis::Pipeline`], that [`Redis::pipe`] can also
/// run on a cluster.
///
/// A cluster refuses a pipeline whose keys fall in different slots, and `redis` exposes
/// neither a pipeline's routing nor which of its replies are ignored, so this wrapper keeps
/// both. On a cluster the pipeline runs in segments, in order: a run of single-key
/// commands (the key is the first argument; for `EVAL`/`EVALSHA` the first of its keys)
/// is split by slot and the slots' sub-pipelines run concurrently; any other command
/// (`PUBLISH`, `SCRIPT LOAD`, multi-key commands) runs alone, after everything before it
/// and before everything after it. Replies are put back in pipeline order. Like a
/// pipeline on one server, it is not atomic.
#[derive(Clone, Debug, Default)]
pub struct Pipeline {
    inner: redis::Pipeline,
    ignored: Vec<bool>,
}

impl Pipeline {
    /// Starts a new command; [`Pipeline::arg`] adds its arguments.
    pub fn cmd(&mut self, name: &str) -> &mut Self {
        self.inner.cmd(name);
        self.ignored.push(false);
        self
    }

    /// Adds an argument to the last command.
    pub fn arg<T: redis::ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.inner.arg(arg);
        self
    }

    /// Drops the last command's reply from the result.
    pub fn ignore(&mut self) -> &mut Self {
        self.inner.ignore();
        if let Some(last) = self.ignored.last_mut() {
            *last = true;
        }
        self
    }

    async fn query_cluster<T: FromRedisValue>(
        &self,
        conn: ClusterConnection,
    ) -> redis::RedisResult<T> {
        let cmds: Vec<&Cmd> = self.inner.cmd_iter().collect();
        let slots: Vec<Option<Slot>> = cmds.iter().map(|cmd| key_slot(cmd)).collect();
        let mut replies: Vec<Option<Value>> = vec![None; cmds.len()];
        let mut start = 0;
        while start < cmds.len() {
            if slots[start].is_none() {
                let mut c = conn.clone();
                replies[start] = Some(cmds[start].query_async(&mut c).await?);
                start += 1;
                continue;
            }
            let end = (start..cmds.len())
                .find(|&i| slots[i].is_none())
                .unwrap_or(cmds.len());
            let mut groups: HashMap<Slot, Vec<usize>> = HashMap::new();
            for (i, slot) in slots.iter().enumerate().take(end).skip(start) {
                if let Some(slot) = slot {
                    groups.entry(*slot).or_default().push(i);
                }
            }
            let runs = groups.into_values().map(|indices| {
                let mut c = conn.clone();
                let mut sub = redis::Pipeline::with_capacity(indices.len());
                for &i in &indices {
                    sub.add_command(cmds[i].clone());
                }
                async move {
                    let values: Vec<Value> = sub.query_async(&mut c).await?;
                    Ok::<_, redis::RedisError>(indices.into_iter().zip(values))
                }
            });
            for group in futures::future::try_join_all(runs).await? {
                for (i, value) in group {
                    replies[i] = Some(value);
                }
            }
            start = end;
        }
        let kept: Vec<Value> = replies
            .into_iter()
            .zip(&self.ignored)
            .filter(|(_, ignored)| !**ignored)
            .map(|(value, _)| value.unwrap_or(Value::Nil))
            .collect();
        // A pipeline's reply is the array of its kept replies, as `redis` builds it.
        Ok(T::from_redis_value(Value::Array(kept))?)
    }
}

/// The slot of a single-key command, or `None` for a command that must run alone.
fn key_slot(cmd: &Cmd) -> Option<Slot> {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        redis::Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next()?.to_ascii_uppercase();
    let key = match name.as_slice() {
        // Keys after the script and their count.
        b"EVAL" | b"EVALSHA" => {
            let _script = args.next()?;
            let numkeys: usize = std::str::from_utf8(args.next()?).ok()?.parse().ok()?;
            if numkeys == 0 {
                return None;
            }
            args.next()?
        }
        // No key, or several keys the cluster client splits by itself.
        b"PUBLISH" | b"SPUBLISH" | b"SCRIPT" | b"PING" | b"MGET" | b"MSET" | b"DEL" | b"UNLINK"
        | b"EXISTS" | b"TOUCH" | b"SUNION" | b"SINTER" | b"ZUNIONSTORE" | b"XREAD"
        | b"XREADGROUP" => return None,
        _ => args.next()?,
    };
    Some(Slot::for_key(key))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_breaker_opens_after_consecutive_failures_only_and_closes_again() {
        let breaker = Breaker::default();
        // Failures separated by a success never trip it.
        for _ in 0..5 {
            breaker.record(true);
            breaker.record(true);
            breaker.record(false);
        }
        assert!(!breaker.is_open());
        for _ in 0..Breaker::TRIP_AFTER {
            breaker.record(true);
        }
        assert!(breaker.is_open());
        std::thread::sleep(Breaker::OPEN_FOR + Duration::from_millis(50));
        assert!(!breaker.is_open());
    }

    #[tokio::test]
    async fn calls_to_an_unreachable_server_fail_at_once_once_the_breaker_is_open() {
        // Nothing listens on port 1: every call is refused at the connection level.
        let redis = Redis::new(&RedisConfig::for_url("redis://127.0.0.1:1/0", "t")).unwrap();
        for _ in 0..Breaker::TRIP_AFTER {
            assert!(redis.ping().await.is_err());
        }
        let started = Instant::now();
        let err = redis.ping().await.unwrap_err();
        assert!(matches!(err, Error::RedisUnavailable), "{err}");
        assert!(err.is_unavailable());
        assert!(started.elapsed() < Duration::from_millis(20));
    }
}
