//! The two-tier cache: an in-process L1 (moka) over a shared L2 (Redis), values encoded
//! as protobuf.
//!
//! - Reads go L1 → L2 → source. A miss on one key is single-flighted: under a stampede
//!   one loader runs and the other callers wait for its value.
//! - Batch reads ([`TieredCache::get_many`]) cost one L2 round trip (`MGET`) and one call
//!   to the source for all remaining keys, whatever the batch size.
//! - [`TieredCache::invalidate`] evicts L1, deletes the L2 entry and publishes the key on
//!   a Redis channel, so every other replica's [`CacheHub`] evicts its L1 copy too. A
//!   second delete follows a moment later to catch a reader that loaded the old value
//!   just before the write committed. TTLs are a safety net, not the consistency
//!   mechanism.
//! - When Redis is down or slow, L2 and broadcast are skipped (bounded by the Redis
//!   timeout) and reads fall back to the source: slower, never failing.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use prost::Message;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::redis::Redis;

/// Delay of the second L2 delete after an invalidation.
const SECOND_DELETE_AFTER: Duration = Duration::from_millis(750);
/// Invalidations a watcher may fall behind by before it is told it lagged.
const WATCH_BUFFER: usize = 64;

/// What a watcher of one cache's invalidations learns ([`CacheHub::watch`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evicted {
    /// A process invalidated this key.
    Key(Arc<str>),
    /// Invalidations may have been missed (the feed was (re)established): any key may
    /// have changed.
    All,
}

/// Something the hub can evict from when another replica invalidates a key.
trait LocalTier: Send + Sync {
    fn evict<'a>(&'a self, key: &'a str) -> futures::future::BoxFuture<'a, ()>;
    fn clear(&self);
}

/// One per process: routes invalidations between this process's caches and the other
/// replicas (one Redis pub/sub subscription per process, not one per cache).
pub struct CacheHub {
    redis: Option<Redis>,
    channel: String,
    caches: RwLock<HashMap<&'static str, Arc<dyn LocalTier>>>,
    watchers: RwLock<HashMap<&'static str, broadcast::Sender<Evicted>>>,
    subscribed: watch::Sender<bool>,
}

impl std::fmt::Debug for CacheHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheHub")
            .field("channel", &self.channel)
            .finish()
    }
}

impl CacheHub {
    /// Creates the hub. With `redis` = `None` the caches are process-local only.
    pub fn new(redis: Option<Redis>) -> Arc<Self> {
        let channel = redis
            .as_ref()
            .map(|r| r.key("cache:invalidate"))
            .unwrap_or_default();
        Arc::new(Self {
            redis,
            channel,
            caches: RwLock::new(HashMap::new()),
            watchers: RwLock::new(HashMap::new()),
            subscribed: watch::channel(false).0,
        })
    }

    /// Listens for other replicas' invalidations until `shutdown`; reconnects with
    /// backoff. After every (re)subscription all L1 tiers are cleared, since
    /// invalidations sent while we were not listening are lost.
    pub fn spawn_listener(self: &Arc<Self>, shutdown: CancellationToken) {
        let Some(redis) = self.redis.clone() else {
            return;
        };
        let hub = Arc::clone(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            while !shutdown.is_cancelled() {
                let connect = tokio::time::timeout(Duration::from_secs(2), async {
                    let mut pubsub = redis.pubsub_client().get_async_pubsub().await?;
                    pubsub.subscribe(&hub.channel).await?;
                    Ok::<_, ::redis::RedisError>(pubsub)
                });
                let mut pubsub = match connect.await {
                    Ok(Ok(p)) => p,
                    failure => {
                        let reason = match failure {
                            Ok(Err(e)) => e.to_string(),
                            _ => "timed out".to_owned(),
                        };
                        tracing::debug!(%reason, "cache invalidation feed unavailable, retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                };
                backoff = Duration::from_millis(100);
                hub.clear_all();
                hub.subscribed.send_replace(true);
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        msg = messages.next() => match msg {
                            Some(msg) => hub.dispatch(msg.get_payload_bytes()).await,
                            None => break,
                        },
                    }
                }
                hub.subscribed.send_replace(false);
                tracing::warn!("cache invalidation feed lost, reconnecting");
            }
        });
    }

