//! A bare axum "hello" endpoint: the baseline the gateway's throughput is compared with
//! (same axum, tokio and release profile; no middleware, no auth, no gRPC hop).
//!
//! `cargo run --release -p rookery-gateway --example bare_hello -- 127.0.0.1:18099`

use axum::{Json, Router, routing::get};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18099".to_owned());
    let app = Router::new().route(
        "/hello",
        get(|| async { Json(json!({ "hello": "world" })) }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
