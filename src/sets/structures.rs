//! Fitted confidence sets of several structures, with one joint guarantee
//! (METHOD.md §4.1).

use ndarray::{Array, ArrayRef, RemoveAxis};

use super::{ConfidenceSets, Sets};
use crate::calibrate::{
    Combination, Max, Structure, StructureCalibration, StructureCalibrator, StructureScores,
};
use crate::error::Result;
use crate::float::Float;
use crate::image::{Image, Spacing};
use crate::levels::JointMode;
use crate::transform::{ScoreTransform, Transform};

/// Fitted conformal confidence sets of several structures.
///
/// For a new image exchangeable with the calibration images, the sets of
/// [`StructureSets::predict`] satisfy, depending on the [`JointMode`],
///
/// * marginal: for each structure `k`, `P(I_k ⊆ Y_k) >= 1 - alpha` and
///   `P(Y_k ⊆ O_k) >= 1 - alpha`;
/// * joint (Bonferroni or max): `P(for every k: I_k ⊆ Y_k ⊆ O_k) >= 1 - alpha`.
///
/// Each structure's sets are ordinary [`ConfidenceSets`] (with the
/// structure's thresholds), so they can also be used alone; the joint
/// guarantee holds for all of them together.
#[derive(Debug, Clone, PartialEq)]
pub struct StructureSets<TI = ScoreTransform, TO = ScoreTransform, C = Max> {
    scores: StructureScores,
    structures: Vec<Structure>,
    mode: JointMode,
    sets: Vec<ConfidenceSets<TI, TO, C>>,
}

impl<TI: Transform + Clone, TO: Transform + Clone, C: Combination> StructureCalibrator<TI, TO, C> {
    /// Fit every structure's thresholds for `mode` (jointly for the max mode).
    ///
    /// # Errors
    /// [`Error::NoCalibrationData`](crate::Error::NoCalibrationData) if `calibration` is empty; a mode or a
    /// calibration for another number of structures; the provenance checks
    /// of [`Calibrator::fit`](crate::Calibrator::fit).
    pub fn fit(
        &self,
        calibration: &StructureCalibration,
        mode: JointMode,
    ) -> Result<StructureSets<TI, TO, C>> {
        let thresholds = calibration.thresholds(&mode)?;
        let sets = calibration
            .calibrations()
            .iter()
            .zip(mode.modes())
            .zip(thresholds)
            .map(|((cal, m), t)| self.calibrator().fit_thresholds(cal, *m, t))
            .collect::<Result<Vec<_>>>()?;
        Ok(StructureSets {
            scores: self.scores().clone(),
            structures: self.structures().to_vec(),
            mode,
            sets,
        })
    }
}

impl<TI, TO, C> StructureSets<TI, TO, C> {
    /// The structures, in order.
    pub fn structures(&self) -> &[Structure] {
        &self.structures
    }

    /// Each structure's fitted sets, in order.
    pub fn sets(&self) -> &[ConfidenceSets<TI, TO, C>] {
        &self.sets
    }

    /// The joint mode.
    pub fn mode(&self) -> &JointMode {
        &self.mode
    }

    /// How the structures' score maps come from the network's output.
    pub fn scores(&self) -> &StructureScores {
        &self.scores
    }
}

impl<TI: Transform, TO: Transform, C: Combination> StructureSets<TI, TO, C> {
    /// Inner and outer sets of every structure, in order, for a new image:
    /// the network's output with its class or channel axis, and the image's
    /// own spacing (of its spatial axes; `None` for the default).
    ///
    /// # Errors
    /// As [`StructureScores::reduce`] and [`ConfidenceSets::predict`].
    pub fn predict<A: Float, D: RemoveAxis>(
        &self,
        output: &ArrayRef<A, D>,
        spacing: Option<&Spacing>,
    ) -> Result<Vec<Sets<D::Smaller>>> {
        let maps: Vec<Array<A, D::Smaller>> = self.scores.reduce(output, &self.structures)?;
        maps.into_iter()
            .zip(&self.sets)
            .map(|(m, sets)| match spacing {
                Some(sp) => sets.predict(&Image::new(m, sp.clone())?),
                None => sets.predict(&m),
            })
            .collect()
    }

