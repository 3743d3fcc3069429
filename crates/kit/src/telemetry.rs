//! Logs, traces and metrics for every process.
//!
//! - Logs: `tracing` to stdout, filtered by `RUST_LOG` (default `info`), as JSON when
//!   `LOG_FORMAT=json`.
//! - Traces: exported over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, a no-op
//!   otherwise. W3C `traceparent` is the propagation format everywhere.
//! - Metrics: one Prometheus recorder per process, rendered by `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::{Error, Result};

/// Latency buckets (seconds) shared by every histogram: sub-millisecond resolution where
/// our hot paths live, up to the request timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes it.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes spans still buffered and stops the exporter (at the end of a graceful
    /// shutdown, so the last requests' traces are not lost).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "trace exporter shutdown failed");
        }
    }
}

/// Initialises logging, tracing and metrics for the process `service_name`.
pub fn init(service_name: &'static str) -> Result<Telemetry> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = crate::config::env_or("LOG_FORMAT", "text") == "json";
    let endpoint = crate::config::env_or("OTEL_EXPORTER_OTLP_ENDPOINT", "");

    let provider = if endpoint.is_empty() {
        None
    } else {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| Error::Config(format!("OTEL_EXPORTER_OTLP_ENDPOINT: {e}")))?;
        Some(
            SdkTracerProvider::builder()
                .with_resource(Resource::builder().with_service_name(service_name).build())
                .with_batch_exporter(exporter)
                .build(),
        )
    };
    // Each layer filters on its own: RUST_LOG sets how chatty the logs are, and must not
    // switch off the spans that traces are made of.
    let otel_layer = provider.as_ref().map(|p| {
        opentelemetry::global::set_tracer_provider(p.clone());
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(service_name))
            .with_filter(EnvFilter::new(crate::config::env_or(
                "OTEL_TRACES_FILTER",
                "info",
            )))
    });
    let registry = tracing_subscriber::registry().with(otel_layer);
    let installed = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_filter(filter),
            )
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_filter(filter))
            .try_init()
    };
    installed.map_err(|e| Error::Config(format!("logging: {e}")))?;
    metrics_handle();
    if !endpoint.is_empty() {
        tracing::info!(%endpoint, "exporting traces over otlp");
    }
    Ok(Telemetry { provider })
}

/// The process's Prometheus recorder, installed on first use (so in-process tests that
/// never call [`init`] still get working `/metrics`).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets(LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours just stays empty.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Writes the current span's context into `headers` as `traceparent`.
pub fn inject_context(cx: &Context, headers: &mut http::HeaderMap) {
    struct HeaderInjector<'a>(&'a mut http::HeaderMap);
    impl Injector for HeaderInjector<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(key.as_bytes()),
                http::HeaderValue::from_str(&value),
            ) {
                self.0.insert(name, value);
            }
        }
    }
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
}

/// Reads a remote parent context from `headers` (empty when there is none).
pub fn extract_context(headers: &http::HeaderMap) -> Context {
    struct HeaderExtractor<'a>(&'a http::HeaderMap);
    impl Extractor for HeaderExtractor<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(http::HeaderName::as_str).collect()
        }
    }
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// The current span's W3C `traceparent`, if it is being traced (stored with events).
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let mut headers = http::HeaderMap::new();
    inject_context(&cx, &mut headers);
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
