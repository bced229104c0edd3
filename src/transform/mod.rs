//! Score transforms `f_I`, `f_O`: functions image -> image chosen before
//! calibration (METHOD.md §1, §5).
//!
//! A [`Transform`] sees the whole n-D score image and its physical voxel
//! [`Spacing`], so spatial transforms (distances, smoothing) fit the same
//! trait as voxel-wise ones. Transforms must not look at calibration labels;
//! any fixed function works, and the coverage guarantee holds for all of them.
//! What changes is the size of the sets.
//!
//! [`ScoreTransform`] enumerates the built-in transforms; it parses from and
//! prints to the names the CLI uses (`"identity"`, `"distance:euclidean"`,
//! `"gaussian:2"`, `"box-outer"`, ...), and records its parameters in a
//! fitted object's provenance.
//!
//! # The transforms
//!
//! | transform | definition | module |
//! |---|---|---|
//! | [`Identity`] | the scores (logits) | |
//! | [`Sigmoid`] | `1 / (1 + exp(-s))`, voxel-wise | |
//! | [`SignedDistance`] | `±` distance from each voxel to the 0.5-level boundary of the predicted mask `s > t` (`+` inside), Euclidean / chessboard / city-block with voxel spacing; `-inf` / `+inf` for an empty / full mask | [`distance`] |
//! | [`GaussianSmoothing`] | separable Gaussian filter, width as FWHM or sigma, in voxels or physical units, scipy's boundary modes and truncation | [`smooth`] |
//! | [`BoxScores`] | chessboard signed distance to the union of the bounding boxes (outer) or largest inner boxes (inner) of the predicted mask's connected components | [`boxes`] |
//! | [`Morphological`] | `+k` inside the predicted mask where `k` erosions by a [`Footprint`] remove the voxel, `-k` outside where `k` dilations first reach it (scipy's iterated `binary_erosion` / `binary_dilation`) | [`morphology`] |
//!
//! Transforms compose: [`Transform::then`] in the library, `A|B` among the
//! named transforms (`gaussian:2|distance`: the distance to the smoothed
//! prediction). A transform of one's own can be [`register`]ed under a
//! name; fitted sets using it are then saved and loaded with that name,
//! like the built-in ones ([`compose`]).
//!
//! [`SignedDistance`] also offers the voxel-centre convention of scipy's
//! `distance_transform_edt` and MATLAB's `bwdist` for comparison with those
//! tools; the module docs of [`distance`] set the two side by side.
//!
//! # Which transform for which set
//!
//! The guarantee holds for any choice made before calibration; the choice
//! decides how tight the sets are. Choose on a learning set disjoint from the
//! calibration data (METHOD.md §6): calibrate candidates there, keep the one with
//! the largest inner / smallest outer sets, then calibrate once for real.
//! As a starting point (METHOD.md §5, the paper's polyp experiments with PraNet):
//!
//! * **inner set**: [`Identity`] on the logits. The inner set is then the
//!   voxels whose score exceeds a calibrated level — where the network is
//!   most confident. [`GaussianSmoothing`] (the paper used FWHM 2 pixels)
//!   helps when scores are noisy at the voxel level; [`BoxScores::inner`]
//!   gives box-shaped inner sets.
//! * **outer set**: [`SignedDistance`] (Euclidean) of the predicted mask.
//!   The outer set is the predicted mask grown by a calibrated margin, which
//!   is far tighter than thresholding raw logits, whose low-confidence tail
//!   spreads over the image. Chessboard and city-block distances give
//!   square / diamond margins; [`Morphological`] counts dilations by any
//!   footprint (morphological margins, Mossina & Friedrich 2025);
//!   [`BoxScores::outer`] gives conformal bounding boxes.
//! * With the max-joint mode, the two transforms should have comparable
//!   scales (e.g. distance for both); otherwise use a Bonferroni split, such
//!   as the paper's 1:4 (inner:outer) for 90% joint coverage.
//!
//! ```
//! use confseg::synthetic::Synthetic;
//! use confseg::{Alpha, Calibration, Calibrator, Identity, Metric, Mode, SignedDistance};
//!
//! let data = Synthetic::new([32, 32]).seed(4);
//! let calibrator = Calibrator::new(Identity, SignedDistance::new(Metric::Euclidean));
//! let mut cal = Calibration::new();
//! for (scores, mask) in data.pairs(0..100) {
//!     calibrator.observe(&mut cal, &scores, &mask)?;
//! }
//! let sets = calibrator.fit(&cal, Mode::bonferroni(Alpha::new(0.1)?, 1.0, 4.0)?)?;
//! // The outer set is the predicted mask grown by lambda_O (in voxels here).
//! println!("margin: {}", sets.thresholds().outer.value());
//! # Ok::<(), confseg::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;

use ndarray::{ArrayRef, CowArray, Dimension};

use crate::error::{Error, Result};
use crate::float::Float;
pub use crate::image::Spacing;
use crate::mask::MaskValue;

