//! The media service's error type and its one mapping to gRPC status codes.

use rookery_media_pipeline::PipelineError;
use tonic::{Code, Status};

/// Everything that can go wrong in the media service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Plumbing failure (Postgres, Redis). UNAVAILABLE when a dependency is down, else INTERNAL.
    #[error(transparent)]
    Kit(#[from] rookery_kit::Error),
    /// The object store failed. UNAVAILABLE (the client may retry).
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// Unknown, or not the caller's (the two look the same). NOT_FOUND.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Bad input, or a file we do not take; the message tells the client what.
    /// INVALID_ARGUMENT.
    #[error("{0}")]
    InvalidArgument(String),
    /// A file over the size limit of its type. RESOURCE_EXHAUSTED.
    #[error("{0}")]
    TooLarge(String),
    /// Valid, but not possible in this state (an attached upload, video without
    /// ffmpeg). FAILED_PRECONDITION.
    #[error("{0}")]
    FailedPrecondition(String),
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
            _ => Error::Kit(rookery_kit::Error::Database(e)),
        }
    }
}

impl From<PipelineError> for Error {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Unsupported(m)
            | PipelineError::TooLarge(m)
            | PipelineError::Corrupt(m) => Error::InvalidArgument(m),
            PipelineError::NoFfmpeg => Error::FailedPrecondition(e.to_string()),
            PipelineError::Internal(m) => Error::Internal(m),
        }
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
            Error::TooLarge(msg) => Status::new(Code::ResourceExhausted, msg),
            Error::FailedPrecondition(msg) => Status::new(Code::FailedPrecondition, msg),
            Error::Store(s) => {
                tracing::warn!(error = %s, "object store failed");
                Status::new(Code::Unavailable, "storage is unavailable, retry later")
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
