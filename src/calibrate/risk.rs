//! Risk control (METHOD.md §4.3, §4.5): the per-voxel state [`RiskCalibration`].

use super::{Calibrator, Origin, Provenance};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::image::{check_shape, AsImage};
use crate::mask::MaskValue;
use crate::quantile::Thresholds;
use crate::quantile::{Alpha, Threshold};
use crate::risk::select::{self, Scored};
use crate::risk::Risk;
use crate::risk::RiskControl;
use crate::stream::{default_in_flight, stream, Load};
use crate::transform::Transform;
use ndarray::{Array, ArrayRef, Zip};

/// The calibration state of risk control (Angelopoulos et al. 2022,
/// Bates et al. 2021; METHOD.md §4.3, §4.5): per image, the scores of its
/// voxels on the side the [`Risk`] is about, from which the threshold of
/// any [`RiskControl`] of that risk is fitted exactly.
///
/// * [`Risk::Recall`] keeps the outer scores `f_O(v)` of the object voxels
///   (8 bytes per object voxel): the missed fraction of the outer set
///   `O_t = {f_O >= t}` is `FNR_i(t) = |{v in Y_i : f_O(v) < t}| / |Y_i|`
///   (0 for an empty mask), nondecreasing in `t` and at most 1.
/// * [`Risk::Precision`] keeps the inner scores `f_I(v)` of every voxel,
///   object and background (8 bytes per voxel): the false share of the
///   inner set `I_l = {f_I > l}` is `|I_l \ Y_i| / |I_l|`.
///
/// # Conformal risk control of the missed fraction
///
/// For [`RiskControl::new`] (recall, no `delta`, exact search) the
/// threshold is the largest `t` with
///
/// ```text
/// n/(n+1) * mean_i FNR_i(t) + 1/(n+1) <= alpha,
/// ```
///
/// (the paper's `lambda = inf{l : ...}` with `l = -t`, loss bound 1), and
/// for a new exchangeable image `E[FNR(t)] <= alpha`. If no `t` qualifies
/// (`alpha < 1/(n+1)`), `t = -inf` and the outer set is the whole image.
/// There is no inner set (it is empty). The other methods
/// ([`RiskCalibration::thresholds`]) are in METHOD.md §4.5.
///
/// Built by [`Calibrator::risk_calibrate_stream`] or
/// [`Calibrator::observe_risk`], or by hand with [`RiskCalibration::push`].
///
/// ```
/// use confseg::Alpha;
/// use confseg::calibrate::RiskCalibration;
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
    risk: Risk,
    /// Per image, the scores of its object voxels, ascending.
    objects: Vec<Vec<f64>>,
    /// Per image (precision only), the scores of its background voxels, ascending.
    backgrounds: Vec<Vec<f64>>,
    origin: Origin,
}

impl RiskCalibration {
    /// No images yet, for the recall risk.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// No images yet, for `risk`.
    #[must_use]
    pub fn for_risk(risk: Risk) -> Self {
        RiskCalibration { risk, ..Self::default() }
    }

    /// The risk these scores are for.
    #[must_use]
    pub fn risk(&self) -> Risk {
        self.risk
    }

    /// Add one image given by the scores of its object voxels, in any
    /// order (an empty list for an empty mask): for recall, the outer
    /// scores; for precision, the inner scores of an image without
    /// background (see [`RiskCalibration::push_with_background`]).
    ///
    /// # Errors
    /// [`Error::NanScore`] for a NaN score.
    pub fn push(&mut self, object_scores: Vec<f64>) -> Result<()> {
        self.push_image(object_scores, Vec::new())
    }

    /// Add one image of a precision state given by the inner scores of
    /// its object voxels and of its background voxels, in any order.
    ///
    /// # Errors
    /// [`Error::NanScore`] for a NaN score; [`Error::InvalidParameter`]
    /// for background scores given to a recall state (which keeps the
    /// object voxels only).
    pub fn push_with_background(
        &mut self,
        object_scores: Vec<f64>,
        background_scores: Vec<f64>,
    ) -> Result<()> {
        if self.risk == Risk::Recall && !background_scores.is_empty() {
            return Err(Error::InvalidParameter {
                name: "background scores",
                value: format!("{} values", background_scores.len()),
                reason: "a recall state keeps the outer scores of the object voxels only".into(),
            });
        }
        self.push_image(object_scores, background_scores)
    }

