//! Streaming latency under many open connections: holds one WebSocket `user` stream per
//! token, posts as an author they all follow, and measures the time from the start of
//! each `POST /api/v1/statuses` to the `update` on every socket.
//!
//! ```text
//! stream_latency BASE_URL TOKENS_FILE AUTHOR_TOKEN [POSTS] [GAP_MS] [IDLE_S]
//! ```
//! `TOKENS_FILE` has one token per line (one socket each). Prints connection set-up
//! time, then after `IDLE_S` seconds of idle sockets (the caller samples the gateway's
//! CPU and memory meanwhile: a line `idle-start` / `idle-end` is printed around it), the
//! latency percentiles over every (post, socket) pair and how many never arrived.
//! Bounded: every wait has a deadline; targets whatever BASE_URL says (the bench script
//! passes 127.0.0.1).

// A command-line tool: its report goes to stdout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Sockets opened at once while connecting.
const CONNECT_CONCURRENCY: usize = 256;
/// How long an `update` may take before it counts as missing.
const DEADLINE: Duration = Duration::from_secs(10);

/// Receive times of `update`s, by status id.
type Arrivals = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!(
            "usage: stream_latency BASE_URL TOKENS_FILE AUTHOR_TOKEN [POSTS] [GAP_MS] [IDLE_S]"
        );
        std::process::exit(2);
    }
    let base = args[1].trim_end_matches('/').to_owned();
    let tokens: Vec<String> = std::fs::read_to_string(&args[2])
        .expect("tokens file")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let author = args[3].clone();
    let posts: usize = args.get(4).map_or(20, |a| a.parse().expect("POSTS"));
    let gap = Duration::from_millis(args.get(5).map_or(500, |a| a.parse().expect("GAP_MS")));
    let idle = Duration::from_secs(args.get(6).map_or(10, |a| a.parse().expect("IDLE_S")));
    let ws_base = base.replacen("http", "ws", 1);

    let arrivals: Arrivals = Arc::default();
    let started = Instant::now();
    let opened = futures::stream::iter(tokens.iter().cloned())
        .map(|token| {
            let url = format!("{ws_base}/api/v1/streaming?stream=user&access_token={token}");
            let arrivals = arrivals.clone();
            async move {
                let (socket, _) = tokio_tungstenite::connect_async(url).await.ok()?;
                tokio::spawn(read(socket, arrivals));
                Some(())
            }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .filter_map(|o| async move { o })
        .count()
        .await;
    println!(
        "connections: {opened} of {} open in {:.1} s",
        tokens.len(),
        started.elapsed().as_secs_f64()
    );
    // Subscriptions are made as sockets open; let the last ones settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("idle-start");
    tokio::time::sleep(idle).await;
    println!("idle-end");

    let http = reqwest::Client::new();
    let mut sent: Vec<(String, Instant)> = Vec::with_capacity(posts);
    for i in 0..posts {
        let at = Instant::now();
        let res = http
            .post(format!("{base}/api/v1/statuses"))
            .bearer_auth(&author)
            .form(&[("status", format!("streamed post {i}"))])
            .send()
            .await
            .expect("post");
        assert!(res.status().is_success(), "post answered {}", res.status());
        let body: serde_json::Value = res.json().await.expect("status json");
        sent.push((body["id"].as_str().expect("id").to_owned(), at));
        tokio::time::sleep(gap).await;
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let complete = {
            let arrivals = arrivals.lock().unwrap();
            sent.iter()
                .all(|(id, _)| arrivals.get(id).map_or(0, Vec::len) >= opened)
        };
        if complete || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrivals = arrivals.lock().unwrap();
    let mut samples: Vec<Duration> = Vec::with_capacity(posts * opened);
    let mut missing = 0;
    for (id, at) in &sent {
        let got = arrivals.get(id).map_or(&[][..], Vec::as_slice);
        missing += opened.saturating_sub(got.len());
        samples.extend(got.iter().map(|t| t.saturating_duration_since(*at)));
    }
    samples.sort_unstable();
    let pct = |p: f64| -> f64 {
        if samples.is_empty() {
            return f64::NAN;
        }
        let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    println!(
        "post -> update on {opened} sockets x {posts} posts: {} deliveries, {missing} missing; p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
}

/// Reads one socket until it closes, recording the arrival of every `update`.
async fn read(
    mut socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    arrivals: Arrivals,
) {
    while let Some(Ok(message)) = socket.next().await {
        let at = Instant::now();
        match message {
            Message::Text(text) => {
                // The client shares the machine with the server: find the event and the
                // status id without parsing the whole frame and payload.
                if let Some(id) = updated_status(text.as_str()) {
                    arrivals
                        .lock()
                        .unwrap()
                        .entry(id.to_owned())
                        .or_default()
                        .push(at);
                }
            }
            Message::Ping(data) => {
                let _ = socket.send(Message::Pong(data)).await;
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
}

/// The status id of an `update` frame: the payload is a JSON string holding the status,
/// whose first field is `id` (`"payload":"{\"id\":\"123\",...`).
fn updated_status(frame: &str) -> Option<&str> {
    if !frame.contains("\"event\":\"update\"") {
        return None;
    }
    let rest = frame.split_once("\"payload\":\"{\\\"id\\\":\\\"")?.1;
    rest.split_once('\\').map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_status_of_an_update() {
        let frame = serde_json::json!({
            "stream": ["user"],
            "event": "update",
            // As the gateway renders a status: `id` first.
            "payload": r#"{"id":"123","content":"<p>\"x\"</p>"}"#,
        })
        .to_string();
        assert_eq!(super::updated_status(&frame), Some("123"));
        let delete = r#"{"stream":["user"],"event":"delete","payload":"123"}"#;
        assert_eq!(super::updated_status(delete), None);
    }
}
