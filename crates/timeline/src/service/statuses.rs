//! Statuses and what accounts do to them: post, edit, delete, read one and its thread,
//! favourite, reblog, bookmark, pin.

use std::collections::HashMap;

use prost::Message;
use rookery_proto::{timeline::v1 as pb, users::v1 as users};
use sqlx::PgConnection;

use super::{Filter, Timeline, Viewer, cursors};
use crate::{
    Error, Result,
    domain::{Bounds, StatusId, Visibility},
    store::{List, NewStatus, StatusChange, Store, Toggle},
    text,
};

/// Most media attachments per status (Mastodon's).
const MAX_MEDIA: usize = 4;
/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 256;
/// Most descendants shown in a thread.
const MAX_DESCENDANTS: i64 = 4096;
/// Most ids one GetStatuses call may ask for.
const MAX_GET: usize = 200;

pub(crate) const TOPIC_CREATED: &str = "status.created";
pub(crate) const TOPIC_UPDATED: &str = "status.updated";
pub(crate) const TOPIC_DELETED: &str = "status.deleted";
pub(crate) const TOPIC_FAVOURITE: &str = "favourite.created";
pub(crate) const TOPIC_UNFAVOURITE: &str = "favourite.deleted";
pub(crate) const TOPIC_REBLOG: &str = "reblog.created";
pub(crate) const TOPIC_MENTION: &str = "mention.created";

/// A status text, validated and rendered.
struct Rendered {
    content: String,
    mention_ids: Vec<i64>,
    tags: Vec<String>,
}

/// `language` must look like an ISO 639 code (`en`, `pt-BR`); empty is "unknown".
fn check_language(language: &str) -> Result<()> {
    let mut parts = language.splitn(2, '-');
    let base = parts.next().unwrap_or_default();
    let region_ok = parts
        .next()
        .is_none_or(|r| (2..=4).contains(&r.len()) && r.chars().all(|c| c.is_ascii_alphanumeric()));
    if language.is_empty()
        || ((2..=3).contains(&base.len())
            && base.chars().all(|c| c.is_ascii_lowercase())
            && region_ok)
    {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "Validation failed: {language:?} is not a valid language code"
        )))
    }
}

fn check_text(text: &str, spoiler: &str, media: usize) -> Result<()> {
    if text::length(text) + text::length(spoiler) > text::MAX_CHARS {
        return Err(Error::InvalidArgument(format!(
            "Validation failed: Text character limit of {} exceeded",
            text::MAX_CHARS
        )));
    }
    if text.trim().is_empty() && media == 0 {
        return Err(Error::InvalidArgument(
            "Validation failed: Text can't be blank".into(),
        ));
    }
    if media > MAX_MEDIA {
        return Err(Error::InvalidArgument(format!(
            "Validation failed: at most {MAX_MEDIA} media attachments"
        )));
    }
    Ok(())
}

fn status_event(s: &pb::Status, bodies: &HashMap<i64, pb::Status>) -> pb::StatusEvent {
    let account_of = |id: Option<i64>| id.and_then(|id| bodies.get(&id)).map(|s| s.account_id);
    pb::StatusEvent {
        status_id: s.id,
        account_id: s.account_id,
        visibility: s.visibility,
        in_reply_to_id: s.in_reply_to_id,
        in_reply_to_account_id: s.in_reply_to_account_id,
        reblog_of_id: s.reblog_of_id,
        reblog_of_account_id: account_of(s.reblog_of_id),
        quote_of_id: s.quote_of_id,
        quote_of_account_id: account_of(s.quote_of_id),
        mention_ids: s.mention_ids.clone(),
        tags: s.tags.clone(),
        created_at_ms: s.created_at_ms,
        media_ids: s.media_ids.clone(),
    }
}

