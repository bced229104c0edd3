//! Several structures calibrated together, with one joint guarantee
//! (METHOD.md §4.1).
//!
//! Medical label maps hold several structures (BraTS: whole tumour =
//! labels {1, 2, 4}, tumour core = {1, 4}, enhancing tumour = {4}); networks
//! output one score map per class. A [`Structure`] is a name and a label
//! set; [`StructureScores`] says how each structure's score map comes from
//! the network's output (a softmax over `C` classes summed over the
//! structure's classes, or one channel per structure). Every image gives
//! each structure `k` its statistics `(tau_ik, gamma_ik)` (the single
//! structure method, with the structure's binarized mask), kept in a
//! [`StructureCalibration`]. A [`JointMode`] turns them into thresholds:
//!
//! * **marginal**: each structure and side at its own level;
//! * **joint by max**: one threshold `lambda`, the conformal quantile of
//!   `Z_i = max_k max(tau_ik, gamma_ik)`; then
//!   `P(for every k: I_k ⊆ Y_k ⊆ O_k) >= 1 - alpha`;
//! * **joint by Bonferroni**: `alpha` split over the `2K` (structure, side)
//!   pairs by weights; the same joint guarantee by the union bound.

use ndarray::{Array, ArrayRef, RemoveAxis};

use super::calibration::Calibration;
use super::kernel::ImageStatistics;
use super::Calibrator;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::image::{Image, Spacing};
use crate::levels::{JointMode, ModeKind};
use crate::mask::{Coding, MaskValue, Structure, Voxel};
use crate::quantile::conformal_quantile;
use crate::quantile::Thresholds;
use crate::sets::StructureSets;
use crate::transform::{StructureScores, Transform};

/// The calibration state of several structures: one [`Calibration`] per
/// structure, aligned by image. Merges by concatenation, like one.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StructureCalibration {
    structures: Vec<String>,
    calibrations: Vec<Calibration>,
}

/// Class labels given once each, and every structure's labels among them.
fn check_class_labels(class_labels: &[i64], structures: &[Structure]) -> Result<()> {
    let bad = |reason: String| Error::InvalidParameter {
        name: "class labels",
        value: format!("{class_labels:?}"),
        reason,
    };
    for (i, l) in class_labels.iter().enumerate() {
        if class_labels[..i].contains(l) {
            return Err(bad(format!("label {l} is given twice; give each class channel's label once")));
        }
    }
    for st in structures {
        if let crate::mask::Labels::Select(ls) = st.labels() {
            if let Some(l) = ls.iter().find(|l| !class_labels.contains(l)) {
                return Err(bad(format!(
                    "structure {} names label {l}, which no class has; give the labels of the class channels",
                    st.name()
                )));
            }
        }
    }
    Ok(())
}

impl StructureCalibration {
    /// An empty state for these structures.
    #[must_use]
    pub fn new(structures: &[Structure]) -> Self {
        StructureCalibration {
            structures: structures.iter().map(|s| s.name().to_owned()).collect(),
            calibrations: vec![Calibration::new(); structures.len()],
        }
    }

    /// Number of calibration images.
    #[must_use]
    pub fn len(&self) -> usize {
        self.calibrations.first().map_or(0, Calibration::len)
    }

    /// Whether no image has been observed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each structure's calibration, in order.
    #[must_use]
    pub fn calibrations(&self) -> &[Calibration] {
        &self.calibrations
    }

    #[cfg(test)]
    pub(crate) fn calibrations_mut(&mut self) -> &mut [Calibration] {
        &mut self.calibrations
    }

    /// Append another state (e.g. from another worker).
    ///
    /// # Errors
    /// [`Error::IncompatibleCalibration`] if the structures or a
    /// structure's provenance differ; `self` is then unchanged.
    pub fn merge(&mut self, other: &StructureCalibration) -> Result<()> {
        if self.structures != other.structures {
            return Err(Error::IncompatibleCalibration {
                field: "structures",
                ours: self.structures.join(","),
                theirs: other.structures.join(","),
            });
        }
        let mut merged = self.calibrations.clone();
        for (a, b) in merged.iter_mut().zip(&other.calibrations) {
            a.merge(b)?;
        }
        self.calibrations = merged;
        Ok(())
    }

