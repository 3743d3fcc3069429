//! `rookery-loadgen seed | run | bench`: see `docs/PERFORMANCE.md`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rookery_loadgen::bench::{self, Bench, BenchConfig};
use rookery_loadgen::client::{self, RunConfig};
use rookery_loadgen::dataset::{Dataset, SeedConfig};
use rookery_loadgen::rate::Pace;
use rookery_loadgen::seed::{self, Targets};
use rookery_loadgen::workload::{DEFAULT_MIX, Mix, Workload};

#[derive(Parser)]
#[command(about = "Rookery's load harness: seed an instance, drive it, report what it did")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Bulk-loads a deterministic instance into a fresh database and writes its dataset file.
    Seed(SeedArgs),
    /// One open- or closed-loop run of a request mix; prints the per-endpoint table.
    Run(RunArgs),
    /// The scenarios of `make bench`; prints the report.
    Bench(BenchArgs),
    /// Serves the bare baselines: `/hello` (axum) and `/hop` (one gRPC health call to GRPC).
    Baseline {
        #[arg(long, default_value = "127.0.0.1:18099")]
        listen: SocketAddr,
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        grpc: String,
    },
}

#[derive(Args)]
struct SeedArgs {
    #[arg(long)]
    users_db: String,
    #[arg(long)]
    timeline_db: String,
    #[arg(long, default_value = "127.0.0.1:8080")]
    gateway: SocketAddr,
    /// The instance's domain and base URL, as the services are configured.
    #[arg(long)]
    domain: String,
    #[arg(long)]
    base_url: String,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    #[arg(long, default_value_t = 20)]
    mean_follows: usize,
    #[arg(long, default_value_t = 100_000)]
    statuses: usize,
    #[arg(long, default_value_t = 200_000)]
    favourites: usize,
    #[arg(long, default_value_t = 24)]
    media: usize,
    #[arg(long, default_value_t = 2_000)]
    api_actions: usize,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct Common {
    /// The dataset file `seed` wrote.
    #[arg(long)]
    dataset: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    gateway: SocketAddr,
    /// Relative weights, e.g. `home=60,account=30,post=10`.
    #[arg(long, default_value = DEFAULT_MIX)]
    mix: Mix,
    /// Scenario 1's arrival rate (requests/s); 0 runs closed loop (`run` only).
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    #[arg(long, default_value_t = 1_000)]
    connections: usize,
    /// Seconds.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    common: Common,
    /// `rookery-loadgen baseline`, serving /hello and /hop.
    #[arg(long)]
    baseline: SocketAddr,
    /// `name=host:port` of a process's /metrics (repeat per process).
    #[arg(long = "metrics", value_parser = parse_named_addr)]
    metrics: Vec<(String, SocketAddr)>,
    #[arg(long)]
    pidfile: PathBuf,
    /// Superuser URL (pg_stat_statements) and the stack's database name.
    #[arg(long)]
    admin_db: String,
    #[arg(long)]
    database: String,
    #[arg(long)]
    redis_url: String,
    #[arg(long)]
    redis_prefix: String,
    #[arg(long, default_value_t = 1_000.0)]
    crowd_rate: f64,
    #[arg(long, default_value_t = 10_000)]
    crowd_connections: usize,
    /// Seconds per endpoint alone.
    #[arg(long, default_value_t = 5)]
    profile_duration: u64,
    /// Seconds per saturation step.
    #[arg(long, default_value_t = 10)]
    step_duration: u64,
    #[arg(long)]
    stop_cmd: Option<String>,
    #[arg(long)]
    start_cmd: Option<String>,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "profile,mixed,crowd,saturation,cold"
    )]
    scenarios: Vec<String>,
    /// Fail (exit 1) when a request failed, an endpoint of the mix got no request or a
    /// fan-out did not complete.
    #[arg(long)]
    check: bool,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_named_addr(s: &str) -> anyhow::Result<(String, SocketAddr)> {
    let (name, addr) = s.split_once('=').context("expected name=host:port")?;
    Ok((name.to_owned(), addr.parse()?))
}

fn load(path: &PathBuf) -> anyhow::Result<Arc<Dataset>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Arc::new(serde_json::from_slice(&bytes)?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Seed(a) => {
            let config = SeedConfig {
                seed: a.seed,
                accounts: a.accounts,
                mean_follows: a.mean_follows,
                statuses: a.statuses,
                favourites: a.favourites,
                media: a.media,
                api_actions: a.api_actions,
                ..SeedConfig::default()
            };
            let targets = Targets {
                users_db: a.users_db,
                timeline_db: a.timeline_db,
                gateway: a.gateway,
                domain: a.domain,
                base_url: a.base_url,
            };
            let data = seed::seed(&config, &targets).await?;
            std::fs::write(&a.out, serde_json::to_vec(&data)?)?;
            eprintln!("[loadgen] dataset written to {}", a.out.display());
        }
        Command::Run(RunArgs { common: c }) => {
            let data = load(&c.dataset)?;
            let png = rookery_loadgen::workload::png(7)?;
            let pace = if c.rate > 0.0 {
                Pace::Open { rate: c.rate }
            } else {
                Pace::Closed
            };
            let report = client::run(
                RunConfig {
                    target: c.gateway,
                    connections: c.connections,
                    pace,
                    duration: Duration::from_secs(c.duration),
                    timeout: Duration::from_secs(10),
                    max_requests: 50_000_000,
                    seed: c.seed,
                },
                Arc::new(Workload::new(data, c.mix, &png)?),
            )
            .await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "| endpoint | requests | errors | req/s | p50 ms | p95 ms | p99 ms | max ms |"
            )?;
            writeln!(out, "|---|---|---|---|---|---|---|---|")?;
            let rows = report.recorder.summaries(report.duration);
            for s in rows.iter().chain([&report.recorder.total(report.duration)]) {
                writeln!(
                    out,
                    "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} |",
                    s.endpoint,
                    s.requests,
                    s.errors,
                    s.throughput,
                    s.p50_ms,
                    s.p95_ms,
                    s.p99_ms,
                    s.max_ms
                )?;
            }
            writeln!(
                out,
                "\nclient send lag p99 {:.1} ms",
                report.recorder.send_lag_p99_ms()
            )?;
        }
        Command::Baseline { listen, grpc } => {
            rookery_loadgen::baseline::serve(listen, grpc).await?
        }
        Command::Bench(a) => {
            let c = a.common;
            let data = load(&c.dataset)?;
            let config = BenchConfig {
                gateway: c.gateway,
                baseline: a.baseline,
                metrics: a.metrics,
                pidfile: a.pidfile,
                admin_db: a.admin_db,
                database: a.database,
                redis_url: a.redis_url,
                redis_prefix: a.redis_prefix,
                mix: c.mix,
                rate: c.rate,
                connections: c.connections,
                crowd_rate: a.crowd_rate,
                crowd_connections: a.crowd_connections,
                duration: Duration::from_secs(c.duration),
                profile_duration: Duration::from_secs(a.profile_duration),
                step_duration: Duration::from_secs(a.step_duration),
                stop_cmd: a.stop_cmd,
                start_cmd: a.start_cmd,
                scenarios: a.scenarios,
                seed: c.seed,
            };
            let mix = config.mix.clone();
            let report = Bench::new(config, data).await?.run().await;
            if let Some(path) = a.json {
                std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
            }
            write!(std::io::stdout().lock(), "{}", bench::render(&report))?;
            let problems = bench::problems(&report, &mix);
            if a.check && !problems.is_empty() {
                anyhow::bail!("the run is not clean:\n  {}", problems.join("\n  "));
            }
        }
    }
    Ok(())
}
