//! Conformal risk control of the missed fraction (METHOD.md §4.3): [`RiskCalibration`].

use super::{Calibrator, Origin, Provenance};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::image::{check_shape, AsImage};
use crate::mask::MaskValue;
use crate::quantile::Alpha;
use crate::stream::{default_in_flight, stream, Load};
use crate::transform::Transform;
use ndarray::{Array, ArrayRef, Zip};

/// Conformal risk control of the missed fraction (Angelopoulos et al. 2022;
/// METHOD.md §4.3): an outer set that misses, in expectation, at most an
/// `alpha` share of the object — a weaker promise than the conformal sets'
/// "the whole object, with probability `1 - alpha`", and a smaller set.
///
/// # Definition
///
/// For calibration image `i` with true mask `Y_i` and outer scores `f_O`,
/// the missed fraction of the outer set `O_t = {f_O >= t}` is
/// `FNR_i(t) = |{v in Y_i : f_O(v) < t}| / |Y_i|` (0 for an empty mask),
/// nondecreasing in `t` and at most 1. The threshold is the largest `t` with
///
/// ```text
/// n/(n+1) * mean_i FNR_i(t) + 1/(n+1) <= alpha,
/// ```
///
/// (the paper's `lambda = inf{l : ...}` with `l = -t`, loss bound 1), and
/// for a new exchangeable image `E[FNR(t)] <= alpha`. If no `t` qualifies
/// (`alpha < 1/(n+1)`), `t = -inf` and the outer set is the whole image.
/// There is no inner set (it is empty).
///
/// Unlike the conformal statistics (two numbers per image), the threshold
/// needs every object voxel's outer score: this type keeps them,
/// 8 bytes per object voxel.
///
/// Built by [`Calibrator::risk_calibrate_stream`] or
/// [`Calibrator::observe_risk`], or by hand with [`RiskCalibration::push`].
///
/// ```
/// use confseg::{Alpha, RiskCalibration};
/// let mut cal = RiskCalibration::new();
/// cal.push(vec![1.0, 2.0, 3.0, 4.0])?;
/// cal.push(vec![4.0, 3.0, 2.0, 1.0])?;
/// // n = 2, alpha = 0.5: the mean missed fraction may be (0.5 * 3 - 1) / 2 = 0.25,
/// // so the outer set {f_O >= 2} (missing one voxel of four) is the smallest allowed.
/// assert_eq!(cal.threshold(Alpha::new(0.5)?)?, 2.0);
/// assert_eq!(cal.missed_fraction(2.0), 0.25);
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RiskCalibration {
    /// Per image, the outer scores of its object voxels, ascending.
    objects: Vec<Vec<f64>>,
    origin: Origin,
}

impl RiskCalibration {
    /// No images yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one image given by the outer scores `f_O(v)` of its object
    /// voxels, in any order (an empty list for an empty mask).
    ///
    /// # Errors
    /// [`Error::NanScore`] for a NaN score.
    pub fn push(&mut self, mut object_scores: Vec<f64>) -> Result<()> {
        if let Some(index) = object_scores.iter().position(|x| x.is_nan()) {
            return Err(Error::NanScore {
                what: "outer scores",
                image: Some(self.len()),
                index: vec![index],
            });
        }
        object_scores.sort_unstable_by(f64::total_cmp);
        self.objects.push(object_scores);
        Ok(())
    }

    /// Number of images.
    #[must_use]
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Per image, the outer scores of its object voxels, ascending.
    #[must_use]
    pub fn object_scores(&self) -> &[Vec<f64>] {
        &self.objects
    }

    /// Whether no image was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The calibrator settings the scores were computed with (`None` if
    /// filled by hand).
    #[must_use]
    pub fn provenance(&self) -> Option<&Provenance> {
        self.origin.provenance.as_ref()
    }

    /// Whether some image used its own spacing.
    #[must_use]
    pub fn per_image_spacing(&self) -> bool {
        self.origin.per_image_spacing
    }

    /// Append the images of `other` (e.g. computed on another machine).
    ///
    /// # Errors
    /// [`Error::IncompatibleCalibration`] if the two were computed with
    /// different calibrator settings.
    pub fn merge(&mut self, other: &RiskCalibration) -> Result<()> {
        self.origin.merge(&other.origin)?;
        self.objects.extend(other.objects.iter().cloned());
        Ok(())
    }

    /// The mean missed fraction `mean_i FNR_i(t)` of the outer sets
    /// `{f_O >= t}` over the calibration images.
    #[must_use]
    pub fn missed_fraction(&self, t: f64) -> f64 {
        let objects: Vec<&[f64]> = self.objects.iter().map(Vec::as_slice).collect();
        mean_missed(&objects, |o| o.partition_point(|&v| v < t))
    }