pub mod boxes;
pub mod classes;
pub mod compose;
pub mod distance;
pub mod morphology;
mod pair;
pub mod smooth;

pub use boxes::{component_boxes, BoundingBox, BoxKind, BoxScores, BoxShape, ComponentBoxes, Connectivity};
pub use classes::{StructureScores, TwoClassSoftmax};
pub use compose::{register, registered_names, RegisteredTransform, Then, TransformChain, MAX_CHAIN_STEPS};
pub use distance::{DistanceConvention, Metric, SignedDistance};
pub use morphology::{Footprint, Morphological};
pub use pair::Transforms;
pub use smooth::{BoundaryMode, GaussianSmoothing, Units, Width};

/// A score transform: a fixed function from a score image to a transformed
/// score image of the same shape.
///
/// Modelled on `rand::Distribution`: one required method taking `&self`,
/// immutable implementors, and a blanket impl for references. The method is
/// generic over the float type and the dimension, so one transform value
/// serves 2-D and 3-D images, `f32` and `f64`.
///
/// Implementations may return `+inf` / `-inf` (e.g. a distance to an empty
/// set) but must not return NaN for non-NaN input.
///
/// ```
/// use confseg::{Spacing, Transform, Sigmoid};
/// use ndarray::array;
/// let s = array![[0.0_f32, 2.0], [-2.0, f32::INFINITY]];
/// let p = Sigmoid.apply(&s, &Spacing::unit())?;
/// assert_eq!(p[[0, 0]], 0.5);
/// assert_eq!(p[[1, 1]], 1.0);
/// # Ok::<(), confseg::Error>(())
/// ```
pub trait Transform {
    /// Transform one score image. `scores` is the whole image; `spacing`
    /// gives the physical voxel size per axis.
    ///
    /// # Errors
    /// Transform-specific: invalid spacing for the image's dimension,
    /// parameters that do not fit the image.
    fn apply<'a, A: Float, D: Dimension>(
        &self,
        scores: &'a ArrayRef<A, D>,
        spacing: &Spacing,
    ) -> Result<CowArray<'a, A, D>>;

    /// The outer side's tolerance statistic of one labelled image with
    /// this transform as `f_O` (METHOD.md §4.4): the `(m+1)`-th largest
    /// `-f_O(v)` over the object voxels of `mask`, `m = allowed(|Y|)`
    /// (`-inf` when `|Y| <= m`), computed without transforming the whole
    /// image; or `None` (the default) when the transform has no such
    /// shortcut, and the calibrator transforms the image and selects. A
    /// shortcut returns exactly what transforming and selecting gives:
    /// [`Morphological`] stops its wavefront at the level that decides.
    ///
    /// # Errors
    /// As [`Transform::apply`].
    fn outer_tolerance_statistic<A: Float, D: Dimension, M: MaskValue>(
        &self,
        scores: &ArrayRef<A, D>,
        mask: &ArrayRef<M, D>,
        spacing: &Spacing,
        allowed: &dyn Fn(u64) -> u64,
    ) -> Option<Result<f64>> {
        let _ = (scores, mask, spacing, allowed);
        None
    }

    /// A short description with parameters, for provenance and reports.
    fn describe(&self) -> String {
        std::any::type_name::<Self>().rsplit("::").next().unwrap_or("transform").to_owned()
    }

    /// Whether the result depends on the voxel spacing (default: `true`,
    /// the safe answer). Sets calibrated with per-image spacing require new
    /// images to carry their spacing only when a transform uses it.
    fn uses_spacing(&self) -> bool {
        true
    }

    /// This transform followed by `next` (`next ∘ self`); see [`Then`].
    fn then<U: Transform>(self, next: U) -> Then<Self, U>
    where
        Self: Sized,
    {
        Then::new(self, next)
    }
}

impl<T: Transform> Transform for &T {
    fn apply<'a, A: Float, D: Dimension>(
        &self,
        scores: &'a ArrayRef<A, D>,
        spacing: &Spacing,
    ) -> Result<CowArray<'a, A, D>> {
        (**self).apply(scores, spacing)
    }
    fn outer_tolerance_statistic<A: Float, D: Dimension, M: MaskValue>(
        &self,
        scores: &ArrayRef<A, D>,
        mask: &ArrayRef<M, D>,
        spacing: &Spacing,
        allowed: &dyn Fn(u64) -> u64,
    ) -> Option<Result<f64>> {
        (**self).outer_tolerance_statistic(scores, mask, spacing, allowed)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn uses_spacing(&self) -> bool {
        (**self).uses_spacing()
    }
}

