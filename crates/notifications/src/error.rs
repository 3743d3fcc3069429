//! The notifications service's error type and its one mapping to gRPC status codes.

use tonic::{Code, Status};

/// Everything that can go wrong in the notifications service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Plumbing failure (Postgres, Redis). UNAVAILABLE when a dependency is down, else INTERNAL.
    #[error(transparent)]
    Kit(#[from] rookery_kit::Error),
    /// The users or timeline service failed. UNAVAILABLE.
    #[error("upstream service: {0}")]
    Upstream(Status),
    /// Unknown, or not the caller's (the two look the same). NOT_FOUND.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Bad input; the message tells the client what. INVALID_ARGUMENT.
    #[error("{0}")]
    InvalidArgument(String),
    /// Lost a race with a concurrent write and rolled back. ABORTED (retryable).
    #[error("conflicting concurrent change, retry")]
    Aborted,
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
            // Class 22, data exception: a value Postgres cannot take came from the caller.
            Some(c) if c.starts_with("22") => {
                Error::InvalidArgument("invalid characters or value in the request".into())
            }
            Some("40P01" | "40001") => Error::Aborted,
            _ => Error::Kit(rookery_kit::Error::Database(e)),
        }
    }
}

impl From<Status> for Error {
    fn from(s: Status) -> Self {
        Error::Upstream(s)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(e.to_string())
    }
}

/// Result with the service [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(_) => Status::new(Code::NotFound, e.to_string()),
            Error::InvalidArgument(msg) => Status::new(Code::InvalidArgument, msg),
            Error::Aborted => Status::new(Code::Aborted, e.to_string()),
            Error::Upstream(s) => {
                tracing::warn!(error = %s, "upstream service failed");
                Status::new(
                    Code::Unavailable,
                    "a dependency is unavailable, retry later",
                )
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
