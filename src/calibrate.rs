//! Calibration as a streaming reduction (METHOD.md §2, §4).
//!
//! Each calibration pair `(s(X_i), Y_i)` is reduced to two numbers,
//!
//! ```text
//! tau_i   = C({Y_i = 0}, f_I(s(X_i)))   worst inner false positive
//! gamma_i = C({Y_i = 1}, -f_O(s(X_i)))  worst outer miss
//! ```
//!
//! with the combination function `C` = max by default ([`Max`]); the max over
//! an empty region is `-inf`. Only these numbers are kept, so memory is O(n)
//! and [`Calibration`]s computed by different workers merge by
//! concatenation. Thresholds for each [`Mode`] are conformal quantiles of
//! the statistics.

use std::fmt;

use ndarray::{ArrayRef, Axis, Dimension, RemoveAxis};

use crate::error::{Error, Result};
use crate::float::Float;
use crate::mask::MaskValue;
use crate::quantile::{conformal_quantile, Alpha, Threshold};
use crate::sets::ConfidenceSets;
use crate::transform::{Spacing, Transform};

/// A combination function `C(A, image)`: reduces the transformed scores of
/// a region to one statistic (METHOD.md §4, last paragraph).
///
/// It is a fold with a scalar accumulator: `empty` is `C(∅)`, `push` adds a
/// voxel, `merge` joins two partial folds (the kernel folds in several lanes).
/// For the guarantees to hold it must satisfy `voxel(x) <= C(A)` whenever
/// `x` is the score of a voxel in `A`; the sets are then
/// `I = {v : voxel(f_I(v)) > lambda_I}` and `O = {v : voxel(-f_O(v)) <= lambda_O}`.
///
/// ```
/// use confseg::{Combination, Max};
/// let c = Max;
/// let acc = [1.0_f64, -3.0, 2.0].into_iter().fold(c.empty(), |a, x| c.push(a, x));
/// assert_eq!(acc, 2.0);
/// assert_eq!(c.empty::<f32>(), f32::NEG_INFINITY);
/// ```
pub trait Combination: Clone + fmt::Debug + Send + Sync {
    /// `C(∅)`.
    fn empty<A: Float>(&self) -> A;
    /// Fold one voxel's transformed score into the accumulator.
    fn push<A: Float>(&self, acc: A, x: A) -> A;
    /// Join two accumulators.
    fn merge<A: Float>(&self, a: A, b: A) -> A;
    /// `C({v})` for a voxel with transformed score `x`.
    fn voxel<A: Float>(&self, x: A) -> A {
        self.push(self.empty(), x)
    }
    /// Name for provenance and reports.
    fn name(&self) -> String;
}

/// The maximum: the combination function of the paper. `C(∅) = -inf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Max;

impl Combination for Max {
    #[inline]
    fn empty<A: Float>(&self) -> A {
        A::neg_infinity()
    }
    #[inline]
    fn push<A: Float>(&self, acc: A, x: A) -> A {
        // A comparison and a select: vectorizes, and a NaN `x` is ignored
        // here (the kernel reports NaN separately).
        if x > acc {
            x
        } else {
            acc
        }
    }
    #[inline]
    fn merge<A: Float>(&self, a: A, b: A) -> A {
        self.push(a, b)
    }
    #[inline]
    fn voxel<A: Float>(&self, x: A) -> A {
        x
    }
    fn name(&self) -> String {
        "max".into()
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Max {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str("max")
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Max {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "max" {
            Ok(Max)
        } else {
            Err(serde::de::Error::custom(format!("unknown combination {s:?}, expected \"max\"")))
        }
    }
}

/// The two calibration statistics of one image.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ImageStatistics {
    /// `tau_i = C({Y = 0}, f_I)`: the worst inner false positive (`-inf` if
    /// the image has no background).
    pub tau: f64,
    /// `gamma_i = C({Y = 1}, -f_O)`: the worst outer miss (`-inf` if the
    /// image has no object).
    pub gamma: f64,
}

impl ImageStatistics {
    /// `max(tau, gamma)`, the statistic of the max-joint mode.
    #[must_use]
    pub fn joint(&self) -> f64 {
        self.tau.max(self.gamma)
    }
}

const LANES: usize = 16;

struct KernelOutput<A> {
    tau: A,
    gamma: A,
    nan: bool,
    non_binary: bool,
}

/// Lane accumulators shared by all paths of the kernel, so that a run costs
/// no set-up: `LANES` partial folds per region and NaN flags.
struct Lanes<A> {
    tau: [A; LANES],
    gamma: [A; LANES],
    nan: [u32; LANES],
}

/// Fold the chunks of `xs` (negated if `NEG`) into `acc`, one lane per
/// position (fixed-size chunks from `as_chunks`: no bounds checks, so the
/// compiler emits SIMD max operations), and check `xs` and `also` (another
/// array checked for NaN only) for NaN. Returns the unchunked remainder.
#[inline]
fn fold_run<'a, A: Float, C: Combination, const NEG: bool>(
    xs: &'a [A],
    also: Option<&[A]>,
    c: &C,
    acc: &mut [A; LANES],
    nan: &mut [u32; LANES],
) -> &'a [A] {
    let (chunks, rest) = xs.as_chunks::<LANES>();
    for ch in chunks {
        for l in 0..LANES {
            acc[l] = c.push(acc[l], if NEG { -ch[l] } else { ch[l] });
        }
        nan_pairs(ch, nan);
    }
    if let Some(ys) = also {
        let (chunks, rest) = ys.as_chunks::<LANES>();
        for ch in chunks {
            nan_pairs(ch, nan);
        }
        nan[0] |= u32::from(rest.iter().any(|v| v.is_nan()));
    }
    nan[0] |= u32::from(rest.iter().any(|v| v.is_nan()));
    rest
}

