//! Chains of transforms and registered user transforms: a chain equals its
//! steps applied in turn, chains and registered names survive text and
//! JSON, and fitted sets using a registered transform load back and
//! predict the same sets.

use confseg::float::Float;
use confseg::synthetic::Synthetic;
use confseg::transform::Width;
use confseg::transform::{register, registered_names, MAX_CHAIN_STEPS};
use confseg::{
    Alpha, Calibrator, ConfidenceSets, GaussianSmoothing, Metric, Mode, ScoreTransform, SignedDistance,
    Spacing, Transform,
};
use ndarray::{Array2, ArrayRef, CowArray, Dimension};

/// Scores clipped to `[-2, 2]` and scaled by 0.3 — in the scores' own type.
#[derive(Clone, Copy)]
struct ClipScale;

impl Transform for ClipScale {
    fn apply<'a, A: Float, D: Dimension>(
        &self,
        s: &'a ArrayRef<A, D>,
        _: &Spacing,
    ) -> confseg::Result<CowArray<'a, A, D>> {
        let (c, k) = (A::from_f64_lossy(2.0), A::from_f64_lossy(0.3));
        Ok(s.mapv(|x| x.max(-c).min(c) * k).into())
    }
    fn uses_spacing(&self) -> bool {
        false
    }
}

/// Breaks the contract: drops the last axis element.
struct WrongShape;

impl Transform for WrongShape {
    fn apply<'a, A: Float, D: Dimension>(
        &self,
        s: &'a ArrayRef<A, D>,
        _: &Spacing,
    ) -> confseg::Result<CowArray<'a, A, D>> {
        Ok(s.slice_each_axis(|ax| ndarray::Slice::from(0..ax.len.saturating_sub(1))).to_owned().into())
    }
}

fn scores(seed: u64) -> Array2<f64> {
    let (s, _) = Synthetic::new([24, 20]).seed(seed).pair(0);
    s
}

#[test]
fn a_chain_is_its_steps_applied_in_turn() {
    let sp = Spacing::new(vec![0.7, 1.3]).unwrap();
    let g = GaussianSmoothing::new(Width::Fwhm(2.0)).unwrap();
    let d = SignedDistance::new(Metric::Chessboard).with_mask_threshold(0.1).unwrap();
    let named: ScoreTransform = "gaussian:2|distance:chessboard:threshold=0.1".parse().unwrap();
    let combinator = g.then(d);
    for seed in 0..5 {
        let s = scores(seed);
        let want = d.apply(&g.apply(&s, &sp).unwrap(), &sp).unwrap().into_owned();
        assert_eq!(named.apply(&s, &sp).unwrap(), want);
        assert_eq!(combinator.apply(&s, &sp).unwrap(), want);
        // f32 computes in f32, step by step
        let s32 = s.mapv(|x| x as f32);
        let want32 = d.apply(&g.apply(&s32, &sp).unwrap(), &sp).unwrap().into_owned();
        assert_eq!(named.apply(&s32, &sp).unwrap(), want32);
        // three steps, the identity in the middle
        let three: ScoreTransform = "sigmoid|identity|gaussian-sigma:1".parse().unwrap();
        let g1 = GaussianSmoothing::new(Width::Sigma(1.0)).unwrap();
        let want3 = g1.apply(&s.mapv(|x| 1.0 / (1.0 + (-x).exp())), &sp).unwrap().into_owned();
        let got3 = three.apply(&s, &sp).unwrap();
        assert!(got3.iter().zip(&want3).all(|(a, b)| (a - b).abs() <= 1e-15), "seed {seed}");
    }
    assert_eq!(combinator.describe(), named.to_string());
    assert!(!"sigmoid|identity".parse::<ScoreTransform>().unwrap().uses_spacing());
    assert!("sigmoid|distance".parse::<ScoreTransform>().unwrap().uses_spacing());
}

