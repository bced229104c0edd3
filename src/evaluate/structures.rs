//! Validation of several structures calibrated together: per split, the
//! joint thresholds of a [`JointMode`] and, for each test image, whether
//! every structure is covered (coverage from the statistics, as for one
//! structure: `I_k ⊆ Y_k` iff `tau_k <= lambda_Ik`, `Y_k ⊆ O_k` iff
//! `gamma_k <= lambda_Ok`).

use super::{Splits, Spread};
use crate::calibrate::StructureCalibration;
use crate::error::{Error, Result};
use crate::levels::{JointMode, Levels, ModeKind};
use crate::quantile::Alpha;

/// Coverage of several structures at one level, over the splits.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StructureReport {
    /// The level.
    pub alpha: f64,
    /// The share of test images with every structure covered on both
    /// sides, over the splits (nominal `1 - alpha` for the joint modes).
    pub joint: Spread,
    /// Per structure (in order): the name, inner and outer coverage.
    pub structures: Vec<(String, Spread, Spread)>,
    /// Share of splits with an infinite threshold for lack of images.
    pub too_few_images: f64,
}

/// Validate the joint levels `levels` (its `alpha` replaced by each level
/// of `alphas`) over `splits` of the images of `statistics` (every image's
/// statistics, computed once).
///
/// ```
/// use confseg::calibrate::{StructureCalibration, StructureCalibrator};
/// use confseg::mask::Structure;
/// use confseg::transform::StructureScores;
/// use confseg::evaluate::{structures::validate_structures, Splits};
/// use confseg::{Alpha, Calibrator, Identity, Levels};
/// use confseg::levels::ModeKind;
/// use ndarray::{stack, Axis};
/// use confseg::synthetic::Synthetic;
///
/// let structures: Vec<Structure> = vec!["A=1".parse()?, "B=2".parse()?];
/// let sc = StructureCalibrator::new(Calibrator::new(Identity, Identity), structures.clone(),
///                                   StructureScores::Channels { axis: 0 })?;
/// let data = Synthetic::new([10, 10]).seed(1);
/// let mut cal = StructureCalibration::new(&structures);
/// for (s, m) in data.pairs(0..60) {
///     let out = stack(Axis(0), &[s.view(), s.view()]).unwrap();
///     let labels = m.mapv(|b| if b { 1u8 } else { 0 });
///     sc.observe(&mut cal, &out, None, &labels)?;
/// }
/// let r = validate_structures(&cal, &Levels::new(ModeKind::Max), &[Alpha::new(0.2)?], Splits::new(40, 50, 3)?)?;
/// assert!(r[0].joint.mean > 0.6);
/// # Ok::<(), confseg::Error>(())
/// ```
///
/// # Errors
/// The pool is too small for the splits; no or too many levels; as
/// [`Levels::joint`].
pub fn validate_structures(
    statistics: &StructureCalibration,
    levels: &Levels,
    alphas: &[Alpha],
    splits: Splits,
) -> Result<Vec<StructureReport>> {
    if alphas.is_empty() || alphas.len() > super::MAX_LEVELS {
        return Err(Error::InvalidParameter {
            name: "alphas",
            value: format!("{} levels", alphas.len()),
            reason: format!("give 1 to {} levels", super::MAX_LEVELS),
        });
    }
    let n_test = splits.n_test_for(statistics.len())?;
    let k = statistics.calibrations().len();
    let k_structures = statistics.calibrations().len();
    let modes: Vec<JointMode> = alphas
        .iter()
        .map(|&a| Levels { alpha: Some(a.get()), ..*levels }.joint(k_structures))
        .collect::<Result<_>>()?;
    // histograms of covered test images per split: joint, and per structure inner/outer
    let mut joint = vec![vec![0u64; n_test + 1]; alphas.len()];
    let mut sides = vec![vec![[vec![0u64; n_test + 1], vec![0u64; n_test + 1]]; k]; alphas.len()];
    let mut too_few = vec![0usize; alphas.len()];
    for (cal, test) in splits.iter(statistics.len())? {
        let part = statistics.select(&cal)?;
        for (a, m) in modes.iter().enumerate() {
            let t = part.thresholds(m)?;
            too_few[a] += usize::from(t.iter().any(|t| t.inner.rank().is_none() || t.outer.rank().is_none()));
            let mut cj = 0usize;
            let mut cs = vec![[0usize; 2]; k];
            for &j in &test {
                let mut all = true;
                for (s, (c, t)) in statistics.calibrations().iter().zip(&t).enumerate() {
                    let st = c.get(j).ok_or(Error::NoCalibrationData)?;
                    let (i_ok, o_ok) = (st.tau <= t.inner.value(), st.gamma <= t.outer.value());
                    cs[s][0] += usize::from(i_ok);
                    cs[s][1] += usize::from(o_ok);
                    all &= i_ok && o_ok;
                }
                cj += usize::from(all);
            }
            joint[a][cj] += 1;
            for s in 0..k {
                sides[a][s][0][cs[s][0]] += 1;
                sides[a][s][1][cs[s][1]] += 1;
            }
        }
    }
    Ok(modes
        .iter()
        .enumerate()
        .map(|(a, m)| {
            let nominal_joint = (m.kind() != ModeKind::Marginal).then(|| 1.0 - m.alpha().get());
            StructureReport {
                alpha: m.alpha().get(),
                joint: Spread::of_shares(&joint[a], nominal_joint),
                structures: statistics
                    .names()
                    .iter()
                    .enumerate()
                    .map(|(s, name)| {
                        let mm = &m.modes()[s];
                        let (ni, no) = match m.kind() {
                            ModeKind::Max => (None, None),
                            _ => (Some(1.0 - mm.inner_alpha().get()), Some(1.0 - mm.outer_alpha().get())),
                        };
                        (
                            name.clone(),
                            Spread::of_shares(&sides[a][s][0], ni),
                            Spread::of_shares(&sides[a][s][1], no),
                        )
                    })
                    .collect(),
                too_few_images: too_few[a] as f64 / splits.repeats() as f64,
            }
        })
        .collect())
}
