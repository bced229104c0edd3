//! Fitting: a calibration state and the requested levels become fitted
//! [`ConfidenceSets`] (one structure) or [`StructureSets`] (several), with
//! the transforms, the thresholds and what the calibration used.

use super::{Calibration, Calibrator, RiskCalibration, StructureCalibration, StructureCalibrator};
use crate::error::{Error, Result};
use crate::levels::{Guarantee, JointMode, Mode};
use crate::quantile::Thresholds;
use crate::risk::RiskControl;
use crate::sets::{ConfidenceSets, StructureSets};
use crate::transform::Transform;

impl<TI: Transform + Clone, TO: Transform + Clone> Calibrator<TI, TO> {
    /// Fit thresholds for `mode` and bundle them with the transforms, the
    /// image dimensionality and the spacing the calibration used.
    ///
    /// # Errors
    /// [`Error::NoCalibrationData`] if `calibration` is empty;
    /// [`Error::IncompatibleCalibration`] if `calibration` was computed by
    /// a calibrator with other transforms or default spacing;
    /// [`Error::InvalidSpacing`] if the default spacing does not have one
    /// entry per axis of the calibration's images.
    pub fn fit(&self, calibration: &Calibration, mode: Mode) -> Result<ConfidenceSets<TI, TO>> {
        let thresholds = calibration.thresholds(&mode)?;
        self.fit_thresholds(calibration, mode, thresholds)
    }

