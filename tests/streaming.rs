//! Images with geometry, streamed: per-image spacing, dimensionality as
//! part of the fit, native precision, and streams equal to whole stacks.

use confseg::evaluate::{Geometry, Method, Pool, Splits, Validation};
use confseg::image::AsImage;
use confseg::levels::ModeKind;
use confseg::synthetic::Synthetic;
use confseg::Levels;
use confseg::{
    Alpha, Calibration, Calibrator, Error, Identity, Image, Metric, Mode, ScoreTransform, SignedDistance,
    Spacing, Transform,
};
use ndarray::{Array3, Axis};

fn spacing(i: usize) -> Spacing {
    // a different, anisotropic spacing per subject
    let s = [[0.8, 0.8, 2.5], [0.7, 0.7, 3.0], [1.0, 1.2, 1.5], [0.5, 0.9, 2.0]][i % 4];
    Spacing::new(s.to_vec()).unwrap()
}

fn distance() -> SignedDistance {
    SignedDistance::new(Metric::Euclidean)
}

#[test]
fn per_image_spacing_equals_one_single_spacing_pipeline_per_image() {
    let data = Synthetic::new([12, 10, 6]).seed(21);
    let calibrator = Calibrator::new(Identity, distance());
    let mut cal = Calibration::new();
    let mut by_hand = Calibration::new();
    for (i, (s, m)) in data.pairs(0..40).enumerate() {
        let image = Image::new(s.view(), spacing(i)).unwrap();
        calibrator.observe(&mut cal, &image, &m).unwrap();
        // each image through its own single-spacing calibrator
        let single = Calibrator::new(Identity, distance()).with_spacing(spacing(i));
        by_hand.push(single.statistics(&s, &m).unwrap());
    }
    assert_eq!(cal.tau(), by_hand.tau());
    assert_eq!(cal.gamma(), by_hand.gamma());
    assert!(cal.per_image_spacing());
    // the spacing matters: one cohort spacing gives other statistics
    let cohort = calibrator.calibrate_stream(data.pairs(0..40).map(Ok)).unwrap();
    assert_ne!(cohort.gamma(), cal.gamma());
    assert!(!cohort.per_image_spacing());

    let mode = Mode::bonferroni(Alpha::new(0.1).unwrap(), 1.0, 4.0).unwrap();
    let sets = calibrator.fit(&cal, mode).unwrap();
    assert!(sets.per_image_spacing());
    assert_eq!(sets.ndim(), Some(3));
    for (j, (s, _)) in data.pairs(100..112).enumerate() {
        let own = sets.predict(&Image::new(s.view(), spacing(j)).unwrap()).unwrap();
        let single =
            Calibrator::new(Identity, distance()).with_spacing(spacing(j)).fit(&by_hand, mode).unwrap();
        assert_eq!(single.thresholds(), sets.thresholds());
        assert_eq!(own, single.predict(&s).unwrap(), "image {j}");
        // a plain array after a per-image calibration: refused, not a silent default
        assert!(matches!(sets.predict(&s), Err(Error::SpacingRequired { .. })));
    }
    // transforms that do not depend on the spacing do not ask for it
    let c2 = Calibrator::new(Identity, ScoreTransform::Sigmoid);
    let mut cal2 = Calibration::new();
    for (i, (s, m)) in data.pairs(0..20).enumerate() {
        c2.observe(&mut cal2, &Image::new(s.view(), spacing(i)).unwrap(), &m).unwrap();
    }
    let plain = data.pair(200).0;
    assert!(c2.fit(&cal2, mode).unwrap().predict(&plain).is_ok());
}

