//! gRPC plumbing shared by every service and by the gateway.
//!
//! Trace context crosses each hop through exactly one client layer ([`ClientTraceLayer`],
//! which opens a client span and writes its `traceparent` into the request metadata) and
//! one server layer ([`ServerTraceLayer`], which opens a server span parented by it).
//! Both record RED metrics per method. Handlers never touch propagation by hand.
//!
//! Deadlines cross hops the same way. The gateway gives each request a budget
//! ([`with_deadline`]); every call made within it carries what is left as `grpc-timeout`
//! (and is cut off client-side when it runs out), and the callee's server layer makes
//! that the deadline of its own outgoing calls. A call never outlives the request that
//! caused it, however many hops down. [`idempotent`] retries reads, boundedly.

use std::{
    sync::LazyLock,
    task::{Context as TaskContext, Poll},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use tonic::transport::{Channel, Endpoint, server::TcpIncoming};
use tower::{
    Layer, Service,
    retry::budget::{Budget, TpsBudget},
};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::telemetry::{extract_context, inject_context};

/// The gRPC status of a response, as a label: `OK` unless the server put an error
/// status in the headers (tonic sends failures of unary calls as trailers-only).
fn status_label(headers: &http::HeaderMap) -> String {
    match headers.get("grpc-status") {
        None => "Ok".to_owned(),
        Some(v) => format!("{:?}", tonic::Code::from_bytes(v.as_bytes())),
    }
}

/// Which end of a call a [`Trace`] service sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Opens a client span and sends its context as `traceparent`.
    Client,
    /// Opens a server span parented by the caller's `traceparent`.
    Server,
}

impl Side {
    fn kind(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }

    fn metric(self) -> &'static str {
        match self {
            Side::Client => "grpc_client_duration_seconds",
            Side::Server => "grpc_server_duration_seconds",
        }
    }
}

/// Server side: parents each request's span on the caller's `traceparent`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerTraceLayer;

impl<S> Layer<S> for ServerTraceLayer {
    type Service = Trace<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Trace {
            inner,
            side: Side::Server,
        }
    }
}

/// Client side: a span per call, its context sent as `traceparent`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientTraceLayer;

impl<S> Layer<S> for ClientTraceLayer {
    type Service = Trace<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Trace {
            inner,
            side: Side::Client,
        }
    }
}

/// A span and RED metrics around every call, on either side of the hop.
#[derive(Clone, Debug)]
pub struct Trace<S> {
    inner: S,
    side: Side,
}

impl<S, B, RB> Service<http::Request<B>> for Trace<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let side = self.side;
        let method = req.uri().path().trim_start_matches('/').to_owned();
        let span = tracing::info_span!(
            "grpc",
            otel.name = %method,
            otel.kind = side.kind(),
            rpc.system = "grpc",
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let mut deadline = None;
        match side {
            Side::Client => {
                // Outside a counted scope there is nothing to count.
                let _ = CALLS.try_with(|calls| calls.set(calls.get() + 1));
                inject_context(&span.context(), req.headers_mut());
                if let Some(left) = remaining() {
                    // The callee learns the budget (and stops working when it is
                    // spent); this side stops waiting then too, even on a peer that
                    // never answers.
                    if let Some(v) = encode_timeout(left) {
                        req.headers_mut().insert(GRPC_TIMEOUT, v);
                    }
                    deadline = Some(left);
                }
            }
            // No parent in the metadata leaves the span a root: fine for direct callers.
            Side::Server => {
                let _ = span.set_parent(extract_context(req.headers()));
                deadline = req.headers().get(GRPC_TIMEOUT).and_then(decode_timeout);
            }
        }
        // The clone that was polled ready is the one that must serve (tower contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let start = Instant::now();
        Box::pin(async move {
            let call = inner.call(req).instrument(span.clone());
            let result = match (side, deadline) {
                (_, None) => call.await,
                (Side::Client, Some(left)) => tokio::time::timeout(left, call)
                    .await
                    .unwrap_or_else(|_| Ok(deadline_exceeded())),
                // The server enforces the caller's timeout itself (tonic); this only
                // hands the remaining budget on to the handler's own calls.
                (Side::Server, Some(left)) => DEADLINE.scope(start + left, call).await,
            };
            let code = match &result {
                Ok(res) => status_label(res.headers()),
                Err(_) => "Transport".to_owned(),
            };
            span.record("rpc.grpc.status_code", code.as_str());
            metrics::histogram!(side.metric(), "method" => method, "code" => code)
                .record(start.elapsed().as_secs_f64());
            result
        })
    }
}

