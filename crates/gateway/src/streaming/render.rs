//! Payloads of streaming events, rendered once per replica per event whatever the number
//! of sockets they go to, and briefly cached so that the same event arriving on several
//! channels (an author's followers, the public and hashtag streams) is hydrated once.

use std::{sync::Arc, time::Duration};

use moka::future::Cache;
use rookery_kit::streaming::{Kind, Message};
use rookery_proto::timeline::v1 as tl;

use crate::{
    error::ApiError,
    mastodon::status::{self, Ctx},
    state::AppState,
};

/// How long a rendering is reused. An event reaches every channel within milliseconds
/// of being published; a few seconds covers stragglers without serving stale counters.
const TTL: Duration = Duration::from_secs(5);
/// Renderings kept at once (a few seconds of events on a busy replica).
const CAPACITY: u64 = 10_000;

/// An event ready to send, shared by every socket it goes to.
#[derive(Debug)]
pub struct Rendered {
    pub event: Kind,
    /// The payload as SSE sends it: the entity's JSON, or the id of a deleted status.
    pub payload: String,
    /// The payload as a JSON string literal, as WebSocket frames embed it (escaped once
    /// here rather than once per socket).
    pub payload_json: String,
    /// Accounts a status involves (author, reblogged author, mentions): readers who
    /// block, are blocked by or mute any of them do not get it. Empty for events that
    /// are not filtered (deletes, notifications).
    pub involved: Box<[i64]>,
}

impl Rendered {
    fn new(event: Kind, payload: String, involved: Vec<i64>) -> Self {
        let payload_json = serde_json::to_string(&payload).unwrap_or_default();
        Self {
            event,
            payload,
            payload_json,
            involved: involved.into_boxed_slice(),
        }
    }

    /// The WebSocket frame of this event on stream `label_json` (`["user"]`, ...).
    pub fn ws_frame(&self, label_json: &str) -> String {
        let event = self.event.as_str();
        let mut frame =
            String::with_capacity(label_json.len() + event.len() + self.payload_json.len() + 40);
        frame.push_str("{\"stream\":");
        frame.push_str(label_json);
        frame.push_str(",\"event\":\"");
        frame.push_str(event);
        frame.push_str("\",\"payload\":");
        frame.push_str(&self.payload_json);
        frame.push('}');
        frame
    }
}

/// What the cache remembers: `None` for events that turned out to have nothing to send
/// (a status deleted meanwhile, a notification that no longer exists).
type Entry = Option<Arc<Rendered>>;

/// The rendering cache (single-flight: concurrent requests for one event share one
/// hydration).
pub struct Renderer {
    cache: Cache<(Kind, i64, i64), Entry>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(TTL)
                .build(),
        }
    }
}

impl Renderer {
    /// The rendering of `msg`; `None` when there is nothing to send, or when hydration
    /// failed (logged here; the event is skipped, connections live on).
    pub async fn render(&self, state: &AppState, msg: &Message) -> Entry {
        if msg.event == Kind::Delete {
            return Some(Arc::new(Rendered::new(
                Kind::Delete,
                msg.id.to_string(),
                Vec::new(),
            )));
        }
        // Notifications are per recipient; statuses are keyed by version, so an edit is
        // never answered with the rendering of an earlier text.
        let version = match msg.event {
            Kind::Notification => msg.account,
            _ => msg.version_ms,
        };
        let key = (msg.event, msg.id, version);
        let loaded = self
            .cache
            .try_get_with(key, async {
                metrics::counter!("streaming_renders_total", "event" => msg.event.as_str())
                    .increment(1);
                let out = hydrate(state, msg).await;
                if let Err(e) = &out {
                    tracing::warn!(
                        event = msg.event.as_str(),
                        id = msg.id,
                        status = %e.status,
                        error = %e.error,
                        "streaming event not rendered, skipped"
                    );
                }
                out
            })
            .await;
        loaded.ok().flatten()
    }
}