#[cfg(feature = "serde")]
#[test]
fn provenance_says_per_image_in_json() {
    let data = Synthetic::new([8, 8]).seed(2);
    let calibrator = Calibrator::new(ScoreTransform::Identity, ScoreTransform::Distance(distance()));
    let mut cal = Calibration::new();
    for (i, (s, m)) in data.pairs(0..20).enumerate() {
        let sp = Spacing::new(vec![1.0 + i as f64 * 0.1, 1.0]).unwrap();
        calibrator.observe(&mut cal, &Image::new(s.view(), sp).unwrap(), &m).unwrap();
    }
    let sets = calibrator.fit(&cal, Mode::max(Alpha::new(0.2).unwrap())).unwrap();
    let j = serde_json::to_value(&sets).unwrap();
    assert_eq!(j["spacing"], "per-image");
    assert_eq!(j["ndim"], 2);
    let back: confseg::ConfidenceSets = serde_json::from_value(j).unwrap();
    assert!(back.per_image_spacing());
    assert_eq!(back, sets);
    // a calibration round-trips with its provenance and merges only with its kind
    let text = serde_json::to_string(&cal).unwrap();
    let back: Calibration = serde_json::from_str(&text).unwrap();
    assert_eq!(back, cal);
    let mut other = Calibration::new();
    Calibrator::new(ScoreTransform::Identity, ScoreTransform::Sigmoid)
        .observe(&mut other, &data.pair(0).0, &data.pair(0).1)
        .unwrap();
    assert!(matches!(other.clone().merge(&cal), Err(Error::IncompatibleCalibration { .. })));
}

#[test]
fn dimensionality_is_part_of_the_fit() {
    let data = Synthetic::new([8, 8, 5]).seed(3);
    let calibrator = Calibrator::new(Identity, distance());
    let cal = calibrator.calibrate_stream(data.pairs(0..30).map(Ok)).unwrap();
    let sets = calibrator.fit(&cal, Mode::marginal(Alpha::new(0.2).unwrap())).unwrap();
    let volume = data.pair(50).0;
    // a volume given without its batch axis to predict_stack is not 8 images of 2-D
    let e = sets.predict_stack(&volume).unwrap_err();
    assert_eq!(e, Error::DimensionMismatch { expected: 3, found: 2, image: None });
    assert!(e.to_string().contains("3-D"), "{e}");
    let slice = volume.index_axis(Axis(2), 0).to_owned();
    assert!(matches!(sets.predict(&slice), Err(Error::DimensionMismatch { expected: 3, found: 2, .. })));
    // and a calibration refuses an image of another dimensionality
    let mut c = cal.clone();
    let e = calibrator.observe(&mut c, &slice, &slice.mapv(|x| u8::from(x > 0.0))).unwrap_err();
    assert_eq!(e, Error::DimensionMismatch { expected: 3, found: 2, image: Some(30) });
}

/// `tau`/`gamma` of f32 images computed in f32 by hand: the independent reference.
fn reference_f32(images: &[(Array3<f32>, Array3<bool>)], outer: impl Fn(f32) -> f32) -> (Vec<f64>, Vec<f64>) {
    let mut tau = Vec::new();
    let mut gamma = Vec::new();
    for (s, m) in images {
        let mut t = f32::NEG_INFINITY;
        let mut g = f32::NEG_INFINITY;
        for (&x, &y) in s.iter().zip(m.iter()) {
            if y {
                g = g.max(-outer(x));
            } else {
                t = t.max(x);
            }
        }
        tau.push(f64::from(t));
        gamma.push(f64::from(g));
    }
    (tau, gamma)
}

#[test]
fn f32_is_computed_in_f32_and_integer_scores_agree_across_precisions() {
    let data = Synthetic::new([10, 9, 4]).seed(5);
    let images: Vec<(Array3<f32>, Array3<bool>)> =
        data.pairs(0..40).map(|(s, m)| (s.mapv(|x| x as f32), m)).collect();
    // continuous f32 scores, sigmoid outer side: the fitted statistics are the f32 computation
    let sig32 = |x: f32| if x >= 0.0 { 1.0 / (1.0 + (-x).exp()) } else { x.exp() / (1.0 + x.exp()) };
    let c = Calibrator::new(Identity, ScoreTransform::Sigmoid);
    let cal32 = c.calibrate_stream(images.iter().cloned().map(Ok)).unwrap();
    let (tau, gamma) = reference_f32(&images, sig32);
    assert_eq!(cal32.tau(), &tau[..]);
    assert_eq!(cal32.gamma(), &gamma[..]);
    // the same values in f64 give other (f64-rounded) sigmoid statistics, same identity ones
    let cal64 = c.calibrate_stream(images.iter().map(|(s, m)| Ok((s.mapv(f64::from), m.clone())))).unwrap();
    assert_eq!(cal64.tau(), cal32.tau());
    assert_ne!(cal64.gamma(), cal32.gamma());
    // integer-valued scores: identical thresholds in f32 and f64, spatial transforms too
    let ints: Vec<(Array3<f32>, Array3<bool>)> =
        images.iter().map(|(s, m)| (s.mapv(|x| (x * 4.0).round()), m.clone())).collect();
    for outer in
        [ScoreTransform::Identity, ScoreTransform::Distance(distance()), "box-outer".parse().unwrap()]
    {
        let c = Calibrator::new(ScoreTransform::Identity, outer.clone());
        let a = c.calibrate_stream(ints.iter().cloned().map(Ok)).unwrap();
        let b = c.calibrate_stream(ints.iter().map(|(s, m)| Ok((s.mapv(f64::from), m.clone())))).unwrap();
        let mode = Mode::bonferroni(Alpha::new(0.2).unwrap(), 1.0, 1.0).unwrap();
        assert_eq!(a.thresholds(&mode).unwrap(), b.thresholds(&mode).unwrap(), "{outer}");
    }
}

