//! The rules of the timeline service, against the store, the status cache, the feeds and
//! the users service. Writes are in [`statuses`], reads of lists in [`timelines`].
//!
//! Every page is rendered by [`Timeline::page`] with a constant number of round trips
//! whatever its size: bodies from the two-tier cache (one statement for all misses,
//! reblogged and quoted statuses included), the viewer's filters from Redis, the viewer's
//! flags in one statement, follows (only when private statuses of others need them) in
//! one users call. The gateway then fetches every author in one batched call.

pub mod statuses;
pub mod timelines;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use rookery_kit::{cache::TieredCache, events::Outbox, grpc::TracedChannel};
use rookery_proto::{
    timeline::v1 as pb,
    users::v1::{self as users, users_client::UsersClient},
};

use crate::{Config, Result, domain::Visibility, feed::Feeds, store::Store};

/// Cache name of status bodies (L1 in every replica, L2 in Redis).
pub const STATUS_CACHE: &str = "statuses";
/// Cache name of viewers' flags on statuses (favourited, reblogged, ...).
pub const FLAGS_CACHE: &str = "status-flags";

/// The timeline service.
pub struct Timeline {
    pub(crate) store: Store,
    pub(crate) statuses: TieredCache<pb::Status>,
    pub(crate) flags: TieredCache<pb::ViewerState>,
    pub(crate) feeds: Feeds,
    pub(crate) users: UsersClient<TracedChannel>,
    pub(crate) outbox: Outbox,
    pub(crate) config: Arc<Config>,
    pub(crate) trends: crate::trends::Trends,
}

/// The parts [`Timeline`] is made of.
pub struct Parts {
    pub store: Store,
    pub statuses: TieredCache<pb::Status>,
    pub flags: TieredCache<pb::ViewerState>,
    pub feeds: Feeds,
    pub users: UsersClient<TracedChannel>,
    pub outbox: Outbox,
    pub config: Arc<Config>,
    pub trends: crate::trends::Trends,
}

/// Who is reading, with what they must not see.
#[derive(Debug, Default)]
pub struct Viewer {
    /// 0 for an anonymous reader.
    pub id: i64,
    /// Blocked by the viewer, or blocking them.
    pub blocks: HashSet<i64>,
    /// Muted by the viewer.
    pub mutes: HashSet<i64>,
}

impl Viewer {
    pub fn anonymous() -> Self {
        Self::default()
    }

    pub fn signed_in(&self) -> bool {
        self.id != 0
    }
}

/// How a page is filtered.
#[derive(Clone, Copy, Debug)]
pub struct Filter {
    /// Leave out statuses of (and reblogged from) muted accounts.
    pub mutes: bool,
    /// The candidate ids are known visible to the viewer (the home feed: fan-out only
    /// delivered what they may see), so private statuses need no follow check.
    pub trusted: bool,
    /// Leave out replies to accounts the viewer does not follow (the home timeline, as
    /// Mastodon's: a conversation between others is not for the viewer's home).
    pub followed_replies_only: bool,
}

impl Filter {
    /// Timelines: blocks and mutes, visibility checked.
    pub const TIMELINE: Self = Self {
        mutes: true,
        trusted: false,
        followed_replies_only: false,
    };
    /// A status asked for by id, an account's own page: blocks only.
    pub const DIRECT: Self = Self {
        mutes: false,
        trusted: false,
        followed_replies_only: false,
    };
}

fn cache_key(id: i64) -> String {
    id.to_string()
}

fn flags_key(viewer: i64, status: i64) -> String {
    format!("{viewer}:{status}")
}

impl Timeline {
    pub fn new(parts: Parts) -> Self {
        Self {
            store: parts.store,
            statuses: parts.statuses,
            flags: parts.flags,
            feeds: parts.feeds,
            users: parts.users,
            outbox: parts.outbox,
            config: parts.config,
            trends: parts.trends,
        }
    }

    pub(crate) fn users(&self) -> UsersClient<TracedChannel> {
        self.users.clone()
    }