/// Apply `transform` to `scores` with every check a pipeline needs: NaN
/// in the scores is an [`Error::NanScore`]; NaN in the result (which a
/// transform must not produce) is an [`Error::TransformNan`] naming it.
///
/// ```
/// use confseg::transform::apply_checked;
/// use confseg::{Error, Sigmoid, Spacing};
/// use ndarray::array;
/// let s = array![0.0_f32, 1.0];
/// let p = apply_checked(&Sigmoid, &s, &Spacing::unit())?;
/// assert_eq!(p[0], 0.5);
/// let e = apply_checked(&Sigmoid, &array![0.0_f32, f32::NAN], &Spacing::unit()).unwrap_err();
/// assert!(matches!(e, Error::NanScore { .. }));
/// # Ok::<(), confseg::Error>(())
/// ```
///
/// # Errors
/// As above, and the transform's own errors.
pub fn apply_checked<'a, T, A, D>(
    transform: &T,
    scores: &'a ArrayRef<A, D>,
    spacing: &Spacing,
) -> Result<CowArray<'a, A, D>>
where
    T: Transform + ?Sized,
    A: Float,
    D: Dimension,
{
    crate::image::check_nan("scores", scores)?;
    let out = transform.apply(scores, spacing)?;
    if let Err(Error::NanScore { index, .. }) = crate::image::check_nan("output", &out) {
        return Err(Error::TransformNan {
            transform: transform.describe(),
            side: "given",
            image: None,
            index,
        });
    }
    Ok(out)
}

/// The identity: scores are used as they are (e.g. logits). Borrows, never copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Identity;

impl Transform for Identity {
    fn apply<'a, A: Float, D: Dimension>(
        &self,
        scores: &'a ArrayRef<A, D>,
        _spacing: &Spacing,
    ) -> Result<CowArray<'a, A, D>> {
        Ok(CowArray::from(scores.view()))
    }
    fn describe(&self) -> String {
        "identity".into()
    }
    fn uses_spacing(&self) -> bool {
        false
    }
}

/// The logistic function `1 / (1 + exp(-x))`, voxel-wise: logits to
/// probabilities. Monotone, so it gives the same sets as [`Identity`] when
/// used alone, but its scale matters for the max-joint mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sigmoid;

/// Numerically stable logistic function (no overflow for large |x|).
#[inline]
pub(crate) fn sigmoid<A: Float>(x: A) -> A {
    if x >= A::zero() {
        A::one() / (A::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (A::one() + e)
    }
}

impl Transform for Sigmoid {
    fn apply<'a, A: Float, D: Dimension>(
        &self,
        scores: &'a ArrayRef<A, D>,
        _spacing: &Spacing,
    ) -> Result<CowArray<'a, A, D>> {
        Ok(CowArray::from(scores.mapv(sigmoid)))
    }
    fn describe(&self) -> String {
        "sigmoid".into()
    }
    fn uses_spacing(&self) -> bool {
        false
    }
}

/// The built-in transforms, by name: what the CLI parses and what a fitted
/// object records (serialized with a `"name"` tag and the parameters).
///
/// String syntax (`FromStr` and `Display` round-trip): a name, an optional
/// main parameter after `:`, then `:key=value` options.
///
/// | string | transform |
/// |---|---|
/// | `identity` | [`Identity`] |
/// | `sigmoid` | [`Sigmoid`] |
/// | `distance[:euclidean\|chessboard\|cityblock]` | [`SignedDistance`], midpoint convention (default euclidean) |
/// | `distance-centre[:METRIC]` | [`SignedDistance`], voxel-centre convention (scipy / MATLAB) |
/// | `gaussian:FWHM` | [`GaussianSmoothing`] with this FWHM |
/// | `gaussian-sigma:SIGMA` | [`GaussianSmoothing`] with this sigma |
/// | `box-outer`, `box-inner` | [`BoxScores`] |
/// | `morphological[:footprint=F]` | [`Morphological`] steps by the footprint `F`: `face` (default), `edge`, `full`, `ball` (with `radius=R`), a 0/1 `FILE.npy` or inline cells `[010,111,010]` |
///
/// Options: `threshold=T` (predicted mask `scores > T`, default 0) and
/// `empty=-inf|argmax|C` for `distance*`, `box-*` and `morphological`;
/// `radius=R` and `units=voxels|physical` with `footprint=ball`;
/// `connectivity=face|full` for `box-*`;
/// `units=voxels|physical`, `mode=reflect|mirror|nearest|wrap|constant`,
/// `cval=C` (with `mode=constant`) and `truncate=T` (default 4) for
/// `gaussian*`.
///
/// ```
/// use confseg::{Metric, ScoreTransform, SignedDistance};
/// let t: ScoreTransform = "sigmoid".parse()?;
/// assert_eq!(t, ScoreTransform::Sigmoid);
/// assert_eq!(t.to_string(), "sigmoid");
///
/// let d: ScoreTransform = "distance:chessboard".parse()?;
/// assert_eq!(d, ScoreTransform::Distance(SignedDistance::new(Metric::Chessboard)));
/// let d = d.with_mask_threshold(0.5)?;
/// assert_eq!(d.to_string(), "distance:chessboard:threshold=0.5");
/// assert_eq!(d.to_string().parse::<ScoreTransform>()?, d);
///
/// let g: ScoreTransform = "gaussian:2:units=physical:mode=nearest".parse()?;
/// assert_eq!(g.to_string(), "gaussian:2:units=physical:mode=nearest");
///
/// let m: ScoreTransform = "morphological:footprint=ball:radius=2:units=physical".parse()?;
/// assert_eq!(m.to_string(), "morphological:footprint=ball:radius=2:units=physical");
/// assert_eq!("morphological".parse::<ScoreTransform>()?.to_string(), "morphological:footprint=face");
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "name", rename_all = "kebab-case"))]
#[non_exhaustive]
pub enum ScoreTransform {
    /// [`Identity`].
    #[default]
    Identity,
    /// [`Sigmoid`].
    Sigmoid,
    /// [`SignedDistance`] of the predicted mask.
    Distance(SignedDistance),
    /// [`GaussianSmoothing`] of the scores.
    Gaussian(GaussianSmoothing),
    /// [`BoxScores`] of the predicted mask.
    Box(BoxScores),
    /// [`Morphological`] steps of the predicted mask.
    Morphological(Morphological),
    /// Several transforms applied in turn (`gaussian:2|distance`).
    Chain(TransformChain),
    /// A transform of the user's, [`register`]ed under a name.
    Registered(RegisteredTransform),
}

