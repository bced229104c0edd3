//! Transform names: `str::parse::<ScoreTransform>` on arbitrary strings,
//! and every transform that parses applied to a small arbitrary image with
//! an arbitrary spacing, in `f64` and `f32`. No panic, one-line errors,
//! names that print and parse back to the same transform, and no NaN out
//! of a transform for NaN-free input.
#![no_main]

use arbitrary::Arbitrary;
use confseg::transform::apply_checked;
use confseg::{ScoreTransform, Spacing, Transform};
use confseg_fuzz::{image, ok, spacing, SmallShape};
use libfuzzer_sys::fuzz_target;
use ndarray::{ArrayD, CowArray, IxDyn};

#[derive(Debug, Arbitrary)]
struct Input {
    shape: SmallShape,
    /// Spacing selectors (see `confseg_fuzz::spacing`).
    spacing: [u8; 5],
    /// Voxel value selectors, cycled.
    values: [u8; 16],
    /// Raw values the selectors may pick.
    raw: [f64; 2],
    /// The transform name.
    name: String,
}

/// Apply `t` to `scores` in the float type `A`: same shape, and no NaN for NaN-free input.
fn check_apply<A: confseg::float::Float>(t: &ScoreTransform, scores: &ArrayD<A>, spacing: &Spacing) {
    // Gaussian kernels up to 2^24 voxels are folded onto the axis in
    // O(radius) time: too slow for a fuzzer's per-input budget, not applied
    // (tests/robustness.rs, huge_kernels_fold_exactly_onto_small_images).
    if let ScoreTransform::Gaussian(g) = t {
        if g.sigmas(spacing, scores.ndim())
            .is_ok_and(|s| s.iter().any(|&s| (g.truncate() * s).is_nan() || g.truncate() * s > 1e4))
        {
            return;
        }
    }
    let nan_free = scores.iter().all(|x| !x.is_nan());
    let out: Option<CowArray<'_, A, IxDyn>> = ok(t.apply(scores, spacing));
    if let Some(out) = out {
        assert_eq!(out.shape(), scores.shape());
        if nan_free {
            let p = out.iter().position(|x| x.is_nan());
            assert!(p.is_none(), "{t} made NaN at {p:?} from NaN-free scores (spacing {spacing})");
        }
    }
    ok(apply_checked(t, scores, spacing));
    let _ = t.warning_for(scores);
}

fuzz_target!(|input: Input| {
    let Some(t) = ok(input.name.parse::<ScoreTransform>()) else { return };
    // the printed name parses back to the same transform
    let printed = t.to_string();
    let again = printed.parse::<ScoreTransform>();
    assert_eq!(
        again.as_ref().ok(),
        Some(&t),
        "{:?} printed as {printed:?}, which parses as {again:?}",
        input.name
    );
    assert_eq!(t.describe(), printed);
    let json = serde_json::to_string(&t).expect("a transform serializes");
    let back: ScoreTransform = serde_json::from_str(&json).expect("a written transform reads back");
    assert_eq!(back, t, "{json}");
    let _ = (t.uses_spacing(), t.mask_threshold());
    if let Some(th) = t.mask_threshold() {
        assert!(th.is_finite());
        ok(t.clone().with_mask_threshold(th));
    }

    let shape = input.shape.shape();
    let scores = image(&shape, &input.values, &input.raw);
    let sp = match spacing(shape.len(), &input.spacing, &input.raw) {
        None => Spacing::unit(),
        Some(v) => match ok(Spacing::new(v)) {
            Some(s) => s,
            None => return,
        },
    };
    check_apply(&t, &scores, &sp);
    check_apply(&t, &scores.mapv(|x| x as f32), &sp);
});
