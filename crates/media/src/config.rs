//! Configuration of the media service, from environment variables.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use rookery_kit::{
    Result,
    config::{DatabaseConfig, RedisConfig, env_millis, env_or, env_parse},
};
use rookery_media_pipeline::ImageLimits;

/// Default database URL of the local stack (`make run`).
pub const DEFAULT_DATABASE_URL: &str =
    "postgres://rookery_media:rookery_media@127.0.0.1:15432/rookery";

const MIB: u64 = 1024 * 1024;

/// Where the files go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    /// A local directory: `MEDIA_LOCAL_DIR` (default `data/media`).
    Local(PathBuf),
    /// An S3-compatible bucket: `MEDIA_S3_BUCKET`, with `MEDIA_S3_ENDPOINT` (empty: AWS),
    /// `MEDIA_S3_REGION` (default `us-east-1`) and credentials.
    S3 {
        bucket: String,
        endpoint: Option<String>,
        region: String,
        /// `MEDIA_S3_ACCESS_KEY_ID` / `MEDIA_S3_SECRET_ACCESS_KEY`, when the service
        /// has keys of its own (else the `AWS_*` variables or the instance role).
        credentials: Option<(String, String)>,
    },
}

/// Upload limits (Mastodon's defaults).
#[derive(Clone, Debug)]
pub struct Limits {
    /// `MEDIA_IMAGE_MAX_BYTES` (default 16 MiB).
    pub image_bytes: u64,
    /// `MEDIA_VIDEO_MAX_BYTES` (default 99 MiB).
    pub video_bytes: u64,
    /// Images up to this size are processed before `POST /api/v2/media` answers; larger
    /// ones, and all video, are processed in the background: `MEDIA_SYNC_MAX_BYTES`
    /// (default 2 MiB).
    pub sync_bytes: u64,
    /// Pixel limits and variant sizes (`MEDIA_IMAGE_MAX_PIXELS`, default 33,177,600).
    pub image: ImageLimits,
}

/// Everything the media service needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC listen address: `MEDIA_GRPC_ADDR` (default `127.0.0.1:50054`).
    pub grpc_addr: SocketAddr,
    /// HTTP listen address for `/health`, `/ready`, `/metrics`:
    /// `MEDIA_HTTP_ADDR` (default `127.0.0.1:9104`).
    pub http_addr: SocketAddr,
    /// Postgres (`MEDIA_DATABASE_URL`, `MEDIA_DATABASE_READ_URL`, ...).
    pub database: DatabaseConfig,
    /// Redis (`REDIS_URL`, `REDIS_PREFIX`, ...).
    pub redis: RedisConfig,
    /// The object store.
    pub store: StoreConfig,
    /// Upload limits.
    pub limits: Limits,
    /// Background processing workers per process: `MEDIA_WORKERS` (default 2).
    pub workers: usize,
    /// Files processed at once per process, in requests and workers together:
    /// `MEDIA_CONCURRENCY` (default 2; each may need a few hundred MB, see MEDIA.md).
    pub concurrency: usize,
    /// A claimed job is another worker's to take if not renewed within this:
    /// `MEDIA_JOB_LEASE_MS` (default 60 000; renewed every third of it while working).
    pub job_lease: Duration,
    /// Attempts before a job is marked failed: `MEDIA_JOB_ATTEMPTS` (default 5).
    pub job_attempts: i32,
    /// Uploads not attached to a status are deleted after: `MEDIA_UNATTACHED_TTL_MS`
    /// (default 24 hours).
    pub unattached_ttl: Duration,
    /// How often the clean-up runs: `MEDIA_CLEANUP_INTERVAL_MS` (default 10 minutes).
    pub cleanup_interval: Duration,
    /// Event entries left unacknowledged this long by a consumer are taken over:
    /// `MEDIA_CLAIM_IDLE_MS` (default 30 000).
    pub claim_idle: Duration,
    /// Whether video is processed (needs ffmpeg): `MEDIA_VIDEO` = `auto` (default: when
    /// ffmpeg is found) or `off`.
    pub video: bool,
}