impl ScoreTransform {
    /// Set the predicted-mask threshold `t` (predicted mask = `scores > t`)
    /// of the transforms that threshold the scores (signed distance,
    /// bounding boxes, morphological steps; in a chain, every such step). Transforms without a
    /// threshold (identity, sigmoid, smoothing, registered ones) are
    /// returned unchanged.
    ///
    /// ```
    /// use confseg::ScoreTransform;
    /// let t = ScoreTransform::Sigmoid.with_mask_threshold(0.5)?;
    /// assert_eq!(t, ScoreTransform::Sigmoid);
    /// assert!(ScoreTransform::Identity.with_mask_threshold(f64::NAN).is_err());
    /// let b: ScoreTransform = "box-inner".parse()?;
    /// assert_eq!(b.with_mask_threshold(0.5)?.to_string(), "box-inner:threshold=0.5");
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `t` is not finite (a NaN threshold has
    /// no meaning, and an infinite one cannot be recorded in JSON).
    pub fn with_mask_threshold(self, t: f64) -> Result<Self> {
        check_mask_threshold(t)?;
        Ok(match self {
            ScoreTransform::Identity
            | ScoreTransform::Sigmoid
            | ScoreTransform::Gaussian(_)
            | ScoreTransform::Registered(_) => self,
            ScoreTransform::Distance(d) => ScoreTransform::Distance(d.with_mask_threshold(t)?),
            ScoreTransform::Box(b) => ScoreTransform::Box(b.with_mask_threshold(t)?),
            ScoreTransform::Morphological(m) => ScoreTransform::Morphological(m.with_mask_threshold(t)?),
            ScoreTransform::Chain(c) => c.map_steps(|s| s.with_mask_threshold(t))?,
        })
    }

    /// The predicted-mask threshold, for transforms that have one (in a
    /// chain, that of the first step that has one).
    #[must_use]
    pub fn mask_threshold(&self) -> Option<f64> {
        match self {
            ScoreTransform::Distance(d) => Some(d.mask_threshold()),
            ScoreTransform::Box(b) => Some(b.mask_threshold()),
            ScoreTransform::Morphological(m) => Some(m.mask_threshold()),
            ScoreTransform::Chain(c) => c.steps().iter().find_map(ScoreTransform::mask_threshold),
            _ => None,
        }
    }

    /// A warning when these scores look like probabilities (all in
    /// `[0, 1]`) but the transform predicts the mask as `scores > 0`:
    /// nearly every voxel is then "predicted", and the sets are far too
    /// large. Cheap (one pass); meant for a few images of a cohort.
    ///
    /// ```
    /// use confseg::{ScoreTransform, Warning};
    /// use ndarray::array;
    /// let d: ScoreTransform = "distance".parse()?;
    /// let p = array![[0.1_f32, 0.9], [0.2, 0.0]];
    /// assert!(matches!(d.warning_for(&p), Some(Warning::ProbabilitiesThresholdedAtZero { .. })));
    /// assert!(d.with_mask_threshold(0.5)?.warning_for(&p).is_none());
    /// # Ok::<(), confseg::Error>(())
    /// ```
    pub fn warning_for<A: Float, D: Dimension>(&self, scores: &ArrayRef<A, D>) -> Option<crate::Warning> {
        if self.mask_threshold() != Some(0.0) || scores.is_empty() {
            return None;
        }
        let in_unit = scores.iter().all(|&x| x >= A::zero() && x <= A::one());
        in_unit.then(|| crate::Warning::ProbabilitiesThresholdedAtZero { transform: self.to_string() })
    }
}

/// What a mask-based transform (signed distance, boxes) returns when the
/// predicted mask is empty (the network predicts nothing). All choices are
/// valid — the transform is fixed before calibration — but they differ in
/// set size: with `-inf` such an image has `gamma = +inf`, and if more than
/// an `alpha` share of the calibration images are like it, the outer
/// threshold is `+inf` for every image.
///
/// ```
/// use confseg::{ScoreTransform, Spacing, Transform};
/// use ndarray::array;
/// let nothing = array![-3.0_f64, -1.0, -2.0, -5.0];
/// let d: ScoreTransform = "distance:empty=argmax".parse()?;
/// // the most confident voxel (index 1) stands in for the prediction
/// assert_eq!(d.apply(&nothing, &Spacing::unit())?, array![-0.5, 0.5, -0.5, -1.5]);
/// let c: ScoreTransform = "distance:empty=-7".parse()?;
/// assert!(c.apply(&nothing, &Spacing::unit())?.iter().all(|&x| x == -7.0));
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum EmptyPrediction {
    /// `-inf` everywhere (the paper's convention): nothing is inside.
    #[default]
    NegInf,
    /// This constant everywhere (the author's code uses a finite constant).
    Value(f64),
    /// The transform of the mask holding only the highest-scoring voxel
    /// (the first in row-major order on ties).
    Argmax,
}

impl EmptyPrediction {
    /// Apply the policy to the predicted mask `bits` of `scores`: if it is
    /// empty, `Some(c)` when the result is the constant `c` everywhere, and
    /// for [`EmptyPrediction::Argmax`] `bits` then holds the argmax; `None`
    /// when the transform goes on with `bits`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if the constant overflows the float type.
    pub(crate) fn apply<A: Float, D: Dimension>(
        self,
        bits: &mut [bool],
        scores: &ArrayRef<A, D>,
    ) -> Result<Option<A>> {
        if bits.iter().any(|&b| b) || bits.is_empty() {
            return Ok(None);
        }
        Ok(match self {
            EmptyPrediction::NegInf => None,
            EmptyPrediction::Value(c) => {
                let a = A::from_f64_lossy(c);
                if c.is_finite() && !a.is_finite() {
                    return Err(Error::InvalidParameter {
                        name: "empty",
                        value: c.to_string(),
                        reason: format!("overflows the scores' float type ({})", A::NAME),
                    });
                }
                Some(a)
            }
            EmptyPrediction::Argmax => {
                let mut best = (0, f64::NEG_INFINITY);
                for (i, x) in scores.iter().enumerate() {
                    let v = x.to_f64_lossless();
                    if v > best.1 || i == 0 {
                        best = (i, v);
                    }
                }
                bits[best.0] = true;
                None
            }
        })
    }