#[test]
fn chains_parse_print_and_save() {
    let t: ScoreTransform = " gaussian:2 |  distance:threshold=0.5 ".parse().unwrap();
    assert_eq!(t.to_string(), "gaussian:2|distance:euclidean:threshold=0.5");
    assert_eq!(t.to_string().parse::<ScoreTransform>().unwrap(), t);
    // nested chains flatten; one step is that step; none is the identity
    let ScoreTransform::Chain(c) = &t else { panic!("{t:?}") };
    let nested = ScoreTransform::chain(vec![t.clone(), ScoreTransform::Sigmoid]).unwrap();
    assert_eq!(nested.to_string(), "gaussian:2|distance:euclidean:threshold=0.5|sigmoid");
    assert_eq!(ScoreTransform::chain(vec![ScoreTransform::Sigmoid]).unwrap(), ScoreTransform::Sigmoid);
    assert_eq!(ScoreTransform::chain(vec![]).unwrap(), ScoreTransform::Identity);
    assert_eq!(c.steps().len(), 2);
    // the mask threshold reaches every thresholding step
    let two: ScoreTransform = "distance|box-outer".parse().unwrap();
    let two = two.with_mask_threshold(0.25).unwrap();
    assert_eq!(two.to_string(), "distance:euclidean:threshold=0.25|box-outer:threshold=0.25");
    assert_eq!(two.mask_threshold(), Some(0.25));
    assert_eq!("sigmoid|gaussian:1".parse::<ScoreTransform>().unwrap().mask_threshold(), None);
    // JSON
    let j = serde_json::to_string(&t).unwrap();
    assert!(j.starts_with(r#"{"name":"chain","steps":[{"name":"gaussian""#), "{j}");
    assert_eq!(serde_json::from_str::<ScoreTransform>(&j).unwrap(), t);
    for bad in [
        r#"{"name":"chain","steps":[{"name":"identity"}]}"#,
        r#"{"name":"chain","steps":[]}"#,
        r#"{"name":"chain","steps":[{"name":"sigmoid"},{"name":"sigmoid"}],"x":1}"#,
    ] {
        assert!(serde_json::from_str::<ScoreTransform>(bad).is_err(), "{bad}");
    }
    let long = format!(
        r#"{{"name":"chain","steps":[{}]}}"#,
        vec![r#"{"name":"sigmoid"}"#; MAX_CHAIN_STEPS + 1].join(",")
    );
    let e = serde_json::from_str::<ScoreTransform>(&long).unwrap_err().to_string();
    assert!(e.contains("at most"), "{e}");
    // text errors
    for bad in ["gaussian:2|", "|distance", "a||b", "gaussian:2|nope", "identity|gaussian"] {
        assert!(bad.parse::<ScoreTransform>().is_err(), "{bad}");
    }
    let long = vec!["sigmoid"; MAX_CHAIN_STEPS + 1].join("|");
    assert!(long.parse::<ScoreTransform>().unwrap_err().to_string().contains("at most"));
    assert!(vec!["sigmoid"; MAX_CHAIN_STEPS].join("|").parse::<ScoreTransform>().is_ok());
}

#[test]
fn registered_transforms_fit_save_and_load() {
    register("test-clip-scale", ClipScale).unwrap();
    assert!(registered_names().contains(&"test-clip-scale".to_owned()));
    // one name, once; built-in names and malformed names refused
    for (name, why) in [
        ("test-clip-scale", "already registered"),
        ("distance", "built-in"),
        ("chain", "built-in"),
        ("1abc", "letters"),
        ("a b", "letters"),
        ("a|b", "letters"),
        ("a:b", "letters"),
        ("", "letters"),
    ] {
        let e = register(name, ClipScale).unwrap_err().to_string();
        assert!(e.contains(why), "{name}: {e}");
    }
    assert!("test-clip-scale:2".parse::<ScoreTransform>().unwrap_err().to_string().contains("no parameters"));

    // the registered transform computes exactly what the transform does, in f32 and f64
    let named: ScoreTransform = "test-clip-scale".parse().unwrap();
    assert!(!named.uses_spacing());
    let s = scores(9);
    assert_eq!(named.apply(&s, &Spacing::unit()).unwrap(), ClipScale.apply(&s, &Spacing::unit()).unwrap());
    let s32 = s.mapv(|x| x as f32);
    let direct32 = ClipScale.apply(&s32, &Spacing::unit()).unwrap();
    assert_eq!(named.apply(&s32, &Spacing::unit()).unwrap(), direct32);
    assert_ne!(direct32.mapv(f64::from), ClipScale.apply(&s, &Spacing::unit()).unwrap(), "f32 really is f32");

    // fitted with the name, equal to the fit with the transform itself
    let data = Synthetic::new([24, 24]).seed(3);
    let chain: ScoreTransform = "test-clip-scale|distance".parse().unwrap();
    let by_name = Calibrator::new(named.clone(), chain.clone());
    let direct = Calibrator::new(ClipScale, ClipScale.then(SignedDistance::new(Metric::Euclidean)));
    let mode = Mode::max(Alpha::new(0.1).unwrap());
    let cal_n = by_name.calibrate_stream(data.pairs(0..80).map(Ok)).unwrap();
    let cal_d = direct.calibrate_stream(data.pairs(0..80).map(Ok)).unwrap();
    let sets = by_name.fit(&cal_n, mode).unwrap();
    let sets_d = direct.fit(&cal_d, mode).unwrap();
    assert_eq!(sets.thresholds(), sets_d.thresholds());
    assert!(sets.thresholds().inner.value().is_finite());

    // saved and loaded back by name: the same sets for new images
    let json = serde_json::to_string(&sets).unwrap();
    assert!(json.contains(r#"{"name":"registered","id":"test-clip-scale"}"#), "{json}");
    let back: ConfidenceSets = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sets);
    for (test, _) in data.pairs(100..105) {
        assert_eq!(back.predict(&test).unwrap(), sets_d.predict(&test).unwrap());
    }
    // a name this program did not register stays an error naming it
    let other = json.replace("test-clip-scale", "test-clip-scaled");
    let e = serde_json::from_str::<ConfidenceSets>(&other).unwrap_err().to_string();
    assert!(e.contains("test-clip-scaled") && e.contains("not registered"), "{e}");
    let e = "test-clip-scaled".parse::<ScoreTransform>().unwrap_err().to_string();
    assert!(e.contains("test-clip-scaled") && e.contains("unknown transform"), "{e}");
}

#[test]
fn a_registered_transform_of_the_wrong_shape_is_an_error() {
    register("test-wrong-shape", WrongShape).unwrap();
    let t: ScoreTransform = "test-wrong-shape".parse().unwrap();
    let e = t.apply(&scores(1), &Spacing::unit()).unwrap_err().to_string();
    assert!(e.contains("test-wrong-shape") && e.contains("[23, 19]") && e.contains("[24, 20]"), "{e}");
    let data = Synthetic::new([8, 8]).seed(1);
    let r = Calibrator::new(t, ScoreTransform::Identity).calibrate_stream(data.pairs(0..3).map(Ok));
    assert!(r.is_err());
}
