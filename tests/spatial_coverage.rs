//! The coverage guarantee (METHOD.md §4) with the spatial transforms of METHOD.md §5,
//! and the paper's Hausdorff property of signed-distance outer sets.
//!
//! For each transform pair, `(tau_i, gamma_i)` is computed once for a pool
//! of `n + m` synthetic images; each replication is a random split of the
//! pool into `n` calibration and `m` test images. For continuous statistics
//! the ranks of a random split of a fixed pool are distributed exactly as
//! for fresh i.i.d. draws, so the expected coverage of the rank-`k`
//! threshold is `k/(n+1)` and the per-replication coverage has variance
//! `Var Beta(k, n+1-k) + p(1-p)/m` (see tests/coverage.rs); the mean over
//! `R` replications is checked within 4 standard errors. Distance scores
//! tie (they take few distinct values), which only makes the sets
//! conservative: for them only the lower bound `1 - alpha - tol` is checked.
//! With `n = 99` and `alpha = 0.1`, `1/(n+1) = 0.01` exceeds the tolerance
//! (about 0.0076), so an off-by-one quantile fails the continuous checks.
//!
//! The coverage decision from the statistics (`tau <= lambda_I`,
//! `gamma <= lambda_O`) is checked against predicted sets on the first split.

use confseg::synthetic::Synthetic;
use confseg::transform::DistanceConvention;
use confseg::{
    Alpha, Calibration, Calibrator, Metric, Mode, ScoreTransform, SignedDistance, Spacing, Transform,
};
use ndarray::{Array2, Ix2};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

const N: usize = 99;
const M: usize = 100;
const REPS: usize = 500;

fn beta_var(k: usize, n: usize) -> f64 {
    let (a, b) = (k as f64, (n + 1 - k) as f64);
    a * b / ((a + b).powi(2) * (a + b + 1.0))
}

/// `k = ceil((1 - alpha)(n + 1))` for alpha in hundredths, computed here.
fn rank(alpha: f64, n: usize) -> usize {
    let percent = (alpha * 100.0).round() as usize;
    ((100 - percent) * (n + 1)).div_ceil(100)
}

fn tolerance(alpha: f64) -> f64 {
    let p = 1.0 - alpha;
    4.0 * ((beta_var(rank(alpha, N), N) + p * (1.0 - p) / M as f64) / REPS as f64).sqrt()
}

struct Coverage {
    inner: f64,
    outer: f64,
    joint: f64,
}

/// Mean coverage over random splits of the pool `stats` (N + M images).
fn split_coverage<TI, TO>(
    calibrator: &Calibrator<TI, TO>,
    data: &Synthetic<Ix2>,
    stats: &Calibration,
    mode: Mode,
    seed: u64,
) -> Coverage
where
    TI: Transform + Clone,
    TO: Transform + Clone,
{
    assert_eq!(stats.len(), N + M);
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut idx: Vec<usize> = (0..N + M).collect();
    let (mut ci, mut co, mut cj) = (0usize, 0usize, 0usize);
    for rep in 0..REPS {
        idx.shuffle(&mut rng);
        let (cal, test) = idx.split_at(N);
        let th = stats.select(cal).unwrap().thresholds(&mode).unwrap();
        let (li, lo) = (th.inner.value(), th.outer.value());
        for &t in test {
            let s = stats.get(t).unwrap();
            let (i, o) = (s.tau <= li, s.gamma <= lo);
            ci += usize::from(i);
            co += usize::from(o);
            cj += usize::from(i && o);
        }
        if rep == 0 {
            // The statistics decide coverage exactly as the predicted sets do.
            let sets = calibrator.fit(&stats.select(cal).unwrap(), mode).unwrap();
            for &t in test.iter().take(25) {
                let (scores, truth) = data.pair(t);
                let c = sets.predict(&scores).unwrap().coverage(&truth).unwrap();
                let s = stats.get(t).unwrap();
                assert_eq!((c.inner, c.outer), (s.tau <= li, s.gamma <= lo), "image {t}");
            }
        }
    }
    let total = (REPS * M) as f64;
    eprintln!(
        "{mode}: inner {:.4} outer {:.4} joint {:.4}",
        ci as f64 / total,
        co as f64 / total,
        cj as f64 / total
    );
    Coverage { inner: ci as f64 / total, outer: co as f64 / total, joint: cj as f64 / total }
}

