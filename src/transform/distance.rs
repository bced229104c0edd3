//! Signed distance of the predicted mask (METHOD.md §5): exact, linear-time,
//! n-dimensional, with anisotropic voxel spacing.
//!
//! # Definition (midpoint convention, the paper's)
//!
//! For the predicted mask `A = { v : s(v) > t }`, the boundary `E(A)` is the
//! set of midpoints `(a + b) / 2` between each voxel `a` in `A` and each
//! face-adjacent voxel `b` of the image that is not in `A` (the 0.5-level set
//! of marching squares/cubes on a binary image; the image border is not a
//! boundary). Then
//!
//! ```text
//! d(A, v) = +rho(v, E(A))   if v in A
//!         = -rho(v, E(A))   otherwise,        rho(v, E) = min { rho(v, e) : e in E }
//! ```
//!
//! so `|d| >= 1/2` (times the spacing) everywhere. An empty `A` has no
//! boundary: `d = -inf` everywhere; a full `A`: `+inf` everywhere.
//!
//! # Voxel-centre convention (scipy, MATLAB)
//!
//! [`DistanceConvention::VoxelCentre`] measures to the nearest voxel *centre*
//! on the other side instead: `+edt(A)` inside and `-edt(not A)` outside,
//! where `edt(B)(v)` is the distance from `v` to the nearest voxel not in `B`
//! — exactly `scipy.ndimage.distance_transform_edt(A) -
//! distance_transform_edt(~A)` (with `sampling=spacing`) and MATLAB's
//! `bwdist(~A) - bwdist(A)`. Here `|d| >= 1`. The same ±inf rules apply.
//! For unit spacing and the city-block metric the two conventions differ by
//! exactly 1/2 at every voxel; for Euclidean distance they do not (the
//! nearest midpoint need not lie next to the nearest centre).
//!
//! # Metrics and spacing
//!
//! With spacing `s` (physical size of a voxel along each axis), offsets are
//! measured in physical units `x_j = s_j * i_j`, and
//!
//! * [`Metric::Euclidean`]: `sqrt(sum_j (s_j dx_j)^2)`;
//! * [`Metric::Chessboard`]: `max_j s_j |dx_j|`;
//! * [`Metric::CityBlock`]: `sum_j s_j |dx_j|`.
//!
//! For unit spacing these are the usual grid metrics; for anisotropic
//! spacing they are the weighted versions above, and all three are exact.
//!
//! # Algorithm
//!
//! The exact linear-time engine (one separable lower-envelope pass per
//! axis, threads and SIMD with bit-identical results) is the crate's grid
//! layer, shared with the boxes, the morphological footprints and the
//! validation's Hausdorff distances and band widths.
//!
//! # Spacing and float type
//!
//! Distances are computed in the image's float type. A spacing whose
//! distances, or the envelopes' intermediate values, would not be finite in
//! that type (for example `1e300` or `1e-300` in `f32`, which round to
//! `inf` and `0`) is an [`Error::InvalidSpacing`]; see [`distance_spacing`].

use std::fmt;

use ndarray::{Array, ArrayRef, CowArray, Dimension};

use super::{check_mask_threshold, EmptyPrediction, Spacing, Transform};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::grid::edt::signed_distance_flat;
pub use crate::grid::edt::{DistanceConvention, Metric};
use crate::mask::MaskValue;

