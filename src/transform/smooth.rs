//! Gaussian smoothing of the scores (METHOD.md §5), n-dimensional, spacing aware,
//! matching `scipy.ndimage.gaussian_filter`.
//!
//! # Definition
//!
//! The output is the separable correlation of the scores with a sampled,
//! normalised Gaussian along each axis in turn, exactly as
//! `scipy.ndimage.gaussian_filter(scores, sigma, mode=..., truncate=...)`
//! computes it:
//!
//! * width: `sigma` directly, or a full width at half maximum with
//!   `sigma = FWHM / (2 sqrt(2 ln 2)) ≈ FWHM / 2.3548`; in voxels (the same
//!   on every axis) or in physical units, where axis `j` uses `sigma / s_j`
//!   voxels for spacing `s_j`;
//! * kernel: taps `w(x) ∝ exp(-x^2 / (2 sigma^2))` for integer `x` in
//!   `[-r, r]`, `r = floor(truncate * sigma + 0.5)`, normalised to sum 1
//!   (default `truncate = 4`, scipy's);
//! * boundary: [`BoundaryMode`] (default [`BoundaryMode::Reflect`], scipy's
//!   `'reflect'`), extended as often as needed when the kernel is longer than
//!   the axis;
//! * an axis whose sigma is at most `1e-15` voxels is not smoothed, as in
//!   scipy (`gaussian_filter` skips such axes; the sampled kernel would be
//!   `exp(-inf * 0)`).
//!
//! Scores must be finite (NaN has no smoothed value, and `+inf` next to
//! `-inf` would give NaN). Images whose values come within a factor 4 of
//! the float type's largest value are smoothed scaled by 1/4 (exact) and
//! scaled back, so that sums of two values cannot overflow; the constant of
//! [`BoundaryMode::Constant`] must fit the scores' float type.
//!
//! # Very wide kernels
//!
//! The kernel radius is bounded by 2^24 voxels (a larger one is an
//! [`Error::InvalidParameter`]). A kernel whose radius is at least the
//! length of its axis is *folded* onto the axis: every mode maps each tap
//! to one source voxel (or to the constant), so the correlation is a sum
//! over at most `n` source voxels per output voxel with the taps' weights
//! added up per source voxel. This is the same sum grouped differently
//! (equal up to rounding, about 1e-16 relative in f64), computed in one
//! `O(r)` pass over the taps and `O(n)` work per voxel and memory, whatever
//! the width: `gaussian:9e6` on a 50x50 image takes a fraction of a second
//! (it used to take a minute and 1.4 GB). Kernels shorter than their axis
//! are applied tap by tap as before.
//!
//! # Threads
//!
//! With the `rayon` feature, each pass over an image of at least 2^15
//! voxels is split into ranges of lines or columns run on the current rayon
//! pool; every voxel is computed with the same operations in the same
//! order, so the result is bit-identical to one thread's.
//!
//! `ndarray-ndimage`'s `gaussian_filter` was considered and not used: it
//! takes one sigma for all axes (no anisotropic spacing), an integer
//! `truncate`, and panics when the kernel is longer than an axis. The
//! separable convolution here processes strided axes row by row (axpy over
//! contiguous rows, a range of columns at a time so the rows stay in cache)
//! and contiguous lines from a padded copy, so every pass reads memory in
//! order and vectorises. The first pass reads the scores where they are;
//! the others work in place in the one output buffer.

use std::fmt;

use ndarray::{ArrayRef, CowArray, Dimension};

use super::{Spacing, Transform};
use crate::error::{Error, Result};
use crate::float::Float;

/// `2 sqrt(2 ln 2)`: FWHM / sigma of a Gaussian.
pub const FWHM_PER_SIGMA: f64 = 2.354_820_045_030_949_3;

/// Largest kernel radius accepted (in voxels), to refuse absurd widths
/// with an error instead of exhausting memory.
const MAX_RADIUS: f64 = 16_777_216.0;

/// Kernel width.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Width {
    /// Full width at half maximum.
    Fwhm(f64),
    /// Standard deviation.
    Sigma(f64),
}

impl Width {
    /// The standard deviation.
    #[must_use]
    pub fn sigma(self) -> f64 {
        match self {
            Width::Fwhm(w) => w / FWHM_PER_SIGMA,
            Width::Sigma(s) => s,
        }
    }
}

/// Units of the kernel width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Units {
    /// Voxels: the same width on every axis, whatever the spacing.
    #[default]
    Voxels,
    /// Physical units of the voxel spacing: axis `j` uses `width / s_j` voxels.
    Physical,
}

