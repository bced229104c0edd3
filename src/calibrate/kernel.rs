//! The fused kernel: `(tau_i, gamma_i)` of one image in one pass over its
//! transformed scores and mask (METHOD.md §2), folded with the maximum
//! (the paper's combination function).
//!
//! The max over an empty region is `-inf`; a region is never emulated by
//! multiplying with the mask (negative scores would then report 0).

use std::fmt;

use ndarray::{ArrayRef, Dimension};

use crate::error::Result;
use crate::float::Float;
use crate::image::{check_nan, check_nonempty, check_shape};
use crate::mask::check_mask;
use crate::mask::MaskValue;
use crate::tolerance::Tolerances;

use super::tolerance::TolerantFold;

/// A combination function `C(A, image)`: reduces the transformed scores of
/// a region to one statistic (METHOD.md §4, last paragraph). Internal: the
/// kernel is written for any such fold, and [`Max`] is the one the method
/// uses.
///
/// It is a fold with a scalar accumulator: `empty` is `C(∅)`, `push` adds a
/// voxel, `merge` joins two partial folds (the kernel folds in several lanes).
/// For the guarantees to hold it must satisfy `voxel(x) <= C(A)` whenever
/// `x` is the score of a voxel in `A`.
pub(crate) trait Combination: Clone + fmt::Debug + Send + Sync {
    /// `C(∅)`.
    fn empty<A: Float>(&self) -> A;
    /// Fold one voxel's transformed score into the accumulator.
    fn push<A: Float>(&self, acc: A, x: A) -> A;
    /// Join two accumulators.
    fn merge<A: Float>(&self, a: A, b: A) -> A;
}

/// The maximum: the combination function of the paper. `C(∅) = -inf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Max;

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

/// Voxels per chunk: the mask is classified, and the scores folded, 16
/// voxels at a time (two 256-bit vectors of `f32`, four of `f64`).
const LANES: usize = 16;

/// Voxels per block: a block inside a run is classified once (four chunks).
const BLOCK: usize = 4 * LANES;

struct KernelOutput<A> {
    tau: A,
    gamma: A,
    nan: bool,
    non_binary: bool,
}

/// A NaN flag as wide as the scores' lanes (`u32` for `f32`, `u64` for
/// `f64`), so that an unordered comparison's lane mask is or-ed in as it is,
/// with no narrowing shuffles between lanes.
trait NanFlag: Copy + Default + std::ops::BitOr<Output = Self> + PartialEq {
    /// All ones if `b`, else zero (the comparison's own lane mask).
    fn of(b: bool) -> Self;
}

impl NanFlag for u32 {
    #[inline(always)]
    fn of(b: bool) -> Self {
        u32::from(b).wrapping_neg()
    }
}

impl NanFlag for u64 {
    #[inline(always)]
    fn of(b: bool) -> Self {
        u64::from(b).wrapping_neg()
    }
}

/// The fused kernel: both region statistics and the NaN / non-binary flags
/// in one pass over the image.
///
/// Written by hand because no crate fuses a masked two-region reduction with
/// validation. Masks come in runs (objects are blobs), so the kernel reads
/// the mask `LANES` values at a time: a chunk that is all background is a
/// plain lane-wise max of `f_I`, a chunk that is all object a plain max of
/// `-f_O`, with no per-voxel select and no widening of the mask to the
/// scores' width; only chunks that straddle a boundary take the branch-free
/// per-voxel select, and the last, partial chunk a scalar loop. NaN is
/// checked in the same pass by unordered comparisons (one comparison checks
/// `f_I(v)` and `f_O(v)`; each score is read once when `f_I = f_O`). All
/// paths apply `C` to the same values, so the statistics do not depend on
/// the path.
///
/// The loop is compiled twice: for the baseline target, and for AVX2 (x86-64
/// v3) where the processor has it, chosen at run time through `pulp`'s safe
/// dispatch (no `unsafe` in this crate). Everything it calls is
/// `#[inline(always)]` so that it is compiled for the chosen target.
fn fused_kernel<A: Float, M: MaskValue, C: Combination>(
    fi: &[A],
    fo: &[A],
    m: &[M],
    c: &C,
) -> KernelOutput<A> {
    struct Op<'a, A, M, C> {
        fi: &'a [A],
        fo: &'a [A],
        m: &'a [M],
        c: &'a C,
    }
    impl<A: Float, M: MaskValue, C: Combination> pulp::WithSimd for Op<'_, A, M, C> {
        type Output = KernelOutput<A>;
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) -> KernelOutput<A> {
            let Op { fi, fo, m, c } = self;
            // NaN flags as wide as a score: no narrowing of comparison masks
            match (std::mem::size_of::<A>() == 4, std::ptr::eq(fi, fo)) {
                (true, true) => chunks::<A, M, C, u32, true>(fi, fo, m, c),
                (true, false) => chunks::<A, M, C, u32, false>(fi, fo, m, c),
                (false, true) => chunks::<A, M, C, u64, true>(fi, fo, m, c),
                (false, false) => chunks::<A, M, C, u64, false>(fi, fo, m, c),
            }
        }
    }
    let n = fi.len().min(fo.len()).min(m.len());
    pulp::Arch::new().dispatch(Op { fi: &fi[..n], fo: &fo[..n], m: &m[..n], c })
}

