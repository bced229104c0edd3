//! Properties of the core: merging, monotonicity, the fused kernel against a
//! naive reduction, and no panics on arbitrary input.

mod common;

use confseg::calibrate::{region_statistics, ImageStatistics};
use confseg::quantile::conformal_quantile;
use confseg::quantile::Rank;
use confseg::{Alpha, Calibration, Calibrator, ConfidenceSets, Identity, Mode, Sigmoid, Threshold};
use ndarray::{ArrayD, Axis, IxDyn, Slice};
use proptest::prelude::*;

fn stat() -> impl Strategy<Value = f64> {
    prop_oneof![8 => -10.0..10.0f64, 1 => Just(f64::NEG_INFINITY), 1 => Just(f64::INFINITY), 1 => Just(1.0)]
}

fn stats(max: usize) -> impl Strategy<Value = Vec<ImageStatistics>> {
    prop::collection::vec((stat(), stat()).prop_map(|(tau, gamma)| ImageStatistics { tau, gamma }), 1..max)
}

fn modes() -> Vec<Mode> {
    let a = |x| Alpha::new(x).unwrap();
    vec![
        Mode::marginal(a(0.1)),
        Mode::marginal_split(a(0.3), a(0.05)),
        Mode::bonferroni(a(0.2), 1.0, 4.0).unwrap(),
        Mode::max(a(0.15)),
        Mode::max(a(0.5)),
    ]
}

