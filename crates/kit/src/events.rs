//! Domain events: a transactional outbox, its relay to Redis Streams, and consumers.
//!
//! A write that other services must hear about calls [`Outbox::enqueue`] inside the same
//! transaction as the change, so the event exists if and only if the change committed.
//! A relay task (one active per service at a time, by advisory lock, which keeps the
//! order) moves rows to the service's stream `{prefix}:events:{service}` and deletes them
//! in one transaction. Redis being down delays events, never loses them. Publication is
//! at-least-once; consumers deduplicate with [`mark_processed`] in their own transaction.
//!
//! Each entry carries `id` (`{service}:{n}`, unique), `topic` (e.g. `account.updated`),
//! `aggregate`, `traceparent` (W3C, so a consumer's work joins the producer's trace) and
//! `payload` (protobuf bytes of the topic's message).

use std::{sync::Arc, time::Duration};

use ::redis::{
    Value,
    streams::{StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply},
};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result, redis::Redis};

/// Schema objects of the outbox and of consumer deduplication, created in the service's
/// own schema by its `migrate` step (idempotent).
const DDL: &str = include_str!("events.sql");

/// Creates the outbox and `processed_events` tables in the current schema if absent.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    sqlx::raw_sql(DDL).execute(pool).await?;
    Ok(())
}

/// Most events kept per stream (approximate trim): consumers that fall further behind
/// than this lose the oldest events, so alert on lag long before.
const STREAM_MAX_LEN: usize = 1_000_000;
/// Rows moved per relay transaction.
const RELAY_BATCH: i64 = 500;

/// The outbox of one service.
#[derive(Clone, Debug)]
pub struct Outbox {
    service: &'static str,
    wake: Arc<Notify>,
}

