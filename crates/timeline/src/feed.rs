//! Home feeds in Redis: one sorted set of status ids per account (score = id), kept only
//! for accounts that read their home timeline recently.
//!
//! Keys of one account share a hash tag (`tl:{id}:...`), so they live on one cluster
//! slot and a read is one pipelined round trip:
//! - `live`: exists while the feed is maintained (expires `feed_ttl` after the last read);
//!   fan-out writes only to live feeds, and a read of a dead one rebuilds it.
//! - `feed`: the status ids (reblogs are their own statuses), trimmed to `feed_length`.
//! - `reblogs`: originals reblogged into the feed recently (member = original id, score
//!   = reblog id), so a status is not repeated when several followed accounts reblog it.
//! - `celebs`: followed accounts with too many followers to fan out; their recent
//!   statuses (`tl:author:{id}`) are merged at read time.
//! - `blocks`, `mutes`: the accounts the viewer must not see, cached from the users
//!   service and dropped whenever a block or mute of the viewer changes. A sentinel `0`
//!   member marks a loaded (possibly otherwise empty) set.
//!
//! Scores are doubles, exact only to about 16 ids at today's id sizes, so reads use
//! inclusive score bounds with slack and cut on the exact member ids.

use std::{collections::HashSet, time::Duration};

use redis::Script;
use rookery_kit::{
    Error as KitError,
    redis::{Pipeline, Redis},
    streaming,
};

use crate::Result;

/// Extra entries read around a score bound, for ids that share a double with it.
const SCORE_SLACK: usize = 32;

/// Adds a status to a live feed (KEYS: live, feed, reblogs; ARGV: id, original or "",
/// feed length, streaming channel or "", streaming message). A reblog whose original is
/// in the feed, or was reblogged into it recently, is skipped. Returns 1 when added.
///
/// What is added is also announced on the owner's streaming channel, in the same call
/// so a reader never sees an update its feed does not have; a feed that is not kept
/// (its owner has not read it for days but may be connected) is announced to as well.
const PUSH: &str = r"
local function announce()
  if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  announce()
  return 0
end
local max = tonumber(ARGV[3])
if ARGV[2] ~= '' then
  if redis.call('ZSCORE', KEYS[2], ARGV[2]) or redis.call('ZSCORE', KEYS[3], ARGV[2]) then
    return 0
  end
  redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(max + 1))
end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(max + 1))
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
announce()
return 1
";

/// One entry to push: a status and, for a reblog, its original.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub reblog_of: Option<i64>,
}

/// A range of a feed, as Mastodon's paging parameters give it.
#[derive(Clone, Copy, Debug)]
pub struct Range {
    pub below: i64,
    pub above: i64,
    pub oldest_first: bool,
    pub limit: usize,
}

/// What one read of a home feed returned.
#[derive(Debug, Default)]
pub struct Read {
    /// False when the feed is not maintained and must be rebuilt.
    pub live: bool,
    /// Ids in the range, newest first (at most `limit`).
    pub ids: Vec<i64>,
    /// Followed accounts merged at read time.
    pub celebs: Vec<i64>,
    /// None when the viewer's filters are not cached.
    pub blocks: Option<HashSet<i64>>,
    pub mutes: Option<HashSet<i64>>,
}

/// Home feeds and the per-viewer sets beside them.
#[derive(Clone)]
pub struct Feeds {
    redis: Redis,
    script: std::sync::Arc<Script>,
    length: usize,
    ttl: Duration,
}

impl Feeds {
    pub fn new(redis: Redis, length: usize, ttl: Duration) -> Self {
        Self {
            redis,
            script: std::sync::Arc::new(Script::new(PUSH)),
            length,
            ttl,
        }
    }

    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    fn key(&self, account: i64, part: &str) -> String {
        self.redis.key(&format!("tl:{{{account}}}:{part}"))
    }

    fn author_key(&self, account: i64) -> String {
        self.redis.key(&format!("tl:author:{account}"))
    }

