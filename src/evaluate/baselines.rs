//! The methods a validation compares (METHOD.md §7): the conformal sets of this
//! crate and three baselines, all run on the same pool and splits.
//!
//! Every method produces, per test image, an inner set `{g_I > a}` and an
//! outer set `{g_O >= b}` over per-image fields `g` and thresholds `(a, b)`
//! fitted on the calibration part of a split. A method without an inner set
//! uses `a = +inf` (empty inner set, so `I ⊆ Y` holds trivially).
//!
//! * [`Method::Conformal`]: `g_I = f_I`, `g_O = f_O`, `a = lambda_I`,
//!   `b = -lambda_O` from [`Calibration::thresholds`](crate::Calibration::thresholds)
//!   of the calibration part: `{-f_O <= lambda_O} = {f_O >= -lambda_O}`.
//! * [`Method::RiskControl`]: conformal risk control of the false-negative
//!   rate (Angelopoulos et al. 2022). Outer set only, `O_t = {f_O >= t}`.
//!   With `FNR_i(t) = |{v in Y_i : f_O(v) < t}| / |Y_i|` (0 for an empty
//!   mask), nondecreasing in `t`, the threshold is the largest `t` with
//!   `n/(n+1) * mean_i FNR_i(t) + 1/(n+1) <= alpha` — the paper's
//!   `lambda = inf{l : ...}` with `l = -t`, loss bound `B = 1`. If no `t`
//!   qualifies (`alpha < 1/(n+1)`), `t = -inf` and the set is everything.
//!   It guarantees `E[FNR] <= alpha`, an expected *proportion* missed, not
//!   whole-mask coverage.
//! * [`Method::PixelwiseBonferroni`]: a conformal p-value per voxel, with a
//!   Bonferroni correction over the `|V|` voxels of the image. The
//!   calibration distribution is **pooled over voxels** of the calibration
//!   images: for the outer side the `f_O` values of all object voxels
//!   (`N_1` of them), for the inner side the `f_I` values of all background
//!   voxels (`N_0`). A voxel `v` of a test image
//!   * is left out of the outer set when `p_O(v) = (1 + #{x <= f_O(v)}) / (N_1 + 1) <= alpha_O / |V|`,
//!   * is put in the inner set when `p_I(v) = (1 + #{x >= f_I(v)}) / (N_0 + 1) <= alpha_I / |V|`.
//!
//!   Equivalently `O = {f_O >= x_(m)}` with `m = floor(c (N_1 + 1) - 1) + 1`,
//!   `c = alpha_O/|V|`, and `I = {f_I > x_(N_0 - q)}` with
//!   `q = floor(c (N_0 + 1) - 1)` (order statistics of the pooled values).
//!   Voxels of one image are not exchangeable with each other, so this is
//!   the paper's heuristic comparator; the Bonferroni correction makes it
//!   very conservative in practice. `alpha_I`, `alpha_O` come from a
//!   [`ModeSpec`] (marginal or Bonferroni).
//! * [`Method::Morphological`]: dilation of the predicted mask `M` by a
//!   calibrated number of steps (Mossina & Friedrich 2025). Per calibration
//!   image, `k_i = max_{v in Y_i} steps(v, M_i)`, the fewest dilations
//!   after which `M_i` contains `Y_i` (`+inf` if `M_i` is empty and `Y_i`
//!   is not); `k = max(0, conformal quantile of k_i at alpha)`;
//!   `O = dilate(M, k) = {steps(v, M) <= k}` (so `g_O = -steps`, `b = -k`).
//!   Outer set only. This coincides with the outer set of the signed
//!   **city-block** distance transform of `M` (METHOD.md §5) calibrated at the
//!   same level whenever the calibrated margin is positive: outside `M`
//!   the city-block distance to the boundary midpoints is exactly
//!   `steps(v, M) - 1/2`, so `gamma_i = k_i - 1/2` and
//!   `{-f_O <= k - 1/2} = {steps <= k}`. (The signed distance can also give
//!   a negative margin, shrinking `M`, which dilation cannot.) For the
//!   chessboard metric the two agree except at voxels whose nearest voxel
//!   of `M` is exactly diagonal (distance `k` to the midpoints, not
//!   `k - 1/2`).

use std::fmt;