fn pool<TI: Transform, TO: Transform>(calibrator: &Calibrator<TI, TO>, data: &Synthetic<Ix2>) -> Calibration {
    let mut cal = Calibration::new();
    for (s, y) in data.pairs(0..N + M) {
        calibrator.observe(&mut cal, &s, &y).unwrap();
    }
    cal
}

fn assert_exact(what: &str, got: f64, alpha: f64) {
    let expected = rank(alpha, N) as f64 / (N as f64 + 1.0);
    assert!((1.0 - alpha..=1.0 - alpha + 1.0 / (N as f64 + 1.0)).contains(&expected));
    let tol = tolerance(alpha);
    assert!((got - expected).abs() <= tol, "{what}: coverage {got:.4}, expected {expected:.4} ± {tol:.4}");
}

fn assert_at_least(what: &str, got: f64, alpha: f64) {
    let tol = tolerance(alpha);
    assert!(got >= 1.0 - alpha - tol, "{what}: coverage {got:.4} below {:.4} - {tol:.4}", 1.0 - alpha);
}

#[test]
fn smoothed_scores_have_tight_marginal_coverage() {
    let data = Synthetic::new([32, 32]).seed(11);
    let spacing = Spacing::new(vec![1.0, 1.4]).unwrap();
    let g: ScoreTransform = "gaussian:2".parse().unwrap();
    let gp: ScoreTransform = "gaussian-sigma:1.5:units=physical:mode=nearest".parse().unwrap();
    let calibrator = Calibrator::new(g, gp).with_spacing(spacing);
    let stats = pool(&calibrator, &data);
    let alpha = 0.1;
    let c = split_coverage(&calibrator, &data, &stats, Mode::marginal(Alpha::new(alpha).unwrap()), 1);
    assert_exact("gaussian inner", c.inner, alpha);
    assert_exact("gaussian outer", c.outer, alpha);
}

#[test]
fn distance_scores_cover_at_least_nominal() {
    let data = Synthetic::new([32, 32]).seed(12);
    let spacing = Spacing::new(vec![1.0, 2.0]).unwrap();
    let alpha = 0.1;
    for (inner, outer) in [
        ("identity", "distance:euclidean"),
        ("distance:euclidean:threshold=1", "distance-centre:chessboard"),
        ("box-inner", "box-outer"),
    ] {
        let (ti, to): (ScoreTransform, ScoreTransform) = (inner.parse().unwrap(), outer.parse().unwrap());
        let calibrator = Calibrator::new(ti, to).with_spacing(spacing.clone());
        let stats = pool(&calibrator, &data);
        let a = Alpha::new(alpha).unwrap();
        let c = split_coverage(&calibrator, &data, &stats, Mode::marginal(a), 2);
        assert_at_least(&format!("{inner} inner"), c.inner, alpha);
        assert_at_least(&format!("{outer} outer"), c.outer, alpha);
        // Joint: Bonferroni 1:4 split of alpha.
        let mode = Mode::bonferroni(a, 1.0, 4.0).unwrap();
        let c = split_coverage(&calibrator, &data, &stats, mode, 3);
        assert_at_least(&format!("{inner} / {outer} joint"), c.joint, alpha);
    }
}

/// Euclidean distance (with spacing) from `v` to the nearest boundary
/// midpoint of `p`, by brute force; `inf` if `p` has no boundary.
fn brute_boundary_distance(p: &Array2<bool>, v: (usize, usize), sp: &[f64]) -> f64 {
    let (h, w) = p.dim();
    let mut best = f64::INFINITY;
    for i in 0..h {
        for j in 0..w {
            for (di, dj) in [(1, 0), (0, 1)] {
                if i + di < h && j + dj < w && p[[i, j]] != p[[i + di, j + dj]] {
                    let mi = i as f64 + di as f64 / 2.0;
                    let mj = j as f64 + dj as f64 / 2.0;
                    let d =
                        (((v.0 as f64 - mi) * sp[0]).powi(2) + ((v.1 as f64 - mj) * sp[1]).powi(2)).sqrt();
                    best = best.min(d);
                }
            }
        }
    }
    best
}

