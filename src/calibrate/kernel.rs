//! The fused kernel: `(tau_i, gamma_i)` of one image in one pass over its
//! transformed scores and mask (METHOD.md §2), and the combination function
//! `C` it folds with.
//!
//! The max over an empty region is `-inf`; a region is never emulated by
//! multiplying with the mask (negative scores would then report 0).

use std::fmt;

use ndarray::{ArrayRef, Dimension};

use crate::error::Result;
use crate::float::Float;
use crate::image::{check_mask, check_nan, check_nonempty, check_shape};
use crate::mask::MaskValue;

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

/// The fused kernel folded over one image read in consecutive chunks of
/// voxels (row-major order): the same statistics as [`region_statistics`]
/// on the whole image, with one chunk in memory at a time. This is how a
/// voxel-wise reduction reads a large volume through a small, cache-resident
/// buffer.
///
/// ```
/// use confseg::calibrate::RegionFold;
/// use confseg::{region_statistics, Max};
/// use ndarray::array;
/// let f = array![[-3.0_f32, -1.0, 4.0], [-2.0, -5.0, 0.5]];
/// let y = array![[0u8, 1, 1], [0, 0, 1]];
/// let mut fold = RegionFold::new(f.shape(), Max);
/// let (fs, ys) = (f.as_slice().unwrap(), y.as_slice().unwrap());
/// for (a, b) in [(0, 4), (4, 6)] {
///     fold.push(&fs[a..b], None, &ys[a..b])?;
/// }
/// assert_eq!(fold.finish()?, region_statistics(&f, &f, &y, &Max)?);
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RegionFold<A, C> {
    combination: C,
    shape: Vec<usize>,
    tau: A,
    gamma: A,
    done: usize,
}

impl<A: Float, C: Combination> RegionFold<A, C> {
    /// A fold over an image of this shape.
    pub fn new(shape: &[usize], combination: C) -> Self {
        RegionFold {
            tau: combination.empty(),
            gamma: combination.empty(),
            combination,
            shape: shape.to_vec(),
            done: 0,
        }
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
        let fo = fo.unwrap_or(fi);
        let c = &self.combination;
        let out = fused_kernel(fi, fo, mask, c);
        let at = |p: usize| crate::image::unravel(self.done + p, &self.shape);
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
        Ok(ImageStatistics { tau: self.tau.to_f64_lossless(), gamma: self.gamma.to_f64_lossless() })
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
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if the three shapes differ, [`Error::NanScore`](crate::Error::NanScore)
/// for a NaN score, [`Error::NonBinaryMask`](crate::Error::NonBinaryMask) for a mask value other than 0/1.
pub fn region_statistics<A: Float, D: Dimension, M: MaskValue, C: Combination>(
    inner: &ArrayRef<A, D>,
    outer: &ArrayRef<A, D>,
    mask: &ArrayRef<M, D>,
    combination: &C,
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
}