    /// A state holding only the images at `indices` (e.g. one calibration split).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if an index is out of range.
    pub fn select(&self, indices: &[usize]) -> Result<StructureCalibration> {
        Ok(StructureCalibration {
            structures: self.structures.clone(),
            calibrations: self.calibrations.iter().map(|c| c.select(indices)).collect::<Result<_>>()?,
        })
    }

    /// Warnings about sets fitted on this calibration, per structure (see
    /// [`Calibration::warnings`]).
    #[must_use]
    pub fn warnings<TI, TO>(&self, sets: &StructureSets<TI, TO>) -> Vec<(String, crate::Warning)> {
        sets.sets()
            .iter()
            .zip(&self.calibrations)
            .zip(sets.structures())
            .flat_map(|((s, c), st)| c.warnings(s).into_iter().map(move |w| (st.name().to_owned(), w)))
            .collect()
    }

    /// The names of the structures, in order.
    #[must_use]
    pub fn names(&self) -> &[String] {
        &self.structures
    }

    /// The thresholds of every structure for `mode` (METHOD.md §4.1).
    ///
    /// # Errors
    /// [`Error::NoCalibrationData`] if no image was observed;
    /// [`Error::InvalidParameter`] if the mode is for another number of structures.
    pub fn thresholds(&self, mode: &JointMode) -> Result<Vec<Thresholds>> {
        if mode.modes().len() != self.calibrations.len() {
            return Err(Error::InvalidParameter {
                name: "joint mode",
                value: format!("{} structures", mode.modes().len()),
                reason: format!("the calibration holds {} structures", self.calibrations.len()),
            });
        }
        if self.is_empty() {
            return Err(Error::NoCalibrationData);
        }
        match mode.kind() {
            ModeKind::Max => {
                let z: Vec<f64> = (0..self.len())
                    .map(|i| {
                        self.calibrations
                            .iter()
                            .filter_map(|c| c.get(i))
                            .map(|s| s.joint())
                            .fold(f64::NEG_INFINITY, f64::max)
                    })
                    .collect();
                let t = conformal_quantile(&z, mode.alpha(), mode.rank())?;
                Ok(vec![Thresholds { inner: t, outer: t }; self.calibrations.len()])
            }
            _ => self.calibrations.iter().zip(mode.modes()).map(|(c, m)| c.thresholds(m)).collect(),
        }
    }
}

/// Calibration parameters for several structures: the single-structure
/// [`Calibrator`] (transforms, combination, default spacing) applied to
/// each structure's score map and binarized mask, and how the score maps
/// come from the network's output.
///
/// ```
/// use confseg::calibrate::{StructureCalibration, StructureCalibrator};
/// use confseg::levels::JointMode;
/// use confseg::mask::Structure;
/// use confseg::transform::StructureScores;
/// use confseg::{Alpha, Calibrator, Identity};
/// use ndarray::Array3;
///
/// let structures: Vec<Structure> = vec!["WT=1,2".parse()?, "CORE=2".parse()?];
/// let sc = StructureCalibrator::new(
///     Calibrator::new(Identity, Identity),
///     structures.clone(),
///     StructureScores::Softmax { axis: 0, class_labels: vec![0, 1, 2] },
/// )?;
/// let mut cal = StructureCalibration::new(&structures);
/// for i in 0..30 {
///     let logits = Array3::from_shape_fn((3, 8, 8), |(c, y, x)| ((c + y * x + i) % 5) as f32 - 2.0);
///     let labels = logits.index_axis(ndarray::Axis(0), 2).mapv(|v| if v > 1.0 { 2u8 } else if v > 0.0 { 1 } else { 0 });
///     sc.observe(&mut cal, &logits, None, &labels)?;
/// }
/// let sets = sc.fit(&cal, JointMode::max(Alpha::new(0.2)?, 2))?;
/// assert_eq!(sets.structures().len(), 2);
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct StructureCalibrator<TI, TO> {
    calibrator: Calibrator<TI, TO>,
    structures: Vec<Structure>,
    scores: StructureScores,
    ignore: Option<i64>,
}

