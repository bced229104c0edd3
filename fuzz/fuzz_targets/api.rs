//! The public calibrate / predict / validate API on arbitrary small
//! stacks: shapes of 1 to 4 axes (zero-length and length-1 axes
//! included), values with NaN, infinities, subnormals and extremes, masks
//! of any `u8` values, spacings, transforms, levels and modes, in `f64`
//! and `f32`. No panic, one-line errors, and the sets agree with the
//! statistics they were calibrated on.
#![no_main]

use arbitrary::Arbitrary;
use confseg::evaluate::{Geometry, Method, Pool, Splits, Validation};
use confseg::transform::Footprint;
use confseg::quantile::Rank;
use confseg::{Alpha, Calibration, Calibrator, ConfidenceSets, Image, Levels, Mode, ScoreTransform, Spacing};
use confseg::calibrate::region_statistics;
use confseg::float::Float;
use confseg::levels::ModeKind;
use confseg_fuzz::{image, ok, round_trip, spacing, value, SmallShape, TRANSFORMS};
use libfuzzer_sys::fuzz_target;
use ndarray::{ArrayD, Axis, IxDyn};

#[derive(Debug, Arbitrary)]
struct Input {
    /// Shape of the calibration images.
    shape: SmallShape,
    /// Shape of one more image to predict.
    other: SmallShape,
    /// Number of images: `1 + n % 6`.
    n: u8,
    /// Compute in `f32`.
    single: bool,
    /// Default spacing selectors.
    spacing: [u8; 5],
    /// Each image's own spacing selectors (first 0: plain arrays).
    own: [u8; 5],
    /// Transforms, as indices into `TRANSFORMS`.
    transforms: [u8; 2],
    /// Mode kind, level and Bonferroni weights selectors.
    mode: [u8; 4],
    /// Predicted-mask threshold selector of the pool.
    threshold: u8,
    /// Validation: calibration images, repeats, seed, methods and geometry.
    validation: [u8; 4],
    /// Raw values the selectors may pick.
    raw: [f64; 3],
    /// Mask bytes, cycled: below 250 the low bit, else the byte itself.
    masks: Vec<u8>,
    /// Score selectors, cycled.
    values: Vec<u8>,
}

const ALPHAS: [f64; 12] = [0.1, 0.2, 0.5, 0.05, 0.9, 0.01, 1e-300, 5e-324, 0.999_999, 0.3, 0.0, 1.0];

fn alpha(sel: u8, raw: &[f64]) -> f64 {
    let s = usize::from(sel);
    if s < 200 {
        ALPHAS[s % ALPHAS.len()]
    } else {
        value(sel, raw)
    }
}

fn weight(sel: u8, raw: &[f64]) -> f64 {
    const W: [f64; 6] = [1.0, 4.0, 0.25, 1e-300, 1e300, f64::MAX];
    if sel < 128 {
        W[usize::from(sel) % W.len()]
    } else {
        value(sel, raw)
    }
}

fn spacing_of(ndim: usize, sel: &[u8], raw: &[f64]) -> Option<Spacing> {
    match spacing(ndim, sel, raw) {
        None => Some(Spacing::unit()),
        Some(v) => ok(Spacing::new(v)),
    }
}

fn mode_of(input: &Input) -> Option<Mode> {
    let a = ok(Alpha::new(alpha(input.mode[1], &input.raw)))?;
    match input.mode[0] % 4 {
        0 => Some(Mode::max(a)),
        1 => Some(Mode::marginal(a)),
        2 => ok(Mode::bonferroni(a, weight(input.mode[2], &input.raw), weight(input.mode[3], &input.raw))),
        _ => {
            let b = ok(Alpha::new(alpha(input.mode[2], &input.raw)))?;
            let c = ok(Alpha::new(alpha(input.mode[3], &input.raw)))?;
            ok(Mode::bonferroni_split(a, b, c))
        }
    }
}

fn run<A: Float>(input: &Input, to_a: impl Fn(f64) -> A) {
    let shape = input.shape.shape();
    let n = 1 + usize::from(input.n % 6);
    let mut stack_shape = vec![n];
    stack_shape.extend(&shape);
    let scores: ArrayD<A> = image(&stack_shape, &input.values, &input.raw).mapv(&to_a);
    let len = scores.len();
    let masks: Vec<u8> = (0..len)
        .map(|i| match input.masks.get(i % input.masks.len().max(1)) {
            Some(&m) if m >= 250 => m,
            Some(&m) => m & 1,
            None => 0,
        })
        .collect();
    let masks = ArrayD::from_shape_vec(IxDyn(&stack_shape), masks).expect("length matches the shape");

    let pick = |k: u8| TRANSFORMS[usize::from(k) % TRANSFORMS.len()].parse::<ScoreTransform>();
    let (ti, to) = (pick(input.transforms[0]).expect("known"), pick(input.transforms[1]).expect("known"));
    let Some(default) = spacing_of(shape.len(), &input.spacing, &input.raw) else { return };
    let own = match input.own[0] {
        0 => None,
        _ => Some(spacing_of(shape.len(), &input.own, &input.raw)),
    };
    let own: Option<Spacing> = match own {
        Some(None) => return,
        Some(Some(s)) => Some(s),
        None => None,
    };
    let calibrator = Calibrator::new(ti, to).with_spacing(default);

    // calibration, image by image
    let mut cal = Calibration::new();
    let mut stats = Vec::with_capacity(n);
    for i in 0..n {
        let (s, m) = (scores.index_axis(Axis(0), i), masks.index_axis(Axis(0), i));
        ok(region_statistics(&s, &s, &m));
        let observed = match &own {
            Some(sp) => {
                Image::new(s.view(), sp.clone()).and_then(|img| calibrator.observe(&mut cal, &img, &m))
            }
            None => calibrator.observe(&mut cal, &s, &m),
        };
        stats.push(ok(observed).and_then(|()| cal.get(cal.len() - 1)));
    }
    if own.is_none() {
        if let Some(stacked) = ok(calibrator.calibrate_stack(&scores, &masks)) {
            assert!(stats.iter().all(Option::is_some), "the stack calibrated, not every image");
            assert_eq!(stacked.tau(), cal.tau());
            assert_eq!(stacked.gamma(), cal.gamma());
        }
    }

    let Some(mode) = mode_of(input) else { return };
    if let Some(sets) = ok(calibrator.fit(&cal, mode)) {
        check_sets(&sets, &cal, &scores, &masks, &stats, own.as_ref(), input);
    }
    validate(&calibrator, &scores, &masks, mode, input);
}

