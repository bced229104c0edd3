//! Fitted confidence sets and the inner/outer masks they produce (METHOD.md §4).

use ndarray::{Array, ArrayRef, Axis, Dimension, RemoveAxis, Zip};

use crate::calibrate::{
    check_mask, check_nan, check_shape, for_each_image, Combination, Max, Mode, Thresholds,
};
use crate::error::Result;
use crate::float::Float;
use crate::mask::MaskValue;
use crate::transform::{ScoreTransform, Spacing, Transform};

/// Fitted conformal confidence sets: transforms, thresholds and provenance.
///
/// For a new image exchangeable with the calibration images, the sets
/// returned by [`ConfidenceSets::predict`] satisfy, depending on the
/// [`Mode`],
///
/// * marginal: `P(I ⊆ Y) >= 1 - alpha_I` and `P(Y ⊆ O) >= 1 - alpha_O`;
/// * joint (Bonferroni or max): `P(I ⊆ Y ⊆ O) >= 1 - alpha`.
///
/// Built by [`Calibrator::fit`](crate::Calibrator::fit); with the `serde`
/// feature it round-trips through JSON (the file the CLI writes).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfidenceSets<TI = ScoreTransform, TO = ScoreTransform, C = Max> {
    inner: TI,
    outer: TO,
    combination: C,
    spacing: Spacing,
    mode: Mode,
    n: usize,
    thresholds: Thresholds,
    version: String,
}

/// Inner and outer sets of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sets<D: Dimension> {
    /// `I(X) = {v : f_I(v) > lambda_I}`: where the object surely is.
    pub inner: Array<bool, D>,
    /// `O(X) = {v : -f_O(v) <= lambda_O}`: outside it the object surely is not.
    pub outer: Array<bool, D>,
}

/// Whether a pair of sets covers a true mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    /// `I ⊆ Y`.
    pub inner: bool,
    /// `Y ⊆ O`.
    pub outer: bool,
}

impl Coverage {
    /// `I ⊆ Y ⊆ O`.
    #[must_use]
    pub fn joint(&self) -> bool {
        self.inner && self.outer
    }
}

impl<D: Dimension> Sets<D> {
    /// Check `I ⊆ Y` and `Y ⊆ O` against a true mask.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) or
    /// [`Error::NonBinaryMask`](crate::Error::NonBinaryMask).
    pub fn coverage<M: MaskValue>(&self, truth: &ArrayRef<M, D>) -> Result<Coverage> {
        check_shape("mask vs sets", &self.inner, truth)?;
        check_mask(truth)?;
        let (inner, outer) =
            Zip::from(&self.inner).and(&self.outer).and(truth).fold((true, true), |(ci, co), &i, &o, &y| {
                let y = y.is_object();
                (ci && (!i || y), co && (!y || o))
            });
        Ok(Coverage { inner, outer })
    }
}

