//! The gateway: the only public entry of Rookery. Serves a compatible subset of the
//! Mastodon client API over HTTP and maps it to the gRPC services, composing responses
//! with one batched call per service per request.
//!
//! # Layout
//! - [`config`]: typed configuration from the environment.
//! - [`state`]: service clients and the gateway's caches, shared by handlers.
//! - [`auth`]: bearer tokens (cached resolution, broadcast revocation) and scopes.
//! - [`input`]: parameters from query, JSON, form or multipart alike.
//! - [`routes`]: the handlers, one module per API area.
//! - [`mastodon`]: the API entities as clients expect them.
//! - [`streaming`]: the streaming API (WebSocket and server-sent events).
//! - [`middleware`]: tracing, metrics, JSON error bodies, deadlines, load shedding.
//! - [`ratelimit`]: Mastodon's rate limits, shared by the replicas through Redis.
//! - [`server`]: the accept loop (header timeouts, draining).
//! - [`error`]: Mastodon error bodies and the gRPC → HTTP status mapping.

#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod error;
pub mod input;
pub mod mastodon;
pub mod middleware;
pub mod pagination;
pub mod ratelimit;
pub mod routes;
pub mod server;
pub mod state;
pub mod streaming;

use std::sync::Arc;

use axum::{Router, extract::DefaultBodyLimit, http::StatusCode};
use rookery_kit::{
    cache::{CacheHub, CacheOptions, TieredCache, names},
    ops::Readiness,
    redis::Redis,
};
use rookery_proto::{
    media::v1::media_client::MediaClient,
    notifications::v1::notifications_client::NotificationsClient,
    timeline::v1::timeline_client::TimelineClient, users::v1::users_client::UsersClient,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::{
    compression::{
        CompressionLayer,
        predicate::{NotForContentType, Predicate, SizeAbove},
    },
    cors::{Any, CorsLayer},
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
};

pub use config::Config;
use state::{AppState, Inner};

/// Largest message to and from the media service (upload chunks are 256 KiB).
const MAX_UPLOAD_MESSAGE: usize = 4 * 1024 * 1024;

/// Smallest response worth compressing: below this the headers outweigh the savings.
const COMPRESS_ABOVE_BYTES: u64 = 512;

/// Builds the state: lazily connected service clients and the caches.
pub fn state(config: Config, shutdown: &CancellationToken) -> anyhow::Result<AppState> {
    let redis = Redis::new(&config.redis)?;
    let hub = CacheHub::new(Some(redis.clone()));
    hub.spawn_listener(shutdown.clone());
    let channel = rookery_kit::grpc::channel(&config.users_url, config.grpc_timeout)?;
    let timeline = rookery_kit::grpc::channel(&config.timeline_url, config.grpc_timeout)?;
    let notifications = rookery_kit::grpc::channel(&config.notifications_url, config.grpc_timeout)?;
    let media = rookery_kit::grpc::channel(&config.media_url, config.grpc_timeout)?;
    let media_uploads = rookery_kit::grpc::channel(&config.media_url, config.upload_timeout)?;
    let attachments = TieredCache::new(
        &hub,
        names::MEDIA,
        CacheOptions {
            l1_capacity: config.account_cache_capacity,
            l1_ttl: config.account_cache_ttl,
            l2_ttl: None,
        },
    );
    let tokens = TieredCache::new(
        &hub,
        names::TOKENS,
        CacheOptions {
            l1_capacity: config.token_cache_capacity,
            l1_ttl: config.token_cache_ttl,
            l2_ttl: None,
        },
    );
    let accounts = TieredCache::new(
        &hub,
        names::ACCOUNTS,
        CacheOptions {
            l1_capacity: config.account_cache_capacity,
            l1_ttl: config.account_cache_ttl,
            l2_ttl: None,
        },
    );
    let rate_limits = config
        .rate_limits
        .clone()
        .map(|limits| ratelimit::RateLimits::new(&redis, limits));
    let streaming = streaming::Streaming::new(
        config.streaming.clone(),
        redis,
        Arc::clone(&hub),
        shutdown.clone(),
    );
    let stats = TieredCache::new(
        &hub,
        "instance-stats",
        CacheOptions {
            l1_capacity: 4,
            l1_ttl: std::time::Duration::from_secs(60),
            l2_ttl: None,
        },
    );
    let state = AppState::new(Inner {
        health: tonic_health::pb::health_client::HealthClient::new(channel.clone()),
        users: UsersClient::new(channel),
        timeline: TimelineClient::new(timeline),
        notifications: NotificationsClient::new(notifications),
        media: MediaClient::new(media),
        media_uploads: MediaClient::new(media_uploads)
            .max_encoding_message_size(MAX_UPLOAD_MESSAGE)
            .max_decoding_message_size(MAX_UPLOAD_MESSAGE),
        attachments,
        tokens,
        accounts,
        stats,
        streaming,
        rate_limits,
        config,
    });
    state.streaming.start(state.clone());
    Ok(state)
}

/// The whole HTTP application, middleware included.
pub fn app(state: AppState, readiness: Readiness) -> Router {
    let config = &state.config;
    let compression = CompressionLayer::new().compress_when(
        SizeAbove::new(COMPRESS_ABOVE_BYTES)
            .and(NotForContentType::GRPC)
            .and(NotForContentType::IMAGES)
            .and(NotForContentType::SSE)
            // Video is compressed already, and byte ranges must mean the stored bytes.
            .and(NotForContentType::const_new("video/")),
    );
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods(Any)
        .allow_headers(Any)
        .expose_headers([
            http::header::LINK,
            http::HeaderName::from_static("x-request-id"),
            http::HeaderName::from_static("x-ratelimit-limit"),
            http::HeaderName::from_static("x-ratelimit-remaining"),
            http::HeaderName::from_static("x-ratelimit-reset"),
        ]);
    let api = routes::router().merge(streaming::router()).layer(
        ServiceBuilder::new()
            // A stuck dependency must not hold a connection forever.
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                config.request_timeout,
            ))
            // Every gRPC call made for the request carries what is left of the budget.
            .layer(axum::middleware::from_fn_with_state(
                config.request_timeout,
                middleware::deadline,
            ))
            // Reject oversized bodies from Content-Length before reading them (413).
            .layer(RequestBodyLimitLayer::new(config.body_limit))
            .layer(DefaultBodyLimit::max(config.body_limit)),
    );
    // Uploads stream large bodies and may wait for processing: their own limits.
    let uploads = routes::media::upload_router().layer(
        ServiceBuilder::new()
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                config.upload_timeout,
            ))
            .layer(axum::middleware::from_fn_with_state(
                config.upload_timeout,
                middleware::deadline,
            ))
            .layer(RequestBodyLimitLayer::new(config.upload_limit))
            .layer(DefaultBodyLimit::disable()),
    );
    let in_flight = Arc::new(tokio::sync::Semaphore::new(config.max_in_flight));
    api.merge(uploads)
        .fallback(middleware::not_found)
        .layer(
            ServiceBuilder::new()
                // Over capacity, refuse at once: queued requests would only time out
                // after holding memory and connections (ops endpoints stay outside).
                .layer(axum::middleware::from_fn_with_state(
                    in_flight,
                    middleware::shed,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    ratelimit::enforce,
                )),
        )
        .with_state(state.clone())
        .merge(rookery_kit::ops::router(readiness))
        .layer(
            ServiceBuilder::new()
                // Every request gets an id (or keeps the caller's) for logs and support.
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                // The root span and RED metrics, per route.
                .layer(axum::middleware::from_fn(middleware::observe))
                // Clients see the id they can quote.
                .layer(PropagateRequestIdLayer::x_request_id())
                // Browser clients (Elk, Phanpy) call the API cross-origin.
                .layer(cors)
                // gzip/br/zstd by Accept-Encoding, for bodies where it pays.
                .layer(compression)
                // Whatever fails below answers in Mastodon's JSON error format.
                .layer(axum::middleware::from_fn(middleware::json_errors)),
        )
}

/// Serves the API on `listener` until `shutdown`, then drains in-flight requests.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let options = server::ServeOptions {
        header_read_timeout: config.header_read_timeout,
        drain_delay: config.drain_delay,
        // Uploads may take longer, but a shutdown should not wait ten minutes for them.
        drain_timeout: config.request_timeout + std::time::Duration::from_secs(5),
    };
    let state = state(config, &shutdown)?;
    let readiness = readiness(&state);
    let app = app(state, readiness.clone());
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    server::serve(listener, app, options, readiness, shutdown).await;
    Ok(())
}

/// Ready when the users service reports SERVING. Redis is not required: without it the
/// gateway still answers (slower, from the services), so pulling it from the load
/// balancer would only turn a degradation into an outage.
pub fn readiness(state: &AppState) -> Readiness {
    let state = state.clone();
    Readiness::new(Arc::new(move || {
        let mut health = state.health.clone();
        Box::pin(async move {
            let res = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "rookery.users.v1.Users".into(),
                })
                .await
                .map_err(|s| format!("users: {}", s.message()))?;
            if res.into_inner().status
                == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            {
                Ok(())
            } else {
                Err("users: not serving".to_owned())
            }
        })
    }))
}
