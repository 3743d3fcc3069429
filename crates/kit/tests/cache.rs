//! Integration tests of the two-tier cache (`TieredCache` + `CacheHub`) against a real Redis.
//!
//! Every test uses its own Redis key prefix, so tests run in parallel without seeing each
//! other. "Replicas" are modelled as several hubs sharing one prefix.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use rookery_kit::{
    Error,
    cache::{CacheHub, CacheOptions, Evicted, TieredCache},
    config::RedisConfig,
    redis::Redis,
    testing,
};
use rookery_proto::users::v1::Account;
use tokio_util::sync::CancellationToken;

/// The cache every test uses (a name shared by the hubs of one test, like a real cache
/// name shared by replicas).
const NAME: &str = "accounts";

/// Long lifetimes: nothing in these tests may be explained by an entry expiring.
fn options() -> CacheOptions {
    CacheOptions {
        l1_capacity: 10_000,
        l1_ttl: Duration::from_secs(300),
        l2_ttl: Some(Duration::from_secs(300)),
    }
}

/// The real Redis under `prefix`. The time budget is generous so that a loaded machine
/// (parallel builds) does not turn a slow L2 call into a skipped one and a flaky test.
fn real_redis(prefix: &str) -> Redis {
    let mut config = RedisConfig::for_url(testing::redis_url(), prefix);
    config.timeout = Duration::from_secs(2);
    Redis::new(&config).unwrap()
}

/// A URL on which nothing listens: bind an ephemeral port, then free it.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("redis://127.0.0.1:{port}/0")
}

fn account(id: i64, display_name: &str) -> Account {
    Account {
        id,
        username: format!("user{id}"),
        display_name: display_name.to_owned(),
        followers_count: id * 10,
        ..Default::default()
    }
}

/// A loader that counts its calls and returns `value`.
async fn load(calls: &AtomicUsize, value: Option<Account>) -> Result<Option<Account>, Error> {
    calls.fetch_add(1, Ordering::SeqCst);
    Ok(value)
}

/// Starts `hub`'s invalidation listener and waits until it is subscribed.
async fn listen(hub: &Arc<CacheHub>, shutdown: &CancellationToken) {
    hub.spawn_listener(shutdown.clone());
    tokio::time::timeout(Duration::from_secs(5), hub.subscribed())
        .await
        .expect("invalidation listener did not subscribe within 5 s");
}

