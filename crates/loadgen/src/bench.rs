//! The scenarios of `make bench` and the report they print.
//!
//! Every number comes from this run: latencies from the harness's histograms, cache hits
//! and RPC counts from the processes' `/metrics`, statements from `pg_stat_statements`,
//! CPU and memory from `/proc`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http::Method;
use rand::rngs::Xoshiro256PlusPlus;
use redis::aio::MultiplexedConnection;
use serde::Serialize;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::api::Api;
use crate::client::{self, RunConfig, RunReport, Source};
use crate::dataset::Dataset;
use crate::probe::{self, Metrics, ProcStat};
use crate::rate::Pace;
use crate::stats::{Recorder, Summary};
use crate::store;
use crate::workload::{Endpoint, Mix, Req, Workload};

/// What `make bench` measures, and where.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub gateway: SocketAddr,
    /// The bare axum example serving `/hello` and `/hop`.
    pub baseline: SocketAddr,
    /// `/metrics` of each process, by name ("gateway", "users", ...).
    pub metrics: Vec<(String, SocketAddr)>,
    /// The stack's pid file (one pid per line).
    pub pidfile: PathBuf,
    /// A superuser URL (for `pg_stat_statements`) and the stack's database name.
    pub admin_db: String,
    pub database: String,
    pub redis_url: String,
    pub redis_prefix: String,
    pub mix: Mix,
    /// Scenario 1: arrival rate and connections.
    pub rate: f64,
    pub connections: usize,
    /// Scenario 2: arrival rate and connections.
    pub crowd_rate: f64,
    pub crowd_connections: usize,
    pub duration: Duration,
    /// Each endpoint alone at full speed (statements, RPCs, CPU per request).
    pub profile_duration: Duration,
    /// Steps of the saturation search.
    pub step_duration: Duration,
    /// Commands stopping and starting the stack's processes (cold start); the scenario is
    /// skipped without them.
    pub stop_cmd: Option<String>,
    pub start_cmd: Option<String>,
    /// Which scenarios run: any of "profile", "mixed", "crowd", "saturation", "cold".
    pub scenarios: Vec<String>,
    pub seed: u64,
}

/// Everything one `make bench` measured.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub prime: Option<PhaseTotals>,
    pub profile: Vec<Profile>,
    pub mixed: Option<Scenario>,
    pub fanout: Vec<Fanout>,
    pub crowd: Option<Scenario>,
    pub saturation: Vec<Step>,
    pub cold: Option<Cold>,
    /// Scenarios that could not complete, with the reason.
    pub failures: Vec<String>,
}

fn report_failure(name: &str, e: anyhow::Error) -> String {
    format!("{name}: {e:#}")
}

#[derive(Debug, Default, Serialize)]
pub struct PhaseTotals {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
}

/// One endpoint alone, closed loop.
#[derive(Debug, Serialize)]
pub struct Profile {
    pub endpoint: String,
    pub summary: Summary,
    pub statements_per_request: Option<f64>,
    /// The most frequent statements, per request.
    pub top_statements: Vec<(String, f64)>,
    pub rpcs_per_request: Option<f64>,
    /// CPU milliseconds per request, by process (the gateway's stack only).
    pub cpu_ms_per_request: BTreeMap<String, f64>,
}

/// A mixed-workload scenario.
#[derive(Debug, Serialize)]
pub struct Scenario {
    pub rate: f64,
    pub connections: usize,
    pub endpoints: Vec<Summary>,
    pub total: Summary,
    pub send_lag_p99_ms: f64,
    pub reconnects: u64,
    pub caches: Vec<CacheRatio>,
    pub statements_per_request: f64,
    pub processes: Vec<ProcessUse>,
}

#[derive(Debug, Serialize)]
pub struct CacheRatio {
    pub process: String,
    pub cache: String,
    pub lookups: f64,
    pub l1_hit: Option<f64>,
    pub hit: f64,
}

#[derive(Debug, Serialize)]
pub struct ProcessUse {
    pub name: String,
    pub peak_rss_mib: f64,
    pub cpu_seconds: f64,
    pub cpu_seconds_per_1000: f64,
}

/// One post by the account every other account follows.
#[derive(Debug, Serialize)]
pub struct Fanout {
    pub live_followers: usize,
    pub post_ms: f64,
    /// From the start of the POST until the status was in every live follower's feed.
    pub all_feeds_ms: Option<f64>,
    pub missing: usize,
}

