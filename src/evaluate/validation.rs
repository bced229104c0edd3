//! The validation run: every method at every level on the same splits.
//! Splits are drawn in batches; a batch's thresholds ([`SplitSets`]) and
//! its per-split coverage and set sizes ([`SetSizes`], `split_cell`) are
//! computed in parallel and folded into one [`Cell`] per method and level
//! in split order, so the reports are the same on any number of threads.
//! The geometry of the first splits is measured afterwards
//! ([`geometry_means`]), and each cell becomes a [`Report`].

use super::geometry::{geometry_means, GEOMETRY_MEANS};
use super::{baselines, Efficiency, Field, Method, Pool, Report, SplitRecord, Splits, Spread};
use super::{count_above, count_at_least};
use crate::error::{Error, Result};
use crate::quantile::{Alpha, Threshold};
use crate::stream::map_images;

/// The most splits whose calibration images a validation records.
pub const MAX_RECORDED_SPLITS: usize = 10_000;

/// The most levels a validation runs at once.
pub const MAX_LEVELS: usize = 1000;

/// On which splits the geometry measures (diameter ratios, Hausdorff
/// distances, band widths) are computed. Coverage and set sizes always use every split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Geometry {
    /// No geometry measures.
    Off,
    /// The first `k` splits (memoized per distinct image and threshold).
    FirstSplits(usize),
    /// Every split (memoized; the cost grows with the number of distinct
    /// thresholds met, not with the number of splits).
    AllSplits,
}

impl Default for Geometry {
    fn default() -> Self {
        Geometry::FirstSplits(20)
    }
}

/// Thresholds of one split for a method: inner set `{g_I > inner}`, outer
/// set `{g_O >= outer}`, over the method's fields.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SplitSets {
    pub(crate) inner: f64,
    pub(crate) outer: f64,
    /// A threshold was infinite for lack of calibration images.
    pub(crate) too_few: bool,
}

impl SplitSets {
    /// The sets `{f_I > lambda_I}`, `{f_O >= -lambda_O}` of conformal thresholds.
    pub(crate) fn conformal(inner: Threshold, outer: Threshold) -> SplitSets {
        let too_few = matches!(inner, Threshold::TooFewImages { .. })
            || matches!(outer, Threshold::TooFewImages { .. });
        SplitSets { inner: inner.value(), outer: -outer.value(), too_few }
    }
}

/// Nominal coverages a method promises at one level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Nominal {
    pub(crate) inner: Option<f64>,
    pub(crate) outer: Option<f64>,
    pub(crate) joint: Option<f64>,
}

/// Which field of a pool image a set is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum FieldId {
    Inner,
    Outer,
    /// The morphological transform of the predicted mask, for the
    /// morphological baseline that is the `usize`-th method.
    Steps(usize),
}

/// Validation settings: levels, splits, geometry and recorded splits.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    alphas: Vec<Alpha>,
    splits: Splits,
    geometry: Geometry,
    recorded: usize,
}

/// Progress of a validation run: `done` of `total` units of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// What is being done (`"splits"` or `"geometry"`).
    pub stage: &'static str,
    /// What `done` and `total` count (`"splits"`, or `"sets"` measured).
    pub unit: &'static str,
    /// Units done.
    pub done: usize,
    /// Units in total.
    pub total: usize,
}

#[derive(Default, Clone, Copy)]
pub(super) struct Mean {
    sum: f64,
    n: usize,
}

