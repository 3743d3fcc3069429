//! The seeded instance: what it contains (planned deterministically from a seed) and what
//! the workload needs to know about it afterwards (ids, tokens, popularity orders).

use std::collections::{HashMap, HashSet};

use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::graph::{self, Edge};
use crate::workload::{TAGS, compose};
use crate::zipf::Zipf;

/// The shape of the seeded instance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeedConfig {
    pub seed: u64,
    pub accounts: usize,
    /// Average accounts each account follows.
    pub mean_follows: usize,
    pub statuses: usize,
    pub favourites: usize,
    /// Images uploaded (and attached to statuses) through the API.
    pub media: usize,
    /// Favourites, replies and follows sent through the API after the bulk load, so that
    /// notifications come from real events.
    pub api_actions: usize,
    /// Statuses are spread over this many days before now.
    pub days: u32,
}

impl Default for SeedConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            accounts: 10_000,
            mean_follows: 20,
            statuses: 100_000,
            favourites: 200_000,
            media: 24,
            api_actions: 2_000,
            days: 7,
        }
    }
}

/// A seeded account the workload acts as.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Account {
    pub id: i64,
    pub username: String,
    /// Its access token (scopes `read write follow push`).
    pub token: String,
}

/// A seeded status and its author (an index into [`Dataset::accounts`]).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct StatusRef {
    pub id: i64,
    pub author: u32,
}

/// What the workload needs to know about a seeded instance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Dataset {
    pub config: SeedConfig,
    /// In creation order.
    pub accounts: Vec<Account>,
    /// Followed by every other account: the fan-out scenario's author.
    pub star: Account,
    /// Account indexes by activity: rank 0 reads and posts the most.
    pub by_activity: Vec<u32>,
    /// Account indexes by followers, most first: the most viewed profiles.
    pub by_followers: Vec<u32>,
    /// Statuses by popularity: rank 0 is favourited and replied to the most.
    pub statuses: Vec<StatusRef>,
    /// Paths of served media files (`/system/media/...`).
    pub media: Vec<String>,
}

/// A status to insert.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedStatus {
    /// Index of the author.
    pub author: u32,
    /// Index (in the plan) of the status replied to: always an earlier one.
    pub reply_to: Option<usize>,
    pub text: String,
    /// Milliseconds before the bulk load's "now".
    pub age_ms: i64,
}

/// Everything the bulk load inserts, as indexes; ids come from the database.
#[derive(Clone, Debug)]
pub struct Plan {
    pub follows: Vec<Edge>,
    pub by_activity: Vec<u32>,
    pub by_followers: Vec<u32>,
    pub statuses: Vec<PlannedStatus>,
    /// Status indexes by popularity.
    pub popular: Vec<usize>,
    /// (account index, status index), no duplicates.
    pub favourites: Vec<(u32, usize)>,
}

/// Username of account `i`.
pub fn username(i: usize) -> String {
    format!("u{i}")
}

