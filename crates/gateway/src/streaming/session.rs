//! One streaming connection, whatever its protocol: who reads, the streams it is
//! subscribed to, the events queued for it and what it must not see.
//!
//! Dropping a session unsubscribes everything and counts the connection out, so a
//! connection that ends in any way (client gone, error, task cancelled) leaves nothing
//! behind in the hub.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use rookery_kit::{cache::Evicted, streaming::Kind as Event};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};

use super::{
    EXCLUSIONS_TTL, SUBSCRIBE_WAIT,
    hub::{Conn, Delivery, SubId, Subscribed},
    render::Rendered,
    stream::{Kind, Refusal, Stream},
};
use crate::{auth::Auth, error::ApiError, state::AppState};

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The server is shutting down.
    Shutdown,
    /// The client fell a whole buffer behind.
    TooSlow,
    /// The token was revoked (or no longer authenticates).
    Revoked,
}

/// What a session has next for its client.
pub enum Next {
    /// An event on one of its streams.
    Event(Arc<Subscribed>, Arc<Rendered>),
    /// Nothing more: the connection is to be closed.
    End(End),
}

/// A client connection. Not `Debug`: it holds the bearer token.
pub struct Session {
    state: AppState,
    auth: Auth,
    /// The bearer token, to check again that it still authenticates.
    token: String,
    /// Its cache key: the key a revocation invalidates.
    token_key: String,
    /// Token revocations reaching this replica (`None` once the feed closed).
    revocations: Option<broadcast::Receiver<Evicted>>,
    /// A revocation may have been missed: check the token at the next refresh.
    recheck: bool,
    /// The reader (0 for app tokens).
    account: i64,
    conn: Arc<Conn>,
    rx: mpsc::Receiver<Delivery>,
    subs: HashMap<(Kind, String), SubId>,
    /// Accounts whose statuses this reader does not get.
    exclusions: Arc<HashSet<i64>>,
    refresh: tokio::time::Interval,
}