/// The kernel's loop over chunks (see [`fused_kernel`]); `SAME` when `fi`
/// and `fo` are one array.
///
/// The lane accumulators are only ever indexed at constant positions (a
/// position known only at run time would keep them in memory, and the
/// compiler turns selects of lanes in memory into masked stores, which are
/// slow).
#[inline(always)]
fn chunks<A: Float, M: MaskValue, C: Combination, N: NanFlag, const SAME: bool>(
    fi: &[A],
    fo: &[A],
    m: &[M],
    c: &C,
) -> KernelOutput<A> {
    let mut tau = [c.empty::<A>(); LANES];
    let mut gamma = [c.empty::<A>(); LANES];
    let mut nan = [N::default(); LANES];
    let mut non_binary = false;
    // blocks of four chunks: a block inside a run (all values equal) is
    // classified once; the chunks of a block that straddles a boundary
    // one by one
    let (mb, m_rest) = m.as_chunks::<BLOCK>();
    let (xb, x_rest) = fi.as_chunks::<BLOCK>();
    let (yb, y_rest) = fo.as_chunks::<BLOCK>();
    for ((mv, x), y) in mb.iter().zip(xb).zip(yb) {
        let (xc, yc) = (x.as_chunks::<LANES>().0, y.as_chunks::<LANES>().0);
        let first = mv[0];
        if *mv == [first; BLOCK] && first.is_binary() {
            if first.is_object() {
                for (x, y) in xc.iter().zip(yc) {
                    fold_chunk::<A, C, true>(y, c, &mut gamma);
                    nan_chunk::<A, N, SAME>(x, y, &mut nan);
                }
            } else {
                for (x, y) in xc.iter().zip(yc) {
                    fold_chunk::<A, C, false>(x, c, &mut tau);
                    nan_chunk::<A, N, SAME>(x, y, &mut nan);
                }
            }
        } else {
            for ((mv, x), y) in mv.as_chunks::<LANES>().0.iter().zip(xc).zip(yc) {
                non_binary |= chunk_step::<A, M, C, N, SAME>(mv, x, y, c, &mut tau, &mut gamma, &mut nan);
            }
            if non_binary {
                break;
            }
        }
    }
    let (mc, mr) = m_rest.as_chunks::<LANES>();
    let (xc, xr) = x_rest.as_chunks::<LANES>();
    let (yc, yr) = y_rest.as_chunks::<LANES>();
    if !non_binary {
        for ((mv, x), y) in mc.iter().zip(xc).zip(yc) {
            non_binary |= chunk_step::<A, M, C, N, SAME>(mv, x, y, c, &mut tau, &mut gamma, &mut nan);
        }
    }
    // the last, partial chunk: scalar accumulators
    let (mut tau_r, mut gamma_r, mut nan_r) = (c.empty::<A>(), c.empty::<A>(), false);
    if !non_binary {
        for ((&x, &y), &mv) in xr.iter().zip(yr).zip(mr) {
            non_binary |= !mv.is_binary();
            nan_r |= x.is_nan() || y.is_nan();
            if mv.is_object() {
                gamma_r = c.push(gamma_r, -y);
            } else {
                tau_r = c.push(tau_r, x);
            }
        }
    }
    KernelOutput {
        tau: tau.iter().fold(tau_r, |a, &b| c.merge(a, b)),
        gamma: gamma.iter().fold(gamma_r, |a, &b| c.merge(a, b)),
        nan: nan_r || nan.iter().any(|&b| b != N::default()),
        non_binary,
    }
}

