//! The Redis client in cluster mode, against the three-node Redis Cluster that
//! `deps.sh start redis-cluster` runs (`make test` starts it): pipelines whose keys span
//! slots, scripts on hash-tagged keys, cache invalidation across replicas subscribed on
//! different nodes, multi-key reads, and the event stream's blocking reads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::HashSet,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use ::redis::{Value, cluster_routing::Slot};
use rookery_kit::{
    Error,
    cache::{CacheHub, CacheOptions, TieredCache},
    config::{DatabaseConfig, RedisConfig},
    db::Db,
    events::{self, Consumer, Outbox},
    redis::{Pipeline, Redis},
    testing,
};
use rookery_proto::users::v1::Account;
use tokio_util::sync::CancellationToken;

/// The cluster under a fresh prefix. The budget is generous so a loaded machine does not
/// turn a slow call into a failed test.
fn cluster(prefix: &str) -> Redis {
    let mut config = RedisConfig::for_url(testing::redis_cluster_nodes(), prefix);
    config.timeout = Duration::from_secs(2);
    let redis = Redis::new(&config).unwrap();
    assert!(redis.is_cluster(), "a node list configures a cluster");
    redis
}

/// The single test Redis under `prefix`: the reference the cluster must agree with.
fn single(prefix: &str) -> Redis {
    let mut config = RedisConfig::for_url(testing::redis_url(), prefix);
    config.timeout = Duration::from_secs(2);
    let redis = Redis::new(&config).unwrap();
    assert!(!redis.is_cluster());
    redis
}

/// Sets, reads back and counts 40 keys with ignored and kept replies interleaved, a
/// `PUBLISH` barrier in the middle, and a script on two hash-tagged keys.
fn mixed_pipeline(redis: &Redis) -> (Pipeline, Vec<String>) {
    let keys: Vec<String> = (0..40).map(|i| redis.key(&format!("k{i}"))).collect();
    let tagged_a = redis.key("{acct:7}:a");
    let tagged_b = redis.key("{acct:7}:b");
    let mut pipe = rookery_kit::redis::pipe();
    for (i, key) in keys.iter().enumerate() {
        pipe.cmd("SET").arg(key).arg(format!("v{i}")).ignore();
        pipe.cmd("INCR").arg(redis.key(&format!("n{}", i % 7)));
    }
    pipe.cmd("PUBLISH").arg(redis.key("chan")).arg("x").ignore();
    // Reads after the barrier see every write before it.
    for key in &keys {
        pipe.cmd("GET").arg(key);
    }
    pipe.cmd("EVAL")
        .arg("redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[1]); return redis.call('GET', KEYS[2])")
        .arg(2)
        .arg(&tagged_a)
        .arg(&tagged_b)
        .arg("both");
    (pipe, keys)
}

#[tokio::test]
async fn pipelines_spanning_slots_answer_as_on_one_server() {
    let prefix = testing::redis_prefix();
    let on_cluster = cluster(&prefix);
    let on_single = single(&prefix);

    let (pipe, keys) = mixed_pipeline(&on_cluster);
    let slots: HashSet<Slot> = keys.iter().map(Slot::for_key).collect();
    assert!(
        slots.len() > 30,
        "the keys fall in many slots: {}",
        slots.len()
    );

    // A plain pipeline over two of those keys in different slots is what a cluster refuses.
    let other = keys
        .iter()
        .find(|k| Slot::for_key(k) != Slot::for_key(&keys[0]))
        .unwrap();
    let mut raw = ::redis::pipe();
    raw.cmd("GET").arg(&keys[0]).cmd("GET").arg(other);
    let mut conn = ::redis::cluster::ClusterClient::new(
        testing::redis_cluster_nodes()
            .split(',')
            .collect::<Vec<_>>(),
    )
    .unwrap()
    .get_async_connection()
    .await
    .unwrap();
    let refused: Result<Vec<Value>, _> = raw.query_async(&mut conn).await;
    assert!(
        refused.is_err(),
        "a cross-slot pipeline is refused by the cluster client: {refused:?}"
    );

    let from_cluster: Vec<Value> = on_cluster.pipe(&pipe).await.unwrap();
    let from_single: Vec<Value> = on_single.pipe(&pipe).await.unwrap();
    assert_eq!(from_cluster, from_single);
    // 40 INCR replies, 40 GET replies and the script's reply: ignored replies are gone.
    assert_eq!(from_cluster.len(), 81);
    let gets: Vec<Option<String>> = from_cluster[40..80]
        .iter()
        .map(|v| ::redis::from_redis_value(v.clone()).unwrap())
        .collect();
    let expected: Vec<Option<String>> = (0..40).map(|i| Some(format!("v{i}"))).collect();
    assert_eq!(gets, expected);
    assert_eq!(
        ::redis::from_redis_value::<String>(from_cluster[80].clone()).unwrap(),
        "both"
    );

    // Typed results decode from the reassembled reply as from a pipeline's.
    let mut typed = rookery_kit::redis::pipe();
    typed
        .cmd("SET")
        .arg(&keys[3])
        .arg("x")
        .ignore()
        .cmd("GET")
        .arg(&keys[3])
        .cmd("GET")
        .arg(&keys[9])
        .cmd("EXISTS")
        .arg(&keys[20])
        .arg(&keys[21])
        .arg(redis_key_absent(&on_cluster));
    let (three, nine, exists): (String, String, i64) = on_cluster.pipe(&typed).await.unwrap();
    assert_eq!((three.as_str(), nine.as_str(), exists), ("x", "v9", 2));
}