impl<TI, TO> StructureCalibrator<TI, TO> {
    /// The single-structure calibrator applied to each structure.
    pub fn calibrator(&self) -> &Calibrator<TI, TO> {
        &self.calibrator
    }

    /// The structures, in order.
    pub fn structures(&self) -> &[Structure] {
        &self.structures
    }

    /// How the structures' score maps come from the network's output.
    pub fn scores(&self) -> &StructureScores {
        &self.scores
    }

    /// The label of ignored voxels, if any.
    pub fn ignore_label(&self) -> Option<i64> {
        self.ignore
    }

    /// These structures with voxels labelled `ignore` ignored in every
    /// structure's mask ([`Coding`]).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `ignore` is a label of a structure.
    pub fn with_ignore_label(mut self, ignore: Option<i64>) -> Result<Self> {
        for s in &self.structures {
            Coding::new(s.labels().clone(), ignore)?;
        }
        self.ignore = ignore;
        Ok(self)
    }
}

impl<TI: Transform, TO: Transform> StructureCalibrator<TI, TO> {
    /// Calibrate `structures` (at least one, distinct names) with
    /// `calibrator`'s transforms on the score maps `scores` makes.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for no structure, a repeated name, or
    /// (for [`StructureScores::Softmax`]) fewer than 2 classes.
    pub fn new(
        calibrator: Calibrator<TI, TO>,
        structures: Vec<Structure>,
        scores: StructureScores,
    ) -> Result<Self> {
        let names: std::collections::HashSet<&str> = structures.iter().map(Structure::name).collect();
        if structures.is_empty() || names.len() != structures.len() {
            return Err(Error::InvalidParameter {
                name: "structures",
                value: structures.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
                reason: "give at least one structure, each name once".into(),
            });
        }
        if let Some(class_labels) = scores.class_labels() {
            if class_labels.len() < 2 {
                return Err(Error::InvalidParameter {
                    name: "class labels",
                    value: format!("{class_labels:?}"),
                    reason: "a softmax needs at least 2 classes".into(),
                });
            }
            check_class_labels(class_labels, &structures)?;
        }
        Ok(StructureCalibrator { calibrator, structures, scores, ignore: None })
    }

    /// The score map and mask of every structure for one image: the
    /// network's `output` (with its class or channel axis) and its label
    /// map (without); voxels with the ignore label are
    /// [`Voxel::Ignored`](crate::mask::Voxel) in every mask.
    ///
    /// # Errors
    /// As [`StructureScores::reduce`] and [`Coding::read`]; a label map
    /// of another shape than the score maps.
    #[allow(clippy::type_complexity)]
    pub fn maps<A: Float, D: RemoveAxis, M: MaskValue>(
        &self,
        output: &ArrayRef<A, D>,
        labels: &ArrayRef<M, D::Smaller>,
    ) -> Result<Vec<(Array<A, D::Smaller>, Array<Voxel, D::Smaller>)>> {
        let maps = self.scores.reduce(output, &self.structures)?;
        maps.into_iter()
            .zip(&self.structures)
            .map(|(m, s)| {
                crate::image::check_shape("label map vs score maps", &m, labels)?;
                Ok((m, Coding::new(s.labels().clone(), self.ignore)?.read(labels)?))
            })
            .collect()
    }

    /// `(tau_k, gamma_k)` of every structure `k` for one image (see
    /// [`StructureCalibrator::maps`]); `spacing` is the image's own spacing
    /// (of its spatial axes), `None` for the calibrator's default.
    ///
    /// # Errors
    /// As [`StructureCalibrator::maps`] and [`Calibrator::statistics`].
    pub fn statistics<A: Float, D: RemoveAxis, M: MaskValue>(
        &self,
        output: &ArrayRef<A, D>,
        spacing: Option<&Spacing>,
        labels: &ArrayRef<M, D::Smaller>,
    ) -> Result<Vec<ImageStatistics>> {
        self.maps(output, labels)?
            .into_iter()
            .map(|(map, mask)| match spacing {
                Some(sp) => self.calibrator.statistics(&Image::new(map, sp.clone())?, &mask),
                None => self.calibrator.statistics(&map, &mask),
            })
            .collect()
    }

