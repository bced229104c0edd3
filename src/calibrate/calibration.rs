//! The streaming calibration state: every image's `(tau_i, gamma_i)`, and
//! what they were computed with ([`Provenance`]), so that states computed
//! by different workers merge only when they are comparable.

use std::fmt;

use super::kernel::ImageStatistics;
use crate::error::{Error, Result, Warning};
use crate::image::Spacing;
use crate::levels::{Mode, ModeKind};
use crate::quantile::conformal_quantile;
use crate::quantile::Thresholds;
use crate::sets::ConfidenceSets;
use crate::tolerance::Tolerances;

/// What a [`Calibration`]'s statistics were computed with: the transforms
/// (by their [`Transform::describe`](crate::Transform::describe) text), the
/// combination function, the tolerances of the events (containment unless
/// set), the calibrator's default spacing and the image dimensionality.
/// Statistics are comparable, and calibrations merge, only when all of
/// these agree.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Provenance {
    inner: String,
    outer: String,
    combination: String,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Tolerances::is_none"))]
    tolerances: Tolerances,
    spacing: Spacing,
    ndim: usize,
}

impl Provenance {
    pub(crate) fn new(
        inner: String,
        outer: String,
        tolerances: Tolerances,
        spacing: Spacing,
        ndim: usize,
    ) -> Self {
        Provenance { inner, outer, combination: "max".to_owned(), tolerances, spacing, ndim }
    }

    /// The inner transform `f_I`.
    #[must_use]
    pub fn inner(&self) -> &str {
        &self.inner
    }

    /// The outer transform `f_O`.
    #[must_use]
    pub fn outer(&self) -> &str {
        &self.outer
    }

    /// The combination function.
    #[must_use]
    pub fn combination(&self) -> &str {
        &self.combination
    }

    /// The tolerance of each side's event.
    #[must_use]
    pub fn tolerances(&self) -> &Tolerances {
        &self.tolerances
    }

    /// The default spacing, used for images without their own.
    #[must_use]
    pub fn spacing(&self) -> &Spacing {
        &self.spacing
    }

    /// The image dimensionality.
    #[must_use]
    pub fn ndim(&self) -> usize {
        self.ndim
    }

    /// The first field in which `self` and `other` differ, with both values.
    fn difference(&self, other: &Provenance) -> Option<(&'static str, String, String)> {
        let fields = [
            ("inner transform", self.inner.clone(), other.inner.clone()),
            ("outer transform", self.outer.clone(), other.outer.clone()),
            ("combination", self.combination.clone(), other.combination.clone()),
            ("inner tolerance", self.tolerances.inner.to_string(), other.tolerances.inner.to_string()),
            ("outer tolerance", self.tolerances.outer.to_string(), other.tolerances.outer.to_string()),
            ("default spacing", self.spacing.to_string(), other.spacing.to_string()),
            ("image dimensionality", self.ndim.to_string(), other.ndim.to_string()),
        ];
        fields.into_iter().find(|(_, a, b)| a != b)
    }

    /// [`Error::InvalidParameter`] for images of no axes, and
    /// [`Error::InvalidSpacing`] for an explicit default spacing without
    /// one entry per axis: a provenance that fitted sets could record but
    /// a fitted-sets file could not be read back with.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.combination != "max" {
            return Err(Error::InvalidParameter {
                name: "combination",
                value: self.combination.clone(),
                reason: "the statistics are maxima over regions: the combination is \"max\"".into(),
            });
        }
        if self.ndim == 0 {
            return Err(Error::InvalidParameter {
                name: "image dimensionality",
                value: "0".into(),
                reason: "images have at least one axis".into(),
            });
        }
        match self.spacing.as_slice() {
            Some(sp) if sp.len() != self.ndim => Err(Error::InvalidSpacing {
                spacing: sp.to_vec(),
                ndim: self.ndim,
                reason: "the calibrator's default spacing needs one entry per image axis",
            }),
            _ => Ok(()),
        }
    }

    /// [`Error::IncompatibleCalibration`] unless `other` equals `self`.
    pub(crate) fn check(&self, other: &Provenance) -> Result<()> {
        match self.difference(other) {
            None => Ok(()),
            Some((field, ours, theirs)) => Err(Error::IncompatibleCalibration { field, ours, theirs }),
        }
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "f_I = {}, f_O = {}, combination {}", self.inner, self.outer, self.combination)?;
        if !self.tolerances.is_none() {
            write!(f, ", event {}", self.tolerances)?;
        }
        write!(f, ", {}-D images, default spacing {}", self.ndim, self.spacing)
    }
}