async fn hydrate(state: &AppState, msg: &Message) -> Result<Entry, ApiError> {
    match msg.event {
        Kind::Delete => Ok(None),
        Kind::Notification => {
            let rendered =
                crate::routes::notifications::render_notification(state, msg.account, msg.id)
                    .await?;
            Ok(rendered.map(|json| Arc::new(Rendered::new(Kind::Notification, json, Vec::new()))))
        }
        Kind::Update | Kind::StatusUpdate => {
            // The author can always see their status, so it is read as theirs.
            let mut page = state
                .timeline()
                .get_statuses(tl::GetStatusesRequest {
                    viewer_id: msg.account,
                    ids: vec![msg.id],
                })
                .await?
                .into_inner();
            if !page.ids.contains(&msg.id) {
                return Ok(None);
            }
            // One rendering goes to every reader, so it carries nobody's flags: a
            // streamed status says `favourited: false` etc. (as a freshly posted status
            // is for almost everyone); clients read their flags from the REST API.
            page.viewer = page
                .statuses
                .keys()
                .map(|&id| (id, tl::ViewerState::default()))
                .collect();
            let (accounts, media) =
                tokio::try_join!(state.accounts(&page.authors), state.page_media(&page))?;
            let ctx = Ctx {
                page: &page,
                accounts: &accounts,
                media: &media,
                base_url: &state.config.instance.base_url,
            };
            let Some(entity) = status::status(&ctx, msg.id) else {
                return Ok(None);
            };
            let json = serde_json::to_string(&entity).map_err(|e| {
                tracing::error!(error = %e, "status not serialisable");
                ApiError::new(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error",
                )
            })?;
            Ok(Some(Arc::new(Rendered::new(
                msg.event,
                json,
                involved(&page, msg.id),
            ))))
        }
    }
}

/// The accounts status `id` of `page` involves: its author, and the author and mentions
/// of the status it reblogs, and its own mentions.
fn involved(page: &tl::StatusPage, id: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut add = |s: &tl::Status| {
        out.push(s.account_id);
        out.extend_from_slice(&s.mention_ids);
    };
    if let Some(s) = page.statuses.get(&id) {
        add(s);
        if let Some(original) = s.reblog_of_id.and_then(|o| page.statuses.get(&o)) {
            add(original);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::Value;

    use super::*;

    #[test]
    fn frames_embed_the_payload_as_a_string() {
        let r = Rendered::new(
            Kind::Update,
            r#"{"id":"5","content":"<p>\"hi\"</p>"}"#.into(),
            vec![],
        );
        let frame: Value = serde_json::from_str(&r.ws_frame(r#"["hashtag","Rust"]"#)).unwrap();
        assert_eq!(frame["stream"], serde_json::json!(["hashtag", "Rust"]));
        assert_eq!(frame["event"], "update");
        let payload: Value = serde_json::from_str(frame["payload"].as_str().unwrap()).unwrap();
        assert_eq!(payload["content"], r#"<p>"hi"</p>"#);
        let r = Rendered::new(Kind::Delete, "42".into(), vec![]);
        assert_eq!(
            r.ws_frame(r#"["public"]"#),
            r#"{"stream":["public"],"event":"delete","payload":"42"}"#
        );
    }

    #[test]
    fn involved_covers_reblogged_authors_and_mentions() {
        let status = |id, account_id, reblog_of_id, mention_ids: Vec<i64>| tl::Status {
            id,
            account_id,
            reblog_of_id,
            mention_ids,
            ..Default::default()
        };
        let page = tl::StatusPage {
            ids: vec![10],
            statuses: [
                (10, status(10, 1, Some(20), vec![])),
                (20, status(20, 2, None, vec![3, 1])),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        assert_eq!(involved(&page, 10), [1, 2, 3]);
        assert_eq!(involved(&page, 20), [1, 2, 3]);
        assert!(involved(&page, 99).is_empty());
    }
}
