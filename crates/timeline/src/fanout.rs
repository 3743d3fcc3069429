//! Event consumers of the timeline service.
//!
//! - Its own stream (`events:timeline`, group `timeline.fanout`): a new status is pushed
//!   into the home feeds of the author's active followers and of the followers of its
//!   hashtags, in pipelined batches of a thousand; a deleted one is taken out again;
//!   hashtag use, favourites and reblogs feed the trends.
//! - The users stream (`events:users`, group `timeline.graph`): a follow merges the
//!   followed account's recent statuses into the follower's feed, an unfollow or a
//!   block takes them out, and any block or mute drops the cached viewer filters.
//!
//! What reaches a feed is announced on its owner's streaming channel (and public
//! statuses on the public and hashtag channels); edits and deletes are announced too.
//!
//! Handlers are idempotent (feed writes are set operations), so redelivery is harmless
//! (a redelivered event is announced again; clients de-duplicate by id);
//! trend counters may count a redelivered event twice, which a trend can afford.

use std::sync::Arc;

use rookery_kit::{events::Event, redis::Redis, streaming};
use rookery_proto::{timeline::v1 as pb, users::v1 as users};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::{
    Error, Result,
    domain::Visibility,
    feed::Entry,
    service::{
        Timeline,
        statuses::{TOPIC_CREATED, TOPIC_DELETED, TOPIC_FAVOURITE, TOPIC_REBLOG, TOPIC_UPDATED},
    },
};

/// Starts both consumers; `name` must be unique per process.
pub fn spawn(timeline: Arc<Timeline>, redis: Redis, name: &str, shutdown: CancellationToken) {
    let own =
        rookery_kit::events::Consumer::new(redis.clone(), "timeline", "timeline.fanout", name);
    let tl = timeline.clone();
    own.spawn(
        move |event| {
            let tl = tl.clone();
            async move { tl.on_status_event(event).await }
        },
        shutdown.clone(),
    );
    let graph = rookery_kit::events::Consumer::new(redis, "users", "timeline.graph", name);
    graph.spawn(
        move |event| {
            let tl = timeline.clone();
            async move { tl.on_graph_event(event).await }
        },
        shutdown,
    );
}

