//! Diagnostics by stratum: where the sets cover less, miss more, or are
//! larger than on average. Over the same random splits as a validation,
//! each (split, test image) pair's events, losses and set sizes are counted
//! in the image's stratum:
//!
//! * by **group** (a site, a scanner: labels given per image);
//! * by **quintile of the true object size** (voxels of the truth that
//!   are not ignored). With the sizes sorted, `v_(1) <= ... <= v_(n)`, the
//!   edges are `e_k = v_(ceil(k n / 5))`, `k = 1..4`, and an image of size
//!   `x` is in quintile `1 + #{k : e_k < x}` (ties share a quintile, so a
//!   quintile may be empty);
//! * by **predicted volume** `|{s > t}|` (voxels of the pool's predicted
//!   mask), cut at fixed [`Edges`] (`[e_j, e_j+1)`, as
//!   [`Strata`](crate::groups::Strata) cuts) or, without edges, at its
//!   quintiles (the rule above).
//!
//! And a **lesion-level** view: the share of the true connected components
//! (face connectivity) that lie entirely inside the outer set, and the
//! share of the inner set's connected components that lie entirely in the
//! truth (ignored voxels are in neither set nor truth).
//!
//! The sets are those the levels fit on each split's calibration images:
//! the conformal thresholds, or those of risk control (METHOD.md §4.3,
//! §4.5; an outer set for recall, an inner set for precision, the other
//! side trivial). Beside the events, each row carries the two losses risk
//! control bounds in expectation, averaged over the pairs: the missed share
//! of the object by the outer set `|Y \ O| / |Y|` and the false share of the
//! inner set `|I \ Y| / |I|` (0 for an empty object or inner set), so a
//! stratum where risk control's promise fails on average shows.
//!
//! Coverage of a test image comes from its statistics, as in a
//! validation: `I ⊆ Y` iff `tau <= lambda_I`, `Y ⊆ O` iff
//! `gamma <= lambda_O` (with tolerances, the statistics are the tolerance
//! statistics and the events the tolerance events). A true component `C`
//! lies in `O = {-f_O <= lambda_O}` iff `max_C -f_O <= lambda_O`, so it is
//! counted on every split; the inner set's components depend on the
//! threshold and are counted on the first splits only
//! ([`StrataSpec::lesion_splits`]).
//!
//! A stratum of the truth (object size) is not known for a new image: its
//! coverage describes the sets, it is not a guarantee (only groups and
//! strata of the prediction can be calibrated for, METHOD.md §4.6).

use std::collections::HashMap;

use super::{count_above, count_at_least, Method, MethodKind, Pool, Splits};
use crate::error::{Error, Result};
use crate::groups::{Edges, Group};
use crate::levels::Levels;
use crate::quantile::Alpha;

/// How to stratify a pool's images for [`diagnose`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StrataSpec {
    /// A group per image of the pool (in the pool's order), if any.
    pub groups: Option<Vec<Group>>,
    /// Edges of the predicted volume (voxels); `None`: its quintiles.
    pub volume_edges: Option<Edges>,
    /// The inner set's components are counted on this many first splits.
    pub lesion_splits: usize,
}

impl StrataSpec {
    /// Strata from a request: `groups` (one per image of the pool), the
    /// prediction's `strata` (only predicted-volume edges in voxels: the
    /// pool keeps voxel counts), and the splits that count inner-set
    /// components.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for other strata, naming the form to give.
    pub fn new(
        groups: Option<Vec<Group>>,
        strata: Option<&crate::groups::Strata>,
        lesion_splits: usize,
    ) -> Result<StrataSpec> {
        use crate::groups::{Strata, VolumeUnit};
        let volume_edges = match strata {
            None => None,
            Some(Strata::PredictedVolume { edges, unit: VolumeUnit::Voxels }) => Some(edges.clone()),
            Some(other) => {
                return Err(Error::InvalidParameter {
                    name: "strata",
                    value: other.to_string(),
                    reason: "diagnostics cut the predicted volume in voxels: predicted-volume=E1,E2,..."
                        .into(),
                })
            }
        };
        Ok(StrataSpec { groups, volume_edges, lesion_splits })
    }
}