/// Plans the instance of `config`: the same seed gives the same instance.
pub fn plan(config: &SeedConfig) -> Plan {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
    let n = config.accounts.max(1);
    let follows = graph::preferential_attachment(n, config.mean_follows, &mut rng);
    let followers = graph::in_degrees(n, &follows);
    let mut by_activity: Vec<u32> = (0..n as u32).collect();
    by_activity.shuffle(&mut rng);
    let mut by_followers: Vec<u32> = (0..n as u32).collect();
    by_followers.sort_by_key(|&i| (std::cmp::Reverse(followers[i as usize]), i));

    let users = Zipf::new(n, 1.0);
    let tags = Zipf::new(TAGS.len(), 1.0);
    // Replies go to recent statuses, mostly the latest few.
    let recent = Zipf::new(500, 1.0);
    let span_ms = i64::from(config.days.max(1)) * 86_400_000;
    let count = config.statuses.max(1);
    let mut statuses: Vec<PlannedStatus> = Vec::with_capacity(count);
    for j in 0..count {
        let author = by_activity[users.sample(&mut rng)];
        let reply_to =
            (j > 0 && rng.random_bool(0.2)).then(|| j - 1 - recent.sample(&mut rng).min(j - 1));
        let parent_author = reply_to.map(|p| username(statuses[p].author as usize));
        let text = compose(&mut rng, &tags, parent_author.as_deref());
        // Oldest first, evenly spread: ids (time-ordered) follow creation order.
        let age_ms = span_ms - span_ms * j as i64 / count as i64;
        statuses.push(PlannedStatus {
            author,
            reply_to,
            text,
            age_ms,
        });
    }
    let mut popular: Vec<usize> = (0..count).collect();
    popular.shuffle(&mut rng);

    let by_popularity = Zipf::new(count, 1.0);
    let mut seen = HashSet::with_capacity(config.favourites);
    let mut favourites = Vec::with_capacity(config.favourites);
    // Bounded: a tiny instance may have fewer distinct pairs than asked for.
    for _ in 0..config.favourites.saturating_mul(3) {
        if favourites.len() == config.favourites {
            break;
        }
        let account = by_activity[users.sample(&mut rng)];
        let status = popular[by_popularity.sample(&mut rng)];
        if seen.insert((account, status)) {
            favourites.push((account, status));
        }
    }
    Plan {
        follows,
        by_activity,
        by_followers,
        statuses,
        popular,
        favourites,
    }
}

/// Statuses per author, for the authors' counters.
pub fn statuses_per_author(plan: &Plan) -> HashMap<u32, (i64, i64)> {
    // author -> (count, age of the newest in ms)
    let mut per: HashMap<u32, (i64, i64)> = HashMap::new();
    for s in &plan.statuses {
        let e = per.entry(s.author).or_insert((0, i64::MAX));
        e.0 += 1;
        e.1 = e.1.min(s.age_ms);
    }
    per
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SeedConfig {
        SeedConfig {
            accounts: 300,
            statuses: 2_000,
            favourites: 3_000,
            ..SeedConfig::default()
        }
    }

    #[test]
    fn same_seed_same_instance() {
        let (a, b) = (plan(&small()), plan(&small()));
        assert_eq!(a.follows, b.follows);
        assert_eq!(a.statuses, b.statuses);
        assert_eq!(a.favourites, b.favourites);
        let other = plan(&SeedConfig { seed: 7, ..small() });
        assert_ne!(a.statuses, other.statuses);
    }

    #[test]
    fn replies_answer_earlier_statuses_and_mention_their_author() {
        let p = plan(&small());
        let replies: Vec<_> = p
            .statuses
            .iter()
            .enumerate()
            .filter(|(_, s)| s.reply_to.is_some())
            .collect();
        let share = replies.len() as f64 / p.statuses.len() as f64;
        assert!((0.15..0.25).contains(&share), "{share}");
        for (j, s) in replies {
            let parent = s.reply_to.unwrap_or(usize::MAX);
            assert!(parent < j);
            assert!(
                p.statuses[parent].age_ms > s.age_ms,
                "a reply is younger than its parent"
            );
            let mention = format!("@{} ", username(p.statuses[parent].author as usize));
            assert!(s.text.starts_with(&mention), "{}", s.text);
        }
        // Hashtags on about 30% of statuses.
        let tagged = p.statuses.iter().filter(|s| s.text.contains(" #")).count();
        assert!((400..800).contains(&tagged), "{tagged}");
    }

    #[test]
    fn favourites_are_unique_and_concentrated_on_popular_statuses() {
        let p = plan(&small());
        assert_eq!(p.favourites.len(), 3_000);
        let unique: HashSet<_> = p.favourites.iter().collect();
        assert_eq!(unique.len(), p.favourites.len());
        let top = p.popular[0];
        let top_favs = p.favourites.iter().filter(|(_, s)| *s == top).count();
        assert!(top_favs >= 50, "the most popular status has {top_favs}");
    }

    #[test]
    fn orders_rank_every_account_once() {
        let p = plan(&small());
        for order in [&p.by_activity, &p.by_followers] {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..300).collect::<Vec<u32>>());
        }
        let followers = graph::in_degrees(300, &p.follows);
        let first = followers[p.by_followers[0] as usize];
        assert_eq!(first, followers.iter().copied().max().unwrap_or(0));
    }
}
