//! Postgres pools: a primary for writes and reads that must see them, and an optional
//! read replica for reads that tolerate lag.

use std::{str::FromStr, time::Duration};

use sqlx::{
    ConnectOptions,
    postgres::{PgConnectOptions, PgPool, PgPoolOptions},
};
use tokio_util::sync::CancellationToken;

use crate::{Result, config::DatabaseConfig};

/// The pools of one service.
#[derive(Clone, Debug)]
pub struct Db {
    primary: PgPool,
    replica: Option<PgPool>,
}

impl Db {
    /// Creates the pools without connecting: the process starts (and reports not ready)
    /// while Postgres is down, and connects as soon as it is back.
    pub fn connect_lazy(config: &DatabaseConfig) -> Result<Self> {
        let primary = pool(config, &config.url)?;
        let replica = config
            .read_url
            .as_deref()
            .map(|url| pool(config, url))
            .transpose()?;
        Ok(Self { primary, replica })
    }

    /// The read-write pool.
    pub fn primary(&self) -> &PgPool {
        &self.primary
    }

    /// The pool for lag-tolerant reads: the replica when configured, else the primary.
    pub fn replica(&self) -> &PgPool {
        self.replica.as_ref().unwrap_or(&self.primary)
    }

    /// Round trip to every pool (readiness).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.primary).await?;
        if let Some(replica) = &self.replica {
            sqlx::query("SELECT 1").execute(replica).await?;
        }
        Ok(())
    }

    /// Exports pool occupancy as gauges every few seconds until `shutdown`.
    pub fn spawn_pool_metrics(&self, service: &'static str, shutdown: CancellationToken) {
        let pools: Vec<(&'static str, PgPool)> = std::iter::once(("primary", self.primary.clone()))
            .chain(self.replica.clone().map(|p| ("replica", p)))
            .collect();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                for (role, pool) in &pools {
                    let size = f64::from(pool.size());
                    let idle = pool.num_idle() as f64;
                    metrics::gauge!("db_pool_connections", "service" => service, "pool" => *role, "state" => "idle").set(idle);
                    metrics::gauge!("db_pool_connections", "service" => service, "pool" => *role, "state" => "busy").set(size - idle);
                }
            }
        });
    }
}

fn pool(config: &DatabaseConfig, url: &str) -> Result<PgPool> {
    let statement_timeout = config.statement_timeout.as_millis().to_string();
    let options = PgConnectOptions::from_str(url)?
        .log_statements(log::LevelFilter::Trace)
        .log_slow_statements(log::LevelFilter::Warn, config.slow_statement)
        // A runaway statement must not hold a connection forever.
        .options([("statement_timeout", statement_timeout.as_str())]);
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .connect_lazy_with(options))
}