/// One chunk of any mask: a plain fold of one region if the chunk is
/// uniform, else the per-voxel select. Returns whether a mask value is not
/// 0/1 (then nothing is folded).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn chunk_step<A: Float, M: MaskValue, C: Combination, N: NanFlag, const SAME: bool>(
    mv: &[M; LANES],
    x: &[A; LANES],
    y: &[A; LANES],
    c: &C,
    tau: &mut [A; LANES],
    gamma: &mut [A; LANES],
    nan: &mut [N; LANES],
) -> bool {
    // a uniform chunk lies in one region (array equality: for byte masks
    // one vector compare with a broadcast and one move-mask)
    let first = mv[0];
    if *mv == [first; LANES] && first.is_binary() {
        if first.is_object() {
            fold_chunk::<A, C, true>(y, c, gamma);
        } else {
            fold_chunk::<A, C, false>(x, c, tau);
        }
        nan_chunk::<A, N, SAME>(x, y, nan);
    } else if mv.iter().all(|v| v.is_binary()) {
        select_chunk(x, y, mv, c, tau, gamma, nan);
    } else {
        return true;
    }
    false
}

/// Fold one chunk (negated if `NEG`) into the lane accumulators: one lane
/// per position, so the compiler emits vector max operations.
#[inline(always)]
fn fold_chunk<A: Float, C: Combination, const NEG: bool>(x: &[A; LANES], c: &C, acc: &mut [A; LANES]) {
    for l in 0..LANES {
        acc[l] = c.push(acc[l], if NEG { -x[l] } else { x[l] });
    }
}

/// Accumulate "some value is NaN" over a chunk of `fi` and `fo`: an
/// unordered comparison is true iff either operand is NaN, so one
/// comparison checks two values (`x[l]` against `y[l]`, or, when they are
/// one array, two positions of `x`).
#[inline(always)]
fn nan_chunk<A: Float, N: NanFlag, const SAME: bool>(x: &[A; LANES], y: &[A; LANES], nan: &mut [N; LANES]) {
    if SAME {
        for l in 0..LANES / 2 {
            nan[l] = nan[l] | N::of(x[l].partial_cmp(&x[l + LANES / 2]).is_none());
        }
    } else {
        for l in 0..LANES {
            nan[l] = nan[l] | N::of(x[l].partial_cmp(&y[l]).is_none());
        }
    }
}

/// Branch-free per-voxel kernel for a chunk of a mixed (0/1) mask: each
/// voxel updates both accumulators through selects of whole values, every
/// lane written (a conditional update in place is compiled to masked
/// stores).
#[inline(always)]
fn select_chunk<A: Float, M: MaskValue, C: Combination, N: NanFlag>(
    x: &[A; LANES],
    y: &[A; LANES],
    m: &[M; LANES],
    c: &C,
    tau: &mut [A; LANES],
    gamma: &mut [A; LANES],
    nan: &mut [N; LANES],
) {
    let (t0, g0) = (*tau, *gamma);
    for l in 0..LANES {
        let obj = m[l].is_object();
        let (t, g) = (c.push(t0[l], x[l]), c.push(g0[l], -y[l]));
        tau[l] = if obj { t0[l] } else { t };
        gamma[l] = if obj { g } else { g0[l] };
        nan[l] = nan[l] | N::of(x[l].partial_cmp(&y[l]).is_none());
    }
}

/// The fused kernel folded over one image read in consecutive chunks of
/// voxels (row-major order): the same statistics as [`region_statistics`]
/// on the whole image, with one chunk in memory at a time. This is how a
/// voxel-wise reduction reads a large volume through a small, cache-resident
/// buffer.
///
/// ```
/// use confseg::calibrate::RegionFold;
/// use confseg::calibrate::region_statistics;
/// use ndarray::array;
/// let f = array![[-3.0_f32, -1.0, 4.0], [-2.0, -5.0, 0.5]];
/// let y = array![[0u8, 1, 1], [0, 0, 1]];
/// let mut fold = RegionFold::new(f.shape());
/// let (fs, ys) = (f.as_slice().unwrap(), y.as_slice().unwrap());
/// for (a, b) in [(0, 4), (4, 6)] {
///     fold.push(&fs[a..b], None, &ys[a..b])?;
/// }
/// assert_eq!(fold.finish()?, region_statistics(&f, &f, &y)?);
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RegionFold<A> {
    shape: Vec<usize>,
    tau: A,
    gamma: A,
    done: usize,
    tolerant: TolerantFold<A>,
}

