//! Drives HTTP/1.1 keep-alive connections to one address (127.0.0.1 only): either open
//! loop at a fixed arrival rate (see [`crate::rate`]) or closed loop at full speed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use http::header::{ACCEPT_ENCODING, AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::rate::{Pace, Schedule};
use crate::stats::{Outcome, Recorder};
use crate::workload::{Req, Workload};

/// Where the requests of a run come from.
pub trait Source: Send + Sync + 'static {
    fn next(&self, rng: &mut Xoshiro256PlusPlus) -> Req;
}

impl Source for Workload {
    fn next(&self, rng: &mut Xoshiro256PlusPlus) -> Req {
        Workload::next(self, rng)
    }
}

/// One run: how many connections, how fast, for how long.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// A loopback address: the harness refuses anything else.
    pub target: SocketAddr,
    pub connections: usize,
    pub pace: Pace,
    /// Requests are due (open loop) or started (closed loop) within this time.
    pub duration: Duration,
    /// A request without an answer after this long is a timeout error.
    pub timeout: Duration,
    /// At most this many requests, whatever the duration.
    pub max_requests: u64,
    /// Seeds the per-connection random choices (with the connection's number).
    pub seed: u64,
}

/// What a run measured.
#[derive(Debug)]
pub struct RunReport {
    pub duration: Duration,
    pub recorder: Recorder,
    /// Connections that could not be opened before the run (each retried on first use).
    pub connect_failures: u64,
    /// Connections opened again during the run after one failed or timed out.
    pub reconnects: u64,
}

pub(crate) type Sender = SendRequest<Full<Bytes>>;

pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; failures show on the sender.
        let _ = connection.await;
    });
    Ok(sender)
}

/// A request to `host` (the harness's and the seeding client's alike).
pub(crate) fn build_request(
    method: http::Method,
    path: &str,
    host: HeaderValue,
    auth: Option<HeaderValue>,
    body: Option<(HeaderValue, Bytes)>,
) -> http::Result<Request<Full<Bytes>>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, host);
    if let Some(auth) = auth {
        builder = builder.header(AUTHORIZATION, auth);
    }
    match body {
        Some((content_type, bytes)) => builder
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(bytes)),
        None => builder.body(Full::new(Bytes::new())),
    }
}

struct Shared {
    config: RunConfig,
    host: HeaderValue,
    source: Arc<dyn Source>,
    recorder: Mutex<Recorder>,
    issued: AtomicU64,
    reconnects: AtomicU64,
}

/// Runs `source`'s requests against `config.target` and returns what they measured.
pub async fn run(config: RunConfig, source: Arc<dyn Source>) -> anyhow::Result<RunReport> {
    if !config.target.ip().is_loopback() {
        bail!(
            "load is only ever sent to loopback; {} is not",
            config.target
        );
    }
    if config.connections == 0 {
        bail!("a run needs at least one connection");
    }
    if let Pace::Open { rate } = config.pace
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("the arrival rate must be positive, not {rate}");
    }
    let target = config.target;
    // Opened before the clock starts, a few hundred at a time (the listen backlog is
    // finite), so that connecting is not part of any request's latency.
    let senders: Vec<Option<Sender>> = futures::stream::iter(0..config.connections)
        .map(|_| async move { connect(target).await.ok() })
        .buffer_unordered(256)
        .collect()
        .await;
    let connect_failures = senders.iter().filter(|s| s.is_none()).count() as u64;
    if connect_failures == config.connections as u64 {
        bail!("no connection to {target} could be opened");
    }
    let shared = Arc::new(Shared {
        host: HeaderValue::from_str(&target.to_string()).context("host header")?,
        source,
        recorder: Mutex::new(Recorder::default()),
        issued: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
        config,
    });
    let start = Instant::now() + Duration::from_millis(50);
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(k, sender)| tokio::spawn(connection_loop(shared.clone(), k, sender, start)))
        .collect();
    for task in tasks {
        task.await.context("a connection task failed")?;
    }
    let shared = Arc::into_inner(shared).context("connection tasks still hold the run")?;
    Ok(RunReport {
        duration: shared.config.duration,
        recorder: shared
            .recorder
            .into_inner()
            .unwrap_or_else(|e| e.into_inner()),
        connect_failures,
        reconnects: shared.reconnects.into_inner(),
    })
}

async fn connection_loop(
    shared: Arc<Shared>,
    k: usize,
    mut sender: Option<Sender>,
    start: Instant,
) {
    let config = &shared.config;
    let end = start + config.duration;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(
        config.seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let schedule = match config.pace {
        Pace::Open { rate } => Some(Schedule::open(start, rate, config.connections, k)),
        Pace::Closed => None,
    };
    tokio::time::sleep_until(start).await;
    for i in 0.. {
        let due = match &schedule {
            Some(s) => s.intended(i),
            None => Instant::now(),
        };
        if due >= end || shared.issued.fetch_add(1, Ordering::Relaxed) >= config.max_requests {
            break;
        }
        tokio::time::sleep_until(due).await;
        let req = shared.source.next(&mut rng);
        let sent = Instant::now();
        let outcome =
            match tokio::time::timeout(config.timeout, send(&shared, &mut sender, &req)).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    // The answer may still come on this connection: never reuse it.
                    sender = None;
                    Outcome::Timeout
                }
            };
        let done = Instant::now();
        // Open loop: from when the request was due, so that waiting for a slow earlier
        // answer on this connection counts. Closed loop: due == sent.
        let latency = done - due;
        shared
            .recorder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(req.endpoint, due - start, latency, sent - due, outcome);
    }
}