    /// The risk-controlling threshold `t` at level `alpha` (definition
    /// above); the outer set of a new image is `{f_O >= t}`.
    ///
    /// # Errors
    /// [`Error::NoCalibrationData`] if no image was added.
    pub fn threshold(&self, alpha: Alpha) -> Result<f64> {
        if self.is_empty() {
            return Err(Error::NoCalibrationData);
        }
        let objects: Vec<&[f64]> = self.objects.iter().map(Vec::as_slice).collect();
        Ok(risk_threshold(&objects, &sorted_unique(objects.iter().copied()), alpha))
    }
}

/// `mean_i missed(i) / |Y_i|`, with 0 for empty masks.
fn mean_missed(objects: &[&[f64]], missed: impl Fn(&[f64]) -> usize) -> f64 {
    let total: f64 =
        objects.iter().filter(|o| !o.is_empty()).map(|o| missed(o) as f64 / o.len() as f64).sum();
    total / objects.len() as f64
}

/// Every value of the sorted slices once, ascending.
pub(crate) fn sorted_unique<'a>(parts: impl Iterator<Item = &'a [f64]>) -> Vec<f64> {
    let mut v: Vec<f64> = parts.flatten().copied().collect();
    v.sort_unstable_by(f64::total_cmp);
    v.dedup_by(|a, b| a.total_cmp(b).is_eq());
    v
}

/// The smallest candidate `x` with `pred(x)`, for `pred` monotone (false
/// then true) over the sorted candidates; `None` if it never holds.
pub(crate) fn smallest_with(candidates: &[f64], pred: impl Fn(f64) -> bool) -> Option<f64> {
    candidates.get(candidates.partition_point(|&x| !pred(x))).copied()
}

/// The risk-control threshold for images given by their sorted object
/// scores, searching `candidates` (sorted, holding every object score).
/// The mean missed fraction of `{f_O >= x}` jumps just above each score
/// `x`; the largest valid `t` is the first score where the fraction just
/// above it exceeds the bound.
pub(crate) fn risk_threshold(objects: &[&[f64]], candidates: &[f64], alpha: Alpha) -> f64 {
    let n = objects.len() as f64;
    let bound = (alpha.get() * (n + 1.0) - 1.0) / n;
    if bound < 0.0 {
        return f64::NEG_INFINITY;
    }
    let above = |x: f64| mean_missed(objects, |o| o.partition_point(|&v| v <= x));
    smallest_with(candidates, |x| above(x) > bound).unwrap_or(f64::INFINITY)
}

impl<TI: Transform, TO: Transform> Calibrator<TI, TO> {
    /// The outer scores `f_O(v)` of the object voxels of one labelled image
    /// (with the image's own spacing if it carries one, else the default).
    ///
    /// # Errors
    /// Shape mismatch, NaN scores (in the input or made by the transform),
    /// non-binary mask values, or a transform error.
    pub fn object_scores<I, M>(&self, scores: &I, mask: &ArrayRef<M, I::Dim>) -> Result<Vec<f64>>
    where
        I: AsImage + ?Sized,
        M: MaskValue,
    {
        let s = scores.scores();
        check_shape("scores vs mask", mask, s)?;
        crate::image::check_mask(mask)?;
        crate::image::check_nonempty(s.shape())?;
        crate::image::check_nan("scores", s)?;
        let fo = self.outer_transform().apply(s, scores.spacing().unwrap_or(self.spacing()))?;
        let mut out = Vec::new();
        let mut nan = false;
        Zip::from(&fo).and(mask).for_each(|&x, m| {
            if m.is_object() {
                let x = x.to_f64_lossless();
                nan |= x.is_nan();
                out.push(x);
            }
        });
        if nan {
            crate::image::check_nan("outer scores", &fo).map_err(|e| match e {
                Error::NanScore { index, .. } => Error::TransformNan {
                    transform: self.outer_transform().describe(),
                    side: "outer",
                    image: None,
                    index,
                },
                other => other,
            })?;
        }
        Ok(out)
    }

    /// Add one labelled image to `calibration`; errors name the image by
    /// its position.
    ///
    /// # Errors
    /// As [`Calibrator::object_scores`]; [`Error::DimensionMismatch`] or
    /// [`Error::IncompatibleCalibration`] if the image or the calibrator do
    /// not match the images already in `calibration`.
    pub fn observe_risk<I, M>(
        &self,
        calibration: &mut RiskCalibration,
        scores: &I,
        mask: &ArrayRef<M, I::Dim>,
    ) -> Result<()>
    where
        I: AsImage + ?Sized,
        M: MaskValue,
    {
        let n = calibration.len();
        let o = self
            .admit(&mut calibration.origin, scores.scores().ndim())
            .and_then(|()| self.object_scores(scores, mask));
        calibration.origin.per_image_spacing |= scores.spacing().is_some();
        calibration.push(o.map_err(|e| e.in_image(n))?)
    }