impl<TI, TO, C> ConfidenceSets<TI, TO, C> {
    pub(crate) fn from_parts(
        inner: TI,
        outer: TO,
        combination: C,
        spacing: Spacing,
        mode: Mode,
        n: usize,
        thresholds: Thresholds,
    ) -> Self {
        ConfidenceSets {
            inner,
            outer,
            combination,
            spacing,
            mode,
            n,
            thresholds,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// The guarantee these sets were calibrated for.
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// Number of calibration images.
    pub fn n(&self) -> usize {
        self.n
    }

    /// `lambda_I` and `lambda_O`.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// The inner transform `f_I`.
    pub fn inner_transform(&self) -> &TI {
        &self.inner
    }

    /// The outer transform `f_O`.
    pub fn outer_transform(&self) -> &TO {
        &self.outer
    }

    /// The combination function.
    pub fn combination(&self) -> &C {
        &self.combination
    }

    /// The voxel spacing given to the transforms.
    pub fn spacing(&self) -> &Spacing {
        &self.spacing
    }

    /// Version of confseg that fitted these sets.
    pub fn crate_version(&self) -> &str {
        &self.version
    }
}

impl<TI: Transform, TO: Transform, C: Combination> ConfidenceSets<TI, TO, C> {
    /// Inner and outer sets for a new score image.
    ///
    /// # Errors
    /// NaN in the scores (before or after transformation), or a transform error.
    pub fn predict<A: Float, D: Dimension>(&self, scores: &ArrayRef<A, D>) -> Result<Sets<D>> {
        check_nan("scores", scores)?;
        let fi = self.inner.apply(scores, &self.spacing)?;
        let fo = self.outer.apply(scores, &self.spacing)?;
        self.predict_transformed(&fi, &fo)
    }

    /// Sets for a batch-first stack `(N, spatial...)` of score images; the
    /// result holds stacks of the same shape. Parallel with the `rayon` feature.
    ///
    /// # Errors
    /// As [`ConfidenceSets::predict`], for the first failing image, tagged
    /// with its index.
    pub fn predict_stack<A: Float, D: RemoveAxis>(&self, scores: &ArrayRef<A, D>) -> Result<Sets<D>>
    where
        TI: Sync,
        TO: Sync,
    {
        let n = scores.len_of(Axis(0));
        let per_image = for_each_image(n, |i| self.predict(&scores.index_axis(Axis(0), i)))?;
        let mut inner = Array::from_elem(scores.raw_dim(), false);
        let mut outer = Array::from_elem(scores.raw_dim(), false);
        for (i, s) in per_image.into_iter().enumerate() {
            inner.index_axis_mut(Axis(0), i).assign(&s.inner);
            outer.index_axis_mut(Axis(0), i).assign(&s.outer);
        }
        Ok(Sets { inner, outer })
    }

    /// Inner and outer sets from scores that are already transformed
    /// (`f_I(s(X))` and `f_O(s(X))`; the stored transforms are not applied).
    ///
    /// # Errors
    /// Shape mismatch between the two inputs, or NaN in either.
    pub fn predict_transformed<A: Float, D: Dimension>(
        &self,
        inner_scores: &ArrayRef<A, D>,
        outer_scores: &ArrayRef<A, D>,
    ) -> Result<Sets<D>> {
        check_shape("outer scores vs inner scores", inner_scores, outer_scores)?;
        check_nan("inner scores", inner_scores)?;
        check_nan("outer scores", outer_scores)?;
        let li = self.thresholds.inner.value();
        let lo = self.thresholds.outer.value();
        let c = &self.combination;
        Ok(Sets {
            inner: inner_scores.mapv(|x| c.voxel(x).to_f64_lossless() > li),
            outer: outer_scores.mapv(|x| c.voxel(-x).to_f64_lossless() <= lo),
        })
    }
}

#[cfg(feature = "serde")]
mod serde_impl {
    //! The JSON shape of fitted sets:
    //! `{confseg_version, n, mode, alpha, combination, spacing,
    //!   inner: {alpha, threshold, rank, transform}, outer: {...}}`,
    //! with infinite thresholds written as the strings `"inf"` / `"-inf"`.

    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    use super::{ConfidenceSets, Mode, Spacing, Thresholds};
    use crate::calibrate::ModeKind;
    use crate::quantile::Alpha;
    use crate::quantile::Threshold;

    #[derive(Serialize, Deserialize)]
    struct SideRepr<T> {
        alpha: Alpha,
        #[serde(with = "inf_as_string")]
        threshold: f64,
        rank: Option<usize>,
        transform: T,
    }

    #[derive(Serialize, Deserialize)]
    struct Repr<TI, TO, C> {
        confseg_version: String,
        n: usize,
        mode: ModeKind,
        alpha: Option<Alpha>,
        combination: C,
        spacing: Spacing,
        inner: SideRepr<TI>,
        outer: SideRepr<TO>,
    }

    fn threshold(n: usize, alpha: Alpha, value: f64, rank: Option<usize>) -> Threshold {
        match rank {
            Some(k) => Threshold::OrderStatistic { k, value },
            None => Threshold::TooFewImages { n, needed: alpha.min_calibration_size() },
        }
    }

    impl<TI: Serialize + Clone, TO: Serialize + Clone, C: Serialize + Clone> Serialize
        for ConfidenceSets<TI, TO, C>
    {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            Repr {
                confseg_version: self.version.clone(),
                n: self.n,
                mode: self.mode.kind(),
                alpha: self.mode.joint_alpha(),
                combination: self.combination.clone(),
                spacing: self.spacing.clone(),
                inner: SideRepr {
                    alpha: self.mode.inner_alpha(),
                    threshold: self.thresholds.inner.value(),
                    rank: self.thresholds.inner.rank(),
                    transform: self.inner.clone(),
                },
                outer: SideRepr {
                    alpha: self.mode.outer_alpha(),
                    threshold: self.thresholds.outer.value(),
                    rank: self.thresholds.outer.rank(),
                    transform: self.outer.clone(),
                },
            }
            .serialize(s)
        }
    }

    impl<'de, TI: Deserialize<'de>, TO: Deserialize<'de>, C: Deserialize<'de>> Deserialize<'de>
        for ConfidenceSets<TI, TO, C>
    {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let r = Repr::<TI, TO, C>::deserialize(d)?;
            let mode = match (r.mode, r.alpha) {
                (ModeKind::Marginal, _) => Mode::marginal_split(r.inner.alpha, r.outer.alpha),
                (ModeKind::Bonferroni, Some(a)) => {
                    Mode::bonferroni_split(a, r.inner.alpha, r.outer.alpha).map_err(de::Error::custom)?
                }
                (ModeKind::Max, Some(a)) => Mode::max(a),
                (kind, None) => {
                    return Err(de::Error::custom(format!("mode {kind} needs a joint \"alpha\"")))
                }
            };
            let inner = threshold(r.n, r.inner.alpha, r.inner.threshold, r.inner.rank);
            let outer = threshold(r.n, r.outer.alpha, r.outer.threshold, r.outer.rank);
            if r.n == 0 {
                return Err(de::Error::custom("n must be at least 1"));
            }
            Ok(ConfidenceSets {
                inner: r.inner.transform,
                outer: r.outer.transform,
                combination: r.combination,
                spacing: r.spacing,
                mode,
                n: r.n,
                thresholds: Thresholds { inner, outer },
                version: r.confseg_version,
            })
        }
    }

    /// `f64` with infinities as the strings `"inf"` / `"-inf"` (JSON has no infinity).
    pub(crate) mod inf_as_string {
        use serde::{de, Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
            if v.is_infinite() {
                s.serialize_str(if *v > 0.0 { "inf" } else { "-inf" })
            } else {
                s.serialize_f64(*v)
            }
        }

        #[derive(Deserialize)]
        #[serde(untagged)]
        enum NumOrStr {
            Num(f64),
            Str(String),
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
            match NumOrStr::deserialize(d)? {
                NumOrStr::Num(x) => Ok(x),
                NumOrStr::Str(s) => match s.as_str() {
                    "inf" | "+inf" | "Infinity" | "infinity" => Ok(f64::INFINITY),
                    "-inf" | "-Infinity" | "-infinity" => Ok(f64::NEG_INFINITY),
                    _ => Err(de::Error::custom(format!("expected a number, \"inf\" or \"-inf\", got {s:?}"))),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Alpha, Calibration, Calibrator, Identity, ImageStatistics, Threshold};
    use ndarray::array;

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
}