#[tokio::test]
async fn read_through_loads_once_and_does_not_cache_absence() {
    let hub = CacheHub::new(Some(real_redis(&testing::redis_prefix())));
    let cache = TieredCache::<Account>::new(&hub, NAME, options());
    let value = account(1, "Alice");

    let calls = AtomicUsize::new(0);
    let first = cache
        .get("1", || load(&calls, Some(value.clone())))
        .await
        .unwrap();
    assert_eq!(first, Some(value.clone()));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a cold read calls the loader"
    );

    let second = cache
        .get("1", || load(&calls, Some(account(1, "WRONG"))))
        .await
        .unwrap();
    assert_eq!(second, Some(value), "a warm read returns the cached value");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a warm read does not call the loader"
    );

    let absent_calls = AtomicUsize::new(0);
    let missing = cache
        .get("404", || load(&absent_calls, None))
        .await
        .unwrap();
    assert_eq!(missing, None);
    let missing = cache
        .get("404", || load(&absent_calls, None))
        .await
        .unwrap();
    assert_eq!(missing, None);
    assert_eq!(
        absent_calls.load(Ordering::SeqCst),
        2,
        "absence is not cached: every read of a missing key asks the source"
    );

    // Once the source has the value it is served (and then cached) like any other.
    let appeared = cache
        .get("404", || load(&absent_calls, Some(account(404, "Late"))))
        .await
        .unwrap();
    assert_eq!(appeared, Some(account(404, "Late")));
    assert_eq!(absent_calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn loader_errors_are_not_cached() {
    let hub = CacheHub::new(Some(real_redis(&testing::redis_prefix())));
    let cache = TieredCache::<Account>::new(&hub, NAME, options());

    let failed: Result<Option<Account>, Error> = cache
        .get("1", || async { Err(Error::Config("source down".into())) })
        .await;
    assert!(failed.is_err(), "a failed load is an error, got {failed:?}");

    let calls = AtomicUsize::new(0);
    let value = cache
        .get("1", || load(&calls, Some(account(1, "Back"))))
        .await
        .unwrap();
    assert_eq!(value, Some(account(1, "Back")));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a failure is not cached");
}

/// `TieredCache::get` documents that a caller whose own loader failed gets the loader's
/// error back (only callers that merely joined that flight get `Error::LoadFailed`).
#[tokio::test]
async fn loader_error_reaches_the_single_caller() {
    let hub = CacheHub::new(Some(real_redis(&testing::redis_prefix())));
    let cache = TieredCache::<Account>::new(&hub, NAME, options());
    let failed: Result<Option<Account>, Error> = cache
        .get("1", || async { Err(Error::Config("source down".into())) })
        .await;
    assert!(
        matches!(&failed, Err(Error::Config(m)) if m == "source down"),
        "the loader's own error must reach its only caller, got {failed:?}"
    );
}

#[tokio::test]
async fn l2_is_shared_between_replicas() {
    let prefix = testing::redis_prefix();
    let hub_a = CacheHub::new(Some(real_redis(&prefix)));
    let hub_b = CacheHub::new(Some(real_redis(&prefix)));
    let cache_a = TieredCache::<Account>::new(&hub_a, NAME, options());
    let cache_b = TieredCache::<Account>::new(&hub_b, NAME, options());
    let value = account(42, "Shared");

    let calls_a = AtomicUsize::new(0);
    let got_a = cache_a
        .get("42", || load(&calls_a, Some(value.clone())))
        .await
        .unwrap();
    assert_eq!(got_a, Some(value.clone()));
    assert_eq!(calls_a.load(Ordering::SeqCst), 1);

    let calls_b = AtomicUsize::new(0);
    let got_b = cache_b
        .get("42", || load(&calls_b, Some(account(42, "WRONG"))))
        .await
        .unwrap();
    assert_eq!(got_b, Some(value), "replica B is served A's value from L2");
    assert_eq!(
        calls_b.load(Ordering::SeqCst),
        0,
        "B's loader must not run on an L2 hit"
    );

    // A hub under another prefix (another deployment) does not see it.
    let hub_c = CacheHub::new(Some(real_redis(&testing::redis_prefix())));
    let cache_c = TieredCache::<Account>::new(&hub_c, NAME, options());
    let calls_c = AtomicUsize::new(0);
    let got_c = cache_c
        .get("42", || load(&calls_c, Some(account(42, "Other"))))
        .await
        .unwrap();
    assert_eq!(got_c, Some(account(42, "Other")));
    assert_eq!(
        calls_c.load(Ordering::SeqCst),
        1,
        "prefixes isolate deployments"
    );
}

#[tokio::test]
async fn invalidation_reaches_other_replicas() {
    let prefix = testing::redis_prefix();
    let shutdown = CancellationToken::new();
    let hub_a = CacheHub::new(Some(real_redis(&prefix)));
    let hub_b = CacheHub::new(Some(real_redis(&prefix)));
    let cache_a = TieredCache::<Account>::new(&hub_a, NAME, options());
    let cache_b = TieredCache::<Account>::new(&hub_b, NAME, options());
    listen(&hub_a, &shutdown).await;
    listen(&hub_b, &shutdown).await;

    let old = account(7, "Old");
    let new = account(7, "New");
    let key = "7".to_owned();

    // Both replicas hold the old value in L1.
    let calls_a = AtomicUsize::new(0);
    let calls_b = AtomicUsize::new(0);
    assert_eq!(
        cache_a
            .get(&key, || load(&calls_a, Some(old.clone())))
            .await
            .unwrap(),
        Some(old.clone())
    );
    assert_eq!(
        cache_b
            .get(&key, || load(&calls_b, Some(old.clone())))
            .await
            .unwrap(),
        Some(old.clone())
    );
    assert_eq!(
        cache_b
            .get(&key, || load(&calls_b, Some(old.clone())))
            .await
            .unwrap(),
        Some(old.clone())
    );
    assert_eq!(calls_a.load(Ordering::SeqCst), 1);
    assert_eq!(
        calls_b.load(Ordering::SeqCst),
        0,
        "B got the value from L2, then L1"
    );

    // The owner writes the source, then invalidates through replica A.
    cache_a.invalidate(std::slice::from_ref(&key)).await;

    let started = Instant::now();
    let deadline = started + Duration::from_secs(2);
    loop {
        let got = cache_b
            .get(&key, || load(&calls_b, Some(new.clone())))
            .await
            .unwrap();
        if calls_b.load(Ordering::SeqCst) > 0 {
            assert_eq!(
                got,
                Some(new.clone()),
                "after the invalidation B serves the new value"
            );
            break;
        }
        assert_eq!(
            got,
            Some(old.clone()),
            "until the invalidation lands B serves its L1 copy"
        );
        assert!(
            Instant::now() < deadline,
            "B still served its stale L1 copy 2 s after A invalidated the key"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(calls_b.load(Ordering::SeqCst), 1);

    // A dropped its own copy too: it now serves the new value (from the source or from
    // the L2 entry B just wrote), never the old one.
    let got_a = cache_a
        .get(&key, || load(&calls_a, Some(new.clone())))
        .await
        .unwrap();
    assert_eq!(got_a, Some(new));
    shutdown.cancel();
}

#[tokio::test]
async fn broadcast_evicts_l1_of_listening_hubs() {
    // `CacheHub::broadcast` is how a service that owns data drops copies cached by another
    // process (e.g. users → gateway tokens), without owning a `TieredCache` of that name.
    let prefix = testing::redis_prefix();
    let shutdown = CancellationToken::new();
    let owner = CacheHub::new(Some(real_redis(&prefix)));
    let hub = CacheHub::new(Some(real_redis(&prefix)));
    let local_only = CacheOptions {
        l2_ttl: None,
        ..options()
    };
    let cache = TieredCache::<Account>::new(&hub, "tokens", local_only);
    listen(&hub, &shutdown).await;

    let calls = AtomicUsize::new(0);
    cache
        .get("t1", || load(&calls, Some(account(1, "v1"))))
        .await
        .unwrap();
    cache
        .get("t2", || load(&calls, Some(account(2, "v1"))))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    owner.broadcast("tokens", &["t1".to_owned()]).await;

    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let got = cache
            .get("t1", || load(&calls, Some(account(1, "v2"))))
            .await
            .unwrap();
        if calls.load(Ordering::SeqCst) == 3 {
            assert_eq!(got, Some(account(1, "v2")));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broadcast did not evict t1 within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Only the named key was evicted.
    let t2 = cache
        .get("t2", || load(&calls, Some(account(2, "v2"))))
        .await
        .unwrap();
    assert_eq!(t2, Some(account(2, "v1")));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    shutdown.cancel();
}

/// The next thing `rx` hears, within 2 s.
async fn heard(rx: &mut tokio::sync::broadcast::Receiver<Evicted>) -> Evicted {
    tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .expect("nothing heard within 2 s")
        .unwrap()
}

#[tokio::test]
async fn watchers_hear_the_invalidations_of_their_cache_only() {
    // What closes a revoked token's streams: the gateway watches "tokens".
    let prefix = testing::redis_prefix();
    let shutdown = CancellationToken::new();
    let owner = CacheHub::new(Some(real_redis(&prefix)));
    let hub = CacheHub::new(Some(real_redis(&prefix)));
    let mut tokens = hub.watch("tokens");
    let mut accounts = hub.watch("accounts");
    listen(&hub, &shutdown).await;

    // A subscription may follow a gap in which invalidations were lost: watchers hear so.
    assert_eq!(heard(&mut tokens).await, Evicted::All);
    assert_eq!(heard(&mut accounts).await, Evicted::All);

    owner
        .broadcast("tokens", &["t1".to_owned(), "t2".to_owned()])
        .await;
    owner.broadcast("accounts", &["a1".to_owned()]).await;
    assert_eq!(heard(&mut tokens).await, Evicted::Key("t1".into()));
    assert_eq!(heard(&mut tokens).await, Evicted::Key("t2".into()));
    assert_eq!(heard(&mut accounts).await, Evicted::Key("a1".into()));
    // Each heard only its own cache's keys.
    assert!(tokens.try_recv().is_err());
    assert!(accounts.try_recv().is_err());
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_of_one_key_run_one_loader() {
    let hub = CacheHub::new(Some(real_redis(&testing::redis_prefix())));
    let cache = Arc::new(TieredCache::<Account>::new(&hub, NAME, options()));
    let calls = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(tokio::sync::Barrier::new(50));
    let value = account(5, "Stampede");

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (cache, calls, start, value) =
                (cache.clone(), calls.clone(), start.clone(), value.clone());
            tokio::spawn(async move {
                start.wait().await;
                cache
                    .get("5", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<_, Error>(Some(value))
                    })
                    .await
            })
        })
        .collect();
    for task in futures::future::join_all(tasks).await {
        assert_eq!(task.unwrap().unwrap(), Some(value.clone()));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one loader for 50 concurrent misses"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_of_an_absent_key_all_get_none() {
    let hub = CacheHub::new(Some(real_redis(&testing::redis_prefix())));
    let cache = Arc::new(TieredCache::<Account>::new(&hub, NAME, options()));
    let calls = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(tokio::sync::Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (cache, calls, start) = (cache.clone(), calls.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                cache
                    .get("gone", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<Option<Account>, Error>(None)
                    })
                    .await
            })
        })
        .collect();
    for task in futures::future::join_all(tasks).await {
        assert_eq!(task.unwrap().unwrap(), None);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "absent keys are single-flighted too"
    );
}

