use std::time::Duration;

/// Errors of the shared plumbing. Services wrap these in their own error enums.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is missing or malformed: the process refuses to start.
    #[error("configuration: {0}")]
    Config(String),
    /// Postgres failed. Maps to UNAVAILABLE for pool/IO errors, INTERNAL otherwise.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A Redis command failed (connection refused, protocol error, ...).
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// No Redis connection could be had from the pool.
    #[error("redis pool: {0}")]
    RedisPool(String),
    /// A Redis call exceeded its time budget: Redis is treated as unavailable.
    #[error("redis call timed out after {0:?}")]
    RedisTimeout(Duration),
    /// Not attempted: Redis failed repeatedly a moment ago (the client's breaker is open).
    #[error("redis unavailable (recent calls failed)")]
    RedisUnavailable,
    /// Another caller's load of the same cache key failed (single flight): unavailable.
    #[error("loading {0} failed")]
    LoadFailed(&'static str),
    /// A cached or streamed value could not be decoded.
    #[error("decode: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A listener or server failed (binding, accepting, serving).
    #[error("serving: {0}")]
    Serve(String),
}

/// Result with the plumbing [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True when the failure is a dependency being unreachable or slow, not a bug:
    /// callers answer 503 / UNAVAILABLE and may retry.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Database(e) => matches!(
                e,
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
            ),
            Error::Redis(_)
            | Error::RedisPool(_)
            | Error::RedisTimeout(_)
            | Error::RedisUnavailable
            | Error::LoadFailed(_) => true,
            Error::Config(_) | Error::Decode(_) | Error::Serve(_) => false,
        }
    }
}
