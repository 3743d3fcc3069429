//! Shared plumbing for every Rookery process. No business logic lives here.
//!
//! # Layout
//! - [`config`]: typed configuration read from environment variables.
//! - [`telemetry`]: `tracing` + OpenTelemetry OTLP export, Prometheus metrics recorder.
//! - [`db`]: Postgres pools (primary plus optional read replica), slow statement logging.
//! - [`redis`]: the Redis pool with a bounded timeout on every call, and key prefixes.
//! - [`cache`]: the two-tier cache (in-process moka over Redis) with cross-replica invalidation.
//! - [`ids`]: 64-bit time-ordered ids and the newtype macro for them.
//! - [`events`]: the transactional outbox, its relay to Redis Streams, and stream consumers.
//! - [`grpc`]: tower layers carrying W3C trace context and RED metrics across gRPC hops.
//! - [`ops`]: the `/health`, `/ready` and `/metrics` endpoints every process serves.
//! - [`shutdown`]: SIGTERM / Ctrl-C handling.
//! - `testing` (feature `testing`): throwaway databases and Redis prefixes for tests.

#![forbid(unsafe_code)]

pub mod cache;
pub mod config;
pub mod db;
mod error;
pub mod events;
pub mod grpc;
pub mod ids;
pub mod ops;
pub mod ratelimit;
pub mod redis;
pub mod shutdown;
pub mod streaming;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{Error, Result};