    fn celebrities_key(&self) -> String {
        self.redis.key("tl:celebrities")
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    /// Adds a ZRANGE over `range` (with slack) to `pipe`.
    fn range_cmd(pipe: &mut Pipeline, key: &str, range: &Range) {
        let (start, stop, rev) = if range.oldest_first {
            (range.above, range.below, false)
        } else {
            (range.below, range.above, true)
        };
        let cmd = pipe
            .cmd("ZRANGE")
            .arg(key)
            .arg(start)
            .arg(stop)
            .arg("BYSCORE");
        if rev {
            cmd.arg("REV");
        }
        cmd.arg("LIMIT").arg(0).arg(range.limit + SCORE_SLACK);
    }

    /// The ids of a range read with slack, cut exactly and ordered newest first.
    pub fn cut(range: &Range, mut ids: Vec<i64>) -> Vec<i64> {
        ids.retain(|id| *id < range.below && *id > range.above);
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.dedup();
        if range.oldest_first {
            let skip = ids.len().saturating_sub(range.limit);
            ids.drain(..skip);
        } else {
            ids.truncate(range.limit);
        }
        ids
    }

    /// Reads a page of `account`'s feed with its celebrity list and cached filters, and
    /// keeps the feed alive: one round trip.
    pub async fn read(&self, account: i64, range: &Range) -> Result<Read> {
        let live = self.key(account, "live");
        let mut pipe = rookery_kit::redis::pipe();
        Self::range_cmd(&mut pipe, &self.key(account, "feed"), range);
        pipe.cmd("SMEMBERS").arg(self.key(account, "celebs"));
        pipe.cmd("SMEMBERS").arg(self.key(account, "blocks"));
        pipe.cmd("SMEMBERS").arg(self.key(account, "mutes"));
        // Reading is what keeps a feed maintained.
        pipe.cmd("PEXPIRE").arg(&live).arg(self.ttl_ms());
        for part in ["feed", "reblogs", "celebs"] {
            pipe.cmd("PEXPIRE")
                .arg(self.key(account, part))
                .arg(self.ttl_ms())
                .ignore();
        }
        let (ids, celebs, blocks, mutes, live): (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>, i64) =
            self.redis.pipe(&pipe).await?;
        Ok(Read {
            live: live == 1,
            ids: Self::cut(range, ids),
            celebs: celebs.into_iter().filter(|id| *id != 0).collect(),
            blocks: loaded(blocks),
            mutes: loaded(mutes),
        })
    }

    /// Recent statuses of celebrity `authors` in `range`, newest first: one round trip.
    pub async fn read_authors(&self, authors: &[i64], range: &Range) -> Result<Vec<i64>> {
        if authors.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = rookery_kit::redis::pipe();
        for author in authors {
            Self::range_cmd(&mut pipe, &self.author_key(*author), range);
        }
        let lists: Vec<Vec<i64>> = self.redis.pipe(&pipe).await?;
        Ok(lists.into_iter().flatten().collect())
    }

    /// The viewer's cached filters (None when not cached): one round trip.
    pub async fn filters(
        &self,
        account: i64,
    ) -> Result<(Option<HashSet<i64>>, Option<HashSet<i64>>)> {
        let mut pipe = rookery_kit::redis::pipe();
        pipe.cmd("SMEMBERS").arg(self.key(account, "blocks"));
        pipe.cmd("SMEMBERS").arg(self.key(account, "mutes"));
        let (blocks, mutes): (Vec<i64>, Vec<i64>) = self.redis.pipe(&pipe).await?;
        Ok((loaded(blocks), loaded(mutes)))
    }

    /// Caches the viewer's filters (for an hour at most: events drop them on change).
    pub async fn store_filters(&self, account: i64, blocks: &[i64], mutes: &[i64]) -> Result<()> {
        let mut pipe = rookery_kit::redis::pipe();
        for (part, ids) in [("blocks", blocks), ("mutes", mutes)] {
            let key = self.key(account, part);
            pipe.cmd("DEL").arg(&key).ignore();
            pipe.cmd("SADD").arg(&key).arg(0).arg(ids).ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(3_600_000).ignore();
        }
        Ok(self.redis.pipe::<()>(&pipe).await?)
    }

    /// Drops the cached filters of `accounts` (a block or mute changed).
    pub async fn forget_filters(&self, accounts: &[i64]) -> Result<()> {
        let mut cmd = redis::cmd("UNLINK");
        for account in accounts {
            cmd.arg(self.key(*account, "blocks"))
                .arg(self.key(*account, "mutes"));
        }
        Ok(self.redis.query::<()>(&cmd).await?)
    }

    /// Rebuilds a feed from `entries` (newest first) and the celebrities `celebs`; the
    /// feed is live before the caller reads Postgres (see [`Feeds::revive`]), so posts
    /// fanned out meanwhile land in it too.
    pub async fn fill(&self, account: i64, entries: &[Entry], celebs: &[i64]) -> Result<()> {
        let feed = self.key(account, "feed");
        let reblogs = self.key(account, "reblogs");
        let celeb_key = self.key(account, "celebs");
        let mut pipe = rookery_kit::redis::pipe();
        let (originals, kept) = dedup_reblogs(entries);
        if !kept.is_empty() {
            let cmd = pipe.cmd("ZADD").arg(&feed);
            for e in &kept {
                cmd.arg(e.id).arg(e.id);
            }
            cmd.ignore();
        }
        if !originals.is_empty() {
            let cmd = pipe.cmd("ZADD").arg(&reblogs);
            for (original, reblog) in &originals {
                cmd.arg(*reblog).arg(*original);
            }
            cmd.ignore();
        }
        pipe.cmd("DEL").arg(&celeb_key).ignore();
        pipe.cmd("SADD").arg(&celeb_key).arg(0).arg(celebs).ignore();
        for key in [&feed, &reblogs] {
            pipe.cmd("ZREMRANGEBYRANK")
                .arg(key)
                .arg(0)
                .arg(-(self.length as i64) - 1)
                .ignore();
        }
        for key in [&feed, &reblogs, &celeb_key] {
            pipe.cmd("PEXPIRE").arg(key).arg(self.ttl_ms()).ignore();
        }
        Ok(self.redis.pipe::<()>(&pipe).await?)
    }

    /// Marks a feed live (fan-out starts writing to it).
    pub async fn revive(&self, account: i64) -> Result<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(account, "live"))
            .arg(1)
            .arg("PX")
            .arg(self.ttl_ms());
        Ok(self.redis.query::<()>(&cmd).await?)
    }

    /// Pushes `entry` into the live feeds among `accounts`: one pipelined round trip.
    /// Returns how many feeds took it.
    pub async fn push(
        &self,
        accounts: &[i64],
        entry: Entry,
        announce: Option<&streaming::Message>,
    ) -> Result<usize> {
        let pairs: Vec<(i64, Entry)> = accounts.iter().map(|a| (*a, entry)).collect();
        self.push_announced(&pairs, announce).await
    }

    /// Pushes each `(account, entry)` into the account's feed if it is live: one
    /// pipelined round trip of script calls. Returns how many entries were added.
    pub async fn push_pairs(&self, pairs: &[(i64, Entry)]) -> Result<usize> {
        self.push_announced(pairs, None).await
    }

    /// [`Feeds::push_pairs`], announcing each added entry on its owner's streaming
    /// channel with `announce`.
    async fn push_announced(
        &self,
        pairs: &[(i64, Entry)],
        announce: Option<&streaming::Message>,
    ) -> Result<usize> {
        if pairs.is_empty() {
            return Ok(0);
        }
        let payload = announce.map(streaming::Message::encode).unwrap_or_default();
        let mut pipe = rookery_kit::redis::pipe();
        for (account, entry) in pairs {
            let original = entry.reblog_of.map(|o| o.to_string()).unwrap_or_default();
            let channel = match announce {
                Some(_) => streaming::user_channel(&self.redis, *account),
                None => String::new(),
            };
            pipe.cmd("EVALSHA")
                .arg(self.script.get_hash())
                .arg(3)
                .arg(self.key(*account, "live"))
                .arg(self.key(*account, "feed"))
                .arg(self.key(*account, "reblogs"))
                .arg(entry.id)
                .arg(original)
                .arg(self.length)
                .arg(channel)
                .arg(&payload);
        }
        let added: Vec<i64> = match self.redis.pipe(&pipe).await {
            Err(KitError::Redis(e)) if e.code() == Some("NOSCRIPT") => {
                // Redis restarted (or never saw the script): load it and redo.
                let mut load = redis::cmd("SCRIPT");
                load.arg("LOAD").arg(PUSH);
                self.redis.query::<String>(&load).await?;
                self.redis.pipe(&pipe).await?
            }
            other => other?,
        };
        Ok(added.into_iter().filter(|a| *a == 1).count())
    }

    /// Removes statuses from the feeds of `accounts` (a delete, an unfollow). A removed
    /// reblog also leaves the feed's reblog list, so a later reblog of the same original
    /// is shown again.
    pub async fn remove(&self, accounts: &[i64], ids: &[i64]) -> Result<()> {
        if accounts.is_empty() || ids.is_empty() {
            return Ok(());
        }
        let mut pipe = rookery_kit::redis::pipe();
        for account in accounts {
            pipe.cmd("ZREM")
                .arg(self.key(*account, "feed"))
                .arg(ids)
                .ignore();
            let reblogs = self.key(*account, "reblogs");
            for id in ids {
                pipe.cmd("ZREMRANGEBYSCORE")
                    .arg(&reblogs)
                    .arg(*id)
                    .arg(*id)
                    .ignore();
            }
        }
        Ok(self.redis.pipe::<()>(&pipe).await?)
    }

    /// The lowest id a live feed holds (None when dead or empty).
    pub async fn oldest(&self, account: i64) -> Result<Option<i64>> {
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(self.key(account, "feed")).arg(0).arg(0);
        let ids: Vec<i64> = self.redis.query(&cmd).await?;
        Ok(ids.first().copied())
    }

    /// Whether `account`'s feed is maintained.
    pub async fn is_live(&self, account: i64) -> Result<bool> {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(self.key(account, "live"));
        Ok(self.redis.query::<i64>(&cmd).await? == 1)
    }

    /// Adds or removes a celebrity in the lists of `accounts`' feeds.
    pub async fn set_celeb(&self, accounts: &[i64], celeb: i64, on: bool) -> Result<()> {
        if accounts.is_empty() {
            return Ok(());
        }
        let mut pipe = rookery_kit::redis::pipe();
        for account in accounts {
            let key = self.key(*account, "celebs");
            if on {
                pipe.cmd("SADD").arg(&key).arg(celeb).ignore();
                // A feed that is not live gets its list again when it is rebuilt.
                pipe.cmd("PEXPIRE").arg(&key).arg(self.ttl_ms()).ignore();
            } else {
                pipe.cmd("SREM").arg(&key).arg(celeb).ignore();
            }
        }
        Ok(self.redis.pipe::<()>(&pipe).await?)
    }

    /// Which of `accounts` are celebrities (their statuses are merged at read time).
    pub async fn celebrities_among(&self, accounts: &[i64]) -> Result<Vec<i64>> {
        if accounts.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("SMISMEMBER");
        cmd.arg(self.celebrities_key()).arg(accounts);
        let flags: Vec<i64> = self.redis.query(&cmd).await?;
        Ok(accounts
            .iter()
            .zip(flags)
            .filter(|(_, f)| *f == 1)
            .map(|(a, _)| *a)
            .collect())
    }

    /// Records a celebrity's new status; returns true when the author was not known as
    /// a celebrity yet (the caller then tells the followers' feeds).
    pub async fn push_author(&self, author: i64, id: i64) -> Result<bool> {
        let key = self.author_key(author);
        let mut pipe = rookery_kit::redis::pipe();
        pipe.cmd("SADD").arg(self.celebrities_key()).arg(author);
        pipe.cmd("ZADD").arg(&key).arg(id).arg(id).ignore();
        pipe.cmd("ZREMRANGEBYRANK")
            .arg(&key)
            .arg(0)
            .arg(-(self.length as i64) - 1)
            .ignore();
        let (added,): (i64,) = self.redis.pipe(&pipe).await?;
        Ok(added == 1)
    }

    /// Forgets a deleted status of a celebrity.
    pub async fn remove_author(&self, author: i64, id: i64) -> Result<()> {
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(self.author_key(author)).arg(id);
        Ok(self.redis.query::<()>(&cmd).await?)
    }
}

