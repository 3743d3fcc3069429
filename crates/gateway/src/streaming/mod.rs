//! Mastodon's streaming API: live timelines and notifications over WebSocket
//! (`GET /api/v1/streaming`, multiplexed) and server-sent events
//! (`GET /api/v1/streaming/{user,public,hashtag,...}`).
//!
//! Publishers (the timeline service's fan-out, the notifications service) announce ids
//! on Redis pub/sub channels ([`rookery_kit::streaming`]). Each gateway replica listens
//! on one pub/sub connection ([`hub`]), subscribed to exactly the channels its clients
//! need, renders each event once ([`render`]) and hands it to the connections
//! ([`session`]), which drop what their reader must not see (blocks and mutes) and
//! write it in their protocol ([`ws`], [`sse`]).
//!
//! # Layout
//! - [`stream`]: stream names, their channels and the scopes they need.
//! - [`hub`]: the pub/sub connection, refcounted subscriptions, dispatch, backpressure.
//! - [`render`]: event payloads, rendered once per replica and briefly cached.
//! - [`session`]: one client connection: its subscriptions, filters and buffer.
//! - [`ws`]: the WebSocket endpoint.
//! - [`sse`]: the server-sent events endpoints.
//!
//! # Limits
//! Each connection buffers at most `STREAMING_BUFFER` events; a client that falls that
//! far behind is disconnected. At most `STREAMING_MAX_CONNECTIONS` connections are open
//! per replica (more get 503). WebSocket clients are pinged every heartbeat and dropped
//! when they stop answering; SSE clients get a `:thump` comment. On shutdown every
//! WebSocket is closed with 1001 and every SSE response ends, so the server drains.
//!
//! # Revoked tokens
//! A revoked token's connections end at once, as in Mastodon: the users service's
//! revocation broadcast reaches every replica (WebSocket close code 1008, and the SSE
//! response ends). After a gap in that feed (Redis down), each connection checks its
//! token at its next refresh instead, at most 30 seconds later.
//!
//! # Differences from Mastodon
//! - Every stream needs a token (Mastodon can be configured to serve `public` and
//!   `hashtag` anonymously); public and hashtag streams need no particular scope.
//! - Statuses are rendered without any reader's flags (`favourited`, `reblogged`, ...
//!   are `false`): one rendering serves every reader.
//! - A reader's blocks and mutes are read when the connection opens and then at most
//!   every 30 seconds, so a new mute takes up to that long to apply to open streams.
//! - Streams not served (`list`, `direct`, `public:media`, `public:remote`, ...) answer
//!   "Unknown stream type".

pub mod hub;
pub mod render;
pub mod session;
pub mod sse;
pub mod stream;
pub mod ws;

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, routing::get};
use http::{HeaderMap, StatusCode};
use moka::future::Cache;
use rookery_kit::{
    cache::{CacheHub, Evicted, names},
    redis::Redis,
};
use rookery_proto::users::v1 as pb;
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::{config::StreamingConfig, error::ApiError, state::AppState};

/// How long a reader's blocks and mutes are reused before being read again.
const EXCLUSIONS_TTL: Duration = Duration::from_secs(30);
/// Readers whose exclusions are kept at once.
const EXCLUSIONS_CAPACITY: u64 = 100_000;
/// The longest a new subscription waits for Redis to confirm it before the client is
/// answered anyway (events then flow once Redis is back).
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);

/// The streaming routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/streaming", get(ws::websocket))
        .route("/api/v1/streaming/", get(ws::websocket))
        .route("/api/v1/streaming/health", get(health))
        .route("/api/v1/streaming/user", get(sse::user))
        .route(
            "/api/v1/streaming/user/notification",
            get(sse::user_notification),
        )
        .route("/api/v1/streaming/public", get(sse::public))
        .route("/api/v1/streaming/public/local", get(sse::public_local))
        .route("/api/v1/streaming/hashtag", get(sse::hashtag))
        .route("/api/v1/streaming/hashtag/local", get(sse::hashtag_local))
}

/// `GET /api/v1/streaming/health`: Mastodon's liveness answer.
async fn health() -> &'static str {
    "OK"
}

/// The streaming API's part of the gateway state.
pub struct Streaming {
    config: StreamingConfig,
    shutdown: CancellationToken,
    hub: Arc<hub::Hub>,
    /// The cache invalidation feed, on which the users service announces revoked tokens.
    caches: Arc<CacheHub>,
    renderer: render::Renderer,
    /// Accounts each reader must not see (blocks either way, mutes).
    exclusions: Cache<i64, Arc<HashSet<i64>>>,
    /// Open connections on this replica.
    connections: AtomicUsize,
}