impl Timeline {
    /// Applies one event of the timeline stream.
    pub async fn on_status_event(&self, event: Event) -> Result<()> {
        match event.topic.as_str() {
            TOPIC_CREATED => {
                if let Some(e) = event.decode::<pb::StatusEvent>() {
                    self.fan_out(&e).await?;
                }
            }
            TOPIC_DELETED => {
                if let Some(e) = event.decode::<pb::StatusEvent>() {
                    self.fan_in(&e).await?;
                }
            }
            TOPIC_UPDATED => {
                if let Some(e) = event.decode::<pb::StatusEvent>() {
                    self.announce_edit(&e).await?;
                }
            }
            TOPIC_FAVOURITE | TOPIC_REBLOG => {
                if let Some(e) = event.decode::<pb::InteractionEvent>() {
                    let bodies = self.bodies(&[e.status_id]).await?;
                    if bodies
                        .get(&e.status_id)
                        .is_some_and(|s| Visibility::of(s) == Visibility::Public)
                    {
                        self.trends
                            .record_status(e.status_id, e.created_at_ms)
                            .await?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Calls `each` with every chunk of `account`'s active followers (with
    /// `reblogs_only`, those who show its reblogs).
    async fn for_followers<F, Fut>(
        &self,
        account: i64,
        reblogs_only: bool,
        mut each: F,
    ) -> Result<usize>
    where
        F: FnMut(Vec<i64>) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let mut stream = self
            .users()
            .follower_ids(users::FollowerIdsRequest {
                account_id: account,
                only_active: true,
                following: false,
                reblogs_only,
                notify_only: false,
            })
            .await?
            .into_inner();
        let mut n = 0;
        while let Some(chunk) = stream.next().await {
            let ids = chunk?.ids;
            n += ids.len();
            each(ids).await?;
        }
        Ok(n)
    }

    async fn followers_count(&self, account: i64) -> Result<i64> {
        let res = self
            .users()
            .get_accounts(users::GetAccountsRequest { ids: vec![account] })
            .await?
            .into_inner();
        Ok(res.accounts.first().map_or(0, |a| a.followers_count))
    }

    /// Delivers a new status to the home feeds that should show it, and announces it on
    /// the streaming channels of those feeds' owners and of the public timelines.
    #[tracing::instrument(skip_all, fields(status_id = e.status_id))]
    pub async fn fan_out(&self, e: &pb::StatusEvent) -> Result<()> {
        let visibility = Visibility::from_proto(e.visibility, Visibility::Direct)?;
        let original = e.reblog_of_id.is_none();
        if original && visibility == Visibility::Public && !e.tags.is_empty() {
            self.trends
                .record_tags(&e.tags, e.account_id, e.created_at_ms)
                .await?;
        }
        // Direct statuses are conversations, not home timeline entries.
        if visibility == Visibility::Direct {
            return Ok(());
        }
        let entry = Entry {
            id: e.status_id,
            reblog_of: e.reblog_of_id,
        };
        let announce = streaming::Message {
            event: streaming::Kind::Update,
            id: e.status_id,
            account: e.account_id,
            version_ms: e.created_at_ms,
        };
        // Public streams first: they need no follower list.
        self.announce_public(e, visibility, &announce).await?;
        let mut delivered = self
            .feeds
            .push(&[e.account_id], entry, Some(&announce))
            .await?;
        if self.followers_count(e.account_id).await? >= self.config.celebrity_followers {
            // Too many followers to write to: they merge this author in at read time.
            // Their streams still hear of it (a PUBLISH per connected-or-not follower
            // costs Redis far less than a feed write).
            let author = e.account_id;
            let first = self.feeds.push_author(author, e.status_id).await?;
            self.for_followers(author, !original, |chunk| async move {
                if first {
                    self.feeds.set_celeb(&chunk, author, true).await?;
                }
                let channels: Vec<String> = chunk
                    .iter()
                    .map(|f| streaming::user_channel(self.feeds.redis(), *f))
                    .collect();
                Ok(streaming::publish(self.feeds.redis(), &channels, &announce).await?)
            })
            .await?;
        } else {
            let pushed = std::sync::atomic::AtomicUsize::new(0);
            // A reblog only reaches followers who did not turn reblogs off.
            self.for_followers(e.account_id, !original, |chunk| {
                let pushed = &pushed;
                async move {
                    let n = self.feeds.push(&chunk, entry, Some(&announce)).await?;
                    pushed.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    Ok(())
                }
            })
            .await?;
            delivered += pushed.into_inner();
        }
        if original && visibility == Visibility::Public && !e.tags.is_empty() {
            let followers = self.store.tag_followers(&e.tags).await?;
            for chunk in followers.chunks(1000) {
                delivered += self.feeds.push(chunk, entry, Some(&announce)).await?;
            }
        }
        let age = chrono::Utc::now().timestamp_millis() - e.created_at_ms;
        metrics::histogram!("fanout_seconds").record(age.max(0) as f64 / 1000.0);
        metrics::counter!("fanout_deliveries_total").increment(delivered as u64);
        Ok(())
    }

    /// Announces `message` about a status on the public and hashtag streams, when the
    /// status belongs there: public, not a reblog, not a reply to someone else (what
    /// Mastodon broadcasts).
    async fn announce_public(
        &self,
        e: &pb::StatusEvent,
        visibility: Visibility,
        message: &streaming::Message,
    ) -> Result<()> {
        let replies_to_other = e.in_reply_to_account_id.is_some_and(|a| a != e.account_id);
        if visibility != Visibility::Public || e.reblog_of_id.is_some() {
            return Ok(());
        }
        let redis = self.feeds.redis();
        let mut channels: Vec<String> = e
            .tags
            .iter()
            .map(|t| streaming::hashtag_channel(redis, t))
            .collect();
        if !replies_to_other {
            channels.push(streaming::public_channel(redis));
        }
        Ok(streaming::publish(redis, &channels, message).await?)
    }

    /// Announces an edit to the author's and followers' streams and the public ones
    /// (feeds hold ids, so there is nothing else to change).
    #[tracing::instrument(skip_all, fields(status_id = e.status_id))]
    pub async fn announce_edit(&self, e: &pb::StatusEvent) -> Result<()> {
        let visibility = Visibility::from_proto(e.visibility, Visibility::Direct)?;
        if visibility == Visibility::Direct {
            return Ok(());
        }
        let message = streaming::Message {
            event: streaming::Kind::StatusUpdate,
            id: e.status_id,
            account: e.account_id,
            version_ms: chrono::Utc::now().timestamp_millis(),
        };
        self.announce_public(e, visibility, &message).await?;
        self.announce_to_followers(e.account_id, &message).await
    }

    /// Publishes `message` on the streams of `author` and its active followers.
    async fn announce_to_followers(&self, author: i64, message: &streaming::Message) -> Result<()> {
        let redis = self.feeds.redis();
        let own = [streaming::user_channel(redis, author)];
        streaming::publish(redis, &own, message).await?;
        self.for_followers(author, false, |chunk| async move {
            let channels: Vec<String> = chunk
                .iter()
                .map(|f| streaming::user_channel(redis, *f))
                .collect();
            Ok(streaming::publish(redis, &channels, message).await?)
        })
        .await?;
        Ok(())
    }

    /// Takes a deleted status out of every feed that may hold it, and tells the streams.
    #[tracing::instrument(skip_all, fields(status_id = e.status_id))]
    pub async fn fan_in(&self, e: &pb::StatusEvent) -> Result<()> {
        let ids = [e.status_id];
        self.feeds.remove(&[e.account_id], &ids).await?;
        self.feeds.remove_author(e.account_id, e.status_id).await?;
        let visibility = Visibility::from_proto(e.visibility, Visibility::Direct)?;
        let message = streaming::Message {
            event: streaming::Kind::Delete,
            id: e.status_id,
            account: e.account_id,
            version_ms: 0,
        };
        if visibility != Visibility::Direct {
            self.announce_public(e, visibility, &message).await?;
            let redis = self.feeds.redis();
            let own = [streaming::user_channel(redis, e.account_id)];
            streaming::publish(redis, &own, &message).await?;
        }
        self.for_followers(e.account_id, false, |chunk| {
            let message = &message;
            async move {
                self.feeds.remove(&chunk, &ids).await?;
                if visibility == Visibility::Direct {
                    return Ok(());
                }
                let redis = self.feeds.redis();
                let channels: Vec<String> = chunk
                    .iter()
                    .map(|f| streaming::user_channel(redis, *f))
                    .collect();
                Ok(streaming::publish(redis, &channels, message).await?)
            }
        })
        .await?;
        if !e.tags.is_empty() {
            let followers = self.store.tag_followers(&e.tags).await?;
            for chunk in followers.chunks(1000) {
                self.feeds.remove(chunk, &ids).await?;
            }
        }
        self.trends
            .remove_status(e.status_id, chrono::Utc::now().timestamp_millis())
            .await?;
        Ok(())
    }

    /// Applies one event of the users stream.
    pub async fn on_graph_event(&self, event: Event) -> Result<()> {
        let topic = event.topic.as_str();
        if !matches!(
            topic,
            "follow.created"
                | "follow.deleted"
                | "block.created"
                | "block.deleted"
                | "mute.created"
                | "mute.deleted"
        ) {
            return Ok(());
        }
        let Some(e) = event.decode::<users::GraphEvent>() else {
            return Ok(());
        };
        let (a, b) = (e.account_id, e.target_account_id);
        match topic {
            "follow.created" => self.merge(a, b, e.show_reblogs).await?,
            "follow.deleted" => self.unmerge(a, b).await?,
            "block.created" => {
                self.feeds.forget_filters(&[a, b]).await?;
                self.unmerge(a, b).await?;
                self.unmerge(b, a).await?;
            }
            "block.deleted" => self.feeds.forget_filters(&[a, b]).await?,
            _ => self.feeds.forget_filters(&[a]).await?,
        }
        Ok(())
    }

    /// `account` followed `target`: its recent statuses (and reblogs, unless turned off)
    /// join the feed.
    async fn merge(&self, account: i64, target: i64, reblogs: bool) -> Result<()> {
        if !self.feeds.is_live(account).await? {
            return Ok(());
        }
        if !self.feeds.celebrities_among(&[target]).await?.is_empty() {
            return self.feeds.set_celeb(&[account], target, true).await;
        }
        let n = self.config.merge_per_account;
        let rows = self.store.recent_of_accounts(&[target], n, n).await?;
        // Oldest first, as they were posted, so reblog de-duplication keeps the first.
        let pairs: Vec<(i64, Entry)> = rows
            .into_iter()
            .rev()
            .filter(|(_, reblog_of)| reblogs || reblog_of.is_none())
            .map(|(id, reblog_of)| (account, Entry { id, reblog_of }))
            .collect();
        self.feeds.push_pairs(&pairs).await?;
        Ok(())
    }

    /// `account` no longer follows (or blocked) `target`: its statuses leave the feed.
    async fn unmerge(&self, account: i64, target: i64) -> Result<()> {
        self.feeds.set_celeb(&[account], target, false).await?;
        let Some(oldest) = self.feeds.oldest(account).await? else {
            return Ok(());
        };
        let ids = self
            .store
            .statuses_of_since(target, oldest, crate::service::timelines::MAX_UNMERGE)
            .await?;
        self.feeds.remove(&[account], &ids).await
    }
}

impl From<prost::DecodeError> for Error {
    fn from(e: prost::DecodeError) -> Self {
        Error::Internal(format!("undecodable message: {e}"))
    }
}