/// Accumulate "some value is NaN" over a chunk: an unordered comparison is
/// true iff either operand is NaN, so one comparison checks two values.
#[inline]
fn nan_pairs<A: Float>(ch: &[A; LANES], nan: &mut [u32; LANES]) {
    for l in 0..LANES / 2 {
        nan[l] |= u32::from(ch[l].partial_cmp(&ch[l + LANES / 2]).is_none());
    }
}

/// End of the run of mask values equal to `m[i]` starting at `i`, scanning
/// `4 * LANES`, then `LANES` values at a time.
#[inline]
fn run_end<M: MaskValue>(m: &[M], i: usize) -> usize {
    const WIDE: usize = 4 * LANES;
    let v = m[i];
    let rest = &m[i..];
    let (wide, _) = rest.as_chunks::<WIDE>();
    let mut j = 0;
    for ch in wide {
        let mut differs = false;
        for &x in ch {
            differs |= x != v;
        }
        if differs {
            break;
        }
        j += WIDE;
    }
    let (chunks, _) = rest[j..].as_chunks::<LANES>();
    for ch in chunks {
        let mut differs = false;
        for &x in ch {
            differs |= x != v;
        }
        if differs {
            break;
        }
        j += LANES;
    }
    while j < rest.len() && rest[j] == v {
        j += 1;
    }
    i + j
}

/// Runs shorter than this are handled by the branch-free select loop.
const MIN_RUN: usize = LANES;

/// The fused kernel: both region statistics and the NaN / non-binary flags
/// in one pass over the image.
///
/// Written by hand because no crate fuses a masked two-region reduction with
/// validation. Masks come in runs (objects are blobs), so the kernel walks
/// the mask run by run: a background run is a plain vectorized max of `f_I`,
/// an object run a plain max of `-f_O`; each score is read once (twice only
/// to check the other array for NaN when `f_I` and `f_O` differ). Where runs
/// are short (ragged boundaries, noise), blocks fall back to a branch-free
/// per-voxel select. All paths fold into the same lane accumulators.
fn fused_kernel<A: Float, M: MaskValue, C: Combination>(
    fi: &[A],
    fo: &[A],
    m: &[M],
    c: &C,
) -> KernelOutput<A> {
    let n = fi.len().min(fo.len()).min(m.len());
    let (fi, fo, m) = (&fi[..n], &fo[..n], &m[..n]);
    let same = std::ptr::eq(fi, fo);
    let mut lanes = Lanes { tau: [c.empty::<A>(); LANES], gamma: [c.empty::<A>(); LANES], nan: [0; LANES] };
    let mut non_binary = false;
    let mut i = 0;
    while i < n {
        let v = m[i];
        if !v.is_binary() {
            non_binary = true;
            break;
        }
        let end = run_end(m, i);
        if end - i >= MIN_RUN {
            let object = v.is_object();
            let (xs, also, acc) = if object {
                (&fo[i..end], &fi[i..end], &mut lanes.gamma)
            } else {
                (&fi[i..end], &fo[i..end], &mut lanes.tau)
            };
            let also = (!same).then_some(also);
            let rest = if object {
                fold_run::<A, C, true>(xs, also, c, acc, &mut lanes.nan)
            } else {
                fold_run::<A, C, false>(xs, also, c, acc, &mut lanes.nan)
            };
            for &x in rest {
                acc[0] = c.push(acc[0], if object { -x } else { x });
            }
            i = end;
        } else {
            let end = (i + 2 * LANES).min(n);
            non_binary |= select_block(&fi[i..end], &fo[i..end], &m[i..end], c, &mut lanes);
            if non_binary {
                break;
            }
            i = end;
        }
    }
    KernelOutput {
        tau: lanes.tau.iter().fold(c.empty(), |a, &b| c.merge(a, b)),
        gamma: lanes.gamma.iter().fold(c.empty(), |a, &b| c.merge(a, b)),
        nan: lanes.nan.iter().any(|&b| b != 0),
        non_binary,
    }
}

