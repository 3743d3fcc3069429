//! The replica's one Redis pub/sub connection and the local subscribers of each channel.
//!
//! Subscribers are counted per channel: the first one on this replica makes the hub
//! SUBSCRIBE, the last one leaving makes it UNSUBSCRIBE, whatever the number of sockets.
//! Changes are reconciled in batches by one task that owns the connection's command
//! side, so a burst of connections costs one SUBSCRIBE with many channels. When Redis
//! drops the connection the hub reconnects with backoff and subscribes everything again
//! (events published meanwhile are lost, as with any pub/sub).
//!
//! Each message is rendered once (see [`super::render`]) and then offered to every
//! local subscriber of its channel without waiting: a subscriber whose buffer is full is
//! cut off (its connection is cancelled), so one slow client never holds up the others
//! and memory stays bounded.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use futures::StreamExt;
use redis::aio::PubSubSink;
use rookery_kit::{redis::Redis, streaming::Message};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{render::Rendered, stream::Stream};
use crate::state::AppState;

/// Messages rendered concurrently (in order of arrival all the same).
const RENDER_CONCURRENCY: usize = 32;
/// Channels per SUBSCRIBE / UNSUBSCRIBE command.
const BATCH: usize = 500;
/// Budget of connecting and of one subscription command; past it the connection is
/// considered lost.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a connection receives: an event and the stream it arrived on.
pub struct Delivery {
    pub stream: Arc<Subscribed>,
    pub event: Arc<Rendered>,
}

/// A stream as one connection subscribed to it.
#[derive(Debug)]
pub struct Subscribed {
    pub stream: Stream,
    /// The `stream` field of its WebSocket frames, serialised once.
    pub label_json: String,
}

/// The hub's handle on one connection.
pub struct Conn {
    tx: mpsc::Sender<Delivery>,
    /// Cancelled when the connection must end: shutdown, or too slow a reader.
    pub cancel: CancellationToken,
}

impl Conn {
    /// A connection whose deliveries queue up to `buffer` deep on the returned receiver,
    /// and that ends when `shutdown` is cancelled.
    pub fn new(
        buffer: usize,
        shutdown: &CancellationToken,
    ) -> (Arc<Self>, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let conn = Self {
            tx,
            cancel: shutdown.child_token(),
        };
        (Arc::new(conn), rx)
    }

    /// Queues `delivery` unless the reader is behind by a whole buffer, in which case
    /// the connection is cut off.
    fn offer(&self, delivery: Delivery) {
        if self.cancel.is_cancelled() {
            return;
        }
        match self.tx.try_send(delivery) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("streaming_dropped_slow_total").increment(1);
                tracing::info!("streaming client too slow, disconnecting");
                self.cancel.cancel();
            }
            // The connection is ending; its subscriptions go with it.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// A subscriber of a channel.
struct Sub {
    id: u64,
    stream: Arc<Subscribed>,
    conn: Arc<Conn>,
}

#[derive(Default)]
struct Channels {
    /// Local subscribers by Redis channel; a channel is here iff it has subscribers.
    subs: HashMap<String, Vec<Sub>>,
    /// Channels that gained their first or lost their last subscriber since the last
    /// reconciliation.
    dirty: HashSet<String>,
    next_id: u64,
}

/// The channels of this replica and its pub/sub connection.
pub struct Hub {
    redis: Redis,
    channels: Mutex<Channels>,
    /// Channels Redis confirmed we are subscribed to.
    live: Mutex<HashSet<String>>,
    /// Bumped whenever `live` changes, for [`Hub::wait_live`].
    live_changed: watch::Sender<u64>,
    /// Wakes the reconciliation.
    wake: Notify,
}

/// Where a subscription is, to remove it.
#[derive(Debug)]
pub struct SubId {
    pub channel: String,
    id: u64,
}

impl Hub {
    /// A hub on `redis`; nothing happens until [`Hub::spawn`].
    pub fn new(redis: Redis) -> Arc<Self> {
        Arc::new(Self {
            redis,
            channels: Mutex::default(),
            live: Mutex::default(),
            live_changed: watch::channel(0).0,
            wake: Notify::new(),
        })
    }

    /// The Redis whose channels the hub listens to.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    fn channels(&self) -> MutexGuard<'_, Channels> {
        // A panic while holding the lock cannot leave the maps half-updated in a way
        // that matters more than stopping streaming altogether would.
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live(&self) -> MutexGuard<'_, HashSet<String>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `conn` as a subscriber of `channel` for `stream`.
    pub fn add(&self, channel: String, stream: Arc<Subscribed>, conn: Arc<Conn>) -> SubId {
        let mut channels = self.channels();
        channels.next_id += 1;
        let id = channels.next_id;
        let subs = channels.subs.entry(channel.clone()).or_default();
        subs.push(Sub { id, stream, conn });
        if subs.len() == 1 {
            channels.dirty.insert(channel.clone());
            self.wake.notify_one();
        }
        SubId { channel, id }
    }

    /// Removes a subscription made by [`Hub::add`].
    pub fn remove(&self, sub: &SubId) {
        let mut channels = self.channels();
        let Some(subs) = channels.subs.get_mut(&sub.channel) else {
            return;
        };
        subs.retain(|s| s.id != sub.id);
        if subs.is_empty() {
            channels.subs.remove(&sub.channel);
            channels.dirty.insert(sub.channel.clone());
            self.wake.notify_one();
        }
    }

