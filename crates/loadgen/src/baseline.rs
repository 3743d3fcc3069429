//! The baselines the gateway's throughput is compared with, served by the same axum,
//! tokio and tonic with the same release profile, without middleware or auth:
//! - `GET /hello`: a bare axum JSON "hello";
//! - `GET /hop`: a bare REST → gRPC hop, one unary call (a gRPC health check, which
//!   touches no database) to the service at `grpc`, answered as JSON.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Serves the baselines on `listen` until the process is stopped.
pub async fn serve(listen: SocketAddr, grpc: String) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(grpc)?
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
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
