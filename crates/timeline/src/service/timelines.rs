//! Lists of statuses: the home feed (Redis, rebuilt from Postgres when it was not kept),
//! public, hashtag and account timelines, hashtags, trends and search.

use std::collections::HashMap;

use rookery_proto::{timeline::v1 as pb, users::v1 as users};
use tokio_stream::StreamExt;

use super::{Filter, Timeline, Viewer, cursors};
use crate::{
    Error, Result,
    domain::Bounds,
    feed::{Entry, Feeds, Range},
    store::{AccountFilter, List, TagFilter, TagRow},
};

/// Longest hashtag name.
const MAX_TAG: usize = 100;
/// Most `any`/`all`/`none` tags in one hashtag timeline request.
const MAX_EXTRA_TAGS: usize = 4;
/// Most statuses of an unfollowed account removed from a feed.
pub(crate) const MAX_UNMERGE: i64 = 10_000;

/// A hashtag name as stored: without `#`, lower-cased; None when it is not a hashtag.
pub fn normalize_tag(name: &str) -> Option<String> {
    let name = name.trim().trim_start_matches('#');
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_TAG
        && name.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !name.chars().all(|c| c.is_ascii_digit());
    ok.then(|| name.to_lowercase())
}

fn normalize_tags(names: &[String]) -> Result<Vec<String>> {
    if names.len() > MAX_EXTRA_TAGS {
        return Err(Error::InvalidArgument(format!(
            "at most {MAX_EXTRA_TAGS} tags in any, all and none"
        )));
    }
    Ok(names.iter().filter_map(|n| normalize_tag(n)).collect())
}

fn range(bounds: &Bounds) -> Range {
    Range {
        below: bounds.below,
        above: bounds.above,
        oldest_first: bounds.oldest_first,
        limit: usize::try_from(bounds.limit).unwrap_or(usize::MAX),
    }
}

impl Timeline {
    /// Ids of the accounts `account` follows (streamed by the users service).
    pub(crate) async fn following_ids(&self, account: i64) -> Result<Vec<i64>> {
        let mut stream = self
            .users()
            .follower_ids(users::FollowerIdsRequest {
                account_id: account,
                only_active: false,
                following: true,
                reblogs_only: false,
                notify_only: false,
            })
            .await?
            .into_inner();
        let mut ids = Vec::new();
        while let Some(chunk) = stream.next().await {
            ids.extend(chunk?.ids);
        }
        Ok(ids)
    }

    /// Rebuilds the home feed of an account that comes back: the newest statuses of
    /// every followed account and hashtag, one bounded statement.
    #[tracing::instrument(skip(self))]
    pub async fn rebuild_feed(&self, account: i64) -> Result<()> {
        // Live first: whatever is fanned out from now on lands in it, and whatever was
        // posted before is in what we read next.
        self.feeds.revive(account).await?;
        let mut accounts = self.following_ids(account).await?;
        let celebs = self.feeds.celebrities_among(&accounts).await?;
        accounts.push(account);
        let rows = self
            .store
            .rebuild(
                account,
                &accounts,
                self.config.merge_per_account,
                self.config.feed_length as i64,
            )
            .await?;
        let entries: Vec<Entry> = rows
            .into_iter()
            .map(|(id, reblog_of)| Entry { id, reblog_of })
            .collect();
        self.feeds.fill(account, &entries, &celebs).await?;
        metrics::counter!("home_feed_rebuilds_total").increment(1);
        Ok(())
    }