    fn push_image(&mut self, mut object: Vec<f64>, mut background: Vec<f64>) -> Result<()> {
        let what = match self.risk {
            Risk::Recall => "outer scores",
            Risk::Precision => "inner scores",
        };
        for (values, offset) in [(&object, 0), (&background, object.len())] {
            if let Some(index) = values.iter().position(|x| x.is_nan()) {
                return Err(Error::NanScore { what, image: Some(self.len()), index: vec![offset + index] });
            }
        }
        object.sort_unstable_by(f64::total_cmp);
        background.sort_unstable_by(f64::total_cmp);
        self.objects.push(object);
        if self.risk == Risk::Precision {
            self.backgrounds.push(background);
        }
        Ok(())
    }

    /// Number of images.
    #[must_use]
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Per image, the scores of its object voxels, ascending.
    #[must_use]
    pub fn object_scores(&self) -> &[Vec<f64>] {
        &self.objects
    }

    /// Per image, the scores of its background voxels, ascending (empty
    /// for a recall state).
    #[must_use]
    pub fn background_scores(&self) -> &[Vec<f64>] {
        &self.backgrounds
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

    /// The images `indices`, in that order, with this state's provenance.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for an index out of range or given twice.
    pub fn select(&self, indices: &[usize]) -> Result<RiskCalibration> {
        super::calibration::check_indices(indices, self.len())?;
        let pick = |v: &[Vec<f64>]| indices.iter().filter_map(|&i| v.get(i).cloned()).collect();
        Ok(RiskCalibration {
            risk: self.risk,
            objects: pick(&self.objects),
            backgrounds: pick(&self.backgrounds),
            origin: self.origin.clone(),
        })
    }

    /// Append the images of `other` (e.g. computed on another machine).
    ///
    /// # Errors
    /// [`Error::IncompatibleCalibration`] if the two were computed with
    /// different calibrator settings; [`Error::Options`] if they are for
    /// different risks.
    pub fn merge(&mut self, other: &RiskCalibration) -> Result<()> {
        if other.risk != self.risk && !other.is_empty() && !self.is_empty() {
            return Err(Error::Options {
                reason: format!(
                    "a {} risk calibration cannot take the images of a {} one (they keep different scores)",
                    self.risk, other.risk
                ),
            });
        }
        self.origin.merge(&other.origin)?;
        if self.is_empty() {
            self.risk = other.risk;
        }
        self.objects.extend(other.objects.iter().cloned());
        self.backgrounds.extend(other.backgrounds.iter().cloned());
        Ok(())
    }

    /// Each image's sorted scores, as the search takes them.
    fn scored(&self) -> Vec<Scored<'_>> {
        self.objects
            .iter()
            .enumerate()
            .map(|(i, o)| Scored {
                object: o,
                background: self.backgrounds.get(i).map_or(&[], Vec::as_slice),
            })
            .collect()
    }

    /// The mean missed fraction `mean_i FNR_i(t)` of the outer sets
    /// `{f_O >= t}` over the calibration images (recall).
    #[must_use]
    pub fn missed_fraction(&self, t: f64) -> f64 {
        let objects: Vec<&[f64]> = self.objects.iter().map(Vec::as_slice).collect();
        select::mean_missed(&objects, t, false)
    }

    /// The conformal risk control threshold `t` at level `alpha` (recall,
    /// in expectation; definition above); the outer set of a new image is
    /// `{f_O >= t}`.
    ///
    /// # Errors
    /// [`Error::NoCalibrationData`] if no image was added;
    /// [`Error::Options`] for a precision state.
    pub fn threshold(&self, alpha: Alpha) -> Result<f64> {
        let t = self.thresholds(&RiskControl::new(alpha))?;
        Ok(-t.outer.value())
    }

