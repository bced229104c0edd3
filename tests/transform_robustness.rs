//! Every built-in transform on hostile input: arbitrary shapes (zero-length
//! and length-1 axes, 1-D to 4-D), extreme values (±inf, subnormals,
//! ±1e38, ±1e308, no NaN) and extreme spacings, in f32 and f64. A
//! transform may refuse (one-line error) but never panics and never
//! returns NaN for NaN-free input. Then regression tests for the cases
//! that used to give NaN, run out of memory or take minutes.

use std::time::{Duration, Instant};

use confseg::float::Float;
use confseg::{Error, GaussianSmoothing, Metric, ScoreTransform, SignedDistance, Spacing, Transform};
use ndarray::{Array2, ArrayD, IxDyn};
use proptest::prelude::*;

/// The transforms under test, by name.
const TRANSFORMS: &[&str] = &[
    "identity",
    "sigmoid",
    "distance:euclidean",
    "distance:chessboard",
    "distance:cityblock",
    "distance-centre:euclidean",
    "distance-centre:chessboard",
    "distance-centre:cityblock",
    "distance:euclidean:threshold=1e30",
    "gaussian:2",
    "gaussian-sigma:0.5:mode=mirror",
    "gaussian-sigma:3:mode=nearest:units=physical",
    "gaussian-sigma:10000:mode=wrap",
    "gaussian-sigma:2:mode=constant:cval=-3",
    "gaussian:5:mode=constant:cval=1e300",
    "gaussian-sigma:1:truncate=1000",
    "gaussian:1e-200",
    "gaussian-sigma:1e-170:units=physical",
    "box-outer",
    "box-inner:connectivity=full",
    "morphological",
    "morphological:footprint=edge:threshold=1e30",
    "morphological:footprint=full:empty=argmax",
    "morphological:footprint=ball:radius=2.5",
    "morphological:footprint=ball:radius=1.5:units=physical",
    "morphological:footprint=ball:radius=1e300",
    "morphological:footprint=[01010,10101,01010]",
];

/// A shape of 1 to 3 axes of length 0..=7, or 4 axes of length 0..=3.
fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        3 => prop::collection::vec(prop_oneof![Just(0usize), Just(1), 2..=7usize], 1..=3),
        1 => prop::collection::vec(0..=3usize, 4),
    ]
}

/// Any value but NaN: ordinary, infinite, subnormal or near the float range.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => -50.0..50.0f64,
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => prop::sample::select(vec![0.0, -0.0, 5e-324, -1e-310, 1e-40, -1e-45]),
        2 => prop::sample::select(vec![1e38, -1e38, 3.4e38, -3.4e38, 1e308, -1e308, f64::MAX, -f64::MAX]),
    ]
}

/// Unit spacing or a per-axis spacing with extreme entries.
fn spacing(ndim: usize) -> impl Strategy<Value = Spacing> {
    let entry = prop::sample::select(vec![
        5e-324,
        1e-300,
        1e-40,
        1e-10,
        0.3,
        1.0,
        2.5,
        1e10,
        1e30,
        1e300,
        1e308,
        f64::MAX,
    ]);
    prop_oneof![
        Just(Spacing::unit()),
        prop::collection::vec(entry, ndim.max(1)).prop_map(|v| Spacing::new(v).expect("positive and finite")),
    ]
}

fn case() -> impl Strategy<Value = (ArrayD<f64>, Spacing)> {
    shape().prop_flat_map(|s| {
        let len: usize = s.iter().product();
        let n = s.len();
        (
            prop::collection::vec(value(), len)
                .prop_map(move |v| ArrayD::from_shape_vec(IxDyn(&s), v).expect("length matches shape")),
            spacing(n),
        )
    })
}