/// What a calibration state's images were computed with ([`Provenance`];
/// `None` for a state filled by hand) and whether some image carried its
/// own spacing: what every calibration state — conformal statistics, risk
/// control's object scores, several structures — has in common, merged by
/// one rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Origin {
    pub(crate) provenance: Option<Provenance>,
    pub(crate) per_image_spacing: bool,
}

impl Origin {
    /// Join the origin of another state: provenances must agree (a state
    /// without one takes the other's); `self` is unchanged on error.
    pub(crate) fn merge(&mut self, other: &Origin) -> Result<()> {
        match (&self.provenance, &other.provenance) {
            (Some(ours), Some(theirs)) => ours.check(theirs)?,
            (None, Some(theirs)) => self.provenance = Some(theirs.clone()),
            (_, None) => {}
        }
        self.per_image_spacing |= other.per_image_spacing;
        Ok(())
    }

    /// Admit images of `ndim` axes computed with the provenance `ours`
    /// gives: the same dimensionality (checked first) and calibrator
    /// settings as the images already in the state, recorded if it has none.
    pub(crate) fn admit(&mut self, ndim: usize, ours: impl FnOnce() -> Result<Provenance>) -> Result<()> {
        if let Some(p) = self.provenance.as_ref().filter(|p| p.ndim() != ndim) {
            return Err(Error::DimensionMismatch { expected: p.ndim(), found: ndim, image: None });
        }
        let ours = ours()?;
        match &self.provenance {
            Some(p) => p.check(&ours),
            None => {
                self.provenance = Some(ours);
                Ok(())
            }
        }
    }
}

/// The streaming calibration state: the `(tau_i, gamma_i)` of every image seen.
///
/// Merging two states ([`Calibration::merge`]) is concatenation, so the
/// thresholds do not depend on how the images were split across workers or
/// in which order they arrived. A state filled by a
/// [`Calibrator`](crate::Calibrator) records its [`Provenance`] and whether
/// some image carried its own spacing; states of different provenance do
/// not merge. A state filled by hand ([`Calibration::push`]) has no
/// provenance and merges with any.
///
/// With the `serde` feature it round-trips through JSON (infinite
/// statistics as the strings `"inf"` / `"-inf"`), to be merged on another
/// machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calibration {
    tau: Vec<f64>,
    gamma: Vec<f64>,
    origin: Origin,
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
    ///
    /// ```
    /// use confseg::{Calibration, Calibrator, Identity, Sigmoid};
    /// use ndarray::array;
    /// let (s, m) = (array![[0.5_f64, -1.0]], array![[1u8, 0]]);
    /// let (mut a, mut b, mut c) = (Calibration::new(), Calibration::new(), Calibration::new());
    /// Calibrator::new(Identity, Identity).observe(&mut a, &s, &m)?;
    /// Calibrator::new(Identity, Identity).observe(&mut b, &s, &m)?;
    /// Calibrator::new(Sigmoid, Identity).observe(&mut c, &s, &m)?;
    /// a.merge(&b)?;
    /// assert_eq!(a.len(), 2);
    /// assert!(a.merge(&c).is_err()); // computed with another f_I
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::IncompatibleCalibration`] if both states have a provenance
    /// and they differ (another transform, combination, default spacing or
    /// image dimensionality); `self` is then unchanged.
    pub fn merge(&mut self, other: &Calibration) -> Result<()> {
        self.origin.merge(&other.origin)?;
        self.tau.extend_from_slice(&other.tau);
        self.gamma.extend_from_slice(&other.gamma);
        Ok(())
    }

    /// What the images were computed with, for the calibrator to admit more.
    pub(crate) fn origin_mut(&mut self) -> &mut Origin {
        &mut self.origin
    }

    /// What the statistics were computed with (`None` for a state filled by hand).
    #[must_use]
    pub fn provenance(&self) -> Option<&Provenance> {
        self.origin.provenance.as_ref()
    }

    /// Whether some image was transformed with its own spacing rather than
    /// the calibrator's default.
    #[must_use]
    pub fn per_image_spacing(&self) -> bool {
        self.origin.per_image_spacing
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
    /// [`Error::InvalidParameter`] if an index is out of range or repeated.
    pub fn select(&self, indices: &[usize]) -> Result<Calibration> {
        let mut out = Calibration {
            tau: Vec::with_capacity(indices.len()),
            gamma: Vec::with_capacity(indices.len()),
            origin: self.origin.clone(),
        };
        check_indices(indices, self.len())?;
        for &i in indices {
            if let Some(s) = self.get(i) {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// The thresholds for `mode` (METHOD.md §4).
    ///
    /// With fewer than [`Mode::min_calibration_size`] images a threshold is
    /// [`Threshold::TooFewImages`](crate::Threshold::TooFewImages) (`+inf`): valid but uninformative.
    ///
    /// ```
    /// use confseg::{Alpha, Calibration, Mode};
    /// use confseg::calibrate::ImageStatistics;
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
        let rank = mode.rank();
        if mode.kind() == ModeKind::Max {
            let joint: Vec<f64> = self.iter().map(|s| s.joint()).collect();
            let t = conformal_quantile(&joint, mode.inner_alpha(), rank)?;
            return Ok(Thresholds { inner: t, outer: t });
        }
        Ok(Thresholds {
            inner: conformal_quantile(&self.tau, mode.inner_alpha(), rank)?,
            outer: conformal_quantile(&self.gamma, mode.outer_alpha(), rank)?,
        })
    }
}