/// The signed distance transform of the predicted mask `scores > t`
/// (positive inside, negative outside, ±inf for an empty / full mask); see
/// the [module docs](self) for the definition.
///
/// Used as the outer transform `f_O` it gives outer sets that are the
/// predicted mask grown by a calibrated margin; as the inner transform, the
/// predicted mask shrunk by one.
///
/// ```
/// use confseg::{Metric, SignedDistance, Spacing, Transform};
/// use confseg::transform::EmptyPrediction;
/// use ndarray::array;
/// let scores = array![[-1.0_f64, -1.0, -1.0, -1.0], [-1.0, 2.0, 3.0, -1.0]];
/// let d = SignedDistance::new(Metric::Euclidean).apply(&scores, &Spacing::unit())?;
/// assert_eq!(d[[1, 1]], 0.5); // inside, half a voxel from the boundary
/// assert_eq!(d[[0, 0]], -(0.5_f64.powi(2) + 1.0).sqrt()); // to the midpoint (0.5, 1)
/// assert_eq!(d[[1, 3]], -0.5);
///
/// // Nothing predicted: -inf everywhere.
/// let nothing = array![-1.0_f32, -2.0];
/// let none = SignedDistance::default().apply(&nothing, &Spacing::unit())?;
/// assert!(none.iter().all(|&x| x == f32::NEG_INFINITY));
/// // ... unless another policy is chosen (see [`EmptyPrediction`]).
/// let fallback = SignedDistance::default().with_empty(EmptyPrediction::Value(-100.0));
/// assert!(fallback.apply(&nothing, &Spacing::unit())?.iter().all(|&x| x == -100.0));
/// # Ok::<(), confseg::Error>(())
/// ```
///
/// [`EmptyPrediction`]: super::EmptyPrediction
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "SignedDistanceRepr", into = "SignedDistanceRepr"))]
pub struct SignedDistance {
    metric: Metric,
    convention: DistanceConvention,
    mask_threshold: f64,
    empty: EmptyPrediction,
}

#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
struct SignedDistanceRepr {
    metric: Metric,
    convention: DistanceConvention,
    mask_threshold: f64,
    #[serde(default)]
    empty: EmptyPrediction,
}

#[cfg(feature = "serde")]
impl TryFrom<SignedDistanceRepr> for SignedDistance {
    type Error = Error;
    fn try_from(r: SignedDistanceRepr) -> Result<Self> {
        Ok(SignedDistance::new(r.metric)
            .with_convention(r.convention)
            .with_mask_threshold(r.mask_threshold)?
            .with_empty(r.empty))
    }
}

#[cfg(feature = "serde")]
impl From<SignedDistance> for SignedDistanceRepr {
    fn from(d: SignedDistance) -> Self {
        SignedDistanceRepr {
            metric: d.metric,
            convention: d.convention,
            mask_threshold: d.mask_threshold,
            empty: d.empty,
        }
    }
}

impl SignedDistance {
    /// Signed distance with `metric`, the midpoint convention, mask
    /// threshold 0 (logits) and `-inf` for an empty prediction.
    #[must_use]
    pub fn new(metric: Metric) -> Self {
        SignedDistance {
            metric,
            convention: DistanceConvention::Midpoint,
            mask_threshold: 0.0,
            empty: EmptyPrediction::NegInf,
        }
    }

    /// What to return when the predicted mask is empty.
    #[must_use]
    pub fn with_empty(mut self, empty: EmptyPrediction) -> Self {
        self.empty = empty;
        self
    }

    /// The empty-prediction policy.
    #[must_use]
    pub fn empty(&self) -> EmptyPrediction {
        self.empty
    }

    /// Use another boundary convention.
    #[must_use]
    pub fn with_convention(mut self, convention: DistanceConvention) -> Self {
        self.convention = convention;
        self
    }

    /// Predicted mask = `scores > t`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `t` is not finite.
    pub fn with_mask_threshold(mut self, t: f64) -> Result<Self> {
        check_mask_threshold(t)?;
        self.mask_threshold = t;
        Ok(self)
    }

    /// The metric.
    #[must_use]
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// The boundary convention.
    #[must_use]
    pub fn convention(&self) -> DistanceConvention {
        self.convention
    }

    /// The predicted-mask threshold `t`.
    #[must_use]
    pub fn mask_threshold(&self) -> f64 {
        self.mask_threshold
    }

