//! Latency and outcome recording, and the percentile summaries of a run.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::workload::Endpoint;

/// Longest latency the histograms hold exactly (longer ones are recorded as this).
const MAX_MICROS: u64 = 120_000_000;

/// What became of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer with this status.
    Status(u16),
    /// No answer within the request timeout.
    Timeout,
    /// The connection failed (refused, reset, closed mid-request).
    Io,
}

impl Outcome {
    fn is_ok(self) -> bool {
        matches!(self, Self::Status(s) if (200..300).contains(&s))
    }

    fn label(self) -> String {
        match self {
            Self::Status(s) => s.to_string(),
            Self::Timeout => "timeout".into(),
            Self::Io => "io".into(),
        }
    }
}

fn histogram(sigfig: u8) -> Histogram<u64> {
    // Bounds and precision are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, MAX_MICROS, sigfig)
        .unwrap_or_else(|e| unreachable!("constant histogram bounds are valid: {e}"))
}

/// Per-endpoint latencies and outcomes, one histogram per second of the run (for
/// warm-up curves), and how late the client itself sent (its own saturation).
#[derive(Debug)]
pub struct Recorder {
    endpoints: BTreeMap<Endpoint, EndpointStats>,
    per_second: Vec<Histogram<u64>>,
    send_lag: Histogram<u64>,
}

#[derive(Debug)]
struct EndpointStats {
    latency: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            endpoints: BTreeMap::new(),
            per_second: Vec::new(),
            send_lag: histogram(2),
        }
    }
}

impl Recorder {
    /// Records one request: due `due_at` into the run, answered `latency` after it was
    /// due (open loop) or sent (closed loop), sent `lag` after it was due.
    pub fn record(
        &mut self,
        endpoint: Endpoint,
        due_at: Duration,
        latency: Duration,
        lag: Duration,
        outcome: Outcome,
    ) {
        let micros = (latency.as_micros() as u64).max(1);
        let stats = self
            .endpoints
            .entry(endpoint)
            .or_insert_with(|| EndpointStats {
                latency: histogram(3),
                ok: 0,
                errors: BTreeMap::new(),
            });
        stats.latency.saturating_record(micros);
        if outcome.is_ok() {
            stats.ok += 1;
        } else {
            *stats.errors.entry(outcome.label()).or_default() += 1;
        }
        let second = due_at.as_secs() as usize;
        if self.per_second.len() <= second {
            self.per_second.resize_with(second + 1, || histogram(2));
        }
        self.per_second[second].saturating_record(micros);
        self.send_lag
            .saturating_record((lag.as_micros() as u64).max(1));
    }

    /// The summary of each endpoint, over `elapsed` seconds of arrivals.
    pub fn summaries(&self, elapsed: Duration) -> Vec<Summary> {
        self.endpoints
            .iter()
            .map(|(endpoint, s)| Summary::of(endpoint.name(), &s.latency, s.ok, &s.errors, elapsed))
            .collect()
    }

    /// All endpoints together.
    pub fn total(&self, elapsed: Duration) -> Summary {
        let mut all = histogram(3);
        let mut ok = 0;
        let mut errors = BTreeMap::new();
        for s in self.endpoints.values() {
            // Same bounds and precision: adding cannot fail.
            let _ = all.add(&s.latency);
            ok += s.ok;
            for (k, v) in &s.errors {
                *errors.entry(k.clone()).or_default() += v;
            }
        }
        Summary::of("all", &all, ok, &errors, elapsed)
    }

    /// p99 (ms) of everything due in seconds `from..to` of the run.
    pub fn p99_between(&self, from: usize, to: usize) -> Option<f64> {
        let mut h = histogram(2);
        for s in self.per_second.iter().take(to).skip(from) {
            let _ = h.add(s);
        }
        (!h.is_empty()).then(|| ms(h.value_at_quantile(0.99)))
    }

    /// p99 (ms) of how late requests were sent: near zero unless the client itself, not
    /// the server, fell behind the schedule (then the run measured the client).
    pub fn send_lag_p99_ms(&self) -> f64 {
        ms(self.send_lag.value_at_quantile(0.99))
    }
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1_000.0
}

