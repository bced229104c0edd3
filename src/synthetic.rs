//! A seeded generator of exchangeable (scores, mask) pairs for demos, tests,
//! benchmarks and examples.
//!
//! Each image `i` is drawn independently from the same distribution, with
//! its own random stream derived from `(seed, i)`, so pairs are i.i.d. (hence
//! exchangeable) and any image can be regenerated on its own:
//!
//! * **truth**: the union of one or two random ellipsoidal blobs (a small
//!   share of images has no object at all);
//! * **scores**: logits of an imperfect segmenter, `sharpness * g(v)` where
//!   `g` is a level function of the segmenter's own blobs (positive inside),
//!   plus smooth noise (random Gaussian bumps) and a little white noise. With
//!   probability `boundary_error` per blob the segmenter's blob is shifted and
//!   rescaled, so it is sometimes wrong near boundaries.
//!
//! Scores are continuous, so the coverage of calibrated sets is close to the
//! upper bound `1 - alpha + 1/(n+1)` as well as above `1 - alpha`.

use std::ops::Range;

use ndarray::{Array, Axis, Dimension, IntoDimension};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_pcg::Pcg64Mcg;

use crate::error::{Error, Result};

/// Generator settings; see the [module docs](self).
///
/// ```
/// use confseg::synthetic::Synthetic;
/// let data = Synthetic::new([24, 32]).seed(3);
/// let (scores, mask) = data.pair(5);
/// assert_eq!(scores.shape(), &[24, 32]);
/// // Deterministic: the same (seed, index) gives the same image.
/// assert_eq!(data.pair(5).0, scores);
/// assert_eq!(mask.shape(), scores.shape());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Synthetic<D: Dimension> {
    shape: D,
    seed: u64,
    noise: f64,
    boundary_error: f64,
    sharpness: f64,
}

struct Blob {
    centre: Vec<f64>,
    radii: Vec<f64>,
}

impl Blob {
    fn random<R: Rng>(rng: &mut R, ndim: usize) -> Self {
        Blob {
            centre: (0..ndim).map(|_| rng.random_range(0.25..0.75)).collect(),
            radii: (0..ndim).map(|_| rng.random_range(0.08..0.22)).collect(),
        }
    }

    /// A perturbed copy: what an imperfect segmenter sees.
    fn perturbed<R: Rng>(&self, rng: &mut R) -> Self {
        let scale: f64 = rng.random_range(0.75..1.3);
        Blob {
            centre: self
                .centre
                .iter()
                .zip(&self.radii)
                .map(|(c, r)| c + rng.random_range(-0.3..0.3) * r)
                .collect(),
            radii: self.radii.iter().map(|r| r * scale * rng.random_range(0.9..1.1)).collect(),
        }
    }

    /// `1 - ellipsoidal radius`: positive inside, zero on the boundary.
    fn level(&self, x: &[f64]) -> f64 {
        let r2: f64 =
            x.iter().zip(&self.centre).zip(&self.radii).map(|((x, c), r)| ((x - c) / r).powi(2)).sum();
        1.0 - r2.sqrt()
    }
}

impl<D: Dimension> Synthetic<D> {
    /// Images of the given shape (2-D, 3-D, any dimension), seed 0, noise
    /// 1, boundary error probability 0.3.
    pub fn new<Sh: IntoDimension<Dim = D>>(shape: Sh) -> Self {
        Synthetic { shape: shape.into_dimension(), seed: 0, noise: 1.0, boundary_error: 0.3, sharpness: 8.0 }
    }

    /// Seed of the whole sequence.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Standard deviation scale of the smooth noise (0 for none).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `noise` is finite and non-negative.
    pub fn noise(mut self, noise: f64) -> Result<Self> {
        if !(noise.is_finite() && noise >= 0.0) {
            return Err(Error::InvalidParameter {
                name: "noise",
                value: noise.to_string(),
                reason: "must be finite and non-negative".into(),
            });
        }
        self.noise = noise;
        Ok(self)
    }