const GRPC_TIMEOUT: &str = "grpc-timeout";

/// A trailers-only DEADLINE_EXCEEDED answer, which tonic turns into that status: what
/// the caller sees when the budget ran out before the callee answered.
fn deadline_exceeded<RB: Default>() -> http::Response<RB> {
    let mut res = http::Response::new(RB::default());
    let headers = res.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert(
        "grpc-status",
        http::HeaderValue::from(tonic::Code::DeadlineExceeded as i32),
    );
    headers.insert(
        "grpc-message",
        http::HeaderValue::from_static("request%20budget%20spent"),
    );
    res
}

/// `grpc-timeout` for `d` (gRPC over HTTP/2: at most 8 digits and a unit); milliseconds
/// are precise enough for budgets and fit 27 hours. A spent budget still sends 1 ms so
/// the callee fails at once rather than running without a deadline.
fn encode_timeout(d: Duration) -> Option<http::HeaderValue> {
    let ms = d.as_millis().clamp(1, 99_999_999);
    http::HeaderValue::from_str(&format!("{ms}m")).ok()
}

/// Parses `grpc-timeout` (any unit of the spec); `None` when malformed.
fn decode_timeout(v: &http::HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?;
    let (value, unit) = s.split_at(s.len().checked_sub(1)?);
    if value.is_empty() || value.len() > 8 {
        return None;
    }
    let n: u64 = value.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

tokio::task_local! {
    /// When the work of the current task must be done by (see [`with_deadline`]).
    static DEADLINE: Instant;
}

/// Runs `fut` with a deadline: every gRPC call it makes through a traced channel carries
/// the time left (an enclosing, earlier deadline still wins).
pub async fn with_deadline<F: Future>(deadline: Instant, fut: F) -> F::Output {
    let deadline = DEADLINE
        .try_with(|outer| (*outer).min(deadline))
        .unwrap_or(deadline);
    DEADLINE.scope(deadline, fut).await
}

/// Time left before the current task's deadline, if it has one.
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|d| d.saturating_duration_since(Instant::now()))
        .ok()
}

/// Attempts of an idempotent call, the first included.
const MAX_ATTEMPTS: u32 = 3;

/// Retries are at most 20% of calls (plus a floor of 10 per second): when a service is
/// down for everyone, retrying every call would triple the load on its way back up.
static RETRY_BUDGET: LazyLock<TpsBudget> =
    LazyLock::new(|| TpsBudget::new(Duration::from_secs(10), 10, 0.2));

/// Runs an idempotent call (a read), retrying it when the callee was unavailable: at
/// most [`MAX_ATTEMPTS`] attempts, with jittered backoff, within the retry budget and
/// never past the deadline. Other failures (not found, deadline exceeded, ...) are
/// final. Writes must not use this: a write that timed out may have happened.
pub async fn idempotent<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    RETRY_BUDGET.deposit();
    let mut attempt = 1;
    loop {
        let status = match call().await {
            Err(status) if status.code() == tonic::Code::Unavailable => status,
            done => return done,
        };
        let backoff = backoff(attempt);
        if attempt >= MAX_ATTEMPTS
            || remaining().is_some_and(|left| left <= backoff)
            || !RETRY_BUDGET.withdraw()
        {
            return Err(status);
        }
        metrics::counter!("grpc_client_retries_total").increment(1);
        tokio::time::sleep(backoff).await;
        attempt += 1;
    }
}

/// 10 ms, then 20 ms, ... with "full jitter" (uniform in [half, whole]) so that callers
/// failing together do not retry in lockstep.
fn backoff(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let base = 10u64 << attempt.saturating_sub(1).min(6);
    // A fresh RandomState is randomly keyed: a hash of nothing is a cheap random number,
    // plenty for jitter (no RNG crate needed for it).
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(base / 2 + random % (base / 2 + 1))
}

tokio::task_local! {
    /// Outgoing calls made by the current task (see [`count_calls`]).
    static CALLS: std::cell::Cell<u64>;
}

/// Runs `fut` and counts the gRPC calls it makes through traced channels (the gateway
/// reports calls per request: the "one batched call per dependency" budget, measured).
pub async fn count_calls<F: Future>(fut: F) -> (F::Output, u64) {
    CALLS
        .scope(std::cell::Cell::new(0), async {
            let out = fut.await;
            (out, CALLS.with(std::cell::Cell::get))
        })
        .await
}