/// A cached set with its sentinel: None when not loaded.
fn loaded(members: Vec<i64>) -> Option<HashSet<i64>> {
    if members.is_empty() {
        return None;
    }
    Some(members.into_iter().filter(|id| *id != 0).collect())
}

/// Of `entries` (newest first), the ones a feed keeps: a reblog is dropped when its
/// original, or an older reblog of it, is kept. Returns `(original, reblog)` pairs of
/// the kept reblogs and the kept entries.
pub fn dedup_reblogs(entries: &[Entry]) -> (Vec<(i64, i64)>, Vec<Entry>) {
    let originals: HashSet<i64> = entries
        .iter()
        .filter(|e| e.reblog_of.is_none())
        .map(|e| e.id)
        .collect();
    let mut seen = HashSet::new();
    let mut kept = Vec::with_capacity(entries.len());
    let mut pairs = Vec::new();
    // Oldest first, so the first reblog of an original wins, as in fan-out.
    for e in entries.iter().rev() {
        match e.reblog_of {
            None => kept.push(*e),
            Some(o) if !originals.contains(&o) && seen.insert(o) => {
                pairs.push((o, e.id));
                kept.push(*e);
            }
            Some(_) => {}
        }
    }
    kept.reverse();
    (pairs, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cut_exactly() {
        let newest = Range {
            below: 100,
            above: 10,
            oldest_first: false,
            limit: 2,
        };
        assert_eq!(Feeds::cut(&newest, vec![100, 99, 98, 97]), vec![99, 98]);
        let oldest = Range {
            oldest_first: true,
            ..newest
        };
        assert_eq!(Feeds::cut(&oldest, vec![10, 11, 12, 13]), vec![12, 11]);
    }

    #[test]
    fn reblogs_are_not_repeated() {
        let e = |id, reblog_of| Entry { id, reblog_of };
        let entries = [
            e(9, Some(1)),
            e(8, Some(2)),
            e(7, Some(2)),
            e(6, None),
            e(5, Some(6)),
        ];
        let (pairs, kept) = dedup_reblogs(&entries);
        assert_eq!(kept, vec![e(9, Some(1)), e(7, Some(2)), e(6, None)]);
        assert_eq!(pairs, vec![(2, 7), (1, 9)]);
    }
}
