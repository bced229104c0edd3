//! The guarantee under test (METHOD.md §3–4): over seeded replications on
//! synthetic exchangeable data, the empirical coverage of every mode lies in
//! `[1 - alpha, 1 - alpha + 1/(n+1)]` up to a tolerance derived from the
//! standard error of the estimate. For continuous statistics the expected
//! coverage of the rank-`k` threshold is exactly `k/(n+1)` (a point of that
//! interval), and that is what the marginal and max-joint tests check.
//!
//! Each replication draws fresh calibration images (n of them) and fresh test
//! images (m), calibrates through the public API, predicts sets and checks
//! inclusion against the truth. For continuous scores the coverage of one
//! replication, conditional on the calibration data, is `F(lambda)`, which
//! is `Beta(k, n + 1 - k)`-distributed with `k = ceil((1-alpha)(n+1))`; so the
//! per-replication coverage estimate has variance
//! `Var F + E[F(1-F)]/m <= Var Beta + p(1-p)/m` with `p = 1 - alpha` (Jensen:
//! `E F >= 1 - alpha > 1/2`), and the mean of `R` replications has standard
//! error `se = sqrt((Var Beta + p(1-p)/m) / R)`. Tolerance: `4 se`. The sample sizes
//! are chosen small (n = 19, 39) so that `1/(n+1)` — the effect of using the
//! wrong order statistic — is more than twice the tolerance: an off-by-one
//! quantile fails these tests.

use confseg::levels::ModeKind;
use confseg::synthetic::Synthetic;
use confseg::{Alpha, Calibration, Calibrator, Identity, Mode, Sigmoid, Transform};

/// Variance of Beta(k, n + 1 - k): the conditional coverage of a rank-k threshold.
fn beta_var(k: usize, n: usize) -> f64 {
    let (a, b) = (k as f64, (n + 1 - k) as f64);
    a * b / ((a + b).powi(2) * (a + b + 1.0))
}

struct Estimate {
    inner: f64,
    outer: f64,
    joint: f64,
}

/// Mean coverage over `reps` replications with `n` calibration and `m` test images.
fn estimate<TI: Transform + Clone, TO: Transform + Clone>(
    calibrator: &Calibrator<TI, TO>,
    mode: Mode,
    n: usize,
    m: usize,
    reps: usize,
    seed: u64,
) -> Estimate {
    let data = Synthetic::new([16, 20]).seed(seed);
    let (mut ci, mut co, mut cj) = (0usize, 0usize, 0usize);
    for r in 0..reps {
        let base = r * (n + m);
        let mut cal = Calibration::new();
        for (s, y) in data.pairs(base..base + n) {
            calibrator.observe(&mut cal, &s, &y).unwrap();
        }
        let sets = calibrator.fit(&cal, mode).unwrap();
        for (s, y) in data.pairs(base + n..base + n + m) {
            let c = sets.predict(&s).unwrap().coverage(&y).unwrap();
            ci += usize::from(c.inner);
            co += usize::from(c.outer);
            cj += usize::from(c.joint());
        }
    }
    let total = (reps * m) as f64;
    Estimate { inner: ci as f64 / total, outer: co as f64 / total, joint: cj as f64 / total }
}

/// `k = ceil((1 - alpha)(n + 1))`, computed here independently of the crate
/// (exact integer arithmetic on alpha in hundredths).
fn rank(alpha: Alpha, n: usize) -> usize {
    let percent = (alpha.get() * 100.0).round() as usize;
    assert!((alpha.get() * 100.0 - percent as f64).abs() < 1e-9, "use alphas in hundredths");
    ((100 - percent) * (n + 1)).div_ceil(100)
}

fn tolerance(alpha: Alpha, n: usize, m: usize, reps: usize) -> f64 {
    let k = rank(alpha, n);
    let p = 1.0 - alpha.get();
    4.0 * ((beta_var(k, n) + p * (1.0 - p) / m as f64) / reps as f64).sqrt()
}

/// `lo - tol <= got <= hi + tol`, with a message that shows the numbers.
fn assert_within(what: &str, got: f64, lo: f64, hi: f64, tol: f64) {
    assert!(
        got >= lo - tol && got <= hi + tol,
        "{what}: coverage {got:.4} outside [{lo:.4}, {hi:.4}] ± {tol:.4}"
    );
}

