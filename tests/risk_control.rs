//! Conformal risk control as a fitted method: its guarantee
//! `E[missed fraction] <= alpha` tested statistically, its threshold
//! against the definition, the fitted sets through JSON, and the CLI.
//!
//! The statistical test uses object scores whose distribution is known:
//! image `i` has an offset `u_i ~ U(0, 1)` and `m` object voxels scoring
//! `u_i + v_ij`, `v_ij ~ U(0, 1)` (voxels of one image are correlated, as in
//! real images). For a threshold `t` the expected missed fraction of a new
//! image is exactly `P(u + v < t)`, the triangular CDF, so each
//! replication's conditional risk is known without test images. Over `R`
//! replications its mean must lie in `[alpha - 2/(n+1), alpha]` (the
//! conformal risk control bounds for continuous losses bounded by 1) up to
//! 4 standard errors of the mean.

use confseg::levels::RiskControl;
use confseg::synthetic::Synthetic;
use confseg::{
    Alpha, Calibrator, ConfidenceSets, Identity, RiskCalibration, ScoreTransform, Sigmoid, Spacing, Transform,
};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// `P(U + V < t)` for independent `U, V ~ U(0, 1)`.
fn triangular_cdf(t: f64) -> f64 {
    if t <= 0.0 {
        0.0
    } else if t <= 1.0 {
        t * t / 2.0
    } else if t <= 2.0 {
        1.0 - (2.0 - t) * (2.0 - t) / 2.0
    } else {
        1.0
    }
}

/// Mean and standard error of the conditional risk over `reps` calibration
/// sets of `n` images with `m` object voxels each.
fn risk_over_replications(n: usize, m: usize, alpha: f64, reps: usize, seed: u64) -> (f64, f64) {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let alpha = Alpha::new(alpha).unwrap();
    let risks: Vec<f64> = (0..reps)
        .map(|_| {
            let mut cal = RiskCalibration::new();
            for _ in 0..n {
                let u: f64 = rng.random();
                cal.push((0..m).map(|_| u + rng.random::<f64>()).collect()).unwrap();
            }
            triangular_cdf(cal.threshold(alpha).unwrap())
        })
        .collect();
    let mean = risks.iter().sum::<f64>() / reps as f64;
    let var = risks.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (reps - 1) as f64;
    (mean, (var / reps as f64).sqrt())
}

#[test]
fn expected_missed_fraction_is_at_most_alpha_and_tight() {
    let n = 99;
    for (alpha, seed) in [(0.05, 1), (0.1, 2), (0.2, 3)] {
        let (mean, se) = risk_over_replications(n, 12, alpha, 3000, seed);
        let slack = 2.0 / (n as f64 + 1.0);
        // The tolerance is well below the width of the band, so a threshold
        // that ignores the finite-sample correction would fall outside it.
        assert!(4.0 * se < slack / 2.0, "se = {se}");
        assert!(mean <= alpha + 4.0 * se, "alpha {alpha}: mean risk {mean} > alpha (se {se})");
        assert!(
            mean >= alpha - slack - 4.0 * se,
            "alpha {alpha}: mean risk {mean} far below alpha (se {se})"
        );
    }
}

#[test]
fn the_empirical_risk_threshold_fails_the_test() {
    // Without the (n+1) correction (largest t with mean FNR(t) <= alpha) the
    // guarantee fails at small n: the same check must catch it.
    let (n, m, alpha, reps) = (9, 12, 0.1, 4000);
    let mut rng = Pcg64Mcg::seed_from_u64(11);
    let mut risks = Vec::new();
    let mut corrected = Vec::new();
    for _ in 0..reps {
        let mut cal = RiskCalibration::new();
        for _ in 0..n {
            let u: f64 = rng.random();
            cal.push((0..m).map(|_| u + rng.random::<f64>()).collect()).unwrap();
        }
        corrected.push(triangular_cdf(cal.threshold(Alpha::new(alpha).unwrap()).unwrap()));
        // the naive threshold: the largest object score t with empirical risk <= alpha
        let mut all: Vec<f64> = Vec::new();
        for t in (0..=400).map(|k| f64::from(k) / 200.0) {
            if cal.missed_fraction(t) <= alpha {
                all.push(t);
            }
        }
        risks.push(triangular_cdf(all.into_iter().fold(f64::NEG_INFINITY, f64::max)));
    }
    let stats = |r: &[f64]| {
        let mean = r.iter().sum::<f64>() / r.len() as f64;
        let var = r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (r.len() - 1) as f64;
        (mean, (var / r.len() as f64).sqrt())
    };
    let (naive, se) = stats(&risks);
    assert!(naive > alpha + 4.0 * se, "the naive threshold's risk {naive} should exceed alpha (se {se})");
    let (ours, se) = stats(&corrected);
    assert!(ours <= alpha + 4.0 * se, "risk control's risk {ours} (se {se})");
}

