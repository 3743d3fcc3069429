//! Unread counts from Redis: per recipient, the newest [`KEPT`] notifications as a
//! sorted set (member `id|type|from|group_key`, score = id) and the `notifications`
//! marker. A count is one round trip; Postgres is read only to load an account's set.
//!
//! Keys share the hash tag `{account}` (one cluster slot):
//! - `nt:{a}:recent`: written by every new notification, trimmed to [`KEPT`]; may hold
//!   only recent entries until loaded.
//! - `nt:{a}:marker`: the marker's `last_read_id` (`0`: none). Its presence means the
//!   set was loaded from Postgres and is complete down to [`KEPT`] entries.
//!
//! Deletions (dismiss, clear, undo) drop both keys; the next count reloads them.
//! Scores are doubles (exact to about 16 ids at today's sizes), so the range read starts
//! at the marker's score, inclusive, and the exact comparison is made on member ids.

use std::{collections::HashSet, time::Duration};

use redis::Script;
use rookery_kit::{Error as KitError, redis::Redis};

use crate::Result;

/// Notifications kept per recipient: Mastodon caps the count's `limit` at 1000.
pub const KEPT: usize = 1000;

/// KEYS: marker, recent. Returns nil when the set is not loaded, else the marker and
/// the members at or above its score.
const READ: &str = r"
local marker = redis.call('GET', KEYS[1])
if not marker then return false end
return {marker, redis.call('ZRANGE', KEYS[2], marker, '+inf', 'BYSCORE', 'LIMIT', 0, ARGV[1])}
";

/// One entry of the set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub kind: i16,
    pub from: i64,
    pub group_key: String,
}

impl Entry {
    fn member(&self) -> String {
        format!("{}|{}|{}|{}", self.id, self.kind, self.from, self.group_key)
    }

    fn parse(member: &str) -> Option<Self> {
        let mut parts = member.splitn(4, '|');
        Some(Self {
            id: parts.next()?.parse().ok()?,
            kind: parts.next()?.parse().ok()?,
            from: parts.next()?.parse().ok()?,
            group_key: parts.next()?.to_owned(),
        })
    }
}

/// What a count includes.
#[derive(Clone, Debug, Default)]
pub struct CountFilter {
    pub types: Option<Vec<i16>>,
    pub exclude_types: Vec<i16>,
    pub from: Option<i64>,
    /// Count groups: entries of these types count once per group key.
    pub grouped: Option<Vec<i16>>,
    pub limit: usize,
}

impl CountFilter {
    fn includes(&self, e: &Entry) -> bool {
        self.types.as_ref().is_none_or(|t| t.contains(&e.kind))
            && !self.exclude_types.contains(&e.kind)
            && self.from.is_none_or(|f| f == e.from)
    }
}

/// Counts the entries above `marker` that `filter` includes, capped at its limit.
pub fn count(entries: &[Entry], marker: i64, filter: &CountFilter) -> usize {
    let mut groups = HashSet::new();
    let mut n = 0;
    for e in entries
        .iter()
        .filter(|e| e.id > marker && filter.includes(e))
    {
        let counted = match &filter.grouped {
            Some(grouped) if grouped.contains(&e.kind) => groups.insert(e.group_key.as_str()),
            _ => true,
        };
        if counted {
            n += 1;
            if n >= filter.limit {
                break;
            }
        }
    }
    n
}

/// The Redis side of unread counts.
#[derive(Clone)]
pub struct Unread {
    redis: Redis,
    read: std::sync::Arc<Script>,
    ttl: Duration,
}

impl Unread {
    pub fn new(redis: Redis, ttl: Duration) -> Self {
        Self {
            redis,
            read: std::sync::Arc::new(Script::new(READ)),
            ttl,
        }
    }