/// How the image is extended beyond its border (scipy's `mode`), shown for
/// a line `a b c d`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum BoundaryMode {
    /// `d c b a | a b c d | d c b a` (half-sample symmetric; scipy's default).
    #[default]
    Reflect,
    /// `d c b | a b c d | c b a` (whole-sample symmetric).
    Mirror,
    /// `a a a | a b c d | d d d`.
    Nearest,
    /// `b c d | a b c d | a b c` (periodic).
    Wrap,
    /// `k k k | a b c d | k k k` for the given constant `k`.
    Constant(f64),
}

impl BoundaryMode {
    /// Source index on an axis of length `n >= 1` of padded position `p`,
    /// or `None` for the constant.
    fn source(self, p: isize, n: usize) -> Option<usize> {
        let ni = n as isize;
        let i = match self {
            BoundaryMode::Reflect => {
                let m = p.rem_euclid(2 * ni);
                if m < ni {
                    m
                } else {
                    2 * ni - 1 - m
                }
            }
            BoundaryMode::Mirror if n == 1 => 0,
            BoundaryMode::Mirror => {
                let m = p.rem_euclid(2 * ni - 2);
                if m < ni {
                    m
                } else {
                    2 * ni - 2 - m
                }
            }
            BoundaryMode::Nearest => p.clamp(0, ni - 1),
            BoundaryMode::Wrap => p.rem_euclid(ni),
            BoundaryMode::Constant(_) => {
                if (0..ni).contains(&p) {
                    p
                } else {
                    return None;
                }
            }
        };
        Some(i as usize)
    }

    fn name(self) -> &'static str {
        match self {
            BoundaryMode::Reflect => "reflect",
            BoundaryMode::Mirror => "mirror",
            BoundaryMode::Nearest => "nearest",
            BoundaryMode::Wrap => "wrap",
            BoundaryMode::Constant(_) => "constant",
        }
    }
}

/// Gaussian smoothing of the score image; see the [module docs](self).
///
/// Widths are accepted up to a kernel radius of 2^24 voxels; a kernel at
/// least as long as its axis is folded onto the axis (time and memory
/// independent of the width, see [very wide kernels](self#very-wide-kernels)),
/// and an axis whose sigma is at most 1e-15 voxels is left unsmoothed, as in
/// scipy.
///
/// ```
/// use confseg::{GaussianSmoothing, Spacing, Transform};
/// use ndarray::Array2;
/// let mut s = Array2::<f64>::zeros((9, 9));
/// s[[4, 4]] = 1.0;
/// let g = GaussianSmoothing::fwhm(2.0)?.apply(&s, &Spacing::unit())?;
/// let sigma = 2.0 / confseg::transform::smooth::FWHM_PER_SIGMA;
/// // The impulse response is the (normalised) product kernel; mass is kept.
/// assert!((g.sum() - 1.0).abs() < 1e-12);
/// let ratio = g[[4, 5]] / g[[4, 4]];
/// assert!((ratio - (-0.5 / (sigma * sigma)).exp()).abs() < 1e-12);
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "GaussianRepr", into = "GaussianRepr"))]
pub struct GaussianSmoothing {
    width: Width,
    units: Units,
    mode: BoundaryMode,
    truncate: f64,
}

#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
struct GaussianRepr {
    width: Width,
    units: Units,
    mode: BoundaryMode,
    truncate: f64,
}

#[cfg(feature = "serde")]
impl TryFrom<GaussianRepr> for GaussianSmoothing {
    type Error = Error;
    fn try_from(r: GaussianRepr) -> Result<Self> {
        GaussianSmoothing::new(r.width)?.with_units(r.units).with_mode(r.mode)?.with_truncate(r.truncate)
    }
}

#[cfg(feature = "serde")]
impl From<GaussianSmoothing> for GaussianRepr {
    fn from(g: GaussianSmoothing) -> Self {
        GaussianRepr { width: g.width, units: g.units, mode: g.mode, truncate: g.truncate }
    }
}

fn positive(name: &'static str, x: f64) -> Result<f64> {
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err(Error::InvalidParameter {
            name,
            value: x.to_string(),
            reason: "must be positive and finite".into(),
        })
    }
}

impl GaussianSmoothing {
    /// Smoothing of the given width, in voxels, mode `reflect`, `truncate = 4`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless the width is positive and finite.
    pub fn new(width: Width) -> Result<Self> {
        match width {
            Width::Fwhm(w) => positive("FWHM", w)?,
            Width::Sigma(s) => positive("sigma", s)?,
        };
        Ok(GaussianSmoothing { width, units: Units::Voxels, mode: BoundaryMode::Reflect, truncate: 4.0 })
    }

    /// `new(Width::Fwhm(fwhm))`.
    ///
    /// # Errors
    /// As [`GaussianSmoothing::new`].
    pub fn fwhm(fwhm: f64) -> Result<Self> {
        Self::new(Width::Fwhm(fwhm))
    }