impl Config {
    /// Reads the configuration; a malformed value stops the process with its name.
    pub fn from_env() -> Result<Self> {
        let addr = |name: &str, default: &str| {
            env_or(name, default)
                .parse()
                .map_err(|_| rookery_kit::Error::Config(format!("{name}: not a socket address")))
        };
        let bucket = env_or("MEDIA_S3_BUCKET", "");
        let store = if bucket.is_empty() {
            StoreConfig::Local(env_or("MEDIA_LOCAL_DIR", "data/media").into())
        } else {
            StoreConfig::S3 {
                bucket,
                endpoint: Some(env_or("MEDIA_S3_ENDPOINT", "")).filter(|e| !e.is_empty()),
                region: env_or("MEDIA_S3_REGION", "us-east-1"),
                credentials: match (
                    env_or("MEDIA_S3_ACCESS_KEY_ID", ""),
                    env_or("MEDIA_S3_SECRET_ACCESS_KEY", ""),
                ) {
                    (id, secret) if !id.is_empty() && !secret.is_empty() => Some((id, secret)),
                    _ => None,
                },
            }
        };
        let image = ImageLimits {
            max_pixels: env_parse("MEDIA_IMAGE_MAX_PIXELS", ImageLimits::default().max_pixels)?,
            ..ImageLimits::default()
        };
        let video = match env_or("MEDIA_VIDEO", "auto").as_str() {
            "auto" => true,
            "off" => false,
            other => {
                return Err(rookery_kit::Error::Config(format!(
                    "MEDIA_VIDEO: {other:?} is neither auto nor off"
                )));
            }
        };
        Ok(Self {
            grpc_addr: addr("MEDIA_GRPC_ADDR", "127.0.0.1:50054")?,
            http_addr: addr("MEDIA_HTTP_ADDR", "127.0.0.1:9104")?,
            database: DatabaseConfig::from_env("MEDIA", DEFAULT_DATABASE_URL)?,
            redis: RedisConfig::from_env()?,
            store,
            limits: Limits {
                image_bytes: env_parse("MEDIA_IMAGE_MAX_BYTES", 16 * MIB)?,
                video_bytes: env_parse("MEDIA_VIDEO_MAX_BYTES", 99 * MIB)?,
                sync_bytes: env_parse("MEDIA_SYNC_MAX_BYTES", 2 * MIB)?,
                image,
            },
            workers: env_parse("MEDIA_WORKERS", 2)?,
            concurrency: env_parse("MEDIA_CONCURRENCY", 2)?,
            job_lease: env_millis("MEDIA_JOB_LEASE_MS", 60_000)?,
            job_attempts: env_parse("MEDIA_JOB_ATTEMPTS", 5)?,
            unattached_ttl: env_millis("MEDIA_UNATTACHED_TTL_MS", 24 * 3_600_000)?,
            cleanup_interval: env_millis("MEDIA_CLEANUP_INTERVAL_MS", 600_000)?,
            claim_idle: env_millis("MEDIA_CLAIM_IDLE_MS", 30_000)?,
            video,
        })
    }

    /// A configuration for tests: the given database, Redis and store directory.
    pub fn for_tests(
        database_url: &str,
        redis_url: &str,
        redis_prefix: &str,
        dir: PathBuf,
    ) -> Self {
        Self {
            grpc_addr: ([127, 0, 0, 1], 0).into(),
            http_addr: ([127, 0, 0, 1], 0).into(),
            database: DatabaseConfig::for_url(database_url),
            redis: RedisConfig::for_url(redis_url, redis_prefix),
            store: StoreConfig::Local(dir),
            limits: Limits {
                image_bytes: 16 * MIB,
                video_bytes: 99 * MIB,
                sync_bytes: 2 * MIB,
                image: ImageLimits::default(),
            },
            workers: 1,
            concurrency: 2,
            job_lease: Duration::from_secs(3),
            job_attempts: 3,
            unattached_ttl: Duration::from_secs(24 * 3600),
            cleanup_interval: Duration::from_secs(600),
            claim_idle: Duration::from_secs(2),
            video: true,
        }
    }
}