impl Timeline {
    /// Renders `text` for `author`: mentions resolved in one users call.
    async fn render_text(&self, text: &str) -> Result<Rendered> {
        let parsed = text::parse(text, &self.config.domain);
        let accounts = if parsed.mentions.is_empty() {
            Vec::new()
        } else {
            self.users()
                .lookup_accounts(users::LookupAccountsRequest {
                    usernames: parsed.mentions.clone(),
                })
                .await?
                .into_inner()
                .accounts
        };
        let urls: Vec<String> = accounts
            .iter()
            .map(|a| format!("{}/@{}", self.config.base_url, a.username))
            .collect();
        let targets: HashMap<String, text::MentionTarget<'_>> = accounts
            .iter()
            .zip(&urls)
            .map(|(a, url)| {
                (
                    a.username.to_lowercase(),
                    text::MentionTarget {
                        username: &a.username,
                        url,
                    },
                )
            })
            .collect();
        let content = text::render(text, &self.config.domain, &self.config.base_url, &targets);
        // In order of appearance, as the text has them.
        let by_name: HashMap<String, i64> = accounts
            .iter()
            .map(|a| (a.username.to_lowercase(), a.id))
            .collect();
        let mention_ids = parsed
            .mentions
            .iter()
            .filter_map(|m| by_name.get(m).copied())
            .collect();
        Ok(Rendered {
            content,
            mention_ids,
            tags: parsed.tags,
        })
    }

    /// One status as `viewer` may see it (NOT_FOUND otherwise), with its bodies.
    async fn visible(
        &self,
        viewer: &Viewer,
        id: i64,
    ) -> Result<(pb::StatusPage, HashMap<i64, pb::Status>)> {
        let bodies = self.bodies(&[id]).await?;
        let page = self
            .render(viewer, &[id], bodies.clone(), Filter::DIRECT)
            .await?;
        if page.ids.is_empty() {
            return Err(Error::NotFound("status"));
        }
        Ok((page, bodies))
    }