#[derive(Debug, Serialize)]
pub struct Step {
    pub rate: f64,
    pub home_p99_ms: f64,
    pub errors: u64,
    pub send_lag_p99_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Cold {
    /// Hit ratio of all caches together, per second of the run.
    pub hit_ratio_per_second: Vec<f64>,
    pub seconds_to_90: Option<usize>,
    pub p99_until_90_ms: Option<f64>,
    pub scenario: Scenario,
}

/// A point-in-time reading of the whole stack.
struct Snapshot {
    at: Instant,
    /// Calls per statement (query id -> text, calls).
    statements: HashMap<i64, (String, i64)>,
    metrics: HashMap<String, Metrics>,
    procs: HashMap<String, ProcStat>,
}

impl Snapshot {
    /// Statements executed since `before`, each with its count.
    fn statements_since(&self, before: &Snapshot) -> Vec<(String, f64)> {
        self.statements
            .iter()
            .map(|(id, (query, calls))| {
                let earlier = before.statements.get(id).map_or(0, |(_, c)| *c);
                (query.clone(), (calls - earlier) as f64)
            })
            .filter(|(_, n)| *n > 0.0)
            .collect()
    }

    fn total_statements_since(&self, before: &Snapshot) -> f64 {
        self.statements_since(before).iter().map(|(_, n)| n).sum()
    }
}

/// The bench: its configuration, dataset and connections to the stack's stores.
pub struct Bench {
    config: BenchConfig,
    data: Arc<Dataset>,
    upload: Vec<u8>,
    admin: PgPool,
    redis: MultiplexedConnection,
}

fn log(msg: &str) {
    eprintln!("[loadgen] {msg}");
}

impl Bench {
    pub async fn new(config: BenchConfig, data: Arc<Dataset>) -> anyhow::Result<Self> {
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&config.admin_db)
            .await
            .context("connecting to Postgres as the superuser (pg_stat_statements)")?;
        // The feed checks pipeline thousands of commands while the stack is under load:
        // far more than the client's default 500 ms response timeout.
        let redis = redis::Client::open(config.redis_url.as_str())?
            .get_multiplexed_async_connection_with_config(
                &redis::AsyncConnectionConfig::new()
                    .set_response_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .context("connecting to Redis")?;
        Ok(Self {
            upload: crate::workload::png(7)?,
            config,
            data,
            admin,
            redis,
        })
    }

    fn wants(&self, scenario: &str) -> bool {
        self.config.scenarios.iter().any(|s| s == scenario)
    }

    /// Runs the configured scenarios in order. A scenario that fails is reported in
    /// `failures` and the others still run.
    pub async fn run(&mut self) -> Report {
        let mut report = Report::default();
        let failed = |name: &str, e: anyhow::Error| {
            log(&format!("{name} failed: {e:#}"));
            report_failure(name, e)
        };
        let mut failures = Vec::new();
        match self.prime().await {
            Ok(p) => report.prime = Some(p),
            Err(e) => failures.push(failed("priming", e)),
        }
        if self.wants("profile") {
            match self.profile().await {
                Ok(p) => report.profile = p,
                Err(e) => failures.push(failed("profile", e)),
            }
        }
        if self.wants("mixed") {
            match self.mixed_with_fanout().await {
                Ok((scenario, fanout)) => {
                    report.mixed = Some(scenario);
                    report.fanout = fanout;
                }
                Err(e) => failures.push(failed("scenario 1", e)),
            }
        }
        if self.wants("crowd") {
            let (rate, conns) = (self.config.crowd_rate, self.config.crowd_connections);
            log(&format!("scenario 2: {conns} connections at {rate}/s"));
            match self.scenario(rate, conns, self.config.duration).await {
                Ok(s) => report.crowd = Some(s),
                Err(e) => failures.push(failed("scenario 2", e)),
            }
        }
        if self.wants("saturation") {
            match self.saturation().await {
                Ok(s) => report.saturation = s,
                Err(e) => failures.push(failed("saturation", e)),
            }
        }
        if self.wants("cold") {
            match self.cold().await {
                Ok(c) => report.cold = c,
                Err(e) => failures.push(failed("scenario 4", e)),
            }
        }
        report.failures = failures;
        report
    }

    fn workload(&self, mix: Mix) -> anyhow::Result<Arc<dyn Source>> {
        Ok(Arc::new(Workload::new(
            self.data.clone(),
            mix,
            &self.upload,
        )?))
    }

    async fn drive(
        &self,
        target: SocketAddr,
        source: Arc<dyn Source>,
        pace: Pace,
        connections: usize,
        duration: Duration,
    ) -> anyhow::Result<RunReport> {
        client::run(
            RunConfig {
                target,
                connections,
                pace,
                duration,
                timeout: Duration::from_secs(10),
                max_requests: 50_000_000,
                seed: self.config.seed,
            },
            source,
        )
        .await
    }

    async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let mut metrics = HashMap::new();
        for (name, addr) in &self.config.metrics {
            metrics.insert(name.clone(), probe::scrape(*addr).await?);
        }
        let mut procs = HashMap::new();
        for p in probe::processes(&self.config.pidfile)? {
            procs.insert(p.name, probe::proc_stat(p.pid)?);
        }
        Ok(Snapshot {
            at: Instant::now(),
            statements: store::statement_calls(&self.admin, &self.config.database).await?,
            metrics,
            procs,
        })
    }

