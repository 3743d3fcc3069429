//! Integration tests of domain events — outbox, relay, stream consumers, deduplication —
//! against a real Postgres (a fresh database per test) and a real Redis (a fresh key
//! prefix per test).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ::redis::streams::{StreamPendingCountReply, StreamPendingReply};
use prost::Message;
use rookery_kit::{
    config::{DatabaseConfig, RedisConfig},
    db::Db,
    events::{self, Consumer, Event, Outbox},
    redis::Redis,
    testing,
};
use rookery_proto::users::v1::Account;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const SERVICE: &str = "svc";
const GROUP: &str = "group1";

/// A fresh database with the outbox tables, and the real Redis under a fresh prefix.
async fn setup() -> (Db, Redis) {
    let database = testing::database("kit").await.unwrap();
    let db = Db::connect_lazy(&DatabaseConfig::for_url(&database.url)).unwrap();
    events::migrate(db.primary()).await.unwrap();
    // Idempotent, as documented.
    events::migrate(db.primary()).await.unwrap();
    (db, real_redis())
}

/// The time budget is generous so that a loaded machine does not make the tests flaky.
fn real_redis() -> Redis {
    let mut config = RedisConfig::for_url(testing::redis_url(), testing::redis_prefix());
    config.timeout = Duration::from_secs(2);
    Redis::new(&config).unwrap()
}

/// A Redis on a port where nothing listens.
fn dead_redis() -> Redis {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut config = RedisConfig::for_url(
        format!("redis://127.0.0.1:{port}/0"),
        testing::redis_prefix(),
    );
    config.timeout = Duration::from_millis(100);
    Redis::new(&config).unwrap()
}

/// One event as a producer writes it.
#[derive(Clone, Debug, PartialEq)]
struct Sent {
    topic: String,
    aggregate_id: Option<i64>,
    payload: Vec<u8>,
}

fn sent(n: i64) -> Sent {
    let account = Account {
        id: n,
        username: format!("user{n}"),
        note_source: "é\u{1F426}".to_owned(),
        // A negative varint encodes as 0xff bytes: the payload is not valid UTF-8 and
        // must survive the trip as binary.
        followers_count: -n,
        ..Default::default()
    };
    let payload = account.encode_to_vec();
    assert!(std::str::from_utf8(&payload).is_err());
    Sent {
        topic: format!("account.updated.{n}"),
        // Every other event has no aggregate.
        aggregate_id: (n % 2 == 1).then_some(n * 1_000_000_007),
        payload,
    }
}

