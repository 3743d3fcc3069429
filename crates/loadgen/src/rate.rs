//! Open-loop arrival schedules, as wrk2 does them.
//!
//! Arrivals are fixed before the run starts: request `n` of the whole run is due at
//! `start + n / rate`, and arrivals are dealt round-robin to the connections. A connection
//! that is still waiting for a slow answer sends its next request late, and that request's
//! latency is counted from when it was *due*, not from when it could finally be sent. A
//! slow server therefore cannot hide its tail by slowing the client down (no coordinated
//! omission): every request the schedule asked for is in the histogram with its full wait.

use std::time::Duration;

use tokio::time::Instant;

/// How a run paces its requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// A fixed total arrival rate (requests per second), latency from the intended time.
    Open { rate: f64 },
    /// Every connection sends its next request as soon as the last one is answered
    /// (maximum throughput; latency from the actual send).
    Closed,
}

/// The intended send times of one connection's requests.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    start: Instant,
    rate: f64,
    /// This connection's first arrival, and the step between its arrivals.
    first: u64,
    step: u64,
}

impl Schedule {
    /// Connection `k` of `connections` in a run at `rate` requests/s in total: it sends
    /// arrival `k`, `k + connections`, `k + 2 * connections`, ... of the whole run.
    pub fn open(start: Instant, rate: f64, connections: usize, k: usize) -> Self {
        Self {
            start,
            rate: rate.max(f64::MIN_POSITIVE),
            first: k as u64,
            step: connections.max(1) as u64,
        }
    }

    /// When request `i` of this connection is due. Computed from the arrival's index in
    /// the whole run, so rounding never accumulates into drift.
    pub fn intended(&self, i: u64) -> Instant {
        let arrival = self.first.saturating_add(self.step.saturating_mul(i));
        self.start + Duration::from_secs_f64(arrival as f64 / self.rate)
    }

    /// How many of this connection's requests are due before `start + within`.
    pub fn due_within(&self, within: Duration) -> u64 {
        // Arrivals 0..total of the run are due before `within`.
        let total = (within.as_secs_f64() * self.rate).ceil() as u64;
        if total <= self.first {
            return 0;
        }
        (total - self.first).div_ceil(self.step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_of_all_connections_are_evenly_spaced_at_the_rate() {
        let start = Instant::now();
        let (rate, connections) = (1_000.0, 7);
        let mut due: Vec<Duration> = (0..connections)
            .flat_map(|k| {
                let s = Schedule::open(start, rate, connections, k);
                (0..s.due_within(Duration::from_secs(1))).map(move |i| s.intended(i) - start)
            })
            .collect();
        due.sort();
        assert_eq!(due.len(), 1_000, "one second at 1000/s");
        assert_eq!(due[0], Duration::ZERO);
        for pair in due.windows(2) {
            assert_eq!(pair[1] - pair[0], Duration::from_millis(1), "{pair:?}");
        }
        assert!(due[999] < Duration::from_secs(1));
    }

    #[test]
    fn a_connection_sends_every_connections_over_rate_seconds() {
        let start = Instant::now();
        let s = Schedule::open(start, 2_000.0, 10_000, 3);
        // 10 000 connections at 2000/s: each sends every 5 s, connection 3 first at 1.5 ms.
        assert_eq!(s.intended(0) - start, Duration::from_micros(1_500));
        assert_eq!(s.intended(2) - start, Duration::from_micros(10_001_500));
        assert_eq!(s.due_within(Duration::from_secs(60)), 12);
        assert_eq!(s.due_within(Duration::from_micros(1_500)), 0);
        assert_eq!(s.due_within(Duration::from_micros(1_501)), 1);
    }

    #[test]
    fn counts_are_exact_for_rates_that_do_not_divide_a_second() {
        let start = Instant::now();
        let total: u64 = (0..3)
            .map(|k| Schedule::open(start, 333.0, 3, k).due_within(Duration::from_secs(3)))
            .sum();
        assert_eq!(total, 999);
    }
}