    /// Add one image to `calibration` (errors name the image by its position).
    ///
    /// # Errors
    /// As [`StructureCalibrator::statistics`]; the provenance checks of
    /// [`Calibrator::observe`].
    pub fn observe<A: Float, D: RemoveAxis, M: MaskValue>(
        &self,
        calibration: &mut StructureCalibration,
        output: &ArrayRef<A, D>,
        spacing: Option<&Spacing>,
        labels: &ArrayRef<M, D::Smaller>,
    ) -> Result<()> {
        let n = calibration.len();
        let stats = self.statistics(output, spacing, labels).map_err(|e| e.in_image(n))?;
        self.push(calibration, stats, output.ndim() - 1, spacing.is_some()).map_err(|e| e.in_image(n))
    }

    /// Record one image's statistics (all structures) with this calibrator's provenance.
    pub(crate) fn push(
        &self,
        calibration: &mut StructureCalibration,
        stats: Vec<ImageStatistics>,
        ndim: usize,
        own_spacing: bool,
    ) -> Result<()> {
        if stats.len() != calibration.calibrations.len() {
            return Err(Error::InvalidParameter {
                name: "structures",
                value: stats.len().to_string(),
                reason: format!("the calibration holds {} structures", calibration.calibrations.len()),
            });
        }
        for (cal, s) in calibration.calibrations.iter_mut().zip(stats) {
            self.calibrator.observe_statistics(cal, &std::iter::once(s).collect(), ndim)?;
            if own_spacing {
                cal.origin_mut().per_image_spacing = true;
            }
        }
        Ok(())
    }

    /// Calibration statistics of a stream of `(output, own spacing, label
    /// map)` items (see [`stream::Load`](crate::stream::Load)), in
    /// parallel with a bounded number in flight, in stream order.
    ///
    /// # Errors
    /// The first error, tagged with the item's position in the stream.
    pub fn calibrate_stream<P, A, D, M, S>(&self, items: S) -> Result<StructureCalibration>
    where
        S: Iterator<Item = Result<P>> + Send,
        P: crate::stream::Load<Output = (Array<A, D>, Option<Spacing>, Array<M, D::Smaller>)>,
        A: Float,
        D: RemoveAxis,
        M: MaskValue,
        TI: Sync,
        TO: Sync,
    {
        let mut cal = StructureCalibration::new(&self.structures);
        crate::stream::stream(
            items,
            crate::stream::default_in_flight(),
            |i, item: P| {
                let (output, spacing, labels) = item.load().map_err(|e| e.in_image(i))?;
                let s = self.statistics(&output, spacing.as_ref(), &labels).map_err(|e| e.in_image(i))?;
                Ok((s, output.ndim() - 1, spacing.is_some()))
            },
            |i, (s, ndim, own)| self.push(&mut cal, s, ndim, own).map_err(|e| e.in_image(i)),
        )?;
        Ok(cal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::ImageStatistics;
    use crate::quantile::Alpha;

    #[test]
    fn max_mode_takes_the_largest_statistic_over_structures() {
        let s: Vec<Structure> = vec!["A=1".parse().unwrap(), "B=2".parse().unwrap()];
        let mut cal = StructureCalibration::new(&s);
        for i in 0..9 {
            let f = f64::from(i);
            cal.calibrations_mut()[0].push(ImageStatistics { tau: f, gamma: 0.0 });
            cal.calibrations_mut()[1].push(ImageStatistics { tau: 0.0, gamma: 8.0 - f });
        }
        // Z = max(i, 8 - i) = [8,7,6,5,4,5,6,7,8]; n = 9, alpha = 0.5: k = 5 -> 6
        let t = cal.thresholds(&JointMode::max(Alpha::new(0.5).unwrap(), 2)).unwrap();
        assert_eq!(t[0].inner.value(), 6.0);
        assert_eq!(t[1], t[0]);
        let wrong = JointMode::max(Alpha::new(0.5).unwrap(), 3);
        assert!(cal.thresholds(&wrong).is_err());
    }
}