    /// `new(Width::Sigma(sigma))`.
    ///
    /// # Errors
    /// As [`GaussianSmoothing::new`].
    pub fn sigma(sigma: f64) -> Result<Self> {
        Self::new(Width::Sigma(sigma))
    }

    /// Measure the width in these units.
    #[must_use]
    pub fn with_units(mut self, units: Units) -> Self {
        self.units = units;
        self
    }

    /// Extend the image with this boundary mode.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a non-finite constant.
    pub fn with_mode(mut self, mode: BoundaryMode) -> Result<Self> {
        if let BoundaryMode::Constant(c) = mode {
            if !c.is_finite() {
                return Err(Error::InvalidParameter {
                    name: "cval",
                    value: c.to_string(),
                    reason: "the constant of mode=constant must be finite".into(),
                });
            }
        }
        self.mode = mode;
        Ok(self)
    }

    /// Cut the kernel at `truncate` standard deviations.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `truncate` is positive and finite.
    pub fn with_truncate(mut self, truncate: f64) -> Result<Self> {
        self.truncate = positive("truncate", truncate)?;
        Ok(self)
    }

    /// The width.
    #[must_use]
    pub fn width(&self) -> Width {
        self.width
    }

    /// The units of the width.
    #[must_use]
    pub fn units(&self) -> Units {
        self.units
    }

    /// The boundary mode.
    #[must_use]
    pub fn mode(&self) -> BoundaryMode {
        self.mode
    }

    /// The truncation, in standard deviations.
    #[must_use]
    pub fn truncate(&self) -> f64 {
        self.truncate
    }

