//! The threshold search of risk control (METHOD.md §4.3, §4.5): one engine
//! for the calibration state ([`RiskCalibration`](crate::calibrate::RiskCalibration))
//! and the splits of a validation.
//!
//! Images come as their sorted scores on the risk's side: the object
//! voxels' (and, for precision, the background voxels'). The result is the
//! set on that side: for recall the outer set `{f_O >= t}` (returned `t`;
//! `-inf` is the whole image), for precision the inner set `{f_I > l}`
//! (returned `l`; `+inf` is the empty set).
//!
//! * Exact search, monotone bounds (conformal risk control, Hoeffding):
//!   bisection over the sorted distinct object scores.
//! * Exact search, other bounds (Bernstein, WSR, Hoeffding–Bentkus): a
//!   sweep over the distinct scores from the trivially safe end (the whole
//!   image for recall, the empty inner set for precision), one distinct
//!   score at a time, stopping at the first state the bound does not
//!   certify.
//! * Grid: the per-image losses at every grid value, then MAPIE 1.6's
//!   choice.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::bounds::{self, HoeffdingBentkus, Wsr};
use super::{Bound, Risk, Search};
use crate::risk::RiskControl;

/// One image's scores on the risk's side, each slice sorted ascending:
/// the object voxels' and (precision) the background voxels'.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scored<'a> {
    pub(crate) object: &'a [f64],
    pub(crate) background: &'a [f64],
}

/// The missed share `1 - TP/|Y|` (MAPIE's arithmetic), 0 for an empty object.
fn recall_loss(tp: usize, n_object: usize) -> f64 {
    if n_object == 0 {
        0.0
    } else {
        1.0 - tp as f64 / n_object as f64
    }
}

/// The false share `1 - TP/(TP + FP)` (MAPIE's arithmetic); for an empty
/// set 0, or with `mapie` 1 when the image has an object.
fn precision_loss(tp: usize, fp: usize, n_object: usize, mapie: bool) -> f64 {
    match tp + fp {
        0 if mapie && n_object > 0 => 1.0,
        0 => 0.0,
        k => 1.0 - tp as f64 / k as f64,
    }
}

/// Every value of the sorted slices once, ascending.
pub(crate) fn sorted_unique<'a>(parts: impl Iterator<Item = &'a [f64]>) -> Vec<f64> {
    let mut v: Vec<f64> = parts.flatten().copied().collect();
    v.sort_unstable_by(f64::total_cmp);
    v.dedup_by(|a, b| a.total_cmp(b).is_eq());
    v
}

/// The smallest candidate `x` with `pred(x)`, for `pred` monotone (false
/// then true) over the sorted candidates; `None` if it never holds.
pub(crate) fn smallest_with(candidates: &[f64], pred: impl Fn(f64) -> bool) -> Option<f64> {
    candidates.get(candidates.partition_point(|&x| !pred(x))).copied()
}

/// The mean missed share of the outer sets `{f_O >= t}` (`strict`:
/// `{f_O > t}`), in image order.
pub(crate) fn mean_missed(objects: &[&[f64]], t: f64, strict: bool) -> f64 {
    let losses = objects.iter().map(|o| {
        let missed = if strict { o.partition_point(|&v| v <= t) } else { o.partition_point(|&v| v < t) };
        recall_loss(o.len() - missed, o.len())
    });
    losses.fold(0.0, |s, x| s + x) / objects.len() as f64
}