    /// Resolves once the invalidation subscription is live (tests, readiness).
    pub async fn subscribed(&self) {
        let mut rx = self.subscribed.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// The invalidations of cache `name` that reach this process (every process's, this
    /// one's included, as they arrive on the shared feed), for what must do more than drop
    /// a cached copy: closing the streams of a revoked token, say. A receiver that falls
    /// behind gets `Lagged`, which means the same as [`Evicted::All`].
    pub fn watch(&self, name: &'static str) -> broadcast::Receiver<Evicted> {
        let mut watchers = self
            .watchers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        watchers
            .entry(name)
            .or_insert_with(|| broadcast::channel(WATCH_BUFFER).0)
            .subscribe()
    }

    /// Tells the watchers of `name`, if any (nothing is allocated when none listens).
    fn notify(&self, name: &str, evicted: impl FnOnce() -> Evicted) {
        let watchers = self
            .watchers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = watchers.get(name).filter(|tx| tx.receiver_count() > 0) {
            // An error only means every receiver went away meanwhile.
            let _ = tx.send(evicted());
        }
    }

    fn register(&self, name: &'static str, tier: Arc<dyn LocalTier>) {
        if let Ok(mut caches) = self.caches.write() {
            caches.insert(name, tier);
        }
    }

    async fn dispatch(&self, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        let Some((name, key)) = text.split_once('\n') else {
            return;
        };
        let tier = self.caches.read().ok().and_then(|c| c.get(name).cloned());
        if let Some(tier) = tier {
            tier.evict(key).await;
        }
        self.notify(name, || Evicted::Key(key.into()));
    }

    fn clear_all(&self) {
        if let Ok(caches) = self.caches.read() {
            for tier in caches.values() {
                tier.clear();
            }
        }
        let names: Vec<&'static str> = self
            .watchers
            .read()
            .map(|w| w.keys().copied().collect())
            .unwrap_or_default();
        for name in names {
            self.notify(name, || Evicted::All);
        }
    }

    /// Tells every replica to drop `keys` from its L1 cache `name`. For a service that owns
    /// data another process caches (e.g. tokens cached by the gateway).
    pub async fn broadcast(&self, name: &str, keys: &[String]) {
        let Some(redis) = &self.redis else { return };
        let mut pipe = crate::redis::pipe();
        for key in keys {
            pipe.cmd("PUBLISH")
                .arg(&self.channel)
                .arg(format!("{name}\n{key}"))
                .ignore();
        }
        if let Err(e) = redis.pipe::<()>(&pipe).await {
            tracing::warn!(cache = name, error = %e, "invalidation broadcast failed");
        }
    }
}

/// Sizing and lifetimes of one cache.
#[derive(Clone, Copy, Debug)]
pub struct CacheOptions {
    /// Most entries kept in process.
    pub l1_capacity: u64,
    /// Safety-net lifetime of an L1 entry.
    pub l1_ttl: Duration,
    /// Lifetime of an L2 entry; `None` keeps the cache in process only (it still obeys
    /// broadcast invalidations).
    pub l2_ttl: Option<Duration>,
}

/// Why a single-key load did not produce a cacheable value.
#[derive(Debug)]
enum Miss<V> {
    Absent,
    /// Loaded, but an invalidation raced the load: hand it out, do not cache it.
    Raced(V),
    /// The source failed (the error travels beside the flight, see `get`).
    Failed,
}

/// A named two-tier cache of protobuf values keyed by strings.
pub struct TieredCache<V: Message + Default + Clone + Send + Sync + 'static> {
    name: &'static str,
    inner: Arc<Inner<V>>,
    hub: Arc<CacheHub>,
    l2_ttl: Option<Duration>,
}

struct Inner<V: Clone + Send + Sync + 'static> {
    l1: moka::future::Cache<String, V>,
    /// Bumped by every invalidation; a load that sees it move does not cache its value.
    epoch: AtomicU64,
}

impl<V: Clone + Send + Sync + 'static> LocalTier for Inner<V> {
    fn evict<'a>(&'a self, key: &'a str) -> futures::future::BoxFuture<'a, ()> {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        Box::pin(self.l1.invalidate(key))
    }
    fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.l1.invalidate_all();
    }
}