/// How far the truth reaches outside the prediction: the largest distance
/// from a truth voxel outside `p` to the boundary of `p` (`-inf` if the
/// truth lies inside `p`).
fn reach(truth: &Array2<bool>, p: &Array2<bool>, sp: &[f64]) -> f64 {
    truth
        .indexed_iter()
        .filter(|&(ix, &t)| t && !p[ix])
        .map(|(ix, _)| brute_boundary_distance(p, ix, sp))
        .fold(f64::NEG_INFINITY, f64::max)
}

/// The truth shifted by `(di, dj)` voxels (voxels shifted out are lost).
fn shifted(truth: &Array2<bool>, di: isize, dj: isize) -> Array2<bool> {
    let (h, w) = truth.dim();
    Array2::from_shape_fn((h, w), |(i, j)| {
        let (si, sj) = (i as isize - di, j as isize - dj);
        (0..h as isize).contains(&si) && (0..w as isize).contains(&sj) && truth[[si as usize, sj as usize]]
    })
}

#[test]
fn hausdorff_property_of_distance_outer_sets() {
    // Predictions are the truth shifted by at most one voxel per axis on 95%
    // of images ("good"), and by 4-6 voxels on the others. k = the largest
    // reach of the truth beyond a good prediction (computed by brute force).
    let sp = [1.0, 1.5];
    let spacing = Spacing::new(sp.to_vec()).unwrap();
    let data = Synthetic::new([24, 28]).seed(21);
    let alpha = 0.1;
    let n = 59;
    let mut rng = Pcg64Mcg::seed_from_u64(5);
    let mut images = Vec::new();
    for i in 0..n + 40 {
        let (_, truth) = data.pair(i);
        use rand::Rng;
        let good = rng.random_bool(0.95);
        let r: i64 = if good { 1 } else { 6 };
        let (mut di, dj) = (rng.random_range(-r..=r), rng.random_range(-r..=r));
        if !good && di.abs() < 4 {
            di = if di < 0 { -4 } else { 4 };
        }
        let pred = shifted(&truth, di as isize, dj as isize);
        images.push((truth, pred, good));
    }
    let k = images.iter().filter(|x| x.2).map(|(t, p, _)| reach(t, p, &sp)).fold(f64::NEG_INFINITY, f64::max);
    assert!(k.is_finite() && k < 2.0, "k = {k}");
    let f_o = SignedDistance::new(Metric::Euclidean);
    let calibrator = Calibrator::new(SignedDistance::default(), f_o).with_spacing(spacing.clone());
    let scores = |p: &Array2<bool>| p.mapv(|b| if b { 1.0 } else { -1.0 });
    let mut cal = Calibration::new();
    let mut within = 0;
    for (truth, pred, _) in &images[..n] {
        calibrator.observe(&mut cal, &scores(pred), truth).unwrap();
        within += usize::from(reach(truth, pred, &sp) <= k);
    }
    // Hypothesis: more than a (1 - alpha) share within k, counted as the rank.
    assert!(within >= rank(alpha, n), "{within} of {n} within k");
    let sets = calibrator.fit(&cal, Mode::marginal(Alpha::new(alpha).unwrap())).unwrap();
    let lambda = sets.thresholds().outer.value();
    eprintln!("k = {k}, {within} of {n} within k, lambda_O = {lambda}");
    assert!(lambda <= k + 1e-9, "lambda_O = {lambda} > k = {k}");
    // Conclusion: every outer set lies within k of its prediction.
    for (_, pred, _) in &images[n..] {
        let outer = sets.predict(&scores(pred)).unwrap().outer;
        for (ix, &o) in outer.indexed_iter() {
            if o && !pred[ix] {
                let d = brute_boundary_distance(pred, ix, &sp);
                assert!(d <= k + 1e-9, "outer voxel {ix:?} at {d} > k = {k}");
            }
        }
    }
    // The outer set is the prediction grown by exactly lambda: voxels within
    // lambda of the boundary are in it (a check that the set is not trivially small).
    let (_, pred, _) = &images[n];
    let d = f_o.of_mask::<f64, _, _>(pred, &spacing).unwrap();
    let outer = sets.predict(&scores(pred)).unwrap().outer;
    for (ix, &o) in outer.indexed_iter() {
        assert_eq!(o, -d[ix] <= lambda, "voxel {ix:?}");
    }
    let _ = DistanceConvention::Midpoint;
}