    /// The viewer with their filters: from Redis, or loaded from the users service and
    /// cached there on a miss. Redis down or slow counts as a miss: the request is slower,
    /// not failed.
    pub async fn viewer(&self, id: i64) -> Result<Viewer> {
        if id == 0 {
            return Ok(Viewer::anonymous());
        }
        let (blocks, mutes) = match self.feeds.filters(id).await {
            Ok(cached) => cached,
            Err(crate::Error::Kit(e)) if e.is_unavailable() => {
                tracing::debug!(error = %e, "viewer filters unreadable, loading them");
                (None, None)
            }
            Err(e) => return Err(e),
        };
        self.complete_viewer(id, blocks, mutes).await
    }

    /// A viewer from cached filters, loading them when either is missing.
    pub(crate) async fn complete_viewer(
        &self,
        id: i64,
        blocks: Option<HashSet<i64>>,
        mutes: Option<HashSet<i64>>,
    ) -> Result<Viewer> {
        if let (Some(blocks), Some(mutes)) = (blocks, mutes) {
            return Ok(Viewer { id, blocks, mutes });
        }
        let loaded = self
            .users()
            .exclusions(users::ExclusionsRequest { account_id: id })
            .await?
            .into_inner();
        if let Err(e) = self
            .feeds
            .store_filters(id, &loaded.blocked, &loaded.muted)
            .await
        {
            tracing::warn!(error = %e, "viewer filters not cached");
        }
        Ok(Viewer {
            id,
            blocks: loaded.blocked.into_iter().collect(),
            mutes: loaded.muted.into_iter().collect(),
        })
    }

    /// Status bodies by id, with the statuses they reblog and quote: from the cache, with
    /// at most one statement for everything missing (two in the rare case of a cached
    /// reblog whose original was evicted).
    pub async fn bodies(&self, ids: &[i64]) -> Result<HashMap<i64, pb::Status>> {
        let mut found: HashMap<i64, pb::Status> = HashMap::with_capacity(ids.len() * 2);
        let mut wanted: Vec<i64> = ids.to_vec();
        // Page, then originals and quotes, then quotes of originals.
        for _ in 0..3 {
            if wanted.is_empty() {
                break;
            }
            let keys: Vec<String> = wanted.iter().map(|id| cache_key(*id)).collect();
            let got = self
                .statuses
                .get_many(&keys, |missing| async move {
                    let ids: Vec<i64> = missing.iter().filter_map(|k| k.parse().ok()).collect();
                    let rows = self.store.statuses(&ids).await?;
                    Ok::<_, crate::Error>(
                        rows.into_iter()
                            .map(|r| {
                                let s = pb::Status::from(r);
                                (cache_key(s.id), s)
                            })
                            .collect(),
                    )
                })
                .await?;
            for (_, s) in got {
                found.insert(s.id, s);
            }
            wanted = found
                .values()
                .flat_map(|s| [s.reblog_of_id, s.quote_of_id])
                .flatten()
                .filter(|id| !found.contains_key(id))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
        }
        Ok(found)
    }

    /// Drops cached bodies after a change (every replica, both tiers).
    pub async fn forget(&self, ids: &[i64]) {
        let keys: Vec<String> = ids.iter().map(|id| cache_key(*id)).collect();
        self.statuses.invalidate(&keys).await;
    }

    /// Deletes expired idempotency keys (a batch at a time).
    pub async fn sweep(&self) -> Result<u64> {
        self.store.sweep_idempotency_keys(1000).await
    }

    /// Which of `authors` the viewer follows: one users call.
    pub async fn following(&self, viewer: i64, authors: &[i64]) -> Result<HashSet<i64>> {
        if viewer == 0 || authors.is_empty() {
            return Ok(HashSet::new());
        }
        let res = self
            .users()
            .relationships(users::RelationshipsRequest {
                viewer_id: viewer,
                ids: authors.to_vec(),
            })
            .await?
            .into_inner();
        Ok(res
            .relationships
            .into_iter()
            .filter(|r| r.following)
            .map(|r| r.id)
            .collect())
    }

    /// Renders candidate `ids` (in order) for `viewer`: loads bodies, drops what the
    /// viewer may not see, attaches flags and lists the accounts to hydrate.
    pub async fn page(
        &self,
        viewer: &Viewer,
        ids: &[i64],
        filter: Filter,
    ) -> Result<pb::StatusPage> {
        let bodies = self.bodies(ids).await?;
        self.render(viewer, ids, bodies, filter).await
    }