    /// The thresholds of risk control `level` (METHOD.md §4.3, §4.5), in
    /// the convention of fitted sets: for recall the outer set
    /// `{-f_O <= lambda_O}` (`lambda_O = +inf`, the whole image, if
    /// nothing is certified) and no inner set (`lambda_I = +inf`); for
    /// precision the inner set `{f_I > lambda_I}` (`+inf`, empty, if
    /// nothing is certified) and the whole image as the outer set.
    ///
    /// ```
    /// use confseg::risk::RiskControl;
    /// use confseg::quantile::Delta;
    /// use confseg::risk::Risk;
    /// use confseg::Alpha;
    /// use confseg::calibrate::RiskCalibration;
    /// let mut cal = RiskCalibration::for_risk(Risk::Precision);
    /// for i in 0..60 {
    ///     // object voxels score 2 and 3, background 0 and 1 (and 2.5 on every 6th image)
    ///     let bg = if i % 6 == 0 { vec![0.0, 1.0, 2.5] } else { vec![0.0, 1.0] };
    ///     cal.push_with_background(vec![2.0, 3.0], bg)?;
    /// }
    /// let t = cal.thresholds(&RiskControl::precision(Alpha::new(0.2)?, Delta::new(0.1)?))?;
    /// // {f_I > 1}: 10 of 60 images have a false share 1/3; certified with probability 0.9
    /// assert_eq!(t.inner.value(), 1.0);
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NoCalibrationData`] if no image was added;
    /// [`Error::Options`] if the state is for another risk.
    pub fn thresholds(&self, level: &RiskControl) -> Result<Thresholds> {
        if self.is_empty() {
            return Err(Error::NoCalibrationData);
        }
        if level.risk() != self.risk {
            return Err(Error::Options {
                reason: format!(
                    "risk control of the {} risk needs the scores of a {} risk calibration, not of a {} one",
                    level.risk(),
                    level.risk(),
                    self.risk
                ),
            });
        }
        let v = select::fit(&self.scored(), level, None);
        let trivial = Threshold::RiskControl { value: f64::INFINITY };
        Ok(match self.risk {
            // {f_O >= v} = {-f_O <= -v}
            Risk::Recall => Thresholds { inner: trivial, outer: Threshold::RiskControl { value: -v } },
            Risk::Precision => Thresholds { inner: Threshold::RiskControl { value: v }, outer: trivial },
        })
    }
}

impl<TI: Transform, TO: Transform> Calibrator<TI, TO> {
    /// The outer scores `f_O(v)` of the object voxels of one labelled image
    /// (with the image's own spacing if it carries one, else the default):
    /// what a recall state keeps.
    ///
    /// # Errors
    /// Shape mismatch, NaN scores (in the input or made by the transform),
    /// non-binary mask values, or a transform error.
    pub fn object_scores<I, M>(&self, scores: &I, mask: &ArrayRef<M, I::Dim>) -> Result<Vec<f64>>
    where
        I: AsImage + ?Sized,
        M: MaskValue,
    {
        Ok(self.risk_scores(Risk::Recall, scores, mask)?.0)
    }

    /// What a state for `risk` keeps of one labelled image: the scores of
    /// its object voxels and of its background voxels on the risk's side
    /// (recall: `f_O` of the object voxels, no background; precision:
    /// `f_I` of every voxel), in image order. Ignored voxels of a
    /// [`Voxel`](crate::mask::Voxel) mask are in neither.
    ///
    /// # Errors
    /// As [`Calibrator::object_scores`].
    pub fn risk_scores<I, M>(
        &self,
        risk: Risk,
        scores: &I,
        mask: &ArrayRef<M, I::Dim>,
    ) -> Result<(Vec<f64>, Vec<f64>)>
    where
        I: AsImage + ?Sized,
        M: MaskValue,
    {
        let s = scores.scores();
        check_shape("scores vs mask", mask, s)?;
        crate::mask::check_mask(mask)?;
        crate::image::check_nonempty(s.shape())?;
        crate::image::check_nan("scores", s)?;
        let spacing = scores.spacing().unwrap_or(self.spacing());
        let (f, side, transform) = match risk {
            Risk::Recall => {
                (self.outer_transform().apply(s, spacing)?, "outer", self.outer_transform().describe())
            }
            Risk::Precision => {
                (self.inner_transform().apply(s, spacing)?, "inner", self.inner_transform().describe())
            }
        };
        let (mut object, mut background) = (Vec::new(), Vec::new());
        let mut nan = false;
        let keep_background = risk == Risk::Precision;
        Zip::from(&f).and(mask).for_each(|&x, m| {
            let x = x.to_f64_lossless();
            if m.is_ignored() {
                // neither object nor background: in no loss
            } else if m.is_object() {
                nan |= x.is_nan();
                object.push(x);
            } else if keep_background {
                nan |= x.is_nan();
                background.push(x);
            }
        });
        if nan {
            let what = if side == "inner" { "inner scores" } else { "outer scores" };
            crate::image::check_nan(what, &f).map_err(|e| match e {
                Error::NanScore { index, .. } => Error::TransformNan { transform, side, image: None, index },
                other => other,
            })?;
        }
        Ok((object, background))
    }

    /// Add one labelled image to `calibration` (the scores its risk
    /// keeps); errors name the image by its position.
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
        let risk = calibration.risk;
        let o = self
            .admit(&mut calibration.origin, scores.scores().ndim())
            .and_then(|()| self.risk_scores(risk, scores, mask));
        calibration.origin.per_image_spacing |= scores.spacing().is_some();
        let (object, background) = o.map_err(|e| e.in_image(n))?;
        calibration.push_image(object, background)
    }

    /// The risk control state for `risk` of a stream of labelled images,
    /// read and transformed in parallel with at most [`default_in_flight`]
    /// images in memory (as [`Calibrator::calibrate_stream`]).
    ///
    /// # Errors
    /// The source's first error, or as [`Calibrator::observe_risk`] for the
    /// first failing image, tagged with its position in the stream.
    pub fn risk_calibrate_stream<P, I, M, S>(&self, risk: Risk, pairs: S) -> Result<RiskCalibration>
    where
        S: Iterator<Item = Result<P>> + Send,
        P: Load<Output = (I, Array<M, I::Dim>)>,
        I: AsImage + Send,
        M: MaskValue,
        TI: Sync,
        TO: Sync,
    {
        let mut cal = RiskCalibration::for_risk(risk);
        stream(
            pairs,
            default_in_flight(),
            |i, item: P| {
                let (image, mask) = item.load().map_err(|e| e.in_image(i))?;
                let (mut object, mut background) =
                    self.risk_scores(risk, &image, &mask).map_err(|e| e.in_image(i))?;
                // sorted here, in parallel (the state's sort then finds them in order)
                object.sort_unstable_by(f64::total_cmp);
                background.sort_unstable_by(f64::total_cmp);
                Ok((image.scores().ndim(), image.spacing().is_some(), (object, background)))
            },
            |i, (ndim, own, (object, background))| {
                self.admit(&mut cal.origin, ndim).map_err(|e| e.in_image(i))?;
                cal.origin.per_image_spacing |= own;
                cal.push_image(object, background).map_err(|e| e.in_image(i))
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
    //! JSON shape: `{risk: "recall" | "precision", objects: [[...], ...],
    //! backgrounds: [[...], ...] (precision), provenance: {...} | null,
    //! per_image_spacing: bool}` with infinities as `"inf"` / `"-inf"`
    //! (`risk` defaults to recall, the state's only risk before 0.1).

    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    use super::{Origin, Provenance, Risk, RiskCalibration};
    use crate::json::Number;

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Repr {
        #[serde(default)]
        risk: Risk,
        objects: Vec<Vec<Number>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backgrounds: Option<Vec<Vec<Number>>>,
        #[serde(default)]
        provenance: Option<Provenance>,
        #[serde(default)]
        per_image_spacing: bool,
    }

    fn numbers(v: &[Vec<f64>]) -> Vec<Vec<Number>> {
        v.iter().map(|o| o.iter().map(|&x| Number(x)).collect()).collect()
    }

    impl Serialize for RiskCalibration {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            Repr {
                risk: self.risk,
                objects: numbers(&self.objects),
                backgrounds: (self.risk == Risk::Precision).then(|| numbers(&self.backgrounds)),
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
            let backgrounds = match (r.risk, r.backgrounds) {
                (Risk::Recall, None) => vec![Vec::new(); r.objects.len()],
                (Risk::Precision, Some(b)) if b.len() == r.objects.len() => b,
                (Risk::Precision, Some(b)) => {
                    return Err(de::Error::custom(format!(
                        "\"backgrounds\" has {} images, \"objects\" {}",
                        b.len(),
                        r.objects.len()
                    )))
                }
                (Risk::Precision, None) => {
                    return Err(de::Error::custom("a precision state needs \"backgrounds\""))
                }
                (Risk::Recall, Some(_)) => {
                    return Err(de::Error::custom("a recall state keeps no \"backgrounds\""))
                }
            };
            let mut out = RiskCalibration {
                risk: r.risk,
                objects: Vec::with_capacity(r.objects.len()),
                backgrounds: Vec::new(),
                origin: Origin { provenance: r.provenance, per_image_spacing: r.per_image_spacing },
            };
            for (i, (o, b)) in r.objects.into_iter().zip(backgrounds).enumerate() {
                // `push_image` checks for NaN (other formats than JSON can
                // hold one) and sorts: a file need not keep the order
                out.push_image(o.into_iter().map(|x| x.0).collect(), b.into_iter().map(|x| x.0).collect())
                    .map_err(|e| de::Error::custom(format!("image {i}: {e}")))?;
            }
            Ok(out)
        }
    }
}
