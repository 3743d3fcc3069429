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

/// Server side: parents each request's span on the caller's `traceparent`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerTraceLayer;

impl<S> Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ServerTrace { inner }
    }
}

/// See [`ServerTraceLayer`].
#[derive(Clone, Debug)]
pub struct ServerTrace<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for ServerTrace<S>
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

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().trim_start_matches('/').to_owned();
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %method,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.grpc.status_code = tracing::field::Empty,
        );
        // No parent in the metadata leaves the span a root: fine for direct callers.
        let _ = span.set_parent(extract_context(req.headers()));
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
            metrics::histogram!("grpc_server_duration_seconds", "method" => method, "code" => code)
                .record(start.elapsed().as_secs_f64());
            result
        })
    }
}

/// Client side: a span per call, its context sent as `traceparent`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientTraceLayer;

impl<S> Layer<S> for ClientTraceLayer {
    type Service = ClientTrace<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ClientTrace { inner }
    }
}

/// See [`ClientTraceLayer`].
#[derive(Clone, Debug)]
pub struct ClientTrace<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for ClientTrace<S>
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
        let method = req.uri().path().trim_start_matches('/').to_owned();
        let span = tracing::info_span!(
            "grpc.client",
            otel.name = %method,
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.grpc.status_code = tracing::field::Empty,
        );
        inject_context(&span.context(), req.headers_mut());
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
            metrics::histogram!("grpc_client_duration_seconds", "method" => method, "code" => code)
                .record(start.elapsed().as_secs_f64());
            result
        })
    }
}

/// A traced channel to another service.
pub type TracedChannel = ClientTrace<Channel>;

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
