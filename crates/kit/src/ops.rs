//! The operational endpoints every process serves: `/health` (liveness: the process
//! runs), `/ready` (readiness: it can do its work now) and `/metrics` (Prometheus).

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};

/// A readiness probe: `Ok` when ready, or why not.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Readiness state shared by the ops endpoints and the shutdown path.
#[derive(Clone)]
pub struct Readiness {
    draining: Arc<AtomicBool>,
    check: ReadyCheck,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("draining", &self.draining)
            .finish()
    }
}

impl Readiness {
    /// Readiness decided by `check`.
    pub fn new(check: ReadyCheck) -> Self {
        Self {
            draining: Arc::new(AtomicBool::new(false)),
            check,
        }
    }

    /// Marks the process as shutting down: `/ready` fails at once, so load balancers stop
    /// sending new work while in-flight requests drain.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Runs the check (unless draining).
    pub async fn check(&self) -> Result<(), String> {
        if self.draining.load(Ordering::SeqCst) {
            return Err("shutting down".to_owned());
        }
        (self.check)().await
    }
}

/// `/health`, `/ready` and `/metrics`, to be merged into a process's HTTP router.
pub fn router<S: Clone + Send + Sync + 'static>(readiness: Readiness) -> Router<S> {
    // Install the recorder now: metrics recorded before it exists are lost.
    crate::telemetry::metrics_handle();
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(readiness)
}

async fn ready(State(readiness): State<Readiness>) -> impl IntoResponse {
    match readiness.check().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(ReadyBody {
                status: "ok",
                reason: None,
            }),
        ),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(ReadyBody {
                    status: "unavailable",
                    reason: Some(reason),
                }),
            )
        }
    }
}

#[derive(serde::Serialize)]
struct ReadyBody {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

async fn metrics() -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::metrics_handle().render(),
    )
}
