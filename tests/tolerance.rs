//! Tolerance events (METHOD.md §4.4) keep their guarantee: over seeded
//! replications on synthetic exchangeable data, the share of test images
//! whose event holds — checked on the predicted sets, voxel by voxel, with
//! the rule for shares written here in integers — is `k/(n+1)` up to four
//! standard errors, as in `tests/coverage.rs` (whose reasoning the
//! tolerance is taken from). With n = 19 and alpha = 0.1 (`k = 18`), an
//! off-by-one rank moves the coverage by 0.05, more than three times the
//! tolerance.

use confseg::synthetic::Synthetic;
use confseg::tolerance::{Tolerance, Tolerances};
use confseg::{Alpha, Calibration, Calibrator, Identity, Image, Mode, Spacing};
use ndarray::{Array2, Zip};

const N: usize = 19;
const M: usize = 5;
const REPS: usize = 1500;

fn alpha() -> Alpha {
    Alpha::new(0.1).unwrap()
}

/// `k/(n+1)` and four standard errors of the mean coverage (Beta variance
/// of the conditional coverage plus the binomial variance of `M` test images).
fn expected_and_tolerance() -> (f64, f64) {
    let k = 18.0; // ceil(0.9 * 20)
    let (a, b) = (k, N as f64 + 1.0 - k);
    let beta_var = a * b / ((a + b).powi(2) * (a + b + 1.0));
    let p = 0.9;
    (k / (N as f64 + 1.0), 4.0 * ((beta_var + p * (1.0 - p) / M as f64) / REPS as f64).sqrt())
}

/// `⌊pct/100 · n⌋` in integers: a share given in hundredths.
fn share_of(pct: u64, n: u64) -> u64 {
    pct * n / 100
}

/// A tolerance event checked on the sets themselves.
#[derive(Clone, Copy)]
enum Event {
    Contained,
    Count(u64),
    /// Percent of the object (outer) or of the inner set (inner).
    Percent(u64),
}

impl Event {
    fn tolerance(self) -> Tolerance {
        match self {
            Event::Contained => Tolerance::NONE,
            Event::Count(m) => Tolerance::Voxels(m),
            Event::Percent(p) => format!("{p}%").parse().unwrap(),
        }
    }
}

struct Counts {
    missed: u64,
    object: u64,
    false_pos: u64,
    inner: u64,
}

fn counts(inner: &Array2<bool>, outer: &Array2<bool>, truth: &Array2<bool>) -> Counts {
    let mut c = Counts { missed: 0, object: 0, false_pos: 0, inner: 0 };
    Zip::from(inner).and(outer).and(truth).for_each(|&i, &o, &y| {
        c.missed += u64::from(y && !o);
        c.object += u64::from(y);
        c.false_pos += u64::from(i && !y);
        c.inner += u64::from(i);
    });
    c
}

fn outer_holds(e: Event, c: &Counts) -> bool {
    match e {
        Event::Contained => c.missed == 0,
        Event::Count(m) => c.missed <= m,
        Event::Percent(p) => c.missed <= share_of(p, c.object),
    }
}

fn inner_holds(e: Event, c: &Counts) -> bool {
    match e {
        Event::Contained => c.false_pos == 0,
        Event::Count(m) => c.false_pos <= m,
        // false discovery proportion: |I \ Y| <= p% of |I|
        Event::Percent(p) => c.false_pos * 100 <= p * c.inner,
    }
}

/// For the inner share: the proportion stays within at every threshold
/// at least `lambda` (the monotone envelope, the event the rank controls).
fn inner_envelope_holds(pct: u64, scores: &Array2<f64>, truth: &Array2<bool>, lambda: f64) -> bool {
    let mut levels: Vec<f64> = scores.iter().copied().filter(|&x| x >= lambda).collect();
    levels.push(lambda);
    levels.into_iter().all(|l| {
        let (mut wrong, mut n) = (0u64, 0u64);
        Zip::from(scores).and(truth).for_each(|&x, &y| {
            if x > l {
                n += 1;
                wrong += u64::from(!y);
            }
        });
        wrong * 100 <= pct * n
    })
}

struct Rates {
    inner: f64,
    outer: f64,
    joint: f64,
    envelope: f64,
}