/// Branch-free per-voxel kernel for mixed masks: each voxel updates both
/// accumulators through selects. Returns whether a mask value is not 0/1.
#[inline]
fn select_block<A: Float, M: MaskValue, C: Combination>(
    fi: &[A],
    fo: &[A],
    m: &[M],
    c: &C,
    lanes: &mut Lanes<A>,
) -> bool {
    let mut bad = [false; LANES];
    let mut step = |l: usize, x: A, y: A, mv: M| {
        let y = -y;
        let obj = mv.is_object();
        lanes.nan[l] |= u32::from(x.partial_cmp(&y).is_none());
        bad[l] |= !mv.is_binary();
        let t = c.push(lanes.tau[l], x);
        let g = c.push(lanes.gamma[l], y);
        lanes.tau[l] = if obj { lanes.tau[l] } else { t };
        lanes.gamma[l] = if obj { g } else { lanes.gamma[l] };
    };
    let (xc, xr) = fi.as_chunks::<LANES>();
    let (yc, yr) = fo.as_chunks::<LANES>();
    let (mc, mr) = m.as_chunks::<LANES>();
    for ((x, y), mv) in xc.iter().zip(yc).zip(mc) {
        for l in 0..LANES {
            step(l, x[l], y[l], mv[l]);
        }
    }
    for ((&x, &y), &mv) in xr.iter().zip(yr).zip(mr) {
        step(0, x, y, mv);
    }
    bad.iter().any(|&b| b)
}

/// `f(0), ..., f(n - 1)` in order, computed in parallel with the `rayon`
/// feature.
pub(crate) fn map_images<T: Send, F>(n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> T + Sync + Send,
{
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        (0..n).into_par_iter().map(f).collect()
    }
    #[cfg(not(feature = "rayon"))]
    {
        (0..n).map(f).collect()
    }
}

/// Run `f` on images `0..n` (in parallel with the `rayon` feature) and
/// collect the results in order; the error of the lowest failing index wins,
/// tagged with that index.
pub(crate) fn for_each_image<T: Send, F>(n: usize, f: F) -> Result<Vec<T>>
where
    F: Fn(usize) -> Result<T> + Sync + Send,
{
    map_images(n, f).into_iter().enumerate().map(|(i, r)| r.map_err(|e| e.in_image(i))).collect()
}

/// Row-major multi-index of a flat position.
pub(crate) fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (i, &s) in shape.iter().enumerate().rev() {
        if s > 0 {
            idx[i] = flat % s;
            flat /= s;
        }
    }
    idx
}

pub(crate) fn check_shape<A, B, D: Dimension>(
    what: &'static str,
    reference: &ArrayRef<A, D>,
    other: &ArrayRef<B, D>,
) -> Result<()> {
    if reference.shape() == other.shape() {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            what,
            image: None,
            expected: reference.shape().to_vec(),
            found: other.shape().to_vec(),
        })
    }
}

/// Error for the first NaN of `a`, if any (row-major order).
pub(crate) fn check_nan<A: Float, D: Dimension>(what: &'static str, a: &ArrayRef<A, D>) -> Result<()> {
    match a.iter().position(|x| x.is_nan()) {
        None => Ok(()),
        Some(p) => Err(Error::NanScore { what, image: None, index: unravel(p, a.shape()) }),
    }
}

/// Error for the first non-binary value of `m`, if any (row-major order).
pub(crate) fn check_mask<M: MaskValue, D: Dimension>(m: &ArrayRef<M, D>) -> Result<()> {
    match m.iter().position(|v| !v.is_binary()) {
        None => Ok(()),
        Some(p) => Err(Error::NonBinaryMask {
            image: None,
            index: unravel(p, m.shape()),
            value: m.iter().nth(p).map_or(f64::NAN, |v| v.to_f64()),
        }),
    }
}

/// Compute `(tau, gamma)` of one image from already transformed inner and
/// outer scores, in one fused pass.
///
/// ```
/// use confseg::{region_statistics, Max};
/// use ndarray::array;
/// let f = array![[-3.0_f32, -1.0], [-2.0, -5.0]];
/// let y = array![[0u8, 1], [0, 0]];
/// let s = region_statistics(&f, &f, &y, &Max)?;
/// assert_eq!(s.tau, -2.0);   // max over background, not 0
/// assert_eq!(s.gamma, 1.0);  // max of -f over the object
/// # Ok::<(), confseg::Error>(())
/// ```
///
/// # Errors
/// [`Error::ShapeMismatch`] if the three shapes differ, [`Error::NanScore`]
/// for a NaN score, [`Error::NonBinaryMask`] for a mask value other than 0/1.
pub fn region_statistics<A: Float, D: Dimension, M: MaskValue, C: Combination>(
    inner: &ArrayRef<A, D>,
    outer: &ArrayRef<A, D>,
    mask: &ArrayRef<M, D>,
    combination: &C,
) -> Result<ImageStatistics> {
    check_shape("inner scores vs mask", mask, inner)?;
    check_shape("outer scores vs mask", mask, outer)?;
    let fi = inner.as_standard_layout();
    let fo = outer.as_standard_layout();
    let m = mask.as_standard_layout();
    // `as_standard_layout` returns contiguous row-major arrays, so these are `Some`.
    let (Some(fis), Some(fos), Some(ms)) = (fi.as_slice(), fo.as_slice(), m.as_slice()) else {
        unreachable!("standard layout arrays are contiguous")
    };
    let out = fused_kernel(fis, fos, ms, combination);
    if out.nan {
        check_nan("inner scores", &fi)?;
        check_nan("outer scores", &fo)?;
    }
    if out.non_binary {
        check_mask(&m)?;
    }
    Ok(ImageStatistics { tau: out.tau.to_f64_lossless(), gamma: out.gamma.to_f64_lossless() })
}

