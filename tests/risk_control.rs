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

use confseg::calibrate::RiskCalibration;
use confseg::risk::RiskControl;
use confseg::synthetic::Synthetic;
use confseg::{Alpha, Calibrator, ConfidenceSets, Identity, ScoreTransform, Sigmoid, Spacing, Transform};
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
    let request = confseg::Levels::new(confseg::levels::ModeKind::RiskControl).with_alpha(alpha.get());
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

/// Risk control with confidence: over repeated calibrations the share of
/// calibration sets whose threshold has a true risk above `alpha` is at
/// most `delta` (the guarantee), within 3 binomial standard errors of the
/// share; and the same check fails for the thresholds that ignore `delta`
/// (conformal risk control, or the plug-in threshold), so it is tight
/// enough to catch a missing confidence correction.
///
/// Recall: image `i` has an offset `u_i ~ U(0, 1)` and `m` object voxels
/// scoring `(u_i + v_ij) / 2`, `v_ij ~ U(0, 1)`; the missed share of
/// `{f >= t}` has expectation `P(u + v < 2t)`, the triangular CDF.
///
/// Precision: image `i` has an offset `u_i` uniform on `{1/4, 1/2, 3/4, 1}`,
/// `m` object voxels scoring `(u_i + V) / c` and `m` background voxels
/// scoring `W / c`, `V, W ~ U(0, 1)`, `c = 9/4`; given `u`, the counts in
/// `{f > l}` are independent binomials, so the expected false share (an
/// empty set counting 0, or 1 as MAPIE counts it) is a finite sum. A
/// calibration set fails when a threshold is certified (`l < +inf`) and its
/// risk is above `alpha`: certifying none (abstaining) is no error.
mod with_confidence {
    use super::*;
    use confseg::quantile::Delta;
    use confseg::risk::RiskControl;
    use confseg::risk::{Bound, Risk, Search};

    const M: usize = 8;