fn coverage(inner: Event, outer: Event, mode: Mode, seed: u64) -> Rates {
    let data = Synthetic::new([16, 20]).seed(seed);
    let t = Tolerances::new(inner.tolerance(), outer.tolerance());
    let calibrator = Calibrator::new(Identity, Identity).with_tolerances(t);
    let (mut ci, mut co, mut cj, mut ce) = (0usize, 0usize, 0usize, 0usize);
    for r in 0..REPS {
        let base = r * (N + M);
        let mut cal = Calibration::new();
        for (s, y) in data.pairs(base..base + N) {
            calibrator.observe(&mut cal, &s, &y).unwrap();
        }
        let sets = calibrator.fit(&cal, mode).unwrap();
        let lambda = sets.thresholds().inner.value();
        for (s, y) in data.pairs(base + N..base + N + M) {
            let p = sets.predict(&s).unwrap();
            let c = counts(&p.inner, &p.outer, &y);
            let (i, o) = (inner_holds(inner, &c), outer_holds(outer, &c));
            ci += usize::from(i);
            co += usize::from(o);
            if let Event::Percent(pct) = inner {
                let e = inner_envelope_holds(pct, &s, &y, lambda);
                ce += usize::from(e);
                cj += usize::from(e && o);
            } else {
                cj += usize::from(i && o);
            }
        }
    }
    let total = (REPS * M) as f64;
    Rates {
        inner: ci as f64 / total,
        outer: co as f64 / total,
        joint: cj as f64 / total,
        envelope: ce as f64 / total,
    }
}

fn assert_near(what: &str, got: f64) {
    let (want, tol) = expected_and_tolerance();
    assert!((got - want).abs() <= tol, "{what}: coverage {got:.4}, expected {want:.4} ± {tol:.4}");
}

#[test]
fn outer_counts_and_shares_cover_at_the_nominal_rate() {
    for (seed, outer) in [(1, Event::Count(3)), (2, Event::Percent(10))] {
        let r = coverage(Event::Contained, outer, Mode::marginal(alpha()), seed);
        assert_near("outer tolerance", r.outer);
        assert_near("inner containment", r.inner);
    }
}

#[test]
fn inner_counts_and_false_discovery_proportions_cover_at_the_nominal_rate() {
    let r = coverage(Event::Count(2), Event::Contained, Mode::marginal(alpha()), 3);
    assert_near("inner count", r.inner);
    // the false discovery proportion: the envelope event exactly, the
    // proportion at the threshold at least as often
    let r = coverage(Event::Percent(10), Event::Contained, Mode::marginal(alpha()), 4);
    assert_near("inner share (envelope)", r.envelope);
    let (want, tol) = expected_and_tolerance();
    assert!(r.inner >= r.envelope && r.inner >= want - tol, "{} vs {}", r.inner, r.envelope);
}

#[test]
fn the_max_mode_covers_both_tolerance_events_jointly() {
    let r = coverage(Event::Count(2), Event::Percent(5), Mode::max(alpha()), 5);
    assert_near("joint (max) tolerance events", r.joint);
    // and the pooled statistic is the larger of the sides' statistics: each
    // side alone is covered more often
    assert!(r.inner > r.joint && r.outer > r.joint);
}

#[test]
fn tolerance_zero_fits_the_containment_thresholds_bit_for_bit() {
    let data = Synthetic::new([16, 20]).seed(9);
    let pairs: Vec<_> = data.pairs(0..60).collect();
    let plain = Calibrator::new(Identity, Identity);
    let zero =
        plain.clone().with_tolerances(Tolerances::new("0vox".parse().unwrap(), "0.0".parse().unwrap()));
    assert_eq!(zero, plain, "containment has one spelling");
    let a = plain.calibrate_stream(pairs.clone().into_iter().map(Ok)).unwrap();
    let b = zero.calibrate_stream(pairs.into_iter().map(Ok)).unwrap();
    assert_eq!(a, b);
}