    fn key(&self, account: i64, part: &str) -> String {
        self.redis.key(&format!("nt:{{{account}}}:{part}"))
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    /// The marker and the entries at or above it; None when the account is not loaded.
    pub async fn read(&self, account: i64) -> Result<Option<(i64, Vec<Entry>)>> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.read.get_hash())
            .arg(2)
            .arg(self.key(account, "marker"))
            .arg(self.key(account, "recent"))
            .arg(KEPT);
        let reply: Option<(i64, Vec<String>)> = match self.redis.query(&cmd).await {
            Err(KitError::Redis(e)) if e.code() == Some("NOSCRIPT") => {
                let mut load = redis::cmd("SCRIPT");
                load.arg("LOAD").arg(READ);
                self.redis.query::<String>(&load).await?;
                self.redis.query(&cmd).await?
            }
            other => other?,
        };
        Ok(reply.map(|(marker, members)| {
            (
                marker,
                members.iter().filter_map(|m| Entry::parse(m)).collect(),
            )
        }))
    }

    /// Loads an account's set and marker as read from Postgres (merged with whatever
    /// new notifications wrote meanwhile).
    pub async fn load(&self, account: i64, marker: i64, entries: &[Entry]) -> Result<()> {
        let recent = self.key(account, "recent");
        let mut pipe = rookery_kit::redis::pipe();
        if !entries.is_empty() {
            let members: Vec<(i64, String)> = entries.iter().map(|e| (e.id, e.member())).collect();
            // Score, member pairs.
            pipe.cmd("ZADD").arg(&recent).arg(&members).ignore();
        }
        pipe.cmd("ZREMRANGEBYRANK")
            .arg(&recent)
            .arg(0)
            .arg(-(KEPT as i64 + 1))
            .ignore()
            .cmd("PEXPIRE")
            .arg(&recent)
            .arg(self.ttl_ms())
            .ignore()
            .cmd("SET")
            .arg(self.key(account, "marker"))
            .arg(marker)
            .arg("PX")
            .arg(self.ttl_ms())
            .ignore();
        self.redis.pipe::<()>(&pipe).await?;
        Ok(())
    }

    /// Records new notifications (one round trip for any number of recipients).
    pub async fn add(&self, entries: &[(i64, Entry)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = rookery_kit::redis::pipe();
        for (account, e) in entries {
            let recent = self.key(*account, "recent");
            pipe.cmd("ZADD")
                .arg(&recent)
                .arg(e.id)
                .arg(e.member())
                .ignore()
                .cmd("ZREMRANGEBYRANK")
                .arg(&recent)
                .arg(0)
                .arg(-(KEPT as i64 + 1))
                .ignore()
                .cmd("PEXPIRE")
                .arg(&recent)
                .arg(self.ttl_ms())
                .ignore();
        }
        Ok(self.redis.pipe::<()>(&pipe).await?)
    }

    /// Moves the cached marker (only when loaded: otherwise the next count loads it).
    pub async fn set_marker(&self, account: i64, marker: i64) -> Result<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(account, "marker"))
            .arg(marker)
            .arg("XX")
            .arg("PX")
            .arg(self.ttl_ms());
        Ok(self.redis.query::<()>(&cmd).await?)
    }

    /// Drops the cached state of `accounts` (after deletions).
    pub async fn forget(&self, accounts: &[i64]) -> Result<()> {
        if accounts.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("UNLINK");
        for a in accounts {
            cmd.arg(self.key(*a, "marker")).arg(self.key(*a, "recent"));
        }
        Ok(self.redis.query::<()>(&cmd).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: i64, kind: i16, from: i64, key: &str) -> Entry {
        Entry {
            id,
            kind,
            from,
            group_key: key.to_owned(),
        }
    }

    #[test]
    fn members_round_trip_with_pipes_in_keys() {
        let entry = e(113_000_000_000_000_001, 6, 42, "favourite-7-470000");
        assert_eq!(Entry::parse(&entry.member()), Some(entry));
        assert_eq!(Entry::parse("x|1|2|k"), None);
        assert_eq!(Entry::parse("1|2"), None);
    }

    #[test]
    fn counts_only_above_the_marker_with_filters_groups_and_cap() {
        let entries = [
            e(10, 1, 5, "ungrouped-10"),
            e(11, 6, 5, "favourite-1-1"),
            e(12, 6, 6, "favourite-1-1"),
            e(13, 6, 7, "favourite-2-1"),
            e(14, 4, 8, "follow-1"),
        ];
        let all = CountFilter {
            limit: 100,
            ..CountFilter::default()
        };
        assert_eq!(count(&entries, 0, &all), 5);
        // The marker's own notification is read.
        assert_eq!(count(&entries, 10, &all), 4);
        assert_eq!(count(&entries, 14, &all), 0);
        let favourites = CountFilter {
            types: Some(vec![6]),
            ..all.clone()
        };
        assert_eq!(count(&entries, 0, &favourites), 3);
        let no_favourites = CountFilter {
            exclude_types: vec![6],
            ..all.clone()
        };
        assert_eq!(count(&entries, 0, &no_favourites), 2);
        let from_five = CountFilter {
            from: Some(5),
            ..all.clone()
        };
        assert_eq!(count(&entries, 0, &from_five), 2);
        let grouped = CountFilter {
            grouped: Some(vec![3, 4, 6]),
            ..all.clone()
        };
        assert_eq!(count(&entries, 0, &grouped), 4);
        let capped = CountFilter { limit: 2, ..all };
        assert_eq!(count(&entries, 0, &capped), 2);
    }
}