/// What the thresholds promise (METHOD.md §4): which levels, and whether the
/// guarantee is per set or joint.
///
/// Constructed through validated constructors, so a `Mode` always holds
/// levels in (0, 1) and a Bonferroni split never exceeds its joint level.
///
/// ```
/// use confseg::{Alpha, Mode};
/// // The paper's 90% joint sets, split 1:4 between inner and outer.
/// let m = Mode::bonferroni(Alpha::new(0.1)?, 1.0, 4.0)?;
/// assert!((m.inner_alpha().get() - 0.02).abs() < 1e-12);
/// assert!((m.outer_alpha().get() - 0.08).abs() < 1e-12);
/// assert_eq!(m.joint_alpha().map(|a| a.get()), Some(0.1));
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mode {
    kind: ModeKind,
    inner: Alpha,
    outer: Alpha,
    joint: Option<Alpha>,
}

/// The kind of a [`Mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum ModeKind {
    /// Each set at its own level: `P(I ⊆ Y) >= 1 - alpha_I`, `P(Y ⊆ O) >= 1 - alpha_O`.
    Marginal,
    /// Both marginal thresholds with `alpha_I + alpha_O = alpha`:
    /// `P(I ⊆ Y ⊆ O) >= 1 - alpha`.
    Bonferroni,
    /// One threshold from `max(tau, gamma)` at level `alpha`, used for both sets:
    /// `P(I ⊆ Y ⊆ O) >= 1 - alpha`.
    Max,
}

impl ModeKind {
    /// Lower-case name (`"marginal"`, `"bonferroni"`, `"max"`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ModeKind::Marginal => "marginal",
            ModeKind::Bonferroni => "bonferroni",
            ModeKind::Max => "max",
        }
    }
}

impl fmt::Display for ModeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Mode {
    /// Marginal sets, each at `alpha`.
    #[must_use]
    pub fn marginal(alpha: Alpha) -> Self {
        Self::marginal_split(alpha, alpha)
    }

    /// Marginal sets at separate levels. Joint coverage is then at least
    /// `1 - alpha_inner - alpha_outer` by the union bound.
    #[must_use]
    pub fn marginal_split(inner: Alpha, outer: Alpha) -> Self {
        Mode { kind: ModeKind::Marginal, inner, outer, joint: None }
    }

    /// Joint coverage `1 - alpha` by a weighted Bonferroni split:
    /// `alpha_I = alpha * w_I / (w_I + w_O)`, `alpha_O = alpha * w_O / (w_I + w_O)`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless both weights are positive and finite.
    pub fn bonferroni(alpha: Alpha, inner_weight: f64, outer_weight: f64) -> Result<Self> {
        for (name, w) in [("inner weight", inner_weight), ("outer weight", outer_weight)] {
            if !(w.is_finite() && w > 0.0) {
                return Err(Error::InvalidParameter {
                    name,
                    value: w.to_string(),
                    reason: "weights must be positive and finite".into(),
                });
            }
        }
        let total = inner_weight + outer_weight;
        let inner = Alpha::named("alpha_inner", alpha.get() * inner_weight / total)?;
        let outer = Alpha::named("alpha_outer", alpha.get() * outer_weight / total)?;
        Ok(Mode { kind: ModeKind::Bonferroni, inner, outer, joint: Some(alpha) })
    }

    /// Joint coverage `1 - alpha` from explicit inner and outer levels.
    ///
    /// # Errors
    /// [`Error::SplitExceedsAlpha`] if `inner + outer > alpha`.
    pub fn bonferroni_split(alpha: Alpha, inner: Alpha, outer: Alpha) -> Result<Self> {
        if inner.get() + outer.get() > alpha.get() * (1.0 + 1e-12) {
            return Err(Error::SplitExceedsAlpha {
                alpha: alpha.get(),
                inner: inner.get(),
                outer: outer.get(),
            });
        }
        Ok(Mode { kind: ModeKind::Bonferroni, inner, outer, joint: Some(alpha) })
    }

    /// Joint coverage `1 - alpha` from one threshold on `max(tau, gamma)`.
    #[must_use]
    pub fn max(alpha: Alpha) -> Self {
        Mode { kind: ModeKind::Max, inner: alpha, outer: alpha, joint: Some(alpha) }
    }

    /// Which kind of guarantee.
    #[must_use]
    pub fn kind(&self) -> ModeKind {
        self.kind
    }

    /// Level of the inner threshold (for [`ModeKind::Max`], the joint level).
    #[must_use]
    pub fn inner_alpha(&self) -> Alpha {
        self.inner
    }

    /// Level of the outer threshold (for [`ModeKind::Max`], the joint level).
    #[must_use]
    pub fn outer_alpha(&self) -> Alpha {
        self.outer
    }

