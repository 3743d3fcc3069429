//! What the stack reports about itself: Prometheus metrics of each process, and CPU time
//! and memory of each process from `/proc`.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use http::Method;

use crate::api::Api;

/// One sample of a Prometheus text exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A scrape of one process's `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct Metrics(Vec<Sample>);

impl Metrics {
    /// Parses the text format (comments and malformed lines are skipped).
    pub fn parse(text: &str) -> Self {
        Self(text.lines().filter_map(parse_line).collect())
    }

    /// Sum of the samples named `name` whose labels include every pair of `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                filter
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// Distinct values of label `label` among samples named `name`.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .0
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| {
                s.labels
                    .iter()
                    .find(|(k, _)| k == label)
                    .map(|(_, v)| v.clone())
            })
            .collect();
        values.sort();
        values.dedup();
        values
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=')?;
            let key = rest[..eq].trim().to_owned();
            rest = rest[eq + 1..].strip_prefix('"')?;
            // Values may hold `{`, `}` and `,` (routes do) and escaped quotes.
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            };
            rest = &rest[end + 1..];
            labels.push((key, value));
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Scrapes `http://addr/metrics`.
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<Metrics> {
    let mut api = Api::new(addr);
    let (status, body) = api.text(Method::GET, "/metrics").await?;
    if status != 200 {
        bail!("{addr}/metrics answered {status}");
    }
    Ok(Metrics::parse(&body))
}

/// CPU time and memory of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcStat {
    /// User + system CPU seconds so far.
    pub cpu_seconds: f64,
    /// Resident set now, and its peak (since start or the last [`reset_peak`]), in MiB.
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
}

/// Clock ticks per second of `/proc/<pid>/stat` times: USER_HZ is 100 on Linux.
const TICKS: f64 = 100.0;

pub fn proc_stat(pid: u32) -> anyhow::Result<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_proc(&stat, &status).with_context(|| format!("unexpected /proc/{pid} format"))
}

fn parse_proc(stat: &str, status: &str) -> Option<ProcStat> {
    // After "pid (comm) ", utime and stime are fields 14 and 15 (11th and 12th after comm).
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let kib = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].split_whitespace().next()?.parse().ok()
    };
    Some(ProcStat {
        cpu_seconds: (utime + stime) / TICKS,
        rss_mib: kib("VmRSS:")? / 1024.0,
        peak_rss_mib: kib("VmHWM:")? / 1024.0,
    })
}

/// Restarts a process's peak RSS from its current RSS (so a scenario reports its own peak).
pub fn reset_peak(pid: u32) -> anyhow::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;
    Ok(())
}

/// A process of the stack: its name (from its command line) and pid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub name: String,
    pub pid: u32,
}

/// The live processes of a pid file (one pid per line), named after their binaries
/// (`rookery-timeline` is "timeline").
pub fn processes(pidfile: &Path) -> anyhow::Result<Vec<Process>> {
    let text = std::fs::read_to_string(pidfile)
        .with_context(|| format!("reading {}", pidfile.display()))?;
    let mut out = Vec::new();
    for pid in text.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue; // exited
        };
        let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
        let binary = String::from_utf8_lossy(argv0);
        let base = binary.rsplit('/').next().unwrap_or_default();
        let name = base.strip_prefix("rookery-").unwrap_or(base).to_owned();
        out.push(Process { name, pid });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = r#"# TYPE cache_requests_total counter
cache_requests_total{cache="accounts",tier="l1",result="hit"} 90
cache_requests_total{cache="accounts",tier="l1",result="miss"} 10
cache_requests_total{cache="statuses",tier="l1",result="hit"} 5
http_server_request_duration_seconds_count{method="GET",route="/api/v1/accounts/{id}/statuses",status="200"} 7
http_server_request_duration_seconds_count{method="GET",route="/api/v1/accounts/{id}/statuses",status="404"} 2
weird{note="a \"quoted\", {braced} value"} 1.5
home_feed_rebuilds_total 3
garbage line
"#;

    #[test]
    fn parses_labels_with_braces_commas_and_escapes() {
        let m = Metrics::parse(EXPOSITION);
        assert_eq!(
            m.sum("cache_requests_total", &[("cache", "accounts")]),
            100.0
        );
        assert_eq!(m.sum("cache_requests_total", &[("result", "hit")]), 95.0);
        let route = ("route", "/api/v1/accounts/{id}/statuses");
        assert_eq!(
            m.sum("http_server_request_duration_seconds_count", &[route]),
            9.0
        );
        assert_eq!(
            m.sum(
                "http_server_request_duration_seconds_count",
                &[route, ("status", "200")]
            ),
            7.0
        );
        assert_eq!(
            m.sum("weird", &[("note", "a \"quoted\", {braced} value")]),
            1.5
        );
        assert_eq!(m.sum("home_feed_rebuilds_total", &[]), 3.0);
        assert_eq!(m.sum("absent", &[]), 0.0);
        assert_eq!(
            m.label_values("cache_requests_total", "cache"),
            ["accounts", "statuses"]
        );
    }

    #[test]
    fn reads_cpu_and_memory_from_proc_formats() {
        let stat = "4242 (rookery-gate way) S 1 4242 4242 0 -1 4194304 500 0 0 0 250 130 0 0 20 0 9 0 100 0 0";
        let status = "Name:\trookery-gateway\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        let p = parse_proc(stat, status);
        assert_eq!(
            p,
            Some(ProcStat {
                cpu_seconds: 3.8,
                rss_mib: 100.0,
                peak_rss_mib: 200.0
            })
        );
        assert_eq!(parse_proc("garbage", status), None);
    }

    #[test]
    fn reads_this_process_from_proc() -> anyhow::Result<()> {
        let me = proc_stat(std::process::id())?;
        assert!(me.rss_mib > 1.0 && me.peak_rss_mib >= me.rss_mib);
        let dir = std::env::temp_dir().join(format!("loadgen-pids-{}", std::process::id()));
        std::fs::write(&dir, format!("{}\n999999999\n", std::process::id()))?;
        let found = processes(&dir)?;
        std::fs::remove_file(&dir)?;
        assert_eq!(found.len(), 1, "the dead pid is skipped");
        assert_eq!(found[0].pid, std::process::id());
        Ok(())
    }
}