#[tokio::test]
async fn get_many_loads_only_keys_missing_from_both_tiers() {
    let prefix = testing::redis_prefix();
    let redis = real_redis(&prefix);
    let hub_a = CacheHub::new(Some(redis.clone()));
    let hub_b = CacheHub::new(Some(real_redis(&prefix)));
    let cache_a = TieredCache::<Account>::new(&hub_a, NAME, options());
    let cache_b = TieredCache::<Account>::new(&hub_b, NAME, options());
    let keys: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let value_of = |key: &str| account(key.parse().unwrap(), &format!("Account {key}"));

    // Keys 0..3 in A's L1 only: load them through A, then empty L2 (the only keys under
    // this fresh prefix are those three entries).
    let calls = AtomicUsize::new(0);
    for key in &keys[0..3] {
        cache_a
            .get(key, || load(&calls, Some(value_of(key))))
            .await
            .unwrap();
    }
    let mut scan = ::redis::cmd("KEYS");
    scan.arg(format!("{prefix}:*"));
    let l2_keys: Vec<String> = redis.query(&scan).await.unwrap();
    assert_eq!(l2_keys.len(), 3, "loads are written to L2: {l2_keys:?}");
    let mut del = ::redis::cmd("DEL");
    del.arg(&l2_keys);
    redis.query::<()>(&del).await.unwrap();

    // Keys 3..6 in L2 only: loaded through replica B.
    for key in &keys[3..6] {
        cache_b
            .get(key, || load(&calls, Some(value_of(key))))
            .await
            .unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 6);

    let batches = Mutex::new(Vec::<Vec<String>>::new());
    let found = cache_a
        .get_many(&keys, |missing| {
            batches.lock().unwrap().push(missing.clone());
            let values: Vec<(String, Account)> =
                missing.iter().map(|k| (k.clone(), value_of(k))).collect();
            async move { Ok::<_, Error>(values) }
        })
        .await
        .unwrap();

    let batches = batches.into_inner().unwrap();
    assert_eq!(
        batches.len(),
        1,
        "one call to the source per batch: {batches:?}"
    );
    let asked: BTreeSet<&str> = batches[0].iter().map(String::as_str).collect();
    assert_eq!(
        asked,
        BTreeSet::from(["6", "7", "8", "9"]),
        "only keys in neither tier are loaded"
    );
    assert_eq!(batches[0].len(), 4, "no key is asked twice");
    let expected: HashMap<String, Account> =
        keys.iter().map(|k| (k.clone(), value_of(k))).collect();
    assert_eq!(found, expected);

    // Everything is now in A's L1: a second batch (with a duplicate key) needs no source.
    let mut again = keys.clone();
    again.push("0".to_owned());
    let asked = Mutex::new(Vec::new());
    let found = cache_a
        .get_many(&again, |missing| {
            asked.lock().unwrap().extend(missing);
            async { Ok::<_, Error>(Vec::new()) }
        })
        .await
        .unwrap();
    assert_eq!(found, expected);
    assert!(
        asked.into_inner().unwrap().is_empty(),
        "every key was cached: no source call"
    );
}