use super::metrics::{step_distance, StepMetric};
use super::{Field, FieldId, ModeSpec, Nominal, Pool, SplitSets};
use crate::calibrate::ModeKind;
use crate::calibrate::{risk_threshold, smallest_with, sorted_unique};
use crate::error::{Error, Result};
use crate::quantile::{conformal_quantile, Alpha, Threshold};

/// A method whose sets a validation measures.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum Method {
    /// This crate's conformal confidence sets with the given mode.
    Conformal(ModeSpec),
    /// Conformal risk control of the false-negative rate (outer set only).
    RiskControl,
    /// Voxel-wise conformal p-values with a Bonferroni correction over
    /// voxels; levels per side from the (marginal or Bonferroni) spec.
    PixelwiseBonferroni(ModeSpec),
    /// Dilation of the predicted mask by a calibrated number of steps
    /// (outer set only).
    Morphological(StepMetric),
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Conformal(m) => write!(f, "conformal {m}"),
            Method::RiskControl => f.write_str("risk-control fnr"),
            Method::PixelwiseBonferroni(m) => write!(f, "pixelwise {m}"),
            Method::Morphological(s) => write!(f, "morphological {s}"),
        }
    }
}

/// A method with its pool-wide precomputation (candidate values, step fields).
pub(crate) struct Prepared {
    method: Method,
    /// sorted distinct object `f_O` values of the whole pool
    object_outer: Vec<f64>,
    /// sorted distinct background `f_I` values of the whole pool
    background_inner: Vec<f64>,
    /// `-steps(v, M)` per image for the morphological baseline
    steps: Vec<Field>,
}

/// The `k`-th smallest (1-based) of the union of sorted slices, by
/// bisection over sorted candidates containing every value.
fn kth_pooled<'a>(candidates: &[f64], parts: impl Iterator<Item = &'a [f64]> + Clone, k: usize) -> f64 {
    smallest_with(candidates, |x| parts.clone().map(|s| s.partition_point(|&v| v <= x)).sum::<usize>() >= k)
        .unwrap_or(f64::INFINITY)
}

impl Method {
    pub(crate) fn prepare(&self, pool: &Pool) -> Result<Prepared> {
        let imgs = pool.images();
        let mut p = Prepared {
            method: *self,
            object_outer: Vec::new(),
            background_inner: Vec::new(),
            steps: Vec::new(),
        };
        match *self {
            Method::Conformal(_) => {}
            Method::RiskControl => {
                p.object_outer = sorted_unique(imgs.iter().map(|i| i.outer.object.as_slice()))
            }
            Method::PixelwiseBonferroni(spec) => {
                if spec.kind() == ModeKind::Max {
                    return Err(Error::InvalidParameter {
                        name: "pixel-wise baseline mode",
                        value: "max".into(),
                        reason: "needs a marginal or Bonferroni split of alpha between the sides".into(),
                    });
                }
                p.object_outer = sorted_unique(imgs.iter().map(|i| i.outer.object.as_slice()));
                p.background_inner = sorted_unique(imgs.iter().map(|i| i.inner.background.as_slice()));
            }
            Method::Morphological(metric) => {
                p.steps = imgs
                    .iter()
                    .map(|img| {
                        let d = step_distance(&img.predicted, &img.shape, metric);
                        let g = d
                            .iter()
                            .map(|&s| if s == u32::MAX { f64::NEG_INFINITY } else { -f64::from(s) })
                            .collect();
                        Field::new(g, &img.truth)
                    })
                    .collect();
            }
        }
        Ok(p)
    }
}

impl Prepared {
    pub(crate) fn name(&self) -> String {
        self.method.to_string()
    }

    pub(crate) fn field_ids(&self) -> (FieldId, FieldId) {
        match self.method {
            Method::Morphological(m) => (FieldId::Inner, FieldId::Steps(m)),
            _ => (FieldId::Inner, FieldId::Outer),
        }
    }

    pub(crate) fn steps_field(&self, metric: StepMetric, j: usize) -> Option<&Field> {
        match self.method {
            Method::Morphological(m) if m == metric => self.steps.get(j),
            _ => None,
        }
    }

