//! The timeline service: statuses (posts, replies, reblogs, quotes), favourites,
//! bookmarks, pins, hashtags, the home / public / hashtag / account timelines, trends
//! and full-text search. Owns Postgres schema `timeline` and the home feeds in Redis;
//! other services reach it over gRPC (`rookery.timeline.v1.Timeline`) and through its
//! events on stream `events:timeline`.
//!
//! # Layout
//! - [`config`]: typed configuration from the environment.
//! - [`domain`]: ids, visibility, paging bounds.
//! - [`text`]: status text → mentions, hashtags, links and sanitised HTML.
//! - [`service`]: the rules: writes, hydration of pages, timelines.
//! - [`feed`]: home feeds in Redis (fan-out on write, rebuilt on return).
//! - [`fanout`]: the event consumers that keep feeds in step.
//! - [`trends`]: time-decayed hashtag and status trends in Redis.
//! - [`grpc`]: the tonic adapter.
//! - [`store`]: every SQL statement of the crate.
//! - `error`: the crate's error enum and its mapping to gRPC codes.

#![forbid(unsafe_code)]

pub mod config;
pub mod domain;
mod error;
pub mod fanout;
pub mod feed;
pub mod grpc;
pub mod service;
pub mod store;
pub mod text;
pub mod trends;

use std::{sync::Arc, time::Duration};

use rookery_kit::{
    cache::{CacheHub, CacheOptions, TieredCache},
    db::Db,
    events::Outbox,
    redis::Redis,
};
use rookery_proto::{
    timeline::v1::timeline_server::TimelineServer, users::v1::users_client::UsersClient,
};
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

/// Wires the service from its configuration (also what tests use).
pub fn build(
    config: &Config,
    db: Db,
    redis: Redis,
    hub: &Arc<CacheHub>,
    outbox: Outbox,
) -> Result<Arc<service::Timeline>> {
    let statuses = TieredCache::new(
        hub,
        service::STATUS_CACHE,
        CacheOptions {
            l1_capacity: config.status_l1_capacity,
            l1_ttl: config.status_l1_ttl,
            l2_ttl: Some(config.status_l2_ttl),
        },
    );
    let flags = TieredCache::new(
        hub,
        service::FLAGS_CACHE,
        CacheOptions {
            l1_capacity: config.status_l1_capacity,
            l1_ttl: config.status_l1_ttl,
            l2_ttl: Some(config.status_l2_ttl),
        },
    );
    let channel = rookery_kit::grpc::channel(&config.users_url, config.grpc_timeout)
        .map_err(|e| Error::Internal(format!("users url: {e}")))?;
    Ok(Arc::new(service::Timeline::new(service::Parts {
        store: store::Store::new(db),
        statuses,
        flags,
        feeds: feed::Feeds::new(redis.clone(), config.feed_length, config.feed_ttl),
        users: UsersClient::new(channel),
        outbox,
        trends: trends::Trends::new(redis, config.trend_half_life),
        config: Arc::new(config.clone()),
    })))
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
    let outbox = Outbox::new("timeline");
    outbox.spawn_relay(
        db.primary().clone(),
        redis.clone(),
        config.outbox_poll,
        shutdown.clone(),
    );
    db.spawn_pool_metrics("timeline", shutdown.clone());
    let timeline = build(&config, db.clone(), redis.clone(), &hub, outbox)?;
    fanout::spawn(
        timeline.clone(),
        redis,
        &rookery_kit::events::consumer_name("timeline"),
        shutdown.clone(),
    );
    spawn_sweeper(timeline.clone(), shutdown.clone());

    let server = TimelineServer::new(grpc::TimelineGrpc(timeline));
    rookery_kit::grpc::serve("timeline", server, db, grpc, http, shutdown).await?;
    Ok(())
}

/// Deletes expired idempotency keys every minute until `shutdown`.
fn spawn_sweeper(timeline: Arc<service::Timeline>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = timeline.sweep().await {
                tracing::warn!(error = %e, "idempotency keys not swept");
            }
        }
    });
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(e.to_string())
    }
}