    /// Parse `-inf`, `argmax` or a number.
    pub(crate) fn parse(value: &str) -> Result<Self> {
        match value {
            "-inf" | "neg-inf" => Ok(EmptyPrediction::NegInf),
            "argmax" => Ok(EmptyPrediction::Argmax),
            v => {
                let c = smooth::parse_f64("empty value", v)?;
                if c.is_nan() {
                    return Err(smooth::bad_option("empty", v, "empty is -inf, argmax or a number"));
                }
                Ok(if c == f64::NEG_INFINITY { EmptyPrediction::NegInf } else { EmptyPrediction::Value(c) })
            }
        }
    }
}

impl fmt::Display for EmptyPrediction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmptyPrediction::NegInf => f.write_str("-inf"),
            EmptyPrediction::Value(c) => write!(f, "{c}"),
            EmptyPrediction::Argmax => f.write_str("argmax"),
        }
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for EmptyPrediction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for EmptyPrediction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EmptyPrediction::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Validate a predicted-mask threshold.
pub(crate) fn check_mask_threshold(t: f64) -> Result<()> {
    if t.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            name: "mask threshold",
            value: t.to_string(),
            reason: "must be a finite number (predicted mask = scores > threshold)".into(),
        })
    }
}

impl Transform for ScoreTransform {
    fn apply<'a, A: Float, D: Dimension>(
        &self,
        scores: &'a ArrayRef<A, D>,
        spacing: &Spacing,
    ) -> Result<CowArray<'a, A, D>> {
        // the output and a workspace: refused, not aborted, if they do not fit
        let per_value = match self {
            ScoreTransform::Identity => 0,
            ScoreTransform::Sigmoid => std::mem::size_of::<A>(),
            _ => std::mem::size_of::<A>() + 2 * std::mem::size_of::<f64>(),
        };
        crate::alloc::ensure_room(scores.len() as u128 * per_value as u128, "the transformed scores")?;
        match self {
            ScoreTransform::Identity => Identity.apply(scores, spacing),
            ScoreTransform::Sigmoid => Sigmoid.apply(scores, spacing),
            ScoreTransform::Distance(d) => d.apply(scores, spacing),
            ScoreTransform::Gaussian(g) => g.apply(scores, spacing),
            ScoreTransform::Box(b) => b.apply(scores, spacing),
            ScoreTransform::Morphological(m) => m.apply(scores, spacing),
            ScoreTransform::Chain(c) => c.apply(scores, spacing),
            ScoreTransform::Registered(r) => r.apply(scores, spacing),
        }
    }
    fn outer_tolerance_statistic<A: Float, D: Dimension, M: MaskValue>(
        &self,
        scores: &ArrayRef<A, D>,
        mask: &ArrayRef<M, D>,
        spacing: &Spacing,
        allowed: &dyn Fn(u64) -> u64,
    ) -> Option<Result<f64>> {
        match self {
            ScoreTransform::Morphological(m) => m.outer_tolerance_statistic(scores, mask, spacing, allowed),
            _ => None,
        }
    }
    fn describe(&self) -> String {
        self.to_string()
    }
    fn uses_spacing(&self) -> bool {
        match self {
            ScoreTransform::Identity | ScoreTransform::Sigmoid => false,
            ScoreTransform::Gaussian(g) => g.uses_spacing(),
            ScoreTransform::Distance(_) | ScoreTransform::Box(_) => true,
            ScoreTransform::Morphological(m) => m.uses_spacing(),
            ScoreTransform::Chain(c) => c.uses_spacing(),
            ScoreTransform::Registered(r) => r.uses_spacing(),
        }
    }
}

