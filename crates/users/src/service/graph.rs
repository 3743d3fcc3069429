//! The social graph: follows, follow requests, blocks, mutes, relationships, account
//! lists, search and the fan-out feed of follower ids.
//!
//! Every write between two accounts runs in one transaction that first locks both account
//! rows (in id order), so concurrent writes on a pair serialise: a duplicate follow makes
//! one edge, a block racing a follow never leaves both, and the counters (maintained by
//! triggers) stay exact. Events go to the outbox in the same transaction.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use rookery_kit::ratelimit::Decision;
use rookery_proto::users::v1 as pb;
use sqlx::PgConnection;

use super::{Users, topics};
use crate::{
    Error, Result,
    domain::AccountId,
    store::graph::{
        BlockRow, Bounds, EdgeRow, FollowOptions, Followers, List, MuteRow, RelationshipRow,
    },
};

/// Largest page of an account list (Mastodon's).
pub const MAX_PAGE: u32 = 80;
/// Default page of an account list (Mastodon's).
pub const DEFAULT_PAGE: u32 = 40;
/// Followers per fan-out chunk.
const FOLLOWER_CHUNK: i64 = 1000;
/// Most languages a follow can filter on.
const MAX_LANGUAGES: usize = 32;
/// Longest mute (a bound that keeps timestamps sane; "forever" is duration 0).
const MAX_MUTE_SECONDS: i64 = 10 * 366 * 24 * 3600;
/// Deepest search offset.
const MAX_SEARCH_OFFSET: u32 = 10_000;

/// The `GraphEvent` of a follow or follow request.
pub(super) fn edge_event(edge: &EdgeRow) -> pb::GraphEvent {
    pb::GraphEvent {
        id: edge.id,
        account_id: edge.account_id,
        target_account_id: edge.target_account_id,
        show_reblogs: edge.show_reblogs,
        notify: edge.notify,
        hide_notifications: false,
        expires_at_ms: None,
        created_at_ms: edge.created_at.timestamp_millis(),
        languages: edge.languages.clone().unwrap_or_default(),
        accepted_request: false,
    }
}

/// The `GraphEvent` of a block.
fn block_event(block: &BlockRow) -> pb::GraphEvent {
    pb::GraphEvent {
        id: block.id,
        account_id: block.account_id,
        target_account_id: block.target_account_id,
        created_at_ms: block.created_at.timestamp_millis(),
        ..Default::default()
    }
}

/// The `GraphEvent` of a mute.
fn mute_event(mute: &MuteRow) -> pb::GraphEvent {
    pb::GraphEvent {
        id: mute.id,
        account_id: mute.account_id,
        target_account_id: mute.target_account_id,
        hide_notifications: mute.hide_notifications,
        expires_at_ms: mute.expires_at.map(|t| t.timestamp_millis()),
        created_at_ms: mute.created_at.timestamp_millis(),
        ..Default::default()
    }
}

