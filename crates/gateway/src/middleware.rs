//! Cross-cutting HTTP behaviour: request ids, tracing and RED metrics per route,
//! Mastodon-shaped error bodies for every 4xx/5xx whoever produced it, request deadlines
//! and load shedding.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http_body_util::BodyExt;
use tracing::Instrument;

use crate::error::ApiError;

/// Opens the request's root span (named after the route, not the raw path, to keep
/// cardinality bounded) and records latency per method, route and status.
pub async fn observe(matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = matched
        .as_ref()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let span = tracing::info_span!(
        "http.server",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        request_id = %request_id,
    );
    let (response, calls) =
        rookery_kit::grpc::count_calls(next.run(req).instrument(span.clone())).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    let method = method_label(&method);
    // Calls to other services per request = this counter / the histogram's count.
    if calls > 0 {
        metrics::counter!(
            "gateway_downstream_calls_total",
            "method" => method.clone(),
            "route" => route.clone(),
        )
        .increment(calls);
    }
    metrics::histogram!(
        "http_server_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => status_label(status),
    )
    .record(start.elapsed().as_secs_f64());
    response
}

/// Gives the request its budget: the gRPC calls it makes carry the time left as their
/// deadline, so downstream work stops when nobody waits for the answer any more.
pub async fn deadline(State(budget): State<Duration>, req: Request, next: Next) -> Response {
    rookery_kit::grpc::with_deadline(Instant::now() + budget, next.run(req)).await
}

/// Refuses a request at once (503, `Retry-After`) when `in_flight` has no permit left.
pub async fn shed(
    State(in_flight): State<Arc<tokio::sync::Semaphore>>,
    req: Request,
    next: Next,
) -> Response {
    match in_flight.try_acquire_owned() {
        Ok(_permit) => next.run(req).await,
        Err(_) => {
            metrics::counter!("gateway_shed_total").increment(1);
            let mut response = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is over capacity, retry later",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

/// Metric labels without an allocation per request for the common cases.
fn method_label(method: &http::Method) -> std::borrow::Cow<'static, str> {
    match *method {
        http::Method::GET => "GET".into(),
        http::Method::POST => "POST".into(),
        http::Method::PATCH => "PATCH".into(),
        http::Method::PUT => "PUT".into(),
        http::Method::DELETE => "DELETE".into(),
        ref other => other.to_string().into(),
    }
}

fn status_label(status: StatusCode) -> std::borrow::Cow<'static, str> {
    match status.as_u16() {
        200 => "200".into(),
        201 => "201".into(),
        204 => "204".into(),
        other => other.to_string().into(),
    }
}

/// Largest body of a non-JSON error worth turning into a message.
const MAX_ERROR_TEXT: usize = 4096;

/// Rewrites error responses that are not JSON (axum's extractor rejections, the body
/// limit's 413, the timeout's 503, 405s) into `{"error": "..."}`, keeping their message.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // A 503 also tells clients when to come back.
    if status == StatusCode::SERVICE_UNAVAILABLE
        && !response.headers().contains_key(header::RETRY_AFTER)
    {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match http_body_util::Limited::new(body, MAX_ERROR_TEXT)
        .collect()
        .await
    {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes())
            .trim()
            .to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() || text.starts_with('<') {
        default_message(status).to_owned()
    } else {
        text
    };
    let mut rewritten = ApiError::new(status, message).into_response();
    // Keep headers such as Allow (405) or Retry-After (503).
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

fn default_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "Record not found",
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "Request body too large",
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => "The request took too long",
        StatusCode::SERVICE_UNAVAILABLE => "Service temporarily unavailable, retry later",
        s => s.canonical_reason().unwrap_or("Error"),
    }
}

/// The fallback: unknown routes get Mastodon's JSON 404.
pub async fn not_found() -> Response {
    ApiError::not_found().into_response()
}