    /// The home timeline: one Redis round trip for ids, celebrity list and filters (a
    /// second for celebrities' statuses when the viewer follows any), then one page.
    pub async fn home(&self, req: pb::HomeTimelineRequest) -> Result<pb::StatusPage> {
        let account = req.viewer_id;
        if account <= 0 {
            return Err(Error::InvalidArgument("viewer_id is required".into()));
        }
        let bounds = Bounds::timeline(req.page.as_ref());
        let range = range(&bounds);
        let mut read = match self.feeds.read(account, &range).await {
            Ok(read) => read,
            Err(Error::Kit(e)) if e.is_unavailable() => {
                tracing::debug!(error = %e, "home feed unreadable, reading Postgres");
                return self.home_from_store(account, &bounds, &range).await;
            }
            Err(e) => return Err(e),
        };
        if !read.live {
            self.rebuild_feed(account).await?;
            read = self.feeds.read(account, &range).await?;
        }
        let mut ids = read.ids;
        if !read.celebs.is_empty() {
            ids.extend(self.feeds.read_authors(&read.celebs, &range).await?);
            ids = Feeds::cut(&range, ids);
        }
        let viewer = self
            .complete_viewer(account, read.blocks, read.mutes)
            .await?;
        let filter = Filter {
            mutes: true,
            trusted: true,
            followed_replies_only: true,
        };
        let mut page = self.page(&viewer, &ids, filter).await?;
        cursors(&mut page, &ids, bounds.limit);
        Ok(page)
    }

    /// The home timeline without Redis (down or slow): the same statement a feed rebuild
    /// runs, cut to the page. Slower, never failing for Redis' sake; the feed itself is
    /// rebuilt on a later read once Redis answers again.
    async fn home_from_store(
        &self,
        account: i64,
        bounds: &Bounds,
        range: &Range,
    ) -> Result<pb::StatusPage> {
        let mut accounts = self.following_ids(account).await?;
        accounts.push(account);
        let rows = self
            .store
            .rebuild(
                account,
                &accounts,
                self.config.merge_per_account,
                self.config.feed_length as i64,
            )
            .await?;
        let ids = Feeds::cut(range, rows.into_iter().map(|(id, _)| id).collect());
        let viewer = self.complete_viewer(account, None, None).await?;
        let filter = Filter {
            mutes: true,
            trusted: true,
            followed_replies_only: true,
        };
        let mut page = self.page(&viewer, &ids, filter).await?;
        cursors(&mut page, &ids, bounds.limit);
        Ok(page)
    }

    pub async fn public(&self, req: pb::PublicTimelineRequest) -> Result<pb::StatusPage> {
        let bounds = Bounds::timeline(req.page.as_ref());
        // Every status is local: there is no federation.
        if req.remote {
            return Ok(pb::StatusPage::default());
        }
        let viewer = self.viewer(req.viewer_id).await?;
        let ids: Vec<i64> = self
            .store
            .public(req.only_media, &bounds)
            .await?
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        let mut page = self.page(&viewer, &ids, Filter::TIMELINE).await?;
        cursors(&mut page, &ids, bounds.limit);
        Ok(page)
    }

    pub async fn tag_timeline(&self, req: pb::TagTimelineRequest) -> Result<pb::StatusPage> {
        let bounds = Bounds::timeline(req.page.as_ref());
        let tag = normalize_tag(&req.tag).ok_or(Error::NotFound("tag"))?;
        let any = normalize_tags(&req.any)?;
        let all = normalize_tags(&req.all)?;
        let none = normalize_tags(&req.none)?;
        if req.remote {
            return Ok(pb::StatusPage::default());
        }
        let mut names = vec![tag];
        names.extend(any);
        let tag_ids: Vec<i64> = self
            .store
            .tags_by_names(&names)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        if tag_ids.is_empty() {
            return Ok(pb::StatusPage::default());
        }
        let viewer = self.viewer(req.viewer_id).await?;
        let filter = TagFilter {
            tag_ids: &tag_ids,
            all: &all,
            none: &none,
            only_media: req.only_media,
        };
        let ids: Vec<i64> = self
            .store
            .tag(&filter, &bounds)
            .await?
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        let mut page = self.page(&viewer, &ids, Filter::TIMELINE).await?;
        cursors(&mut page, &ids, bounds.limit);
        Ok(page)
    }