/// Coverage and set sizes of one stratum over the (split, test image) pairs.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StratumRow {
    /// The stratum's label.
    pub stratum: String,
    /// Images of the pool in the stratum.
    pub images: usize,
    /// (split, test image) pairs of the stratum.
    pub tests: u64,
    /// Of those, pairs with `I ⊆ Y` (the inner event).
    pub inner_covered: u64,
    /// Pairs with `Y ⊆ O` (the outer event).
    pub outer_covered: u64,
    /// Pairs with both.
    pub joint_covered: u64,
    /// `inner_covered / tests` (NaN without tests).
    pub inner_coverage: f64,
    /// `outer_covered / tests`.
    pub outer_coverage: f64,
    /// `joint_covered / tests`.
    pub joint_coverage: f64,
    /// Mean voxels of the inner set (not ignored).
    pub mean_inner_voxels: f64,
    /// Mean voxels of the outer set (not ignored).
    pub mean_outer_voxels: f64,
    /// Mean missed share of the object by the outer set, `|Y \ O| / |Y|`
    /// (0 for an empty object): the recall risk.
    pub mean_missed_share: f64,
    /// Mean false share of the inner set, `|I \ Y| / |I|` (0 for an empty
    /// inner set): the precision risk.
    pub mean_false_share: f64,
}

/// The lesion-level view ([module docs](self)).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Lesions {
    /// True components over all (split, test image) pairs.
    pub true_components: u64,
    /// Of those, components entirely inside the outer set.
    pub true_inside_outer: u64,
    /// `true_inside_outer / true_components` (NaN without components).
    pub true_inside_share: f64,
    /// Splits on which the inner set's components were counted.
    pub inner_splits: usize,
    /// Components of the inner sets over those splits' test images.
    pub inner_components: u64,
    /// Of those, components entirely in the truth.
    pub inner_in_truth: u64,
    /// `inner_in_truth / inner_components` (NaN without components).
    pub inner_in_truth_share: f64,
}

/// Diagnostics of the sets at one level ([module docs](self)).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Diagnostics {
    /// The level.
    pub alpha: f64,
    /// By group (when groups were given).
    pub groups: Option<Vec<StratumRow>>,
    /// By quintile of the true object size.
    pub true_size: Vec<StratumRow>,
    /// By stratum of the predicted volume.
    pub predicted_volume: Vec<StratumRow>,
    /// The lesion-level view.
    pub lesions: Lesions,
}

/// The stratum (0-based) of each value by the quintile rule, and the labels.
fn quintiles(values: &[f64], name: &str) -> (Vec<usize>, Vec<String>) {
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let n = sorted.len();
    let edges: Vec<f64> = (1..5).map(|k| sorted[((k * n).div_ceil(5)).clamp(1, n.max(1)) - 1]).collect();
    let of = |x: f64| edges.iter().filter(|&&e| e < x).count();
    let labels = (0..5)
        .map(|q| match q {
            0 => format!("Q1: {name} <= {}", edges[0]),
            4 => format!("Q5: {name} > {}", edges[3]),
            q => format!("Q{}: {name} in ({}, {}]", q + 1, edges[q - 1], edges[q]),
        })
        .collect();
    (values.iter().map(|&x| of(x)).collect(), labels)
}

/// The stratum of each value by fixed edges (`[e_j, e_j+1)`), and the labels.
fn by_edges(values: &[f64], edges: &Edges, name: &str) -> (Vec<usize>, Vec<String>) {
    let e = edges.get();
    let labels = (0..=e.len())
        .map(|j| {
            if j == 0 {
                format!("{name} < {}", e[0])
            } else if j == e.len() {
                format!("{name} >= {}", e[j - 1])
            } else {
                format!("{name} in [{}, {})", e[j - 1], e[j])
            }
        })
        .collect();
    (values.iter().map(|&x| edges.index(x)).collect(), labels)
}

/// `part / whole`, 0 for an empty whole (the losses of risk control).
fn share_of(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Per-image sums over the splits.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    tests: u64,
    covered: [u64; 3],
    inner_voxels: u64,
    outer_voxels: u64,
    missed_share: f64,
    false_share: f64,
}

fn rows(sums: &[Sums], strata: &[usize], labels: &[String]) -> Vec<StratumRow> {
    let mut rows: Vec<(usize, Sums)> = vec![(0, Sums::default()); labels.len()];
    for (s, &k) in sums.iter().zip(strata) {
        let r = &mut rows[k];
        r.0 += 1;
        r.1.tests += s.tests;
        for (a, b) in r.1.covered.iter_mut().zip(s.covered) {
            *a += b;
        }
        r.1.inner_voxels += s.inner_voxels;
        r.1.outer_voxels += s.outer_voxels;
        r.1.missed_share += s.missed_share;
        r.1.false_share += s.false_share;
    }
    rows.into_iter()
        .zip(labels)
        .filter(|((images, _), _)| *images > 0)
        .map(|((images, s), label)| {
            let t = s.tests as f64;
            let share = |k: u64| if s.tests == 0 { f64::NAN } else { k as f64 / t };
            let mean = |x: f64| if s.tests == 0 { f64::NAN } else { x / t };
            StratumRow {
                stratum: label.clone(),
                images,
                tests: s.tests,
                inner_covered: s.covered[0],
                outer_covered: s.covered[1],
                joint_covered: s.covered[2],
                inner_coverage: share(s.covered[0]),
                outer_coverage: share(s.covered[1]),
                joint_coverage: share(s.covered[2]),
                mean_inner_voxels: share(s.inner_voxels),
                mean_outer_voxels: share(s.outer_voxels),
                mean_missed_share: mean(s.missed_share),
                mean_false_share: mean(s.false_share),
            }
        })
        .collect()
}