    /// Signed distance of a given binary mask (values 0/1 or bool), in the
    /// float type `A`. [`Transform::apply`] is this on `scores > t`.
    ///
    /// ```
    /// use confseg::{Metric, SignedDistance, Spacing};
    /// use confseg::transform::DistanceConvention;
    /// use ndarray::array;
    /// let mask = array![0u8, 1, 1, 1, 0, 0];
    /// let mid = SignedDistance::new(Metric::Euclidean);
    /// let d = mid.of_mask::<f64, _, _>(&mask, &Spacing::unit())?;
    /// assert_eq!(d, array![-0.5, 0.5, 1.5, 0.5, -0.5, -1.5]);
    /// // scipy / MATLAB convention: distances between voxel centres.
    /// let centre = mid.with_convention(DistanceConvention::VoxelCentre);
    /// let d = centre.of_mask::<f64, _, _>(&mask, &Spacing::new(vec![2.0])?)?;
    /// assert_eq!(d, array![-2.0, 2.0, 4.0, 2.0, -2.0, -4.0]);
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NonBinaryMask`] for a value other than 0/1,
    /// [`Error::InvalidSpacing`] if the spacing does not fit the dimension
    /// or the float type `A`, [`Error::InvalidParameter`] for an axis too
    /// long for `A` (see [`distance_spacing`]).
    pub fn of_mask<A: Float, M: MaskValue, D: Dimension>(
        &self,
        mask: &ArrayRef<M, D>,
        spacing: &Spacing,
    ) -> Result<Array<A, D>> {
        crate::mask::check_mask(mask)?;
        let spacing = distance_spacing::<A>(spacing, mask.shape())?;
        let bits: Vec<bool> = mask.iter().map(|m| m.is_object()).collect();
        let out = signed_distance_flat::<A>(&bits, mask.shape(), &spacing, self.metric, self.convention);
        Ok(from_flat(mask.raw_dim(), out))
    }
}

impl Transform for SignedDistance {
    /// # Errors
    /// [`Error::NanScore`] for a NaN score (it has no side of the threshold),
    /// [`Error::InvalidSpacing`] if the spacing does not fit the dimension
    /// or the float type `A`, [`Error::InvalidParameter`] for an axis too
    /// long for `A` (see [`distance_spacing`]).
    fn apply<'a, A: Float, D: Dimension>(
        &self,
        scores: &'a ArrayRef<A, D>,
        spacing: &Spacing,
    ) -> Result<CowArray<'a, A, D>> {
        let mut bits = predicted_mask(scores, self.mask_threshold)?;
        let spacing = distance_spacing::<A>(spacing, scores.shape())?;
        if let Some(c) = self.empty.apply(&mut bits, scores)? {
            return Ok(CowArray::from(Array::from_elem(scores.raw_dim(), c)));
        }
        let out = signed_distance_flat::<A>(&bits, scores.shape(), &spacing, self.metric, self.convention);
        Ok(CowArray::from(from_flat(scores.raw_dim(), out)))
    }
    fn describe(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for SignedDistance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.convention {
            DistanceConvention::Midpoint => "distance",
            DistanceConvention::VoxelCentre => "distance-centre",
        };
        write!(f, "{name}:{}", self.metric)?;
        if self.mask_threshold != 0.0 {
            write!(f, ":threshold={}", self.mask_threshold)?;
        }
        if self.empty != EmptyPrediction::NegInf {
            write!(f, ":empty={}", self.empty)?;
        }
        Ok(())
    }
}

/// The per-axis spacing of an image of this `shape` whose distances are
/// computed in the float type `A`, if every distance and every
/// intermediate value of the transform is finite in `A`: the checks of
/// [`Spacing::for_image`] (the image's physical extent, squared, and half
/// the smallest spacing, squared, fit `A`), and the ratio of the extent to
/// the smallest spacing, squared, times 64 (n + 1), fits `A` too (the
/// envelope passes compare distances in units of half an axis's spacing). A
/// spacing that fails is an [`Error::InvalidSpacing`]; one that passes
/// gives finite distances (or the ±inf of an empty or full mask), never NaN.
/// The shape is checked too: positions along an axis, in half voxels, must
/// be whole numbers in `A` (an axis of at most 2^23 - 1 voxels in `f32`).
///
/// ```
/// use confseg::transform::distance::distance_spacing;
/// use confseg::Spacing;
/// let sp = Spacing::new(vec![1e10, 1e-10])?;
/// assert!(distance_spacing::<f64>(&sp, &[4, 4]).is_ok());
/// assert!(distance_spacing::<f32>(&sp, &[4, 4]).is_err());
/// let unit = Spacing::unit();
/// assert!(distance_spacing::<f32>(&unit, &[1, (1 << 23) - 1]).is_ok());
/// assert!(distance_spacing::<f32>(&unit, &[1, 1 << 23]).is_err());
/// assert!(distance_spacing::<f64>(&unit, &[1, 1 << 23]).is_ok());
/// # Ok::<(), confseg::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidSpacing`] as above, [`Error::InvalidParameter`] for an
/// axis too long for `A`.
pub fn distance_spacing<A: Float>(spacing: &Spacing, shape: &[usize]) -> Result<Vec<f64>> {
    // Positions along a line, in half voxels, are whole numbers of `A`.
    let longest = shape.iter().copied().max().unwrap_or(0);
    let exact = 2.0 / A::epsilon().to_f64_lossless();
    if 2.0 * longest as f64 + 2.0 > exact {
        return Err(Error::InvalidParameter {
            name: "shape",
            value: format!("{shape:?}"),
            reason: format!(
                "an axis of more than {} voxels is beyond whole positions in {}; compute distances in float64",
                (exact / 2.0 - 1.0) as u64,
                A::NAME
            ),
        });
    }
    let sp = spacing.for_image::<A>(shape)?.into_owned();
    let extent: f64 = sp.iter().zip(shape).map(|(&s, &n)| s * (n as f64 + 1.0)).sum();
    let min = sp.iter().copied().fold(f64::INFINITY, f64::min);
    let n = shape.iter().copied().max().unwrap_or(0) as f64 + 1.0;
    let ratio = extent / min;
    // in half-voxel units, takeover numerators up to 4 ratio^2 + 8 n^2
    // times denominators up to 4 n in the envelope's comparisons, with a
    // factor 2 to spare
    let bound = 64.0 * n * (ratio * ratio + n * n);
    if sp.is_empty() || bound < A::max_value().to_f64_lossless() {
        Ok(sp)
    } else {
        Err(Error::InvalidSpacing {
            spacing: sp,
            ndim: shape.len(),
            reason: if A::NAME == "float64" {
                "the spacing is too anisotropic for distances in float64 (extent / smallest spacing)"
            } else {
                "the spacing is too anisotropic for distances in float32 (extent / smallest spacing); \
                 compute in float64"
            },
        })
    }
}

/// Predicted mask `scores > t` in row-major order.
///
/// # Errors
/// [`Error::NanScore`] at the first NaN.
pub(crate) fn predicted_mask<A: Float, D: Dimension>(scores: &ArrayRef<A, D>, t: f64) -> Result<Vec<bool>> {
    let threshold = |x: &A| x.to_f64_lossless() > t;
    let (bits, nan) = match scores.as_slice() {
        // Row-major contiguous: block by block (in parallel if worth it),
        // each read twice while in cache (two loops without branches, both
        // vectorised).
        Some(sl) => {
            const BLOCK: usize = 4096;
            const UNIT: usize = 16 * BLOCK;
            let mut bits = vec![false; sl.len()];
            let nan = std::sync::atomic::AtomicBool::new(false);
            let parallel = crate::grid::par::worth_splitting(sl.len());
            crate::grid::par::for_each_chunk(
                &mut bits,
                UNIT,
                parallel,
                || (),
                |_, u, out| {
                    let base = u * UNIT;
                    for (i, block) in out.chunks_mut(BLOCK).enumerate() {
                        let src = &sl[base + i * BLOCK..base + i * BLOCK + block.len()];
                        block.iter_mut().zip(src).for_each(|(b, x)| *b = threshold(x));
                        if src.iter().fold(false, |a, x| a | x.is_nan()) {
                            nan.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                },
            );
            (bits, nan.into_inner())
        }
        None => (scores.iter().map(threshold).collect(), scores.iter().any(|x| x.is_nan())),
    };
    if nan {
        crate::image::check_nan("scores", scores)?;
    }
    Ok(bits)
}

/// A row-major `Vec` as an array of shape `dim`.
pub(crate) fn from_flat<A, D: Dimension>(dim: D, v: Vec<A>) -> Array<A, D> {
    // `v` always has `dim.size()` elements (built by the caller from an array
    // of this shape), and `dim` is given in the default row-major order.
    Array::from_shape_vec(dim, v).unwrap_or_else(|_| unreachable!("flat buffer matches its shape"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2, Array3};

    fn sd(mask: &Array2<bool>, metric: Metric) -> Array2<f64> {
        SignedDistance::new(metric).of_mask(mask, &Spacing::unit()).unwrap()
    }

    #[test]
    fn one_dimensional_midpoints() {
        let m = array![false, true, true, true, false, false];
        let d: ndarray::Array1<f64> = SignedDistance::default().of_mask(&m, &Spacing::unit()).unwrap();
        assert_eq!(d, array![-0.5, 0.5, 1.5, 0.5, -0.5, -1.5]);
    }

    #[test]
    fn empty_full_and_zero_size() {
        for metric in [Metric::Euclidean, Metric::Chessboard, Metric::CityBlock] {
            let e = sd(&Array2::from_elem((3, 4), false), metric);
            assert!(e.iter().all(|&x| x == f64::NEG_INFINITY));
            let f = sd(&Array2::from_elem((3, 4), true), metric);
            assert!(f.iter().all(|&x| x == f64::INFINITY));
            let z = sd(&Array2::from_elem((0, 4), true), metric);
            assert_eq!(z.shape(), &[0, 4]);
        }
    }

    #[test]
    fn single_voxel_all_metrics() {
        let mut m = Array3::from_elem((5, 5, 5), false);
        m[[2, 2, 2]] = true;
        let d: Array3<f64> = SignedDistance::new(Metric::Euclidean).of_mask(&m, &Spacing::unit()).unwrap();
        assert_eq!(d[[2, 2, 2]], 0.5);
        assert_eq!(d[[0, 2, 2]], -1.5);
        assert!((d[[0, 0, 2]] - -(2.0f64 * 2.0 + 1.5 * 1.5).sqrt()).abs() < 1e-12);
        let c: Array3<f64> = SignedDistance::new(Metric::Chessboard).of_mask(&m, &Spacing::unit()).unwrap();
        assert_eq!(c[[0, 0, 0]], -2.0);
        assert_eq!(c[[0, 0, 2]], -2.0);
        let l: Array3<f64> = SignedDistance::new(Metric::CityBlock).of_mask(&m, &Spacing::unit()).unwrap();
        assert_eq!(l[[0, 0, 0]], -5.5);
    }

    #[test]
    fn nan_scores_are_rejected() {
        let s = array![[0.0, f64::NAN]];
        let e = SignedDistance::default().apply(&s, &Spacing::unit()).unwrap_err();
        assert!(matches!(e, Error::NanScore { ref index, .. } if index == &vec![0, 1]));
        // past the size split across threads, in the last block
        let mut s = Array2::from_elem((300, 200), 1.0_f32);
        s[[299, 7]] = f32::NAN;
        let e = SignedDistance::default().apply(&s, &Spacing::unit()).unwrap_err();
        assert!(matches!(e, Error::NanScore { ref index, .. } if index == &vec![299, 7]));
    }
}
