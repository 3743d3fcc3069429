//! Baselines the gateway's throughput is compared with (same axum, tokio, tonic and
//! release profile; no middleware, no auth):
//! - `GET /hello`: a bare axum "hello" endpoint;
//! - `GET /hop`: the bare REST → gRPC hop, one unary call (a gRPC health check, which
//!   touches no database) to the service at the second argument, answered as JSON.
//!
//! `cargo run --release -p rookery-gateway --example bare_hello -- 127.0.0.1:18099 http://127.0.0.1:50051`

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use serde_json::json;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18099".to_owned());
    let target = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "http://127.0.0.1:50051".to_owned());
    let channel = tonic::transport::Endpoint::from_shared(target)?
        .tcp_nodelay(true)
        .connect_lazy();
    let app = Router::new()
        .route(
            "/hello",
            get(|| async { Json(json!({ "hello": "world" })) }),
        )
        .route(
            "/hop",
            get(|State(mut health): State<HealthClient<_>>| async move {
                match health.check(HealthCheckRequest::default()).await {
                    Ok(res) => Ok(Json(json!({ "status": res.into_inner().status }))),
                    Err(_) => Err(StatusCode::SERVICE_UNAVAILABLE),
                }
            }),
        )
        .with_state(HealthClient::new(channel));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
