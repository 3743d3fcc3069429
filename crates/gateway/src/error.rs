//! Errors as Mastodon clients expect them: `{"error": "..."}` (plus
//! `error_description` for OAuth, `details` for validation) with the right status.

use axum::{
    Json,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};
use tonic::Code;

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The `error` field.
    pub error: String,
    /// `error_description` (OAuth errors).
    pub description: Option<String>,
    /// `details` (validation errors, Mastodon's per-field format).
    pub details: Option<Value>,
    /// Extra response headers (rate limits); boxed, rare, and keeps the error small.
    pub headers: Option<Box<HeaderMap>>,
}

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            description: None,
            details: None,
            headers: None,
        }
    }

    /// 400.
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, msg)
    }

    /// 422.
    pub fn unprocessable(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, msg)
    }

    /// 404 `Record not found` (Mastodon's wording).
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Record not found")
    }

    /// 401 for a missing, unknown or revoked token.
    pub fn invalid_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "The access token is invalid")
    }

    /// An OAuth error (RFC 6749 §5.2): `invalid_client` is 401, the rest 400.
    pub fn oauth(error: &str, description: &str) -> Self {
        let status = if error == "invalid_client" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        Self {
            status,
            error: error.to_owned(),
            description: Some(description.to_owned()),
            details: None,
            headers: None,
        }
    }

    /// 422 in Mastodon's validation format from per-field errors.
    pub fn validation(errors: &[rookery_proto::users::v1::FieldError]) -> Self {
        let mut details = Map::new();
        let mut sentences = Vec::new();
        for e in errors {
            let entry = details
                .entry(e.field.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = entry {
                list.push(json!({ "error": e.code, "description": e.description }));
            }
            sentences.push(format!("{} {}", humanize(&e.field), e.description));
        }
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: format!("Validation failed: {}", sentences.join(", ")),
            description: None,
            details: Some(Value::Object(details)),
            headers: None,
        }
    }
}

/// `display_name` → `Display name` (how Rails names attributes in messages).
fn humanize(field: &str) -> String {
    let text = field.replace('_', " ");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("error".into(), Value::String(self.error));
        if let Some(d) = self.description {
            body.insert("error_description".into(), Value::String(d));
        }
        if let Some(d) = self.details {
            body.insert("details".into(), d);
        }
        let mut response = (self.status, Json(Value::Object(body))).into_response();
        if let Some(headers) = self.headers {
            response.headers_mut().extend(*headers);
        }
        response
    }
}

/// The one mapping from a downstream gRPC status to an HTTP answer (googleapis
/// `rpc/code.proto`). Internal details never reach the client.
impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        let (status, msg) = match s.code() {
            Code::InvalidArgument | Code::OutOfRange => {
                (StatusCode::UNPROCESSABLE_ENTITY, s.message().to_owned())
            }
            Code::FailedPrecondition => (StatusCode::UNPROCESSABLE_ENTITY, s.message().to_owned()),
            Code::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "The access token is invalid".to_owned(),
            ),
            Code::PermissionDenied => (
                StatusCode::FORBIDDEN,
                "This action is not allowed".to_owned(),
            ),
            Code::NotFound => (StatusCode::NOT_FOUND, "Record not found".to_owned()),
            Code::AlreadyExists => (StatusCode::CONFLICT, s.message().to_owned()),
            Code::ResourceExhausted => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests".to_owned(),
            ),
            Code::DeadlineExceeded => (
                StatusCode::GATEWAY_TIMEOUT,
                "The request took too long, retry later".to_owned(),
            ),
            // Aborted: lost a race with a concurrent change; the same request can succeed.
            // Unknown: what tonic reports for a connection that broke mid-call (reset,
            // closed); our services never answer with it, they map their own failures.
            Code::Unavailable | Code::Cancelled | Code::Aborted | Code::Unknown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service temporarily unavailable, retry later".to_owned(),
            ),
            _ => {
                tracing::error!(code = ?s.code(), message = s.message(), "downstream internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error".to_owned(),
                )
            }
        };
        if status.is_server_error() && status != StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!(code = ?s.code(), message = s.message(), "downstream unavailable");
        }
        let mut error = ApiError::new(status, msg);
        if s.code() == Code::ResourceExhausted {
            error.headers = Some(Box::new(rate_limit_headers(s.metadata(), true)));
        }
        error
    }
}

/// Mastodon's rate-limit headers from gRPC metadata (a RESOURCE_EXHAUSTED status's, or a
/// successful reply's): `X-RateLimit-Limit`, `-Remaining`, `-Reset` (ISO 8601), and with
/// `retry_after` also `Retry-After` (seconds).
pub fn rate_limit_headers(metadata: &tonic::metadata::MetadataMap, retry_after: bool) -> HeaderMap {
    let number = |key: &str| {
        metadata
            .get(key)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    match (
        number("x-ratelimit-limit"),
        number("x-ratelimit-remaining"),
        number("x-ratelimit-reset"),
    ) {
        (Some(limit), Some(remaining), Some(reset)) => {
            limit_headers(limit, remaining, reset, retry_after)
        }
        _ => HeaderMap::new(),
    }
}

/// `X-RateLimit-Limit`, `-Remaining`, `-Reset` (ISO 8601, as Mastodon sends it) for a
/// window ending at `reset` (Unix seconds), and with `retry_after` also `Retry-After`
/// (seconds, at least 1). The one place both the gateway's and the services' limits are
/// rendered.
pub fn limit_headers(limit: u64, remaining: u64, reset: u64, retry_after: bool) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    if let Some(at) = chrono::DateTime::from_timestamp(reset as i64, 0)
        && let Ok(v) =
            HeaderValue::from_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    {
        headers.insert("x-ratelimit-reset", v);
    }
    if retry_after {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        headers.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from(reset.saturating_sub(now).max(1)),
        );
    }
    headers
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
