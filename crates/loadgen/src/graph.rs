//! The follower graph: preferential attachment (Barabási–Albert), so that a few accounts
//! have thousands of followers and most have tens, like a live instance.

use std::collections::HashSet;

use rand::{Rng, RngExt};

/// One follow: `follower` follows `followed` (indexes of accounts in creation order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Edge {
    pub follower: u32,
    pub followed: u32,
}

/// Share of follows that are followed back.
const FOLLOW_BACK: f64 = 0.3;

/// Account `i` (in creation order) follows between `mean_follows / 2` and
/// `3 * mean_follows / 2` earlier accounts (all of them while there are fewer), each
/// picked with probability proportional to its followers + `mean_follows / 4`: the rich
/// get richer (the offset tempers it: with +1 the top 1% would hold 75% of all follows).
/// Each follow is followed back with probability 0.3.
pub fn preferential_attachment<R: Rng + ?Sized>(
    n: usize,
    mean_follows: usize,
    rng: &mut R,
) -> Vec<Edge> {
    let mut edges = Vec::with_capacity(n * mean_follows);
    // Account j appears here once plus once per follower: a uniform pick from the pool
    // is a pick proportional to followers + 1.
    let mut pool: Vec<u32> = Vec::with_capacity(n * (mean_follows + 1));
    let mut picked = HashSet::new();
    let low = mean_follows / 2;
    let high = (mean_follows * 3 / 2).max(low);
    let initial_weight = (mean_follows / 4).max(1);
    for i in 0..n as u32 {
        let want = rng.random_range(low..=high).min(i as usize);
        picked.clear();
        if want == i as usize {
            picked.extend(0..i);
        } else {
            while picked.len() < want {
                picked.insert(pool[rng.random_range(0..pool.len())]);
            }
        }
        // Sorted so that the graph depends on the seed only, not on hash order.
        let mut targets: Vec<u32> = picked.iter().copied().collect();
        targets.sort_unstable();
        for &followed in &targets {
            edges.push(Edge {
                follower: i,
                followed,
            });
            pool.push(followed);
        }
        // Some follow back: mutuals are common, and they give late accounts followers.
        for t in targets {
            if rng.random_bool(FOLLOW_BACK) {
                edges.push(Edge {
                    follower: t,
                    followed: i,
                });
                pool.push(i);
            }
        }
        pool.extend(std::iter::repeat_n(i, initial_weight));
    }
    edges
}
/// Followers per account.
pub fn in_degrees(n: usize, edges: &[Edge]) -> Vec<u32> {
    let mut degrees = vec![0; n];
    for e in edges {
        degrees[e.followed as usize] += 1;
    }
    degrees
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;

    use super::*;

    fn graph(n: usize, m: usize, seed: u64) -> Vec<Edge> {
        preferential_attachment(n, m, &mut Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    #[test]
    fn no_self_follows_no_duplicates() {
        let edges = graph(2_000, 20, 1);
        let unique: HashSet<_> = edges.iter().collect();
        assert_eq!(unique.len(), edges.len());
        assert!(edges.iter().all(|e| e.followed != e.follower));
        let back = edges.iter().filter(|e| e.followed > e.follower).count();
        let share = back as f64 / (edges.len() - back) as f64;
        assert!((0.27..0.33).contains(&share), "follow-backs {share}");
    }

    #[test]
    fn follows_average_the_mean_and_followers_follow_a_power_law() {
        let n = 10_000;
        let edges = graph(n, 20, 2);
        // 20 chosen + 30% followed back: 26 per account on average.
        let mean = edges.len() as f64 / n as f64;
        assert!((25.0..=26.5).contains(&mean), "mean follows {mean}");
        let mut followers = in_degrees(n, &edges);
        followers.sort_unstable();
        let median = followers[n / 2];
        let p90 = followers[n * 9 / 10];
        let top = followers[n - 1];
        let tenth_top = followers[n - 10];
        // Most accounts have a handful to tens of followers; a few have thousands.
        assert!((5..=20).contains(&median), "median {median}");
        assert!((20..=60).contains(&p90), "p90 {p90}");
        assert!(top >= 1_000, "top {top}");
        assert!(tenth_top >= 500, "10th {tenth_top}");
        // Heavy tail: the top 1% of accounts hold far more than 1% of all follows.
        let top_share: u32 = followers[n - n / 100..].iter().sum();
        assert!(top_share as f64 / edges.len() as f64 > 0.15, "{top_share}");
    }

    #[test]
    fn deterministic_from_the_seed() {
        assert_eq!(graph(500, 10, 9), graph(500, 10, 9));
        assert_ne!(graph(500, 10, 9), graph(500, 10, 10));
    }
}
