//! The training-conditional (alpha, delta) guarantee (METHOD.md §3.1),
//! tested statistically: with probability at least `1 - delta` over the
//! calibration set, the coverage of future images, conditional on that
//! calibration set, is at least `1 - alpha`.
//!
//! With i.i.d. Uniform(0, 1) statistics the conditional coverage of a
//! threshold `lambda` is exactly `F(lambda) = lambda`, so each replication's
//! event "coverage >= 1 - alpha" is known without test images. Over `R`
//! seeded replications the share of such calibration sets must be at least
//! `1 - delta` up to `4 sqrt(delta (1 - delta) / R)`, and close to the exact
//! `P(Binomial(n, 1 - alpha) <= k - 1)` computed here independently; the
//! marginal rank misses the mark, which shows the test can fail. A last test
//! runs the same check through images, predicted sets and many test images.

use confseg::calibrate::ImageStatistics;
use confseg::quantile::{Alpha, Delta, Rank};
use confseg::synthetic::Synthetic;
use confseg::{Calibration, Calibrator, Identity, Mode};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// `P(Binomial(n, p) <= m)` by direct summation of the probabilities
/// (products of ratios, rescaled), an independent computation.
fn binomial_cdf(n: usize, p: f64, m: usize) -> f64 {
    let mut probs = vec![0.0f64; n + 1];
    // start at the mode to avoid underflow, walk both ways
    let mode = ((n as f64 + 1.0) * p).floor().min(n as f64) as usize;
    probs[mode] = 1.0;
    for j in mode + 1..=n {
        probs[j] = probs[j - 1] * ((n - j + 1) as f64 / j as f64) * (p / (1.0 - p));
    }
    for j in (0..mode).rev() {
        probs[j] = probs[j + 1] * ((j + 1) as f64 / (n - j) as f64) * ((1.0 - p) / p);
    }
    let total: f64 = probs.iter().sum();
    probs[..=m].iter().sum::<f64>() / total
}

/// Share of `reps` calibration sets of `n` uniform statistics whose
/// threshold (for `mode`) covers at least `1 - alpha`.
fn share(mode: Mode, n: usize, reps: usize, seed: u64) -> f64 {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let target = 1.0 - mode.inner_alpha().get();
    let mut good = 0;
    for _ in 0..reps {
        let cal: Calibration =
            (0..n).map(|_| ImageStatistics { tau: rng.random::<f64>(), gamma: -1.0 }).collect();
        let t = cal.thresholds(&mode).unwrap();
        good += usize::from(t.inner.value() >= target);
    }
    good as f64 / reps as f64
}

#[test]
fn the_share_of_good_calibration_sets_is_at_least_one_minus_delta() {
    let reps = 4000;
    for (n, alpha, delta, seed) in [(100, 0.1, 0.1, 1u64), (200, 0.05, 0.05, 2), (60, 0.2, 0.2, 3)] {
        let (a, d) = (Alpha::new(alpha).unwrap(), Delta::new(delta).unwrap());
        let k = a.rank_conditional(n, d);
        // the rank is the smallest with the exact binomial probability >= 1 - delta
        let exact = binomial_cdf(n, 1.0 - alpha, k - 1);
        assert!(exact >= 1.0 - delta && binomial_cdf(n, 1.0 - alpha, k - 2) < 1.0 - delta, "n={n}: k={k}");
        let tol = 4.0 * (delta * (1.0 - delta) / reps as f64).sqrt();
        let got = share(Mode::marginal(a).with_rank(Rank::Conditional(d)), n, reps, seed);
        assert!(
            got >= 1.0 - delta - tol,
            "n={n} alpha={alpha} delta={delta}: share {got:.4} < {:.4}",
            1.0 - delta - tol
        );
        assert!(
            (got - exact).abs() <= 4.0 * (exact * (1.0 - exact) / reps as f64).sqrt() + 1e-9,
            "share {got:.4} vs exact {exact:.4}"
        );
        // the marginal rank gives far fewer good calibration sets: the test can fail
        let marginal = share(Mode::marginal(a), n, reps, seed + 10);
        assert!(marginal < 1.0 - delta - tol, "marginal share {marginal:.4}");
    }
}

#[test]
fn minimum_sizes_and_ranks() {
    let a = Alpha::new(0.1).unwrap();
    for delta in [0.01, 0.05, 0.1, 0.5] {
        let d = Delta::new(delta).unwrap();
        let m = Rank::Conditional(d).min_calibration_size(a);
        assert!(0.9f64.powi(m as i32) <= delta && 0.9f64.powi(m as i32 - 1) > delta, "delta {delta}: {m}");
        assert!(a.rank_conditional(m, d) <= m && a.rank_conditional(m - 1, d) > m - 1);
        // the conditional rank is never below the marginal one for delta <= 0.5
        for n in [m, 2 * m, 10 * m] {
            assert!(a.rank_conditional(n, d) >= a.rank(n) || delta > 0.45, "n={n}");
        }
    }
}

#[test]
fn through_images_the_guarantee_holds_per_calibration_set() {
    // Each replication: 99 calibration images, then the conditional coverage
    // of its sets estimated on 400 fresh test images; count replications
    // whose estimate is at least 1 - alpha (up to the estimate's own error).
    let (n, m, reps, alpha, delta) = (99, 400, 150, 0.2, 0.2);
    let data = Synthetic::new([10, 10]).seed(9);
    let c = Calibrator::new(Identity, Identity);
    let mode = Mode::max(Alpha::new(alpha).unwrap()).with_rank(Rank::Conditional(Delta::new(delta).unwrap()));
    let mut good = 0;
    for r in 0..reps {
        let base = r * (n + m);
        let cal = c.calibrate_stream(data.pairs(base..base + n).map(Ok)).unwrap();
        let sets = c.fit(&cal, mode).unwrap();
        let covered = data
            .pairs(base + n..base + n + m)
            .filter(|(s, y)| sets.predict(s).unwrap().coverage(y).unwrap().joint())
            .count();
        // one-sided allowance for the test-set estimate of the conditional coverage
        let slack = 2.0 * (alpha * (1.0 - alpha) / m as f64).sqrt();
        good += usize::from(covered as f64 / m as f64 >= 1.0 - alpha - slack);
    }
    let share = good as f64 / reps as f64;
    let tol = 4.0 * (delta * (1.0 - delta) / reps as f64).sqrt();
    assert!(share >= 1.0 - delta - tol, "share {share:.3}");
}