/// The threshold of risk control `level` for `images` (module docs). For
/// the exact search of the monotone bounds, `candidates` (sorted, holding
/// every object score) may be given to save sorting them.
pub(crate) fn fit(images: &[Scored<'_>], level: &RiskControl, candidates: Option<&[f64]>) -> f64 {
    let n = images.len() as f64;
    let alpha = level.alpha().get();
    if let Search::Grid(g) = level.search() {
        return grid(images, level, &g.values());
    }
    match (level.risk(), level.confidence) {
        (Risk::Recall, None | Some((_, Bound::Hoeffding))) => {
            let bound = (alpha * (n + 1.0) - 1.0) / n;
            let fails = |m: f64| match level.confidence {
                // conformal risk control: n/(n+1) R + 1/(n+1) <= alpha
                None => m > bound,
                Some((d, _)) => !bounds::below(bounds::hoeffding(m, n, d.get()), alpha),
            };
            let objects: Vec<&[f64]> = images.iter().map(|s| s.object).collect();
            if fails(0.0) {
                return f64::NEG_INFINITY;
            }
            let owned;
            let candidates = match candidates {
                Some(c) => c,
                None => {
                    owned = sorted_unique(objects.iter().copied());
                    &owned
                }
            };
            // the missed share of {f_O >= t} just above x counts the scores <= x
            smallest_with(candidates, |x| fails(mean_missed(&objects, x, true))).unwrap_or(f64::INFINITY)
        }
        (Risk::Recall, Some((d, Bound::Bernstein))) => sweep(images, Risk::Recall, |s| {
            !bounds::below(bounds::bernstein(s.mean(), s.var(), n, d.get()), alpha)
        }),
        (Risk::Recall, Some((d, _))) => {
            let mut wsr = Wsr::new(images.len(), d.get(), alpha);
            sweep(images, Risk::Recall, |s| !wsr.certifies(&s.losses, s.changed_from))
        }
        (Risk::Precision, confidence) => {
            let delta = confidence.map_or(0.0, |(d, _)| d.get());
            let hb = HoeffdingBentkus::new(images.len(), alpha);
            sweep(images, Risk::Precision, |s| hb.p_value_of_sum(s.sum.total()) > delta)
        }
    }
}

/// The per-image losses of the sets `{f > l}` (MAPIE's convention for an
/// empty inner set).
fn grid_losses(images: &[Scored<'_>], risk: Risk, l: f64) -> Vec<f64> {
    let above = |v: &[f64]| v.len() - v.partition_point(|&x| x <= l);
    images
        .iter()
        .map(|s| match risk {
            Risk::Recall => recall_loss(above(s.object), s.object.len()),
            Risk::Precision => precision_loss(above(s.object), above(s.background), s.object.len(), true),
        })
        .collect()
}

/// MAPIE 1.6's choice on the grid `values` (ascending). Recall: the
/// largest `l_k` with the bound below `alpha` at `l_1..l_k`, as the outer
/// set `{f_O > l_k} = {f_O >= next_up(l_k)}` (`-inf`, the whole image,
/// when `l_1` fails: MAPIE returns `l_1` then). Precision: the smallest
/// grid value Holm's procedure rejects (`+inf`, the empty set, if none:
/// MAPIE returns NaN, whose `f > NaN` is empty too).
fn grid(images: &[Scored<'_>], level: &RiskControl, values: &[f64]) -> f64 {
    let n = images.len() as f64;
    let alpha = level.alpha().get();
    let risk = level.risk();
    match (risk, level.confidence) {
        (Risk::Precision, confidence) => {
            let delta = confidence.map_or(0.0, |(d, _)| d.get());
            let hb = HoeffdingBentkus::new(images.len(), alpha);
            let p: Vec<f64> =
                values.iter().map(|&l| hb.p_value(bounds::mean(&grid_losses(images, risk, l)))).collect();
            bounds::holm(&p, delta).into_iter().min().map_or(f64::INFINITY, |k| values[k])
        }
        (Risk::Recall, confidence) => {
            let ucb = |l: f64| {
                let losses = grid_losses(images, risk, l);
                let m = bounds::mean(&losses);
                match confidence {
                    None => bounds::crc(m, n),
                    Some((d, Bound::Hoeffding)) => bounds::hoeffding(m, n, d.get()),
                    Some((d, Bound::Bernstein)) => bounds::bernstein(m, bounds::var(&losses), n, d.get()),
                    Some((d, _)) => bounds::wsr_mapie(&losses, d.get(), values),
                }
            };
            let certified = values.iter().take_while(|&&l| ucb(l) < alpha).count();
            match certified {
                0 => f64::NEG_INFINITY,
                k => values[k - 1].next_up(),
            }
        }
    }
}

/// Whether a calibration set of `n` images whose losses are all 0
/// certifies a threshold (the first state of the search, or every grid
/// value).
fn certifies_zero_losses(level: &RiskControl, n: usize) -> bool {
    let nf = n as f64;
    let alpha = level.alpha().get();
    let grid = match level.search() {
        Search::Grid(g) => Some(g.values()),
        Search::Exact => None,
    };
    match (level.confidence, &grid) {
        (None, None) => alpha * (nf + 1.0) >= 1.0,
        (None, Some(_)) => bounds::crc(0.0, nf) < alpha,
        (Some((d, Bound::Hoeffding)), _) => bounds::hoeffding(0.0, nf, d.get()) < alpha,
        (Some((d, Bound::Bernstein)), _) => bounds::bernstein(0.0, 0.0, nf, d.get()) < alpha,
        (Some((d, Bound::Wsr)), None) => Wsr::new(n, d.get(), alpha).certifies(&vec![0.0; n], 0),
        (Some((d, Bound::Wsr)), Some(g)) => bounds::wsr_mapie(&vec![0.0; n], d.get(), g) < alpha,
        (Some((d, Bound::HoeffdingBentkus)), g) => {
            let m = g.as_ref().map_or(1, Vec::len) as f64;
            HoeffdingBentkus::new(n, alpha).p_value(0.0) <= d.get() / m
        }
    }
}

/// [`RiskControl::min_calibration_size`]: the smallest `n` for which zero
/// losses certify a threshold (doubling, then bisection), or `usize::MAX`.
pub(crate) fn min_calibration_size(level: &RiskControl) -> usize {
    let ok = |n: usize| n > 0 && certifies_zero_losses(level, n);
    let mut hi = 1usize;
    while !ok(hi) {
        if hi >= 1 << 26 {
            return usize::MAX;
        }
        hi *= 2;
    }
    let mut lo = hi / 2; // fails (or 0)
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if ok(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// Sums of a vector kept in a fixed binary tree: a value that depends only
/// on the current entries (not on the order of updates), in `O(log n)` per
/// update.
struct SumTree {
    leaves: usize,
    node: Vec<f64>,
}

impl SumTree {
    fn new(n: usize) -> Self {
        let leaves = n.next_power_of_two().max(1);
        SumTree { leaves, node: vec![0.0; 2 * leaves] }
    }

    fn set(&mut self, i: usize, x: f64) {
        let mut k = self.leaves + i;
        self.node[k] = x;
        while k > 1 {
            k /= 2;
            self.node[k] = self.node[2 * k] + self.node[2 * k + 1];
        }
    }

    fn total(&self) -> f64 {
        self.node[1]
    }
}

/// The state of a sweep: per image the set's object and background voxel
/// counts and its loss, with their sums.
struct Sweep {
    tp: Vec<usize>,
    fp: Vec<usize>,
    n_object: Vec<usize>,
    losses: Vec<f64>,
    sum: SumTree,
    sum_sq: SumTree,
    /// The first image whose loss changed since the last check.
    changed_from: usize,
    risk: Risk,
}

impl Sweep {
    fn mean(&self) -> f64 {
        self.sum.total() / self.losses.len() as f64
    }

    /// The unbiased sample variance of the losses (from the sums).
    fn var(&self) -> f64 {
        let n = self.losses.len() as f64;
        let m = self.mean();
        ((self.sum_sq.total() - n * m * m) / (n - 1.0)).max(0.0)
    }

    fn loss(&self, i: usize) -> f64 {
        match self.risk {
            Risk::Recall => recall_loss(self.tp[i], self.n_object[i]),
            Risk::Precision => precision_loss(self.tp[i], self.fp[i], self.n_object[i], false),
        }
    }

    fn update(&mut self, i: usize) {
        let l = self.loss(i);
        if l.to_bits() != self.losses[i].to_bits() {
            self.losses[i] = l;
            self.sum.set(i, l);
            self.sum_sq.set(i, l * l);
            self.changed_from = self.changed_from.min(i);
        }
    }
}

/// A list of the sweep: one image's object or background scores.
struct List<'a> {
    values: &'a [f64],
    image: usize,
    object: bool,
}

/// A list's next value in the heap (a max-heap on `key`, which is the
/// value for descending sweeps and its negation for ascending ones).
struct Head {
    key: f64,
    list: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.total_cmp(&other.key).then(other.list.cmp(&self.list))
    }
}

/// The sweep of an exact search: recall from the whole image up (object
/// scores ascending, each one leaving the outer sets `{f_O >= t}` as `t`
/// passes it), precision from the empty inner set down (all scores
/// descending, each one entering `{f_I > l}`). After each distinct score
/// (ties across images and `-0 == 0` taken together) `fails` is asked;
/// the score where it first fails is the threshold.
fn sweep(images: &[Scored<'_>], risk: Risk, mut fails: impl FnMut(&Sweep) -> bool) -> f64 {
    let n = images.len();
    let n_object: Vec<usize> = images.iter().map(|s| s.object.len()).collect();
    let mut s = Sweep {
        tp: match risk {
            Risk::Recall => n_object.clone(),
            Risk::Precision => vec![0; n],
        },
        fp: vec![0; n],
        n_object,
        losses: vec![0.0; n],
        sum: SumTree::new(n),
        sum_sq: SumTree::new(n),
        changed_from: 0,
        risk,
    };
    let (start, end) = match risk {
        Risk::Recall => (f64::NEG_INFINITY, f64::INFINITY),
        Risk::Precision => (f64::INFINITY, f64::NEG_INFINITY),
    };
    if fails(&s) {
        return start;
    }
    s.changed_from = n;
    let ascending = risk == Risk::Recall;
    let mut lists: Vec<List<'_>> = Vec::new();
    for (i, img) in images.iter().enumerate() {
        lists.push(List { values: img.object, image: i, object: true });
        if risk == Risk::Precision {
            lists.push(List { values: img.background, image: i, object: false });
        }
    }
    // cursor: the number of values of each list already swept
    let mut done = vec![0usize; lists.len()];
    let value_at = |l: &List<'_>, k: usize| {
        if ascending {
            l.values[k]
        } else {
            l.values[l.values.len() - 1 - k]
        }
    };
    let key = |v: f64| if ascending { -v } else { v };
    let mut heap: BinaryHeap<Head> = lists
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.values.is_empty())
        .map(|(j, l)| Head { key: key(value_at(l, 0)), list: j })
        .collect();
    while let Some(top) = heap.peek() {
        let v = if ascending { -top.key } else { top.key };
        while let Some(h) = heap.peek() {
            let j = h.list;
            let l = &lists[j];
            if value_at(l, done[j]) != v {
                break;
            }
            heap.pop();
            let mut run = 0;
            while done[j] < l.values.len() && value_at(l, done[j]) == v {
                done[j] += 1;
                run += 1;
            }
            match (risk, l.object) {
                (Risk::Recall, _) => s.tp[l.image] -= run,
                (Risk::Precision, true) => s.tp[l.image] += run,
                (Risk::Precision, false) => s.fp[l.image] += run,
            }
            s.update(l.image);
            if done[j] < l.values.len() {
                heap.push(Head { key: key(value_at(l, done[j])), list: j });
            }
        }
        if s.changed_from < n && fails(&s) {
            return v;
        }
        s.changed_from = n;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantile::{Alpha, Delta};
    use crate::risk::Grid;

    /// Slow reference: every candidate state evaluated from scratch.
    fn brute(images: &[(Vec<f64>, Vec<f64>)], level: &RiskControl) -> f64 {
        let n = images.len();
        let nf = n as f64;
        let alpha = level.alpha().get();
        let d = level.delta().map_or(0.0, |d| d.get());
        let mut all: Vec<f64> = images
            .iter()
            .flat_map(|(o, b)| {
                o.iter().chain(if level.risk() == Risk::Precision { b.iter() } else { [].iter() })
            })
            .copied()
            .collect();
        all.sort_by(f64::total_cmp);
        all.dedup();
        let certified = |losses: &[f64]| {
            let m = losses.iter().sum::<f64>() / nf;
            match level.bound() {
                None => m <= (alpha * (nf + 1.0) - 1.0) / nf,
                Some(Bound::Hoeffding) => bounds::hoeffding(m, nf, d) < alpha,
                Some(Bound::Bernstein) => {
                    let v = losses.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (nf - 1.0);
                    bounds::bernstein(m, v, nf, d) < alpha
                }
                Some(Bound::Wsr) => Wsr::new(n, d, alpha).certifies(losses, 0),
                Some(Bound::HoeffdingBentkus) => {
                    HoeffdingBentkus::new(n, alpha).p_value_of_sum(losses.iter().sum()) <= d
                }
            }
        };
        match level.risk() {
            Risk::Recall => {
                // outer sets {f >= t}: t = -inf, then each score
                let losses = |t: f64| -> Vec<f64> {
                    images
                        .iter()
                        .map(|(o, _)| {
                            if o.is_empty() {
                                0.0
                            } else {
                                recall_loss(o.iter().filter(|&&x| x >= t).count(), o.len())
                            }
                        })
                        .collect()
                };
                let mut best = f64::NEG_INFINITY;
                for &t in std::iter::once(&f64::NEG_INFINITY).chain(&all).chain([f64::INFINITY].iter()) {
                    if !certified(&losses(t)) {
                        return best;
                    }
                    // the sets just above t are those of the next score
                    best = t;
                }
                best
            }
            Risk::Precision => {
                let losses = |l: f64| -> Vec<f64> {
                    images
                        .iter()
                        .map(|(o, b)| {
                            let tp = o.iter().filter(|&&x| x > l).count();
                            let fp = b.iter().filter(|&&x| x > l).count();
                            precision_loss(tp, fp, o.len(), false)
                        })
                        .collect()
                };
                let mut best = f64::INFINITY;
                for &l in all.iter().rev().chain([f64::NEG_INFINITY].iter()) {
                    if !certified(&losses(l)) {
                        return best;
                    }
                    best = l;
                }
                best
            }
        }
    }

    fn data(n: usize, seed: u64) -> Vec<(Vec<f64>, Vec<f64>)> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let k = if i % 11 == 0 { 0 } else { rng.random_range(1..9) };
                let u: f64 = rng.random();
                // scores on a coarse lattice: many ties, within and across images
                let mut o: Vec<f64> =
                    (0..k).map(|_| ((u + rng.random::<f64>()) * 8.0).round() / 8.0).collect();
                let mut b: Vec<f64> =
                    (0..rng.random_range(0..9)).map(|_| (rng.random::<f64>() * 8.0).round() / 8.0).collect();
                o.sort_by(f64::total_cmp);
                b.sort_by(f64::total_cmp);
                (o, b)
            })
            .collect()
    }

    #[test]
    fn exact_search_equals_the_brute_force_definition() {
        let a = |x| Alpha::new(x).unwrap();
        let d = |x| Delta::new(x).unwrap();
        // how often each method certified an informative (finite) threshold
        let mut finite = [0usize; 5];
        for seed in 0..12 {
            let imgs = data(40 + seed as usize * 7, seed);
            let scored: Vec<Scored<'_>> =
                imgs.iter().map(|(o, b)| Scored { object: o, background: b }).collect();
            for alpha in [0.15, 0.3, 0.5] {
                let mut levels = vec![RiskControl::new(a(alpha)), RiskControl::precision(a(alpha), d(0.2))];
                for b in [Bound::Hoeffding, Bound::Bernstein, Bound::Wsr] {
                    levels.push(RiskControl::with_confidence(Risk::Recall, a(alpha), d(0.2), b).unwrap());
                }
                for (k, level) in levels.iter().enumerate() {
                    let got = fit(&scored, level, None);
                    let want = brute(&imgs, level);
                    assert_eq!(got, want, "seed {seed} alpha {alpha}: {level}");
                    finite[k] += usize::from(got.is_finite());
                }
            }
        }
        // the comparisons are not all between trivial answers
        assert!(finite.iter().all(|&f| f >= 6), "{finite:?}");
    }

    #[test]
    fn grid_sets_are_strict() {
        // one image, object scores 0.2 and 0.5: at l = 0.2 the set {f > 0.2} misses half
        let o = [0.2, 0.5];
        let s = [Scored { object: &o, background: &[] }];
        let g: Grid = "0:0.4:0.1".parse().unwrap();
        let r = RiskControl::new(Alpha::new(0.6).unwrap()).with_search(Search::Grid(g)).unwrap();
        // n = 1: CRC bound R/2 + 1/2 < 0.6 needs R < 0.2: l = 0, 0.1 (R = 0); l = 0.2 misses 0.5
        assert_eq!(fit(&s, &r, None), 0.1f64.next_up());
    }
}
