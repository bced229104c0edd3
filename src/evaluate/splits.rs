//! Repeated random splits of a pool into a calibration and a test part,
//! drawn from one seeded generator so that the same settings always give
//! the same splits.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use crate::error::{Error, Result};

/// The most splits a validation runs (each split is a quantile and a count
/// per method and level; the per-split coverages are kept as histograms, so
/// memory does not grow with the splits, but time does).
pub const MAX_SPLITS: usize = 10_000_000;

/// Repeated random splits of a pool into a calibration part of `n_cal`
/// images and a test part (the rest, or its first `n_test` images).
///
/// Split `r` is a uniformly random permutation of the pool drawn from a
/// `Pcg64Mcg` seeded with `seed`: the same `(pool size, n_cal, n_test,
/// repeats, seed)` always give the same splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Splits {
    pub(super) n_cal: usize,
    n_test: Option<usize>,
    pub(super) repeats: usize,
    seed: u64,
}

impl Splits {
    /// `repeats` splits with `n_cal` calibration images each.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `n_cal` or `repeats` is 0, or
    /// `repeats` exceeds [`MAX_SPLITS`].
    pub fn new(n_cal: usize, repeats: usize, seed: u64) -> Result<Self> {
        for (name, v) in [("n_cal", n_cal), ("repeats", repeats)] {
            if v == 0 {
                return Err(Error::InvalidParameter {
                    name,
                    value: "0".into(),
                    reason: "must be at least 1".into(),
                });
            }
        }
        if repeats > MAX_SPLITS {
            return Err(Error::InvalidParameter {
                name: "repeats",
                value: repeats.to_string(),
                reason: format!("at most {MAX_SPLITS} splits"),
            });
        }
        Ok(Splits { n_cal, n_test: None, repeats, seed })
    }

    /// Use only `n_test` test images per split (default: all the others).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `n_test` is 0.
    pub fn with_n_test(mut self, n_test: usize) -> Result<Self> {
        if n_test == 0 {
            return Err(Error::InvalidParameter {
                name: "n_test",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        self.n_test = Some(n_test);
        Ok(self)
    }

    /// Number of calibration images per split.
    #[must_use]
    pub fn n_cal(&self) -> usize {
        self.n_cal
    }

    /// Number of splits.
    #[must_use]
    pub fn repeats(&self) -> usize {
        self.repeats
    }

    /// The seed.
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of test images per split for a pool of `pool` images.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if the pool is too small.
    pub fn n_test_for(&self, pool: usize) -> Result<usize> {
        let rest =
            pool.checked_sub(self.n_cal).filter(|&r| r > 0).ok_or_else(|| Error::InvalidParameter {
                name: "n_cal",
                value: self.n_cal.to_string(),
                reason: format!("the pool has {pool} images; at least one must be left for testing"),
            })?;
        match self.n_test {
            None => Ok(rest),
            Some(t) if t <= rest => Ok(t),
            Some(t) => Err(Error::InvalidParameter {
                name: "n_test",
                value: t.to_string(),
                reason: format!("only {rest} images are left after {} calibration images", self.n_cal),
            }),
        }
    }

    /// The splits of `0..pool` as `(calibration indices, test indices)`,
    /// drawn one after the other (memory for one split at a time).
    ///
    /// # Errors
    /// As [`Splits::n_test_for`].
    pub fn iter(&self, pool: usize) -> Result<impl Iterator<Item = (Vec<usize>, Vec<usize>)>> {
        let n_test = self.n_test_for(pool)?;
        let n_cal = self.n_cal;
        let mut rng = Pcg64Mcg::seed_from_u64(self.seed);
        let mut perm: Vec<usize> = (0..pool).collect();
        Ok((0..self.repeats).map(move |_| {
            perm.shuffle(&mut rng);
            (perm[..n_cal].to_vec(), perm[n_cal..n_cal + n_test].to_vec())
        }))
    }

    /// All the splits of [`Splits::iter`], collected.
    ///
    /// # Errors
    /// As [`Splits::n_test_for`].
    pub fn generate(&self, pool: usize) -> Result<Vec<(Vec<usize>, Vec<usize>)>> {
        Ok(self.iter(pool)?.collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_disjoint_seeded_and_complete() {
        let s = Splits::new(6, 5, 3).unwrap().with_n_test(3).unwrap();
        let a = s.generate(10).unwrap();
        assert_eq!(a, s.generate(10).unwrap());
        assert_ne!(a, Splits::new(6, 5, 4).unwrap().with_n_test(3).unwrap().generate(10).unwrap());
        for (cal, test) in &a {
            assert_eq!(cal.len(), 6);
            assert_eq!(test.len(), 3);
            let mut all: Vec<usize> = cal.iter().chain(test).copied().collect();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), 9);
        }
        assert!(s.generate(6).is_err());
        assert!(Splits::new(5, 1, 0).unwrap().with_n_test(6).unwrap().generate(10).is_err());
        assert!(Splits::new(0, 1, 0).is_err());
        // bounded before anything is allocated per split
        assert!(Splits::new(5, MAX_SPLITS + 1, 0).is_err());
        assert!(Splits::new(5, usize::MAX, 0).is_err());
    }
}
