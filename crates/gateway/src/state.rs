//! What every handler shares: clients of the services and the gateway's caches.

use std::{collections::HashMap, ops::Deref, sync::Arc};

use rookery_kit::{
    cache::TieredCache,
    grpc::{TracedChannel, idempotent},
};
use rookery_proto::{
    media::v1::{self as md, media_client::MediaClient},
    notifications::v1::notifications_client::NotificationsClient,
    timeline::v1::timeline_client::TimelineClient,
    users::v1::{self as pb, users_client::UsersClient},
};
use tonic::Code;

use crate::{auth::Auth, config::Config, error::ApiError};

/// Shared state (cheap to clone).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The contents of [`AppState`].
pub struct Inner {
    /// The configuration the gateway runs with.
    pub config: Config,
    /// The users service.
    pub users: UsersClient<TracedChannel>,
    /// The timeline service.
    pub timeline: TimelineClient<TracedChannel>,
    /// The notifications service.
    pub notifications: NotificationsClient<TracedChannel>,
    /// The media service (calls bounded by the usual gRPC deadline).
    pub media: MediaClient<TracedChannel>,
    /// The media service for uploads: their deadline is the upload timeout.
    pub media_uploads: MediaClient<TracedChannel>,
    /// Attachments (process-local; evicted by the media service's invalidation
    /// broadcasts, like accounts).
    pub attachments: TieredCache<md::Attachment>,
    /// Health checks of the users service (readiness).
    pub health: tonic_health::pb::health_client::HealthClient<TracedChannel>,
    /// Token resolutions (process-local, evicted by broadcast revocations).
    pub tokens: TieredCache<pb::Authentication>,
    /// Account entities (process-local; evicted by the users service's invalidation
    /// broadcasts, so a warm read needs no gRPC hop at all).
    pub accounts: TieredCache<pb::Account>,
    /// Instance statistics (process-local, refreshed every minute).
    pub stats: TieredCache<pb::InstanceStats>,
    /// The streaming API: this replica's pub/sub connection, subscribers and caches.
    pub streaming: crate::streaming::Streaming,
    /// Rate limits shared with the other replicas (`None`: switched off).
    pub rate_limits: Option<crate::ratelimit::RateLimits>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl From<rookery_kit::Error> for ApiError {
    fn from(e: rookery_kit::Error) -> Self {
        tracing::warn!(error = %e, "plumbing failure");
        ApiError::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "Service temporarily unavailable, retry later",
        )
    }
}

impl AppState {
    /// Wraps the parts.
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// A users client for one call.
    pub fn users(&self) -> UsersClient<TracedChannel> {
        self.users.clone()
    }

    /// A timeline client for one call.
    pub fn timeline(&self) -> TimelineClient<TracedChannel> {
        self.timeline.clone()
    }

    /// A notifications client for one call.
    pub fn notifications(&self) -> NotificationsClient<TracedChannel> {
        self.notifications.clone()
    }

    /// A media client for one call.
    pub fn media(&self) -> MediaClient<TracedChannel> {
        self.media.clone()
    }