    /// Warnings of every structure's sets, with the structure's name.
    #[must_use]
    pub fn warnings(&self, calibration: Option<&StructureCalibration>) -> Vec<(String, crate::Warning)> {
        self.sets
            .iter()
            .enumerate()
            .flat_map(|(k, s)| {
                let cal = calibration.and_then(|c| c.calibrations().get(k));
                s.warnings(cal).into_iter().map(move |w| (self.structures[k].name().to_owned(), w))
            })
            .collect()
    }
}

#[cfg(feature = "serde")]
mod serde_impl {
    //! JSON: `{confseg_version, scores: {kind, axis, ...}, joint: {mode,
    //! alpha}, structures: [{name, labels, sets: {<ConfidenceSets>}}]}`.
    //! Reading checks each structure's sets and that they agree with the
    //! joint mode (a max mode shares one threshold).

    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    use super::{ConfidenceSets, JointMode, Structure, StructureScores, StructureSets};
    use crate::levels::ModeKind;
    use crate::mask::Labels;
    use crate::quantile::Alpha;

    #[derive(Serialize, Deserialize)]
    struct Joint {
        mode: ModeKind,
        alpha: Alpha,
    }

    #[derive(Serialize, Deserialize)]
    struct Entry<S> {
        name: String,
        labels: Vec<i64>,
        sets: S,
    }

    #[derive(Serialize, Deserialize)]
    struct Repr<S> {
        confseg_version: String,
        scores: StructureScores,
        joint: Joint,
        structures: Vec<Entry<S>>,
    }

    impl<TI, TO, C> Serialize for StructureSets<TI, TO, C>
    where
        ConfidenceSets<TI, TO, C>: Serialize,
    {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let structures = self
                .structures
                .iter()
                .zip(&self.sets)
                .map(|(st, sets)| Entry {
                    name: st.name().to_owned(),
                    labels: match st.labels() {
                        Labels::Select(v) => v.clone(),
                        Labels::Binary => vec![1],
                    },
                    sets,
                })
                .collect();
            Repr {
                confseg_version: env!("CARGO_PKG_VERSION").to_owned(),
                scores: self.scores.clone(),
                joint: Joint { mode: self.mode.kind(), alpha: self.mode.alpha() },
                structures,
            }
            .serialize(s)
        }
    }

    impl<'de, TI, TO, C> Deserialize<'de> for StructureSets<TI, TO, C>
    where
        ConfidenceSets<TI, TO, C>: Deserialize<'de>,
    {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let r = Repr::<ConfidenceSets<TI, TO, C>>::deserialize(d)?;
            if r.structures.is_empty() {
                return Err(de::Error::custom("structures: at least one is needed"));
            }
            let mut structures = Vec::new();
            let mut sets = Vec::new();
            for e in r.structures {
                let labels = Labels::select(e.labels).map_err(de::Error::custom)?;
                structures.push(Structure::new(e.name, labels).map_err(de::Error::custom)?);
                sets.push(e.sets);
            }
            let modes = sets
                .iter()
                .map(|s| {
                    s.guarantee()
                        .mode()
                        .copied()
                        .ok_or_else(|| de::Error::custom("structures: risk control has no joint version"))
                })
                .collect::<Result<Vec<_>, D::Error>>()?;
            let mode =
                JointMode::from_parts(r.joint.mode, r.joint.alpha, modes).map_err(de::Error::custom)?;
            if mode.kind() == ModeKind::Max {
                let first = sets[0].thresholds().inner.value().to_bits();
                if sets.iter().any(|s| s.thresholds().inner.value().to_bits() != first) {
                    return Err(de::Error::custom(
                        "joint mode max: every structure must have the same threshold",
                    ));
                }
            }
            let n = sets[0].n();
            if sets.iter().any(|s| s.n() != n) {
                return Err(de::Error::custom("every structure must be calibrated on the same n images"));
            }
            Ok(StructureSets { scores: r.scores, structures, mode, sets })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::Structure;
    use crate::synthetic::Synthetic;
    use crate::{Alpha, Calibrator, Identity};
    use ndarray::{Array3, Axis};

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