    fn reset_peaks(&self) -> anyhow::Result<()> {
        for p in probe::processes(&self.config.pidfile)? {
            probe::reset_peak(p.pid)?;
        }
        Ok(())
    }

    /// Every account reads its home timeline once: all feeds are live (as on an instance
    /// whose users were all here this week) and the caches hold what they would.
    async fn prime(&self) -> anyhow::Result<PhaseTotals> {
        struct EachHome {
            bearer: Vec<http::HeaderValue>,
            next: std::sync::atomic::AtomicUsize,
        }
        impl Source for EachHome {
            fn next(&self, _: &mut Xoshiro256PlusPlus) -> Req {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % self.bearer.len();
                Req {
                    endpoint: Endpoint::Home,
                    method: Method::GET,
                    path: "/api/v1/timelines/home".into(),
                    auth: Some(self.bearer[i].clone()),
                    body: None,
                }
            }
        }
        let bearer = self
            .data
            .accounts
            .iter()
            .chain([&self.data.star])
            .map(|a| http::HeaderValue::from_str(&format!("Bearer {}", a.token)))
            .collect::<Result<Vec<_>, _>>()?;
        let n = bearer.len();
        log(&format!("priming: {n} home timelines"));
        let started = Instant::now();
        let source = Arc::new(EachHome {
            bearer,
            next: Default::default(),
        });
        let report = client::run(
            RunConfig {
                target: self.config.gateway,
                connections: 32,
                pace: Pace::Closed,
                duration: Duration::from_secs(600),
                timeout: Duration::from_secs(10),
                max_requests: n as u64,
                seed: self.config.seed,
            },
            source,
        )
        .await?;
        let total = report.recorder.total(report.duration);
        Ok(PhaseTotals {
            requests: total.requests,
            errors: total.errors,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Statements per second while idle, by text (outbox relays and job queues poll).
    async fn idle_statement_rates(&self) -> anyhow::Result<HashMap<String, f64>> {
        let before = self.snapshot().await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = self.snapshot().await?;
        let seconds = (after.at - before.at).as_secs_f64();
        Ok(after
            .statements_since(&before)
            .into_iter()
            .map(|(q, n)| (q, n / seconds))
            .collect())
    }

    /// Each endpoint alone at full speed (64 connections, closed loop), then the bare
    /// baselines: throughput ratios, statements, RPCs and CPU per request.
    async fn profile(&self) -> anyhow::Result<Vec<Profile>> {
        let idle = self.idle_statement_rates().await?;
        log(&format!(
            "profile: idle background {:.1} statements/s",
            idle.values().sum::<f64>()
        ));
        let mut out = Vec::new();
        let endpoints = [Endpoint::Hello, Endpoint::Hop]
            .into_iter()
            .chain(Endpoint::WORKLOAD);
        for endpoint in endpoints {
            let baseline = matches!(endpoint, Endpoint::Hello | Endpoint::Hop);
            let target = if baseline {
                self.config.baseline
            } else {
                self.config.gateway
            };
            log(&format!("profile: {endpoint} alone, closed loop"));
            let before = self.snapshot().await?;
            let run = self
                .drive(
                    target,
                    self.workload(Mix::only(endpoint))?,
                    Pace::Closed,
                    64,
                    self.config.profile_duration,
                )
                .await?;
            // Work a request leaves behind (fan-out, notifications) belongs to it.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let after = self.snapshot().await?;
            let summary = run.recorder.total(run.duration);
            let requests = summary.requests.max(1) as f64;
            let (method, route) = endpoint.route();
            let labels = [("method", method), ("route", route)];
            let gateway_delta = |name: &str| {
                let get = |s: &Snapshot| {
                    s.metrics
                        .get("gateway")
                        .map_or(0.0, |m| m.sum(name, &labels))
                };
                get(&after) - get(&before)
            };
            let served = gateway_delta("http_server_request_duration_seconds_count");
            let rpcs = (!baseline && served > 0.0)
                .then(|| gateway_delta("gateway_downstream_calls_total") / served);
            let elapsed = (after.at - before.at).as_secs_f64();
            // Per request, less what the same statement runs per second when idle.
            let mut per_request: Vec<(String, f64)> = after
                .statements_since(&before)
                .into_iter()
                .map(|(q, n)| {
                    let background = idle.get(&q).copied().unwrap_or(0.0) * elapsed;
                    (q, ((n - background) / requests).max(0.0))
                })
                .filter(|(_, n)| *n >= 0.01)
                .collect();
            per_request.sort_by(|a, b| b.1.total_cmp(&a.1));
            let statements = (!baseline).then(|| per_request.iter().map(|(_, n)| n).sum());
            per_request.truncate(6);
            let cpu_ms_per_request = after
                .procs
                .iter()
                .filter(|_| !baseline)
                .filter_map(|(name, a)| {
                    let b = before.procs.get(name)?;
                    Some((
                        name.clone(),
                        (a.cpu_seconds - b.cpu_seconds) * 1_000.0 / requests,
                    ))
                })
                .collect();
            out.push(Profile {
                endpoint: endpoint.name().into(),
                summary: Summary {
                    endpoint: endpoint.name().into(),
                    ..summary
                },
                statements_per_request: statements,
                top_statements: if baseline { Vec::new() } else { per_request },
                rpcs_per_request: rpcs,
                cpu_ms_per_request,
            });
        }
        Ok(out)
    }

    /// A mixed workload at `rate`, with caches, statements and processes measured.
    async fn scenario(
        &self,
        rate: f64,
        connections: usize,
        duration: Duration,
    ) -> anyhow::Result<Scenario> {
        let (scenario, (), _) = self
            .scenario_with(rate, connections, duration, |_| async { Ok(()) })
            .await?;
        Ok(scenario)
    }

    async fn scenario_with<T, F, Fut>(
        &self,
        rate: f64,
        connections: usize,
        duration: Duration,
        during: F,
    ) -> anyhow::Result<(Scenario, T, Recorder)>
    where
        F: FnOnce(Duration) -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        self.reset_peaks()?;
        let before = self.snapshot().await?;
        let workload = self.workload(self.config.mix.clone())?;
        let run = self.drive(
            self.config.gateway,
            workload,
            Pace::Open { rate },
            connections,
            duration,
        );
        let (run, extra) = tokio::join!(run, during(duration));
        let (run, extra) = (run?, extra?);
        let after = self.snapshot().await?;
        let total = run.recorder.total(run.duration);
        let requests = total.requests.max(1) as f64;
        let processes = after
            .procs
            .iter()
            .filter_map(|(name, a)| {
                let b = before.procs.get(name)?;
                let cpu = a.cpu_seconds - b.cpu_seconds;
                Some(ProcessUse {
                    name: name.clone(),
                    peak_rss_mib: a.peak_rss_mib,
                    cpu_seconds: cpu,
                    cpu_seconds_per_1000: cpu * 1_000.0 / requests,
                })
            })
            .collect();
        Ok((
            Scenario {
                rate,
                connections,
                endpoints: run.recorder.summaries(run.duration),
                send_lag_p99_ms: run.recorder.send_lag_p99_ms(),
                reconnects: run.reconnects,
                caches: cache_ratios(&before, &after),
                statements_per_request: after.total_statements_since(&before) / requests,
                processes,
                total,
            },
            extra,
            run.recorder,
        ))
    }

    /// Scenario 1 with scenario 3 inside it: the star posts at a quarter, half and three
    /// quarters of the run, and each post is timed into every live follower's feed.
    async fn mixed_with_fanout(&mut self) -> anyhow::Result<(Scenario, Vec<Fanout>)> {
        let (rate, conns) = (self.config.rate, self.config.connections);
        log(&format!(
            "scenario 1 (+3): {conns} connections at {rate}/s, fan-out rounds inside"
        ));
        let mut redis = self.redis.clone();
        let data = self.data.clone();
        let prefix = self.config.redis_prefix.clone();
        let gateway = self.config.gateway;
        let (scenario, rounds, _) = self
            .scenario_with(
                rate,
                conns,
                self.config.duration,
                move |duration| async move {
                    let mut rounds = Vec::new();
                    for round in 1..=3u32 {
                        tokio::time::sleep(duration / 4).await;
                        rounds
                            .push(fanout_round(&mut redis, &data, &prefix, gateway, round).await?);
                    }
                    Ok(rounds)
                },
            )
            .await?;
        Ok((scenario, rounds))
    }

    /// The highest arrival rate at which home-timeline p99 stays under 100 ms: up by
    /// half while it holds, then two bisections.
    async fn saturation(&self) -> anyhow::Result<Vec<Step>> {
        let mut steps = Vec::new();
        let mut pass: Option<f64> = None;
        let mut fail: Option<f64> = None;
        let mut rate = self.config.rate;
        for _ in 0..10 {
            log(&format!("saturation: {rate:.0}/s"));
            let workload = self.workload(self.config.mix.clone())?;
            let run = self
                .drive(
                    self.config.gateway,
                    workload,
                    Pace::Open { rate },
                    self.config.connections,
                    self.config.step_duration,
                )
                .await?;
            let summaries = run.recorder.summaries(run.duration);
            let home = summaries
                .iter()
                .find(|s| s.endpoint == "home")
                .context("no home reads")?;
            let errors = run.recorder.total(run.duration).errors;
            let ok = home.p99_ms < 100.0 && errors == 0;
            steps.push(Step {
                rate,
                home_p99_ms: home.p99_ms,
                errors,
                send_lag_p99_ms: run.recorder.send_lag_p99_ms(),
            });
            if ok {
                pass = Some(rate);
            } else {
                fail = Some(rate);
            }
            rate = match (pass, fail) {
                (Some(p), None) => p * 1.5,
                (None, Some(f)) => f / 2.0,
                (Some(p), Some(f)) if f - p > p * 0.1 => (p + f) / 2.0,
                _ => break,
            };
            // Let queues drain between steps.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok(steps)
    }

    /// Scenario 4: processes restarted (their L1 caches empty) and the stack's Redis keys
    /// deleted (L2, feeds, token cache), then scenario 1's load.
    async fn cold(&mut self) -> anyhow::Result<Option<Cold>> {
        let (Some(stop), Some(start)) =
            (self.config.stop_cmd.clone(), self.config.start_cmd.clone())
        else {
            log("cold start skipped: no --stop-cmd/--start-cmd");
            return Ok(None);
        };
        log("scenario 4: stopping the stack, deleting its Redis keys, starting it");
        shell(&stop).await?;
        let deleted = delete_prefix(&mut self.redis, &self.config.redis_prefix).await?;
        log(&format!("deleted {deleted} Redis keys"));
        shell(&start).await?;
        let (rate, conns) = (self.config.rate, self.config.connections);
        let metrics = self.config.metrics.clone();
        let (scenario, ratios, recorder) = self
            .scenario_with(
                rate,
                conns,
                self.config.duration,
                move |duration| async move {
                    let mut last = cache_totals(&metrics).await?;
                    let mut ratios = Vec::new();
                    let mut tick = tokio::time::interval(Duration::from_secs(1));
                    tick.tick().await;
                    for _ in 0..duration.as_secs() {
                        tick.tick().await;
                        let now = cache_totals(&metrics).await?;
                        let (hits, lookups) = (now.0 - last.0, now.1 - last.1);
                        ratios.push(if lookups > 0.0 { hits / lookups } else { 0.0 });
                        last = now;
                    }
                    Ok(ratios)
                },
            )
            .await?;
        let seconds_to_90 = ratios.iter().position(|&r| r >= 0.9);
        // Latencies of everything due before the ratio was back (at least the first second).
        let p99_until_90_ms = seconds_to_90.and_then(|s| recorder.p99_between(0, s.max(1)));
        Ok(Some(Cold {
            hit_ratio_per_second: ratios,
            seconds_to_90,
            p99_until_90_ms,
            scenario,
        }))
    }
}

/// (hits, lookups) of every cache of every process.
async fn cache_totals(metrics: &[(String, SocketAddr)]) -> anyhow::Result<(f64, f64)> {
    let mut hits = 0.0;
    let mut lookups = 0.0;
    for (_, addr) in metrics {
        let m = probe::scrape(*addr).await?;
        for cache in m.label_values("cache_requests_total", "cache") {
            let (h, l) = cache_counts(&m, &cache);
            hits += h;
            lookups += l;
        }
    }
    Ok((hits, lookups))
}

/// (hits, lookups, L1 hits and lookups when the cache has an L1) of one cache. Every
/// lookup goes to L1 first when there is one; L2 sees L1's misses.
fn cache_counts(m: &Metrics, cache: &str) -> (f64, f64) {
    let get = |tier: &str, result: &str| {
        m.sum(
            "cache_requests_total",
            &[("cache", cache), ("tier", tier), ("result", result)],
        )
    };
    let (l1_hit, l1_miss) = (get("l1", "hit"), get("l1", "miss"));
    let (l2_hit, l2_miss) = (get("l2", "hit"), get("l2", "miss"));
    if l1_hit + l1_miss > 0.0 {
        (l1_hit + l2_hit, l1_hit + l1_miss)
    } else {
        (l2_hit, l2_hit + l2_miss)
    }
}

fn cache_ratios(before: &Snapshot, after: &Snapshot) -> Vec<CacheRatio> {
    let mut out = Vec::new();
    let empty = Metrics::default();
    let mut names: Vec<&String> = after.metrics.keys().collect();
    names.sort();
    for process in names {
        let a = &after.metrics[process];
        let b = before.metrics.get(process).unwrap_or(&empty);
        for cache in a.label_values("cache_requests_total", "cache") {
            let (ha, la) = cache_counts(a, &cache);
            let (hb, lb) = cache_counts(b, &cache);
            let lookups = la - lb;
            if lookups <= 0.0 {
                continue;
            }
            let l1 = |m: &Metrics, result: &str| {
                m.sum(
                    "cache_requests_total",
                    &[("cache", &cache), ("tier", "l1"), ("result", result)],
                )
            };
            let l1_hits = l1(a, "hit") - l1(b, "hit");
            let l1_lookups = l1_hits + l1(a, "miss") - l1(b, "miss");
            out.push(CacheRatio {
                process: process.clone(),
                cache: cache.clone(),
                lookups,
                l1_hit: (l1_lookups > 0.0).then(|| l1_hits / l1_lookups),
                hit: (ha - hb) / lookups,
            });
        }
        // The home feeds in Redis: a read of a feed that is not live rebuilds it.
        if process == "timeline" {
            let rebuilds =
                a.sum("home_feed_rebuilds_total", &[]) - b.sum("home_feed_rebuilds_total", &[]);
            let home = |s: &Snapshot| {
                s.metrics.get("gateway").map_or(0.0, |m| {
                    m.sum(
                        "http_server_request_duration_seconds_count",
                        &[("route", "/api/v1/timelines/home")],
                    )
                })
            };
            let reads = home(after) - home(before);
            if reads > 0.0 {
                out.push(CacheRatio {
                    process: "timeline".into(),
                    cache: "home feeds (Redis)".into(),
                    lookups: reads,
                    l1_hit: None,
                    hit: 1.0 - rebuilds / reads,
                });
            }
        }
    }
    out
}

/// The accounts of `accounts` whose home feed does not have status `id`.
async fn missing_from_feeds(
    redis: &mut MultiplexedConnection,
    prefix: &str,
    accounts: &[i64],
    id: &str,
) -> anyhow::Result<Vec<i64>> {
    let mut missing = Vec::new();
    for chunk in accounts.chunks(PIPELINE) {
        let mut pipe = redis::pipe();
        for account in chunk {
            pipe.cmd("ZSCORE")
                .arg(format!("{prefix}:tl:{{{account}}}:feed"))
                .arg(id);
        }
        let scores: Vec<Option<f64>> = pipe.query_async(redis).await?;
        missing.extend(
            chunk
                .iter()
                .zip(scores)
                .filter(|(_, s)| s.is_none())
                .map(|(a, _)| *a),
        );
    }
    Ok(missing)
}

/// Commands per pipeline of the feed checks: short enough not to stall the Redis the
/// measured stack uses.
const PIPELINE: usize = 500;

/// The star posts; returns how long until every live follower's feed has the status.
async fn fanout_round(
    redis: &mut MultiplexedConnection,
    data: &Dataset,
    prefix: &str,
    gateway: SocketAddr,
    round: u32,
) -> anyhow::Result<Fanout> {
    // The feeds fan-out writes to: those marked live (read within the feed lifetime).
    let mut live = Vec::with_capacity(data.accounts.len());
    for chunk in data.accounts.chunks(PIPELINE) {
        let mut pipe = redis::pipe();
        for a in chunk {
            pipe.cmd("EXISTS")
                .arg(format!("{prefix}:tl:{{{}}}:live", a.id));
        }
        let part: Vec<i64> = pipe.query_async(redis).await?;
        live.extend(part);
    }
    let live: Vec<i64> = data
        .accounts
        .iter()
        .zip(live)
        .filter(|(_, l)| *l == 1)
        .map(|(a, _)| a.id)
        .collect();
    let mut api = Api::new(gateway);
    let started = Instant::now();
    let status = api
        .post_form(
            "/api/v1/statuses",
            &data.star.token,
            &[
                ("status", &format!("Fan-out round {round} #loadgen")),
                ("visibility", "public"),
            ],
        )
        .await?;
    let post_ms = started.elapsed().as_secs_f64() * 1e3;
    let id = status["id"].as_str().context("status id")?.to_owned();
    let deadline = started + Duration::from_secs(10);
    // Polling 10 000 feeds every few milliseconds would load the Redis being measured:
    // poll a sample (every 100th live follower and the last, which fan-out reaches last,
    // in follow order), then check every feed, and go on polling whatever still lacks it.
    let mut waiting: Vec<i64> = live
        .iter()
        .step_by(100)
        .chain(live.last())
        .copied()
        .collect();
    let mut sampled = true;
    loop {
        waiting = missing_from_feeds(redis, prefix, &waiting, &id).await?;
        if waiting.is_empty() && sampled {
            sampled = false;
            waiting = missing_from_feeds(redis, prefix, &live, &id).await?;
        }
        if waiting.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_feeds_ms = waiting
        .is_empty()
        .then(|| started.elapsed().as_secs_f64() * 1e3);
    log(&format!(
        "fan-out round {round}: {} live followers, POST {post_ms:.0} ms, all feeds {}",
        live.len(),
        all_feeds_ms.map_or("not within 10 s".into(), |ms| format!("{ms:.0} ms"))
    ));
    Ok(Fanout {
        live_followers: live.len(),
        post_ms,
        all_feeds_ms,
        missing: waiting.len(),
    })
}

async fn shell(cmd: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .status()
        .await?;
    if !status.success() {
        bail!("`{cmd}` failed: {status}");
    }
    Ok(())
}

async fn delete_prefix(redis: &mut MultiplexedConnection, prefix: &str) -> anyhow::Result<u64> {
    let pattern = format!("{prefix}:*");
    let mut cursor = 0u64;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1_000)
            .query_async(redis)
            .await?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("UNLINK").arg(&keys).query_async(redis).await?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// The report as Markdown tables.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let f1 = |v: f64| format!("{v:.1}");
    if let Some(p) = &report.prime {
        let _ = writeln!(
            out,
            "Priming: {} home timelines read in {:.1} s ({} errors).\n",
            p.requests, p.seconds, p.errors
        );
    }
    if !report.profile.is_empty() {
        let hello = report
            .profile
            .iter()
            .find(|p| p.endpoint == "hello")
            .map(|p| p.summary.throughput);
        let hop = report
            .profile
            .iter()
            .find(|p| p.endpoint == "hop")
            .map(|p| p.summary.throughput);
        let mut procs: Vec<&String> = report
            .profile
            .iter()
            .flat_map(|p| p.cpu_ms_per_request.keys())
            .collect();
        procs.sort();
        procs.dedup();
        let _ = writeln!(
            out,
            "### Each endpoint alone (closed loop, 64 connections)\n"
        );
        let _ = write!(
            out,
            "| endpoint | req/s | × hello | × hop | p50 ms | p99 ms | errors | SQL/req | RPC/req |"
        );
        for p in &procs {
            let _ = write!(out, " CPU ms/req {p} |");
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "|{}", "---|".repeat(9 + procs.len()));
        for p in &report.profile {
            let s = &p.summary;
            let ratio = |base: Option<f64>| {
                base.filter(|b| *b > 0.0)
                    .map_or("–".into(), |b| format!("{:.2}", s.throughput / b))
            };
            let opt = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}"));
            let _ = write!(
                out,
                "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
                s.endpoint,
                s.throughput,
                ratio(hello),
                ratio(hop),
                f1(s.p50_ms),
                f1(s.p99_ms),
                s.errors,
                opt(p.statements_per_request),
                opt(p.rpcs_per_request),
            );
            for proc in &procs {
                let _ = write!(out, " {} |", opt(p.cpu_ms_per_request.get(*proc).copied()));
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Statements per request, by endpoint (idle background subtracted):\n"
        );
        for p in report
            .profile
            .iter()
            .filter(|p| !p.top_statements.is_empty())
        {
            let _ = writeln!(out, "- {}:", p.endpoint);
            for (query, n) in &p.top_statements {
                let one_line: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
                let short: String = one_line.chars().take(110).collect();
                let _ = writeln!(out, "  - {n:.2} × `{short}`");
            }
        }
        let _ = writeln!(out);
    }
    let scenario = |out: &mut String, title: &str, s: &Scenario| {
        let _ = writeln!(
            out,
            "### {title}: {:.0} req/s offered, {} connections\n",
            s.rate, s.connections
        );
        let _ = writeln!(
            out,
            "| endpoint | requests | errors | req/s | p50 ms | p95 ms | p99 ms | max ms |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        for e in s.endpoints.iter().chain([&s.total]) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {} | {} | {} | {} |",
                e.endpoint,
                e.requests,
                e.errors,
                e.throughput,
                f1(e.p50_ms),
                f1(e.p95_ms),
                f1(e.p99_ms),
                f1(e.max_ms)
            );
        }
        if s.total.errors > 0 {
            let _ = writeln!(out, "\nErrors by kind: {:?}", s.total.error_kinds);
        }
        let _ = writeln!(
            out,
            "\nSend lag p99 {:.1} ms (how late requests left: their connection still waited for an earlier answer, or the client fell behind); {} reconnects; {:.2} SQL statements per request (all services, background included).\n",
            s.send_lag_p99_ms, s.reconnects, s.statements_per_request
        );
        let _ = writeln!(out, "| cache | lookups | L1 hit | hit |");
        let _ = writeln!(out, "|---|---|---|---|");
        for c in &s.caches {
            let l1 = c
                .l1_hit
                .map_or("–".into(), |r| format!("{:.1}%", r * 100.0));
            let _ = writeln!(
                out,
                "| {}: {} | {:.0} | {} | {:.1}% |",
                c.process,
                c.cache,
                c.lookups,
                l1,
                c.hit * 100.0
            );
        }
        let _ = writeln!(
            out,
            "\n| process | peak RSS MiB | CPU s | CPU s per 1000 req |"
        );
        let _ = writeln!(out, "|---|---|---|---|");
        let mut procs: Vec<&ProcessUse> = s.processes.iter().collect();
        procs.sort_by(|a, b| a.name.cmp(&b.name));
        for p in procs {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.1} | {:.3} |",
                p.name, p.peak_rss_mib, p.cpu_seconds, p.cpu_seconds_per_1000
            );
        }
        let _ = writeln!(out);
    };
    if let Some(s) = &report.mixed {
        scenario(&mut out, "Scenario 1: mixed workload", s);
    }
    if !report.fanout.is_empty() {
        let _ = writeln!(out, "### Scenario 3: fan-out during scenario 1\n");
        let _ = writeln!(
            out,
            "| round | live followers | POST ms | in every live feed after ms | missing |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for (i, r) in report.fanout.iter().enumerate() {
            let all = r
                .all_feeds_ms
                .map_or("> 10 000".into(), |ms| format!("{ms:.0}"));
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {} |",
                i + 1,
                r.live_followers,
                r.post_ms,
                all,
                r.missing
            );
        }
        let _ = writeln!(out);
    }
    if let Some(s) = &report.crowd {
        scenario(&mut out, "Scenario 2: a crowd of connections", s);
        let max_rss = s
            .processes
            .iter()
            .map(|p| p.peak_rss_mib)
            .fold(0.0, f64::max);
        let check = |ok: bool| if ok { "pass" } else { "FAIL" };
        let _ = writeln!(
            out,
            "Bars: p95 {:.1} ms < 50 {}; p99 {:.1} ms < 100 {}; errors {} = 0 {}; largest peak RSS {:.0} MiB < 256 {}\n",
            s.total.p95_ms,
            check(s.total.p95_ms < 50.0),
            s.total.p99_ms,
            check(s.total.p99_ms < 100.0),
            s.total.errors,
            check(s.total.errors == 0),
            max_rss,
            check(max_rss < 256.0)
        );
    }
    if !report.saturation.is_empty() {
        let _ = writeln!(
            out,
            "### Saturation: mixed workload, home-timeline p99 < 100 ms and no errors\n"
        );
        let _ = writeln!(
            out,
            "| offered req/s | home p99 ms | errors | client lag p99 ms |"
        );
        let _ = writeln!(out, "|---|---|---|---|");
        for s in &report.saturation {
            let _ = writeln!(
                out,
                "| {:.0} | {} | {} | {} |",
                s.rate,
                f1(s.home_p99_ms),
                s.errors,
                f1(s.send_lag_p99_ms)
            );
        }
        let best = report
            .saturation
            .iter()
            .filter(|s| s.home_p99_ms < 100.0 && s.errors == 0)
            .map(|s| s.rate)
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
        let _ = writeln!(
            out,
            "\nHighest rate holding the bar: {}\n",
            best.map_or("none of the rates tried".into(), |r| format!(
                "{r:.0} req/s"
            ))
        );
    }
    for f in &report.failures {
        let _ = writeln!(out, "**Failed:** {f}\n");
    }
    if let Some(c) = &report.cold {
        let ratios: Vec<String> = c
            .hit_ratio_per_second
            .iter()
            .map(|r| format!("{:.0}", r * 100.0))
            .collect();
        let _ = writeln!(out, "### Scenario 4: cold start\n");
        let _ = writeln!(
            out,
            "Hit ratio of all caches, % per second: {}\n",
            ratios.join(" ")
        );
        let _ = writeln!(
            out,
            "Back over 90% after {}; p99 of the first {} s: {}.\n",
            c.seconds_to_90
                .map_or("never within the run".into(), |s| format!("{s} s")),
            c.seconds_to_90.unwrap_or(0),
            c.p99_until_90_ms
                .map_or("–".into(), |v| format!("{v:.1} ms"))
        );
        scenario(
            &mut out,
            "Scenario 4: the run after the cold start",
            &c.scenario,
        );
    }
    out
}