#[tokio::test]
async fn get_many_keeps_only_what_the_source_returned() {
    let hub = CacheHub::new(Some(real_redis(&testing::redis_prefix())));
    let cache = TieredCache::<Account>::new(&hub, NAME, options());
    let keys: Vec<String> = ["1", "2", "3"].map(String::from).to_vec();

    let found = cache
        .get_many(&keys, |missing| async move {
            assert_eq!(missing.len(), 3);
            Ok::<_, Error>(vec![("2".to_owned(), account(2, "Two"))])
        })
        .await
        .unwrap();
    assert_eq!(found, HashMap::from([("2".to_owned(), account(2, "Two"))]));

    // The absent keys are asked again (absence is not cached), the found one is not.
    let asked = Mutex::new(Vec::new());
    cache
        .get_many(&keys, |missing| {
            asked.lock().unwrap().extend(missing);
            async { Ok::<_, Error>(Vec::new()) }
        })
        .await
        .unwrap();
    let mut asked = asked.into_inner().unwrap();
    asked.sort();
    assert_eq!(asked, ["1", "3"]);
}

#[tokio::test]
async fn redis_down_falls_back_to_the_source_quickly() {
    let mut config = RedisConfig::for_url(closed_port_url(), testing::redis_prefix());
    config.timeout = Duration::from_millis(100);
    let hub = CacheHub::new(Some(Redis::new(&config).unwrap()));
    let shutdown = CancellationToken::new();
    hub.spawn_listener(shutdown.clone());
    let cache = TieredCache::<Account>::new(&hub, NAME, options());
    let calls = AtomicUsize::new(0);
    let value = account(3, "Offline");

    let started = Instant::now();
    let got = cache
        .get("3", || load(&calls, Some(value.clone())))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(got, Some(value.clone()));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(
        elapsed < Duration::from_secs(1),
        "get took {elapsed:?} with Redis down"
    );

    // L1 still works without Redis.
    let got = cache
        .get("3", || load(&calls, Some(account(3, "WRONG"))))
        .await
        .unwrap();
    assert_eq!(got, Some(value));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let started = Instant::now();
    let found = cache
        .get_many(&["3".to_owned(), "4".to_owned()], |missing| async move {
            Ok::<_, Error>(
                missing
                    .into_iter()
                    .map(|k| (k, account(4, "Four")))
                    .collect(),
            )
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "get_many took {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(1), cache.invalidate(&["3".to_owned()]))
        .await
        .expect("invalidate hung with Redis down");
    assert!(started.elapsed() < Duration::from_secs(1));

    // The invalidation still evicted this process's copy.
    let got = cache
        .get("3", || load(&calls, Some(account(3, "Fresh"))))
        .await
        .unwrap();
    assert_eq!(got, Some(account(3, "Fresh")));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    shutdown.cancel();
}

#[tokio::test]
async fn unresponsive_redis_is_bounded_by_the_timeout() {
    // Accepts TCP connections (kernel backlog) but never answers: a hung Redis.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/0", blackhole.local_addr().unwrap());
    let mut config = RedisConfig::for_url(url, testing::redis_prefix());
    config.timeout = Duration::from_millis(100);
    let hub = CacheHub::new(Some(Redis::new(&config).unwrap()));
    let cache = TieredCache::<Account>::new(&hub, NAME, options());
    let calls = AtomicUsize::new(0);

    let started = Instant::now();
    let got = cache
        .get("9", || load(&calls, Some(account(9, "Slow"))))
        .await
        .unwrap();
    assert_eq!(got, Some(account(9, "Slow")));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "get took {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(1), cache.invalidate(&["9".to_owned()]))
        .await
        .expect("invalidate hung on an unresponsive Redis");
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(blackhole);
}

/// A fake Redis that completes the connection handshake (and answers `PING`), then never
/// answers a data command: a Redis that is up but stuck.
async fn stalling_redis() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/0", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve_until_data_command(socket));
        }
    });
    url
}