    /// Standard deviation in voxels along each axis of an `ndim`-D image.
    ///
    /// ```
    /// use confseg::{GaussianSmoothing, Spacing};
    /// use confseg::transform::Units;
    /// let g = GaussianSmoothing::sigma(3.0)?.with_units(Units::Physical);
    /// assert_eq!(g.sigmas(&Spacing::new(vec![1.0, 1.5])?, 2)?, vec![3.0, 2.0]);
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidSpacing`] if the spacing does not fit `ndim`.
    pub fn sigmas(&self, spacing: &Spacing, ndim: usize) -> Result<Vec<f64>> {
        let sigma = self.width.sigma();
        let sp = spacing.for_ndim(ndim)?;
        Ok(sp
            .iter()
            .map(|&s| match self.units {
                Units::Voxels => sigma,
                Units::Physical => sigma / s,
            })
            .collect())
    }
}

impl Transform for GaussianSmoothing {
    /// # Errors
    /// [`Error::NanScore`] for NaN, [`Error::InvalidParameter`] for an
    /// infinite score, a kernel radius above 2^24 voxels or a constant
    /// (`mode=constant`) outside the range of the scores' float type,
    /// [`Error::InvalidSpacing`] if the spacing does not fit the dimension.
    fn apply<'a, A: Float, D: Dimension>(
        &self,
        scores: &'a ArrayRef<A, D>,
        spacing: &Spacing,
    ) -> Result<CowArray<'a, A, D>> {
        let max_abs = finite_max_abs(scores)?;
        let sigmas = self.sigmas(spacing, scores.ndim())?;
        let shape = scores.shape();
        let mut passes = Vec::new();
        for (axis, &sigma) in sigmas.iter().enumerate() {
            // scipy's rule: an axis whose sigma is at most 1e-15 is not smoothed.
            if sigma > MIN_SIGMA {
                passes.push((axis, Taps::new(sigma, self.truncate, shape[axis], self.mode)?));
            }
        }
        let cval64 = match self.mode {
            BoundaryMode::Constant(c) => c,
            _ => 0.0,
        };
        let cval = A::from_f64_lossy(cval64);
        if !cval.is_finite() {
            return Err(Error::InvalidParameter {
                name: "cval",
                value: cval64.to_string(),
                reason: format!("the constant of mode=constant does not fit {} scores", A::NAME),
            });
        }
        if passes.is_empty() || scores.is_empty() {
            return Ok(CowArray::from(scores.view()));
        }
        // Sums of two values near the largest float would overflow (and
        // +inf next to -inf would give NaN): scale such images by 1/4
        // (exact) and back.
        let limit = A::max_value().to_f64_lossless() / 4.0;
        let scale = (max_abs > limit || cval64.abs() > limit).then(|| A::from_f64_lossy(0.25));
        let input = scores.as_standard_layout();
        let input = input.as_slice().unwrap_or_else(|| unreachable!("standard layout is contiguous"));
        let scaled: Vec<A>;
        let (input, cval) = match scale {
            Some(q) => {
                scaled = input.iter().map(|&x| x * q).collect();
                (&scaled[..], cval * q)
            }
            None => (input, cval),
        };
        let parallel = crate::grid::par::worth_splitting(input.len());
        let mut out = vec![A::zero(); input.len()];
        let nd = shape.len();
        // The last two axes together, block by block, when both are smoothed
        // with direct kernels after at least one other pass.
        let fuse = match passes.as_slice() {
            [.., (a1, Taps::Direct(w1)), (a2, Taps::Direct(w2))]
                if passes.len() >= 3 && nd >= 3 && *a1 == nd - 2 && *a2 == nd - 1 =>
            {
                Some((
                    Direct::new(w1, shape[nd - 2], self.mode, cval),
                    Direct::new(w2, shape[nd - 1], self.mode, cval),
                ))
            }
            _ => None,
        };
        let separate = passes.len() - if fuse.is_some() { 2 } else { 0 };
        for (i, (axis, taps)) in passes[..separate].iter().enumerate() {
            let src = if i == 0 { Some(input) } else { None };
            correlate_axis(src, &mut out, shape, *axis, taps, self.mode, cval, parallel);
        }
        if let Some((k1, k2)) = &fuse {
            last_two_axes(&mut out, shape, k1, k2, parallel);
        }
        if scale.is_some() {
            let four = A::from_f64_lossy(4.0);
            out.iter_mut().for_each(|x| *x *= four);
        }
        Ok(CowArray::from(super::distance::from_flat(scores.raw_dim(), out)))
    }
    fn describe(&self) -> String {
        self.to_string()
    }
    fn uses_spacing(&self) -> bool {
        self.units == Units::Physical
    }
}

/// scipy's threshold: axes whose sigma (in voxels) is at most this are not smoothed.
const MIN_SIGMA: f64 = 1e-15;

/// The largest absolute value of finite scores.
///
/// # Errors
/// [`Error::NanScore`] at the first NaN, [`Error::InvalidParameter`] at the
/// first infinite score.
fn finite_max_abs<A: Float, D: Dimension>(scores: &ArrayRef<A, D>) -> Result<f64> {
    let mut max = A::zero();
    let mut bad = false;
    let mut visit = |x: A| {
        let a = x.abs();
        // NaN and inf are not finite; one flag keeps the loop branch-free.
        bad |= !a.is_finite();
        max = if a > max { a } else { max };
    };
    match scores.as_slice_memory_order() {
        Some(sl) => sl.iter().for_each(|&x| visit(x)),
        None => scores.iter().for_each(|&x| visit(x)),
    }
    if bad {
        crate::image::check_nan("scores", scores)?;
        if let Some(p) = scores.iter().position(|x| x.is_infinite()) {
            let index = crate::grid::unravel(p, scores.shape());
            return Err(Error::InfiniteScore { transform: "Gaussian smoothing", image: None, index });
        }
    }
    Ok(max.to_f64_lossless())
}

/// The kernel of one axis: the sampled taps, or, for a kernel at least as
/// long as the axis, the taps folded onto the axis by the boundary mode.
enum Taps {
    /// scipy's `_gaussian_kernel1d(sigma, 0, radius)`: `2r + 1` taps.
    Direct(Vec<f64>),
    /// The weight of every source voxel for every output voxel (see [`Folded`]).
    Folded(Folded),
}

impl Taps {
    /// The kernel for `sigma` voxels on an axis of length `n`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a radius above [`MAX_RADIUS`].
    fn new(sigma: f64, truncate: f64, n: usize, mode: BoundaryMode) -> Result<Taps> {
        let r = (truncate * sigma + 0.5).floor();
        // `r` is finite and non-negative for validated parameters; reject huge kernels.
        if r.is_nan() || r > MAX_RADIUS {
            return Err(Error::InvalidParameter {
                name: "Gaussian width",
                value: format!("sigma = {sigma} voxels, truncate = {truncate}"),
                reason: format!("kernel radius {r} exceeds {MAX_RADIUS} voxels"),
            });
        }
        let r = r as usize;
        if n == 0 {
            // nothing to smooth: no taps to compute (they could be 2^25)
            Ok(Taps::Direct(vec![1.0]))
        } else if r >= n {
            Ok(Taps::Folded(Folded::new(sigma, r, n, mode)))
        } else {
            Ok(Taps::Direct(kernel(sigma, r)))
        }
    }
}

/// A kernel of radius `r >= n` folded onto an axis of length `n`: output
/// `i` is `sum_j m_i[j] x[j] + c_i cval`, the same sum as the correlation
/// with all `2r + 1` taps, grouped by source voxel. Built in `O(r)` time
/// and `O(n)` memory, applied in `O(n)` per voxel whatever the width.
struct Folded {
    n: usize,
    mode: BoundaryMode,
    fold: Fold,
}

enum Fold {
    /// Reflect, mirror, wrap: the extension has period `P`; `g[q]` is the
    /// weight of all taps at offsets `o = q (mod P)`.
    Periodic { g: Vec<f64> },
    /// Nearest, constant: taps `w[d]` at distance `d < n`, and `tail[t]`,
    /// the weight of all taps at offsets `o >= t` (the same for `o <= -t`).
    Clamped { w: Vec<f64>, tail: Vec<f64> },
}

impl Folded {
    fn new(sigma: f64, r: usize, n: usize, mode: BoundaryMode) -> Folded {
        let s2 = sigma * sigma;
        let tap = |o: usize| (-0.5 / s2 * (o as f64 * o as f64)).exp();
        let period = match mode {
            BoundaryMode::Reflect => Some(2 * n),
            BoundaryMode::Mirror => Some((2 * n).saturating_sub(2).max(1)),
            BoundaryMode::Wrap => Some(n),
            BoundaryMode::Nearest | BoundaryMode::Constant(_) => None,
        };
        let fold = match period {
            Some(p) => {
                let mut g = vec![0.0; p];
                for o in 0..=r {
                    let v = tap(o);
                    g[o % p] += v;
                    if o > 0 {
                        g[(p - o % p) % p] += v;
                    }
                }
                // normalised by the sum of the folded weights themselves, so
                // that they add up to 1 within a few ulps however many taps
                let total: f64 = g.iter().sum();
                g.iter_mut().for_each(|x| *x /= total);
                Fold::Periodic { g }
            }
            None => {
                // tail[t] for t in 1..=n, summed from the far end (small terms first)
                let mut tail = vec![0.0; n + 1];
                let mut acc = 0.0;
                for o in (1..=r).rev() {
                    acc += tap(o);
                    if o <= n {
                        tail[o] = acc;
                    }
                }
                let total = tap(0) + 2.0 * acc;
                let w: Vec<f64> = (0..n).map(|d| tap(d) / total).collect();
                tail.iter_mut().for_each(|x| *x /= total);
                Fold::Clamped { w, tail }
            }
        };
        Folded { n, mode, fold }
    }

    /// The weights `m_i` of output `i` (into `m`, length `n`) and the
    /// weight of the constant.
    fn row(&self, i: usize, m: &mut [f64]) -> f64 {
        let n = self.n;
        m.fill(0.0);
        match &self.fold {
            Fold::Periodic { g } => {
                for (q, &gq) in g.iter().enumerate() {
                    let j = self.mode.source((i + q) as isize, n).unwrap_or(0);
                    m[j] += gq;
                }
                0.0
            }
            Fold::Clamped { w, tail } => {
                for (j, mj) in m.iter_mut().enumerate() {
                    *mj = w[j.abs_diff(i)];
                }
                let (low, high) = (tail[i + 1], tail[n - i]);
                match self.mode {
                    BoundaryMode::Constant(_) => low + high,
                    _ => {
                        m[0] += low;
                        m[n - 1] += high;
                        0.0
                    }
                }
            }
        }
    }
}

/// scipy's `_gaussian_kernel1d(sigma, 0, r)`.
fn kernel(sigma: f64, r: usize) -> Vec<f64> {
    let r = r as i64;
    let s2 = sigma * sigma;
    let mut w: Vec<f64> = (-r..=r).map(|x| (-0.5 / s2 * (x * x) as f64).exp()).collect();
    let sum: f64 = w.iter().sum();
    w.iter_mut().for_each(|x| *x /= sum);
    w
}

/// Columns of a strided block processed together: the block's rows are
/// read `2r + 1` times each, so a range of columns is copied out once and
/// kept in cache (at most this many elements).
const COLUMN_BLOCK: usize = 1 << 15;

/// A direct kernel ready for one axis of length `n`: the taps in the
/// scores' type and the source of every padded position.
struct Direct<A> {
    w: Vec<A>,
    r: usize,
    n: usize,
    /// Source of padded position `p` (`p - r` on the axis), `None` for the constant.
    src_of: Vec<Option<usize>>,
    cval: A,
}

impl<A: Float> Direct<A> {
    fn new(w: &[f64], n: usize, mode: BoundaryMode, cval: A) -> Self {
        let w: Vec<A> = w.iter().map(|&x| A::from_f64_lossy(x)).collect();
        let r = w.len() / 2;
        let src_of = (0..n + 2 * r).map(|p| mode.source(p as isize - r as isize, n)).collect();
        Direct { w, r, n, src_of, cval }
    }

    /// One contiguous line: `d` from `s` (`s` may be a copy of `d`), via the padded line `pad`.
    fn line(&self, s: &[A], d: &mut [A], pad: &mut [A]) {
        let (w, r, n) = (&self.w, self.r, self.n);
        pad[r..r + n].copy_from_slice(s);
        for p in (0..r).chain(r + n..n + 2 * r) {
            pad[p] = self.src_of[p].map_or(self.cval, |i| s[i]);
        }
        for (x, &y) in d.iter_mut().zip(&pad[r..]) {
            *x = w[r] * y;
        }
        for o in 1..=r {
            let (lo, hi) = (&pad[r - o..], &pad[r + o..]);
            for ((x, &a), &b) in d.iter_mut().zip(lo).zip(hi) {
                *x += w[r + o] * (a + b);
            }
        }
    }

    /// Contiguous lines of `buf` in place (`src`: none, the lines themselves).
    fn lines_in_place(&self, buf: &mut [A], pad: &mut Vec<A>) {
        let n = self.n;
        pad.resize(n + 2 * self.r, A::zero());
        for d in buf.chunks_exact_mut(n) {
            // the pad holds the copy, so the line can be overwritten
            let (w, r) = (&self.w, self.r);
            pad[r..r + n].copy_from_slice(d);
            for p in (0..r).chain(r + n..n + 2 * r) {
                pad[p] = self.src_of[p].map_or(self.cval, |i| pad[r + i]);
            }
            for (x, &y) in d.iter_mut().zip(&pad[r..]) {
                *x = w[r] * y;
            }
            for o in 1..=r {
                let (lo, hi) = (&pad[r - o..], &pad[r + o..]);
                for ((x, &a), &b) in d.iter_mut().zip(lo).zip(hi) {
                    *x += w[r + o] * (a + b);
                }
            }
        }
    }

    /// The `n x wd` part of a strided block in `view` (columns `c0..` of
    /// block `b`), from `src` if given, else from `view` itself; its rows
    /// are copied into `tile` first.
    fn columns(
        &self,
        src: Option<&[A]>,
        (b, c0, inner): (usize, usize, usize),
        mut view: ndarray::ArrayViewMut2<'_, A>,
        tile: &mut Vec<A>,
    ) {
        let (w, r, n, cval) = (&self.w, self.r, self.n, self.cval);
        let wd = view.ncols();
        tile.clear();
        for t in 0..n {
            match src {
                Some(s) => {
                    let at = (b * n + t) * inner + c0;
                    tile.extend_from_slice(&s[at..at + wd]);
                }
                None => {
                    let row = view.row(t);
                    tile.extend_from_slice(
                        row.as_slice().unwrap_or_else(|| unreachable!("rows are contiguous")),
                    );
                }
            }
        }
        let row = |i: Option<usize>| i.map(|i| &tile[i * wd..(i + 1) * wd]);
        for t in 0..n {
            let mut out_row = view.row_mut(t);
            let d = out_row.as_slice_mut().unwrap_or_else(|| unreachable!("rows are contiguous"));
            match row(self.src_of[t + r]) {
                Some(c) => d.iter_mut().zip(c).for_each(|(x, &y)| *x = w[r] * y),
                None => d.fill(w[r] * cval),
            }
            for o in 1..=r {
                let wo = w[r + o];
                match (row(self.src_of[t + r - o]), row(self.src_of[t + r + o])) {
                    (Some(a), Some(b)) => {
                        for ((x, &a), &b) in d.iter_mut().zip(a).zip(b) {
                            *x += wo * (a + b);
                        }
                    }
                    (Some(a), None) | (None, Some(a)) => {
                        for (x, &a) in d.iter_mut().zip(a) {
                            *x += wo * (a + cval);
                        }
                    }
                    (None, None) => {
                        let c = wo * (cval + cval);
                        d.iter_mut().for_each(|x| *x += c);
                    }
                }
            }
        }
    }
}

/// Correlation of `src` (or of `buf` itself if `src` is `None`) with the
/// symmetric kernel `taps` along `axis`, with boundary `mode`, into `buf`.
#[allow(clippy::too_many_arguments)]
fn correlate_axis<A: Float>(
    src: Option<&[A]>,
    buf: &mut [A],
    shape: &[usize],
    axis: usize,
    taps: &Taps,
    mode: BoundaryMode,
    cval: A,
    parallel: bool,
) {
    let n = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let k = match taps {
        Taps::Direct(w) => Direct::new(w, n, mode, cval),
        Taps::Folded(f) => {
            let copy;
            let src = match src {
                Some(s) => s,
                None => {
                    copy = buf.to_vec();
                    &copy[..]
                }
            };
            return folded_axis(src, buf, (n, inner), f, cval, parallel);
        }
    };
    if inner == 1 {
        // Contiguous lines: pad each line, then one axpy per tap over the line.
        let lines_per_chunk = (COLUMN_BLOCK / n.max(1)).max(1);
        crate::grid::par::for_each_chunk(buf, lines_per_chunk * n, parallel, Vec::new, |pad, ci, chunk| {
            match src {
                Some(s) => {
                    pad.resize(n + 2 * k.r, A::zero());
                    for (li, d) in chunk.chunks_exact_mut(n).enumerate() {
                        let line = ci * lines_per_chunk + li;
                        k.line(&s[line * n..(line + 1) * n], d, pad);
                    }
                }
                None => k.lines_in_place(chunk, pad),
            }
        });
        return;
    }
    // Strided axis: each output row is a weighted sum of whole input rows,
    // a range of columns at a time (copied out first, so `buf` can be
    // written in place).
    let width = (COLUMN_BLOCK / n).max(16).min(inner);
    crate::grid::par::for_each_column_range(
        buf,
        (n, inner),
        width,
        parallel,
        Vec::new,
        |tile, b, c0, view| {
            k.columns(src, (b, c0, inner), view, tile);
        },
    );
}

/// The last two axes of an image of at least three, both with direct
/// kernels, smoothed in place one block (one index of the other axes) at a
/// time, so that the block stays in cache between the two passes: the
/// same operations, in the same order, for every voxel.
fn last_two_axes<A: Float>(buf: &mut [A], shape: &[usize], k1: &Direct<A>, k2: &Direct<A>, parallel: bool) {
    let nd = shape.len();
    let (n1, n2) = (shape[nd - 2], shape[nd - 1]);
    crate::grid::par::for_each_chunk(
        buf,
        n1 * n2,
        parallel,
        || (Vec::new(), Vec::new()),
        |(tile, pad): &mut (Vec<A>, Vec<A>), _, block| {
            let view = ndarray::ArrayViewMut2::from_shape((n1, n2), &mut *block)
                .unwrap_or_else(|_| unreachable!("a block holds n1 rows of n2 elements"));
            k1.columns(None, (0, 0, n2), view, tile);
            k2.lines_in_place(block, pad);
        },
    );
}

/// The correlation with a folded kernel: `buf[.., i, ..] = sum_j m_i[j]
/// src[.., j, ..] + c_i cval`.
fn folded_axis<A: Float>(
    src: &[A],
    buf: &mut [A],
    (n, inner): (usize, usize),
    f: &Folded,
    cval: A,
    parallel: bool,
) {
    // All rows of weights, when they are few enough to keep.
    let rows: Option<Vec<(Vec<A>, A)>> = (n <= 1024).then(|| {
        let mut m = vec![0.0; n];
        (0..n)
            .map(|i| {
                let c = f.row(i, &mut m);
                (m.iter().map(|&x| A::from_f64_lossy(x)).collect(), A::from_f64_lossy(c))
            })
            .collect()
    });
    let width = (COLUMN_BLOCK / n).max(16).min(inner.max(1));
    crate::grid::par::for_each_column_range(
        buf,
        (n, inner),
        width,
        parallel,
        || (vec![0.0; n], vec![A::zero(); n]),
        |(m64, m): &mut (Vec<f64>, Vec<A>), b, c0, mut view| {
            let wd = view.ncols();
            for i in 0..n {
                let (mi, ci) = match &rows {
                    Some(rows) => (&rows[i].0[..], rows[i].1),
                    None => {
                        let c = f.row(i, m64);
                        m.iter_mut().zip(m64.iter()).for_each(|(a, &x)| *a = A::from_f64_lossy(x));
                        (&m[..], A::from_f64_lossy(c))
                    }
                };
                let mut out_row = view.row_mut(i);
                let d = out_row.as_slice_mut().unwrap_or_else(|| unreachable!("rows are contiguous"));
                d.fill(ci * cval);
                for (j, &mj) in mi.iter().enumerate() {
                    let at = (b * n + j) * inner + c0;
                    for (x, &y) in d.iter_mut().zip(&src[at..at + wd]) {
                        *x += mj * y;
                    }
                }
            }
        },
    );
}

impl fmt::Display for GaussianSmoothing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.width {
            Width::Fwhm(w) => write!(f, "gaussian:{w}")?,
            Width::Sigma(s) => write!(f, "gaussian-sigma:{s}")?,
        }
        if self.units == Units::Physical {
            f.write_str(":units=physical")?;
        }
        if self.mode != BoundaryMode::Reflect {
            write!(f, ":mode={}", self.mode.name())?;
        }
        if let BoundaryMode::Constant(c) = self.mode {
            if c != 0.0 {
                write!(f, ":cval={c}")?;
            }
        }
        if self.truncate != 4.0 {
            write!(f, ":truncate={}", self.truncate)?;
        }
        Ok(())
    }
}

