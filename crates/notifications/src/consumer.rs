//! The event consumers: the timeline stream (`events:timeline`, group
//! `notifications`) and the users stream (`events:users`, group `notifications`).
//!
//! Exactly once: every notification row carries the id of the event that made it, unique
//! per recipient, so a redelivered or replayed event finds its notifications there and
//! adds none. Entries a dead consumer left pending are claimed by the live ones after
//! `NOTIFICATIONS_CLAIM_IDLE_MS`.

use std::sync::Arc;

use rookery_kit::{events::Event, redis::Redis};
use rookery_proto::{
    notifications::v1::NotificationType as Type,
    timeline::v1::{self as tl, Visibility},
    users::v1 as users,
};
use tokio_util::sync::CancellationToken;

use crate::{
    Result,
    service::{Notice, Notifications},
};

/// The consumer group of this service on other services' streams.
pub const GROUP: &str = "notifications";

/// Starts both consumers; `name` must be unique per process.
pub fn spawn(
    service: Arc<Notifications>,
    redis: Redis,
    name: &str,
    claim_idle: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut timeline = rookery_kit::events::Consumer::new(redis.clone(), "timeline", GROUP, name);
    timeline.claim_idle = claim_idle;
    let s = service.clone();
    timeline.spawn(
        move |event| {
            let s = s.clone();
            async move { s.on_timeline_event(&event).await }
        },
        shutdown.clone(),
    );
    let mut graph = rookery_kit::events::Consumer::new(redis, "users", GROUP, name);
    graph.claim_idle = claim_idle;
    graph.spawn(
        move |event| {
            let s = service.clone();
            async move { s.on_users_event(&event).await }
        },
        shutdown,
    );
}

impl Notifications {
    /// Applies one event of the timeline stream.
    pub async fn on_timeline_event(&self, event: &Event) -> Result<()> {
        let id = event.id.as_str();
        match event.topic.as_str() {
            "mention.created" => {
                let Some(e) = event.decode::<tl::MentionEvent>() else {
                    return Ok(());
                };
                self.notify(Notice {
                    event_id: id,
                    kind: Type::Mention,
                    recipients: vec![e.mentioned_account_id],
                    from: e.account_id,
                    status_id: Some(e.status_id),
                    activity_id: e.status_id,
                    created_at_ms: rookery_kit::ids::millis_of(e.status_id),
                })
                .await?;
            }
            "status.created" => {
                let Some(e) = event.decode::<tl::StatusEvent>() else {
                    return Ok(());
                };
                self.on_status_created(id, &e).await?;
            }
            "status.updated" => {
                let Some(e) = event.decode::<tl::StatusEvent>() else {
                    return Ok(());
                };
                // Those who reblogged it hear of the edit (Mastodon's `update`).
                let recipients = self.rebloggers(e.account_id, e.status_id).await?;
                self.notify(Notice {
                    event_id: id,
                    kind: Type::Update,
                    recipients,
                    from: e.account_id,
                    status_id: Some(e.status_id),
                    activity_id: e.status_id,
                    created_at_ms: chrono::Utc::now().timestamp_millis(),
                })
                .await?;
            }
            "status.deleted" => {
                if let Some(e) = event.decode::<tl::StatusEvent>() {
                    self.status_deleted(e.status_id).await?;
                }
            }
            topic @ ("favourite.created" | "reblog.created") => {
                let Some(e) = event.decode::<tl::InteractionEvent>() else {
                    return Ok(());
                };
                let kind = if topic == "favourite.created" {
                    Type::Favourite
                } else {
                    Type::Reblog
                };
                self.notify(Notice {
                    event_id: id,
                    kind,
                    recipients: vec![e.status_account_id],
                    from: e.account_id,
                    status_id: Some(e.status_id),
                    // The favourite, or the reblog status (deleting it undoes this).
                    activity_id: e.id,
                    created_at_ms: e.created_at_ms,
                })
                .await?;
            }
            "favourite.deleted" => {
                if let Some(e) = event.decode::<tl::InteractionEvent>() {
                    self.undo(Type::Favourite, e.id).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A new status notifies the followers who asked for its author's posts (`status`),
    /// and the author of a status it quotes (`quote`). Reblogs notify through
    /// `reblog.created`, mentions through `mention.created`.
    async fn on_status_created(&self, event_id: &str, e: &tl::StatusEvent) -> Result<()> {
        if e.reblog_of_id.is_some() {
            return Ok(());
        }
        if let Some(quoted_author) = e.quote_of_account_id {
            self.notify(Notice {
                event_id,
                kind: Type::Quote,
                recipients: vec![quoted_author],
                from: e.account_id,
                status_id: Some(e.status_id),
                activity_id: e.status_id,
                created_at_ms: e.created_at_ms,
            })
            .await?;
        }
        // As Mastodon: not for direct statuses, nor replies to someone else.
        let direct = e.visibility == Visibility::Direct as i32;
        let replies_to_other = e.in_reply_to_account_id.is_some_and(|a| a != e.account_id);
        if direct || replies_to_other {
            return Ok(());
        }
        let recipients = self.notified_followers(e.account_id).await?;
        if recipients.is_empty() {
            return Ok(());
        }
        self.notify(Notice {
            // One event makes two kinds here: keep their keys apart.
            event_id: &format!("{event_id}#status"),
            kind: Type::Status,
            recipients,
            from: e.account_id,
            status_id: Some(e.status_id),
            activity_id: e.status_id,
            created_at_ms: e.created_at_ms,
        })
        .await?;
        Ok(())
    }

    /// Applies one event of the users stream.
    pub async fn on_users_event(&self, event: &Event) -> Result<()> {
        let topic = event.topic.as_str();
        let kind = match topic {
            "follow.created" | "follow.deleted" => Type::Follow,
            "follow_request.created" | "follow_request.deleted" => Type::FollowRequest,
            "block.created" => Type::Unspecified,
            _ => return Ok(()),
        };
        let Some(e) = event.decode::<users::GraphEvent>() else {
            return Ok(());
        };
        match topic {
            // Accepting a request notifies nobody (the request did).
            "follow.created" if e.accepted_request => {}
            "follow.created" | "follow_request.created" => {
                self.notify(Notice {
                    event_id: &event.id,
                    kind,
                    recipients: vec![e.target_account_id],
                    from: e.account_id,
                    status_id: None,
                    activity_id: e.id,
                    created_at_ms: e.created_at_ms,
                })
                .await?;
            }
            "block.created" => self.blocked(e.account_id, e.target_account_id).await?,
            // An unfollow, or a request withdrawn, accepted or rejected.
            _ => self.undo(kind, e.id).await?,
        }
        Ok(())
    }
}