    pub async fn account_statuses(
        &self,
        req: pb::AccountStatusesRequest,
    ) -> Result<pb::StatusPage> {
        let bounds = Bounds::timeline(req.page.as_ref());
        let viewer = self.viewer(req.viewer_id).await?;
        if viewer.blocks.contains(&req.account_id) {
            return Ok(pb::StatusPage::default());
        }
        // The rows selected are the ones the viewer may see: no per-status check.
        let filter = Filter {
            mutes: false,
            trusted: true,
            followed_replies_only: false,
        };
        if req.pinned {
            // Pins are few (five at most) and not paged.
            if req
                .page
                .as_ref()
                .is_some_and(|p| p.max_id.is_some() || p.min_id.is_some() || p.since_id.is_some())
            {
                return Ok(pb::StatusPage::default());
            }
            let ids = self.store.pinned(req.account_id).await?;
            let visible = Filter {
                mutes: false,
                trusted: false,
                followed_replies_only: false,
            };
            return self.page(&viewer, &ids, visible).await;
        }
        let max_visibility = if viewer.signed_in() && viewer.id == req.account_id {
            4
        } else if self
            .following(viewer.id, &[req.account_id])
            .await?
            .contains(&req.account_id)
        {
            3
        } else {
            2
        };
        let tagged = match req.tagged.trim() {
            "" => None,
            t => Some(
                normalize_tag(t).ok_or(Error::InvalidArgument("tagged is not a hashtag".into()))?,
            ),
        };
        let account_filter = AccountFilter {
            max_visibility,
            exclude_reblogs: req.exclude_reblogs,
            exclude_replies: req.exclude_replies,
            only_media: req.only_media,
            tagged: tagged.as_deref(),
        };
        let ids: Vec<i64> = self
            .store
            .account(req.account_id, &account_filter, &bounds)
            .await?
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        let mut page = self.page(&viewer, &ids, filter).await?;
        cursors(&mut page, &ids, bounds.limit);
        Ok(page)
    }

    /// Tags with their last week of use.
    async fn tags_with_history(&self, rows: Vec<TagRow>) -> Result<Vec<pb::Tag>> {
        let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
        let mut history = self.trends.history(&names).await?;
        Ok(rows
            .into_iter()
            .map(|r| pb::Tag {
                history: history.remove(&r.name).unwrap_or_default(),
                id: r.id,
                name: r.name,
                following: r.following,
            })
            .collect())
    }

    /// A hashtag: unknown but valid names are answered as unused tags (Mastodon's
    /// `Tag.new`), with id 0; invalid names are NOT_FOUND.
    pub async fn get_tag(&self, req: pb::TagRequest) -> Result<pb::Tag> {
        let name = normalize_tag(&req.name).ok_or(Error::NotFound("tag"))?;
        let row = self
            .store
            .tag_by_name(&name, req.viewer_id)
            .await?
            .unwrap_or(TagRow {
                id: 0,
                name,
                following: false,
            });
        self.tags_with_history(vec![row])
            .await?
            .pop()
            .ok_or(Error::NotFound("tag"))
    }

    pub async fn follow_tag(&self, req: pb::TagRequest, follow: bool) -> Result<pb::Tag> {
        let name = normalize_tag(&req.name).ok_or_else(|| {
            Error::InvalidArgument("Validation failed: Name is not a valid hashtag".into())
        })?;
        if req.viewer_id <= 0 {
            return Err(Error::InvalidArgument("viewer_id is required".into()));
        }
        if follow {
            self.store.follow_tag(req.viewer_id, &name).await?;
        } else {
            self.store.unfollow_tag(req.viewer_id, &name).await?;
        }
        self.get_tag(pb::TagRequest {
            viewer_id: req.viewer_id,
            name,
        })
        .await
    }

