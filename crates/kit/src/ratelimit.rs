//! Fixed-window rate limits counted in Redis, shared by every replica (Mastodon's
//! `RateLimiter`: one counter per subject, family and window).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Result, redis::Redis};

/// A limit of `limit` actions per `window` for one family of actions (e.g. follows).
#[derive(Clone, Debug)]
pub struct RateLimit {
    redis: Redis,
    family: &'static str,
    limit: u64,
    window: Duration,
}

/// The outcome of recording one action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// False when the action is over the limit (and must not happen).
    pub allowed: bool,
    /// The limit per window.
    pub limit: u64,
    /// Actions left in this window.
    pub remaining: u64,
    /// When the window ends (Unix seconds).
    pub reset_at: u64,
    /// The window the action was counted in (for [`RateLimit::undo`]).
    window: u64,
    /// Actions counted in the window, this one included.
    count: u64,
}

impl RateLimit {
    /// `limit` actions of `family` per `window` (at least one second).
    pub fn new(redis: Redis, family: &'static str, limit: u64, window: Duration) -> Self {
        Self {
            redis,
            family,
            limit,
            window: window.max(Duration::from_secs(1)),
        }
    }

    fn key(&self, subject: &str, epoch: u64) -> String {
        self.redis
            .key(&format!("ratelimit:{}:{subject}:{epoch}", self.family))
    }

    /// Counts one action of `subject` and says whether it is allowed: one round trip
    /// (create the window's counter with its expiry if absent, then INCR; works on any
    /// Redis version, unlike `EXPIRE ... NX`).
    pub async fn hit(&self, subject: &str) -> Result<Decision> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let window = self.window.as_secs();
        let epoch = now / window;
        let key = self.key(subject, epoch);
        let mut pipe = crate::redis::pipe();
        pipe.cmd("SET")
            .arg(&key)
            .arg(0)
            .arg("EX")
            .arg(window)
            .arg("NX")
            .ignore()
            .cmd("INCR")
            .arg(&key);
        let (count,): (u64,) = self.redis.pipe(&pipe).await?;
        Ok(Decision {
            allowed: count <= self.limit,
            limit: self.limit,
            remaining: self.limit.saturating_sub(count),
            reset_at: (epoch + 1) * window,
            window: epoch,
            count,
        })
    }

    /// Takes back an action counted by `hit` that did not happen after all (it was
    /// refused, or turned out not to be a new one); `decision` then shows what is left.
    pub async fn undo(&self, subject: &str, decision: &mut Decision) -> Result<()> {
        let key = self.key(subject, decision.window);
        // If the window's key expired meanwhile, recreate it with its expiry rather than
        // leave a DECR-made key that never expires.
        let mut pipe = crate::redis::pipe();
        pipe.cmd("SET")
            .arg(&key)
            .arg(0)
            .arg("EX")
            .arg(self.window.as_secs())
            .arg("NX")
            .ignore()
            .cmd("DECR")
            .arg(&key)
            .ignore();
        self.redis.pipe::<()>(&pipe).await?;
        decision.count = decision.count.saturating_sub(1);
        decision.remaining = self.limit.saturating_sub(decision.count);
        Ok(())
    }
}