/// The events of an accepted request: the request goes, the follow comes.
pub(super) fn accepted_events(
    follow: &EdgeRow,
    request_id: i64,
) -> [(&'static str, pb::GraphEvent); 2] {
    let follow_event = pb::GraphEvent {
        accepted_request: true,
        ..edge_event(follow)
    };
    let request_event = pb::GraphEvent {
        id: request_id,
        accepted_request: false,
        ..follow_event.clone()
    };
    [
        (topics::FOLLOW_REQUEST_DELETED, request_event),
        (topics::FOLLOW_CREATED, follow_event),
    ]
}

fn relationship(r: RelationshipRow) -> pb::Relationship {
    pb::Relationship {
        id: r.id,
        following: r.following,
        showing_reblogs: r.showing_reblogs,
        notifying: r.notifying,
        languages: r.languages.unwrap_or_default(),
        followed_by: r.followed_by,
        blocking: r.blocking,
        blocked_by: r.blocked_by,
        muting: r.muting,
        muting_notifications: r.muting_notifications,
        muting_expires_at_ms: r.muting_expires_at.map(|t| t.timestamp_millis()),
        requested: r.requested,
        requested_by: r.requested_by,
    }
}

/// The two accounts of a pair request; acting on oneself is refused with `message`.
fn pair(account: i64, target: i64, message: &str) -> Result<(AccountId, AccountId)> {
    if account == target {
        return Err(Error::InvalidArgument(message.to_owned()));
    }
    Ok((AccountId(account), AccountId(target)))
}

/// The pair of a follow-request answer; there is never a request from oneself.
fn requester_pair(req: &pb::PairRequest) -> Result<(AccountId, AccountId)> {
    if req.account_id == req.target_id {
        return Err(Error::NotFound("follow request"));
    }
    Ok((AccountId(req.account_id), AccountId(req.target_id)))
}

fn languages(list: Option<pb::LanguageList>) -> Result<Option<Vec<String>>> {
    let Some(list) = list else { return Ok(None) };
    if list.codes.len() > MAX_LANGUAGES {
        return Err(Error::InvalidArgument(format!(
            "languages: at most {MAX_LANGUAGES} languages"
        )));
    }
    let mut codes = Vec::with_capacity(list.codes.len());
    for code in list.codes {
        let code = code.trim().to_owned();
        // ISO 639-1/-3, optionally with a region or script (`zh-TW`).
        let (lang, region) = code.split_once('-').unwrap_or((&code, "ok"));
        let valid = (2..=3).contains(&lang.len())
            && lang.bytes().all(|b| b.is_ascii_alphabetic())
            && (2..=8).contains(&region.len())
            && region.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid {
            return Err(Error::InvalidArgument(format!(
                "languages: {code:?} is not a language code"
            )));
        }
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    Ok(Some(codes))
}

/// Keyset bounds from Mastodon's paging parameters: `min_id` wins over `since_id`.
fn bounds(page: Option<pb::Page>) -> Bounds {
    let page = page.unwrap_or_default();
    let limit = match page.limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    Bounds {
        below: page.max_id.unwrap_or(i64::MAX),
        above: page.min_id.or(page.since_id).unwrap_or(0),
        oldest_first: page.min_id.is_some(),
        limit: i64::from(limit),
    }
}

/// `LIKE` pattern text matching `s` literally.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A prefix tsquery over the words of `q` (`'ann':* & 'smi':*`), or `None` without words.
fn word_prefixes(q: &str) -> Option<String> {
    let words: Vec<String> = q
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(8)
        .map(|w| format!("'{}':*", w.to_lowercase()))
        .collect();
    (!words.is_empty()).then(|| words.join(" & "))
}

/// What a write changed, acted on after commit.
#[derive(Default)]
struct Changed {
    /// Events were written to the outbox.
    events: bool,
    /// Accounts whose cached entity is stale (their counters moved).
    accounts: Vec<AccountId>,
}

impl Users {
    /// Locks the pair and returns whether `target` is locked; NOT_FOUND when it does not
    /// exist.
    async fn lock_pair(
        &self,
        conn: &mut PgConnection,
        me: AccountId,
        target: AccountId,
    ) -> Result<bool> {
        let rows = self.store.lock_pair(conn, me, target).await?;
        if !rows.iter().any(|(id, _)| *id == me.0) {
            return Err(Error::Unauthenticated);
        }
        rows.iter()
            .find(|(id, _)| *id == target.0)
            .map(|(_, locked)| *locked)
            .ok_or(Error::NotFound("account"))
    }

    async fn emit(
        &self,
        conn: &mut PgConnection,
        changed: &mut Changed,
        topic: &str,
        event: &pb::GraphEvent,
    ) -> Result<()> {
        self.enqueue(conn, topic, event.account_id, event).await?;
        changed.events = true;
        Ok(())
    }

    /// The relationship `me → target` inside the write transaction, then commit and
    /// publish what changed.
    async fn finish(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
        me: AccountId,
        target: AccountId,
        changed: Changed,
    ) -> Result<pb::Relationship> {
        let found = self
            .store
            .relationships_in(&mut tx, me, &[target.0])
            .await?;
        tx.commit().await?;
        if changed.events {
            self.outbox.committed();
        }
        if !changed.accounts.is_empty() {
            let keys: Vec<String> = changed.accounts.iter().map(|a| a.to_string()).collect();
            self.accounts.invalidate(&keys).await;
        }
        found
            .into_iter()
            .next()
            .map(relationship)
            .ok_or(Error::NotFound("account"))
    }

    /// Deletes the request `from → to` if there is one, with its event; true if there was.
    async fn drop_request(
        &self,
        conn: &mut PgConnection,
        changed: &mut Changed,
        from: AccountId,
        to: AccountId,
    ) -> Result<bool> {
        let Some(request) = self.store.delete_follow_request(conn, from, to).await? else {
            return Ok(false);
        };
        let event = edge_event(&request);
        self.emit(conn, changed, topics::FOLLOW_REQUEST_DELETED, &event)
            .await?;
        // Its pending-requests count moved.
        changed.accounts.push(to);
        Ok(true)
    }

    /// Counts a possible new follow or follow request against the rate limit. Fails open
    /// when Redis is down: a limit is not worth refusing every follow for.
    async fn count_follow(&self, me: AccountId) -> Option<Decision> {
        match self.follow_limit.hit(&me.to_string()).await {
            Ok(decision) => Some(decision),
            Err(e) => {
                tracing::warn!(error = %e, "follow rate limit unavailable, allowing");
                None
            }
        }
    }

    /// Follows (see the RPC); also returns where the caller stands against the follow
    /// limit (`None` when Redis could not say), which Mastodon reports on every follow.
    #[tracing::instrument(skip_all, fields(account_id = req.account_id, target_id = req.target_id))]
    pub async fn follow(
        &self,
        req: pb::FollowRequest,
    ) -> Result<(pb::Relationship, Option<Decision>)> {
        let (me, target) = pair(req.account_id, req.target_id, "You cannot follow yourself")?;
        let languages = languages(req.languages)?;
        let options = FollowOptions {
            reblogs: req.reblogs,
            notify: req.notify,
            languages: languages.as_deref(),
        };
        // Counted before the transaction, so that no Redis round trip happens while the
        // pair's rows (a popular account's among them) are locked; given back unless a new
        // follow or request comes of it.
        let mut decision = self.count_follow(me).await;
        let outcome = self.follow_locked(me, target, &options, decision).await;
        if let Some(d) = &mut decision
            && !matches!(outcome, Ok((_, true)))
            && let Err(e) = self.follow_limit.undo(&me.to_string(), d).await
        {
            tracing::warn!(error = %e, "follow rate limit not given back");
        }
        outcome.map(|(relationship, _)| (relationship, decision))
    }

    /// The transaction of [`Users::follow`]; true when a follow or request was created.
    async fn follow_locked(
        &self,
        me: AccountId,
        target: AccountId,
        options: &FollowOptions<'_>,
        decision: Option<Decision>,
    ) -> Result<(pb::Relationship, bool)> {
        let refuse_new = || match decision {
            Some(d) if !d.allowed => Err(Error::RateLimited {
                limit: d.limit,
                reset_at: d.reset_at,
            }),
            _ => Ok(()),
        };
        let mut tx = self.store.begin().await?;
        let locked = self.lock_pair(&mut tx, me, target).await?;
        let state = self.store.pair_state(&mut tx, me, target).await?;
        if state.blocked {
            return Err(Error::PermissionDenied("This action is not allowed"));
        }
        let mut changed = Changed::default();
        let mut created = false;
        if state.following {
            // Already following: only the options change (an event only when some were
            // given; consumers keep the latest, so a repeat of the same values is harmless).
            let (follow, _) = self
                .store
                .upsert_follow(&mut tx, me, target, options)
                .await?;
            let given = options.reblogs.is_some()
                || options.notify.is_some()
                || options.languages.is_some();
            if given {
                self.emit(
                    &mut tx,
                    &mut changed,
                    topics::FOLLOW_UPDATED,
                    &edge_event(&follow),
                )
                .await?;
            }
        } else if locked {
            if !state.requested {
                refuse_new()?;
            }
            let (request, new) = self
                .store
                .upsert_follow_request(&mut tx, me, target, options)
                .await?;
            if new {
                let event = edge_event(&request);
                self.emit(
                    &mut tx,
                    &mut changed,
                    topics::FOLLOW_REQUEST_CREATED,
                    &event,
                )
                .await?;
                changed.accounts.push(target);
                created = true;
            }
        } else {
            refuse_new()?;
            let (follow, new) = self
                .store
                .upsert_follow(&mut tx, me, target, options)
                .await?;
            if new {
                self.emit(
                    &mut tx,
                    &mut changed,
                    topics::FOLLOW_CREATED,
                    &edge_event(&follow),
                )
                .await?;
                changed.accounts.extend([me, target]);
                created = true;
            }
            // A request made while the target was locked is answered by this follow.
            if state.requested {
                self.drop_request(&mut tx, &mut changed, me, target).await?;
            }
        }
        let relationship = self.finish(tx, me, target, changed).await?;
        Ok((relationship, created))
    }

    /// Removes the follow `me → target` and any pending request.
    #[tracing::instrument(skip_all, fields(account_id = req.account_id, target_id = req.target_id))]
    pub async fn unfollow(&self, req: pb::PairRequest) -> Result<pb::Relationship> {
        let (me, target) = pair(
            req.account_id,
            req.target_id,
            "You cannot unfollow yourself",
        )?;
        let mut tx = self.store.begin().await?;
        self.lock_pair(&mut tx, me, target).await?;
        let mut changed = Changed::default();
        if let Some(follow) = self.store.delete_follow(&mut tx, me, target).await? {
            self.emit(
                &mut tx,
                &mut changed,
                topics::FOLLOW_DELETED,
                &edge_event(&follow),
            )
            .await?;
            changed.accounts.extend([me, target]);
        }
        self.drop_request(&mut tx, &mut changed, me, target).await?;
        self.finish(tx, me, target, changed).await
    }

    /// Makes `target` stop following `me`.
    #[tracing::instrument(skip_all, fields(account_id = req.account_id, target_id = req.target_id))]
    pub async fn remove_from_followers(&self, req: pb::PairRequest) -> Result<pb::Relationship> {
        let (me, target) = pair(
            req.account_id,
            req.target_id,
            "You cannot remove yourself from your followers",
        )?;
        let mut tx = self.store.begin().await?;
        self.lock_pair(&mut tx, me, target).await?;
        let mut changed = Changed::default();
        if let Some(follow) = self.store.delete_follow(&mut tx, target, me).await? {
            self.emit(
                &mut tx,
                &mut changed,
                topics::FOLLOW_DELETED,
                &edge_event(&follow),
            )
            .await?;
            changed.accounts.extend([me, target]);
        }
        self.finish(tx, me, target, changed).await
    }

    /// Accepts `target`'s request to follow `me`. NOT_FOUND when there is none.
    #[tracing::instrument(skip_all, fields(account_id = req.account_id, target_id = req.target_id))]
    pub async fn authorize_follow_request(&self, req: pb::PairRequest) -> Result<pb::Relationship> {
        let (me, requester) = requester_pair(&req)?;
        let mut tx = self.store.begin().await?;
        self.lock_pair(&mut tx, me, requester).await?;
        let mut changed = Changed::default();
        let accepted = self
            .store
            .accept_requests(&mut tx, me, &[requester.0])
            .await?;
        match accepted.first() {
            Some((follow, request_id)) => {
                for (topic, event) in accepted_events(follow, *request_id) {
                    self.emit(&mut tx, &mut changed, topic, &event).await?;
                }
                changed.accounts.extend([me, requester]);
            }
            // Accepting twice is fine; accepting nothing is not.
            None if !self
                .store
                .pair_state(&mut tx, requester, me)
                .await?
                .following =>
            {
                return Err(Error::NotFound("follow request"));
            }
            None => {}
        }
        self.finish(tx, me, requester, changed).await
    }

    /// Declines `target`'s request to follow `me`. NOT_FOUND when there is none.
    #[tracing::instrument(skip_all, fields(account_id = req.account_id, target_id = req.target_id))]
    pub async fn reject_follow_request(&self, req: pb::PairRequest) -> Result<pb::Relationship> {
        let (me, requester) = requester_pair(&req)?;
        let mut tx = self.store.begin().await?;
        self.lock_pair(&mut tx, me, requester).await?;
        let mut changed = Changed::default();
        if !self
            .drop_request(&mut tx, &mut changed, requester, me)
            .await?
        {
            return Err(Error::NotFound("follow request"));
        }
        self.finish(tx, me, requester, changed).await
    }

    /// Blocks `target`: follows and requests both ways are removed in the same transaction.
    #[tracing::instrument(skip_all, fields(account_id = req.account_id, target_id = req.target_id))]
    pub async fn block(&self, req: pb::PairRequest) -> Result<pb::Relationship> {
        let (me, target) = pair(req.account_id, req.target_id, "You cannot block yourself")?;
        let mut tx = self.store.begin().await?;
        self.lock_pair(&mut tx, me, target).await?;
        let mut changed = Changed::default();
        if let Some(block) = self.store.insert_block(&mut tx, me, target).await? {
            let event = block_event(&block);
            self.emit(&mut tx, &mut changed, topics::BLOCK_CREATED, &event)
                .await?;
        }
        let (follows, requests) = self.store.sever(&mut tx, me, target).await?;
        let severed = follows
            .iter()
            .map(|f| (topics::FOLLOW_DELETED, f))
            .chain(requests.iter().map(|r| (topics::FOLLOW_REQUEST_DELETED, r)));
        for (topic, edge) in severed {
            self.emit(&mut tx, &mut changed, topic, &edge_event(edge))
                .await?;
        }
        // Counters may have moved on both sides.
        changed.accounts.extend([me, target]);
        self.finish(tx, me, target, changed).await
    }

    #[tracing::instrument(skip_all, fields(account_id = req.account_id, target_id = req.target_id))]
    pub async fn unblock(&self, req: pb::PairRequest) -> Result<pb::Relationship> {
        let (me, target) = pair(req.account_id, req.target_id, "You cannot unblock yourself")?;
        let mut tx = self.store.begin().await?;
        self.lock_pair(&mut tx, me, target).await?;
        let mut changed = Changed::default();
        if let Some(block) = self.store.delete_block(&mut tx, me, target).await? {
            let event = block_event(&block);
            self.emit(&mut tx, &mut changed, topics::BLOCK_DELETED, &event)
                .await?;
        }
        self.finish(tx, me, target, changed).await
    }

    #[tracing::instrument(skip_all, fields(account_id = req.account_id, target_id = req.target_id))]
    pub async fn mute(&self, req: pb::MuteRequest) -> Result<pb::Relationship> {
        let (me, target) = pair(req.account_id, req.target_id, "You cannot mute yourself")?;
        let expires_at = match req.duration_seconds {
            0 => None,
            s if (1..=MAX_MUTE_SECONDS).contains(&s) => Some(Utc::now() + TimeDelta::seconds(s)),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "duration must be between 0 and {MAX_MUTE_SECONDS} seconds"
                )));
            }
        };
        let hide_notifications = req.notifications.unwrap_or(true);
        let mut tx = self.store.begin().await?;
        self.lock_pair(&mut tx, me, target).await?;
        let mut changed = Changed::default();
        let mute = self
            .store
            .upsert_mute(&mut tx, me, target, hide_notifications, expires_at)
            .await?;
        let event = mute_event(&mute);
        self.emit(&mut tx, &mut changed, topics::MUTE_CREATED, &event)
            .await?;
        self.finish(tx, me, target, changed).await
    }

    #[tracing::instrument(skip_all, fields(account_id = req.account_id, target_id = req.target_id))]
    pub async fn unmute(&self, req: pb::PairRequest) -> Result<pb::Relationship> {
        let (me, target) = pair(req.account_id, req.target_id, "You cannot unmute yourself")?;
        let mut tx = self.store.begin().await?;
        self.lock_pair(&mut tx, me, target).await?;
        let mut changed = Changed::default();
        if let Some(mute) = self.store.delete_mute(&mut tx, me, target).await? {
            let event = mute_event(&mute);
            self.emit(&mut tx, &mut changed, topics::MUTE_DELETED, &event)
                .await?;
        }
        self.finish(tx, me, target, changed).await
    }

    /// Accepts the pending requests to `account` (it is being unlocked, in `conn`'s
    /// transaction): locks it and the requesters in id order, turns their requests into
    /// follows with their events; returns the requesters.
    pub(super) async fn accept_pending(
        &self,
        conn: &mut PgConnection,
        account: AccountId,
    ) -> Result<Vec<AccountId>> {
        let requesters = self.store.lock_requesters(conn, account).await?;
        if requesters.is_empty() {
            return Ok(Vec::new());
        }
        let mut accepted = Vec::with_capacity(requesters.len());
        for (follow, request_id) in self
            .store
            .accept_requests(conn, account, &requesters)
            .await?
        {
            for (topic, event) in accepted_events(&follow, request_id) {
                self.enqueue(conn, topic, follow.account_id, &event).await?;
            }
            accepted.push(AccountId(follow.account_id));
        }
        Ok(accepted)
    }

    /// After an unlock commits no request can be made any more, but one committed while
    /// the unlock waited for its locks was not among those it accepted: accept those too.
    /// One more pass suffices; the bound is for safety. The unlock itself has committed,
    /// so a failure here is logged, not reported: the requests stay pending, visible in
    /// the follow requests list.
    pub(super) async fn accept_stragglers(&self, account: AccountId) {
        if let Err(e) = self.try_accept_stragglers(account).await {
            tracing::warn!(error = %e, account_id = account.0, "late follow requests not accepted");
        }
    }

    async fn try_accept_stragglers(&self, account: AccountId) -> Result<()> {
        for _ in 0..3 {
            let mut tx = self.store.begin().await?;
            let accepted = self.accept_pending(&mut tx, account).await?;
            if accepted.is_empty() {
                return Ok(());
            }
            tx.commit().await?;
            self.outbox.committed();
            let keys: Vec<String> = accepted
                .iter()
                .chain([&account])
                .map(ToString::to_string)
                .collect();
            self.accounts.invalidate(&keys).await;
        }
        Ok(())
    }

    /// Deletes mutes that ran out, announcing each with `mute.deleted` (consumers need
    /// not track expiry themselves), in batches of `batch` until none are left; returns
    /// how many went.
    pub async fn sweep_expired_mutes(&self, batch: i64) -> Result<usize> {
        let mut swept = 0;
        loop {
            let mut tx = self.store.begin().await?;
            let expired = self.store.sweep_expired_mutes(&mut tx, batch).await?;
            let mut changed = Changed::default();
            for mute in &expired {
                let event = mute_event(mute);
                self.emit(&mut tx, &mut changed, topics::MUTE_DELETED, &event)
                    .await?;
            }
            tx.commit().await?;
            if changed.events {
                self.outbox.committed();
            }
            swept += expired.len();
            if (expired.len() as i64) < batch {
                return Ok(swept);
            }
        }
    }

    /// Relationships from `viewer` to `ids`: one statement whatever their number.
    pub async fn relationships(&self, viewer: i64, ids: &[i64]) -> Result<Vec<pb::Relationship>> {
        let rows = self.store.relationships(AccountId(viewer), ids).await?;
        let mut by_id: HashMap<i64, RelationshipRow> =
            rows.into_iter().map(|r| (r.id, r)).collect();
        Ok(ids
            .iter()
            .filter_map(|id| by_id.remove(id))
            .map(relationship)
            .collect())
    }

    /// One page of an account list, hydrated through the account cache together with the
    /// list's owner: one page query and at most one account query, whatever the page size.
    #[tracing::instrument(skip_all, fields(account_id = req.account_id))]
    pub async fn list_accounts(&self, req: pb::ListAccountsRequest) -> Result<pb::AccountPage> {
        let list = match req.list() {
            pb::AccountList::Followers => List::Followers,
            pb::AccountList::Following => List::Following,
            pb::AccountList::FollowRequests => List::FollowRequests,
            pb::AccountList::Blocks => List::Blocks,
            pb::AccountList::Mutes => List::Mutes,
            pb::AccountList::Unspecified => {
                return Err(Error::InvalidArgument("list is required".into()));
            }
        };
        let owner = AccountId(req.account_id);
        let viewer = req.viewer_id.map(AccountId);
        let rows = self
            .store
            .list_page(list, owner, viewer, bounds(req.page))
            .await?;
        let mut ids = Vec::with_capacity(rows.len() + 1);
        ids.push(owner.0);
        ids.extend(rows.iter().map(|r| r.account_id));
        let mut accounts: HashMap<i64, pb::Account> = self
            .get_accounts(&ids)
            .await?
            .into_iter()
            .map(|a| (a.id, a))
            .collect();
        let owner_account = accounts.get(&owner.0).ok_or(Error::NotFound("account"))?;
        let hidden = matches!(list, List::Followers | List::Following)
            && owner_account.hide_collections
            && viewer != Some(owner);
        if hidden {
            return Ok(pb::AccountPage::default());
        }
        let entries = rows
            .into_iter()
            .filter_map(|row| {
                Some(pb::AccountEntry {
                    cursor: row.cursor,
                    // Each account is listed once (one edge per pair, never to itself).
                    account: Some(accounts.remove(&row.account_id)?),
                    mute_expires_at_ms: row.expires_at.map(|t| t.timestamp_millis()),
                })
            })
            .collect();
        Ok(pb::AccountPage { entries })
    }

    /// Prefix search over usernames and display-name words, best match first.
    #[tracing::instrument(skip_all)]
    pub async fn search_accounts(
        &self,
        req: pb::SearchAccountsRequest,
    ) -> Result<Vec<pb::Account>> {
        let q = req.query.trim().trim_start_matches('@');
        let username = match q.split_once('@') {
            None => q,
            Some((user, domain)) if domain.eq_ignore_ascii_case(&self.domain) => user,
            // Remote accounts: this server does not federate.
            Some(_) => return Ok(Vec::new()),
        };
        if username.is_empty() {
            return Ok(Vec::new());
        }
        let following_of = match (req.following, req.viewer_id) {
            (false, _) => None,
            (true, Some(viewer)) => Some(AccountId(viewer)),
            (true, None) => {
                return Err(Error::InvalidArgument(
                    "following requires a signed-in account".into(),
                ));
            }
        };
        let lowered = username.to_lowercase();
        let limit = match req.limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let ids = self
            .store
            .search_accounts(
                &escape_like(&lowered),
                word_prefixes(username).as_deref(),
                &lowered,
                following_of,
                i64::from(limit),
                i64::from(req.offset.min(MAX_SEARCH_OFFSET)),
            )
            .await?;
        self.get_accounts(&ids).await
    }

    /// One chunk of the followers of `account` after follow id `after`, for the streaming
    /// fan-out RPC; returns the ids and the cursor of the next chunk (None at the end).
    pub async fn follower_ids_chunk(
        &self,
        account: i64,
        only_active: bool,
        which: Followers,
        after: i64,
    ) -> Result<(Vec<i64>, Option<i64>)> {
        let active_since: Option<DateTime<Utc>> = only_active
            .then(|| TimeDelta::from_std(self.active_window).ok())
            .flatten()
            .map(|window| Utc::now() - window);
        let rows = self
            .store
            .follower_ids(
                AccountId(account),
                after,
                active_since,
                which,
                FOLLOWER_CHUNK,
            )
            .await?;
        let next = (rows.len() as i64 == FOLLOWER_CHUNK)
            .then(|| rows.last().map(|(id, _)| *id))
            .flatten();
        Ok((
            rows.into_iter().map(|(_, follower)| follower).collect(),
            next,
        ))
    }

    /// One chunk of the accounts `account` follows after follow id `after` (the
    /// `following` variant of the streaming fan-out RPC); returns the ids and the cursor
    /// of the next chunk (None at the end).
    pub async fn following_ids_chunk(
        &self,
        account: i64,
        after: i64,
    ) -> Result<(Vec<i64>, Option<i64>)> {
        let rows = self
            .store
            .following_ids(AccountId(account), after, FOLLOWER_CHUNK)
            .await?;
        let next = (rows.len() as i64 == FOLLOWER_CHUNK)
            .then(|| rows.last().map(|(id, _)| *id))
            .flatten();
        Ok((
            rows.into_iter().map(|(_, followed)| followed).collect(),
            next,
        ))
    }

    /// Every account `viewer` must not see (blocks either way, active mutes), each list
    /// sorted and without repeats: one statement, on the primary.
    pub async fn exclusions(&self, viewer: i64) -> Result<pb::FilterAccountsResponse> {
        let mut out = pb::FilterAccountsResponse::default();
        for row in self.store.exclusions(AccountId(viewer)).await? {
            if row.blocked {
                out.blocked.push(row.id);
            }
            if row.muted {
                out.muted.push(row.id);
            }
            if row.muted_notifications {
                out.muted_notifications.push(row.id);
            }
        }
        for list in [
            &mut out.blocked,
            &mut out.muted,
            &mut out.muted_notifications,
        ] {
            list.sort_unstable();
            list.dedup();
        }
        Ok(out)
    }

    /// Of `ids`, those `viewer` must not see: one statement for any number of ids.
    pub async fn filter_accounts(
        &self,
        viewer: i64,
        ids: &[i64],
    ) -> Result<pb::FilterAccountsResponse> {
        let mut out = pb::FilterAccountsResponse::default();
        for row in self.store.filter_accounts(AccountId(viewer), ids).await? {
            if row.blocked {
                out.blocked.push(row.id);
            }
            if row.muted {
                out.muted.push(row.id);
            }
            if row.muted_notifications {
                out.muted_notifications.push(row.id);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn min_id_wins_and_limits_clamp() {
        let b = bounds(Some(pb::Page {
            max_id: Some(90),
            since_id: Some(10),
            min_id: Some(20),
            limit: 500,
        }));
        assert_eq!(
            (b.below, b.above, b.oldest_first, b.limit),
            (90, 20, true, 80)
        );
        let b = bounds(None);
        assert_eq!(
            (b.below, b.above, b.oldest_first, b.limit),
            (i64::MAX, 0, false, 40)
        );
    }

    #[test]
    fn search_input_is_escaped() {
        assert_eq!(escape_like("a_b%c\\"), "a\\_b\\%c\\\\");
        assert_eq!(
            word_prefixes("Ann O'Neil!").unwrap(),
            "'ann':* & 'o':* & 'neil':*"
        );
        assert_eq!(word_prefixes("!!"), None);
    }

    #[test]
    fn languages_are_validated() {
        let list = |codes: &[&str]| {
            Some(pb::LanguageList {
                codes: codes.iter().map(|c| (*c).to_owned()).collect(),
            })
        };
        assert_eq!(languages(None).unwrap(), None);
        assert_eq!(
            languages(list(&["en", "zh-TW", "en"])).unwrap().unwrap(),
            vec!["en".to_owned(), "zh-TW".to_owned()]
        );
        assert!(languages(list(&["english"])).is_err());
        assert!(languages(list(&["e'n"])).is_err());
    }
}