#[allow(clippy::too_many_arguments)]
fn check_sets<A: Float>(
    sets: &ConfidenceSets,
    cal: &Calibration,
    scores: &ArrayD<A>,
    masks: &ArrayD<u8>,
    stats: &[Option<confseg::calibrate::ImageStatistics>],
    own: Option<&Spacing>,
    input: &Input,
) {
    let _ = sets.warnings(Some(cal));
    let (li, lo) = (sets.thresholds().inner.value(), sets.thresholds().outer.value());
    assert!(!li.is_nan() && !lo.is_nan());
    for (i, st) in stats.iter().enumerate() {
        let (s, m) = (scores.index_axis(Axis(0), i), masks.index_axis(Axis(0), i));
        let p = match own {
            Some(sp) => ok(Image::new(s.view(), sp.clone()).and_then(|img| sets.predict(&img))),
            None => ok(sets.predict(&s)),
        };
        let (Some(p), Some(st)) = (p, st) else { continue };
        assert_eq!(p.inner.shape(), s.shape());
        // With the max combination: I ⊆ Y iff tau <= lambda_I, Y ⊆ O iff gamma <= lambda_O.
        let c = p.coverage(&m).expect("a mask that calibrated is a mask");
        assert_eq!(c.inner, st.tau <= li, "image {i}: inner coverage vs tau {} and lambda_I {li}", st.tau);
        assert_eq!(
            c.outer,
            st.gamma <= lo,
            "image {i}: outer coverage vs gamma {} and lambda_O {lo}",
            st.gamma
        );
    }
    if let Some(p) = ok(sets.predict_stack(scores)) {
        assert_eq!(p.inner.shape(), scores.shape());
    }
    let other = image(&input.other.shape(), &input.values, &input.raw);
    ok(sets.predict(&other));
    round_trip(sets);
}

fn validate<A: Float>(
    calibrator: &Calibrator<ScoreTransform, ScoreTransform>,
    scores: &ArrayD<A>,
    masks: &ArrayD<u8>,
    mode: Mode,
    input: &Input,
) {
    let threshold = value(input.threshold, &input.raw);
    let Some(pool) = ok(Pool::new(calibrator, scores, masks, threshold)) else { return };
    assert_eq!(pool.len(), scores.len_of(Axis(0)));
    let [cal, repeats, seed, pick] = input.validation;
    let Some(splits) =
        ok(Splits::new(1 + usize::from(cal) % pool.len(), 1 + usize::from(repeats % 3), u64::from(seed)))
    else {
        return;
    };
    let spec = match mode.kind() {
        ModeKind::Bonferroni => {
            Levels::bonferroni(weight(input.mode[2], &input.raw), weight(input.mode[3], &input.raw))
        }
        kind => Levels::new(kind),
    };
    let all = [
        Method::Conformal(spec),
        Method::RiskControl,
        Method::PixelwiseBonferroni(spec),
        Method::Morphological(Footprint::Full, Rank::Marginal),
        Method::Morphological(Footprint::Face, Rank::Marginal),
    ];
    let methods: Vec<Method> =
        all.iter().enumerate().filter(|(k, _)| pick >> k & 1 == 1).map(|(_, m)| *m).collect();
    let geometry = match pick >> 5 {
        0..=2 => Geometry::Off,
        3..=5 => Geometry::FirstSplits(1),
        _ => Geometry::AllSplits,
    };
    let alphas = vec![mode.joint_alpha().unwrap_or(mode.inner_alpha())];
    let validation = Validation::new(alphas, splits).with_geometry(geometry);
    if let Some(reports) = ok(validation.run(&pool, &methods)) {
        for r in &reports {
            for c in [r.inner_coverage, r.outer_coverage, r.joint_coverage, r.too_few_images] {
                assert!((0.0..=1.0).contains(&c), "{}: a share of {c}", r.method);
            }
        }
    }
}

fuzz_target!(|input: Input| {
    if input.single {
        #[allow(clippy::cast_possible_truncation)]
        run::<f32>(&input, |x| x as f32);
    } else {
        run::<f64>(&input, |x| x);
    }
});