impl Session {
    /// Opens a session for `auth` (what `token` resolved to): reads the reader's
    /// exclusions, then counts the connection in (503 when the replica is full).
    pub async fn open(state: &AppState, auth: Auth, token: String) -> Result<Self, ApiError> {
        let streaming = &state.streaming;
        // Watched before anything else, so a revocation from now on is heard.
        let revocations = Some(streaming.revocations());
        let account = auth.token.account_id.unwrap_or(0);
        let exclusions = streaming.exclusions(state, account).await?;
        streaming.admit()?;
        let (conn, rx) = Conn::new(streaming.config.buffer, &streaming.shutdown);
        let mut refresh =
            tokio::time::interval_at(tokio::time::Instant::now() + EXCLUSIONS_TTL, EXCLUSIONS_TTL);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Self {
            state: state.clone(),
            auth,
            token_key: crate::auth::token_key(&token),
            token,
            revocations,
            recheck: false,
            account,
            conn,
            rx,
            subs: HashMap::new(),
            exclusions,
            refresh,
        })
    }

    /// The interval of heartbeats.
    pub fn heartbeat(&self) -> Duration {
        self.state.streaming.config.heartbeat
    }

    /// Whether the server is shutting down.
    pub fn shutting_down(&self) -> bool {
        self.state.streaming.shutdown.is_cancelled()
    }

    /// Resolves when the connection must end (shutdown, too slow); for sends that may
    /// block on a stalled client.
    pub async fn cancelled(&self) {
        self.conn.cancel.cancelled().await;
    }

    /// Subscribes to `stream` (a no-op when already subscribed). Resolves once Redis
    /// confirmed the channel (or after a short wait), so that what is published after
    /// the client got its answer reaches it.
    pub async fn subscribe(&mut self, stream: Stream) -> Result<(), Refusal> {
        stream.authorize(&self.auth)?;
        let key = stream.key();
        if self.subs.contains_key(&key) {
            return Ok(());
        }
        let hub = &self.state.streaming.hub;
        let channel = stream.channel(hub.redis(), self.account);
        let subscribed = Arc::new(Subscribed {
            label_json: stream.label_json(),
            stream,
        });
        let id = hub.add(channel.clone(), subscribed, Arc::clone(&self.conn));
        // Recorded before waiting, so that a request abandoned meanwhile still
        // unsubscribes when the session drops.
        self.subs.insert(key, id);
        hub.wait_live(&channel, SUBSCRIBE_WAIT).await;
        Ok(())
    }

    /// Unsubscribes from `stream` (a no-op when not subscribed).
    pub fn unsubscribe(&mut self, stream: &Stream) {
        if let Some(id) = self.subs.remove(&stream.key()) {
            self.state.streaming.hub.remove(&id);
        }
    }

    /// Handles a WebSocket client message (`{"type":"subscribe","stream":"hashtag",
    /// "tag":"rust"}` or `"unsubscribe"`); answers with an error frame when the stream
    /// cannot be had. Anything else is ignored, as Mastodon does.
    pub async fn command(&mut self, text: &str) -> Option<String> {
        #[derive(Deserialize)]
        struct Command {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            stream: serde_json::Value,
            #[serde(default)]
            tag: Option<String>,
        }
        let Ok(command) = serde_json::from_str::<Command>(text) else {
            tracing::debug!("unreadable streaming client message ignored");
            return None;
        };
        // Mastodon takes the first of a list, too.
        let name = match &command.stream {
            serde_json::Value::String(s) => s.as_str(),
            serde_json::Value::Array(list) => list.first().and_then(|v| v.as_str())?,
            _ => "",
        };
        let stream = match Stream::parse(name, command.tag.as_deref()) {
            Ok(stream) => stream,
            Err(refusal) => return Some(refusal.frame()),
        };
        match command.kind.as_str() {
            "subscribe" => self.subscribe(stream).await.err().map(|r| r.frame()),
            "unsubscribe" => {
                self.unsubscribe(&stream);
                None
            }
            _ => None,
        }
    }

    /// The next event for the client, leaving out statuses involving accounts the
    /// reader blocks, is blocked by or mutes; the end when the token is revoked.
    /// Cancel-safe.
    pub async fn next(&mut self) -> Next {
        loop {
            let delivery = tokio::select! {
                biased;
                () = self.conn.cancel.cancelled() => return Next::End(self.end()),
                heard = revocation(&mut self.revocations) => {
                    match heard {
                        Ok(Evicted::Key(key)) if *key == *self.token_key => {
                            tracing::info!("streaming token revoked, disconnecting");
                            return Next::End(End::Revoked);
                        }
                        Ok(Evicted::Key(_)) => {}
                        // Revocations may have been lost: check at the next refresh,
                        // which each session reaches at its own time (no stampede on
                        // the users service after a Redis outage).
                        Ok(Evicted::All) | Err(broadcast::error::RecvError::Lagged(_)) => {
                            self.recheck = true;
                        }
                        Err(broadcast::error::RecvError::Closed) => self.revocations = None,
                    }
                    continue;
                }
                delivery = self.rx.recv() => delivery,
                _ = self.refresh.tick() => {
                    if self.recheck && !self.still_authenticates().await {
                        return Next::End(End::Revoked);
                    }
                    self.refresh_exclusions().await;
                    continue;
                }
            };
            // The session holds a sender itself, so this does not happen; if it did,
            // the connection would have nothing more to get.
            let Some(delivery) = delivery else {
                return Next::End(self.end());
            };
            let filtered = matches!(delivery.event.event, Event::Update | Event::StatusUpdate);
            if filtered
                && delivery
                    .event
                    .involved
                    .iter()
                    .any(|a| self.exclusions.contains(a))
            {
                continue;
            }
            metrics::counter!(
                "streaming_events_total",
                "event" => delivery.event.event.as_str(),
            )
            .increment(1);
            return Next::Event(delivery.stream, delivery.event);
        }
    }

    /// False when the token no longer authenticates; true when it does or the users
    /// service cannot say (checked again at the next refresh).
    async fn still_authenticates(&mut self) -> bool {
        match self.state.authenticate(&self.token).await {
            Ok(_) => {
                self.recheck = false;
                true
            }
            Err(e) if e.status == http::StatusCode::UNAUTHORIZED => {
                tracing::info!("streaming token no longer valid, disconnecting");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e.error, "streaming token not rechecked");
                true
            }
        }
    }

    fn end(&self) -> End {
        if self.shutting_down() {
            End::Shutdown
        } else {
            End::TooSlow
        }
    }

    /// Why the session ended, if it did.
    pub fn ended(&self) -> Option<End> {
        self.conn.cancel.is_cancelled().then(|| self.end())
    }

    /// Picks up new blocks and mutes; keeps the known ones when the users service
    /// cannot answer.
    async fn refresh_exclusions(&mut self) {
        match self
            .state
            .streaming
            .exclusions(&self.state, self.account)
            .await
        {
            Ok(set) => self.exclusions = set,
            Err(e) => tracing::warn!(error = %e.error, "streaming filters not refreshed"),
        }
    }
}

/// The next revocation heard; never, once the feed is gone.
async fn revocation(
    revocations: &mut Option<broadcast::Receiver<Evicted>>,
) -> Result<Evicted, broadcast::error::RecvError> {
    match revocations {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let hub = &self.state.streaming.hub;
        for id in self.subs.values() {
            hub.remove(id);
        }
        self.state.streaming.release();
    }
}