impl fmt::Display for ScoreTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScoreTransform::Identity => f.write_str("identity"),
            ScoreTransform::Sigmoid => f.write_str("sigmoid"),
            ScoreTransform::Distance(d) => d.fmt(f),
            ScoreTransform::Gaussian(g) => g.fmt(f),
            ScoreTransform::Box(b) => b.fmt(f),
            ScoreTransform::Morphological(m) => m.fmt(f),
            ScoreTransform::Chain(c) => c.fmt(f),
            ScoreTransform::Registered(r) => r.fmt(f),
        }
    }
}

impl ScoreTransform {
    /// Parse a transform for one side: as [`FromStr`], and a bare `box`
    /// (also as a step of a chain, with its options) is `box-inner` for
    /// the inner side and `box-outer` for the outer one.
    ///
    /// ```
    /// use confseg::{ScoreTransform, Side};
    /// let t = ScoreTransform::parse_for(Side::Outer, "gaussian:2|box:connectivity=full")?;
    /// assert_eq!(t.to_string(), "gaussian:2|box-outer:connectivity=full");
    /// assert!("box".parse::<ScoreTransform>().is_err()); // which side?
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`FromStr`]: an unknown name or bad parameters.
    pub fn parse_for(side: crate::quantile::Side, s: &str) -> Result<ScoreTransform> {
        let kind = match side {
            crate::quantile::Side::Inner => "box-inner",
            crate::quantile::Side::Outer => "box-outer",
        };
        let steps: Vec<String> = s
            .split('|')
            .map(|step| {
                let step = step.trim();
                match step.split(':').next().map(str::trim) {
                    Some("box") => format!("{kind}{}", &step[3..]),
                    _ => step.to_owned(),
                }
            })
            .collect();
        steps.join("|").parse()
    }
}

const KNOWN: &str = "known: identity, sigmoid, distance[:METRIC], distance-centre[:METRIC], gaussian:FWHM, \
                     gaussian-sigma:SIGMA, box-outer, box-inner, morphological[:footprint=F], chains A|B, \
                     registered names";