    async fn enqueue(
        &self,
        tx: &mut PgConnection,
        topic: &str,
        aggregate: i64,
        message: &impl Message,
    ) -> Result<()> {
        self.outbox
            .enqueue(tx, topic, Some(aggregate), &message.encode_to_vec())
            .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(account_id = req.account_id))]
    pub async fn create_status(&self, req: pb::CreateStatusRequest) -> Result<pb::StatusPage> {
        let author = req.account_id;
        if author <= 0 {
            return Err(Error::InvalidArgument("account_id is required".into()));
        }
        check_text(&req.text, &req.spoiler_text, req.media_ids.len())?;
        check_language(&req.language)?;
        if req.idempotency_key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(Error::InvalidArgument("Idempotency-Key is too long".into()));
        }
        let visibility = Visibility::from_proto(req.visibility, Visibility::Public)?;
        let viewer = self.viewer(author).await?;

        // What it answers and quotes must be visible to the author.
        let refs: Vec<i64> = [req.in_reply_to_id, req.quoted_status_id]
            .into_iter()
            .flatten()
            .collect();
        let mut bodies = self.bodies(&refs).await?;
        let shown = self
            .render(&viewer, &refs, bodies.clone(), Filter::DIRECT)
            .await?;
        let in_reply_to = match req.in_reply_to_id {
            None => None,
            Some(id) => {
                let parent = bodies
                    .get(&id)
                    .filter(|_| shown.ids.contains(&id))
                    .ok_or(Error::NotFound("status"))?;
                // A reply to a reblog answers the original.
                let parent = match parent.reblog_of_id.and_then(|o| bodies.get(&o)) {
                    Some(original) => original,
                    None => parent,
                };
                Some((parent.id, parent.account_id))
            }
        };
        let quote_of_id = match req.quoted_status_id {
            None => None,
            Some(id) => {
                let quoted = bodies
                    .get(&id)
                    .filter(|_| shown.ids.contains(&id))
                    .ok_or(Error::NotFound("status"))?;
                if quoted.reblog_of_id.is_some() {
                    return Err(Error::InvalidArgument(
                        "Validation failed: a reblog cannot be quoted".into(),
                    ));
                }
                if quoted.account_id != author && Visibility::of(quoted) > Visibility::Unlisted {
                    return Err(Error::InvalidArgument(
                        "Validation failed: this status cannot be quoted".into(),
                    ));
                }
                Some(id)
            }
        };

        let rendered = self.render_text(&req.text).await?;
        let mut tx = self.store.begin().await?;
        let key = req.idempotency_key.trim();
        if !key.is_empty() {
            Store::lock_idempotency_key(&mut tx, author, key).await?;
            if let Some(existing) = Store::idempotent_status(&mut tx, author, key).await? {
                tx.commit().await?;
                return self.page(&viewer, &[existing], Filter::DIRECT).await;
            }
        }
        let row = Store::insert_status(
            &mut tx,
            &NewStatus {
                account_id: author,
                text: &req.text,
                content: &rendered.content,
                spoiler_text: &req.spoiler_text,
                visibility: visibility.stored(),
                sensitive: req.sensitive || !req.spoiler_text.is_empty(),
                language: &req.language,
                in_reply_to,
                quote_of_id,
                media_ids: &req.media_ids,
                mention_ids: &rendered.mention_ids,
                tags: &rendered.tags,
                application: &req.application,
            },
        )
        .await?;
        let status = pb::Status::from(row);
        Store::tag_status(&mut tx, status.id, &rendered.tags).await?;
        if !key.is_empty() {
            Store::save_idempotency_key(&mut tx, author, key, status.id).await?;
        }
        self.enqueue(
            &mut tx,
            TOPIC_CREATED,
            status.id,
            &status_event(&status, &bodies),
        )
        .await?;
        for mentioned in &rendered.mention_ids {
            if *mentioned == author || viewer.blocks.contains(mentioned) {
                continue;
            }
            let event = pb::MentionEvent {
                status_id: status.id,
                account_id: author,
                mentioned_account_id: *mentioned,
                visibility: status.visibility,
            };
            self.enqueue(&mut tx, TOPIC_MENTION, status.id, &event)
                .await?;
        }
        tx.commit().await?;
        self.outbox.committed();
        metrics::counter!("statuses_created_total").increment(1);
        if let Some((parent, _)) = in_reply_to {
            self.forget(&[parent]).await;
            bodies.remove(&parent);
        }
        let id = status.id;
        bodies.insert(id, status);
        self.render(&viewer, &[id], bodies, Filter::DIRECT).await
    }

    #[tracing::instrument(skip_all, fields(account_id = req.account_id, status_id = req.status_id))]
    pub async fn edit_status(&self, req: pb::EditStatusRequest) -> Result<pb::StatusPage> {
        check_text(&req.text, &req.spoiler_text, req.media_ids.len())?;
        if let Some(language) = &req.language {
            check_language(language)?;
        }
        let rendered = self.render_text(&req.text).await?;
        let mut tx = self.store.begin().await?;
        let old = Store::lock_status(&mut tx, StatusId(req.status_id))
            .await?
            .ok_or(Error::NotFound("status"))?;
        let old_status = pb::Status::from(old.clone());
        if old_status.account_id != req.account_id {
            // Others' statuses, visible or not, are as good as absent.
            return Err(Error::NotFound("status"));
        }
        if old_status.reblog_of_id.is_some() {
            return Err(Error::InvalidArgument("a reblog cannot be edited".into()));
        }
        let language = req.language.as_deref().unwrap_or(&old_status.language);
        let row = Store::edit_status(
            &mut tx,
            &old,
            &StatusChange {
                text: &req.text,
                content: &rendered.content,
                spoiler_text: &req.spoiler_text,
                sensitive: req.sensitive || !req.spoiler_text.is_empty(),
                language,
                media_ids: &req.media_ids,
                mention_ids: &rendered.mention_ids,
                tags: &rendered.tags,
            },
        )
        .await?;
        let status = pb::Status::from(row);
        Store::untag_status(&mut tx, status.id).await?;
        Store::tag_status(&mut tx, status.id, &rendered.tags).await?;
        self.enqueue(
            &mut tx,
            TOPIC_UPDATED,
            status.id,
            &status_event(&status, &HashMap::new()),
        )
        .await?;
        tx.commit().await?;
        self.outbox.committed();
        self.forget(&[status.id]).await;
        let viewer = self.viewer(req.account_id).await?;
        self.page(&viewer, &[status.id], Filter::DIRECT).await
    }

    /// Deletes a status of `req.viewer_id` and its reblogs; answers with the deleted
    /// status (source text included, for "delete and redraft").
    #[tracing::instrument(skip_all, fields(account_id = req.viewer_id, status_id = req.status_id))]
    pub async fn delete_status(&self, req: pb::StatusRequest) -> Result<pb::StatusPage> {
        let viewer = self.viewer(req.viewer_id).await?;
        let (page, bodies) = self.visible(&viewer, req.status_id).await?;
        let target = bodies
            .get(&req.status_id)
            .ok_or(Error::NotFound("status"))?;
        if target.account_id != viewer.id {
            // As in edit_status (and Mastodon): others' statuses are as good as absent.
            return Err(Error::NotFound("status"));
        }
        let mut tx = self.store.begin().await?;
        let deleted = Store::delete_status(&mut tx, StatusId(req.status_id)).await?;
        if deleted.is_empty() {
            return Err(Error::NotFound("status"));
        }
        let mut changed = Vec::with_capacity(deleted.len() + 2);
        for row in deleted {
            let s = pb::Status::from(row);
            self.enqueue(&mut tx, TOPIC_DELETED, s.id, &status_event(&s, &bodies))
                .await?;
            changed.push(s.id);
            changed.extend(s.in_reply_to_id);
            changed.extend(s.reblog_of_id);
        }
        tx.commit().await?;
        self.outbox.committed();
        self.forget(&changed).await;
        // Deleting one's reblog un-reblogs the original.
        self.forget_flags(viewer.id, &changed).await;
        Ok(page)
    }

    pub async fn get_statuses(&self, req: pb::GetStatusesRequest) -> Result<pb::StatusPage> {
        if req.ids.len() > MAX_GET {
            return Err(Error::InvalidArgument(format!(
                "at most {MAX_GET} ids per call"
            )));
        }
        let viewer = self.viewer(req.viewer_id).await?;
        self.page(&viewer, &req.ids, Filter::DIRECT).await
    }

    /// The thread around a status: two recursive statements, then one page for both
    /// halves.
    pub async fn context(&self, req: pb::StatusRequest) -> Result<pb::ContextResponse> {
        let viewer = self.viewer(req.viewer_id).await?;
        let id = StatusId(req.status_id);
        let (ancestors, descendants) = tokio::try_join!(
            self.store.ancestors(id),
            self.store.descendants(id, MAX_DESCENDANTS)
        )?;
        let mut all = Vec::with_capacity(ancestors.len() + descendants.len() + 1);
        all.push(req.status_id);
        all.extend(&ancestors);
        all.extend(&descendants);
        let mut page = self.page(&viewer, &all, Filter::TIMELINE).await?;
        // The status itself must be visible (muted authors' statuses still are).
        if page.ids.first() != Some(&req.status_id) {
            let (one, _) = self.visible(&viewer, req.status_id).await?;
            page.statuses.extend(one.statuses);
        }
        let shown: std::collections::HashSet<i64> = page.ids.iter().copied().collect();
        let ancestors: Vec<i64> = ancestors
            .into_iter()
            .filter(|a| shown.contains(a))
            .collect();
        let descendants: Vec<i64> = descendants
            .into_iter()
            .filter(|d| shown.contains(d))
            .collect();
        page.ids.retain(|i| *i != req.status_id);
        Ok(pb::ContextResponse {
            statuses: Some(page),
            ancestors,
            descendants,
        })
    }

    pub async fn history(&self, req: pb::StatusRequest) -> Result<pb::HistoryResponse> {
        let viewer = self.viewer(req.viewer_id).await?;
        let (_, bodies) = self.visible(&viewer, req.status_id).await?;
        let status = bodies
            .get(&req.status_id)
            .ok_or(Error::NotFound("status"))?;
        let edits = self.store.edits(StatusId(req.status_id)).await?;
        let versions = if edits.is_empty() {
            vec![pb::StatusEdit {
                content: status.content.clone(),
                spoiler_text: status.spoiler_text.clone(),
                sensitive: status.sensitive,
                created_at_ms: status.created_at_ms,
                media_ids: status.media_ids.clone(),
            }]
        } else {
            edits
                .into_iter()
                .map(|e| pb::StatusEdit {
                    content: e.content,
                    spoiler_text: e.spoiler_text,
                    sensitive: e.sensitive,
                    created_at_ms: e.created_at.timestamp_millis(),
                    media_ids: e.media_ids,
                })
                .collect()
        };
        Ok(pb::HistoryResponse {
            account_id: status.account_id,
            versions,
        })
    }

    #[tracing::instrument(skip_all, fields(account_id = req.account_id, status_id = req.status_id))]
    pub async fn interact(&self, req: pb::InteractRequest) -> Result<pb::StatusPage> {
        use pb::Interaction as I;
        let kind = pb::Interaction::try_from(req.interaction)
            .map_err(|_| Error::InvalidArgument("unknown interaction".into()))?;
        let viewer = self.viewer(req.account_id).await?;
        let (_, bodies) = self.visible(&viewer, req.status_id).await?;
        let asked = bodies
            .get(&req.status_id)
            .ok_or(Error::NotFound("status"))?;
        // Acting on a reblog acts on the original.
        let target = match asked.reblog_of_id.and_then(|o| bodies.get(&o)) {
            Some(original) => original.clone(),
            None => asked.clone(),
        };
        let mut tx = self.store.begin().await?;
        let mut answer = target.id;
        let mut changed = false;
        match kind {
            I::Unspecified => return Err(Error::InvalidArgument("unknown interaction".into())),
            I::Favourite => {
                if let Some(id) =
                    Store::toggle(&mut tx, Toggle::Favourite, viewer.id, target.id).await?
                {
                    let event = pb::InteractionEvent {
                        id,
                        account_id: viewer.id,
                        status_id: target.id,
                        status_account_id: target.account_id,
                        created_at_ms: rookery_kit::ids::millis_of(id),
                    };
                    self.enqueue(&mut tx, TOPIC_FAVOURITE, target.id, &event)
                        .await?;
                    changed = true;
                }
            }
            I::Unfavourite => {
                if let Some(id) =
                    Store::toggle(&mut tx, Toggle::Unfavourite, viewer.id, target.id).await?
                {
                    // The favourite's notification goes with it.
                    let event = pb::InteractionEvent {
                        id,
                        account_id: viewer.id,
                        status_id: target.id,
                        status_account_id: target.account_id,
                        created_at_ms: rookery_kit::ids::millis_of(id),
                    };
                    self.enqueue(&mut tx, TOPIC_UNFAVOURITE, target.id, &event)
                        .await?;
                    changed = true;
                }
            }
            I::Reblog => {
                let own = target.account_id == viewer.id;
                let vis = Visibility::of(&target);
                if vis == Visibility::Direct || (vis == Visibility::Private && !own) {
                    return Err(Error::InvalidArgument(
                        "Validation failed: this status cannot be reblogged".into(),
                    ));
                }
                let mut visibility = Visibility::from_proto(req.visibility, Visibility::Public)?;
                if visibility == Visibility::Direct {
                    return Err(Error::InvalidArgument("a reblog cannot be direct".into()));
                }
                // A reblog never reaches further than the original.
                visibility = visibility.max(vis);
                match Store::insert_reblog(&mut tx, viewer.id, target.id, visibility.stored())
                    .await?
                {
                    Some(row) => {
                        let reblog = pb::Status::from(row);
                        let mut with_original = HashMap::new();
                        with_original.insert(target.id, target.clone());
                        self.enqueue(
                            &mut tx,
                            TOPIC_CREATED,
                            reblog.id,
                            &status_event(&reblog, &with_original),
                        )
                        .await?;
                        let event = pb::InteractionEvent {
                            id: reblog.id,
                            account_id: viewer.id,
                            status_id: target.id,
                            status_account_id: target.account_id,
                            created_at_ms: reblog.created_at_ms,
                        };
                        self.enqueue(&mut tx, TOPIC_REBLOG, target.id, &event)
                            .await?;
                        answer = reblog.id;
                        changed = true;
                    }
                    None => {
                        if let Some(existing) =
                            Store::reblog_of(&mut *tx, viewer.id, target.id).await?
                        {
                            answer = pb::Status::from(existing).id;
                        }
                    }
                }
            }
            I::Unreblog => {
                if let Some(row) = Store::delete_reblog(&mut tx, viewer.id, target.id).await? {
                    let reblog = pb::Status::from(row);
                    self.enqueue(
                        &mut tx,
                        TOPIC_DELETED,
                        reblog.id,
                        &status_event(&reblog, &bodies),
                    )
                    .await?;
                    self.forget(&[reblog.id]).await;
                    changed = true;
                }
            }
            I::Bookmark | I::Unbookmark => {
                let toggle = if kind == I::Bookmark {
                    Toggle::Bookmark
                } else {
                    Toggle::Unbookmark
                };
                Store::toggle(&mut tx, toggle, viewer.id, target.id).await?;
            }
            I::Pin => {
                if target.account_id != viewer.id || asked.reblog_of_id.is_some() {
                    return Err(Error::InvalidArgument(
                        "Validation failed: only your own statuses can be pinned".into(),
                    ));
                }
                if Visibility::of(&target) == Visibility::Direct {
                    return Err(Error::InvalidArgument(
                        "Validation failed: direct statuses cannot be pinned".into(),
                    ));
                }
                if Store::toggle(&mut tx, Toggle::Pin, viewer.id, target.id)
                    .await?
                    .is_none()
                    && !Store::has_pin(&mut tx, viewer.id, target.id).await?
                {
                    return Err(Error::InvalidArgument(format!(
                        "Validation failed: you have already pinned the maximum of {} statuses",
                        crate::domain::MAX_PINS
                    )));
                }
            }
            I::Unpin => {
                Store::toggle(&mut tx, Toggle::Unpin, viewer.id, target.id).await?;
            }
        }
        tx.commit().await?;
        // The viewer's flags on it may have moved, whatever the outcome.
        self.forget_flags(viewer.id, &[target.id, answer]).await;
        if changed {
            self.outbox.committed();
            // Counters moved.
            self.forget(&[target.id]).await;
        }
        self.page(&viewer, &[answer], Filter::DIRECT).await
    }

    /// Who favourited or reblogged a status the viewer can see.
    pub async fn interactions(&self, req: pb::InteractionsRequest) -> Result<pb::IdPage> {
        let list = match pb::InteractionList::try_from(req.list) {
            Ok(pb::InteractionList::FavouritedBy) => List::FavouritedBy,
            Ok(pb::InteractionList::RebloggedBy) => List::RebloggedBy,
            _ => return Err(Error::InvalidArgument("unknown list".into())),
        };
        let viewer = self.viewer(req.viewer_id).await?;
        self.visible(&viewer, req.status_id).await?;
        let bounds = Bounds::new(req.page.as_ref(), 40, 80);
        let rows = self.store.list(list, req.status_id, &bounds).await?;
        let scanned: Vec<i64> = rows.iter().map(|(cursor, _)| *cursor).collect();
        let mut page = pb::StatusPage::default();
        cursors(&mut page, &scanned, bounds.limit);
        Ok(pb::IdPage {
            ids: rows
                .into_iter()
                .map(|(_, account)| account)
                .filter(|a| !viewer.blocks.contains(a))
                .collect(),
            next_max_id: page.next_max_id,
            prev_min_id: page.prev_min_id,
        })
    }

    /// The viewer's favourites or bookmarks, paged by when they were saved.
    pub async fn saved(&self, req: pb::SavedStatusesRequest) -> Result<pb::StatusPage> {
        let list = match pb::SavedList::try_from(req.list) {
            Ok(pb::SavedList::Favourites) => List::Favourites,
            Ok(pb::SavedList::Bookmarks) => List::Bookmarks,
            _ => return Err(Error::InvalidArgument("unknown list".into())),
        };
        let viewer = self.viewer(req.viewer_id).await?;
        let bounds = Bounds::timeline(req.page.as_ref());
        let rows = self.store.list(list, viewer.id, &bounds).await?;
        let ids: Vec<i64> = rows.iter().map(|(_, status)| *status).collect();
        let scanned: Vec<i64> = rows.iter().map(|(cursor, _)| *cursor).collect();
        let mut page = self.page(&viewer, &ids, Filter::DIRECT).await?;
        cursors(&mut page, &scanned, bounds.limit);
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_and_lengths_are_checked() {
        assert!(check_language("").is_ok());
        assert!(check_language("en").is_ok());
        assert!(check_language("pt-BR").is_ok());
        assert!(check_language("english").is_err());
        assert!(check_language("EN").is_err());
        assert!(check_text("hi", "", 0).is_ok());
        assert!(check_text("  ", "", 0).is_err());
        assert!(check_text("", "", 1).is_ok());
        assert!(check_text(&"a".repeat(501), "", 0).is_err());
        assert!(check_text(&"a".repeat(450), &"b".repeat(51), 0).is_err());
        assert!(check_text("hi", "", 5).is_err());
    }
}
