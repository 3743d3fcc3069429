//! The streaming API end to end, as a Mastodon client sees it: WebSocket (streams by
//! query parameter and by multiplexed messages, tokens by header, parameter or
//! sub-protocol) and server-sent events; frames and their payloads; blocks and mutes;
//! slow clients; shutdown; and statuses posted through the API reaching their readers.
//!
//! Most tests publish on the pub/sub channels themselves, as the timeline and
//! notifications services do, for statuses created through the API; unlisted ones,
//! so that the timeline service's own announcements on the public and hashtag channels
//! do not interleave.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rookery_e2e::{App, Stack, eventually, json_error, json_ok, spawn};
use rookery_kit::{
    config::RedisConfig,
    redis::Redis,
    streaming::{self, Kind, Message},
};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{self, client::IntoClientRequest, protocol::frame::coding::CloseCode},
};

/// How long an expected frame may take.
const WAIT: Duration = Duration::from_secs(10);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The stack's Redis, to publish as the services do.
fn redis(stack: &Stack) -> Redis {
    Redis::new(&RedisConfig::for_url(&stack.redis_url, &stack.redis_prefix)).unwrap()
}

async fn publish(stack: &Stack, channel: &str, message: Message) {
    streaming::publish(&redis(stack), &[channel.to_owned()], &message)
        .await
        .unwrap();
}

fn update(id: &str, author: &str) -> Message {
    Message {
        event: Kind::Update,
        id: id.parse().unwrap(),
        account: author.parse().unwrap(),
        version_ms: chrono::Utc::now().timestamp_millis(),
    }
}

fn delete(id: &str) -> Message {
    Message {
        event: Kind::Delete,
        id: id.parse().unwrap(),
        account: 0,
        version_ms: 0,
    }
}