    /// The joint level `alpha` with `P(I ⊆ Y ⊆ O) >= 1 - alpha`, for the joint modes.
    #[must_use]
    pub fn joint_alpha(&self) -> Option<Alpha> {
        self.joint
    }

    /// The smallest number of calibration images for finite thresholds on both sides.
    #[must_use]
    pub fn min_calibration_size(&self) -> usize {
        self.inner.min_calibration_size().max(self.outer.min_calibration_size())
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ModeKind::Marginal => {
                write!(f, "marginal (alpha_inner = {}, alpha_outer = {})", self.inner, self.outer)
            }
            ModeKind::Bonferroni => write!(
                f,
                "joint by Bonferroni split (alpha = {}: inner {}, outer {})",
                self.joint.unwrap_or(self.inner),
                self.inner,
                self.outer
            ),
            ModeKind::Max => write!(f, "joint by max (alpha = {})", self.inner),
        }
    }
}

/// The calibrated thresholds `lambda_I`, `lambda_O`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// `lambda_I`: the inner set is `{v : f_I(v) > lambda_I}`.
    pub inner: Threshold,
    /// `lambda_O`: the outer set is `{v : -f_O(v) <= lambda_O}`.
    pub outer: Threshold,
}

/// The streaming calibration state: the `(tau_i, gamma_i)` of every image seen.
///
/// Merging two states ([`Calibration::merge`]) is concatenation, so the
/// thresholds do not depend on how the images were split across workers or
/// in which order they arrived.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Calibration {
    tau: Vec<f64>,
    gamma: Vec<f64>,
}

impl Calibration {
    /// An empty state.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one image's statistics.
    pub fn push(&mut self, stats: ImageStatistics) {
        self.tau.push(stats.tau);
        self.gamma.push(stats.gamma);
    }

    /// Append another state (e.g. from another worker).
    pub fn merge(&mut self, other: &Calibration) {
        self.tau.extend_from_slice(&other.tau);
        self.gamma.extend_from_slice(&other.gamma);
    }

    /// Number of calibration images.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tau.len()
    }

    /// Whether no image has been observed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tau.is_empty()
    }

    /// The `tau_i`, in observation order.
    #[must_use]
    pub fn tau(&self) -> &[f64] {
        &self.tau
    }

    /// The `gamma_i`, in observation order.
    #[must_use]
    pub fn gamma(&self) -> &[f64] {
        &self.gamma
    }

    /// The statistics of image `i`.
    #[must_use]
    pub fn get(&self, i: usize) -> Option<ImageStatistics> {
        Some(ImageStatistics { tau: *self.tau.get(i)?, gamma: *self.gamma.get(i)? })
    }

    /// Iterate over the images' statistics.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = ImageStatistics> + '_ {
        self.tau.iter().zip(&self.gamma).map(|(&tau, &gamma)| ImageStatistics { tau, gamma })
    }

    /// A state holding only the images at `indices` (e.g. one calibration split).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if an index is out of range.
    pub fn select(&self, indices: &[usize]) -> Result<Calibration> {
        let mut out =
            Calibration { tau: Vec::with_capacity(indices.len()), gamma: Vec::with_capacity(indices.len()) };
        for &i in indices {
            let s = self.get(i).ok_or_else(|| Error::InvalidParameter {
                name: "image index",
                value: i.to_string(),
                reason: format!("only {} calibration images", self.len()),
            })?;
            out.push(s);
        }
        Ok(out)
    }

    /// The thresholds for `mode` (METHOD.md §4).
    ///
    /// With fewer than [`Mode::min_calibration_size`] images a threshold is
    /// [`Threshold::TooFewImages`] (`+inf`): valid but uninformative.
    ///
    /// ```
    /// use confseg::{Alpha, Calibration, ImageStatistics, Mode};
    /// let mut cal = Calibration::new();
    /// for i in 0..19 {
    ///     cal.push(ImageStatistics { tau: i as f64, gamma: -(i as f64) });
    /// }
    /// // n = 19, alpha = 0.1: k = ceil(0.9 * 20) = 18.
    /// let t = cal.thresholds(&Mode::marginal(Alpha::new(0.1)?))?;
    /// assert_eq!(t.inner.value(), 17.0);
    /// assert_eq!(t.outer.value(), -1.0);
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NoCalibrationData`] if no image was observed.
    pub fn thresholds(&self, mode: &Mode) -> Result<Thresholds> {
        if self.is_empty() {
            return Err(Error::NoCalibrationData);
        }
        match mode.kind() {
            ModeKind::Marginal | ModeKind::Bonferroni => Ok(Thresholds {
                inner: conformal_quantile(&self.tau, mode.inner_alpha())?,
                outer: conformal_quantile(&self.gamma, mode.outer_alpha())?,
            }),
            ModeKind::Max => {
                let joint: Vec<f64> = self.iter().map(|s| s.joint()).collect();
                let t = conformal_quantile(&joint, mode.inner_alpha())?;
                Ok(Thresholds { inner: t, outer: t })
            }
        }
    }
}

impl Extend<ImageStatistics> for Calibration {
    fn extend<I: IntoIterator<Item = ImageStatistics>>(&mut self, iter: I) {
        for s in iter {
            self.push(s);
        }
    }
}

impl FromIterator<ImageStatistics> for Calibration {
    fn from_iter<I: IntoIterator<Item = ImageStatistics>>(iter: I) -> Self {
        let mut c = Calibration::new();
        c.extend(iter);
        c
    }
}

/// Calibration parameters: the transforms `f_I`, `f_O`, the combination
/// function and the voxel spacing. Turns `(scores, mask)` pairs into
/// [`ImageStatistics`] and a [`Calibration`] into fitted [`ConfidenceSets`].
///
/// ```
/// use confseg::{Alpha, Calibration, Calibrator, Identity, Mode};
/// use confseg::synthetic::Synthetic;
///
/// let data = Synthetic::new([32, 32]).seed(7);
/// let calibrator = Calibrator::new(Identity, Identity);
/// let mut cal = Calibration::new();
/// for (scores, mask) in data.pairs(0..200) {
///     calibrator.observe(&mut cal, &scores, &mask)?;
/// }
/// let sets = calibrator.fit(&cal, Mode::bonferroni(Alpha::new(0.1)?, 1.0, 4.0)?)?;
/// let (scores, mask) = data.pair(1000);
/// let pred = sets.predict(&scores)?;
/// let cover = pred.coverage(&mask)?;
/// println!("inner ⊆ truth: {}, truth ⊆ outer: {}", cover.inner, cover.outer);
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Calibrator<TI, TO, C = Max> {
    inner: TI,
    outer: TO,
    combination: C,
    spacing: Spacing,
}