    /// Resolves once Redis confirmed the subscription to `channel`, or after `within`
    /// (Redis down: the connection is served anyway and gets events once it is back).
    pub async fn wait_live(&self, channel: &str, within: Duration) {
        let mut changed = self.live_changed.subscribe();
        let _ = tokio::time::timeout(within, async {
            while !self.live().contains(channel) {
                if changed.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    /// Whether any local subscriber of `channel` wants `msg` (so it is worth rendering).
    fn wanted(&self, channel: &str, msg: &Message) -> bool {
        self.channels().subs.get(channel).is_some_and(|subs| {
            subs.iter()
                .any(|s| s.stream.stream.wants(msg.event) && !s.conn.cancel.is_cancelled())
        })
    }

    /// Offers `event` to every local subscriber of `channel` that wants it.
    fn deliver(&self, channel: &str, event: &Arc<Rendered>) {
        let channels = self.channels();
        let Some(subs) = channels.subs.get(channel) else {
            return;
        };
        for s in subs.iter().filter(|s| s.stream.stream.wants(event.event)) {
            s.conn.offer(Delivery {
                stream: Arc::clone(&s.stream),
                event: Arc::clone(event),
            });
        }
    }

    /// Runs the pub/sub connection until `shutdown`: connects, subscribes, dispatches,
    /// and starts over with backoff when Redis fails.
    pub fn spawn(self: &Arc<Self>, state: AppState, shutdown: CancellationToken) {
        let hub = Arc::clone(self);
        tokio::spawn(async move {
            let mut backoff = MIN_BACKOFF;
            while !shutdown.is_cancelled() {
                let client = hub.redis.pubsub_client();
                let connect = tokio::time::timeout(COMMAND_TIMEOUT, client.get_async_pubsub());
                let pubsub = match connect.await {
                    Ok(Ok(p)) => p,
                    failure => {
                        let reason = match failure {
                            Ok(Err(e)) => e.to_string(),
                            _ => "timed out".to_owned(),
                        };
                        tracing::warn!(%reason, "streaming pub/sub unavailable, retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                };
                backoff = MIN_BACKOFF;
                let (sink, messages) = pubsub.split();
                hub.resubscribe_all();
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    e = hub.reconcile(sink) => {
                        tracing::warn!(error = %e, "streaming subscriptions failed, reconnecting");
                    }
                    () = hub.dispatch(&state, messages) => {
                        tracing::warn!("streaming pub/sub connection lost, reconnecting");
                    }
                }
                hub.set_live(HashSet::new());
            }
        });
    }

    /// After a (re)connection: nothing is live, everything with subscribers is to be
    /// subscribed.
    fn resubscribe_all(&self) {
        self.set_live(HashSet::new());
        let mut channels = self.channels();
        let all: Vec<String> = channels.subs.keys().cloned().collect();
        channels.dirty.extend(all);
        self.wake.notify_one();
    }

    fn set_live(&self, live: HashSet<String>) {
        *self.live() = live;
        self.live_changed.send_modify(|v| *v += 1);
    }

    /// Brings Redis's subscriptions in line with the local subscribers whenever they
    /// change; returns only on failure (the connection is then started over).
    async fn reconcile(&self, mut sink: PubSubSink) -> redis::RedisError {
        loop {
            self.wake.notified().await;
            let (subscribe, unsubscribe) = {
                let mut channels = self.channels();
                let dirty = std::mem::take(&mut channels.dirty);
                let mut live = self.live();
                let mut subscribe = Vec::new();
                let mut unsubscribe = Vec::new();
                for channel in dirty {
                    match (
                        channels.subs.contains_key(&channel),
                        live.contains(&channel),
                    ) {
                        (true, false) => subscribe.push(channel),
                        (false, true) => {
                            // Not live from now on: a subscriber arriving while the
                            // UNSUBSCRIBE is under way must wait for the next SUBSCRIBE.
                            live.remove(&channel);
                            unsubscribe.push(channel);
                        }
                        _ => {}
                    }
                }
                (subscribe, unsubscribe)
            };
            for batch in subscribe.chunks(BATCH) {
                if let Err(e) = command(sink.subscribe(batch)).await {
                    return e;
                }
                self.live().extend(batch.iter().cloned());
                self.live_changed.send_modify(|v| *v += 1);
            }
            for batch in unsubscribe.chunks(BATCH) {
                if let Err(e) = command(sink.unsubscribe(batch)).await {
                    return e;
                }
            }
            if !subscribe.is_empty() || !unsubscribe.is_empty() {
                tracing::debug!(
                    subscribed = subscribe.len(),
                    unsubscribed = unsubscribe.len(),
                    "streaming subscriptions reconciled"
                );
            }
        }
    }

    /// Renders and delivers messages, in order, until the connection ends.
    async fn dispatch(&self, state: &AppState, messages: redis::aio::PubSubStream) {
        let renderer = &state.streaming.renderer;
        messages
            .filter_map(|msg| async move {
                let channel = msg.get_channel_name().to_owned();
                let decoded = Message::decode(msg.get_payload_bytes());
                if decoded.is_none() {
                    tracing::warn!(%channel, "malformed streaming message ignored");
                }
                decoded.map(|m| (channel, m))
            })
            .map(|(channel, msg)| async move {
                // Nobody here wants it (e.g. only notification streams on the channel):
                // no hydration at all.
                if !self.wanted(&channel, &msg) {
                    return None;
                }
                let rendered = renderer.render(state, &msg).await?;
                Some((channel, rendered))
            })
            .buffered(RENDER_CONCURRENCY)
            .for_each(|out| async move {
                if let Some((channel, rendered)) = out {
                    self.deliver(&channel, &rendered);
                }
            })
            .await;
    }
}

/// One subscription command, bounded in time.
async fn command(
    fut: impl Future<Output = redis::RedisResult<()>>,
) -> Result<(), redis::RedisError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, fut).await {
        Ok(out) => out,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "subscription command timed out",
        ))),
    }
}