/// Waits until `channel` has `subscribers` subscribers in Redis (the gateway's hub).
async fn wait_subscribers(stack: &Stack, channel: &str, subscribers: i64) {
    let redis = redis(stack);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut cmd = redis::cmd("PUBSUB");
        cmd.arg("NUMSUB").arg(channel);
        // Errors count as "not yet": Redis may just be coming back.
        let n = redis
            .query::<(String, i64)>(&cmd)
            .await
            .map_or(-1, |(_, n)| n);
        if n == subscribers {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{channel} has {n} subscribers, expected {subscribers}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ws_url(base: &str, query: &str) -> String {
    format!("{}/api/v1/streaming{query}", base.replacen("http", "ws", 1))
}

/// Opens a WebSocket at `base` with `query` (e.g. `?stream=user`), the token as a bearer
/// header.
async fn connect_at(base: &str, query: &str, token: &str) -> Ws {
    let mut req = ws_url(base, query).into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, res) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(res.status(), 101);
    ws
}

async fn connect(stack: &Stack, query: &str, token: &str) -> Ws {
    connect_at(&stack.base, query, token).await
}

/// Opens the server-sent events of `path` (`user`, `public`, ...) with the token as a
/// query parameter, as browsers' `EventSource` must.
async fn sse(stack: &Stack, path: &str, token: &str) -> reqwest::Response {
    stack
        .http
        .get(format!(
            "{}/api/v1/streaming/{path}?access_token={token}",
            stack.base
        ))
        .send()
        .await
        .unwrap()
}

/// The next text frame, as JSON (pings are answered by the client library).
async fn frame(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no frame in time")
            .expect("socket closed")
            .expect("socket failed");
        match msg {
            tungstenite::Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// The next frame of `event` about `id` (the payload's `id` for statuses, the payload
/// itself for deletes), skipping others (the services' own announcements).
async fn frame_about(ws: &mut Ws, event: &str, id: &str) -> Value {
    loop {
        let f = frame(ws).await;
        if f["event"] != event {
            continue;
        }
        let payload = f["payload"].as_str().expect("payload is a string");
        let about = if event == "delete" {
            payload.to_owned()
        } else {
            let status: Value = serde_json::from_str(payload).unwrap();
            status["id"].as_str().unwrap().to_owned()
        };
        if about == id {
            return f;
        }
    }
}

/// The status a frame carries.
fn status_of(frame: &Value) -> Value {
    serde_json::from_str(frame["payload"].as_str().expect("payload is a string")).unwrap()
}

async fn send(ws: &mut Ws, command: Value) {
    ws.send(tungstenite::Message::text(command.to_string()))
        .await
        .unwrap();
}

/// Posts `text` (unlisted) as `token`; returns the status id.
async fn post(stack: &Stack, token: &str, text: &str) -> String {
    post_as(stack, token, text, "unlisted").await
}

async fn post_as(stack: &Stack, token: &str, text: &str, visibility: &str) -> String {
    let form = [("status", text), ("visibility", visibility)];
    let status = json_ok(
        stack
            .post_form("/api/v1/statuses", Some(token), &form)
            .await,
    )
    .await;
    status["id"].as_str().unwrap().to_owned()
}

/// An account id as a number, for channels.
fn num(id: &str) -> i64 {
    id.parse().unwrap()
}

/// Sum of the samples of `metric` (with any labels) in the process's `/metrics`.
async fn metric(stack: &Stack, metric: &str) -> f64 {
    let text = stack.get("/metrics", None).await.text().await.unwrap();
    text.lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn accounts(stack: &Stack, stems: &[&str]) -> (App, Vec<(String, String)>) {
    let app = stack.create_app().await;
    let mut out = Vec::new();
    for stem in stems {
        out.push(stack.account(&app, stem).await);
    }
    (app, out)
}

#[tokio::test]
async fn health_answers_ok() {
    let stack = spawn().await;
    let res = stack.get("/api/v1/streaming/health", None).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(res.text().await.unwrap(), "OK");
}

#[tokio::test]
async fn user_stream_over_websocket_by_parameter_and_by_message() {
    let stack = spawn().await;
    let (_, people) = accounts(&stack, &["author", "reader"]).await;
    let [(author, author_id), (reader, reader_id)] = [people[0].clone(), people[1].clone()];
    let id = post(&stack, &author, "hello <streams> & \"quotes\"").await;
    let channel = streaming::user_channel(&redis(&stack), num(&reader_id));

    // Subscribed by message: the hub subscribes the channel once it has a subscriber.
    let mut by_message = connect(&stack, "", &reader).await;
    send(
        &mut by_message,
        json!({"type": "subscribe", "stream": "user"}),
    )
    .await;
    wait_subscribers(&stack, &channel, 1).await;
    publish(&stack, &channel, update(&id, &author_id)).await;
    let f = frame(&mut by_message).await;
    assert_eq!(f["stream"], json!(["user"]), "{f}");
    assert_eq!(f["event"], "update");
    let status = status_of(&f);
    assert_eq!(status["id"], id.as_str());
    assert_eq!(status["account"]["id"], author_id.as_str());
    assert_eq!(status["visibility"], "unlisted");
    assert!(
        status["content"]
            .as_str()
            .unwrap()
            .contains("hello &lt;streams&gt; &amp; &quot;quotes&quot;"),
        "{status}"
    );
    // One rendering for every reader: no one's flags, but the fields are there.
    assert_eq!(status["favourited"], false);
    assert_eq!(status["bookmarked"], false);

    // Subscribed by parameter: ready when the handshake is done. One channel, one
    // Redis subscription, however many sockets.
    let mut by_parameter = connect(&stack, "?stream=user", &reader).await;
    wait_subscribers(&stack, &channel, 1).await;
    publish(&stack, &channel, delete(&id)).await;
    for ws in [&mut by_parameter, &mut by_message] {
        let f = frame(ws).await;
        assert_eq!(
            f,
            json!({"stream": ["user"], "event": "delete", "payload": id})
        );
    }

    // The last socket leaving unsubscribes the replica.
    drop(by_message);
    by_parameter.close(None).await.unwrap();
    wait_subscribers(&stack, &channel, 0).await;
}

#[tokio::test]
async fn hashtag_streams_multiplex_and_unsubscribe() {
    let stack = spawn().await;
    let (_, people) = accounts(&stack, &["author", "reader"]).await;
    let [(author, author_id), (reader, reader_id)] = [people[0].clone(), people[1].clone()];
    let id = post(&stack, &author, "about #Rust today").await;
    let redis = redis(&stack);
    let user = streaming::user_channel(&redis, num(&reader_id));
    let rust = streaming::hashtag_channel(&redis, "rust");

    let mut ws = connect(&stack, "?stream=user", &reader).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "stream": "hashtag", "tag": "Rust"}),
    )
    .await;
    wait_subscribers(&stack, &rust, 1).await;
    publish(&stack, &rust, update(&id, &author_id)).await;
    let f = frame(&mut ws).await;
    assert_eq!(f["stream"], json!(["hashtag", "Rust"]), "{f}");
    assert_eq!(f["event"], "update");
    assert_eq!(status_of(&f)["tags"][0]["name"], "rust");
    // The same socket still gets its user stream.
    publish(&stack, &user, delete(&id)).await;
    assert_eq!(
        frame(&mut ws).await,
        json!({"stream": ["user"], "event": "delete", "payload": id})
    );

    // Unknown streams are refused in a frame, as Mastodon does; the socket lives on.
    send(&mut ws, json!({"type": "subscribe", "stream": "bogus"})).await;
    assert_eq!(
        frame(&mut ws).await,
        json!({"error": "Unknown stream type", "status": 400})
    );
    send(&mut ws, json!({"type": "subscribe", "stream": "hashtag"})).await;
    assert_eq!(
        frame(&mut ws).await,
        json!({"error": "No tag for stream provided", "status": 400})
    );

    // After unsubscribing, hashtag events no longer come: the next frame is a later
    // user event.
    send(
        &mut ws,
        json!({"type": "unsubscribe", "stream": "hashtag", "tag": "rust"}),
    )
    .await;
    wait_subscribers(&stack, &rust, 0).await;
    publish(&stack, &rust, delete("1")).await;
    publish(&stack, &user, delete("2")).await;
    assert_eq!(frame(&mut ws).await["payload"], "2");

    // Shutdown closes the socket with 1001 (going away).
    drop(stack);
    let close = loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(tungstenite::Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.unwrap().code, CloseCode::Away);
}

#[tokio::test]
async fn server_sent_events_with_a_query_token() {
    let stack = spawn().await;
    let (_, people) = accounts(&stack, &["author", "reader"]).await;
    let [(author, author_id), (reader, reader_id)] = [people[0].clone(), people[1].clone()];
    let id = post(&stack, &author, "over sse").await;

    let res = sse(&stack, "user", &reader).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    // Subscribed before the headers: what is published now arrives.
    let channel = streaming::user_channel(&redis(&stack), num(&reader_id));
    publish(&stack, &channel, update(&id, &author_id)).await;
    publish(&stack, &channel, delete(&id)).await;
    let mut body = res.bytes_stream();
    let mut text = String::new();
    let read = tokio::time::timeout(WAIT, async {
        while !text.contains("event: delete") {
            let chunk = body.next().await.expect("stream ended").unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await;
    assert!(read.is_ok(), "events not received: {text:?}");
    // A comment first, as Mastodon opens its event streams.
    assert!(text.starts_with(':'), "{text:?}");
    let update = text
        .split("\n\n")
        .find(|e| e.starts_with("event: update\n"))
        .unwrap_or_else(|| panic!("no update in {text:?}"));
    let data = update.strip_prefix("event: update\ndata: ").unwrap();
    let status: Value = serde_json::from_str(data).unwrap();
    assert_eq!(status["id"], id.as_str());
    assert_eq!(status["content"], "<p>over sse</p>");
    assert!(
        text.contains(&format!("event: delete\ndata: {id}\n\n")),
        "{text:?}"
    );

    // Shutdown ends the response.
    drop(stack);
    let end = tokio::time::timeout(WAIT, async {
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the event stream did not end on shutdown");
}

#[tokio::test]
async fn tokens_are_checked_before_the_upgrade() {
    let stack = spawn().await;
    let (app, people) = accounts(&stack, &["author", "reader"]).await;
    let [(author, author_id), (reader, _)] = [people[0].clone(), people[1].clone()];

    // No token, a bad token: 401 in Mastodon's error format, no upgrade.
    for query in ["?stream=public", "?stream=public&access_token=nope"] {
        let req = ws_url(&stack.base, query).into_client_request().unwrap();
        match tokio_tungstenite::connect_async(req).await {
            Err(tungstenite::Error::Http(res)) => {
                assert_eq!(res.status(), 401);
                let body: Value = serde_json::from_slice(res.body().as_ref().unwrap()).unwrap();
                assert!(
                    body["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{body}"
                );
            }
            other => panic!("expected 401, got {other:?}"),
        }
    }
    json_error(stack.get("/api/v1/streaming/public", None).await, 401).await;
    json_error(
        stack.get("/api/v1/streaming/hashtag", Some(&reader)).await,
        400,
    )
    .await;

    // The token as the WebSocket sub-protocol, echoed back as Mastodon does (the client
    // library fails the handshake otherwise).
    let mut req = ws_url(&stack.base, "?stream=public")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", reader.parse().unwrap());
    let (mut ws, res) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(res.headers()["sec-websocket-protocol"], reader.as_str());
    let id = post(&stack, &author, "by protocol").await;
    publish(
        &stack,
        &streaming::public_channel(&redis(&stack)),
        update(&id, &author_id),
    )
    .await;
    let f = frame_about(&mut ws, "update", &id).await;
    assert_eq!(f["stream"], json!(["public"]));

    // User streams need a user token with a read scope; refusals come as frames.
    let app_token = stack.app_token(&app, "read").await;
    let mut ws = connect(&stack, "?stream=user", &app_token).await;
    assert_eq!(
        frame(&mut ws).await,
        json!({"error": "Access token does not have the required scopes", "status": 401})
    );
    let mut ws = connect(&stack, "?stream=list&list=1", &reader).await;
    assert_eq!(
        frame(&mut ws).await,
        json!({"error": "Unknown stream type", "status": 400})
    );
}

#[tokio::test]
async fn revoking_a_token_closes_its_streams_at_once() {
    let stack = spawn().await;
    let (app, people) = accounts(&stack, &["author", "reader", "other"]).await;
    let [(author, author_id), (reader, _), (other, _)] =
        [people[0].clone(), people[1].clone(), people[2].clone()];
    let mut revoked_ws = connect(&stack, "?stream=public", &reader).await;
    let mut kept_ws = connect(&stack, "?stream=public", &other).await;
    let sse = sse(&stack, "public", &reader).await;
    assert_eq!(sse.status(), 200);
    let mut sse = sse.bytes_stream();

    // All three are live.
    let channel = streaming::public_channel(&redis(&stack));
    let id = post(&stack, &author, "before").await;
    publish(&stack, &channel, update(&id, &author_id)).await;
    frame_about(&mut revoked_ws, "update", &id).await;
    frame_about(&mut kept_ws, "update", &id).await;

    json_ok(stack.revoke(&app, &reader).await).await;

    // The WebSocket is closed with 1008 (policy), well before any periodic check.
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match revoked_ws.next().await {
                Some(Ok(tungstenite::Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("the socket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("the revoked token's WebSocket was not closed within 5 s");
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Policy));
    // The event stream ends.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = sse.next().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the revoked token's event stream did not end"
    );

    // Other tokens keep their streams; the revoked one cannot open a new one.
    let id = post(&stack, &author, "after").await;
    publish(&stack, &channel, update(&id, &author_id)).await;
    frame_about(&mut kept_ws, "update", &id).await;
    let req = ws_url(&stack.base, "?stream=public")
        .into_client_request()
        .map(|mut req| {
            req.headers_mut()
                .insert("authorization", format!("Bearer {reader}").parse().unwrap());
            req
        })
        .unwrap();
    match tokio_tungstenite::connect_async(req).await {
        Err(tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
}

#[tokio::test]
async fn blocked_and_muted_authors_are_left_out() {
    let stack = spawn().await;
    let (_, people) = accounts(&stack, &["author", "muter", "blocker", "reader"]).await;
    let [(author, author_id), (muter, _), (blocker, _), (reader, _)] = [
        people[0].clone(),
        people[1].clone(),
        people[2].clone(),
        people[3].clone(),
    ];
    json_ok(stack.act(&muter, &author_id, "mute", &[]).await).await;
    json_ok(stack.act(&blocker, &author_id, "block", &[]).await).await;
    let id = post(&stack, &author, "filtered for some").await;

    let mut sockets = Vec::new();
    for token in [&muter, &blocker, &reader] {
        sockets.push(connect(&stack, "?stream=public", token).await);
    }
    let public = streaming::public_channel(&redis(&stack));
    publish(&stack, &public, update(&id, &author_id)).await;
    publish(&stack, &public, delete("1")).await;
    let [muted, blocked, reading] = &mut sockets[..] else {
        unreachable!()
    };
    let f = frame(reading).await;
    assert_eq!(status_of(&f)["id"], id.as_str());
    // The filtered readers' next frame is the later delete: the update never came.
    for ws in [muted, blocked] {
        assert_eq!(frame(ws).await["event"], "delete");
    }
}

#[tokio::test]
async fn many_sockets_share_one_rendering() {
    let stack = spawn().await;
    let (_, people) = accounts(&stack, &["author", "reader"]).await;
    let [(author, author_id), (reader, _)] = [people[0].clone(), people[1].clone()];
    let id = post(&stack, &author, "rendered once").await;
    const SOCKETS: usize = 6;
    let mut sockets = Vec::new();
    for _ in 0..SOCKETS {
        sockets.push(connect(&stack, "?stream=public:local", &reader).await);
    }
    let before = metric(&stack, "streaming_renders_total").await;
    publish(
        &stack,
        &streaming::public_channel(&redis(&stack)),
        update(&id, &author_id),
    )
    .await;
    for ws in &mut sockets {
        let f = frame(ws).await;
        assert_eq!(f["stream"], json!(["public:local"]));
        assert_eq!(status_of(&f)["id"], id.as_str());
    }
    let renders = metric(&stack, "streaming_renders_total").await - before;
    // One per event on this replica; tests running alongside in this process (without
    // nextest's process per test) may add a few, never one per socket.
    assert!(
        (1.0..SOCKETS as f64).contains(&renders),
        "{renders} renderings for {SOCKETS} sockets"
    );
}

#[tokio::test]
async fn slow_clients_are_disconnected() {
    let stack = spawn().await;
    let (_, people) = accounts(&stack, &["author", "reader"]).await;
    let [(author, author_id), (reader, _)] = [people[0].clone(), people[1].clone()];
    let base = stack
        .gateway_with(|c| {
            c.streaming.buffer = 4;
            // No pings: only the buffer may end this connection.
            c.streaming.heartbeat = Duration::from_secs(600);
        })
        .await;
    let text = "a status long enough to fill socket buffers quickly. ".repeat(9);
    let id = post(&stack, &author, &text).await;
    let mut stalled = connect_at(&base, "?stream=public", &reader).await;

    // Publish until the gateway gives up on the reader, which reads nothing meanwhile
    // (its socket buffers fill first, then its queue).
    let redis = redis(&stack);
    let public = streaming::public_channel(&redis);
    let message = update(&id, &author_id);
    let before = metric(&stack, "streaming_dropped_slow_total").await;
    let mut published = 0;
    let channels = vec![public; 500];
    let dropped = loop {
        streaming::publish(&redis, &channels, &message)
            .await
            .unwrap();
        published += channels.len();
        tokio::time::sleep(Duration::from_millis(20)).await;
        if metric(&stack, "streaming_dropped_slow_total").await > before {
            break true;
        }
        if published >= 100_000 {
            break false;
        }
    };
    assert!(dropped, "reader still connected after {published} events");

    // What had reached the socket can still be read, then the connection is gone.
    let mut received = 0;
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match stalled.next().await {
                Some(Ok(tungstenite::Message::Text(_))) => received += 1,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "connection still open after {received} frames");
    assert!(received < published, "{received} of {published} received");
}

#[tokio::test]
async fn followers_stream_new_statuses_from_the_api() {
    let stack = spawn().await;
    let (_, people) = accounts(&stack, &["author", "follower", "reader"]).await;
    let [(author, author_id), (follower, _), (reader, _)] =
        [people[0].clone(), people[1].clone(), people[2].clone()];
    json_ok(stack.act(&follower, &author_id, "follow", &[]).await).await;

    let mut home = connect(&stack, "?stream=user", &follower).await;
    let mut public = connect(&stack, "?stream=public", &reader).await;
    let mut tag = connect(&stack, "?stream=hashtag&tag=Streams", &reader).await;
    let id = post_as(&stack, &author, "live! #streams", "public").await;

    let f = frame_about(&mut home, "update", &id).await;
    assert_eq!(f["stream"], json!(["user"]));
    assert_eq!(status_of(&f)["account"]["id"], author_id.as_str());
    let f = frame_about(&mut public, "update", &id).await;
    assert_eq!(f["stream"], json!(["public"]));
    let f = frame_about(&mut tag, "update", &id).await;
    assert_eq!(f["stream"], json!(["hashtag", "Streams"]));

    let res = stack
        .http
        .delete(format!("{}/api/v1/statuses/{id}", stack.base))
        .bearer_auth(&author)
        .send()
        .await
        .unwrap();
    json_ok(res).await;
    frame_about(&mut home, "delete", &id).await;
    frame_about(&mut public, "delete", &id).await;
}

/// The next `notification` frame whose notification is about status `id`.
async fn notification_about(ws: &mut Ws, id: &str) -> Value {
    loop {
        let f = frame(ws).await;
        if f["event"] != "notification" {
            continue;
        }
        let n = status_of(&f);
        if n["status"]["id"] == id {
            return n;
        }
    }
}

#[tokio::test]
async fn mentions_and_edits_reach_websocket_and_sse_readers() {
    let stack = spawn().await;
    let (_, people) = accounts(&stack, &["author", "reader"]).await;
    let [(author, author_id), (reader, reader_id)] = [people[0].clone(), people[1].clone()];
    let acct = stack.account_json(&reader_id).await["acct"]
        .as_str()
        .unwrap()
        .to_owned();
    json_ok(stack.act(&reader, &author_id, "follow", &[]).await).await;
    let mut ws = connect(&stack, "?stream=user", &reader).await;
    let sse = sse(&stack, "user/notification", &reader).await;
    assert_eq!(sse.status(), 200);

    // A mention by a followed account: the status as an update, the mention as a
    // notification (made by the notifications service from the timeline's event).
    let id = post_as(&stack, &author, &format!("hey @{acct}"), "public").await;
    frame_about(&mut ws, "update", &id).await;
    let n = notification_about(&mut ws, &id).await;
    assert_eq!(n["type"], "mention");
    assert_eq!(n["account"]["id"], author_id.as_str());
    let listed = json_ok(stack.get("/api/v1/notifications", Some(&reader)).await).await;
    assert_eq!(
        listed[0]["id"], n["id"],
        "the streamed notification is the listed one"
    );

    // The notification-only SSE stream has it, and no update.
    let mut body = sse.bytes_stream();
    let mut text = String::new();
    let read = tokio::time::timeout(WAIT, async {
        while !text.contains("event: notification") {
            let chunk = body.next().await.expect("stream ended").unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await;
    assert!(read.is_ok(), "no notification over SSE: {text:?}");
    assert!(!text.contains("event: update"), "{text:?}");
    let event = text
        .split("\n\n")
        .find(|e| e.starts_with("event: notification\n"))
        .unwrap();
    let sent: Value =
        serde_json::from_str(event.strip_prefix("event: notification\ndata: ").unwrap()).unwrap();
    assert_eq!(sent["status"]["id"], id.as_str());

    // An edit reaches the follower as `status.update` with the new text.
    let res = stack
        .http
        .put(format!("{}/api/v1/statuses/{id}", stack.base))
        .bearer_auth(&author)
        .form(&[("status", format!("hey @{acct}, edited"))])
        .send()
        .await
        .unwrap();
    json_ok(res).await;
    let f = frame_about(&mut ws, "status.update", &id).await;
    let edited = status_of(&f);
    assert!(
        edited["content"].as_str().unwrap().contains("edited"),
        "{edited}"
    );
    assert!(edited["edited_at"].is_string(), "{edited}");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused() {
    let stack = spawn().await;
    let (_, people) = accounts(&stack, &["reader"]).await;
    let reader = people[0].0.clone();
    let base = stack
        .gateway_with(|c| c.streaming.max_connections = 1)
        .await;
    let first = connect_at(&base, "?stream=public", &reader).await;
    let res = stack
        .get_at(&base, "/api/v1/streaming/public", Some(&reader))
        .await;
    json_error(res, 503).await;
    let req = ws_url(&base, "?stream=public")
        .into_client_request()
        .unwrap();
    match tokio_tungstenite::connect_async(req).await {
        Err(tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
        other => panic!("expected 401 before the capacity check, got {other:?}"),
    }
    // A closed connection frees its place.
    drop(first);
    let freed = eventually(WAIT, || async {
        let res = stack
            .get_at(&base, "/api/v1/streaming/public", Some(&reader))
            .await;
        (res.status() == 200).then_some(())
    })
    .await;
    assert!(freed.is_some(), "the closed connection still counts");
}

#[tokio::test]
async fn streams_outlive_the_request_timeout_and_silent_sockets_are_dropped() {
    let stack = spawn().await;
    let (_, people) = accounts(&stack, &["author", "reader"]).await;
    let [(author, author_id), (reader, _)] = [people[0].clone(), people[1].clone()];
    let base = stack
        .gateway_with(|c| {
            c.request_timeout = Duration::from_secs(1);
            c.streaming.heartbeat = Duration::from_millis(100);
        })
        .await;
    let mut reading = connect_at(&base, "?stream=public", &reader).await;
    let mut silent = connect_at(&base, "?stream=public", &reader).await;
    let sse = stack
        .http
        .get(format!("{base}/api/v1/streaming/public"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let mut sse = sse.bytes_stream();

    // Well past the request timeout and several heartbeats: the reader (whose client
    // answers pings) and the SSE response are still there.
    let mut pings = 0;
    let quiet = tokio::time::timeout(Duration::from_millis(1500), async {
        loop {
            match reading.next().await {
                Some(Ok(tungstenite::Message::Ping(_))) => pings += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert!(quiet.is_err());
    assert!(pings >= 3, "{pings} pings");
    let id = post(&stack, &author, "still listening").await;
    publish(
        &stack,
        &streaming::public_channel(&redis(&stack)),
        update(&id, &author_id),
    )
    .await;
    frame_about(&mut reading, "update", &id).await;
    let mut text = String::new();
    let read = tokio::time::timeout(WAIT, async {
        while !text.contains(&id) {
            let chunk = sse.next().await.expect("stream ended").unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await;
    assert!(read.is_ok(), "{text:?}");
    assert!(text.contains(": thump\n"), "no heartbeat in {text:?}");

    // The socket that never answered a ping was dropped.
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match silent.next().await {
                Some(Ok(tungstenite::Message::Text(t))) => panic!("unexpected frame {t}"),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "a silent socket was kept open");
}

/// A private `redis-server` on `port`, so that killing it harms no other test.
async fn start_redis(port: u16) -> tokio::process::Child {
    let child = tokio::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server must be installed (make test installs it)");
    let up = eventually(WAIT, || async move {
        TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    assert!(up.is_some(), "private redis-server did not start");
    child
}

#[tokio::test]
async fn subscriptions_come_back_with_redis() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = start_redis(port).await;
    let stack = rookery_e2e::spawn_with_redis(&format!("redis://127.0.0.1:{port}/0")).await;
    let (_, people) = accounts(&stack, &["author", "reader"]).await;
    let [(author, author_id), (reader, reader_id)] = [people[0].clone(), people[1].clone()];
    let id = post(&stack, &author, "after the outage").await;
    let mut ws = connect(&stack, "?stream=user", &reader).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "stream": "hashtag", "tag": "outage"}),
    )
    .await;
    let redis = redis(&stack);
    let user = streaming::user_channel(&redis, num(&reader_id));
    let tag = streaming::hashtag_channel(&redis, "outage");
    wait_subscribers(&stack, &tag, 1).await;

    server.kill().await.unwrap();
    let _server = start_redis(port).await;
    // The socket stayed open; the replica subscribes its channels again by itself.
    wait_subscribers(&stack, &user, 1).await;
    wait_subscribers(&stack, &tag, 1).await;
    publish(&stack, &user, update(&id, &author_id)).await;
    publish(&stack, &tag, delete(&id)).await;
    let f = frame(&mut ws).await;
    assert_eq!(f["stream"], json!(["user"]), "{f}");
    assert_eq!(status_of(&f)["id"], id.as_str());
    assert_eq!(
        frame(&mut ws).await,
        json!({"stream": ["hashtag", "outage"], "event": "delete", "payload": id})
    );
}