impl Streaming {
    /// The streaming state; connections end when `shutdown` is cancelled, or when
    /// `caches` announces that their token was revoked. Nothing listens until
    /// [`Streaming::start`].
    pub fn new(
        config: StreamingConfig,
        redis: Redis,
        caches: Arc<CacheHub>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            config,
            shutdown,
            hub: hub::Hub::new(redis),
            caches,
            renderer: render::Renderer::default(),
            exclusions: Cache::builder()
                .max_capacity(EXCLUSIONS_CAPACITY)
                .time_to_live(EXCLUSIONS_TTL)
                .build(),
            connections: AtomicUsize::new(0),
        }
    }

    /// Starts listening to Redis (until shutdown).
    pub fn start(&self, state: AppState) {
        self.hub.spawn(state, self.shutdown.clone());
    }

    /// Open connections on this replica.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Token revocations from now on (cache keys of the tokens).
    fn revocations(&self) -> broadcast::Receiver<Evicted> {
        self.caches.watch(names::TOKENS)
    }

    /// Counts a new connection in, or refuses it (503) when the replica is full.
    fn admit(&self) -> Result<(), ApiError> {
        let max = self.config.max_connections;
        let admitted = self
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            tracing::warn!(max, "streaming connection refused, replica full");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many streaming connections, retry later",
            ));
        }
        metrics::gauge!("streaming_connections").increment(1.0);
        Ok(())
    }

    /// Counts a connection out.
    fn release(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("streaming_connections").decrement(1.0);
    }

    /// The accounts `account` must not see: from this replica's cache, else one call.
    async fn exclusions(
        &self,
        state: &AppState,
        account: i64,
    ) -> Result<Arc<HashSet<i64>>, ApiError> {
        if account == 0 {
            return Ok(Arc::default());
        }
        self.exclusions
            .try_get_with(account, async {
                let res = state
                    .users()
                    .exclusions(pb::ExclusionsRequest {
                        account_id: account,
                    })
                    .await?
                    .into_inner();
                let set: HashSet<i64> = res.blocked.into_iter().chain(res.muted).collect();
                Ok::<_, ApiError>(Arc::new(set))
            })
            .await
            .map_err(|e| ApiError::new(e.status, e.error.clone()))
    }
}

/// Query parameters of every streaming endpoint.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    /// The stream to subscribe to at once (WebSocket only; SSE has it in the path).
    #[serde(default)]
    pub stream: Option<String>,
    /// The hashtag of `hashtag` streams.
    #[serde(default)]
    pub tag: Option<String>,
    /// The token, for clients that cannot set headers (browsers' EventSource, WebSocket).
    #[serde(default)]
    pub access_token: Option<String>,
}

/// The token of a streaming request, where Mastodon looks for it: the `Authorization`
/// header, the `access_token` parameter, or (WebSocket, `with_protocol`) the
/// `Sec-WebSocket-Protocol` header.
fn token(headers: &HeaderMap, params: &Params, with_protocol: bool) -> Option<String> {
    let header = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // Any case of `Bearer`, as for every other request.
        .and_then(|v| crate::auth::credentials(v, "Bearer"));
    let protocol = || {
        headers
            .get(http::header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
    };
    header
        .or(params.access_token.as_deref())
        .or_else(|| with_protocol.then(protocol).flatten())
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 512)
        .map(str::to_owned)
}

/// Authenticates a streaming request (401 without a valid token); returns what the
/// token resolved to and the token, which the session checks again after a gap in the
/// revocation feed.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
    with_protocol: bool,
) -> Result<(crate::auth::Auth, String), ApiError> {
    let token = token(headers, params, with_protocol)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Missing access token"))?;
    Ok((state.authenticate(&token).await?, token))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn tokens_come_from_header_parameter_or_protocol() {
        let mut headers = HeaderMap::new();
        let params = Params {
            access_token: Some("from-query".into()),
            ..Params::default()
        };
        headers.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            "from-protocol".parse().unwrap(),
        );
        assert_eq!(token(&headers, &params, true).unwrap(), "from-query");
        assert_eq!(
            token(&headers, &Params::default(), true).unwrap(),
            "from-protocol"
        );
        assert_eq!(token(&headers, &Params::default(), false), None);
        headers.insert(
            http::header::AUTHORIZATION,
            "Bearer from-header".parse().unwrap(),
        );
        assert_eq!(token(&headers, &params, true).unwrap(), "from-header");
    }
}

#[cfg(test)]
mod proptests {
    //! Properties of the streaming token lookup: any headers and parameters give a
    //! bounded, trimmed token or none, never a panic; the header wins.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proptest::prelude::*;

    use super::*;

    fn header_value() -> impl Strategy<Value = Option<http::HeaderValue>> {
        prop::option::of(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..80),
                "(Bearer|bearer|BEARER|Basic|) {0,2}[ -~]{0,40}".prop_map(String::into_bytes),
            ]
            .prop_filter_map("a header value", |b| http::HeaderValue::from_bytes(&b).ok()),
        )
    }

    proptest! {
        #[test]
        fn tokens_are_bounded_or_absent(
            authorization in header_value(),
            protocol in header_value(),
            access_token in prop::option::of(any::<String>()),
            with_protocol in any::<bool>(),
        ) {
            let mut headers = HeaderMap::new();
            if let Some(v) = authorization {
                headers.insert(http::header::AUTHORIZATION, v);
            }
            if let Some(v) = protocol {
                headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, v);
            }
            let params = Params { access_token, ..Params::default() };
            if let Some(t) = token(&headers, &params, with_protocol) {
                prop_assert!(!t.is_empty() && t.len() <= 512);
                prop_assert_eq!(t.trim(), t.as_str());
            }
        }

        #[test]
        fn a_bearer_header_in_any_case_wins(
            scheme in "(Bearer|bearer|BEARER|bEaReR)",
            t in "[A-Za-z0-9._~+/=-]{1,512}",
            access_token in prop::option::of("[a-z]{1,10}"),
        ) {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_str(&format!("{scheme} {t}")).unwrap(),
            );
            let params = Params { access_token, ..Params::default() };
            prop_assert_eq!(token(&headers, &params, true), Some(t));
        }
    }
}