#[test]
fn volumes_use_each_images_spacing() {
    // 1.5 mm³ of 0.5 × 1 mm pixels is 3 pixels; of 0.25 × 1 mm pixels, 6
    let data = Synthetic::new([16, 20]).seed(11);
    let volume = Calibrator::new(Identity, Identity)
        .with_tolerances(Tolerances::new("1.5mm3".parse().unwrap(), "1.5mm3".parse().unwrap()));
    for (spacing, count) in [([0.5, 1.0], 3), ([0.25, 1.0], 6)] {
        let counted = Calibrator::new(Identity, Identity)
            .with_tolerances(Tolerances::new(Tolerance::Voxels(count), Tolerance::Voxels(count)));
        for (s, y) in data.pairs(0..20) {
            let image = Image::new(s.view(), Spacing::new(spacing.to_vec()).unwrap()).unwrap();
            assert_eq!(volume.statistics(&image, &y).unwrap(), counted.statistics(&s, &y).unwrap());
        }
        // the default spacing serves images without their own
        let with_default = volume.clone().with_spacing(Spacing::new(spacing.to_vec()).unwrap());
        let (s, y) = data.pair(99);
        assert_eq!(with_default.statistics(&s, &y).unwrap(), counted.statistics(&s, &y).unwrap());
    }
}

#[test]
fn fitted_sets_state_the_event_and_calibrations_of_other_events_do_not_mix() {
    use confseg::ScoreTransform::Identity;
    let data = Synthetic::new([16, 20]).seed(12);
    let t = Tolerances::new("5vox".parse().unwrap(), "0.01".parse().unwrap());
    let c = Calibrator::new(Identity, Identity).with_tolerances(t);
    let cal = c.calibrate_stream(data.pairs(0..40).map(Ok)).unwrap();
    let sets = c.fit(&cal, Mode::max(alpha())).unwrap();
    assert_eq!(sets.guarantee().to_string(), "P(|I \\ Y| <= 5 voxels and |Y \\ O| <= ⌊0.01 |Y|⌋) >= 0.9");
    assert_eq!(sets.guarantee().mode().unwrap().tolerances(), &t);
    let marginal = c.fit(&cal, Mode::marginal(alpha())).unwrap();
    assert_eq!(
        format!("{:#}", marginal.guarantee()),
        "P(|inner \\ truth| <= 5 voxels) >= 0.9 and P(|truth \\ outer| <= ⌊0.01 |truth|⌋) >= 0.9"
    );
    // a calibration of containment statistics does not fit tolerance sets
    let plain = Calibrator::new(Identity, Identity);
    let e =
        c.fit(&plain.calibrate_stream(data.pairs(0..40).map(Ok)).unwrap(), Mode::max(alpha())).unwrap_err();
    assert!(e.to_string().contains("inner tolerance"), "{e}");
    let mut merged = cal.clone();
    assert!(merged.merge(&plain.calibrate_stream(data.pairs(0..2).map(Ok)).unwrap()).is_err());
    #[cfg(feature = "serde")]
    {
        let text = serde_json::to_string(&sets).unwrap();
        assert!(text.contains("\"tolerance\":\"5vox\"") && text.contains("\"tolerance\":\"0.01\""), "{text}");
        let back: confseg::ConfidenceSets = serde_json::from_str(&text).unwrap();
        assert_eq!(back.guarantee(), sets.guarantee());
        let cal_text = serde_json::to_string(&cal).unwrap();
        assert_eq!(serde_json::from_str::<Calibration>(&cal_text).unwrap(), cal);
        // containment files have no tolerance field (files of earlier versions read alike)
        let plain_sets =
            plain.fit(&plain.calibrate_stream(data.pairs(0..40).map(Ok)).unwrap(), Mode::max(alpha()));
        assert!(!serde_json::to_string(&plain_sets.unwrap()).unwrap().contains("tolerance"));
    }
}

#[test]
fn risk_control_refuses_a_tolerance() {
    let data = Synthetic::new([8, 8]).seed(1);
    let c = Calibrator::new(Identity, Identity)
        .with_tolerances(Tolerances::new(Tolerance::NONE, "0.05".parse().unwrap()));
    let mut risk = confseg::calibrate::RiskCalibration::new();
    for (s, y) in data.pairs(0..20) {
        c.observe_risk(&mut risk, &s, &y).unwrap();
    }
    let e = c.fit_risk_control(&risk, confseg::risk::RiskControl::new(alpha())).unwrap_err();
    assert!(e.to_string().contains("no tolerance"), "{e}");
}