    /// Attachments by id: this replica's cache, one batched call for the misses.
    /// Unknown ids are left out.
    pub async fn attachments(&self, ids: &[i64]) -> Result<HashMap<i64, md::Attachment>, ApiError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let keys: Vec<String> = ids.iter().map(i64::to_string).collect();
        let found = self
            .attachments
            .get_many(&keys, |missing| async move {
                let ids: Vec<i64> = missing.iter().filter_map(|k| k.parse().ok()).collect();
                let res = idempotent(|| {
                    let (mut media, ids) = (self.media(), ids.clone());
                    async move { media.get_many(md::GetManyRequest { ids }).await }
                })
                .await?;
                Ok::<_, ApiError>(
                    res.into_inner()
                        .attachments
                        .into_iter()
                        .map(|a| (a.id.to_string(), a))
                        .collect(),
                )
            })
            .await?;
        Ok(found.into_values().map(|a| (a.id, a)).collect())
    }

    /// The attachments of every status of `page` (reblogged and quoted ones included),
    /// in one batched lookup.
    pub async fn page_media(
        &self,
        page: &rookery_proto::timeline::v1::StatusPage,
    ) -> Result<crate::mastodon::media::MediaRefs, ApiError> {
        let mut ids: Vec<i64> = page
            .statuses
            .values()
            .flat_map(|s| s.media_ids.iter().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(crate::mastodon::media::MediaRefs {
            attachments: self.attachments(&ids).await?,
            base: self.config.media_base_url.clone(),
        })
    }

    /// Accounts by id: this replica's cache, one batched call for the misses. Unknown
    /// ids are left out.
    pub async fn accounts(&self, ids: &[i64]) -> Result<HashMap<i64, pb::Account>, ApiError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let keys: Vec<String> = ids.iter().map(i64::to_string).collect();
        let found = self
            .accounts
            .get_many(&keys, |missing| async move {
                let ids: Vec<i64> = missing.iter().filter_map(|k| k.parse().ok()).collect();
                let res = idempotent(|| {
                    let (mut users, ids) = (self.users(), ids.clone());
                    async move { users.get_accounts(pb::GetAccountsRequest { ids }).await }
                })
                .await?;
                Ok::<_, ApiError>(
                    res.into_inner()
                        .accounts
                        .into_iter()
                        .map(|a| (a.id.to_string(), a))
                        .collect(),
                )
            })
            .await?;
        Ok(found.into_values().map(|a| (a.id, a)).collect())
    }

    /// Resolves a bearer token: cache first, the users service on a miss.
    pub async fn authenticate(&self, token: &str) -> Result<Auth, ApiError> {
        let key = crate::auth::token_key(token);
        let found = self
            .tokens
            .get(&key, || async {
                let authenticate = || {
                    let mut users = self.users();
                    let req = pb::AuthenticateRequest {
                        access_token: token.to_owned(),
                    };
                    async move { users.authenticate(req).await }
                };
                match idempotent(authenticate).await {
                    Ok(res) => Ok(Some(res.into_inner())),
                    Err(s) if s.code() == Code::Unauthenticated => Ok(None),
                    Err(s) => Err(ApiError::from(s)),
                }
            })
            .await?;
        found
            .map(|token| Auth {
                token: Arc::new(token),
            })
            .ok_or_else(ApiError::invalid_token)
    }

    /// Forgets a token resolution in this process at once (the users service tells the
    /// other replicas).
    pub async fn forget_token(&self, token: &str) {
        self.tokens
            .evict_local(&crate::auth::token_key(token))
            .await;
    }

    /// An account by id (404 if there is none): this replica's cache, else one call.
    pub async fn account(&self, id: rookery_kit::ids::AccountId) -> Result<pb::Account, ApiError> {
        self.accounts
            .get(&id.to_string(), || async {
                let res = idempotent(|| {
                    let mut users = self.users();
                    let req = pb::GetAccountsRequest { ids: vec![id.0] };
                    async move { users.get_accounts(req).await }
                })
                .await?;
                Ok::<_, ApiError>(res.into_inner().accounts.into_iter().next())
            })
            .await?
            .ok_or_else(ApiError::not_found)
    }

    /// Drops this replica's copy of an account it just changed (read-your-writes here;
    /// the users service's broadcast reaches the other replicas).
    pub async fn forget_account(&self, id: rookery_kit::ids::AccountId) {
        self.accounts.evict_local(&id.to_string()).await;
    }

    /// Instance statistics, at most a minute old.
    pub async fn stats(&self) -> pb::InstanceStats {
        let loaded = self
            .stats
            .get("instance", || async {
                let res = idempotent(|| {
                    let mut users = self.users();
                    async move {
                        users
                            .get_instance_stats(pb::GetInstanceStatsRequest {})
                            .await
                    }
                })
                .await?;
                Ok::<_, ApiError>(Some(res.into_inner()))
            })
            .await;
        // The instance document must answer even when users is down: zeros until it is back.
        loaded.ok().flatten().unwrap_or_default()
    }
}