    /// A way of fitting a threshold, and whether its risk counts an empty
    /// inner set as 1 (MAPIE's convention).
    type Fit<'a> = (&'a dyn Fn(&RiskCalibration) -> f64, bool);
    /// The scale of the precision model's scores.
    const C: f64 = 2.25;
    const OFFSETS: [f64; 4] = [0.25, 0.5, 0.75, 1.0];

    /// `P(Binomial(m, p) = k)` for `k = 0..=m`.
    fn binomial(m: usize, p: f64) -> Vec<f64> {
        let mut c = 1.0;
        (0..=m)
            .map(|k| {
                let v = c * p.powi(k as i32) * (1.0 - p).powi((m - k) as i32);
                c = c * (m - k) as f64 / (k + 1) as f64;
                v
            })
            .collect()
    }

    /// The expected false share of `{f > l}` in the precision model (an
    /// empty set counting 0, or with `mapie` 1: every image has an object).
    fn precision_risk(l: f64, mapie: bool) -> f64 {
        let p0 = (1.0 - C * l).clamp(0.0, 1.0);
        let fp = binomial(M, p0);
        let mut r = 0.0;
        for u in OFFSETS {
            let tp = binomial(M, (1.0 - (C * l - u)).clamp(0.0, 1.0));
            for (a, pa) in tp.iter().enumerate() {
                for (b, pb) in fp.iter().enumerate() {
                    if a + b > 0 {
                        r += 0.25 * pa * pb * b as f64 / (a + b) as f64;
                    } else if mapie {
                        r += 0.25 * pa * pb;
                    }
                }
            }
        }
        r
    }

    fn recall_state(n: usize, rng: &mut Pcg64Mcg) -> RiskCalibration {
        let mut cal = RiskCalibration::new();
        for _ in 0..n {
            let u: f64 = rng.random();
            cal.push((0..M).map(|_| (u + rng.random::<f64>()) / 2.0).collect()).unwrap();
        }
        cal
    }

    fn precision_state(n: usize, rng: &mut Pcg64Mcg) -> RiskCalibration {
        let mut cal = RiskCalibration::for_risk(Risk::Precision);
        for _ in 0..n {
            let u = OFFSETS[rng.random_range(0..4usize)];
            let object = (0..M).map(|_| (u + rng.random::<f64>()) / C).collect();
            let background = (0..M).map(|_| rng.random::<f64>() / C).collect();
            cal.push_with_background(object, background).unwrap();
        }
        cal
    }

    /// The share of `reps` calibration sets whose fitted set has a true
    /// risk above alpha, and the share that certified a threshold, for
    /// each way of fitting.
    fn failures(risk: Risk, n: usize, reps: usize, seed: u64, fits: &[Fit<'_>]) -> Vec<(f64, f64)> {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let alpha = 0.1;
        let mut out = vec![(0usize, 0usize); fits.len()];
        for _ in 0..reps {
            let cal = match risk {
                Risk::Recall => recall_state(n, &mut rng),
                Risk::Precision => precision_state(n, &mut rng),
            };
            for (k, (fit, mapie)) in fits.iter().enumerate() {
                let t = fit(&cal);
                let (true_risk, certified) = match risk {
                    Risk::Recall => (triangular_cdf(2.0 * t), t > f64::NEG_INFINITY),
                    Risk::Precision => (precision_risk(t, *mapie), t < f64::INFINITY),
                };
                out[k].0 += usize::from(certified && true_risk > alpha);
                out[k].1 += usize::from(certified);
            }
        }
        out.into_iter().map(|(f, c)| (f as f64 / reps as f64, c as f64 / reps as f64)).collect()
    }

    /// The threshold of `level` on its side: `t` of `{f_O >= t}`, `l` of `{f_I > l}`.
    fn fitted(cal: &RiskCalibration, level: RiskControl) -> f64 {
        let t = cal.thresholds(&level).unwrap();
        match level.risk() {
            Risk::Recall => -t.outer.value(),
            Risk::Precision => t.inner.value(),
        }
    }

    /// The tolerance of a failure share over `reps` sets whose true
    /// failure probability is (at most) `p`.
    fn tolerance(p: f64, reps: usize) -> f64 {
        3.0 * (p * (1.0 - p) / reps as f64).sqrt()
    }

    #[test]
    fn recall_rcps_holds_with_probability_1_minus_delta() {
        let (alpha, delta) = (Alpha::new(0.1).unwrap(), Delta::new(0.1).unwrap());
        let (n, reps) = (150, 1500);
        let grid = Search::Grid("0:0.99:0.01".parse().unwrap());
        let levels: Vec<RiskControl> = [Bound::Hoeffding, Bound::Bernstein, Bound::Wsr]
            .into_iter()
            .flat_map(|b| {
                let r = RiskControl::with_confidence(Risk::Recall, alpha, delta, b).unwrap();
                [r, r.with_search(grid).unwrap()]
            })
            .collect();
        // the last one, conformal risk control, ignores delta
        let all: Vec<RiskControl> = levels.iter().copied().chain([RiskControl::new(alpha)]).collect();
        let fits: Vec<_> = all.iter().map(|&l| move |c: &RiskCalibration| fitted(c, l)).collect();
        let refs: Vec<Fit<'_>> =
            fits.iter().map(|f| (f as &dyn Fn(&RiskCalibration) -> f64, false)).collect();
        let share = failures(Risk::Recall, n, reps, 21, &refs);
        let tol = tolerance(delta.get(), reps);
        for (level, &(s, certified)) in levels.iter().zip(&share) {
            // MAPIE's WSR on a grid promises 1 - delta (1 + ln(1/delta)) only; it is held to delta here
            assert!(s <= delta.get() + tol, "{level}: {s} of the calibration sets fail (delta {delta})");
            assert!(certified > 0.9, "{level}: certified {certified}");
        }
        // conformal risk control bounds the risk on average only: it fails the check
        let crc_share = share[levels.len()].0;
        assert!(crc_share > delta.get() + tol, "conformal risk control fails only {crc_share}");
    }

    #[test]
    fn precision_ltt_holds_with_probability_1_minus_delta() {
        let (alpha, delta) = (Alpha::new(0.1).unwrap(), Delta::new(0.1).unwrap());
        // Holm over the 100 grid values needs more images than the exact search
        let (n, reps) = (300, 1500);
        let exact = RiskControl::precision(alpha, delta);
        let grid = exact.with_search(Search::Grid("0:0.99:0.01".parse().unwrap())).unwrap();
        // the plug-in threshold: fixed sequence on the empirical risk itself
        let plug_in = |c: &RiskCalibration| {
            let mut all: Vec<f64> =
                c.object_scores().iter().chain(c.background_scores()).flatten().copied().collect();
            all.sort_by(|a, b| b.total_cmp(a));
            all.dedup();
            let risk = |l: f64| {
                let losses = c.object_scores().iter().zip(c.background_scores()).map(|(o, b)| {
                    let tp = o.iter().filter(|&&x| x > l).count();
                    let fp = b.iter().filter(|&&x| x > l).count();
                    if tp + fp == 0 {
                        0.0
                    } else {
                        fp as f64 / (tp + fp) as f64
                    }
                });
                losses.sum::<f64>() / c.len() as f64
            };
            let mut best = f64::INFINITY;
            for l in all {
                if risk(l) > alpha.get() {
                    break;
                }
                best = l;
            }
            best
        };
        let share = failures(
            Risk::Precision,
            n,
            reps,
            22,
            &[(&|c| fitted(c, exact), false), (&|c| fitted(c, grid), true), (&plug_in, false)],
        );
        let tol = tolerance(delta.get(), reps);
        for (name, (s, certified)) in [("exact", share[0]), ("grid", share[1])] {
            assert!(s <= delta.get() + tol, "{name} LTT: {s} fail");
            assert!(certified > 0.9, "{name} LTT: certified {certified}");
        }
        assert!(share[2].0 > delta.get() + tol, "the plug-in threshold fails only {}", share[2].0);
        // and the model is not trivial: the true risk crosses alpha inside the scores' range
        assert!(precision_risk(0.0, false) > 0.3 && precision_risk(0.45, false) < 0.1);
    }
}