    pub async fn followed_tags(&self, req: pb::FollowedTagsRequest) -> Result<pb::TagPage> {
        let bounds = Bounds::new(req.page.as_ref(), 100, 200);
        let rows = self
            .store
            .list(List::FollowedTags, req.viewer_id, &bounds)
            .await?;
        let ids: Vec<i64> = rows.iter().map(|(_, tag)| *tag).collect();
        let scanned: Vec<i64> = rows.iter().map(|(cursor, _)| *cursor).collect();
        let mut by_id: HashMap<i64, TagRow> = self
            .store
            .tags_by_ids(&ids, req.viewer_id)
            .await?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        let ordered: Vec<TagRow> = ids.iter().filter_map(|id| by_id.remove(id)).collect();
        let mut page = pb::StatusPage::default();
        cursors(&mut page, &scanned, bounds.limit);
        Ok(pb::TagPage {
            tags: self.tags_with_history(ordered).await?,
            next_max_id: page.next_max_id,
            prev_min_id: page.prev_min_id,
        })
    }

    pub async fn trending_tags(&self, req: pb::TrendsRequest) -> Result<pb::TagPage> {
        let limit = req.limit.clamp(1, 20) as usize;
        let names = self
            .trends
            .top_tags(limit, req.offset.min(1000) as usize)
            .await?;
        let ids: HashMap<String, i64> = self
            .store
            .tags_by_names(&names)
            .await?
            .into_iter()
            .map(|(id, name)| (name, id))
            .collect();
        let id_list: Vec<i64> = names.iter().filter_map(|n| ids.get(n).copied()).collect();
        let mut by_id: HashMap<i64, TagRow> = self
            .store
            .tags_by_ids(&id_list, req.viewer_id)
            .await?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        let ordered: Vec<TagRow> = id_list.iter().filter_map(|id| by_id.remove(id)).collect();
        Ok(pb::TagPage {
            tags: self.tags_with_history(ordered).await?,
            ..Default::default()
        })
    }

    pub async fn trending_statuses(&self, req: pb::TrendsRequest) -> Result<pb::StatusPage> {
        let limit = req.limit.clamp(1, 40) as usize;
        let ids = self
            .trends
            .top_statuses(limit, req.offset.min(1000) as usize)
            .await?;
        let viewer = self.viewer(req.viewer_id).await?;
        self.page(&viewer, &ids, Filter::TIMELINE).await
    }

    pub async fn search(&self, req: pb::SearchRequest) -> Result<pb::SearchResponse> {
        let q = req.q.trim();
        let limit = i64::from(req.limit.clamp(1, 40));
        let offset = i64::from(req.offset.min(10_000));
        let mut out = pb::SearchResponse::default();
        if q.is_empty() {
            return Ok(out);
        }
        if req.hashtags
            && let Some(prefix) = normalize_tag(q)
        {
            let rows = self.store.search_tags(&prefix, limit, offset).await?;
            out.hashtags = self.tags_with_history(rows).await?;
        }
        if req.statuses && req.viewer_id > 0 {
            let viewer: Viewer = self.viewer(req.viewer_id).await?;
            let ids = self
                .store
                .search_statuses(
                    q,
                    viewer.id,
                    req.account_id,
                    req.max_id.unwrap_or(i64::MAX),
                    req.min_id.unwrap_or(0),
                    limit,
                    offset,
                )
                .await?;
            out.statuses = Some(self.page(&viewer, &ids, Filter::TIMELINE).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_normalize() {
        assert_eq!(normalize_tag("#Rust").as_deref(), Some("rust"));
        assert_eq!(normalize_tag("Café_2").as_deref(), Some("café_2"));
        assert_eq!(normalize_tag("123"), None);
        assert_eq!(normalize_tag("a-b"), None);
        assert_eq!(normalize_tag(""), None);
        assert!(normalize_tags(&vec!["a".to_owned(); 5]).is_err());
    }
}