    /// [`Timeline::page`] for bodies already loaded.
    pub async fn render(
        &self,
        viewer: &Viewer,
        ids: &[i64],
        bodies: HashMap<i64, pb::Status>,
        filter: Filter,
    ) -> Result<pb::StatusPage> {
        // Private statuses of others need to know whom the viewer follows. A trusted page
        // vouches for its own rows only, not for what they quote: an author may quote their
        // own private or direct status in a public one, which an account's page (or a
        // follower's home) selects, and the quoted status must stay hidden from those who
        // may not see it. So quotes are always checked.
        let mut ask: Vec<i64> = Vec::new();
        for id in ids {
            let Some(s) = bodies.get(id) else { continue };
            let shown = s.reblog_of_id.and_then(|o| bodies.get(&o)).unwrap_or(s);
            if !filter.trusted {
                for st in [s, shown] {
                    if needs_follow_check(viewer, st) {
                        ask.push(st.account_id);
                    }
                }
            }
            if let Some(q) = shown.quote_of_id.and_then(|q| bodies.get(&q))
                && needs_follow_check(viewer, q)
            {
                ask.push(q.account_id);
            }
        }
        if filter.followed_replies_only {
            ask.extend(
                ids.iter()
                    .filter_map(|id| reply_to_other(viewer, bodies.get(id)?)),
            );
        }
        ask.sort_unstable();
        ask.dedup();
        let following = self.following(viewer.id, &ask).await?;
        let may_see = |s: &pb::Status| {
            if viewer.blocks.contains(&s.account_id) {
                return false;
            }
            filter.trusted || can_see(viewer, s, &following)
        };
        let may_see_quoted = |s: &pb::Status| {
            !viewer.blocks.contains(&s.account_id) && can_see(viewer, s, &following)
        };

        let mut page = pb::StatusPage::default();
        let mut shown_ids: Vec<i64> = Vec::new();
        for id in ids {
            let Some(s) = bodies.get(id) else { continue };
            let original = match s.reblog_of_id {
                Some(o) => match bodies.get(&o) {
                    Some(original) => Some(original),
                    None => continue,
                },
                None => None,
            };
            let shown = original.unwrap_or(s);
            if !may_see(s) || !may_see(shown) {
                continue;
            }
            if filter.mutes
                && (viewer.mutes.contains(&s.account_id)
                    || viewer.mutes.contains(&shown.account_id))
            {
                continue;
            }
            if filter.followed_replies_only
                && reply_to_other(viewer, s).is_some_and(|to| !following.contains(&to))
            {
                continue;
            }
            page.ids.push(*id);
            shown_ids.push(*id);
            if let Some(original) = original {
                shown_ids.push(original.id);
            }
            if let Some(q) = shown.quote_of_id {
                match bodies.get(&q) {
                    Some(quoted) if may_see_quoted(quoted) => shown_ids.push(q),
                    Some(_) => page.hidden_quotes.push(q),
                    None => {}
                }
            }
        }
        shown_ids.sort_unstable();
        shown_ids.dedup();
        let mut authors: Vec<i64> = Vec::new();
        for id in &shown_ids {
            if let Some(s) = bodies.get(id) {
                authors.push(s.account_id);
                authors.extend(&s.mention_ids);
                page.statuses.insert(*id, s.clone());
            }
        }
        authors.sort_unstable();
        authors.dedup();
        page.authors = authors;
        if viewer.signed_in() && !shown_ids.is_empty() {
            page.viewer = self.flags(viewer.id, &shown_ids).await?;
        }
        Ok(page)
    }

    /// The viewer's flags on `ids`: from the flags cache, one statement for the misses.
    /// Only this service changes them, and it drops the entry when it does.
    async fn flags(&self, viewer: i64, ids: &[i64]) -> Result<HashMap<i64, pb::ViewerState>> {
        let keys: Vec<String> = ids.iter().map(|id| flags_key(viewer, *id)).collect();
        let found = self
            .flags
            .get_many(&keys, |missing| async move {
                let ids: Vec<i64> = missing
                    .iter()
                    .filter_map(|k| k.rsplit(':').next()?.parse().ok())
                    .collect();
                let rows = self.store.viewer_flags(viewer, &ids).await?;
                Ok::<_, crate::Error>(
                    rows.into_iter()
                        .map(|f| {
                            let state = pb::ViewerState {
                                favourited: f.favourited,
                                reblogged: f.reblogged,
                                bookmarked: f.bookmarked,
                                pinned: f.pinned,
                                muted: false,
                            };
                            (flags_key(viewer, f.id), state)
                        })
                        .collect(),
                )
            })
            .await?;
        Ok(ids
            .iter()
            .filter_map(|id| Some((*id, *found.get(&flags_key(viewer, *id))?)))
            .collect())
    }