impl Calibration {
    /// Warnings about sets fitted on this calibration: those of the sets
    /// ([`ConfidenceSets::warnings`]) and, for the max mode, a threshold
    /// above every image's inner statistic (the transforms are on
    /// different scales, and the inner set is empty unless `f_I` exceeds it).
    #[must_use]
    pub fn warnings<TI, TO>(&self, sets: &ConfidenceSets<TI, TO>) -> Vec<Warning> {
        let mut out = sets.warnings();
        if sets.guarantee().kind() == ModeKind::Max {
            let lambda = sets.thresholds().inner.value();
            let max_tau = self.tau.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if lambda.is_finite() && max_tau.is_finite() && lambda > max_tau {
                out.push(Warning::MaxModeScales { lambda, max_tau });
            }
        }
        out
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

#[cfg(feature = "serde")]
mod serde_impl {
    //! JSON shape: `{tau: [...], gamma: [...], provenance: {...} | null,
    //! per_image_spacing: bool}` with infinities as `"inf"` / `"-inf"`.

    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    use super::{Calibration, Origin, Provenance};
    use crate::json::Number;

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Repr {
        tau: Vec<Number>,
        gamma: Vec<Number>,
        #[serde(default)]
        provenance: Option<Provenance>,
        #[serde(default)]
        per_image_spacing: bool,
    }

    impl Serialize for Calibration {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            Repr {
                tau: self.tau.iter().map(|&x| Number(x)).collect(),
                gamma: self.gamma.iter().map(|&x| Number(x)).collect(),
                provenance: self.origin.provenance.clone(),
                per_image_spacing: self.origin.per_image_spacing,
            }
            .serialize(s)
        }
    }

    impl<'de> Deserialize<'de> for Calibration {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let r: Repr = crate::json::one_line_errors(d)?;
            if r.tau.len() != r.gamma.len() {
                return Err(de::Error::custom(format!(
                    "\"tau\" has {} values and \"gamma\" {}; one pair per image is needed",
                    r.tau.len(),
                    r.gamma.len()
                )));
            }
            if let Some(p) = &r.provenance {
                p.validate().map_err(|e| de::Error::custom(format!("\"provenance\": {e}")))?;
            }
            for (name, v) in [("tau", &r.tau), ("gamma", &r.gamma)] {
                if let Some(i) = v.iter().position(|x| x.0.is_nan()) {
                    return Err(de::Error::custom(format!("\"{name}\"[{i}] is NaN")));
                }
            }
            Ok(Calibration {
                tau: r.tau.into_iter().map(|x| x.0).collect(),
                gamma: r.gamma.into_iter().map(|x| x.0).collect(),
                origin: Origin { provenance: r.provenance, per_image_spacing: r.per_image_spacing },
            })
        }
    }
}

/// Check a selection of calibration images: each index below `len`, none
/// twice.
///
/// # Errors
/// [`Error::InvalidParameter`] naming the index.
pub(crate) fn check_indices(indices: &[usize], len: usize) -> Result<()> {
    let mut seen = vec![false; len];
    for &i in indices {
        let Some(slot) = seen.get_mut(i) else {
            return Err(Error::InvalidParameter {
                name: "image index",
                value: i.to_string(),
                reason: format!("only {len} calibration images"),
            });
        };
        if std::mem::replace(slot, true) {
            return Err(Error::InvalidParameter {
                name: "image index",
                value: i.to_string(),
                reason: "given twice; a calibration counts each image once".into(),
            });
        }
    }
    Ok(())
}
