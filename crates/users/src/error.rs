//! The users service's error type and its one mapping to gRPC status codes.

use tonic::{Code, Status};

/// Everything that can go wrong in the users service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Plumbing failure (Postgres, Redis). UNAVAILABLE when a dependency is down, else INTERNAL.
    #[error(transparent)]
    Kit(#[from] rookery_kit::Error),
    /// The thing asked for does not exist. NOT_FOUND.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A malformed request a well-behaved caller should not send. INVALID_ARGUMENT.
    #[error("{0}")]
    InvalidArgument(String),
    /// Not allowed between these accounts (a block). PERMISSION_DENIED.
    #[error("{0}")]
    PermissionDenied(&'static str),
    /// Over a rate limit. RESOURCE_EXHAUSTED, with `x-ratelimit-limit`,
    /// `x-ratelimit-remaining` (0) and `x-ratelimit-reset` (Unix seconds) metadata.
    #[error("rate limit exceeded")]
    RateLimited { limit: u64, reset_at: u64 },
    /// More work queued than the service takes (password hashing). UNAVAILABLE.
    #[error("too busy, retry later")]
    Overloaded,
    /// Lost a race with a concurrent write and rolled back. ABORTED (retryable).
    #[error("conflicting concurrent change, retry")]
    Aborted,
    /// Unknown, revoked or expired token. UNAUTHENTICATED.
    #[error("the access token is invalid")]
    Unauthenticated,
    /// A bug or an impossible state. INTERNAL (logged, never shown to the client).
    #[error("internal: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        let code = e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned());
        match code.as_deref() {
            // Class 22, data exception: a value Postgres cannot take (a NUL byte in text,
            // a number out of range) came from the caller.
            Some(c) if c.starts_with("22") => {
                Error::InvalidArgument("invalid characters or value in the request".into())
            }
            // Deadlock or serialization failure: lost a race, nothing was written; the same
            // request can be retried.
            Some("40P01" | "40001") => Error::Aborted,
            _ => Error::Kit(rookery_kit::Error::Database(e)),
        }
    }
}

/// Result with the service [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(_) => Status::new(Code::NotFound, e.to_string()),
            Error::InvalidArgument(msg) => Status::new(Code::InvalidArgument, msg),
            Error::Unauthenticated => Status::new(Code::Unauthenticated, e.to_string()),
            Error::PermissionDenied(msg) => Status::new(Code::PermissionDenied, msg),
            Error::Aborted => Status::new(Code::Aborted, e.to_string()),
            Error::Overloaded => {
                tracing::warn!("password hashing queue full, refusing");
                Status::new(Code::Unavailable, e.to_string())
            }
            Error::RateLimited { limit, reset_at } => {
                let mut status = Status::new(Code::ResourceExhausted, e.to_string());
                let metadata = status.metadata_mut();
                metadata.insert("x-ratelimit-limit", limit.into());
                metadata.insert("x-ratelimit-remaining", 0u64.into());
                metadata.insert("x-ratelimit-reset", reset_at.into());
                status
            }
            Error::Kit(k) if k.is_unavailable() => {
                tracing::warn!(error = %k, "dependency unavailable");
                Status::new(
                    Code::Unavailable,
                    "a dependency is unavailable, retry later",
                )
            }
            other => {
                tracing::error!(error = %other, "internal error");
                Status::new(Code::Internal, "internal error")
            }
        }
    }
}