/// Diagnostics by stratum of the sets `levels` fit at `alpha` (conformal
/// or risk control), over `splits` of `pool` (the same splits as a
/// [`Validation`](super::Validation) with these splits).
///
/// ```
/// use confseg::evaluate::diagnostics::{diagnose, StrataSpec};
/// use confseg::evaluate::{Pool, Splits};
/// use confseg::{synthetic::Synthetic, Alpha, Calibrator, Identity, Levels};
/// use confseg::levels::ModeKind;
///
/// let (scores, masks) = Synthetic::new([16, 16]).seed(1).stack(0..60);
/// let pool = Pool::new(&Calibrator::new(Identity, Identity), &scores, &masks, 0.0)?;
/// let levels = Levels { mode: ModeKind::Max, ..Levels::default() };
/// let spec = StrataSpec { lesion_splits: 5, ..StrataSpec::default() };
/// let d = diagnose(&pool, &levels, Alpha::new(0.1)?, Splits::new(30, 50, 7)?, &spec)?;
/// let tests: u64 = d.true_size.iter().map(|r| r.tests).sum();
/// assert_eq!(tests, 50 * 30);
/// let joint: u64 = d.true_size.iter().map(|r| r.joint_covered).sum();
/// assert!((0.75..=1.0).contains(&(joint as f64 / tests as f64))); // nominal 0.9
/// assert!(d.lesions.true_components > 0 && d.lesions.inner_splits == 5);
/// # Ok::<(), confseg::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] for groups of another length than the
/// pool; as [`Levels::at`] and [`Splits::iter`].
pub fn diagnose(
    pool: &Pool,
    levels: &Levels,
    alpha: Alpha,
    splits: Splits,
    spec: &StrataSpec,
) -> Result<Diagnostics> {
    levels.at(alpha)?;
    // the levels' own method: conformal, or risk control with its options
    let method = Method::new(MethodKind::Conformal, levels)?.prepare(pool)?;
    let n = pool.len();
    if let Some(g) = &spec.groups {
        if g.len() != n {
            return Err(Error::InvalidParameter {
                name: "groups",
                value: format!("{} labels", g.len()),
                reason: format!("give one group per image of the pool ({n})"),
            });
        }
    }
    let images = pool.images();
    let stats = pool.statistics();
    // each image's true components and their outer statistic max_C -f_O
    let true_parts: Vec<Vec<f64>> = images
        .iter()
        .map(|img| {
            let (label, count) =
                crate::grid::components(&img.truth, &img.shape, crate::grid::Connectivity::Face);
            let mut worst = vec![f64::NEG_INFINITY; count];
            for (&c, &f) in label.iter().zip(&img.outer.values) {
                if let Some(w) = worst.get_mut(c as usize) {
                    *w = w.max(-f);
                }
            }
            worst
        })
        .collect();
    let mut sums = vec![Sums::default(); n];
    let mut lesions = Lesions {
        true_components: 0,
        true_inside_outer: 0,
        true_inside_share: f64::NAN,
        inner_splits: 0,
        inner_components: 0,
        inner_in_truth: 0,
        inner_in_truth_share: f64::NAN,
    };
    let mut inner_memo: HashMap<(usize, u64), (u64, u64)> = HashMap::new();
    for (r, (cal, test)) in splits.iter(n)?.enumerate() {
        // I = {f_I > li}, O = {f_O >= -lo}
        let t = method.thresholds(pool, &cal, alpha)?;
        let (li, lo) = (t.inner, -t.outer);
        let count_inner = r < spec.lesion_splits;
        lesions.inner_splits += usize::from(count_inner);
        for &j in &test {
            let (img, st) = (&images[j], stats.get(j).ok_or(Error::NoCalibrationData)?);
            let (i_ok, o_ok) = (st.tau <= li, st.gamma <= lo);
            let s = &mut sums[j];
            s.tests += 1;
            s.covered[0] += u64::from(i_ok);
            s.covered[1] += u64::from(o_ok);
            s.covered[2] += u64::from(i_ok && o_ok);
            let (fi, fo) = (&img.inner, &img.outer);
            let (i_obj, i_bg) = (count_above(&fi.object, li), count_above(&fi.background, li));
            let o_obj = count_at_least(&fo.object, -lo);
            s.inner_voxels += (i_obj + i_bg) as u64;
            s.outer_voxels += (o_obj + count_at_least(&fo.background, -lo)) as u64;
            s.missed_share += share_of(img.n_object - o_obj, img.n_object);
            s.false_share += share_of(i_bg, i_obj + i_bg);
            let parts = &true_parts[j];
            lesions.true_components += parts.len() as u64;
            lesions.true_inside_outer += parts.iter().filter(|&&w| w <= lo).count() as u64;
            if count_inner {
                let (c, ok) = *inner_memo.entry((j, li.to_bits())).or_insert_with(|| {
                    let ignored = |p: usize| img.ignored.get(p).copied().unwrap_or(false);
                    let set: Vec<bool> =
                        img.inner.values.iter().enumerate().map(|(p, &x)| x > li && !ignored(p)).collect();
                    let (label, count) =
                        crate::grid::components(&set, &img.shape, crate::grid::Connectivity::Face);
                    let mut inside = vec![true; count];
                    for (p, &c) in label.iter().enumerate() {
                        if let Some(ok) = inside.get_mut(c as usize) {
                            *ok &= img.truth[p];
                        }
                    }
                    (count as u64, inside.iter().filter(|&&b| b).count() as u64)
                });
                lesions.inner_components += c;
                lesions.inner_in_truth += ok;
            }
        }
    }
    let share = |a: u64, b: u64| if b == 0 { f64::NAN } else { a as f64 / b as f64 };
    lesions.true_inside_share = share(lesions.true_inside_outer, lesions.true_components);
    lesions.inner_in_truth_share = share(lesions.inner_in_truth, lesions.inner_components);
    let groups = spec.groups.as_ref().map(|g| {
        let mut distinct: Vec<&Group> = g.iter().collect();
        distinct.sort_unstable();
        distinct.dedup();
        let strata: Vec<usize> = g.iter().map(|x| distinct.binary_search(&x).unwrap_or(0)).collect();
        let labels: Vec<String> = distinct.iter().map(|x| x.to_string()).collect();
        rows(&sums, &strata, &labels)
    });
    let sizes: Vec<f64> = images.iter().map(|img| img.n_object as f64).collect();
    let (size_strata, size_labels) = quintiles(&sizes, "true size");
    let volumes: Vec<f64> =
        images.iter().map(|img| img.predicted.iter().filter(|&&b| b).count() as f64).collect();
    let (vol_strata, vol_labels) = match &spec.volume_edges {
        Some(e) => by_edges(&volumes, e, "predicted volume"),
        None => quintiles(&volumes, "predicted volume"),
    };
    Ok(Diagnostics {
        alpha: alpha.get(),
        groups,
        true_size: rows(&sums, &size_strata, &size_labels),
        predicted_volume: rows(&sums, &vol_strata, &vol_labels),
        lesions,
    })
}