/// max over {mask == want} of `f` (or of -f), by the definition.
fn naive_max(f: &ArrayD<f64>, m: &ArrayD<u8>, want: u8, negate: bool) -> f64 {
    f.iter()
        .zip(m.iter())
        .filter(|(_, &y)| y == want)
        .map(|(&x, _)| if negate { -x } else { x })
        .fold(f64::NEG_INFINITY, f64::max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn merging_in_any_order_equals_one_pass(
        all in stats(60),
        cuts in prop::collection::vec(0usize..60, 0..5),
        perm_seed in any::<u64>(),
    ) {
        let one_pass: Calibration = all.iter().copied().collect();
        // Split at the cut points into chunks, then merge the chunks in a shuffled order.
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (all.len() + 1)).collect();
        cuts.push(0);
        cuts.push(all.len());
        cuts.sort_unstable();
        let mut chunks: Vec<Calibration> =
            cuts.windows(2).map(|w| all[w[0]..w[1]].iter().copied().collect()).collect();
        let mut state = perm_seed;
        for i in (1..chunks.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            chunks.swap(i, (state >> 33) as usize % (i + 1));
        }
        let mut merged = Calibration::new();
        for c in &chunks {
            merged.merge(c).unwrap();
        }
        prop_assert_eq!(merged.len(), one_pass.len());
        for mode in modes() {
            prop_assert_eq!(merged.thresholds(&mode).unwrap(), one_pass.thresholds(&mode).unwrap());
        }
    }

    #[test]
    fn stack_calibration_equals_image_by_image(
        (scores, masks) in (1usize..6, common::nonempty_shape(2, 5))
            .prop_flat_map(|(n, mut s)| { s.insert(0, n); (common::scores_of(s.clone()), common::mask_of(s)) })
    ) {
        let c = Calibrator::new(Sigmoid, Identity);
        let stacked = c.calibrate_stack(&scores, &masks).unwrap();
        let mut one = Calibration::new();
        for (s, m) in scores.axis_iter(Axis(0)).zip(masks.axis_iter(Axis(0))) {
            c.observe(&mut one, &s, &m).unwrap();
        }
        prop_assert_eq!(stacked, one);
    }

    #[test]
    fn kernel_matches_definition((f, g, m) in common::nonempty_shape(3, 7)
        .prop_flat_map(|s| (common::scores_of(s.clone()), common::scores_of(s.clone()), common::mask_of(s))))
    {
        let got = region_statistics(&f, &g, &m).unwrap();
        prop_assert_eq!(got.tau, naive_max(&f, &m, 0, false));
        prop_assert_eq!(got.gamma, naive_max(&g, &m, 1, true));
        // Non-contiguous views (reversed, strided first axis) give the same result.
        let rev = |a: &ArrayD<f64>| { let mut v = a.view(); v.invert_axis(Axis(0)); v.to_owned() };
        let mut fr = f.view(); fr.invert_axis(Axis(0));
        let mut gr = g.view(); gr.invert_axis(Axis(0));
        let mut mr = m.view(); mr.invert_axis(Axis(0));
        let got_rev = region_statistics(&fr, &gr, &mr).unwrap();
        prop_assert_eq!(got_rev, region_statistics(&rev(&f), &rev(&g), &mr.to_owned()).unwrap());
        prop_assert_eq!(got_rev, got);
        let fs = f.slice_axis(Axis(0), Slice::new(0, None, 2));
        let gs = g.slice_axis(Axis(0), Slice::new(0, None, 2));
        let ms = m.slice_axis(Axis(0), Slice::new(0, None, 2));
        let want = ImageStatistics {
            tau: naive_max(&fs.to_owned(), &ms.to_owned(), 0, false),
            gamma: naive_max(&gs.to_owned(), &ms.to_owned(), 1, true),
        };
        prop_assert_eq!(region_statistics(&fs, &gs, &ms).unwrap(), want);
    }

    #[test]
    fn kernel_on_runs_matches_definition_and_finds_nan(
        runs in prop::collection::vec((0u8..2, 1usize..150), 1..12),
        values in prop::collection::vec(-1e3f64..1e3, 1..8),
        nan_at in prop::option::of((any::<bool>(), 0.0f64..1.0)),
        bad_at in prop::option::of(0.0f64..1.0),
        same in any::<bool>(),
    ) {
        // Masks in runs of random lengths (whole vector blocks and chunks,
        // boundaries inside them, a partial last chunk), f32 and f64.
        let mut m: Vec<u8> = runs.iter().flat_map(|&(v, len)| std::iter::repeat_n(v, len)).collect();
        let n = m.len();
        let f: Vec<f64> = (0..n).map(|i| values[i % values.len()] + i as f64 * 0.25).collect();
        let g: Vec<f64> = if same { f.clone() } else { f.iter().map(|x| 0.5 * x - 3.0).collect() };
        let shape = IxDyn(&[n]);
        let (fa, ga, ma) = (
            ArrayD::from_shape_vec(shape.clone(), f.clone()).unwrap(),
            ArrayD::from_shape_vec(shape.clone(), g.clone()).unwrap(),
            ArrayD::from_shape_vec(shape.clone(), m.clone()).unwrap(),
        );
        let want = ImageStatistics { tau: naive_max(&fa, &ma, 0, false), gamma: naive_max(&ga, &ma, 1, true) };
        let got = if same { region_statistics(&fa, &fa, &ma) } else { region_statistics(&fa, &ga, &ma) };
        prop_assert_eq!(got.unwrap(), want);
        let (f32a, g32a) = (fa.mapv(|x| x as f32), ga.mapv(|x| x as f32));
        let want32 = ImageStatistics {
            tau: naive_max(&f32a.mapv(f64::from), &ma, 0, false),
            gamma: naive_max(&g32a.mapv(f64::from), &ma, 1, true),
        };
        let got32 =
            if same { region_statistics(&f32a, &f32a, &ma) } else { region_statistics(&f32a, &g32a, &ma) };
        prop_assert_eq!(got32.unwrap(), want32);
        let bools = ma.mapv(|v| v == 1);
        prop_assert_eq!(region_statistics(&f32a, &g32a, &bools).unwrap(), region_statistics(&f32a, &g32a, &ma).unwrap());

        // A NaN anywhere, in either array, is found and named.
        if let Some((in_outer, at)) = nan_at {
            let p = ((at * n as f64) as usize).min(n - 1);
            let (mut f2, mut g2) = (f32a.clone(), g32a.clone());
            let what = if in_outer && !same { g2[[p]] = f32::NAN; "outer scores" } else { f2[[p]] = f32::NAN; "inner scores" };
            let e = if same { region_statistics(&f2, &f2, &ma) } else { region_statistics(&f2, &g2, &ma) };
            prop_assert_eq!(e.unwrap_err(), confseg::Error::NanScore { what, image: None, index: vec![p] });
        }
        // A value other than 0/1 anywhere is found and named.
        if let Some(at) = bad_at {
            let p = ((at * n as f64) as usize).min(n - 1);
            m[p] = 2;
            let m2 = ArrayD::from_shape_vec(shape, m).unwrap();
            let e = region_statistics(&f32a, &g32a, &m2).unwrap_err();
            prop_assert_eq!(e, confseg::Error::NonBinaryMask { image: None, index: vec![p], value: 2.0 });
        }
    }

    #[test]
    fn sets_are_monotone_in_alpha(
        all in stats(80),
        a1 in 0.01f64..0.99,
        a2 in 0.01f64..0.99,
        (scores, _) in common::pair(2, 6),
    ) {
        let (lo, hi) = if a1 <= a2 { (a1, a2) } else { (a2, a1) };
        let cal: Calibration = all.into_iter().collect();
        let c = Calibrator::new(Identity, Identity);
        let fit = |a: f64, mode: fn(Alpha) -> Mode| c.fit(&cal, mode(Alpha::new(a).unwrap())).unwrap();
        for mode in [Mode::marginal as fn(Alpha) -> Mode, Mode::max] {
            let strict = fit(lo, mode).predict(&scores).unwrap();
            let loose = fit(hi, mode).predict(&scores).unwrap();
            // Smaller alpha: smaller inner set, larger outer set.
            for (&s, &l) in strict.inner.iter().zip(loose.inner.iter()) {
                prop_assert!(!s || l);
            }
            for (&s, &l) in strict.outer.iter().zip(loose.outer.iter()) {
                prop_assert!(!l || s);
            }
        }
    }

    #[test]
    fn quantile_matches_sorting(values in prop::collection::vec(stat(), 0..50), a in 0.001f64..0.999) {
        let alpha = Alpha::new(a).unwrap();
        let t = conformal_quantile(&values, alpha, Rank::Marginal).unwrap();
        let n = values.len();
        let k = ((1.0 - a) * (n as f64 + 1.0) - 1e-9).ceil() as usize;
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        if k > n {
            prop_assert_eq!(t, Threshold::TooFewImages { n, needed: alpha.min_calibration_size() });
            prop_assert!(n < alpha.min_calibration_size());
        } else {
            prop_assert_eq!(t, Threshold::OrderStatistic { k, value: sorted[k - 1] });
            prop_assert!(n >= alpha.min_calibration_size());
        }
    }

    #[test]
    fn public_api_never_panics(
        shape_a in common::shape(3, 4),
        shape_b in common::shape(3, 4),
        values in prop::collection::vec(common::any_value(), 64),
        mask_values in prop::collection::vec(0u8..=2, 64),
        alpha in any::<f64>(),
        w in (any::<f64>(), any::<f64>()),
    ) {
        let make = |shape: &[usize]| {
            let len: usize = shape.iter().product();
            ArrayD::from_shape_vec(IxDyn(shape), values.iter().copied().cycle().take(len).collect()).unwrap()
        };
        let f = make(&shape_a);
        let g = make(&shape_b);
        let len_b: usize = shape_b.iter().product();
        let m = ArrayD::from_shape_vec(IxDyn(&shape_b), mask_values.iter().copied().cycle().take(len_b).collect())
            .unwrap();
        let _ = region_statistics(&f, &g, &m);
        let _ = region_statistics(&g, &g, &m);
        let c = Calibrator::new(Identity, Sigmoid);
        let mut cal = Calibration::new();
        let _ = c.observe(&mut cal, &f, &m);
        let _ = c.observe(&mut cal, &g, &m);
        if f.ndim() >= 1 {
            let _ = c.calibrate_stack(&f, &m);
        }
        let _ = conformal_quantile(&values, Alpha::new(0.5).unwrap(), Rank::Marginal);
        if let Ok(a) = Alpha::new(alpha) {
            let _ = Mode::bonferroni(a, w.0, w.1);
            for mode in [Mode::marginal(a), Mode::max(a)] {
                if let Ok(sets) = c.fit(&cal, mode) {
                    let _ = sets.predict(&f);
                    let _ = sets.predict_transformed(&f, &g);
                    if let Ok(p) = sets.predict(&g) {
                        let _ = p.coverage(&m);
                        let _ = p.coverage(&f.mapv(|x| x as u8));
                    }
                }
            }
        }
    }
}

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Calibration>();
    check::<Calibrator<Identity, Sigmoid>>();
    check::<ConfidenceSets>();
    check::<confseg::Sets<IxDyn>>();
    check::<confseg::Error>();
    check::<confseg::synthetic::Synthetic<IxDyn>>();
}

#[cfg(feature = "serde")]
#[test]
fn fitted_sets_round_trip_through_json() {
    use confseg::ScoreTransform;
    let data = confseg::synthetic::Synthetic::new([12, 12]).seed(9);
    let c = Calibrator::new(ScoreTransform::Sigmoid, ScoreTransform::Identity);
    let (s, m) = data.stack(0..30);
    let cal = c.calibrate_stack(&s, &m).unwrap();
    for mode in modes().into_iter().chain([Mode::marginal(Alpha::new(0.01).unwrap())]) {
        let fitted = c.fit(&cal, mode).unwrap();
        let json = serde_json::to_string(&fitted).unwrap();
        let back: ConfidenceSets = serde_json::from_str(&json).unwrap();
        assert_eq!(back, fitted, "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["n"], 30);
        assert!(v["inner"]["alpha"].is_f64() && v["outer"]["alpha"].is_f64());
        if mode.inner_alpha().get() == 0.01 {
            assert_eq!(v["inner"]["threshold"], "inf");
            assert!(v["inner"]["rank"].is_null());
        }
    }
}