async fn send(shared: &Shared, slot: &mut Option<Sender>, req: &Req) -> Outcome {
    if slot.as_ref().is_none_or(|s| s.is_closed()) {
        match connect(shared.config.target).await {
            Ok(s) => *slot = Some(s),
            Err(_) => return Outcome::Io,
        }
        shared.reconnects.fetch_add(1, Ordering::Relaxed);
    }
    let Some(sender) = slot.as_mut() else {
        return Outcome::Io;
    };
    let Ok(mut request) = build_request(
        req.method.clone(),
        &req.path,
        shared.host.clone(),
        req.auth.clone(),
        req.body.clone(),
    ) else {
        return Outcome::Io;
    };
    // As Mastodon clients do: compression is part of what is measured.
    request
        .headers_mut()
        .insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    if sender.ready().await.is_err() {
        *slot = None;
        return Outcome::Io;
    }
    let response = match sender.send_request(request).await {
        Ok(r) => r,
        Err(_) => {
            *slot = None;
            return Outcome::Io;
        }
    };
    let status = response.status().as_u16();
    // The whole body is read, as a client would, before the request counts as answered.
    match response.into_body().collect().await {
        Ok(_) => Outcome::Status(status),
        Err(_) => {
            *slot = None;
            Outcome::Io
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use axum::Router;
    use axum::routing::get;
    use http::Method;

    use super::*;
    use crate::workload::Endpoint;

    struct Hello;
    impl Source for Hello {
        fn next(&self, _: &mut Xoshiro256PlusPlus) -> Req {
            Req {
                endpoint: Endpoint::Hello,
                method: Method::GET,
                path: "/hello".into(),
                auth: None,
                body: None,
            }
        }
    }

    /// A server answering at once, except one request that it holds for `stall`.
    async fn server(stall: Duration) -> anyhow::Result<SocketAddr> {
        let stalled = Arc::new(AtomicBool::new(false));
        let app = Router::new().route(
            "/hello",
            get(move || {
                let stalled = stalled.clone();
                async move {
                    if !stalled.swap(true, Ordering::SeqCst) {
                        tokio::time::sleep(stall).await;
                    }
                    "hello"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(addr)
    }

    fn config(target: SocketAddr, pace: Pace) -> RunConfig {
        RunConfig {
            target,
            connections: 1,
            pace,
            duration: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            max_requests: u64::MAX,
            seed: 1,
        }
    }

    #[tokio::test]
    async fn open_loop_sends_at_the_rate_and_counts_the_queue_behind_a_stall() -> anyhow::Result<()>
    {
        let addr = server(Duration::from_millis(500)).await?;
        // 100/s on one connection for 2 s; the first answer takes 500 ms.
        let report = run(config(addr, Pace::Open { rate: 100.0 }), Arc::new(Hello)).await?;
        let s = report.recorder.total(report.duration);
        assert_eq!(
            s.requests, 200,
            "every scheduled request is sent, none skipped"
        );
        assert_eq!(s.errors, 0);
        // The ~50 requests due during the stall waited behind it: a quarter of the run
        // has latencies of tens to hundreds of ms, so p95 and max show it. A closed loop
        // would have recorded a single slow request and a clean p95.
        assert!(s.max_ms >= 490.0, "max {}", s.max_ms);
        assert!(s.p95_ms >= 100.0, "p95 {}", s.p95_ms);
        assert!(s.p50_ms < 50.0, "p50 {}", s.p50_ms);
        assert!(report.recorder.send_lag_p99_ms() >= 100.0);
        Ok(())
    }

    #[tokio::test]
    async fn closed_loop_measures_from_the_send_and_stops_at_the_count() -> anyhow::Result<()> {
        let addr = server(Duration::from_millis(300)).await?;
        let report = run(
            RunConfig {
                connections: 4,
                max_requests: 500,
                ..config(addr, Pace::Closed)
            },
            Arc::new(Hello),
        )
        .await?;
        let s = report.recorder.total(report.duration);
        assert_eq!(s.requests, 500, "bounded by count");
        assert!(s.max_ms >= 290.0);
        assert!(
            s.p95_ms < 100.0,
            "only the stalled request was slow: {}",
            s.p95_ms
        );
        Ok(())
    }

    #[tokio::test]
    async fn refuses_anything_but_loopback_and_reports_a_dead_target() -> anyhow::Result<()> {
        let remote = config("10.1.2.3:80".parse()?, Pace::Closed);
        let err = run(remote, Arc::new(Hello))
            .await
            .err()
            .map(|e| e.to_string());
        assert!(
            err.unwrap_or_default()
                .contains("only ever sent to loopback")
        );
        // A port nobody listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let dead = listener.local_addr()?;
        drop(listener);
        let err = run(config(dead, Pace::Closed), Arc::new(Hello))
            .await
            .err()
            .map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("no connection"));
        Ok(())
    }
}