/// Coverage of a rank-k threshold with continuous statistics: within `tol`
/// of `k/(n+1)`, hence also within the guarantee's interval.
fn assert_exact(what: &str, got: f64, alpha: Alpha, n: usize, tol: f64) {
    let expected = rank(alpha, n) as f64 / (n as f64 + 1.0);
    let (lo, hi) = (1.0 - alpha.get(), 1.0 - alpha.get() + 1.0 / (n as f64 + 1.0));
    assert!((lo..=hi).contains(&expected));
    assert!((got - expected).abs() <= tol, "{what}: coverage {got:.4}, expected {expected:.4} ± {tol:.4}");
}

const M: usize = 50;
const REPS: usize = 1000;

fn check_marginal_bounds(n: usize, alpha: f64, seed: u64) {
    let a = Alpha::new(alpha).unwrap();
    let e = estimate(&Calibrator::new(Identity, Identity), Mode::marginal(a), n, M, REPS, seed);
    let tol = tolerance(a, n, M, REPS);
    assert_exact("marginal inner", e.inner, a, n, tol);
    assert_exact("marginal outer", e.outer, a, n, tol);
}

#[test]
fn marginal_coverage_n19_alpha10() {
    check_marginal_bounds(19, 0.1, 1);
}

#[test]
fn marginal_coverage_n39_alpha20() {
    check_marginal_bounds(39, 0.2, 2);
}

#[test]
fn bonferroni_split_1_to_4_gives_joint_coverage() {
    // alpha = 0.25 split 1:4 -> alpha_I = 0.05, alpha_O = 0.2; n = 39 is enough for both.
    let n = 39;
    let mode = Mode::bonferroni(Alpha::new(0.25).unwrap(), 1.0, 4.0).unwrap();
    assert_eq!(mode.kind(), ModeKind::Bonferroni);
    let e = estimate(&Calibrator::new(Identity, Identity), mode, n, M, REPS, 3);
    let (ai, ao) = (mode.inner_alpha(), mode.outer_alpha());
    assert_exact("bonferroni inner", e.inner, ai, n, tolerance(ai, n, M, REPS));
    assert_exact("bonferroni outer", e.outer, ao, n, tolerance(ao, n, M, REPS));
    // Joint: only the lower bound (the union bound is conservative).
    let tol = tolerance(Alpha::new(0.25).unwrap(), n, M, REPS);
    assert_within("bonferroni joint", e.joint, 0.75, 1.0, tol);
}

#[test]
fn max_mode_joint_coverage_is_tight() {
    // With the max combination, I ⊆ Y ⊆ O iff max(tau, gamma) <= lambda, so the
    // joint coverage has both bounds. Sigmoid inner on a logit outer: different
    // scales, still valid.
    for (seed, n, alpha) in [(4u64, 19usize, 0.1), (5, 39, 0.2)] {
        let a = Alpha::new(alpha).unwrap();
        let tol = tolerance(a, n, M, REPS);
        let e = estimate(&Calibrator::new(Identity, Identity), Mode::max(a), n, M, REPS, seed);
        assert_exact("max joint (identity)", e.joint, a, n, tol);
        let e = estimate(&Calibrator::new(Sigmoid, Identity), Mode::max(a), n, M, REPS, seed + 100);
        assert_exact("max joint (sigmoid/identity)", e.joint, a, n, tol);
    }
}

#[test]
fn too_few_images_cover_always() {
    // n = 5 < min size 9 for alpha = 0.1: infinite thresholds, trivial sets.
    let a = Alpha::new(0.1).unwrap();
    let e = estimate(&Calibrator::new(Identity, Identity), Mode::marginal(a), 5, 20, 5, 6);
    assert_eq!((e.inner, e.outer, e.joint), (1.0, 1.0, 1.0));
}

#[test]
fn tolerance_detects_an_off_by_one_quantile() {
    // Ranks k and k ± 1 have expected coverages 1/(n+1) apart: the tolerance
    // must be below half of that, so that the neighbouring rank's band does
    // not overlap; otherwise the tests above prove little.
    for (n, alpha) in [(19, 0.1), (39, 0.2), (39, 0.05)] {
        let tol = tolerance(Alpha::new(alpha).unwrap(), n, M, REPS);
        assert!(tol < 0.5 / (n as f64 + 1.0), "n={n} alpha={alpha}: tol {tol}");
    }
}
