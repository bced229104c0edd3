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
//! * [`Method::Risk`]: risk control (METHOD.md §4.3, §4.5) at the options
//!   of a request of mode risk-control (risk, `delta`, bound, grid).
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
//!   [`Levels`] request (marginal or Bonferroni).
//! * [`Method::Morphological`]: dilation of the predicted mask `M` by a
//!   calibrated number of steps of a [`Footprint`] (Mossina & Friedrich
//!   2025). `g_O` is the [`Morphological`] transform of `M` by the
//!   footprint: `-steps(v, M)` outside `M`, the fewest dilations that
//!   reach `v`, and the (positive) number of erosions removing `v` inside.
//!   Per calibration image, `k_i = max_{v in Y_i} -g_O(v)`, so that
//!   `max(0, k_i)` is the fewest dilations after which `M_i` contains `Y_i`
//!   (`+inf` if `M_i` is empty and `Y_i` is not); `k = max(0, conformal
//!   quantile of k_i at alpha)`; `O = dilate(M, k) = {g_O >= -k}` (`b =
//!   -k`). Outer set only: the method is the morphological transform used
//!   as `f_O` with its margin kept at least 0. With the cross footprint
//!   (`Face`) this coincides with the outer set of the signed **city-block**
//!   distance transform of `M` (METHOD.md §5) calibrated at the same level
//!   whenever the calibrated margin is positive: outside `M` the city-block
//!   distance to the boundary midpoints is exactly `steps(v, M) - 1/2`, so
//!   `gamma_i = k_i - 1/2` and `{-f_O <= k - 1/2} = {steps <= k}`. (The
//!   signed distance can also give a negative margin, shrinking `M`, which
//!   dilation cannot.) For the square (`Full`) and the chessboard metric the
//!   two agree except at voxels whose nearest voxel of `M` is exactly
//!   diagonal (distance `k` to the midpoints, not `k - 1/2`).

use std::fmt;

use super::{Field, FieldId, Nominal, Pool, SplitSets};
use crate::error::{Error, Result};
use crate::levels::{Guarantee, Levels, ModeKind};
use crate::quantile::{conformal_quantile, conformal_quantile_sorted, Alpha, Rank, Threshold};
use crate::risk::select::{self, smallest_with, sorted_unique, Scored};
use crate::risk::Risk;
use crate::risk::RiskControl;
use crate::transform::{Footprint, Morphological};

/// A method whose sets a validation measures.
///
/// The levels of the conformal methods come from a [`Levels`] request
/// without its `alpha` (each level of the validation's grid is put in;
/// its `delta` gives the rank of every split's thresholds).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Method {
    /// This crate's conformal confidence sets at the requested levels.
    Conformal(Levels),
    /// Conformal risk control of the false-negative rate (outer set only).
    RiskControl,
    /// Risk control at the levels of a request of mode risk-control
    /// (risk, `delta`, bound, grid; its `alpha` is the validation's).
    Risk(Levels),
    /// Voxel-wise conformal p-values with a Bonferroni correction over
    /// voxels; levels per side from the (marginal or Bonferroni) request.
    PixelwiseBonferroni(Levels),
    /// Dilation of the predicted mask by a calibrated number of steps of
    /// the footprint (outer set only), at the conformal rank given.
    Morphological(Footprint, Rank),
}

/// The methods by name, as the shells spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MethodKind {
    /// `"conformal"`: [`Method::Conformal`].
    Conformal,
    /// `"risk-control"`: [`Method::Risk`] with the request's options when
    /// its mode is risk-control, else [`Method::RiskControl`].
    RiskControl,
    /// `"pixelwise"`: [`Method::PixelwiseBonferroni`].
    Pixelwise,
    /// `"morphological-chessboard"`: [`Method::Morphological`] by the square
    /// ([`Footprint::Full`]: chessboard steps).
    MorphologicalChessboard,
    /// `"morphological-cityblock"`: [`Method::Morphological`] by the cross
    /// ([`Footprint::Face`]: city-block steps).
    MorphologicalCityBlock,
}