/// Requests, errors, throughput and latency percentiles of one endpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub endpoint: String,
    pub requests: u64,
    pub errors: u64,
    /// Error counts by status code or failure kind.
    pub error_kinds: BTreeMap<String, u64>,
    /// Successful requests per second.
    pub throughput: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    fn of(
        name: &str,
        h: &Histogram<u64>,
        ok: u64,
        errors: &BTreeMap<String, u64>,
        elapsed: Duration,
    ) -> Self {
        let failed: u64 = errors.values().sum();
        Self {
            endpoint: name.to_owned(),
            requests: ok + failed,
            errors: failed,
            error_kinds: errors.clone(),
            throughput: ok as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_LAG: Duration = Duration::ZERO;

    fn within(value: f64, expected: f64, tolerance: f64) -> bool {
        (value - expected).abs() <= expected * tolerance
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut r = Recorder::default();
        // 1..=10 000 ms, once each.
        for ms in 1..=10_000u64 {
            let latency = Duration::from_millis(ms);
            r.record(
                Endpoint::Home,
                Duration::ZERO,
                latency,
                NO_LAG,
                Outcome::Status(200),
            );
        }
        let s = &r.summaries(Duration::from_secs(10))[0];
        assert_eq!(s.endpoint, "home");
        assert_eq!((s.requests, s.errors), (10_000, 0));
        assert!(within(s.throughput, 1_000.0, 1e-9), "{}", s.throughput);
        assert!(within(s.p50_ms, 5_000.0, 0.001), "{}", s.p50_ms);
        assert!(within(s.p95_ms, 9_500.0, 0.001), "{}", s.p95_ms);
        assert!(within(s.p99_ms, 9_900.0, 0.001), "{}", s.p99_ms);
        assert!(within(s.max_ms, 10_000.0, 0.001), "{}", s.max_ms);
    }

    #[test]
    fn a_tail_of_one_percent_shows_at_p99_not_at_p95() {
        let mut r = Recorder::default();
        for i in 0..1_000 {
            let latency = Duration::from_millis(if i < 985 { 2 } else { 400 });
            r.record(
                Endpoint::Post,
                Duration::ZERO,
                latency,
                NO_LAG,
                Outcome::Status(200),
            );
        }
        let s = r.total(Duration::from_secs(1));
        assert!(within(s.p95_ms, 2.0, 0.01), "{}", s.p95_ms);
        assert!(within(s.p99_ms, 400.0, 0.01), "{}", s.p99_ms);
    }

    #[test]
    fn errors_are_counted_by_kind_and_excluded_from_throughput() {
        let mut r = Recorder::default();
        let d = Duration::from_millis(1);
        r.record(
            Endpoint::Home,
            Duration::ZERO,
            d,
            NO_LAG,
            Outcome::Status(200),
        );
        r.record(
            Endpoint::Home,
            Duration::ZERO,
            d,
            NO_LAG,
            Outcome::Status(503),
        );
        r.record(
            Endpoint::Favourite,
            Duration::ZERO,
            d,
            NO_LAG,
            Outcome::Timeout,
        );
        r.record(Endpoint::Favourite, Duration::ZERO, d, NO_LAG, Outcome::Io);
        r.record(
            Endpoint::Favourite,
            Duration::ZERO,
            d,
            NO_LAG,
            Outcome::Status(404),
        );
        let total = r.total(Duration::from_secs(1));
        assert_eq!((total.requests, total.errors), (5, 4));
        assert!(within(total.throughput, 1.0, 1e-9));
        let kinds: Vec<_> = total.error_kinds.keys().map(String::as_str).collect();
        assert_eq!(kinds, ["404", "503", "io", "timeout"]);
    }

    #[test]
    fn p99_of_a_window_of_seconds() {
        let mut r = Recorder::default();
        for second in 0..10u64 {
            let latency = Duration::from_millis(if second < 3 { 300 } else { 5 });
            for _ in 0..100 {
                let at = Duration::from_secs(second);
                r.record(Endpoint::Home, at, latency, NO_LAG, Outcome::Status(200));
            }
        }
        let early = r.p99_between(0, 3).unwrap_or_default();
        let late = r.p99_between(3, 10).unwrap_or_default();
        assert!(within(early, 300.0, 0.01), "{early}");
        assert!(within(late, 5.0, 0.01), "{late}");
        assert_eq!(r.p99_between(20, 30), None);
    }
}
