//! The link's random source and the few draws it needs.
//!
//! Each [`Link`](crate::Link) owns a ChaCha8 stream seeded from its `u64` seed
//! ([`SeedableRng::seed_from_u64`]), so a run is reproducible from the seed alone. The draws
//! below are written out here (not taken from `rand`'s distributions) so that they never panic and
//! their values stay the same across `rand` releases: a seed replays the same run for as long as
//! this crate keeps these few lines.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded, reproducible random source.
#[derive(Clone, Debug)]
pub(crate) struct SimRng(ChaCha8Rng);

impl SimRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`. Draws nothing when `p <= 0` or `p >= 1` (or NaN, treated as 0).
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        if p >= 1.0 {
            true
        } else if p > 0.0 {
            self.unit() < p
        } else {
            false
        }
    }

    /// Uniform in `[0, n)`, unbiased (Lemire's multiply with rejection); 0 when `n == 0`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.0.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Uniform in `[min, max)`; exactly `min` when `max <= min` (the original's convention).
    pub(crate) fn range_u64(&mut self, min: u64, max: u64) -> u64 {
        if max <= min {
            min
        } else {
            min + self.below(max - min)
        }
    }

    /// Uniform in `[min, max)`; exactly `min` when `max <= min`.
    pub(crate) fn range_f64(&mut self, min: f64, max: f64) -> f64 {
        if max > min {
            min + self.unit() * (max - min)
        } else {
            min
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_in_range_and_are_reproducible() {
        let mut a = SimRng::new(1);
        let mut b = SimRng::new(1);
        for _ in 0..10_000 {
            let x = a.range_u64(3, 9);
            assert!((3..9).contains(&x));
            assert_eq!(x, b.range_u64(3, 9));
            let u = a.unit();
            assert!((0.0..1.0).contains(&u));
            assert_eq!(u, b.unit());
        }
        assert_eq!(a.range_u64(5, 5), 5);
        assert_eq!(a.range_u64(5, 2), 5);
        assert_eq!(a.below(0), 0);
        assert_eq!(a.range_f64(2.0, 2.0), 2.0);
        assert!(!a.chance(0.0));
        assert!(!a.chance(f64::NAN));
        assert!(a.chance(1.0));
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut r = SimRng::new(9);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[r.below(6) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