fn redis_key_absent(redis: &Redis) -> String {
    redis.key("never-written")
}

#[tokio::test]
async fn a_script_loaded_in_a_pipeline_runs_later_in_it() {
    let prefix = testing::redis_prefix();
    let redis = cluster(&prefix);
    // A fresh body per test run so that SCRIPT LOAD is really needed.
    let body = format!("-- {prefix}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])");
    // Its SHA1, as the single server computes it (loading it there, not on the cluster).
    let mut load = ::redis::cmd("SCRIPT");
    load.arg("LOAD").arg(&body);
    let sha: String = single(&prefix).query(&load).await.unwrap();
    let mut pipe = rookery_kit::redis::pipe();
    pipe.cmd("SCRIPT").arg("LOAD").arg(&body).ignore();
    for i in 0..10 {
        pipe.cmd("EVALSHA")
            .arg(&sha)
            .arg(1)
            .arg(redis.key(&format!("{{c{i}}}:n")))
            .arg(i);
    }
    let got: Vec<i64> = redis.pipe(&pipe).await.unwrap();
    assert_eq!(got, (0..10).collect::<Vec<i64>>());
}

/// Long lifetimes: nothing may be explained by expiry.
fn options() -> CacheOptions {
    CacheOptions {
        l1_capacity: 1_000,
        l1_ttl: Duration::from_secs(300),
        l2_ttl: Some(Duration::from_secs(300)),
    }
}

fn account(id: i64, name: &str) -> Account {
    Account {
        id,
        username: format!("user{id}"),
        display_name: name.to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn cache_replicas_on_a_cluster_share_l2_and_hear_invalidations() {
    let prefix = testing::redis_prefix();
    let shutdown = CancellationToken::new();
    let redis_a = cluster(&prefix);
    let redis_b = cluster(&prefix);
    // B subscribes on another node than A: PUBLISH must cross the cluster bus.
    let _ = redis_b.pubsub_client();
    let hub_a = CacheHub::new(Some(redis_a));
    let hub_b = CacheHub::new(Some(redis_b));
    for hub in [&hub_a, &hub_b] {
        hub.spawn_listener(shutdown.clone());
        tokio::time::timeout(Duration::from_secs(5), hub.subscribed())
            .await
            .expect("subscribed within 5 s");
    }
    let cache_a = TieredCache::<Account>::new(&hub_a, "accounts", options());
    let cache_b = TieredCache::<Account>::new(&hub_b, "accounts", options());

    // A loads 20 accounts (L2 writes span slots); B reads them all from L2 in one MGET.
    let keys: Vec<String> = (1..=20).map(|i| i.to_string()).collect();
    let loads = AtomicUsize::new(0);
    let loaded = cache_a
        .get_many(&keys, |missing| {
            loads.fetch_add(missing.len(), Ordering::SeqCst);
            let values: Vec<(String, Account)> = missing
                .iter()
                .map(|k| (k.clone(), account(k.parse().unwrap(), "old")))
                .collect();
            async move { Ok::<_, Error>(values) }
        })
        .await
        .unwrap();
    assert_eq!(loaded.len(), 20);
    assert_eq!(loads.load(Ordering::SeqCst), 20);
    let missed = AtomicUsize::new(0);
    let from_l2 = cache_b
        .get_many(&keys, |missing| {
            missed.fetch_add(missing.len(), Ordering::SeqCst);
            async { Ok::<Vec<(String, Account)>, Error>(Vec::new()) }
        })
        .await
        .unwrap();
    assert_eq!(missed.load(Ordering::SeqCst), 0, "B found every key in L2");
    assert_eq!(from_l2.len(), 20);

    // A invalidates every key; B drops its L1 copies and loads the new values.
    cache_a.invalidate(&keys).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let got = cache_b
            .get("13", || async { Ok::<_, Error>(Some(account(13, "new"))) })
            .await
            .unwrap()
            .unwrap();
        if got.display_name == "new" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B still served its stale copy 3 s after A invalidated it"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
}

#[tokio::test]
async fn events_reach_consumers_through_a_cluster() {
    let database = testing::database("kit").await.unwrap();
    let db = Db::connect_lazy(&DatabaseConfig::for_url(&database.url)).unwrap();
    events::migrate(db.primary()).await.unwrap();
    let redis = cluster(&testing::redis_prefix());

    let outbox = Outbox::new("svc");
    let mut tx = db.primary().begin().await.unwrap();
    for n in 0..5_i64 {
        outbox
            .enqueue(&mut tx, &format!("topic.{n}"), Some(n), &[n as u8])
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(
        events::relay_once(db.primary(), &redis, "svc")
            .await
            .unwrap(),
        5
    );

    let consumer = Consumer::new(redis.clone(), "svc", "group", "c1");
    consumer.ensure_group().await.unwrap();
    let mut conn = consumer.connect(Duration::from_millis(200)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < 5 {
        assert!(Instant::now() < deadline, "read {} of 5 events", got.len());
        got.extend(
            consumer
                .read(&mut conn, Duration::from_millis(200))
                .await
                .unwrap(),
        );
    }
    let topics: Vec<&str> = got.iter().map(|e| e.topic.as_str()).collect();
    assert_eq!(
        topics,
        ["topic.0", "topic.1", "topic.2", "topic.3", "topic.4"]
    );
    let ids: Vec<String> = got.iter().map(|e| e.entry_id.clone()).collect();
    consumer.ack(&ids).await.unwrap();
    assert!(consumer.claim_stuck().await.unwrap().is_empty());
    // Exactly once: nothing more to read.
    assert!(
        consumer
            .read(&mut conn, Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty()
    );
}