impl Outbox {
    /// The outbox of `service` (names its stream).
    pub fn new(service: &'static str) -> Self {
        Self {
            service,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Adds an event to the transaction `tx`. Call [`Outbox::committed`] after commit.
    pub async fn enqueue(
        &self,
        tx: &mut PgConnection,
        topic: &str,
        aggregate_id: Option<i64>,
        payload: &[u8],
    ) -> Result<()> {
        let traceparent = crate::telemetry::current_traceparent();
        sqlx::query(
            "INSERT INTO outbox (topic, aggregate_id, payload, traceparent) VALUES ($1, $2, $3, $4)",
        )
        .bind(topic)
        .bind(aggregate_id)
        .bind(payload)
        .bind(traceparent)
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Wakes the relay at once instead of at its next poll.
    pub fn committed(&self) {
        self.wake.notify_one();
    }

    /// The stream this service publishes to.
    pub fn stream_key(redis: &Redis, service: &str) -> String {
        redis.key(&format!("events:{service}"))
    }

    /// Runs the relay until `shutdown`: publishes whenever woken, and polls every
    /// `interval` for rows written by other replicas or left by a failed attempt.
    pub fn spawn_relay(
        &self,
        pool: PgPool,
        redis: Redis,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut backoff = interval;
            loop {
                match relay_once(&pool, &redis, this.service).await {
                    // A full batch: more are probably waiting.
                    Ok(n) if n as i64 == RELAY_BATCH => continue,
                    Ok(_) => backoff = interval,
                    Err(e) => {
                        tracing::warn!(service = this.service, error = %e, "outbox relay failed, will retry");
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = this.wake.notified() => {}
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        });
    }
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    topic: String,
    aggregate_id: Option<i64>,
    payload: Vec<u8>,
    traceparent: Option<String>,
    age_seconds: f64,
}

/// Publishes one batch of pending events; returns how many. Public for tests and tools.
pub async fn relay_once(pool: &PgPool, redis: &Redis, service: &'static str) -> Result<usize> {
    let mut tx = pool.begin().await?;
    // One relay at a time per service keeps the stream in commit order.
    let leader: bool = sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(hashtext('rookery.outbox.' || current_schema()))",
    )
    .fetch_one(&mut *tx)
    .await?;
    if !leader {
        // The leader reports the lag. A value left here from this replica's last turn as
        // leader would stay forever and keep a lag alert (max over replicas) firing.
        metrics::gauge!("outbox_lag_seconds", "service" => service).set(0.0);
        return Ok(0);
    }
    let rows: Vec<OutboxRow> = sqlx::query_as(
        "SELECT id, topic, aggregate_id, payload, traceparent,
                extract(epoch FROM now() - created_at)::float8 AS age_seconds
         FROM outbox ORDER BY id LIMIT $1",
    )
    .bind(RELAY_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let lag = rows.first().map_or(0.0, |r| r.age_seconds);
    metrics::gauge!("outbox_lag_seconds", "service" => service).set(lag);
    if rows.is_empty() {
        return Ok(0);
    }
    let stream = Outbox::stream_key(redis, service);
    let mut pipe = crate::redis::pipe();
    for row in &rows {
        let cmd = pipe
            .cmd("XADD")
            .arg(&stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_MAX_LEN)
            .arg("*")
            .arg("id")
            .arg(format!("{service}:{}", row.id))
            .arg("topic")
            .arg(&row.topic)
            .arg("payload")
            .arg(row.payload.as_slice());
        if let Some(aggregate) = row.aggregate_id {
            cmd.arg("aggregate").arg(aggregate);
        }
        if let Some(tp) = &row.traceparent {
            cmd.arg("traceparent").arg(tp);
        }
        cmd.ignore();
    }
    redis.pipe::<()>(&pipe).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    // If this commit fails the events are published again later: consumers deduplicate.
    tx.commit().await?;
    metrics::counter!("events_published_total", "service" => service).increment(rows.len() as u64);
    Ok(rows.len())
}

/// Records that `consumer` processed `event_id`, in the consumer's transaction. Returns
/// false when it already had: the caller skips the event's effects.
pub async fn mark_processed(tx: &mut PgConnection, consumer: &str, event_id: &str) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .execute(tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// This process's name in consumer groups: unique per process (host, pid and a random
/// suffix, since pids repeat across containers and restarts). Entries a dead process left
/// pending are claimed by the live ones.
pub fn consumer_name(fallback_host: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| fallback_host.to_owned());
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{host}-{}-{suffix}", std::process::id())
}

/// One event as read from a stream.
#[derive(Clone, Debug, Default)]
pub struct Event {
    /// Unique id, `{service}:{n}`: the deduplication key.
    pub id: String,
    /// The Redis stream entry id (for acknowledging).
    pub entry_id: String,
    /// E.g. `account.updated`.
    pub topic: String,
    /// The entity the event is about, when it has one.
    pub aggregate_id: Option<i64>,
    /// W3C trace context of the producing request.
    pub traceparent: Option<String>,
    /// Protobuf bytes of the topic's message.
    pub payload: Vec<u8>,
}

impl Event {
    /// The payload as its topic's message; None (logged) when it does not decode, since
    /// retrying cannot fix a payload: the consumer moves on.
    pub fn decode<M: prost::Message + Default>(&self) -> Option<M> {
        match M::decode(self.payload.as_slice()) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!(event_id = %self.id, topic = %self.topic, error = %e, "undecodable event skipped");
                None
            }
        }
    }

    fn from_entry(entry: StreamId) -> Self {
        let text = |k: &str| match entry.map.get(k) {
            Some(Value::BulkString(b)) => String::from_utf8(b.clone()).ok(),
            Some(Value::SimpleString(s)) => Some(s.clone()),
            _ => None,
        };
        let payload = match entry.map.get("payload") {
            Some(Value::BulkString(b)) => b.clone(),
            _ => Vec::new(),
        };
        Self {
            id: text("id").unwrap_or_default(),
            topic: text("topic").unwrap_or_default(),
            aggregate_id: text("aggregate").and_then(|a| a.parse().ok()),
            traceparent: text("traceparent"),
            payload,
            entry_id: entry.id,
        }
    }
}

/// A member of a consumer group on one service's stream.
#[derive(Clone, Debug)]
pub struct Consumer {
    redis: Redis,
    stream: String,
    group: String,
    name: String,
    /// Entries pending longer than this (their consumer died) are claimed by us.
    pub claim_idle: Duration,
    /// Entries read per call.
    pub batch: usize,
}

impl Consumer {
    /// A consumer `name` (unique per replica) in `group` on the stream of `producer`.
    pub fn new(redis: Redis, producer: &str, group: &str, name: &str) -> Self {
        Self {
            stream: Outbox::stream_key(&redis, producer),
            redis,
            group: group.to_owned(),
            name: name.to_owned(),
            claim_idle: Duration::from_secs(30),
            batch: 64,
        }
    }

    /// Creates the group (reading from the start of the stream) if it does not exist.
    pub async fn ensure_group(&self) -> Result<()> {
        let mut cmd = ::redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM");
        match self.redis.query::<()>(&cmd).await {
            Err(Error::Redis(e)) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Takes over entries another consumer left unacknowledged for `claim_idle`.
    pub async fn claim_stuck(&self) -> Result<Vec<Event>> {
        let mut cmd = ::redis::cmd("XAUTOCLAIM");
        cmd.arg(&self.stream)
            .arg(&self.group)
            .arg(&self.name)
            .arg(self.claim_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(self.batch);
        let reply: StreamAutoClaimReply = self.redis.query(&cmd).await?;
        Ok(reply.claimed.into_iter().map(Event::from_entry).collect())
    }

    /// Reads new entries, waiting up to `block` for some on a dedicated connection.
    pub async fn read(
        &self,
        conn: &mut crate::redis::Connection,
        block: Duration,
    ) -> Result<Vec<Event>> {
        let options = StreamReadOptions::default()
            .group(&self.group, &self.name)
            .count(self.batch)
            .block(block.as_millis() as usize);
        let reply: Option<StreamReadReply> =
            ::redis::AsyncCommands::xread_options(conn, &[&self.stream], &[">"], &options).await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(Event::from_entry)
            .collect())
    }

    /// Acknowledges processed entries.
    pub async fn ack(&self, entry_ids: &[String]) -> Result<()> {
        if entry_ids.is_empty() {
            return Ok(());
        }
        let mut cmd = ::redis::cmd("XACK");
        cmd.arg(&self.stream).arg(&self.group).arg(entry_ids);
        self.redis.query::<()>(&cmd).await
    }

    /// Opens the connection for blocking reads (its response timeout allows for `block`).
    pub async fn connect(&self, block: Duration) -> Result<crate::redis::Connection> {
        self.redis
            .blocking_connection(block + Duration::from_secs(2))
            .await
    }

    /// Processes events until `shutdown`: stuck entries first, then new ones. An event is
    /// acknowledged only after `handler` succeeded; a failed one stays pending and is
    /// retried once it has been idle for `claim_idle`.
    pub fn spawn<H, Fut, E>(self, handler: H, shutdown: CancellationToken)
    where
        H: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send,
        E: std::fmt::Display,
    {
        tokio::spawn(async move {
            let block = Duration::from_secs(1);
            let mut conn = None;
            let mut backoff = Duration::from_millis(100);
            while !shutdown.is_cancelled() {
                let round = async {
                    if conn.is_none() {
                        self.ensure_group().await?;
                        conn = Some(self.connect(block).await?);
                    }
                    let mut events = self.claim_stuck().await?;
                    if let Some(c) = conn.as_mut() {
                        events.extend(self.read(c, block).await?);
                    }
                    Ok::<_, Error>(events)
                };
                let events = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    r = round => r,
                };
                let events = match events {
                    Ok(events) => {
                        backoff = Duration::from_millis(100);
                        events
                    }
                    Err(e) => {
                        tracing::warn!(stream = %self.stream, group = %self.group, error = %e, "event read failed, retrying");
                        conn = None;
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                };
                let mut done = Vec::with_capacity(events.len());
                for event in events {
                    let entry_id = event.entry_id.clone();
                    let (id, topic) = (event.id.clone(), event.topic.clone());
                    match handler(event).await {
                        Ok(()) => done.push(entry_id),
                        Err(e) => {
                            tracing::warn!(event_id = %id, topic = %topic, error = %e, "event handler failed, will retry")
                        }
                    }
                }
                if let Err(e) = self.ack(&done).await {
                    // Unacknowledged entries come back and are deduplicated by the handler.
                    tracing::warn!(stream = %self.stream, error = %e, "event ack failed");
                }
            }
        });
    }
}
