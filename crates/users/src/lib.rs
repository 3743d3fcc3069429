//! The users service: accounts, credentials (argon2id), OAuth applications and tokens
//! (stored hashed). Owns Postgres schema `users`; other services reach it only over gRPC
//! (`rookery.users.v1.Users`) and through its events (`account.created`,
//! `account.updated` on stream `events:users`).
//!
//! # Layout
//! - [`config`]: typed configuration from the environment.
//! - [`domain`]: validated types (usernames, emails, passwords, scopes) and secrets.
//! - [`service`]: the rules, against the store and the account cache.
//! - [`grpc`]: the tonic adapter.
//! - [`store`]: every SQL statement of the crate.
//! - `error`: the crate's error enum and its mapping to gRPC codes.

#![forbid(unsafe_code)]

pub mod config;
pub mod domain;
mod error;
pub mod grpc;
pub mod hashing;
pub mod service;
pub mod store;

use std::{sync::Arc, time::Duration};

use rookery_kit::{
    cache::{CacheHub, CacheOptions, TieredCache, names},
    db::Db,
    events::{Consumer, Event, Outbox},
    ratelimit::RateLimit,
    redis::Redis,
};
use rookery_proto::users::v1::users_server::UsersServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::{Error, Result};

/// Applies the schema migrations (the `migrate` command, the Kubernetes migration Job).
pub async fn migrate(config: &Config) -> Result<()> {
    let db = Db::connect_lazy(&config.database)?;
    store::MIGRATOR
        .run(db.primary())
        .await
        .map_err(|e| Error::Internal(format!("migration failed: {e}")))?;
    rookery_kit::events::migrate(db.primary()).await?;
    Ok(())
}

/// Serves gRPC on `grpc` and the ops endpoints on `http` until `shutdown` is cancelled,
/// then drains in-flight calls and returns.
pub async fn run(
    grpc: TcpListener,
    http: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<()> {
    let db = Db::connect_lazy(&config.database)?;
    let redis = Redis::new(&config.redis)?;
    let hub = CacheHub::new(Some(redis.clone()));
    hub.spawn_listener(shutdown.clone());
    let outbox = Outbox::new("users");
    outbox.spawn_relay(
        db.primary().clone(),
        redis.clone(),
        config.outbox_poll,
        shutdown.clone(),
    );
    db.spawn_pool_metrics("users", shutdown.clone());
    let users = Arc::new(build_service(&config, &db, &redis, hub, outbox)?);

    spawn_mute_sweeper(users.clone(), config.mute_sweep, shutdown.clone());
    spawn_timeline_consumer(users.clone(), redis.clone(), shutdown.clone());

    let server = UsersServer::new(grpc::UsersGrpc(users));
    rookery_kit::grpc::serve("users", server, db, grpc, http, shutdown).await?;
    Ok(())
}

/// The service on `db` and `redis`, its account cache registered with `hub`, its events
/// written to `outbox`: what [`run`] serves, without the background tasks (the relay, the
/// invalidation listener, the sweeper and the consumers), so tests can drive it directly.
pub fn build_service(
    config: &Config,
    db: &Db,
    redis: &Redis,
    hub: Arc<CacheHub>,
    outbox: Outbox,
) -> Result<service::Users> {
    let accounts = TieredCache::new(
        &hub,
        names::ACCOUNTS,
        CacheOptions {
            l1_capacity: config.account_l1_capacity,
            l1_ttl: config.account_l1_ttl,
            l2_ttl: Some(config.account_l2_ttl),
        },
    );
    service::Users::new(service::Parts {
        store: store::Store::new(db.clone()),
        accounts,
        hub,
        outbox,
        follow_limit: RateLimit::new(
            redis.clone(),
            "follows",
            config.follow_limit,
            config.follow_limit_window,
        ),
        login_limit: RateLimit::new(
            redis.clone(),
            "failed-logins",
            config.login_limit,
            config.login_limit_window,
        ),
        domain: config.domain.clone(),
        active_window: config.active_window,
        hasher: hashing::Hasher::new(config.hash_threads, config.hash_queue)?,
    })
}

/// Follows the timeline service's events (`status.created`, `status.deleted`) for the
/// accounts' statuses counters, until `shutdown`. The stream may not exist yet: the
/// consumer creates it with its group.
fn spawn_timeline_consumer(users: Arc<service::Users>, redis: Redis, shutdown: CancellationToken) {
    let consumer = Consumer::new(
        redis,
        service::TIMELINE_PRODUCER,
        service::CONSUMER_GROUP,
        &rookery_kit::events::consumer_name("users"),
    );
    consumer.spawn(
        move |event: Event| {
            let users = users.clone();
            async move { users.apply_timeline_event(&event).await }
        },
        shutdown,
    );
}

/// Deletes expired mutes every `every` until `shutdown`. Every replica runs one; they
/// skip each other's rows.
fn spawn_mute_sweeper(users: Arc<service::Users>, every: Duration, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match users.sweep_expired_mutes(500).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(swept = n, "expired mutes deleted"),
                Err(e) => tracing::warn!(error = %e, "expired mutes not swept"),
            }
        }
    });
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(e.to_string())
    }
}