/// A compact table of diagnostics (one line per stratum).
#[must_use]
pub fn diagnostics_table(d: &Diagnostics) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "by stratum at alpha {} (coverage, mean set sizes and mean missed / false shares over split x test \
         image pairs):",
        d.alpha
    );
    let _ = writeln!(
        s,
        "  {:<44} {:>6} {:>8} {:>7} {:>7} {:>7} {:>10} {:>10} {:>7} {:>7}",
        "stratum", "images", "tests", "inner", "outer", "joint", "|I| mean", "|O| mean", "missed", "false"
    );
    let mut block = |title: &str, rows: &[StratumRow]| {
        let _ = writeln!(s, "  {title}");
        for r in rows {
            let _ = writeln!(
                s,
                "  {:<44} {:>6} {:>8} {:>7.3} {:>7.3} {:>7.3} {:>10.1} {:>10.1} {:>7.3} {:>7.3}",
                r.stratum,
                r.images,
                r.tests,
                r.inner_coverage,
                r.outer_coverage,
                r.joint_coverage,
                r.mean_inner_voxels,
                r.mean_outer_voxels,
                r.mean_missed_share,
                r.mean_false_share
            );
        }
    };
    if let Some(g) = &d.groups {
        block("group", g);
    }
    block("true object size (quintiles)", &d.true_size);
    block("predicted volume", &d.predicted_volume);
    let l = &d.lesions;
    let _ = writeln!(
        s,
        "lesions: {:.3} of {} true components inside the outer set; {:.3} of {} inner-set components in the truth \
         (first {} splits)",
        l.true_inside_share, l.true_components, l.inner_in_truth_share, l.inner_components, l.inner_splits
    );
    s
}