impl<TI: Transform, TO: Transform> Calibrator<TI, TO, Max> {
    /// Calibrate with transforms `f_I = inner`, `f_O = outer`, combination
    /// [`Max`] and unit spacing.
    pub fn new(inner: TI, outer: TO) -> Self {
        Calibrator { inner, outer, combination: Max, spacing: Spacing::unit() }
    }
}

impl<TI: Transform, TO: Transform, C: Combination> Calibrator<TI, TO, C> {
    /// Use this physical voxel spacing (seen by spatial transforms).
    #[must_use]
    pub fn with_spacing(mut self, spacing: Spacing) -> Self {
        self.spacing = spacing;
        self
    }

    /// Use another combination function.
    pub fn with_combination<C2: Combination>(self, combination: C2) -> Calibrator<TI, TO, C2> {
        Calibrator { inner: self.inner, outer: self.outer, combination, spacing: self.spacing }
    }

    /// The inner transform `f_I`.
    pub fn inner_transform(&self) -> &TI {
        &self.inner
    }

    /// The outer transform `f_O`.
    pub fn outer_transform(&self) -> &TO {
        &self.outer
    }

    /// The combination function.
    pub fn combination(&self) -> &C {
        &self.combination
    }

    /// The voxel spacing.
    pub fn spacing(&self) -> &Spacing {
        &self.spacing
    }

    /// `(tau, gamma)` of one labelled image: transforms, then the fused kernel.
    ///
    /// # Errors
    /// Shape mismatch between scores and mask, NaN in the scores (before or
    /// after transformation), non-binary mask values, or a transform error.
    pub fn statistics<A: Float, D: Dimension, M: MaskValue>(
        &self,
        scores: &ArrayRef<A, D>,
        mask: &ArrayRef<M, D>,
    ) -> Result<ImageStatistics> {
        check_shape("scores vs mask", mask, scores)?;
        // Spatial transforms (e.g. thresholding) can hide a NaN; check the input.
        check_nan("scores", scores)?;
        let fi = self.inner.apply(scores, &self.spacing)?;
        let fo = self.outer.apply(scores, &self.spacing)?;
        region_statistics(&fi, &fo, mask, &self.combination)
    }

    /// Add one labelled image to `calibration`. Errors name the image by its
    /// position in `calibration` (`calibration.len()` before the call).
    ///
    /// # Errors
    /// As [`Calibrator::statistics`].
    pub fn observe<A: Float, D: Dimension, M: MaskValue>(
        &self,
        calibration: &mut Calibration,
        scores: &ArrayRef<A, D>,
        mask: &ArrayRef<M, D>,
    ) -> Result<()> {
        let s = self.statistics(scores, mask).map_err(|e| e.in_image(calibration.len()))?;
        calibration.push(s);
        Ok(())
    }

    /// Calibration statistics of a batch-first stack `(N, spatial...)` of
    /// score images and masks. With the `rayon` feature, images are processed
    /// in parallel; the result is the same either way (in image order).
    ///
    /// # Errors
    /// As [`Calibrator::statistics`], for the first failing image (by index).
    /// [`Error::ShapeMismatch`] if the stacks differ in shape.
    pub fn calibrate_stack<A: Float, D: RemoveAxis, M: MaskValue>(
        &self,
        scores: &ArrayRef<A, D>,
        masks: &ArrayRef<M, D>,
    ) -> Result<Calibration>
    where
        TI: Sync,
        TO: Sync,
    {
        check_shape("scores stack vs masks stack", masks, scores)?;
        let stats = for_each_image(scores.len_of(Axis(0)), |i| {
            self.statistics(&scores.index_axis(Axis(0), i), &masks.index_axis(Axis(0), i))
        })?;
        Ok(stats.into_iter().collect())
    }

