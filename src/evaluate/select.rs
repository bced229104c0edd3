//! Choosing transforms and the alpha split on a learning set (METHOD.md §6).
//!
//! The learning set is disjoint from the calibration and test data, so it
//! may be used as often as one likes. [`select`] calibrates and evaluates
//! every candidate on internal random splits of the learning set:
//!
//! 1. **Inner candidates** are ranked by the mean share of the image in the
//!    inner set `|I| / |V|` at the marginal level `alpha` (largest first),
//!    with the first outer candidate on the other side (it does not affect
//!    the inner set).
//! 2. **Outer candidates** are ranked by the mean share `|O| / |V|` at the
//!    marginal level `alpha` (smallest first).
//! 3. **Weights**: with the best pair, every Bonferroni split `w_I : w_O` of
//!    a small grid is validated at the joint level `alpha`, and the split
//!    with the smallest mean *undecided share* `(|O| - |I|) / |V|` is
//!    suggested (the region where the sets leave the answer open).
//!
//! The result names the transforms by their [`Transform::describe`] text
//! (for [`ScoreTransform`](crate::ScoreTransform) the names `calibrate`
//! parses) and the suggested weights.

use ndarray::{Array, ArrayRef, RemoveAxis};

use super::{Geometry, Method, Pool, Report, Splits, Validation};
use crate::calibrate::Calibrator;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::image::AsImage;
use crate::levels::{Levels, ModeKind};
use crate::mask::MaskValue;
use crate::quantile::Alpha;
use crate::stream::Load;
use crate::transform::Transform;

/// The Bonferroni weight grid tried by [`select`]: `w_I : w_O`.
pub const WEIGHT_GRID: [(f64, f64); 9] = [
    (1.0, 9.0),
    (1.0, 4.0),
    (1.0, 3.0),
    (1.0, 2.0),
    (1.0, 1.0),
    (2.0, 1.0),
    (3.0, 1.0),
    (4.0, 1.0),
    (9.0, 1.0),
];

/// One candidate transform's result on the learning set.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Ranked {
    /// The transform ([`Transform::describe`]).
    pub transform: String,
    /// Mean `|set| / |V|` over the internal test images.
    pub share: f64,
    /// Mean `|set| / |Y|` (images with a non-empty truth).
    pub size_ratio: Option<f64>,
    /// Mean coverage of this side over the internal splits.
    pub coverage: f64,
}

/// One weight split's result on the learning set.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct WeightScore {
    /// `w_I`.
    pub inner_weight: f64,
    /// `w_O`.
    pub outer_weight: f64,
    /// Mean `(|O| - |I|) / |V|`: the criterion (smaller is better).
    pub undecided_share: f64,
    /// Mean joint coverage over the internal splits.
    pub joint_coverage: f64,
    /// Share of the internal splits whose thresholds were infinite for lack
    /// of calibration images (trivial sets); a split with any is never
    /// suggested.
    pub too_few_images: f64,
}

/// What [`select`] suggests, with the evidence.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Selection {
    /// The level candidates were compared at.
    pub alpha: f64,
    /// Suggested inner transform (best of `inner_ranking`).
    pub inner_transform: String,
    /// Suggested outer transform (best of `outer_ranking`).
    pub outer_transform: String,
    /// Suggested inner Bonferroni weight.
    pub inner_weight: f64,
    /// Suggested outer Bonferroni weight.
    pub outer_weight: f64,
    /// Inner candidates, best (largest inner set) first.
    pub inner_ranking: Vec<Ranked>,
    /// Outer candidates, best (smallest outer set) first.
    pub outer_ranking: Vec<Ranked>,
    /// Every weight split tried, in [`WEIGHT_GRID`] order.
    pub weights: Vec<WeightScore>,
}

/// Rank candidate transforms and suggest the Bonferroni weights on a
/// learning stack `(N, spatial...)`; see the [module docs](self). Each
/// candidate pair is calibrated with the default spacing and tolerances of
/// `settings` ([`Calibrator::with_transforms`]).
///
/// ```
/// use confseg::evaluate::{select::select, Splits};
/// use confseg::{synthetic::Synthetic, Alpha, Calibrator, ScoreTransform};
///
/// let (scores, masks) = Synthetic::new([16, 16]).seed(5).stack(0..60);
/// let candidates = [ScoreTransform::Identity, ScoreTransform::Sigmoid];
/// let settings = Calibrator::new((), ()); // unit spacing, containment
/// let s = select(&candidates, &candidates, &scores, &masks, &settings,
///                Alpha::new(0.1)?, Splits::new(40, 20, 1)?)?;
/// println!("inner {} outer {} weights {}:{}", s.inner_transform, s.outer_transform,
///          s.inner_weight, s.outer_weight);
/// # Ok::<(), confseg::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] if a candidate list is empty or the learning
/// set is too small for `splits`; any error of [`Pool::new`].
pub fn select<T, A, D, M, SI, SO>(
    inner: &[T],
    outer: &[T],
    scores: &ArrayRef<A, D>,
    masks: &ArrayRef<M, D>,
    settings: &Calibrator<SI, SO>,
    alpha: Alpha,
    splits: Splits,
) -> Result<Selection>
where
    T: Transform + Clone + Sync,
    A: Float,
    D: RemoveAxis,
    M: MaskValue,
{
    select_with(inner, outer, alpha, splits, |ti, to| {
        Pool::new(&settings.with_transforms(ti.clone(), to.clone()), scores, masks, 0.0)
    })
}