/// A traced channel to another service.
pub type TracedChannel = Trace<Channel>;

/// Connects lazily to `url` (the caller starts even when the service is not up yet) with
/// bounded connect and call times, and wraps the channel in [`ClientTraceLayer`].
pub fn channel(
    url: &str,
    call_timeout: Duration,
) -> Result<TracedChannel, tonic::transport::Error> {
    let channel = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(call_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .connect_lazy();
    Ok(ClientTraceLayer.layer(channel))
}

/// Accepts gRPC connections on an already bound listener (tests bind port 0).
pub fn incoming(listener: tokio::net::TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Serves one service's gRPC API (with gRPC health for it) on `grpc` and the ops
/// endpoints (`/health`, `/ready` checking Postgres, `/metrics`) on `http`, until
/// `shutdown`. Then readiness and health flip at once, so load balancers stop sending,
/// and in-flight calls drain before this returns.
pub async fn serve<S>(
    name: &'static str,
    service: S,
    db: crate::db::Db,
    grpc: tokio::net::TcpListener,
    http: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
) -> crate::Result<()>
where
    S: Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let serve_error = |e: &dyn std::fmt::Display| crate::Error::Serve(format!("{name}: {e}"));
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<S>().await;
    let readiness = crate::ops::Readiness::new(std::sync::Arc::new(move || {
        let db = db.clone();
        Box::pin(async move { db.ping().await.map_err(|e| format!("postgres: {e}")) })
    }));
    let (grpc_addr, http_addr) = (
        grpc.local_addr().map_err(|e| serve_error(&e))?,
        http.local_addr().map_err(|e| serve_error(&e))?,
    );
    tracing::info!(grpc = %grpc_addr, http = %http_addr, "{name} service listening");
    let ops = crate::ops::router(readiness.clone());
    let http_shutdown = shutdown.clone();
    let http_server = tokio::spawn(async move {
        axum::serve(http, ops)
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
            .await
    });
    let drain = async move {
        shutdown.cancelled().await;
        readiness.drain();
        health_reporter.set_not_serving::<S>().await;
    };
    tonic::transport::Server::builder()
        // Trace context and RED metrics for every RPC, health checks included.
        .layer(ServerTraceLayer)
        .add_service(health_service)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming(grpc), drain)
        .await
        .map_err(|e| serve_error(&e))?;
    let _ = http_server.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn timeouts_round_trip_and_malformed_ones_are_ignored() {
        for ms in [1, 250, 10_000, 99_999_999] {
            let v = encode_timeout(Duration::from_millis(ms)).unwrap();
            assert_eq!(decode_timeout(&v), Some(Duration::from_millis(ms)));
        }
        // A spent budget is still a deadline, the shortest one.
        assert_eq!(encode_timeout(Duration::ZERO).unwrap(), "1m");
        for (v, d) in [
            ("2S", Duration::from_secs(2)),
            ("3M", Duration::from_secs(180)),
            ("1H", Duration::from_secs(3600)),
            ("1500u", Duration::from_micros(1500)),
            ("7n", Duration::from_nanos(7)),
        ] {
            assert_eq!(decode_timeout(&http::HeaderValue::from_static(v)), Some(d));
        }
        for bad in ["", "m", "5", "5x", "123456789m", "-5m", "5 m"] {
            assert_eq!(
                decode_timeout(&http::HeaderValue::from_static(bad)),
                None,
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn the_earlier_of_nested_deadlines_wins() {
        assert_eq!(remaining(), None);
        let soon = Instant::now() + Duration::from_millis(200);
        let later = Instant::now() + Duration::from_secs(60);
        let left = with_deadline(soon, with_deadline(later, async { remaining() })).await;
        assert!(left.unwrap() <= Duration::from_millis(200));
        let left = with_deadline(later, with_deadline(soon, async { remaining() })).await;
        assert!(left.unwrap() <= Duration::from_millis(200));
    }

    async fn attempts_until(result: impl Fn(u32) -> Result<u32, tonic::Status>) -> (u32, bool) {
        let calls = AtomicU32::new(0);
        let out = idempotent(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let r = result(n);
            async move { r }
        })
        .await;
        (calls.load(Ordering::SeqCst), out.is_ok())
    }

    #[tokio::test]
    async fn idempotent_calls_retry_unavailable_at_most_three_times() {
        // Recovers on the second attempt.
        let (calls, ok) = attempts_until(|n| {
            if n < 2 {
                Err(tonic::Status::unavailable("down"))
            } else {
                Ok(n)
            }
        })
        .await;
        assert_eq!((calls, ok), (2, true));
        // Never recovers: three attempts, then the last error.
        let (calls, ok) = attempts_until(|_| Err(tonic::Status::unavailable("down"))).await;
        assert_eq!((calls, ok), (3, false));
        // Final answers are not retried.
        for status in [
            tonic::Status::not_found("gone"),
            tonic::Status::deadline_exceeded("slow"),
            tonic::Status::invalid_argument("bad"),
        ] {
            let (calls, ok) = attempts_until(|_| Err(status.clone())).await;
            assert_eq!((calls, ok), (1, false));
        }
    }

    #[tokio::test]
    async fn no_retry_outlives_the_deadline() {
        let deadline = Instant::now() + Duration::from_millis(2);
        let (calls, ok) = with_deadline(
            deadline,
            attempts_until(|_| Err(tonic::Status::unavailable("down"))),
        )
        .await;
        // The first backoff (5-10 ms) does not fit into 2 ms.
        assert_eq!((calls, ok), (1, false));
    }

    type Req = http::Request<()>;
    type Res = http::Response<String>;

    /// Calls `service` once (as a channel's caller would) within `budget`, if any.
    async fn call_within<S>(service: S, budget: Option<Duration>) -> Res
    where
        S: Service<Req, Response = Res, Error = std::convert::Infallible> + Clone + Send + 'static,
        S::Future: Send,
    {
        use tower::ServiceExt;
        let req = http::Request::builder()
            .uri("/pkg.Svc/Method")
            .body(())
            .unwrap();
        let call = service.oneshot(req);
        let res = match budget {
            Some(b) => with_deadline(Instant::now() + b, call).await,
            None => call.await,
        };
        res.unwrap()
    }

    #[tokio::test]
    async fn calls_carry_the_budget_left_and_servers_hand_it_on() {
        // Client side: the header says what is left of the caller's budget.
        let echo = tower::service_fn(|req: Req| async move {
            let sent = req.headers().get(GRPC_TIMEOUT).cloned();
            let body = sent
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            Ok::<_, std::convert::Infallible>(http::Response::new(body))
        });
        let res = call_within(
            ClientTraceLayer.layer(echo),
            Some(Duration::from_millis(800)),
        )
        .await;
        let sent = decode_timeout(&http::HeaderValue::from_str(res.body()).unwrap()).unwrap();
        assert!(
            sent <= Duration::from_millis(800) && sent > Duration::from_millis(500),
            "{sent:?}"
        );
        // No budget, no header: the callee applies its own limits.
        let res = call_within(ClientTraceLayer.layer(echo), None).await;
        assert_eq!(res.body(), "");

        // Server side: the handler's own calls inherit the caller's deadline.
        let handler = tower::service_fn(|_req: Req| async move {
            let left = remaining()
                .map(|d| d.as_millis().to_string())
                .unwrap_or_default();
            Ok::<_, std::convert::Infallible>(http::Response::new(left))
        });
        let mut req = http::Request::builder()
            .uri("/pkg.Svc/Method")
            .body(())
            .unwrap();
        req.headers_mut()
            .insert(GRPC_TIMEOUT, http::HeaderValue::from_static("300m"));
        let res = {
            use tower::ServiceExt;
            ServerTraceLayer.layer(handler).oneshot(req).await.unwrap()
        };
        let left: u64 = res.body().parse().unwrap();
        assert!((200..=300).contains(&left), "{left}");
    }

    #[tokio::test]
    async fn a_callee_that_never_answers_is_given_up_on_at_the_deadline() {
        let hang = tower::service_fn(|_req: Req| async move {
            std::future::pending::<()>().await;
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        });
        let start = Instant::now();
        let res = call_within(
            ClientTraceLayer.layer(hang),
            Some(Duration::from_millis(100)),
        )
        .await;
        assert!(start.elapsed() < Duration::from_secs(2));
        // What tonic reads as a trailers-only DEADLINE_EXCEEDED.
        assert_eq!(res.headers()["grpc-status"], "4");
        assert_eq!(
            res.headers()[http::header::CONTENT_TYPE],
            "application/grpc"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter() {
        for _ in 0..100 {
            let first = backoff(1);
            assert!((Duration::from_millis(5)..=Duration::from_millis(10)).contains(&first));
            let second = backoff(2);
            assert!((Duration::from_millis(10)..=Duration::from_millis(20)).contains(&second));
        }
    }
}