    /// Probability that the segmenter gets a blob's boundary wrong.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `0 <= p <= 1`.
    pub fn boundary_error(mut self, p: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::InvalidParameter {
                name: "boundary_error",
                value: p.to_string(),
                reason: "must be a probability in [0, 1]".into(),
            });
        }
        self.boundary_error = p;
        Ok(self)
    }

    /// The image shape.
    pub fn shape(&self) -> &[usize] {
        self.shape.slice()
    }

    fn rng(&self, index: usize) -> Pcg64Mcg {
        // SplitMix64 finaliser of (seed, index): independent streams per image.
        let mut z = self.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Pcg64Mcg::seed_from_u64(z ^ (z >> 31))
    }

    /// The `index`-th pair: `(logit scores, true mask)`.
    pub fn pair(&self, index: usize) -> (Array<f64, D>, Array<bool, D>) {
        let mut rng = self.rng(index);
        let ndim = self.shape.ndim();
        let n_blobs = if rng.random_bool(0.04) { 0 } else { rng.random_range(1..=2) };
        let truth: Vec<Blob> = (0..n_blobs).map(|_| Blob::random(&mut rng, ndim)).collect();
        let seen: Vec<Blob> = truth
            .iter()
            .map(|b| {
                if rng.random_bool(self.boundary_error) {
                    b.perturbed(&mut rng)
                } else {
                    b.perturbed_slightly(&mut rng)
                }
            })
            .collect();
        // A false positive blob now and then.
        let mut seen = seen;
        if rng.random_bool(0.1) {
            let mut b = Blob::random(&mut rng, ndim);
            b.radii.iter_mut().for_each(|r| *r *= 0.5);
            seen.push(b);
        }
        let bumps: Vec<(Vec<f64>, f64)> = (0..6)
            .map(|_| {
                let c = (0..ndim).map(|_| rng.random_range(0.0..1.0)).collect();
                let a = Normal::new(0.0, 2.0 * self.noise).map_or(0.0, |d| d.sample(&mut rng));
                (c, a)
            })
            .collect();
        let white = Normal::new(0.0, 0.3 * self.noise).ok();

        let dims = self.shape.slice().to_vec();
        let mut x = vec![0.0; ndim];
        let mut scores = Array::<f64, D>::zeros(self.shape.clone());
        let mut mask = Array::<bool, D>::from_elem(self.shape.clone(), false);
        for ((idx, s), m) in scores.indexed_iter_mut().zip(mask.iter_mut()) {
            let idx = idx.into_dimension();
            for (a, (&i, &n)) in idx.slice().iter().zip(&dims).enumerate() {
                x[a] = (i as f64 + 0.5) / n as f64;
            }
            *m = truth.iter().any(|b| b.level(&x) > 0.0);
            let g = seen.iter().map(|b| b.level(&x)).fold(-1.0_f64, f64::max);
            let smooth: f64 = bumps
                .iter()
                .map(|(c, a)| {
                    let d2: f64 = x.iter().zip(c).map(|(x, c)| (x - c).powi(2)).sum();
                    a * (-d2 / (2.0 * 0.15 * 0.15)).exp()
                })
                .sum();
            let w = white.map_or(0.0, |d| d.sample(&mut rng));
            *s = self.sharpness * g + smooth + w;
        }
        (scores, mask)
    }

    /// Pairs for a range of indices.
    pub fn pairs(&self, indices: Range<usize>) -> impl Iterator<Item = (Array<f64, D>, Array<bool, D>)> + '_ {
        indices.map(move |i| self.pair(i))
    }

    /// A batch-first stack `(N, spatial...)` of the pairs in `indices`, as
    /// the CLI reads them from `.npy` files (generated in parallel with the
    /// `rayon` feature; the result does not depend on it).
    pub fn stack(&self, indices: Range<usize>) -> (Array<f64, D::Larger>, Array<bool, D::Larger>) {
        let n = indices.len();
        let mut shape = D::Larger::zeros(self.shape.ndim() + 1);
        shape[0] = n;
        for (a, &s) in self.shape.slice().iter().enumerate() {
            shape[a + 1] = s;
        }
        let mut scores = Array::zeros(shape.clone());
        let mut masks = Array::from_elem(shape, false);
        let pairs = crate::stream::map_images(n, |k| self.pair(indices.start + k));
        for (k, (s, m)) in pairs.into_iter().enumerate() {
            scores.index_axis_mut(Axis(0), k).assign(&s);
            masks.index_axis_mut(Axis(0), k).assign(&m);
        }
        (scores, masks)
    }
}

impl Blob {
    fn perturbed_slightly<R: Rng>(&self, rng: &mut R) -> Self {
        Blob {
            centre: self
                .centre
                .iter()
                .zip(&self.radii)
                .map(|(c, r)| c + rng.random_range(-0.05..0.05) * r)
                .collect(),
            radii: self.radii.iter().map(|r| r * rng.random_range(0.95..1.05)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        let d = Synthetic::new([20, 30]).seed(11);
        let (s1, m1) = d.pair(3);
        let (s2, m2) = d.pair(3);
        assert_eq!(s1, s2);
        assert_eq!(m1, m2);
        let (s3, _) = d.pair(4);
        assert_ne!(s1, s3);
        let (s4, _) = Synthetic::new([20, 30]).seed(12).pair(3);
        assert_ne!(s1, s4);
    }

    #[test]
    fn segmenter_is_informative_but_imperfect() {
        let d = Synthetic::new([32, 32]).seed(1);
        let (mut agree, mut total, mut perfect, mut empty) = (0usize, 0usize, 0usize, 0usize);
        for (s, m) in d.pairs(0..200) {
            let hits = s.iter().zip(m.iter()).filter(|(s, m)| (**s > 0.0) == **m).count();
            agree += hits;
            total += s.len();
            perfect += usize::from(hits == s.len());
            empty += usize::from(!m.iter().any(|&b| b));
        }
        let acc = agree as f64 / total as f64;
        assert!(acc > 0.9 && acc < 0.995, "pixel accuracy {acc}");
        assert!(perfect < 100, "{perfect} perfect images");
        assert!(empty > 0 && empty < 30, "{empty} empty masks");
    }

    #[test]
    fn stack_matches_pairs_and_works_in_3d() {
        let d = Synthetic::new([6, 5, 4]).seed(2);
        let (s, m) = d.stack(3..5);
        assert_eq!(s.shape(), &[2, 6, 5, 4]);
        assert_eq!(s.index_axis(Axis(0), 1), d.pair(4).0);
        assert_eq!(m.index_axis(Axis(0), 0), d.pair(3).1);
        assert!(Synthetic::new([4, 4]).noise(-1.0).is_err());
        assert!(Synthetic::new([4, 4]).boundary_error(1.5).is_err());
    }
}
