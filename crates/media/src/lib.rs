//! The media service: uploads, their processing (image variants in the source format and
//! WebP, blurhash, EXIF orientation applied and metadata stripped, animated GIF and video
//! to MP4 through ffmpeg), storage in an object store (a local directory or an S3
//! bucket), and reading stored files back for the gateway to serve. Owns Postgres schema
//! `media`; reached over gRPC (`rookery.media.v1`).
//!
//! # Layout
//! - [`config`]: typed configuration from the environment.
//! - [`service`]: uploads, processing, reads, attachment to statuses.
//! - [`jobs`]: the workers, the clean-up, the timeline event consumer.
//! - [`storage`]: the object store and the naming of files.
//! - [`grpc`]: the tonic adapter.
//! - [`store`]: every SQL statement of the crate.
//! - `error`: the crate's error enum and its mapping to gRPC codes.
//!
//! The processing itself is the `rookery-media-pipeline` crate.

#![forbid(unsafe_code)]

pub mod config;
mod error;
pub mod grpc;
pub mod jobs;
pub mod service;
pub mod storage;
pub mod store;

use std::sync::Arc;

use rookery_kit::{
    cache::{CacheHub, CacheOptions, TieredCache},
    db::Db,
    redis::Redis,
};
use rookery_proto::media::v1::media_server::MediaServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::{Error, Result};

/// Largest gRPC message the service takes or sends: upload chunks are cut well below.
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// Applies the schema migrations (the `migrate` command, the Kubernetes migration Job).
pub async fn migrate(config: &Config) -> Result<()> {
    let db = Db::connect_lazy(&config.database)?;
    store::MIGRATOR
        .run(db.primary())
        .await
        .map_err(|e| Error::Internal(format!("migration failed: {e}")))?;
    Ok(())
}

/// Makes rustls use ring, the provider sqlx already brings: the S3 client's TLS takes
/// the process default and would not pick one itself.
pub fn install_crypto_provider() {
    // Err only when one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Wires the service from its configuration (also what tests use).
pub fn build(config: &Config, db: Db, hub: &Arc<CacheHub>) -> Result<Arc<service::Media>> {
    install_crypto_provider();
    let ffmpeg = rookery_media_pipeline::Ffmpeg::detect();
    if ffmpeg.is_none() && config.video {
        tracing::warn!("ffmpeg not found: video uploads will be refused, animated GIFs kept still");
    }
    let cache = TieredCache::new(
        hub,
        service::CACHE,
        CacheOptions {
            l1_capacity: 50_000,
            l1_ttl: std::time::Duration::from_secs(600),
            l2_ttl: Some(std::time::Duration::from_secs(3600)),
        },
    );
    Ok(Arc::new(service::Media::new(service::Parts {
        store: store::Store::new(db),
        storage: storage::Storage::open(&config.store)?,
        cache,
        ffmpeg,
        config: Arc::new(config.clone()),
    })))
}

/// Starts the background work of a built service: workers, clean-up, event consumer.
pub fn spawn_background(media: &Arc<service::Media>, redis: Redis, shutdown: &CancellationToken) {
    jobs::spawn_workers(media.clone(), media.config().workers, shutdown.clone());
    jobs::spawn_cleanup(media.clone(), shutdown.clone());
    jobs::spawn_consumer(
        media.clone(),
        redis,
        &rookery_kit::events::consumer_name("media"),
        shutdown.clone(),
    );
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
    db.spawn_pool_metrics("media", shutdown.clone());
    let media = build(&config, db.clone(), &hub)?;
    spawn_background(&media, redis, &shutdown);

    let server = MediaServer::new(grpc::MediaGrpc(media))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    rookery_kit::grpc::serve("media", server, db, grpc, http, shutdown).await?;
    Ok(())
}
