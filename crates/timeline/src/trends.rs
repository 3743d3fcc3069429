//! Trending hashtags and statuses, kept in Redis with time-decayed scores.
//!
//! Scores use forward decay: an event at time `t` adds `2^((t - base) / half_life)` to
//! its item, so ranking by the sum ranks by the decayed score at any later time without
//! ever rewriting old scores. `base` is the start of the current week: each week has its
//! own sorted set (so weights stay small), and a read combines this week's with last
//! week's scaled into this week's terms. Daily use counts (uses, distinct accounts by
//! HyperLogLog) give a hashtag's `history`.

use std::{collections::HashMap, time::Duration};

use rookery_kit::redis::Pipeline;
use rookery_kit::redis::Redis;
use rookery_proto::timeline::v1 as pb;

use crate::Result;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
const WEEK_MS: i64 = 7 * DAY_MS;
/// Days of history shown for a hashtag.
const HISTORY_DAYS: i64 = 7;
/// Entries kept per weekly set.
const KEEP: i64 = 1000;

/// Members of a sorted set with their scores.
type Scored = Vec<(String, f64)>;

/// Trend scores and hashtag usage.
#[derive(Clone)]
pub struct Trends {
    redis: Redis,
    half_life_ms: f64,
}

/// What a trend set ranks.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Tags,
    Statuses,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tags => "tags",
            Kind::Statuses => "statuses",
        }
    }
}

impl Trends {
    pub fn new(redis: Redis, half_life: Duration) -> Self {
        Self {
            redis,
            half_life_ms: (half_life.as_millis() as f64).max(1.0),
        }
    }

    fn key(&self, kind: Kind, week: i64) -> String {
        self.redis.key(&format!("tl:trends:{}:{week}", kind.name()))
    }

    fn day_key(&self, tag: &str, day: i64, part: &str) -> String {
        self.redis.key(&format!("tl:tag:{tag}:{day}:{part}"))
    }

    /// The weight of an event at `at_ms` in its week's set.
    fn weight(&self, at_ms: i64) -> (i64, f64) {
        let week = at_ms.div_euclid(WEEK_MS);
        let into = (at_ms - week * WEEK_MS) as f64;
        (week, (into / self.half_life_ms).exp2())
    }

    fn bump(&self, pipe: &mut Pipeline, kind: Kind, member: &str, at_ms: i64) {
        let (week, weight) = self.weight(at_ms);
        let key = self.key(kind, week);
        pipe.cmd("ZINCRBY")
            .arg(&key)
            .arg(weight)
            .arg(member)
            .ignore();
        // Keep the best; what falls out could not trend anyway.
        pipe.cmd("ZREMRANGEBYRANK")
            .arg(&key)
            .arg(0)
            .arg(-KEEP - 1)
            .ignore();
        pipe.cmd("PEXPIRE").arg(&key).arg(3 * WEEK_MS).ignore();
    }

    /// Records the use of `tags` by `account` at `at_ms`.
    pub async fn record_tags(&self, tags: &[String], account: i64, at_ms: i64) -> Result<()> {
        if tags.is_empty() {
            return Ok(());
        }
        let day = at_ms.div_euclid(DAY_MS);
        let mut pipe = rookery_kit::redis::pipe();
        for tag in tags {
            let uses = self.day_key(tag, day, "uses");
            let accounts = self.day_key(tag, day, "accounts");
            pipe.cmd("INCR").arg(&uses).ignore();
            pipe.cmd("PFADD").arg(&accounts).arg(account).ignore();
            for key in [&uses, &accounts] {
                pipe.cmd("PEXPIRE")
                    .arg(key)
                    .arg((HISTORY_DAYS + 1) * DAY_MS)
                    .ignore();
            }
            self.bump(&mut pipe, Kind::Tags, tag, at_ms);
        }
        Ok(self.redis.pipe::<()>(&pipe).await?)
    }