impl MethodKind {
    /// Every method, in the order of the docs.
    pub const ALL: [MethodKind; 5] = [
        MethodKind::Conformal,
        MethodKind::RiskControl,
        MethodKind::Pixelwise,
        MethodKind::MorphologicalChessboard,
        MethodKind::MorphologicalCityBlock,
    ];

    /// The name (`"conformal"`, `"risk-control"`, ...).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            MethodKind::Conformal => "conformal",
            MethodKind::RiskControl => "risk-control",
            MethodKind::Pixelwise => "pixelwise",
            MethodKind::MorphologicalChessboard => "morphological-chessboard",
            MethodKind::MorphologicalCityBlock => "morphological-cityblock",
        }
    }
}

impl fmt::Display for MethodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for MethodKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let s = if s == "morphological-city-block" { "morphological-cityblock" } else { s };
        MethodKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| Error::UnknownName {
            what: "method",
            name: s.to_owned(),
            known: "conformal, risk-control, pixelwise, morphological-chessboard, morphological-cityblock",
        })
    }
}

impl Method {
    /// The method `kind` with the conformal levels of `levels` (mode,
    /// weights, `delta`; its `alpha` is ignored: a validation brings its
    /// own levels). The pixel-wise baseline splits `alpha` as the
    /// Bonferroni mode does (1:1 unless weights are given); the
    /// morphological baseline takes the conformal rank of `delta`.
    ///
    /// ```
    /// use confseg::evaluate::{Method, MethodKind};
    /// use confseg::levels::{Levels, ModeKind};
    /// let levels = Levels { mode: ModeKind::Max, delta: Some(0.05), ..Levels::default() };
    /// let m = Method::new("conformal".parse()?, &levels)?;
    /// assert_eq!(m.to_string(), "conformal max delta=0.05");
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Levels::at`] for requests that do not fit together.
    pub fn new(kind: MethodKind, levels: &Levels) -> Result<Method> {
        let template = Levels { alpha: None, ..*levels };
        template.at(Alpha::new(0.5)?)?;
        let risk = template.mode == ModeKind::RiskControl;
        // without options, risk control is the baseline of the false-negative rate
        let plain = Levels { weights: None, ..template } == Levels::new(ModeKind::RiskControl);
        Ok(match kind {
            MethodKind::Conformal | MethodKind::RiskControl if risk && plain => Method::RiskControl,
            MethodKind::Conformal | MethodKind::RiskControl if risk => Method::Risk(template),
            MethodKind::Conformal => Method::Conformal(template),
            MethodKind::RiskControl => Method::RiskControl,
            MethodKind::Pixelwise => {
                Method::PixelwiseBonferroni(Levels { mode: ModeKind::Bonferroni, delta: None, ..template })
            }
            MethodKind::MorphologicalChessboard => Method::Morphological(Footprint::Full, template.rank()?),
            MethodKind::MorphologicalCityBlock => Method::Morphological(Footprint::Face, template.rank()?),
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Conformal(l) => write!(f, "conformal {l}"),
            Method::RiskControl => f.write_str("risk-control fnr"),
            Method::Risk(l) => write!(f, "{l}"),
            Method::PixelwiseBonferroni(l) => write!(f, "pixelwise {l}"),
            Method::Morphological(fp, _) => write!(f, "morphological {fp}"),
        }
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A method with its pool-wide precomputation (candidate values, step fields).
pub(crate) struct Prepared {
    method: Method,
    /// sorted distinct object `f_O` values of the whole pool
    object_outer: Vec<f64>,
    /// sorted distinct background `f_I` values of the whole pool
    background_inner: Vec<f64>,
    /// the morphological transform of `M` per image for the morphological baseline
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
            method: self.clone(),
            object_outer: Vec::new(),
            background_inner: Vec::new(),
            steps: Vec::new(),
        };
        match self {
            Method::Conformal(levels) => {
                levels.at(Alpha::new(0.5)?)?;
            }
            Method::RiskControl | Method::Risk(_) => {
                if let Method::Risk(levels) = self {
                    levels.at(Alpha::new(0.5)?)?;
                }
                p.object_outer = sorted_unique(imgs.iter().map(|i| i.outer.object.as_slice()));
            }
            Method::PixelwiseBonferroni(levels) => {
                if !matches!(levels.mode, ModeKind::Marginal | ModeKind::Bonferroni) {
                    return Err(Error::InvalidParameter {
                        name: "pixel-wise baseline mode",
                        value: levels.mode.to_string(),
                        reason: "needs a marginal or Bonferroni split of alpha between the sides".into(),
                    });
                }
                p.object_outer = sorted_unique(imgs.iter().map(|i| i.outer.object.as_slice()));
                p.background_inner = sorted_unique(imgs.iter().map(|i| i.inner.background.as_slice()));
            }
            Method::Morphological(footprint, _) => {
                let transform = Morphological::new(footprint.clone());
                p.steps = imgs
                    .iter()
                    .enumerate()
                    .map(|(j, img)| {
                        let predicted =
                            ndarray::ArrayViewD::from_shape(ndarray::IxDyn(&img.shape), &img.predicted)
                                .unwrap_or_else(|_| unreachable!("a pool image's mask has its shape"));
                        let spacing = crate::Spacing::new(img.spacing.clone())
                            .unwrap_or_else(|_| crate::Spacing::unit());
                        let g: ndarray::ArrayD<f64> =
                            transform.of_mask(&predicted, &spacing).map_err(|e| e.in_image(j))?;
                        Ok(Field::new(g.into_raw_vec_and_offset().0, &img.truth, &img.ignored))
                    })
                    .collect::<Result<_>>()?;
            }
        }
        Ok(p)
    }
}

impl Prepared {
    pub(crate) fn name(&self) -> String {
        self.method.to_string()
    }

    /// The fields of the method's sets, the method being the `index`-th.
    pub(crate) fn field_ids(&self, index: usize) -> (FieldId, FieldId) {
        match &self.method {
            Method::Morphological(..) => (FieldId::Inner, FieldId::Steps(index)),
            _ => (FieldId::Inner, FieldId::Outer),
        }
    }

    /// The morphological field of image `j`, for the morphological baseline.
    pub(crate) fn steps_field(&self, j: usize) -> Option<&Field> {
        self.steps.get(j)
    }

    /// The fields `(g_I, g_O)` of image `j`.
    pub(crate) fn fields<'a>(&'a self, pool: &'a Pool, j: usize) -> (&'a Field, &'a Field) {
        let img = &pool.images()[j];
        match &self.method {
            Method::Morphological(..) => (&img.inner, &self.steps[j]),
            _ => (&img.inner, &img.outer),
        }
    }

    /// `(I ⊆ Y, Y ⊆ O)` for test image `j`.
    pub(crate) fn covers(&self, pool: &Pool, j: usize, t: SplitSets) -> (bool, bool) {
        match &self.method {
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
        Ok(match &self.method {
            Method::Conformal(levels) | Method::PixelwiseBonferroni(levels) => match levels.at(alpha)? {
                Guarantee::Conformal(m) => {
                    let (ai, ao) = (m.inner_alpha().get(), m.outer_alpha().get());
                    let joint = match m.kind() {
                        ModeKind::Marginal => (1.0 - ai - ao).max(0.0),
                        _ => 1.0 - a,
                    };
                    Nominal { inner: Some(1.0 - ai), outer: Some(1.0 - ao), joint: Some(joint) }
                }
                Guarantee::RiskControl(_) => Nominal { inner: None, outer: None, joint: None },
            },
            Method::RiskControl | Method::Risk(_) => Nominal { inner: None, outer: None, joint: None },
            Method::Morphological(..) => Nominal { inner: None, outer: Some(1.0 - a), joint: Some(1.0 - a) },
        })
    }

    /// As [`Prepared::thresholds`], with the conformal order statistics
    /// read from the calibration part's statistics sorted once per split
    /// (`sorted`, shared by every conformal method and level of the split;
    /// the same values as [`Calibration::thresholds`](crate::Calibration::thresholds),
    /// through the same rank strategy).
    pub(crate) fn thresholds_with(
        &self,
        pool: &Pool,
        cal: &[usize],
        alpha: Alpha,
        sorted: Option<&SortedStatistics>,
    ) -> Result<SplitSets> {
        let (&Method::Conformal(levels), Some(sorted)) = (&self.method, sorted) else {
            return self.thresholds(pool, cal, alpha);
        };
        // risk control is not an order statistic: the per-voxel path
        let Guarantee::Conformal(mode) = levels.at(alpha)? else { return self.thresholds(pool, cal, alpha) };
        let rank = mode.rank();
        let (inner, outer) = match mode.kind() {
            ModeKind::Max => {
                let t = conformal_quantile_sorted(&sorted.joint, mode.inner_alpha(), rank);
                (t, t)
            }
            _ => (
                conformal_quantile_sorted(&sorted.tau, mode.inner_alpha(), rank),
                conformal_quantile_sorted(&sorted.gamma, mode.outer_alpha(), rank),
            ),
        };
        Ok(SplitSets::conformal(inner, outer))
    }

    /// Whether the method's thresholds are conformal order statistics of the pool's statistics.
    pub(crate) fn is_conformal(&self) -> bool {
        matches!(self.method, Method::Conformal(_))
    }

    /// Thresholds fitted on the calibration images `cal`.
    pub(crate) fn thresholds(&self, pool: &Pool, cal: &[usize], alpha: Alpha) -> Result<SplitSets> {
        let imgs = pool.images();
        let risk_control = |r: RiskControl| {
            let scored: Vec<Scored<'_>> = cal
                .iter()
                .map(|&i| match r.risk() {
                    Risk::Recall => Scored { object: &imgs[i].outer.object, background: &[] },
                    Risk::Precision => {
                        Scored { object: &imgs[i].inner.object, background: &imgs[i].inner.background }
                    }
                })
                .collect();
            let candidates = (r.risk() == Risk::Recall).then_some(self.object_outer.as_slice());
            let v = select::fit(&scored, &r, candidates);
            Ok(match r.risk() {
                Risk::Recall => SplitSets { inner: f64::INFINITY, outer: v, too_few: v == f64::NEG_INFINITY },
                Risk::Precision => {
                    SplitSets { inner: v, outer: f64::NEG_INFINITY, too_few: v == f64::INFINITY }
                }
            })
        };
        match &self.method {
            Method::Conformal(levels) | Method::Risk(levels) => match levels.at(alpha)? {
                Guarantee::Conformal(mode) => {
                    let t = pool.statistics().select(cal)?.thresholds(&mode)?;
                    Ok(SplitSets::conformal(t.inner, t.outer))
                }
                Guarantee::RiskControl(r) => risk_control(r),
            },
            Method::RiskControl => risk_control(RiskControl::new(alpha)),
            Method::PixelwiseBonferroni(levels) => {
                let Guarantee::Conformal(mode) = levels.at(alpha)? else {
                    return Err(Error::InvalidParameter {
                        name: "pixel-wise baseline mode",
                        value: levels.mode.to_string(),
                        reason: "needs a marginal or Bonferroni split of alpha between the sides".into(),
                    });
                };
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
            Method::Morphological(_, rank) => {
                let rank = *rank;
                let k: Vec<f64> = cal.iter().map(|&i| -self.steps[i].object_min()).collect();
                let t = conformal_quantile(&k, alpha, rank)?;
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