/// What makes a run unusable as a measurement: failed requests, endpoints of the mix
/// that were never exercised, fan-outs that did not complete. Empty when all is well.
pub fn problems(report: &Report, mix: &Mix) -> Vec<String> {
    let mut out = report.failures.clone();
    if let Some(p) = &report.prime
        && p.errors > 0
    {
        out.push(format!("priming: {} errors", p.errors));
    }
    for p in &report.profile {
        if p.summary.requests == 0 || p.summary.errors > 0 {
            out.push(format!(
                "profile {}: {} requests, errors {:?}",
                p.endpoint, p.summary.requests, p.summary.error_kinds
            ));
        }
    }
    let scenarios = [("scenario 1", &report.mixed), ("scenario 2", &report.crowd)];
    for (name, s) in scenarios {
        let Some(s) = s else { continue };
        if s.total.errors > 0 {
            out.push(format!("{name}: errors {:?}", s.total.error_kinds));
        }
        for e in mix.endpoints() {
            if !s
                .endpoints
                .iter()
                .any(|x| x.endpoint == e.name() && x.requests > 0)
            {
                out.push(format!("{name}: no {e} request"));
            }
        }
    }
    for (i, f) in report.fanout.iter().enumerate() {
        if f.all_feeds_ms.is_none() || f.live_followers == 0 {
            out.push(format!(
                "fan-out round {}: {} live followers, {} feeds missing the status",
                i + 1,
                f.live_followers,
                f.missing
            ));
        }
    }
    out
}