    /// The object scores of a stream of labelled images, read and
    /// transformed in parallel with at most [`default_in_flight`] images in
    /// memory (as [`Calibrator::calibrate_stream`]).
    ///
    /// # Errors
    /// The source's first error, or as [`Calibrator::observe_risk`] for the
    /// first failing image, tagged with its position in the stream.
    pub fn risk_calibrate_stream<P, I, M, S>(&self, pairs: S) -> Result<RiskCalibration>
    where
        S: Iterator<Item = Result<P>> + Send,
        P: Load<Output = (I, Array<M, I::Dim>)>,
        I: AsImage + Send,
        M: MaskValue,
        TI: Sync,
        TO: Sync,
    {
        let mut cal = RiskCalibration::new();
        stream(
            pairs,
            default_in_flight(),
            |i, item: P| {
                let (image, mask) = item.load().map_err(|e| e.in_image(i))?;
                let objects = self.object_scores(&image, &mask).map_err(|e| e.in_image(i))?;
                Ok((image.scores().ndim(), image.spacing().is_some(), objects))
            },
            |i, (ndim, own, objects)| {
                self.admit(&mut cal.origin, ndim).map_err(|e| e.in_image(i))?;
                cal.origin.per_image_spacing |= own;
                cal.push(objects).map_err(|e| e.in_image(i))
            },
        )?;
        Ok(cal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_by_brute_force_grid() {
        // The definition evaluated on a fine grid of t.
        let mut cal = RiskCalibration::new();
        for i in 0..9usize {
            let o: Vec<f64> = (0..(i % 4)).map(|k| ((i * 37 + k * 11) % 17) as f64 * 0.5 - 2.0).collect();
            cal.push(o).unwrap();
        }
        let n = cal.len() as f64;
        for a in [0.12, 0.2, 0.35, 0.5] {
            let alpha = Alpha::new(a).unwrap();
            let grid = (-400..=400).map(|i| f64::from(i) / 50.0);
            let want = grid
                .filter(|&t| n / (n + 1.0) * cal.missed_fraction(t) + 1.0 / (n + 1.0) <= a)
                .fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(cal.threshold(alpha).unwrap(), want, "alpha={a}");
        }
        // Too few images: everything; a level above the largest possible
        // missed fraction: the threshold is +inf (6 of 9 masks are non-empty).
        assert_eq!(cal.threshold(Alpha::new(0.05).unwrap()).unwrap(), f64::NEG_INFINITY);
        assert_eq!(cal.threshold(Alpha::new(0.8).unwrap()).unwrap(), f64::INFINITY);
        assert!((cal.missed_fraction(f64::INFINITY) - 6.0 / 9.0).abs() < 1e-15);
    }
}

#[cfg(feature = "serde")]
mod serde_impl {
    //! JSON shape: `{objects: [[...], ...], provenance: {...} | null,
    //! per_image_spacing: bool}` with infinities as `"inf"` / `"-inf"`.

    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    use super::{Origin, Provenance, RiskCalibration};
    use crate::json::Number;

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Repr {
        objects: Vec<Vec<Number>>,
        #[serde(default)]
        provenance: Option<Provenance>,
        #[serde(default)]
        per_image_spacing: bool,
    }

    impl Serialize for RiskCalibration {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            Repr {
                objects: self.objects.iter().map(|o| o.iter().map(|&x| Number(x)).collect()).collect(),
                provenance: self.origin.provenance.clone(),
                per_image_spacing: self.origin.per_image_spacing,
            }
            .serialize(s)
        }
    }

    impl<'de> Deserialize<'de> for RiskCalibration {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let r: Repr = crate::json::one_line_errors(d)?;
            if let Some(p) = &r.provenance {
                p.validate().map_err(|e| de::Error::custom(format!("\"provenance\": {e}")))?;
            }
            let mut out = RiskCalibration {
                objects: Vec::with_capacity(r.objects.len()),
                origin: Origin { provenance: r.provenance, per_image_spacing: r.per_image_spacing },
            };
            for (i, o) in r.objects.into_iter().enumerate() {
                // `push` checks for NaN (other formats than JSON can hold
                // one) and sorts: a file need not keep the order
                out.push(o.into_iter().map(|x| x.0).collect())
                    .map_err(|e| de::Error::custom(format!("\"objects\"[{i}]: {e}")))?;
            }
            Ok(out)
        }
    }
}