    /// The fields `(g_I, g_O)` of image `j`.
    pub(crate) fn fields<'a>(&'a self, pool: &'a Pool, j: usize) -> (&'a Field, &'a Field) {
        let img = &pool.images()[j];
        match self.method {
            Method::Morphological(_) => (&img.inner, &self.steps[j]),
            _ => (&img.inner, &img.outer),
        }
    }

    /// `(I ⊆ Y, Y ⊆ O)` for test image `j`.
    pub(crate) fn covers(&self, pool: &Pool, j: usize, t: SplitSets) -> (bool, bool) {
        match self.method {
            // Coverage from the calibration statistics (proof in the module docs).
            Method::Conformal(_) => {
                pool.statistics().get(j).map_or((false, false), |s| (s.tau <= t.inner, s.gamma <= -t.outer))
            }
            _ => {
                let (fi, fo) = self.fields(pool, j);
                (fi.background_max() <= t.inner, fo.object_min() >= t.outer)
            }
        }
    }

    pub(crate) fn nominal(&self, alpha: Alpha) -> Result<Nominal> {
        let a = alpha.get();
        Ok(match self.method {
            Method::Conformal(spec) | Method::PixelwiseBonferroni(spec) => {
                let m = spec.mode(alpha)?;
                let (ai, ao) = (m.inner_alpha().get(), m.outer_alpha().get());
                let joint = match m.kind() {
                    ModeKind::Marginal => (1.0 - ai - ao).max(0.0),
                    _ => 1.0 - a,
                };
                Nominal { inner: Some(1.0 - ai), outer: Some(1.0 - ao), joint: Some(joint) }
            }
            Method::RiskControl => Nominal { inner: None, outer: None, joint: None },
            Method::Morphological(_) => Nominal { inner: None, outer: Some(1.0 - a), joint: Some(1.0 - a) },
        })
    }

    /// As [`Prepared::thresholds`], with the conformal order statistics
    /// read from the calibration part's statistics sorted once per split
    /// (`sorted`, shared by every conformal method and level of the split;
    /// the same values as [`Calibration::thresholds`](crate::Calibration::thresholds)).
    pub(crate) fn thresholds_with(
        &self,
        pool: &Pool,
        cal: &[usize],
        alpha: Alpha,
        sorted: Option<&SortedStatistics>,
    ) -> Result<SplitSets> {
        match (self.method, sorted) {
            (Method::Conformal(spec), Some(sorted)) => {
                let mode = spec.mode(alpha)?;
                let (inner, outer) = match mode.kind() {
                    ModeKind::Marginal | ModeKind::Bonferroni => (
                        sorted.quantile(&sorted.tau, mode.inner_alpha()),
                        sorted.quantile(&sorted.gamma, mode.outer_alpha()),
                    ),
                    ModeKind::Max => {
                        let t = sorted.quantile(&sorted.joint, mode.inner_alpha());
                        (t, t)
                    }
                    // not an order statistic: the same error as `Calibration::thresholds`
                    ModeKind::RiskControl => return self.thresholds(pool, cal, alpha),
                };
                let too_few = matches!(inner, Threshold::TooFewImages { .. })
                    || matches!(outer, Threshold::TooFewImages { .. });
                Ok(SplitSets { inner: inner.value(), outer: -outer.value(), too_few })
            }
            _ => self.thresholds(pool, cal, alpha),
        }
    }

    /// Whether the method's thresholds are conformal order statistics of the pool's statistics.
    pub(crate) fn is_conformal(&self) -> bool {
        matches!(self.method, Method::Conformal(_))
    }

    /// Thresholds fitted on the calibration images `cal`.
    pub(crate) fn thresholds(&self, pool: &Pool, cal: &[usize], alpha: Alpha) -> Result<SplitSets> {
        let imgs = pool.images();
        match self.method {
            Method::Conformal(spec) => {
                let t = pool.statistics().select(cal)?.thresholds(&spec.mode(alpha)?)?;
                let too_few = matches!(t.inner, Threshold::TooFewImages { .. })
                    || matches!(t.outer, Threshold::TooFewImages { .. });
                Ok(SplitSets { inner: t.inner.value(), outer: -t.outer.value(), too_few })
            }
            Method::RiskControl => {
                let objects: Vec<&[f64]> = cal.iter().map(|&i| imgs[i].outer.object.as_slice()).collect();
                let outer = risk_threshold(&objects, &self.object_outer, alpha);
                Ok(SplitSets { inner: f64::INFINITY, outer, too_few: outer == f64::NEG_INFINITY })
            }
            Method::PixelwiseBonferroni(spec) => {
                let mode = spec.mode(alpha)?;
                // the largest image's voxel count: valid (conservative) for every image
                let voxels = pool.max_voxels() as f64;
                // outer: O = {f_O >= x_(m)} over pooled object values
                let n1: usize = cal.iter().map(|&i| imgs[i].outer.object.len()).sum();
                let c = mode.outer_alpha().get() / voxels;
                let m = (c * (n1 as f64 + 1.0) - 1.0).floor() + 1.0;
                let outer = if m <= 0.0 {
                    f64::NEG_INFINITY
                } else if m > n1 as f64 {
                    f64::INFINITY
                } else {
                    kth_pooled(
                        &self.object_outer,
                        cal.iter().map(|&i| imgs[i].outer.object.as_slice()),
                        m as usize,
                    )
                };
                // inner: I = {f_I > x_(N0 - q)} over pooled background values
                let n0: usize = cal.iter().map(|&i| imgs[i].inner.background.len()).sum();
                let c = mode.inner_alpha().get() / voxels;
                let q = (c * (n0 as f64 + 1.0) - 1.0).floor();
                let inner = if q < 0.0 {
                    f64::INFINITY
                } else if q >= n0 as f64 {
                    f64::NEG_INFINITY
                } else {
                    kth_pooled(
                        &self.background_inner,
                        cal.iter().map(|&i| imgs[i].inner.background.as_slice()),
                        n0 - q as usize,
                    )
                };
                Ok(SplitSets { inner, outer, too_few: q < 0.0 || m > n1 as f64 })
            }
            Method::Morphological(_) => {
                let k: Vec<f64> = cal.iter().map(|&i| -self.steps[i].object_min()).collect();
                let t = conformal_quantile(&k, alpha)?;
                let margin = t.value().max(0.0);
                Ok(SplitSets {
                    inner: f64::INFINITY,
                    outer: -margin,
                    too_few: matches!(t, Threshold::TooFewImages { .. }),
                })
            }
        }
    }
}