/// Parse the options after `gaussian:W` / `gaussian-sigma:S`.
pub(crate) fn parse_gaussian(width: Width, options: &[(&str, &str)]) -> Result<GaussianSmoothing> {
    let mut g = GaussianSmoothing::new(width)?;
    let mut mode = BoundaryMode::Reflect;
    let mut cval = None;
    for &(key, value) in options {
        match key {
            "units" => {
                g.units = match value {
                    "voxels" => Units::Voxels,
                    "physical" => Units::Physical,
                    _ => return Err(bad_option(key, value, "units are voxels or physical")),
                }
            }
            "mode" => {
                mode = match value {
                    "reflect" => BoundaryMode::Reflect,
                    "mirror" => BoundaryMode::Mirror,
                    "nearest" => BoundaryMode::Nearest,
                    "wrap" => BoundaryMode::Wrap,
                    "constant" => BoundaryMode::Constant(0.0),
                    _ => {
                        return Err(bad_option(key, value, "modes: reflect, mirror, nearest, wrap, constant"))
                    }
                }
            }
            "cval" => cval = Some(parse_f64("cval", value)?),
            "truncate" => g = g.with_truncate(parse_f64("truncate", value)?)?,
            _ => return Err(bad_option(key, value, "gaussian options: units, mode, cval, truncate")),
        }
    }
    match (mode, cval) {
        (BoundaryMode::Constant(_), Some(c)) => g.with_mode(BoundaryMode::Constant(c)),
        (_, Some(c)) => Err(bad_option("cval", &c.to_string(), "cval needs mode=constant")),
        (m, None) => g.with_mode(m),
    }
}

