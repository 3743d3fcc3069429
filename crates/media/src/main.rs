//! `rookery-media`: serve (default) or `migrate`.

use anyhow::Context;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = rookery_kit::telemetry::init("media")?;
    let config = rookery_media::Config::from_env()?;
    match std::env::args().nth(1).as_deref() {
        Some("migrate") => {
            rookery_media::migrate(&config).await?;
            tracing::info!("media migrations applied");
        }
        None | Some("serve") => {
            let grpc = TcpListener::bind(config.grpc_addr)
                .await
                .with_context(|| format!("binding {}", config.grpc_addr))?;
            let http = TcpListener::bind(config.http_addr)
                .await
                .with_context(|| format!("binding {}", config.http_addr))?;
            let shutdown = rookery_kit::shutdown::on_signal();
            rookery_media::run(grpc, http, config, shutdown).await?;
        }
        Some(other) => anyhow::bail!("unknown command {other:?}: use `serve` or `migrate`"),
    }
    telemetry.shutdown();
    Ok(())
}