/// The grid search reproduces MAPIE 1.6's `SemanticSegmentationController`
/// on data both can generate bit for bit (an integer LCG; probabilities
/// `k / 10^6`). The thresholds below were printed by MAPIE 1.6.0 (NumPy
/// 2.4, SciPy 1.17) running
///
/// ```python
/// import numpy as np
/// from mapie.risk_control import SemanticSegmentationController as C
/// def data(n=80, h=6, w=7):
///     x = 12345
///     probs = np.empty((n, h, w)); masks = np.empty((n, h, w), bool)
///     for i in range(n):
///         for j in range(h * w):
///             x = (1664525 * x + 1013904223) % 2**32
///             y = (x >> 16) % 5 < 2 or j == 0
///             x = (1664525 * x + 1013904223) % 2**32
///             k = (x >> 8) % 1000
///             probs[i].flat[j] = (300000 + 700 * k) / 1e6 if y else (700 * k) / 1e6
///             masks[i].flat[j] = y
///     return probs, masks
/// probs, masks = data()
/// def ctl(**kw):
///     c = C(predict_function=lambda x: x, **kw); c.calibrate(probs[:, None], masks)
///     return float(c.best_predict_param[0])
/// print(ctl(risk="recall", method="crc", target_level=0.9))
/// for b in ("hoeffding", "bernstein", "wsr"):
///     print(b, ctl(risk="recall", method="rcps", target_level=0.9, confidence_level=0.9, rcps_bound=b))
/// for t in (0.8, 0.75, 0.7):
///     print(t, ctl(risk="precision", target_level=t, confidence_level=0.9))
/// ```
///
/// MAPIE's Hoeffding answer, 0.0, is the grid's first value returned
/// uncertified (`sqrt(ln 10 / 160) > 0.1`): confseg certifies nothing and
/// returns the whole image instead (METHOD.md §4.5).
#[test]
fn grid_search_reproduces_mapie_1_6() {
    use confseg::quantile::Delta;
    use confseg::risk::{Bound, Risk, Search};
    let (n, voxels) = (80, 42);
    let mut x: u64 = 12345;
    let mut next = || {
        x = (1664525 * x + 1013904223) % (1 << 32);
        x
    };
    let mut recall = RiskCalibration::new();
    let mut precision = RiskCalibration::for_risk(Risk::Precision);
    for _ in 0..n {
        let (mut object, mut background) = (Vec::new(), Vec::new());
        for j in 0..voxels {
            let y = (next() >> 16) % 5 < 2 || j == 0;
            let k = ((next() >> 8) % 1000) as f64;
            if y {
                object.push((300000.0 + 700.0 * k) / 1e6);
            } else {
                background.push((700.0 * k) / 1e6);
            }
        }
        recall.push(object.clone()).unwrap();
        precision.push_with_background(object, background).unwrap();
    }
    let grid = Search::Grid("0:0.99:0.01".parse().unwrap());
    // MAPIE's levels: 1 - target_level, 1 - confidence_level
    let (alpha, delta) = (Alpha::new(1.0 - 0.9).unwrap(), Delta::new(1.0 - 0.9).unwrap());
    // recall: the outer set {p > l} = {p >= next_up(l)}
    let recall_l = |level: RiskControl| {
        let t = -recall.thresholds(&level.with_search(grid).unwrap()).unwrap().outer.value();
        if t.is_finite() {
            t.next_down()
        } else {
            t
        }
    };
    assert_eq!(recall_l(RiskControl::new(alpha)), 0.35000000000000003);
    let rcps = |b| recall_l(RiskControl::with_confidence(Risk::Recall, alpha, delta, b).unwrap());
    assert_eq!(rcps(Bound::Hoeffding), f64::NEG_INFINITY); // MAPIE: 0.0, uncertified
    assert_eq!(rcps(Bound::Bernstein), 0.3);
    assert_eq!(rcps(Bound::Wsr), 0.33);
    for (target, want) in [(0.8, 0.6900000000000001), (0.75, 0.68), (0.7, 0.67)] {
        let level =
            RiskControl::precision(Alpha::new(1.0 - target).unwrap(), delta).with_search(grid).unwrap();
        assert_eq!(precision.thresholds(&level).unwrap().inner.value(), want, "target {target}");
    }
}