impl<A: Float> RegionFold<A> {
    /// A fold over an image of this shape.
    #[must_use]
    pub fn new(shape: &[usize]) -> Self {
        RegionFold {
            tau: Max.empty(),
            gamma: Max.empty(),
            shape: shape.to_vec(),
            done: 0,
            tolerant: TolerantFold::new(&Tolerances::NONE, 1.0),
        }
    }

    /// The same fold for tolerance events ([`crate::tolerance`]): each
    /// side with a tolerance keeps what its statistic needs next to the
    /// maxima; `voxel_volume` (mm³) turns volumes into counts.
    /// [`Calibrator::fold`](crate::Calibrator::fold) makes the fold of a
    /// calibrator's tolerances and an image's spacing.
    #[must_use]
    pub fn with_tolerances(mut self, tolerances: &Tolerances, voxel_volume: f64) -> Self {
        self.tolerant = TolerantFold::new(tolerances, voxel_volume);
        self
    }

    /// Number of voxels folded so far.
    #[must_use]
    pub fn done(&self) -> usize {
        self.done
    }

    /// Fold the next chunk: transformed inner scores, outer scores (`None`
    /// when `f_O = f_I`: read once) and mask values, all of one length.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) for chunks of
    /// different lengths or past the image's end;
    /// [`Error::NanScore`](crate::Error::NanScore) /
    /// [`Error::NonBinaryMask`](crate::Error::NonBinaryMask) naming the voxel
    /// in the image.
    pub fn push<M: MaskValue>(&mut self, fi: &[A], fo: Option<&[A]>, mask: &[M]) -> Result<()> {
        let n = fi.len();
        let total: usize = self.shape.iter().product();
        if fo.is_some_and(|o| o.len() != n) || mask.len() != n || self.done + n > total {
            return Err(crate::error::Error::ShapeMismatch {
                what: "chunk of inner scores, outer scores and mask",
                image: None,
                expected: vec![n, n, n.min(total - self.done)],
                found: vec![n, fo.map_or(n, <[A]>::len), mask.len()],
            });
        }
        if let Some((fi, fo, mask)) = neutralize(fi, fo, mask) {
            // the same voxels, at the same positions (errors name them)
            return self.push(&fi, fo.as_deref(), &mask);
        }
        let fo = fo.unwrap_or(fi);
        let c = &Max;
        let out = fused_kernel(fi, fo, mask, c);
        let at = |p: usize| crate::grid::unravel(self.done + p, &self.shape);
        if out.nan {
            for (what, xs) in [("inner scores", fi), ("outer scores", fo)] {
                if let Some(p) = xs.iter().position(|x| x.is_nan()) {
                    return Err(crate::error::Error::NanScore { what, image: None, index: at(p) });
                }
            }
        }
        if out.non_binary {
            if let Some(p) = mask.iter().position(|v| !v.is_binary()) {
                let value = mask[p].to_f64();
                return Err(crate::error::Error::NonBinaryMask { image: None, index: at(p), value });
            }
        }
        self.tau = c.merge(self.tau, out.tau);
        self.gamma = c.merge(self.gamma, out.gamma);
        if self.tolerant.is_active() {
            self.tolerant.push(fi, fo, mask);
        }
        self.done += n;
        Ok(())
    }

    /// The statistics of the image.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if fewer voxels
    /// were folded than the image has.
    pub fn finish(self) -> Result<ImageStatistics> {
        check_nonempty(&self.shape)?;
        let total: usize = self.shape.iter().product();
        if self.done != total {
            return Err(crate::error::Error::ShapeMismatch {
                what: "voxels folded vs image",
                image: None,
                expected: vec![total],
                found: vec![self.done],
            });
        }
        let max = ImageStatistics { tau: self.tau.to_f64_lossless(), gamma: self.gamma.to_f64_lossless() };
        Ok(self.tolerant.finish(max))
    }
}