async fn serve_until_data_command(mut socket: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some((args, used)) = parse_command(&buf) {
            buf.drain(..used);
            let name = args
                .first()
                .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
                .unwrap_or_default();
            let reply = match (name.as_str(), args.get(1)) {
                ("CLIENT" | "SELECT" | "AUTH", _) => b"+OK\r\n".to_vec(),
                ("PING", None) => b"+PONG\r\n".to_vec(),
                ("PING", Some(arg)) => {
                    let mut r = format!("${}\r\n", arg.len()).into_bytes();
                    r.extend_from_slice(arg);
                    r.extend_from_slice(b"\r\n");
                    r
                }
                // Keep the connection open and never answer.
                _ => return std::future::pending::<()>().await,
            };
            if socket.write_all(&reply).await.is_err() {
                return;
            }
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One complete RESP command (an array of bulk strings) at the start of `buf`, and its length.
fn parse_command(buf: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    let (count, mut pos) = parse_header(buf, 0, b'*')?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, start) = parse_header(buf, pos, b'$')?;
        let end = start + len;
        if buf.len() < end + 2 {
            return None;
        }
        args.push(buf[start..end].to_vec());
        pos = end + 2;
    }
    Some((args, pos))
}

fn parse_header(buf: &[u8], pos: usize, kind: u8) -> Option<(usize, usize)> {
    if *buf.get(pos)? != kind {
        return None;
    }
    let rest = &buf[pos + 1..];
    let line = rest.windows(2).position(|w| w == b"\r\n")?;
    let n = std::str::from_utf8(&rest[..line]).ok()?.parse().ok()?;
    Some((n, pos + 1 + line + 2))
}

