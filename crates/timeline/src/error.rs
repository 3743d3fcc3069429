//! The timeline service's error type and its one mapping to gRPC status codes.

use tonic::{Code, Status};

/// Everything that can go wrong in the timeline service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Plumbing failure (Postgres, Redis). UNAVAILABLE when a dependency is down, else INTERNAL.
    #[error(transparent)]
    Kit(#[from] rookery_kit::Error),
    /// The users service failed. UNAVAILABLE (its own code when it is the caller's fault).
    #[error("users service: {0}")]
    Users(Status),
    /// Unknown, or not visible to the caller (the two look the same). NOT_FOUND.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Bad input; the message tells the client what. INVALID_ARGUMENT.
    #[error("{0}")]
    InvalidArgument(String),
    /// Not the caller's to change. PERMISSION_DENIED.
    #[error("{0}")]
    PermissionDenied(&'static str),
    /// Not possible on this status (reblogging a private status, a sixth pin).
    /// FAILED_PRECONDITION.
    #[error("{0}")]
    FailedPrecondition(&'static str),
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
            // Class 22, data exception: a value Postgres cannot take (a NUL byte in text)
            // came from the caller.
            Some(c) if c.starts_with("22") => {
                Error::InvalidArgument("invalid characters or value in the request".into())
            }
            Some("40P01" | "40001") => Error::Aborted,
            // Foreign key violation: the status a favourite, bookmark, pin or reblog points
            // at is gone (deleted after the visibility check, which may read the cache).
            // Found by schemathesis, as a 500; it is the caller's unknown status.
            Some("23503") => Error::NotFound("status"),
            _ => Error::Kit(rookery_kit::Error::Database(e)),
        }
    }
}

impl From<Status> for Error {
    fn from(s: Status) -> Self {
        Error::Users(s)
    }
}

/// Result with the service [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(_) => Status::new(Code::NotFound, e.to_string()),
            Error::InvalidArgument(msg) => Status::new(Code::InvalidArgument, msg),
            Error::PermissionDenied(msg) => Status::new(Code::PermissionDenied, msg),
            Error::FailedPrecondition(msg) => Status::new(Code::FailedPrecondition, msg),
            Error::Aborted => Status::new(Code::Aborted, e.to_string()),
            Error::Users(s) => match s.code() {
                Code::InvalidArgument | Code::NotFound | Code::PermissionDenied => s,
                _ => {
                    tracing::warn!(error = %s, "users service unavailable");
                    Status::new(
                        Code::Unavailable,
                        "a dependency is unavailable, retry later",
                    )
                }
            },
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