impl Mean {
    pub(super) fn add(&mut self, x: f64) {
        self.sum += x;
        self.n += 1;
    }
    pub(super) fn merge(&mut self, other: &Mean) {
        self.sum += other.sum;
        self.n += other.n;
    }
    pub(super) fn get(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

/// The results of one method at one level, folded over the splits.
///
/// Per-split coverages are shares k / n_test: kept as histograms of
/// k, so memory does not grow with the number of splits.
pub(super) struct Cell {
    inner: Vec<u64>,
    outer: Vec<u64>,
    joint: Vec<u64>,
    too_few: usize,
    m: [Mean; 8],
    nominal: Nominal,
    /// thresholds of the geometry splits
    pub(super) geo: Vec<SplitSets>,
    /// the recorded splits
    recorded: Vec<SplitRecord>,
}

impl Cell {
    /// Fold in split `index` (its results `s` on the test images, its
    /// thresholds `t` and its calibration images); its thresholds are kept
    /// if it is one of the first `geometry_splits`, its record if one of
    /// the first `recorded`.
    fn add(
        &mut self,
        s: &SplitCell,
        t: SplitSets,
        calibration: &[usize],
        index: usize,
        geometry_splits: usize,
        recorded: usize,
    ) {
        self.inner[s.covered[0]] += 1;
        self.outer[s.covered[1]] += 1;
        self.joint[s.covered[2]] += 1;
        self.too_few += usize::from(t.too_few);
        for (m, x) in self.m.iter_mut().zip(&s.m) {
            m.merge(x);
        }
        if index < geometry_splits {
            self.geo.push(t);
        }
        if index < recorded {
            self.recorded.push(SplitRecord {
                calibration: calibration.to_vec(),
                lambda_inner: t.inner,
                lambda_outer: -t.outer,
            });
        }
    }
}

impl Validation {
    /// Validate at each of `alphas` over `splits`, with the default
    /// [`Geometry`] (first 20 splits).
    #[must_use]
    pub fn new(alphas: Vec<Alpha>, splits: Splits) -> Self {
        Validation { alphas, splits, geometry: Geometry::default(), recorded: 0 }
    }

    /// Record the calibration images and thresholds of the first `k`
    /// splits in every report ([`Report::recorded`]), e.g. to refit a
    /// split with [`Calibrator::fit`](crate::Calibrator::fit) and compare.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for more than [`MAX_RECORDED_SPLITS`].
    pub fn with_recorded_splits(mut self, k: usize) -> Result<Self> {
        if k > MAX_RECORDED_SPLITS {
            return Err(Error::InvalidParameter {
                name: "recorded splits",
                value: k.to_string(),
                reason: format!("at most {MAX_RECORDED_SPLITS}"),
            });
        }
        self.recorded = k;
        Ok(self)
    }

    /// Choose on which splits geometry measures are computed.
    #[must_use]
    pub fn with_geometry(mut self, geometry: Geometry) -> Self {
        self.geometry = geometry;
        self
    }

    /// The levels.
    #[must_use]
    pub fn alphas(&self) -> &[Alpha] {
        &self.alphas
    }

    /// The splits.
    #[must_use]
    pub fn splits(&self) -> &Splits {
        &self.splits
    }

    /// Run every method on the same splits; one [`Report`] per method and
    /// level, methods in the order given, levels in the order given.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if the pool is too small for the splits,
    /// no level is given, or a method does not fit the pool (see [`Method`]).
    pub fn run(&self, pool: &Pool, methods: &[Method]) -> Result<Vec<Report>> {
        self.run_with_progress(pool, methods, |_| {})
    }

    /// As [`Validation::run`], calling `progress` as the work advances.
    ///
    /// # Errors
    /// As [`Validation::run`].
    pub fn run_with_progress(
        &self,
        pool: &Pool,
        methods: &[Method],
        mut progress: impl FnMut(Progress),
    ) -> Result<Vec<Report>> {
        if self.alphas.is_empty() || self.alphas.len() > MAX_LEVELS {
            return Err(Error::InvalidParameter {
                name: "alphas",
                value: format!("{} levels", self.alphas.len()),
                reason: format!("give 1 to {MAX_LEVELS} levels"),
            });
        }
        let n_test = self.splits.n_test_for(pool.len())?;
        let total = self.splits.repeats;
        let geometry_splits = match self.geometry {
            Geometry::Off => 0,
            Geometry::FirstSplits(k) => k.min(total),
            Geometry::AllSplits => total,
        };
        let prepared: Vec<baselines::Prepared> =
            methods.iter().map(|m| m.prepare(pool)).collect::<Result<_>>()?;
        let mut acc = self.empty_cells(&prepared, n_test)?;
        let geometry_tests = self.fold_splits(pool, &prepared, &mut acc, geometry_splits, &mut progress)?;
        let results = if geometry_splits > 0 {
            geometry_means(pool, &prepared, &acc, &geometry_tests, self.alphas.len(), &mut progress)?
        } else {
            vec![[Mean::default(); GEOMETRY_MEANS]; acc.len()]
        };
        Ok(self.reports(&prepared, &acc, &results, n_test, geometry_splits))
    }

    /// One empty cell per method and level: methods in order, each with
    /// its levels in order.
    fn empty_cells(&self, prepared: &[baselines::Prepared], n_test: usize) -> Result<Vec<Cell>> {
        let mut acc: Vec<Cell> = Vec::with_capacity(prepared.len() * self.alphas.len());
        for p in prepared {
            for &alpha in &self.alphas {
                acc.push(Cell {
                    inner: vec![0; n_test + 1],
                    outer: vec![0; n_test + 1],
                    joint: vec![0; n_test + 1],
                    too_few: 0,
                    m: [Mean::default(); 8],
                    nominal: p.nominal(alpha)?,
                    geo: Vec::new(),
                    recorded: Vec::new(),
                });
            }
        }
        Ok(acc)
    }

    /// Run every split and fold it into the cells; the test images of the
    /// geometry splits.
    ///
    /// The splits run in batches: the batch's splits are drawn in order
    /// from the one seeded generator, their thresholds and set sizes are
    /// computed in parallel (per split, in the order of its test images),
    /// and the per-split results are folded into the cells in split order,
    /// so the reports do not depend on the number of threads.
    fn fold_splits(
        &self,
        pool: &Pool,
        prepared: &[baselines::Prepared],
        acc: &mut [Cell],
        geometry_splits: usize,
        progress: &mut impl FnMut(Progress),
    ) -> Result<Vec<Vec<usize>>> {
        let total = self.splits.repeats;
        let n_alpha = self.alphas.len();
        let cells = prepared.len() * n_alpha;
        // test images of the geometry splits
        let mut geometry_tests: Vec<Vec<usize>> = Vec::with_capacity(geometry_splits);
        let mut draws = self.splits.iter(pool.len())?;
        let mut done = 0;
        let cancel = crate::cancel::Current::get();
        while done < total {
            cancel.check()?;
            let batch: Vec<(Vec<usize>, Vec<usize>)> = draws.by_ref().take(BATCH).collect();
            if batch.is_empty() {
                break;
            }
            let thresholds = self.batch_thresholds(pool, prepared, &batch, &cancel)?;
            for (mi, p) in prepared.iter().enumerate() {
                for ai in 0..n_alpha {
                    let c = mi * n_alpha + ai;
                    let t_of = |r: usize| thresholds[r * cells + c];
                    let sizes = SetSizes::new(pool, p, &batch, &t_of);
                    let per_split =
                        map_images(batch.len(), |r| split_cell(pool, p, &batch[r].1, t_of(r), &sizes));
                    let cell = &mut acc[c];
                    for (r, s) in per_split.iter().enumerate() {
                        cell.add(s, t_of(r), &batch[r].0, done + r, geometry_splits, self.recorded);
                    }
                }
            }
            for (r, (_, test)) in batch.into_iter().enumerate() {
                if done + r < geometry_splits {
                    geometry_tests.push(test);
                }
            }
            done = (done + BATCH).min(total);
            progress(Progress { stage: "splits", unit: "splits", done, total });
        }
        Ok(geometry_tests)
    }

    /// The thresholds of every split of a batch for every method and level,
    /// computed in parallel: entry `r * cells + c` for split `r` and cell `c`.
    fn batch_thresholds(
        &self,
        pool: &Pool,
        prepared: &[baselines::Prepared],
        batch: &[(Vec<usize>, Vec<usize>)],
        cancel: &crate::cancel::Current,
    ) -> Result<Vec<SplitSets>> {
        let n_alpha = self.alphas.len();
        let cells = prepared.len() * n_alpha;
        let any_conformal = prepared.iter().any(baselines::Prepared::is_conformal);
        let thresholds = map_images(batch.len(), |r| {
            cancel.check()?;
            let cal = &batch[r].0;
            let sorted = if any_conformal { baselines::SortedStatistics::new(pool, cal) } else { None };
            (0..cells)
                .map(|c| {
                    prepared[c / n_alpha].thresholds_with(
                        pool,
                        cal,
                        self.alphas[c % n_alpha],
                        sorted.as_ref(),
                    )
                })
                .collect::<Result<Vec<SplitSets>>>()
        });
        let mut flat = Vec::with_capacity(batch.len() * cells);
        for t in thresholds {
            flat.extend(t?);
        }
        Ok(flat)
    }

    /// The reports of the cells (geometry means in `results`), methods in
    /// order, each with its levels in order.
    fn reports(
        &self,
        prepared: &[baselines::Prepared],
        acc: &[Cell],
        results: &[[Mean; GEOMETRY_MEANS]],
        n_test: usize,
        geometry_splits: usize,
    ) -> Vec<Report> {
        let total = self.splits.repeats;
        let n_alpha = self.alphas.len();
        let mut out = Vec::with_capacity(acc.len());
        for (mi, p) in prepared.iter().enumerate() {
            for (ai, &alpha) in self.alphas.iter().enumerate() {
                let c = &acc[mi * n_alpha + ai];
                let g = &results[mi * n_alpha + ai];
                let inner = Spread::of_shares(&c.inner, c.nominal.inner);
                let outer = Spread::of_shares(&c.outer, c.nominal.outer);
                let joint = Spread::of_shares(&c.joint, c.nominal.joint);
                out.push(Report {
                    method: p.name(),
                    alpha: alpha.get(),
                    inner_coverage: inner.mean,
                    outer_coverage: outer.mean,
                    joint_coverage: joint.mean,
                    inner,
                    outer,
                    joint,
                    too_few_images: c.too_few as f64 / total as f64,
                    efficiency: Efficiency {
                        inner_size_ratio: c.m[0].get(),
                        outer_size_ratio: c.m[1].get(),
                        inner_share: c.m[2].get().unwrap_or(f64::NAN),
                        outer_share: c.m[3].get().unwrap_or(f64::NAN),
                        under_covered: c.m[4].get().unwrap_or(f64::NAN),
                        over_covered: c.m[5].get().unwrap_or(f64::NAN),
                        outer_missed_fraction: c.m[6].get().unwrap_or(f64::NAN),
                        inner_false_fraction: c.m[7].get().unwrap_or(f64::NAN),
                        inner_diameter_ratio: g[0].get(),
                        outer_diameter_ratio: g[1].get(),
                        inner_hausdorff: g[2].get(),
                        outer_hausdorff: g[3].get(),
                        inner_hausdorff_infinite: g[4].get(),
                        outer_hausdorff_infinite: g[5].get(),
                        band_width_mean: g[6].get(),
                        band_width_max: g[7].get(),
                        band_width_mean_voxels: g[8].get(),
                        band_width_max_voxels: g[9].get(),
                        band_width_undefined: g[10].get(),
                        geometry_splits,
                    },
                    n_cal: self.splits.n_cal,
                    n_test,
                    splits: total,
                    recorded: c.recorded.clone(),
                });
            }
        }
        out
    }
}

/// Splits per batch of [`Validation::run`]: drawn in order, computed in
/// parallel, folded in order.
const BATCH: usize = 1024;

/// One split's results for one method and level.
struct SplitCell {
    /// test images with `I ⊆ Y`, `Y ⊆ O`, both
    covered: [usize; 3],
    /// the efficiency sums over the split's test images, in their order
    m: [Mean; 8],
}

/// Set sizes `|I ∩ Y|`, `|I \ Y|`, `|O ∩ Y|`, `|O \ Y|` of the pool's images at
/// the thresholds of a batch of splits for one method and level.
///
/// Thresholds are order statistics of the pool (for the conformal method,
/// of its images' statistics), so a batch of splits meets few distinct
/// values; counting every image at each distinct threshold once (a table)
/// replaces a binary search per split and test image by a lookup. When the
/// thresholds are too many for a table to pay (more entries than half the
/// (split, test image) pairs), each count is a binary search.
struct SetSizes {
    /// distinct inner and outer thresholds, sorted (`total_cmp`)
    inner: Vec<f64>,
    outer: Vec<f64>,
    /// per image: `(|I ∩ Y|, |I \ Y|)` at each inner threshold, then
    /// `(|O ∩ Y|, |O \ Y|)` at each outer threshold; empty when not tabled
    table: Vec<Vec<[u32; 2]>>,
}

impl SetSizes {
    fn new(
        pool: &Pool,
        p: &baselines::Prepared,
        batch: &[(Vec<usize>, Vec<usize>)],
        t_of: &(impl Fn(usize) -> SplitSets + Sync),
    ) -> SetSizes {
        let distinct = |f: &dyn Fn(SplitSets) -> f64| {
            let mut v: Vec<f64> = (0..batch.len()).map(|r| f(t_of(r))).collect();
            v.sort_unstable_by(f64::total_cmp);
            v.dedup_by(|a, b| a.total_cmp(b).is_eq());
            v
        };
        let (inner, outer) = (distinct(&|t| t.inner), distinct(&|t| t.outer));
        let lookups: usize = batch.iter().map(|(_, test)| test.len()).sum();
        let entries = (inner.len() + outer.len()).saturating_mul(pool.len());
        // counts fit the table's u32 if the images do
        let fits = u32::try_from(pool.max_voxels()).is_ok();
        let table = if fits && entries <= lookups {
            map_images(pool.len(), |j| {
                let (fi, fo) = p.fields(pool, j);
                let mut row = Vec::with_capacity(inner.len() + outer.len());
                row.extend(
                    inner.iter().map(|&a| [count_above(&fi.object, a), count_above(&fi.background, a)]),
                );
                row.extend(
                    outer.iter().map(|&b| [count_at_least(&fo.object, b), count_at_least(&fo.background, b)]),
                );
                row.into_iter().map(|c| c.map(|x| x as u32)).collect()
            })
        } else {
            Vec::new()
        };
        SetSizes { inner, outer, table }
    }

    /// Where split thresholds `t` are in the table (`None` if not tabled).
    fn position(&self, t: SplitSets) -> Option<(usize, usize)> {
        if self.table.is_empty() {
            return None;
        }
        let find = |v: &[f64], x: f64| v.binary_search_by(|y| y.total_cmp(&x)).ok();
        Some((find(&self.inner, t.inner)?, self.inner.len() + find(&self.outer, t.outer)?))
    }

    /// `(|I ∩ Y|, |I \ Y|, |O ∩ Y|, |O \ Y|)` of image `j` at thresholds `t`.
    fn counts(
        &self,
        fi: &Field,
        fo: &Field,
        j: usize,
        t: SplitSets,
        at: Option<(usize, usize)>,
    ) -> [usize; 4] {
        match at {
            Some((di, d_o)) => {
                let row = &self.table[j];
                let ([a, b], [c, d]) = (row[di], row[d_o]);
                [a as usize, b as usize, c as usize, d as usize]
            }
            _ => [
                count_above(&fi.object, t.inner),
                count_above(&fi.background, t.inner),
                count_at_least(&fo.object, t.outer),
                count_at_least(&fo.background, t.outer),
            ],
        }
    }
}

/// Coverage and efficiency sums of one split (test images in order).
fn split_cell(
    pool: &Pool,
    p: &baselines::Prepared,
    test: &[usize],
    t: SplitSets,
    sizes: &SetSizes,
) -> SplitCell {
    let at = sizes.position(t);
    let tolerances = pool.tolerances();
    let mut out = SplitCell { covered: [0; 3], m: [Mean::default(); 8] };
    for &j in test {
        let img = &pool.images[j];
        let voxels = img.voxels() as f64;
        let (fi, fo) = p.fields(pool, j);
        let [i_obj, i_bg, o_obj, o_bg] = sizes.counts(fi, fo, j, t, at);
        let (inner_ok, outer_ok) = if tolerances.is_none() {
            p.covers(pool, j, t)
        } else {
            // the tolerance events, counted on the sets of every method alike
            let vv: f64 = img.spacing.iter().product();
            let missed = (img.n_object - o_obj) as u64;
            (
                tolerances.inner.holds(i_bg as u64, (i_obj + i_bg) as u64, vv),
                tolerances.outer.holds(missed, img.n_object as u64, vv),
            )
        };
        out.covered[0] += usize::from(inner_ok);
        out.covered[1] += usize::from(outer_ok);
        out.covered[2] += usize::from(inner_ok && outer_ok);
        let y = img.n_object as f64;
        let m = &mut out.m;
        if img.n_object > 0 {
            m[0].add((i_obj + i_bg) as f64 / y);
            m[1].add((o_obj + o_bg) as f64 / y);
            m[6].add((img.n_object - o_obj) as f64 / y);
        } else {
            m[6].add(0.0);
        }
        m[2].add((i_obj + i_bg) as f64 / voxels);
        m[3].add((o_obj + o_bg) as f64 / voxels);
        m[4].add((img.n_object - i_obj) as f64 / voxels);
        m[5].add(o_bg as f64 / voxels);
        // the false discovery proportion of the inner set (0 when empty)
        let inner = i_obj + i_bg;
        m[7].add(if inner > 0 { i_bg as f64 / inner as f64 } else { 0.0 });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::Calibrator;

    use crate::levels::{Levels, ModeKind};
    use crate::quantile::Rank;

    fn small_pool() -> Pool {
        use crate::synthetic::Synthetic;
        use crate::{Identity, Metric, SignedDistance};
        let (scores, masks) = Synthetic::new([20, 24]).seed(5).stack(0..120);
        let c = Calibrator::new(Identity, SignedDistance::new(Metric::Euclidean));
        Pool::new(&c, &scores, &masks, 0.0).unwrap()
    }

    fn all_methods() -> Vec<Method> {
        vec![
            Method::Conformal(Levels::new(ModeKind::Marginal)),
            Method::Conformal(Levels::new(ModeKind::Max)),
            Method::Conformal(Levels::bonferroni(1.0, 4.0)),
            Method::RiskControl,
            Method::Risk(Levels { delta: Some(0.1), ..Levels::new(ModeKind::RiskControl) }),
            Method::Risk(Levels {
                delta: Some(0.1),
                risk: Some(crate::risk::Risk::Precision),
                ..Levels::new(ModeKind::RiskControl)
            }),
            Method::PixelwiseBonferroni(Levels::bonferroni(1.0, 4.0)),
            Method::Morphological(crate::transform::Footprint::Full, Rank::Marginal),
        ]
    }

    #[test]
    fn set_size_tables_equal_binary_searches() {
        let pool = small_pool();
        let splits = Splits::new(70, 300, 2).unwrap().generate(pool.len()).unwrap();
        for method in all_methods() {
            let p = method.prepare(&pool).unwrap();
            for alpha in [0.05, 0.2] {
                let alpha = Alpha::new(alpha).unwrap();
                let t: Vec<SplitSets> =
                    splits.iter().map(|(cal, _)| p.thresholds(&pool, cal, alpha).unwrap()).collect();
                let t_of = |r: usize| t[r];
                let tabled = SetSizes::new(&pool, &p, &splits, &t_of);
                assert!(!p.is_conformal() || !tabled.table.is_empty(), "conformal thresholds are few");
                let direct = SetSizes { inner: Vec::new(), outer: Vec::new(), table: Vec::new() };
                for (r, (_, test)) in splits.iter().enumerate() {
                    let (a, b) = (
                        split_cell(&pool, &p, test, t[r], &tabled),
                        split_cell(&pool, &p, test, t[r], &direct),
                    );
                    assert_eq!(a.covered, b.covered);
                    for (x, y) in a.m.iter().zip(&b.m) {
                        assert_eq!((x.sum.to_bits(), x.n), (y.sum.to_bits(), y.n));
                    }
                }
                // the conformal thresholds from sorted statistics equal `Calibration::thresholds`
                for (cal, _) in &splits {
                    let sorted = baselines::SortedStatistics::new(&pool, cal);
                    let a = p.thresholds_with(&pool, cal, alpha, sorted.as_ref()).unwrap();
                    let b = p.thresholds(&pool, cal, alpha).unwrap();
                    assert_eq!(
                        (a.inner.to_bits(), a.outer.to_bits(), a.too_few),
                        (b.inner.to_bits(), b.outer.to_bits(), b.too_few)
                    );
                }
            }
        }
    }

    #[cfg(feature = "rayon")]
    #[test]
    fn parallel_reports_equal_one_thread_bit_for_bit() {
        let pool = small_pool();
        // more splits than a batch, the last batch partial; geometry on a few
        let alphas = [0.05, 0.1, 0.3].map(|a| Alpha::new(a).unwrap()).to_vec();
        let v = Validation::new(alphas, Splits::new(60, 2 * BATCH + 37, 9).unwrap().with_n_test(50).unwrap())
            .with_geometry(Geometry::FirstSplits(3));
        let run = |threads: usize| {
            let tp = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut calls = Vec::new();
            let r = tp.install(|| v.run_with_progress(&pool, &all_methods(), |p| calls.push(p))).unwrap();
            // Debug shows every f64 exactly (shortest round trip, NaN and -0 included)
            (format!("{r:?}"), calls)
        };
        let (one, calls) = run(1);
        assert_eq!(run(3), (one.clone(), calls.clone()));
        assert_eq!(run(2).0, one);
        assert_eq!(calls.iter().rfind(|p| p.stage == "splits").map(|p| p.done), Some(2 * BATCH + 37));
    }
}
