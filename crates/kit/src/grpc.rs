//! gRPC plumbing shared by every service and by the gateway.
//!
//! Trace context crosses each hop through exactly one client layer ([`ClientTraceLayer`],
//! which opens a client span and writes its `traceparent` into the request metadata) and
//! one server layer ([`ServerTraceLayer`], which opens a server span parented by it).
//! Both record RED metrics per method. Handlers never touch propagation by hand.

use std::{
    task::{Context as TaskContext, Poll},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use tonic::transport::{Channel, Endpoint, server::TcpIncoming};
use tower::{Layer, Service};
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
        match side {
            Side::Client => {
                // Outside a counted scope there is nothing to count.
                let _ = CALLS.try_with(|calls| calls.set(calls.get() + 1));
                inject_context(&span.context(), req.headers_mut());
            }
            // No parent in the metadata leaves the span a root: fine for direct callers.
            Side::Server => {
                let _ = span.set_parent(extract_context(req.headers()));
            }
        }
        // The clone that was polled ready is the one that must serve (tower contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let start = Instant::now();
        Box::pin(async move {
            let result = inner.call(req).instrument(span.clone()).await;
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