#[test]
fn streams_equal_whole_stacks() {
    // more images than the in-flight bound (4 per thread)
    let n = 5 * confseg::stream::default_in_flight() + 3;
    let (scores, masks) = Synthetic::new([14, 12]).seed(8).stack(0..n);
    let calibrator = Calibrator::new(Identity, distance());
    let whole = calibrator.calibrate_stack(&scores, &masks).unwrap();
    let pairs = || {
        (0..n)
            .map(|i| Ok((scores.index_axis(Axis(0), i).to_owned(), masks.index_axis(Axis(0), i).to_owned())))
    };
    let streamed = calibrator.calibrate_stream(pairs()).unwrap();
    assert_eq!(whole, streamed);
    let sets = calibrator.fit(&streamed, Mode::max(Alpha::new(0.1).unwrap())).unwrap();
    let stack_sets = sets.predict_stack(&scores).unwrap();
    let mut count = 0;
    sets.predict_stream((0..n).map(|i| Ok(scores.index_axis(Axis(0), i).to_owned())), |i, s| {
        assert_eq!(s.inner, stack_sets.inner.index_axis(Axis(0), i));
        assert_eq!(s.outer, stack_sets.outer.index_axis(Axis(0), i));
        count += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(count, n);
    // validation on a streamed pool equals the whole-stack pool
    let a = Pool::new(&calibrator, &scores, &masks, 0.0).unwrap();
    let b = Pool::from_stream(&calibrator, pairs(), 0.0).unwrap();
    let v = Validation::new(vec![Alpha::new(0.2).unwrap()], Splits::new(n / 2, 30, 1).unwrap())
        .with_geometry(Geometry::FirstSplits(3));
    let methods = [Method::Conformal(Levels::new(ModeKind::Max)), Method::RiskControl];
    assert_eq!(v.run(&a, &methods).unwrap(), v.run(&b, &methods).unwrap());
}

#[test]
fn pools_hold_images_of_different_shapes_and_spacings() {
    let calibrator = Calibrator::new(Identity, distance());
    let items: Vec<_> = (0..24)
        .map(|i| {
            let (s, m) = Synthetic::new([8 + i % 3, 10 - i % 2, 4 + i % 4]).seed(i as u64).pair(i);
            (Image::new(s, spacing(i)).unwrap(), m)
        })
        .collect();
    let pool = Pool::from_stream(&calibrator, items.clone().into_iter().map(Ok), 0.0).unwrap();
    assert_eq!(pool.len(), 24);
    assert_eq!(pool.image_shape(1), Some(items[1].0.scores().shape()));
    assert_eq!(pool.image_spacing(2), spacing(2).as_slice());
    let mut cal = Calibration::new();
    for (img, m) in &items {
        calibrator.observe(&mut cal, img, m).unwrap();
    }
    assert_eq!(pool.statistics().tau(), cal.tau());
    let v = Validation::new(vec![Alpha::new(0.3).unwrap()], Splits::new(12, 10, 2).unwrap());
    let r = v.run(&pool, &[Method::Conformal(Levels::new(ModeKind::Marginal))]).unwrap();
    assert!(r[0].efficiency.outer_diameter_ratio.is_some());
    let _ = Identity.describe();
}