/// For a mask with ignored voxels ([`Voxel::Ignored`](crate::mask::Voxel)):
/// copies in which each ignored voxel is background with `f_I = f_O = -inf`
/// (`None` if there is none). No statistic counts such a voxel: it never
/// raises `tau` (a max over the background), is no object voxel for
/// `gamma` or the outer tolerances, and is in no inner set `{f_I > λ}`
/// for any `λ` the tolerance folds can return (`-inf` is theirs when
/// nothing else qualifies, with or without it). Its scores, NaN or not,
/// are not looked at.
#[allow(clippy::type_complexity)]
fn neutralize<A: Float, M: MaskValue>(
    fi: &[A],
    fo: Option<&[A]>,
    mask: &[M],
) -> Option<(Vec<A>, Option<Vec<A>>, Vec<u8>)> {
    if !M::MAY_IGNORE || !mask.iter().any(|m| m.is_ignored()) {
        return None;
    }
    let neutral = |xs: &[A]| -> Vec<A> {
        xs.iter().zip(mask).map(|(&x, m)| if m.is_ignored() { A::neg_infinity() } else { x }).collect()
    };
    let codes = mask.iter().map(|m| if m.is_ignored() { 0 } else { u8::from(m.is_object()) }).collect();
    Some((neutral(fi), fo.map(neutral), codes))
}

