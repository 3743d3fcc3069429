//! `GET /api/v1/streaming`: the multiplexed WebSocket endpoint.
//!
//! The token is checked before the upgrade (401 otherwise); the `stream` parameter, if
//! any, is subscribed before the handshake completes. Then the client adds and removes
//! streams with `{"type":"subscribe","stream":...}` messages and gets text frames
//! `{"stream":["hashtag","rust"],"event":"update","payload":"<JSON as a string>"}`.

use std::time::Duration;

use axum::{
    extract::{
        Query, State,
        ws::{
            CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code,
            rejection::WebSocketUpgradeRejection,
        },
    },
    response::Response,
};
use bytes::Bytes;
use http::HeaderMap;

use super::{
    Params, authenticate,
    session::{End, Next, Session},
    stream::Stream,
};
use crate::{error::ApiError, state::AppState};

/// Largest client message: they only ever (un)subscribe.
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// How long a closing handshake may take before the socket is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// `GET /api/v1/streaming` (WebSocket upgrade).
pub async fn websocket(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let (auth, token) = authenticate(&state, &headers, &params, true).await?;
    let mut upgrade =
        upgrade.map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))?;
    let mut session = Session::open(&state, auth, token).await?;
    let greeting = match params.stream.as_deref() {
        None | Some("") => None,
        Some(name) => match Stream::parse(name, params.tag.as_deref()) {
            Ok(stream) => session.subscribe(stream).await.err().map(|r| r.frame()),
            Err(refusal) => Some(refusal.frame()),
        },
    };
    // Browsers fail the handshake unless the server picks one of the protocols they
    // offered; Mastodon clients put the token there, and Mastodon echoes it.
    let offered = upgrade.requested_protocols().next().cloned();
    if let Some(protocol) = offered {
        upgrade.set_selected_protocol(protocol);
    }
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        // The library's defaults (128 KiB to read, 128 KiB to write, per socket) cost
        // 1.4 GB at 10,000 sockets; clients send a few small commands and every event
        // is sent (and flushed) on its own.
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| serve(socket, session, greeting)))
}

/// Initial read buffer of a socket (it grows for a larger message, up to
/// `MAX_CLIENT_MESSAGE`).
const SOCKET_BUFFER: usize = 4 * 1024;

/// How the loop left the socket.
enum Exit {
    /// Closed by the client, or broken: nothing more to say.
    Gone,
    /// The session ended (shutdown, too slow, token revoked).
    Ended(End),
    /// The client sent binary data, which Mastodon refuses with 1003.
    Binary,
}

async fn serve(mut socket: WebSocket, mut session: Session, greeting: Option<String>) {
    if let Some(frame) = greeting
        && !send(&mut socket, &session, Message::text(frame)).await
    {
        return;
    }
    let heartbeat = session.heartbeat();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Anything from the client since the last ping proves it is there.
    let mut answered = true;
    let exit = loop {
        tokio::select! {
            next = session.next() => match next {
                Next::Event(stream, event) => {
                    let frame = event.ws_frame(&stream.label_json);
                    if !send(&mut socket, &session, Message::text(frame)).await {
                        break failed(&session);
                    }
                }
                Next::End(end) => break Exit::Ended(end),
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    answered = true;
                    if let Some(reply) = session.command(text.as_str()).await
                        && !send(&mut socket, &session, Message::text(reply)).await
                    {
                        break failed(&session);
                    }
                }
                Some(Ok(Message::Binary(_))) => break Exit::Binary,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => answered = true,
                Some(Ok(Message::Close(_)) | Err(_)) | None => break Exit::Gone,
            },
            _ = ping.tick() => {
                if !answered {
                    tracing::debug!("streaming client stopped answering pings, disconnecting");
                    break Exit::Gone;
                }
                answered = false;
                if !send(&mut socket, &session, Message::Ping(Bytes::new())).await {
                    break failed(&session);
                }
            }
        }
    };
    match exit {
        Exit::Gone => {}
        // Its socket is full: a closing handshake would wait on it too. Dropping the
        // socket closes the connection.
        Exit::Ended(End::TooSlow) => {}
        Exit::Ended(End::Shutdown) => {
            close(socket, close_code::AWAY, "Server shutting down").await;
        }
        Exit::Ended(End::Revoked) => {
            close(socket, close_code::POLICY, "The access token was revoked").await;
        }
        Exit::Binary => {
            close(
                socket,
                close_code::UNSUPPORTED,
                "Binary messages are not supported",
            )
            .await;
        }
    }
}

/// Sends `message`, giving up when the session ends meanwhile (a send blocks as long
/// as the client does not read). False when the socket is done for.
async fn send(socket: &mut WebSocket, session: &Session, message: Message) -> bool {
    tokio::select! {
        sent = socket.send(message) => sent.is_ok(),
        () = session.cancelled() => false,
    }
}

/// Why a send failed: the session ended, or the socket broke.
fn failed(session: &Session) -> Exit {
    session.ended().map_or(Exit::Gone, Exit::Ended)
}

/// The closing handshake: our close frame, then the client's answer, bounded in time.
async fn close(mut socket: WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        if socket.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}
