//! Zipf-distributed ranks: a few very active users (or very popular accounts and
//! statuses) and a long tail, as on a live instance.

use rand::{Rng, RngExt};

/// Samples ranks `0..n` with P(rank k) proportional to 1 / (k + 1)^s.
#[derive(Clone, Debug)]
pub struct Zipf {
    /// Cumulative probabilities; the last is 1.
    cdf: Vec<f64>,
}

impl Zipf {
    /// `n` ranks (at least one) with exponent `s` (1 is the classic Zipf; 0 is uniform).
    pub fn new(n: usize, s: f64) -> Self {
        let n = n.max(1);
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Self { cdf }
    }

    /// A rank in `0..n`: a binary search of the cumulative distribution.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let u: f64 = rng.random();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }

    /// Number of ranks.
    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    /// Never true (a distribution has at least one rank); for clippy's `len` rule.
    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;

    use super::*;

    fn counts(z: &Zipf, samples: usize, seed: u64) -> Vec<usize> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut counts = vec![0; z.len()];
        for _ in 0..samples {
            counts[z.sample(&mut rng)] += 1;
        }
        counts
    }

    #[test]
    fn rank_frequencies_follow_the_power_law() {
        let z = Zipf::new(1_000, 1.0);
        let c = counts(&z, 400_000, 1);
        // P(k) ∝ 1/(k+1): rank 0 twice as often as rank 1, ten times as often as rank 9.
        let ratio = |a: usize, b: usize| c[a] as f64 / c[b] as f64;
        assert!((ratio(0, 1) - 2.0).abs() < 0.1, "{}", ratio(0, 1));
        assert!((ratio(0, 9) - 10.0).abs() < 0.8, "{}", ratio(0, 9));
        // H(1000) ≈ 7.485: rank 0 draws 13.4% of all samples.
        let share = c[0] as f64 / 400_000.0;
        assert!((share - 0.1336).abs() < 0.005, "{share}");
        assert!(c[999] > 0, "the tail is reachable");
    }

    #[test]
    fn exponent_zero_is_uniform_and_samples_stay_in_range() {
        let z = Zipf::new(10, 0.0);
        let c = counts(&z, 100_000, 2);
        assert_eq!(c.len(), 10);
        for n in c {
            assert!((9_000..11_000).contains(&n), "{n}");
        }
        let one = Zipf::new(0, 1.0);
        assert_eq!(counts(&one, 100, 3), vec![100]);
    }

    #[test]
    fn same_seed_same_sequence() {
        let z = Zipf::new(500, 1.1);
        assert_eq!(counts(&z, 1_000, 7), counts(&z, 1_000, 7));
        assert_ne!(counts(&z, 1_000, 7), counts(&z, 1_000, 8));
    }
}