pub(crate) fn parse_f64(key: &'static str, value: &str) -> Result<f64> {
    value.trim().parse::<f64>().map_err(|_| Error::InvalidParameter {
        name: key,
        value: value.to_owned(),
        reason: "not a number".into(),
    })
}

pub(crate) fn bad_option(key: &str, value: &str, reason: &str) -> Error {
    Error::InvalidParameter {
        name: "transform option",
        value: format!("{key}={value}"),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array1};

    #[test]
    fn kernel_matches_scipy_radius_and_normalisation() {
        let Ok(Taps::Direct(w)) = Taps::new(2.0, 4.0, 100, BoundaryMode::Reflect) else { panic!("direct") };
        assert_eq!(w.len(), 17);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        let Ok(Taps::Direct(w)) = Taps::new(0.1, 4.0, 100, BoundaryMode::Reflect) else { panic!("direct") };
        assert_eq!(w.len(), 1);
        assert!(Taps::new(1e300, 4.0, 100, BoundaryMode::Reflect).is_err());
        // A kernel at least as long as the axis is folded onto it.
        assert!(matches!(Taps::new(2.0, 4.0, 8, BoundaryMode::Reflect), Ok(Taps::Folded(_))));
    }

    #[test]
    fn modes_extend_as_documented() {
        let n = 4;
        let ext = |m: BoundaryMode| (-4..8).map(|p| m.source(p, n)).collect::<Vec<_>>();
        let s = |v: &[usize]| v.iter().map(|&i| Some(i)).collect::<Vec<_>>();
        assert_eq!(ext(BoundaryMode::Reflect), s(&[3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0]));
        assert_eq!(ext(BoundaryMode::Mirror), s(&[2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1]));
        assert_eq!(ext(BoundaryMode::Nearest), s(&[0, 0, 0, 0, 0, 1, 2, 3, 3, 3, 3, 3]));
        assert_eq!(ext(BoundaryMode::Wrap), s(&[0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]));
        assert_eq!(BoundaryMode::Constant(1.0).source(-1, n), None);
    }

    #[test]
    fn long_kernel_on_short_axis_and_constant_mode() {
        // Reflect keeps a constant image constant whatever the kernel length.
        let s = Array1::from_elem(3, 2.5_f64);
        let g = GaussianSmoothing::sigma(10.0).unwrap().apply(&s, &Spacing::unit()).unwrap();
        assert!(g.iter().all(|&x| (x - 2.5).abs() < 1e-12));
        let c = array![[2.5_f32, 2.5], [2.5, 2.5]];
        let g = GaussianSmoothing::sigma(1.0)
            .unwrap()
            .with_mode(BoundaryMode::Constant(2.5))
            .unwrap()
            .apply(&c, &Spacing::unit())
            .unwrap();
        assert!(g.iter().all(|&x| (x - 2.5).abs() < 1e-6));
    }

    #[test]
    fn infinite_scores_are_rejected() {
        let s = array![0.0, f64::INFINITY];
        assert!(GaussianSmoothing::fwhm(2.0).unwrap().apply(&s, &Spacing::unit()).is_err());
    }
}