    /// Records a favourite or reblog of public status `id` at `at_ms`.
    pub async fn record_status(&self, id: i64, at_ms: i64) -> Result<()> {
        let mut pipe = rookery_kit::redis::pipe();
        self.bump(&mut pipe, Kind::Statuses, &id.to_string(), at_ms);
        Ok(self.redis.pipe::<()>(&pipe).await?)
    }

    /// Forgets a deleted status.
    pub async fn remove_status(&self, id: i64, now_ms: i64) -> Result<()> {
        let week = now_ms.div_euclid(WEEK_MS);
        let mut pipe = rookery_kit::redis::pipe();
        for w in [week, week - 1] {
            pipe.cmd("ZREM")
                .arg(self.key(Kind::Statuses, w))
                .arg(id)
                .ignore();
        }
        Ok(self.redis.pipe::<()>(&pipe).await?)
    }

    async fn top(&self, kind: Kind, limit: usize, offset: usize) -> Result<Vec<String>> {
        let now = chrono::Utc::now().timestamp_millis();
        let week = now.div_euclid(WEEK_MS);
        let take = (offset + limit) as i64;
        let mut pipe = rookery_kit::redis::pipe();
        for w in [week, week - 1] {
            pipe.cmd("ZRANGE")
                .arg(self.key(kind, w))
                .arg(0)
                .arg(take - 1)
                .arg("REV")
                .arg("WITHSCORES");
        }
        let (this, last): (Scored, Scored) = self.redis.pipe(&pipe).await?;
        // Last week's weights in this week's terms.
        let scale = (-(WEEK_MS as f64) / self.half_life_ms).exp2();
        let mut scores: HashMap<String, f64> = HashMap::with_capacity(this.len() + last.len());
        for (member, score) in this {
            *scores.entry(member).or_default() += score;
        }
        for (member, score) in last {
            *scores.entry(member).or_default() += score * scale;
        }
        let mut ranked: Vec<(String, f64)> = scores.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(ranked
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(member, _)| member)
            .collect())
    }

    /// Hashtag names, most trending first.
    pub async fn top_tags(&self, limit: usize, offset: usize) -> Result<Vec<String>> {
        self.top(Kind::Tags, limit, offset).await
    }

    /// Status ids, most trending first.
    pub async fn top_statuses(&self, limit: usize, offset: usize) -> Result<Vec<i64>> {
        Ok(self
            .top(Kind::Statuses, limit, offset)
            .await?
            .into_iter()
            .filter_map(|m| m.parse().ok())
            .collect())
    }

    /// The last week of use of each of `tags`, today first: one round trip.
    pub async fn history(&self, tags: &[String]) -> Result<HashMap<String, Vec<pb::TagDay>>> {
        if tags.is_empty() {
            return Ok(HashMap::new());
        }
        let today = chrono::Utc::now().timestamp_millis().div_euclid(DAY_MS);
        let mut pipe = rookery_kit::redis::pipe();
        for tag in tags {
            for day in (today - HISTORY_DAYS + 1..=today).rev() {
                pipe.cmd("GET").arg(self.day_key(tag, day, "uses"));
                pipe.cmd("PFCOUNT").arg(self.day_key(tag, day, "accounts"));
            }
        }
        let values: Vec<Option<i64>> = self.redis.pipe(&pipe).await?;
        let mut out = HashMap::with_capacity(tags.len());
        let mut values = values.into_iter();
        for tag in tags {
            let mut days = Vec::with_capacity(HISTORY_DAYS as usize);
            for day in (today - HISTORY_DAYS + 1..=today).rev() {
                let uses = values.next().flatten().unwrap_or(0);
                let accounts = values.next().flatten().unwrap_or(0);
                days.push(pb::TagDay {
                    day: day * DAY_MS / 1000,
                    uses,
                    accounts,
                });
            }
            out.insert(tag.clone(), days);
        }
        Ok(out)
    }
}