#[test]
fn fitted_sets_on_images_match_the_definition_and_round_trip() {
    let data = Synthetic::new((20, 24)).seed(3).noise(0.8).unwrap();
    let outer: ScoreTransform = "distance".parse().unwrap();
    let calibrator = Calibrator::new(ScoreTransform::Identity, outer.clone());
    let mut risk = RiskCalibration::new();
    let mut by_hand = Vec::new();
    for (s, m) in data.pairs(0..60) {
        calibrator.observe_risk(&mut risk, &s, &m).unwrap();
        // the object voxels' outer scores, computed here from the transform
        let f = outer.apply(&s, &Spacing::unit()).unwrap();
        by_hand.push(f.iter().zip(m.iter()).filter(|(_, &y)| y).map(|(&x, _)| x).collect::<Vec<f64>>());
    }
    let alpha = Alpha::new(0.1).unwrap();
    let sets = calibrator.fit_risk_control(&risk, RiskControl::new(alpha)).unwrap();
    let t = -sets.thresholds().outer.value();
    // The definition: mean missed fraction of {f_O >= t} within the bound,
    // and no larger object score qualifies.
    let n = by_hand.len() as f64;
    let missed = |t: f64| {
        by_hand
            .iter()
            .filter(|o| !o.is_empty())
            .map(|o| o.iter().filter(|&&x| x < t).count() as f64 / o.len() as f64)
            .sum::<f64>()
            / n
    };
    let bound = (alpha.get() * (n + 1.0) - 1.0) / n;
    assert!(missed(t) <= bound);
    let next = by_hand.iter().flatten().copied().filter(|&x| x > t).fold(f64::INFINITY, f64::min);
    assert!(missed(next) > bound, "t = {t} is not the largest valid score (next {next})");
    // Predicted: no inner set, outer {f_O >= t}.
    let (s, _) = data.pair(100);
    let p = sets.predict(&s).unwrap();
    assert!(p.inner.iter().all(|&b| !b));
    let f = outer.apply(&s, &Spacing::unit()).unwrap();
    assert_eq!(p.outer, f.mapv(|x| x >= t));
    assert!(sets.guarantee().to_string().contains("risk control"), "{}", sets.guarantee());
    // JSON round trip, and a file that contradicts itself is refused.
    let json = serde_json::to_string(&sets).unwrap();
    assert!(json.contains("\"mode\":\"risk-control\""), "{json}");
    let back: ConfidenceSets = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sets);
    let bad = json.replacen("\"rank\":null", "\"rank\":3", 1);
    assert!(serde_json::from_str::<ConfidenceSets>(&bad).is_err());
    // The calibration state round-trips too (the object scores as computed here).
    assert_eq!(risk.object_scores().len(), by_hand.len());
    for (got, want) in risk.object_scores().iter().zip(&by_hand) {
        let mut want = want.clone();
        want.sort_by(f64::total_cmp);
        assert_eq!(got, &want);
    }
    let state = serde_json::to_string(&risk).unwrap();
    let back: RiskCalibration = serde_json::from_str(&state).unwrap();
    assert_eq!(back, risk);
    assert_eq!(calibrator.fit_risk_control(&back, RiskControl::new(alpha)).unwrap(), sets);
    let mut infinite = RiskCalibration::new();
    infinite.push(vec![f64::INFINITY, 1.0, f64::NEG_INFINITY]).unwrap();
    let text = serde_json::to_string(&infinite).unwrap();
    assert!(text.contains(r#"["-inf",1.0,"inf"]"#), "{text}");
    assert_eq!(serde_json::from_str::<RiskCalibration>(&text).unwrap(), infinite);
    let e = serde_json::from_str::<RiskCalibration>(r#"{"objects":[[1.0],[2.0,"nan"]]}"#).unwrap_err();
    assert!(e.to_string().contains("\"nan\""), "{e}");
    // Conformal statistics cannot be fitted as risk control: a risk-control
    // request gives no conformal levels (`Calibration::thresholds` takes those only).
    let request = confseg::Levels::new(confseg::ModeKind::RiskControl).with_alpha(alpha.get());
    assert!(request.guarantee().unwrap().mode().is_none());
}

#[test]
fn too_few_images_give_everything_and_a_warning() {
    let mut risk = RiskCalibration::new();
    for _ in 0..5 {
        risk.push(vec![1.0, 2.0]).unwrap();
    }
    let sets = Calibrator::new(Identity, Identity)
        .fit_risk_control(&risk, RiskControl::new(Alpha::new(0.1).unwrap()))
        .unwrap();
    assert_eq!(sets.thresholds().outer.value(), f64::INFINITY);
    let w = sets.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].to_string().contains('9'), "{}", w[0]); // 9 images needed at alpha = 0.1
}

#[test]
fn risk_and_conformal_states_admit_images_by_the_same_rules() {
    let data = Synthetic::new((12, 10)).seed(5);
    let (s, m) = data.pair(0);
    // a default spacing of the wrong length is refused by both, even unused
    let wrong = Calibrator::new(Identity, Identity).with_spacing(Spacing::new(vec![1.0; 3]).unwrap());
    let e1 = wrong.observe(&mut confseg::Calibration::new(), &s, &m).unwrap_err();
    let e2 = wrong.observe_risk(&mut RiskCalibration::new(), &s, &m).unwrap_err();
    assert_eq!(e1.to_string(), e2.to_string());
    // other transforms, and other dimensionality, are refused after the first image
    let mut risk = RiskCalibration::new();
    Calibrator::new(Identity, Identity).observe_risk(&mut risk, &s, &m).unwrap();
    assert!(Calibrator::new(Identity, Sigmoid).observe_risk(&mut risk, &s, &m).is_err());
    let (s3, m3) = Synthetic::new((4, 5, 6)).seed(5).pair(0);
    let e = Calibrator::new(Identity, Identity).observe_risk(&mut risk, &s3, &m3).unwrap_err();
    assert!(matches!(e, confseg::Error::DimensionMismatch { .. }), "{e}");
}