/// [`select`] on a learning set given as a stream of labelled images
/// (plain arrays with the default spacing of `settings`, or [`Image`](crate::Image)s
/// with their own; any shapes), which `source` opens afresh for every
/// candidate, so that no more than a few images are in memory beyond the
/// pools of one candidate at a time.
///
/// # Errors
/// As [`select`], and the source's errors.
pub fn select_stream<T, P, I, M, S, F, SI, SO>(
    inner: &[T],
    outer: &[T],
    source: F,
    settings: &Calibrator<SI, SO>,
    alpha: Alpha,
    splits: Splits,
) -> Result<Selection>
where
    T: Transform + Clone + Sync,
    I: AsImage + Send,
    M: MaskValue,
    S: Iterator<Item = Result<P>> + Send,
    P: Load<Output = (I, Array<M, I::Dim>)>,
    F: Fn() -> S,
{
    select_with(inner, outer, alpha, splits, |ti, to| {
        Pool::from_stream(&settings.with_transforms(ti.clone(), to.clone()), source(), 0.0)
    })
}

/// The selection, with `pool(f_I, f_O)` building the learning pool for a pair.
fn select_with<T, P>(inner: &[T], outer: &[T], alpha: Alpha, splits: Splits, pool: P) -> Result<Selection>
where
    T: Transform + Clone + Sync,
    P: Fn(&T, &T) -> Result<Pool>,
{
    let (Some(first_inner), Some(first_outer)) = (inner.first(), outer.first()) else {
        return Err(Error::InvalidParameter {
            name: "candidates",
            value: format!("{} inner, {} outer", inner.len(), outer.len()),
            reason: "give at least one candidate transform per side".into(),
        });
    };
    let validation = Validation::new(vec![alpha], splits).with_geometry(Geometry::Off);
    let run = |ti: &T, to: &T, method: &Method| -> Result<Report> {
        let mut r = validation.run(&pool(ti, to)?, std::slice::from_ref(method))?;
        r.pop().ok_or(Error::NoCalibrationData)
    };
    let marginal = Method::Conformal(Levels::new(ModeKind::Marginal));

    let mut inner_ranking = Vec::with_capacity(inner.len());
    for t in inner {
        let r = run(t, first_outer, &marginal)?;
        if r.too_few_images > 0.0 {
            return Err(too_small(splits.n_cal(), "the marginal level"));
        }
        inner_ranking.push(Ranked {
            transform: t.describe(),
            share: r.efficiency.inner_share,
            size_ratio: r.efficiency.inner_size_ratio,
            coverage: r.inner_coverage,
        });
    }
    let mut outer_ranking = Vec::with_capacity(outer.len());
    for t in outer {
        let r = run(first_inner, t, &marginal)?;
        outer_ranking.push(Ranked {
            transform: t.describe(),
            share: r.efficiency.outer_share,
            size_ratio: r.efficiency.outer_size_ratio,
            coverage: r.outer_coverage,
        });
    }
    // best first; ties keep the candidates' order (stable sort)
    let order_in: Vec<usize> = rank(&inner_ranking, |a, b| b.share.total_cmp(&a.share));
    let order_out: Vec<usize> = rank(&outer_ranking, |a, b| a.share.total_cmp(&b.share));
    let (bi, bo) = (&inner[order_in[0]], &outer[order_out[0]]);

    let pool = pool(bi, bo)?;
    let methods: Vec<Method> =
        WEIGHT_GRID.iter().map(|&(wi, wo)| Method::Conformal(Levels::bonferroni(wi, wo))).collect();
    let reports = validation.run(&pool, &methods)?;
    let weights: Vec<WeightScore> = WEIGHT_GRID
        .iter()
        .zip(&reports)
        .map(|(&(inner_weight, outer_weight), r)| WeightScore {
            inner_weight,
            outer_weight,
            undecided_share: r.efficiency.outer_share - r.efficiency.inner_share,
            joint_coverage: r.joint_coverage,
            too_few_images: r.too_few_images,
        })
        .collect();
    // splits whose sets are trivial (too few images for a side's level) are
    // never suggested, however small their undecided share
    let best = rank(&weights, |a, b| a.undecided_share.total_cmp(&b.undecided_share))
        .into_iter()
        .find(|&w| weights[w].too_few_images == 0.0)
        .ok_or_else(|| too_small(splits.n_cal(), "every Bonferroni weight split of the grid"))?;

    Ok(Selection {
        alpha: alpha.get(),
        inner_transform: bi.describe(),
        outer_transform: bo.describe(),
        inner_weight: weights[best].inner_weight,
        outer_weight: weights[best].outer_weight,
        inner_ranking: order_in.iter().map(|&i| inner_ranking[i].clone()).collect(),
        outer_ranking: order_out.iter().map(|&i| outer_ranking[i].clone()).collect(),
        weights,
    })
}

/// The learning set's calibration part is too small for a level.
fn too_small(n_cal: usize, what: &str) -> Error {
    Error::InvalidParameter {
        name: "n_cal",
        value: n_cal.to_string(),
        reason: format!(
            "{what} needs more calibration images per internal split for a finite threshold; \
             the sets would be trivial: use a larger learning set or a larger alpha"
        ),
    }
}

/// Indices of `items` sorted by `cmp` (stable).
fn rank<T>(items: &[T], cmp: impl Fn(&T, &T) -> std::cmp::Ordering) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..items.len()).collect();
    idx.sort_by(|&a, &b| cmp(&items[a], &items[b]));
    idx
}