    /// Fit risk control at `level` ([`RiskControl`], METHOD.md §4.3, §4.5)
    /// from a state of the same risk. Recall: the outer set of a new
    /// exchangeable image misses at most an `alpha` share of the object in
    /// expectation, `E[|Y \ O| / |Y|] <= alpha` (over calibration and new
    /// image, or with `delta` conditionally on the calibration set with
    /// probability `1 - delta`); the inner set is empty. Precision: the
    /// inner set's expected false share is at most `alpha` with
    /// probability `1 - delta`; the outer set is the whole image. A weaker
    /// promise than the conformal modes' — it bounds a proportion, not the
    /// chance of missing anything — and so smaller sets.
    ///
    /// ```
    /// use confseg::risk::RiskControl;
    /// use confseg::{Alpha, Calibrator, Identity};
    /// use confseg::calibrate::RiskCalibration;
    /// use ndarray::array;
    /// let cal = Calibrator::new(Identity, Identity);
    /// let mut risk = RiskCalibration::new();
    /// for i in 0..19 {
    ///     let scores = array![0.1 * f64::from(i), 1.0, 2.0, -1.0];
    ///     cal.observe_risk(&mut risk, &scores, &array![1u8, 1, 1, 0])?;
    /// }
    /// let sets = cal.fit_risk_control(&risk, RiskControl::new(Alpha::new(0.1)?))?;
    /// let p = sets.predict(&array![0.5, 1.5, -2.0])?;
    /// assert!(p.inner.iter().all(|&b| !b));
    /// assert_eq!(p.outer, array![true, true, false]);
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NoCalibrationData`] if `calibration` is empty;
    /// [`Error::IncompatibleCalibration`] if it was computed by a calibrator
    /// with other settings; [`Error::Options`] if it is for another risk;
    /// [`Error::InvalidParameter`] if this calibrator has a tolerance.
    pub fn fit_risk_control(
        &self,
        calibration: &RiskCalibration,
        level: RiskControl,
    ) -> Result<ConfidenceSets<TI, TO>> {
        if !self.tolerances().is_none() {
            return Err(Error::InvalidParameter {
                name: "tolerance",
                value: self.tolerances().to_string(),
                reason: "risk control bounds an expected loss (a missed or false share) and takes no \
                         tolerance: use a conformal mode for a tolerance event"
                    .into(),
            });
        }
        if let Some(p) = calibration.provenance() {
            self.provenance(p.ndim()).check(p)?;
        }
        let thresholds = calibration.thresholds(&level)?;
        let ndim = calibration.provenance().map(|p| p.ndim());
        Ok(ConfidenceSets::from_parts(
            self.transforms().clone(),
            Guarantee::RiskControl(level),
            thresholds,
            (calibration.len(), ndim, calibration.per_image_spacing()),
        ))
    }

    /// Bundle thresholds computed from `calibration` (for several
    /// structures, jointly) with the transforms and provenance.
    pub(crate) fn fit_thresholds(
        &self,
        calibration: &Calibration,
        mode: Mode,
        thresholds: Thresholds,
    ) -> Result<ConfidenceSets<TI, TO>> {
        let ndim = calibration.provenance().map(|p| p.ndim());
        if let Some(p) = calibration.provenance() {
            self.checked_provenance(p.ndim())?.check(p)?;
        }
        if calibration.is_empty() {
            return Err(Error::NoCalibrationData);
        }
        Ok(ConfidenceSets::from_parts(
            self.transforms().clone(),
            Guarantee::Conformal(mode.with_tolerances(*self.tolerances())),
            thresholds,
            (calibration.len(), ndim, calibration.per_image_spacing()),
        ))
    }
}

impl<TI: Transform + Clone, TO: Transform + Clone> StructureCalibrator<TI, TO> {
    /// Fit every structure's thresholds for `mode` (jointly for the max mode).
    ///
    /// # Errors
    /// [`Error::NoCalibrationData`](crate::Error::NoCalibrationData) if `calibration` is empty; a mode or a
    /// calibration for another number of structures; the provenance checks
    /// of [`Calibrator::fit`](crate::Calibrator::fit).
    pub fn fit(&self, calibration: &StructureCalibration, mode: JointMode) -> Result<StructureSets<TI, TO>> {
        let thresholds = calibration.thresholds(&mode)?;
        let sets = calibration
            .calibrations()
            .iter()
            .zip(mode.modes())
            .zip(thresholds)
            .map(|((cal, m), t)| self.calibrator().fit_thresholds(cal, *m, t))
            .collect::<Result<Vec<_>>>()?;
        Ok(StructureSets::from_parts(self.scores().clone(), self.structures().to_vec(), mode, sets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::ImageStatistics;
    use crate::mask::Structure;
    use crate::quantile::Threshold;
    use crate::synthetic::Synthetic;
    use crate::transform::{ScoreTransform, StructureScores};
    use crate::{Alpha, Identity};
    use ndarray::{array, Array3, Axis};

    fn fitted(tau: &[f64], gamma: &[f64], mode: Mode) -> ConfidenceSets<Identity, Identity> {
        let cal: Calibration =
            tau.iter().zip(gamma).map(|(&tau, &gamma)| ImageStatistics { tau, gamma }).collect();
        Calibrator::new(Identity, Identity).fit(&cal, mode).unwrap()
    }

    #[test]
    fn sets_use_strict_inner_and_closed_outer_inequalities() {
        // lambda_I = 1 (k = 2 of [0, 1, 2]... n = 3, alpha = 0.5 -> k = 2)
        let s = fitted(&[0.0, 1.0, 2.0], &[-1.0, 0.0, -2.0], Mode::marginal(Alpha::new(0.5).unwrap()));
        assert_eq!(s.thresholds().inner.value(), 1.0);
        assert_eq!(s.thresholds().outer.value(), -1.0);
        let x = array![[0.5, 1.0, 1.5, 2.0]];
        let p = s.predict(&x).unwrap();
        assert_eq!(p.inner, array![[false, false, true, true]]);
        // outer: -x <= -1  <=>  x >= 1
        assert_eq!(p.outer, array![[false, true, true, true]]);
        let cov = p.coverage(&array![[0u8, 1, 1, 1]]).unwrap();
        assert!(cov.inner && cov.outer && cov.joint());
        let cov = p.coverage(&array![[1u8, 1, 0, 1]]).unwrap();
        assert!(!cov.inner && !cov.outer);
    }

    #[test]
    fn too_few_images_give_trivial_sets() {
        let s = fitted(&[0.0, 1.0], &[0.0, 1.0], Mode::marginal(Alpha::new(0.1).unwrap()));
        assert_eq!(s.thresholds().inner, Threshold::TooFewImages { n: 2, needed: 9 });
        let x = array![f64::INFINITY, 0.0, -1e300, f64::NEG_INFINITY];
        let p = s.predict(&x).unwrap();
        assert!(p.inner.iter().all(|&b| !b));
        assert!(p.outer.iter().all(|&b| b));
    }

    #[test]
    fn predict_rejects_nan_and_mismatch() {
        let s = fitted(&[0.0; 20], &[0.0; 20], Mode::max(Alpha::new(0.1).unwrap()));
        assert!(s.predict(&array![0.0, f64::NAN]).is_err());
        assert!(s.predict_transformed(&array![0.0, 1.0], &array![0.0]).is_err());
    }

    #[test]
    fn a_label_set_equals_calibrating_its_binarized_map() {
        let structures: Vec<Structure> = vec!["WT=1,2".parse().unwrap(), "CORE=2".parse().unwrap()];
        let sc = StructureCalibrator::new(
            Calibrator::new(Identity, Identity),
            structures.clone(),
            StructureScores::Channels { axis: 0 },
        )
        .unwrap();
        let data = Synthetic::new([10, 12]).seed(3);
        let mut cal = StructureCalibration::new(&structures);
        let (mut wt, mut core) = (crate::Calibration::new(), crate::Calibration::new());
        let single = Calibrator::new(Identity, Identity);
        for (i, (s, m)) in data.pairs(0..25).enumerate() {
            let labels = m.mapv(u8::from) + s.mapv(|x| u8::from(x > 2.0)) * m.mapv(u8::from);
            let two = ndarray::stack(Axis(0), &[s.view(), s.mapv(|x| x - 1.0).view()]).unwrap();
            sc.observe(&mut cal, &two, None, &labels).unwrap();
            single.observe(&mut wt, &s, &labels.mapv(|l| u8::from(l >= 1))).unwrap();
            single.observe(&mut core, &s.mapv(|x| x - 1.0), &labels.mapv(|l| u8::from(l == 2))).unwrap();
            assert_eq!(cal.len(), i + 1);
        }
        assert_eq!(cal.calibrations()[0].tau(), wt.tau());
        assert_eq!(cal.calibrations()[1].gamma(), core.gamma());
        let sets = sc.fit(&cal, JointMode::marginal(Alpha::new(0.2).unwrap(), 2)).unwrap();
        let one = single.fit(&core, crate::Mode::marginal(Alpha::new(0.2).unwrap())).unwrap();
        assert_eq!(sets.sets()[1].thresholds(), one.thresholds());
        // prediction per structure
        let s = data.pair(99).0;
        let two = ndarray::stack(Axis(0), &[s.view(), s.mapv(|x| x - 1.0).view()]).unwrap();
        let p = sets.predict(&two, None).unwrap();
        assert_eq!(p[1], one.predict(&s.mapv(|x| x - 1.0)).unwrap());
    }

    #[cfg(feature = "serde")]
    #[test]
    fn json_round_trip_and_consistency() {
        let structures: Vec<Structure> = vec!["A=1".parse().unwrap(), "B=2".parse().unwrap()];
        let sc = StructureCalibrator::new(
            Calibrator::new(ScoreTransform::Identity, ScoreTransform::Identity),
            structures.clone(),
            StructureScores::Softmax { axis: 0, class_labels: vec![0, 1, 2] },
        )
        .unwrap();
        let mut cal = StructureCalibration::new(&structures);
        for i in 0..20 {
            let out = Array3::from_shape_fn((3, 6, 5), |(c, y, x)| ((c * 5 + y * x + i) % 7) as f64 - 3.0);
            let labels = Array3::from_shape_fn((1, 6, 5), |(_, y, x)| ((y + x + i) % 3) as u8)
                .index_axis_move(Axis(0), 0);
            sc.observe(&mut cal, &out, None, &labels).unwrap();
        }
        for mode in [
            JointMode::max(Alpha::new(0.2).unwrap(), 2),
            JointMode::bonferroni(Alpha::new(0.3).unwrap(), &[(1.0, 4.0), (1.0, 4.0)]).unwrap(),
        ] {
            let sets = sc.fit(&cal, mode).unwrap();
            let j = serde_json::to_string(&sets).unwrap();
            let back: StructureSets = serde_json::from_str(&j).unwrap();
            assert_eq!(back.sets(), sets.sets());
            assert_eq!(back.mode(), sets.mode());
        }
        let sets = sc.fit(&cal, JointMode::max(Alpha::new(0.2).unwrap(), 2)).unwrap();
        let mut v: serde_json::Value = serde_json::to_value(&sets).unwrap();
        v["structures"][1]["sets"]["inner"]["threshold"] = 123.0.into();
        v["structures"][1]["sets"]["outer"]["threshold"] = 123.0.into();
        let e = serde_json::from_value::<StructureSets>(v).unwrap_err().to_string();
        assert!(e.contains("same threshold"), "{e}");
    }
}
