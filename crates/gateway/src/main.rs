//! `rookery-gateway`: the public HTTP entry point.

use anyhow::Context;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = rookery_kit::telemetry::init("gateway")?;
    let config = rookery_gateway::Config::from_env()?;
    let listener = TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding {}", config.addr))?;
    let shutdown = rookery_kit::shutdown::on_signal();
    rookery_gateway::run(listener, config, shutdown).await?;
    telemetry.shutdown();
    Ok(())
}