/// The statistics `tau`, `gamma` and `max(tau, gamma)` of a calibration
/// part, each sorted (`total_cmp`): the `k`-th smallest is then an index,
/// the same value [`conformal_quantile`] selects.
pub(crate) struct SortedStatistics {
    tau: Vec<f64>,
    gamma: Vec<f64>,
    joint: Vec<f64>,
}

impl SortedStatistics {
    /// `None` if a statistic is NaN (then [`conformal_quantile`] reports it).
    pub(crate) fn new(pool: &Pool, cal: &[usize]) -> Option<SortedStatistics> {
        let stats = pool.statistics();
        let mut out = SortedStatistics {
            tau: Vec::with_capacity(cal.len()),
            gamma: Vec::with_capacity(cal.len()),
            joint: Vec::with_capacity(cal.len()),
        };
        for &i in cal {
            let s = stats.get(i)?;
            out.tau.push(s.tau);
            out.gamma.push(s.gamma);
            out.joint.push(s.joint());
        }
        for v in [&mut out.tau, &mut out.gamma, &mut out.joint] {
            if v.iter().any(|x| x.is_nan()) {
                return None;
            }
            v.sort_unstable_by(f64::total_cmp);
        }
        Some(out)
    }

    /// [`conformal_quantile`] of the (sorted) values.
    fn quantile(&self, sorted: &[f64], alpha: Alpha) -> Threshold {
        let n = sorted.len();
        let k = alpha.rank(n);
        if k > n || k == 0 {
            Threshold::TooFewImages { n, needed: alpha.min_calibration_size() }
        } else {
            Threshold::OrderStatistic { k, value: sorted[k - 1] }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_with_and_kth_pooled() {
        let c = [1.0, 2.0, 3.0, 5.0, 8.0];
        assert_eq!(smallest_with(&c, |x| x > 2.5), Some(3.0));
        assert_eq!(smallest_with(&c, |x| x > 9.0), None);
        let a = [1.0, 3.0, 8.0];
        let b = [2.0, 3.0, 5.0];
        let parts = [&a[..], &b[..]];
        let mut all: Vec<f64> = a.iter().chain(&b).copied().collect();
        all.sort_by(f64::total_cmp);
        for k in 1..=6 {
            assert_eq!(kth_pooled(&c, parts.iter().copied(), k), all[k - 1], "k={k}");
        }
    }
}