    /// Fit thresholds for `mode` and bundle them with the transforms.
    ///
    /// # Errors
    /// [`Error::NoCalibrationData`] if `calibration` is empty.
    pub fn fit(&self, calibration: &Calibration, mode: Mode) -> Result<ConfidenceSets<TI, TO, C>>
    where
        TI: Clone,
        TO: Clone,
    {
        let thresholds = calibration.thresholds(&mode)?;
        Ok(ConfidenceSets::from_parts(
            self.inner.clone(),
            self.outer.clone(),
            self.combination.clone(),
            self.spacing.clone(),
            mode,
            calibration.len(),
            thresholds,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2, ShapeBuilder};

    fn naive<A: Float>(fi: &Array2<A>, fo: &Array2<A>, m: &Array2<u8>) -> ImageStatistics {
        let mut tau = f64::NEG_INFINITY;
        let mut gamma = f64::NEG_INFINITY;
        for ((&x, &y), &v) in fi.iter().zip(fo.iter()).zip(m.iter()) {
            if v == 0 {
                tau = tau.max(x.to_f64_lossless());
            } else {
                gamma = gamma.max(-y.to_f64_lossless());
            }
        }
        ImageStatistics { tau, gamma }
    }

    #[test]
    fn all_negative_scores_are_not_zero() {
        // The masking-by-multiplication trap: max(s * (1 - Y)) would give 0.
        let f = array![[-3.0_f64, -1.0, -7.0], [-2.0, -5.0, -4.0]];
        let y = array![[0u8, 1, 1], [0, 0, 1]];
        let s = region_statistics(&f, &f, &y, &Max).unwrap();
        assert_eq!(s.tau, -2.0);
        assert_eq!(s.gamma, 7.0);
    }

    #[test]
    fn empty_regions_are_neg_inf() {
        let f = array![[1.0_f32, 2.0], [3.0, 4.0]];
        let s = region_statistics(&f, &f, &Array2::<u8>::ones((2, 2)), &Max).unwrap();
        assert_eq!(s.tau, f64::NEG_INFINITY);
        assert_eq!(s.gamma, -1.0);
        let s = region_statistics(&f, &f, &Array2::<bool>::from_elem((2, 2), false), &Max).unwrap();
        assert_eq!(s.tau, 4.0);
        assert_eq!(s.gamma, f64::NEG_INFINITY);
    }

    #[test]
    fn infinite_scores_are_legal() {
        let fi = array![[f64::INFINITY, 0.0], [f64::NEG_INFINITY, 1.0]];
        let fo = array![[0.0, f64::INFINITY], [f64::NEG_INFINITY, 1.0]];
        let y = array![[0u8, 1], [1, 0]];
        let s = region_statistics(&fi, &fo, &y, &Max).unwrap();
        assert_eq!(s.tau, f64::INFINITY);
        assert_eq!(s.gamma, f64::INFINITY); // -(-inf) on the object
    }

    #[test]
    fn kernel_matches_naive_across_lane_boundaries_and_layouts() {
        // sizes around multiples of LANES, and a transposed (non-contiguous) view
        for &(r, c) in &[(1, 1), (3, 5), (4, 4), (5, 7), (17, 3), (33, 9)] {
            let fi = Array2::from_shape_fn((r, c), |(i, j)| ((i * 31 + j * 17) % 23) as f64 - 11.5);
            let fo = Array2::from_shape_fn((r, c), |(i, j)| ((i * 7 + j * 13) % 19) as f64 - 9.0);
            let m = Array2::from_shape_fn((r, c), |(i, j)| u8::from((i + 2 * j) % 3 == 0));
            assert_eq!(region_statistics(&fi, &fo, &m, &Max).unwrap(), naive(&fi, &fo, &m));
            let (fit, fot, mt) = (fi.t(), fo.t(), m.t());
            let want = naive(&fit.to_owned(), &fot.to_owned(), &mt.to_owned());
            assert_eq!(region_statistics(&fit, &fot, &mt, &Max).unwrap(), want);
            let fortran = Array2::from_shape_vec((r, c).f(), fi.t().iter().copied().collect()).unwrap();
            assert_eq!(fortran, fi);
            assert_eq!(region_statistics(&fortran, &fo, &m, &Max).unwrap(), naive(&fi, &fo, &m));
        }
    }

    #[test]
    fn long_runs_match_naive_and_still_see_every_nan() {
        // A disk mask gives long runs (the run-by-run path); stripes of
        // width 1..5 give short ones (the select path); both in one image.
        let (r, c) = (70, 150);
        let m = Array2::from_shape_fn((r, c), |(i, j)| {
            let disk = (i as f64 - 35.0).powi(2) + (j as f64 - 50.0).powi(2) < 400.0;
            let stripes = j >= 100 && (j / (1 + i % 5)) % 2 == 0;
            u8::from(disk || stripes)
        });
        let fi = Array2::from_shape_fn((r, c), |(i, j)| ((i * 131 + j * 71) % 997) as f32 * 0.1 - 50.0);
        let fo = Array2::from_shape_fn((r, c), |(i, j)| ((i * 17 + j * 29) % 991) as f32 * 0.1 - 49.0);
        assert_eq!(region_statistics(&fi, &fo, &m, &Max).unwrap(), naive(&fi, &fo, &m));
        assert_eq!(region_statistics(&fi, &fi, &m, &Max).unwrap(), naive(&fi, &fi, &m));
        let bm = m.mapv(|v| v == 1);
        assert_eq!(region_statistics(&fi, &fo, &bm, &Max).unwrap(), naive(&fi, &fo, &m));
        // NaN where the run path does not take a max: f_I inside the object, f_O outside.
        for (arr, at, what) in [(0, [35, 50], "inner scores"), (1, [2, 3], "outer scores")] {
            let (mut a, mut b) = (fi.clone(), fo.clone());
            if arr == 0 {
                a[at] = f32::NAN;
            } else {
                b[at] = f32::NAN;
            }
            let e = region_statistics(&a, &b, &m, &Max).unwrap_err();
            assert_eq!(e, Error::NanScore { what, image: None, index: at.to_vec() });
        }
        let mut m2 = m.clone();
        m2[[35, 45]] = 7;
        let e = region_statistics(&fi, &fo, &m2, &Max).unwrap_err();
        assert_eq!(e, Error::NonBinaryMask { image: None, index: vec![35, 45], value: 7.0 });
    }

    #[test]
    fn errors_name_the_voxel() {
        let mut f = Array2::<f32>::zeros((5, 7));
        let m = Array2::<u8>::zeros((5, 7));
        f[[3, 6]] = f32::NAN;
        let e = region_statistics(&f, &Array2::zeros((5, 7)), &m, &Max).unwrap_err();
        assert_eq!(e, Error::NanScore { what: "inner scores", image: None, index: vec![3, 6] });
        let e = region_statistics(&Array2::zeros((5, 7)), &f, &m, &Max).unwrap_err();
        assert_eq!(e, Error::NanScore { what: "outer scores", image: None, index: vec![3, 6] });
        let mut m2 = m.clone();
        m2[[4, 2]] = 2;
        let e =
            region_statistics(&Array2::<f32>::zeros((5, 7)), &Array2::zeros((5, 7)), &m2, &Max).unwrap_err();
        assert_eq!(e, Error::NonBinaryMask { image: None, index: vec![4, 2], value: 2.0 });
        let e = region_statistics(
            &Array2::<f32>::zeros((5, 7)),
            &Array2::zeros((5, 7)),
            &Array2::<u8>::zeros((7, 5)),
            &Max,
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::ShapeMismatch { expected, found, .. } if expected == vec![7, 5] && found == vec![5, 7])
        );
    }

    #[test]
    fn observe_names_the_image() {
        let cal_ = Calibrator::new(crate::Identity, crate::Identity);
        let mut cal = Calibration::new();
        let ok = Array2::<f64>::zeros((2, 2));
        cal_.observe(&mut cal, &ok, &Array2::<u8>::zeros((2, 2))).unwrap();
        let mut bad = ok.clone();
        bad[[1, 0]] = f64::NAN;
        let e = cal_.observe(&mut cal, &bad, &Array2::<u8>::zeros((2, 2))).unwrap_err();
        assert_eq!(e, Error::NanScore { what: "scores", image: Some(1), index: vec![1, 0] });
        assert_eq!(cal.len(), 1);
    }

    #[test]
    fn modes() {
        let a = |x| Alpha::new(x).unwrap();
        assert!(matches!(
            Mode::bonferroni_split(a(0.1), a(0.05), a(0.06)),
            Err(Error::SplitExceedsAlpha { .. })
        ));
        assert!(Mode::bonferroni_split(a(0.1), a(0.02), a(0.08)).is_ok());
        assert!(Mode::bonferroni(a(0.1), 0.0, 1.0).is_err());
        assert!(Mode::bonferroni(a(0.1), f64::INFINITY, 1.0).is_err());
        let m = Mode::max(a(0.1));
        assert_eq!(m.kind(), ModeKind::Max);
        assert_eq!(Mode::marginal(a(0.05)).min_calibration_size(), 19);
        assert!(Calibration::new().thresholds(&m).is_err());
    }

    #[test]
    fn max_mode_uses_the_joint_statistic() {
        let cal: Calibration =
            (0..9).map(|i| ImageStatistics { tau: f64::from(i), gamma: f64::from(8 - i) * 0.5 }).collect();
        // joint = max(i, (8 - i)/2): [4, 3.5, 3, 3, 4, 5, 6, 7, 8]; n = 9, alpha = 0.5 -> k = 5 -> 4
        let t = cal.thresholds(&Mode::max(Alpha::new(0.5).unwrap())).unwrap();
        assert_eq!(t.inner, Threshold::OrderStatistic { k: 5, value: 4.0 });
        assert_eq!(t.inner, t.outer);
    }
}