/// Compute `(tau, gamma)` of one image from already transformed inner and
/// outer scores, in one fused pass. Ignored voxels of a
/// [`Voxel`](crate::mask::Voxel) mask count in neither region.
///
/// ```
/// use confseg::calibrate::region_statistics;
/// use ndarray::array;
/// let f = array![[-3.0_f32, -1.0], [-2.0, -5.0]];
/// let y = array![[0u8, 1], [0, 0]];
/// let s = region_statistics(&f, &f, &y)?;
/// assert_eq!(s.tau, -2.0);   // max over background, not 0
/// assert_eq!(s.gamma, 1.0);  // max of -f over the object
/// # Ok::<(), confseg::Error>(())
/// ```
///
/// # Errors
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if the three shapes differ, [`Error::NanScore`](crate::Error::NanScore)
/// for a NaN score, [`Error::NonBinaryMask`](crate::Error::NonBinaryMask) for a mask value other than 0/1.
pub fn region_statistics<A: Float, D: Dimension, M: MaskValue>(
    inner: &ArrayRef<A, D>,
    outer: &ArrayRef<A, D>,
    mask: &ArrayRef<M, D>,
) -> Result<ImageStatistics> {
    check_shape("inner scores vs mask", mask, inner)?;
    check_shape("outer scores vs mask", mask, outer)?;
    check_nonempty(mask.shape())?;
    let fi = inner.as_standard_layout();
    let fo = outer.as_standard_layout();
    let m = mask.as_standard_layout();
    // `as_standard_layout` returns contiguous row-major arrays, so these are `Some`.
    let (Some(fis), Some(fos), Some(ms)) = (fi.as_slice(), fo.as_slice(), m.as_slice()) else {
        unreachable!("standard layout arrays are contiguous")
    };
    if let Some((ni, no, nm)) = neutralize(fis, Some(fos), ms) {
        let no = no.as_deref().unwrap_or(&ni);
        let out = fused_kernel(&ni, no, &nm, &Max);
        if out.nan {
            for (what, xs) in [("inner scores", &ni[..]), ("outer scores", no)] {
                if let Some(p) = xs.iter().position(|x| x.is_nan()) {
                    let index = crate::grid::unravel(p, mask.shape());
                    return Err(crate::error::Error::NanScore { what, image: None, index });
                }
            }
        }
        return Ok(ImageStatistics { tau: out.tau.to_f64_lossless(), gamma: out.gamma.to_f64_lossless() });
    }
    let out = fused_kernel(fis, fos, ms, &Max);
    if out.nan {
        check_nan("inner scores", &fi)?;
        check_nan("outer scores", &fo)?;
    }
    if out.non_binary {
        check_mask(&m)?;
    }
    Ok(ImageStatistics { tau: out.tau.to_f64_lossless(), gamma: out.gamma.to_f64_lossless() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
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
        let s = region_statistics(&f, &f, &y).unwrap();
        assert_eq!(s.tau, -2.0);
        assert_eq!(s.gamma, 7.0);
    }

    #[test]
    fn empty_regions_are_neg_inf() {
        let f = array![[1.0_f32, 2.0], [3.0, 4.0]];
        let s = region_statistics(&f, &f, &Array2::<u8>::ones((2, 2))).unwrap();
        assert_eq!(s.tau, f64::NEG_INFINITY);
        assert_eq!(s.gamma, -1.0);
        let s = region_statistics(&f, &f, &Array2::<bool>::from_elem((2, 2), false)).unwrap();
        assert_eq!(s.tau, 4.0);
        assert_eq!(s.gamma, f64::NEG_INFINITY);
    }

    #[test]
    fn infinite_scores_are_legal() {
        let fi = array![[f64::INFINITY, 0.0], [f64::NEG_INFINITY, 1.0]];
        let fo = array![[0.0, f64::INFINITY], [f64::NEG_INFINITY, 1.0]];
        let y = array![[0u8, 1], [1, 0]];
        let s = region_statistics(&fi, &fo, &y).unwrap();
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
            assert_eq!(region_statistics(&fi, &fo, &m).unwrap(), naive(&fi, &fo, &m));
            let (fit, fot, mt) = (fi.t(), fo.t(), m.t());
            let want = naive(&fit.to_owned(), &fot.to_owned(), &mt.to_owned());
            assert_eq!(region_statistics(&fit, &fot, &mt).unwrap(), want);
            let fortran = Array2::from_shape_vec((r, c).f(), fi.t().iter().copied().collect()).unwrap();
            assert_eq!(fortran, fi);
            assert_eq!(region_statistics(&fortran, &fo, &m).unwrap(), naive(&fi, &fo, &m));
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
        assert_eq!(region_statistics(&fi, &fo, &m).unwrap(), naive(&fi, &fo, &m));
        assert_eq!(region_statistics(&fi, &fi, &m).unwrap(), naive(&fi, &fi, &m));
        let bm = m.mapv(|v| v == 1);
        assert_eq!(region_statistics(&fi, &fo, &bm).unwrap(), naive(&fi, &fo, &m));
        // NaN where the run path does not take a max: f_I inside the object, f_O outside.
        for (arr, at, what) in [(0, [35, 50], "inner scores"), (1, [2, 3], "outer scores")] {
            let (mut a, mut b) = (fi.clone(), fo.clone());
            if arr == 0 {
                a[at] = f32::NAN;
            } else {
                b[at] = f32::NAN;
            }
            let e = region_statistics(&a, &b, &m).unwrap_err();
            assert_eq!(e, Error::NanScore { what, image: None, index: at.to_vec() });
        }
        let mut m2 = m.clone();
        m2[[35, 45]] = 7;
        let e = region_statistics(&fi, &fo, &m2).unwrap_err();
        assert_eq!(e, Error::NonBinaryMask { image: None, index: vec![35, 45], value: 7.0 });
    }

    #[test]
    fn errors_name_the_voxel() {
        let mut f = Array2::<f32>::zeros((5, 7));
        let m = Array2::<u8>::zeros((5, 7));
        f[[3, 6]] = f32::NAN;
        let e = region_statistics(&f, &Array2::zeros((5, 7)), &m).unwrap_err();
        assert_eq!(e, Error::NanScore { what: "inner scores", image: None, index: vec![3, 6] });
        let e = region_statistics(&Array2::zeros((5, 7)), &f, &m).unwrap_err();
        assert_eq!(e, Error::NanScore { what: "outer scores", image: None, index: vec![3, 6] });
        let mut m2 = m.clone();
        m2[[4, 2]] = 2;
        let e = region_statistics(&Array2::<f32>::zeros((5, 7)), &Array2::zeros((5, 7)), &m2).unwrap_err();
        assert_eq!(e, Error::NonBinaryMask { image: None, index: vec![4, 2], value: 2.0 });
        let e = region_statistics(
            &Array2::<f32>::zeros((5, 7)),
            &Array2::zeros((5, 7)),
            &Array2::<u8>::zeros((7, 5)),
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::ShapeMismatch { expected, found, .. } if expected == vec![7, 5] && found == vec![5, 7])
        );
    }
}
