//! The notifications service: notifications made from other services' domain events
//! (mentions, posts of accounts followed with `notify`, reblogs, favourites, follows,
//! follow requests, edits, quotes), their grouping (Mastodon 4.3's grouped
//! notifications), unread counts and timeline markers. Owns Postgres schema
//! `notifications` and its Redis keys; announces every new notification on the
//! recipient's streaming channel. Reached over gRPC (`rookery.notifications.v1`).
//!
//! # Layout
//! - [`config`]: typed configuration from the environment.
//! - [`domain`]: types and group keys.
//! - [`consumer`]: the event consumers (exactly once per recipient and event).
//! - [`service`]: the rules and the reads.
//! - [`unread`]: unread counts in Redis.
//! - [`grpc`]: the tonic adapter.
//! - [`store`]: every SQL statement of the crate.
//! - `error`: the crate's error enum and its mapping to gRPC codes.

#![forbid(unsafe_code)]

pub mod config;
pub mod consumer;
pub mod domain;
mod error;
pub mod grpc;
pub mod service;
pub mod store;
pub mod unread;

use std::sync::Arc;

use rookery_kit::{db::Db, redis::Redis};
use rookery_proto::{
    notifications::v1::notifications_server::NotificationsServer,
    timeline::v1::timeline_client::TimelineClient, users::v1::users_client::UsersClient,
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
    Ok(())
}

/// Wires the service from its configuration (also what tests use).
pub fn build(config: &Config, db: Db, redis: Redis) -> Result<Arc<service::Notifications>> {
    let users = rookery_kit::grpc::channel(&config.users_url, config.grpc_timeout)
        .map_err(|e| Error::Internal(format!("users url: {e}")))?;
    let timeline = rookery_kit::grpc::channel(&config.timeline_url, config.grpc_timeout)
        .map_err(|e| Error::Internal(format!("timeline url: {e}")))?;
    Ok(Arc::new(service::Notifications::new(service::Parts {
        store: store::Store::new(db),
        redis,
        users: UsersClient::new(users),
        timeline: TimelineClient::new(timeline),
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
    db.spawn_pool_metrics("notifications", shutdown.clone());
    let service = build(&config, db.clone(), redis.clone())?;
    consumer::spawn(
        service.clone(),
        redis,
        &rookery_kit::events::consumer_name("notifications"),
        config.claim_idle,
        shutdown.clone(),
    );

    let server = NotificationsServer::new(grpc::NotificationsGrpc(service));
    rookery_kit::grpc::serve("notifications", server, db, grpc, http, shutdown).await?;
    Ok(())
}