#[tokio::test]
async fn stalled_redis_commands_are_bounded_by_the_timeout() {
    let mut config = RedisConfig::for_url(stalling_redis().await, testing::redis_prefix());
    config.timeout = Duration::from_millis(100);
    let redis = Redis::new(&config).unwrap();
    // The connection itself works: only data commands hang.
    redis.ping().await.unwrap();

    let started = Instant::now();
    let mut mget = ::redis::cmd("MGET");
    mget.arg("k");
    let stalled = redis.query::<Vec<Option<Vec<u8>>>>(&mget).await;
    assert!(
        matches!(stalled, Err(Error::RedisTimeout(_))),
        "a stalled command times out, got {stalled:?}"
    );
    assert!(stalled.unwrap_err().is_unavailable());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );

    let hub = CacheHub::new(Some(redis));
    let cache = TieredCache::<Account>::new(&hub, NAME, options());
    let calls = AtomicUsize::new(0);
    let started = Instant::now();
    let got = cache
        .get("9", || load(&calls, Some(account(9, "Stuck"))))
        .await
        .unwrap();
    assert_eq!(got, Some(account(9, "Stuck")));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "get took {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(1), cache.invalidate(&["9".to_owned()]))
        .await
        .expect("invalidate hung on a stalled Redis");
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// A TCP proxy to `upstream` that holds back, by `delay`, every reply on connections that
/// have sent an `MGET` (L2 reads), and signals `replied` when such a reply arrives from
/// Redis. Pub/sub and other connections pass through undelayed.
async fn delaying_proxy(
    upstream: std::net::SocketAddr,
    delay: Duration,
    replied: Arc<tokio::sync::Notify>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/0", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                return;
            };
            let replied = replied.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let (mut client_rx, mut client_tx) = client.into_split();
                let (mut server_rx, mut server_tx) = server.into_split();
                let reads_l2 = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let marks = reads_l2.clone();
                tokio::spawn(async move {
                    let mut chunk = [0u8; 8192];
                    while let Ok(n @ 1..) = client_rx.read(&mut chunk).await {
                        if chunk[..n].windows(4).any(|w| w == b"MGET") {
                            marks.store(true, Ordering::SeqCst);
                        }
                        if server_tx.write_all(&chunk[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                let mut chunk = [0u8; 8192];
                while let Ok(n @ 1..) = server_rx.read(&mut chunk).await {
                    if reads_l2.load(Ordering::SeqCst) {
                        replied.notify_one();
                        tokio::time::sleep(delay).await;
                    }
                    if client_tx.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// An L2 read that was answered before an invalidation but lands after it must not put
/// the old value into L1 (the load path guards against this with the cache's epoch; the
/// L2-hit path does not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l2_read_racing_an_invalidation_is_not_cached() {
    let prefix = testing::redis_prefix();
    let shutdown = CancellationToken::new();
    let upstream: url::Url = testing::redis_url().parse().unwrap();
    let upstream = upstream.socket_addrs(|| Some(6379)).unwrap()[0];
    let replied = Arc::new(tokio::sync::Notify::new());
    let slow_url = delaying_proxy(upstream, Duration::from_millis(400), replied.clone()).await;
    let mut slow = RedisConfig::for_url(slow_url, prefix.clone());
    slow.timeout = Duration::from_secs(2);

    let hub_a = CacheHub::new(Some(real_redis(&prefix)));
    let hub_b = CacheHub::new(Some(Redis::new(&slow).unwrap()));
    let cache_a = TieredCache::<Account>::new(&hub_a, NAME, options());
    let cache_b = Arc::new(TieredCache::<Account>::new(&hub_b, NAME, options()));
    listen(&hub_a, &shutdown).await;
    listen(&hub_b, &shutdown).await;

    let (old, new) = (account(8, "Old"), account(8, "New"));
    let calls = Arc::new(AtomicUsize::new(0));
    cache_a
        .get("8", || load(&calls, Some(old.clone())))
        .await
        .unwrap();

    // B reads L2 (the old value); Redis has answered, the answer is still on its way.
    let in_flight = {
        let (cache_b, calls, new) = (cache_b.clone(), calls.clone(), new.clone());
        tokio::spawn(async move { cache_b.get("8", || load(&calls, Some(new))).await })
    };
    tokio::time::timeout(Duration::from_secs(2), replied.notified())
        .await
        .expect("B's L2 read never reached Redis");
    // Meanwhile the owner changes the value and invalidates; B hears it at once.
    cache_a.invalidate(&["8".to_owned()]).await;
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        Some(old),
        "a read begun before the write may see the old value"
    );

    // A read begun after the invalidation reached B must not.
    let got = cache_b
        .get("8", || load(&calls, Some(new.clone())))
        .await
        .unwrap();
    assert_eq!(
        got,
        Some(new),
        "B cached a value its invalidation had already superseded"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn hub_without_redis_is_process_local() {
    let hub = CacheHub::new(None);
    let shutdown = CancellationToken::new();
    hub.spawn_listener(shutdown.clone()); // a no-op without Redis
    let cache = TieredCache::<Account>::new(&hub, NAME, options());
    let calls = AtomicUsize::new(0);
    assert_eq!(
        cache
            .get("1", || load(&calls, Some(account(1, "Local"))))
            .await
            .unwrap(),
        Some(account(1, "Local"))
    );
    assert_eq!(
        cache
            .get("1", || load(&calls, Some(account(1, "WRONG"))))
            .await
            .unwrap(),
        Some(account(1, "Local"))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    cache.invalidate(&["1".to_owned()]).await;
    assert_eq!(
        cache
            .get("1", || load(&calls, Some(account(1, "Again"))))
            .await
            .unwrap(),
        Some(account(1, "Again"))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    shutdown.cancel();
}