impl<V: Message + Default + Clone + Send + Sync + 'static> TieredCache<V> {
    /// Creates the cache `name` and registers it with `hub` for invalidations.
    pub fn new(hub: &Arc<CacheHub>, name: &'static str, options: CacheOptions) -> Self {
        let inner = Arc::new(Inner {
            l1: moka::future::Cache::builder()
                .max_capacity(options.l1_capacity)
                .time_to_live(options.l1_ttl)
                .build(),
            epoch: AtomicU64::new(0),
        });
        hub.register(name, inner.clone());
        Self {
            name,
            inner,
            hub: Arc::clone(hub),
            l2_ttl: options.l2_ttl.filter(|_| hub.redis.is_some()),
        }
    }

    /// Redis and the entry lifetime, when this cache has an L2 tier.
    fn l2(&self) -> Option<(&Redis, Duration)> {
        Some((self.hub.redis.as_ref()?, self.l2_ttl?))
    }

    fn l2_key(&self, redis: &Redis, key: &str) -> String {
        redis.key(&format!("c:{}:{key}", self.name))
    }

    fn count(&self, tier: &'static str, hit: bool) {
        self.count_n(tier, hit, 1);
    }

    /// Counts `n` lookups at once (a batch costs one registry lookup, not one per key).
    fn count_n(&self, tier: &'static str, hit: bool, n: u64) {
        if n == 0 {
            return;
        }
        let result = if hit { "hit" } else { "miss" };
        metrics::counter!("cache_requests_total", "cache" => self.name, "tier" => tier, "result" => result)
            .increment(n);
    }

    /// Reads `key`, loading it with `load` on a miss (single-flighted per key).
    /// `Ok(None)` when the source has no such value (absence is not cached).
    pub async fn get<E, F, Fut>(&self, key: &str, load: F) -> Result<Option<V>, E>
    where
        E: From<crate::Error> + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        if let Some(v) = self.inner.l1.get(key).await {
            self.count("l1", true);
            return Ok(Some(v));
        }
        self.count("l1", false);
        // The source error of a load this caller ran itself. moka shares a failed
        // flight's outcome among its waiters (and keeps a reference), so the error cannot
        // travel through it by value.
        let own_error: std::sync::Mutex<Option<E>> = std::sync::Mutex::new(None);
        let loaded = self
            .inner
            .l1
            .try_get_with(key.to_owned(), async {
                // Any invalidation from here on means what we read may be stale.
                let epoch = self.inner.epoch.load(Ordering::SeqCst);
                let unchanged = || self.inner.epoch.load(Ordering::SeqCst) == epoch;
                if let Some(v) = self.l2_get_one(key).await {
                    return if unchanged() {
                        Ok(v)
                    } else {
                        Err(Miss::Raced(v))
                    };
                }
                match load().await {
                    Ok(Some(v)) if unchanged() => {
                        self.l2_put(&[(key.to_owned(), v.clone())]).await;
                        Ok(v)
                    }
                    Ok(Some(v)) => Err(Miss::Raced(v)),
                    Ok(None) => Err(Miss::Absent),
                    Err(e) => {
                        if let Ok(mut slot) = own_error.lock() {
                            *slot = Some(e);
                        }
                        Err(Miss::Failed)
                    }
                }
            })
            .await;
        match loaded {
            Ok(v) => Ok(Some(v)),
            Err(miss) => match &*miss {
                Miss::Raced(v) => Ok(Some(v.clone())),
                Miss::Absent => Ok(None),
                Miss::Failed => {
                    let own = own_error.lock().ok().and_then(|mut slot| slot.take());
                    // Waiters of someone else's failed flight get a plain "unavailable".
                    Err(own.unwrap_or_else(|| E::from(crate::Error::LoadFailed(self.name))))
                }
            },
        }
    }

    /// Reads many keys with one L2 round trip and at most one call to `load`, which
    /// receives the keys found in neither tier and returns the values it found.
    pub async fn get_many<E, F, Fut>(
        &self,
        keys: &[String],
        load: F,
    ) -> Result<HashMap<String, V>, E>
    where
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Result<Vec<(String, V)>, E>>,
    {
        let mut found = HashMap::with_capacity(keys.len());
        let mut missing = Vec::new();
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        // Any invalidation from here on means what we read may be stale: hand it out,
        // but do not keep it.
        let epoch = self.inner.epoch.load(Ordering::SeqCst);
        for key in keys {
            if !seen.insert(key.as_str()) {
                continue;
            }
            match self.inner.l1.get(key).await {
                Some(v) => {
                    found.insert(key.clone(), v);
                }
                None => missing.push(key.clone()),
            }
        }
        self.count_n("l1", true, found.len() as u64);
        self.count_n("l1", false, missing.len() as u64);
        if missing.is_empty() {
            return Ok(found);
        }
        let from_l2 = self.l2_get(&missing).await;
        let l2_fresh = self.inner.epoch.load(Ordering::SeqCst) == epoch;
        let mut still_missing = Vec::new();
        for (key, value) in missing.into_iter().zip(from_l2) {
            match value {
                Some(v) => {
                    if l2_fresh {
                        self.inner.l1.insert(key.clone(), v.clone()).await;
                    }
                    found.insert(key, v);
                }
                None => still_missing.push(key),
            }
        }
        if still_missing.is_empty() {
            return Ok(found);
        }
        let loaded = load(still_missing).await?;
        if self.inner.epoch.load(Ordering::SeqCst) == epoch {
            for (key, v) in &loaded {
                self.inner.l1.insert(key.clone(), v.clone()).await;
            }
            self.l2_put(&loaded).await;
        }
        found.extend(loaded);
        Ok(found)
    }

    /// Drops `keys` everywhere: this process's L1, L2, and every other replica's L1.
    pub async fn invalidate(&self, keys: &[String]) {
        for key in keys {
            LocalTier::evict(&*self.inner, key).await;
        }
        self.l2_delete(keys).await;
        self.hub.broadcast(self.name, keys).await;
        // A reader that loaded the old row before our write committed may put it back
        // into L2 after the delete above: delete once more a little later.
        if self.l2_ttl.is_some() {
            let this = Self {
                name: self.name,
                inner: Arc::clone(&self.inner),
                hub: Arc::clone(&self.hub),
                l2_ttl: self.l2_ttl,
            };
            let keys = keys.to_vec();
            tokio::spawn(async move {
                tokio::time::sleep(SECOND_DELETE_AFTER).await;
                this.l2_delete(&keys).await;
                this.hub.broadcast(this.name, &keys).await;
            });
        }
    }

    /// Drops `key` from this process's L1 only (e.g. the local copy of data another
    /// service owns, after this process changed it).
    pub async fn evict_local(&self, key: &str) {
        LocalTier::evict(&*self.inner, key).await;
    }

    async fn l2_get_one(&self, key: &str) -> Option<V> {
        self.l2_get(std::slice::from_ref(&key.to_owned()))
            .await
            .into_iter()
            .next()
            .flatten()
    }

    async fn l2_get(&self, keys: &[String]) -> Vec<Option<V>> {
        let none = || keys.iter().map(|_| None).collect();
        let Some((redis, _)) = self.l2() else {
            return none();
        };
        let l2_keys: Vec<String> = keys.iter().map(|k| self.l2_key(redis, k)).collect();
        let mut cmd = ::redis::cmd("MGET");
        cmd.arg(&l2_keys);
        match redis.query::<Vec<Option<Vec<u8>>>>(&cmd).await {
            Ok(values) => {
                let decoded: Vec<Option<V>> = values
                    .into_iter()
                    .map(|raw| raw.and_then(|b| V::decode(b.as_slice()).ok()))
                    .collect();
                let hits = decoded.iter().filter(|v| v.is_some()).count() as u64;
                self.count_n("l2", true, hits);
                self.count_n("l2", false, decoded.len() as u64 - hits);
                decoded
            }
            Err(e) => {
                tracing::debug!(cache = self.name, error = %e, "l2 read skipped");
                none()
            }
        }
    }

    async fn l2_put(&self, entries: &[(String, V)]) {
        let Some((redis, ttl)) = self.l2().filter(|_| !entries.is_empty()) else {
            return;
        };
        let mut pipe = crate::redis::pipe();
        for (key, v) in entries {
            pipe.cmd("SET")
                .arg(self.l2_key(redis, key))
                .arg(v.encode_to_vec())
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .ignore();
        }
        if let Err(e) = redis.pipe::<()>(&pipe).await {
            tracing::debug!(cache = self.name, error = %e, "l2 write skipped");
        }
    }

    async fn l2_delete(&self, keys: &[String]) {
        let Some((redis, _)) = self.l2().filter(|_| !keys.is_empty()) else {
            return;
        };
        let mut cmd = ::redis::cmd("DEL");
        for key in keys {
            cmd.arg(self.l2_key(redis, key));
        }
        if let Err(e) = redis.query::<()>(&cmd).await {
            tracing::warn!(cache = self.name, error = %e, "l2 delete failed");
        }
    }
}

/// Names of caches shared across processes: the owner of the data invalidates under the
/// same name its consumers cache it, so one broadcast reaches every copy.
pub mod names {
    /// Account objects by id (owned by users; cached by users and the gateway).
    pub const ACCOUNTS: &str = "accounts";
    /// Bearer token resolutions by token key (owned by users; cached by the gateway).
    pub const TOKENS: &str = "tokens";
    /// Media attachments by id (owned by media; cached by media and the gateway).
    pub const MEDIA: &str = "media";
}