    /// Drops the viewer's cached flags on `ids` after they changed them.
    pub async fn forget_flags(&self, viewer: i64, ids: &[i64]) {
        let keys: Vec<String> = ids.iter().map(|id| flags_key(viewer, *id)).collect();
        self.flags.invalidate(&keys).await;
    }
}

/// The account `s` answers when that is neither its author nor the viewer.
fn reply_to_other(viewer: &Viewer, s: &pb::Status) -> Option<i64> {
    s.in_reply_to_account_id
        .filter(|to| *to != s.account_id && *to != viewer.id)
}

/// Whether seeing `s` depends on the viewer following its author.
fn needs_follow_check(viewer: &Viewer, s: &pb::Status) -> bool {
    viewer.signed_in()
        && s.account_id != viewer.id
        && Visibility::of(s) == Visibility::Private
        && !s.mention_ids.contains(&viewer.id)
}

/// Mastodon's visibility rule: public and unlisted for everyone, private for followers
/// and mentioned accounts, direct for mentioned accounts; the author sees everything.
pub fn can_see(viewer: &Viewer, s: &pb::Status, following: &HashSet<i64>) -> bool {
    if viewer.signed_in() && s.account_id == viewer.id {
        return true;
    }
    match Visibility::of(s) {
        Visibility::Public | Visibility::Unlisted => true,
        Visibility::Private => {
            viewer.signed_in()
                && (following.contains(&s.account_id) || s.mention_ids.contains(&viewer.id))
        }
        Visibility::Direct => viewer.signed_in() && s.mention_ids.contains(&viewer.id),
    }
}

/// Cursors of a page whose scan ran over `scanned` (newest first), for `Link` headers:
/// filtering may leave fewer statuses than were scanned, but paging goes on from the
/// scan, not from what was shown.
pub fn cursors(page: &mut pb::StatusPage, scanned: &[i64], limit: i64) {
    page.prev_min_id = scanned.first().copied();
    page.next_max_id = scanned
        .last()
        .copied()
        .filter(|_| scanned.len() as i64 >= limit);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(account: i64, visibility: Visibility, mentions: Vec<i64>) -> pb::Status {
        pb::Status {
            id: 1,
            account_id: account,
            visibility: visibility as i32,
            mention_ids: mentions,
            ..Default::default()
        }
    }

    #[test]
    fn visibility_rules() {
        let me = Viewer {
            id: 7,
            ..Default::default()
        };
        let anon = Viewer::anonymous();
        let none = HashSet::new();
        let follows: HashSet<i64> = [2].into();
        assert!(can_see(
            &anon,
            &status(2, Visibility::Unlisted, vec![]),
            &none
        ));
        assert!(!can_see(
            &anon,
            &status(2, Visibility::Private, vec![]),
            &none
        ));
        assert!(!can_see(
            &me,
            &status(2, Visibility::Private, vec![]),
            &none
        ));
        assert!(can_see(
            &me,
            &status(2, Visibility::Private, vec![]),
            &follows
        ));
        assert!(can_see(
            &me,
            &status(3, Visibility::Private, vec![7]),
            &none
        ));
        assert!(!can_see(
            &me,
            &status(2, Visibility::Direct, vec![]),
            &follows
        ));
        assert!(can_see(&me, &status(2, Visibility::Direct, vec![7]), &none));
        assert!(can_see(&me, &status(7, Visibility::Direct, vec![]), &none));
    }

    #[test]
    fn cursors_follow_the_scan() {
        let mut page = pb::StatusPage::default();
        cursors(&mut page, &[9, 8, 7], 3);
        assert_eq!((page.prev_min_id, page.next_max_id), (Some(9), Some(7)));
        cursors(&mut page, &[9, 8], 3);
        assert_eq!((page.prev_min_id, page.next_max_id), (Some(9), None));
    }
}