impl FromStr for ScoreTransform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.contains('|') {
            let mut steps = Vec::new();
            for step in s.split('|') {
                if steps.len() == compose::MAX_CHAIN_STEPS {
                    return Err(compose::too_many_steps());
                }
                if step.trim().is_empty() {
                    return Err(Error::InvalidParameter {
                        name: "transform",
                        value: s.to_owned(),
                        reason: "empty step in a chain (write A|B)".into(),
                    });
                }
                steps.push(step.parse()?);
            }
            return ScoreTransform::chain(steps);
        }
        let mut parts = s.split(':').map(str::trim);
        let name = parts.next().unwrap_or("");
        let rest: Vec<&str> = parts.collect();
        // The main parameter is the first part without '='; the others are options.
        let (main, opts) = match rest.split_first() {
            Some((m, o)) if !m.contains('=') => (Some(*m), o),
            _ => (None, &rest[..]),
        };
        // A part without '=' after an option continues that option's value
        // (a footprint path with ':' in it, e.g. `C:\fp.npy`): the value is
        // then the text of `s` from the option's value to the part's end.
        let offset = |part: &str| part.as_ptr() as usize - s.as_ptr() as usize;
        let mut options: Vec<(&str, &str)> = Vec::with_capacity(opts.len());
        for &o in opts {
            match (o.split_once('='), options.last_mut()) {
                (Some((k, v)), _) => options.push((k.trim(), v.trim())),
                (None, Some((_, v))) => *v = &s[offset(v)..offset(o) + o.len()],
                (None, None) => {
                    return Err(Error::InvalidParameter {
                        name: "transform",
                        value: s.to_owned(),
                        reason: format!("expected key=value after the main parameter, found {o:?}"),
                    })
                }
            }
        }
        // each option once: a repeated key is a typo, not "the last one wins"
        for (i, (k, _)) in options.iter().enumerate() {
            if options[..i].iter().any(|(j, _)| j == k) {
                return Err(Error::InvalidParameter {
                    name: "transform",
                    value: s.to_owned(),
                    reason: format!("option {} is given twice; give it once", crate::error::one_line(k)),
                });
            }
        }
        let unexpected = |what: &str| Error::InvalidParameter {
            name: "transform",
            value: s.to_owned(),
            reason: format!("{name} takes {what}"),
        };
        match name {
            "identity" | "sigmoid" => {
                if main.is_some() || !options.is_empty() {
                    return Err(unexpected("no parameters"));
                }
                Ok(if name == "identity" { ScoreTransform::Identity } else { ScoreTransform::Sigmoid })
            }
            "distance" | "distance-centre" | "distance-center" => {
                let metric = main.map_or(Ok(Metric::Euclidean), str::parse)?;
                let convention = if name == "distance" {
                    DistanceConvention::Midpoint
                } else {
                    DistanceConvention::VoxelCentre
                };
                let mut d = SignedDistance::new(metric).with_convention(convention);
                for (key, value) in options {
                    match key {
                        "threshold" => {
                            d = d.with_mask_threshold(smooth::parse_f64("mask threshold", value)?)?
                        }
                        "empty" => d = d.with_empty(EmptyPrediction::parse(value)?),
                        _ => {
                            return Err(smooth::bad_option(key, value, "distance options: threshold, empty"))
                        }
                    }
                }
                Ok(ScoreTransform::Distance(d))
            }
            "gaussian" | "gaussian-sigma" => {
                let w = main.ok_or_else(|| unexpected("a width, e.g. gaussian:2"))?;
                let w = smooth::parse_f64(if name == "gaussian" { "FWHM" } else { "sigma" }, w)?;
                let width = if name == "gaussian" { Width::Fwhm(w) } else { Width::Sigma(w) };
                Ok(ScoreTransform::Gaussian(smooth::parse_gaussian(width, &options)?))
            }
            "box" => Err(Error::InvalidParameter {
                name: "transform",
                value: s.to_owned(),
                reason: "say box-inner or box-outer".into(),
            }),
            "box-outer" | "box-inner" => {
                if main.is_some() {
                    return Err(unexpected("only key=value options (connectivity, threshold)"));
                }
                let kind = if name == "box-outer" { BoxKind::Outer } else { BoxKind::Inner };
                Ok(ScoreTransform::Box(boxes::parse_box(kind, &options)?))
            }
            "morphological" => {
                if let Some(m) = main {
                    return Err(Error::InvalidParameter {
                        name: "transform",
                        value: s.to_owned(),
                        reason: format!(
                            "morphological takes key=value options; write morphological:footprint={m}"
                        ),
                    });
                }
                Ok(ScoreTransform::Morphological(morphology::parse_morphological(&options)?))
            }
            _ if compose::registered_names().iter().any(|n| n == name) => {
                if main.is_some() || !options.is_empty() {
                    return Err(unexpected("no parameters (it is a registered transform)"));
                }
                Ok(ScoreTransform::Registered(RegisteredTransform::lookup(name)?))
            }
            _ => Err(Error::InvalidParameter {
                name: "transform",
                value: s.to_owned(),
                reason: format!("unknown transform; {KNOWN}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn sigmoid_is_stable_and_exact_at_extremes() {
        for &x in &[-1000.0_f64, -30.0, -1.0, 0.0, 1.0, 30.0, 1000.0] {
            let want = 1.0 / (1.0 + (-x).exp());
            assert!((sigmoid(x) - want).abs() <= 1e-15, "x={x}");
        }
        assert_eq!(sigmoid(f64::NEG_INFINITY), 0.0);
        assert_eq!(sigmoid(f64::INFINITY), 1.0);
        assert_eq!(sigmoid(-100.0_f32), (-100.0_f32).exp() / (1.0 + (-100.0_f32).exp()));
    }

    #[test]
    fn a_repeated_option_is_refused() {
        for t in [
            "morphological:footprint=ball:radius=2:radius=3",
            "distance:threshold=1:threshold=2",
            "gaussian:2:mode=nearest:mode=reflect",
        ] {
            let e = t.parse::<ScoreTransform>().unwrap_err().to_string();
            assert!(e.contains("is given twice; give it once"), "{t}: {e}");
        }
        assert!("morphological:footprint=ball:radius=2".parse::<ScoreTransform>().is_ok());
    }

    #[test]
    fn a_transform_out_of_memory_is_an_error() {
        // a broadcast view of 2^60 values: the output cannot be allocated
        let one = ndarray::Array1::<f64>::zeros(1);
        let huge = one.broadcast(1usize << 60).unwrap();
        let e = Sigmoid.describe();
        let err = ScoreTransform::Sigmoid.apply(&huge, &Spacing::unit()).unwrap_err();
        assert!(matches!(err, Error::OutOfMemory { .. }), "{e}: {err}");
    }

    #[test]
    fn identity_borrows() {
        let s = array![[1.0_f32, 2.0]];
        let out = Identity.apply(&s, &Spacing::unit()).unwrap();
        assert!(out.is_view());
        assert_eq!(out, s);
    }

    #[test]
    fn names_round_trip() {
        let all = [
            "identity",
            "sigmoid",
            "distance:euclidean",
            "distance:chessboard:threshold=0.25",
            "distance-centre:cityblock",
            "distance-centre:euclidean:threshold=-1.5",
            "gaussian:2",
            "gaussian-sigma:0.7:units=physical:mode=constant:cval=-3:truncate=2.5",
            "gaussian:1.5:mode=wrap",
            "box-outer",
            "box-inner:connectivity=full:threshold=0.5",
            "morphological:footprint=edge:threshold=0.5",
            "morphological:footprint=ball:radius=2:units=physical:empty=argmax",
            "morphological:footprint=[010,111,010]",
        ];
        for s in all {
            let t: ScoreTransform = s.parse().unwrap();
            assert_eq!(t.to_string(), s);
            assert_eq!(t.to_string().parse::<ScoreTransform>().unwrap(), t);
        }
        assert_eq!("distance".parse::<ScoreTransform>().unwrap().to_string(), "distance:euclidean");
        for bad in [
            "nope",
            "identity:1",
            "distance:hamming",
            "distance:euclidean:t=1",
            "distance:threshold=nan",
            "gaussian",
            "gaussian:-1",
            "gaussian:2:cval=1",
            "gaussian:2:mode=odd",
            "box-outer:connectivity=corner",
            "box",
            "morphological:face",
            "morphological:footprint=ball",
        ] {
            assert!(bad.parse::<ScoreTransform>().is_err(), "{bad}");
        }
    }

    #[test]
    fn mask_threshold_reaches_thresholding_transforms() {
        let d = ScoreTransform::Distance(SignedDistance::default()).with_mask_threshold(2.0).unwrap();
        assert_eq!(d.mask_threshold(), Some(2.0));
        let g: ScoreTransform = "gaussian:2".parse().unwrap();
        assert_eq!(g.clone().with_mask_threshold(2.0).unwrap(), g);
        assert!(d.with_mask_threshold(f64::INFINITY).is_err());
        let s = array![[0.0_f64, 1.0, 3.0]];
        let d = ScoreTransform::Distance(SignedDistance::default()).with_mask_threshold(2.0).unwrap();
        assert_eq!(d.apply(&s, &Spacing::unit()).unwrap(), array![[-1.5, -0.5, 0.5]]);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_round_trip_with_parameters() {
        for s in [
            "identity",
            "distance-centre:chessboard:threshold=0.5",
            "gaussian-sigma:2:mode=constant:cval=1",
            "box-inner:connectivity=full",
            "morphological:footprint=ball:radius=1.5:units=physical:threshold=0.5:empty=-3",
            "morphological:footprint=[[000,010,000],[010,111,010],[000,010,000]]",
        ] {
            let t: ScoreTransform = s.parse().unwrap();
            let j = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<ScoreTransform>(&j).unwrap(), t, "{j}");
        }
        let j = r#"{"name":"distance","metric":"euclidean","convention":"midpoint","mask_threshold":0.0}"#;
        assert_eq!(
            serde_json::from_str::<ScoreTransform>(j).unwrap(),
            ScoreTransform::Distance(SignedDistance::default())
        );
        let bad =
            r#"{"name":"gaussian","width":{"fwhm":-1.0},"units":"voxels","mode":"reflect","truncate":4.0}"#;
        assert!(serde_json::from_str::<ScoreTransform>(bad).is_err());
        let m = r#"{"name":"morphological","footprint":{"custom":{"shape":[1,3],"cells":"111"}},"mask_threshold":0.0}"#;
        assert_eq!(
            serde_json::from_str::<ScoreTransform>(m).unwrap().to_string(),
            "morphological:footprint=[111]"
        );
        for bad in [
            r#"{"name":"morphological","footprint":{"custom":{"shape":[1,3],"cells":"110"}},"mask_threshold":0.0}"#,
            r#"{"name":"morphological","footprint":{"custom":{"shape":[3],"cells":"1x1"}},"mask_threshold":0.0}"#,
            r#"{"name":"morphological","footprint":{"ball":{"radius":0.2}},"mask_threshold":0.0}"#,
        ] {
            assert!(serde_json::from_str::<ScoreTransform>(bad).is_err(), "{bad}");
        }
    }
}
