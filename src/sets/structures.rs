//! Fitted confidence sets of several structures, with one joint guarantee
//! (METHOD.md §4.1).

use ndarray::{Array, ArrayRef, RemoveAxis};

use super::{ConfidenceSets, Sets};
use crate::error::Result;
use crate::float::Float;
use crate::image::{Image, Spacing};
use crate::levels::JointMode;
use crate::mask::Structure;
use crate::transform::{ScoreTransform, StructureScores, Transform};

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
pub struct StructureSets<TI = ScoreTransform, TO = ScoreTransform> {
    scores: StructureScores,
    structures: Vec<Structure>,
    mode: JointMode,
    sets: Vec<ConfidenceSets<TI, TO>>,
}

impl<TI, TO> StructureSets<TI, TO> {
    /// Fitted sets from their parts (the fit of [`crate::calibrate`]).
    pub(crate) fn from_parts(
        scores: StructureScores,
        structures: Vec<Structure>,
        mode: JointMode,
        sets: Vec<ConfidenceSets<TI, TO>>,
    ) -> Self {
        StructureSets { scores, structures, mode, sets }
    }

    /// The structures, in order.
    pub fn structures(&self) -> &[Structure] {
        &self.structures
    }

    /// Each structure's fitted sets, in order.
    pub fn sets(&self) -> &[ConfidenceSets<TI, TO>] {
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

impl<TI: Transform, TO: Transform> StructureSets<TI, TO> {
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

    /// Warnings of every structure's sets, with the structure's name (with
    /// the calibration at hand, [`StructureCalibration::warnings`](crate::calibrate::StructureCalibration::warnings)
    /// adds what the statistics show).
    #[must_use]
    pub fn warnings(&self) -> Vec<(String, crate::Warning)> {
        self.sets
            .iter()
            .zip(&self.structures)
            .flat_map(|(s, st)| s.warnings().into_iter().map(move |w| (st.name().to_owned(), w)))
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

    impl<TI, TO> Serialize for StructureSets<TI, TO>
    where
        ConfidenceSets<TI, TO>: Serialize,
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

    impl<'de, TI, TO> Deserialize<'de> for StructureSets<TI, TO>
    where
        ConfidenceSets<TI, TO>: Deserialize<'de>,
    {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let r = Repr::<ConfidenceSets<TI, TO>>::deserialize(d)?;
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