/// Enqueues `events` in one transaction and commits it.
async fn enqueue_committed(pool: &PgPool, outbox: &Outbox, events: &[Sent]) {
    let mut tx = pool.begin().await.unwrap();
    for e in events {
        outbox
            .enqueue(&mut tx, &e.topic, e.aggregate_id, &e.payload)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    outbox.committed();
}

async fn outbox_len(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn stream_len(redis: &Redis) -> usize {
    let mut cmd = ::redis::cmd("XLEN");
    cmd.arg(Outbox::stream_key(redis, SERVICE));
    redis.query(&cmd).await.unwrap()
}

/// `XPENDING stream group`: how many entries the group has delivered but not acknowledged.
async fn pending_count(redis: &Redis) -> usize {
    let mut cmd = ::redis::cmd("XPENDING");
    cmd.arg(Outbox::stream_key(redis, SERVICE)).arg(GROUP);
    let reply: StreamPendingReply = redis.query(&cmd).await.unwrap();
    reply.count()
}

/// `XPENDING stream group - + 100`: (entry id, owner) of every pending entry.
async fn pending_owners(redis: &Redis) -> Vec<(String, String)> {
    let mut cmd = ::redis::cmd("XPENDING");
    cmd.arg(Outbox::stream_key(redis, SERVICE))
        .arg(GROUP)
        .arg("-")
        .arg("+")
        .arg(100);
    let reply: StreamPendingCountReply = redis.query(&cmd).await.unwrap();
    reply.ids.into_iter().map(|p| (p.id, p.consumer)).collect()
}

/// Relays until `expected` events in total were published, tolerating rounds that publish
/// nothing (the previous, failed relay's transaction may still hold the advisory lock
/// until its connection is returned to the pool and rolled back).
async fn relay_all(pool: &PgPool, redis: &Redis, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut published = 0;
    while published < expected {
        published += events::relay_once(pool, redis, SERVICE).await.unwrap();
        if published < expected {
            assert!(
                Instant::now() < deadline,
                "only {published} of {expected} events relayed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(published, expected, "more events relayed than enqueued");
}

/// Reads with `consumer` until `n` events arrived (or fails after 5 s).
async fn read_n(
    consumer: &Consumer,
    conn: &mut rookery_kit::redis::Connection,
    n: usize,
) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "read {} of {n} events",
            got.len()
        );
        got.extend(
            consumer
                .read(conn, Duration::from_millis(200))
                .await
                .unwrap(),
        );
    }
    got
}

/// The outbox row number of an event id of the form `svc:N`.
fn sequence(event: &Event) -> i64 {
    let n = event
        .id
        .strip_prefix("svc:")
        .unwrap_or_else(|| panic!("event id {:?} is not of the form svc:N", event.id));
    n.parse()
        .unwrap_or_else(|_| panic!("event id {:?} is not of the form svc:N", event.id))
}

fn as_sent(event: &Event) -> Sent {
    Sent {
        topic: event.topic.clone(),
        aggregate_id: event.aggregate_id,
        payload: event.payload.clone(),
    }
}

#[tokio::test]
async fn committed_outbox_events_reach_the_stream_in_order() {
    let (db, redis) = setup().await;
    let outbox = Outbox::new(SERVICE);
    let batch: Vec<Sent> = (1..=3).map(sent).collect();
    enqueue_committed(db.primary(), &outbox, &batch).await;
    assert_eq!(outbox_len(db.primary()).await, 3);

    assert_eq!(
        events::relay_once(db.primary(), &redis, SERVICE)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        outbox_len(db.primary()).await,
        0,
        "relayed rows leave the outbox"
    );
    assert_eq!(
        events::relay_once(db.primary(), &redis, SERVICE)
            .await
            .unwrap(),
        0
    );

    let consumer = Consumer::new(redis.clone(), SERVICE, GROUP, "c1");
    consumer.ensure_group().await.unwrap();
    consumer.ensure_group().await.unwrap(); // idempotent (BUSYGROUP)
    let mut conn = consumer.connect(Duration::from_millis(200)).await.unwrap();
    let got = read_n(&consumer, &mut conn, 3).await;

    assert_eq!(
        got.iter().map(as_sent).collect::<Vec<_>>(),
        batch,
        "topics, aggregates and payloads, in order"
    );
    let decoded = Account::decode(got[0].payload.as_slice()).unwrap();
    assert_eq!(decoded.note_source, "é\u{1F426}");
    assert_eq!(decoded.followers_count, -1);

    let sequences: Vec<i64> = got.iter().map(sequence).collect();
    assert!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "ids are distinct and follow the outbox order: {sequences:?}"
    );
    let mut entry_ids: Vec<&str> = got.iter().map(|e| e.entry_id.as_str()).collect();
    entry_ids.dedup();
    assert_eq!(entry_ids.len(), 3);
    assert!(
        got.iter().all(|e| e.traceparent.is_none()),
        "no span, no traceparent"
    );

    // Exactly once on the stream: nothing more to read.
    assert!(
        consumer
            .read(&mut conn, Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(stream_len(&redis).await, 3);
}

#[tokio::test]
async fn rolled_back_events_are_never_published() {
    let (db, redis) = setup().await;
    let outbox = Outbox::new(SERVICE);
    let mut tx = db.primary().begin().await.unwrap();
    for e in (1..=2).map(sent) {
        outbox
            .enqueue(&mut tx, &e.topic, e.aggregate_id, &e.payload)
            .await
            .unwrap();
    }
    tx.rollback().await.unwrap();

    assert_eq!(outbox_len(db.primary()).await, 0);
    assert_eq!(
        events::relay_once(db.primary(), &redis, SERVICE)
            .await
            .unwrap(),
        0
    );
    assert_eq!(stream_len(&redis).await, 0, "nothing was published");
}

#[tokio::test]
async fn relay_with_redis_down_keeps_events_for_later() {
    let (db, redis) = setup().await;
    let outbox = Outbox::new(SERVICE);
    let batch: Vec<Sent> = (1..=3).map(sent).collect();
    enqueue_committed(db.primary(), &outbox, &batch).await;

    let down = dead_redis();
    let started = Instant::now();
    let failed = events::relay_once(db.primary(), &down, SERVICE).await;
    assert!(
        failed.is_err(),
        "relaying to a dead Redis must fail, got {failed:?}"
    );
    assert!(failed.unwrap_err().is_unavailable());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "relay took {:?}",
        started.elapsed()
    );
    assert_eq!(
        outbox_len(db.primary()).await,
        3,
        "unpublished rows stay in the outbox"
    );

    relay_all(db.primary(), &redis, 3).await;
    assert_eq!(outbox_len(db.primary()).await, 0);

    let consumer = Consumer::new(redis.clone(), SERVICE, GROUP, "c1");
    consumer.ensure_group().await.unwrap();
    let mut conn = consumer.connect(Duration::from_millis(200)).await.unwrap();
    let got = read_n(&consumer, &mut conn, 3).await;
    assert_eq!(
        got.iter().map(as_sent).collect::<Vec<_>>(),
        batch,
        "nothing lost, nothing reordered"
    );
    assert_eq!(stream_len(&redis).await, 3, "nothing published twice");
}

#[tokio::test]
async fn unacknowledged_events_are_reclaimed_by_another_consumer() {
    let (db, redis) = setup().await;
    let outbox = Outbox::new(SERVICE);
    enqueue_committed(db.primary(), &outbox, &[sent(1)]).await;
    relay_all(db.primary(), &redis, 1).await;

    let c1 = Consumer::new(redis.clone(), SERVICE, GROUP, "c1");
    c1.ensure_group().await.unwrap();
    let mut conn = c1.connect(Duration::from_millis(200)).await.unwrap();
    // Redis stamps the delivery somewhere between these two instants.
    let before_read = Instant::now();
    let read = read_n(&c1, &mut conn, 1).await;
    let read_at = Instant::now();
    // Slack for Redis's millisecond clock.
    let slack = Duration::from_millis(5);
    assert_eq!(read.len(), 1);
    let event = read[0].clone();
    // c1 "crashes": no ack.
    assert_eq!(
        pending_owners(&redis).await,
        [(event.entry_id.clone(), "c1".to_owned())]
    );

    let mut c2 = Consumer::new(redis.clone(), SERVICE, GROUP, "c2");
    c2.claim_idle = Duration::from_millis(300);
    c2.ensure_group().await.unwrap();

    // Not idle long enough yet: c1 may still be working on it.
    let early = c2.claim_stuck().await.unwrap();
    if read_at.elapsed() + slack < c2.claim_idle {
        assert!(
            early.is_empty(),
            "claimed an entry idle for less than claim_idle: {early:?}"
        );
    }
    // c2 does not get it as a new entry either.
    let mut conn2 = c2.connect(Duration::from_millis(100)).await.unwrap();
    assert!(
        c2.read(&mut conn2, Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty()
    );

    let deadline = Instant::now() + Duration::from_secs(3);
    let claimed = loop {
        let claimed = c2.claim_stuck().await.unwrap();
        if !claimed.is_empty() {
            break claimed;
        }
        assert!(
            Instant::now() < deadline,
            "c2 never claimed the stuck entry"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(
        before_read.elapsed() + slack >= c2.claim_idle,
        "claimed before claim_idle elapsed"
    );
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, event.id);
    assert_eq!(claimed[0].entry_id, event.entry_id);
    assert_eq!(
        as_sent(&claimed[0]),
        as_sent(&event),
        "the claimed entry carries the full event"
    );
    assert_eq!(
        pending_owners(&redis).await,
        [(event.entry_id.clone(), "c2".to_owned())]
    );
    assert_eq!(pending_count(&redis).await, 1);

    c2.ack(std::slice::from_ref(&claimed[0].entry_id))
        .await
        .unwrap();
    assert_eq!(
        pending_count(&redis).await,
        0,
        "acknowledged entries leave the pending list"
    );
    c2.ack(&[]).await.unwrap(); // no-op
}

#[tokio::test]
async fn mark_processed_deduplicates_within_transactions() {
    let (db, _redis) = setup().await;
    let pool = db.primary();

    let mut tx = pool.begin().await.unwrap();
    assert!(
        events::mark_processed(&mut tx, "consumer", "svc:1")
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();

    // The same event redelivered.
    let mut tx = pool.begin().await.unwrap();
    assert!(
        !events::mark_processed(&mut tx, "consumer", "svc:1")
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();

    // Another consumer of the same event, and another event: both new.
    let mut tx = pool.begin().await.unwrap();
    assert!(
        events::mark_processed(&mut tx, "other-consumer", "svc:1")
            .await
            .unwrap()
    );
    assert!(
        events::mark_processed(&mut tx, "consumer", "svc:2")
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();

    // A marking rolled back with the consumer's work does not count.
    let mut tx = pool.begin().await.unwrap();
    assert!(
        events::mark_processed(&mut tx, "consumer", "svc:3")
            .await
            .unwrap()
    );
    tx.rollback().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    assert!(
        events::mark_processed(&mut tx, "consumer", "svc:3")
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_consumer_handles_and_acknowledges_events() {
    let (db, redis) = setup().await;
    let outbox = Outbox::new(SERVICE);
    let shutdown = CancellationToken::new();
    let received = Arc::new(Mutex::new(Vec::<Event>::new()));

    let seen = received.clone();
    Consumer::new(redis.clone(), SERVICE, GROUP, "c1").spawn(
        move |event: Event| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(event);
                Ok::<(), String>(())
            }
        },
        shutdown.clone(),
    );

    let batch: Vec<Sent> = (1..=5).map(sent).collect();
    enqueue_committed(db.primary(), &outbox, &batch).await;
    relay_all(db.primary(), &redis, 5).await;

    let deadline = Instant::now() + Duration::from_secs(5);
    while received.lock().unwrap().len() < 5 {
        assert!(
            Instant::now() < deadline,
            "spawned consumer did not deliver 5 events within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pending_count(&redis).await > 0 {
        assert!(
            Instant::now() < deadline,
            "handled events were not acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();

    let got = received.lock().unwrap().clone();
    assert_eq!(
        got.iter().map(as_sent).collect::<Vec<_>>(),
        batch,
        "each event once, in order"
    );
    let sequences: Vec<i64> = got.iter().map(sequence).collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_consumer_retries_a_failed_event() {
    let (db, redis) = setup().await;
    let outbox = Outbox::new(SERVICE);
    let shutdown = CancellationToken::new();
    let attempts = Arc::new(Mutex::new(Vec::<String>::new()));

    let mut consumer = Consumer::new(redis.clone(), SERVICE, GROUP, "c1");
    consumer.claim_idle = Duration::from_millis(200);
    let log = attempts.clone();
    consumer.spawn(
        move |event: Event| {
            let log = log.clone();
            async move {
                let mut log = log.lock().unwrap();
                log.push(event.id.clone());
                // The first delivery fails, the retry succeeds.
                if log.len() == 1 {
                    Err("transient failure".to_owned())
                } else {
                    Ok(())
                }
            }
        },
        shutdown.clone(),
    );

    enqueue_committed(db.primary(), &outbox, &[sent(1)]).await;
    relay_all(db.primary(), &redis, 1).await;

    let deadline = Instant::now() + Duration::from_secs(5);
    while attempts.lock().unwrap().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "a failed event was not retried within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pending_count(&redis).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the retried event was not acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(
        attempts.len(),
        2,
        "one failure, one successful retry: {attempts:?}"
    );
    assert_eq!(attempts[0], attempts[1]);
}

/// `outbox_lag_seconds{service="svc"}` as this process exports it.
fn exported_lag() -> Option<f64> {
    rookery_kit::telemetry::metrics_handle()
        .render()
        .lines()
        .find_map(|line| line.strip_prefix("outbox_lag_seconds{service=\"svc\"} "))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn a_replica_that_is_not_the_relay_leader_reports_no_lag() {
    // Installs the process's recorder before anything is measured.
    rookery_kit::telemetry::metrics_handle();
    let (db, _) = setup().await;
    let outbox = Outbox::new(SERVICE);
    enqueue_committed(db.primary(), &outbox, &[sent(1)]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    // As leader with Redis down, this replica sees the event waiting and reports its age.
    assert!(
        events::relay_once(db.primary(), &dead_redis(), SERVICE)
            .await
            .is_err()
    );
    let lag = exported_lag().expect("lag exported");
    assert!(lag >= 0.05, "the waiting event's age: {lag}");

    // Another replica takes the relay lock: this one must stop reporting its old value.
    let mut other = db.primary().begin().await.unwrap();
    let locked: bool = sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(hashtext('rookery.outbox.' || current_schema()))",
    )
    .fetch_one(&mut *other)
    .await
    .unwrap();
    assert!(locked);
    assert_eq!(
        events::relay_once(db.primary(), &dead_redis(), SERVICE)
            .await
            .unwrap(),
        0
    );
    assert_eq!(exported_lag(), Some(0.0));
    other.rollback().await.unwrap();
}