/// Ok without NaN and with the input's shape, or a one-line error.
fn check<A: Float>(t: &ScoreTransform, x: &ArrayD<A>, spacing: &Spacing) -> Result<(), TestCaseError> {
    match t.apply(x, spacing) {
        Ok(out) => {
            prop_assert_eq!(out.shape(), x.shape(), "{}", t);
            if let Some(p) = out.iter().position(|v| v.is_nan()) {
                return Err(TestCaseError::fail(format!(
                    "{t} ({}) gave NaN at flat index {p} for {x:?} with spacing {spacing}",
                    A::NAME
                )));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(!msg.is_empty() && !msg.contains('\n'), "{}: message {:?}", t, msg);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_transform_is_total_and_nan_free((x, sp) in case()) {
        let x32 = x.mapv(|v| v as f32);
        for name in TRANSFORMS {
            let t: ScoreTransform = name.parse().expect("known transform");
            check(&t, &x, &sp)?;
            check(&t, &x32, &sp)?;
        }
    }
}

// ---------------------------------------------------------------- regressions

fn image() -> Array2<f64> {
    Array2::from_shape_fn((50, 50), |(i, j)| ((i * 7 + j * 3) % 11) as f64 - 5.0)
}

#[test]
fn very_wide_gaussians_are_folded_onto_the_image() {
    // A kernel radius of 15 million voxels on a 50x50 image used to take a
    // minute and 1.4 GB; folded onto the axes it is one sum over the taps.
    let x = image();
    let mean = x.mean().expect("not empty");
    let t: ScoreTransform = "gaussian:9e6".parse().unwrap();
    let start = Instant::now();
    let g = t.apply(&x, &Spacing::unit()).unwrap();
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
    // So wide a kernel, reflected, averages the whole image.
    for &v in g.iter() {
        assert!((v - mean).abs() < 1e-6, "{v} vs mean {mean}");
    }
    // An empty image with the same width: nothing computed, nothing allocated.
    let empty = Array2::<f64>::zeros((0, 50));
    let start = Instant::now();
    assert_eq!(t.apply(&empty, &Spacing::unit()).unwrap().shape(), &[0, 50]);
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    // Constant mode: the constant takes over.
    let t: ScoreTransform = "gaussian:9e6:mode=constant:cval=2".parse().unwrap();
    let g = t.apply(&x, &Spacing::unit()).unwrap();
    assert!(g.iter().all(|&v| (v - 2.0).abs() < 1e-4), "{g:?}");
}

#[test]
fn tiny_widths_leave_the_axis_unsmoothed() {
    // scipy skips axes with sigma <= 1e-15; these used to give all-NaN images.
    let x = image();
    for (name, sp) in [
        ("gaussian:1e-200", Spacing::unit()),
        ("gaussian-sigma:1e-170", Spacing::unit()),
        ("gaussian-sigma:2:units=physical", Spacing::new(vec![1e308, 1e308]).unwrap()),
    ] {
        let t: ScoreTransform = name.parse().unwrap();
        let g = t.apply(&x, &sp).unwrap();
        assert_eq!(g, x, "{name}");
        let x32 = x.mapv(|v| v as f32);
        let g32 = t.apply(&x32, &sp).unwrap();
        assert!(g32.iter().all(|v| !v.is_nan()), "{name}");
    }
    // Only the tiny axis is skipped: physical width 2 with spacing (1e308, 1)
    // smooths along axis 1 exactly as a 1-D filter would.
    let t: ScoreTransform = "gaussian-sigma:2:units=physical".parse().unwrap();
    let g = t.apply(&x, &Spacing::new(vec![1e308, 1.0]).unwrap()).unwrap();
    let row3 = x.row(3).to_owned();
    let row = t.apply(&row3, &Spacing::unit()).unwrap();
    assert_eq!(g.row(3), row);
}

#[test]
fn spacings_outside_f32_are_refused_not_nan() {
    let s = Array2::from_shape_fn((6, 5), |(i, j)| if (i + j) % 3 == 0 { 1.0f32 } else { -1.0 });
    // Spacings that round to inf or 0 in f32 (the first used to give NaN
    // voxel-centre distances, the second 0 or NaN), or too anisotropic.
    for sp in [vec![1.0, 1e300], vec![1e-300, 1.0], vec![1e30, 1.0], vec![1e10, 1e-10], vec![1e-30, 1.0]] {
        let f64_ok = sp.iter().all(|s| (1e-100..1e100).contains(s));
        let spacing = Spacing::new(sp.clone()).unwrap();
        for t in [
            ScoreTransform::Distance(SignedDistance::new(Metric::Euclidean)),
            "distance-centre:euclidean".parse().unwrap(),
            "distance-centre:chessboard".parse().unwrap(),
            "box-outer".parse().unwrap(),
            "box-inner".parse().unwrap(),
        ] {
            match t.apply(&s, &spacing) {
                Ok(d) => assert!(d.iter().all(|v| !v.is_nan()), "{t} {sp:?}: NaN"),
                Err(e) => assert!(matches!(e, Error::InvalidSpacing { .. }), "{t} {sp:?}: {e}"),
            }
        }
        // In f64: finite distances, or an error if the spacing does not fit f64 either.
        let s64 = s.mapv(f64::from);
        match SignedDistance::default().apply(&s64, &spacing) {
            Ok(d) => assert!(d.iter().all(|v| v.is_finite()), "{sp:?}"),
            Err(e) => assert!(matches!(e, Error::InvalidSpacing { .. }) && !f64_ok, "{e}"),
        }
    }
    // One voxel, nothing predicted, a spacing that is 0 in f32: was NaN.
    let one = ndarray::arr1(&[0.0f32]);
    let e = SignedDistance::default().apply(&one, &Spacing::new(vec![1e-300]).unwrap()).unwrap_err();
    assert!(matches!(e, Error::InvalidSpacing { .. }), "{e}");
    // f64 with a spacing ratio of 1e300.
    let spacing = Spacing::new(vec![1e150, 1e-150]).unwrap();
    let s64 = s.mapv(f64::from);
    match SignedDistance::default().apply(&s64, &spacing) {
        Ok(d) => assert!(d.iter().all(|v| !v.is_nan())),
        Err(e) => assert!(matches!(e, Error::InvalidSpacing { .. }), "{e}"),
    }
}

#[test]
fn smoothing_near_the_float_range_does_not_overflow_to_nan() {
    let big = f32::MAX * 0.9;
    let x = Array2::from_shape_fn((4, 3), |(i, _)| if i < 2 { big } else { -big });
    let g = GaussianSmoothing::sigma(1.0).unwrap().apply(&x, &Spacing::unit()).unwrap();
    assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
    let x64 = x.mapv(|v| f64::from(v) * 5e269);
    let g = GaussianSmoothing::sigma(1.0).unwrap().apply(&x64, &Spacing::unit()).unwrap();
    assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
    // A constant that f32 cannot hold is an error, not inf next to -inf.
    let t: ScoreTransform = "gaussian:2:mode=constant:cval=1e300".parse().unwrap();
    assert!(t.apply(&x, &Spacing::unit()).is_err());
    assert!(t.apply(&x64, &Spacing::unit()).unwrap().iter().all(|v| !v.is_nan()));
}
